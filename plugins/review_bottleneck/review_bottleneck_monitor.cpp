// review_bottleneck: watches a delivery pipeline (generate -> review -> test -> merge) through
// its stage timings, and pushes back when the stage nobody accelerated -- human review -- becomes
// the bottleneck, is skipped, or is rubber-stamped. Amdahl: speeding up a fraction p of the work
// s times gives 1 / ((1 - p) + p/s), never more than 1 / (1 - p); the rest sets the pace.
//
//   config (every key optional; docs/monitors/review-bottleneck.md has each default and why):
//     stages: [generate, review, test, merge]   # pipeline order
//     accelerated: [generate]                   # the stages AI sped up
//     review_stage: review                      # the human safeguard
//     merge_stage: merge                        # "" = merges are records with outcome MERGED
//     servers: {test: unlimited}                # per stage: auto (default), unlimited or N
//     window: 24h          buckets: 24          # sliding window, re-evaluated every bucket
//     sustain: 3h (window/8)  growth_z: 3       # overload must be significant for this long
//     min_flow: 20         max_backlog: 100     target_utilisation: 0.8
//     require_review: true coverage_floor: 0.95 min_merges: 10
//     rubber_stamp_floor: 0.5  depth_floor: 0.5  depth_z: 3  stamp_share_ceiling: 0.3
//     min_reviews: 20      baseline_items: 30
//     baseline: {work_seconds: {generate: 7200}, review_seconds_per_line: 6}
//     max_items: 10000     max_reviewers: 1000  max_runs: 32
//     item_timeout: 30d    max_clock_jump: 30d
//     bottleneck_breaker: pipeline.review_bottleneck
//     unreviewed_breaker: pipeline.unreviewed_merge
//     rubber_stamp_breaker: pipeline.rubber_stamp
//
// Time is the events' own: each run's clock is the latest enter/start/exit time it has seen,
// and on_tick moves it on by the engine time passed since that run's last record (zero in a
// replay with no newer event), so a simulated pipeline may run days in seconds and replays give
// the same trips. One pipeline per run id (std::map: deterministic order).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <loopwarden/plugin.hpp>
#include <loopwarden/state_codec.hpp>

#include "pipeline.hpp"
#include "settings.hpp"

namespace {

namespace sdk = loopwarden::sdk;
namespace v1 = loopwarden::v1;
namespace rb = loopwarden::plugins::review_bottleneck;

// Format 2 dropped the checks' "already tripped" latches (the registry latches an open breaker);
// format 3 added the coverage and depth checks' new-evidence counts and marks. Formats 1 and 2
// are still read (pipeline::decode).
constexpr std::uint32_t snapshot_version = 3;
constexpr std::size_t max_id_length = 256;
constexpr std::uint64_t max_size = 100'000'000;  // changed lines: beyond this is absurd
constexpr std::int64_t max_stage_duration = 10LL * 365 * 24 * rb::ns_per_hour;

// The counters in the snapshot's order.
std::vector<std::uint64_t> counter_values(const rb::monitor_counters& c) {
  return {c.records,        c.malformed,     c.unknown_stage, c.duplicates,        c.late,
          c.inferred_exits, c.evicted_items, c.expired_items, c.evicted_reviewers, c.dropped_runs,
          c.evaluations};
}
std::vector<std::uint64_t*> counter_fields(rb::monitor_counters& c) {
  return {&c.records,       &c.malformed,     &c.unknown_stage,
          &c.duplicates,    &c.late,          &c.inferred_exits,
          &c.evicted_items, &c.expired_items, &c.evicted_reviewers,
          &c.dropped_runs,  &c.evaluations};
}

class review_bottleneck_monitor final : public sdk::monitor {
 public:
  review_bottleneck_monitor() : s_(rb::default_settings()) {}

  sdk::monitor_info info() const override {
    sdk::monitor_info i;
    i.name = "review_bottleneck";
    i.version = "0.1.0";
    i.description = "trips when human review becomes the bottleneck, is skipped or rubber-stamped";
    i.kinds = {sdk::event_kind::stage_timing};
    i.tick_interval = std::chrono::seconds(1);
    sdk::breaker_spec bottleneck;
    bottleneck.name = s_.bottleneck_breaker;
    bottleneck.action = sdk::breaker_action::throttle;
    bottleneck.severity = sdk::severity::warning;
    bottleneck.scope = sdk::breaker_scope::run;
    bottleneck.description =
        "review can't keep up: throttle generation to the recommended rate in the evidence";
    i.breakers.push_back(bottleneck);
    sdk::breaker_spec unreviewed;
    unreviewed.name = s_.unreviewed_breaker;
    unreviewed.action = sdk::breaker_action::require_approval;
    unreviewed.severity = sdk::severity::critical;
    unreviewed.scope = sdk::breaker_scope::run;
    unreviewed.description = "changes merge without a human review: merges need approval";
    i.breakers.push_back(unreviewed);
    sdk::breaker_spec stamp;
    stamp.name = s_.rubber_stamp_breaker;
    stamp.action = sdk::breaker_action::require_approval;
    stamp.severity = sdk::severity::warning;
    stamp.scope = sdk::breaker_scope::run;
    stamp.description = "review depth collapsed against its baseline: approvals are stamps";
    i.breakers.push_back(stamp);
    return i;
  }

