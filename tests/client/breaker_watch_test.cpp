#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <loopwarden/client/breaker_watch.hpp>
#include <mutex>
#include <thread>

#include "sidecar_side.hpp"

using namespace loopwarden;
using namespace std::chrono_literals;
using client::breaker_watch;
using client::breaker_watch_options;

namespace {

v1::BreakerStatus make_breaker(std::string name, v1::BreakerState state, std::string run_id,
                               std::uint64_t epoch,
                               v1::BreakerAction action = v1::BREAKER_ACTION_HALT) {
  v1::BreakerStatus b;
  b.set_name(std::move(name));
  b.set_scope(run_id.empty() ? v1::BREAKER_SCOPE_GLOBAL : v1::BREAKER_SCOPE_RUN);
  b.set_run_id(std::move(run_id));
  b.set_state(state);
  b.set_action(action);
  b.set_epoch(epoch);
  b.set_monitor("variance_collapse");
  b.set_reason("variance fell below 5% of baseline");
  return b;
}

// The sidecar's breaker socket: a PUB bound on ipc or tcp.
class fake_sidecar {
 public:
  explicit fake_sidecar(const std::string& transport)
      : pub_(test::sidecar_socket(zmq::socket_type::pub)),
        endpoint_(test::bind_fresh(pub_, transport, dir_, "breakers")) {}

  const std::string& endpoint() const { return endpoint_; }

  void snapshot(const std::vector<v1::BreakerStatus>& breakers, std::string sidecar_id = "s1") {
    v1::BreakerMessage m;
    auto* s = m.mutable_snapshot();
    for (const auto& b : breakers) *s->add_breakers() = b;
    s->set_sequence(++sequence_);
    s->set_heartbeat_interval_ms(250);
    s->set_sidecar_id(std::move(sidecar_id));
    s->set_time_unix_nano(1);
    send("snapshot", m.SerializeAsString());
  }

  void transition(const v1::BreakerStatus& after, v1::BreakerState previous) {
    v1::BreakerMessage m;
    auto* t = m.mutable_transition();
    *t->mutable_breaker() = after;
    t->set_previous(previous);
    t->set_cause("trip");
    send("transition", m.SerializeAsString());
  }

  void send(const std::string& topic, const std::string& payload) {
    pub_.send(zmq::buffer(topic), zmq::send_flags::sndmore);
    pub_.send(zmq::buffer(payload));
  }

  std::uint64_t sequence() const { return sequence_; }

 private:
  test::temp_dir dir_;
  zmq::socket_t pub_;
  std::string endpoint_;
  std::uint64_t sequence_ = 0;
};

std::unique_ptr<breaker_watch> make_watch(breaker_watch_options options) {
  auto w = breaker_watch::create(std::move(options));
  INFO(w.error().message());
  REQUIRE(w);
  return std::move(w).value();
}

// Publishes snapshots of `breakers`, as the sidecar does periodically, until the watch applied
// one (a SUB socket misses what is sent before its subscription reaches the publisher).
void sync(fake_sidecar& sidecar, breaker_watch& watch,
          const std::vector<v1::BreakerStatus>& breakers = {}) {
  const std::uint64_t before = sidecar.sequence();
  REQUIRE(test::repeat_until([&] { sidecar.snapshot(breakers); },
                             [&] { return watch.snapshot_sequence() > before; }, 2000ms));
}

}  // namespace

TEST_CASE("breaker watch learns an open breaker from a snapshot as a late joiner",
          "[client][breakers]") {
  const std::string transport = GENERATE("ipc", "tcp");
  INFO("transport " << transport);
  fake_sidecar sidecar(transport);
  auto watch = make_watch({.endpoint = sidecar.endpoint()});
  CHECK_FALSE(watch->last_message());
  CHECK(watch->snapshot_sequence() == 0);

  sync(sidecar, *watch,
       {make_breaker("training.collapse", v1::BREAKER_STATE_OPEN, "run-1", 3),
        make_breaker("agent.destructive", v1::BREAKER_STATE_CLOSED, "", 1)});
  CHECK(watch->should_stop("run-1"));
  CHECK_FALSE(watch->should_stop("run-2"));
  const auto v = watch->current("run-1");
  CHECK(v.stop);
  CHECK_FALSE(v.silent);
  REQUIRE(v.open.size() == 1);
  CHECK(v.open[0].name() == "training.collapse");
  CHECK_THAT(v.reason, Catch::Contains("training.collapse") &&
                           Catch::Contains("variance fell below 5% of baseline") &&
                           Catch::Contains("halt"));
  CHECK(watch->snapshot_sequence() == sidecar.sequence());
  CHECK(watch->last_message());
  CHECK(watch->current("run-2").open.empty());
}

