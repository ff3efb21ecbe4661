// Oracle tests for loopwarden/stats/dispersion.hpp: the streaming mean and covariance against a
// two-pass batch computation and per-dimension welford, the Vendi score and effective rank
// against cases with a known answer and against the direct n × n kernel route, and the
// dispersion ratio against hand-computed values.

#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <Eigen/SVD>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <limits>
#include <loopwarden/stats/dispersion.hpp>
#include <loopwarden/stats/welford.hpp>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

namespace stats = loopwarden::sdk::stats;

namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();
constexpr double inf_value = std::numeric_limits<double>::infinity();

// n × d matrix of offset + scale · N(0, 1) entries.
Eigen::MatrixXd gaussian_rows(Eigen::Index n, Eigen::Index d, unsigned seed, double offset = 0.0,
                              double scale = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0.0, 1.0);
  Eigen::MatrixXd x(n, d);
  for (Eigen::Index i = 0; i < n; ++i) {
    for (Eigen::Index j = 0; j < d; ++j) x(i, j) = offset + scale * noise(rng);
  }
  return x;
}

// The textbook two-pass covariance: mean first, then Σ (x − mean)(x − mean)ᵀ / (n − ddof).
Eigen::MatrixXd two_pass_covariance(const Eigen::MatrixXd& x, double ddof) {
  const Eigen::RowVectorXd mean = x.colwise().mean();
  const Eigen::MatrixXd centred = x.rowwise() - mean;
  return centred.transpose() * centred / (static_cast<double>(x.rows()) - ddof);
}

// exp(entropy) of weights normalised to sum 1, written out independently of the header.
double exp_entropy(const Eigen::VectorXd& w) {
  const double total = w.sum();
  double h = 0.0;
  for (Eigen::Index i = 0; i < w.size(); ++i) {
    const double p = w[i] / total;
    if (p > 0.0) h -= p * std::log(p);
  }
  return std::exp(h);
}

// The Vendi score by its definition: the n × n cosine kernel K = X Xᵀ / n of the row-normalised
// X and its eigenvalues.
double vendi_by_n_by_n_kernel(const Eigen::MatrixXd& x) {
  const Eigen::MatrixXd normalised = x.rowwise().normalized();
  const Eigen::MatrixXd kernel =
      normalised * normalised.transpose() / static_cast<double>(x.rows());
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(kernel);
  return exp_entropy(solver.eigenvalues().cwiseMax(0.0));
}

