#pragma once
// divergence: KL, Jensen–Shannon and PSI between two histograms; fixed-bin histograms to build
// them from scalar streams; a bootstrap threshold for any two-sample statistic.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <loopwarden/stats/tail_mass.hpp>
#include <numbers>
#include <random>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

namespace loopwarden::sdk::stats {

// Divergences between two histograms over the same bins, given as counts or as probabilities
// (each side is normalised separately). Additive (Laplace for alpha = 1, Lidstone otherwise)
// smoothing adds alpha to every entry before normalising, in the units of the input:
//   p_i = (x_i + alpha) / (Σ x + K·alpha)          (K bins; likewise q from y)
//   kl_divergence  KL(p‖q) = Σ p_i ln(p_i / q_i)                      in nats, ≥ 0
//   js_divergence  JS(p, q) = ½ KL(p‖m) + ½ KL(q‖m),  m = (p + q)/2     in nats, in [0, ln 2]
//   psi            PSI(p, q) = Σ (p_i − q_i) ln(p_i / q_i) = KL(p‖q) + KL(q‖p)
// Conventions: 0·ln(0/·) = 0; a bin with p_i > 0 and q_i = 0 makes KL(p‖q) and PSI +inf (use
// alpha > 0 to keep them finite); JS is always finite and is clamped to [0, ln 2] against
// rounding; psi and js_divergence are symmetric bit for bit. The result is NaN when a side sums
// to 0 after smoothing (no data and alpha = 0).
// Errors: throws std::invalid_argument when the two sides differ in size, are empty, hold a
// negative or non-finite entry, or alpha is negative or non-finite. O(K), no allocation.
// Numerical notes: each term is computed as a ratio inside one log, so bins with tiny mass do
// not cancel against large ones; the sums are plain double sums (relative error ~K·ε).
// Thread-safety: pure functions of their arguments; no state.
namespace details {

template <typename T>
double smoothing_total(std::span<const T> x, double alpha) {
  double total = 0.0;
  for (const T& v : x) {
    const auto d = static_cast<double>(v);
    if (!(d >= 0.0 && std::isfinite(d))) {
      throw std::invalid_argument("divergence: histogram entries must be finite and >= 0");
    }
    total += d;
  }
  return total + static_cast<double>(x.size()) * alpha;
}

// Calls term(p_i, q_i) for each bin with the smoothed probabilities and returns the sum; NaN
// when a side has no mass.
template <typename T, typename Term>
double sum_smoothed(std::span<const T> p, std::span<const T> q, double alpha, Term term) {
  if (p.size() != q.size()) throw std::invalid_argument("divergence: histogram sizes differ");
  if (p.empty()) throw std::invalid_argument("divergence: empty histograms");
  if (!(alpha >= 0.0 && std::isfinite(alpha))) {
    throw std::invalid_argument("divergence: alpha must be finite and >= 0");
  }
  const double total_p = smoothing_total(p, alpha);
  const double total_q = smoothing_total(q, alpha);
  if (!(total_p > 0.0 && total_q > 0.0)) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0.0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    sum += term((static_cast<double>(p[i]) + alpha) / total_p,
                (static_cast<double>(q[i]) + alpha) / total_q);
  }
  return sum;
}

inline double kl_term(double pi, double qi) {
  if (pi == 0.0) return 0.0;
  if (qi == 0.0) return std::numeric_limits<double>::infinity();
  return pi * std::log(pi / qi);
}

// The PSI and JS terms are symmetric in (p_i, q_i); taking the larger first makes them
// symmetric bit for bit, so psi(p, q) == psi(q, p) and js(p, q) == js(q, p) exactly.
inline double psi_term(double pi, double qi) {
  if (pi == qi) return 0.0;
  const double hi = std::max(pi, qi);
  const double lo = std::min(pi, qi);
  if (lo == 0.0) return std::numeric_limits<double>::infinity();
  return (hi - lo) * std::log(hi / lo);
}

inline double js_term(double pi, double qi) {
  const double hi = std::max(pi, qi);
  const double lo = std::min(pi, qi);
  const double m = 0.5 * (hi + lo);
  double t = 0.0;
  if (hi > 0.0) t += 0.5 * hi * std::log(hi / m);
  if (lo > 0.0) t += 0.5 * lo * std::log(lo / m);
  return t;
}

template <typename T>
double js(std::span<const T> p, std::span<const T> q, double alpha) {
  const double v = sum_smoothed(p, q, alpha, js_term);
  if (std::isnan(v)) return v;
  return std::clamp(v, 0.0, std::numbers::ln2);
}

}  // namespace details

