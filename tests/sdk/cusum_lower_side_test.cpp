// The lower side of stats::cusum used alone (as agent_drift uses it, on a standardised index):
// its run lengths against the one-sided tables. The two-sided ARLs (k 0.5, h 4: 168 in control,
// 8.38 at 1 sigma) are tested in stats_test.cpp; a one-sided chart signals on one tail only, so
// in control it runs twice as long (1/ARL = 1/ARL+ + 1/ARL- for the symmetric two-sided chart):
// 336 (Lucas & Crosier 1982, one-sided table; Siegmund's approximation gives 338), while a
// 1-sigma drop is still found in about 8.38 observations (the upper side almost never signals
// first under a drop, so the two-sided and one-sided out-of-control ARLs agree).

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <loopwarden/stats/cusum.hpp>
#include <loopwarden/stats/welford.hpp>
#include <random>

namespace stats = loopwarden::sdk::stats;

namespace {

// Mean run length until the lower side alone signals, on shift + N(0, 1), over `runs` runs.
double lower_side_arl(double shift, std::size_t runs, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0.0, 1.0);
  stats::welford lengths;
  for (std::size_t r = 0; r < runs; ++r) {
    stats::cusum c({.target = 0.0, .sigma = 1.0, .k = 0.5, .h = 4.0});
    std::uint64_t t = 0;
    while (t < 1'000'000) {
      ++t;
      if (stats::signalled_lower(c.update(shift + noise(rng)))) break;
    }
    lengths.add(static_cast<double>(t));
  }
  return lengths.mean();
}

}  // namespace

TEST_CASE("cusum lower side alone with k 0.5 and h 4 runs about 336 in control",
          "[stats][cusum][arl]") {
  constexpr std::size_t runs = 10'000;
  const double arl = lower_side_arl(0.0, runs, 336);
  const double tolerance = 4.0 * 336.0 / std::sqrt(static_cast<double>(runs));  // 13.4
  CAPTURE(arl, tolerance);
  CHECK(std::abs(arl - 336.0) <= tolerance);
}

TEST_CASE("cusum lower side alone with k 0.5 and h 4 finds a 1 sigma drop in about 8.38",
          "[stats][cusum][arl]") {
  constexpr std::size_t runs = 20'000;
  const double arl = lower_side_arl(-1.0, runs, 838);
  const double tolerance = 4.0 * 8.38 / std::sqrt(static_cast<double>(runs));  // 0.24
  CAPTURE(arl, tolerance);
  CHECK(std::abs(arl - 8.38) <= tolerance);
}
