// Integration tests of `loopwarden serve`: the real daemon (tests/sidecar/daemon.hpp starts
// <build>/bin/loopwarden as a child process) over real ipc sockets, driven by the C++ host client
// (loopwarden::client), raw cppzmq sockets for what a client never sends, the control socket,
// and the real command line. Config: tests/sidecar/daemon.hpp's daemon_config() (fixture_monitor
// from tests/fixtures/plugins: trips fixture.trip on a sample named "trip", fixture.global on
// "trip_global", denies gate commands containing "deny"; 50 ms breaker heartbeats; probation 0).
//
// Every wait is bounded and generous (a loaded 2-core CI machine); latencies are measured and
// reported with INFO (run with -s to see them on success).

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <poll.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <loopwarden/client/breaker_watch.hpp>
#include <loopwarden/client/gate_client.hpp>
#include <loopwarden/client/publisher.hpp>

#include "daemon.hpp"

using namespace loopwarden;
using namespace std::chrono_literals;
using loopwarden::test::daemon_config;
using loopwarden::test::daemon_options;
using loopwarden::test::daemon_process;
using loopwarden::test::ms_since;
using loopwarden::test::wait_until;
using steady = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

// ---- helpers ---------------------------------------------------------------------------------

// A raw PUSH socket on the daemon's ingest that sends [topic][envelope] exactly as told.
struct raw_ingest {
  zmq::socket_t socket;
  explicit raw_ingest(const daemon_process& d)
      : socket(test::connect_raw(zmq::socket_type::push, d.ingest())) {}
  void send(const std::vector<std::string>& frames) { test::send_frames(socket, frames); }
  void send(const std::string& topic, const v1::Envelope& e) {
    send({topic, e.SerializeAsString()});
  }
};

std::unique_ptr<client::breaker_watch> make_watch(const daemon_process& d,
                                                  std::chrono::milliseconds timeout = 2000ms) {
  auto w = client::breaker_watch::create({.endpoint = d.breakers(), .timeout = timeout});
  REQUIRE(w.ok());
  return std::move(w).value();
}

// Waits until the watch has heard from the sidecar (so it is not failing closed on silence).
void wait_connected(const client::breaker_watch& w) {
  REQUIRE(wait_until([&] { return w.last_message().has_value() && !w.silent(); }, 10s));
}

// Waits, waking on every change the watch sees, until pred() or timeout (scaled).
template <typename Pred>
bool watch_until(const client::breaker_watch& w, Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = steady::now() + test::scaled(timeout);
  while (true) {
    const auto seen = w.epoch();
    if (pred()) return true;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    if (left.count() <= 0) return pred();
    (void)w.wait_for_change(seen, std::min<std::chrono::milliseconds>(left, 20ms));
  }
}

// The breaker `name` among those that apply to `run_id` right now, if open.
std::optional<v1::BreakerStatus> applying(const client::breaker_watch& w, const std::string& run_id,
                                          const std::string& name) {
  for (const auto& b : w.current(run_id).open) {
    if (b.name() == name) return b;
  }
  return std::nullopt;
}

std::string current_user() {
  struct passwd* pw = ::getpwuid(::geteuid());
  return pw != nullptr ? pw->pw_name : "uid " + std::to_string(::geteuid());
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

v1::ControlRequest reset_request(const std::string& name, const std::string& run_id,
                                 const std::string& reason) {
  v1::ControlRequest r;
  r.mutable_reset()->mutable_breaker()->set_name(name);
  r.mutable_reset()->mutable_breaker()->set_run_id(run_id);
  r.mutable_reset()->set_reason(reason);
  return r;
}

v1::ControlRequest force_open_request(const std::string& name, const std::string& reason) {
  v1::ControlRequest r;
  r.mutable_force_open()->mutable_breaker()->set_name(name);
  r.mutable_force_open()->set_reason(reason);
  r.mutable_force_open()->set_action(v1::BREAKER_ACTION_HALT);
  return r;
}

v1::ActionRequest shell(const std::string& command) {
  v1::ActionRequest a;
  a.set_kind(v1::ACTION_KIND_SHELL);
  a.set_tool("bash");
  a.set_command(command);
  return a;
}

// The value of "key" in one line of compact JSON (`"key":"text"` or `"key":123`), or "".
std::string json_field(const std::string& line, const std::string& key) {
  const std::regex text("\"" + key + "\":\"((?:[^\"\\\\]|\\\\.)*)\"");
  const std::regex number("\"" + key + "\":(-?[0-9]+)");
  std::smatch m;
  if (std::regex_search(line, m, text)) return m[1];
  if (std::regex_search(line, m, number)) return m[1];
  return "";
}

// The 1-based line of the first line of `text` that contains `needle` (0 if none).
int line_of(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find(needle) != std::string::npos) return n;
  }
  return 0;
}

}  // namespace

// ---- trips reach hosts -----------------------------------------------------------------------

TEST_CASE("a trip caused by a published event reaches the host's breaker watch",
          "[integration][sidecar]") {
  daemon_process d;
  auto watch = make_watch(d);
  wait_connected(*watch);
  REQUIRE_FALSE(watch->should_stop("run-1"));

  auto pub = client::publisher::create(
      {.endpoint = d.ingest(), .source = "trainer/rank0", .run_id = "run-1"});
  REQUIRE(pub.ok());
  (*pub)->metric("train/loss", 0.5, 1);
  (*pub)->metric("trip", 1.0, 2);
  const auto t0 = steady::now();
  REQUIRE((*pub)->flush());

  const bool seen = watch_until(
      *watch,
      [&] { return watch->should_stop("run-1") && applying(*watch, "run-1", "fixture.trip"); },
      10s);
  const double latency_ms = ms_since(t0);
  INFO("publish -> breaker watch latency: " << latency_ms << " ms");
  INFO("daemon log:\n" << d.log());
  REQUIRE(seen);
  CHECK(latency_ms < test::scaled(5000ms).count());

  const auto b = applying(*watch, "run-1", "fixture.trip");
  CHECK(b->state() == v1::BREAKER_STATE_OPEN);
  CHECK(b->action() == v1::BREAKER_ACTION_PAUSE);
  CHECK(b->monitor() == "fixture");
  CHECK(b->reason() == "saw a trip sample");
  CHECK(watch->current("run-1").reason.find("fixture.trip") != std::string::npos);
  // fixture.trip is run-scoped: another run carries on.
  CHECK_FALSE(watch->should_stop("run-2"));
}

