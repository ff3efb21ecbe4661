// Oracle tests for loopwarden/stats/window_histogram.hpp: a hand-worked window, and the counts of
// the last W slots recomputed from scratch after every push of a long seeded random stream.

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <loopwarden/stats/window_histogram.hpp>
#include <random>
#include <vector>

namespace stats = loopwarden::sdk::stats;

TEST_CASE("window histogram counts the last W slots of a hand-worked stream",
          "[stats][window_histogram]") {
  stats::window_histogram h(3, 4);
  h.push({0, 1});  // slots: {0,1}
  h.push({1});     // {0,1} {1}
  h.push({});      // {0,1} {1} {}
  CHECK(h.counts() == std::vector<std::uint64_t>{1, 2, 0, 0});
  CHECK(h.total() == 3);
  CHECK(h.full());
  h.push({3, 3});  // {1} {} {3,3}: the first slot left
  CHECK(h.counts() == std::vector<std::uint64_t>{0, 1, 0, 2});
  CHECK(h.total() == 3);
  h.push({2});  // {} {3,3} {2}
  CHECK(h.counts() == std::vector<std::uint64_t>{0, 0, 1, 2});
  CHECK(h.slots() == 3);
  CHECK(h.held_slots() == std::vector<std::vector<std::uint32_t>>{{}, {3, 3}, {2}});
  // An out-of-range category changes nothing.
  CHECK_THROWS_AS(h.push({1, 4}), std::out_of_range);
  CHECK(h.counts() == std::vector<std::uint64_t>{0, 0, 1, 2});
  h.reset();
  CHECK(h.total() == 0);
  CHECK(h.slots() == 0);
  CHECK_THROWS_AS(stats::window_histogram(0, 3), std::invalid_argument);
  CHECK_THROWS_AS(stats::window_histogram(3, 0), std::invalid_argument);
}

TEST_CASE("window histogram equals a from-scratch count of the last W slots after every push",
          "[stats][window_histogram]") {
  for (const std::size_t window : {1u, 7u, 25u}) {
    INFO("window " << window);
    std::mt19937_64 rng(99 + window);
    std::uniform_int_distribution<std::uint32_t> category(0, 5);
    std::uniform_int_distribution<int> size(0, 3);
    stats::window_histogram h(window, 6);
    std::vector<std::vector<std::uint32_t>> all;
    std::size_t mismatches = 0;
    for (int i = 0; i < 2000; ++i) {
      std::vector<std::uint32_t> slot;
      for (int k = size(rng); k > 0; --k) slot.push_back(category(rng));
      all.push_back(slot);
      h.push(slot);
      std::vector<std::uint64_t> want(6, 0);
      std::uint64_t total = 0;
      const std::size_t from = all.size() > window ? all.size() - window : 0;
      for (std::size_t j = from; j < all.size(); ++j) {
        for (std::uint32_t c : all[j]) {
          ++want[c];
          ++total;
        }
      }
      if (h.counts() != want || h.total() != total) ++mismatches;
    }
    CHECK(mismatches == 0);
  }
}
