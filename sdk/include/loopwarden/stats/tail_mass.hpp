#pragma once
// tail_mass: baseline quantiles and the share of current samples beyond them.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <vector>

namespace loopwarden::sdk::stats {

// The q-quantile of an ascending, finite, non-empty sample by linear interpolation between order
// statistics (Hyndman & Fan 1996 type 7; the default of R's quantile() and NumPy's "linear"):
//   h = (n − 1)·q;  j = ⌊h⌋;  Q(q) = x_(j) + (h − j)·(x_(j+1) − x_(j))   (0-based, x_(n) = x_(n−1))
// so Q(0) is the minimum, Q(1) the maximum, and for {1,2,3,4,5} Q(0.05) = 1.2, Q(0.95) = 4.8.
// Errors: throws std::invalid_argument when `sorted` is empty or q is not in [0, 1]. The order
// and finiteness of `sorted` are the caller's promise (not checked). O(1), no allocation.
inline double quantile_sorted(std::span<const double> sorted, double q) {
  if (sorted.empty()) throw std::invalid_argument("quantile: empty sample");
  if (!(q >= 0.0 && q <= 1.0)) throw std::invalid_argument("quantile: q must be in [0, 1]");
  const double h = static_cast<double>(sorted.size() - 1) * q;
  const double floor_h = std::floor(h);
  const auto j = static_cast<std::size_t>(floor_h);
  if (j + 1 >= sorted.size()) return sorted[sorted.size() - 1];
  const double lo = sorted[j];
  const double hi = sorted[j + 1];
  return lo + (h - floor_h) * (hi - lo);
}

// The finite values of `sample`, sorted ascending (NaN and ±inf are dropped). O(n log n).
inline std::vector<double> sorted_finite(std::span<const double> sample) {
  std::vector<double> out;
  out.reserve(sample.size());
  for (double x : sample) {
    if (std::isfinite(x)) out.push_back(x);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Which baseline quantiles mark the tails of a tail_mass.
struct tail_mass_options {
  double low = 0.05;   // lower quantile, 0 ≤ low < high
  double high = 0.95;  // upper quantile, low < high ≤ 1
};

// The share of current samples in the baseline's tails. The constructor takes the low and high
// quantiles of the finite baseline values (quantile_sorted, type 7); add() then counts current
// samples strictly below the low threshold and strictly above the high one (a value equal to a
// threshold is inside). reset() starts the next generation and keeps the thresholds.
// Without drift share_outside() is near low + (1 − high) (0.10 by default); a collapse of the
// variance drives it towards 0 and a spread-out distribution above it. For a N(0,1) baseline and
// N(0, s²) current samples the expected share beyond ±z is 2·Φ(−z/s).
// Non-finite baseline values are dropped; non-finite current values are counted in ignored().
// Errors: the constructor throws std::invalid_argument without a finite baseline value or unless
// 0 ≤ low < high ≤ 1. Construction O(n log n) and one allocation (freed before it returns);
// add() O(1) without allocation. Shares are NaN before the first finite value of a generation.
// Thread-safety: not thread-safe; one owner updates and reads it.
class tail_mass {
 public:
  explicit tail_mass(std::span<const double> baseline, const tail_mass_options& options = {})
      : options_(checked(options)) {
    const std::vector<double> sorted = sorted_finite(baseline);
    if (sorted.empty()) throw std::invalid_argument("tail_mass: no finite baseline value");
    low_threshold_ = quantile_sorted(sorted, options_.low);
    high_threshold_ = quantile_sorted(sorted, options_.high);
    baseline_count_ = sorted.size();
  }

  // Counts one current sample; NaN and ±inf are counted in ignored() only.
  void add(double x) {
    if (!std::isfinite(x)) {
      ++ignored_;
      return;
    }
    ++count_;
    if (x < low_threshold_) ++below_;
    if (x > high_threshold_) ++above_;
  }

  // Zeroes the counts (a new generation); the thresholds stay.
  void reset() {
    count_ = 0;
    below_ = 0;
    above_ = 0;
    ignored_ = 0;
  }

  // The baseline's low and high quantiles.
  double low_threshold() const { return low_threshold_; }
  double high_threshold() const { return high_threshold_; }
  // Finite baseline values the thresholds came from.
  std::size_t baseline_count() const { return baseline_count_; }
  // Finite current samples, those < low_threshold(), and those > high_threshold().
  std::uint64_t count() const { return count_; }
  std::uint64_t below() const { return below_; }
  std::uint64_t above() const { return above_; }
  // Non-finite current samples refused since construction or reset.
  std::uint64_t ignored() const { return ignored_; }
  // below / count, above / count and (below + above) / count; NaN when count is 0.
  double share_below() const { return share(below_); }
  double share_above() const { return share(above_); }
  double share_outside() const { return share(below_ + above_); }
  // low + (1 − high): the share outside expected when nothing has changed.
  double expected_share_outside() const { return options_.low + (1.0 - options_.high); }
  const tail_mass_options& options() const { return options_; }

 private:
  static tail_mass_options checked(const tail_mass_options& o) {
    if (!(o.low >= 0.0 && o.low < o.high && o.high <= 1.0)) {
      throw std::invalid_argument("tail_mass: need 0 <= low < high <= 1");
    }
    return o;
  }

  double share(std::uint64_t k) const {
    if (count_ == 0) return std::numeric_limits<double>::quiet_NaN();
    return static_cast<double>(k) / static_cast<double>(count_);
  }

  tail_mass_options options_;
  double low_threshold_ = 0.0;
  double high_threshold_ = 0.0;
  std::size_t baseline_count_ = 0;
  std::uint64_t count_ = 0;
  std::uint64_t below_ = 0;
  std::uint64_t above_ = 0;
  std::uint64_t ignored_ = 0;
};

}  // namespace loopwarden::sdk::stats
