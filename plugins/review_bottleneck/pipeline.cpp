#include "pipeline.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>
#include <utility>

namespace loopwarden::plugins::review_bottleneck {

namespace stats = sdk::stats;

namespace {

constexpr double seconds_per_hour = 3600.0;
constexpr double inf_value = std::numeric_limits<double>::infinity();

std::string format_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream out;
  out.precision(4);
  out << v;
  return out.str();
}

std::uint32_t bit(std::size_t k) { return std::uint32_t{1} << k; }

// The stage is over and the item moves on to the next one.
bool passing(v1::StageOutcome o) {
  return o == v1::STAGE_OUTCOME_UNSPECIFIED || o == v1::STAGE_OUTCOME_DONE ||
         o == v1::STAGE_OUTCOME_APPROVED || o == v1::STAGE_OUTCOME_PASSED;
}

// The item leaves the pipeline without merging.
bool terminal(v1::StageOutcome o) {
  return o == v1::STAGE_OUTCOME_REJECTED || o == v1::STAGE_OUTCOME_ABANDONED;
}

// A review by a person: said so, or not said but a reviewer is named.
bool human(const stage_record& r) {
  return r.actor == v1::ACTOR_KIND_HUMAN ||
         (r.actor == v1::ACTOR_KIND_UNSPECIFIED && !r.reviewer.empty());
}

}  // namespace

std::int64_t stage_record::latest() const { return std::max({enter, start, exit}); }

pipeline::stage_state::stage_state(const settings& s)
    : flow(s.bucket_ns(), s.buckets),
      sojourn(s.bucket_ns(), s.buckets, sketch_accuracy, sketch_bins) {}

pipeline::pipeline(std::string run_id, const settings& s, monitor_counters& counters)
    : run_id_(std::move(run_id)),
      s_(s),
      c_(counters),
      health_(s.bucket_ns(), s.buckets,
              health_bucket{0, 0, 0, 0, 0, 0, 0, 0, 0, std::vector<double>(s.stages.size(), 0.0)}),
      depth_(s.bucket_ns(), s.buckets, sketch_accuracy, sketch_bins),
      lead_(s.bucket_ns(), s.buckets, sketch_accuracy, sketch_bins),
      baseline_depth_sketch_(sketch_accuracy, sketch_bins) {
  stages_.reserve(s.stages.size());
  for (std::size_t k = 0; k < s.stages.size(); ++k) stages_.emplace_back(s);
  if (!std::isnan(s.baseline_depth)) {
    baseline_depth_ = s.baseline_depth;
    baseline_depth_n_ = inf_value;
  }
}

// --- the clock ---------------------------------------------------------------------------------

bool pipeline::on_record(const stage_record& r, std::int64_t engine_now, sdk::context& ctx) {
  const std::int64_t t = r.latest();
  if (started_ && !(t > clock_ && t - clock_ > s_.max_clock_jump_ns)) {
    if (pending_) {
      ++c_.malformed;  // the record held back was never confirmed: a broken timestamp
      pending_.reset();
    }
    accept(r, engine_now, ctx);
    return true;
  }
  // The first record, or one far ahead of the clock: believed only when the next record agrees
  // with it (within max_clock_jump), so one broken timestamp can't move the clock years ahead,
  // while a pipeline that resumes after a long silence loses nothing.
  if (pending_ && std::abs(t - pending_->record.latest()) <= s_.max_clock_jump_ns) {
    held held_back = std::move(*pending_);
    pending_.reset();
    held_back.record.item_id = held_back.item_id;
    held_back.record.reviewer = held_back.reviewer;
    accept(held_back.record, held_back.engine_now, ctx);
    accept(r, engine_now, ctx);
    return true;
  }
  if (pending_) ++c_.malformed;
  // held{} rather than emplace(): clang 14 (the fuzz preset) decides std::optional<held> is not
  // default-constructible, because held's member initialisers are read only once pipeline is
  // complete.
  pending_.emplace(held{});
  pending_->record = r;
  pending_->item_id = std::string(r.item_id);
  pending_->reviewer = std::string(r.reviewer);
  pending_->engine_now = engine_now;
  return false;
}

void pipeline::accept(const stage_record& r, std::int64_t engine_now, sdk::context& ctx) {
  const std::int64_t t = r.latest();
  std::int64_t first = t;
  for (std::int64_t v : {r.enter, r.start, r.exit}) {
    if (v > 0) first = std::min(first, v);
  }
  if (!started_) {
    started_ = true;
    clock_ = t;
    earliest_ = first;
    last_eval_ = stats::bucket_index(t, s_.bucket_ns()) * s_.bucket_ns();
  } else {
    earliest_ = std::min(earliest_, first);
    advance(t, ctx);
  }
  anchor_engine_ = engine_now;
  anchor_clock_ = clock_;
  apply(r, ctx);
}

void pipeline::on_tick(std::int64_t engine_now, sdk::context& ctx) {
  if (!started_ || engine_now <= anchor_engine_) return;
  const std::int64_t passed = engine_now - anchor_engine_;
  // An engine clock that leaps (a broken envelope time in a replay) is not time passing; and a
  // quiet pipeline needs at most one window of extrapolation to be evaluated empty.
  if (passed > s_.max_clock_jump_ns) return;
  advance(anchor_clock_ + std::min(passed, s_.window_ns), ctx);
}

void pipeline::advance(std::int64_t t, sdk::context& ctx) {
  if (t <= clock_) return;
  // Evaluate at the latest bucket boundary passed, before anything at or after it is applied,
  // so the window [b − window, b) holds exactly the data before b.
  const std::int64_t b = stats::bucket_index(t, s_.bucket_ns()) * s_.bucket_ns();
  clock_ = t;
  if (b > last_eval_) {
    last_eval_ = b;
    evaluate(b, ctx);
  }
}

// --- items -------------------------------------------------------------------------------------

pipeline::item_state* pipeline::find_or_create(std::string_view id) {
  auto it = items_.find(id);
  if (it != items_.end()) return &it->second;
  item_state x;
  x.last_exit.assign(stages_.size(), 0);
  x.stage_seconds.assign(stages_.size(), 0.0);
  x.touched = clock_;
  it = items_.emplace(std::string(id), std::move(x)).first;
  by_touch_.emplace(clock_, it->first);
  return &it->second;
}

void pipeline::touch(const std::string& id, item_state& x) {
  if (x.touched == clock_) return;
  by_touch_.erase({x.touched, id});
  x.touched = clock_;
  by_touch_.emplace(clock_, id);
}

