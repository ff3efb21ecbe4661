// Fuzz target: the daemon's control commands, from the request bytes to the response bytes.
//
// Each input is a short session of operator requests against a daemon's state: a state store
// with open, acknowledged, half-open and run-scoped breakers and pending approvals (made once,
// copied fresh for every input), the breaker registry restored from it, and an alert router with
// a log and a file sink. Each request goes through answer_control_request (the control socket's
// decode step) and control_handler (the commands), exactly as `loopwarden serve` runs them:
//
//   input := u8 operator (selects one of two operators), then up to 32 × (u16le length + bytes
//            of a loopwarden.v1.ControlRequest)
//
// Every answer must parse as a ControlResponse and a refusal must say why.

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include <loopwarden/v1/control.pb.h>
#include <loopwarden/core/alert_config.hpp>
#include <loopwarden/core/alert_router.hpp>
#include <loopwarden/core/breaker_registry.hpp>
#include <loopwarden/core/config.hpp>
#include <loopwarden/core/sqlite_store.hpp>

#include "../../sidecar/src/control_handler.hpp"
#include "../../sidecar/src/control_service.hpp"
#include "fuzz_support.hpp"

using namespace loopwarden;
namespace fs = std::filesystem;

namespace {

constexpr int max_requests = 32;
constexpr std::int64_t start_unix_nano = 1'700'000'000'000'000'000;
constexpr const char* sidecar_id = "fuzz-host:/fuzz/state";

// The daemon's config for this target: the alert sinks and the probation the handler sees.
constexpr const char* config_yaml = R"(version: 1
probation: 30s
alerts:
  sinks:
    - {name: ops-log, type: log}
    - {name: archive, type: file, path: alerts.jsonl}
)";

struct fixture {
  fs::path dir;  // a private temporary directory
  fs::path template_db;
  fs::path work_db;
  core::config cfg;
  core::alerts_config alerts;
};
fixture* fx = nullptr;  // set once, never freed

core::alerts_config alerts_of(const core::config& cfg) {
  auto a = core::parse_alerts_config(cfg.root["alerts"], fx->dir.string());
  if (!a.ok()) fuzz::die(a.error().message());
  return std::move(*a);
}

std::unique_ptr<core::sqlite_state_store> open_store(const fs::path& path) {
  core::sqlite_state_store::open_options o;
  o.sync = core::sqlite_state_store::sync_mode::normal;  // tmpfs: nothing to fsync for
  auto store = core::sqlite_state_store::open(path, o);
  if (!store.ok()) fuzz::die(store.error().message());
  (*store)->set_alert_planner(core::make_alert_planner(fx->alerts, sidecar_id));
  (*store)->set_approval_alert_planner(core::make_approval_alert_planner(fx->alerts, sidecar_id));
  return std::move(*store);
}

core::trip_input trip(std::string breaker, std::string run, sdk::breaker_scope scope,
                      std::int64_t at) {
  core::trip_input t;
  t.breaker = std::move(breaker);
  t.run_id = std::move(run);
  t.monitor = "seed_monitor";
  t.reason = "seeded for the control fuzz target";
  t.evidence = {{"value", "4.2"}, {"bound", "3.0"}};
  t.scope = scope;
  t.time_unix_nano = at;
  return t;
}

