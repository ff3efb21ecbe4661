// goal_drift: watches a self-improvement loop (a system that rewrites its own prompt, code or
// weights, cycle after cycle) through its cycle reports, and
//   - trips improvement.goal_drift (rollback to the last trusted candidate) when the goal-drift
//     index crosses its threshold (a prior, re-calibrated from the run's first trusted cycles),
//     when a CUSUM on the index sees slow creep below it, when a capability metric falls more
//     than a margin below its best so far, or (opt-in) when the capability-alignment knee ratio
//     stays above a limit;
//   - trips improvement.constraint (halt) on any failed critical constraint;
//   - trips improvement.cycle_cap (halt) on a cycle beyond the cap (default 8).
// docs/monitors/goal-drift.md describes every statistic, key and decision.
//
//   config:
//     weights: {semantic: 0.25, lexical: 0.25, structural: 0.25, distributional: 0.25}
//     semantic_method: mean        # or pairwise
//     lexical_method: set          # or multiset; over n-grams of order `ngram`
//     ngram: 1
//     histogram_smoothing: 0
//     threshold: {prior: 0.44, calibration_cycles: 5, k: 3, floor: 0.1, min_sd: 0.02}
//     cusum: {enabled: true, k: 0.5, h: 4}
//     regression: {margin: 0.05, margins: {}}
//     knee: {window: 3, ratio_limit: 0, consecutive: 2}
//     max_cycles: 8
//     max_runs: 1000
//     max_metrics: 64
//     drift_breaker / constraint_breaker / cycle_cap_breaker: the three breaker names
//
// Per-run state lives in a std::map keyed by run id, so replays iterate it in the same order.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <loopwarden/plugin.hpp>
#include <loopwarden/stats/cusum.hpp>
#include <loopwarden/stats/welford.hpp>

#include "drift_measure.hpp"
#include "run_state.hpp"
#include "settings.hpp"

namespace loopwarden::goal_drift {

namespace {

std::string format_number(double v) {
  if (std::isnan(v)) return "nan";
  std::ostringstream out;
  out.precision(4);
  out << v;
  return out.str();
}

std::string or_unnamed(const std::string& id) { return id.empty() ? "(unnamed)" : id; }

// The mean of the finite values of a metric list; NaN when there is none. (NaN marks a missing
// value in loopwarden.v1.NamedValue.)
double finite_mean(const google::protobuf::RepeatedPtrField<v1::NamedValue>& metrics) {
  double sum = 0.0;
  std::size_t n = 0;
  for (const auto& m : metrics) {
    if (!std::isfinite(m.value())) continue;
    sum += m.value();
    ++n;
  }
  return n == 0 ? nan : sum / static_cast<double>(n);
}

// One capability metric below its best trusted value by more than its margin.
struct regression {
  std::string metric;
  double value = nan;
  double best = nan;
  double margin = nan;
};

// What the checks of one cycle found.
struct findings {
  drift_index index;
  double threshold = nan;
  bool calibrated = false;
  bool crossed = false;       // index > threshold
  bool cusum_signal = false;  // the CUSUM's upper statistic > h
  double cusum = nan;         // the upper statistic (NaN before calibration)
  std::vector<regression> regressions;
  double knee_ratio = nan;
  double divergence = nan;
  bool knee_failed = false;
  std::vector<const v1::ConstraintCheck*> failed_constraints;  // critical or not

  bool drift_failed() const {
    return crossed || cusum_signal || !regressions.empty() || knee_failed;
  }
};

// The monitor: per-run state in runs_, settings in s_, monitor-wide counters in counters_.
// Thread-safety: none of its own; the host calls an instance from one worker at a time (the
// monitor contract), so on_event, snapshot and restore never overlap.
class goal_drift_monitor final : public sdk::monitor {
 public:
  sdk::monitor_info info() const override {
    sdk::monitor_info i;
    i.name = "goal_drift";
    i.version = "0.1.0";
    i.description =
        "trips when a self-improvement loop drifts from its goal, breaks a "
        "constraint or runs past its cycle cap";
    i.kinds = {sdk::event_kind::cycle_report};
    sdk::breaker_spec drift;
    drift.name = s_.drift_breaker;
    drift.action = sdk::breaker_action::rollback;
    drift.severity = sdk::severity::critical;
    drift.scope = sdk::breaker_scope::run;
    drift.description =
        "the loop drifted from its goal or undid earlier gains: roll back to "
        "the last trusted candidate";
    i.breakers.push_back(drift);
    sdk::breaker_spec constraint;
    constraint.name = s_.constraint_breaker;
    constraint.action = sdk::breaker_action::halt;
    constraint.severity = sdk::severity::critical;
    constraint.scope = sdk::breaker_scope::run;
    constraint.description = "a candidate failed a critical constraint: stop the loop";
    i.breakers.push_back(constraint);
    sdk::breaker_spec cap;
    cap.name = s_.cycle_cap_breaker;
    cap.action = sdk::breaker_action::halt;
    cap.severity = sdk::severity::warning;
    cap.scope = sdk::breaker_scope::run;
    cap.description = "the loop ran more self-improvement cycles than its cap: stop";
    i.breakers.push_back(cap);
    return i;
  }