TEST_CASE("a watcher that joins late learns an open breaker within one heartbeat",
          "[integration][sidecar]") {
  daemon_process d;
  raw_ingest in(d);
  in.send("metrics", test::metric_envelope("trainer/rank0", "run-1", 1, "trip"));
  REQUIRE(
      d.wait_status([](const auto& r) { return test::breaker_open(r, "fixture.trip", "run-1"); }));

  // No transition will come any more: only the periodic snapshot can tell the newcomer.
  const auto t0 = steady::now();
  auto watch = make_watch(d);
  const bool learned = watch_until(
      *watch, [&] { return applying(*watch, "run-1", "fixture.trip").has_value(); }, 10s);
  const double latency_ms = ms_since(t0);
  INFO("late join -> knows the open breaker after " << latency_ms << " ms (heartbeat 50 ms)");
  REQUIRE(learned);
  CHECK(watch->stats().transitions == 0);
  CHECK(watch->stats().snapshots >= 1);
  CHECK(watch->should_stop("run-1"));
  // One heartbeat period plus connection set-up, with slack for a loaded machine.
  CHECK(latency_ms < 50 + test::scaled(1500ms).count());
}

// ---- fail closed -----------------------------------------------------------------------------

TEST_CASE("after kill -9 the watcher fails closed and the gate times out to deny",
          "[integration][sidecar]") {
  daemon_process d;
  auto watch = make_watch(d, 500ms);
  auto gate = client::gate_client::create({.endpoint = d.gate(), .timeout = 3000ms});
  REQUIRE(gate.ok());
  wait_connected(*watch);
  const auto before = (*gate)->ask(shell("ls"));
  REQUIRE_FALSE(before.timed_out);
  REQUIRE(before.allowed());
  REQUIRE_FALSE(watch->should_stop("run-1"));

  d.kill();
  REQUIRE_FALSE(d.running());
  const auto killed = steady::now();

  const bool closed = watch_until(
      *watch, [&] { return watch->should_stop("run-1"); }, 5000ms);
  const double silent_after_ms = ms_since(killed);
  INFO("watch failed closed " << silent_after_ms << " ms after the kill (timeout 500 ms)");
  REQUIRE(closed);
  CHECK(watch->silent());
  CHECK(silent_after_ms < 500 + test::scaled(3000ms).count());
  const auto v = watch->current("run-1");
  CHECK(v.stop);
  CHECK(v.silent);
  CHECK_FALSE(v.reason.empty());

  const auto t0 = steady::now();
  const auto after = (*gate)->ask(shell("ls"), 300ms);
  const double gate_ms = ms_since(t0);
  INFO("gate ask gave up after " << gate_ms << " ms (timeout 300 ms)");
  CHECK(after.timed_out);
  CHECK(after.verdict == sdk::gate_verdict::deny);
  CHECK(after.rule_id == "client.timeout");
  CHECK(gate_ms < 300 + test::scaled(2000ms).count());
}

// ---- the event stream's accounting -----------------------------------------------------------

TEST_CASE("sequence gaps are counted as lost and a duplicate is counted and dropped",
          "[integration][sidecar]") {
  daemon_process d;
  raw_ingest in(d);
  for (std::uint64_t seq : {1, 2, 5, 6}) {
    in.send("metrics", test::metric_envelope("gappy", "run-g", seq, "x"));
  }
  in.send("metrics", test::metric_envelope("gappy", "run-g", 6, "x"));  // the duplicate

  v1::ControlResponse r;
  const bool done = d.wait_status(
      [](const auto& s) {
        const auto* src = test::find_source(s, "gappy");
        // The monitor runs on its own worker: its count may trail the dispatcher's.
        const auto* mon = test::find_monitor(s, "fixture");
        return src != nullptr && src->received() + src->duplicates() == 5 && mon != nullptr &&
               mon->events() == 4;
      },
      10s, &r);
  INFO(r.DebugString());
  REQUIRE(done);
  const auto* src = test::find_source(r, "gappy");
  CHECK(src->lost() == 2);
  CHECK(src->duplicates() == 1);
  CHECK(src->received() == 4);
  CHECK(src->late() == 0);
  CHECK(src->restarts() == 0);
  CHECK(src->run_id() == "run-g");
  CHECK(r.sidecar().duplicates() == 1);
  CHECK(r.sidecar().events() == 5);
  CHECK(r.sidecar().malformed() == 0);
  // The duplicate never reached the monitor.
  const auto* mon = test::find_monitor(r, "fixture");
  REQUIRE(mon != nullptr);
  CHECK(mon->events() == 4);
}

