// Oracle tests for loopwarden/stats/gram.hpp: the streaming Gram accumulator against the batch
// functions of dispersion.hpp (vendi_score, effective_rank), against hand cases (k orthogonal
// directions equally represented give k, identical rows give 1), the small-sample correction of
// the order-2 Vendi score against its expectation by seeded simulation, and the participation
// ratio against hand-computed spectra.

#include <Eigen/Core>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <loopwarden/stats/dispersion.hpp>
#include <loopwarden/stats/gram.hpp>
#include <loopwarden/stats/welford.hpp>
#include <random>
#include <stdexcept>

namespace stats = loopwarden::sdk::stats;

namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

Eigen::MatrixXd gaussian_rows(Eigen::Index n, Eigen::Index d, unsigned seed, double offset = 0.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0.0, 1.0);
  Eigen::MatrixXd x(n, d);
  for (Eigen::Index i = 0; i < n; ++i) {
    for (Eigen::Index j = 0; j < d; ++j) x(i, j) = offset + noise(rng) * (1.0 + 0.3 * j);
  }
  return x;
}

// k orthogonal directions (unit vectors e_0..e_{k−1} of R^d), each `repeats` times, at lengths
// that vary (the cosine kernel normalises them away).
Eigen::MatrixXd orthogonal_rows(Eigen::Index k, Eigen::Index repeats, Eigen::Index d) {
  Eigen::MatrixXd x(k * repeats, d);
  for (Eigen::Index i = 0; i < k * repeats; ++i) {
    x.row(i) = Eigen::RowVectorXd::Unit(d, i % k) * (0.5 + static_cast<double>(i));
  }
  return x;
}

}  // namespace

TEST_CASE("gram accumulator equals the batch vendi score and effective rank", "[stats][gram]") {
  struct row {
    Eigen::Index n, d;
    unsigned seed;
    double offset;
  };
  for (const row& r : {row{50, 6, 1, 0.0}, row{7, 12, 2, 0.5}, row{300, 16, 3, 2.0}}) {
    INFO("n = " << r.n << ", d = " << r.d);
    const Eigen::MatrixXd x = gaussian_rows(r.n, r.d, r.seed, r.offset);
    stats::gram_accumulator cosine(r.d, stats::gram_kernel::cosine);
    stats::gram_accumulator linear(r.d, stats::gram_kernel::linear);
    for (Eigen::Index i = 0; i < x.rows(); ++i) {
      cosine.add(x.row(i).transpose());
      linear.add(x.row(i).transpose());
    }
    CHECK(cosine.count() == static_cast<std::uint64_t>(r.n));
    CHECK(cosine.vendi_score() == Approx(stats::vendi_score(x)).epsilon(1e-10));
    CHECK(linear.effective_rank() == Approx(stats::effective_rank(x)).epsilon(1e-10));
    // Batches and merges describe the same vectors.
    stats::gram_accumulator left(r.d);
    stats::gram_accumulator right(r.d);
    left.add_batch(x.topRows(r.n / 3));
    right.add_batch(x.bottomRows(r.n - r.n / 3));
    left.merge(right);
    CHECK(left.count() == cosine.count());
    CHECK((left.gram() - cosine.gram()).cwiseAbs().maxCoeff() < 1e-10 * r.n);
    CHECK(left.order2_vendi() == Approx(cosine.order2_vendi()).epsilon(1e-12));
    CHECK(left.debiased_order2_vendi() == Approx(cosine.debiased_order2_vendi()).epsilon(1e-12));
    // The order-2 score from the spectrum: 1 / Σ p² over the eigenvalues; one decomposition
    // gives both the Vendi score and the effective rank.
    const Eigen::VectorXd e = cosine.eigenvalues();
    CHECK(stats::vendi_from_eigenvalues(e) == cosine.vendi_score());
    CHECK(stats::effective_rank_from_eigenvalues(linear.eigenvalues()) == linear.effective_rank());
    CHECK(cosine.order2_vendi() == Approx(e.sum() * e.sum() / e.squaredNorm()).epsilon(1e-10));
  }
}

