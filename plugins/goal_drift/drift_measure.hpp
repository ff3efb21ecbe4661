#pragma once
// goal_drift's measurement of one cycle report's drift: each component taken as the host
// precomputed it, or measured from the raw material; malformed evidence detected; and the
// weighted index over the components present.

#include <array>
#include <limits>
#include <string>

#include <loopwarden/v1/cycle.pb.h>

#include "settings.hpp"

namespace loopwarden::goal_drift {

inline constexpr double nan = std::numeric_limits<double>::quiet_NaN();

// The components of one report, each in [0, 1] or NaN when the report has no evidence for it.
// When `malformed` is set the report's drift evidence is unusable as a whole (the components
// are then all NaN) and `problem` says why, for the log.
struct measured_drift {
  std::array<double, component_count> value = {nan, nan, nan, nan};
  std::array<bool, component_count> from_material = {false, false, false, false};
  bool malformed = false;
  std::string problem;
};

// Measures the components of `report`. A precomputed component (DriftComponents) wins over the
// material for it. Malformed: a precomputed component that is NaN, infinite or outside [0, 1];
// material given for one side only (candidate without reference or the reverse); embeddings
// whose dimension is 0, whose values are not whole rows, whose two sides differ in dimension,
// that hold a non-finite value or have no usable row; a histogram whose keys and counts differ
// in length, with a negative or non-finite count or no mass. Never throws.
// Thread-safety: a pure function.
measured_drift measure_drift(const v1::CycleReport& report, const settings& s);

// The weighted index of the components present with weight > 0:
//   index = Σ_present w_i c_i / Σ_present w_i
// (the weights of the missing components are spread over the present ones in proportion).
struct drift_index {
  double value = nan;  // NaN when no weighted component is present
  std::array<double, component_count> weights = {0.0, 0.0, 0.0, 0.0};  // as used, sum 1
  std::string present;  // the components used, comma-separated ("" when none)
};
drift_index combine(const measured_drift& drift, const settings& s);

}  // namespace loopwarden::goal_drift