TEST_CASE("a silent source trips telemetry.silence but one that said goodbye does not",
          "[integration][sidecar]") {
  daemon_process d({.config = daemon_config(test::fixture_monitor_yaml, "1s")});
  raw_ingest in(d);
  const auto sent = steady::now();
  in.send("heartbeat", test::heartbeat_envelope("quiet", "run-a", 1));
  in.send("metrics", test::metric_envelope("quiet", "run-a", 2, "x"));
  in.send("heartbeat", test::heartbeat_envelope("polite", "run-b", 1));
  in.send("heartbeat", test::heartbeat_envelope("polite", "run-b", 2, /*closing=*/true));

  v1::ControlResponse r;
  const bool tripped = d.wait_status(
      [](const auto& s) { return test::breaker_open(s, "telemetry.silence", "run-a"); }, 10s, &r);
  const double after_ms = ms_since(sent);
  INFO("telemetry.silence opened " << after_ms << " ms after the last event (timeout 1 s)");
  INFO(r.DebugString());
  REQUIRE(tripped);
  CHECK(after_ms >= 950);  // not before the timeout
  // The timeout, a 50 ms tick, and slack.
  CHECK(after_ms < 1000 + test::scaled(3000ms).count());
  const auto* b = test::find_breaker(r, "telemetry.silence", "run-a");
  CHECK(b->monitor() == "loopwarden.telemetry");
  CHECK(b->reason().find("quiet") != std::string::npos);

  // Both went quiet at the same moment; the polite one said goodbye, so it never trips. (A few
  // more ticks, to be sure it is not merely later.)
  CHECK_FALSE(d.wait_status(
      [](const auto& s) { return test::find_breaker(s, "telemetry.silence", "run-b") != nullptr; },
      500ms, &r));
  const auto* quiet = test::find_source(r, "quiet");
  const auto* polite = test::find_source(r, "polite");
  REQUIRE(quiet != nullptr);
  REQUIRE(polite != nullptr);
  CHECK(quiet->silent());
  CHECK_FALSE(quiet->closing());
  CHECK(polite->closing());
  CHECK_FALSE(polite->silent());
}

// ---- isolation and robustness ----------------------------------------------------------------

TEST_CASE("control commands sent to the ingest and gate sockets change nothing",
          "[integration][sidecar]") {
  daemon_process d;
  raw_ingest in(d);
  in.send("metrics", test::metric_envelope("pipeline", "run-1", 1, "trip"));
  v1::ControlResponse before;
  REQUIRE(d.wait_status(
      [](const auto& s) { return test::breaker_open(s, "fixture.trip", "run-1"); }, 10s, &before));
  const auto* tripped = test::find_breaker(before, "fixture.trip", "run-1");
  const auto* global = test::find_breaker(before, "fixture.global");
  REQUIRE(global != nullptr);  // declared by the monitor, closed
  REQUIRE(global->state() == v1::BREAKER_STATE_CLOSED);
  const auto tripped_epoch = tripped->epoch();
  const auto global_epoch = global->epoch();

  // What a compromised pipeline might try: reset its own breaker, force another open.
  const std::string reset =
      reset_request("fixture.trip", "run-1", "the pipeline says so").SerializeAsString();
  const std::string force =
      force_open_request("fixture.global", "the pipeline says so").SerializeAsString();
  SECTION("on the ingest socket they are malformed input, counted and dropped") {
    in.send({"metrics", reset});  // parses as an envelope whose body is not metrics
    in.send({"metrics", force});
    in.send({"control", reset});                                             // no such topic
    in.send({reset});                                                        // one frame
    in.send("metrics", test::metric_envelope("pipeline", "run-1", 2, "x"));  // a marker
    v1::ControlResponse r;
    REQUIRE(d.wait_status(
        [](const auto& s) {
          const auto* src = test::find_source(s, "pipeline");
          return src != nullptr && src->received() == 2;
        },
        10s, &r));
    INFO(r.DebugString());
    CHECK(r.sidecar().malformed() == 4);
    REQUIRE(r.sidecar().ingest_size() == 1);
    CHECK(r.sidecar().ingest(0).malformed() == 4);
    CHECK(test::find_breaker(r, "fixture.trip", "run-1")->state() == v1::BREAKER_STATE_OPEN);
    CHECK(test::find_breaker(r, "fixture.trip", "run-1")->epoch() == tripped_epoch);
    CHECK(test::find_breaker(r, "fixture.global")->state() == v1::BREAKER_STATE_CLOSED);
    CHECK(test::find_breaker(r, "fixture.global")->epoch() == global_epoch);
  }
  SECTION("on the gate socket they are answered as gate requests and change nothing") {
    auto dealer = test::connect_raw(zmq::socket_type::dealer, d.gate());
    for (const auto* payload : {&reset, &force}) {
      test::send_frames(dealer, {"", *payload});
      auto reply = test::receive_frames(dealer, 5s);
      REQUIRE(reply.has_value());  // answered (whatever the verdict), so it was processed
      REQUIRE(reply->size() == 2);
      v1::GateDecision decision;
      CHECK(decision.ParseFromArray(reply->back().data(), static_cast<int>(reply->back().size())));
    }
    const auto r = d.status();
    CHECK(r.sidecar().gate_requests() == 2);
    CHECK(test::find_breaker(r, "fixture.trip", "run-1")->state() == v1::BREAKER_STATE_OPEN);
    CHECK(test::find_breaker(r, "fixture.trip", "run-1")->epoch() == tripped_epoch);
    CHECK_FALSE(test::find_breaker(r, "fixture.trip", "run-1")->acknowledged());
    CHECK(test::find_breaker(r, "fixture.global")->state() == v1::BREAKER_STATE_CLOSED);
    CHECK(test::find_breaker(r, "fixture.global")->epoch() == global_epoch);
  }
  SECTION("the control socket's directory is private to its owner (mode 0700)") {
    struct stat st {};
    REQUIRE(::stat(d.control_dir().c_str(), &st) == 0);
    CHECK(S_ISDIR(st.st_mode));
    CHECK((st.st_mode & 07777) == 0700);
    CHECK(st.st_uid == ::geteuid());
    struct stat sock {};
    REQUIRE(::stat((d.control_dir() + "/control.sock").c_str(), &sock) == 0);
    CHECK(S_ISSOCK(sock.st_mode));
  }
}

// docs/wire-protocol.md promises that a control command on the ingest socket is malformed
// there. Protobuf alone cannot tell: ControlRequest's command fields share their numbers with the
// Envelope's bodies (force_open = 14 = action, reset = 13 = agent_step, status = 10 = metrics),
// so a ControlRequest sent on the matching topic parses as an envelope. It has no source
// (ControlRequest has no field 2), and the ingest refuses envelopes that name no source.
TEST_CASE("a control request on the topic its command aliases is still counted malformed",
          "[integration][sidecar]") {
  daemon_process d;
  raw_ingest in(d);
  in.send({"action", force_open_request("fixture.global", "aliased").SerializeAsString()});
  in.send({"agent_step", reset_request("fixture.trip", "run-1", "aliased").SerializeAsString()});
  in.send("metrics", test::metric_envelope("marker", "run-1", 1, "x"));
  v1::ControlResponse r;
  REQUIRE(d.wait_status([](const auto& s) { return test::find_source(s, "marker") != nullptr; },
                        10s, &r));
  INFO(r.DebugString());
  CHECK(r.sidecar().malformed() == 2);
  CHECK(r.sidecar().events() == 1);
  CHECK(test::find_breaker(r, "fixture.global")->state() == v1::BREAKER_STATE_CLOSED);
}

