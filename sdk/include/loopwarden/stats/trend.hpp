#pragma once
// trend: least-squares line through a per-generation series over a sliding window, and the
// projected number of generations until a log-ratio series reaches a floor.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

namespace loopwarden::sdk::stats {

// An ordinary least-squares fit y ≈ intercept + slope · x over `count` points. With
// x̄, ȳ the means, Sxx = Σ (x − x̄)², Sxy = Σ (x − x̄)(y − ȳ), SSE = Σ residual² and
// s² = SSE / (count − 2):
//   slope = Sxy / Sxx,   intercept = ȳ − slope · x̄,
//   slope_standard_error = sqrt(s² / Sxx),
//   intercept_standard_error = sqrt(s² · (1 / count + x̄² / Sxx)).
// slope and intercept are NaN for fewer than two points or when every x is equal (Sxx = 0);
// the standard errors are NaN for fewer than three points as well.
struct line_fit {
  double slope = std::numeric_limits<double>::quiet_NaN();
  double intercept = std::numeric_limits<double>::quiet_NaN();
  double slope_standard_error = std::numeric_limits<double>::quiet_NaN();
  double intercept_standard_error = std::numeric_limits<double>::quiet_NaN();
  std::size_t count = 0;
};

// Everything a trend holds, for monitor snapshots (see trend::state()): the ring buffer as
// stored (so a restored trend sums in the same order and fits bit for bit the same line).
struct trend_state {
  std::vector<double> xs;  // window() slots
  std::vector<double> ys;  // window() slots
  std::size_t size = 0;    // points held
  std::size_t next = 0;    // slot the next point goes to
  std::uint64_t ignored = 0;
};

// The least-squares line through the last `window` finite points (x, y) added, typically
// x = generation and y = log_dispersion_ratio() of that generation: a negative slope is the
// per-generation rate at which the spread shrinks (slope ln r for a geometric decay r^g).
// fit() uses the two-pass centred sums above, so a large generation number (x ≈ 1e6) does not
// cancel the way Σx² − n·x̄² would. The x need not be increasing or distinct.
// A point with a NaN or infinite x or y is not added; it is counted in ignored().
// Complexity: add() is O(1) and does not allocate (a ring buffer sized at construction); fit()
// is O(window). Errors: the constructor throws std::invalid_argument when window < 2.
// Thread-safety: not thread-safe; one owner updates and reads it.
class trend {
 public:
  // Keeps the last `window` (≥ 2) points.
  explicit trend(std::size_t window) : xs_(checked(window)), ys_(window) {}

  // Adds (x, y), dropping the oldest point when the window is full.
  void add(double x, double y) {
    if (!std::isfinite(x) || !std::isfinite(y)) {
      ++ignored_;
      return;
    }
    xs_[next_] = x;
    ys_[next_] = y;
    next_ = (next_ + 1) % xs_.size();
    if (size_ < xs_.size()) ++size_;
  }

  // The least-squares line through the points in the window (see line_fit for NaN cases).
  line_fit fit() const {
    line_fit out;
    out.count = size_;
    if (size_ < 2) return out;
    const double n = static_cast<double>(size_);
    double x_mean = 0.0;
    double y_mean = 0.0;
    for (std::size_t i = 0; i < size_; ++i) {
      x_mean += xs_[i];
      y_mean += ys_[i];
    }
    x_mean /= n;
    y_mean /= n;
    double sxx = 0.0;
    double sxy = 0.0;
    for (std::size_t i = 0; i < size_; ++i) {
      sxx += (xs_[i] - x_mean) * (xs_[i] - x_mean);
      sxy += (xs_[i] - x_mean) * (ys_[i] - y_mean);
    }
    if (!(sxx > 0.0)) return out;
    out.slope = sxy / sxx;
    out.intercept = y_mean - out.slope * x_mean;
    if (size_ < 3) return out;
    double sse = 0.0;
    for (std::size_t i = 0; i < size_; ++i) {
      const double residual = ys_[i] - (y_mean + out.slope * (xs_[i] - x_mean));
      sse += residual * residual;
    }
    const double s2 = sse / (n - 2.0);
    out.slope_standard_error = std::sqrt(s2 / sxx);
    out.intercept_standard_error = std::sqrt(s2 * (1.0 / n + x_mean * x_mean / sxx));
    return out;
  }

  // Forgets every point and ignored(); the window size stays.
  void reset() {
    size_ = 0;
    next_ = 0;
    ignored_ = 0;
  }

  // The state, and its inverse: restore(state()) on a trend of the same window continues exactly
  // as this one would. restore() throws std::invalid_argument (and changes nothing) when the
  // slots do not match window(), size or next are out of range, or a held point is not finite.
  trend_state state() const { return {xs_, ys_, size_, next_, ignored_}; }
  void restore(const trend_state& s) {
    if (s.xs.size() != xs_.size() || s.ys.size() != ys_.size() || s.size > xs_.size() ||
        s.next >= xs_.size() || (s.size < xs_.size() && s.next != s.size)) {
      throw std::invalid_argument("trend: restore: state does not fit the window");
    }
    for (std::size_t i = 0; i < s.size; ++i) {
      if (!std::isfinite(s.xs[i]) || !std::isfinite(s.ys[i])) {
        throw std::invalid_argument("trend: restore: non-finite point");
      }
    }
    xs_ = s.xs;
    ys_ = s.ys;
    size_ = s.size;
    next_ = s.next;
    ignored_ = s.ignored;
  }

  // Points currently in the window (≤ window()).
  std::size_t size() const { return size_; }
  std::size_t window() const { return xs_.size(); }
  // Points refused by add() since construction or reset.
  std::uint64_t ignored() const { return ignored_; }

 private:
  static std::size_t checked(std::size_t window) {
    if (window < 2) throw std::invalid_argument("trend: window must be >= 2");
    return window;
  }

  std::vector<double> xs_;
  std::vector<double> ys_;
  std::size_t size_ = 0;
  std::size_t next_ = 0;  // slot the next point goes to
  std::uint64_t ignored_ = 0;
};

// Generations until a log-ratio series that falls linearly by `slope` per generation, now at
// `current_log_ratio` (ln of current / baseline), reaches ln(floor_ratio):
//   (ln floor_ratio − current_log_ratio) / slope
// as a double (fractional generations). +inf when slope ≥ 0 (it never gets there), 0 when the
// series is already at or below the floor, NaN when current_log_ratio or slope is NaN. Example:
// a spread shrinking by 0.9 a generation (slope ln 0.9), now at ratio 1, reaches a floor of 0.5
// after ln 0.5 / ln 0.9 ≈ 6.58 generations.
// Errors: throws std::invalid_argument unless floor_ratio is finite and > 0.
// Thread-safety: a pure function.
inline double generations_until_floor(double current_log_ratio, double slope, double floor_ratio) {
  if (!(floor_ratio > 0.0 && std::isfinite(floor_ratio))) {
    throw std::invalid_argument("generations_until_floor: floor_ratio must be finite and > 0");
  }
  if (std::isnan(current_log_ratio) || std::isnan(slope)) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  const double log_floor = std::log(floor_ratio);
  if (current_log_ratio <= log_floor) return 0.0;
  if (slope >= 0.0) return std::numeric_limits<double>::infinity();
  return (log_floor - current_log_ratio) / slope;
}

}  // namespace loopwarden::sdk::stats
