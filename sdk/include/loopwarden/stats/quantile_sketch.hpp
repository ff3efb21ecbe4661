#pragma once
// quantile_sketch: quantiles of a stream of non-negative values (durations, sizes, rates) with a
// guaranteed relative error, in memory bounded by a bin count and not by the stream's length.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

namespace loopwarden::sdk::stats {

// Everything a quantile_sketch holds, as plain values, so a monitor can snapshot it and restore
// it later (quantile_sketch::export_state / import_state).
struct quantile_sketch_state {
  double relative_accuracy = 0.01;
  std::size_t max_bins = 2048;
  double min_value = 1e-9;
  std::int64_t offset = 0;            // index of counts[0]
  std::vector<std::uint64_t> counts;  // one per bin, from index `offset` upwards
  std::uint64_t zero_count = 0;       // values ≤ min_value
  std::uint64_t count = 0;
  double sum = 0.0;
  double min = std::numeric_limits<double>::quiet_NaN();
  double max = std::numeric_limits<double>::quiet_NaN();
  std::uint64_t ignored = 0;
  std::uint64_t collapsed = 0;
};

// A relative-error quantile sketch (DDSketch; Masson, Rim & Lee, "DDSketch: a fast and fully-
// mergeable quantile sketch with relative-error guarantees", VLDB 2019). With accuracy α and
// γ = (1 + α)/(1 − α), a value x > min_value goes to bin i = ⌈log_γ x⌉, which covers
// (γ^(i−1), γ^i]; values ≤ min_value (zero included) are counted apart. quantile(q) walks the
// bins to the one holding the value of 0-based rank ⌊q·(n − 1)⌋ of the sorted stream (the lower
// quantile) and returns 2γ^i/(γ + 1), clamped to [min, max]. Guarantee: for that value x_r,
//   |quantile(q) − x_r| ≤ α · x_r
// as long as no bin has been collapsed below it (see max_bins). min, max, mean and count are
// exact. merge() adds bin counts, so a merged sketch answers exactly as one sketch fed both
// streams (the basis of windowed_quantile).
//
// Memory: bins span the range of the values, log_γ(max/min) + 1 of them (with α = 0.01, about
// 1150 bins for ten decades); when the span exceeds max_bins the lowest bins are merged into the
// lowest kept one (counted in collapsed()), so the upper quantiles keep their guarantee and the
// sketch never grows past max_bins counters. add() is O(1) amortised; quantile() is O(bins).
// NaN, infinite and negative values are counted in ignored() and not added.
// Errors: the constructor throws std::invalid_argument unless 0 < relative_accuracy < 1,
// max_bins ≥ 2 and min_value > 0. Thread-safety: not thread-safe; one owner.
class quantile_sketch {
 public:
  explicit quantile_sketch(double relative_accuracy = 0.01, std::size_t max_bins = 2048,
                           double min_value = 1e-9)
      : alpha_(relative_accuracy), max_bins_(max_bins), min_value_(min_value) {
    if (!(relative_accuracy > 0.0 && relative_accuracy < 1.0)) {
      throw std::invalid_argument("quantile_sketch: relative_accuracy must be in (0, 1)");
    }
    if (max_bins < 2) throw std::invalid_argument("quantile_sketch: max_bins must be >= 2");
    if (!(min_value > 0.0 && std::isfinite(min_value))) {
      throw std::invalid_argument("quantile_sketch: min_value must be finite and > 0");
    }
    gamma_ = (1.0 + alpha_) / (1.0 - alpha_);
    log_gamma_ = std::log(gamma_);
  }

  // Adds `x` `times` times (times = 0 adds nothing); see the class comment for refused values.
  void add(double x, std::uint64_t times = 1) {
    if (!(std::isfinite(x) && x >= 0.0)) {
      ignored_ += times;
      return;
    }
    if (times == 0) return;
    count_ += times;
    sum_ += x * static_cast<double>(times);
    if (std::isnan(min_) || x < min_) min_ = x;
    if (std::isnan(max_) || x > max_) max_ = x;
    if (x <= min_value_) {
      zero_count_ += times;
      return;
    }
    add_to_bin(index_of(x), times);
  }