TEST_CASE("malformed ingest messages are each counted and the daemon keeps evaluating",
          "[integration][sidecar]") {
  daemon_process d;
  raw_ingest in(d);

  const std::string good = test::metric_envelope("m-src", "run-m", 1, "x").SerializeAsString();
  std::mt19937 rng(20240611);
  std::string random(64, '\0');
  for (auto& c : random) c = static_cast<char>(rng() & 0xff);
  random[0] = '\0';  // field number 0 is invalid: never parses, whatever follows
  std::string truncated = good.substr(0, good.size() - 3);  // inside the metrics body
  v1::Envelope probe;
  REQUIRE_FALSE(probe.ParseFromString(random));
  REQUIRE_FALSE(probe.ParseFromString(truncated));
  v1::Envelope no_body = test::envelope("m-src", "run-m", 1);
  std::string extra = "extra";

  const std::vector<std::pair<const char*, std::vector<std::string>>> bad = {
      {"random bytes, one frame", {random}},
      {"random bytes as the payload", {"metrics", random}},
      {"an empty single frame", {""}},
      {"a good envelope without its topic frame", {good}},
      {"three frames", {"metrics", good, extra}},
      {"a truncated envelope", {"metrics", truncated}},
      {"an unknown topic", {"metricz", good}},
      {"an empty topic", {"", good}},
      {"a topic that does not match the body", {"heartbeat", good}},
      {"an envelope without a body", {"metrics", no_body.SerializeAsString()}},
  };
  for (const auto& [what, frames] : bad) in.send(frames);
  // A good event after all of them is still evaluated.
  in.send("metrics", test::metric_envelope("m-src", "run-m", 1, "trip"));

  v1::ControlResponse r;
  const bool tripped = d.wait_status(
      [](const auto& s) { return test::breaker_open(s, "fixture.trip", "run-m"); }, 10s, &r);
  INFO(r.DebugString());
  INFO("daemon log:\n" << d.log());
  REQUIRE(tripped);
  CHECK(r.sidecar().malformed() == bad.size());
  REQUIRE(r.sidecar().ingest_size() == 1);
  CHECK(r.sidecar().ingest(0).malformed() == bad.size());
  CHECK(r.sidecar().ingest(0).received() == bad.size() + 1);
  CHECK(r.sidecar().events() == 1);
  const auto* src = test::find_source(r, "m-src");
  REQUIRE(src != nullptr);
  CHECK(src->received() == 1);
  CHECK(src->lost() == 0);
  // Each is logged (the first ten in full), with the reason.
  const std::string log = d.log();
  CHECK(log.find("dropped a malformed message") != std::string::npos);
  CHECK(log.find("unknown topic 'metricz'") != std::string::npos);
  CHECK(log.find("3 frames, expected 2") != std::string::npos);
  CHECK(log.find("envelope has no body") != std::string::npos);
  CHECK(log.find("topic 'heartbeat' but a metrics body") != std::string::npos);
  CHECK(d.running());
}

// ---- reloading -------------------------------------------------------------------------------

namespace {

// daemon_config() with a bad value in the fixture monitor's entry; the error names its line.
std::string broken_config() {
  return daemon_config(std::string(test::fixture_monitor_yaml) + "    optional: maybe\n");
}

// A good new config: the fixture monitor with another label (so it is rebuilt), and a threshold
// monitor that was not there before.
std::string changed_config() {
  return daemon_config(
      "  - name: fixture\n"
      "    plugin: fixture_monitor\n"
      "    config: {label: v2}\n"
      "  - name: loss_guard\n"
      "    plugin: threshold\n"
      "    config: {metric: loss, above: 3, consecutive: 1, breaker: training.loss}\n");
}

void check_refused(const daemon_process& d, const v1::ControlResponse& r) {
  const int line = line_of(d.expand(broken_config()), "optional: maybe");
  REQUIRE(line > 0);
  const std::string& error = r.sidecar().last_reload_error();
  INFO("last_reload_error: " << error);
  CHECK(error.find("monitors[0].optional") != std::string::npos);
  CHECK(error.find("loopwarden.yaml:" + std::to_string(line) + ")") != std::string::npos);
  CHECK(r.sidecar().reloads() == 0);
}

void check_applied_keeping_open_breakers(const daemon_process& d, raw_ingest& in,
                                         std::uint64_t open_epoch) {
  v1::ControlResponse r = d.status();
  INFO(r.DebugString());
  CHECK(r.sidecar().reloads() == 1);
  CHECK(r.sidecar().last_reload_error().empty());
  // The breaker opened before the reload is still open, untouched.
  REQUIRE(test::breaker_open(r, "fixture.trip", "run-1"));
  CHECK(test::find_breaker(r, "fixture.trip", "run-1")->epoch() == open_epoch);
  CHECK(test::find_monitor(r, "loss_guard") != nullptr);
  // The new config is what runs now: the fixture's new label, and the new monitor.
  in.send("metrics", test::metric_envelope("trainer", "run-2", 2, "trip"));
  in.send("metrics", test::metric_envelope("trainer", "run-3", 3, "loss", 5.0));
  REQUIRE(d.wait_status(
      [](const auto& s) {
        return test::breaker_open(s, "fixture.trip", "run-2") &&
               test::breaker_open(s, "training.loss", "run-3");
      },
      10s, &r));
  const auto* b = test::find_breaker(r, "fixture.trip", "run-2");
  std::string label;
  for (const auto& e : b->evidence()) {
    if (e.key() == "label") label = e.value();
  }
  CHECK(label == "v2");
  CHECK(test::breaker_open(r, "fixture.trip", "run-1"));
}

}  // namespace

