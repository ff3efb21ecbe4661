#pragma once
// page_hinkley: the Page-Hinkley test for a change in the mean of a stream (Page 1954; Hinkley
// 1971; as used for concept drift by Gama et al. 2013).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <loopwarden/stats/signal.hpp>
#include <stdexcept>

namespace loopwarden::sdk::stats {

// Parameters of a page_hinkley test, in the data's own units (the data are not standardised).
struct page_hinkley_options {
  // δ, magnitude tolerance, ≥ 0: deviations from the running mean smaller than δ are absorbed.
  double delta = 0.005;
  double threshold = 50.0;            // λ, detection threshold, > 0
  direction watch = direction::both;  // which changes signal
  // false: the test carries on after a signal (and keeps signalling while above λ);
  // true: the update after a signal starts again from an empty test (new running mean).
  bool reset_after_signal = false;
};

// The Page-Hinkley test. For each finite x, with t counting finite samples and x̄_t the running
// mean of x_1..x_t (x_t included):
//   increase: m_t = Σ_{i≤t} (x_i − x̄_i − δ),  M_t = min_{i≤t} m_i,  signal when m_t − M_t > λ
//   decrease: m'_t = Σ_{i≤t} (x_i − x̄_i + δ), M'_t = max_{i≤t} m'_i, signal when M'_t − m'_t > λ
// The differences are kept directly, as the equivalent CUSUM-like recursions (equal from t = 1
// on, because x_1 − x̄_1 = 0 makes the first step −δ ≤ 0)
//   upper_t = max(0, upper_{t−1} + (x_t − x̄_t) − δ)   (= m_t − M_t)
//   lower_t = max(0, lower_{t−1} − (x_t − x̄_t) − δ)   (= M'_t − m'_t)
// so nothing grows without bound on a long stream (m_t itself drifts by −δ per sample).
// After a step of size s > δ at a sample far from the start, upper grows by almost s − δ per
// sample, so the detection delay is about ⌈λ / (s − δ)⌉ samples; on a constant stream
// x_t − x̄_t = 0 and the test never signals. update() returns upper (an increase), lower (a
// decrease), both, or none; only the directions in `watch` signal, though both statistics are
// always kept. With reset_after_signal the state at the signal stays readable until the next
// update, which then starts from an empty test. A NaN or infinite x is ignored (counted in
// ignored(); returns none; nothing moves).
// Errors: the constructor throws std::invalid_argument unless δ ≥ 0 and λ > 0 (both finite).
// O(1) time and no allocation per update.
// Thread-safety: not thread-safe; one owner updates and reads it.
class page_hinkley {
 public:
  explicit page_hinkley(const page_hinkley_options& options) : options_(checked(options)) {}

  // Adds one observation and says whether the test now signals, and for which direction.
  signal_side update(double x) {
    if (!std::isfinite(x)) {
      ++ignored_;
      return signal_side::none;
    }
    if (options_.reset_after_signal && signalled(last_)) restart();
    ++count_;
    mean_ += (x - mean_) / static_cast<double>(count_);
    const double deviation = x - mean_;
    upper_ = std::max(0.0, upper_ + deviation - options_.delta);
    lower_ = std::max(0.0, lower_ - deviation - options_.delta);
    const bool up = options_.watch != direction::decrease && upper_ > options_.threshold;
    const bool down = options_.watch != direction::increase && lower_ > options_.threshold;
    last_ = make_signal_side(up, down);
    if (signalled(last_)) ++signals_;
    return last_;
  }

  // Back to an empty test; ignored() and signals() return to 0.
  void reset() {
    restart();
    ignored_ = 0;
    signals_ = 0;
  }

  // m_t − M_t, the evidence for an increase.
  double upper() const { return upper_; }
  // M'_t − m'_t, the evidence for a decrease.
  double lower() const { return lower_; }
  // x̄_t, the running mean since the start (or the last restart); NaN when empty.
  double mean() const { return count_ == 0 ? std::numeric_limits<double>::quiet_NaN() : mean_; }
  // What the most recent finite update returned (none before any).
  signal_side last_signal() const { return last_; }
  // Finite observations since construction, reset, or the restart after a signal.
  std::uint64_t count() const { return count_; }
  // Non-finite observations refused since construction or reset.
  std::uint64_t ignored() const { return ignored_; }
  // Updates that signalled since construction or reset.
  std::uint64_t signals() const { return signals_; }
  const page_hinkley_options& options() const { return options_; }

 private:
  static page_hinkley_options checked(const page_hinkley_options& o) {
    if (!(o.delta >= 0.0 && std::isfinite(o.delta))) {
      throw std::invalid_argument("page_hinkley: delta must be finite and >= 0");
    }
    if (!(o.threshold > 0.0 && std::isfinite(o.threshold))) {
      throw std::invalid_argument("page_hinkley: threshold (lambda) must be finite and > 0");
    }
    return o;
  }

  void restart() {
    count_ = 0;
    mean_ = 0.0;
    upper_ = 0.0;
    lower_ = 0.0;
    last_ = signal_side::none;
  }

  page_hinkley_options options_;
  std::uint64_t count_ = 0;
  double mean_ = 0.0;
  double upper_ = 0.0;
  double lower_ = 0.0;
  signal_side last_ = signal_side::none;
  std::uint64_t ignored_ = 0;
  std::uint64_t signals_ = 0;
};

}  // namespace loopwarden::sdk::stats
