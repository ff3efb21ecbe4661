#pragma once
// One delivery pipeline (the work items of one run id) as review_bottleneck sees it: where every
// item is, per-stage flow over a sliding window of event time, the baselines, and the three
// checks (review overload, unreviewed merges, rubber stamps). docs/monitors/review-bottleneck.md
// gives every formula.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <loopwarden/v1/pipeline.pb.h>
#include <loopwarden/context.hpp>
#include <loopwarden/state_codec.hpp>
#include <loopwarden/stats/amdahl.hpp>
#include <loopwarden/stats/quantile_sketch.hpp>
#include <loopwarden/stats/queueing.hpp>
#include <loopwarden/stats/time_buckets.hpp>
#include <loopwarden/stats/windowed_quantile.hpp>

#include "settings.hpp"
#include "sketch_codec.hpp"

namespace loopwarden::plugins::review_bottleneck {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();
// Every sketch of the monitor: 2 % relative accuracy (p50 and p90 within 2 %), at most 512 bins
// (nine decades of range at that accuracy).
constexpr double sketch_accuracy = 0.02;
constexpr std::size_t sketch_bins = 512;
constexpr std::size_t no_stage = static_cast<std::size_t>(-1);

// A stage timing that passed validation: times in ns since the epoch, 0 = not reported.
struct stage_record {
  std::string_view item_id;
  std::size_t stage = 0;  // index into settings::stages
  std::int64_t enter = 0;
  std::int64_t start = 0;
  std::int64_t exit = 0;  // 0: the item is still in the stage (an enter record)
  v1::ActorKind actor = v1::ACTOR_KIND_UNSPECIFIED;
  std::uint64_t size = 0;
  std::string_view reviewer;
  v1::StageOutcome outcome = v1::STAGE_OUTCOME_UNSPECIFIED;
  bool human_reviewed = false;

  // The latest time the record carries.
  std::int64_t latest() const;
};

// Counters of one monitor instance, over all its pipelines.
struct monitor_counters {
  std::uint64_t records = 0;
  std::uint64_t malformed = 0;       // refused records (absurd times or sizes, no item id, ...)
  std::uint64_t unknown_stage = 0;   // records of a stage not in `stages`
  std::uint64_t duplicates = 0;      // records of a visit already known
  std::uint64_t late = 0;            // times older than the window kept (item state still used)
  std::uint64_t inferred_exits = 0;  // stage exits inferred from a later stage's record
  std::uint64_t evicted_items = 0;   // items forgotten to respect max_items
  std::uint64_t expired_items = 0;   // items forgotten after item_timeout without a record
  std::uint64_t evicted_reviewers = 0;
  std::uint64_t dropped_runs = 0;
  std::uint64_t evaluations = 0;
};

// Per stage, per bucket of event time.
struct flow_bucket {
  double arrivals = 0.0;
  double departures = 0.0;
  double area = 0.0;            // item-seconds in the stage inside the bucket, of departed items
  double busy = 0.0;            // item-seconds in service inside the bucket (known start times)
  double service_sum = 0.0;     // seconds of work of the departures in the bucket
  double sojourn_sum = 0.0;     // seconds in the stage of the departures in the bucket
  double named = 0.0;           // departures that name a reviewer
  double explicit_start = 0.0;  // departures with a reported start time
};

// Per bucket of event time: review health and completed items.
struct health_bucket {
  double merges = 0.0;
  double merges_reviewed = 0.0;
  double reviews = 0.0;            // human reviews with a size (a depth)
  double compared = 0.0;           // of those, reviews after the depth baseline was known
  double below_baseline = 0.0;     // of those, reviews shallower than the baseline median
  double approvals = 0.0;          // human approvals with a depth
  double stamps = 0.0;             // of those, below rubber_stamp_floor
  double completions = 0.0;        // items that merged or passed the last stage
  double lead_sum = 0.0;           // their lead time, seconds
  std::vector<double> stage_time;  // their seconds in each stage
};

// What an evaluation found for one stage over the window.
struct stage_view {
  double arrivals = 0.0;
  double departures = 0.0;
  double arrival_rate = nan_value;  // per hour
  double service_rate = nan_value;  // capacity, per hour: servers / mean work
  double utilisation = nan_value;   // arrival_rate / service_rate
  double servers = nan_value;
  double mean_work = nan_value;  // seconds
  double wip = 0.0;              // items in the stage now
  double wip_mean = nan_value;   // time-average items in the stage over the window (L)
  double mean_time = nan_value;  // mean seconds in the stage of departures (W)
  double time_p50 = nan_value;
  double time_p90 = nan_value;
  double little_gap = nan_value;
  std::vector<double> arrivals_per_bucket;
  std::vector<double> departures_per_bucket;
};

// Thread-safety: not thread-safe; owned by one monitor instance, which the host never calls
// concurrently.
class pipeline {
 public:
  pipeline(std::string run_id, const settings& s, monitor_counters& counters);