TEST_CASE("gram accumulator gives k for k orthogonal directions and 1 for identical rows",
          "[stats][gram]") {
  const Eigen::Index d = 8;
  for (Eigen::Index k = 1; k <= d; ++k) {
    INFO("k = " << k);
    stats::gram_accumulator g(d);
    g.add_batch(orthogonal_rows(k, 3, d));
    const double kd = static_cast<double>(k);
    CHECK(g.vendi_score() == Approx(kd).epsilon(1e-12));
    CHECK(g.order2_vendi() == Approx(kd).epsilon(1e-12));
    CHECK(g.effective_rank() == Approx(kd).margin(1e-6));
    // Pairs i ≠ j: n(n − 1) of them, k·r(r − 1) with a nonzero inner product (1):
    // (n − 1)/(r − 1) with n = k·r, r = 3.
    CHECK(g.debiased_order2_vendi() == Approx((3.0 * kd - 1.0) / 2.0).epsilon(1e-12));
  }
  Eigen::MatrixXd same(20, 5);
  same.rowwise() = Eigen::RowVectorXd::LinSpaced(5, -1.0, 2.0);
  stats::gram_accumulator g(5);
  g.add_batch(same);
  CHECK(g.vendi_score() == Approx(1.0).margin(1e-12));
  CHECK(g.order2_vendi() == Approx(1.0).epsilon(1e-12));
  CHECK(g.debiased_order2_vendi() == Approx(1.0).epsilon(1e-12));
  CHECK(g.effective_rank() == Approx(1.0).margin(1e-6));
  stats::gram_accumulator lin(5, stats::gram_kernel::linear);
  lin.add_batch(same);
  CHECK(lin.effective_rank() == Approx(1.0).margin(1e-6));
}

TEST_CASE("debiased order-2 vendi removes the small-sample bias of the plug-in estimate",
          "[stats][gram]") {
  // n = 10 draws, each uniformly one of k = 4 orthogonal directions: the population cosine Gram
  // E[u uᵀ] = I_4 / 4, tr(E[u uᵀ]²) = 1/4, order-2 Vendi 4. The plug-in tr(Ĝ²) = Σ_ij (u_iᵀu_j)²/n²
  // has expectation 1/n + (1 − 1/n)/4 = 0.325 (its diagonal is 1/n for sure); the debiased
  // denominator Σ_{i≠j} (u_iᵀu_j)² / (n(n − 1)) = 1 / debiased_order2_vendi() has expectation 1/4.
  // The same for isotropic Gaussian vectors in d = 8 (uniform directions): tr = 1/8.
  constexpr int n = 10;
  constexpr int replicates = 20000;
  std::mt19937_64 rng(77);
  std::uniform_int_distribution<int> pick(0, 3);
  std::normal_distribution<double> normal(0.0, 1.0);
  stats::welford debiased_k;
  stats::welford plugin_k;
  stats::welford debiased_iso;
  for (int r = 0; r < replicates; ++r) {
    stats::gram_accumulator g(4);
    stats::gram_accumulator iso(8);
    for (int i = 0; i < n; ++i) {
      g.add(Eigen::VectorXd::Unit(4, pick(rng)) * 2.0);
      Eigen::VectorXd v(8);
      for (int j = 0; j < 8; ++j) v[j] = normal(rng);
      iso.add(v);
    }
    const double inv = 1.0 / g.debiased_order2_vendi();  // finite: 10 draws of 4 always repeat
    debiased_k.add(inv);
    plugin_k.add(1.0 / g.order2_vendi());
    debiased_iso.add(1.0 / iso.debiased_order2_vendi());
  }
  const auto se = [](const stats::welford& w) {
    return w.sample_stddev() / std::sqrt(static_cast<double>(w.count()));
  };
  INFO("debiased " << debiased_k.mean() << " +- " << se(debiased_k) << ", plug-in "
                   << plugin_k.mean() << ", isotropic " << debiased_iso.mean());
  CHECK(std::abs(debiased_k.mean() - 0.25) < 4.0 * se(debiased_k));
  CHECK(std::abs(plugin_k.mean() - 0.325) < 4.0 * se(plugin_k));
  CHECK(std::abs(debiased_iso.mean() - 0.125) < 4.0 * se(debiased_iso));
  // Sharp enough to tell the two apart.
  CHECK(4.0 * se(debiased_k) < 0.01);
}

