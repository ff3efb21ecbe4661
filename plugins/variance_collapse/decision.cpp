#include "decision.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <loopwarden/stats/welford.hpp>

namespace loopwarden::variance_collapse {

std::string format_number(double v) {
  std::ostringstream out;
  out.precision(4);
  out << v;
  return out.str();
}

void add_check(std::vector<statistic_check>& out, std::string statistic, double value, double limit,
               bool below, bool immediate) {
  statistic_check c;
  c.statistic = std::move(statistic);
  c.value = value;
  c.limit = limit;
  c.below = below;
  c.immediate = immediate;
  c.crossed = below ? value < limit : value > limit;
  out.push_back(std::move(c));
}

// ---------------------------------------------------------------------------------------------

log_ratio_series::log_ratio_series(const decision_settings& s)
    : s_(&s),
      cusum_(stats::cusum_options{.k = s.cusum_k, .h = s.cusum_h}),
      ewma_(stats::ewma_chart_options{.lambda = s.ewma_lambda, .width = s.ewma_width}),
      trend_(s.trend_window) {}

void log_ratio_series::add(std::int64_t generation, double log_ratio, double variance,
                           const std::string& prefix, std::vector<statistic_check>& checks,
                           sdk::context& ctx) {
  trend_.add(static_cast<double>(generation), log_ratio);
  const stats::line_fit fit = trend_.fit();
  ctx.set_gauge(prefix + "log_dispersion_slope", fit.slope);
  if (!std::isnan(log_ratio)) {
    ctx.set_gauge(prefix + "projected_generations_to_floor",
                  stats::generations_until_floor(log_ratio, fit.slope, s_->dispersion_floor));
  }
  // The noise of the increment: both points are estimates, assumed independent (for a recursion,
  // where the next generation is fitted to the previous one's samples, the true variance of the
  // increment is smaller, so the charts err quiet).
  double noise = variance > 0.0 ? variance : nan;
  if (previous_variance_ > 0.0) noise += previous_variance_;
  // The model's noise is the floor: generations whose spread varies more than their own samples
  // say (heavy tails in a summary, batch-to-batch effects, a host that re-samples) show it in
  // the increments already seen, whose sample variance is used when larger.
  if (std::isfinite(log_ratio)) noise = std::max(noise, observed_increment_variance());
  const double change = log_ratio - previous_log_ratio_;
  previous_log_ratio_ = log_ratio;
  previous_variance_ = variance;
  if (!(noise > 0.0) || !std::isfinite(change)) return;
  const double z = change / std::sqrt(noise);
  if (stats::signalled_lower(cusum_.update(z))) {
    add_check(checks, prefix + "log_dispersion_cusum", cusum_.lower(), s_->cusum_h, false, true);
  }
  if (stats::signalled_lower(ewma_.update(z))) {
    add_check(checks, prefix + "log_dispersion_ewma", ewma_.statistic(), ewma_.lower_limit(), true,
              true);
  }
}

double log_ratio_series::observed_increment_variance() const {
  const stats::trend_state t = trend_.state();
  const std::size_t window = t.ys.size();
  if (t.size < 5 || window == 0) return nan;  // at least 3 increments before the current one
  stats::welford increments;
  double previous = nan;
  for (std::size_t i = 0; i + 1 < t.size; ++i) {  // the last point is the current generation's
    const double y = t.ys[(t.next + window - t.size + i) % window];
    if (std::isfinite(previous)) increments.add(y - previous);
    previous = y;
  }
  return increments.sample_variance();
}

void log_ratio_series::write(sdk::state_writer& w) const {
  w.write_f64(previous_log_ratio_);
  w.write_f64(previous_variance_);
  const stats::cusum_state c = cusum_.state();
  w.write_f64(c.upper);
  w.write_f64(c.lower);
  w.write_u64(static_cast<std::uint64_t>(c.last));
  w.write_u64(c.count);
  w.write_u64(c.ignored);
  w.write_u64(c.signals);
  const stats::ewma_chart_state e = ewma_.state();
  w.write_f64(e.statistic);
  w.write_f64(e.decay);
  w.write_u64(e.count);
  w.write_u64(e.ignored);
  const stats::trend_state t = trend_.state();
  w.write_f64s(t.xs);
  w.write_f64s(t.ys);
  w.write_u64(t.size);
  w.write_u64(t.next);
  w.write_u64(t.ignored);
}

void log_ratio_series::read(sdk::state_reader& r) {
  previous_log_ratio_ = r.read_f64();
  previous_variance_ = r.read_f64();
  stats::cusum_state c;
  c.upper = r.read_f64();
  c.lower = r.read_f64();
  const std::uint64_t side = r.read_u64();
  c.last = static_cast<stats::signal_side>(std::min<std::uint64_t>(side, 3));
  c.count = r.read_u64();
  c.ignored = r.read_u64();
  c.signals = r.read_u64();
  stats::ewma_chart_state e;
  e.statistic = r.read_f64();
  e.decay = r.read_f64();
  e.count = r.read_u64();
  e.ignored = r.read_u64();
  stats::trend_state t;
  t.xs = r.read_f64s(s_->trend_window);
  t.ys = r.read_f64s(s_->trend_window);
  t.size = static_cast<std::size_t>(r.read_count(s_->trend_window));
  t.next = static_cast<std::size_t>(r.read_count(s_->trend_window));
  t.ignored = r.read_u64();
  if (!r.ok()) return;
  if (side > 3) return r.fail("a cusum signal side out of range");
  // Each restore() checks its own invariants (finite, in range, the window's size).
  try {
    cusum_.restore(c);
    ewma_.restore(e);
    trend_.restore(t);
  } catch (const std::invalid_argument& ex) {
    r.fail(ex.what());
  }
}

// ---------------------------------------------------------------------------------------------

run_decision::health& run_decision::record(std::int64_t generation) {
  if (const auto it = health_.find(generation); it != health_.end()) return it->second;
  if (health_.size() >= max_tracked_generations) {
    // A generation older than everything kept (an input far behind the others) is not recorded:
    // its health goes to a scratch record nobody reads.
    if (generation < health_.begin()->first) {
      scratch_ = health();
      return scratch_;
    }
    // The oldest goes, remembered if it was healthy (it may still be the one to roll back to).
    const auto oldest = health_.begin();
    if (oldest->second.reported && !oldest->second.crossed) {
      healthy_floor_ = oldest->first;
      healthy_floor_checkpoint_ = oldest->second.checkpoint;
    }
    health_.erase(oldest);
  }
  return health_[generation];
}

void run_decision::note_baseline(std::int64_t generation, const std::string& checkpoint) {
  health& h = record(generation);
  h.reported = true;
  if (!checkpoint.empty()) h.checkpoint = checkpoint;
}

void run_decision::note_checkpoint(std::int64_t generation, const std::string& checkpoint) {
  if (checkpoint.empty()) return;
  record(generation).checkpoint = checkpoint;
}

std::optional<std::int64_t> run_decision::last_healthy(std::int64_t before) const {
  for (auto it = health_.lower_bound(before); it != health_.begin();) {
    --it;
    if (it->second.reported && !it->second.crossed) return it->first;
  }
  if (healthy_floor_ && *healthy_floor_ < before) return healthy_floor_;
  return std::nullopt;
}

std::string run_decision::checkpoint_of(std::int64_t generation) const {
  const auto it = health_.find(generation);
  if (it != health_.end()) return it->second.checkpoint;
  if (healthy_floor_ && *healthy_floor_ == generation) return healthy_floor_checkpoint_;
  return {};
}

void run_decision::decide(std::int64_t generation, const std::vector<statistic_check>& checks,
                          const decision_settings& s, sdk::context& ctx) {
  std::vector<const statistic_check*> crossed;
  std::vector<const statistic_check*> decisive;
  std::int64_t streak_start = generation;
  for (const auto& c : checks) {
    if (!c.crossed) {
      streaks_.erase(c.statistic);
      continue;
    }
    crossed.push_back(&c);
    if (streaks_.size() >= max_statistics_per_run && streaks_.count(c.statistic) == 0) continue;
    streak& st = streaks_[c.statistic];
    if (st.in_a_row == 0) st.since = generation;
    ++st.in_a_row;
    if (c.immediate || st.in_a_row >= s.consecutive) {
      decisive.push_back(&c);
      streak_start = std::min(streak_start, c.immediate ? generation : st.since);
    }
  }
  health& h = record(generation);
  h.reported = true;
  h.crossed = h.crossed || !crossed.empty();
  if (!h.crossed && generation > tripped_at_) tripped_ = false;  // healthy again
  if (const auto healthy = last_healthy(generation + 1)) {
    ctx.set_gauge("last_healthy_generation", static_cast<double>(*healthy));
  }
  // Every generation that decides trips, not only the first: the registry ignores a trip on an
  // open breaker, and one an operator reset while the collapse persists must open again (from
  // probation, escalated) at the next such generation. Several inputs reporting the same
  // generation trip it once.
  if (decisive.empty() || (tripped_ && generation <= tripped_at_)) return;
  tripped_ = true;
  tripped_at_ = generation;

  // Roll back to before the runs of crossings that decided began: a generation an input still
  // called healthy inside them is not one to trust.
  const std::optional<std::int64_t> target = last_healthy(streak_start);
  const std::string target_name = target ? std::to_string(*target) : std::string("none");
  sdk::trip_request req;
  req.breaker = s.collapse_breaker;
  std::string names;
  for (const auto* c : decisive) {
    if (!names.empty()) names += ",";
    names += c->statistic;
  }
  const statistic_check& first = *decisive.front();
  req.reason = "generation " + std::to_string(generation) + ": " + first.statistic + " " +
               format_number(first.value) + (first.below ? " < " : " > ") +
               format_number(first.limit);
  if (decisive.size() > 1) {
    req.reason += " (and " + std::to_string(decisive.size() - 1) + " more)";
  }
  req.reason += "; roll back to generation " + target_name;
  req.evidence = {{"generation", std::to_string(generation)},
                  {"checkpoint_id", checkpoint_of(generation)},
                  {"crossed", names}};
  for (const auto* c : decisive) {
    req.evidence.push_back({c->statistic, format_number(c->value)});
    req.evidence.push_back({c->statistic + "_limit", format_number(c->limit)});
    // By how much, as a fraction of the limit: 0.1 = 10 % beyond it.
    const double excess = c->below ? (c->limit - c->value) / std::abs(c->limit)
                                   : (c->value - c->limit) / std::abs(c->limit);
    req.evidence.push_back({c->statistic + "_excess", format_number(excess)});
    for (const auto& [key, value] : c->details)
      req.evidence.push_back({c->statistic + "_" + key, value});
  }
  // Crossings still short of `consecutive` generations: context for the operator.
  for (const auto* c : crossed) {
    if (std::find(decisive.begin(), decisive.end(), c) == decisive.end()) {
      req.evidence.push_back({c->statistic + "_pending", format_number(c->value)});
    }
  }
  req.evidence.push_back({"last_healthy_generation", target_name});
  req.evidence.push_back({"last_healthy_checkpoint", target ? checkpoint_of(*target) : ""});
  ctx.trip(std::move(req));
}

void run_decision::write(sdk::state_writer& w) const {
  w.write_u64(streaks_.size());
  for (const auto& [name, st] : streaks_) {
    w.write_string(name);
    w.write_u64(st.in_a_row);
    w.write_i64(st.since);
  }
  w.write_u64(health_.size());
  for (const auto& [g, h] : health_) {
    w.write_i64(g);
    w.write_bool(h.reported);
    w.write_bool(h.crossed);
    w.write_string(h.checkpoint);
  }
  w.write_bool(healthy_floor_.has_value());
  w.write_i64(healthy_floor_.value_or(0));
  w.write_string(healthy_floor_checkpoint_);
  w.write_bool(tripped_);
  w.write_i64(tripped_at_);
}

void run_decision::read(sdk::state_reader& r) {
  constexpr std::uint64_t max_name = 4096;
  const std::uint64_t streaks = r.read_count(max_statistics_per_run);
  for (std::uint64_t i = 0; i < streaks && r.ok(); ++i) {
    std::string name = r.read_string(max_name);
    streak st;
    st.in_a_row = r.read_u64();
    st.since = r.read_i64();
    streaks_[std::move(name)] = st;
  }
  const std::uint64_t records = r.read_count(max_tracked_generations);
  for (std::uint64_t i = 0; i < records && r.ok(); ++i) {
    const std::int64_t g = r.read_i64();
    health h;
    h.reported = r.read_bool();
    h.crossed = r.read_bool();
    h.checkpoint = r.read_string(max_name);
    health_[g] = std::move(h);
  }
  const bool has_floor = r.read_bool();
  const std::int64_t floor = r.read_i64();
  if (has_floor) healthy_floor_ = floor;
  healthy_floor_checkpoint_ = r.read_string(max_name);
  tripped_ = r.read_bool();
  tripped_at_ = r.read_i64();
}

}  // namespace loopwarden::variance_collapse
