#pragma once
// diversity: distinct count, Shannon entropy and Simpson index of a multiset of keys, with
// exact add and remove of one item; n-gram keys from token sequences.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <unordered_map>
#include <vector>

namespace loopwarden::sdk::stats {

// The splitmix64 finaliser (Steele, Lea & Flood 2014): a bijection on 64-bit values that mixes
// every input bit into every output bit.
constexpr std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A 64-bit key for the n-gram `tokens` (n = tokens.size() token ids, order matters):
//   h_0 = mix64(n);  h_{i+1} = mix64(h_i XOR t_i);  key = h_n.
// The same ids give the same key on every platform. For fixed earlier tokens the key is a
// bijection of the last token, so unigrams (and n-grams differing only in their last token)
// never collide. Other distinct n-grams collide with probability about 2⁻⁶⁴ per pair: among
// M distinct n-grams the chance of any collision is about M²/2⁶⁵ (3·10⁻⁸ for a million), and a
// collision can only lower distinct() and the diversity indices. O(n), no allocation.
constexpr std::uint64_t hash_ngram(std::span<const std::uint64_t> tokens) {
  std::uint64_t h = mix64(static_cast<std::uint64_t>(tokens.size()));
  for (std::uint64_t t : tokens) h = mix64(h ^ t);
  return h;
}

// The keys (hash_ngram) of the tokens.size() − n + 1 overlapping n-grams of `tokens`, in order;
// empty when the sequence is shorter than n. Throws std::invalid_argument for n = 0.
// O(tokens.size() · n); allocates the result.
inline std::vector<std::uint64_t> ngram_keys(std::span<const std::uint64_t> tokens, std::size_t n) {
  if (n == 0) throw std::invalid_argument("ngram_keys: n must be >= 1");
  std::vector<std::uint64_t> keys;
  if (tokens.size() < n) return keys;
  keys.reserve(tokens.size() - n + 1);
  for (std::size_t i = 0; i + n <= tokens.size(); ++i) {
    keys.push_back(hash_ngram(tokens.subspan(i, n)));
  }
  return keys;
}

// Diversity of a multiset of 64-bit keys (token ids, or n-gram keys from ngram_keys) that grows
// by add() and shrinks by remove(), so it can follow a growing sample or a sliding window (add
// the key entering the window, remove the one leaving it). With c_k the count of key k,
// N = Σ c_k and p_k = c_k / N it keeps, exactly and per update:
//   the counts c_k, the count of counts (how many keys have count c), N, the distinct count,
//   Σ c_k² (an integer) and S = Σ c_k ln c_k (compensated sum),
// and from them
//   distinct_ratio() = distinct / N          (distinct-n when the keys are n-grams)
//   entropy()        = −Σ p ln p = ln N − S/N   Shannon entropy in nats, in [0, ln distinct]
//   simpson()        = Σ p² = Σ c² / N²       chance two draws with replacement are equal
//   gini_simpson()   = 1 − Σ p² = (N² − Σ c²) / N²
// Every ratio is NaN when N = 0.
// Complexity: add() and remove() are O(1) expected (one hash-map lookup; the count-of-counts
// table grows by amortised push_back); a new key allocates a hash-map node. Memory O(distinct +
// largest count). Reading a statistic is O(1).
// Numerical notes: Σ c² and N² are exact in 64 bits because add() refuses to let N reach 2³²
// (throws std::overflow_error), so gini_simpson() is one correctly rounded division. S is kept
// with Neumaier summation over exact-as-computed terms c·ln c, so after any history of adds and
// removes it matches a batch sum to a few ulps; entropy() = ln N − S/N then has absolute error
// about ε·ln N, i.e. a larger relative error only when the entropy is far below ln N.
// Thread-safety: not thread-safe; one owner updates and reads it.
class diversity_counter {
 public:
  diversity_counter() = default;

  // Adds one occurrence of `key`. Throws std::overflow_error (and changes nothing) if N would
  // reach 2³².
  void add(std::uint64_t key) {
    if (total_ >= max_total) throw std::overflow_error("diversity_counter: 2^32 items");
    std::uint64_t& c = counts_[key];
    move_count(c, c + 1);
    ++c;
    ++total_;
  }

