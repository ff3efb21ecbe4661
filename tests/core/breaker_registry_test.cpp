#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <loopwarden/core/breaker_registry.hpp>
#include <thread>

using namespace loopwarden;
using core::breaker_key;
using core::breaker_registry;
using core::trip_input;

namespace {

trip_input make_trip(std::string name, std::string run = "run-1", std::int64_t t = 100) {
  trip_input in;
  in.breaker = std::move(name);
  in.run_id = std::move(run);
  in.monitor = "m";
  in.reason = "because";
  in.evidence = {{"k", "v"}};
  in.action = sdk::breaker_action::rollback;
  in.severity = sdk::severity::warning;
  in.time_unix_nano = t;
  return in;
}

// A store whose writes can be made to fail.
class flaky_store final : public core::breaker_store {
 public:
  bool fail = false;
  core::memory_breaker_store inner;
  sdk::result<std::vector<v1::BreakerStatus>> load() override { return inner.load(); }
  sdk::status record(const v1::BreakerTransition& t) override {
    if (fail) return sdk::make_error(sdk::status_code::io_error, "disk full");
    return inner.record(t);
  }
  sdk::result<std::vector<v1::BreakerTransition>> history(const std::string& n,
                                                          const std::string& r,
                                                          std::size_t limit) override {
    return inner.history(n, r, limit);
  }
};

constexpr std::chrono::nanoseconds no_probation{0};

}  // namespace

TEST_CASE("a trip opens a closed breaker and increments its epoch", "[core][breakers]") {
  core::memory_breaker_store store;
  breaker_registry reg(store, no_probation);
  auto t = reg.trip(make_trip("training.collapse"));
  REQUIRE(t);
  CHECK(t->previous() == v1::BREAKER_STATE_CLOSED);
  CHECK(t->cause() == "trip");
  const auto& b = t->breaker();
  CHECK(b.state() == v1::BREAKER_STATE_OPEN);
  CHECK(b.epoch() == 1);
  CHECK(b.action() == v1::BREAKER_ACTION_ROLLBACK);
  CHECK(b.severity() == v1::SEVERITY_WARNING);
  CHECK(b.run_id() == "run-1");
  CHECK(b.reason() == "because");
  REQUIRE(b.evidence_size() == 1);
  CHECK(b.evidence(0).key() == "k");
  CHECK(b.trips() == 1);
  CHECK(reg.any_open());
}

TEST_CASE("an open breaker is latched: further trips change nothing", "[core][breakers]") {
  core::memory_breaker_store store;
  breaker_registry reg(store, no_probation);
  REQUIRE(reg.trip(make_trip("b")));
  auto again = make_trip("b");
  again.reason = "second";
  CHECK_FALSE(reg.trip(again));
  auto b = reg.find({"b", "run-1"});
  REQUIRE(b);
  CHECK(b->epoch() == 1);
  CHECK(b->reason() == "because");
}

TEST_CASE("run-scoped breakers are separate per run, global ones are shared", "[core][breakers]") {
  core::memory_breaker_store store;
  breaker_registry reg(store, no_probation);
  REQUIRE(reg.trip(make_trip("b", "run-1")));
  REQUIRE(reg.trip(make_trip("b", "run-2")));
  auto g1 = make_trip("g", "run-1");
  g1.scope = sdk::breaker_scope::global;
  auto g2 = make_trip("g", "run-2");
  g2.scope = sdk::breaker_scope::global;
  REQUIRE(reg.trip(g1));
  CHECK_FALSE(reg.trip(g2));
  auto snap = reg.snapshot();
  REQUIRE(snap.breakers_size() == 3);
  CHECK(snap.breakers(0).name() == "b");
  CHECK(snap.breakers(0).run_id() == "run-1");
  CHECK(snap.breakers(1).run_id() == "run-2");
  CHECK(snap.breakers(2).name() == "g");
  CHECK(snap.breakers(2).run_id().empty());
}