double max_abs_difference(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
  return (a - b).cwiseAbs().maxCoeff();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// the streaming accumulator

TEST_CASE("dispersion matches hand-computed means, scatter and total variances", "[stats][dispersion]") {
  SECTION("the corners of a square: no correlation") {
    // mean (1, 1); each corner is (±1, ±1) from it: S = diag(4, 4), off-diagonal Σ(±1)(±1) = 0.
    stats::dispersion acc(2);
    for (const auto& v : {Eigen::Vector2d(0, 0), Eigen::Vector2d(2, 0), Eigen::Vector2d(0, 2),
                          Eigen::Vector2d(2, 2)}) {
      acc.add(v);
    }
    CHECK(acc.count() == 4);
    CHECK(max_abs_difference(acc.mean(), Eigen::Vector2d(1, 1)) < 1e-15);
    CHECK(max_abs_difference(acc.scatter(), Eigen::Matrix2d{{4, 0}, {0, 4}}) < 1e-14);
    CHECK(max_abs_difference(acc.covariance(1), Eigen::Matrix2d{{4.0 / 3, 0}, {0, 4.0 / 3}}) <
          1e-14);
    CHECK(acc.total_variance(0) == Approx(2.0).epsilon(1e-14));        // 8 / 4
    CHECK(acc.total_variance(1) == Approx(8.0 / 3.0).epsilon(1e-14));  // 8 / 3
  }
  SECTION("points on a line: perfectly correlated") {
    // (0,0), (1,1), (2,2): mean (1, 1), deviations (−1,−1), (0,0), (1,1): every entry of S is 2.
    stats::dispersion acc(2);
    for (double t : {0.0, 1.0, 2.0}) acc.add(Eigen::Vector2d(t, t));
    CHECK(max_abs_difference(acc.scatter(), Eigen::Matrix2d{{2, 2}, {2, 2}}) < 1e-14);
    CHECK(max_abs_difference(acc.covariance(0), Eigen::Matrix2d{{2, 2}, {2, 2}} / 3.0) < 1e-14);
    CHECK(acc.total_variance(1) == Approx(2.0).epsilon(1e-14));  // 4 / 2
  }
}

TEST_CASE("dispersion streaming mean and covariance equal the two-pass batch computation",
          "[stats][dispersion]") {
  // An offset of 1e6 makes a one-pass Σxxᵀ − n·mean·meanᵀ lose ~12 digits; the update must not.
  const Eigen::MatrixXd x = gaussian_rows(500, 6, 11, 1e6, 3.0);
  const Eigen::RowVectorXd batch_mean = x.colwise().mean();
  const Eigen::MatrixXd cov1 = two_pass_covariance(x, 1.0);
  const Eigen::MatrixXd cov0 = two_pass_covariance(x, 0.0);

  const auto check_against_batch = [&](const stats::dispersion& acc) {
    CHECK(acc.count() == 500);
    CHECK(max_abs_difference(acc.mean(), batch_mean.transpose()) < 1e-8);
    // Entries are O(9); 1e-9 relative is far above rounding and far below any real error.
    CHECK(max_abs_difference(acc.covariance(1), cov1) < 1e-8);
    CHECK(max_abs_difference(acc.covariance(0), cov0) < 1e-8);
    CHECK(acc.total_variance(1) == Approx(cov1.trace()).epsilon(1e-10));
    const Eigen::MatrixXd cov = acc.covariance(1);
    CHECK(max_abs_difference(cov, cov.transpose()) == 0.0);  // exactly symmetric
  };

  SECTION("one vector at a time") {
    stats::dispersion acc(6);
    for (Eigen::Index i = 0; i < x.rows(); ++i) acc.add(x.row(i).transpose());
    check_against_batch(acc);
  }
  SECTION("one batch") {
    stats::dispersion acc(6);
    acc.add_batch(x);
    check_against_batch(acc);
  }
  SECTION("uneven batches, single vectors and merges") {
    for (Eigen::Index split : {Eigen::Index{0}, Eigen::Index{1}, Eigen::Index{77},
                               Eigen::Index{499}, Eigen::Index{500}}) {
      INFO("split at " << split);
      stats::dispersion left(6);
      stats::dispersion right(6);
      left.add_batch(x.topRows(split));
      for (Eigen::Index i = split; i < x.rows(); ++i) right.add(x.row(i).transpose());
      left.merge(right);
      check_against_batch(left);
    }
  }
  SECTION("merging with itself describes the data twice") {
    stats::dispersion acc(6);
    acc.add_batch(x);
    acc.merge(acc);
    Eigen::MatrixXd twice(1000, 6);
    twice << x, x;
    CHECK(acc.count() == 1000);
    CHECK(max_abs_difference(acc.covariance(0), two_pass_covariance(twice, 0.0)) < 1e-8);
  }
}

TEST_CASE("dispersion total variance equals the sum of per-dimension welford variances",
          "[stats][dispersion]") {
  const Eigen::MatrixXd x = gaussian_rows(300, 5, 23, -2.0, 0.5);
  std::vector<stats::welford> per_dimension(5);
  stats::dispersion acc(5);
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    acc.add(x.row(i).transpose());
    for (Eigen::Index j = 0; j < 5; ++j) per_dimension[static_cast<std::size_t>(j)].add(x(i, j));
  }
  double population = 0.0;
  double sample = 0.0;
  for (const stats::welford& w : per_dimension) {
    population += w.population_variance();
    sample += w.sample_variance();
  }
  CHECK(acc.total_variance(0) == Approx(population).epsilon(1e-12));
  CHECK(acc.total_variance(1) == Approx(sample).epsilon(1e-12));
  CHECK(acc.total_variance(1) == Approx(acc.covariance(1).trace()).epsilon(1e-14));
}

