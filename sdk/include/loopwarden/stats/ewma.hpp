#pragma once
// ewma: exponentially weighted moving average and variance of a stream.
// ewma_chart: the EWMA control chart (Roberts 1959) with time-varying or asymptotic limits.

#include <cmath>
#include <cstdint>
#include <limits>
#include <loopwarden/stats/signal.hpp>
#include <stdexcept>

namespace loopwarden::sdk::stats {

// Exponentially weighted mean and variance with smoothing alpha in (0, 1] (larger = faster).
// Incremental form (West 1979; Finch 2009, "Incremental calculation of weighted mean and
// variance", section 9), for each finite x:
//   diff = x − mean;  mean += alpha · diff;  variance = (1 − alpha) · (variance + alpha · diff²)
// which is exactly the weighted mean and weighted (population) variance Σ w_i (x_i − mean)² with
// weights w_i = alpha · (1 − alpha)^(t − i) on the samples and the remaining (1 − alpha)^t on the
// starting point, so the weights sum to one.
// Start: ewma(alpha) takes the first sample as the starting point (mean = x_1, variance 0; the
// first sample then carries weight (1 − alpha)^(t − 1)); before it, mean, variance and stddev
// are NaN. ewma(alpha, initial_mean) starts from `initial_mean` with variance 0 as if that value
// had been seen, so the first sample is already smoothed. alpha = 1 gives mean = last sample,
// variance 0. Non-finite input (NaN, ±inf) is ignored and counted in ignored().
// Errors: the constructors throw std::invalid_argument if alpha is not in (0, 1] or
// initial_mean is not finite. O(1) time and no allocation per update.
// Thread-safety: not thread-safe; one owner updates and reads it.
class ewma {
 public:
  explicit ewma(double alpha) : alpha_(checked_alpha(alpha)) {}
  ewma(double alpha, double initial_mean)
      : alpha_(checked_alpha(alpha)),
        initial_(checked_initial(initial_mean)),
        has_initial_(true),
        mean_(initial_mean),
        started_(true) {}

  // Adds one sample; a NaN or infinite `x` is counted in ignored() and otherwise ignored.
  void add(double x) {
    if (!std::isfinite(x)) {
      ++ignored_;
      return;
    }
    ++count_;
    if (!started_) {
      started_ = true;
      mean_ = x;
      variance_ = 0.0;
      return;
    }
    const double diff = x - mean_;
    const double increment = alpha_ * diff;
    mean_ += increment;
    variance_ = (1.0 - alpha_) * (variance_ + diff * increment);
  }

  // Back to the constructed state (the initial mean, if one was given); ignored() returns to 0.
  void reset() {
    count_ = 0;
    ignored_ = 0;
    started_ = has_initial_;
    mean_ = has_initial_ ? initial_ : 0.0;
    variance_ = 0.0;
  }

  // The weighted mean; NaN before the first sample unless an initial mean was given.
  double mean() const { return started_ ? mean_ : nan(); }
  // The weighted population variance; NaN before the first sample unless an initial mean was
  // given, then 0 until the second value counts.
  double variance() const { return started_ ? variance_ : nan(); }
  double stddev() const { return std::sqrt(variance()); }
  // Finite samples added since construction or reset (an initial mean is not counted).
  std::uint64_t count() const { return count_; }
  // Non-finite samples refused since construction or reset.
  std::uint64_t ignored() const { return ignored_; }
  double alpha() const { return alpha_; }

 private:
  static constexpr double nan() { return std::numeric_limits<double>::quiet_NaN(); }
  static double checked_alpha(double alpha) {
    if (!(alpha > 0.0 && alpha <= 1.0)) {
      throw std::invalid_argument("ewma: alpha must be in (0, 1]");
    }
    return alpha;
  }
  static double checked_initial(double initial) {
    if (!std::isfinite(initial)) throw std::invalid_argument("ewma: initial mean must be finite");
    return initial;
  }