TEST_CASE("gram accumulator refuses unusable vectors and misuse, and round-trips its state",
          "[stats][gram]") {
  stats::gram_accumulator g(3);
  CHECK(std::isnan(g.vendi_score()));
  CHECK(std::isnan(g.order2_vendi()));
  CHECK(std::isnan(g.debiased_order2_vendi()));
  g.add(Eigen::Vector3d(0, 0, 0));          // zero norm: no direction
  g.add(Eigen::Vector3d(nan_value, 1, 0));  // not finite
  Eigen::MatrixXd batch(3, 3);
  batch << 1, 0, 0, 0, 0, 0, 0, 2, 0;
  g.add_batch(batch);
  CHECK(g.count() == 2);
  CHECK(g.ignored() == 3);
  CHECK(g.vendi_score() == Approx(2.0).epsilon(1e-12));
  CHECK(g.debiased_order2_vendi() == std::numeric_limits<double>::infinity());  // all orthogonal

  stats::gram_accumulator copy(3);
  copy.set_state(g.lower_triangle(), g.count(), g.ignored(), g.sum_squared_norms(),
                 g.sum_fourth_norms());
  CHECK(copy.gram() == g.gram());
  CHECK(copy.order2_vendi() == g.order2_vendi());
  CHECK_THROWS_AS(copy.set_state({1.0, 2.0}, 1, 0, 1.0, 1.0), std::invalid_argument);

  CHECK_THROWS_AS(stats::gram_accumulator(0), std::invalid_argument);
  CHECK_THROWS_AS(g.add(Eigen::Vector2d(1, 0)), std::invalid_argument);
  CHECK_THROWS_AS(g.add_batch(Eigen::MatrixXd::Ones(2, 4)), std::invalid_argument);
  CHECK_THROWS_AS(g.merge(stats::gram_accumulator(3, stats::gram_kernel::linear)),
                  std::invalid_argument);
  g.reset();
  CHECK(g.empty());
  CHECK(g.ignored() == 0);
}

TEST_CASE("participation ratio of hand-computed spectra", "[stats][gram]") {
  CHECK(stats::participation_ratio(Eigen::MatrixXd::Identity(7, 7) * 3.0) == Approx(7.0));
  const Eigen::Vector3d v(1.0, -2.0, 0.5);
  CHECK(stats::participation_ratio(v * v.transpose()) == Approx(1.0).epsilon(1e-14));
  CHECK(stats::participation_ratio(Eigen::Vector2d(3.0, 1.0).asDiagonal().toDenseMatrix()) ==
        Approx(1.6).epsilon(1e-14));  // 16 / 10
  // Rotation does not change it: R diag(3, 1) Rᵀ.
  const double c = std::cos(0.7);
  const double s = std::sin(0.7);
  Eigen::Matrix2d rot{{c, -s}, {s, c}};
  CHECK(stats::participation_ratio(rot * Eigen::Vector2d(3.0, 1.0).asDiagonal() *
                                   rot.transpose()) == Approx(1.6).epsilon(1e-13));
  CHECK(std::isnan(stats::participation_ratio(Eigen::MatrixXd::Zero(3, 3))));
  CHECK(std::isnan(stats::participation_ratio(Eigen::MatrixXd(0, 0))));
  // The d_eff of a covariance: a sample covariance of isotropic data in d = 10 from many samples.
  stats::dispersion acc(10);
  std::mt19937_64 rng(5);
  std::normal_distribution<double> normal(0.0, 1.0);
  Eigen::VectorXd x(10);
  for (int i = 0; i < 20000; ++i) {
    for (int j = 0; j < 10; ++j) x[j] = normal(rng);
    acc.add(x);
  }
  // Wishart: E tr(S²) ≈ tr(Σ²)(1 + 1/ν) + tr(Σ)²/ν, so the plug-in is d / (1 + (d + 1)/ν): it is
  // d / (1 + CV² of the eigenvalues of S), and that CV² (≈ 5.5e-4 here) has a sampling sd of the
  // same order, so 1e-3 relative is several sd wide and still tells d from the plug-in bias.
  CHECK(stats::participation_ratio(acc.covariance(1)) ==
        Approx(10.0 / (1.0 + 11.0 / 19999.0)).epsilon(1e-3));
}