void pipeline::remove_item(const std::string& id, bool tombstone) {
  auto it = items_.find(id);
  if (it == items_.end()) return;
  if (it->second.stage != no_stage) --stages_[it->second.stage].wip;
  by_touch_.erase({it->second.touched, id});
  items_.erase(it);
  if (!tombstone) return;
  if (done_order_.size() >= s_.max_items) {
    done_.erase(done_order_.front());
    done_order_.pop_front();
  }
  done_order_.push_back(id);
  done_.insert(id);
}

void pipeline::evict_oldest() {
  if (by_touch_.empty()) return;
  const std::string id = by_touch_.begin()->second;
  remove_item(id, false);
  ++c_.evicted_items;
}

void pipeline::expire(std::int64_t b) {
  while (!by_touch_.empty() && by_touch_.begin()->first < b - s_.item_timeout_ns) {
    const std::string id = by_touch_.begin()->second;
    remove_item(id, false);
    ++c_.expired_items;
  }
}

// --- records -----------------------------------------------------------------------------------

void pipeline::apply(const stage_record& r, sdk::context& ctx) {
  const std::string id(r.item_id);
  if (done_.count(id) != 0) {
    ++c_.duplicates;  // the item already finished: a repeat of one of its records
    return;
  }
  const std::size_t k = r.stage;
  stages_[k].observed = true;
  item_state& x = *find_or_create(id);
  touch(id, x);

  if (r.exit == 0) {  // an enter record
    if (x.stage == k) {
      if (!x.inferred) {
        ++c_.duplicates;  // the first report of a visit stands
        return;
      }
      if (x.enter != r.enter) {
        // The host's own enter time replaces the one inferred from the previous stage's exit.
        count_arrival(k, x.enter, -1.0);
        count_arrival(k, r.enter, 1.0);
        x.enter = r.enter;
        x.first_enter = x.first_enter == 0 ? r.enter : std::min(x.first_enter, r.enter);
      }
      x.inferred = false;
      return;
    }
    if ((x.last_exit[k] != 0 && r.enter < x.last_exit[k]) || (x.stage != no_stage && x.stage > k)) {
      ++c_.duplicates;  // an enter of a visit that is over
      return;
    }
    if (x.stage != no_stage) leave(id, x, std::max(r.enter, x.enter), nullptr, ctx);
    enter_stage(x, k, r.enter, false);
    return;
  }

  // A completed record.
  if (x.stage == k) {
    if (r.enter != 0 && x.inferred && r.enter != x.enter && r.enter <= r.exit) {
      count_arrival(k, x.enter, -1.0);
      count_arrival(k, r.enter, 1.0);
      x.enter = r.enter;
      x.first_enter = x.first_enter == 0 ? r.enter : std::min(x.first_enter, r.enter);
    }
    x.inferred = false;
    if (r.exit < x.enter) {
      ++c_.malformed;  // leaves before it entered, by the enter we already have
      return;
    }
    if (leave(id, x, r.exit, &r, ctx)) remove_item(id, true);
    return;
  }
  if ((x.closed_inferred & bit(k)) != 0 && (x.facts & bit(k)) == 0) {
    // The full record of a visit we closed when a later stage reported first: its facts
    // (reviewer, verdict, size, merge) still count; the flow was counted then.
    const double work = r.start != 0   ? seconds(r.start, r.exit)
                        : r.enter != 0 ? seconds(r.enter, r.exit)
                                       : nan_value;
    x.facts |= bit(k);
    take_facts(id, x, k, r, work, ctx);
    return;
  }
  if (x.last_exit[k] != 0 && r.exit <= x.last_exit[k]) {
    ++c_.duplicates;
    return;
  }
  if (r.enter == 0) {
    ++c_.malformed;  // a visit we never saw begin, without its enter time
    return;
  }
  if (x.stage != no_stage && x.stage > k) {
    past_visit(id, x, r, ctx);
    return;
  }
  if (x.stage != no_stage) leave(id, x, std::max(r.enter, x.enter), nullptr, ctx);
  enter_stage(x, k, r.enter, false);
  if (leave(id, x, r.exit, &r, ctx)) remove_item(id, true);
}

void pipeline::enter_stage(item_state& x, std::size_t k, std::int64_t t, bool inferred) {
  x.stage = k;
  x.enter = t;
  x.inferred = inferred;
  x.facts &= ~bit(k);
  x.closed_inferred &= ~bit(k);
  x.first_enter = x.first_enter == 0 ? t : std::min(x.first_enter, t);
  ++stages_[k].wip;
  count_arrival(k, t, 1.0);
}

bool pipeline::leave(const std::string& id, item_state& x, std::int64_t exit, const stage_record* r,
                     sdk::context& ctx) {
  const std::size_t k = x.stage;
  const double work = account_departure(k, x.enter, r != nullptr ? r->start : 0, exit,
                                        r != nullptr ? r->reviewer : std::string_view());
  x.stage_seconds[k] += seconds(x.enter, exit);
  x.last_exit[k] = std::max(x.last_exit[k], exit);
  x.stage = no_stage;
  --stages_[k].wip;
  if (r == nullptr) {
    x.closed_inferred |= bit(k);
    ++c_.inferred_exits;
    return false;
  }
  x.facts |= bit(k);
  take_facts(id, x, k, *r, work, ctx);
  return route(x, k, *r);
}

void pipeline::past_visit(const std::string& id, item_state& x, const stage_record& r,
                          sdk::context& ctx) {
  // The item is already in a later stage: this visit is history. Count its flow and facts; the
  // item stays where it is.
  const std::size_t k = r.stage;
  count_arrival(k, r.enter, 1.0);
  const double work = account_departure(k, r.enter, r.start, r.exit, r.reviewer);
  x.stage_seconds[k] += seconds(r.enter, r.exit);
  x.last_exit[k] = std::max(x.last_exit[k], r.exit);
  x.first_enter = x.first_enter == 0 ? r.enter : std::min(x.first_enter, r.enter);
  x.facts |= bit(k);
  take_facts(id, x, k, r, work, ctx);
}

bool pipeline::route(item_state& x, std::size_t k, const stage_record& r) {
  const bool merged =
      r.outcome == v1::STAGE_OUTCOME_MERGED || (k == s_.merge && passing(r.outcome));
  const bool last = k + 1 == stages_.size();
  if (merged || terminal(r.outcome) || (last && passing(r.outcome))) {
    // Only a merge or a pass through the last stage completes the item; a rejection ends it.
    finish(x, r.exit, merged || (last && passing(r.outcome)));
    return true;
  }
  if (!passing(r.outcome)) return false;  // changes requested, tests failed: it will come back
  // Hand the item to the next stage that hosts report, at this exit: a host that sends only
  // completed records still shows its queue in real time. Stages never reported are skipped.
  for (std::size_t j = k + 1; j < stages_.size(); ++j) {
    if (stages_[j].observed) {
      enter_stage(x, j, r.exit, true);
      break;
    }
  }
  return false;
}