  double alpha_;
  double initial_ = 0.0;
  bool has_initial_ = false;
  double mean_ = 0.0;
  double variance_ = 0.0;
  bool started_ = false;
  std::uint64_t count_ = 0;
  std::uint64_t ignored_ = 0;
};

// How wide the EWMA chart's control limits are at time t.
enum class control_limits {
  time_varying,  // exact variance of z_t: narrow at the start, widening to the asymptote
  asymptotic,    // the t → ∞ width from the first sample on (as in Lucas & Saccucci's tables)
};

// Parameters of an ewma_chart. sigma is the standard deviation of one in-control observation;
// target and sigma are in the data's units, lambda and width are unitless.
struct ewma_chart_options {
  double target = 0.0;  // μ0, the in-control mean; also z_0
  double sigma = 1.0;   // σ of an individual observation, > 0
  double lambda = 0.2;  // λ, smoothing in (0, 1]; λ = 1 is a Shewhart chart
  double width = 3.0;   // L, half-width of the limits in units of sd(z_t), > 0
  control_limits limits = control_limits::time_varying;
};

// Everything an ewma_chart has learned, for monitor snapshots (see ewma_chart::state()).
struct ewma_chart_state {
  double statistic = 0.0;  // z_t
  double decay = 1.0;      // (1 − λ)^(2t), kept as the running product the chart uses
  std::uint64_t count = 0;
  std::uint64_t ignored = 0;
};

// The EWMA control chart (Roberts 1959; Montgomery, Introduction to Statistical Quality
// Control, 9.2). For each finite x, with t counting finite samples:
//   z_t = λ·x_t + (1 − λ)·z_{t−1},  z_0 = μ0
//   limits μ0 ± L·σ·sqrt(λ / (2 − λ) · (1 − (1 − λ)^(2t)))   (time_varying)
//   limits μ0 ± L·σ·sqrt(λ / (2 − λ))                         (asymptotic)
// update() returns upper when z_t > the upper limit, lower when z_t < the lower limit (strict),
// none otherwise. The chart does not reset itself after a signal (z keeps its value); call
// reset() to restart at z = μ0, t = 0. Before the first sample the time-varying limits are both
// μ0. A NaN or infinite x is ignored (counted in ignored(); t does not advance; returns none).
// Errors: the constructor throws std::invalid_argument unless target is finite, sigma > 0,
// λ in (0, 1] and L > 0 (all finite). O(1) time and no allocation per update.
// Thread-safety: not thread-safe; one owner updates and reads it.
class ewma_chart {
 public:
  explicit ewma_chart(const ewma_chart_options& options)
      : options_(checked(options)),
        z_(options.target),
        asymptotic_half_width_(options.width * options.sigma *
                               std::sqrt(options.lambda / (2.0 - options.lambda))),
        decay_step_((1.0 - options.lambda) * (1.0 - options.lambda)) {}

  // Adds one observation and says whether z_t is now outside the limits, and on which side.
  signal_side update(double x) {
    if (!std::isfinite(x)) {
      ++ignored_;
      return signal_side::none;
    }
    ++count_;
    z_ = options_.lambda * x + (1.0 - options_.lambda) * z_;
    decay_ *= decay_step_;
    const double half = half_width();
    return make_signal_side(z_ > options_.target + half, z_ < options_.target - half);
  }

  // Back to z = μ0, t = 0; ignored() returns to 0.
  void reset() {
    z_ = options_.target;
    decay_ = 1.0;
    count_ = 0;
    ignored_ = 0;
  }

  // The state, and its inverse: a chart with the same options given restore(state()) continues
  // exactly as this one would. restore() throws std::invalid_argument (and changes nothing) when
  // z is not finite or the decay is outside [0, 1].
  ewma_chart_state state() const { return {z_, decay_, count_, ignored_}; }
  void restore(const ewma_chart_state& s) {
    if (!std::isfinite(s.statistic) || !(s.decay >= 0.0 && s.decay <= 1.0)) {
      throw std::invalid_argument("ewma_chart: restore: bad statistic or decay");
    }
    z_ = s.statistic;
    decay_ = s.decay;
    count_ = s.count;
    ignored_ = s.ignored;
  }

  // z_t, the smoothed statistic (μ0 before the first sample).
  double statistic() const { return z_; }
  // The control limits at the current t.
  double upper_limit() const { return options_.target + half_width(); }
  double lower_limit() const { return options_.target - half_width(); }
  // t: finite observations since construction or reset.
  std::uint64_t count() const { return count_; }
  // Non-finite observations refused since construction or reset.
  std::uint64_t ignored() const { return ignored_; }
  const ewma_chart_options& options() const { return options_; }

 private:
  static ewma_chart_options checked(const ewma_chart_options& o) {
    if (!std::isfinite(o.target)) throw std::invalid_argument("ewma_chart: target must be finite");
    if (!(o.sigma > 0.0 && std::isfinite(o.sigma))) {
      throw std::invalid_argument("ewma_chart: sigma must be finite and > 0");
    }
    if (!(o.lambda > 0.0 && o.lambda <= 1.0)) {
      throw std::invalid_argument("ewma_chart: lambda must be in (0, 1]");
    }
    if (!(o.width > 0.0 && std::isfinite(o.width))) {
      throw std::invalid_argument("ewma_chart: width (L) must be finite and > 0");
    }
    return o;
  }

  double half_width() const {
    if (options_.limits == control_limits::asymptotic) return asymptotic_half_width_;
    // (1 − λ)^(2t) is kept as a running product (decay_), so no pow() per update; it underflows
    // harmlessly to 0.
    return asymptotic_half_width_ * std::sqrt(1.0 - decay_);
  }

  ewma_chart_options options_;
  double z_;
  double asymptotic_half_width_;  // L·σ·sqrt(λ / (2 − λ))
  double decay_step_;             // (1 − λ)²
  double decay_ = 1.0;            // (1 − λ)^(2t)
  std::uint64_t count_ = 0;
  std::uint64_t ignored_ = 0;
};

}  // namespace loopwarden::sdk::stats