TEST_CASE("SIGHUP with a broken config keeps the old one and reports the field and line",
          "[integration][sidecar]") {
  daemon_process d;
  d.write_config(broken_config());
  d.signal(SIGHUP);
  v1::ControlResponse r;
  REQUIRE(d.wait_status([](const auto& s) { return !s.sidecar().last_reload_error().empty(); }, 10s,
                        &r));
  check_refused(d, r);
  CHECK(d.log().find("reload refused") != std::string::npos);

  // The old monitor still runs.
  raw_ingest in(d);
  in.send("metrics", test::metric_envelope("trainer", "run-1", 1, "trip"));
  REQUIRE(
      d.wait_status([](const auto& s) { return test::breaker_open(s, "fixture.trip", "run-1"); }));
  CHECK(d.running());
}

TEST_CASE("SIGHUP with a good config applies it and keeps open breakers open",
          "[integration][sidecar]") {
  daemon_process d;
  raw_ingest in(d);
  in.send("metrics", test::metric_envelope("trainer", "run-1", 1, "trip"));
  v1::ControlResponse r;
  REQUIRE(d.wait_status(
      [](const auto& s) { return test::breaker_open(s, "fixture.trip", "run-1"); }, 10s, &r));
  const auto epoch = test::find_breaker(r, "fixture.trip", "run-1")->epoch();

  d.write_config(changed_config());
  d.signal(SIGHUP);
  REQUIRE(d.wait_status([](const auto& s) { return s.sidecar().reloads() == 1; }));
  check_applied_keeping_open_breakers(d, in, epoch);
}

TEST_CASE("loopwarden reload refuses a broken config and applies a good one",
          "[integration][sidecar]") {
  daemon_process d;
  raw_ingest in(d);
  in.send("metrics", test::metric_envelope("trainer", "run-1", 1, "trip"));
  v1::ControlResponse r;
  REQUIRE(d.wait_status(
      [](const auto& s) { return test::breaker_open(s, "fixture.trip", "run-1"); }, 10s, &r));
  const auto epoch = test::find_breaker(r, "fixture.trip", "run-1")->epoch();
  const std::string where = "--state-dir " + quoted(d.state_dir());

  d.write_config(broken_config());
  auto refused = test::run_loopwarden("reload " + where, d.dir());
  INFO("stdout: " << refused.out << "\nstderr: " << refused.err);
  CHECK(refused.code == 1);
  CHECK(refused.err.find("monitors[0].optional") != std::string::npos);
  check_refused(d, d.status());

  d.write_config(changed_config());
  auto applied = test::run_loopwarden("reload " + where, d.dir());
  INFO("stdout: " << applied.out << "\nstderr: " << applied.err);
  CHECK(applied.code == 0);
  CHECK(applied.out.find("reloaded") != std::string::npos);
  check_applied_keeping_open_breakers(d, in, epoch);
}

// A reload swaps the engine but keeps its per-source accounting (sequence windows must survive);
// the kept accounting must still take the new telemetry settings.
TEST_CASE("a reload that shortens telemetry.silence_timeout applies the new timeout",
          "[integration][sidecar]") {
  daemon_process d;  // silence_timeout 30s
  d.write_config(daemon_config(test::fixture_monitor_yaml, "500ms"));
  d.signal(SIGHUP);
  REQUIRE(d.wait_status([](const auto& s) { return s.sidecar().reloads() == 1; }));
  raw_ingest in(d);
  in.send("heartbeat", test::heartbeat_envelope("quiet", "run-a", 1));
  v1::ControlResponse r;
  const bool tripped = d.wait_status(
      [](const auto& s) { return test::breaker_open(s, "telemetry.silence", "run-a"); }, 3s, &r);
  INFO(r.DebugString());
  CHECK(tripped);
}

// The registry is made once, at start-up; a reload must still replace its default probation.
TEST_CASE("a reload that sets a default probation puts later resets on probation",
          "[integration][sidecar]") {
  daemon_process d;  // probation 0
  std::string cfg = daemon_config();
  cfg.replace(cfg.find("probation: 0"), std::strlen("probation: 0"), "probation: 1h");
  d.write_config(cfg);
  d.signal(SIGHUP);
  REQUIRE(d.wait_status([](const auto& s) { return s.sidecar().reloads() == 1; }));
  raw_ingest in(d);
  in.send("metrics", test::metric_envelope("trainer", "run-1", 1, "trip"));
  REQUIRE(
      d.wait_status([](const auto& s) { return test::breaker_open(s, "fixture.trip", "run-1"); }));
  auto reset = d.control(reset_request("fixture.trip", "run-1", "fixed"));
  REQUIRE(reset.ok());
  REQUIRE(reset->ok());
  const auto* b = test::find_breaker(*reset, "fixture.trip", "run-1");
  REQUIRE(b != nullptr);
  CHECK(b->state() == v1::BREAKER_STATE_HALF_OPEN);
}

// ---- the operator's command line -------------------------------------------------------------