void pipeline::finish(item_state& x, std::int64_t t, bool completed) {
  if (!completed || x.first_enter == 0 || t < x.first_enter) return;
  const double lead = seconds(x.first_enter, t);
  if (health_bucket* h = health_.at(t)) {
    h->completions += 1.0;
    h->lead_sum += lead;
    for (std::size_t j = 0; j < stages_.size(); ++j) h->stage_time[j] += x.stage_seconds[j];
  } else {
    ++c_.late;
  }
  lead_.add(t, lead);
}

void pipeline::count_arrival(std::size_t k, std::int64_t t, double delta) {
  if (flow_bucket* f = stages_[k].flow.at(t)) {
    f->arrivals += delta;
  } else {
    ++c_.late;
  }
}

void pipeline::add_overlap(std::size_t k, std::int64_t from, std::int64_t to,
                           double flow_bucket::*field) {
  if (to <= from) return;
  auto& flow = stages_[k].flow;
  const std::int64_t w = flow.width();
  flow.advance(to - 1);
  const std::int64_t oldest = flow.newest_index() - static_cast<std::int64_t>(flow.count()) + 1;
  const std::int64_t first = std::max(stats::bucket_index(from, w), oldest);
  const std::int64_t last = stats::bucket_index(to - 1, w);
  for (std::int64_t i = first; i <= last; ++i) {
    const std::int64_t start = i * w;
    const std::int64_t overlap = std::min(to, start + w) - std::max(from, start);
    if (overlap <= 0) continue;
    if (flow_bucket* f = flow.at(start)) f->*field += seconds(0, overlap);
  }
}

double pipeline::account_departure(std::size_t k, std::int64_t enter, std::int64_t start,
                                   std::int64_t exit, std::string_view reviewer) {
  stage_state& st = stages_[k];
  const stage_settings& cfg = s_.stages[k];
  const bool explicit_start = start != 0 && start >= enter && start <= exit;
  // When did work on the item begin? Reported; or, for a named reviewer who works on one item at
  // a time, when they entered or when that reviewer finished their previous item, whichever is
  // later; or, for anonymous work on `servers` parallel servers (first in, first out), when the
  // servers-th latest departure left.
  std::int64_t began = enter;
  if (explicit_start) {
    began = start;
  } else if (cfg.mode == server_mode::unlimited) {
    began = enter;
  } else if (!reviewer.empty()) {
    auto it = st.reviewer_exit.find(std::string(reviewer));
    if (it != st.reviewer_exit.end()) began = std::max(enter, std::min(it->second, exit));
  } else {
    const std::size_t servers =
        cfg.mode == server_mode::fixed ? static_cast<std::size_t>(cfg.servers) : 1;
    if (st.recent_exits.size() >= servers) {
      began = std::max(enter, std::min(st.recent_exits.front(), exit));
    }
  }
  if (!reviewer.empty()) {
    const std::string name(reviewer);
    auto it = st.reviewer_exit.find(name);
    if (it != st.reviewer_exit.end()) {
      it->second = std::max(it->second, exit);
    } else {
      if (st.reviewer_exit.size() >= s_.max_reviewers) {
        // Forget the reviewer seen least recently (a scan, only when the map is full).
        auto oldest = st.reviewer_exit.begin();
        for (auto j = st.reviewer_exit.begin(); j != st.reviewer_exit.end(); ++j) {
          if (j->second < oldest->second) oldest = j;
        }
        st.reviewer_exit.erase(oldest);
        ++c_.evicted_reviewers;
      }
      st.reviewer_exit.emplace(name, exit);
    }
  } else if (cfg.mode != server_mode::unlimited) {
    const std::size_t servers =
        cfg.mode == server_mode::fixed ? static_cast<std::size_t>(cfg.servers) : 1;
    // A min-heap of the `servers` latest exits.
    st.recent_exits.push_back(exit);
    std::push_heap(st.recent_exits.begin(), st.recent_exits.end(), std::greater<>());
    while (st.recent_exits.size() > servers) {
      std::pop_heap(st.recent_exits.begin(), st.recent_exits.end(), std::greater<>());
      st.recent_exits.pop_back();
    }
  }

  const double work = seconds(began, exit);
  const double sojourn = seconds(enter, exit);
  if (flow_bucket* f = st.flow.at(exit)) {
    f->departures += 1.0;
    f->service_sum += work;
    f->sojourn_sum += sojourn;
    if (!reviewer.empty()) f->named += 1.0;
    if (explicit_start) f->explicit_start += 1.0;
  } else {
    ++c_.late;
  }
  add_overlap(k, enter, exit, &flow_bucket::area);
  if (explicit_start || cfg.mode == server_mode::unlimited) {
    add_overlap(k, began, exit, &flow_bucket::busy);
  }
  st.sojourn.add(exit, sojourn);
  if (st.baseline_work_count < s_.baseline_items) {
    st.baseline_work_sum += work;
    ++st.baseline_work_count;
  }
  return work;
}

// --- facts: reviews and merges -----------------------------------------------------------------

void pipeline::take_facts(const std::string& id, item_state& x, std::size_t k,
                          const stage_record& r, double work_seconds, sdk::context& ctx) {
  if (r.size > 0) x.size = r.size;
  if (k == s_.review && human(r) && r.outcome != v1::STAGE_OUTCOME_ABANDONED) {
    const bool approved = passing(r.outcome) || r.outcome == v1::STAGE_OUTCOME_MERGED;
    if (approved) x.human_approved = true;
    review_facts(r.exit, work_seconds, r.size > 0 ? r.size : x.size, approved);
  }
  const bool merge = r.outcome == v1::STAGE_OUTCOME_MERGED || (k == s_.merge && passing(r.outcome));
  if (merge) merge_facts(id, x, r, ctx);
}

void pipeline::review_facts(std::int64_t t, double work_seconds, std::uint64_t size,
                            bool approved) {
  if (size == 0 || !(work_seconds >= 0.0)) return;  // no depth without a size and a duration
  const double depth = work_seconds / static_cast<double>(size);
  health_bucket* h = health_.at(t);
  if (h == nullptr) {
    ++c_.late;
  } else {
    h->reviews += 1.0;
    if (!std::isnan(baseline_depth_)) {
      h->compared += 1.0;
      if (depth < baseline_depth_) {
        h->below_baseline += 1.0;
        ++shallow_reviews_;
      }
    }
    if (approved) {
      h->approvals += 1.0;
      if (depth < s_.rubber_stamp_floor) {
        h->stamps += 1.0;
        ++stamps_;
      }
    }
  }
  depth_.add(t, depth);
  if (std::isnan(baseline_depth_)) {
    baseline_depth_sketch_.add(depth);
    if (baseline_depth_sketch_.count() >= s_.baseline_items) {
      baseline_depth_ = baseline_depth_sketch_.quantile(0.5);
      baseline_depth_n_ = static_cast<double>(baseline_depth_sketch_.count());
    }
  }
}

