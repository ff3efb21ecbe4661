// Oracles of stats::refit_expectation: its closed forms, and seeded simulations of the loops it
// describes (a Gaussian refitted on a mix of its own samples and fresh real data; Gini–Simpson
// diversity of a categorical distribution resampled from such a mix).

#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <loopwarden/stats/refit_recursion.hpp>
#include <random>
#include <stdexcept>
#include <vector>

namespace stats = loopwarden::sdk::stats;

TEST_CASE("refit_expectation without real data is ((N - 1)/N)^g", "[sdk][stats][refit]") {
  for (const double n : {2.0, 20.0, 60.0, 1000.0}) {
    stats::refit_expectation e;
    for (int g = 1; g <= 50; ++g) {
      e.step(n, 1.0);
      INFO("n " << n << " g " << g);
      CHECK(e.dispersion() == Approx(std::pow((n - 1.0) / n, g)).epsilon(1e-12));
    }
  }
}

TEST_CASE("refit_expectation reaches its closed-form fixed point", "[sdk][stats][refit]") {
  // By hand, N 20 and 5 % real (s = 0.95): c = 0.95 + 0.95/(20·1.95) = 0.974359,
  // D* = 0.05·c/(1 − 0.95·c) = 0.655172; the model that ignores the mean would say 0.487.
  CHECK(stats::refit_expectation::fixed_point(20.0, 0.95) == Approx(0.655172).epsilon(1e-5));
  for (const double n : {10.0, 100.0, 500.0}) {
    for (const double s : {0.5, 0.8, 0.9, 0.98}) {
      stats::refit_expectation e;
      for (int g = 0; g < 5000; ++g) e.step(n, s);
      INFO("n " << n << " s " << s);
      CHECK(e.dispersion() == Approx(stats::refit_expectation::fixed_point(n, s)).epsilon(1e-9));
    }
  }
}

TEST_CASE("refit_expectation refuses bad steps and bad restores", "[sdk][stats][refit]") {
  stats::refit_expectation e;
  CHECK_THROWS_AS(e.step(1.0, 0.5), std::invalid_argument);
  CHECK_THROWS_AS(e.step(NAN, 0.5), std::invalid_argument);
  CHECK_THROWS_AS(e.step(10.0, 1.5), std::invalid_argument);
  CHECK_THROWS_AS(e.step(10.0, -0.1), std::invalid_argument);
  CHECK_FALSE(e.restore(NAN, 0.0));
  CHECK_FALSE(e.restore(0.5, -1.0));
  CHECK(e.dispersion() == 1.0);
  CHECK(e.restore(0.5, 0.25));
  CHECK(e.dispersion() == 0.5);
  CHECK(e.mean_offset() == 0.25);
}

TEST_CASE("refit_expectation matches a simulated Gaussian refit on a real-data mix",
          "[sdk][stats][refit]") {
  // Chains of: fit mean and ddof-0 variance to R fresh N(0, 1) and N − R samples of N(μ, σ²).
  // The chains' mean σ² and μ² after g generations against E D_g and E M_g, for the transient
  // (g 5, 15) and near the fixed point (g 120). The stationary σ² is heavy-tailed at small N,
  // so many chains; tolerance ≈ 4 standard errors.
  struct row {
    int n;
    int real;
  };
  for (const row r : {row{20, 1}, row{60, 6}, row{200, 40}}) {
    const double s = 1.0 - static_cast<double>(r.real) / r.n;
    const int chains = 400000 / r.n;
    std::mt19937_64 rng(5);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<double> mu(static_cast<std::size_t>(chains), 0.0);
    std::vector<double> var(static_cast<std::size_t>(chains), 1.0);
    stats::refit_expectation e;
    for (int g = 1; g <= 120; ++g) {
      e.step(r.n, s);
      double mean_var = 0.0;
      double mean_mu2 = 0.0;
      for (std::size_t k = 0; k < mu.size(); ++k) {
        double sum = 0.0;
        double sum_sq = 0.0;
        for (int i = 0; i < r.n; ++i) {
          const double x = i < r.real ? normal(rng) : mu[k] + std::sqrt(var[k]) * normal(rng);
          sum += x;
          sum_sq += x * x;
        }
        mu[k] = sum / r.n;
        var[k] = sum_sq / r.n - mu[k] * mu[k];
        mean_var += var[k] / chains;
        mean_mu2 += mu[k] * mu[k] / chains;
      }
      if (g == 5 || g == 15 || g == 120) {
        INFO("n " << r.n << " real " << r.real << " g " << g << " E D " << e.dispersion()
                  << " simulated " << mean_var << " E M " << e.mean_offset() << " simulated "
                  << mean_mu2);
        CHECK(mean_var == Approx(e.dispersion()).epsilon(0.04));
        CHECK(mean_mu2 == Approx(e.mean_offset()).epsilon(0.08).margin(0.002));
      }
    }
  }
}

TEST_CASE("refit_expectation matches simulated Gini-Simpson diversity under a resampled mix",
          "[sdk][stats][refit]") {
  // A categorical model over K = 8 categories, p0 uniform (Gini–Simpson 1 − 1/8). Generation
  // g + 1 is the empirical distribution of R draws from p0 and N − R draws from p_g: the one-hot
  // vectors' total variance is Gini–Simpson, so E[GS_g]/GS_0 follows the same recursion.
  const int k_cats = 8;
  const int n = 40;
  const int real = 4;
  const int chains = 20000;
  const double gs0 = 1.0 - 1.0 / k_cats;
  std::mt19937_64 rng(9);
  std::uniform_int_distribution<int> uniform(0, k_cats - 1);
  std::vector<std::vector<double>> p(static_cast<std::size_t>(chains),
                                     std::vector<double>(k_cats, 1.0 / k_cats));
  stats::refit_expectation e;
  for (int g = 1; g <= 60; ++g) {
    e.step(n, 1.0 - static_cast<double>(real) / n);
    double mean_gs = 0.0;
    for (auto& pk : p) {
      std::discrete_distribution<int> model(pk.begin(), pk.end());
      std::vector<double> counts(k_cats, 0.0);
      for (int i = 0; i < n; ++i)
        counts[static_cast<std::size_t>(i < real ? uniform(rng) : model(rng))] += 1.0;
      double sum_sq = 0.0;
      for (int c = 0; c < k_cats; ++c) {
        pk[static_cast<std::size_t>(c)] = counts[static_cast<std::size_t>(c)] / n;
        sum_sq += pk[static_cast<std::size_t>(c)] * pk[static_cast<std::size_t>(c)];
      }
      mean_gs += (1.0 - sum_sq) / chains;
    }
    if (g == 3 || g == 20 || g == 60) {
      INFO("g " << g << " E D " << e.dispersion() << " simulated " << mean_gs / gs0);
      CHECK(mean_gs / gs0 == Approx(e.dispersion()).epsilon(0.01));
    }
  }
}
