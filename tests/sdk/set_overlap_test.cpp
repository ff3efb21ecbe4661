// Oracle tests for loopwarden/stats/set_overlap.hpp: Jaccard indices of small sets and
// multisets worked by hand (identical, disjoint, half-overlapping, repeated keys), n-gram
// overlaps of two short token sequences, and both indices against std::set / std::map counting
// on seeded random draws.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <loopwarden/stats/set_overlap.hpp>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

namespace stats = loopwarden::sdk::stats;

using keys = std::vector<std::uint64_t>;

TEST_CASE("jaccard indices of small key sets match the hand computation", "[stats][set_overlap]") {
  struct row {
    keys a, b;
    double set_index, weighted_index;
  };
  const std::vector<row> table = {
      {{1, 2, 3}, {3, 2, 1}, 1.0, 1.0},              // identical sets, any order
      {{1, 2, 3}, {4, 5}, 0.0, 0.0},                 // disjoint
      {{1, 2, 3}, {2, 3, 4}, 0.5, 0.5},              // {2,3} of {1,2,3,4}
      {{1, 1, 2}, {1, 2}, 1.0, 2.0 / 3.0},           // same set; multisets min 1+1, max 2+1
      {{7, 7, 7}, {7}, 1.0, 1.0 / 3.0},              // min 1, max 3
      {{1, 2}, {}, 0.0, 0.0},                        // one side empty
      {{5, 5, 6, 6}, {5, 6, 6, 8}, 2.0 / 3.0, 0.6},  // sets {5,6}/{5,6,8}; min 1+2, max 2+2+1
  };
  for (std::size_t i = 0; i < table.size(); ++i) {
    INFO("row " << i);
    CHECK(stats::jaccard_index(table[i].a, table[i].b) == Approx(table[i].set_index).margin(1e-15));
    CHECK(stats::jaccard_distance(table[i].a, table[i].b) ==
          Approx(1.0 - table[i].set_index).margin(1e-15));
    CHECK(stats::weighted_jaccard_index(table[i].a, table[i].b) ==
          Approx(table[i].weighted_index).margin(1e-15));
    CHECK(stats::weighted_jaccard_distance(table[i].a, table[i].b) ==
          Approx(1.0 - table[i].weighted_index).margin(1e-15));
    // Both indices are symmetric.
    CHECK(stats::jaccard_index(table[i].b, table[i].a) ==
          stats::jaccard_index(table[i].a, table[i].b));
  }
  CHECK(std::isnan(stats::jaccard_index(keys{}, keys{})));
  CHECK(std::isnan(stats::weighted_jaccard_distance(keys{}, keys{})));
}

TEST_CASE("n-gram jaccard distance of two token sequences", "[stats][set_overlap]") {
  const keys a = {1, 2, 3, 4};
  const keys b = {1, 2, 3, 5};
  // Unigrams {1,2,3,4} and {1,2,3,5}: 3 shared of 5.
  CHECK(stats::ngram_jaccard_distance(a, b, 1) == Approx(1.0 - 3.0 / 5.0).margin(1e-15));
  // Bigrams {12, 23, 34} and {12, 23, 35}: 2 shared of 4.
  CHECK(stats::ngram_jaccard_distance(a, b, 2) == Approx(0.5).margin(1e-15));
  // Trigrams {123, 234} and {123, 235}: 1 shared of 3.
  CHECK(stats::ngram_jaccard_distance(a, b, 3) == Approx(2.0 / 3.0).margin(1e-15));
  // Order matters from n = 2: the reversed sequence shares every token and no bigram.
  const keys reversed = {4, 3, 2, 1};
  CHECK(stats::ngram_jaccard_distance(a, reversed, 1) == Approx(0.0).margin(1e-15));
  CHECK(stats::ngram_jaccard_distance(a, reversed, 2) == Approx(1.0).margin(1e-15));
  // Multisets of bigrams: {11, 11, 12} against {11, 12}: min 1+1, max 2+1.
  CHECK(stats::ngram_jaccard_distance(keys{1, 1, 1, 2}, keys{1, 1, 2}, 2, true) ==
        Approx(1.0 - 2.0 / 3.0).margin(1e-15));
  CHECK(std::isnan(stats::ngram_jaccard_distance(keys{1}, keys{2}, 2)));
  CHECK_THROWS_AS(stats::ngram_jaccard_distance(a, b, 0), std::invalid_argument);
}

TEST_CASE("jaccard indices equal std::set and std::map counting on random draws",
          "[stats][set_overlap]") {
  std::mt19937_64 rng(99);
  std::uniform_int_distribution<std::uint64_t> key(0, 40);
  std::uniform_int_distribution<std::size_t> size(1, 60);
  for (int trial = 0; trial < 200; ++trial) {
    keys a(size(rng));
    keys b(size(rng));
    for (auto& k : a) k = key(rng);
    for (auto& k : b) k = key(rng);
    std::map<std::uint64_t, std::uint64_t> ca;
    std::map<std::uint64_t, std::uint64_t> cb;
    for (auto k : a) ++ca[k];
    for (auto k : b) ++cb[k];
    std::set<std::uint64_t> all;
    for (const auto& [k, c] : ca) all.insert(k);
    for (const auto& [k, c] : cb) all.insert(k);
    double inter = 0.0;
    double lo = 0.0;
    double hi = 0.0;
    for (auto k : all) {
      const std::uint64_t x = ca.count(k) ? ca[k] : 0;
      const std::uint64_t y = cb.count(k) ? cb[k] : 0;
      if (x > 0 && y > 0) inter += 1.0;
      lo += static_cast<double>(std::min(x, y));
      hi += static_cast<double>(std::max(x, y));
    }
    INFO("trial " << trial);
    CHECK(stats::jaccard_index(a, b) ==
          Approx(inter / static_cast<double>(all.size())).margin(1e-15));
    CHECK(stats::weighted_jaccard_index(a, b) == Approx(lo / hi).margin(1e-15));
  }
}
