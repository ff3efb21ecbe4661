// The threaded engine (what `loopwarden serve` runs): one worker per monitor, bounded queues, a
// watchdog for calls that run past their deadline. The fixture plugins slow_monitor and
// hanging_monitor misbehave on purpose.
#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>

#include "test_paths.hpp"
#include "../wait_until.hpp"
#include "engine_samples.hpp"

using namespace loopwarden;
using namespace std::chrono_literals;
using test::wait_until;
using test::gauge;
using test::sample;
using test::status_of;

namespace {

core::config workers_config(const std::string& monitors) {
  std::string yaml = "version: 1\nplugin_paths: [\"" + test::fixture_plugin_dir() +
                     "\"]\nprobation: 0s\nmonitors:\n" + monitors;
  auto cfg = core::parse_config(yaml, "test.yaml");
  INFO(yaml);
  REQUIRE(cfg.ok());
  return *cfg;
}

std::unique_ptr<core::engine> threaded_engine(
    const core::config& cfg, core::overflow_policy overflow = core::overflow_policy::block,
    std::chrono::milliseconds stop_timeout = 5000ms) {
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  opts.threaded = true;
  opts.event_time_clock = false;
  opts.overflow = overflow;
  opts.gate_deadline = 300ms;
  opts.stop_timeout = stop_timeout;
  auto e = core::engine::create(cfg, opts);
  INFO((e.ok() ? std::string() : e.error().message()));
  REQUIRE(e.ok());
  return std::move(*e);
}

bool open(core::engine& e, const std::string& breaker, const std::string& run = "run-1") {
  auto b = e.breakers().find({breaker, run});
  return b && b->state() == v1::BREAKER_STATE_OPEN;
}

v1::GateRequest gate_request(const std::string& command) {
  v1::GateRequest r;
  r.set_request_id("g-1");
  r.set_run_id("run-1");
  r.mutable_action()->set_kind(v1::ACTION_KIND_SHELL);
  r.mutable_action()->set_command(command);
  return r;
}

}  // namespace

TEST_CASE("a slow monitor does not hold back the others", "[core][engine][workers]") {
  auto e = threaded_engine(
      workers_config("  - {name: slow, plugin: slow_monitor, config: {delay_ms: 40}}\n"
                     "  - {name: fx, plugin: fixture_monitor}\n"));
  const auto start = std::chrono::steady_clock::now();
  for (std::uint64_t seq = 1; seq <= 20; ++seq) e->process(sample(seq, "x"));
  // The fast monitor has seen everything long before the slow one (20 × 40 ms = 800 ms).
  REQUIRE(wait_until([&] { return gauge(status_of(*e, "fx"), "samples") == 20.0; }));
  const auto fx_done = std::chrono::steady_clock::now() - start;
  CHECK(gauge(status_of(*e, "slow"), "samples") < 20.0);
  CHECK(fx_done < 700ms);
  REQUIRE(e->wait_idle(10s));
  const auto slow = status_of(*e, "slow");
  CHECK(gauge(slow, "samples") == 20.0);
  CHECK(slow.events == 20);
  CHECK(slow.dropped == 0);
  CHECK(slow.queue_depth == 0);
}

TEST_CASE("a monitor that hangs is marked hung, fails closed, and the others carry on",
          "[core][engine][workers]") {
  auto e = threaded_engine(workers_config(
      "  - {name: stuck, plugin: hanging_monitor, deadline: 200ms, config: {hang_ms: 1500}}\n"
      "  - {name: fx, plugin: fixture_monitor}\n"));
  e->process(sample(1, "hang"));
  for (std::uint64_t seq = 2; seq <= 10; ++seq) e->process(sample(seq, "x"));
  REQUIRE(wait_until([&] { return open(*e, "hanging.trip"); }, 5s));
  auto b = e->breakers().find({"hanging.trip", "run-1"});
  REQUIRE(b);
  CHECK_THAT(b->reason(), Catch::Contains("monitor 'stuck' failed in watchdog: hung: on_event has "
                                          "not returned after"));
  const auto stuck = status_of(*e, "stuck");
  CHECK(stuck.current == core::monitor_status::state::hung);
  CHECK(stuck.hangs == 1);
  // What it had not reached was dropped and counted, never delivered late.
  CHECK(stuck.dropped == 9);
  CHECK(stuck.queue_depth == 0);
  REQUIRE(wait_until([&] { return gauge(status_of(*e, "fx"), "samples") == 10.0; }));

  // The call comes back after 1.5 s: the monitor is active again, its breaker stays open until
  // an operator resets it.
  REQUIRE(wait_until(
      [&] { return status_of(*e, "stuck").current == core::monitor_status::state::active; }));
  e->process(sample(11, "x"));
  REQUIRE(wait_until([&] { return gauge(status_of(*e, "stuck"), "samples") == 2.0; }));
  CHECK(open(*e, "hanging.trip"));
}

