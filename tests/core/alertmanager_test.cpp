// The router against the real Alertmanager (Debian's prometheus-alertmanager), started as a child
// process: a trip shows up as a firing alert with the right labels, and its reset resolves it.
#include <catch2/catch.hpp>

// See alert_sinks_test.cpp: httplib's classes must be compiled with the library's own options.
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif
#include <httplib.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <loopwarden/core/alert_config.hpp>
#include <loopwarden/core/alert_router.hpp>
#include <loopwarden/core/breaker_registry.hpp>

#include "../wait_until.hpp"

extern char** environ;

using namespace loopwarden;
using namespace std::chrono_literals;
using test::wait_until;
using json = nlohmann::json;

namespace {

constexpr const char* alertmanager_binary = "/usr/bin/prometheus-alertmanager";

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() /
           ("lw-am-" + std::to_string(rd()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// A TCP port that was free a moment ago (the kernel picked it for a socket we closed).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The Alertmanager child process, killed (and reaped) when this goes out of scope, whatever the
// test's outcome.
class alertmanager_process {
 public:
  alertmanager_process(const std::filesystem::path& dir, int port)
      : log_(dir / "alertmanager.log"), port_(port) {
    const auto config = dir / "alertmanager.yml";
    std::ofstream(config) << "route:\n"
                             "  receiver: blackhole\n"
                             "  group_wait: 1s\n"
                             "receivers:\n"
                             "  - name: blackhole\n";
    std::filesystem::create_directories(dir / "data");
    std::vector<std::string> args = {alertmanager_binary,
                                     "--config.file=" + config.string(),
                                     "--web.listen-address=127.0.0.1:" + std::to_string(port),
                                     "--cluster.listen-address=",
                                     "--storage.path=" + (dir / "data").string(),
                                     "--log.level=warn"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    const int rc =
        ::posix_spawn(&pid_, alertmanager_binary, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    INFO("posix_spawn " << alertmanager_binary << ": " << rc);
    REQUIRE(rc == 0);
  }

  ~alertmanager_process() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    int st = 0;
    while (::waitpid(pid_, &st, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &st, 0);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
  }

  alertmanager_process(const alertmanager_process&) = delete;
  alertmanager_process& operator=(const alertmanager_process&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string log() const { return read_file(log_); }

  // Polls /-/ready until Alertmanager answers 200; false after `limit` or if it exited.
  bool wait_ready(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      httplib::Client c(url());
      c.set_connection_timeout(1s);
      if (auto res = c.Get("/-/ready"); res && res->status == 200) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  // The alerts Alertmanager reports now (active, silenced, inhibited and unprocessed; resolved
  // ones are not listed).
  json alerts() const {
    httplib::Client c(url());
    c.set_connection_timeout(2s);
    c.set_read_timeout(2s);
    auto res = c.Get("/api/v2/alerts");
    if (!res || res->status != 200) return json();
    return json::parse(res->body);
  }

 private:
  std::filesystem::path log_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// The alert of `breaker` in an /api/v2/alerts answer, if listed.
std::optional<json> find_alert(const json& alerts, const std::string& breaker) {
  if (!alerts.is_array()) return std::nullopt;
  for (const auto& a : alerts) {
    if (a["labels"].value("breaker", "") == breaker) return a;
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("a trip fires in the real alertmanager and its reset resolves it",
          "[alerts][alertmanager][integration]") {
  REQUIRE(std::filesystem::exists(alertmanager_binary));
  temp_dir dir;
  alertmanager_process am(dir.path, free_port());
  const bool ready = am.wait_ready(30s);
  INFO("alertmanager log:\n" << am.log());
  REQUIRE(ready);

  core::alerts_config cfg;
  cfg.sidecar_id = "it-box";
  cfg.runbook_url = "https://runbooks.example/lw.md";
  cfg.resend_interval = 1s;
  core::alert_sink_config sink;
  sink.name = "am";
  sink.type = core::alert_sink_type::alertmanager;
  sink.url = am.url();
  sink.backoff_initial = 100ms;
  sink.backoff_max = 1s;
  cfg.sinks.push_back(sink);
  core::alert_route route;
  route.sinks = {"am"};
  cfg.routes.push_back(route);

  // The daemon's wiring in miniature: the registry's transitions go through the planner into the
  // outbox, then wake the router; re-sends list the registry's open breakers.
  core::memory_breaker_store store;
  core::breaker_registry registry(store, 0ns);
  core::memory_alert_outbox outbox;
  const auto planner = core::make_alert_planner(cfg, "ignored");
  core::alert_router_options options;
  options.sidecar_id = "ignored";
  options.poll_interval = 100ms;
  std::mutex listed_mu;
  int listed = 0;  // guarded by listed_mu: re-send rounds so far
  options.open_breakers = [&] {
    {
      std::lock_guard lock(listed_mu);
      ++listed;
    }
    const auto snap = registry.snapshot();
    return std::vector<v1::BreakerStatus>(snap.breakers().begin(), snap.breakers().end());
  };
  core::alert_router router(cfg, outbox, options);
  registry.add_listener([&](const v1::BreakerTransition& t) {
    REQUIRE(outbox.enqueue(planner(t)).ok());
    router.notify();
  });
  router.start();

  const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  core::trip_input in;
  in.breaker = "training.collapse";
  in.run_id = "run-42";
  in.monitor = "collapse";
  in.reason = "variance collapsed";
  in.evidence = {{"variance", "0.01"}};
  in.action = sdk::breaker_action::halt;
  in.severity = sdk::severity::critical;
  in.time_unix_nano = now;
  auto trip = registry.trip(in);
  REQUIRE(trip);
  const std::string fingerprint = outbox.entries().at(0).alert.fingerprint;

  std::optional<json> firing;
  const bool fired = wait_until(
      [&] {
        firing = find_alert(am.alerts(), "training.collapse");
        return firing && (*firing)["status"]["state"] == "active";
      },
      20s, 50ms);
  INFO("alertmanager log:\n" << am.log());
  REQUIRE(fired);
  CHECK((*firing)["labels"] == json({{"alertname", "LoopwardenBreakerOpen"},
                                     {"breaker", "training.collapse"},
                                     {"monitor", "collapse"},
                                     {"run_id", "run-42"},
                                     {"severity", "critical"},
                                     {"sidecar", "it-box"},
                                     {"incident", fingerprint}}));
  CHECK((*firing)["annotations"]["reason"] == "variance collapsed");
  CHECK((*firing)["annotations"]["runbook_url"] ==
        "https://runbooks.example/lw.md#training.collapse");
  CHECK((*firing)["generatorURL"] == "https://runbooks.example/lw.md#training.collapse");

  // Re-sends keep it firing: wait for at least one, then it must still be active.
  REQUIRE(wait_until([&] { return router.stats().at(0).resent >= 1; }, 10s));
  REQUIRE(find_alert(am.alerts(), "training.collapse"));

  auto reset = registry.reset({"training.collapse", "run-42"}, "alice", "false alarm", now + 1);
  REQUIRE(reset.ok());
  const bool resolved =
      wait_until([&] { return !find_alert(am.alerts(), "training.collapse").has_value(); }, 20s,
                 50ms);
  INFO("alertmanager log:\n" << am.log());
  CHECK(resolved);
  // Re-send rounds after the reset do not bring it back.
  CHECK(wait_until([&] { return outbox.pending_count() == 0; }, 10s));
  const auto resent = router.stats().at(0).resent;
  auto rounds = [&] {
    std::lock_guard lock(listed_mu);
    return listed;
  };
  const int seen = rounds();
  REQUIRE(wait_until([&] { return rounds() >= seen + 2; }, 10s));
  CHECK_FALSE(find_alert(am.alerts(), "training.collapse").has_value());
  CHECK(router.stats().at(0).resent == resent);
  router.stop();
  CHECK(router.stats().at(0).sent == 2);
  CHECK(router.stats().at(0).failed == 0);
}
