// Oracle tests for loopwarden/stats/distribution.hpp: normal quantiles against published values,
// binomial and beta-binomial distribution functions against hand computation and exact sums,
// and the beta-binomial as the exact law of a count beyond a baseline order statistic (seeded
// simulation).

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <loopwarden/stats/distribution.hpp>
#include <random>
#include <stdexcept>
#include <vector>

namespace stats = loopwarden::sdk::stats;

namespace {

// C(n, k) p^k (1 − p)^(n − k), term by term in long double.
long double binomial_pmf(int k, int n, long double p) {
  long double c = 1.0L;
  for (int i = 1; i <= k; ++i) c = c * (n - k + i) / i;
  return c * std::pow(p, static_cast<long double>(k)) *
         std::pow(1.0L - p, static_cast<long double>(n - k));
}

// The beta-binomial pmf from its definition C(n, k) B(k + a, n − k + b) / B(a, b), in long double.
long double beta_binomial_pmf(int k, int n, long double a, long double b) {
  const auto lbeta = [](long double x, long double y) {
    return std::lgamma(x) + std::lgamma(y) - std::lgamma(x + y);
  };
  const long double log_choose = std::lgamma(static_cast<long double>(n) + 1) -
                                 std::lgamma(static_cast<long double>(k) + 1) -
                                 std::lgamma(static_cast<long double>(n - k) + 1);
  return std::exp(log_choose + lbeta(k + a, n - k + b) - lbeta(a, b));
}

}  // namespace

TEST_CASE("normal quantile matches published values and inverts normal cdf",
          "[stats][distribution]") {
  struct row {
    double p, z;
  };
  // Values of Φ⁻¹ to 16 digits (e.g. R: qnorm(0.975, digits = 16)).
  const std::vector<row> rows = {
      {0.5, 0.0},
      {0.975, 1.959963984540054},
      {0.025, -1.959963984540054},
      {0.999, 3.090232306167813},
      {0.99, 2.326347874040841},
      {0.001, -3.090232306167813},
      {1e-10, -6.361340902404056},
      {0.84134474606854293, 1.0},  // Φ(1)
  };
  for (const auto& r : rows) {
    INFO("p = " << r.p);
    CHECK(stats::normal_quantile(r.p) == Approx(r.z).margin(1e-12));
  }
  for (double p : {1e-300, 1e-20, 0.01, 0.3, 0.5, 0.7, 0.95, 1.0 - 1e-12}) {
    INFO("p = " << p);
    const double z = stats::normal_quantile(p);
    const double back = z < 0 ? stats::normal_cdf(z) : 1.0 - stats::normal_cdf(-z);
    CHECK(back == Approx(p).epsilon(1e-12));
  }
  CHECK(stats::normal_quantile(0.0) == -std::numeric_limits<double>::infinity());
  CHECK(stats::normal_quantile(1.0) == std::numeric_limits<double>::infinity());
  CHECK_THROWS_AS(stats::normal_quantile(-0.1), std::invalid_argument);
  CHECK_THROWS_AS(stats::normal_quantile(std::nan("")), std::invalid_argument);
  CHECK(stats::normal_cdf(0.0) == 0.5);
  CHECK(stats::normal_cdf(-1.959963984540054) == Approx(0.025).epsilon(1e-14));
}

