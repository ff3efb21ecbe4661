// Oracle tests for loopwarden/stats/sparse_histogram.hpp: aligning two sparse histograms worked
// by hand, and the Jensen–Shannon divergence in bits: 0 for the same distribution, exactly 1 for
// disjoint supports (ln 2 nats), ¾·log2(4/3) for (½, ½) against (1, 0), and the dense
// js_divergence divided by ln 2 on random histograms.

#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <loopwarden/stats/divergence.hpp>
#include <loopwarden/stats/sparse_histogram.hpp>
#include <numbers>
#include <random>
#include <stdexcept>
#include <vector>

namespace stats = loopwarden::sdk::stats;

using keys = std::vector<std::uint64_t>;
using counts = std::vector<double>;

TEST_CASE("sparse histograms are put on the sorted union of their keys",
          "[stats][sparse_histogram]") {
  const auto h =
      stats::align_sparse_histograms(keys{3, 1, 3}, counts{2, 5, 1}, keys{1, 7}, counts{1, 1});
  CHECK(h.keys == keys{1, 3, 7});
  CHECK(h.p == counts{5, 3, 0});  // key 3 listed twice: 2 + 1
  CHECK(h.q == counts{1, 0, 1});
  CHECK_THROWS_AS(stats::align_sparse_histograms(keys{1, 2}, counts{1}, keys{}, counts{}),
                  std::invalid_argument);
  CHECK_THROWS_AS(stats::align_sparse_histograms(keys{1}, counts{-1}, keys{}, counts{}),
                  std::invalid_argument);
  CHECK_THROWS_AS(stats::align_sparse_histograms(
                      keys{1}, counts{std::numeric_limits<double>::quiet_NaN()}, keys{}, counts{}),
                  std::invalid_argument);
}

TEST_CASE("jensen-shannon divergence in bits is 0 for the same histogram and 1 for disjoint ones",
          "[stats][sparse_histogram]") {
  // JS is ln 2 nats at most, reached by disjoint supports; in bits (÷ ln 2) the bound is 1.
  CHECK(stats::sparse_js_divergence_bits(keys{1, 2, 3}, counts{1, 2, 3}, keys{3, 1, 2},
                                         counts{30, 10, 20}) == Approx(0.0).margin(1e-15));
  CHECK(stats::sparse_js_divergence_bits(keys{1, 2}, counts{4, 4}, keys{3, 4}, counts{1, 9}) ==
        1.0);
  const std::vector<double> p = {1, 0};
  const std::vector<double> q = {0, 1};
  CHECK(stats::js_divergence(p, q) == Approx(std::numbers::ln2).margin(1e-15));
  // (½, ½) against (1, 0): m = (¾, ¼); KL(p‖m) = ½ ln(4/3), KL(q‖m) = ln(4/3);
  // JS = ¾ ln(4/3) nats = ¾ log2(4/3) = 0.311278… bits.
  CHECK(stats::sparse_js_divergence_bits(keys{1, 2}, counts{1, 1}, keys{1}, counts{5}) ==
        Approx(0.75 * std::log2(4.0 / 3.0)).margin(1e-15));
  CHECK(std::isnan(stats::sparse_js_divergence_bits(keys{}, counts{}, keys{}, counts{})));
  CHECK(std::isnan(stats::sparse_js_divergence_bits(keys{1}, counts{0}, keys{1}, counts{2})));
}

TEST_CASE("sparse jensen-shannon in bits equals the dense divergence over ln 2",
          "[stats][sparse_histogram]") {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::uint64_t> key(0, 30);
  std::uniform_real_distribution<double> count(0.0, 5.0);
  for (int trial = 0; trial < 100; ++trial) {
    keys ka(12);
    keys kb(9);
    counts ca(ka.size());
    counts cb(kb.size());
    for (std::size_t i = 0; i < ka.size(); ++i) ka[i] = key(rng), ca[i] = count(rng);
    for (std::size_t i = 0; i < kb.size(); ++i) kb[i] = key(rng), cb[i] = count(rng);
    std::vector<double> p(31, 0.0);
    std::vector<double> q(31, 0.0);
    for (std::size_t i = 0; i < ka.size(); ++i) p[ka[i]] += ca[i];
    for (std::size_t i = 0; i < kb.size(); ++i) q[kb[i]] += cb[i];
    INFO("trial " << trial);
    const double bits = stats::sparse_js_divergence_bits(ka, ca, kb, cb);
    CHECK(bits == Approx(stats::js_divergence(p, q) / std::numbers::ln2).margin(1e-14));
    CHECK(bits >= 0.0);
    CHECK(bits <= 1.0);
  }
}
