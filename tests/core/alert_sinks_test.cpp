// The HTTP sinks against a real local receiver (httplib::Server on 127.0.0.1): the exact payload
// each receiver gets, retries, Retry-After, fallback, the queue bound, TLS, stop() and the
// Alertmanager re-sends.
#include <catch2/catch.hpp>

// core links cpp-httplib through pkg-config, and those compile definitions do not reach this test
// target; the library's classes must be compiled here with the options it was built with
// (Debian's libcpp-httplib: OpenSSL, zlib, brotli), or their layouts differ.
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

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <loopwarden/core/alert_config.hpp>
#include <loopwarden/core/alert_router.hpp>
#include <loopwarden/core/breaker_registry.hpp>

#include "../wait_until.hpp"

using namespace loopwarden;
using namespace std::chrono_literals;
using test::wait_until;
using core::alert_sink_type;
using core::alerts_config;
using core::memory_alert_outbox;
using core::outbox_alert;
using json = nlohmann::json;

namespace {

// A local HTTP receiver. Records every request; `answer` decides the response to request n
// (0-based). hold() makes requests wait until release(), to stand in for a hung receiver.
class receiver {
 public:
  struct request {
    std::string path;
    std::string body;
    httplib::Headers headers;
    std::chrono::steady_clock::time_point at;
    // Also the wall clock: the router schedules retries in wall time (the outbox persists the
    // next attempt's time across restarts), so a Retry-After floor holds on this clock, and the
    // two can drift apart by a few ms a second while NTP slews.
    std::chrono::system_clock::time_point wall;
  };
  using script = std::function<void(std::size_t n, httplib::Response&)>;

  explicit receiver(script answer = nullptr) : answer_(std::move(answer)) {
    setup(server_);
    start(server_);
  }
  // A TLS receiver with the given certificate and key files.
  receiver(const std::string& cert, const std::string& key, script answer)
      : answer_(std::move(answer)),
        tls_server_(std::make_unique<httplib::SSLServer>(cert.c_str(), key.c_str())) {
    REQUIRE(tls_server_->is_valid());
    setup(*tls_server_);
    start(*tls_server_);
  }
  ~receiver() {
    release();
    (tls_server_ ? static_cast<httplib::Server&>(*tls_server_) : server_).stop();
    thread_.join();
  }

  int port() const { return port_; }
  std::string url(const std::string& path = "/") const {
    return std::string(tls_server_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) +
           path;
  }

  std::vector<request> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::size_t count() const {
    std::lock_guard lock(mu_);
    return requests_.size();
  }
  json body(std::size_t i) const { return json::parse(requests().at(i).body); }