void pipeline::merge_facts(const std::string& id, item_state& x, const stage_record& r,
                           sdk::context& ctx) {
  const bool reviewed = r.human_reviewed || x.human_approved;
  if (health_bucket* h = health_.at(r.exit)) {
    h->merges += 1.0;
    if (reviewed) {
      h->merges_reviewed += 1.0;
    } else {
      ++unreviewed_merges_;
    }
  } else {
    ++c_.late;
  }
  if (reviewed || !s_.require_review) return;
  sdk::trip_request req;
  req.breaker = s_.unreviewed_breaker;
  req.run_id = run_id_;
  req.reason = "item " + id + " merged without a human review; require approval for merges";
  req.evidence = {{"trigger", "unreviewed_merge"},
                  {"item_id", id},
                  {"stage", s_.stages[r.stage].name},
                  {"reviewer", r.reviewer.empty() ? "none" : std::string(r.reviewer)},
                  {"size", std::to_string(x.size)},
                  {"human_reviewed", "false"},
                  {"what_to_do", "review the merged change now; merges need a human approval"}};
  ctx.trip(std::move(req));
}

// --- evaluation --------------------------------------------------------------------------------

double pipeline::baseline_work(std::size_t k) const {
  const double declared = s_.stages[k].baseline_work_seconds;
  if (!std::isnan(declared)) return declared;
  const stage_state& st = stages_[k];
  if (st.baseline_work_count < s_.baseline_items || st.baseline_work_count == 0) return nan_value;
  return st.baseline_work_sum / static_cast<double>(st.baseline_work_count);
}

stage_view pipeline::view_of(std::size_t k, std::int64_t b, double span_seconds,
                             double inflight_area) {
  stage_view v;
  const stage_state& st = stages_[k];
  const stage_settings& cfg = s_.stages[k];
  double area = inflight_area;
  double work = 0.0;
  double sojourn = 0.0;
  double named = 0.0;
  double explicit_start = 0.0;
  double max_busy = 0.0;
  double max_area = 0.0;
  v.arrivals_per_bucket.reserve(s_.buckets);
  v.departures_per_bucket.reserve(s_.buckets);
  const std::int64_t w = s_.bucket_ns();
  st.flow.for_each_in_window(b, [&](std::int64_t start, const flow_bucket& f) {
    v.arrivals += f.arrivals;
    v.departures += f.departures;
    // Buckets that ended before the first record are no data, not zero flow: leaving them out
    // keeps a young pipeline's batch variance honest.
    if (start + w > earliest_) {
      v.arrivals_per_bucket.push_back(f.arrivals);
      v.departures_per_bucket.push_back(f.departures);
    }
    area += f.area;
    work += f.service_sum;
    sojourn += f.sojourn_sum;
    named += f.named;
    explicit_start += f.explicit_start;
    max_busy = std::max(max_busy, f.busy);
    max_area = std::max(max_area, f.area);
  });
  const double width = seconds(0, w);
  v.wip = static_cast<double>(st.wip);
  v.wip_mean = area / span_seconds;
  const double lambda = v.arrivals / span_seconds;  // per second
  v.arrival_rate = lambda * seconds_per_hour;
  if (v.departures > 0.0) {
    v.mean_work = work / v.departures;
    v.mean_time = sojourn / v.departures;
  }
  switch (cfg.mode) {
    case server_mode::fixed:
      v.servers = static_cast<double>(cfg.servers);
      break;
    case server_mode::unlimited:
      // Everyone in the stage is being worked on: as many servers as the busiest bucket used.
      v.servers = std::max(1.0, std::ceil(max_area / width - 1e-9));
      break;
    case server_mode::automatic:
      if (named > 0.0) {
        double active = 0.0;
        for (const auto& [name, last] : st.reviewer_exit) {
          if (last >= b - s_.window_ns) active += 1.0;
        }
        v.servers = std::max(1.0, active);
      } else if (explicit_start > 0.0) {
        v.servers = std::max(1.0, std::ceil(max_busy / width - 1e-9));
      } else {
        v.servers = 1.0;
      }
      break;
  }
  if (v.departures > 0.0) {
    v.service_rate = v.mean_work > 0.0 ? v.servers / v.mean_work * seconds_per_hour : inf_value;
    v.utilisation = v.arrival_rate / v.service_rate;
  } else if (v.arrivals > 0.0 || v.wip > 0.0) {
    v.utilisation = inf_value;  // work arrives or waits and nothing leaves: stalled
  }
  v.little_gap = stats::little_gap(v.wip_mean, lambda, v.departures > 0.0 ? v.mean_time : 0.0);
  const stats::quantile_sketch times = st.sojourn.window(b);
  v.time_p50 = times.quantile(0.5);
  v.time_p90 = times.quantile(0.9);
  return v;
}