// KL(p‖q) in nats after smoothing with alpha (see above); +inf when q misses mass p has.
inline double kl_divergence(std::span<const double> p, std::span<const double> q,
                            double alpha = 0.0) {
  return details::sum_smoothed(p, q, alpha, details::kl_term);
}
inline double kl_divergence(std::span<const std::uint64_t> p, std::span<const std::uint64_t> q,
                            double alpha = 0.0) {
  return details::sum_smoothed(p, q, alpha, details::kl_term);
}

// Jensen–Shannon divergence in nats, symmetric, in [0, ln 2]; 0 for identical inputs.
inline double js_divergence(std::span<const double> p, std::span<const double> q,
                            double alpha = 0.0) {
  return details::js(p, q, alpha);
}
inline double js_divergence(std::span<const std::uint64_t> p, std::span<const std::uint64_t> q,
                            double alpha = 0.0) {
  return details::js(p, q, alpha);
}

// Population stability index Σ (p − q) ln(p/q) = KL(p‖q) + KL(q‖p); symmetric, ≥ 0.
inline double psi(std::span<const double> p, std::span<const double> q, double alpha = 0.0) {
  return details::sum_smoothed(p, q, alpha, details::psi_term);
}
inline double psi(std::span<const std::uint64_t> p, std::span<const std::uint64_t> q,
                  double alpha = 0.0) {
  return details::sum_smoothed(p, q, alpha, details::psi_term);
}

// Counts of a scalar stream in fixed bins. The bins are set by K − 1 strictly increasing finite
// cut points c_1 < … < c_{K−1}: bin 0 is (−∞, c_1), bin i is [c_i, c_{i+1}), bin K − 1 is
// [c_{K−1}, +∞), so every finite value lands in exactly one bin and a value equal to a cut goes
// to the bin above it. Build one from a baseline with from_quantiles() (equal-mass bins) or with
// equal_width(), then feed the baseline and the current samples to two copies and compare their
// counts() with kl_divergence / js_divergence / psi.
// Non-finite values are counted in ignored() and not binned. add() is O(log K) (binary search)
// without allocation.
// Errors: the constructor and factories throw std::invalid_argument for cut points that are not
// finite and strictly increasing, and for the factory arguments described below.
// Thread-safety: not thread-safe; one owner updates and reads it.
class fixed_histogram {
 public:
  // A histogram with cuts.size() + 1 bins (one bin, everything, for no cuts).
  explicit fixed_histogram(std::vector<double> cuts)
      : cuts_(checked(std::move(cuts))), counts_(cuts_.size() + 1, 0) {}

  // `bins` bins splitting [lo, hi] into equal widths (lo + (hi − lo)·i/bins, i = 1..bins−1);
  // the outer two extend to ±∞. Throws unless lo < hi are finite and bins ≥ 1.
  static fixed_histogram equal_width(double lo, double hi, std::size_t bins) {
    if (!(std::isfinite(lo) && std::isfinite(hi) && lo < hi)) {
      throw std::invalid_argument("fixed_histogram: need finite lo < hi");
    }
    if (bins == 0) throw std::invalid_argument("fixed_histogram: need at least one bin");
    std::vector<double> cuts;
    cuts.reserve(bins - 1);
    const auto k = static_cast<double>(bins);
    for (std::size_t i = 1; i < bins; ++i) {
      cuts.push_back(lo + (hi - lo) * (static_cast<double>(i) / k));
    }
    return fixed_histogram(std::move(cuts));
  }

  // Equal-mass bins: cuts at the baseline's i/bins quantiles (quantile_sorted, type 7),
  // i = 1..bins−1, over its finite values. Tied baseline values can give equal cuts; duplicates
  // are merged, so bins() can be smaller than asked. Throws without a finite baseline value or
  // for bins = 0. O(n log n).
  static fixed_histogram from_quantiles(std::span<const double> baseline, std::size_t bins) {
    if (bins == 0) throw std::invalid_argument("fixed_histogram: need at least one bin");
    const std::vector<double> sorted = sorted_finite(baseline);
    if (sorted.empty()) throw std::invalid_argument("fixed_histogram: no finite baseline value");
    std::vector<double> cuts;
    cuts.reserve(bins - 1);
    const auto k = static_cast<double>(bins);
    for (std::size_t i = 1; i < bins; ++i) {
      cuts.push_back(quantile_sorted(sorted, static_cast<double>(i) / k));
    }
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    return fixed_histogram(std::move(cuts));
  }