  // Applies one record. `engine_now` is ctx.now_unix_nano(), kept only to extrapolate the
  // pipeline's event clock in on_tick. The first record, and a record further ahead of this
  // pipeline's clock than max_clock_jump, are held back until the next record confirms their
  // time (then both apply; else the held one is counted malformed). Returns false when held.
  bool on_record(const stage_record& r, std::int64_t engine_now, sdk::context& ctx);

  // Advances the event clock by the engine time passed since the last record, so windows and the
  // backlog are evaluated while a pipeline is quiet. Deterministic in replay (the engine clock is
  // the events' time there).
  void on_tick(std::int64_t engine_now, sdk::context& ctx);

  std::size_t items() const { return items_.size(); }
  // Forgets the least recently updated item (counted by the caller's reason).
  void evict_oldest();

  void encode(sdk::state_writer& w) const;
  // Reads what encode() wrote in snapshot format `version` (1 to 3; 1 also held three latches,
  // skipped; 1 and 2 lack the new-evidence marks, so the first check that holds after restoring
  // one trips). Fails the reader on inconsistent data.
  void decode(sdk::state_reader& r, std::uint32_t version);

  const std::string& run_id() const { return run_id_; }

 private:
  struct item_state {
    std::size_t stage = no_stage;  // the stage it is in; no_stage between stages
    std::int64_t enter = 0;        // when it entered that stage
    bool inferred = false;         // ... inferred from the previous stage's exit
    std::int64_t first_enter = 0;  // the start of its lead time
    std::int64_t touched = 0;      // pipeline clock at its last record
    std::uint64_t size = 0;
    bool human_approved = false;
    std::uint32_t facts = 0;              // stages whose completed record was read (bit per stage)
    std::uint32_t closed_inferred = 0;    // stages whose last visit was closed by inference
    std::vector<std::int64_t> last_exit;  // per stage; 0 = never left it
    std::vector<double> stage_seconds;    // per stage, all visits
  };

  struct stage_state {
    explicit stage_state(const settings& s);

    sdk::stats::time_buckets<flow_bucket> flow;
    sdk::stats::windowed_quantile sojourn;              // seconds in the stage, by exit time
    std::map<std::string, std::int64_t> reviewer_exit;  // reviewer -> their latest exit
    std::vector<std::int64_t> recent_exits;             // min-heap: latest exits of anonymous work
    std::uint64_t wip = 0;                              // items in the stage now
    bool observed = false;                              // a record of this stage has been seen
    double baseline_work_sum = 0.0;                     // over the first baseline_items departures
    std::uint64_t baseline_work_count = 0;
  };

  void accept(const stage_record& r, std::int64_t engine_now, sdk::context& ctx);
  void advance(std::int64_t t, sdk::context& ctx);
  void apply(const stage_record& r, sdk::context& ctx);
  item_state* find_or_create(std::string_view id);
  void touch(const std::string& id, item_state& x);
  void remove_item(const std::string& id, bool tombstone);
  void enter_stage(item_state& x, std::size_t k, std::int64_t t, bool inferred);
  // Takes the item out of its stage at `exit`; with a record, reads its facts and routes the item
  // on. Returns true when the item is finished (the caller removes it).
  bool leave(const std::string& id, item_state& x, std::int64_t exit, const stage_record* r,
             sdk::context& ctx);
  void past_visit(const std::string& id, item_state& x, const stage_record& r, sdk::context& ctx);
  double account_departure(std::size_t k, std::int64_t enter, std::int64_t start, std::int64_t exit,
                           std::string_view reviewer);
  void count_arrival(std::size_t k, std::int64_t t, double delta);
  void take_facts(const std::string& id, item_state& x, std::size_t k, const stage_record& r,
                  double work_seconds, sdk::context& ctx);
  void review_facts(std::int64_t t, double work_seconds, std::uint64_t size, bool approved);
  void merge_facts(const std::string& id, item_state& x, const stage_record& r, sdk::context& ctx);
  bool route(item_state& x, std::size_t k, const stage_record& r);
  void finish(item_state& x, std::int64_t t, bool completed);