TEST_CASE("a hung monitor with the disable policy is switched off without a trip",
          "[core][engine][workers]") {
  auto e = threaded_engine(workers_config(
      "  - {name: stuck, plugin: hanging_monitor, deadline: 100ms, on_error: disable, "
      "config: {hang_ms: 600}}\n"));
  e->process(sample(1, "hang"));
  REQUIRE(wait_until(
      [&] { return status_of(*e, "stuck").current == core::monitor_status::state::disabled; }));
  CHECK_FALSE(open(*e, "hanging.trip"));
  // It stays disabled when the call returns.
  std::this_thread::sleep_for(800ms);
  e->process(sample(2, "x"));
  const auto stuck = status_of(*e, "stuck");
  CHECK(stuck.current == core::monitor_status::state::disabled);
  CHECK(stuck.dropped >= 1);
}

TEST_CASE("a gate a monitor does not answer in time is denied, and at once once it is hung",
          "[core][engine][workers]") {
  auto e = threaded_engine(
      workers_config(
          "  - {name: stuck, plugin: hanging_monitor, deadline: 1s, config: {hang_ms: 0}}\n"
          "  - {name: fx, plugin: fixture_monitor}\n"),
      core::overflow_policy::block, 200ms);
  auto fine = e->gate(gate_request("ls"));
  CHECK(fine.decision.verdict == sdk::gate_verdict::allow);

  const auto start = std::chrono::steady_clock::now();
  auto late = e->gate(gate_request("please hang"));
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(late.decision.verdict == sdk::gate_verdict::deny);
  CHECK(late.decision.rule_id == "loopwarden.monitor_timeout");
  CHECK(late.monitor == "stuck");
  CHECK(waited >= 250ms);  // the engine's gate deadline is 300 ms
  CHECK(waited < 2s);

  // The watchdog's trip belongs to the run that asked.
  REQUIRE(wait_until([&] { return open(*e, "hanging.trip", "run-1"); }, 5s));
  const auto again_start = std::chrono::steady_clock::now();
  auto hung = e->gate(gate_request("ls"));
  CHECK(hung.decision.verdict == sdk::gate_verdict::deny);
  CHECK(hung.decision.rule_id == "loopwarden.monitor_hung");
  CHECK(std::chrono::steady_clock::now() - again_start < 250ms);
  // The engine goes away although the worker never returns (it is abandoned, not joined).
  const auto stop_start = std::chrono::steady_clock::now();
  e.reset();
  CHECK(std::chrono::steady_clock::now() - stop_start < 3s);
}

TEST_CASE("a full queue drops for that monitor only with overflow drop, and counts it",
          "[core][engine][workers]") {
  auto e =
      threaded_engine(workers_config("  - {name: slow, plugin: slow_monitor, queue_capacity: 4, "
                                     "config: {delay_ms: 20}}\n"
                                     "  - {name: fx, plugin: fixture_monitor}\n"),
                      core::overflow_policy::drop);
  for (std::uint64_t seq = 1; seq <= 50; ++seq) e->process(sample(seq, "x"));
  REQUIRE(e->wait_idle(10s));
  const auto slow = status_of(*e, "slow");
  CHECK(slow.dropped > 0);
  CHECK(slow.events + slow.dropped == 50);
  CHECK(gauge(status_of(*e, "fx"), "samples") == 50.0);
  CHECK(status_of(*e, "fx").dropped == 0);
}

TEST_CASE("a full queue holds the dispatcher back with overflow block, losing nothing",
          "[core][engine][workers]") {
  auto e = threaded_engine(workers_config(
      "  - {name: slow, plugin: slow_monitor, queue_capacity: 2, config: {delay_ms: 10}}\n"));
  for (std::uint64_t seq = 1; seq <= 30; ++seq) e->process(sample(seq, "x"));
  // process() returned for the last event, so at most capacity + the running one remain.
  CHECK(status_of(*e, "slow").queue_depth <= 2);
  REQUIRE(e->wait_idle(10s));
  const auto slow = status_of(*e, "slow");
  CHECK(slow.events == 30);
  CHECK(slow.dropped == 0);
}

TEST_CASE("a threaded snapshot comes after every event queued before it",
          "[core][engine][workers]") {
  auto e = threaded_engine(
      workers_config("  - {name: slow, plugin: slow_monitor, config: {delay_ms: 10}}\n"));
  for (std::uint64_t seq = 1; seq <= 15; ++seq) e->process(sample(seq, "x"));
  const auto saved = e->snapshot_monitors();
  REQUIRE(saved.size() == 1);
  CHECK(saved[0].state == "15");
}

TEST_CASE("trips from worker threads name the run of the event that caused them",
          "[core][engine][workers]") {
  auto e = threaded_engine(
      workers_config("  - {name: slow, plugin: slow_monitor, config: {delay_ms: 1}}\n"));
  e->process(sample(1, "trip", "run-a"));
  e->process(sample(2, "trip", "run-b"));
  REQUIRE(e->wait_idle(5s));
  auto a = e->breakers().find({"slow.trip", "run-a"});
  auto b = e->breakers().find({"slow.trip", "run-b"});
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->state() == v1::BREAKER_STATE_OPEN);
  CHECK(b->state() == v1::BREAKER_STATE_OPEN);
}
