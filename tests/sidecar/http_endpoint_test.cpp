// The read-only HTTP endpoint: config parsing, routing and methods, /metrics text (exact values,
// escaping, promtool), /healthz and /readyz, the status page and its JSON twin. The endpoint runs
// for real on a loopback port; its sources are plain lambdas returning protos built here.

// cpp-httplib on bookworm is a compiled library built with these options (its pkg-config cflags),
// and the layout of its classes depends on them. sidecar_tests does not link PkgConfig::httplib
// itself, so the options are repeated here to match the library.
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../../sidecar/src/http_endpoint.hpp"
#include "../../sidecar/src/metrics_text.hpp"
#include "../../sidecar/src/status_page.hpp"

using namespace loopwarden;
using namespace loopwarden::sidecar::detail;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t t0 = 1'700'000'000'000'000'000;  // 2023-11-14T22:13:20Z
constexpr std::int64_t sec = 1'000'000'000;

// ---- inputs ----------------------------------------------------------------------------------

v1::SidecarStatus small_status() {
  v1::SidecarStatus s;
  s.set_version("1.2.3");
  s.set_started_unix_nano(t0);
  s.set_config_source("/etc/loopwarden.yaml");
  s.set_events(1234);
  s.set_malformed(3);
  s.set_dropped(2);
  s.set_duplicates(1);
  s.set_queue_depth(7);
  s.set_gate_requests(5);
  s.set_reloads(2);
  s.set_last_reload_error("monitors[0].config.window: expected a positive integer");
  auto* src = s.add_sources();
  src->set_source("trainer/rank0");
  src->set_run_id("r1");
  src->set_received(1200);
  src->set_lost(4);
  src->set_duplicates(1);
  src->set_late(2);
  src->set_restarts(1);
  src->set_heartbeats(30);
  src->set_malformed(3);
  src->set_dropped(2);
  src->set_monitor_dropped(6);
  src->set_last_seen_unix_nano(t0 + 90 * sec);
  src->set_silent(false);
  auto* m = s.add_monitors();
  m->set_name("loss_guard");
  m->set_plugin("threshold");
  m->set_version("0.3.0");
  m->set_state("active");
  m->set_events(100);
  m->set_gates(2);
  m->set_ticks(50);
  m->set_errors(1);
  m->set_total_call_ns(3'500'000);
  m->set_max_call_ns(2'000'000);
  // Per-bucket (not cumulative) counts: 100 calls <= 1 us, 40 in (2.5 us, 5 us], 10 in
  // (500 us, 1 ms], 2 in (1 ms, 2.5 ms]; 20 entries (19 bounds and +Inf).
  std::vector<std::uint64_t> buckets(20, 0);
  buckets[0] = 100;
  buckets[2] = 40;
  buckets[9] = 10;
  buckets[10] = 2;
  for (auto b : buckets) m->add_call_ns_buckets(b);
  auto* g = m->add_gauges();
  g->set_name("loss_ewma");
  g->set_value(0.25);
  auto* q = s.add_monitors();  // an engine that does not count buckets for it
  q->set_name("quiet");
  q->set_plugin("agent_drift");
  q->set_version("1.0.0");
  q->set_state("disabled");
  return s;
}

v1::BreakerStatus make_breaker(std::string name, std::string run, v1::BreakerState state,
                               std::int64_t changed) {
  v1::BreakerStatus b;
  b.set_name(std::move(name));
  b.set_run_id(std::move(run));
  b.set_scope(b.run_id().empty() ? v1::BREAKER_SCOPE_GLOBAL : v1::BREAKER_SCOPE_RUN);
  b.set_state(state);
  b.set_changed_unix_nano(changed);
  return b;
}

v1::BreakerSnapshot small_breakers() {
  v1::BreakerSnapshot snap;
  auto b = make_breaker("training.collapse", "r1", v1::BREAKER_STATE_OPEN, t0 + 100 * sec);
  b.set_action(v1::BREAKER_ACTION_ROLLBACK);
  b.set_severity(v1::SEVERITY_CRITICAL);
  b.set_epoch(3);
  b.set_trips(2);
  b.set_monitor("loss_guard");
  b.set_reason("loss above 4.0 for 3 steps");
  *snap.add_breakers() = b;
  return snap;
}

std::vector<alert_sink_stats> small_alerts() {
  return {{"oncall", "pagerduty", 1, 10, 2, 5, 1, 3}};
}

// Everything at once: several states, hostile text, a shadow breaker, several sinks.
v1::SidecarStatus rich_status() {
  auto s = small_status();
  auto* in = s.add_ingest();
  in->set_endpoint("ipc:///run/loopwarden/ingest.sock");
  in->set_socket("pull");
  in->set_received(1300);
  in->set_malformed(3);
  auto* src = s.add_sources();
  src->set_source("agent \"alpha\"\\beta\nline2 \xff\xfe");
  src->set_run_id("session-9");
  src->set_received(5);
  src->set_silent(true);
  return s;
}

v1::BreakerSnapshot rich_breakers() {
  v1::BreakerSnapshot snap;
  auto closed = make_breaker("agent.drift", "session-9", v1::BREAKER_STATE_CLOSED, t0 + 10 * sec);
  closed.set_action(v1::BREAKER_ACTION_PAUSE);
  closed.set_severity(v1::SEVERITY_WARNING);
  closed.set_epoch(4);
  closed.set_trips(1);
  *snap.add_breakers() = closed;
  auto half = make_breaker("review.bottleneck", "", v1::BREAKER_STATE_HALF_OPEN, t0 + 50 * sec);
  half.set_action(v1::BREAKER_ACTION_THROTTLE);
  half.set_severity(v1::SEVERITY_INFO);
  half.set_probation_until_unix_nano(t0 + 350 * sec);
  half.set_epoch(2);
  *snap.add_breakers() = half;
  auto open = small_breakers().breakers(0);
  open.set_reason("<script>alert(\"pwned\")</script> it's \"bad\" & worse");
  auto* ev = open.add_evidence();
  ev->set_key("metric");
  ev->set_value("train/loss");
  ev = open.add_evidence();
  ev->set_key("value<b>");
  ev->set_value("4.2 \"high\"");
  *snap.add_breakers() = open;
  auto forced =
      make_breaker("agent.destructive", "", v1::BREAKER_STATE_FORCED_OPEN, t0 + 120 * sec);
  forced.set_action(v1::BREAKER_ACTION_HALT);
  forced.set_severity(v1::SEVERITY_CRITICAL);
  forced.set_monitor("operator");
  forced.set_reason("manual halt during incident");
  forced.set_acknowledged(true);
  forced.set_acknowledged_by("alice");
  forced.set_epoch(1);
  *snap.add_breakers() = forced;
  auto shadow = make_breaker("goal.drift", "r1", v1::BREAKER_STATE_OPEN, t0 + 110 * sec);
  shadow.set_shadow(true);
  shadow.set_severity(v1::SEVERITY_WARNING);
  *snap.add_breakers() = shadow;
  auto quoted = make_breaker("odd\\name \"q\"\nx", "r\"1", v1::BREAKER_STATE_CLOSED, t0);
  *snap.add_breakers() = quoted;
  return snap;
}

