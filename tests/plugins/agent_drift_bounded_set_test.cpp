// agent_drift's bounded_set (plugins/agent_drift/bounded_set.cpp, compiled into this test) against
// a plain model: a std::set plus a FIFO of insertion order. Keys are chosen to collide in the low
// bits, so probe runs are long and every deletion shifts keys back.

#include <catch2/catch.hpp>

#include <cstdint>
#include <deque>
#include <random>
#include <set>

#include "bounded_set.hpp"

namespace ad = loopwarden::agent_drift;

TEST_CASE("agent_drift bounded_set forgets the oldest key when full, like a set and a FIFO",
          "[plugins][agent_drift]") {
  for (const std::size_t capacity : {1u, 7u, 64u, 1000u}) {
    INFO("capacity " << capacity);
    std::mt19937_64 rng(capacity);
    std::uniform_int_distribution<std::uint64_t> pick(0, 3 * capacity);
    ad::bounded_set set(capacity);
    std::set<std::uint64_t> model;
    std::deque<std::uint64_t> order;
    std::size_t mismatches = 0;
    for (int i = 0; i < 20'000; ++i) {
      // Low 6 bits always 5: every key's home slot is the same in small tables.
      const std::uint64_t key = (pick(rng) << 6) | 5;
      const bool fresh = model.insert(key).second;
      if (fresh) {
        order.push_back(key);
        if (order.size() > capacity) {
          model.erase(order.front());
          order.pop_front();
        }
      }
      if (set.insert(key) != fresh) ++mismatches;
      if (set.size() != model.size()) ++mismatches;
      const std::uint64_t probe = (pick(rng) << 6) | 5;
      if (set.contains(probe) != (model.count(probe) == 1)) ++mismatches;
    }
    CHECK(mismatches == 0);
  }
  ad::bounded_set zero(4);
  CHECK(zero.insert(0));
  CHECK(zero.contains(0));
  CHECK_FALSE(zero.insert(0));
}