  // Folds `other` in, as if this sketch had also seen its values. Throws std::invalid_argument
  // when the two were built with different relative_accuracy or min_value (their bins differ).
  void merge(const quantile_sketch& other) {
    if (other.alpha_ != alpha_ || other.min_value_ != min_value_) {
      throw std::invalid_argument("quantile_sketch: can't merge sketches of different accuracy");
    }
    if (&other == this) {
      const quantile_sketch copy = other;
      merge(copy);
      return;
    }
    ignored_ += other.ignored_;
    collapsed_ += other.collapsed_;
    if (other.count_ == 0) return;
    count_ += other.count_;
    sum_ += other.sum_;
    if (std::isnan(min_) || other.min_ < min_) min_ = other.min_;
    if (std::isnan(max_) || other.max_ > max_) max_ = other.max_;
    zero_count_ += other.zero_count_;
    for (std::size_t k = 0; k < other.counts_.size(); ++k) {
      if (other.counts_[k] != 0) {
        add_to_bin(other.offset_ + static_cast<std::int64_t>(k), other.counts_[k]);
      }
    }
  }

  // The estimate of the lower q-quantile (0-based rank ⌊q·(n − 1)⌋); NaN when empty or when q is
  // not in [0, 1]. quantile(0) is the exact min and quantile(1) the exact max.
  double quantile(double q) const {
    if (count_ == 0 || !(q >= 0.0 && q <= 1.0)) return std::numeric_limits<double>::quiet_NaN();
    if (q == 0.0) return min_;
    if (q == 1.0) return max_;
    const double rank = std::floor(q * static_cast<double>(count_ - 1));
    double seen = static_cast<double>(zero_count_);
    if (seen > rank) return min_;
    for (std::size_t k = 0; k < counts_.size(); ++k) {
      seen += static_cast<double>(counts_[k]);
      if (seen > rank) {
        const double estimate =
            2.0 *
            std::exp(static_cast<double>(offset_ + static_cast<std::int64_t>(k)) * log_gamma_) /
            (gamma_ + 1.0);
        return std::clamp(estimate, min_, max_);
      }
    }
    return max_;
  }

  // Forgets every value (and ignored(), collapsed()); the parameters stay.
  void clear() {
    counts_.clear();
    offset_ = 0;
    zero_count_ = 0;
    count_ = 0;
    sum_ = 0.0;
    min_ = std::numeric_limits<double>::quiet_NaN();
    max_ = std::numeric_limits<double>::quiet_NaN();
    ignored_ = 0;
    collapsed_ = 0;
  }

  std::uint64_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  double sum() const { return sum_; }
  // Exact mean, min and max; NaN when empty.
  double mean() const {
    return count_ == 0 ? std::numeric_limits<double>::quiet_NaN()
                       : sum_ / static_cast<double>(count_);
  }
  double min() const { return min_; }
  double max() const { return max_; }
  // Values refused by add() (NaN, infinite, negative), merged ones included.
  std::uint64_t ignored() const { return ignored_; }
  // Values that were in bins merged away to respect max_bins (their quantiles lose the bound).
  std::uint64_t collapsed() const { return collapsed_; }
  double relative_accuracy() const { return alpha_; }
  std::size_t bins() const { return counts_.size(); }
  std::size_t max_bins() const { return max_bins_; }

  quantile_sketch_state export_state() const {
    quantile_sketch_state s;
    s.relative_accuracy = alpha_;
    s.max_bins = max_bins_;
    s.min_value = min_value_;
    s.offset = offset_;
    s.counts = counts_;
    s.zero_count = zero_count_;
    s.count = count_;
    s.sum = sum_;
    s.min = min_;
    s.max = max_;
    s.ignored = ignored_;
    s.collapsed = collapsed_;
    return s;
  }