std::vector<v1::BreakerTransition> rich_transitions() {
  std::vector<v1::BreakerTransition> ts;
  v1::BreakerTransition trip;
  *trip.mutable_breaker() = rich_breakers().breakers(2);  // training.collapse, open
  trip.set_previous(v1::BREAKER_STATE_CLOSED);
  trip.set_cause("trip");
  trip.set_trigger_source("trainer/rank0");
  trip.set_trigger_seq(57);
  ts.push_back(trip);
  v1::BreakerTransition ack;
  *ack.mutable_breaker() = rich_breakers().breakers(3);  // agent.destructive, forced open
  ack.mutable_breaker()->set_changed_unix_nano(t0 + 130 * sec);
  ack.set_previous(v1::BREAKER_STATE_FORCED_OPEN);
  ack.set_cause("ack");
  ack.set_operator_id("alice");
  ack.set_note("on it <b>now</b>");
  ts.push_back(ack);
  return ts;
}

std::vector<alert_sink_stats> rich_alerts() {
  return {{"oncall", "pagerduty", 1, 10, 2, 5, 1, 3}, {"team \"ml\"", "slack", 0, 7, 0, 0, 0, 0}};
}

http_sources rich_sources() {
  http_sources s;
  s.status = [] { return rich_status(); };
  s.breakers = [] { return rich_breakers(); };
  s.recent_transitions = [](std::size_t limit) {
    auto ts = rich_transitions();
    if (ts.size() > limit) ts.resize(limit);
    return ts;
  };
  s.ready = [] { return readiness{true, true, true, "events flowing"}; };
  s.alerts = [] { return rich_alerts(); };
  return s;
}

// ---- helpers ---------------------------------------------------------------------------------

std::unique_ptr<http_endpoint> start_endpoint(http_sources sources,
                                              std::chrono::milliseconds deadline = 2000ms) {
  http_config cfg;
  cfg.listen = "127.0.0.1:0";
  cfg.source_deadline = deadline;
  auto ep = http_endpoint::start(cfg, std::move(sources));
  INFO((ep.ok() ? std::string() : ep.error().message()));
  REQUIRE(ep.ok());
  REQUIRE((*ep)->port() > 0);
  return std::move(ep).value();
}

httplib::Client client_for(const http_endpoint& ep) {
  httplib::Client cli("127.0.0.1", ep.port());
  cli.set_connection_timeout(5);
  cli.set_read_timeout(15);
  cli.set_write_timeout(5);
  return cli;
}

// Sends `request` as raw bytes and returns the server's first response (headers and a body of
// its Content-Length), without waiting for the server to close the connection.
std::string raw_request(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
  std::string out;
  char buf[4096];
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    const auto end = out.find("\r\n\r\n");
    if (end == std::string::npos) continue;
    std::size_t length = 0;
    if (const auto cl = out.find("Content-Length: "); cl != std::string::npos && cl < end) {
      length = std::stoul(out.substr(cl + 16));
    }
    if (out.size() >= end + 4 + length) break;
  }
  ::close(fd);
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

struct command_output {
  int exit_code = -1;
  std::string output;
};