TEST_CASE("breaker watch applies a transition and calls back on its own thread",
          "[client][breakers]") {
  fake_sidecar sidecar("ipc");
  std::mutex mu;
  std::vector<std::string> seen;  // guarded by mu
  std::thread::id callback_thread;
  std::atomic<bool> stop_seen_inside{false};
  std::atomic<breaker_watch*> self{nullptr};
  auto watch = make_watch(
      {.endpoint = sidecar.endpoint(), .on_transition = [&](const v1::BreakerTransition& t) {
         std::lock_guard lock(mu);
         seen.push_back(t.breaker().name());
         callback_thread = std::this_thread::get_id();
         // The change is applied before the callback runs.
         stop_seen_inside = self.load()->should_stop("run-1");
       }});
  self.store(watch.get());
  sync(sidecar, *watch);
  CHECK_FALSE(watch->should_stop("run-1"));

  const std::uint64_t epoch = watch->epoch();
  sidecar.transition(make_breaker("training.collapse", v1::BREAKER_STATE_OPEN, "run-1", 1),
                     v1::BREAKER_STATE_CLOSED);
  REQUIRE(watch->wait_for_change(epoch, test::scaled(2000ms)));
  CHECK(watch->should_stop("run-1"));
  // The callback runs right after the change is applied; wait for it to finish.
  REQUIRE(test::repeat_until([] {},
                             [&] {
                               std::lock_guard lock(mu);
                               return !seen.empty();
                             },
                             1000ms));
  std::lock_guard lock(mu);
  CHECK(seen == std::vector<std::string>{"training.collapse"});
  CHECK(callback_thread != std::this_thread::get_id());
  CHECK(stop_seen_inside);
}

TEST_CASE("breaker watch ignores other runs' breakers and applies global ones to every run",
          "[client][breakers]") {
  fake_sidecar sidecar("tcp");
  auto watch = make_watch({.endpoint = sidecar.endpoint()});
  sync(sidecar, *watch,
       {make_breaker("training.collapse", v1::BREAKER_STATE_OPEN, "run-2", 1),
        make_breaker("telemetry.silence", v1::BREAKER_STATE_CLOSED, "", 1)});
  CHECK_FALSE(watch->should_stop("run-1"));
  CHECK(watch->current("run-1").open.empty());
  CHECK(watch->should_stop("run-2"));

  const std::uint64_t epoch = watch->epoch();
  sidecar.transition(make_breaker("telemetry.silence", v1::BREAKER_STATE_FORCED_OPEN, "", 2),
                     v1::BREAKER_STATE_CLOSED);
  REQUIRE(watch->wait_for_change(epoch, test::scaled(2000ms)));
  CHECK(watch->should_stop("run-1"));
  CHECK(watch->should_stop("any-run"));
  const auto v = watch->current("run-1");
  REQUIRE(v.open.size() == 1);
  CHECK(v.open[0].name() == "telemetry.silence");
}