  sdk::status configure(const sdk::config_node& config) override {
    settings s;
    if (auto st = parse_settings(config, s); !st.ok()) return st;
    s_ = std::move(s);
    runs_.clear();
    counters_ = {};
    return sdk::status::success();
  }

  void on_event(const v1::Envelope& envelope, sdk::context& ctx) override {
    const v1::CycleReport& report = envelope.cycle_report();
    ++counters_.reports;
    auto it = runs_.find(envelope.run_id());
    if (it == runs_.end()) {
      if (runs_.size() >= s_.max_runs) evict_least_recent(ctx);
      it = runs_.emplace(envelope.run_id(), run_state{}).first;
    }
    it->second.last_report = counters_.reports;
    run_state& run = it->second;
    if (report.cycle() == 0 || report.cycle() <= run.last_cycle) {
      ++counters_.ignored_reports;  // cycles count from 1 and must move forward
      ctx.set_gauge("ignored_reports", static_cast<double>(counters_.ignored_reports));
      return;
    }
    start_cycle(report, run);

    check_cycle_cap(report, &run, ctx);
    findings f;
    f.failed_constraints = check_constraints(report, &run, ctx);

    const measured_drift drift = measure_drift(report, s_);
    if (drift.malformed) {
      // The drift evidence is unusable: nothing of this report enters a statistic, and it is not
      // trusted. The checks above (critical constraints, the cap) still acted on it.
      ++counters_.malformed_reports;
      ctx.set_gauge("malformed_reports", static_cast<double>(counters_.malformed_reports));
      if (should_log(counters_.malformed_reports)) {
        ctx.log(sdk::log_level::warn,
                "run " + it->first + ", cycle " + std::to_string(report.cycle()) +
                    ": malformed drift evidence ignored (" + drift.problem + "); " +
                    std::to_string(counters_.malformed_reports) + " so far");
      }
      end_cycle(report, run, false);
      return;
    }
    f.index = combine(drift, s_);
    check_drift(run, f);
    check_regression(report, run, f);
    check_knee(report, run, f);
    publish_gauges(drift, f, ctx);

    if (f.drift_failed()) trip_drift(report, run, f, ctx);
    const bool trusted =
        !std::isnan(f.index.value) && !f.drift_failed() && f.failed_constraints.empty();
    if (std::isnan(f.index.value)) {
      ++counters_.cycles_without_index;
      ctx.set_gauge("cycles_without_index", static_cast<double>(counters_.cycles_without_index));
    }
    end_cycle(report, run, trusted);
    if (trusted) learn(report, run, f, ctx, it->first);
    if (run.has_trusted) {
      ctx.set_gauge("last_trusted_cycle", static_cast<double>(run.trusted_cycle));
    }
  }

  // Nothing seen yet is nothing worth keeping (the engine then stores no state at all).
  sdk::result<std::string> snapshot() const override {
    if (runs_.empty() && counters_.reports == 0) {
      return std::string();
    }
    return encode_state(runs_, counters_);
  }

  sdk::status restore(std::string_view state) override {
    if (state.empty()) return sdk::status::success();  // nothing was worth keeping
    return decode_state(state, s_, runs_, counters_);
  }

 private:
  static bool should_log(std::uint64_t count) {
    // The first ten, then every power of two: a flood of bad reports cannot flood the log.
    return count <= 10 || (count & (count - 1)) == 0;
  }

  // Makes room for a new run: forgets the run that reported least recently (a finished run, in
  // a daemon that outlives many runs). Order by report count, not time, so replay is the same.
  void evict_least_recent(sdk::context& ctx) {
    auto oldest = runs_.begin();
    for (auto it = runs_.begin(); it != runs_.end(); ++it) {
      if (it->second.last_report < oldest->second.last_report) oldest = it;
    }
    if (oldest == runs_.end()) return;
    const std::string id = oldest->first;
    runs_.erase(oldest);
    ++counters_.evicted_runs;
    ctx.set_gauge("evicted_runs", static_cast<double>(counters_.evicted_runs));
    if (should_log(counters_.evicted_runs)) {
      ctx.log(sdk::log_level::info, "forgot run " + id + " (the least recent of max_runs " +
                                        std::to_string(s_.max_runs) + " runs) for a new run; " +
                                        std::to_string(counters_.evicted_runs) + " so far");
    }
  }