TEST_CASE("operator actions follow the lifecycle and refuse the wrong state", "[core][breakers]") {
  core::memory_breaker_store store;
  breaker_registry reg(store, std::chrono::seconds(10));
  const breaker_key key{"b", "run-1"};

  SECTION("ack and reset of a breaker that does not exist are not_found") {
    CHECK(reg.acknowledge(key, "alice", "", 1).error().code() == sdk::status_code::not_found);
    CHECK(reg.reset(key, "alice", "fixed", 1).error().code() == sdk::status_code::not_found);
  }

  REQUIRE(reg.trip(make_trip("b")));

  SECTION("a reset without a reason is refused and the breaker stays open") {
    auto r = reg.reset(key, "alice", "", 200);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == sdk::status_code::refused);
    CHECK(r.error().message() == "can't reset breaker 'b' (run 'run-1'): a reset needs a reason");
    CHECK(reg.find(key)->state() == v1::BREAKER_STATE_OPEN);
  }

  SECTION("open -> ack -> reset -> half-open -> probation end -> closed, epoch +1 each") {
    auto ack = reg.acknowledge(key, "alice", "looking", 150);
    REQUIRE(ack.ok());
    CHECK(ack->breaker().acknowledged());
    CHECK(ack->breaker().acknowledged_by() == "alice");
    CHECK(ack->breaker().epoch() == 2);
    CHECK(reg.acknowledge(key, "bob", "", 160).error().message() ==
          "breaker 'b' (run 'run-1') is already acknowledged by alice");

    auto reset = reg.reset(key, "alice", "rolled back", 200);
    REQUIRE(reset.ok());
    CHECK(reset->previous() == v1::BREAKER_STATE_OPEN);
    CHECK(reset->breaker().state() == v1::BREAKER_STATE_HALF_OPEN);
    CHECK(reset->breaker().epoch() == 3);
    CHECK(reset->note() == "rolled back");
    CHECK(reset->operator_id() == "alice");
    CHECK(reset->breaker().probation_until_unix_nano() == 200 + 10'000'000'000);
    CHECK_FALSE(reg.any_open());

    CHECK(reg.advance(200 + 9'999'999'999).empty());
    auto closed = reg.advance(200 + 10'000'000'000);
    REQUIRE(closed.size() == 1);
    CHECK(closed[0].cause() == "probation_end");
    CHECK(closed[0].breaker().state() == v1::BREAKER_STATE_CLOSED);
    CHECK(closed[0].breaker().epoch() == 4);

    CHECK(reg.acknowledge(key, "alice", "", 1).error().code() ==
          sdk::status_code::failed_precondition);
  }

  SECTION("a trip during probation re-opens at once, escalated to critical") {
    REQUIRE(reg.reset(key, "alice", "fixed", 200).ok());
    auto t = reg.trip(make_trip("b", "run-1", 300));
    REQUIRE(t);
    CHECK(t->previous() == v1::BREAKER_STATE_HALF_OPEN);
    CHECK(t->breaker().state() == v1::BREAKER_STATE_OPEN);
    CHECK(t->breaker().severity() == v1::SEVERITY_CRITICAL);
    CHECK(t->note() == "re-opened during probation (escalated)");
    CHECK(t->breaker().trips() == 2);
  }
}

TEST_CASE("with zero probation a reset closes the breaker at once", "[core][breakers]") {
  core::memory_breaker_store store;
  breaker_registry reg(store, std::chrono::seconds(60));
  reg.set_probation("b", no_probation);
  REQUIRE(reg.trip(make_trip("b")));
  auto r = reg.reset({"b", "run-1"}, "alice", "ok", 5);
  REQUIRE(r.ok());
  CHECK(r->breaker().state() == v1::BREAKER_STATE_CLOSED);
}

TEST_CASE("force_open halts a breaker that never tripped and needs a reason", "[core][breakers]") {
  core::memory_breaker_store store;
  breaker_registry reg(store, no_probation);
  CHECK(
      reg.force_open({"ops.halt", ""}, "alice", "", sdk::breaker_action::halt, 1).error().code() ==
      sdk::status_code::refused);
  auto f = reg.force_open({"ops.halt", ""}, "alice", "maintenance", sdk::breaker_action::pause, 1);
  REQUIRE(f.ok());
  CHECK(f->breaker().state() == v1::BREAKER_STATE_FORCED_OPEN);
  CHECK(f->breaker().scope() == v1::BREAKER_SCOPE_GLOBAL);
  CHECK(f->breaker().action() == v1::BREAKER_ACTION_PAUSE);
  CHECK(f->breaker().monitor() == "operator:alice");
  CHECK(reg.any_open());
  // Trips do not change a forced-open breaker.
  auto t = make_trip("ops.halt");
  t.scope = sdk::breaker_scope::global;
  CHECK_FALSE(reg.trip(t));
  CHECK(reg.reset({"ops.halt", ""}, "alice", "done", 2).ok());
}

TEST_CASE("every transition is recorded in the store before listeners hear it",
          "[core][breakers]") {
  flaky_store store;
  breaker_registry reg(store, no_probation);
  std::vector<std::string> heard;
  reg.add_listener([&](const v1::BreakerTransition& t) {
    auto h = store.inner.history(t.breaker().name(), t.breaker().run_id(), 100);
    REQUIRE(h.ok());
    // The store already holds this very transition.
    REQUIRE_FALSE(h->empty());
    CHECK(h->back().breaker().epoch() == t.breaker().epoch());
    heard.push_back(t.cause());
  });
  REQUIRE(reg.trip(make_trip("b")));
  REQUIRE(reg.acknowledge({"b", "run-1"}, "alice", "", 2).ok());
  REQUIRE(reg.reset({"b", "run-1"}, "alice", "ok", 3).ok());
  CHECK(heard == std::vector<std::string>{"trip", "ack", "reset"});
}

TEST_CASE("a reset the store cannot record does not happen", "[core][breakers]") {
  flaky_store store;
  breaker_registry reg(store, no_probation);
  REQUIRE(reg.trip(make_trip("b")));
  store.fail = true;
  auto r = reg.reset({"b", "run-1"}, "alice", "ok", 3);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message() == "can't record reset of breaker 'b' (run 'run-1'): disk full");
  CHECK(reg.find({"b", "run-1"})->state() == v1::BREAKER_STATE_OPEN);
  CHECK(reg.store_errors() == 1);
  // A trip still opens (fail safe) even when the store fails; the error is counted.
  REQUIRE(reg.trip(make_trip("c")));
  CHECK(reg.store_errors() == 2);
}

TEST_CASE("restore brings back open breakers from the store", "[core][breakers]") {
  core::memory_breaker_store store;
  {
    breaker_registry reg(store, no_probation);
    REQUIRE(reg.trip(make_trip("b")));
  }
  breaker_registry again(store, no_probation);
  REQUIRE(again.restore().ok());
  auto b = again.find({"b", "run-1"});
  REQUIRE(b);
  CHECK(b->state() == v1::BREAKER_STATE_OPEN);
  CHECK(b->epoch() == 1);
  CHECK_FALSE(again.trip(make_trip("b")));
}

TEST_CASE("declared global breakers appear closed before they trip", "[core][breakers]") {
  core::memory_breaker_store store;
  breaker_registry reg(store, no_probation);
  reg.declare({"telemetry.silence", sdk::breaker_action::pause, sdk::severity::warning,
               sdk::breaker_scope::global, ""},
              "sidecar");
  reg.declare(
      {"per.run", sdk::breaker_action::pause, sdk::severity::warning, sdk::breaker_scope::run, ""},
      "m");
  auto snap = reg.snapshot();
  REQUIRE(snap.breakers_size() == 1);
  CHECK(snap.breakers(0).name() == "telemetry.silence");
  CHECK(snap.breakers(0).state() == v1::BREAKER_STATE_CLOSED);
  CHECK(snap.breakers(0).epoch() == 0);
}

namespace {

// A store that can hold one record() until the test releases it: a commit stuck on a slow disk.
class stalled_store final : public core::breaker_store {
 public:
  core::memory_breaker_store inner;

  // Trips `in` on another thread and returns once that trip's commit is stuck here; the thread
  // ends after release().
  std::jthread stuck_trip(breaker_registry& reg, trip_input in) {
    stall_next_ = true;
    auto entered = entered_.get_future();
    std::jthread tripper([&reg, in = std::move(in)] { (void)reg.trip(in); });
    REQUIRE(entered.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    return tripper;
  }
  void release() { release_.set_value(); }

  sdk::result<std::vector<v1::BreakerStatus>> load() override { return inner.load(); }
  sdk::status record(const v1::BreakerTransition& t) override {
    if (stall_next_.exchange(false)) {
      entered_.set_value();
      released_.wait();
    }
    return inner.record(t);
  }
  sdk::result<std::vector<v1::BreakerTransition>> history(const std::string& n,
                                                          const std::string& r,
                                                          std::size_t limit) override {
    return inner.history(n, r, limit);
  }

 private:
  std::atomic<bool> stall_next_{false};
  std::promise<void> entered_;
  std::promise<void> release_;
  std::shared_future<void> released_ = release_.get_future().share();
};

}  // namespace

TEST_CASE("try_advance never waits for a transition being recorded and closes at the next call",
          "[core][breakers]") {
  stalled_store store;
  breaker_registry reg(store, std::chrono::seconds(10));
  const breaker_key key{"b", "run-1"};
  REQUIRE(reg.trip(make_trip("b", "run-1", 100)));
  REQUIRE(reg.reset(key, "alice", "fixed", 200).ok());  // half-open until 200 + 10 s
  const std::int64_t after_probation = 200 + 10'000'000'000;

  // Another thread's trip holds the registry while its commit is stuck.
  std::jthread tripper = store.stuck_trip(reg, make_trip("c", "run-1", 300));

  // The tick's call returns at once and closes nothing (run apart, so that a wait fails the test
  // instead of hanging it); advance() would wait for the commit.
  auto tick = std::async(std::launch::async, [&] { return reg.try_advance(after_probation); });
  const bool returned = tick.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  store.release();
  REQUIRE(returned);
  CHECK(tick.get().empty());
  tripper.join();
  CHECK(reg.find(key)->state() == v1::BREAKER_STATE_HALF_OPEN);

  // The registry is free again: the next call closes the breaker whose probation ended.
  const auto closed = reg.try_advance(after_probation);
  REQUIRE(closed.size() == 1);
  CHECK(closed[0].cause() == "probation_end");
  CHECK(reg.find(key)->state() == v1::BREAKER_STATE_CLOSED);
}

TEST_CASE("readers never wait for a transition being recorded and see it once it is recorded",
          "[core][breakers]") {
  stalled_store store;
  breaker_registry reg(store, std::chrono::seconds(0));
  const breaker_key key{"b", "run-1"};
  REQUIRE(reg.trip(make_trip("b", "run-1", 100)));
  REQUIRE(reg.reset(key, "alice", "fixed", 200).ok());  // closed, epoch 2

  // Another thread trips it again and its commit is stuck on the disk.
  std::jthread tripper = store.stuck_trip(reg, make_trip("b", "run-1", 300));

  // `status`, the publisher's heartbeat and the gate read at once (run apart, so that a wait
  // fails the test instead of hanging it), and they see the last recorded state: what a reader
  // sees open, a restart must keep open, and this trip is not on disk yet.
  struct seen {
    std::optional<v1::BreakerStatus> found;
    v1::BreakerSnapshot snap;
    bool any_open = true;
  };
  auto read = std::async(std::launch::async, [&] {
    return seen{reg.find(key), reg.snapshot(), reg.any_open()};
  });
  const bool returned = read.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  // A second writer waits for the first: transitions are recorded in order.
  auto ack = std::async(std::launch::async, [&] { return reg.acknowledge(key, "bob", "", 400); });
  const bool ack_waited =
      ack.wait_for(std::chrono::milliseconds(200)) == std::future_status::timeout;
  store.release();
  REQUIRE(returned);
  const seen before = read.get();
  REQUIRE(before.found);
  CHECK(before.found->state() == v1::BREAKER_STATE_CLOSED);
  CHECK(before.found->epoch() == 2);
  REQUIRE(before.snap.breakers_size() == 1);
  CHECK(before.snap.breakers(0).state() == v1::BREAKER_STATE_CLOSED);
  CHECK_FALSE(before.any_open);
  CHECK(ack_waited);

  // Once recorded, the trip is what everyone sees, and the ack that waited applies to it.
  tripper.join();
  const auto acked = ack.get();
  REQUIRE(acked.ok());
  CHECK(acked->breaker().epoch() == 4);
  const auto after = reg.find(key);
  REQUIRE(after);
  CHECK(after->state() == v1::BREAKER_STATE_OPEN);
  CHECK(after->acknowledged());
  CHECK(reg.any_open());
  const auto recorded = reg.history(key, 10);
  REQUIRE(recorded.ok());
  REQUIRE(recorded->size() == 4);
  CHECK((*recorded)[2].cause() == "trip");
  CHECK((*recorded)[3].cause() == "ack");
}