  void evaluate(std::int64_t b, sdk::context& ctx);
  stage_view view_of(std::size_t k, std::int64_t b, double span_seconds, double inflight_area);
  void expire(std::int64_t b);

  // Seconds of event time between two nanosecond times.
  static double seconds(std::int64_t from, std::int64_t to) {
    return static_cast<double>(to - from) / static_cast<double>(ns_per_second);
  }
  double baseline_work(std::size_t k) const;
  void add_overlap(std::size_t k, std::int64_t from, std::int64_t to, double flow_bucket::*field);
  void trip_bottleneck(std::int64_t b, const std::vector<stage_view>& views, std::size_t bottleneck,
                       double bottleneck_share, const sdk::stats::amdahl_measurement& amdahl,
                       const sdk::stats::net_flow_result& flow, double growth_per_hour,
                       double hours_to_max, const char* trigger, sdk::context& ctx);

  std::string run_id_;
  const settings& s_;    // owned by the monitor, which outlives its pipelines
  monitor_counters& c_;  // likewise

  // Event clock.
  bool started_ = false;
  std::int64_t clock_ = 0;          // latest event time seen (or extrapolated on tick)
  std::int64_t earliest_ = 0;       // earliest event time seen: the start of the data
  std::int64_t last_eval_ = 0;      // the bucket boundary evaluated last
  std::int64_t anchor_engine_ = 0;  // engine clock at the last record ...
  std::int64_t anchor_clock_ = 0;   // ... and this pipeline's clock then

  // A record held back until the next one confirms its time (see on_record); owns its strings.
  struct held {
    stage_record record;
    std::string item_id;
    std::string reviewer;
    std::int64_t engine_now = 0;
  };
  std::optional<held> pending_;

  std::vector<stage_state> stages_;
  sdk::stats::time_buckets<health_bucket> health_;
  sdk::stats::windowed_quantile depth_;  // review seconds per changed line, by review exit
  sdk::stats::windowed_quantile lead_;   // lead time seconds, by completion

  // Baselines: the first baseline_items human reviews with a size (or the declared value).
  sdk::stats::quantile_sketch baseline_depth_sketch_;
  double baseline_depth_ = nan_value;
  double baseline_depth_n_ = nan_value;  // +inf for a declared baseline

  // Work items: by id (ordered, for deterministic snapshots), by last update for eviction, and
  // the ids of finished items so a repeated record does not count twice.
  std::map<std::string, item_state, std::less<>> items_;
  std::set<std::pair<std::int64_t, std::string>> by_touch_;
  std::deque<std::string> done_order_;
  std::unordered_set<std::string> done_;

  // Checks.
  // No "already tripped" latches: every evaluation where a check holds trips its breaker, and
  // the registry keeps an open breaker open (a reset while the cause persists opens it again).
  bool overloaded_ = false;          // at the last evaluation
  std::int64_t overload_since_ = 0;  // the evaluation where the current overload began
  // The coverage and review-depth checks look back over the whole window, so after a reset they
  // would hold for up to a window (24 h by default) on merges and reviews the operator has already
  // judged. They trip again only on new evidence: counts of unreviewed merges, rubber stamps and
  // reviews below the baseline depth since the pipeline began, and their values at the check's
  // last trip. The backlog check needs no such mark: a backlog is a present state.
  std::uint64_t unreviewed_merges_ = 0;
  std::uint64_t stamps_ = 0;
  std::uint64_t shallow_reviews_ = 0;
  std::uint64_t unreviewed_mark_ = 0;
  std::uint64_t stamps_mark_ = 0;
  std::uint64_t shallow_mark_ = 0;
};

}  // namespace loopwarden::plugins::review_bottleneck