// Runs `command` through the shell with `input` on stdin, capturing stdout and stderr.
command_output run_with_stdin(const std::string& command, const std::string& input) {
  std::random_device rd;
  const fs::path in = fs::temp_directory_path() / ("lw-http-stdin-" + std::to_string(rd()));
  std::ofstream(in, std::ios::binary) << input;
  command_output r;
  FILE* p = ::popen((command + " < '" + in.string() + "' 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) r.output.append(buf, n);
  const int st = ::pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  fs::remove(in);
  return r;
}

sdk::config_node http_section(const std::string& listen) {
  auto section = sdk::config_node::make_map("http", "loopwarden.yaml", 11);
  section.insert("listen",
                 sdk::config_node::make_scalar("http.listen", "loopwarden.yaml", 12, listen));
  return section;
}

const std::vector<std::string> known_paths = {"/",        "/status",  "/api/status",
                                              "/metrics", "/healthz", "/readyz"};

}  // namespace

// ---- configuration ---------------------------------------------------------------------------

TEST_CASE("http config accepts host:port listen addresses and turns the endpoint off on request",
          "[http]") {
  struct row {
    std::string listen;
    std::string expected;
  };
  const std::vector<row> rows = {
      {"127.0.0.1:9464", "127.0.0.1:9464"},
      {"0.0.0.0:80", "0.0.0.0:80"},
      {"localhost:9464", "localhost:9464"},
      {"metrics.internal.example:9464", "metrics.internal.example:9464"},
      {"[::1]:9464", "[::1]:9464"},
      {"[::]:0", "[::]:0"},
      {"127.0.0.1:65535", "127.0.0.1:65535"},
      {"", ""},
      {"off", ""},
  };
  for (const auto& r : rows) {
    INFO("listen: \"" << r.listen << "\"");
    auto cfg = parse_http_config(http_section(r.listen));
    INFO((cfg.ok() ? std::string() : cfg.error().message()));
    REQUIRE(cfg.ok());
    CHECK(cfg->listen == r.expected);
  }
}

TEST_CASE("http config refuses malformed listen addresses naming the path and line", "[http]") {
  const std::vector<std::string> rows = {
      "9464",         "127.0.0.1",        "127.0.0.1:",
      ":9464",        "127.0.0.1:65536",  "127.0.0.1:abc",
      "127.0.0.1:-1", "127.0.0.1:123456", "http://127.0.0.1:9464",
      "::1:9464",     "[::1]9464",        "[::1",
      "[zz]:9464",    "300.1.1.1:80",     "1.2.3:80",
      "host name:80", "bad_host!:80",     "a..b:80",
  };
  for (const auto& listen : rows) {
    INFO("listen: \"" << listen << "\"");
    auto cfg = parse_http_config(http_section(listen));
    REQUIRE_FALSE(cfg.ok());
    CHECK(cfg.error().code() == sdk::status_code::invalid_argument);
    const std::string& msg = cfg.error().message();
    INFO(msg);
    CHECK(msg.rfind("http.listen: expected host:port", 0) == 0);
    CHECK(msg.find("\"" + listen + "\"") != std::string::npos);
    CHECK(msg.find("(loopwarden.yaml:12)") != std::string::npos);
  }
}

TEST_CASE("http config defaults to localhost and refuses unknown keys and non-maps", "[http]") {
  auto missing = parse_http_config(sdk::config_node());
  REQUIRE(missing.ok());
  CHECK(missing->listen == "127.0.0.1:9464");
  auto null = parse_http_config(sdk::config_node::make_null("http", "loopwarden.yaml", 11));
  REQUIRE(null.ok());
  CHECK(null->listen == "127.0.0.1:9464");
  auto no_listen = parse_http_config(sdk::config_node::make_map("http", "loopwarden.yaml", 11));
  REQUIRE(no_listen.ok());
  CHECK(no_listen->listen == "127.0.0.1:9464");

  auto typo = sdk::config_node::make_map("http", "loopwarden.yaml", 11);
  typo.insert("listne", sdk::config_node::make_scalar("http.listne", "loopwarden.yaml", 12,
                                                      "127.0.0.1:9464"));
  auto bad_key = parse_http_config(typo);
  REQUIRE_FALSE(bad_key.ok());
  CHECK(bad_key.error().message().find("http.listne") != std::string::npos);
  CHECK(bad_key.error().message().find("unknown key") != std::string::npos);

  auto scalar = parse_http_config(
      sdk::config_node::make_scalar("http", "loopwarden.yaml", 11, "127.0.0.1:9464"));
  REQUIRE_FALSE(scalar.ok());
  CHECK(scalar.error().message().find("loopwarden.yaml:11") != std::string::npos);
}

TEST_CASE("only loopback listen addresses count as local", "[http]") {
  CHECK(is_loopback_listen("127.0.0.1:9464"));
  CHECK(is_loopback_listen("127.1.2.3:9464"));
  CHECK(is_loopback_listen("localhost:9464"));
  CHECK(is_loopback_listen("[::1]:9464"));
  CHECK(is_loopback_listen(""));
  CHECK_FALSE(is_loopback_listen("0.0.0.0:9464"));
  CHECK_FALSE(is_loopback_listen("[::]:9464"));
  CHECK_FALSE(is_loopback_listen("10.0.0.5:9464"));
  CHECK_FALSE(is_loopback_listen("metrics.example:9464"));
}

// ---- metrics text ----------------------------------------------------------------------------

TEST_CASE("metrics text renders a hand-built status with exact values", "[http]") {
  const auto status = small_status();
  const auto breakers = small_breakers();
  const auto alerts = small_alerts();
  const std::string text = render_metrics_text({&status, &breakers, &alerts});
  INFO(text);

  const std::vector<std::string> expected = {
      "# HELP loopwarden_events_total Envelopes evaluated by the engine.",
      "# TYPE loopwarden_events_total counter",
      "loopwarden_build_info{version=\"1.2.3\"} 1",
      "loopwarden_start_time_seconds 1700000000",
      "loopwarden_events_total 1234",
      "loopwarden_malformed_messages_total 3",
      "loopwarden_dropped_events_total 2",
      "loopwarden_duplicate_events_total 1",
      "loopwarden_event_queue_depth 7",
      "loopwarden_gate_requests_total 5",
      "loopwarden_config_reloads_total 2",
      "loopwarden_config_last_reload_failed 1",
      "loopwarden_source_received_events_total{source=\"trainer/rank0\"} 1200",
      "loopwarden_source_lost_events_total{source=\"trainer/rank0\"} 4",
      "loopwarden_source_duplicate_events_total{source=\"trainer/rank0\"} 1",
      "loopwarden_source_late_events_total{source=\"trainer/rank0\"} 2",
      "loopwarden_source_restarts_total{source=\"trainer/rank0\"} 1",
      "loopwarden_source_heartbeats_total{source=\"trainer/rank0\"} 30",
      "loopwarden_source_malformed_messages_total{source=\"trainer/rank0\"} 3",
      "loopwarden_source_dropped_events_total{source=\"trainer/rank0\"} 2",
      "loopwarden_source_monitor_dropped_events_total{source=\"trainer/rank0\"} 6",
      "loopwarden_source_last_seen_timestamp_seconds{source=\"trainer/rank0\"} 1700000090",
      "loopwarden_source_silent{source=\"trainer/rank0\"} 0",
      "loopwarden_monitor_info{monitor=\"loss_guard\",plugin=\"threshold\",version=\"0.3.0\"} 1",
      "loopwarden_monitor_active{monitor=\"loss_guard\"} 1",
      "loopwarden_monitor_active{monitor=\"quiet\"} 0",
      "# TYPE loopwarden_monitor_calls_total counter",
      "loopwarden_monitor_calls_total{monitor=\"loss_guard\",call=\"event\"} 100",
      "loopwarden_monitor_calls_total{monitor=\"loss_guard\",call=\"gate\"} 2",
      "loopwarden_monitor_calls_total{monitor=\"loss_guard\",call=\"tick\"} 50",
      "loopwarden_monitor_errors_total{monitor=\"loss_guard\"} 1",
      "loopwarden_monitor_call_max_seconds{monitor=\"loss_guard\"} 0.002",
      "loopwarden_monitor_value{monitor=\"loss_guard\",name=\"loss_ewma\"} 0.25",
      "loopwarden_breaker_state{breaker=\"training.collapse\",run_id=\"r1\",state=\"closed\"} 0",
      "loopwarden_breaker_state{breaker=\"training.collapse\",run_id=\"r1\",state=\"open\"} 1",
      "loopwarden_breaker_state{breaker=\"training.collapse\",run_id=\"r1\",state=\"half_open\"} 0",
      "loopwarden_breaker_state{breaker=\"training.collapse\",run_id=\"r1\",state=\"forced_open\"} "
      "0",
      "loopwarden_breaker_open{breaker=\"training.collapse\",run_id=\"r1\"} 1",
      "loopwarden_breaker_acknowledged{breaker=\"training.collapse\",run_id=\"r1\"} 0",
      "loopwarden_breaker_shadow{breaker=\"training.collapse\",run_id=\"r1\"} 0",
      "loopwarden_breaker_epoch{breaker=\"training.collapse\",run_id=\"r1\"} 3",
      "# TYPE loopwarden_breaker_trips_total counter",
      "loopwarden_breaker_trips_total{breaker=\"training.collapse\",run_id=\"r1\"} 2",
      "loopwarden_breaker_last_change_timestamp_seconds{breaker=\"training.collapse\",run_id="
      "\"r1\"} 1700000100",
      "loopwarden_breaker_info{breaker=\"training.collapse\",run_id=\"r1\",scope=\"run\",action="
      "\"rollback\",severity=\"critical\",monitor=\"loss_guard\"} 1",
      "loopwarden_alert_queue_depth{sink=\"oncall\",type=\"pagerduty\"} 1",
      "loopwarden_alerts_sent_total{sink=\"oncall\",type=\"pagerduty\"} 10",
      "loopwarden_alerts_failed_total{sink=\"oncall\",type=\"pagerduty\"} 2",
      "loopwarden_alert_retries_total{sink=\"oncall\",type=\"pagerduty\"} 5",
      "loopwarden_alerts_fell_back_total{sink=\"oncall\",type=\"pagerduty\"} 1",
      "loopwarden_alerts_deferred_total{sink=\"oncall\",type=\"pagerduty\"} 3",
  };
  for (const auto& line : expected) {
    INFO("expected line: " << line);
    CHECK(has_line(text, line));
  }

  // The histogram, in full and in order. Cumulative counts by hand from the per-bucket counts
  // {100 @ <=1us, 40 @ <=5us, 10 @ <=1ms, 2 @ <=2.5ms}: 100, 100, 140 (x7), 150, 152 (x10).
  const std::string histogram =
      "# HELP loopwarden_monitor_call_seconds Time a monitor spent in each call (on_event, "
      "on_gate, on_tick).\n"
      "# TYPE loopwarden_monitor_call_seconds histogram\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"1e-06\"} 100\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"2.5e-06\"} 100\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"5e-06\"} 140\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"1e-05\"} 140\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"2.5e-05\"} 140\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"5e-05\"} 140\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"0.0001\"} 140\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"0.00025\"} 140\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"0.0005\"} 140\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"0.001\"} 150\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"0.0025\"} 152\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"0.005\"} 152\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"0.01\"} 152\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"0.025\"} 152\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"0.05\"} 152\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"0.1\"} 152\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"0.25\"} 152\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"0.5\"} 152\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"1\"} 152\n"
      "loopwarden_monitor_call_seconds_bucket{monitor=\"loss_guard\",le=\"+Inf\"} 152\n"
      "loopwarden_monitor_call_seconds_sum{monitor=\"loss_guard\"} 0.0035\n"
      "loopwarden_monitor_call_seconds_count{monitor=\"loss_guard\"} 152\n";
  CHECK(text.find(histogram) != std::string::npos);
  // The monitor without bucket counts gets no histogram (rather than one of zeros).
  CHECK(text.find("loopwarden_monitor_call_seconds_bucket{monitor=\"quiet\"") == std::string::npos);
  CHECK(text.find("loopwarden_monitor_call_seconds_count{monitor=\"quiet\"}") == std::string::npos);
}

TEST_CASE("metrics text leaves out the families of sources that are not available", "[http]") {
  const auto breakers = small_breakers();
  const std::string only_breakers = render_metrics_text({nullptr, &breakers, nullptr});
  CHECK(only_breakers.find("loopwarden_breaker_open{") != std::string::npos);
  CHECK(only_breakers.find("loopwarden_events_total") == std::string::npos);
  CHECK(only_breakers.find("loopwarden_alert") == std::string::npos);
  CHECK(render_metrics_text({}).empty());
  // Every family's samples follow its own TYPE line: no family is declared twice.
  const auto status = rich_status();
  const auto all = rich_breakers();
  const auto alerts = rich_alerts();
  const std::string text = render_metrics_text({&status, &all, &alerts});
  std::vector<std::string> declared;
  std::size_t pos = 0;
  while ((pos = text.find("# TYPE ", pos)) != std::string::npos) {
    const auto end = text.find(' ', pos + 7);
    declared.push_back(text.substr(pos + 7, end - pos - 7));
    pos = end;
  }
  auto sorted = declared;
  std::sort(sorted.begin(), sorted.end());
  CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
  CHECK(declared.size() > 40);
}

TEST_CASE("metrics text escapes label values and repairs invalid utf-8", "[http]") {
  CHECK(escape_label_value("plain/name-1.x") == "plain/name-1.x");
  CHECK(escape_label_value("a\\b") == "a\\\\b");
  CHECK(escape_label_value("say \"hi\"") == "say \\\"hi\\\"");
  CHECK(escape_label_value("two\nlines") == "two\\nlines");
  CHECK(escape_label_value("bad \xff byte") == "bad \xEF\xBF\xBD byte");
  CHECK(to_valid_utf8("caf\xC3\xA9 \xE2\x9C\x93") == "caf\xC3\xA9 \xE2\x9C\x93");
  CHECK(to_valid_utf8("\xC3") == "\xEF\xBF\xBD");  // truncated sequence
  CHECK(to_valid_utf8("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  CHECK(to_valid_utf8("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong
  CHECK(format_sample_value(1e-6) == "1e-06");
  CHECK(format_sample_value(0.0001) == "0.0001");
  CHECK(format_sample_value(3.0) == "3");
  CHECK(format_sample_value(std::numeric_limits<double>::quiet_NaN()) == "NaN");
  CHECK(format_sample_value(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(format_sample_value(-std::numeric_limits<double>::infinity()) == "-Inf");

  const auto breakers = rich_breakers();
  const std::string text = render_metrics_text({nullptr, &breakers, nullptr});
  CHECK(has_line(
      text, "loopwarden_breaker_open{breaker=\"odd\\\\name \\\"q\\\"\\nx\",run_id=\"r\\\"1\"} 0"));
}

TEST_CASE("promtool accepts the metrics of a rich status without a single lint problem", "[http]") {
  REQUIRE(fs::exists("/usr/bin/promtool"));
  auto ep = start_endpoint(rich_sources());
  auto cli = client_for(*ep);
  auto r = cli.Get("/metrics");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  // The body over HTTP is the renderer's output for the same input.
  const auto status = rich_status();
  const auto breakers = rich_breakers();
  const auto alerts = rich_alerts();
  CHECK(r->body == render_metrics_text({&status, &breakers, &alerts}));
  const auto check = run_with_stdin("/usr/bin/promtool check metrics", r->body);
  INFO("promtool said:\n" << check.output << "\nbody:\n" << r->body);
  CHECK(check.exit_code == 0);
  CHECK(check.output.empty());

  // The check is real: promtool does complain about a counter without _total.
  const auto bad = run_with_stdin("/usr/bin/promtool check metrics",
                                  "# HELP x_count a count\n# TYPE x_count counter\nx_count 1\n");
  CHECK(bad.exit_code != 0);
  CHECK_FALSE(bad.output.empty());
}

// ---- routing, methods, status codes ----------------------------------------------------------

TEST_CASE("every page answers GET and HEAD with its status code and content type", "[http]") {
  auto ep = start_endpoint(rich_sources());
  auto cli = client_for(*ep);
  struct row {
    std::string path;
    std::string content_type;
    std::string body_contains;
  };
  const std::vector<row> rows = {
      {"/", "text/html; charset=utf-8", "<meta http-equiv=\"refresh\" content=\"5\">"},
      {"/status", "text/html; charset=utf-8", "training.collapse"},
      {"/api/status", "application/json", "\"open_breakers\""},
      {"/metrics", "text/plain; version=0.0.4; charset=utf-8", "loopwarden_breaker_open{"},
      {"/healthz", "text/plain; charset=utf-8", "ok"},
      {"/readyz", "text/plain; charset=utf-8", "ready"},
  };
  for (const auto& x : rows) {
    INFO("GET " << x.path);
    auto r = cli.Get(x.path.c_str());
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->get_header_value("Content-Type") == x.content_type);
    CHECK(r->get_header_value("Cache-Control") == "no-store");
    CHECK(r->body.find(x.body_contains) != std::string::npos);

    INFO("HEAD " << x.path);
    auto h = cli.Head(x.path.c_str());
    REQUIRE(h);
    CHECK(h->status == 200);
    CHECK(h->get_header_value("Content-Type") == x.content_type);
    CHECK(h->body.empty());
  }
  auto page = cli.Get("/");
  REQUIRE(page);
  CHECK(page->get_header_value("Content-Security-Policy").find("default-src 'none'") == 0);
  auto health = cli.Get("/healthz");
  REQUIRE(health);
  CHECK(health->body == "ok\n");
  // A query string does not change the page.
  auto q = cli.Get("/metrics?name[]=x");
  REQUIRE(q);
  CHECK(q->status == 200);
}

TEST_CASE("every method but GET and HEAD is refused with 405 and an Allow header", "[http]") {
  std::atomic<int> calls{0};
  http_sources counted = rich_sources();
  counted.status = [&calls] {
    ++calls;
    return rich_status();
  };
  auto ep = start_endpoint(counted);
  auto cli = client_for(*ep);
  for (const auto& path : known_paths) {
    std::vector<std::pair<std::string, httplib::Result>> results;
    results.emplace_back("POST", cli.Post(path.c_str(), "reset=all", "text/plain"));
    results.emplace_back("PUT", cli.Put(path.c_str(), "{}", "application/json"));
    results.emplace_back("DELETE", cli.Delete(path.c_str()));
    results.emplace_back("PATCH", cli.Patch(path.c_str(), "{}", "application/json"));
    results.emplace_back("OPTIONS", cli.Options(path.c_str()));
    for (auto& [method, r] : results) {
      INFO(method << " " << path);
      REQUIRE(r);
      CHECK(r->status == 405);
      CHECK(r->get_header_value("Allow") == "GET, HEAD");
      CHECK(r->body.find("read-only") != std::string::npos);
    }
    // Without a body (curl -X POST, a bare DELETE): no Content-Length at all.
    for (const std::string method : {"TRACE", "CONNECT", "POST", "PUT", "PATCH", "DELETE"}) {
      INFO(method << " " << path);
      const std::string reply = raw_request(
          ep->port(), method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      CHECK(reply.rfind("HTTP/1.1 405", 0) == 0);
      CHECK(reply.find("Allow: GET, HEAD\r\n") != std::string::npos);
    }
  }
  // Refusals never reached a source.
  CHECK(calls == 0);
}

TEST_CASE("unknown paths are 404 whatever the method", "[http]") {
  auto ep = start_endpoint(rich_sources());
  auto cli = client_for(*ep);
  for (const std::string path :
       {"/metric", "/metrics/", "/admin", "/status/x", "/api/status/reset", "/healthz.json",
        "/index.html", "/api/breakers/training.collapse/reset"}) {
    INFO(path);
    auto g = cli.Get(path.c_str());
    REQUIRE(g);
    CHECK(g->status == 404);
    CHECK(g->body.find("endpoints:") != std::string::npos);
    auto p = cli.Post(path.c_str(), "", "text/plain");
    REQUIRE(p);
    CHECK(p->status == 404);
  }
}

TEST_CASE("request bodies are bounded", "[http]") {
  auto ep = start_endpoint(rich_sources());
  // One byte over the 64 KiB limit: refused as too large (httplib reads and discards it).
  const std::string body(64 * 1024 + 1, 'x');
  const std::string reply = raw_request(
      ep->port(), "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
  CHECK(reply.rfind("HTTP/1.1 413", 0) == 0);
  auto cli = client_for(*ep);
  auto small = cli.Post("/metrics", std::string(64 * 1024, 'x'), "text/plain");
  REQUIRE(small);
  CHECK(small->status == 405);
}

// ---- health and readiness --------------------------------------------------------------------

TEST_CASE("readyz answers 200 only when plugins, state and ingest are all ready", "[http]") {
  std::mutex mu;
  readiness current;  // guarded by mu
  http_sources sources;
  sources.ready = [&] {
    std::lock_guard lock(mu);
    return current;
  };
  auto ep = start_endpoint(sources);
  auto cli = client_for(*ep);
  auto set = [&](bool plugins, bool state, bool ingest, std::string detail) {
    std::lock_guard lock(mu);
    current = {plugins, state, ingest, std::move(detail)};
  };

  set(false, false, false, "loading plugins");
  auto r = cli.Get("/readyz");
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(r->body ==
        "not ready\nplugins_loaded: no\nstate_restored: no\ningest_flowing: no\n"
        "detail: loading plugins\n");

  set(true, true, false, "no event for 45s on ipc:///run/ingest.sock");
  r = cli.Get("/readyz");
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(r->body.find("ingest_flowing: no\n") != std::string::npos);
  CHECK(r->body.find("plugins_loaded: yes\n") != std::string::npos);

  set(true, false, true, "");
  r = cli.Get("/readyz");
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(r->body.find("state_restored: no\n") != std::string::npos);

  set(true, true, true, "");
  r = cli.Get("/readyz");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "ready\nplugins_loaded: yes\nstate_restored: yes\ningest_flowing: yes\n");

  set(false, true, true, "monitor goal_drift failed to load");
  r = cli.Get("/readyz");
  REQUIRE(r);
  CHECK(r->status == 503);
  // With no status source, health is just "the HTTP thread answers".
  auto h = cli.Get("/healthz");
  REQUIRE(h);
  CHECK(h->status == 200);
}

TEST_CASE("readyz is 503 when there is no readiness source", "[http]") {
  auto ep = start_endpoint(http_sources{});
  auto cli = client_for(*ep);
  auto r = cli.Get("/readyz");
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(r->body.find("not available") != std::string::npos);
}

TEST_CASE("healthz names a stuck status source and recovers when it answers again", "[http]") {
  // The status source blocks until released (at most 10 s, so the test can never hang).
  struct gate {
    std::mutex mu;
    std::condition_variable cv;
    bool blocked = true;  // guarded by mu
    void release() {
      {
        std::lock_guard lock(mu);
        blocked = false;
      }
      cv.notify_all();
    }
  } g;
  http_sources sources;
  sources.status = [&g] {
    std::unique_lock lock(g.mu);
    g.cv.wait_for(lock, 10s, [&] { return !g.blocked; });
    return small_status();
  };
  auto ep = start_endpoint(sources, 300ms);
  struct releaser {
    gate& g;
    ~releaser() { g.release(); }
  } release_on_exit{g};  // destroyed before the endpoint, whose stop waits for the source
  auto cli = client_for(*ep);

  const auto t = std::chrono::steady_clock::now();
  auto r = cli.Get("/healthz");
  const auto took = std::chrono::steady_clock::now() - t;
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(r->body == "unhealthy: the status source did not answer within 300 ms\n");
  CHECK(took < 3s);
  auto m = cli.Get("/metrics");
  REQUIRE(m);
  CHECK(m->status == 503);
  CHECK(m->body.find("the status source did not answer within 300 ms") != std::string::npos);
  // The page still renders, saying what it could not read.
  auto page = cli.Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->body.find("the status source did not answer within 300 ms") != std::string::npos);

  g.release();
  // Calls queued behind the stuck one drain; then the source answers in time again.
  bool healthy = false;
  for (int i = 0; i < 50 && !healthy; ++i) {
    auto again = cli.Get("/healthz");
    healthy = again && again->status == 200 && again->body == "ok\n";
    if (!healthy) std::this_thread::sleep_for(100ms);
  }
  CHECK(healthy);
}

TEST_CASE("a source that throws fails the scrape and is named on the page", "[http]") {
  http_sources sources = rich_sources();
  sources.breakers = []() -> v1::BreakerSnapshot {
    throw std::runtime_error("registry is closed");
  };
  auto ep = start_endpoint(sources);
  auto cli = client_for(*ep);
  auto m = cli.Get("/metrics");
  REQUIRE(m);
  CHECK(m->status == 503);
  CHECK(m->body == "can't collect metrics:\nthe breakers source failed: registry is closed\n");
  auto page = cli.Get("/status");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->body.find("the breakers source failed: registry is closed") != std::string::npos);
  CHECK(page->body.find("Breaker state not available") != std::string::npos);
  auto h = cli.Get("/healthz");
  REQUIRE(h);
  CHECK(h->status == 200);  // the status source itself is fine
}

// ---- the status page and its JSON -----------------------------------------------------------

TEST_CASE("the status page escapes producer text and lists open breakers first", "[http]") {
  status_view v;
  v.status = rich_status();
  v.breakers = rich_breakers();
  v.transitions = rich_transitions();
  v.ready = readiness{true, true, false, "no event for 45s"};
  v.alerts = rich_alerts();
  v.now_unix_nano = t0 + 400 * sec;
  const std::string html = render_status_page(v);
  INFO(html);

  // Self-contained, no scripts, refreshed.
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(html.find("<meta http-equiv=\"refresh\" content=\"5\">") != std::string::npos);
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("src=") == std::string::npos);
  CHECK(html.find("http://") == std::string::npos);
  CHECK(html.find("https://") == std::string::npos);
  CHECK(html.find("<link") == std::string::npos);

  // Hostile text is shown, escaped.
  CHECK(html.find("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; it&#39;s &quot;bad&quot; "
                  "&amp; worse") != std::string::npos);
  CHECK(html.find("<b>value&lt;b&gt;</b>=4.2 &quot;high&quot;") != std::string::npos);
  CHECK(html.find("on it &lt;b&gt;now&lt;/b&gt;") != std::string::npos);
  CHECK(html.find("<b>now</b>") == std::string::npos);
  CHECK(html.find("\xEF\xBF\xBD") != std::string::npos);  // the invalid UTF-8 source name
  CHECK(html.find("\xff") == std::string::npos);

  // Header: version, uptime, the banner counts enforced open breakers (not the shadow one).
  CHECK(html.find("version 1.2.3") != std::string::npos);
  CHECK(html.find("up 6m 40s") != std::string::npos);
  CHECK(html.find(">2 breakers OPEN (+1 shadow)</div>") != std::string::npos);
  CHECK(html.find("<title>2 OPEN - loopwarden</title>") != std::string::npos);
  CHECK(html.find("ingest flowing: <span class=\"bad\">no</span>") != std::string::npos);
  CHECK(html.find("The last reload was refused") != std::string::npos);

  // Open first (critical and most recent first), then half-open, then closed.
  const auto table = html.substr(html.find("<section id=\"breakers\">"));
  const auto pos = [&](const std::string& s) { return table.find("<td><b>" + s + "</b>"); };
  REQUIRE(pos("agent.destructive") != std::string::npos);
  CHECK(pos("agent.destructive") < pos("training.collapse"));
  CHECK(pos("training.collapse") < pos("goal.drift"));
  CHECK(pos("goal.drift") < pos("review.bottleneck"));
  CHECK(pos("review.bottleneck") < pos("agent.drift"));
  CHECK(table.find("<span class=\"state state-open\">open</span>") != std::string::npos);
  CHECK(table.find("<span class=\"state state-forced_open\">forced_open</span>") !=
        std::string::npos);
  CHECK(table.find("<span class=\"unacked\">not acknowledged</span>") != std::string::npos);
  CHECK(table.find("<td>alice</td>") != std::string::npos);
  CHECK(table.find("<td><b>review.bottleneck</b><br>global</td>") != std::string::npos);
  CHECK(table.find("<td class=\"num\">3 / 2</td>") != std::string::npos);
  CHECK(table.find("<b>5m 0s ago</b><br><span class=\"note\">2023-11-14 22:15:00Z</span>") !=
        std::string::npos);
  CHECK(table.find("probation until 2023-11-14 22:19:10Z") != std::string::npos);
  // Copyable commands, one per line, for each open breaker (and only those).
  CHECK(table.find("loopwarden reset training.collapse --run r1 --reason &#39;...&#39;\n") !=
        std::string::npos);
  CHECK(table.find("loopwarden explain agent.destructive\n") != std::string::npos);
  CHECK(table.find("loopwarden explain review.bottleneck") == std::string::npos);

  // Transitions, newest first, with cause, operator, note, trigger and evidence.
  const auto trans = html.substr(html.find("<section id=\"transitions\">"));
  CHECK(trans.find("<td>ack</td><td>alice</td>") < trans.find("<td>trip</td>"));
  CHECK(trans.find("trainer/rank0 seq 57") != std::string::npos);
  CHECK(trans.find("<b>metric</b>=train/loss") != std::string::npos);

  // Monitors: mean = 3.5 ms / 152 calls = 23.0 us; max 2 ms.
  const auto mon = html.substr(html.find("<section id=\"monitors\">"));
  CHECK(mon.find("<td class=\"num\">23 µs</td><td class=\"num\">2 ms</td>") != std::string::npos);
  CHECK(mon.find("<span class=\"bad\">disabled</span>") != std::string::npos);
  CHECK(html.find("<td><span class=\"bad\">silent</span></td>") != std::string::npos);
}

TEST_CASE("the status page says what is not available instead of showing zeros", "[http]") {
  status_view v;
  v.now_unix_nano = t0;
  v.problems = {"the status source did not answer within 2000 ms"};
  const std::string html = render_status_page(v);
  CHECK(html.find("Breaker state not available") != std::string::npos);
  CHECK(html.find("<li>the status source did not answer within 2000 ms</li>") != std::string::npos);
  CHECK(html.find("<p class=\"note\">Not available.</p>") != std::string::npos);
  CHECK(html.find("breakers OPEN") == std::string::npos);
  CHECK(html.find("All breakers closed") == std::string::npos);

  status_view calm;
  calm.breakers = v1::BreakerSnapshot();
  *calm.breakers->add_breakers() =
      make_breaker("training.collapse", "r1", v1::BREAKER_STATE_CLOSED, t0);
  calm.now_unix_nano = t0;
  CHECK(render_status_page(calm).find(">All breakers closed</div>") != std::string::npos);
}

TEST_CASE("api/status returns the page's data as JSON", "[http]") {
  auto ep = start_endpoint(rich_sources());
  auto cli = client_for(*ep);
  auto r = cli.Get("/api/status");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  const auto j = nlohmann::json::parse(r->body);
  CHECK(j["daemon"]["version"] == "1.2.3");
  CHECK(j["daemon"]["events"] == 1234);
  CHECK(j["daemon"]["uptime_seconds"].get<std::int64_t>() > 0);
  CHECK(j["open_breakers"] == 2);
  REQUIRE(j["breakers"].size() == 6);
  CHECK(j["breakers"][0]["name"] == "agent.destructive");
  CHECK(j["breakers"][0]["state"] == "forced_open");
  CHECK(j["breakers"][0]["acknowledged_by"] == "alice");
  CHECK(j["breakers"][1]["name"] == "training.collapse");
  CHECK(j["breakers"][1]["open"] == true);
  CHECK(j["breakers"][1]["action"] == "rollback");
  CHECK(j["breakers"][1]["reason"] == "<script>alert(\"pwned\")</script> it's \"bad\" & worse");
  CHECK(j["breakers"][1]["evidence"][1]["key"] == "value<b>");
  REQUIRE(j["transitions"].size() == 2);
  CHECK(j["transitions"][0]["cause"] == "ack");
  CHECK(j["transitions"][0]["operator"] == "alice");
  CHECK(j["transitions"][1]["trigger_seq"] == 57);
  CHECK(j["readiness"]["ready"] == true);
  CHECK(j["monitors"][0]["name"] == "loss_guard");
  CHECK(j["monitors"][0]["gauges"]["loss_ewma"] == 0.25);
  CHECK(j["monitors"][0]["max_call_seconds"] == 0.002);
  CHECK(j["sources"][1]["source"].get<std::string>().find("\xEF\xBF\xBD") != std::string::npos);
  CHECK(j["alerts"][1]["name"] == "team \"ml\"");
  CHECK(j["problems"].empty());
}

// ---- lifecycle -------------------------------------------------------------------------------

TEST_CASE("a second endpoint on a port in use fails naming the address", "[http]") {
  auto first = start_endpoint(rich_sources());
  http_config cfg;
  cfg.listen = "127.0.0.1:" + std::to_string(first->port());
  auto second = http_endpoint::start(cfg, rich_sources());
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().code() == sdk::status_code::io_error);
  CHECK(second.error().message() ==
        "can't listen for http on " + cfg.listen + ": Address already in use");

  cfg.listen = "no-such-host.invalid:9464";
  auto unresolvable = http_endpoint::start(cfg, rich_sources());
  REQUIRE_FALSE(unresolvable.ok());
  CHECK(unresolvable.error().message().rfind("can't listen for http on no-such-host.invalid:9464: ",
                                             0) == 0);

  cfg.listen = "";
  auto off = http_endpoint::start(cfg, rich_sources());
  REQUIRE_FALSE(off.ok());
  CHECK(off.error().code() == sdk::status_code::invalid_argument);
  cfg.listen = "9464";
  auto malformed = http_endpoint::start(cfg, rich_sources());
  REQUIRE_FALSE(malformed.ok());
  CHECK(malformed.error().code() == sdk::status_code::invalid_argument);
}

TEST_CASE("stop closes the port, is idempotent, and the port can be bound again", "[http]") {
  auto ep = start_endpoint(rich_sources());
  const int port = ep->port();
  CHECK(ep->address() == "127.0.0.1:" + std::to_string(port));
  {
    auto cli = client_for(*ep);
    cli.set_keep_alive(true);  // an idle kept-alive connection must not hold stop() for long
    auto r = cli.Get("/healthz");
    REQUIRE(r);
    CHECK(r->status == 200);
    const auto t = std::chrono::steady_clock::now();
    ep->stop();
    CHECK(std::chrono::steady_clock::now() - t < 4s);
    ep->stop();
  }
  httplib::Client after("127.0.0.1", port);
  after.set_connection_timeout(2);
  CHECK_FALSE(after.Get("/healthz"));
  ep.reset();

  http_config cfg;
  cfg.listen = "127.0.0.1:" + std::to_string(port);
  auto again = http_endpoint::start(cfg, rich_sources());
  INFO((again.ok() ? std::string() : again.error().message()));
  REQUIRE(again.ok());
  CHECK((*again)->port() == port);
}

TEST_CASE("after stop no source callback runs, not even one a timed-out request left queued",
          "[http]") {
  std::mutex mu;
  std::condition_variable cv;
  bool released = false;  // guarded by mu
  std::atomic<int> calls{0};
  std::atomic<bool> in_call{false};
  http_sources sources;
  sources.status = [&] {
    ++calls;
    in_call = true;
    std::unique_lock lock(mu);
    cv.wait_for(lock, 10s, [&] { return released; });
    in_call = false;
    return small_status();
  };
  auto ep = start_endpoint(sources, 200ms);
  auto cli = client_for(*ep);
  auto first = cli.Get("/healthz");  // its call is in progress, stuck
  REQUIRE(first);
  CHECK(first->status == 503);
  auto second = cli.Get("/healthz");  // its call waits in the queue
  REQUIRE(second);
  CHECK(second->status == 503);
  CHECK(calls == 1);

  std::atomic<bool> stopped{false};
  std::jthread stopper([&] {
    ep->stop();
    stopped = true;
  });
  std::this_thread::sleep_for(300ms);
  CHECK_FALSE(stopped);  // waits for the call in progress...
  {
    std::lock_guard lock(mu);
    released = true;
  }
  cv.notify_all();
  stopper.join();
  CHECK(stopped);
  CHECK_FALSE(in_call);
  CHECK(calls == 1);  // ...and never ran the queued one
}

TEST_CASE("concurrent scrapes are all answered", "[http]") {
  auto ep = start_endpoint(rich_sources());
  // One scrape first, alone: cpp-httplib builds its function-local statics on first use (the
  // method set in Server::parse_request_line, the response-line regex in the client) and later
  // threads skip their guards on a fast path compiled into the uninstrumented library, which
  // ThreadSanitizer cannot see. Built here, before the burst, they are ordered before it for TSan
  // too: the client's by the threads' creation, the server's by the endpoint's job queue (a mutex),
  // which the worker that served this scrape locks again as soon as it has answered, well before
  // the burst's connections are accepted. Not counted below: the burst alone must be answered.
  {
    httplib::Client first("127.0.0.1", ep->port());
    auto r = first.Get("/metrics");
    REQUIRE(r);
    REQUIRE(r->status == 200);
  }
  std::atomic<int> ok{0};
  {
    std::vector<std::jthread> clients;
    for (int i = 0; i < 8; ++i) {
      clients.emplace_back([&] {
        httplib::Client cli("127.0.0.1", ep->port());
        cli.set_read_timeout(15);
        for (int n = 0; n < 10; ++n) {
          auto r = cli.Get(n % 2 == 0 ? "/metrics" : "/");
          if (r && r->status == 200) ++ok;
        }
      });
    }
  }
  CHECK(ok == 80);
}