TEST_CASE("dispersion is NaN when empty, ignores non-finite vectors and rejects misuse",
          "[stats][dispersion]") {
  stats::dispersion acc(3);
  CHECK(acc.empty());
  CHECK(acc.dimension() == 3);
  CHECK(acc.mean().array().isNaN().all());
  CHECK(acc.covariance(0).array().isNaN().all());
  CHECK(std::isnan(acc.total_variance(0)));
  CHECK(acc.scatter().isZero(0.0));

  acc.add(Eigen::Vector3d(1, 2, 3));
  CHECK(acc.total_variance(0) == 0.0);
  CHECK(std::isnan(acc.total_variance(1)));
  CHECK(acc.covariance(1).array().isNaN().all());

  acc.add(Eigen::Vector3d(nan_value, 0, 0));
  acc.add(Eigen::Vector3d(0, inf_value, 0));
  Eigen::MatrixXd batch(3, 3);
  batch << 3, 4, 5, -inf_value, 0, 0, 3, 4, 5;
  acc.add_batch(batch);
  CHECK(acc.count() == 3);
  CHECK(acc.ignored() == 3);
  // (1,2,3), (3,4,5), (3,4,5): mean (7/3, 10/3, 13/3); in each dimension
  // the deviations are −4/3, 2/3, 2/3, so Σ dev² = 24/9 = 8/3 and trace(S) = 8.
  CHECK(max_abs_difference(acc.mean(), Eigen::Vector3d(7.0 / 3, 10.0 / 3, 13.0 / 3)) < 1e-14);
  CHECK(acc.total_variance(0) == Approx(3.0 * (8.0 / 3.0) / 3.0).epsilon(1e-14));

  CHECK_THROWS_AS(acc.add(Eigen::Vector2d(1, 2)), std::invalid_argument);
  CHECK_THROWS_AS(acc.add_batch(Eigen::MatrixXd::Zero(2, 4)), std::invalid_argument);
  CHECK_THROWS_AS(acc.merge(stats::dispersion(2)), std::invalid_argument);
  CHECK_THROWS_AS(acc.total_variance(2), std::invalid_argument);
  CHECK_THROWS_AS(acc.covariance(-1), std::invalid_argument);
  CHECK_THROWS_AS(stats::dispersion(0), std::invalid_argument);

  acc.reset();
  CHECK(acc.empty());
  CHECK(acc.ignored() == 0);
  CHECK(std::isnan(acc.total_variance(0)));
}

// ---------------------------------------------------------------------------------------------
// Vendi score and effective rank

TEST_CASE("vendi score of identical vectors is 1", "[stats][dispersion][vendi]") {
  Eigen::MatrixXd x(50, 4);
  x.rowwise() = Eigen::RowVector4d(0.3, -1.2, 2.0, 0.7);
  CHECK(stats::vendi_score(x) == Approx(1.0).margin(1e-12));
  // The same direction at different lengths is the same point under the cosine kernel.
  for (Eigen::Index i = 0; i < x.rows(); ++i) x.row(i) *= static_cast<double>(i + 1);
  CHECK(stats::vendi_score(x) == Approx(1.0).margin(1e-12));
}

TEST_CASE("vendi score of k orthogonal directions repeated equally is k", "[stats][dispersion][vendi]") {
  const Eigen::Index d = 8;
  const Eigen::Index repeats = 5;
  for (Eigen::Index k = 1; k <= d; ++k) {
    INFO("k = " << k);
    Eigen::MatrixXd x(k * repeats, d);
    for (Eigen::Index i = 0; i < k * repeats; ++i) {
      // Direction i % k, at a length that varies (normalised away by the cosine kernel).
      x.row(i) = Eigen::RowVectorXd::Unit(d, i % k) * (1.0 + static_cast<double>(i));
    }
    CHECK(stats::vendi_score(x) == Approx(static_cast<double>(k)).epsilon(1e-12));
  }
  // Unequal repeats: weights 3/4 and 1/4 give exp(−¾ ln ¾ − ¼ ln ¼) ≈ 1.7548.
  Eigen::MatrixXd x(4, 3);
  x << 1, 0, 0, 2, 0, 0, 5, 0, 0, 0, 0, 1;
  CHECK(stats::vendi_score(x) ==
        Approx(std::exp(-0.75 * std::log(0.75) - 0.25 * std::log(0.25))).epsilon(1e-12));
}