TEST_CASE("breaker watch stops only for open or forced-open breakers whose action is not alert",
          "[client][breakers]") {
  struct row {
    v1::BreakerState state;
    v1::BreakerAction action;
    bool applies;
    bool stops;
  };
  const std::vector<row> rows = {
      {v1::BREAKER_STATE_OPEN, v1::BREAKER_ACTION_HALT, true, true},
      {v1::BREAKER_STATE_FORCED_OPEN, v1::BREAKER_ACTION_PAUSE, true, true},
      {v1::BREAKER_STATE_OPEN, v1::BREAKER_ACTION_ROLLBACK, true, true},
      {v1::BREAKER_STATE_OPEN, v1::BREAKER_ACTION_THROTTLE, true, true},
      {v1::BREAKER_STATE_OPEN, v1::BREAKER_ACTION_REQUIRE_APPROVAL, true, true},
      {v1::BREAKER_STATE_OPEN, v1::BREAKER_ACTION_UNSPECIFIED, true, true},
      {v1::BREAKER_STATE_OPEN, v1::BREAKER_ACTION_ALERT, true, false},
      {v1::BREAKER_STATE_HALF_OPEN, v1::BREAKER_ACTION_HALT, false, false},
      {v1::BREAKER_STATE_CLOSED, v1::BREAKER_ACTION_HALT, false, false},
  };
  fake_sidecar sidecar("ipc");
  auto watch = make_watch({.endpoint = sidecar.endpoint()});
  for (const auto& r : rows) {
    INFO("state " << v1::BreakerState_Name(r.state) << ", action "
                  << v1::BreakerAction_Name(r.action));
    for (const std::string run : {"run-1", ""}) {
      INFO("run '" << run << "' (empty: global)");
      sync(sidecar, *watch, {make_breaker("b", r.state, run, 1, r.action)});
      CHECK(watch->should_stop("run-1") == r.stops);
      const auto v = watch->current("run-1");
      CHECK(v.stop == r.stops);
      CHECK(v.open.size() == (r.applies ? 1u : 0u));
    }
  }
}

TEST_CASE("breaker watch lists the strongest action first and gives its reason",
          "[client][breakers]") {
  fake_sidecar sidecar("ipc");
  auto watch = make_watch({.endpoint = sidecar.endpoint()});
  auto rollback =
      make_breaker("a.rollback", v1::BREAKER_STATE_OPEN, "run-1", 1, v1::BREAKER_ACTION_ROLLBACK);
  rollback.set_reason("candidate regressed");
  sync(sidecar, *watch,
       {make_breaker("a.alert", v1::BREAKER_STATE_OPEN, "", 1, v1::BREAKER_ACTION_ALERT),
        make_breaker("b.throttle", v1::BREAKER_STATE_OPEN, "run-1", 1, v1::BREAKER_ACTION_THROTTLE),
        rollback,
        make_breaker("c.pause", v1::BREAKER_STATE_FORCED_OPEN, "run-1", 1,
                     v1::BREAKER_ACTION_PAUSE)});
  const auto v = watch->current("run-1");
  std::vector<std::string> names;
  for (const auto& b : v.open) names.push_back(b.name());
  CHECK(names == std::vector<std::string>{"c.pause", "a.rollback", "b.throttle", "a.alert"});
  CHECK_THAT(v.reason, Catch::StartsWith("c.pause (run run-1) is forced_open, action pause"));
}

TEST_CASE("breaker watch ignores a transition older than the state it knows",
          "[client][breakers]") {
  fake_sidecar sidecar("ipc");
  auto watch = make_watch({.endpoint = sidecar.endpoint()});
  sync(sidecar, *watch, {make_breaker("training.collapse", v1::BREAKER_STATE_CLOSED, "run-1", 5)});
  sidecar.transition(make_breaker("training.collapse", v1::BREAKER_STATE_OPEN, "run-1", 4),
                     v1::BREAKER_STATE_CLOSED);
  // A later, current transition marks the point by which the stale one was handled.
  sidecar.transition(make_breaker("other", v1::BREAKER_STATE_CLOSED, "run-1", 1),
                     v1::BREAKER_STATE_OPEN);
  REQUIRE(test::repeat_until([] {}, [&] { return watch->stats().transitions == 1; }, 2000ms));
  CHECK_FALSE(watch->should_stop("run-1"));
}