void pipeline::evaluate(std::int64_t b, sdk::context& ctx) {
  ++c_.evaluations;
  expire(b);
  const std::int64_t window_start = b - s_.window_ns;
  const double span = seconds(std::max(earliest_, window_start), b);
  if (!(span > 0.0)) return;

  std::vector<double> inflight(stages_.size(), 0.0);
  for (const auto& [id, x] : items_) {
    if (x.stage == no_stage || x.enter >= b) continue;
    inflight[x.stage] += seconds(std::max(x.enter, window_start), b);
  }
  std::vector<stage_view> views;
  views.reserve(stages_.size());
  for (std::size_t k = 0; k < stages_.size(); ++k) {
    views.push_back(view_of(k, b, span, inflight[k]));
  }

  // The bottleneck: the highest utilisation; on a tie, the most items in the stage.
  std::size_t bottleneck = no_stage;
  for (std::size_t k = 0; k < views.size(); ++k) {
    const double u = views[k].utilisation;
    if (std::isnan(u)) continue;
    if (bottleneck == no_stage || u > views[bottleneck].utilisation ||
        (u == views[bottleneck].utilisation && views[k].wip > views[bottleneck].wip)) {
      bottleneck = k;
    }
  }

  health_bucket h{0, 0, 0, 0, 0, 0, 0, 0, 0, std::vector<double>(stages_.size(), 0.0)};
  health_.for_each_in_window(b, [&](std::int64_t, const health_bucket& x) {
    h.merges += x.merges;
    h.merges_reviewed += x.merges_reviewed;
    h.reviews += x.reviews;
    h.compared += x.compared;
    h.below_baseline += x.below_baseline;
    h.approvals += x.approvals;
    h.stamps += x.stamps;
    h.completions += x.completions;
    h.lead_sum += x.lead_sum;
    for (std::size_t j = 0; j < h.stage_time.size() && j < x.stage_time.size(); ++j) {
      h.stage_time[j] += x.stage_time[j];
    }
  });
  const double share = bottleneck != no_stage && h.lead_sum > 0.0
                           ? h.stage_time[bottleneck] / h.lead_sum
                           : nan_value;

  // Amdahl over the stages that have a baseline.
  double base_acc = 0.0;
  double base_other = 0.0;
  double now_acc = 0.0;
  double now_other = 0.0;
  bool complete = true;
  bool any = false;
  for (std::size_t k = 0; k < stages_.size(); ++k) {
    const double bw = baseline_work(k);
    if (std::isnan(bw)) continue;
    any = true;
    const double cw = views[k].mean_work;
    if (std::isnan(cw)) complete = false;
    (s_.stages[k].accelerated ? base_acc : base_other) += bw;
    (s_.stages[k].accelerated ? now_acc : now_other) += cw;
  }
  const stats::amdahl_measurement amdahl =
      any ? stats::measure_amdahl(base_acc, base_other, complete ? now_acc : nan_value,
                                  complete ? now_other : nan_value)
          : stats::amdahl_measurement{};

  // Review overload: sustained significant growth of the review backlog with ρ > 1.
  const stage_view& rv = views[s_.review];
  const stats::net_flow_result flow =
      stats::net_flow_test(rv.arrivals_per_bucket, rv.departures_per_bucket);
  const double growth_per_hour = flow.net / span * seconds_per_hour;
  const double backlog = rv.wip;
  const double hours_to_max = stats::time_to_limit(backlog, growth_per_hour, s_.max_backlog);
  // Stalled: work arrives and waits, and nothing at all was reviewed in the window. The z test
  // would call a single burst followed by silence noise; a whole window without a review is not.
  const bool stalled =
      rv.departures == 0.0 && rv.arrivals > 0.0 && backlog >= static_cast<double>(s_.min_flow);
  const bool overloaded = rv.arrivals + rv.departures >= static_cast<double>(s_.min_flow) &&
                          rv.utilisation > 1.0 && (flow.z >= s_.growth_z || stalled);
  if (overloaded && !overloaded_) overload_since_ = b;
  overloaded_ = overloaded;
  const bool sustained = overloaded && b - overload_since_ >= s_.sustain_ns;
  const bool over_max = backlog >= s_.max_backlog && rv.utilisation > 1.0;
  // Each check trips at every evaluation where it holds, not once per episode: the registry
  // ignores a trip on an open breaker (no transition, no alert), and one an operator reset while
  // the cause persists opens again (from probation, escalated) at the next evaluation. For the
  // coverage and depth checks "persists" means new evidence since their last trip (pipeline.hpp).
  if (sustained || over_max) {
    trip_bottleneck(b, views, bottleneck, share, amdahl, flow, growth_per_hour, hours_to_max,
                    sustained ? (stalled ? "stalled" : "sustained_growth") : "max_backlog", ctx);
  }

  // Coverage: merged items with a human review.
  const double coverage = h.merges > 0.0 ? h.merges_reviewed / h.merges : nan_value;
  const bool low_coverage =
      h.merges >= static_cast<double>(s_.min_merges) && coverage < s_.coverage_floor;
  if (low_coverage && unreviewed_merges_ > unreviewed_mark_) {
    const std::uint64_t new_unreviewed = unreviewed_merges_ - unreviewed_mark_;
    unreviewed_mark_ = unreviewed_merges_;
    sdk::trip_request req;
    req.breaker = s_.unreviewed_breaker;
    req.run_id = run_id_;
    req.reason = "review coverage " + format_number(100.0 * coverage) + "% of " +
                 format_number(h.merges) + " merges in the window, below the floor of " +
                 format_number(100.0 * s_.coverage_floor) + "%; require approval for merges";
    req.evidence = {{"trigger", "coverage"},
                    {"coverage", format_number(coverage)},
                    {"coverage_floor", format_number(s_.coverage_floor)},
                    {"merges", format_number(h.merges)},
                    {"merges_reviewed", format_number(h.merges_reviewed)},
                    {"unreviewed_merges_since_last_trip", std::to_string(new_unreviewed)},
                    {"window_hours", format_number(seconds(0, s_.window_ns) / seconds_per_hour)},
                    {"review_utilisation", format_number(rv.utilisation)},
                    {"review_backlog", format_number(backlog)},
                    {"what_to_do",
                     "review the unreviewed merges; hold merges until coverage "
                     "is back above the floor"}};
    ctx.trip(std::move(req));
  }

  // Review depth and rubber stamps.
  const stats::quantile_sketch depths = depth_.window(b);
  const double depth = depths.quantile(0.5);
  const double depth_ratio = depth / baseline_depth_;
  double depth_z = nan_value;
  if (h.compared > 0.0) {
    double variance = 0.25 / h.compared;
    if (std::isfinite(baseline_depth_n_) && baseline_depth_n_ > 0.0) {
      variance += 0.25 / baseline_depth_n_;
    }
    depth_z = (h.below_baseline / h.compared - 0.5) / std::sqrt(variance);
  }
  const double stamp_share = h.approvals > 0.0 ? h.stamps / h.approvals : nan_value;
  const bool shallow = h.compared >= static_cast<double>(s_.min_reviews) &&
                       depth_ratio < s_.depth_floor && depth_z >= s_.depth_z &&
                       shallow_reviews_ > shallow_mark_;
  const bool stamping = h.approvals >= static_cast<double>(s_.min_reviews) &&
                        stamp_share > s_.stamp_share_ceiling && stamps_ > stamps_mark_;
  if (shallow || stamping) {
    const std::uint64_t new_stamps = stamps_ - stamps_mark_;
    const std::uint64_t new_shallow = shallow_reviews_ - shallow_mark_;
    shallow_mark_ = shallow_reviews_;
    stamps_mark_ = stamps_;
    sdk::trip_request req;
    req.breaker = s_.rubber_stamp_breaker;
    req.run_id = run_id_;
    if (shallow) {
      req.reason = "review depth collapsed: median " + format_number(depth) +
                   " s per changed line, " + format_number(depth_ratio) + " of the baseline's " +
                   format_number(baseline_depth_) + " (floor " + format_number(s_.depth_floor) +
                   ")";
    } else {
      req.reason = format_number(100.0 * stamp_share) + "% of " + format_number(h.approvals) +
                   " approvals took under " + format_number(s_.rubber_stamp_floor) +
                   " s per changed line (ceiling " + format_number(100.0 * s_.stamp_share_ceiling) +
                   "%)";
    }
    req.evidence = {{"trigger", shallow ? (stamping ? "depth_and_stamps" : "depth") : "stamps"},
                    {"review_depth_seconds_per_line", format_number(depth)},
                    {"baseline_depth_seconds_per_line", format_number(baseline_depth_)},
                    {"depth_ratio", format_number(depth_ratio)},
                    {"depth_floor", format_number(s_.depth_floor)},
                    {"depth_z", format_number(depth_z)},
                    {"depth_z_limit", format_number(s_.depth_z)},
                    {"reviews", format_number(h.reviews)},
                    {"approvals", format_number(h.approvals)},
                    {"rubber_stamps", format_number(h.stamps)},
                    {"rubber_stamp_share", format_number(stamp_share)},
                    {"rubber_stamps_since_last_trip", std::to_string(new_stamps)},
                    {"shallow_reviews_since_last_trip", std::to_string(new_shallow)},
                    {"stamp_share_ceiling", format_number(s_.stamp_share_ceiling)},
                    {"rubber_stamp_floor_seconds_per_line", format_number(s_.rubber_stamp_floor)},
                    {"review_utilisation", format_number(rv.utilisation)},
                    {"review_backlog", format_number(backlog)},
                    {"what_to_do",
                     "re-review the recent approvals; reduce the review load "
                     "before reviewers are asked to go faster"}};
    ctx.trip(std::move(req));
  }

  // Gauges: the latest evaluation of this pipeline.
  for (std::size_t k = 0; k < views.size(); ++k) {
    const std::string& n = s_.stages[k].name;
    const stage_view& v = views[k];
    ctx.set_gauge(n + "_arrival_rate_per_hour", v.arrival_rate);
    ctx.set_gauge(n + "_service_rate_per_hour", v.service_rate);
    ctx.set_gauge(n + "_utilisation", v.utilisation);
    ctx.set_gauge(n + "_servers", v.servers);
    ctx.set_gauge(n + "_wip", v.wip);
    ctx.set_gauge(n + "_wip_mean", v.wip_mean);
    ctx.set_gauge(n + "_time_mean_seconds", v.mean_time);
    ctx.set_gauge(n + "_time_p50_seconds", v.time_p50);
    ctx.set_gauge(n + "_time_p90_seconds", v.time_p90);
    ctx.set_gauge(n + "_work_mean_seconds", v.mean_work);
    ctx.set_gauge(n + "_little_gap", v.little_gap);
  }
  const stats::quantile_sketch leads = lead_.window(b);
  ctx.set_gauge("window_end_unix_seconds", seconds(0, b));
  ctx.set_gauge("bottleneck_stage",
                bottleneck == no_stage ? -1.0 : static_cast<double>(bottleneck));
  ctx.set_gauge("bottleneck_utilisation",
                bottleneck == no_stage ? nan_value : views[bottleneck].utilisation);
  ctx.set_gauge("bottleneck_share_of_lead_time", share);
  ctx.set_gauge("lead_time_p50_seconds", leads.quantile(0.5));
  ctx.set_gauge("lead_time_p90_seconds", leads.quantile(0.9));
  ctx.set_gauge("completed_items", h.completions);
  ctx.set_gauge("review_backlog", backlog);
  ctx.set_gauge("review_backlog_growth_per_hour", growth_per_hour);
  ctx.set_gauge("review_growth_z", flow.z);
  ctx.set_gauge("hours_to_max_backlog", hours_to_max);
  ctx.set_gauge("recommended_generation_rate_per_hour", rv.service_rate * s_.target_utilisation);
  ctx.set_gauge("amdahl_accelerated_fraction", amdahl.accelerated_fraction);
  ctx.set_gauge("amdahl_stage_speedup", amdahl.stage_speedup);
  ctx.set_gauge("amdahl_predicted_speedup", amdahl.predicted_speedup);
  ctx.set_gauge("amdahl_achieved_speedup", amdahl.achieved_speedup);
  ctx.set_gauge("amdahl_ceiling", amdahl.ceiling);
  ctx.set_gauge("review_coverage", coverage);
  ctx.set_gauge("review_depth_seconds_per_line", depth);
  ctx.set_gauge("review_depth_baseline_seconds_per_line", baseline_depth_);
  ctx.set_gauge("review_depth_ratio", depth_ratio);
  ctx.set_gauge("review_depth_z", depth_z);
  ctx.set_gauge("rubber_stamp_share", stamp_share);
  ctx.set_gauge("items_in_flight", static_cast<double>(items_.size()));
  ctx.set_gauge("records", static_cast<double>(c_.records));
  ctx.set_gauge("malformed_records", static_cast<double>(c_.malformed + c_.unknown_stage));
  ctx.set_gauge("duplicate_records", static_cast<double>(c_.duplicates));
  ctx.set_gauge("late_records", static_cast<double>(c_.late));
  ctx.set_gauge("evicted_items", static_cast<double>(c_.evicted_items));
  ctx.set_gauge("expired_items", static_cast<double>(c_.expired_items));
  ctx.set_gauge("dropped_runs", static_cast<double>(c_.dropped_runs));
}

