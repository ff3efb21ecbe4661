// agent_drift's internal containers, compiled into this test: bounded_set against a plain model
// (a std::set plus a FIFO of insertion order, with keys that collide in the low bits so probe runs
// are long and every deletion shifts keys back); lru_map's eviction order; vote_tally's agreement
// on a hand-worked vote.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <deque>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "bounded_set.hpp"
#include "lru_map.hpp"
#include "vote_tally.hpp"

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

TEST_CASE("agent_drift lru_map evicts the least recently used entry", "[plugins][agent_drift]") {
  ad::lru_map<int> m(3);
  CHECK_FALSE(m.insert("a", 1).second);
  CHECK_FALSE(m.insert("b", 2).second);
  CHECK_FALSE(m.insert("c", 3).second);
  REQUIRE(m.find("a") != nullptr);  // a is now the most recent: b is the least
  CHECK(m.insert("d", 4).second);
  CHECK(m.find("b") == nullptr);
  std::vector<std::string> order;
  m.for_each_by_recency([&](const std::string& k, const int&) { order.push_back(k); });
  CHECK(order == std::vector<std::string>{"c", "a", "d"});
  m.erase("a");
  CHECK(m.size() == 2);
  CHECK_FALSE(m.insert("e", 5).second);  // room again: nothing evicted
}

TEST_CASE("agent_drift vote_tally gives each vote its agreement with the earlier votes of others",
          "[plugins][agent_drift]") {
  ad::vote_tally t(2);
  // Turn 1: A votes yes (no one before it), B yes (1 of 1 agree), C no (0 of 2), D yes (2 of 3).
  CHECK(std::isnan(t.cast("t1", "A", "yes")));
  CHECK(t.cast("t1", "B", "yes") == 1.0);
  CHECK(t.cast("t1", "C", "no") == 0.0);
  CHECK(t.cast("t1", "D", "yes") == Approx(2.0 / 3.0));
  // A second vote of A replaces its first and is compared with the others only: B, C, D.
  CHECK(t.cast("t1", "A", "no") == Approx(1.0 / 3.0));
  // The table keeps the last 2 turns: t1 is forgotten once t2 and t3 are in.
  CHECK(std::isnan(t.cast("t2", "A", "yes")));
  CHECK(std::isnan(t.cast("t3", "A", "yes")));
  CHECK(std::isnan(t.cast("t1", "B", "yes")));
}