  // Waits until at least `n` requests arrived; false after `limit`.
  bool wait_for(std::size_t n, std::chrono::milliseconds limit = 10s) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return requests_.size() >= n; });
  }

  void hold() {
    std::lock_guard lock(mu_);
    held_ = true;
  }
  void release() {
    {
      std::lock_guard lock(mu_);
      held_ = false;
    }
    cv_.notify_all();
  }

 private:
  void setup(httplib::Server& s) {
    s.Post(R"(.*)", [this](const httplib::Request& req, httplib::Response& res) {
      std::size_t n = 0;
      {
        std::unique_lock lock(mu_);
        n = requests_.size();
        requests_.push_back({req.path, req.body, req.headers, std::chrono::steady_clock::now(),
                             std::chrono::system_clock::now()});
        cv_.notify_all();
        cv_.wait(lock, [&] { return !held_; });
      }
      res.status = 200;
      if (answer_) answer_(n, res);
    });
  }
  void start(httplib::Server& s) {
    port_ = s.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([&s] { s.listen_after_bind(); });
    // stop() does nothing before the accept loop runs, so wait for it (connections queue
    // meanwhile: the socket is bound and listening already).
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!s.is_running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    REQUIRE(s.is_running());
  }

  script answer_;
  httplib::Server server_;
  std::unique_ptr<httplib::SSLServer> tls_server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<request> requests_;  // guarded by mu_
  bool held_ = false;              // guarded by mu_
};

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() /
           ("lw-sinks-" + std::to_string(rd()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

core::alert_sink_config sink(std::string name, alert_sink_type type, std::string url) {
  core::alert_sink_config s;
  s.name = std::move(name);
  s.type = type;
  s.url = std::move(url);
  s.backoff_initial = 10ms;
  s.backoff_max = 50ms;
  s.timeout = 5s;
  return s;
}

alerts_config config_with(std::vector<core::alert_sink_config> sinks,
                          std::vector<std::string> routed) {
  alerts_config cfg;
  cfg.sidecar_id = "box-1";
  cfg.cluster = "eu-1";
  cfg.runbook_url = "https://runbooks.example/lw.md";
  cfg.sinks = std::move(sinks);
  core::alert_route r;
  r.sinks = std::move(routed);
  cfg.routes.push_back(r);
  return cfg;
}

core::alert_router_options fast_options() {
  core::alert_router_options o;
  o.sidecar_id = "daemon-id";
  o.poll_interval = 20ms;
  return o;
}

// 2023-11-14T22:13:20Z
constexpr std::int64_t fixed_now = 1'700'000'000'000'000'000;

core::trip_input make_trip(std::string name, std::int64_t t = fixed_now - 5'000'000'000) {
  core::trip_input in;
  in.breaker = std::move(name);
  in.run_id = "run-7";
  in.monitor = "collapse";
  in.reason = "variance fell below 5% of its baseline";
  in.evidence = {{"variance", "0.012"}, {"baseline", "0.31"}};
  in.action = sdk::breaker_action::rollback;
  in.severity = sdk::severity::critical;
  in.time_unix_nano = t;
  return in;
}

struct registry_fixture {
  core::memory_breaker_store store;
  core::breaker_registry reg{store, std::chrono::minutes(5)};
};

outbox_alert test_alert(const alerts_config& cfg, const std::string& sink_name, std::int64_t n) {
  return core::make_test_alert(cfg, sink_name, "box", fixed_now + n);
}

// A port nothing listens on: bound by a receiver that is gone again.
int closed_port() {
  int port = 0;
  {
    receiver r;
    port = r.port();
  }
  return port;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Payload shapes

TEST_CASE("a webhook sink posts the sink-neutral alert with its configured headers", "[alerts]") {
  receiver rx;
  auto hook = sink("hook", alert_sink_type::webhook, rx.url("/in?team=ml"));
  hook.headers = {{"Authorization", "Bearer s3cret"}, {"X-Team", "ml"}};
  const auto cfg = config_with({hook}, {"hook"});
  registry_fixture f;
  auto trip = f.reg.trip(make_trip("training.collapse"));
  REQUIRE(trip);
  memory_alert_outbox box;
  const auto rows = core::make_alert_planner(cfg, "daemon-id")(*trip);
  REQUIRE(box.enqueue(rows).ok());

  core::alert_router router(cfg, box, fast_options());
  router.start();
  REQUIRE(rx.wait_for(1));
  REQUIRE(wait_until([&] { return box.pending_count() == 0; }));
  router.stop();

  const auto req = rx.requests().at(0);
  CHECK(req.path == "/in");
  CHECK(req.headers.find("Authorization")->second == "Bearer s3cret");
  CHECK(req.headers.find("X-Team")->second == "ml");
  CHECK(req.headers.find("Content-Type")->second == "application/json");
  CHECK(req.headers.find("User-Agent")->second.rfind("loopwarden/", 0) == 0);
  const json expected = json::parse(R"({
    "version": 1,
    "kind": "trigger",
    "status": "firing",
    "shadow": false,
    "summary": "training.collapse OPEN (run run-7): rollback, critical: variance fell below 5% of its baseline",
    "breaker": "training.collapse",
    "run_id": "run-7",
    "scope": "run",
    "monitor": "collapse",
    "state": "open",
    "previous_state": "closed",
    "cause": "trip",
    "action": "rollback",
    "severity": "critical",
    "reason": "variance fell below 5% of its baseline",
    "evidence": [{"key": "variance", "value": "0.012"}, {"key": "baseline", "value": "0.31"}],
    "epoch": 1,
    "trips": 1,
    "time": "2023-11-14T22:13:15.000Z",
    "time_unix_nano": 1699999995000000000,
    "runbook_url": "https://runbooks.example/lw.md#training.collapse",
    "sidecar_id": "box-1",
    "cluster": "eu-1"
  })");
  json got = json::parse(req.body);
  CHECK(got["fingerprint"] == rows[0].fingerprint);
  got.erase("fingerprint");
  CHECK(got == expected);
  CHECK(router.stats().at(0).sent == 1);
}

TEST_CASE("a slack sink posts a readable text and blocks with breaker, reason, evidence, runbook",
          "[alerts]") {
  receiver rx;
  const auto cfg =
      config_with({sink("chat", alert_sink_type::slack, rx.url("/services/T/B/X"))}, {"chat"});
  registry_fixture f;
  auto in = make_trip("agent.destructive");
  in.reason = "rm -rf <root> & friends";
  auto trip = f.reg.trip(in);
  REQUIRE(trip);
  memory_alert_outbox box;
  REQUIRE(box.enqueue(core::make_alert_planner(cfg, "x")(*trip)).ok());
  core::alert_router router(cfg, box, fast_options());
  router.start();
  REQUIRE(rx.wait_for(1));
  router.stop();

  const std::string raw = rx.requests().at(0).body;
  for (unsigned char c : raw) REQUIRE(c < 0x80);  // plain text: no emoji
  const json got = json::parse(raw);
  CHECK(got["text"] ==
        "agent.destructive OPEN (run run-7): rollback, critical: rm -rf <root> & friends");
  const json& blocks = got["blocks"];
  REQUIRE(blocks.is_array());
  REQUIRE(blocks.size() == 5);
  CHECK(blocks[0] == json::parse(R"({"type": "section", "text": {"type": "mrkdwn",
      "text": "*agent.destructive OPEN (run run-7): rollback, critical: rm -rf &lt;root&gt; &amp; friends*"}})"));
  CHECK(blocks[1]["fields"] == json::parse(R"([
      {"type": "mrkdwn", "text": "*Breaker*\nagent.destructive"},
      {"type": "mrkdwn", "text": "*Run*\nrun-7"},
      {"type": "mrkdwn", "text": "*State*\nopen"},
      {"type": "mrkdwn", "text": "*Action*\nrollback"},
      {"type": "mrkdwn", "text": "*Severity*\ncritical"},
      {"type": "mrkdwn", "text": "*Monitor*\ncollapse"}])"));
  CHECK(blocks[2]["text"]["text"] == "*Reason*\nrm -rf &lt;root&gt; &amp; friends");
  CHECK(blocks[3]["text"]["text"] == "*Evidence*\n- variance: `0.012`\n- baseline: `0.31`");
  CHECK(blocks[4]["type"] == "context");
}

TEST_CASE("a slack message ends with a runbook link and the fingerprint", "[alerts]") {
  receiver rx;
  const auto cfg = config_with({sink("chat", alert_sink_type::slack, rx.url("/hook"))}, {"chat"});
  registry_fixture f;
  auto trip = f.reg.trip(make_trip("training.collapse"));
  REQUIRE(trip);
  memory_alert_outbox box;
  const auto rows = core::make_alert_planner(cfg, "x")(*trip);
  REQUIRE(box.enqueue(rows).ok());
  core::alert_router router(cfg, box, fast_options());
  router.start();
  REQUIRE(rx.wait_for(1));
  router.stop();
  const json blocks = rx.body(0)["blocks"];
  const json context = blocks.back();
  REQUIRE(context["type"] == "context");
  CHECK(context["elements"][0]["text"] ==
        "<https://runbooks.example/lw.md#training.collapse|Runbook>");
  CHECK(context["elements"][1]["text"] ==
        "fingerprint `" + rows[0].fingerprint + "` | sidecar box-1 | 2023-11-14T22:13:15.000Z");
}

TEST_CASE("a pagerduty sink sends an Events API v2 trigger and a resolve with the same dedup key",
          "[alerts]") {
  receiver rx([](std::size_t, httplib::Response& res) {
    res.status = 202;
    res.set_content(R"({"status":"success","message":"Event processed"})", "application/json");
  });
  auto pd = sink("pager", alert_sink_type::pagerduty, rx.url("/v2/enqueue"));
  pd.routing_key = "R0UT1NG";
  const auto cfg = config_with({pd}, {"pager"});
  const auto planner = core::make_alert_planner(cfg, "x");
  registry_fixture f;
  auto trip = f.reg.trip(make_trip("training.collapse"));
  REQUIRE(trip);
  memory_alert_outbox box;
  REQUIRE(box.enqueue(planner(*trip)).ok());
  auto reset = f.reg.reset({"training.collapse", "run-7"}, "alice", "false alarm", fixed_now);
  REQUIRE(reset.ok());
  REQUIRE(box.enqueue(planner(*reset)).ok());
  core::alert_router router(cfg, box, fast_options());
  router.start();
  REQUIRE(rx.wait_for(2));
  router.stop();

  const json trigger = rx.body(0);
  const std::string fp = box.entries().at(0).alert.fingerprint;
  const json expected = {
      {"routing_key", "R0UT1NG"},
      {"event_action", "trigger"},
      {"dedup_key", fp},
      {"payload",
       {{"summary",
         "training.collapse OPEN (run run-7): rollback, critical: variance fell below 5% of its "
         "baseline"},
        {"source", "box-1"},
        {"severity", "critical"},
        {"timestamp", "2023-11-14T22:13:15.000Z"},
        {"component", "training.collapse"},
        {"group", "collapse"},
        {"class", "trip"},
        {"custom_details",
         {{"kind", "trigger"},
          {"run_id", "run-7"},
          {"state", "open"},
          {"action", "rollback"},
          {"reason", "variance fell below 5% of its baseline"},
          {"monitor", "collapse"},
          {"cause", "trip"},
          {"cluster", "eu-1"},
          {"epoch", 1},
          {"trips", 1},
          {"evidence", {{"variance", "0.012"}, {"baseline", "0.31"}}}}}}},
      {"client", "loopwarden"},
      {"links", json::array({{{"href", "https://runbooks.example/lw.md#training.collapse"},
                              {"text", "Runbook"}}})}};
  CHECK(trigger == expected);
  CHECK(rx.body(1) ==
        json{{"routing_key", "R0UT1NG"}, {"event_action", "resolve"}, {"dedup_key", fp}});
  CHECK(rx.requests().at(0).path == "/v2/enqueue");
}

TEST_CASE("an alertmanager sink posts labels, annotations, startsAt and endsAt to /api/v2/alerts",
          "[alerts]") {
  receiver rx;
  auto am = sink("am", alert_sink_type::alertmanager, rx.url("/prefix/"));
  auto cfg = config_with({am}, {"am"});
  cfg.resend_interval = 60s;
  const auto planner = core::make_alert_planner(cfg, "x");
  registry_fixture f;
  auto trip = f.reg.trip(make_trip("training.collapse"));
  REQUIRE(trip);
  auto reset =
      f.reg.reset({"training.collapse", "run-7"}, "alice", "fine", fixed_now - 1'000'000'000);
  REQUIRE(reset.ok());
  memory_alert_outbox box;
  REQUIRE(box.enqueue(planner(*trip)).ok());
  REQUIRE(box.enqueue(planner(*reset)).ok());
  auto options = fast_options();
  options.clock = [] { return fixed_now; };
  core::alert_router router(cfg, box, options);
  router.start();
  REQUIRE(rx.wait_for(2));
  router.stop();

  const std::string fp = box.entries().at(0).alert.fingerprint;
  CHECK(rx.requests().at(0).path == "/prefix/api/v2/alerts");
  const json labels = {{"alertname", "LoopwardenBreakerOpen"},
                       {"breaker", "training.collapse"},
                       {"monitor", "collapse"},
                       {"run_id", "run-7"},
                       {"severity", "critical"},
                       {"sidecar", "box-1"},
                       {"cluster", "eu-1"},
                       {"incident", fp}};
  const json firing = rx.body(0);
  REQUIRE(firing.is_array());
  REQUIRE(firing.size() == 1);
  CHECK(firing[0]["labels"] == labels);
  CHECK(firing[0]["annotations"] ==
        json({{"summary",
               "training.collapse OPEN (run run-7): rollback, critical: variance fell below 5% of "
               "its baseline"},
              {"reason", "variance fell below 5% of its baseline"},
              {"runbook_url", "https://runbooks.example/lw.md#training.collapse"},
              {"action", "rollback"},
              {"state", "open"},
              {"evidence", "variance=0.012, baseline=0.31"}}));
  CHECK(firing[0]["startsAt"] == "2023-11-14T22:13:15.000Z");
  CHECK(firing[0]["endsAt"] == "2023-11-14T22:17:20.000Z");  // now + 4 x 60 s
  CHECK(firing[0]["generatorURL"] == "https://runbooks.example/lw.md#training.collapse");

  const json resolved = rx.body(1);
  REQUIRE(resolved.size() == 1);
  CHECK(resolved[0]["labels"] == labels);  // the same alert for Alertmanager
  CHECK(resolved[0]["startsAt"] == "2023-11-14T22:13:19.000Z");
  CHECK(resolved[0]["endsAt"] == "2023-11-14T22:13:20.000Z");  // now: resolved
  CHECK(resolved[0]["annotations"]["note"] == "fine");
}

// ---------------------------------------------------------------------------------------------
// Retries, Retry-After, fallback

TEST_CASE("a receiver answering 500 then 200 gets the alert once, after one retry", "[alerts]") {
  receiver rx([](std::size_t n, httplib::Response& res) {
    if (n == 0) {
      res.status = 500;
      res.set_content("database\nlocked", "text/plain");
    }
  });
  const auto cfg = config_with({sink("hook", alert_sink_type::webhook, rx.url("/"))}, {"hook"});
  memory_alert_outbox box;
  REQUIRE(box.enqueue({test_alert(cfg, "hook", 1)}).ok());
  core::alert_router router(cfg, box, fast_options());
  router.start();
  REQUIRE(wait_until([&] { return box.pending_count() == 0; }));
  router.stop();  // nothing can be sent after this: the counts below are final

  REQUIRE(rx.count() == 2);
  CHECK(rx.requests()[0].body == rx.requests()[1].body);
  const auto e = box.entries().at(0);
  CHECK(e.state == memory_alert_outbox::alert_state::delivered);
  CHECK(e.delivered_via == "hook");
  CHECK(e.alert.attempts == 1);
  CHECK(e.alert.last_error ==
        "http 500 from http://127.0.0.1:" + std::to_string(rx.port()) + ": database locked");
  const auto st = router.stats().at(0);
  CHECK(st.sent == 1);
  CHECK(st.retried == 1);
  CHECK(st.failed == 0);
  CHECK(st.fell_back == 0);
}

TEST_CASE("429 with Retry-After: 2 delays the next attempt by at least two seconds", "[alerts]") {
  receiver rx([](std::size_t n, httplib::Response& res) {
    if (n == 0) {
      res.status = 429;
      res.set_header("Retry-After", "2");
    }
  });
  const auto cfg = config_with({sink("hook", alert_sink_type::webhook, rx.url("/"))}, {"hook"});
  memory_alert_outbox box;
  REQUIRE(box.enqueue({test_alert(cfg, "hook", 1)}).ok());
  core::alert_router router(cfg, box, fast_options());
  router.start();
  REQUIRE(rx.wait_for(2, 10s));
  router.stop();
  const auto reqs = rx.requests();
  // On the wall clock, the one the router schedules by (see receiver::request::wall).
  const auto gap = reqs[1].wall - reqs[0].wall;
  INFO("gap " << std::chrono::duration_cast<std::chrono::milliseconds>(gap).count() << " ms");
  CHECK(gap >= 2s);
  CHECK(gap < 4s);
  CHECK(box.entries().at(0).state == memory_alert_outbox::alert_state::delivered);
}

TEST_CASE("503 with Retry-After as an HTTP-date delays the next attempt until that date",
          "[alerts]") {
  std::string when;
  {
    // Two seconds ahead, in whole seconds as HTTP-dates are: the wait is between one and two.
    const std::time_t t = std::time(nullptr) + 2;
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    when = buf;
  }
  receiver rx([&when](std::size_t n, httplib::Response& res) {
    if (n == 0) {
      res.status = 503;
      res.set_header("Retry-After", when);
    }
  });
  const auto cfg = config_with({sink("hook", alert_sink_type::webhook, rx.url("/"))}, {"hook"});
  memory_alert_outbox box;
  REQUIRE(box.enqueue({test_alert(cfg, "hook", 1)}).ok());
  core::alert_router router(cfg, box, fast_options());
  router.start();
  REQUIRE(rx.wait_for(2, 10s));
  router.stop();
  const auto reqs = rx.requests();
  const auto gap = reqs[1].wall - reqs[0].wall;  // an HTTP-date is wall time
  INFO("gap " << std::chrono::duration_cast<std::chrono::milliseconds>(gap).count() << " ms");
  CHECK(gap >= 900ms);  // the backoff alone would be 10-50 ms
  CHECK(gap < 4s);
}

TEST_CASE("a dead receiver falls back to a file sink, and the file has the alert", "[alerts]") {
  temp_dir dir;
  auto hook = sink("hook", alert_sink_type::webhook,
                   "http://127.0.0.1:" + std::to_string(closed_port()) + "/");
  hook.max_attempts = 3;
  hook.fallback = "archive";
  core::alert_sink_config archive;
  archive.name = "archive";
  archive.type = alert_sink_type::file;
  archive.path = (dir.path / "fallback.jsonl").string();
  const auto cfg = config_with({hook, archive}, {"hook"});
  registry_fixture f;
  auto trip = f.reg.trip(make_trip("training.collapse"));
  REQUIRE(trip);
  memory_alert_outbox box;
  const auto rows = core::make_alert_planner(cfg, "x")(*trip);
  REQUIRE(rows.size() == 1);
  REQUIRE(box.enqueue(rows).ok());
  core::alert_router router(cfg, box, fast_options());
  router.start();
  REQUIRE(wait_until([&] { return box.pending_count() == 0; }));
  router.stop();

  const auto e = box.entries().at(0);
  CHECK(e.state == memory_alert_outbox::alert_state::delivered);
  CHECK(e.delivered_via == "archive");
  CHECK(e.alert.attempts == 3);
  CHECK(e.alert.last_error.find("can't deliver to http://127.0.0.1:") == 0);
  CHECK(e.alert.last_error.find("can't connect") != std::string::npos);
  std::ifstream in(archive.path);
  std::string line;
  REQUIRE(std::getline(in, line));
  const json got = json::parse(line);
  CHECK(got["fingerprint"] == rows[0].fingerprint);
  CHECK(got["breaker"] == "training.collapse");
  CHECK(got["sink"] == "archive");
  CHECK(got["for_sink"] == "hook");
  CHECK_FALSE(std::getline(in, line));
  const auto st = router.stats();
  CHECK(st[0].retried == 2);
  CHECK(st[0].fell_back == 1);
  CHECK(st[0].sent == 0);
  CHECK(st[1].sent == 1);
}

TEST_CASE("a permanent client error skips the retries and goes to the fallback at once",
          "[alerts]") {
  receiver rx([](std::size_t, httplib::Response& res) {
    res.status = 400;
    res.set_content(R"({"status":"invalid event","errors":["routing_key is invalid"]})",
                    "application/json");
  });
  temp_dir dir;
  auto pd = sink("pager", alert_sink_type::pagerduty, rx.url("/v2/enqueue"));
  pd.routing_key = "bad";
  pd.fallback = "archive";
  core::alert_sink_config archive;
  archive.name = "archive";
  archive.type = alert_sink_type::file;
  archive.path = (dir.path / "a.jsonl").string();
  const auto cfg = config_with({pd, archive}, {"pager"});
  memory_alert_outbox box;
  REQUIRE(box.enqueue({test_alert(cfg, "pager", 1)}).ok());
  core::alert_router router(cfg, box, fast_options());
  router.start();
  REQUIRE(wait_until([&] { return box.pending_count() == 0; }));
  router.stop();
  CHECK(rx.count() == 1);
  const auto e = box.entries().at(0);
  CHECK(e.delivered_via == "archive");
  CHECK(e.alert.attempts == 8);  // the whole budget of the first sink, spent at once
  CHECK(e.alert.last_error.find("http 400") == 0);
  CHECK(router.stats()[0].fell_back == 1);
  CHECK(router.stats()[0].retried == 0);
}

TEST_CASE("an alert whose sink and fallback both fail is marked failed", "[alerts]") {
  receiver a([](std::size_t, httplib::Response& res) { res.status = 502; });
  receiver b([](std::size_t, httplib::Response& res) { res.status = 500; });
  auto first = sink("first", alert_sink_type::webhook, a.url("/"));
  first.max_attempts = 2;
  first.fallback = "second";
  auto second = sink("second", alert_sink_type::webhook, b.url("/"));
  second.max_attempts = 2;
  const auto cfg = config_with({first, second}, {"first"});
  memory_alert_outbox box;
  REQUIRE(box.enqueue({test_alert(cfg, "first", 1)}).ok());
  core::alert_router router(cfg, box, fast_options());
  router.start();
  REQUIRE(wait_until([&] { return box.pending_count() == 0; }));
  router.stop();
  CHECK(a.count() == 2);
  CHECK(b.count() == 2);
  const auto e = box.entries().at(0);
  CHECK(e.state == memory_alert_outbox::alert_state::failed);
  CHECK(e.alert.last_error.find("http 500") == 0);
  const auto st = router.stats();
  CHECK(st[0].failed == 1);  // counted on the alert's own sink
  CHECK(st[0].fell_back == 1);
  CHECK(st[1].retried == 1);
  CHECK(st[1].failed == 0);
}

// ---------------------------------------------------------------------------------------------
// Queue bound, stop, send_test

TEST_CASE("a full sink queue defers alerts to the outbox, blocks nobody and loses nothing",
          "[alerts]") {
  receiver rx;
  rx.hold();
  auto hook = sink("hook", alert_sink_type::webhook, rx.url("/"));
  hook.queue_capacity = 2;
  const auto cfg = config_with({hook}, {"hook"});
  memory_alert_outbox box;
  constexpr int total = 8;
  for (int i = 0; i < total; ++i) REQUIRE(box.enqueue({test_alert(cfg, "hook", i)}).ok());
  core::alert_router router(cfg, box, fast_options());
  router.start();

  // One request hangs at the receiver, two wait in the queue, the rest stay in the outbox.
  REQUIRE(rx.wait_for(1));
  REQUIRE(wait_until([&] {
    const auto st = router.stats().at(0);
    return st.queue_depth == 2 && st.deferred >= total - 3;
  }));
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 50; ++i) router.notify();
  REQUIRE(box.enqueue({test_alert(cfg, "hook", 100)}).ok());
  CHECK(std::chrono::steady_clock::now() - t0 < 100ms);
  CHECK(box.pending_count() == total + 1);
  CHECK(router.stats().at(0).queue_depth <= 2);
  CHECK(rx.count() == 1);

  rx.release();
  REQUIRE(wait_until([&] { return box.pending_count() == 0; }));
  router.stop();
  const auto reqs = rx.requests();
  CHECK(reqs.size() == total + 1);
  std::set<std::string> fingerprints;
  for (const auto& r : reqs) fingerprints.insert(json::parse(r.body)["fingerprint"]);
  CHECK(fingerprints.size() == total + 1);
  for (const auto& e : box.entries()) CHECK(e.state == memory_alert_outbox::alert_state::delivered);
  CHECK(router.stats().at(0).sent == total + 1);
}

TEST_CASE("stop abandons a hung delivery after its deadline and the alert stays pending",
          "[alerts]") {
  receiver rx;
  rx.hold();
  auto hook = sink("hook", alert_sink_type::webhook, rx.url("/"));
  hook.timeout = 60s;
  const auto cfg = config_with({hook}, {"hook"});
  memory_alert_outbox box;
  REQUIRE(box.enqueue({test_alert(cfg, "hook", 1), test_alert(cfg, "hook", 2)}).ok());
  auto options = fast_options();
  options.stop_deadline = 300ms;
  core::alert_router router(cfg, box, options);
  router.start();
  REQUIRE(rx.wait_for(1));
  const auto t0 = std::chrono::steady_clock::now();
  router.stop();
  const auto took = std::chrono::steady_clock::now() - t0;
  INFO("stop took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                    << " ms");
  CHECK(took >= 300ms);
  CHECK(took < 3s);
  CHECK(box.pending_count() == 2);
  for (const auto& e : box.entries()) CHECK(e.alert.attempts == 0);  // cancelled, not failed
  CHECK(router.stats().at(0).retried == 0);

  // Started again, the router delivers them.
  rx.release();
  router.start();
  REQUIRE(wait_until([&] { return box.pending_count() == 0; }));
  router.stop();
}

TEST_CASE("send_test reports the receiver's status and error", "[alerts]") {
  receiver ok_rx;
  receiver busy_rx([](std::size_t, httplib::Response& res) {
    res.status = 503;
    res.set_content("maintenance", "text/plain");
  });
  auto pd = sink("pager", alert_sink_type::pagerduty, ok_rx.url("/v2/enqueue"));
  pd.routing_key = "k";
  const auto cfg = config_with({pd, sink("busy", alert_sink_type::webhook, busy_rx.url("/")),
                                sink("dead", alert_sink_type::webhook,
                                     "http://127.0.0.1:" + std::to_string(closed_port()) + "/")},
                               {"pager"});
  memory_alert_outbox box;
  core::alert_router router(cfg, box, fast_options());

  auto good = router.send_test("pager");
  REQUIRE(good.ok());
  CHECK(good->delivered);
  CHECK(good->http_status == 200);
  CHECK(good->error.empty());
  const json event = ok_rx.body(0);
  CHECK(event["event_action"] == "trigger");
  CHECK(event["payload"]["severity"] == "info");
  CHECK(event["payload"]["summary"] == "loopwarden test alert from box-1 to sink 'pager'");

  auto busy = router.send_test("busy");
  REQUIRE(busy.ok());
  CHECK_FALSE(busy->delivered);
  CHECK(busy->http_status == 503);
  CHECK(busy->error ==
        "http 503 from http://127.0.0.1:" + std::to_string(busy_rx.port()) + ": maintenance");

  auto dead = router.send_test("dead");
  REQUIRE(dead.ok());
  CHECK_FALSE(dead->delivered);
  CHECK(dead->http_status == 0);
  CHECK(dead->error.find("can't deliver to http://127.0.0.1:") == 0);
  CHECK(box.pending_count() == 0);
  CHECK(router.stats()[0].sent == 0);  // tests are not counted
}

// ---------------------------------------------------------------------------------------------
// TLS

TEST_CASE("an https sink verifies the receiver's certificate against ca_file", "[alerts]") {
  temp_dir dir;
  const std::string cert = (dir.path / "cert.pem").string();
  const std::string key = (dir.path / "key.pem").string();
  const std::string cmd =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
      "-addext subjectAltName=IP:127.0.0.1 -keyout '" +
      key + "' -out '" + cert + "' >/dev/null 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);
  receiver rx(cert, key, nullptr);

  auto trusted = sink("trusted", alert_sink_type::webhook, rx.url("/tls"));
  trusted.ca_file = cert;
  auto untrusted = sink("untrusted", alert_sink_type::webhook, rx.url("/tls"));
  const auto cfg = config_with({trusted, untrusted}, {"trusted"});
  memory_alert_outbox box;
  core::alert_router router(cfg, box, fast_options());

  auto ok = router.send_test("trusted");
  REQUIRE(ok.ok());
  INFO(ok->error);
  CHECK(ok->delivered);
  CHECK(ok->http_status == 200);
  REQUIRE(rx.count() == 1);
  CHECK(rx.body(0)["kind"] == "test");

  // A self-signed certificate is not in the system's trust store: refused before any request.
  auto refused = router.send_test("untrusted");
  REQUIRE(refused.ok());
  CHECK_FALSE(refused->delivered);
  CHECK(refused->error.find("certificate is not trusted") != std::string::npos);
  CHECK(rx.count() == 1);
}

// ---------------------------------------------------------------------------------------------
// Alertmanager re-sends

TEST_CASE("firing alerts are re-posted to alertmanager every resend_interval until resolved",
          "[alerts]") {
  receiver rx;
  auto cfg = config_with({sink("am", alert_sink_type::alertmanager, rx.url("/")),
                          sink("hook", alert_sink_type::webhook, rx.url("/hook"))},
                         {"am", "hook"});
  cfg.resend_interval = 100ms;
  const auto planner = core::make_alert_planner(cfg, "x");
  registry_fixture f;
  auto trip = f.reg.trip(make_trip("training.collapse", fixed_now));
  REQUIRE(trip);
  const v1::BreakerStatus open_status = trip->breaker();

  memory_alert_outbox box;
  REQUIRE(box.enqueue(planner(*trip)).ok());
  // The open-breaker list stays stale on purpose: after the resolve, the router itself must stop
  // re-firing the incident.
  std::mutex mu;
  int listed = 0;
  auto options = fast_options();
  options.open_breakers = [&] {
    std::lock_guard lock(mu);
    ++listed;
    return std::vector<v1::BreakerStatus>{open_status};
  };
  auto listings = [&] {
    std::lock_guard lock(mu);
    return listed;
  };
  core::alert_router router(cfg, box, options);
  router.start();

  auto am_posts = [&] {
    std::vector<json> out;
    for (const auto& r : rx.requests()) {
      if (r.path == "/api/v2/alerts") out.push_back(json::parse(r.body)[0]);
    }
    return out;
  };
  REQUIRE(wait_until([&] { return am_posts().size() >= 4; }));
  for (const auto& a : am_posts()) {
    CHECK(a["labels"]["incident"] == box.entries().at(0).alert.fingerprint);
  }
  // Only Alertmanager sinks get re-sends.
  const auto hook_posts = [&] {
    std::size_t n = 0;
    for (const auto& r : rx.requests()) n += r.path == "/hook" ? 1 : 0;
    return n;
  };
  CHECK(hook_posts() == 1);

  auto reset = f.reg.reset({"training.collapse", "run-7"}, "al", "fixed", fixed_now + 1);
  REQUIRE(reset.ok());
  REQUIRE(box.enqueue(planner(*reset)).ok());
  router.notify();
  REQUIRE(wait_until([&] { return box.pending_count() == 0; }));
  // Two more re-send rounds with the (stale) open breaker: neither may fire it again.
  const int seen = listings();
  REQUIRE(wait_until([&] { return listings() >= seen + 2; }));
  router.stop();
  const auto posts = am_posts();
  REQUIRE(!posts.empty());
  const auto& last = posts.back();
  CHECK(last["annotations"]["note"] == "fixed");
  std::size_t resolved = 0;
  for (const auto& p : posts) resolved += p["annotations"].contains("note") ? 1 : 0;
  CHECK(resolved == 1);
  CHECK(router.stats()[0].resent >= 3);
  CHECK(router.stats()[0].sent == 2);
}

TEST_CASE("an alertmanager sink sends its configured headers, for a proxy that authenticates",
          "[alerts]") {
  receiver rx;
  auto am = sink("am", alert_sink_type::alertmanager, rx.url("/"));
  am.headers = {{"Authorization", "Basic YWxpY2U6cGE1NXcwcmQ="}};
  const auto cfg = config_with({am}, {"am"});
  memory_alert_outbox box;
  core::alert_router router(cfg, box, fast_options());
  auto report = router.send_test("am");
  REQUIRE(report.ok());
  CHECK(report->delivered);
  REQUIRE(rx.wait_for(1));
  const auto req = rx.requests().at(0);
  CHECK(req.path == "/api/v2/alerts");
  REQUIRE(req.headers.find("Authorization") != req.headers.end());
  CHECK(req.headers.find("Authorization")->second == "Basic YWxpY2U6cGE1NXcwcmQ=");
}