TEST_CASE("vendi score of many isotropic gaussian vectors approaches the dimension",
          "[stats][dispersion][vendi]") {
  const Eigen::Index d = 8;
  const Eigen::Index n = 20000;
  const double vendi = stats::vendi_score(gaussian_rows(n, d, 5));
  // Row-normalised isotropic vectors are uniform on the sphere and XᵀX/n → I/d. Writing its
  // eigenvalues as (1 + ε_i)/d, vendi = d·(1 − Σε_i²/(2d) + O(ε³)); for uniform unit vectors
  // E Σε_i² = d²·E‖XᵀX/n − I/d‖²_F = d(d − 1)/n, so the expected shortfall is
  // d(d − 1)/(2n) = 0.0014 here. Σε² is roughly chi-square with d(d+1)/2 − 1 = 35 degrees of
  // freedom (relative sd 0.24), so [1/3, 3] × the expected shortfall is a band of about ±2.8
  // sd. It also shows vendi < d strictly and that the shortfall shrinks as d/n.
  const double expected_shortfall =
      static_cast<double>(d * (d - 1)) / (2.0 * static_cast<double>(n));
  const double shortfall = static_cast<double>(d) - vendi;
  INFO("vendi = " << vendi << ", expected shortfall " << expected_shortfall);
  CHECK(shortfall > expected_shortfall / 3.0);
  CHECK(shortfall < expected_shortfall * 3.0);
}

TEST_CASE("vendi score by the d x d route equals the n x n kernel eigenvalues",
          "[stats][dispersion][vendi]") {
  struct row {
    Eigen::Index n, d;
    unsigned seed;
  };
  // n > d (the usual case), n < d (K has rank n, XᵀX/n has d − n zero eigenvalues), n = d.
  for (const row& r : {row{12, 4, 1}, row{3, 7, 2}, row{5, 5, 3}, row{40, 10, 4}}) {
    INFO("n = " << r.n << ", d = " << r.d);
    const Eigen::MatrixXd x = gaussian_rows(r.n, r.d, r.seed, 0.5);
    CHECK(stats::vendi_score(x) == Approx(vendi_by_n_by_n_kernel(x)).margin(1e-9));
  }
}

TEST_CASE("vendi score skips unusable rows and is NaN when none is left", "[stats][dispersion][vendi]") {
  Eigen::MatrixXd x(4, 2);
  x << 1, 0, 0, 0, nan_value, 1, 0, 3;  // the zero row and the NaN row are skipped
  CHECK(stats::vendi_score(x) == Approx(2.0).epsilon(1e-12));
  CHECK(std::isnan(stats::vendi_score(Eigen::MatrixXd::Zero(3, 2))));
  CHECK(std::isnan(stats::vendi_score(Eigen::MatrixXd(0, 2))));
}

