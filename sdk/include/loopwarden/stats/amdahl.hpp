#pragma once
// amdahl: what speeding up part of a job does to the whole (Amdahl 1967), forwards (the speed-up
// a fraction p sped up s times gives) and backwards (p and s measured from a baseline and a
// current breakdown of the work).

#include <cmath>
#include <limits>

namespace loopwarden::sdk::stats {

// The overall speed-up when a fraction p ∈ [0, 1] of the work runs s > 0 times faster and the
// rest is unchanged:  S = 1 / ((1 − p) + p / s).  Example: p = 0.8, s = 10 → 1/(0.2 + 0.08) =
// 3.5714. s = +inf gives the ceiling. NaN when p is outside [0, 1] or s is not > 0 (or NaN).
// Thread-safety: a pure function.
inline double amdahl_speedup(double p, double s) {
  if (!(p >= 0.0 && p <= 1.0) || !(s > 0.0)) return std::numeric_limits<double>::quiet_NaN();
  const double rest = (1.0 - p) + (std::isinf(s) ? 0.0 : p / s);
  return rest > 0.0 ? 1.0 / rest : std::numeric_limits<double>::infinity();
}

// The limit of amdahl_speedup as s → ∞:  1 / (1 − p)  (5 for p = 0.8); +inf for p = 1, NaN when
// p is outside [0, 1]. Thread-safety: a pure function.
inline double amdahl_ceiling(double p) {
  if (!(p >= 0.0 && p <= 1.0)) return std::numeric_limits<double>::quiet_NaN();
  return p == 1.0 ? std::numeric_limits<double>::infinity() : 1.0 / (1.0 - p);
}

// The inverse in s: the speed-up of the accelerated part that an overall speed-up `overall`
// implies for a fraction p:  s = p / (1/S − (1 − p)).  +inf when S is at the ceiling (to within
// a relative 1e-12), NaN when S is beyond it (no finite s gives it), when S is not > 0, or p is
// outside (0, 1].
// Thread-safety: a pure function.
inline double amdahl_implied_stage_speedup(double p, double overall) {
  if (!(p > 0.0 && p <= 1.0) || !(overall > 0.0)) return std::numeric_limits<double>::quiet_NaN();
  const double left = 1.0 / overall - (1.0 - p);
  // Within rounding of the ceiling (1/5 − 0.2 is 5.6e-17, not 0): infinitely fast.
  if (std::abs(left) <= 1e-12 / overall) return std::numeric_limits<double>::infinity();
  if (left < 0.0) return std::numeric_limits<double>::quiet_NaN();
  return p / left;
}

// The inverse in p: the fraction a stage speed-up s must cover to give overall speed-up S:
// p = (1 − 1/S) / (1 − 1/s).  NaN when s = 1 (any p gives S = 1), when s or S is not > 0, or
// when the result is outside [0, 1] (S and s on different sides of 1, or S beyond s).
// Thread-safety: a pure function.
inline double amdahl_implied_fraction(double s, double overall) {
  if (!(s > 0.0) || !(overall > 0.0) || s == 1.0) return std::numeric_limits<double>::quiet_NaN();
  const double p = (1.0 - 1.0 / overall) / (1.0 - 1.0 / s);
  return (p >= 0.0 && p <= 1.0) ? p : std::numeric_limits<double>::quiet_NaN();
}

// Amdahl's law measured: the work per item of the accelerated stages and of the others (any unit
// of time), in a baseline and now.
//   p          = baseline_accelerated / (baseline_accelerated + baseline_other)
//   s          = baseline_accelerated / current_accelerated      (stage speed-up)
//   predicted  = amdahl_speedup(p, s)                             (if the rest did not change)
//   achieved   = baseline total / current total                   (what really happened)
//   ceiling    = amdahl_ceiling(p)
//   other_slowdown = current_other / baseline_other               (1 when the rest is unchanged;
//                                                                  then achieved == predicted)
// Any term whose inputs are missing (NaN), negative or zero where it divides is NaN.
struct amdahl_measurement {
  double accelerated_fraction = std::numeric_limits<double>::quiet_NaN();
  double stage_speedup = std::numeric_limits<double>::quiet_NaN();
  double predicted_speedup = std::numeric_limits<double>::quiet_NaN();
  double achieved_speedup = std::numeric_limits<double>::quiet_NaN();
  double ceiling = std::numeric_limits<double>::quiet_NaN();
  double other_slowdown = std::numeric_limits<double>::quiet_NaN();
};

// See amdahl_measurement. Thread-safety: a pure function.
inline amdahl_measurement measure_amdahl(double baseline_accelerated, double baseline_other,
                                         double current_accelerated, double current_other) {
  amdahl_measurement m;
  const bool baseline_ok = baseline_accelerated >= 0.0 && baseline_other >= 0.0 &&
                           baseline_accelerated + baseline_other > 0.0;
  if (!baseline_ok) return m;
  const double baseline_total = baseline_accelerated + baseline_other;
  m.accelerated_fraction = baseline_accelerated / baseline_total;
  m.ceiling = amdahl_ceiling(m.accelerated_fraction);
  if (current_accelerated > 0.0) m.stage_speedup = baseline_accelerated / current_accelerated;
  m.predicted_speedup = amdahl_speedup(m.accelerated_fraction, m.stage_speedup);
  if (current_accelerated >= 0.0 && current_other >= 0.0 &&
      current_accelerated + current_other > 0.0) {
    m.achieved_speedup = baseline_total / (current_accelerated + current_other);
  }
  if (baseline_other > 0.0 && current_other >= 0.0) {
    m.other_slowdown = current_other / baseline_other;
  }
  return m;
}

}  // namespace loopwarden::sdk::stats