  sdk::status configure(const sdk::config_node& config) override {
    rb::settings s;
    if (auto st = rb::parse_settings(config, s); !st.ok()) return st;
    // Pipelines keep a reference to the settings: drop them before replacing it.
    pipelines_.clear();
    s_ = std::move(s);
    counters_ = rb::monitor_counters{};
    return sdk::status::success();
  }

  void on_event(const v1::Envelope& envelope, sdk::context& ctx) override {
    ++counters_.records;
    rb::stage_record r;
    if (!read_record(envelope.stage_timing(), r)) return;
    rb::pipeline* p = pipeline_for(envelope.run_id());
    if (p == nullptr) return;
    p->on_record(r, ctx.now_unix_nano(), ctx);
    enforce_item_budget(*p);
  }

  void on_tick(sdk::context& ctx) override {
    for (auto& [run, p] : pipelines_) p->on_tick(ctx.now_unix_nano(), ctx);
  }

  sdk::result<std::string> snapshot() const override {
    sdk::state_writer w("review_bottleneck", snapshot_version);
    w.write_string(s_.fingerprint());
    for (std::uint64_t v : counter_values(counters_)) w.write_u64(v);
    w.write_u64(pipelines_.size());
    for (const auto& [run, p] : pipelines_) {
      w.write_string(run);
      p->encode(w);
    }
    return w.finish();
  }

  sdk::status restore(std::string_view state) override {
    sdk::state_reader r(state);
    const auto version = r.read_header("review_bottleneck", snapshot_version);
    if (!version.ok()) return version.error();
    const std::string fingerprint = r.read_string(4096);
    if (r.ok() && fingerprint != s_.fingerprint()) {
      return sdk::make_error(sdk::status_code::invalid_argument,
                             "review_bottleneck: the snapshot was taken with other stages or "
                             "another window (" +
                                 fingerprint + "), the config has " + s_.fingerprint());
    }
    rb::monitor_counters c;
    for (std::uint64_t* v : counter_fields(c)) *v = r.read_u64();
    // Decode into fresh pipelines and swap them in at the end, so a refused snapshot leaves the
    // monitor as it was.
    std::map<std::string, std::unique_ptr<rb::pipeline>> pipelines;
    const std::uint64_t n = r.read_count(s_.max_runs);
    std::size_t items = 0;
    for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
      std::string run = r.read_string(max_id_length);
      auto p = std::make_unique<rb::pipeline>(run, s_, counters_);
      p->decode(r, *version);
      items += p->items();
      pipelines.emplace(std::move(run), std::move(p));
    }
    if (r.ok() && items > s_.max_items) r.fail("more items than max_items");
    if (auto st = r.finish(); !st.ok()) return st.with_context("review_bottleneck");
    counters_ = c;
    pipelines_ = std::move(pipelines);
    return sdk::status::success();
  }

 private:
  // Validates a stage timing; counts and refuses what no pipeline could mean.
  bool read_record(const v1::StageTiming& t, rb::stage_record& r) {
    const auto bad = [&] {
      ++counters_.malformed;
      return false;
    };
    if (t.item_id().empty() || t.item_id().size() > max_id_length) return bad();
    if (t.reviewer().size() > max_id_length) return bad();
    std::size_t k = s_.stages.size();
    for (std::size_t i = 0; i < s_.stages.size(); ++i) {
      if (s_.stages[i].name == t.stage()) k = i;
    }
    if (k == s_.stages.size()) {
      ++counters_.unknown_stage;
      return false;
    }
    const std::int64_t enter = t.enter_unix_nano();
    const std::int64_t exit = t.exit_unix_nano();
    const std::int64_t start = t.start_unix_nano();
    if (enter < 0 || exit < 0 || start < 0 || (enter == 0 && exit == 0)) return bad();
    if (exit != 0 && enter != 0 && (exit < enter || exit - enter > max_stage_duration)) {
      return bad();
    }
    if (start != 0 && (start < enter || (exit != 0 && start > exit) || enter == 0)) return bad();
    if (t.size() > max_size) return bad();
    r.item_id = t.item_id();
    r.stage = k;
    r.enter = enter;
    r.start = start;
    r.exit = exit;
    r.actor = t.actor();
    r.size = t.size();
    r.reviewer = t.reviewer();
    r.outcome = t.outcome();
    r.human_reviewed = t.human_reviewed();
    return true;
  }

  rb::pipeline* pipeline_for(const std::string& run) {
    auto it = pipelines_.find(run);
    if (it != pipelines_.end()) return it->second.get();
    if (pipelines_.size() >= s_.max_runs) {
      ++counters_.dropped_runs;
      return nullptr;
    }
    return pipelines_.emplace(run, std::make_unique<rb::pipeline>(run, s_, counters_))
        .first->second.get();
  }

  // At most max_items items over all runs: forget the least recently updated item of the run
  // holding the most (the current run on a tie).
  void enforce_item_budget(rb::pipeline& current) {
    for (;;) {
      std::size_t total = 0;
      rb::pipeline* largest = &current;
      for (auto& [run, p] : pipelines_) {
        total += p->items();
        if (p->items() > largest->items()) largest = p.get();
      }
      if (total <= s_.max_items) return;
      largest->evict_oldest();
    }
  }

  rb::settings s_;
  rb::monitor_counters counters_;
  // run id -> pipeline; each pipeline borrows s_ and counters_, which outlive it.
  std::map<std::string, std::unique_ptr<rb::pipeline>> pipelines_;
};

}  // namespace

LOOPWARDEN_PLUGIN(review_bottleneck_monitor);