TEST_CASE("effective rank is the entropy of the normalised singular values",
          "[stats][dispersion][effective_rank]") {
  SECTION("hand-computed: singular values 3 and 1") {
    // Rows 3·e1 and 1·e2: σ = (3, 1), p = (3/4, 1/4), exp(−¾ ln ¾ − ¼ ln ¼) ≈ 1.7548. The
    // eigenvalue variant would use (9/10, 1/10) and give ≈ 1.384 instead.
    Eigen::MatrixXd x(2, 3);
    x << 3, 0, 0, 0, 1, 0;
    const double expected = std::exp(-0.75 * std::log(0.75) - 0.25 * std::log(0.25));
    // The zero third singular value comes out as sqrt(rounding) and adds ~1e-7 (header note).
    CHECK(stats::effective_rank(x) == Approx(expected).margin(1e-6));
    CHECK(stats::effective_rank(1e-3 * x) == Approx(expected).margin(1e-6));  // scale-free
  }
  SECTION("k equal orthogonal rows give k, identical rows give 1") {
    for (Eigen::Index k = 1; k <= 6; ++k) {
      INFO("k = " << k);
      const Eigen::MatrixXd x = 2.5 * Eigen::MatrixXd::Identity(k, 6);
      CHECK(stats::effective_rank(x) == Approx(static_cast<double>(k)).margin(1e-6));
    }
    Eigen::MatrixXd same(20, 4);
    same.rowwise() = Eigen::RowVector4d(1, -2, 0.5, 3);
    CHECK(stats::effective_rank(same) == Approx(1.0).margin(1e-6));
  }
  SECTION("equals the singular values from an SVD of the n x d matrix") {
    for (unsigned seed : {7u, 8u, 9u}) {
      INFO("seed " << seed);
      const Eigen::MatrixXd x = gaussian_rows(9, 5, seed, 1.0);
      const Eigen::JacobiSVD<Eigen::MatrixXd> svd(x);
      CHECK(stats::effective_rank(x) == Approx(exp_entropy(svd.singularValues())).margin(1e-9));
    }
  }
  SECTION("NaN when no usable row is left") {
    CHECK(std::isnan(stats::effective_rank(Eigen::MatrixXd::Zero(3, 2))));
    CHECK(std::isnan(stats::effective_rank(Eigen::MatrixXd::Constant(2, 2, nan_value))));
  }
}

// ---------------------------------------------------------------------------------------------
// dispersion ratio

TEST_CASE("dispersion ratio and its log against a baseline", "[stats][dispersion]") {
  CHECK(stats::dispersion_ratio(2.0, 4.0) == 0.5);
  CHECK(stats::log_dispersion_ratio(2.0, 4.0) == Approx(std::log(0.5)).epsilon(1e-15));
  CHECK(stats::dispersion_ratio(3.0, 3.0) == 1.0);
  CHECK(stats::log_dispersion_ratio(3.0, 3.0) == 0.0);
  // The log is taken term by term: exact for tiny totals, and finite where the ratio overflows.
  CHECK(stats::log_dispersion_ratio(1e-300, 2e-300) == Approx(std::log(0.5)).epsilon(1e-12));
  CHECK(stats::log_dispersion_ratio(1e300, 1e-300) ==
        Approx(600.0 * std::log(10.0)).epsilon(1e-12));
  // A complete collapse.
  CHECK(stats::dispersion_ratio(0.0, 4.0) == 0.0);
  CHECK(stats::log_dispersion_ratio(0.0, 4.0) == -inf_value);
  // Undefined: no baseline spread, negative or non-finite input.
  for (const auto& [current, baseline] : std::vector<std::pair<double, double>>{{1.0, 0.0},
                                                                                {1.0, -1.0},
                                                                                {-1.0, 1.0},
                                                                                {nan_value, 1.0},
                                                                                {1.0, nan_value},
                                                                                {inf_value, 1.0},
                                                                                {1.0, inf_value}}) {
    INFO("current " << current << ", baseline " << baseline);
    CHECK(std::isnan(stats::dispersion_ratio(current, baseline)));
    CHECK(std::isnan(stats::log_dispersion_ratio(current, baseline)));
  }

  // Scaling every embedding by 1/2 scales the total variance by 1/4.
  const Eigen::MatrixXd x = gaussian_rows(200, 4, 31);
  stats::dispersion baseline(4);
  stats::dispersion current(4);
  baseline.add_batch(x);
  current.add_batch(0.5 * x);
  CHECK(stats::dispersion_ratio(current.total_variance(1), baseline.total_variance(1)) ==
        Approx(0.25).epsilon(1e-13));
}
