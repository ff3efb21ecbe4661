#pragma once
// goal_drift's per-run state (what it has learnt about one self-improvement run) and the codec
// that writes every run's state into a snapshot and reads it back.

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <loopwarden/stats/cusum.hpp>
#include <loopwarden/status.hpp>

#include "settings.hpp"

namespace loopwarden::goal_drift {

// The capability and alignment means of one cycle, for the knee over recent cycles.
struct knee_point {
  std::uint64_t cycle = 0;
  double capability = 0.0;
  double alignment = 0.0;
};

// One run. Memory is bounded by the settings: calibration ≤ calibration_cycles values, best ≤
// max_metrics names, knee ≤ knee_window + 1 points. Thread-safety: a plain value, owned by the
// monitor that updates it.
struct run_state {
  // The monitor's report count when this run last reported: the least recent run is the one
  // evicted when a new run arrives with max_runs runs tracked.
  std::uint64_t last_report = 0;
  std::uint64_t last_cycle = 0;  // 0 until the first report (cycles count from 1)
  std::string last_candidate;

  // The last cycle that passed every check (cycle 0: the version the run started from, the
  // first report's parent_id). has_trusted is false while nothing is known to be trusted.
  bool has_trusted = false;
  std::uint64_t trusted_cycle = 0;
  std::string trusted_candidate;

  // Calibration: the indices of the first trusted cycles, then the fitted threshold.
  std::vector<double> calibration;
  bool calibrated = false;
  double mean = 0.0;       // of the calibration indices
  double sd = 0.0;         // their sample standard deviation (ddof 1)
  double threshold = 0.0;  // valid once calibrated; the prior before
  // The CUSUM on the standardised index, running once calibrated (when enabled).
  std::optional<stats::cusum> cusum;

  // Best-so-far of each capability metric over trusted cycles.
  std::map<std::string, double> best;
  std::deque<knee_point> knee;
  std::uint64_t knee_in_a_row = 0;  // consecutive cycles with the knee ratio above its limit
};

// Monitor-wide counters that a snapshot keeps too.
struct counters {
  std::uint64_t malformed_reports = 0;
  std::uint64_t ignored_reports = 0;
  std::uint64_t evicted_runs = 0;
  std::uint64_t reports = 0;  // every cycle report seen: the clock of run_state::last_report
  std::uint64_t rollbacks_seen = 0;
  std::uint64_t cycles_without_index = 0;
};

// Snapshot format version written by encode_state; decode_state reads this one only.
inline constexpr std::uint32_t snapshot_version = 1;

// Writes the counters and every run (in map order) with sdk::state_writer (header "goal_drift",
// format snapshot_version): doubles by their IEEE bits, so a restored monitor continues bit for
// bit.
std::string encode_state(const std::map<std::string, run_state>& runs, const counters& c);

// Reads what encode_state wrote, checking every length and value against `s` (the restoring
// monitor's settings): at most max_runs runs, calibration values ≤ calibration_cycles, knee
// points ≤ knee_window + 1, metric names ≤ max_metrics, finite numbers. Errors: the
// state_reader's parse_error naming the byte offset and what is wrong; `runs` and `c` are only
// written on success.
sdk::status decode_state(std::string_view data, const settings& s,
                         std::map<std::string, run_state>& runs, counters& c);

}  // namespace loopwarden::goal_drift
