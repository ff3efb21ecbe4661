#pragma once
// sparse_histogram: histograms over discrete keys (token ids, n-gram keys, categories), given as
// parallel key and count lists (loopwarden.v1.SparseHistogram), put on the union of their keys so
// that the divergences of divergence.hpp apply; and the Jensen–Shannon divergence of two such
// histograms in bits, a distance-like number in [0, 1].

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

#include <loopwarden/stats/divergence.hpp>

namespace loopwarden::sdk::stats {

// Two histograms over the same bins: p[i] and q[i] count keys[i] on each side (0 where a side
// has no such key). keys is sorted ascending.
struct aligned_histograms {
  std::vector<std::uint64_t> keys;
  std::vector<double> p;
  std::vector<double> q;
};

// Puts the sparse histograms (keys_p, counts_p) and (keys_q, counts_q) on the sorted union of
// their keys. A key listed twice on one side has its counts added. Counts may be any finite
// non-negative numbers (counts or probabilities).
// Errors: throws std::invalid_argument when a side's keys and counts differ in length, or a
// count is negative or not finite. O((n + m) log(n + m)) time, O(n + m) memory.
// Thread-safety: a pure function.
inline aligned_histograms align_sparse_histograms(std::span<const std::uint64_t> keys_p,
                                                  std::span<const double> counts_p,
                                                  std::span<const std::uint64_t> keys_q,
                                                  std::span<const double> counts_q) {
  if (keys_p.size() != counts_p.size() || keys_q.size() != counts_q.size()) {
    throw std::invalid_argument("align_sparse_histograms: keys and counts differ in length");
  }
  // (key, side, count) sorted by key, then folded into one bin per key.
  struct entry {
    std::uint64_t key;
    int side;
    double count;
  };
  std::vector<entry> entries;
  entries.reserve(keys_p.size() + keys_q.size());
  auto take = [&](std::span<const std::uint64_t> keys, std::span<const double> counts, int side) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (!(counts[i] >= 0.0 && std::isfinite(counts[i]))) {
        throw std::invalid_argument("align_sparse_histograms: counts must be finite and >= 0");
      }
      entries.push_back({keys[i], side, counts[i]});
    }
  };
  take(keys_p, counts_p, 0);
  take(keys_q, counts_q, 1);
  std::sort(entries.begin(), entries.end(),
            [](const entry& a, const entry& b) { return a.key < b.key; });
  aligned_histograms out;
  for (const entry& e : entries) {
    if (out.keys.empty() || out.keys.back() != e.key) {
      out.keys.push_back(e.key);
      out.p.push_back(0.0);
      out.q.push_back(0.0);
    }
    (e.side == 0 ? out.p : out.q).back() += e.count;
  }
  return out;
}

// The Jensen–Shannon divergence of two sparse histograms in bits: js_divergence (nats, in
// [0, ln 2]) of the aligned histograms, divided by ln 2, so that it lies in [0, 1]: 0 for the
// same distribution (whatever the totals), 1 for disjoint supports. Each side is normalised to
// sum 1 first; `alpha` is the additive smoothing of js_divergence over the union of the keys.
// NaN when a side has no mass (or both are empty). Its square root is a metric.
// Errors: as align_sparse_histograms, and alpha negative or not finite.
// O((n + m) log(n + m)). Thread-safety: a pure function.
inline double sparse_js_divergence_bits(std::span<const std::uint64_t> keys_p,
                                        std::span<const double> counts_p,
                                        std::span<const std::uint64_t> keys_q,
                                        std::span<const double> counts_q, double alpha = 0.0) {
  const aligned_histograms h = align_sparse_histograms(keys_p, counts_p, keys_q, counts_q);
  if (h.keys.empty()) return std::numeric_limits<double>::quiet_NaN();
  const double js =
      js_divergence(std::span<const double>(h.p), std::span<const double>(h.q), alpha);
  return std::clamp(js / std::numbers::ln2, 0.0, 1.0);
}

}  // namespace loopwarden::sdk::stats