TEST_CASE("regularized incomplete beta matches its closed forms", "[stats][distribution]") {
  for (double x : {0.0, 0.01, 0.3, 0.5, 0.77, 0.999, 1.0}) {
    INFO("x = " << x);
    CHECK(stats::regularized_incomplete_beta(1.0, 1.0, x) == Approx(x).margin(1e-15));
    // I_x(a, 1) = x^a and I_x(1, b) = 1 − (1 − x)^b.
    CHECK(stats::regularized_incomplete_beta(3.5, 1.0, x) ==
          Approx(std::pow(x, 3.5)).margin(1e-14));
    CHECK(stats::regularized_incomplete_beta(1.0, 7.0, x) ==
          Approx(1.0 - std::pow(1.0 - x, 7.0)).margin(1e-14));
    // I_x(a, b) = 1 − I_{1−x}(b, a).
    CHECK(stats::regularized_incomplete_beta(4.0, 9.5, x) ==
          Approx(1.0 - stats::regularized_incomplete_beta(9.5, 4.0, 1.0 - x)).margin(1e-14));
  }
  CHECK(stats::regularized_incomplete_beta(20.0, 20.0, 0.5) == Approx(0.5).epsilon(1e-14));
  CHECK_THROWS_AS(stats::regularized_incomplete_beta(0.0, 1.0, 0.5), std::invalid_argument);
  CHECK_THROWS_AS(stats::regularized_incomplete_beta(1.0, 1.0, 1.5), std::invalid_argument);
}

TEST_CASE("binomial cdf matches hand counts and exact sums", "[stats][distribution][binomial]") {
  // n = 10, p = 1/2: P(X <= 2) = (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 56/1024.
  CHECK(stats::binomial_cdf(2, 10, 0.5) == Approx(56.0 / 1024.0).epsilon(1e-14));
  CHECK(stats::binomial_cdf(0, 10, 0.5) == Approx(1.0 / 1024.0).epsilon(1e-14));
  CHECK(stats::binomial_cdf(9, 10, 0.5) == Approx(1023.0 / 1024.0).epsilon(1e-14));
  // No success in 20 trials of 0.1: 0.9^20.
  CHECK(stats::binomial_cdf(0, 20, 0.1) == Approx(std::pow(0.9, 20)).epsilon(1e-13));
  // Edges.
  CHECK(stats::binomial_cdf(-1, 10, 0.5) == 0.0);
  CHECK(stats::binomial_cdf(10, 10, 0.5) == 1.0);
  CHECK(stats::binomial_cdf(3, 10, 0.0) == 1.0);
  CHECK(stats::binomial_cdf(3, 10, 1.0) == 0.0);
  CHECK(stats::binomial_cdf(0, 0, 0.3) == 1.0);
  CHECK_THROWS_AS(stats::binomial_cdf(1, 10, 1.5), std::invalid_argument);
  // Every k of a table of (n, p) against the term-by-term sum in long double.
  for (int n : {1, 5, 17, 60, 200}) {
    for (double p : {0.01, 0.05, 0.3, 0.5, 0.93}) {
      long double cdf = 0.0L;
      for (int k = 0; k < n; ++k) {
        cdf += binomial_pmf(k, n, p);
        INFO("n = " << n << ", p = " << p << ", k = " << k);
        CHECK(stats::binomial_cdf(k, static_cast<std::uint64_t>(n), p) ==
              Approx(static_cast<double>(cdf)).epsilon(1e-11).margin(1e-300));
        // The upper tail from k + 1 is the complement, computed without cancellation.
        CHECK(stats::binomial_upper_tail(k + 1, static_cast<std::uint64_t>(n), p) ==
              Approx(static_cast<double>(1.0L - cdf)).epsilon(1e-9).margin(1e-15));
      }
    }
  }
  // A tail far below 1e-16 keeps its relative precision: P(X >= 100) = 2^-100.
  CHECK(stats::binomial_upper_tail(100, 100, 0.5) == Approx(std::pow(2.0, -100)).epsilon(1e-12));
  CHECK(stats::binomial_cdf(0, 100, 0.5) == Approx(std::pow(2.0, -100)).epsilon(1e-12));
}

