// Oracle tests for loopwarden/stats/cosine.hpp: cosines of hand-picked vectors (orthogonal,
// parallel, opposite, 3-4-5), the two set distances on identical, orthogonal and mixed sets
// worked by hand, and the closed form of the mean pairwise distance against the plain n·m loop.

#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <limits>
#include <loopwarden/stats/cosine.hpp>
#include <random>
#include <span>
#include <stdexcept>
#include <vector>

namespace stats = loopwarden::sdk::stats;

namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

using rows = std::vector<double>;  // row-major, the dimension is passed beside it

}  // namespace

TEST_CASE("cosine similarity of hand-picked vectors", "[stats][cosine]") {
  struct row {
    std::vector<double> a, b;
    double expected;
  };
  const std::vector<row> table = {
      {{1, 0}, {0, 1}, 0.0},                   // orthogonal
      {{1, 2, 3}, {2, 4, 6}, 1.0},             // parallel, different lengths
      {{1, 0}, {-1, 0}, -1.0},                 // opposite
      {{1, 1}, {1, 0}, 1.0 / std::sqrt(2.0)},  // 45 degrees
      {{3, 4}, {4, 3}, 24.0 / 25.0},           // (12 + 12) / (5 · 5)
      {{1, -1, 0}, {0, 1, 1}, -0.5},           // −1 / (√2 · √2)
  };
  for (std::size_t i = 0; i < table.size(); ++i) {
    INFO("row " << i);
    CHECK(stats::cosine_similarity(table[i].a, table[i].b) ==
          Approx(table[i].expected).margin(1e-15));
  }
  const std::vector<float> fa = {3.0F, 4.0F};
  const std::vector<float> fb = {4.0F, 3.0F};
  CHECK(stats::cosine_similarity(fa, fb) == Approx(0.96).margin(1e-15));
  const rows zero = {0, 0};
  const rows one = {1, 0};
  const rows with_nan = {nan_value, 1};
  CHECK(std::isnan(stats::cosine_similarity(zero, one)));
  CHECK(std::isnan(stats::cosine_similarity(with_nan, one)));
  const rows three = {1, 2, 3};
  const rows empty;
  CHECK_THROWS_AS(stats::cosine_similarity(one, three), std::invalid_argument);
  CHECK_THROWS_AS(stats::cosine_similarity(empty, empty), std::invalid_argument);
}

TEST_CASE("mean cosine distance is 0 for identical sets and 1 for orthogonal ones",
          "[stats][cosine]") {
  const rows e1 = {1, 0, 0};
  const rows e2 = {0, 1, 0};
  const rows both = {1, 0, 0, 0, 1, 0};  // e1 and e2
  const rows spread = {2, 1, 0, 0.5, 3, 1, 1, 1, 1};
  CHECK(stats::mean_cosine_distance(spread, spread, 3) == Approx(0.0).margin(1e-15));
  CHECK(stats::mean_cosine_distance(e1, e2, 3) == Approx(1.0).margin(1e-15));
  CHECK(stats::mean_cosine_distance(e1, rows{-3, 0, 0}, 3) == Approx(2.0).margin(1e-15));
  // mean{e1, e2} = (½, ½, 0) against e1: cos = 1/√2.
  CHECK(stats::mean_cosine_distance(both, e1, 3) ==
        Approx(1.0 - 1.0 / std::sqrt(2.0)).margin(1e-15));
  // Only the direction of each mean matters.
  CHECK(stats::mean_cosine_distance(rows{5, 5, 0}, both, 3) == Approx(0.0).margin(1e-15));

  SECTION("rows with a non-finite element are skipped") {
    const rows with_bad = {1, 0, 0, nan_value, 1, 0};
    CHECK(stats::mean_cosine_distance(with_bad, e2, 3) == Approx(1.0).margin(1e-15));
    CHECK(std::isnan(stats::mean_cosine_distance(rows{nan_value, 0, 0}, e2, 3)));
    CHECK(std::isnan(stats::mean_cosine_distance(rows{}, e2, 3)));
    CHECK(std::isnan(stats::mean_cosine_distance(rows{1, 0, 0, -1, 0, 0}, e2, 3)));  // mean 0
  }
  SECTION("malformed shapes are refused") {
    CHECK_THROWS_AS(stats::mean_cosine_distance(rows{1, 2}, e1, 3), std::invalid_argument);
    CHECK_THROWS_AS(stats::mean_cosine_distance(e1, e1, 0), std::invalid_argument);
  }
  SECTION("float input gives the same numbers") {
    const std::vector<float> f_both = {1, 0, 0, 0, 1, 0};
    const std::vector<float> f_e1 = {1, 0, 0};
    CHECK(stats::mean_cosine_distance(f_both, f_e1, 3) ==
          Approx(1.0 - 1.0 / std::sqrt(2.0)).margin(1e-15));
  }
}

TEST_CASE("mean pairwise cosine distance sees the spread inside identical sets",
          "[stats][cosine]") {
  const rows e1 = {1, 0};
  const rows e2 = {0, 1};
  const rows both = {1, 0, 0, 1};
  // One direction each: the same as the distance of the means.
  CHECK(stats::mean_pairwise_cosine_distance(e1, rows{7, 0}, 2) == Approx(0.0).margin(1e-15));
  CHECK(stats::mean_pairwise_cosine_distance(e1, e2, 2) == Approx(1.0).margin(1e-15));
  CHECK(stats::mean_pairwise_cosine_distance(e1, rows{-1, 0}, 2) == Approx(2.0).margin(1e-15));
  // {e1, e2} against itself: the four cosines are 1, 0, 0, 1, their mean ½, the distance ½,
  // where the means coincide (distance 0).
  CHECK(stats::mean_pairwise_cosine_distance(both, both, 2) == Approx(0.5).margin(1e-15));
  CHECK(stats::mean_cosine_distance(both, both, 2) == Approx(0.0).margin(1e-15));
  // Each row's length does not matter, only its direction.
  CHECK(stats::mean_pairwise_cosine_distance(rows{10, 0, 0, 0.1}, both, 2) ==
        Approx(0.5).margin(1e-15));
  // A row of zero norm has no cosine and is skipped.
  CHECK(stats::mean_pairwise_cosine_distance(rows{1, 0, 0, 0}, e2, 2) == Approx(1.0).margin(1e-15));
  CHECK(std::isnan(stats::mean_pairwise_cosine_distance(rows{0, 0}, e2, 2)));
  CHECK_THROWS_AS(stats::mean_pairwise_cosine_distance(rows{1, 0, 0}, e2, 2),
                  std::invalid_argument);
}

TEST_CASE("mean pairwise cosine distance equals the plain average over all pairs",
          "[stats][cosine]") {
  std::mt19937_64 rng(4242);
  std::normal_distribution<double> normal(0.3, 1.0);
  for (const std::size_t dim : {1UL, 3UL, 16UL}) {
    for (const std::size_t n : {1UL, 5UL, 17UL}) {
      const std::size_t m = n + 2;
      rows a(n * dim);
      rows b(m * dim);
      for (double& x : a) x = normal(rng);
      for (double& x : b) x = normal(rng);
      double sum = 0.0;
      for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < m; ++j) {
          sum += stats::cosine_similarity(std::span<const double>(a).subspan(i * dim, dim),
                                          std::span<const double>(b).subspan(j * dim, dim));
        }
      }
      const double brute = 1.0 - sum / static_cast<double>(n * m);
      INFO("dim " << dim << ", n " << n << ", m " << m);
      CHECK(stats::mean_pairwise_cosine_distance(a, b, dim) == Approx(brute).margin(1e-12));
    }
  }
}