TEST_CASE("operator commands through the real command line: status, explain, ack, reset, halt",
          "[integration][sidecar]") {
  daemon_process d;
  auto watch = make_watch(d);
  wait_connected(*watch);
  raw_ingest in(d);
  in.send("metrics", test::metric_envelope("trainer", "run-1", 1, "trip"));
  REQUIRE(watch_until(
      *watch, [&] { return applying(*watch, "run-1", "fixture.trip").has_value(); }, 10s));
  const std::string where = " --state-dir " + quoted(d.state_dir());
  auto lw = [&](const std::string& args) {
    auto r = test::run_loopwarden(args + where, d.dir());
    UNSCOPED_INFO("loopwarden " << args << " -> exit " << r.code << "\nstdout:\n"
                                << r.out << "stderr:\n"
                                << r.err);
    return r;
  };
  auto json_status = [&] {
    auto r = lw("status --json");
    REQUIRE(r.code == 0);
    v1::ControlResponse parsed;
    REQUIRE(google::protobuf::util::JsonStringToMessage(r.out, &parsed).ok());
    return parsed;
  };

  {
    auto r = lw("status");
    CHECK(r.code == 0);
    CHECK(r.out.find("fixture.trip") != std::string::npos);
    CHECK(r.out.find("run-1") != std::string::npos);
    CHECK(r.out.find("OPEN") != std::string::npos);
    CHECK(r.out.find("trainer") != std::string::npos);  // the source
    const auto s = json_status();
    CHECK(s.ok());
    CHECK(test::breaker_open(s, "fixture.trip", "run-1"));
  }
  {
    auto r = lw("explain fixture.trip --run run-1");
    CHECK(r.code == 0);
    CHECK(r.out.find("saw a trip sample") != std::string::npos);
    CHECK(r.out.find("tripped by:   fixture") != std::string::npos);
    CHECK(r.out.find("timeline:") != std::string::npos);
    CHECK(r.out.find("loopwarden reset fixture.trip --run run-1") != std::string::npos);
    auto missing = lw("explain no.such.breaker");
    CHECK(missing.code == 1);
    CHECK(missing.err.find("no breaker 'no.such.breaker'") != std::string::npos);
  }
  {
    auto r = lw("ack fixture.trip --run run-1 --note 'looking at it'");
    CHECK(r.code == 0);
    const auto s = json_status();
    const auto* b = test::find_breaker(s, "fixture.trip", "run-1");
    REQUIRE(b != nullptr);
    CHECK(b->acknowledged());
    CHECK(b->acknowledged_by() == "unix:" + current_user());  // from the peer credentials
    CHECK(b->state() == v1::BREAKER_STATE_OPEN);              // acknowledged is still open
  }
  {
    auto no_reason = lw("reset fixture.trip --run run-1");  // refused by the command line
    CHECK(no_reason.code == 2);
    CHECK(no_reason.err.find("--reason") != std::string::npos);
    auto empty_reason = lw("reset fixture.trip --run run-1 --reason ''");  // by the daemon
    CHECK(empty_reason.code == 1);
    CHECK_FALSE(empty_reason.err.empty());
    CHECK(test::breaker_open(json_status(), "fixture.trip", "run-1"));
    CHECK(watch->should_stop("run-1"));
  }
  {
    auto r = lw("reset fixture.trip --run run-1 --reason 'bad batch removed'");
    CHECK(r.code == 0);
    // probation 0: closed at once, and the host carries on.
    CHECK(watch_until(
        *watch, [&] { return !watch->should_stop("run-1"); }, 10s));
    const auto s = json_status();
    REQUIRE(test::find_breaker(s, "fixture.trip", "run-1") != nullptr);
    CHECK(test::find_breaker(s, "fixture.trip", "run-1")->state() == v1::BREAKER_STATE_CLOSED);
  }
  {
    auto r = lw("halt fixture.global --reason 'manual stop'");
    CHECK(r.code == 0);
    const bool forced = watch_until(
        *watch,
        [&] {
          auto b = applying(*watch, "any-run", "fixture.global");
          return b && b->state() == v1::BREAKER_STATE_FORCED_OPEN;
        },
        10s);
    REQUIRE(forced);
    CHECK(watch->should_stop("any-run"));
    CHECK(watch->should_stop("run-1"));
    const auto b = applying(*watch, "run-1", "fixture.global");
    CHECK(b->reason() == "manual stop");
    CHECK(b->action() == v1::BREAKER_ACTION_HALT);

    auto resumed = lw("reset fixture.global --reason 'all clear'");
    CHECK(resumed.code == 0);
    CHECK(watch_until(
        *watch, [&] { return !watch->should_stop("run-1"); }, 10s));
  }
}

// ---- the gate --------------------------------------------------------------------------------

TEST_CASE("the gate allows without a gating monitor and relays the fixture monitor's deny",
          "[integration][sidecar]") {
  SECTION("no gating monitor: allow") {
    daemon_process d({.config = daemon_config(
                          "  - name: loss_guard\n"
                          "    plugin: threshold\n"
                          "    config: {metric: loss, above: 3, breaker: training.loss}\n")});
    auto gate = client::gate_client::create({.endpoint = d.gate(), .timeout = 5000ms});
    REQUIRE(gate.ok());
    const auto decision = (*gate)->ask(shell("rm -rf / # deny"));
    CHECK_FALSE(decision.timed_out);
    CHECK(decision.verdict == sdk::gate_verdict::allow);
    CHECK(decision.monitor.empty());
  }
  SECTION("the fixture monitor: allow, deny, require approval") {
    daemon_process d;
    auto gate = client::gate_client::create(
        {.endpoint = d.gate(), .source = "agent", .run_id = "run-1", .timeout = 5000ms});
    REQUIRE(gate.ok());
    const auto allowed = (*gate)->ask(shell("ls -la"));
    CHECK_FALSE(allowed.timed_out);
    CHECK(allowed.verdict == sdk::gate_verdict::allow);

    const auto denied = (*gate)->ask(shell("rm -rf /srv/data # deny"));
    CHECK_FALSE(denied.timed_out);
    CHECK(denied.verdict == sdk::gate_verdict::deny);
    CHECK(denied.reason == "fixture denies");
    CHECK(denied.rule_id == "fixture.deny");
    CHECK(denied.monitor == "fixture");
    CHECK(denied.alternative == "don't");

    const auto ask = (*gate)->ask(shell("approve this migration"));
    CHECK_FALSE(ask.timed_out);
    CHECK(ask.verdict == sdk::gate_verdict::require_approval);
    CHECK(ask.rule_id == "fixture.ask");

    const auto s = d.status();
    CHECK(s.sidecar().gate_requests() == 3);
    CHECK(test::find_monitor(s, "fixture")->gates() == 3);
  }
}

