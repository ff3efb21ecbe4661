// Oracle tests for loopwarden/stats/tail_mass.hpp: type-7 quantiles and tail counts worked out
// by hand, and the share of N(0, s²) samples beyond the quantiles of a large N(0,1) baseline
// against the closed form 2·Φ(−z/s).

#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <loopwarden/stats/tail_mass.hpp>
#include <numbers>
#include <random>
#include <vector>

namespace stats = loopwarden::sdk::stats;

namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();
constexpr double inf_value = std::numeric_limits<double>::infinity();

// Φ(x), the standard normal distribution function, by the complementary error function.
double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::numbers::sqrt2); }

}  // namespace

TEST_CASE("type-7 quantiles of small samples match the hand computation", "[stats][tail_mass]") {
  struct row {
    std::vector<double> sorted;
    double q, expected;
  };
  // h = (n − 1)·q; Q = x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋]), 0-based.
  const std::vector<row> rows = {
      {{1, 2, 3, 4, 5}, 0.05, 1.2},  // h = 0.2
      {{1, 2, 3, 4, 5}, 0.95, 4.8},  // h = 3.8
      {{1, 2, 3, 4, 5}, 0.5, 3.0},   // h = 2
      {{1, 2, 3, 4, 5}, 0.0, 1.0},   // the minimum
      {{1, 2, 3, 4, 5}, 1.0, 5.0},   // the maximum
      {{10, 20}, 0.25, 12.5},        // h = 0.25
      {{-3, 0, 0, 9}, 0.9, 6.3},     // h = 2.7: 0 + 0.7·9
      {{7}, 0.3, 7.0},               // one value is every quantile
  };
  for (std::size_t i = 0; i < rows.size(); ++i) {
    INFO("row " << i << ", q = " << rows[i].q);
    CHECK(stats::quantile_sorted(rows[i].sorted, rows[i].q) ==
          Approx(rows[i].expected).epsilon(1e-15));
  }
  const std::vector<double> empty;
  const std::vector<double> one = {1.0};
  CHECK_THROWS_AS(stats::quantile_sorted(empty, 0.5), std::invalid_argument);
  CHECK_THROWS_AS(stats::quantile_sorted(one, -0.1), std::invalid_argument);
  CHECK_THROWS_AS(stats::quantile_sorted(one, nan_value), std::invalid_argument);
}

TEST_CASE("tail mass counts values strictly beyond the baseline quantiles", "[stats][tail_mass]") {
  // Baseline {1..5} in any order, with a NaN that is dropped: Q(0.05) = 1.2, Q(0.95) = 4.8.
  const std::vector<double> baseline = {4, 1, nan_value, 5, 3, 2};
  stats::tail_mass t(baseline);
  CHECK(t.low_threshold() == Approx(1.2).epsilon(1e-15));
  CHECK(t.high_threshold() == Approx(4.8).epsilon(1e-15));
  CHECK(t.baseline_count() == 5);
  CHECK(t.expected_share_outside() == Approx(0.1).epsilon(1e-15));
  CHECK(std::isnan(t.share_outside()));

  // Below 1.2: {1, −inf is ignored}; 1.2 itself is inside; above 4.8: {5, 7}; 4.8 inside.
  for (double x :
       {1.0, t.low_threshold(), 3.0, t.high_threshold(), 5.0, 7.0, nan_value, -inf_value}) {
    t.add(x);
  }
  CHECK(t.count() == 6);
  CHECK(t.ignored() == 2);
  CHECK(t.below() == 1);
  CHECK(t.above() == 2);
  CHECK(t.share_below() == Approx(1.0 / 6.0));
  CHECK(t.share_above() == Approx(2.0 / 6.0));
  CHECK(t.share_outside() == Approx(0.5));

  t.reset();  // the next generation: counts go, thresholds stay
  CHECK(t.count() == 0);
  CHECK(t.below() == 0);
  CHECK(t.above() == 0);
  CHECK(t.ignored() == 0);
  CHECK(std::isnan(t.share_below()));
  CHECK(t.low_threshold() == Approx(1.2).epsilon(1e-15));
  t.add(0.0);
  CHECK(t.share_below() == 1.0);
  CHECK(t.share_above() == 0.0);

  SECTION("configurable quantiles") {
    // Quartiles of {1..5}: h = 1 and h = 3, so 2 and 4.
    stats::tail_mass quartiles(baseline, {.low = 0.25, .high = 0.75});
    CHECK(quartiles.low_threshold() == 2.0);
    CHECK(quartiles.high_threshold() == 4.0);
    CHECK(quartiles.expected_share_outside() == Approx(0.5));
  }
  SECTION("invalid options and baselines are refused") {
    const std::vector<double> none = {nan_value, inf_value};
    CHECK_THROWS_AS(stats::tail_mass(none), std::invalid_argument);
    CHECK_THROWS_AS(stats::tail_mass(baseline, {.low = 0.5, .high = 0.5}), std::invalid_argument);
    CHECK_THROWS_AS(stats::tail_mass(baseline, {.low = -0.1, .high = 0.9}), std::invalid_argument);
    CHECK_THROWS_AS(stats::tail_mass(baseline, {.low = 0.1, .high = 1.1}), std::invalid_argument);
  }
}

