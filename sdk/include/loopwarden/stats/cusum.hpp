#pragma once
// cusum: the two-sided tabular CUSUM for a shift in the mean (Page 1954).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <loopwarden/stats/signal.hpp>
#include <stdexcept>

namespace loopwarden::sdk::stats {

// Parameters of a cusum. k and h are in units of sigma (the data are standardised first).
struct cusum_options {
  double target = 0.0;  // μ0, the in-control mean
  double sigma = 1.0;   // σ of one in-control observation, > 0
  double k = 0.5;       // reference value (allowance), ≥ 0; half the shift to detect, in σ
  double h = 4.0;       // decision interval, > 0, in σ
  // false: S⁺ and S⁻ carry on after a signal (and keep signalling while above h);
  // true: the update after a signal starts again from S⁺ = S⁻ = 0.
  bool reset_after_signal = false;
};

// The statistics of a cusum at one moment, to carry it across a restart (a monitor's
// snapshot): what cusum::state() returns and cusum::restore() takes back.
struct cusum_state {
  double upper = 0.0;  // S⁺
  double lower = 0.0;  // S⁻
  signal_side last = signal_side::none;
  std::uint64_t count = 0;
  std::uint64_t ignored = 0;
  std::uint64_t signals = 0;
};

// The two-sided tabular CUSUM (Page 1954; Montgomery, Introduction to Statistical Quality
// Control, 9.1). For each finite x, with z = (x − μ0) / σ:
//   S⁺_t = max(0, S⁺_{t−1} + z − k),   S⁻_t = max(0, S⁻_{t−1} − z − k),   S⁺_0 = S⁻_0 = 0
// update() returns upper when S⁺_t > h, lower when S⁻_t > h (strict), both when both are
// (possible only without reset_after_signal, after a large swing the other way).
// k = 0.5, h = 4 gives an in-control ARL of about 168 and detects a 1σ shift in about 8.4
// samples (Montgomery table 9.3; Lucas & Crosier 1982).
// With reset_after_signal the statistics at the signal stay readable until the next update,
// which then starts from zero (Montgomery's "restart the CUSUM at zero"). A NaN or infinite x is
// ignored (counted in ignored(); returns none; the statistics do not move).
// Errors: the constructor throws std::invalid_argument unless target is finite, sigma > 0,
// k ≥ 0 and h > 0 (all finite). O(1) time and no allocation per update.
// Thread-safety: not thread-safe; one owner updates and reads it.
class cusum {
 public:
  explicit cusum(const cusum_options& options) : options_(checked(options)) {}

  // Adds one observation and says whether S⁺ or S⁻ is now above h.
  signal_side update(double x) {
    if (!std::isfinite(x)) {
      ++ignored_;
      return signal_side::none;
    }
    if (options_.reset_after_signal && signalled(last_)) {
      upper_ = 0.0;
      lower_ = 0.0;
    }
    ++count_;
    const double z = (x - options_.target) / options_.sigma;
    upper_ = std::max(0.0, upper_ + z - options_.k);
    lower_ = std::max(0.0, lower_ - z - options_.k);
    last_ = make_signal_side(upper_ > options_.h, lower_ > options_.h);
    if (signalled(last_)) ++signals_;
    return last_;
  }

  // Back to S⁺ = S⁻ = 0 and zero counts.
  void reset() {
    upper_ = 0.0;
    lower_ = 0.0;
    last_ = signal_side::none;
    count_ = 0;
    ignored_ = 0;
    signals_ = 0;
  }

  // The statistics now; restore() of it on a cusum with the same options continues exactly
  // (bit for bit) as this one would.
  cusum_state state() const { return {upper_, lower_, last_, count_, ignored_, signals_}; }

  // Puts back statistics taken by state(). Throws std::invalid_argument, and changes nothing,
  // when upper or lower is negative or not finite.
  void restore(const cusum_state& s) {
    if (!(s.upper >= 0.0 && std::isfinite(s.upper) && s.lower >= 0.0 && std::isfinite(s.lower))) {
      throw std::invalid_argument("cusum: restored statistics must be finite and >= 0");
    }
    upper_ = s.upper;
    lower_ = s.lower;
    last_ = s.last;
    count_ = s.count;
    ignored_ = s.ignored;
    signals_ = s.signals;
  }

  // S⁺_t, the upper statistic (detects an increase), in σ units.
  double upper() const { return upper_; }
  // S⁻_t, the lower statistic (detects a decrease), in σ units.
  double lower() const { return lower_; }
  // What the most recent finite update returned (none before any).
  signal_side last_signal() const { return last_; }
  // Finite observations since construction or reset.
  std::uint64_t count() const { return count_; }
  // Non-finite observations refused since construction or reset.
  std::uint64_t ignored() const { return ignored_; }
  // Updates that signalled since construction or reset.
  std::uint64_t signals() const { return signals_; }
  const cusum_options& options() const { return options_; }

 private:
  static cusum_options checked(const cusum_options& o) {
    if (!std::isfinite(o.target)) throw std::invalid_argument("cusum: target must be finite");
    if (!(o.sigma > 0.0 && std::isfinite(o.sigma))) {
      throw std::invalid_argument("cusum: sigma must be finite and > 0");
    }
    if (!(o.k >= 0.0 && std::isfinite(o.k))) {
      throw std::invalid_argument("cusum: k must be finite and >= 0");
    }
    if (!(o.h > 0.0 && std::isfinite(o.h))) {
      throw std::invalid_argument("cusum: h must be finite and > 0");
    }
    return o;
  }

  cusum_options options_;
  double upper_ = 0.0;
  double lower_ = 0.0;
  signal_side last_ = signal_side::none;
  std::uint64_t count_ = 0;
  std::uint64_t ignored_ = 0;
  std::uint64_t signals_ = 0;
};

}  // namespace loopwarden::sdk::stats
