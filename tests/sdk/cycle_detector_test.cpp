// Oracle tests for loopwarden/stats/cycle_detector.hpp: hand-worked sequences (the step at which
// each pattern is first reported, and the period), and a brute-force oracle — the definition
// checked directly on the whole prefix — on long seeded random sequences over small alphabets.

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <loopwarden/stats/cycle_detector.hpp>
#include <random>
#include <string>
#include <vector>

namespace stats = loopwarden::sdk::stats;

namespace {

// The definition, evaluated from scratch on x_1..x_n: the smallest p ≤ max_period whose last
// repeats·p tokens are p-periodic, and the length of the trailing p-periodic run.
stats::cycle_match brute_force(const std::vector<std::uint64_t>& x, std::size_t max_period,
                               std::size_t repeats) {
  const std::size_t n = x.size();
  for (std::size_t p = 1; p <= max_period; ++p) {
    if (n < p) break;
    std::size_t length = p;
    while (length < n && x[n - 1 - length] == x[n - 1 - length + p]) ++length;
    if (length >= repeats * p) return {p, length};
  }
  return {};
}

std::vector<std::uint64_t> tokens_of(const std::string& s) {
  return std::vector<std::uint64_t>(s.begin(), s.end());
}

}  // namespace

TEST_CASE("cycle detector reports hand-worked patterns at the first token that completes them",
          "[stats][cycle_detector]") {
  struct row {
    std::string sequence;
    std::size_t max_period;
    std::size_t repeats;
    std::size_t first_at;  // 1-based token at which a cycle is first reported; 0 = never
    std::size_t period;
  };
  const std::vector<row> rows = {
      {"ABABAB", 6, 3, 6, 2},         // the A-B-A-B-A-B over 6 steps
      {"ABABA", 6, 3, 0, 0},          // one short
      {"CABABAB", 6, 3, 7, 2},        // a prefix does not matter
      {"ABCABCABC", 6, 3, 9, 3},      // period 3 needs 9 tokens
      {"ABCABCABC", 2, 3, 0, 0},      // ... and is not looked for with max_period 2
      {"AAA", 6, 3, 3, 1},            // an exact repeat is period 1
      {"AAAAAA", 6, 3, 3, 1},         // never reported as period 2 or 3
      {"ABAB", 6, 2, 4, 2},           // two copies suffice with repeats 2
      {"ABACABAC", 6, 2, 8, 4},       // period 4, two copies
      {"ABCDABCDABCD", 4, 3, 12, 4},  // period 4, three copies
      {"ABABACABAB", 6, 3, 0, 0},     // the pattern broke at C and did not recover
      {"AABAABAAB", 6, 3, 9, 3},      // never three A's in a row: period 3 at token 9
  };
  for (const auto& r : rows) {
    INFO(r.sequence << " max_period " << r.max_period << " repeats " << r.repeats);
    stats::cycle_detector d({.max_period = r.max_period, .repeats = r.repeats});
    std::size_t first = 0;
    std::size_t period = 0;
    std::size_t i = 0;
    for (std::uint64_t t : tokens_of(r.sequence)) {
      ++i;
      const auto m = d.update(t);
      if (m && first == 0) {
        first = i;
        period = m.period;
      }
    }
    CHECK(first == r.first_at);
    CHECK(period == r.period);
  }
}

TEST_CASE("cycle detector reports the length of the trailing periodic run and keeps the block",
          "[stats][cycle_detector]") {
  stats::cycle_detector d({.max_period = 4, .repeats = 3});
  for (std::uint64_t t : tokens_of("XABABABAB")) (void)d.update(t);
  // X A B A B A B A B: the last 8 tokens are 2-periodic (X breaks it).
  CHECK(d.last().period == 2);
  CHECK(d.last().length == 8);
  CHECK(d.run_length(2) == 8);
  CHECK(d.run_length(1) == 1);
  CHECK(d.run_length(4) == 8);  // a 2-periodic run is 4-periodic too
  CHECK(d.recent(0) == 'B');
  CHECK(d.recent(1) == 'A');
  CHECK(d.kept_tokens() == tokens_of("ABAB"));
  CHECK_THROWS_AS(d.recent(4), std::out_of_range);
  d.reset();
  CHECK(d.count() == 0);
  CHECK_FALSE(d.update('A'));
}

TEST_CASE("cycle detector agrees with the brute-force definition on random sequences",
          "[stats][cycle_detector]") {
  struct row {
    std::size_t alphabet;
    std::size_t max_period;
    std::size_t repeats;
  };
  const std::vector<row> rows = {{2, 6, 3}, {3, 5, 3}, {2, 8, 2}, {4, 4, 2}, {1, 3, 3}};
  for (const auto& r : rows) {
    INFO("alphabet " << r.alphabet << " max_period " << r.max_period << " repeats " << r.repeats);
    std::mt19937_64 rng(1234 + r.alphabet * 10 + r.max_period);
    std::uniform_int_distribution<std::uint64_t> pick(0, r.alphabet - 1);
    stats::cycle_detector d({.max_period = r.max_period, .repeats = r.repeats});
    std::vector<std::uint64_t> x;
    std::size_t matches = 0;
    std::size_t mismatches = 0;
    for (int i = 0; i < 3000; ++i) {
      // Mostly random, with stretches of a repeated block so that long periods occur too.
      if (i % 200 == 100) {
        const std::size_t p = 1 + static_cast<std::size_t>(i / 200) % r.max_period;
        std::vector<std::uint64_t> block;
        for (std::size_t j = 0; j < p; ++j) block.push_back(pick(rng));
        for (std::size_t k = 0; k < p * (r.repeats + 1); ++k) {
          x.push_back(block[k % p]);
          const auto got = d.update(x.back());
          const auto want = brute_force(x, r.max_period, r.repeats);
          if (got.period != want.period || got.length != want.length) ++mismatches;
          if (want) ++matches;
        }
        continue;
      }
      x.push_back(pick(rng));
      const auto got = d.update(x.back());
      const auto want = brute_force(x, r.max_period, r.repeats);
      if (got.period != want.period || got.length != want.length) ++mismatches;
      if (want) ++matches;
    }
    CAPTURE(matches);
    CHECK(mismatches == 0);
    CHECK(matches > 0);  // the oracle saw cycles, so agreement means something
  }
}

TEST_CASE("cycle detector restores its state and continues exactly", "[stats][cycle_detector]") {
  stats::cycle_detector a({.max_period = 5, .repeats = 3});
  const auto seq = tokens_of("QWABCABCABXYXYXYXZ");
  for (std::size_t i = 0; i < 8; ++i) (void)a.update(seq[i]);
  stats::cycle_detector b({.max_period = 5, .repeats = 3});
  b.restore(a.count(), a.kept_tokens(), a.run_lengths());
  for (std::size_t i = 8; i < seq.size(); ++i) {
    INFO("token " << i);
    const auto ma = a.update(seq[i]);
    const auto mb = b.update(seq[i]);
    CHECK(ma.period == mb.period);
    CHECK(ma.length == mb.length);
  }
  stats::cycle_detector c({.max_period = 5, .repeats = 3});
  CHECK_THROWS_AS(c.restore(3, {1, 2}, a.run_lengths()), std::invalid_argument);
  CHECK_THROWS_AS(stats::cycle_detector({.max_period = 0, .repeats = 3}), std::invalid_argument);
  CHECK_THROWS_AS(stats::cycle_detector({.max_period = 3, .repeats = 1}), std::invalid_argument);
}
