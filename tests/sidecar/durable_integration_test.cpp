// Integration tests of the durable-breakers issue against the real daemon (tests/sidecar/
// daemon.hpp): a trip survives kill -9 with its epoch and evidence, and its pending alert is
// delivered once after the restart (a real HTTP receiver in this process); approvals end to end
// through the gate and the command line; the audit chain of a real run verifies and a tampered
// copy is caught by `loopwarden audit verify`; /readyz, /metrics and the status page of the real
// daemon; a shadow monitor's breaker never reaches hosts.

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include <loopwarden/client/breaker_watch.hpp>
#include <loopwarden/client/gate_client.hpp>
#include <loopwarden/core/config.hpp>
#include <loopwarden/sidecar/server.hpp>

#include "daemon.hpp"

using namespace loopwarden;
using namespace std::chrono_literals;
using loopwarden::test::daemon_config;
using loopwarden::test::daemon_options;
using loopwarden::test::daemon_process;
using loopwarden::test::wait_until;
namespace fs = std::filesystem;

namespace {

// A webhook receiver on 127.0.0.1 that refuses (503) until accept() and records what it took.
class receiver {
 public:
  receiver() {
    server_.Post("/alerts", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu_);
      ++requests_;
      if (!accepting_) {
        res.status = 503;
        return;
      }
      bodies_.push_back(req.body);
      res.status = 200;
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~receiver() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  void accept() {
    std::lock_guard lock(mu_);
    accepting_ = true;
  }
  int requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::vector<nlohmann::json> delivered() const {
    std::lock_guard lock(mu_);
    std::vector<nlohmann::json> out;
    for (const auto& b : bodies_) out.push_back(nlohmann::json::parse(b));
    return out;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  bool accepting_ = false;
  int requests_ = 0;
  std::vector<std::string> bodies_;
};

std::string webhook_alerts(int port) {
  return "alerts:\n"
         "  sinks:\n"
         "    - name: hook\n"
         "      type: webhook\n"
         "      url: http://127.0.0.1:" +
         std::to_string(port) +
         "/alerts\n"
         "      timeout: 2s\n"
         "      backoff: {initial: 100ms, max: 200ms}\n"
         "      max_attempts: 1000\n"
         "  routes:\n"
         "    - sinks: [hook]\n";
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// A TCP port on 127.0.0.1 that nothing listens on (bound once by the kernel's choice, closed).
int unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

v1::ActionRequest shell(const std::string& command) {
  v1::ActionRequest a;
  a.set_kind(v1::ACTION_KIND_SHELL);
  a.set_tool("bash");
  a.set_command(command);
  return a;
}

// Runs `loopwarden ARGS --state-dir <the daemon's>`.
test::cli_result lw(const daemon_process& d, const std::string& args) {
  auto r = test::run_loopwarden(args + " --state-dir " + quoted(d.state_dir()), d.dir());
  UNSCOPED_INFO("loopwarden " << args << " -> exit " << r.code << "\nstdout:\n"
                              << r.out << "stderr:\n"
                              << r.err);
  return r;
}

}  // namespace

TEST_CASE("kill -9 after a trip: the breaker is still open, and its alert arrives once",
          "[integration][sidecar][durable]") {
  receiver hook;
  daemon_options o;
  o.config = daemon_config() + webhook_alerts(hook.port());
  daemon_process d(o);
  test::raw_ingest_send(d, "metrics", test::metric_envelope("trainer/rank0", "run-1", 1, "trip"));
  REQUIRE(
      d.wait_status([](const auto& r) { return test::breaker_open(r, "fixture.trip", "run-1"); }));
  const auto before = *test::find_breaker(d.status(), "fixture.trip", "run-1");
  // The receiver is refusing: the alert is pending (retried) when the daemon dies.
  REQUIRE(wait_until([&] { return hook.requests() >= 1; }, 10s));
  d.kill();

  hook.accept();
  d.restart();
  const auto after_status = d.status();
  const auto* after = test::find_breaker(after_status, "fixture.trip", "run-1");
  REQUIRE(after != nullptr);
  CHECK(after->state() == v1::BREAKER_STATE_OPEN);
  CHECK(after->epoch() == before.epoch());
  CHECK(after->reason() == before.reason());
  REQUIRE(after->evidence_size() == before.evidence_size());
  for (int i = 0; i < before.evidence_size(); ++i) {
    CHECK(after->evidence(i).key() == before.evidence(i).key());
    CHECK(after->evidence(i).value() == before.evidence(i).value());
  }
  // Hosts hear it too: the restored breaker is in the first snapshot.
  auto watch = client::breaker_watch::create({.endpoint = d.breakers(), .timeout = 2000ms});
  REQUIRE(watch.ok());
  REQUIRE(wait_until([&] { return (*watch)->should_stop("run-1") && !(*watch)->silent(); }, 10s));

  REQUIRE(wait_until([&] { return !hook.delivered().empty(); }, 15s));
  std::this_thread::sleep_for(1500ms);  // room for a duplicate, were there going to be one
  const auto got = hook.delivered();
  REQUIRE(got.size() == 1);
  CHECK(got[0].value("breaker", "") == "fixture.trip");
  CHECK(got[0].value("run_id", "") == "run-1");
  CHECK(got[0].value("kind", "") == "trigger");
  CHECK_FALSE(got[0].value("fingerprint", "").empty());
}

TEST_CASE("an action that needs approval waits for a human, then runs once",
          "[integration][sidecar][approvals]") {
  receiver hook;
  hook.accept();
  daemon_options o;
  o.config = daemon_config() + webhook_alerts(hook.port());
  daemon_process d(o);
  auto gate = client::gate_client::create({.endpoint = d.gate(), .timeout = 5000ms});
  REQUIRE(gate.ok());
  const auto action = shell("please approve rm -rf build/");
  const auto first = (*gate)->ask(action);
  REQUIRE_FALSE(first.timed_out);
  REQUIRE(first.verdict == sdk::gate_verdict::require_approval);
  REQUIRE_FALSE(first.approval_id.empty());

  auto pending = lw(d, "approvals");
  CHECK(pending.code == 0);
  CHECK(pending.out.find(first.approval_id) != std::string::npos);
  CHECK(pending.out.find("PENDING") != std::string::npos);
  CHECK(pending.out.find("please approve rm -rf build/") != std::string::npos);

  // Still pending: asking again with the id keeps the host waiting.
  const auto waiting = (*gate)->ask(action, 5000ms, first.approval_id);
  CHECK(waiting.verdict == sdk::gate_verdict::require_approval);

  CHECK(lw(d, "approve " + first.approval_id).code == 2);  // --reason is required
  auto ok = lw(d, "approve " + first.approval_id + " --reason 'build dir only'");
  REQUIRE(ok.code == 0);
  const auto allowed = (*gate)->ask(action, 5000ms, first.approval_id);
  CHECK(allowed.verdict == sdk::gate_verdict::allow);
  CHECK(allowed.reason.find("build dir only") != std::string::npos);
  const auto again = (*gate)->ask(action, 5000ms, first.approval_id);
  CHECK(again.verdict == sdk::gate_verdict::deny);  // one approval, one action

  // A denial reaches the host with the operator's reason.
  const auto second = (*gate)->ask(shell("please approve git push --force"));
  REQUIRE(second.verdict == sdk::gate_verdict::require_approval);
  REQUIRE(lw(d, "deny " + second.approval_id + " --reason 'shared history'").code == 0);
  const auto denied =
      (*gate)->ask(shell("please approve git push --force"), 5000ms, second.approval_id);
  CHECK(denied.verdict == sdk::gate_verdict::deny);
  CHECK(denied.reason.find("shared history") != std::string::npos);

  auto all = lw(d, "approvals --all --json");
  REQUIRE(all.code == 0);
  CHECK(all.out.find("\"used\"") != std::string::npos);
  CHECK(all.out.find("\"denied\"") != std::string::npos);

  // On-call was paged for each approval, and each page was resolved when it was decided: the
  // same fingerprint, firing then resolved, with who decided and why.
  const auto paged = [&](const std::string& id, const std::string& status) {
    for (const auto& a : hook.delivered()) {
      if (a.value("kind", "") == "approval" && a.value("status", "") == status &&
          a.value("summary", "").find(id) != std::string::npos) {
        return a;
      }
    }
    return nlohmann::json();
  };
  for (const auto& [id, resolution] :
       std::vector<std::pair<std::string, std::string>>{
           {first.approval_id, "approved by "}, {second.approval_id, "denied by "}}) {
    INFO(id);
    REQUIRE(wait_until([&] { return !paged(id, "resolved").is_null(); }, 15s));
    const auto fired = paged(id, "firing");
    const auto resolved = paged(id, "resolved");
    REQUIRE_FALSE(fired.is_null());
    CHECK(fired.value("fingerprint", "") == resolved.value("fingerprint", ""));
    CHECK(resolved.value("resolution", "").starts_with(resolution));
  }
  CHECK(paged(first.approval_id, "resolved").value("resolution", "").ends_with(": build dir only"));
}

TEST_CASE("the audit chain of a real run verifies, and a tampered copy names the bad record",
          "[integration][sidecar][audit]") {
  daemon_process d;
  test::raw_ingest_send(d, "metrics", test::metric_envelope("trainer", "run-1", 1, "trip"));
  REQUIRE(
      d.wait_status([](const auto& r) { return test::breaker_open(r, "fixture.trip", "run-1"); }));
  REQUIRE(lw(d, "ack fixture.trip --run run-1 --note mine").code == 0);
  REQUIRE(lw(d, "reset fixture.trip --run run-1 --reason 'fixed the data'").code == 0);
  auto status = lw(d, "status --json");
  REQUIRE(status.code == 0);
  const auto head = nlohmann::json::parse(status.out)["sidecar"];
  const std::string anchor =
      std::to_string(std::stoull(head["audit_head_seq"].get<std::string>())) + ":" +
      head["audit_head_hash"].get<std::string>();

  auto ok = lw(d, "audit verify --expect-head " + anchor);
  CHECK(ok.code == 0);
  CHECK(ok.out.find("chain intact") != std::string::npos);
  auto exported = lw(d, "audit export");
  REQUIRE(exported.code == 0);
  for (const char* kind : {"daemon_start", "\"trip\"", "\"ack\"", "\"reset\""}) {
    CHECK(exported.out.find(kind) != std::string::npos);
  }

  // Edit the reset's reason in a copy of the database.
  d.stop();
  const fs::path copy = fs::path(d.dir()) / "copy.db";
  fs::copy_file(fs::path(d.state_dir()) / "loopwarden.db", copy);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(copy.c_str(), &db) == SQLITE_OK);
  // The append-only trigger guards against accidents, not tampering: a tamperer drops it first.
  REQUIRE(sqlite3_exec(db, "DROP TRIGGER audit_is_append_only_update", nullptr, nullptr, nullptr) ==
          SQLITE_OK);
  char* error = nullptr;
  const int rc = sqlite3_exec(
      db,
      "UPDATE audit SET payload_json = replace(payload_json, 'fixed the data', 'nothing') "
      "WHERE kind = 'reset'",
      nullptr, nullptr, &error);
  INFO((error != nullptr ? error : ""));
  REQUIRE(rc == SQLITE_OK);
  sqlite3_free(error);
  sqlite3_close(db);
  auto broken = test::run_loopwarden("audit verify --db " + quoted(copy.string()), d.dir());
  INFO(broken.out << broken.err);
  CHECK(broken.code == 1);
  CHECK(broken.out.find("BROKEN") != std::string::npos);
  CHECK(broken.out.find("edited") != std::string::npos);
}

TEST_CASE("the real daemon's HTTP endpoint: ready, metrics and the status page",
          "[integration][sidecar][http]") {
  daemon_process d;
  test::raw_ingest_send(d, "metrics", test::metric_envelope("trainer", "run-1", 1, "trip"));
  REQUIRE(
      d.wait_status([](const auto& r) { return test::breaker_open(r, "fixture.trip", "run-1"); }));
  const int port = d.http_port();
  REQUIRE(port > 0);
  httplib::Client http("127.0.0.1", port);
  auto ready = http.Get("/readyz");
  REQUIRE(ready);
  CHECK(ready->status == 200);
  auto health = http.Get("/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
  auto metrics = http.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->status == 200);
  CHECK(metrics->body.find("fixture.trip") != std::string::npos);
  auto page = http.Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->body.find("fixture.trip") != std::string::npos);
  // Read-only: nothing on HTTP changes state.
  auto post = http.Post("/", "reset", "text/plain");
  REQUIRE(post);
  CHECK(post->status == 405);
  CHECK(test::breaker_open(d.status(), "fixture.trip", "run-1"));
}

TEST_CASE("a shadow monitor's breaker is recorded and shown but never reaches hosts",
          "[integration][sidecar][shadow]") {
  daemon_options o;
  o.config = daemon_config("  - name: trial\n    plugin: fixture_monitor\n    mode: shadow\n");
  daemon_process d(o);
  auto watch = client::breaker_watch::create({.endpoint = d.breakers(), .timeout = 2000ms});
  REQUIRE(watch.ok());
  REQUIRE(wait_until([&] { return (*watch)->last_message().has_value(); }, 10s));
  test::raw_ingest_send(d, "metrics", test::metric_envelope("trainer", "run-1", 1, "trip"));
  REQUIRE(d.wait_status(
      [](const auto& r) { return test::breaker_open(r, "shadow:fixture.trip", "run-1"); }));
  const auto snapshots = (*watch)->stats().snapshots;
  REQUIRE(wait_until([&] { return (*watch)->stats().snapshots >= snapshots + 3; }, 10s));
  CHECK_FALSE((*watch)->should_stop("run-1"));
  CHECK((*watch)->current("run-1").open.empty());
  CHECK((*watch)->stats().transitions == 0);
  auto status = lw(d, "status");
  CHECK(status.out.find("[shadow]") != std::string::npos);
}

TEST_CASE("loopwarden alerts test sends one test alert and reports the receiver's answer",
          "[integration][sidecar][alerts]") {
  receiver hook;
  hook.accept();
  // Two sinks: `hook` (listening) and `gone` (nothing listens on its port).
  daemon_options o;
  o.config = daemon_config() +
             "alerts:\n"
             "  sinks:\n"
             "    - {name: hook, type: webhook, url: \"http://127.0.0.1:" +
             std::to_string(hook.port()) +
             "/alerts\"}\n"
             "    - {name: gone, type: webhook, timeout: 1s, url: \"http://127.0.0.1:" +
             std::to_string(unused_port()) +
             "/alerts\"}\n"
             "  routes:\n"
             "    - sinks: [hook]\n";
  daemon_process d(o);
  auto ok = lw(d, "alerts test hook");
  CHECK(ok.code == 0);
  CHECK(ok.out.find("test alert delivered through 'hook'") != std::string::npos);
  REQUIRE(hook.delivered().size() == 1);
  CHECK(hook.delivered()[0].value("kind", "") == "test");

  auto failed = lw(d, "alerts test gone");
  CHECK(failed.code == 1);
  CHECK(failed.err.find("test alert through 'gone' failed") != std::string::npos);
  auto unknown = lw(d, "alerts test nosuchsink");
  CHECK(unknown.code == 1);
  CHECK(unknown.err.find("nosuchsink") != std::string::npos);
}

TEST_CASE("the daemon's own sections are checked with the field and the line",
          "[sidecar][config]") {
  auto check = [](const std::string& yaml) {
    auto cfg = core::parse_config("version: 1\n" + yaml, "loopwarden.yaml");
    REQUIRE(cfg.ok());
    return sidecar::validate_sidecar_sections(*cfg);
  };
  CHECK(check("state_sync: normal\n").ok());
  auto sync = check("state_sync: sometimes\n");
  REQUIRE_FALSE(sync.ok());
  CHECK(sync.message().find("state_sync") != std::string::npos);
  CHECK(sync.message().find("expected full or normal") != std::string::npos);
  CHECK(sync.message().find("loopwarden.yaml:2") != std::string::npos);
  auto ttl = check("approvals:\n  ttl: soon\n");
  REQUIRE_FALSE(ttl.ok());
  CHECK(ttl.message().find("approvals.ttl") != std::string::npos);
  auto http = check("http:\n  listen: \"9464\"\n");
  REQUIRE_FALSE(http.ok());
  CHECK(http.message().find("http.listen") != std::string::npos);
  auto alerts = check("alerts:\n  sinks:\n    - {name: x, type: carrier_pigeon}\n");
  REQUIRE_FALSE(alerts.ok());
  CHECK(alerts.message().find("alerts.sinks[0].type") != std::string::npos);
}

namespace {

// The fixture monitor's "samples" gauge (the samples it has seen, restored ones included).
double fixture_samples(const v1::ControlResponse& r) {
  for (const auto& m : r.sidecar().monitors()) {
    if (m.name() != "fixture") continue;
    for (const auto& g : m.gauges()) {
      if (g.name() == "samples") return g.value();
    }
  }
  return -1.0;
}

}  // namespace

TEST_CASE("a monitor's learned state survives a restart and a kill -9",
          "[integration][sidecar][durable]") {
  daemon_options o;
  o.config = daemon_config() + "monitor_state_interval: 100ms\n";
  daemon_process d(o);
  for (std::uint64_t seq = 1; seq <= 3; ++seq) {
    test::raw_ingest_send(d, "metrics", test::metric_envelope("trainer/rank0", "run-1", seq, "x"));
  }
  REQUIRE(d.wait_status([](const auto& r) { return fixture_samples(r) == 3.0; }));

  SECTION("a clean stop saves the state after the drain") {
    CHECK(d.stop() == 0);
    d.restart();
  }
  SECTION("kill -9 loses at most one save interval") {
    std::this_thread::sleep_for(500ms);  // several save intervals
    d.kill();
    d.restart();
  }
  CHECK_THAT(d.log(), Catch::Contains("restored the learned state of 1 of 1 saved monitor(s)"));
  test::raw_ingest_send(d, "metrics", test::metric_envelope("trainer/rank0", "run-1", 4, "x"));
  REQUIRE(d.wait_status([](const auto& r) { return fixture_samples(r) == 4.0; }));
}