void pipeline::trip_bottleneck(std::int64_t b, const std::vector<stage_view>& views,
                               std::size_t bottleneck, double bottleneck_share,
                               const stats::amdahl_measurement& amdahl,
                               const stats::net_flow_result& flow, double growth_per_hour,
                               double hours_to_max, const char* trigger, sdk::context& ctx) {
  const stage_view& rv = views[s_.review];
  const std::string& review = s_.stages[s_.review].name;
  const double recommended = rv.service_rate * s_.target_utilisation;
  const std::string bottleneck_name =
      bottleneck == no_stage ? std::string("none") : s_.stages[bottleneck].name;
  sdk::trip_request req;
  req.breaker = s_.bottleneck_breaker;
  req.run_id = run_id_;
  req.reason = review + " is the bottleneck: utilisation " + format_number(rv.utilisation) + " (" +
               format_number(rv.arrival_rate) + " items/h arrive, " +
               format_number(rv.service_rate) + " items/h reviewed at most), backlog " +
               format_number(rv.wip) + " growing " + format_number(growth_per_hour) +
               " items/h; throttle generation to " + format_number(recommended) + " items/h";
  req.evidence = {
      {"trigger", trigger},
      {"stage", review},
      {"bottleneck_stage", bottleneck_name},
      {"utilisation", format_number(rv.utilisation)},
      {"arrival_rate_per_hour", format_number(rv.arrival_rate)},
      {"review_service_rate_per_hour", format_number(rv.service_rate)},
      {"review_departures", format_number(rv.departures)},
      {"reviewers", format_number(rv.servers)},
      {"review_work_mean_seconds", format_number(rv.mean_work)},
      {"recommended_generation_rate_per_hour", format_number(recommended)},
      {"target_utilisation", format_number(s_.target_utilisation)},
      {"backlog", format_number(rv.wip)},
      {"backlog_growth_per_hour", format_number(growth_per_hour)},
      {"growth_z", format_number(flow.z)},
      {"growth_z_limit", format_number(s_.growth_z)},
      {"overloaded_hours",
       format_number(overloaded_ ? seconds(overload_since_, b) / seconds_per_hour : 0.0)},
      {"max_backlog", format_number(s_.max_backlog)},
      {"hours_to_max_backlog", format_number(hours_to_max)},
      {"time_in_review_p50_seconds", format_number(rv.time_p50)},
      {"time_in_review_p90_seconds", format_number(rv.time_p90)},
      {"bottleneck_share_of_lead_time", format_number(bottleneck_share)},
      {"amdahl_accelerated_fraction", format_number(amdahl.accelerated_fraction)},
      {"amdahl_stage_speedup", format_number(amdahl.stage_speedup)},
      {"amdahl_predicted_speedup", format_number(amdahl.predicted_speedup)},
      {"amdahl_achieved_speedup", format_number(amdahl.achieved_speedup)},
      {"amdahl_ceiling", format_number(amdahl.ceiling)},
      {"window_hours", format_number(seconds(0, s_.window_ns) / seconds_per_hour)},
      {"window_end_unix_seconds", format_number(seconds(0, b))},
  };
  for (std::size_t k = 0; k < views.size(); ++k) {
    req.evidence.push_back(
        {s_.stages[k].name + "_utilisation", format_number(views[k].utilisation)});
  }
  req.evidence.push_back({"what_to_do",
                          "slow generation to recommended_generation_rate_per_hour (the host's "
                          "throttle); add review capacity before resetting"});
  ctx.trip(std::move(req));
}

