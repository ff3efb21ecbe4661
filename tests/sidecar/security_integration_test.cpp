// What the watched pipeline cannot do, against the real daemon (docs/security.md): reach the
// control socket as another user, talk to a tcp control socket without an operator's CURVE key
// (and not be logged), or read a configured secret anywhere the daemon shows something.
#include <catch2/catch.hpp>

#include <grp.h>
#include <httplib.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <loopwarden/client/breaker_watch.hpp>
#include <loopwarden/sidecar/control_client.hpp>

#include "daemon.hpp"

using namespace loopwarden;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using loopwarden::test::daemon_config;
using loopwarden::test::daemon_options;
using loopwarden::test::daemon_process;
using loopwarden::test::free_tcp_port;
using loopwarden::test::wait_until;

namespace {

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// connect(2) to the unix socket at `path` from a child process running as `uid`; the child's
// errno (0: connected).
int connect_as(uid_t uid, gid_t gid, const std::string& path) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Only async-signal-safe calls: the parent has threads.
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(250);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) ::_exit(251);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), std::min(path.size(), sizeof addr.sun_path - 1));
    const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    ::_exit(rc == 0 ? 0 : errno);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

}  // namespace

TEST_CASE("another user reaches the ingest socket but not the control socket",
          "[integration][sidecar][security]") {
  daemon_options o;
  // The pipeline's sockets open to everyone (ipc_mode 0666), and every directory above them
  // traversable: whatever stops another user below is the control directory's own mode.
  o.config = daemon_config();
  o.config.replace(o.config.find("transport:\n"), std::strlen("transport:\n"),
                   "transport:\n  ipc_mode: \"0666\"\n");
  o.before_start = [](const fs::path& dir) {
    fs::permissions(dir, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  };
  daemon_process d(o);
  for (const std::string& p : {d.state_dir(), d.state_dir() + "/run"}) {
    REQUIRE(::chmod(p.c_str(), 0711) == 0);
  }
  struct stat st {};
  REQUIRE(::stat(d.control_dir().c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
  const std::string control_sock = d.control_dir() + "/control.sock";
  const std::string ingest_sock = d.state_dir() + "/run/ingest.sock";
  // The daemon's own user connects (what `loopwarden status` does).
  CHECK(connect_as(::geteuid(), ::getegid(), control_sock) == 0);
  if (::geteuid() != 0) {
    WARN("SKIPPED: the other-user half needs root to switch to user 'nobody'");
    return;
  }
  const passwd* nobody = ::getpwnam("nobody");
  REQUIRE(nobody != nullptr);
  // The pipeline's user reaches the ingest socket (so the path is open to it) ...
  CHECK(connect_as(nobody->pw_uid, nobody->pw_gid, ingest_sock) == 0);
  // ... and is refused at the control directory, before it can even name the socket.
  CHECK(connect_as(nobody->pw_uid, nobody->pw_gid, control_sock) == EACCES);
}

TEST_CASE("a tcp control socket logs every refused client: a wrong key and a plaintext client",
          "[integration][sidecar][security]") {
  auto server_keys = sidecar::make_curve_keypair();
  auto operator_keys = sidecar::make_curve_keypair();
  auto stranger_keys = sidecar::make_curve_keypair();
  REQUIRE(server_keys.ok());
  REQUIRE(operator_keys.ok());
  REQUIRE(stranger_keys.ok());
  const std::string control = "tcp://127.0.0.1:" + std::to_string(free_tcp_port());
  daemon_options o;
  o.wait_ready = false;  // `status` goes to the ipc default; this daemon listens on tcp
  // daemon_config() has a transport: section already: the control keys go into it.
  o.config = daemon_config();
  o.config.replace(o.config.find("transport:\n"), std::strlen("transport:\n"),
                   "transport:\n  control: \"" + control +
                       "\"\n  control_curve:\n    secret_key_file: @DIR@/server.key\n"
                       "    operator_keys: [\"" +
                       operator_keys->public_key + "\"]\n");
  o.before_start = [&](const fs::path& dir) {
    std::ofstream((dir / "server.key").string()) << server_keys->secret_key << "\n";
  };
  daemon_process d(o);
  v1::ControlRequest status;
  status.mutable_status();
  sidecar::curve_credentials good{server_keys->public_key, operator_keys->secret_key};
  REQUIRE(wait_until(
      [&] {
        auto r = sidecar::send_control(control, status, 500ms, &good);
        return r.ok() && r->ok();
      },
      20s, 50ms));
  INFO("daemon log:\n" << d.log());
  CHECK(d.log().find("refused a control connection") == std::string::npos);

  SECTION("a key that is not an operator's is refused, and the log names the key") {
    sidecar::curve_credentials wrong{server_keys->public_key, stranger_keys->secret_key};
    auto r = sidecar::send_control(control, status, 500ms, &wrong);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == sdk::status_code::timeout);
    const std::string line = "refused a control connection from 127.0.0.1: key " +
                             stranger_keys->public_key + " is not an operator key";
    CHECK(wait_until([&] { return d.log().find(line) != std::string::npos; }, 5s));
    CHECK(d.log().find(operator_keys->public_key + " is not") == std::string::npos);
  }
  SECTION("a client without CURVE is refused and logged too") {
    auto r = sidecar::send_control(control, status, 500ms);
    REQUIRE_FALSE(r.ok());
    // libzmq reports it as a mechanism mismatch or as a handshake that failed before
    // authentication, depending on which side notices first.
    CHECK(wait_until(
        [&] {
          const std::string log = d.log();
          return log.find("refused a control connection on " + control + ": ") !=
                     std::string::npos &&
                 (log.find("the client does not use CURVE") != std::string::npos ||
                  log.find("a client without CURVE") != std::string::npos);
        },
        5s));
  }
  SECTION("a flood of refused clients is logged with a bound") {
    sidecar::curve_credentials wrong{server_keys->public_key, stranger_keys->secret_key};
    const auto flood_start = std::chrono::steady_clock::now();
    for (int i = 0; i < 30; ++i) (void)sidecar::send_control(control, status, 100ms, &wrong);
    // 20 lines per 10 s window, the rest counted.
    const auto count = [&] {
      const std::string log = d.log();
      std::size_t n = 0;
      for (auto at = log.find("refused a control connection"); at != std::string::npos;
           at = log.find("refused a control connection", at + 1)) {
        ++n;
      }
      return n;
    };
    CHECK(wait_until([&] { return count() >= 20; }, 5s));
    std::this_thread::sleep_for(300ms);
    const auto elapsed = std::chrono::steady_clock::now() - flood_start;
    INFO("flood took " << std::chrono::duration<double>(elapsed).count() << " s");
    // Within one 10 s window exactly 20; a machine so slow that a second window began may add
    // up to 20 more.
    if (elapsed < 9s) {
      CHECK(count() == 20);
    } else {
      CHECK(count() <= 40);
    }
  }
  // The operator is still answered.
  auto r = sidecar::send_control(control, status, 5s, &good);
  REQUIRE(r.ok());
  CHECK(r->ok());
}

TEST_CASE("configured secrets never appear in the log, status, explain, alert tests or http pages",
          "[integration][sidecar][security]") {
  const std::string path_token = "3f9c1d0e5a7b4c2d9e8f0a1b";
  const std::string query_token = "q-tok-5e6f7a8b9c0d";
  const std::string bearer_token = "b-tok-0a1b2c3d4e5f6a7b";
  const std::string routing_key = "R0UT1NGKEY0123456789abcdef012345";
  const std::vector<std::string> secrets = {path_token, query_token, bearer_token, routing_key};

  // A receiver that refuses every alert and quotes the request back, as some do.
  httplib::Server receiver;
  std::atomic<int> received{0};
  receiver.Post(R"(.*)", [&](const httplib::Request& req, httplib::Response& res) {
    ++received;
    res.status = 400;
    res.set_content("refused " + req.path + "?token=" + req.get_param_value("token") + " " +
                        req.get_header_value("Authorization") + " " + req.body.substr(0, 60),
                    "text/plain");
  });
  const int port = receiver.bind_to_any_port("127.0.0.1");
  REQUIRE(port > 0);
  std::thread receiver_thread([&] { receiver.listen_after_bind(); });
  struct stopper {
    httplib::Server& s;
    std::thread& t;
    ~stopper() {
      s.stop();
      t.join();
    }
  } stop_receiver{receiver, receiver_thread};
  const std::string base = "http://127.0.0.1:" + std::to_string(port);

  daemon_options o;
  // The fixture monitor quotes its `label` in its trip's evidence: it stands for any monitor
  // or error that happens to quote a configured secret (an agent's command line carrying the
  // token, a URL in a log line).
  o.config = daemon_config(
                 "  - name: fixture\n    plugin: fixture_monitor\n"
                 "    config: {label: \"Bearer " +
                 bearer_token + "\"}\n") +
             "alerts:\n  sinks:\n"
             "    - name: hook\n      type: webhook\n      url: \"" +
             base + "/hooks/" + path_token + "?token=" + query_token +
             "\"\n      headers: {Authorization: \"Bearer " + bearer_token +
             "\"}\n      max_attempts: 1\n"
             "    - name: pd\n      type: pagerduty\n      url: \"" +
             base + "/v2/enqueue\"\n      routing_key: \"" + routing_key +
             "\"\n      max_attempts: 1\n"
             "  routes:\n    - sinks: [hook, pd]\n";
  daemon_process d(o);
  // A host's breaker watch: the pipeline hears transitions and snapshots.
  std::mutex heard_mu;
  std::string heard;  // guarded by heard_mu; every transition's text
  auto watch = client::breaker_watch::create(
      {.endpoint = d.breakers(), .on_transition = [&](const v1::BreakerTransition& t) {
         std::lock_guard lock(heard_mu);
         heard += t.DebugString();
       }});
  REQUIRE(watch.ok());
  REQUIRE(wait_until([&] { return (*watch)->snapshot_sequence() > 0; }, 10s));
  test::raw_ingest_send(d, "metrics", test::metric_envelope("trainer", "run-1", 1, "trip"));
  REQUIRE(d.wait_status([](auto& r) { return test::breaker_open(r, "fixture.trip", "run-1"); }));
  // Both sinks were tried, and refused with the echo, which the daemon logs.
  REQUIRE(wait_until([&] { return received >= 2; }, 10s));
  REQUIRE(wait_until(
      [&] { return d.log().find("http 400 from " + base + ": refused") != std::string::npos; },
      10s));

  auto no_secret = [&](const std::string& where, const std::string& text) {
    INFO(where << ":\n" << text);
    for (const auto& s : secrets) {
      INFO("secret " << s);
      CHECK(text.find(s) == std::string::npos);
    }
  };
  auto redacted = [&](const std::string& where, const std::string& text) {
    no_secret(where, text);
    INFO(where << ":\n" << text);
    // JSON writes "<" and ">" as \u003c and \u003e.
    CHECK((text.find("<redacted>") != std::string::npos ||
           text.find("\\u003credacted\\u003e") != std::string::npos));
  };

  const std::string where = " --state-dir " + quoted(d.state_dir());
  auto lw = [&](const std::string& args) { return test::run_loopwarden(args + where, d.dir()); };
  SECTION("the log") { redacted("log", d.log()); }
  SECTION("the breakers socket: transitions and snapshots the hosts hear") {
    REQUIRE(wait_until([&] { return !(*watch)->current("run-1").open.empty(); }, 10s));
    const auto verdict = (*watch)->current("run-1");
    REQUIRE(verdict.open.at(0).evidence_size() > 0);
    CHECK(verdict.open.at(0).evidence(0).value() == "<redacted>");  // from a snapshot
    std::lock_guard lock(heard_mu);
    redacted("transitions", heard);
  }
  SECTION("status, its json and explain") {
    auto st = lw("status");
    CHECK(st.code == 0);
    no_secret("status", st.out + st.err);
    auto json = lw("status --json");
    CHECK(json.code == 0);
    redacted("status --json", json.out);
    auto ex = lw("explain fixture.trip --run run-1");
    CHECK(ex.code == 0);
    redacted("explain", ex.out);
    // The control socket's own answer, before any formatting.
    const auto r = d.status();
    const auto* b = test::find_breaker(r, "fixture.trip", "run-1");
    REQUIRE(b != nullptr);
    REQUIRE(b->evidence_size() > 0);
    CHECK(b->evidence(0).value() == "<redacted>");
  }
  SECTION("alert tests") {
    for (const std::string sink : {"hook", "pd"}) {
      auto t = lw("alerts test " + sink);
      CHECK(t.code != 0);  // the receiver refused it
      redacted("alerts test " + sink, t.out + t.err);
    }
  }
  SECTION("every http page") {
    const int http = d.http_port();
    REQUIRE(http > 0);
    httplib::Client cli("127.0.0.1", http);
    for (const std::string path : {"/", "/status", "/api/status", "/metrics"}) {
      auto r = cli.Get(path.c_str());
      REQUIRE(r);
      CHECK(r->status == 200);
      no_secret("GET " + path, r->body);
    }
    auto api = cli.Get("/api/status");
    REQUIRE(api);
    redacted("/api/status", api->body);
  }
}

TEST_CASE("the daemon's http endpoint refuses every writing method on every path",
          "[integration][sidecar][security][http]") {
  daemon_process d;
  test::raw_ingest_send(d, "metrics", test::metric_envelope("trainer", "run-1", 1, "trip"));
  REQUIRE(d.wait_status([](auto& r) { return test::breaker_open(r, "fixture.trip", "run-1"); }));
  const auto epoch = test::find_breaker(d.status(), "fixture.trip", "run-1")->epoch();
  const int http = d.http_port();
  REQUIRE(http > 0);
  httplib::Client cli("127.0.0.1", http);
  for (const std::string path :
       {"/", "/status", "/api/status", "/metrics", "/healthz", "/readyz"}) {
    std::vector<std::pair<std::string, httplib::Result>> results;
    results.emplace_back("POST", cli.Post(path.c_str(), "reset=fixture.trip", "text/plain"));
    results.emplace_back("PUT", cli.Put(path.c_str(), "{}", "application/json"));
    results.emplace_back("DELETE", cli.Delete(path.c_str()));
    results.emplace_back("PATCH", cli.Patch(path.c_str(), "{}", "application/json"));
    for (auto& [method, r] : results) {
      INFO(method << " " << path);
      REQUIRE(r);
      CHECK(r->status == 405);
      CHECK(r->get_header_value("Allow") == "GET, HEAD");
    }
  }
  // Paths that look like actions do not exist at all.
  for (const std::string path : {"/api/breakers/fixture.trip/reset", "/reset", "/reload"}) {
    INFO(path);
    auto r = cli.Post(path.c_str(), "", "text/plain");
    REQUIRE(r);
    CHECK(r->status == 404);
  }
  // Nothing changed: the breaker is open at the epoch it tripped with.
  // (The response outlives the pointer into it: find_breaker on a temporary would dangle.)
  const auto status = d.status();
  const auto* b = test::find_breaker(status, "fixture.trip", "run-1");
  REQUIRE(b != nullptr);
  CHECK(test::is_open(b));
  CHECK(b->epoch() == epoch);
}

TEST_CASE("a webhook url with credentials is refused without printing them",
          "[integration][sidecar][security]") {
  const fs::path dir = fs::temp_directory_path() / ("lw-sec-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string password = "pa55w0rd-0123456789";
  const std::string token = "tok0123456789abcdef0123";
  std::ofstream((dir / "lw.yaml").string())
      << "version: 1\nmonitors: []\nalerts:\n  sinks:\n"
         "    - {name: hook, type: webhook, url: \"https://ops:"
      << password << "@hooks.example.com/x/" << token << "\"}\n"
      << "  routes:\n    - sinks: [hook]\n";
  auto r = test::run_loopwarden("config check " + quoted((dir / "lw.yaml").string()), dir);
  INFO(r.out << r.err);
  CHECK(r.code != 0);
  CHECK((r.out + r.err).find("credentials in the URL are not supported") != std::string::npos);
  CHECK((r.out + r.err).find(password) == std::string::npos);
  CHECK((r.out + r.err).find(token) == std::string::npos);
  std::error_code ec;
  fs::remove_all(dir, ec);
}