TEST_CASE("beta-binomial cdf matches hand computation, exact sums and its limits",
          "[stats][distribution][binomial]") {
  // n = 2, a = 2, b = 1: pmf = C(2,k) B(k+2, 3−k) / B(2,1) = 1/6, 1/3, 1/2.
  CHECK(stats::beta_binomial_cdf(0, 2, 2.0, 1.0) == Approx(1.0 / 6.0).epsilon(1e-14));
  CHECK(stats::beta_binomial_cdf(1, 2, 2.0, 1.0) == Approx(0.5).epsilon(1e-14));
  CHECK(stats::beta_binomial_cdf(2, 2, 2.0, 1.0) == 1.0);
  // a = b = 1: uniform on 0..n.
  for (int k = 0; k <= 12; ++k) {
    INFO("k = " << k);
    CHECK(stats::beta_binomial_cdf(k, 12, 1.0, 1.0) == Approx((k + 1) / 13.0).epsilon(1e-13));
  }
  // Both summation directions against the definition, for every k.
  for (int n : {3, 30, 101}) {
    for (auto [a, b] : {std::pair{3.5, 20.0}, std::pair{1.0, 39.0}, std::pair{50.0, 2.0}}) {
      long double cdf = 0.0L;
      for (int k = 0; k < n; ++k) {
        cdf += beta_binomial_pmf(k, n, a, b);
        INFO("n = " << n << ", a = " << a << ", b = " << b << ", k = " << k);
        CHECK(stats::beta_binomial_cdf(k, static_cast<std::uint64_t>(n), a, b) ==
              Approx(static_cast<double>(cdf)).epsilon(1e-10).margin(1e-13));
      }
    }
  }
  // As a, b grow with a / (a + b) = p it is the binomial.
  for (int k : {0, 2, 5, 9}) {
    INFO("k = " << k);
    CHECK(stats::beta_binomial_cdf(k, 60, 0.1 * 1e8, 0.9 * 1e8) ==
          Approx(stats::binomial_cdf(k, 60, 0.1)).margin(1e-6));
  }
  CHECK(stats::beta_binomial_cdf(-1, 10, 1.0, 1.0) == 0.0);
  CHECK(stats::beta_binomial_cdf(10, 10, 1.0, 1.0) == 1.0);
  CHECK_THROWS_AS(stats::beta_binomial_cdf(1, 10, 0.0, 1.0), std::invalid_argument);
}

TEST_CASE("the count of fresh values beyond a baseline order statistic is beta-binomial",
          "[stats][distribution][binomial]") {
  // m = 40 baseline values; the threshold is the 38th smallest, so a fresh value exceeds it with
  // probability Beta(m − j + 1, j) = Beta(3, 38); the count of n = 25 fresh values above it is
  // BetaBinomial(25, 3, 38) whatever the (continuous) distribution. A plain binomial at the
  // expected share 3/41 understates the tails. 200 000 seeded replicates of exponential data.
  constexpr int m = 40;
  constexpr int j = 38;
  constexpr int n = 25;
  constexpr int replicates = 200000;
  std::mt19937_64 rng(20261124);
  std::exponential_distribution<double> draw(1.0);
  std::vector<int> at_most(4, 0);
  std::vector<double> baseline(m);
  for (int r = 0; r < replicates; ++r) {
    for (double& x : baseline) x = draw(rng);
    std::nth_element(baseline.begin(), baseline.begin() + (j - 1), baseline.end());
    const double threshold = baseline[j - 1];
    int above = 0;
    for (int i = 0; i < n; ++i) above += draw(rng) > threshold ? 1 : 0;
    for (int k = 0; k < 4; ++k) at_most[static_cast<std::size_t>(k)] += above <= k ? 1 : 0;
  }
  for (int k = 0; k < 4; ++k) {
    const double expected = stats::beta_binomial_cdf(k, n, m - j + 1, j);
    const double observed = at_most[static_cast<std::size_t>(k)] / static_cast<double>(replicates);
    const double se = std::sqrt(expected * (1.0 - expected) / replicates);
    INFO("k = " << k << ": observed " << observed << ", beta-binomial " << expected << ", binomial "
                << stats::binomial_cdf(k, n, 3.0 / 41.0));
    CHECK(std::abs(observed - expected) < 4.0 * se);
  }
  // The binomial at the mean share is visibly wrong here (P(K = 0): 0.150 against 0.226).
  CHECK(std::abs(stats::binomial_cdf(0, n, 3.0 / 41.0) - stats::beta_binomial_cdf(0, n, 3, 38)) >
        0.03);
}