// --- snapshot ----------------------------------------------------------------------------------
//
// Everything learned, in a fixed order: the clock, the overload state, the baselines, every
// stage's buckets and sketches, the review-health buckets, the items and the finished ids. The
// reader checks every count against the configured limits and every bucket against its slot.

namespace {

void encode_flow(sdk::state_writer& w, const flow_bucket& f) {
  for (double v : {f.arrivals, f.departures, f.area, f.busy, f.service_sum, f.sojourn_sum, f.named,
                   f.explicit_start}) {
    w.write_f64(v);
  }
}

flow_bucket decode_flow(sdk::state_reader& r) {
  flow_bucket f;
  for (double* v : {&f.arrivals, &f.departures, &f.area, &f.busy, &f.service_sum, &f.sojourn_sum,
                    &f.named, &f.explicit_start}) {
    *v = r.read_f64();
    if (!std::isfinite(*v)) r.fail("a bucket value that is not finite");
  }
  return f;
}

void encode_health(sdk::state_writer& w, const health_bucket& h) {
  for (double v : {h.merges, h.merges_reviewed, h.reviews, h.compared, h.below_baseline,
                   h.approvals, h.stamps, h.completions, h.lead_sum}) {
    w.write_f64(v);
  }
  w.write_u64(h.stage_time.size());
  for (double v : h.stage_time) w.write_f64(v);
}

health_bucket decode_health(sdk::state_reader& r, std::size_t stages) {
  health_bucket h;
  for (double* v : {&h.merges, &h.merges_reviewed, &h.reviews, &h.compared, &h.below_baseline,
                    &h.approvals, &h.stamps, &h.completions, &h.lead_sum}) {
    *v = r.read_f64();
    if (!std::isfinite(*v)) r.fail("a bucket value that is not finite");
  }
  const std::size_t n = r.read_count(max_stages);
  if (n != stages) r.fail("a bucket of another stage count");
  h.stage_time.assign(stages, 0.0);
  for (std::size_t j = 0; j < n && r.ok(); ++j) h.stage_time[j] = r.read_f64();
  return h;
}

template <typename T, typename Encode>
void encode_ring(sdk::state_writer& w, const stats::time_buckets<T>& ring, Encode encode) {
  w.write_bool(ring.started());
  w.write_i64(ring.newest_index());
  for (std::size_t k = 0; k < ring.count(); ++k) {
    w.write_i64(ring.slot_index(k));
    encode(w, ring.slot_value(k));
  }
}

// `latest` is the pipeline's clock: no bucket of a ring is ever newer than the clock's, and a
// newest bucket far ahead of it would make every later record late.
template <typename T, typename Decode>
void decode_ring(sdk::state_reader& r, stats::time_buckets<T>& ring, std::int64_t latest,
                 Decode decode) {
  const bool started = r.read_bool();
  const std::int64_t newest = r.read_i64();
  if (r.ok() && started && newest > stats::bucket_index(latest, ring.width())) {
    r.fail("a window newer than the pipeline's clock");
  }
  for (std::size_t k = 0; k < ring.count() && r.ok(); ++k) {
    const std::int64_t index = r.read_i64();
    T value = decode(r);
    if (r.ok() && index != ring.unset && index > newest) r.fail("a bucket newer than the window");
    if (r.ok() && !ring.restore_slot(k, index, std::move(value))) {
      r.fail("a bucket in the wrong slot");
    }
  }
  if (r.ok()) ring.restore_newest(started, newest);
}

void encode_sketches(sdk::state_writer& w, const stats::windowed_quantile& q) {
  encode_ring(w, q.raw(), [](sdk::state_writer& out, const stats::quantile_sketch& s) {
    write_sketch(out, s);
  });
}

void decode_sketches(sdk::state_reader& r, stats::windowed_quantile& q, std::int64_t latest) {
  decode_ring(r, q.raw(), latest, [](sdk::state_reader& in) {
    stats::quantile_sketch s(sketch_accuracy, sketch_bins);
    read_sketch(in, s);
    return s;
  });
}

}  // namespace

