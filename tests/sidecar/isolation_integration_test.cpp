// Monitor isolation in the real daemon (tests/sidecar/daemon.hpp): each monitor on its own
// worker, a watchdog for calls past their deadline. The fixture plugins hanging_monitor and
// slow_monitor misbehave on purpose.

#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include <loopwarden/client/gate_client.hpp>

#include "daemon.hpp"

using namespace loopwarden;
using namespace std::chrono_literals;
using loopwarden::test::daemon_config;
using loopwarden::test::daemon_options;
using loopwarden::test::daemon_process;
using loopwarden::test::wait_until;

namespace {

const v1::MonitorStatus* monitor_of(const v1::ControlResponse& r, const std::string& name) {
  for (const auto& m : r.sidecar().monitors()) {
    if (m.name() == name) return &m;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("a hung monitor fails closed in the real daemon while the others keep working",
          "[integration][sidecar][isolation]") {
  daemon_options o;
  o.config = daemon_config(
      "  - name: stuck\n"
      "    plugin: hanging_monitor\n"
      "    deadline: 300ms\n"
      "  - name: fixture\n"
      "    plugin: fixture_monitor\n");
  daemon_process d(o);
  test::raw_ingest_send(d, "metrics", test::metric_envelope("trainer/rank0", "run-1", 1, "hang"));
  REQUIRE(d.wait_status([](const auto& r) {
    const auto* m = monitor_of(r, "stuck");
    return m != nullptr && m->state() == "hung" && test::breaker_open(r, "hanging.trip", "run-1");
  }));
  // The other monitor still sees events and trips.
  test::raw_ingest_send(d, "metrics", test::metric_envelope("trainer/rank0", "run-1", 2, "trip"));
  REQUIRE(
      d.wait_status([](const auto& r) { return test::breaker_open(r, "fixture.trip", "run-1"); }));
  const auto status = d.status();
  const auto* stuck = monitor_of(status, "stuck");
  REQUIRE(stuck != nullptr);
  CHECK(stuck->hangs() == 1);
  CHECK(stuck->dropped() >= 1);  // the second event never reached it
  CHECK_THAT(stuck->last_error(), Catch::Contains("hung: on_event has not returned"));
  const auto* reason = test::find_breaker(status, "hanging.trip", "run-1");
  REQUIRE(reason != nullptr);
  CHECK_THAT(reason->reason(), Catch::Contains("monitor 'stuck'"));

  // The gate does not wait for a hung monitor: it answers at once, denying (fail closed).
  auto gate =
      client::gate_client::create({.endpoint = d.gate(), .run_id = "run-1", .timeout = 2000ms});
  REQUIRE(gate.ok());
  v1::ActionRequest action;
  action.set_kind(v1::ACTION_KIND_SHELL);
  action.set_command("ls");
  const auto start = std::chrono::steady_clock::now();
  const auto decision = (*gate)->ask(action);
  CHECK(std::chrono::steady_clock::now() - start < test::scaled(1s));
  CHECK_FALSE(decision.timed_out);
  CHECK(decision.verdict == sdk::gate_verdict::deny);
  CHECK(decision.rule_id == "loopwarden.monitor_hung");

  // And it still stops on SIGTERM, abandoning the thread that never returns.
  const auto stop_start = std::chrono::steady_clock::now();
  CHECK(d.stop(20s) == 0);
  CHECK(std::chrono::steady_clock::now() - stop_start < test::scaled(15s));
  CHECK_THAT(d.log(), Catch::Contains("abandoning it"));
}

TEST_CASE("a plugin that segfaults under isolation: process leaves the real daemon running",
          "[integration][sidecar][isolation]") {
  daemon_options o;
  o.config = daemon_config(
      "  - name: crashy\n"
      "    plugin: crashing_monitor\n"
      "    isolation: process\n"
      "  - name: fixture\n"
      "    plugin: fixture_monitor\n");
  daemon_process d(o);
  test::raw_ingest_send(d, "metrics", test::metric_envelope("trainer/rank0", "run-1", 1, "crash"));
  REQUIRE(
      d.wait_status([](const auto& r) { return test::breaker_open(r, "crashing.trip", "run-1"); }));
  const auto status = d.status();
  const auto* b = test::find_breaker(status, "crashing.trip", "run-1");
  REQUIRE(b != nullptr);
  CHECK_THAT(b->reason(), Catch::Contains("killed by signal 11"));
  // The daemon itself is fine: the other monitor trips, the control socket answers.
  test::raw_ingest_send(d, "metrics", test::metric_envelope("trainer/rank0", "run-1", 2, "trip"));
  REQUIRE(
      d.wait_status([](const auto& r) { return test::breaker_open(r, "fixture.trip", "run-1"); }));
  // After its backoff the child is started again and sees events.
  std::this_thread::sleep_for(1200ms);
  test::raw_ingest_send(d, "metrics", test::metric_envelope("trainer/rank0", "run-1", 3, "x"));
  REQUIRE(d.wait_status([](const auto& r) {
    const auto* m = monitor_of(r, "crashy");
    if (m == nullptr) return false;
    for (const auto& g : m->gauges()) {
      if (g.name() == "samples" && g.value() >= 1.0) return true;
    }
    return false;
  }));
  CHECK(d.stop() == 0);
}
