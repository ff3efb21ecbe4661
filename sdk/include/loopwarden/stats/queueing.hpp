#pragma once
// queueing: the closed forms a pipeline monitor checks itself against (M/M/1, Little's law), the
// test that tells a queue that grows from one that merely fluctuates, and the time until a
// growing queue passes a limit.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

namespace loopwarden::sdk::stats {

// M/M/1 (Poisson arrivals λ, exponential service μ, one server, ρ = λ/μ): the mean number in
// the system, ρ / (1 − ρ) (2.333 at ρ = 0.7). +inf for ρ ≥ 1 (no steady state: the queue grows
// without bound), NaN for ρ < 0 or NaN. Thread-safety: a pure function.
inline double mm1_mean_in_system(double rho) {
  if (!(rho >= 0.0)) return std::numeric_limits<double>::quiet_NaN();
  if (rho >= 1.0) return std::numeric_limits<double>::infinity();
  return rho / (1.0 - rho);
}

// M/M/1: the mean time in the system, 1 / (μ − λ); +inf for λ ≥ μ, NaN unless λ ≥ 0 and μ > 0.
// Thread-safety: a pure function.
inline double mm1_mean_time_in_system(double lambda, double mu) {
  if (!(lambda >= 0.0) || !(mu > 0.0)) return std::numeric_limits<double>::quiet_NaN();
  if (lambda >= mu) return std::numeric_limits<double>::infinity();
  return 1.0 / (mu - lambda);
}

// M/M/1: P(N ≥ k) = ρ^k in steady state (ρ < 1); 1 for ρ ≥ 1 or k ≤ 0, NaN for ρ < 0.
// Thread-safety: a pure function.
inline double mm1_probability_at_least(double rho, double k) {
  if (!(rho >= 0.0)) return std::numeric_limits<double>::quiet_NaN();
  if (rho >= 1.0 || k <= 0.0) return 1.0;
  return std::pow(rho, k);
}

// Little's law L = λW as a consistency check: the relative gap |L − λW| / max(L, λW), 0 when
// both sides are 0, NaN when an input is NaN or negative. Over a window the law holds exactly
// when L is the time-average number present, λ the arrivals per unit time and W the mean time
// in the system, and the system is empty at both ends of the window; a gap far from 0 means the
// window is not in steady state (a queue building up or draining) or records are missing.
// Thread-safety: a pure function.
inline double little_gap(double mean_in_system, double arrival_rate, double mean_time) {
  if (!(mean_in_system >= 0.0 && arrival_rate >= 0.0 && mean_time >= 0.0)) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  const double lw = arrival_rate * mean_time;
  const double top = std::max(mean_in_system, lw);
  return top > 0.0 ? std::abs(mean_in_system - lw) / top : 0.0;
}

// Is the queue growing? The net flow A − D (arrivals minus departures) over a window cut into
// K sub-windows (buckets), against its noise:
//   z = (A − D) / sqrt(max(A + D, K · s²))
// where s² is the sample variance of the K per-bucket net flows a_i − d_i. Under "the stage
// keeps up" (ρ ≤ 1) the net flow has mean ≤ 0; with Poisson arrivals and departures its
// variance is A + D (a Skellam difference), and the batch-means term K·s² takes over when the
// flows are over-dispersed (items arriving in bursts), so a burst is not mistaken for growth.
// A stable queue's net flow is bounded (it is the change of the queue length), so z stays small
// however long the window; a queue with λ > μ grows by (λ − μ) per unit time and z grows as
// the square root of the window. growth_per_unit = (A − D) / (K · width) when the caller gives
// the bucket width. Fields are NaN when there is no data (A + D = 0).
struct net_flow_result {
  double arrivals = 0.0;
  double departures = 0.0;
  double net = 0.0;
  double poisson_variance = 0.0;                                     // A + D
  double batch_variance = std::numeric_limits<double>::quiet_NaN();  // K · s² (K ≥ 2)
  double z = std::numeric_limits<double>::quiet_NaN();
};

// See net_flow_result. `arrivals` and `departures` are per-bucket counts of equal length (the
// shorter length is used if they differ). Thread-safety: a pure function.
inline net_flow_result net_flow_test(const std::vector<double>& arrivals,
                                     const std::vector<double>& departures) {
  net_flow_result r;
  const std::size_t k = std::min(arrivals.size(), departures.size());
  double mean = 0.0;
  for (std::size_t i = 0; i < k; ++i) {
    r.arrivals += arrivals[i];
    r.departures += departures[i];
  }
  r.net = r.arrivals - r.departures;
  r.poisson_variance = r.arrivals + r.departures;
  if (k >= 2) {
    mean = r.net / static_cast<double>(k);
    double ss = 0.0;
    for (std::size_t i = 0; i < k; ++i) {
      const double d = (arrivals[i] - departures[i]) - mean;
      ss += d * d;
    }
    r.batch_variance = static_cast<double>(k) * ss / static_cast<double>(k - 1);
  }
  const double variance = std::isnan(r.batch_variance)
                              ? r.poisson_variance
                              : std::max(r.poisson_variance, r.batch_variance);
  if (variance > 0.0) r.z = r.net / std::sqrt(variance);
  return r;
}

// Time until a quantity now at `current`, changing by `rate` per unit time, reaches `limit`:
// (limit − current) / rate. 0 when already at or past the limit, +inf when rate ≤ 0 (it never
// gets there), NaN when an input is NaN. Thread-safety: a pure function.
inline double time_to_limit(double current, double rate, double limit) {
  if (std::isnan(current) || std::isnan(rate) || std::isnan(limit)) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  if (current >= limit) return 0.0;
  if (!(rate > 0.0)) return std::numeric_limits<double>::infinity();
  return (limit - current) / rate;
}

}  // namespace loopwarden::sdk::stats
