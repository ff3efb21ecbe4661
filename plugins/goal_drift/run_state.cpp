#include "run_state.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include <loopwarden/state_codec.hpp>

namespace loopwarden::goal_drift {

namespace {

constexpr std::string_view plugin_name = "goal_drift";
constexpr std::uint64_t max_string = 1 << 20;  // run ids, candidate ids, metric names

// A finite double: no number a run keeps may be NaN or infinite.
double read_finite(sdk::state_reader& in) {
  const double v = in.read_f64();
  if (in.ok() && !std::isfinite(v)) in.fail("a non-finite number");
  return v;
}

void write_run(sdk::state_writer& w, const run_state& r) {
  w.write_u64(r.last_report);
  w.write_u64(r.last_cycle);
  w.write_string(r.last_candidate);
  w.write_bool(r.has_trusted);
  w.write_u64(r.trusted_cycle);
  w.write_string(r.trusted_candidate);
  w.write_f64s(r.calibration);
  w.write_bool(r.calibrated);
  w.write_f64(r.mean);
  w.write_f64(r.sd);
  w.write_f64(r.threshold);
  w.write_bool(r.cusum.has_value());
  if (r.cusum) {
    const stats::cusum_state c = r.cusum->state();
    w.write_f64(c.upper);
    w.write_f64(c.lower);
    w.write_u64(static_cast<std::uint64_t>(c.last));
    w.write_u64(c.count);
    w.write_u64(c.ignored);
    w.write_u64(c.signals);
  }
  w.write_u64(r.best.size());
  for (const auto& [name, value] : r.best) {
    w.write_string(name);
    w.write_f64(value);
  }
  w.write_u64(r.knee.size());
  for (const knee_point& p : r.knee) {
    w.write_u64(p.cycle);
    w.write_f64(p.capability);
    w.write_f64(p.alignment);
  }
  w.write_u64(r.knee_in_a_row);
}

// Reads one run; the limits come from the restoring monitor's settings.
run_state read_run(sdk::state_reader& in, const settings& s) {
  run_state r;
  r.last_report = in.read_u64();
  r.last_cycle = in.read_u64();
  r.last_candidate = in.read_string(max_string);
  r.has_trusted = in.read_bool();
  r.trusted_cycle = in.read_u64();
  r.trusted_candidate = in.read_string(max_string);
  r.calibration = in.read_f64s(s.calibration_cycles);
  for (double v : r.calibration) {
    if (in.ok() && !std::isfinite(v)) in.fail("a non-finite calibration index");
  }
  r.calibrated = in.read_bool();
  r.mean = read_finite(in);
  r.sd = read_finite(in);
  r.threshold = read_finite(in);
  if (in.read_bool()) {
    stats::cusum_state c;
    c.upper = read_finite(in);
    c.lower = read_finite(in);
    const std::uint64_t last = in.read_u64();
    c.count = in.read_u64();
    c.ignored = in.read_u64();
    c.signals = in.read_u64();
    if (!in.ok()) return r;
    if (last > static_cast<std::uint64_t>(stats::signal_side::both) || !r.calibrated ||
        c.upper < 0.0 || c.lower < 0.0 || !(r.sd >= 0.0)) {
      in.fail("a cusum that does not fit its calibration");
      return r;
    }
    c.last = static_cast<stats::signal_side>(last);
    // The options are re-derived as the monitor derives them at calibration, so a restored run
    // and an uninterrupted one update the same chart.
    r.cusum.emplace(stats::cusum_options{
        .target = r.mean, .sigma = std::max(r.sd, s.min_sd), .k = s.cusum_k, .h = s.cusum_h});
    r.cusum->restore(c);
  }
  const std::uint64_t n_best = in.read_count(s.max_metrics);
  for (std::uint64_t i = 0; i < n_best && in.ok(); ++i) {
    std::string name = in.read_string(max_string);
    r.best[std::move(name)] = read_finite(in);
  }
  const std::uint64_t n_knee = in.read_count(s.knee_window + 1);
  for (std::uint64_t i = 0; i < n_knee && in.ok(); ++i) {
    knee_point p;
    p.cycle = in.read_u64();
    p.capability = read_finite(in);
    p.alignment = read_finite(in);
    r.knee.push_back(p);
  }
  r.knee_in_a_row = in.read_u64();
  return r;
}

}  // namespace

std::string encode_state(const std::map<std::string, run_state>& runs, const counters& c) {
  sdk::state_writer w(plugin_name, snapshot_version);
  w.write_u64(c.malformed_reports);
  w.write_u64(c.ignored_reports);
  w.write_u64(c.evicted_runs);
  w.write_u64(c.reports);
  w.write_u64(c.rollbacks_seen);
  w.write_u64(c.cycles_without_index);
  w.write_u64(runs.size());
  for (const auto& [id, run] : runs) {
    w.write_string(id);
    write_run(w, run);
  }
  return w.finish();
}

sdk::status decode_state(std::string_view data, const settings& s,
                         std::map<std::string, run_state>& runs, counters& c) {
  sdk::state_reader in(data);
  if (auto version = in.read_header(plugin_name, snapshot_version); !version.ok()) {
    return version.error();
  }
  counters read_counters;
  read_counters.malformed_reports = in.read_u64();
  read_counters.ignored_reports = in.read_u64();
  read_counters.evicted_runs = in.read_u64();
  read_counters.reports = in.read_u64();
  read_counters.rollbacks_seen = in.read_u64();
  read_counters.cycles_without_index = in.read_u64();
  // More runs than this monitor may keep: refuse rather than drop some arbitrarily.
  const std::uint64_t n_runs = in.read_count(s.max_runs);
  std::map<std::string, run_state> read_runs;
  for (std::uint64_t i = 0; i < n_runs && in.ok(); ++i) {
    std::string id = in.read_string(max_string);
    run_state r = read_run(in, s);
    if (in.ok() && !read_runs.emplace(std::move(id), std::move(r)).second) {
      in.fail("a run id listed twice");
    }
  }
  if (auto st = in.finish(); !st.ok()) return st;
  runs = std::move(read_runs);
  c = read_counters;
  return sdk::status::success();
}

}  // namespace loopwarden::goal_drift