  // Counts x in its bin; NaN and ±inf are counted in ignored() only.
  void add(double x) {
    if (!std::isfinite(x)) {
      ++ignored_;
      return;
    }
    ++counts_[bin_of(x)];
    ++count_;
  }

  // Zeroes the counts (and ignored()); the bins stay.
  void reset() {
    std::fill(counts_.begin(), counts_.end(), std::uint64_t{0});
    count_ = 0;
    ignored_ = 0;
  }

  // The bin a finite x falls in, 0..bins()−1.
  std::size_t bin_of(double x) const {
    return static_cast<std::size_t>(std::upper_bound(cuts_.begin(), cuts_.end(), x) -
                                    cuts_.begin());
  }
  std::size_t bins() const { return counts_.size(); }
  const std::vector<double>& cuts() const { return cuts_; }
  // Per-bin counts, bins() entries, for the divergence functions.
  const std::vector<std::uint64_t>& counts() const { return counts_; }
  // Finite values binned, and non-finite values refused, since construction or reset.
  std::uint64_t count() const { return count_; }
  std::uint64_t ignored() const { return ignored_; }

 private:
  static std::vector<double> checked(std::vector<double> cuts) {
    for (std::size_t i = 0; i < cuts.size(); ++i) {
      if (!std::isfinite(cuts[i]) || (i > 0 && !(cuts[i - 1] < cuts[i]))) {
        throw std::invalid_argument("fixed_histogram: cuts must be finite and strictly increasing");
      }
    }
    return cuts;
  }

  std::vector<double> cuts_;
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t ignored_ = 0;
};

// A threshold for a two-sample statistic (PSI, JS, …) calibrated on the baseline: the
// `quantile` of `statistic(reference, current)` when nothing has drifted. Each of `replicates`
// rounds draws, with replacement from the finite baseline values, a reference of
// baseline-size values and a current sample of `n_current` values, and evaluates
//   double statistic(std::span<const double> reference, std::span<const double> current)
// The result is quantile_sorted of the replicate values (type 7). Comparing a fresh current
// sample of n_current values against a baseline of the same size, a statistic above the
// returned 0.99 quantile is then a false alarm about 1 % of the time on average over baselines;
// for one fixed baseline the rate can differ a lot (100-value baselines, N(0,1), 10-bin PSI:
// 0–13 % across 40 simulated baselines, mean 1.3 %), less so with a larger baseline. The
// statistic should bin on fixed cuts (say from_quantiles of the original baseline): resamples
// repeat values, and cuts taken from a resample would see ties the real samples do not have.
// Errors: throws std::invalid_argument without a finite baseline value, for n_current = 0,
// replicates = 0, quantile outside [0, 1], or when the statistic returns NaN. O(replicates ·
// (n + n_current + cost of statistic)); allocates the two resample buffers and the replicates.
// Thread-safety: uses `rng` (a UniformRandomBitGenerator) and nothing shared.
template <typename Statistic, typename Rng>
double bootstrap_null_quantile(std::span<const double> baseline_sample, std::size_t n_current,
                               Statistic&& statistic, std::size_t replicates, double quantile,
                               Rng& rng) {
  const std::vector<double> pool = sorted_finite(baseline_sample);
  if (pool.empty()) throw std::invalid_argument("bootstrap_null_quantile: no finite baseline");
  if (n_current == 0) throw std::invalid_argument("bootstrap_null_quantile: n_current is 0");
  if (replicates == 0) throw std::invalid_argument("bootstrap_null_quantile: replicates is 0");
  if (!(quantile >= 0.0 && quantile <= 1.0)) {
    throw std::invalid_argument("bootstrap_null_quantile: quantile must be in [0, 1]");
  }
  std::uniform_int_distribution<std::size_t> pick(0, pool.size() - 1);
  std::vector<double> reference(pool.size());
  std::vector<double> current(n_current);
  std::vector<double> values;
  values.reserve(replicates);
  for (std::size_t r = 0; r < replicates; ++r) {
    for (double& x : reference) x = pool[pick(rng)];
    for (double& x : current) x = pool[pick(rng)];
    const double v =
        statistic(std::span<const double>(reference), std::span<const double>(current));
    if (std::isnan(v)) throw std::invalid_argument("bootstrap_null_quantile: statistic is NaN");
    values.push_back(v);
  }
  std::sort(values.begin(), values.end());
  return quantile_sorted(values, quantile);
}

}  // namespace loopwarden::sdk::stats
