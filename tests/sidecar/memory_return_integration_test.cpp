// A backlog that drains gives its memory back (issue 10, item 8; docs/reliability.md, "Soak"),
// against the real daemon (tests/sidecar/daemon.hpp). A slow monitor under overflow: block holds
// the dispatcher back, so a burst piles up in the event queue; once it has drained, the queue
// depths are back to zero and the daemon has returned the freed memory to the system (its log
// line names the backlog), once, and not while the load was steady. RSS figures are the soak's
// business (bench/soak.sh), not this test's: it checks that the path runs, not what it saves.
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>

#include <loopwarden/client/publisher.hpp>

#include "daemon.hpp"

using namespace loopwarden;
using namespace std::chrono_literals;
using loopwarden::test::daemon_options;
using loopwarden::test::daemon_process;
using loopwarden::test::wait_until;

namespace {

constexpr const char* returned_line = "returned free memory to the system after a backlog";

std::size_t count_lines(const std::string& log, const std::string& text) {
  std::size_t n = 0;
  for (auto at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) ++n;
  return n;
}

// The "peaked at N events" of the first memory-return line; -1 when there is none.
long returned_peak(const std::string& log) {
  const auto at = log.find(returned_line);
  if (at == std::string::npos) return -1;
  const auto peak = log.find("peaked at ", at);
  long n = -1;
  if (peak == std::string::npos || std::sscanf(log.c_str() + peak, "peaked at %ld", &n) != 1) {
    return -1;
  }
  return n;
}

v1::Envelope metrics_envelope(std::uint64_t seq) {
  v1::Envelope e;
  e.set_run_id("backlog");
  for (int s = 0; s < 8; ++s) {
    auto* m = e.mutable_metrics()->add_samples();
    m->set_name("train/loss");
    m->set_value(0.5);
    m->set_step(static_cast<std::int64_t>(seq));
  }
  return e;
}

}  // namespace

TEST_CASE("a drained backlog empties the queues and returns its memory once",
          "[integration][sidecar][overload][memory]") {
  daemon_options o;
  o.config =
      "version: 1\n"
      "log_level: info\n"
      "state_dir: @STATE@\n"
      "plugin_paths: [@FIXTURE_PLUGINS@]\n"
      "transport:\n"
      "  heartbeat_interval: 50ms\n"
      "  overflow: block\n"
      "  queue_capacity: 2048\n"
      "  drain_timeout: 5s\n"
      "monitors:\n"
      "  - name: slow\n"
      "    plugin: slow_monitor\n"
      "    queue_capacity: 256\n"
      "    config: {delay_ms: 1}\n";
  daemon_process d(o);
  auto pub = client::publisher::create(
      {.endpoint = d.ingest(), .source = "backlog/host", .run_id = "backlog", .send_hwm = 20000});
  REQUIRE(pub.ok());
  auto evaluated = [&](std::uint64_t want, std::chrono::milliseconds timeout) {
    v1::ControlResponse last;
    const bool ok = d.wait_status(
        [&](const v1::ControlResponse& r) {
          const auto* m = test::find_monitor(r, "slow");
          return m != nullptr && m->events() >= want && m->queue_depth() == 0 &&
                 r.sidecar().queue_depth() == 0;
        },
        timeout, &last);
    const auto* m = test::find_monitor(last, "slow");
    INFO("slow monitor: evaluated " << (m ? m->events() : 0) << ", queued "
                                    << (m ? m->queue_depth() : 0) << "; event queue "
                                    << last.sidecar().queue_depth());
    INFO("daemon log:\n" << d.log());
    REQUIRE(ok);
  };

  // Steady: 300 envelopes at about 100/s, a tenth of what the slow monitor can take. No backlog,
  // so nothing to return.
  std::uint64_t seq = 0;
  for (int i = 0; i < 300; ++i) {
    REQUIRE((*pub)->publish(metrics_envelope(++seq)));
    std::this_thread::sleep_for(10ms);
  }
  evaluated(seq, 60s);
  std::this_thread::sleep_for(1500ms);  // longer than the policy's settle time
  {
    INFO("daemon log:\n" << d.log());
    CHECK(count_lines(d.log(), returned_line) == 0);
  }

  // A burst of 5000 as fast as ZeroMQ takes them: about 5 s of the slow monitor's time, so the
  // event queue holds thousands while it works through them.
  long deepest = 0;
  for (int i = 0; i < 5000; ++i) REQUIRE((*pub)->publish(metrics_envelope(++seq)));
  REQUIRE((*pub)->flush());
  (void)d.wait_status(
      [&](const v1::ControlResponse& r) {
        deepest = std::max(deepest, static_cast<long>(r.sidecar().queue_depth()));
        return deepest >= 1024;
      },
      10s);
  CHECK(deepest >= 1024);
  evaluated(seq, 120s);
  CHECK((*pub)->stats().dropped() == 0);

  // Drained: the daemon returns what the backlog freed, within the policy's settle time (1 s)
  // after the last batch was freed; the log line names the backlog it followed.
  const bool returned = wait_until([&] { return count_lines(d.log(), returned_line) > 0; }, 15s);
  INFO("daemon log:\n" << d.log());
  REQUIRE(returned);
  CHECK(returned_peak(d.log()) >= 1024);
  // Once: the load is steady again (heartbeats only), so there is nothing more to return.
  std::this_thread::sleep_for(2s);
  CHECK(count_lines(d.log(), returned_line) == 1);
}