TEST_CASE("tail mass of N(0, s^2) beyond N(0,1) quantiles matches 2 Phi(-1.645/s)", "[stats][tail_mass]") {
  // Baseline: 200 000 N(0,1) values; its 5 % and 95 % quantiles estimate ∓1.6449 with standard
  // error sqrt(0.05·0.95/n)/φ(1.6449) = 0.0047 (checked within 4 of those). Each generation then
  // adds m = 100 000 N(0, s²) values; the share beyond the thresholds (lo, hi) has expectation
  //   Φ(lo/s) + Φ(−hi/s)   (= 2·Φ(−1.645/s) for thresholds at exactly ∓1.645)
  // and binomial standard error sqrt(π(1 − π)/m) ≤ 0.0016; the check allows 4 of those (plus
  // 1e-12). Using the thresholds actually estimated keeps the baseline's own sampling error out
  // of the comparison; the comparison with ±1.6449 itself is within 0.002 at s = 1.
  // s = 0.5 is a collapse (π = 0.0010), s = 2 a spread (π = 0.411).
  std::mt19937_64 rng(16449);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> baseline(200000);
  for (double& x : baseline) x = normal(rng);
  stats::tail_mass t(baseline);
  const double z = 1.6448536269514722;  // Φ⁻¹(0.95)
  const double quantile_se = std::sqrt(0.05 * 0.95 / 200000.0) /
                             (std::exp(-0.5 * z * z) / std::sqrt(2.0 * std::numbers::pi));
  CHECK(std::abs(t.low_threshold() + z) < 4.0 * quantile_se);
  CHECK(std::abs(t.high_threshold() - z) < 4.0 * quantile_se);

  constexpr std::size_t m = 100000;
  for (double s : {0.5, 1.0, 1.5, 2.0}) {
    t.reset();
    for (std::size_t i = 0; i < m; ++i) t.add(s * normal(rng));
    const double expected = normal_cdf(t.low_threshold() / s) + normal_cdf(-t.high_threshold() / s);
    const double se = std::sqrt(expected * (1.0 - expected) / static_cast<double>(m));
    INFO("s = " << s << ": share " << t.share_outside() << ", expected " << expected
                << ", closed form at 1.645 " << 2.0 * normal_cdf(-z / s) << ", se " << se);
    CHECK(t.count() == m);
    CHECK(std::abs(t.share_outside() - expected) < 4.0 * se + 1e-12);
    CHECK(std::abs(expected - 2.0 * normal_cdf(-z / s)) < 0.002);
    // The lower tail alone has expectation Φ(lo/s) (and a smaller standard error than the sum).
    CHECK(std::abs(t.share_below() - normal_cdf(t.low_threshold() / s)) < 4.0 * se + 1e-12);
  }
}
