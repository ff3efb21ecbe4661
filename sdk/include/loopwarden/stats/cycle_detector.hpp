#pragma once
// cycle_detector: finds the shortest period with which the tail of a token sequence repeats
// (A-B-A-B-A-B has period 2 over 3 copies), in O(max_period) per token.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace loopwarden::sdk::stats {

// Parameters of a cycle_detector.
struct cycle_detector_options {
  std::size_t max_period = 6;  // longest period looked for, ≥ 1
  std::size_t repeats = 3;     // copies of the block the tail must hold, ≥ 2
};

// What update() found: the tail of the sequence is `copies` (possibly fractional: `length`
// elements) copies of its last `period` tokens. period = 0 means no cycle.
struct cycle_match {
  std::size_t period = 0;  // the shortest period p ≤ max_period whose tail holds `repeats` copies
  std::size_t length = 0;  // how many trailing tokens are p-periodic (≥ repeats · p)
  explicit operator bool() const { return period != 0; }
};

// Detects short cycles in a stream of tokens (hashes of actions, states, ...). Let x_1..x_n be
// the tokens so far. For a period p, the trailing p-periodic run is the largest L ≤ n such that
// x_i = x_{i−p} for every i in (n − L + p, n], i.e. the last L tokens repeat with period p
// (L ≥ p always holds once n ≥ p). After each token, update() returns the smallest p in
// [1, max_period] with L_p ≥ repeats · p — the last repeats · p tokens are `repeats` copies of
// one p-block — together with L_p, or period 0 when no p qualifies.
// The smallest qualifying p is primitive: if the p-block were itself k copies of a d-block
// (d = p / k), the same tail would be d-periodic over at least repeats · p ≥ repeats · d tokens,
// and d would have been returned. So A-A-A-A-A-A reports period 1, never 2 or 3, and a caller
// that only cares about alternations (p ≥ 2) skips period-1 matches.
// Complexity: O(max_period) time per update and O(max_period) memory (a ring of the last
// max_period tokens and one run length per period); no allocation after construction.
// Errors: the constructor throws std::invalid_argument unless max_period ≥ 1 and repeats ≥ 2.
// Thread-safety: not thread-safe; one owner updates and reads it.
class cycle_detector {
 public:
  explicit cycle_detector(const cycle_detector_options& options)
      : options_(checked(options)),
        ring_(options_.max_period, 0),
        runs_(options_.max_period + 1, 0) {}

  // Appends one token and reports the shortest period the tail now repeats with (see above).
  cycle_match update(std::uint64_t token) {
    const std::size_t max_p = options_.max_period;
    ++count_;
    for (std::size_t p = 1; p <= max_p; ++p) {
      if (count_ <= p) {
        runs_[p] = count_;  // the first p tokens are trivially p-periodic
      } else if (token_back(p) == token) {
        ++runs_[p];
      } else {
        runs_[p] = p;  // only the last p tokens (one block) are p-periodic now
      }
    }
    ring_[head_] = token;
    head_ = (head_ + 1) % max_p;
    cycle_match m;
    for (std::size_t p = 1; p <= max_p; ++p) {
      if (runs_[p] >= options_.repeats * p) {
        m.period = p;
        m.length = runs_[p];
        break;
      }
    }
    last_ = m;
    return m;
  }

  // Forgets the sequence: the next token starts a new one.
  void reset() {
    count_ = 0;
    head_ = 0;
    last_ = cycle_match{};
    std::fill(ring_.begin(), ring_.end(), 0);
    std::fill(runs_.begin(), runs_.end(), 0);
  }

  // The trailing p-periodic run L_p (see above), for 1 ≤ p ≤ max_period; 0 otherwise.
  std::size_t run_length(std::size_t p) const {
    return p >= 1 && p <= options_.max_period ? runs_[p] : 0;
  }
  // The token `back` positions before the newest (back = 0 is the newest), for
  // back < min(count(), max_period). Precondition checked: throws std::out_of_range otherwise.
  std::uint64_t recent(std::size_t back) const {
    if (back >= options_.max_period || back >= count_) {
      throw std::out_of_range("cycle_detector: recent() beyond the kept tokens");
    }
    return ring_[(head_ + 2 * options_.max_period - 1 - back) % options_.max_period];
  }
  // What the last update returned.
  cycle_match last() const { return last_; }
  // Tokens since construction or reset.
  std::uint64_t count() const { return count_; }
  const cycle_detector_options& options() const { return options_; }

  // State for a monitor's snapshot: the kept tokens (oldest first) and the run lengths, and a
  // restore from them. restore() throws std::invalid_argument when the sizes do not match the
  // options or a run length is impossible for `count`.
  std::vector<std::uint64_t> kept_tokens() const {
    std::vector<std::uint64_t> out;
    const std::size_t n = count_ < options_.max_period ? count_ : options_.max_period;
    for (std::size_t i = n; i-- > 0;) out.push_back(recent(i));
    return out;
  }
  const std::vector<std::size_t>& run_lengths() const { return runs_; }
  void restore(std::uint64_t count, const std::vector<std::uint64_t>& kept,
               const std::vector<std::size_t>& runs) {
    const std::size_t n = count < options_.max_period ? count : options_.max_period;
    if (kept.size() != n || runs.size() != runs_.size()) {
      throw std::invalid_argument("cycle_detector: restore sizes do not match the options");
    }
    for (std::size_t p = 1; p < runs.size(); ++p) {
      const bool bad = count < p ? runs[p] != count : (runs[p] < p || runs[p] > count);
      if (bad) {
        throw std::invalid_argument("cycle_detector: restore run length out of range");
      }
    }
    reset();
    for (std::uint64_t t : kept) {
      ring_[head_] = t;
      head_ = (head_ + 1) % options_.max_period;
    }
    count_ = count;
    runs_ = runs;
    runs_[0] = 0;
  }

 private:
  static cycle_detector_options checked(const cycle_detector_options& o) {
    if (o.max_period < 1) throw std::invalid_argument("cycle_detector: max_period must be >= 1");
    if (o.repeats < 2) throw std::invalid_argument("cycle_detector: repeats must be >= 2");
    return o;
  }

  // The token p positions before the one being added (x_{n−p} while adding x_n), 1 ≤ p ≤ max.
  std::uint64_t token_back(std::size_t p) const {
    return ring_[(head_ + options_.max_period - p) % options_.max_period];
  }

  cycle_detector_options options_;
  std::vector<std::uint64_t> ring_;  // the last max_period tokens; head_ is the next slot
  std::vector<std::size_t> runs_;    // runs_[p] = L_p; index 0 unused
  std::size_t head_ = 0;
  std::uint64_t count_ = 0;
  cycle_match last_;
};

}  // namespace loopwarden::sdk::stats