TEST_CASE("breaker watch fails closed when the sidecar is silent and recovers when it speaks",
          "[client][breakers]") {
  fake_sidecar sidecar("ipc");
  const auto start = std::chrono::steady_clock::now();
  auto watch = make_watch({.endpoint = sidecar.endpoint(), .timeout = 100ms});
  // Within the grace after start, a watch that has heard nothing does not stop the host yet.
  if (std::chrono::steady_clock::now() - start < 80ms) CHECK_FALSE(watch->should_stop("run-1"));

  // No message at all: after the grace the host must stop, and the reason says why.
  REQUIRE(watch->wait_for_change(test::scaled(500ms)));
  CHECK(watch->silent());
  CHECK(std::chrono::steady_clock::now() - start >= 100ms);
  CHECK(watch->should_stop("run-1"));
  auto v = watch->current("run-1");
  CHECK(v.stop);
  CHECK(v.silent);
  CHECK_THAT(v.reason, Catch::Contains("sidecar silent") && Catch::Contains(sidecar.endpoint()));

  // The sidecar comes back: snapshots say all is well.
  sync(sidecar, *watch);
  CHECK_FALSE(watch->silent());
  CHECK_FALSE(watch->should_stop("run-1"));

  // It goes quiet again: closed again after the timeout.
  const auto quiet_from = std::chrono::steady_clock::now();
  const std::uint64_t epoch = watch->epoch();
  REQUIRE(watch->wait_for_change(epoch, test::scaled(500ms)));
  CHECK(std::chrono::steady_clock::now() - quiet_from >= 90ms);
  CHECK(watch->should_stop("run-1"));
  CHECK_THAT(watch->current("run-1").reason, Catch::Contains("for ") && Catch::Contains(" ms"));
}

TEST_CASE("breaker watch with fail_open carries on through silence but still reports it",
          "[client][breakers]") {
  fake_sidecar sidecar("ipc");
  auto watch = make_watch({.endpoint = sidecar.endpoint(), .timeout = 50ms, .fail_open = true});
  REQUIRE(watch->wait_for_change(test::scaled(500ms)));
  CHECK(watch->silent());
  CHECK_FALSE(watch->should_stop("run-1"));
  const auto v = watch->current("run-1");
  CHECK_FALSE(v.stop);
  CHECK(v.silent);
  CHECK_THAT(v.reason, Catch::Contains("fail_open"));
  // Open breakers still stop it.
  sync(sidecar, *watch, {make_breaker("agent.destructive", v1::BREAKER_STATE_OPEN, "", 1)});
  CHECK(watch->should_stop("run-1"));
}

TEST_CASE("breaker watch drops malformed messages without counting them as a sign of life",
          "[client][breakers]") {
  fake_sidecar sidecar("ipc");
  auto watch = make_watch({.endpoint = sidecar.endpoint(), .timeout = 1000ms});
  sync(sidecar, *watch);
  const auto last = watch->last_message();
  REQUIRE(last);
  v1::BreakerMessage transition_body;
  transition_body.mutable_transition();
  sidecar.send("snapshot", "\xff\xff not protobuf");
  sidecar.send("snapshot", transition_body.SerializeAsString());  // topic and body disagree
  sidecar.send("transitionx", transition_body.SerializeAsString());
  REQUIRE(test::repeat_until([] {}, [&] { return watch->stats().malformed == 3; }, 2000ms));
  CHECK(watch->last_message() == last);
}

TEST_CASE("breaker watch create rejects a bad endpoint or timeout, naming the endpoint",
          "[client][breakers]") {
  struct row {
    breaker_watch_options options;
    std::string expected;
  };
  const std::vector<row> rows = {
      {{.endpoint = ""}, "no endpoint given"},
      {{.endpoint = "udp://x:1"}, "invalid endpoint 'udp://x:1'"},
      {{.endpoint = "tcp://127.0.0.1:notaport"}, "can't connect"},
      {{.endpoint = "ipc:///tmp/b.sock", .timeout = 0ms}, "timeout must be positive"},
  };
  for (const auto& r : rows) {
    INFO("endpoint '" << r.options.endpoint << "', expecting: " << r.expected);
    auto w = breaker_watch::create(r.options);
    REQUIRE_FALSE(w);
    CHECK(w.error().code() == sdk::status_code::invalid_argument);
    CHECK_THAT(w.error().message(),
               Catch::Contains("can't watch breakers at '" + r.options.endpoint + "'") &&
                   Catch::Contains(r.expected));
  }
}