  // Before any check: the run's starting point, and whether the host has rolled back.
  void start_cycle(const v1::CycleReport& report, run_state& run) {
    if (run.last_cycle == 0) {
      // The version the run started from is trusted until a cycle shows otherwise: it is where
      // a first cycle that fails must roll back to.
      if (!report.parent_id().empty()) {
        run.has_trusted = true;
        run.trusted_cycle = 0;
        run.trusted_candidate = report.parent_id();
      }
      return;
    }
    // A cycle built on the last trusted candidate after an untrusted one: the host rolled back.
    // The CUSUM and the knee measured the abandoned branch; start them again.
    if (run.has_trusted && !report.parent_id().empty() &&
        report.parent_id() == run.trusted_candidate &&
        run.last_candidate != run.trusted_candidate) {
      ++counters_.rollbacks_seen;
      if (run.cusum) run.cusum->reset();
      run.knee.clear();
      run.knee_in_a_row = 0;
    }
  }

  static void end_cycle(const v1::CycleReport& report, run_state& run, bool trusted) {
    run.last_cycle = report.cycle();
    run.last_candidate = report.candidate_id();
    if (trusted) {
      run.has_trusted = true;
      run.trusted_cycle = report.cycle();
      run.trusted_candidate = report.candidate_id();
    }
  }

  void check_cycle_cap(const v1::CycleReport& report, const run_state* run,
                       sdk::context& ctx) const {
    ctx.set_gauge("cycle", static_cast<double>(report.cycle()));
    if (report.cycle() <= s_.max_cycles) return;
    sdk::trip_request req;
    req.breaker = s_.cycle_cap_breaker;
    req.reason = "cycle " + std::to_string(report.cycle()) + " is beyond the cap of " +
                 std::to_string(s_.max_cycles) + " self-improvement cycles";
    req.evidence = {{"cycle", std::to_string(report.cycle())},
                    {"max_cycles", std::to_string(s_.max_cycles)},
                    {"candidate_id", report.candidate_id()}};
    append_trusted(req.evidence, run);
    ctx.trip(std::move(req));
  }

  // Trips the constraint breaker on failed critical constraints; returns every failed one.
  std::vector<const v1::ConstraintCheck*> check_constraints(const v1::CycleReport& report,
                                                            const run_state* run,
                                                            sdk::context& ctx) const {
    std::vector<const v1::ConstraintCheck*> failed;
    std::vector<const v1::ConstraintCheck*> critical;
    for (const auto& c : report.constraints()) {
      if (c.passed()) continue;
      failed.push_back(&c);
      if (c.critical()) critical.push_back(&c);
    }
    ctx.set_gauge("failed_constraints", static_cast<double>(failed.size()));
    if (critical.empty()) return failed;
    sdk::trip_request req;
    req.breaker = s_.constraint_breaker;
    std::string names;
    for (const auto* c : critical) {
      if (!names.empty()) names += ",";
      names += or_unnamed(c->name());
    }
    req.reason = "cycle " + std::to_string(report.cycle()) + " (candidate " +
                 or_unnamed(report.candidate_id()) + ") failed critical constraint " + names +
                 "; stop the loop";
    req.evidence = {{"cycle", std::to_string(report.cycle())},
                    {"candidate_id", report.candidate_id()},
                    {"failed_critical", names}};
    for (const auto* c : critical) {
      req.evidence.push_back({"constraint." + or_unnamed(c->name()), c->detail()});
    }
    append_trusted(req.evidence, run);
    ctx.trip(std::move(req));
    return failed;
  }

  // The index against the threshold, and the CUSUM.
  void check_drift(run_state& run, findings& f) const {
    f.calibrated = run.calibrated;
    f.threshold = run.calibrated ? run.threshold : s_.prior;
    if (std::isnan(f.index.value)) return;
    f.crossed = f.index.value > f.threshold;
    if (run.cusum) {
      f.cusum_signal = stats::signalled_upper(run.cusum->update(f.index.value));
      f.cusum = run.cusum->upper();
    }
  }

