// Oracle tests for loopwarden/stats/amdahl.hpp: hand-computed speed-ups and ceilings, the two
// inverses against the forward formula, and a deterministic schedule whose achieved speed-up is
// computed from its own timeline.

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <loopwarden/stats/amdahl.hpp>
#include <vector>

namespace stats = loopwarden::sdk::stats;

namespace {
constexpr double inf_value = std::numeric_limits<double>::infinity();
}

TEST_CASE("amdahl_speedup and amdahl_ceiling match hand-computed cases", "[stats][amdahl]") {
  struct row {
    double p;
    double s;
    double speedup;
    double ceiling;
  };
  const std::vector<row> rows = {
      {0.8, 10.0, 1.0 / (0.2 + 0.08), 5.0},  // the case: 3.5714…, ceiling 5
      {0.8, 8.0, 1.0 / (0.2 + 0.1), 5.0},    // eightfold generation: 3.333…
      {0.5, 2.0, 4.0 / 3.0, 2.0},
      {0.95, inf_value, 20.0, 20.0},             // infinitely fast: the ceiling itself
      {0.0, 100.0, 1.0, 1.0},                    // nothing accelerated: nothing gained
      {1.0, 7.0, 7.0, inf_value},                // everything accelerated: all of s
      {0.3, 0.5, 1.0 / (0.7 + 0.6), 1.0 / 0.7},  // a slow-down (s < 1) is a speed-up below 1
  };
  for (const auto& r : rows) {
    INFO("p " << r.p << ", s " << r.s);
    CHECK(stats::amdahl_speedup(r.p, r.s) == Approx(r.speedup).epsilon(1e-12));
    CHECK(stats::amdahl_ceiling(r.p) == Approx(r.ceiling).epsilon(1e-12));
  }
  CHECK(stats::amdahl_speedup(0.8, 10.0) == Approx(3.5714285714285714).epsilon(1e-15));
  CHECK(stats::amdahl_ceiling(0.8) == Approx(5.0).epsilon(1e-15));
  CHECK(std::isnan(stats::amdahl_speedup(1.2, 2.0)));
  CHECK(std::isnan(stats::amdahl_speedup(0.5, 0.0)));
  CHECK(std::isnan(stats::amdahl_speedup(std::nan(""), 2.0)));
  CHECK(std::isnan(stats::amdahl_ceiling(-0.1)));
}

TEST_CASE("amdahl inverses recover p and s from the forward formula", "[stats][amdahl]") {
  for (const double p : {0.1, 0.5, 0.8, 0.95}) {
    for (const double s : {0.5, 2.0, 8.0, 10.0, 1000.0}) {
      INFO("p " << p << ", s " << s);
      const double overall = stats::amdahl_speedup(p, s);
      CHECK(stats::amdahl_implied_stage_speedup(p, overall) == Approx(s).epsilon(1e-9));
      CHECK(stats::amdahl_implied_fraction(s, overall) == Approx(p).epsilon(1e-9));
    }
  }
  // The case backwards: 3.5714 overall with p 0.8 needs s = 10.
  CHECK(stats::amdahl_implied_stage_speedup(0.8, 1.0 / 0.28) == Approx(10.0).epsilon(1e-12));
  // At the ceiling s is infinite; beyond it no s will do.
  CHECK(stats::amdahl_implied_stage_speedup(0.8, 5.0) == inf_value);
  CHECK(std::isnan(stats::amdahl_implied_stage_speedup(0.8, 6.0)));
  // s = 1 says nothing about p.
  CHECK(std::isnan(stats::amdahl_implied_fraction(1.0, 1.0)));
  // An overall speed-up larger than the stage's own is impossible.
  CHECK(std::isnan(stats::amdahl_implied_fraction(2.0, 3.0)));
}

TEST_CASE("measure_amdahl on a deterministic schedule equals the speed-up of its timeline",
          "[stats][amdahl]") {
  // One item at a time through generate (accelerated) then review. Baseline: generate 80 min,
  // review 20 min. Current: generate 8 min (ten times faster), review still 20 min. Ten items
  // each way; the achieved speed-up is the ratio of the two timelines' lengths.
  auto timeline = [](double generate, double review, int items) {
    double t = 0.0;
    for (int i = 0; i < items; ++i) t += generate + review;
    return t;
  };
  const double before = timeline(80.0, 20.0, 10);
  const double after = timeline(8.0, 20.0, 10);
  const auto m = stats::measure_amdahl(80.0, 20.0, 8.0, 20.0);
  CHECK(m.accelerated_fraction == Approx(0.8).epsilon(1e-15));
  CHECK(m.stage_speedup == Approx(10.0).epsilon(1e-15));
  CHECK(m.predicted_speedup == Approx(3.5714285714285714).epsilon(1e-14));
  CHECK(m.achieved_speedup == Approx(before / after).epsilon(1e-14));
  CHECK(m.achieved_speedup == Approx(m.predicted_speedup).epsilon(1e-14));
  CHECK(m.ceiling == Approx(5.0).epsilon(1e-15));
  CHECK(m.other_slowdown == Approx(1.0));

  // When review gets slower per item (bigger AI-written changes), the achieved speed-up falls
  // short of the prediction by exactly that: 100 / (8 + 40) = 2.083.
  const auto slower = stats::measure_amdahl(80.0, 20.0, 8.0, 40.0);
  CHECK(slower.achieved_speedup == Approx(100.0 / 48.0).epsilon(1e-14));
  CHECK(slower.predicted_speedup == Approx(3.5714285714285714).epsilon(1e-14));
  CHECK(slower.other_slowdown == Approx(2.0));

  // Missing data gives NaN, never a number that looks like a measurement.
  const auto empty = stats::measure_amdahl(0.0, 0.0, 1.0, 1.0);
  CHECK(std::isnan(empty.accelerated_fraction));
  CHECK(std::isnan(empty.achieved_speedup));
  const auto no_current = stats::measure_amdahl(80.0, 20.0, std::nan(""), std::nan(""));
  CHECK(m.accelerated_fraction == Approx(no_current.accelerated_fraction));
  CHECK(std::isnan(no_current.stage_speedup));
  CHECK(std::isnan(no_current.achieved_speedup));
}
