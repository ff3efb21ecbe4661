#include <catch2/catch.hpp>

#include <loopwarden/core/telemetry.hpp>

using namespace loopwarden;

namespace {

v1::Envelope ev(const std::string& source, std::uint64_t seq, bool heartbeat = false,
                bool closing = false) {
  v1::Envelope e;
  e.set_source(source);
  e.set_run_id("run-1");
  e.set_seq(seq);
  if (heartbeat) {
    e.mutable_heartbeat()->set_closing(closing);
  } else {
    e.mutable_metrics();
  }
  return e;
}

core::telemetry_config config_with(std::uint64_t loss_threshold = 0, std::size_t max_sources = 100) {
  core::telemetry_config c;
  c.silence_timeout = std::chrono::seconds(10);
  c.loss_threshold = loss_threshold;
  c.max_sources = max_sources;
  return c;
}

}  // namespace

TEST_CASE("accounting counts gaps, duplicates and late arrivals per source", "[core][telemetry]") {
  struct row {
    std::vector<std::uint64_t> seqs;
    std::uint64_t received, lost, duplicates, late, restarts;
  };
  const std::vector<row> rows = {
      {{1, 2, 3, 4}, 4, 0, 0, 0, 0},
      {{1, 2, 5}, 3, 2, 0, 0, 0},             // 3 and 4 lost
      {{1, 2, 2, 3}, 3, 0, 1, 0, 0},          // a repeat of the highest
      {{1, 3, 2}, 3, 0, 0, 1, 0},             // 2 arrives late: no longer lost
      {{1, 3, 2, 2}, 3, 0, 1, 1, 0},          // and a repeat of it is a duplicate
      {{1, 100, 50}, 3, 97, 0, 1, 0},         // 2..99 skipped, 50 arrives late
      {{1, 200, 100}, 3, 197, 0, 1, 0},       // beyond the window: late, accepted
      {{1, 2, 3, 1, 2}, 5, 0, 0, 0, 1},       // seq back to 1: a restart, not duplicates
      {{0, 0, 0}, 3, 0, 0, 0, 0},             // unnumbered: liveness only
  };
  for (const auto& r : rows) {
    INFO("seqs " << Catch::Detail::stringify(r.seqs));
    core::source_accounting acc(config_with());
    std::int64_t t = 0;
    for (auto s : r.seqs) (void)acc.observe(ev("a", s), ++t);
    auto all = acc.sources();
    REQUIRE(all.size() == 1);
    CHECK(all[0].received == r.received);
    CHECK(all[0].lost == r.lost);
    CHECK(all[0].duplicates == r.duplicates);
    CHECK(all[0].late == r.late);
    CHECK(all[0].restarts == r.restarts);
  }
}

TEST_CASE("accounting drops exactly the duplicates", "[core][telemetry]") {
  core::source_accounting acc(config_with());
  CHECK(acc.observe(ev("a", 1), 1) == core::seq_verdict::accepted);
  CHECK(acc.observe(ev("a", 2), 2) == core::seq_verdict::accepted);
  CHECK(acc.observe(ev("a", 3), 3) == core::seq_verdict::accepted);
  CHECK(acc.observe(ev("a", 2), 4) == core::seq_verdict::duplicate);
  CHECK(acc.observe(ev("b", 2), 5) == core::seq_verdict::accepted);  // another source
  // seq 1 again is a restart (the first event of a new producer process), never a duplicate:
  // otherwise a producer restarted within 64 events would lose its first events.
  CHECK(acc.observe(ev("a", 1), 6) == core::seq_verdict::accepted);
}

TEST_CASE("silence is reported once per quiet spell and never after a goodbye",
          "[core][telemetry]") {
  core::source_accounting acc(config_with());
  const std::int64_t s = 1'000'000'000;
  (void)acc.observe(ev("a", 1), 0);
  (void)acc.observe(ev("b", 1), 0);
  (void)acc.observe(ev("c", 1, true, /*closing=*/true), 0);
  CHECK(acc.newly_silent(10 * s).empty());  // exactly the timeout: not yet
  auto silent = acc.newly_silent(10 * s + 1);
  REQUIRE(silent.size() == 2);
  CHECK(silent[0].source == "a");
  CHECK(silent[1].source == "b");
  CHECK(acc.newly_silent(30 * s).empty());  // reported once
  (void)acc.observe(ev("a", 2), 31 * s);    // heard again: re-armed
  auto again = acc.newly_silent(41 * s + 1);
  REQUIRE(again.size() == 1);
  CHECK(again[0].source == "a");
}

TEST_CASE("loss is reported once when a source reaches the threshold", "[core][telemetry]") {
  core::source_accounting acc(config_with(5));
  (void)acc.observe(ev("a", 1), 1);
  (void)acc.observe(ev("a", 5), 2);  // 3 lost
  CHECK(acc.newly_lossy().empty());
  (void)acc.observe(ev("a", 8), 3);  // 5 lost
  REQUIRE(acc.newly_lossy().size() == 1);
  CHECK(acc.newly_lossy()[0].lost == 5);
  (void)acc.observe(ev("a", 20), 4);
  CHECK(acc.newly_lossy().empty());
}

TEST_CASE("accounting tracks at most max_sources, forgetting goodbyes first", "[core][telemetry]") {
  core::source_accounting acc(config_with(0, 2));
  (void)acc.observe(ev("a", 1, true, true), 1);
  (void)acc.observe(ev("b", 1), 2);
  (void)acc.observe(ev("c", 1), 3);
  auto all = acc.sources();
  REQUIRE(all.size() == 2);
  CHECK(all[0].source == "b");
  CHECK(all[1].source == "c");
  CHECK(acc.evicted() == 1);
}