  double margin_for(const std::string& metric) const {
    const auto it = s_.regression_margins.find(metric);
    return it == s_.regression_margins.end() ? s_.regression_margin : it->second;
  }

  void check_regression(const v1::CycleReport& report, const run_state& run, findings& f) const {
    for (const auto& m : report.capability_metrics()) {
      if (!std::isfinite(m.value())) continue;
      const auto best = run.best.find(m.name());
      if (best == run.best.end()) continue;
      const double margin = margin_for(m.name());
      if (m.value() < best->second - margin) {
        f.regressions.push_back({m.name(), m.value(), best->second, margin});
      }
    }
  }

  // Alignment lost per unit of capability gained between this cycle and `knee_window` cycles
  // before it (means over each family's metrics), and the gap when they move apart.
  void check_knee(const v1::CycleReport& report, run_state& run, findings& f) const {
    const double capability = finite_mean(report.capability_metrics());
    const double alignment = finite_mean(report.alignment_metrics());
    if (std::isnan(capability) || std::isnan(alignment)) return;
    run.knee.push_back({report.cycle(), capability, alignment});
    while (run.knee.size() > s_.knee_window + 1) run.knee.pop_front();
    if (run.knee.size() < s_.knee_window + 1) return;
    const double gain = run.knee.back().capability - run.knee.front().capability;
    const double change = run.knee.back().alignment - run.knee.front().alignment;
    f.knee_ratio = gain > 0.0 ? -change / gain : nan;
    f.divergence = gain > 0.0 && change < 0.0 ? gain - change : 0.0;
    const bool above = s_.knee_ratio_limit > 0.0 && f.knee_ratio > s_.knee_ratio_limit;
    run.knee_in_a_row = above ? run.knee_in_a_row + 1 : 0;
    f.knee_failed = above && run.knee_in_a_row >= s_.knee_consecutive;
  }

  // A trusted cycle: best-so-far values, and the calibration of the threshold.
  void learn(const v1::CycleReport& report, run_state& run, const findings& f, sdk::context& ctx,
             const std::string& run_id) const {
    for (const auto& m : report.capability_metrics()) {
      if (!std::isfinite(m.value())) continue;
      auto best = run.best.find(m.name());
      if (best == run.best.end()) {
        if (run.best.size() < s_.max_metrics) run.best.emplace(m.name(), m.value());
      } else {
        best->second = std::max(best->second, m.value());
      }
    }
    if (run.calibrated || s_.calibration_cycles == 0) return;
    run.calibration.push_back(f.index.value);
    if (run.calibration.size() < s_.calibration_cycles) return;
    stats::welford w;
    for (double v : run.calibration) w.add(v);
    run.mean = w.mean();
    run.sd = w.sample_stddev();
    const double sigma = std::max(run.sd, s_.min_sd);
    run.threshold = std::max(s_.floor, run.mean + s_.k * sigma);
    run.calibrated = true;
    if (s_.cusum_enabled) {
      run.cusum.emplace(stats::cusum_options{
          .target = run.mean, .sigma = sigma, .k = s_.cusum_k, .h = s_.cusum_h});
    }
    // From the next cycle on this is the threshold: show it now.
    ctx.set_gauge("threshold", run.threshold);
    ctx.set_gauge("calibrated", 1.0);
    ctx.log(sdk::log_level::info,
            "run " + run_id + ": drift threshold calibrated to " + format_number(run.threshold) +
                " from " + std::to_string(run.calibration.size()) + " trusted cycles (mean " +
                format_number(run.mean) + ", sd " + format_number(run.sd) + ")");
  }

  void publish_gauges(const measured_drift& drift, const findings& f, sdk::context& ctx) const {
    ctx.set_gauge("index", f.index.value);
    for (std::size_t i = 0; i < component_count; ++i) {
      ctx.set_gauge(component_names[i], drift.value[i]);
    }
    int present = 0;
    for (double w : f.index.weights) present += w > 0.0 ? 1 : 0;
    ctx.set_gauge("components_present", present);
    ctx.set_gauge("threshold", f.threshold);
    ctx.set_gauge("calibrated", f.calibrated ? 1.0 : 0.0);
    ctx.set_gauge("cusum", f.cusum);
    ctx.set_gauge("knee_ratio", f.knee_ratio);
    ctx.set_gauge("verifiable_soft_divergence", f.divergence);
    ctx.set_gauge("rollbacks_seen", static_cast<double>(counters_.rollbacks_seen));
  }