TEST_CASE("gate requests are answered promptly while events flood in", "[integration][sidecar]") {
  daemon_process d;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> flooded{0};
  // A host's publisher thread sending one sample per envelope as fast as it can (the client
  // never blocks: at its high-water mark it drops and counts, and the thread yields).
  std::thread flood([&] {
    auto pub = client::publisher::create(
        {.endpoint = d.ingest(), .source = "flood", .run_id = "run-f", .max_batch_samples = 1});
    if (!pub.ok()) return;
    for (std::int64_t step = 0; !stop.load(std::memory_order_relaxed); ++step) {
      const auto dropped = (*pub)->stats().dropped();
      (*pub)->metric("x", static_cast<double>(step), step);
      if ((*pub)->stats().dropped() != dropped) std::this_thread::yield();
    }
    flooded = (*pub)->stats().events_sent;
  });
  struct joiner {
    std::atomic<bool>& stop;
    std::thread& t;
    ~joiner() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } join_flood{stop, flood};

  // The flood is on when the engine has evaluated a good number of its events.
  REQUIRE(d.wait_status([](const auto& s) { return s.sidecar().events() > 5000; }, 20s));
  const auto events_before = d.status().sidecar().events();

  auto gate = client::gate_client::create({.endpoint = d.gate(), .timeout = 5000ms});
  REQUIRE(gate.ok());
  std::vector<double> round_trips;
  std::uint64_t max_queue = 0;
  for (int i = 0; i < 40; ++i) {
    const auto t0 = steady::now();
    const auto decision = (*gate)->ask(shell(i % 2 == 0 ? "ls" : "rm -rf x # deny"));
    round_trips.push_back(ms_since(t0));
    REQUIRE_FALSE(decision.timed_out);
    CHECK(decision.verdict == (i % 2 == 0 ? sdk::gate_verdict::allow : sdk::gate_verdict::deny));
    if (i % 10 == 0)
      max_queue = std::max<std::uint64_t>(max_queue, d.status().sidecar().queue_depth());
  }
  const auto events_after = d.status().sidecar().events();
  stop = true;
  flood.join();

  std::sort(round_trips.begin(), round_trips.end());
  const double median = round_trips[round_trips.size() / 2];
  const double worst = round_trips.back();
  INFO("gate round trip under flood: median "
       << median << " ms, max " << worst << " ms; events evaluated meanwhile "
       << events_after - events_before << ", deepest queue seen " << max_queue << ", flooded "
       << flooded.load());
  CHECK(events_after > events_before);  // the flood really was being evaluated meanwhile
  CHECK(median < 100);
  CHECK(worst < 1000);
}

// ---- recording and shutdown ------------------------------------------------------------------

TEST_CASE("serve --record writes a file that loopwarden replay reproduces",
          "[integration][sidecar]") {
  daemon_process d({.args = {"--record", "@DIR@/live.lwreplay"}});
  raw_ingest in(d);
  std::uint64_t seq = 0;
  for (const auto& [run, name] : std::vector<std::pair<std::string, std::string>>{{"run-1", "x"},
                                                                                  {"run-1", "trip"},
                                                                                  {"run-2", "x"},
                                                                                  {"run-2", "y"},
                                                                                  {"run-2", "trip"},
                                                                                  {"run-3", "x"}}) {
    in.send("metrics", test::metric_envelope("recorded", run, ++seq, name));
  }
  in.send("heartbeat", test::heartbeat_envelope("recorded", "run-3", ++seq));
  // The monitor runs on its own worker: wait for its trips, not only for the dispatcher's count.
  REQUIRE(d.wait_status([&](const auto& s) {
    const auto* src = test::find_source(s, "recorded");
    return src != nullptr && src->received() == seq &&
           test::breaker_open(s, "fixture.trip", "run-1") &&
           test::breaker_open(s, "fixture.trip", "run-2");
  }));
  // The monitor runs on its own worker and trails the dispatcher: wait for its trips too.
  REQUIRE(d.wait_status([](const auto& s) {
    return test::breaker_open(s, "fixture.trip", "run-1") &&
           test::breaker_open(s, "fixture.trip", "run-2");
  }));

  // The live trips, from each open breaker's timeline.
  std::set<std::string> live;
  for (const auto& run : {"run-1", "run-2"}) {
    v1::ControlRequest explain;
    explain.mutable_explain()->mutable_breaker()->set_name("fixture.trip");
    explain.mutable_explain()->mutable_breaker()->set_run_id(run);
    auto r = d.control(explain);
    REQUIRE(r.ok());
    REQUIRE(r->ok());
    for (const auto& t : r->history()) {
      if (t.cause() == "trip") {
        live.insert(t.breaker().name() + "|" + t.breaker().run_id() + "|" + t.trigger_source() +
                    "|" + std::to_string(t.trigger_seq()) + "|" + t.breaker().reason());
      }
    }
  }
  REQUIRE(live.size() == 2);
  REQUIRE(d.stop() == 0);  // closes the recording

  const std::string recording = (d.dir() / "live.lwreplay").string();
  REQUIRE(fs::exists(recording));
  auto r = test::run_loopwarden(
      "replay --json -c " + quoted(d.config_file()) + " " + quoted(recording), d.dir());
  INFO("replay stdout:\n" << r.out << "stderr:\n" << r.err);
  CHECK(r.code == 1);  // a breaker opened
  std::set<std::string> replayed;
  std::string summary;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    const std::string type = json_field(line, "type");
    if (type == "summary") summary = line;
    if (type == "transition" && json_field(line, "cause") == "trip") {
      replayed.insert(json_field(line, "breaker") + "|" + json_field(line, "run_id") + "|" +
                      json_field(line, "trigger_source") + "|" + json_field(line, "trigger_seq") +
                      "|" + json_field(line, "reason"));
    }
  }
  CHECK(replayed == live);
  CHECK(json_field(summary, "events") == std::to_string(seq));
  CHECK(json_field(summary, "malformed") == "0");
  CHECK(json_field(summary, "damaged_records") == "0");
}