  // Removes one occurrence of `key`; returns false (and changes nothing) if it has none.
  bool remove(std::uint64_t key) {
    const auto it = counts_.find(key);
    if (it == counts_.end()) return false;
    const std::uint64_t c = it->second;
    move_count(c, c - 1);
    if (c == 1) {
      counts_.erase(it);
    } else {
      it->second = c - 1;
    }
    --total_;
    return true;
  }

  // Empties the multiset.
  void reset() { *this = diversity_counter(); }

  // N, the number of items.
  std::uint64_t total() const { return total_; }
  bool empty() const { return total_ == 0; }
  // The number of distinct keys (with a count ≥ 1).
  std::uint64_t distinct() const { return static_cast<std::uint64_t>(counts_.size()); }
  // The count of `key` (0 if absent).
  std::uint64_t count(std::uint64_t key) const {
    const auto it = counts_.find(key);
    return it == counts_.end() ? 0 : it->second;
  }
  // How many keys occur exactly c times (c ≥ 1; 0 for c = 0). keys_with_count(1) is the number
  // of singletons (hapax legomena).
  std::uint64_t keys_with_count(std::uint64_t c) const {
    if (c == 0 || c >= count_of_counts_.size()) return 0;
    return count_of_counts_[static_cast<std::size_t>(c)];
  }
  // Σ c², exact.
  std::uint64_t sum_of_squared_counts() const { return sum_squares_; }
  // S = Σ c ln c.
  double sum_count_log_count() const { return c_log_c_ + c_log_c_compensation_; }

  // distinct / N; NaN when empty.
  double distinct_ratio() const {
    if (total_ == 0) return nan();
    return static_cast<double>(distinct()) / static_cast<double>(total_);
  }
  // Shannon entropy in nats; NaN when empty, 0 for one distinct key.
  double entropy() const {
    if (total_ == 0) return nan();
    if (counts_.size() == 1) return 0.0;
    const double n = static_cast<double>(total_);
    return std::max(0.0, std::log(n) - sum_count_log_count() / n);
  }
  // Simpson's index Σ p²; NaN when empty.
  double simpson() const {
    if (total_ == 0) return nan();
    return static_cast<double>(sum_squares_) / static_cast<double>(total_ * total_);
  }
  // Gini–Simpson index 1 − Σ p²; NaN when empty.
  double gini_simpson() const {
    if (total_ == 0) return nan();
    const std::uint64_t n2 = total_ * total_;
    return static_cast<double>(n2 - sum_squares_) / static_cast<double>(n2);
  }

 private:
  static constexpr std::uint64_t max_total = (std::uint64_t{1} << 32) - 1;

  static double nan() { return std::numeric_limits<double>::quiet_NaN(); }
  static double c_log_c(std::uint64_t c) {
    if (c <= 1) return 0.0;
    const double d = static_cast<double>(c);
    return d * std::log(d);
  }

  // Neumaier's compensated addition of x to S.
  void accumulate(double x) {
    const double t = c_log_c_ + x;
    if (std::abs(c_log_c_) >= std::abs(x)) {
      c_log_c_compensation_ += (c_log_c_ - t) + x;
    } else {
      c_log_c_compensation_ += (x - t) + c_log_c_;
    }
    c_log_c_ = t;
  }

  // Moves one key from count `from` to count `to` (= from ± 1) in every running sum.
  void move_count(std::uint64_t from, std::uint64_t to) {
    if (from > 0) --count_of_counts_[static_cast<std::size_t>(from)];
    if (to > 0) {
      if (to >= count_of_counts_.size()) {
        count_of_counts_.resize(static_cast<std::size_t>(to) + 1, 0);
      }
      ++count_of_counts_[static_cast<std::size_t>(to)];
    }
    sum_squares_ = sum_squares_ - from * from + to * to;
    accumulate(-c_log_c(from));
    accumulate(c_log_c(to));
  }

  std::unordered_map<std::uint64_t, std::uint64_t> counts_;
  std::vector<std::uint64_t> count_of_counts_;  // [c] = keys with count c; [0] unused
  std::uint64_t total_ = 0;
  std::uint64_t sum_squares_ = 0;
  double c_log_c_ = 0.0;
  double c_log_c_compensation_ = 0.0;
};

}  // namespace loopwarden::sdk::stats
