// Oracle tests for loopwarden/stats/queueing.hpp: the M/M/1 closed forms against known values
// (tests/plugins/review_bottleneck_test.cpp checks them against seeded simulations), Little's
// law on a hand-built schedule, the net-flow test on hand-computed cases and its false-alarm
// rate under a balanced Poisson null.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <loopwarden/stats/queueing.hpp>
#include <random>
#include <vector>

namespace stats = loopwarden::sdk::stats;

namespace {
constexpr double inf_value = std::numeric_limits<double>::infinity();
}

TEST_CASE("mm1 closed forms match known values", "[stats][queueing]") {
  CHECK(stats::mm1_mean_in_system(0.7) == Approx(7.0 / 3.0).epsilon(1e-15));
  CHECK(stats::mm1_mean_in_system(0.5) == Approx(1.0));
  CHECK(stats::mm1_mean_in_system(0.0) == 0.0);
  CHECK(stats::mm1_mean_in_system(1.0) == inf_value);
  CHECK(stats::mm1_mean_in_system(1.3) == inf_value);
  CHECK(std::isnan(stats::mm1_mean_in_system(-0.1)));
  // W = 1 / (μ − λ) = 1 / 0.3; Little: L = λW = 0.7 / 0.3.
  CHECK(stats::mm1_mean_time_in_system(0.7, 1.0) == Approx(1.0 / 0.3));
  CHECK(0.7 * stats::mm1_mean_time_in_system(0.7, 1.0) == Approx(stats::mm1_mean_in_system(0.7)));
  CHECK(stats::mm1_mean_time_in_system(2.0, 1.0) == inf_value);
  CHECK(stats::mm1_probability_at_least(0.7, 2.0) == Approx(0.49));
  CHECK(stats::mm1_probability_at_least(1.3, 5.0) == 1.0);
}

TEST_CASE("little_gap is zero on an exact schedule and measures the gap otherwise",
          "[stats][queueing]") {
  // Over [0, 10): items present [0, 2), [1, 4), [5, 6): area 2 + 3 + 1 = 6, so L = 0.6;
  // λ = 3 / 10, W = 6 / 3 = 2: λW = 0.6, exactly L. Empty at both ends of the window.
  CHECK(stats::little_gap(0.6, 0.3, 2.0) == 0.0);
  CHECK(stats::little_gap(0.0, 0.0, 0.0) == 0.0);
  CHECK(stats::little_gap(2.0, 0.5, 2.0) == Approx(0.5));  // λW = 1 against L = 2
  CHECK(std::isnan(stats::little_gap(-1.0, 0.5, 2.0)));
}

TEST_CASE("net_flow_test matches hand-computed cases", "[stats][queueing]") {
  struct row {
    const char* name;
    std::vector<double> arrivals;
    std::vector<double> departures;
    double net;
    double variance;
    double z;
  };
  const std::vector<row> rows = {
      // Steady excess of 2 a bucket: batch variance 0, the Poisson term A + D = 16 rules.
      {"steady growth", {3, 3, 3, 3}, {1, 1, 1, 1}, 8.0, 16.0, 2.0},
      // Bursty arrivals: per-bucket nets 10, −2, 10, −2 (mean 4, s² = 48): K s² = 192 > 32.
      {"bursty arrivals", {12, 0, 12, 0}, {2, 2, 2, 2}, 16.0, 192.0, 16.0 / std::sqrt(192.0)},
      {"balanced", {5, 5, 5, 5}, {5, 5, 5, 5}, 0.0, 40.0, 0.0},
      {"draining", {1, 1, 1, 1}, {3, 3, 3, 3}, -8.0, 16.0, -2.0},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    const auto f = stats::net_flow_test(r.arrivals, r.departures);
    CHECK(f.net == r.net);
    CHECK(std::max(f.poisson_variance, f.batch_variance) == Approx(r.variance));
    CHECK(f.z == Approx(r.z));
  }
  const auto none = stats::net_flow_test({0, 0}, {0, 0});
  CHECK(std::isnan(none.z));
  const auto one = stats::net_flow_test({4}, {1});
  CHECK(std::isnan(one.batch_variance));
  CHECK(one.z == Approx(3.0 / std::sqrt(5.0)));
}

TEST_CASE("net_flow_test false-alarm rate under balanced Poisson flows is at most the normal tail",
          "[stats][queueing]") {
  // The boundary of the null, ρ = 1: per-bucket arrivals and departures both Poisson(20), 12
  // buckets a window. z is then about standard normal, and taking the larger of the two
  // variance estimates only shrinks it, so P(z ≥ 2) ≤ 1 − Φ(2) = 0.02275 and
  // P(z ≥ 3) ≤ 0.00135. 20 000 independent windows: a binomial standard error of 0.00105 at
  // 0.02275, so the rate must be below 0.02275 + 4 SE = 0.0270.
  std::mt19937_64 rng(1234);
  std::poisson_distribution<int> flow(20.0);
  constexpr int windows = 20'000;
  int above2 = 0;
  int above3 = 0;
  std::vector<double> a(12);
  std::vector<double> d(12);
  for (int w = 0; w < windows; ++w) {
    for (std::size_t i = 0; i < a.size(); ++i) {
      a[i] = flow(rng);
      d[i] = flow(rng);
    }
    const double z = stats::net_flow_test(a, d).z;
    if (z >= 2.0) ++above2;
    if (z >= 3.0) ++above3;
  }
  const double rate2 = static_cast<double>(above2) / windows;
  const double rate3 = static_cast<double>(above3) / windows;
  CAPTURE(rate2, rate3);
  CHECK(rate2 <= 0.0270);
  CHECK(rate3 <= 0.00135 + 4 * std::sqrt(0.00135 / windows));
  // Not vacuous: the test does fire at about the normal rate.
  CHECK(rate2 >= 0.01);
}

TEST_CASE("time_to_limit matches hand-computed cases", "[stats][queueing]") {
  CHECK(stats::time_to_limit(40.0, 6.0, 100.0) == Approx(10.0));
  CHECK(stats::time_to_limit(100.0, 6.0, 100.0) == 0.0);
  CHECK(stats::time_to_limit(40.0, 0.0, 100.0) == inf_value);
  CHECK(stats::time_to_limit(40.0, -1.0, 100.0) == inf_value);
  CHECK(std::isnan(stats::time_to_limit(std::nan(""), 1.0, 100.0)));
}