  // Replaces this sketch by `s`. Returns false, and changes nothing, when `s` is inconsistent
  // (parameters out of range, bins beyond max_bins, counts that do not add up, a min above the
  // max): restored bytes are data, not trusted code.
  bool import_state(const quantile_sketch_state& s) {
    if (!(s.relative_accuracy > 0.0 && s.relative_accuracy < 1.0) || s.max_bins < 2 ||
        !(s.min_value > 0.0 && std::isfinite(s.min_value)) || s.counts.size() > s.max_bins) {
      return false;
    }
    std::uint64_t total = s.zero_count;
    for (std::uint64_t c : s.counts) total += c;
    if (total != s.count || !std::isfinite(s.sum) || s.sum < 0.0) return false;
    if (s.count > 0 && !(s.min >= 0.0 && s.max >= s.min && std::isfinite(s.max))) return false;
    if (s.offset < -(std::int64_t{1} << 40) || s.offset > (std::int64_t{1} << 40)) return false;
    quantile_sketch next(s.relative_accuracy, s.max_bins, s.min_value);
    next.offset_ = s.offset;
    next.counts_ = s.counts;
    next.zero_count_ = s.zero_count;
    next.count_ = s.count;
    next.sum_ = s.sum;
    next.min_ = s.count > 0 ? s.min : std::numeric_limits<double>::quiet_NaN();
    next.max_ = s.count > 0 ? s.max : std::numeric_limits<double>::quiet_NaN();
    next.ignored_ = s.ignored;
    next.collapsed_ = s.collapsed;
    *this = std::move(next);
    return true;
  }

 private:
  std::int64_t index_of(double x) const {
    return static_cast<std::int64_t>(std::ceil(std::log(x) / log_gamma_));
  }

  void add_to_bin(std::int64_t index, std::uint64_t times) {
    if (counts_.empty()) {
      offset_ = index;
      counts_.assign(1, 0);
    }
    if (index < offset_) {
      const auto grow = static_cast<std::size_t>(offset_ - index);
      if (counts_.size() + grow > max_bins_) {
        // Below the kept range once full: the lowest bin absorbs it.
        const std::size_t room = max_bins_ - counts_.size();
        counts_.insert(counts_.begin(), room, 0);
        offset_ -= static_cast<std::int64_t>(room);
        counts_.front() += times;
        collapsed_ += times;
        return;
      }
      counts_.insert(counts_.begin(), grow, 0);
      offset_ = index;
    }
    const auto last = offset_ + static_cast<std::int64_t>(counts_.size()) - 1;
    if (index > last) {
      counts_.resize(counts_.size() + static_cast<std::size_t>(index - last), 0);
      if (counts_.size() > max_bins_) collapse_lowest();
    }
    counts_[static_cast<std::size_t>(index - offset_)] += times;
  }

  // Merges the lowest bins so that max_bins remain.
  void collapse_lowest() {
    const std::size_t excess = counts_.size() - max_bins_;
    std::uint64_t moved = 0;
    for (std::size_t k = 0; k < excess; ++k) moved += counts_[k];
    counts_.erase(counts_.begin(), counts_.begin() + static_cast<std::ptrdiff_t>(excess));
    offset_ += static_cast<std::int64_t>(excess);
    counts_.front() += moved;
    collapsed_ += moved;
  }

  double alpha_;
  std::size_t max_bins_;
  double min_value_;
  double gamma_ = 1.0;
  double log_gamma_ = 0.0;
  std::int64_t offset_ = 0;
  std::vector<std::uint64_t> counts_;
  std::uint64_t zero_count_ = 0;
  std::uint64_t count_ = 0;
  double sum_ = 0.0;
  double min_ = std::numeric_limits<double>::quiet_NaN();
  double max_ = std::numeric_limits<double>::quiet_NaN();
  std::uint64_t ignored_ = 0;
  std::uint64_t collapsed_ = 0;
};

}  // namespace loopwarden::sdk::stats
