#pragma once
// set_overlap: how much two collections of 64-bit keys (token ids, n-gram keys) overlap, as the
// Jaccard index of their sets of distinct keys or the weighted Jaccard index of their multisets,
// and the matching distances (1 − index), on keys or on the n-grams of token sequences.
// Every function is pure (no state; safe from any thread).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <loopwarden/stats/diversity.hpp>

namespace loopwarden::sdk::stats {

// Sizes of the overlap of two key collections, from which both indices follow.
//   intersection, set_union: |A ∩ B| and |A ∪ B| over the distinct keys;
//   multiset_min, multiset_max: Σ_k min(a_k, b_k) and Σ_k max(a_k, b_k) over the counts a_k, b_k
//   of each key in the two collections (duplicates count).
struct key_overlap {
  std::uint64_t intersection = 0;
  std::uint64_t set_union = 0;
  std::uint64_t multiset_min = 0;
  std::uint64_t multiset_max = 0;
};

// Counts the overlap of `a` and `b` (any order, duplicates allowed). Sorts copies of both:
// O((n + m) log(n + m)) time, O(n + m) memory. Thread-safety: a pure function.
inline key_overlap count_key_overlap(std::span<const std::uint64_t> a,
                                     std::span<const std::uint64_t> b) {
  std::vector<std::uint64_t> x(a.begin(), a.end());
  std::vector<std::uint64_t> y(b.begin(), b.end());
  std::sort(x.begin(), x.end());
  std::sort(y.begin(), y.end());
  key_overlap o;
  std::size_t i = 0;
  std::size_t j = 0;
  // Walk both sorted lists one key at a time, taking the whole run of equal keys on each side.
  while (i < x.size() || j < y.size()) {
    std::uint64_t key = 0;
    if (j == y.size() || (i < x.size() && x[i] <= y[j])) {
      key = x[i];
    } else {
      key = y[j];
    }
    std::uint64_t ca = 0;
    std::uint64_t cb = 0;
    while (i < x.size() && x[i] == key) ++i, ++ca;
    while (j < y.size() && y[j] == key) ++j, ++cb;
    ++o.set_union;
    if (ca > 0 && cb > 0) ++o.intersection;
    o.multiset_min += std::min(ca, cb);
    o.multiset_max += std::max(ca, cb);
  }
  return o;
}

// The Jaccard index |A ∩ B| / |A ∪ B| of the sets of distinct keys of `a` and `b`, in [0, 1]:
// 1 for the same set of keys (whatever the repetitions), 0 for disjoint sets. NaN when both are
// empty (the index of two empty sets is undefined). Costs as count_key_overlap.
inline double jaccard_index(std::span<const std::uint64_t> a, std::span<const std::uint64_t> b) {
  const key_overlap o = count_key_overlap(a, b);
  if (o.set_union == 0) return std::numeric_limits<double>::quiet_NaN();
  return static_cast<double>(o.intersection) / static_cast<double>(o.set_union);
}

// The weighted (Ruzicka) Jaccard index Σ_k min(a_k, b_k) / Σ_k max(a_k, b_k) of the key counts
// of `a` and `b`, in [0, 1]: 1 only for the same multiset, 0 for disjoint keys; equal to
// jaccard_index when no key repeats. NaN when both are empty. Costs as count_key_overlap.
inline double weighted_jaccard_index(std::span<const std::uint64_t> a,
                                     std::span<const std::uint64_t> b) {
  const key_overlap o = count_key_overlap(a, b);
  if (o.multiset_max == 0) return std::numeric_limits<double>::quiet_NaN();
  return static_cast<double>(o.multiset_min) / static_cast<double>(o.multiset_max);
}

// jaccard_distance = 1 − jaccard_index and weighted_jaccard_distance = 1 −
// weighted_jaccard_index: distances in [0, 1] (metrics on sets and on multisets), 0 for the
// same keys, 1 for disjoint ones. NaN when both are empty.
inline double jaccard_distance(std::span<const std::uint64_t> a, std::span<const std::uint64_t> b) {
  return 1.0 - jaccard_index(a, b);
}
inline double weighted_jaccard_distance(std::span<const std::uint64_t> a,
                                        std::span<const std::uint64_t> b) {
  return 1.0 - weighted_jaccard_index(a, b);
}

// The Jaccard distance between the n-grams of two token sequences: the keys are
// ngram_keys(tokens, n) (diversity.hpp), compared as sets (`weighted` false) or as multisets
// (`weighted` true). n = 1 compares the token ids themselves (their keys are a bijection of the
// ids). A sequence shorter than n has no n-gram; NaN when neither has one.
// Errors: throws std::invalid_argument for n = 0. O((n_a + n_b)·n + sort) time.
inline double ngram_jaccard_distance(std::span<const std::uint64_t> a,
                                     std::span<const std::uint64_t> b, std::size_t n,
                                     bool weighted = false) {
  const std::vector<std::uint64_t> ka = ngram_keys(a, n);
  const std::vector<std::uint64_t> kb = ngram_keys(b, n);
  return weighted ? weighted_jaccard_distance(ka, kb) : jaccard_distance(ka, kb);
}

}  // namespace loopwarden::sdk::stats
