#pragma once
// welford: running count, mean, variance, min and max of a stream, in one pass.

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>

namespace loopwarden::sdk::stats {

// Everything a welford holds, for monitor snapshots (see welford::state()).
struct welford_state {
  std::uint64_t count = 0;
  std::uint64_t ignored = 0;
  double mean = 0.0;
  double m2 = 0.0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
};

// Running moments of a stream by Welford's update (Welford 1962; Knuth TAOCP vol. 2, 4.2.2).
// For the n finite samples seen so far it holds the mean and M2 = Σ (x_i − mean)²:
//   delta = x − mean;  mean += delta / n;  M2 += delta · (x − mean_new)
// population variance = M2 / n (ddof 0), sample variance = M2 / (n − 1) (ddof 1). Every term
// added to M2 is ≥ 0, so the variance is never negative, and it does not cancel catastrophically
// when the data sit on a large offset (1e9 + noise) the way Σx² − n·mean² does.
// merge() combines two summaries exactly as if one had seen both streams (Chan, Golub & LeVeque
// 1979): with d = mean_b − mean_a, n = n_a + n_b,
//   mean = mean_a + d · n_b / n;  M2 = M2_a + M2_b + d² · n_a · n_b / n.
// Edge cases: with n = 0 mean, both variances, both deviations, min and max are NaN; with n = 1
// the population variance is 0 and the sample variance is NaN. Non-finite input (NaN, ±inf) is
// not added; it is counted in ignored() instead. O(1) time and no allocation per update.
// Thread-safety: not thread-safe; one owner updates and reads it (distinct objects are
// independent).
class welford {
 public:
  welford() = default;

  // Adds one sample; a NaN or infinite `x` is counted in ignored() and otherwise ignored.
  void add(double x) {
    if (!std::isfinite(x)) {
      ++ignored_;
      return;
    }
    ++count_;
    const double delta = x - mean_;
    mean_ += delta / static_cast<double>(count_);
    m2_ += delta * (x - mean_);
    if (x < min_) min_ = x;
    if (x > max_) max_ = x;
  }

  // Folds `other` into this summary, as if this one had also seen every sample `other` saw
  // (ignored() counts add up too). `other` may be *this: the result describes the data twice.
  void merge(const welford& other) {
    const welford b = other;  // a copy, so that merging with *this reads unmodified values
    ignored_ += b.ignored_;
    if (b.count_ == 0) return;
    if (count_ == 0) {
      const std::uint64_t ignored = ignored_;
      *this = b;
      ignored_ = ignored;
      return;
    }
    const double na = static_cast<double>(count_);
    const double nb = static_cast<double>(b.count_);
    const double n = na + nb;
    const double delta = b.mean_ - mean_;
    mean_ += delta * (nb / n);
    m2_ += b.m2_ + delta * delta * (na * nb / n);
    count_ += b.count_;
    if (b.min_ < min_) min_ = b.min_;
    if (b.max_ > max_) max_ = b.max_;
  }

  // Forgets everything, including ignored().
  void reset() { *this = welford(); }

  // Number of finite samples added (merged ones included).
  std::uint64_t count() const { return count_; }
  // Number of non-finite samples refused by add() (merged ones included).
  std::uint64_t ignored() const { return ignored_; }
  bool empty() const { return count_ == 0; }

  // Arithmetic mean; NaN when empty.
  double mean() const { return count_ == 0 ? nan() : mean_; }
  // Σ (x_i − mean)²; 0 when empty.
  double sum_of_squared_deviations() const { return m2_; }
  // M2 / n (ddof 0); NaN when empty, 0 for one sample.
  double population_variance() const {
    return count_ == 0 ? nan() : m2_ / static_cast<double>(count_);
  }
  // M2 / (n − 1) (ddof 1, unbiased); NaN for fewer than two samples.
  double sample_variance() const {
    return count_ < 2 ? nan() : m2_ / static_cast<double>(count_ - 1);
  }
  // sqrt(population_variance()).
  double population_stddev() const { return std::sqrt(population_variance()); }
  // sqrt(sample_variance()).
  double sample_stddev() const { return std::sqrt(sample_variance()); }
  // Smallest and largest sample; NaN when empty.
  double min() const { return count_ == 0 ? nan() : min_; }
  double max() const { return count_ == 0 ? nan() : max_; }

  // The state, and its inverse: restore(state()) continues exactly as this one would. restore()
  // throws std::invalid_argument (and changes nothing) for a negative or non-finite M2, or a
  // non-finite mean.
  welford_state state() const { return {count_, ignored_, mean_, m2_, min_, max_}; }
  void restore(const welford_state& s) {
    if (!std::isfinite(s.mean) || !(s.m2 >= 0.0) || !std::isfinite(s.m2)) {
      throw std::invalid_argument("welford: restore: bad mean or M2");
    }
    count_ = s.count;
    ignored_ = s.ignored;
    mean_ = s.mean;
    m2_ = s.m2;
    min_ = s.min;
    max_ = s.max;
  }

 private:
  static constexpr double nan() { return std::numeric_limits<double>::quiet_NaN(); }

  std::uint64_t count_ = 0;
  std::uint64_t ignored_ = 0;
  double mean_ = 0.0;
  double m2_ = 0.0;
  double min_ = std::numeric_limits<double>::infinity();
  double max_ = -std::numeric_limits<double>::infinity();
};

}  // namespace loopwarden::sdk::stats