  static void append_trusted(sdk::evidence& ev, const run_state* run) {
    const bool known = run != nullptr && run->has_trusted;
    ev.push_back({"last_trusted_cycle", known ? std::to_string(run->trusted_cycle) : "none"});
    ev.push_back({"last_trusted_candidate", known ? run->trusted_candidate : "none"});
  }

  void trip_drift(const v1::CycleReport& report, const run_state& run, const findings& f,
                  sdk::context& ctx) const {
    std::vector<std::string> failed;
    if (f.crossed) failed.emplace_back("threshold");
    if (f.cusum_signal) failed.emplace_back("cusum");
    if (!f.regressions.empty()) failed.emplace_back("regression");
    if (f.knee_failed) failed.emplace_back("knee");
    std::string failed_list;
    for (const auto& x : failed) failed_list += (failed_list.empty() ? "" : ",") + x;

    sdk::trip_request req;
    req.breaker = s_.drift_breaker;
    const std::string where = "cycle " + std::to_string(report.cycle()) + " (candidate " +
                              or_unnamed(report.candidate_id()) + "): ";
    std::string what;
    if (f.crossed) {
      what = "goal drift index " + format_number(f.index.value) + " > " +
             (f.calibrated ? "calibrated" : "prior") + " threshold " + format_number(f.threshold);
    } else if (f.cusum_signal) {
      what = "goal drift index creeping up: cusum " + format_number(f.cusum) + " > " +
             format_number(s_.cusum_h) + " (index " + format_number(f.index.value) + ")";
    } else if (!f.regressions.empty()) {
      const regression& r = f.regressions.front();
      what = r.metric + " fell to " + format_number(r.value) + ", below its best " +
             format_number(r.best) + " by more than " + format_number(r.margin);
    } else {
      what = "alignment lost per unit of capability gained " + format_number(f.knee_ratio) + " > " +
             format_number(s_.knee_ratio_limit);
    }
    const std::string target = run.has_trusted
                                   ? "candidate " + or_unnamed(run.trusted_candidate) + " (cycle " +
                                         std::to_string(run.trusted_cycle) + ")"
                                   : std::string("none known");
    req.reason = where + what + "; roll back to " + target;

    req.evidence = {{"cycle", std::to_string(report.cycle())},
                    {"candidate_id", report.candidate_id()},
                    {"parent_id", report.parent_id()},
                    {"failed", failed_list}};
    append_trusted(req.evidence, &run);
    req.evidence.push_back({"index", format_number(f.index.value)});
    req.evidence.push_back({"threshold", format_number(f.threshold)});
    req.evidence.push_back({"threshold_source", f.calibrated ? "calibrated" : "prior"});
    req.evidence.push_back({"index_excess", format_number(f.index.value - f.threshold)});
    if (f.calibrated) {
      req.evidence.push_back({"calibration_mean", format_number(run.mean)});
      req.evidence.push_back({"calibration_sd", format_number(run.sd)});
    }
    req.evidence.push_back({"components", f.index.present.empty() ? "none" : f.index.present});
    std::string weights;
    for (std::size_t i = 0; i < component_count; ++i) {
      if (!(f.index.weights[i] > 0.0)) continue;
      if (!weights.empty()) weights += ",";
      weights += std::string(component_names[i]) + "=" + format_number(f.index.weights[i]);
    }
    req.evidence.push_back({"weights", weights.empty() ? "none" : weights});
    if (!std::isnan(f.cusum)) {
      req.evidence.push_back({"cusum", format_number(f.cusum)});
      req.evidence.push_back({"cusum_h", format_number(s_.cusum_h)});
    }
    for (const regression& r : f.regressions) {
      req.evidence.push_back({"regressed." + r.metric, format_number(r.value) + " < best " +
                                                           format_number(r.best) + " - margin " +
                                                           format_number(r.margin)});
    }
    if (!std::isnan(f.knee_ratio)) {
      req.evidence.push_back({"knee_ratio", format_number(f.knee_ratio)});
      req.evidence.push_back({"verifiable_soft_divergence", format_number(f.divergence)});
    }
    if (!f.failed_constraints.empty()) {
      std::string names;
      for (const auto* c : f.failed_constraints) {
        names += (names.empty() ? "" : ",") + or_unnamed(c->name());
      }
      req.evidence.push_back({"failed_constraints", names});
    }
    ctx.trip(std::move(req));
  }

  settings s_;
  std::map<std::string, run_state> runs_;  // run id -> state; ordered for deterministic replay
  counters counters_;
};

}  // namespace

}  // namespace loopwarden::goal_drift

LOOPWARDEN_PLUGIN(loopwarden::goal_drift::goal_drift_monitor);