void pipeline::encode(sdk::state_writer& w) const {
  w.write_bool(started_);
  for (std::int64_t v :
       {clock_, earliest_, last_eval_, anchor_engine_, anchor_clock_, overload_since_}) {
    w.write_i64(v);
  }
  w.write_bool(overloaded_);
  w.write_f64(baseline_depth_);
  w.write_f64(baseline_depth_n_);
  write_sketch(w, baseline_depth_sketch_);
  for (const stage_state& st : stages_) {
    encode_ring(w, st.flow, encode_flow);
    encode_sketches(w, st.sojourn);
    w.write_u64(st.reviewer_exit.size());
    for (const auto& [name, last] : st.reviewer_exit) {
      w.write_string(name);
      w.write_i64(last);
    }
    w.write_u64(st.recent_exits.size());
    for (std::int64_t v : st.recent_exits) w.write_i64(v);
    w.write_bool(st.observed);
    w.write_f64(st.baseline_work_sum);
    w.write_u64(st.baseline_work_count);
  }
  encode_ring(w, health_, encode_health);
  encode_sketches(w, depth_);
  encode_sketches(w, lead_);
  w.write_u64(items_.size());
  for (const auto& [id, x] : items_) {
    w.write_string(id);
    w.write_u64(x.stage == no_stage ? std::uint64_t{max_stages} : x.stage);
    w.write_i64(x.enter);
    w.write_bool(x.inferred);
    w.write_i64(x.first_enter);
    w.write_i64(x.touched);
    w.write_u64(x.size);
    w.write_bool(x.human_approved);
    w.write_u64(x.facts);
    w.write_u64(x.closed_inferred);
    for (std::int64_t v : x.last_exit) w.write_i64(v);
    for (double v : x.stage_seconds) w.write_f64(v);
  }
  w.write_u64(done_order_.size());
  for (const auto& id : done_order_) w.write_string(id);
  for (std::uint64_t v : {unreviewed_merges_, stamps_, shallow_reviews_, unreviewed_mark_,
                          stamps_mark_, shallow_mark_}) {
    w.write_u64(v);
  }
}

void pipeline::decode(sdk::state_reader& r, std::uint32_t version) {
  const std::size_t n_stages = stages_.size();
  started_ = r.read_bool();
  for (std::int64_t* v :
       {&clock_, &earliest_, &last_eval_, &anchor_engine_, &anchor_clock_, &overload_since_}) {
    *v = r.read_i64();
  }
  overloaded_ = r.read_bool();
  if (version == 1) {
    // The latches of the bottleneck, coverage and rubber-stamp checks: no longer kept (each
    // check trips while it holds), read only so that a format 1 snapshot still restores.
    for (int i = 0; i < 3; ++i) (void)r.read_bool();
  }
  baseline_depth_ = r.read_f64();
  baseline_depth_n_ = r.read_f64();
  read_sketch(r, baseline_depth_sketch_);
  if (!std::isnan(s_.baseline_depth)) {  // a declared baseline wins over a learned one
    baseline_depth_ = s_.baseline_depth;
    baseline_depth_n_ = inf_value;
  }
  for (stage_state& st : stages_) {
    decode_ring(r, st.flow, clock_, decode_flow);
    decode_sketches(r, st.sojourn, clock_);
    const std::size_t reviewers = r.read_count(s_.max_reviewers);
    st.reviewer_exit.clear();
    for (std::size_t i = 0; i < reviewers && r.ok(); ++i) {
      std::string name = r.read_string(4096);
      st.reviewer_exit[std::move(name)] = r.read_i64();
    }
    const std::size_t exits = r.read_count(100'000);
    st.recent_exits.clear();
    for (std::size_t i = 0; i < exits && r.ok(); ++i) st.recent_exits.push_back(r.read_i64());
    if (!std::is_heap(st.recent_exits.begin(), st.recent_exits.end(), std::greater<>())) {
      r.fail("anonymous exits out of heap order");
    }
    st.observed = r.read_bool();
    st.baseline_work_sum = r.read_f64();
    st.baseline_work_count = r.read_u64();
    st.wip = 0;
  }
  decode_ring(r, health_, clock_,
              [&](sdk::state_reader& in) { return decode_health(in, n_stages); });
  decode_sketches(r, depth_, clock_);
  decode_sketches(r, lead_, clock_);
  const std::size_t n_items = r.read_count(s_.max_items);
  items_.clear();
  by_touch_.clear();
  for (std::size_t i = 0; i < n_items && r.ok(); ++i) {
    std::string id = r.read_string(4096);
    item_state x;
    const std::uint64_t stage = r.read_u64();
    if (stage >= n_stages && stage != max_stages) r.fail("an item in an unknown stage");
    x.stage = stage >= n_stages ? no_stage : static_cast<std::size_t>(stage);
    x.enter = r.read_i64();
    x.inferred = r.read_bool();
    x.first_enter = r.read_i64();
    x.touched = r.read_i64();
    x.size = r.read_u64();
    x.human_approved = r.read_bool();
    x.facts = static_cast<std::uint32_t>(r.read_u64());
    x.closed_inferred = static_cast<std::uint32_t>(r.read_u64());
    x.last_exit.resize(n_stages);
    x.stage_seconds.resize(n_stages);
    for (auto& v : x.last_exit) v = r.read_i64();
    for (auto& v : x.stage_seconds) v = r.read_f64();
    if (!r.ok() || id.empty()) {
      r.fail("an item without an id");
      break;
    }
    if (x.stage != no_stage) ++stages_[x.stage].wip;
    by_touch_.emplace(x.touched, id);
    items_.emplace(std::move(id), std::move(x));
  }
  const std::size_t n_done = r.read_count(s_.max_items);
  done_order_.clear();
  done_.clear();
  for (std::size_t i = 0; i < n_done && r.ok(); ++i) {
    std::string id = r.read_string(4096);
    done_.insert(id);
    done_order_.push_back(std::move(id));
  }
  if (version >= 3) {
    for (std::uint64_t* v : {&unreviewed_merges_, &stamps_, &shallow_reviews_, &unreviewed_mark_,
                             &stamps_mark_, &shallow_mark_}) {
      *v = r.read_u64();
    }
    if (unreviewed_mark_ > unreviewed_merges_ || stamps_mark_ > stamps_ ||
        shallow_mark_ > shallow_reviews_) {
      r.fail("a check's last-trip mark above its evidence count");
    }
  } else {
    // Formats 1 and 2 kept no marks: one unit of "new" evidence each, so a check that holds at
    // the first evaluation after the restore trips, as it would have in the old format.
    unreviewed_merges_ = stamps_ = shallow_reviews_ = 1;
    unreviewed_mark_ = stamps_mark_ = shallow_mark_ = 0;
  }
}

}  // namespace loopwarden::plugins::review_bottleneck