TEST_CASE("SIGTERM evaluates the events already received, prints loopwarden stopped, exits 0",
          "[integration][sidecar]") {
  daemon_process d;
  auto watch = make_watch(d, 10000ms);
  wait_connected(*watch);
  raw_ingest in(d);
  constexpr std::uint64_t n = 5000;
  {
    v1::Envelope e = test::metric_envelope("burst", "run-1", 1, "x");
    for (std::uint64_t seq = 1; seq < n; ++seq) {
      e.set_seq(seq);
      in.send("metrics", e);
    }
  }
  in.send("metrics", test::metric_envelope("burst", "run-1", n, "trip"));
  // Every event has been read off the socket by the daemon; some may still wait in the queue
  // to the monitors when the signal comes (events that have not reached the daemon's ingest
  // thread yet are the next test's business).
  v1::ControlResponse r;
  REQUIRE(d.wait_status(
      [](const auto& s) {
        return s.sidecar().ingest_size() == 1 && s.sidecar().ingest(0).received() == n;
      },
      30s, &r));
  INFO("when SIGTERM was sent: " << r.sidecar().events() << " of " << n
                                 << " events evaluated, queue depth " << r.sidecar().queue_depth());
  const auto t0 = steady::now();
  d.signal(SIGTERM);
  const auto code = d.wait_exit(20s);
  const double stop_ms = ms_since(t0);
  INFO("stopped after " << stop_ms << " ms");
  INFO("daemon log:\n" << d.log());
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(d.out().find("loopwarden stopped") != std::string::npos);
  CHECK(d.err().find("received SIGTERM") != std::string::npos);
  // The last event's trip was evaluated and published before the daemon left.
  CHECK(d.err().find("breaker fixture.trip") != std::string::npos);
  CHECK(d.err().find("were not evaluated") == std::string::npos);
  CHECK(watch_until(
      *watch, [&] { return applying(*watch, "run-1", "fixture.trip").has_value(); }, 2000ms));
}

// The drain covers the ingest sockets too, not only the queue behind them: after SIGTERM the
// ingest thread keeps reading what ZeroMQ already received (bounded by drain_timeout). To make
// that deterministic the ingest thread is held still: it records to a FIFO that the test stops
// reading, so it blocks while the events pile up in its socket, and the FIFO is drained only
// after SIGTERM.
TEST_CASE("events that reached the ingest socket before SIGTERM are evaluated",
          "[integration][sidecar]") {
  int fifo = -1;
  daemon_process d(
      {.args = {"--record", "@DIR@/record.fifo"}, .before_start = [&](const fs::path& dir) {
         const std::string path = (dir / "record.fifo").string();
         REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
         // A reader must exist before the daemon opens the FIFO for writing.
         fifo = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
         REQUIRE(fifo >= 0);
         (void)::fcntl(fifo, F_SETPIPE_SZ, 4096);
       }});
  struct closer {
    int& fd;
    ~closer() {
      if (fd >= 0) ::close(fd);
    }
  } close_fifo{fifo};
  auto watch = make_watch(d, 10000ms);
  wait_connected(*watch);

  auto push = test::connect_raw(zmq::socket_type::push, d.ingest());
  push.set(zmq::sockopt::sndhwm, 1'000'000);
  constexpr std::uint64_t n = 5000;
  {
    v1::Envelope e = test::metric_envelope("held", "run-1", 1, "x");
    for (std::uint64_t seq = 1; seq < n; ++seq) {
      e.set_seq(seq);
      test::send_frames(push, {"metrics", e.SerializeAsString()});
    }
  }
  test::send_frames(
      push, {"metrics", test::metric_envelope("held", "run-1", n, "trip").SerializeAsString()});

  // The ingest thread is stuck writing the full FIFO: its received count stops growing.
  std::uint64_t last = 0;
  auto stalled_since = steady::now();
  REQUIRE(wait_until(
      [&] {
        const auto s = d.status();
        const auto got = s.sidecar().ingest(0).received();
        if (got != last) {
          last = got;
          stalled_since = steady::now();
        }
        return got < n && steady::now() - stalled_since > 500ms;
      },
      20s, 20ms));
  INFO("the ingest thread stalled after reading " << last << " of " << n << " events");

  d.signal(SIGTERM);
  // The control socket goes first in the shutdown; once it is gone the ingest thread has been
  // asked to stop (the next step, without waiting).
  REQUIRE(wait_until(
      [&] {
        v1::ControlRequest status;
        status.mutable_status();
        return !d.control(status, 200ms).ok();
      },
      10s));
  std::this_thread::sleep_for(100ms);

  // Let the ingest thread go: read the FIFO until the daemon closes it.
  std::thread drain([&] {
    const auto deadline = steady::now() + 30s;
    std::array<char, 65536> buf{};
    while (steady::now() < deadline) {
      pollfd p{fifo, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const auto got = ::read(fifo, buf.data(), buf.size());
      if (got == 0) break;  // the writer closed it
    }
  });
  const auto code = d.wait_exit(20s);
  drain.join();
  INFO("daemon log:\n" << d.log());
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(d.err().find("breaker fixture.trip") != std::string::npos);
  CHECK(watch_until(
      *watch, [&] { return applying(*watch, "run-1", "fixture.trip").has_value(); }, 2000ms));
}

TEST_CASE("a second daemon on the same state directory refuses to start, naming the first",
          "[integration][sidecar]") {
  daemon_process first;
  daemon_process second({.state_dir = first.state_dir(), .wait_ready = false});
  const auto code = second.wait_exit(20s);
  INFO("second daemon's output:\n" << second.log());
  REQUIRE(code.has_value());
  CHECK(*code == 2);
  CHECK(second.err().find("another loopwarden (pid " + std::to_string(first.pid()) + ")") !=
        std::string::npos);
  CHECK(second.err().find(first.state_dir()) != std::string::npos);
  // The first is unharmed: still serving, its sockets still there.
  CHECK(first.running());
  CHECK(first.status().ok());
  raw_ingest in(first);
  in.send("metrics", test::metric_envelope("trainer", "run-1", 1, "trip"));
  CHECK(first.wait_status(
      [](const auto& s) { return test::breaker_open(s, "fixture.trip", "run-1"); }));
}