// The state every input starts from: one of each breaker state and of each approval state that
// an operator can act on.
void make_template() {
  auto store = open_store(fx->template_db);
  core::breaker_registry registry(*store, std::chrono::seconds(30));
  if (auto s = registry.restore(); !s.ok()) fuzz::die(s.message());
  std::int64_t t = start_unix_nano - 3'600'000'000'000;
  auto next = [&] { return t += 1'000'000'000; };
  using sdk::breaker_scope;
  (void)registry.trip(trip("training.collapse", "run-1", breaker_scope::run, next()));
  (void)registry.trip(trip("training.loss", "run-1", breaker_scope::run, next()));
  (void)registry.trip(trip("training.loss", "run-2", breaker_scope::run, next()));
  (void)registry.trip(trip("agent.destructive", "", breaker_scope::global, next()));
  (void)registry.acknowledge({"agent.destructive", ""}, "unix:alice", "looking", next());
  (void)registry.trip(trip("pipeline.review", "", breaker_scope::global, next()));
  (void)registry.reset({"pipeline.review", ""}, "unix:alice", "fixed the queue", next());
  auto shadow = trip("shadow:training.collapse", "run-1", breaker_scope::run, next());
  shadow.shadow = true;
  (void)registry.trip(shadow);
  for (int i = 0; i < 3; ++i) {
    core::approval a;
    a.created_unix_nano = next();
    // One never expires, one expires during a session, one has expired already.
    a.expires_unix_nano = i == 0 ? 0 : (i == 1 ? start_unix_nano + 5'000'000'000 : t);
    a.monitor = "destructive";
    a.breaker = "agent.destructive";
    a.run_id = "run-1";
    a.summary = "rm -rf build/ in /work";
    a.detail_json = R"({"command":"rm -rf build/"})";
    a.requested_by = "agent/1";
    if (auto id = store->create_approval(a); !id.ok()) fuzz::die(id.error().message());
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quiet_logs();
  fx = new fixture();
  std::string pattern = (fs::is_directory("/dev/shm") ? std::string("/dev/shm")
                                                      : fs::temp_directory_path().string()) +
                        "/loopwarden-control-fuzz-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) fuzz::die("mkdtemp failed");
  fx->dir = pattern;
  fx->template_db = fx->dir / "template.db";
  fx->work_db = fx->dir / "work.db";
  auto cfg = core::parse_config(config_yaml, "control-fuzz.yaml", fx->dir.string());
  if (!cfg.ok()) fuzz::die(cfg.error().message());
  fx->cfg = std::move(*cfg);
  fx->alerts = alerts_of(fx->cfg);
  make_template();
  // The directory goes when the run ends, however it ends (a crash leaves it for inspection).
  std::atexit([] {
    std::error_code ec;
    fs::remove_all(fx->dir, ec);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::error_code ec;
  for (const char* suffix : {"-wal", "-shm"}) fs::remove(fx->work_db.string() + suffix, ec);
  // libFuzzer's timer signal can interrupt the copy (EINTR), which copy_file does not retry.
  for (int attempt = 0;; ++attempt) {
    if (fs::copy_file(fx->template_db, fx->work_db, fs::copy_options::overwrite_existing, ec)) {
      break;
    }
    if (ec != std::errc::interrupted || attempt == 100) {
      fuzz::die("can't copy the template database: " + ec.message());
    }
  }
  auto store = open_store(fx->work_db);
  core::breaker_registry registry(*store, fx->cfg.probation);
  if (auto s = registry.restore(); !s.ok()) fuzz::die(s.message());
  core::alert_router_options ro;
  ro.sidecar_id = sidecar_id;
  core::alert_router router(fx->alerts, *store, ro);  // not started: send_test works without

  std::int64_t now = start_unix_nano;
  sidecar::detail::control_hooks hooks;
  hooks.now_unix_nano = [&now] { return now += 1'000'000'000; };
  hooks.status = [&store, &registry] {
    v1::SidecarStatus s;
    s.set_version("fuzz");
    s.set_state_store(store->path().string());
    s.set_store_errors(registry.store_errors());
    return s;
  };
  // A reload re-reads the config; here it re-parses the one the daemon runs.
  hooks.reload = [] {
    auto c = core::parse_config(config_yaml, "control-fuzz.yaml", fx->dir.string());
    return c.ok() ? core::status::success() : c.error();
  };
  // The daemon pages about a settled approval (server.cpp); here the approval must exist and no
  // longer be pending.
  hooks.approval_settled = [&store](const std::string& id) {
    auto a = store->get_approval(id);
    if (!a.ok()) fuzz::die("settled approval '" + id + "' is not in the store");
    if (a->state == core::approval_state::pending) {
      fuzz::die("settled approval '" + id + "' is still pending");
    }
  };
  sidecar::detail::control_handler commands(registry, *store, router, fx->cfg.source,
                                            std::move(hooks));
  const sidecar::detail::control_service::handler handler = [&commands](const v1::ControlRequest& r,
                                                                        const std::string& who) {
    return commands.handle(r, who);
  };

  fuzz::byte_reader in(data, size);
  const std::string who = (in.u8() & 1) != 0 ? "unix:alice" : "key:operator-bob";
  for (int n = 0; n < max_requests && !in.empty(); ++n) {
    const std::string answer = sidecar::detail::answer_control_request(in.piece(), who, handler);
    v1::ControlResponse response;
    if (!response.ParseFromString(answer)) fuzz::die("an answer is not a ControlResponse");
    if (!response.ok() && response.error().empty()) fuzz::die("a refusal that gives no reason");
  }
  return 0;
}
