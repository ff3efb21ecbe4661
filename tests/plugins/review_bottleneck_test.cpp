// review_bottleneck through the real engine and the real plugin: Little's law and Amdahl on
// deterministic schedules, seeded M/M/1 simulations (ρ = 0.7 and 1.3), coverage and rubber-stamp
// tables, bad input, bounded memory, the live clock, and snapshot/restore.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>
#include <loopwarden/stats/amdahl.hpp>
#include <loopwarden/stats/queueing.hpp>

using namespace loopwarden;

namespace {

constexpr std::int64_t second = 1'000'000'000;
constexpr std::int64_t minute = 60 * second;
constexpr std::int64_t hour = 60 * minute;
// 2023-11-14 00:00 UTC: on every bucket boundary the tests use.
constexpr std::int64_t t0 = 1'699'920'000LL * second;

// `top` adds lines at the top level of the config (e.g. "probation: 1h\n").
std::string yaml_for(const std::string& monitor_config, const std::string& top = "") {
  return "version: 1\n" + top + "plugin_paths: [\"" + std::string(LOOPWARDEN_BINARY_DIR) +
         "/lib/loopwarden/plugins\"]\nmonitors:\n  - name: rb\n    plugin: "
         "review_bottleneck\n    config: " +
         monitor_config + "\n";
}

std::unique_ptr<core::engine> engine_with(const std::string& monitor_config,
                                          bool event_time_clock = true,
                                          const std::string& top = "") {
  const std::string yaml = yaml_for(monitor_config, top);
  auto cfg = core::parse_config(yaml, "rb.yaml");
  INFO(yaml);
  REQUIRE(cfg.ok());
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  opts.event_time_clock = event_time_clock;
  auto e = core::engine::create(*cfg, opts);
  INFO((e.ok() ? std::string() : e.error().message()));
  REQUIRE(e.ok());
  return std::move(*e);
}

double gauge(const core::engine& e, const std::string& name) {
  for (const auto& m : e.monitors()) {
    if (m.name != "rb") continue;
    for (const auto& [n, v] : m.gauges) {
      if (n == name) return v;
    }
  }
  return std::nan("");
}

struct opening {
  std::int64_t at = -1;  // event time (ns) of the envelope that opened it
  std::map<std::string, std::string> evidence;
  v1::BreakerAction action = v1::BREAKER_ACTION_UNSPECIFIED;
  std::string reason;
};

// Sends stage timings of one run to one engine: one source, a strictly increasing seq, the
// envelope stamped with the record's latest time. Remembers the first opening of each breaker.
class feeder {
 public:
  explicit feeder(core::engine& e, std::string run = "pipe") : engine_(e), run_(std::move(run)) {
    e.breakers().add_listener([this](const v1::BreakerTransition& t) {
      const auto& b = t.breaker();
      if (b.state() != v1::BREAKER_STATE_OPEN || opened_.count(b.name()) != 0) return;
      opening o;
      o.at = now_;
      for (const auto& kv : b.evidence()) o.evidence[kv.key()] = kv.value();
      o.action = b.action();
      o.reason = b.reason();
      opened_[b.name()] = o;
    });
  }

  // `at` is the envelope's time; 0 = the record's latest time.
  void send(const v1::StageTiming& t, std::int64_t at = 0) {
    now_ = at != 0 ? at : std::max({t.enter_unix_nano(), t.exit_unix_nano(), t.start_unix_nano()});
    v1::Envelope e;
    e.set_source("pipeline/" + run_);
    e.set_run_id(run_);
    e.set_seq(++seq_);
    e.set_time_unix_nano(now_);
    *e.mutable_stage_timing() = t;
    engine_.process(e);
    engine_.tick(0);  // as replay does: ticks on the event clock
  }

  // Another kind of event, so the engine's clock moves while the pipeline is quiet.
  void heartbeat(std::int64_t at) {
    now_ = at;
    v1::Envelope e;
    e.set_source("pipeline/" + run_);
    e.set_run_id(run_);
    e.set_seq(++seq_);
    e.set_time_unix_nano(at);
    e.mutable_heartbeat();
    engine_.process(e);
    engine_.tick(0);
  }

  const opening* opened(const std::string& breaker) const {
    auto it = opened_.find(breaker);
    return it == opened_.end() ? nullptr : &it->second;
  }
  bool any_opened() const { return !opened_.empty(); }

 private:
  core::engine& engine_;
  std::string run_;
  std::uint64_t seq_ = 0;
  std::int64_t now_ = 0;
  std::map<std::string, opening> opened_;
};

v1::StageTiming timing(const std::string& item, const std::string& stage, std::int64_t enter,
                       std::int64_t exit) {
  v1::StageTiming t;
  t.set_item_id(item);
  t.set_stage(stage);
  t.set_enter_unix_nano(enter);
  t.set_exit_unix_nano(exit);
  if (exit != 0) t.set_outcome(v1::STAGE_OUTCOME_DONE);
  return t;
}

v1::StageTiming review(const std::string& item, std::int64_t enter, std::int64_t exit,
                       const std::string& reviewer, std::uint64_t size,
                       v1::StageOutcome outcome = v1::STAGE_OUTCOME_APPROVED) {
  v1::StageTiming t = timing(item, "review", enter, exit);
  t.set_reviewer(reviewer);
  t.set_actor(v1::ACTOR_KIND_HUMAN);
  t.set_size(size);
  t.set_outcome(outcome);
  return t;
}

struct timed {
  std::int64_t at;
  std::uint64_t order;  // ties: the order they were made in
  v1::StageTiming record;
};

void sort_by_time(std::vector<timed>& events) {
  std::sort(events.begin(), events.end(), [](const timed& a, const timed& b) {
    return a.at != b.at ? a.at < b.at : a.order < b.order;
  });
}

// A seeded M/M/1 review queue: Poisson arrivals (rate λ per minute) from generation into review,
// one reviewer with exponential service (rate μ per minute), first in first out. Each item is a
// generate record (one minute of model work, ending at its arrival), a review enter record at
// its arrival, and a review completed record at its departure.
struct mm1_run {
  std::vector<double> arrivals;    // minutes since t0
  std::vector<double> departures;  // minutes since t0
  std::vector<timed> events;
};

std::int64_t at_minutes(double m) { return t0 + static_cast<std::int64_t>(std::llround(m * 60e9)); }

mm1_run simulate_mm1(std::uint64_t seed, double lambda, double mu, double minutes,
                     bool enter_records = true) {
  mm1_run run;
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(lambda);
  std::exponential_distribution<double> service(mu);
  double t = 0.0;
  double free_at = 0.0;
  std::uint64_t order = 0;
  for (int i = 0;; ++i) {
    t += gap(rng);
    if (t >= minutes) break;
    const double start = std::max(t, free_at);
    const double done = start + service(rng);
    free_at = done;
    run.arrivals.push_back(t);
    run.departures.push_back(done);
    const std::string id = "item-" + std::to_string(i);
    v1::StageTiming g = timing(id, "generate", at_minutes(t - 1.0), at_minutes(t));
    g.set_actor(v1::ACTOR_KIND_MODEL);
    g.set_start_unix_nano(at_minutes(t - 1.0));
    run.events.push_back({at_minutes(t), order++, g});
    if (enter_records)
      run.events.push_back({at_minutes(t), order++, timing(id, "review", at_minutes(t), 0)});
    if (done < minutes) {
      run.events.push_back(
          {at_minutes(done), order++, review(id, at_minutes(t), at_minutes(done), "r1", 12)});
    }
  }
  sort_by_time(run.events);
  return run;
}

// The exact time-average number in review over [from, to) minutes, from the simulation itself.
double exact_mean_in_system(const mm1_run& run, double from, double to) {
  double area = 0.0;
  for (std::size_t i = 0; i < run.arrivals.size(); ++i) {
    const double a = std::max(run.arrivals[i], from);
    const double d = std::min(run.departures[i], to);
    if (d > a) area += d - a;
  }
  return area / (to - from);
}

std::size_t exact_in_system(const mm1_run& run, double at) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < run.arrivals.size(); ++i) {
    if (run.arrivals[i] < at && run.departures[i] >= at) ++n;
  }
  return n;
}

const std::string mm1_config =
    "{stages: [generate, review], window: 8h, buckets: 48, max_backlog: 1000000}";

}  // namespace

TEST_CASE("review_bottleneck Little's law holds exactly on a deterministic schedule",
          "[plugins][review_bottleneck]") {
  // Every 30 minutes three items enter review together; one reviewer takes 5 minutes each, first
  // in first out, so they leave at +5, +10 and +15 and review is empty from +15 to +30. Over any
  // window that starts and ends on a 30-minute mark: L = (5 + 10 + 15) / 30 = 1 item,
  // λ = 3 / 30 min = 6 per hour, W = (5 + 10 + 15) / 3 = 10 min, and λW = 1 = L exactly.
  // Work (inferred from the reviewer's previous exit) is 5 min: capacity 12 per hour, ρ = 0.5.
  auto e = engine_with("{stages: [generate, review], window: 2h, buckets: 12}");
  feeder f(*e);
  std::vector<timed> events;
  std::uint64_t order = 0;
  for (int slot = 0; slot < 20; ++slot) {
    const std::int64_t base = t0 + slot * 30 * minute;
    for (int j = 0; j < 3; ++j) {
      const std::string id = "s" + std::to_string(slot) + "-" + std::to_string(j);
      events.push_back({base, order++, timing(id, "review", base, 0)});
      events.push_back({base + (j + 1) * 5 * minute, order++,
                        review(id, base, base + (j + 1) * 5 * minute, "alice", 100)});
    }
  }
  sort_by_time(events);
  // Stop right after the enter records at 8:00: the last evaluation is at that boundary.
  const std::int64_t stop = t0 + 8 * hour;
  for (const auto& ev : events) {
    f.send(ev.record);
    if (ev.at >= stop) break;
  }
  CHECK(gauge(*e, "window_end_unix_seconds") == static_cast<double>(stop / second));
  CHECK(gauge(*e, "review_wip_mean") == Approx(1.0).epsilon(1e-12));
  CHECK(gauge(*e, "review_arrival_rate_per_hour") == Approx(6.0).epsilon(1e-12));
  CHECK(gauge(*e, "review_time_mean_seconds") == Approx(600.0).epsilon(1e-12));
  CHECK(gauge(*e, "review_little_gap") == Approx(0.0).margin(1e-12));
  CHECK(gauge(*e, "review_work_mean_seconds") == Approx(300.0).epsilon(1e-12));
  CHECK(gauge(*e, "review_service_rate_per_hour") == Approx(12.0).epsilon(1e-12));
  CHECK(gauge(*e, "review_utilisation") == Approx(0.5).epsilon(1e-12));
  CHECK(gauge(*e, "review_servers") == 1.0);
  // Time in review: 5, 10 and 15 minutes in equal shares; the sketch is within 2 %.
  CHECK(gauge(*e, "review_time_p50_seconds") == Approx(600.0).epsilon(0.02));
  CHECK(gauge(*e, "review_time_p90_seconds") == Approx(900.0).epsilon(0.02));
  CHECK_FALSE(f.any_opened());
}

TEST_CASE("review_bottleneck measures Amdahl on a deterministic schedule as the formula says",
          "[plugins][review_bottleneck]") {
  // One item at a time. Baseline (the first 30 items): generate 80 min, review 20 min. Then the
  // model generates ten times faster (8 min) and review stays at 20 min: p = 0.8, s = 10,
  // predicted = achieved = 1 / (0.2 + 0.08) = 3.5714, ceiling 5.
  auto e = engine_with("{stages: [generate, review], window: 4h, buckets: 4}");
  feeder f(*e);
  std::int64_t t = t0;
  auto item = [&](int i, std::int64_t generate) {
    const std::string id = "c" + std::to_string(i);
    v1::StageTiming g = timing(id, "generate", t, t + generate);
    g.set_start_unix_nano(t);
    g.set_actor(v1::ACTOR_KIND_MODEL);
    f.send(g);
    v1::StageTiming r = review(id, t + generate, t + generate + 20 * minute, "alice", 200);
    r.set_start_unix_nano(t + generate);
    f.send(r);
    t += generate + 20 * minute;
  };
  for (int i = 0; i < 30; ++i) item(i, 80 * minute);
  // The window still holds baseline work: no speed-up yet.
  CHECK(gauge(*e, "amdahl_stage_speedup") == Approx(1.0).epsilon(1e-12));
  CHECK(gauge(*e, "amdahl_achieved_speedup") == Approx(1.0).epsilon(1e-12));
  for (int i = 30; i < 120; ++i) item(i, 8 * minute);
  const double predicted = sdk::stats::amdahl_speedup(0.8, 10.0);
  CHECK(predicted == Approx(3.5714285714).epsilon(1e-10));
  CHECK(gauge(*e, "amdahl_accelerated_fraction") == Approx(0.8).epsilon(1e-12));
  CHECK(gauge(*e, "amdahl_stage_speedup") == Approx(10.0).epsilon(1e-12));
  CHECK(gauge(*e, "amdahl_predicted_speedup") == Approx(predicted).epsilon(1e-12));
  CHECK(gauge(*e, "amdahl_achieved_speedup") == Approx(predicted).epsilon(1e-12));
  CHECK(gauge(*e, "amdahl_ceiling") == Approx(5.0).epsilon(1e-12));
  // The achieved speed-up is the timeline's: 100 minutes an item before, 28 after.
  CHECK(gauge(*e, "amdahl_achieved_speedup") == Approx(100.0 / 28.0).epsilon(1e-12));
  // Review is now the bottleneck: ρ = 20 / 28 against 8 / 28, and 20 of every 28 minutes of
  // lead time are spent in it.
  CHECK(gauge(*e, "bottleneck_stage") == 1.0);
  // (within 10 %: a 4 h window holds 8 or 9 of the 28-minute items)
  CHECK(gauge(*e, "review_utilisation") == Approx(20.0 / 28.0).epsilon(0.1));
  CHECK(gauge(*e, "generate_utilisation") == Approx(8.0 / 28.0).epsilon(0.1));
  CHECK(gauge(*e, "bottleneck_share_of_lead_time") == Approx(20.0 / 28.0).epsilon(1e-9));
  CHECK(gauge(*e, "lead_time_p50_seconds") == Approx(28.0 * 60).epsilon(0.02));
  CHECK_FALSE(f.any_opened());
}

TEST_CASE("review_bottleneck M/M/1 at rho 0.7 gives the mean number in system and never trips",
          "[plugins][review_bottleneck]") {
  // λ = 0.7, μ = 1 per minute: L = ρ / (1 − ρ) = 2.333. 300 non-overlapping 8-hour windows after
  // one window of warm-up; each window's time-average is a batch mean. The asymptotic variance
  // of the time-average of an M/M/1 queue length is 2ρ(1 + ρ) / (μ (1 − ρ)^4) per unit time
  // (293.8 here), so one 480-minute window has a standard deviation of about
  // sqrt(293.8 / 480) = 0.78 and the mean of 300 about 0.045. The tolerance is four standard
  // errors of the batch means, which must themselves agree with that figure within a factor 2.
  constexpr double lambda = 0.7;
  constexpr double mu = 1.0;
  constexpr int windows = 301;
  constexpr double window_minutes = 480.0;
  const mm1_run run = simulate_mm1(20261203, lambda, mu, windows * window_minutes + 30.0);
  auto e = engine_with(mm1_config);
  feeder f(*e);
  std::vector<double> batch;
  std::vector<double> utilisation;
  double next = window_minutes;  // the end of the next window to read
  for (const auto& ev : run.events) {
    f.send(ev.record);
    const double at = static_cast<double>(ev.at - t0) / minute;
    if (at < next) continue;
    // This record was the first at or after `next`: the monitor evaluated the window ending there.
    REQUIRE(gauge(*e, "window_end_unix_seconds") == static_cast<double>(t0 / second) + next * 60.0);
    const double measured = gauge(*e, "review_wip_mean");
    INFO("window ending at minute " << next);
    REQUIRE(gauge(*e, "review_backlog") == static_cast<double>(exact_in_system(run, next)));
    // The monitor's accounting is exact: the same time-average the simulation has (the first
    // window is shorter: the data start with the first record).
    if (next > window_minutes) {
      REQUIRE(measured ==
              Approx(exact_mean_in_system(run, next - window_minutes, next)).epsilon(1e-9));
    }
    if (next > window_minutes) {  // the first window started empty: warm-up
      batch.push_back(measured);
      utilisation.push_back(gauge(*e, "review_utilisation"));
    }
    next += window_minutes;
  }
  REQUIRE(batch.size() >= 299);
  auto mean_and_se = [](const std::vector<double>& xs) {
    double m = 0.0;
    for (double x : xs) m += x;
    m /= static_cast<double>(xs.size());
    double ss = 0.0;
    for (double x : xs) ss += (x - m) * (x - m);
    const double sd = std::sqrt(ss / static_cast<double>(xs.size() - 1));
    return std::pair{m, sd / std::sqrt(static_cast<double>(xs.size()))};
  };
  const auto [mean_l, se_l] = mean_and_se(batch);
  const double expected = sdk::stats::mm1_mean_in_system(lambda / mu);
  const double se_theory =
      std::sqrt(2 * 0.7 * 1.7 / std::pow(0.3, 4) / (window_minutes * batch.size()));
  CAPTURE(mean_l, se_l, se_theory, expected);
  CHECK(expected == Approx(7.0 / 3.0));
  CHECK(se_l > se_theory / 2);
  CHECK(se_l < se_theory * 2);
  CHECK(std::abs(mean_l - expected) <= 4 * se_l);
  const auto [mean_u, se_u] = mean_and_se(utilisation);
  CAPTURE(mean_u, se_u);
  CHECK(std::abs(mean_u - 0.7) <= 4 * se_u);
  // At ρ = 0.7 nothing trips in 100 days of reviews.
  CHECK_FALSE(f.any_opened());
  CHECK(gauge(*e, "bottleneck_stage") == 1.0);
}

TEST_CASE("review_bottleneck never trips at rho 0.7 or 0.9 across seeds",
          "[plugins][review_bottleneck]") {
  // 20 days of reviews per seed: at ρ = 0.7 with an 8-hour window and with the defaults (the
  // four default stages, of which the host reports two; a 24-hour window), and at ρ = 0.9 (a busy
  // team, still stable).
  struct row {
    double rho;
    int seeds;
    std::string config;
  };
  const std::vector<row> rows = {
      {0.7, 30, "{stages: [generate, review], window: 8h, buckets: 48}"},
      {0.7, 10, "{}"},
      {0.9, 20, "{stages: [generate, review], window: 8h, buckets: 48}"},
  };
  for (const auto& r : rows) {
    int tripped = 0;
    for (int seed = 0; seed < r.seeds; ++seed) {
      const mm1_run run = simulate_mm1(1000 + seed, r.rho, 1.0, 20 * 24 * 60.0);
      auto e = engine_with(r.config);
      feeder f(*e);
      for (const auto& ev : run.events) f.send(ev.record);
      if (f.any_opened()) ++tripped;
    }
    INFO("rho " << r.rho << ", config " << r.config << ": " << tripped << " of " << r.seeds
                << " runs tripped");
    CHECK(tripped == 0);
  }
}

TEST_CASE("review_bottleneck with its defaults trips at rho 1.3 naming review",
          "[plugins][review_bottleneck]") {
  // No configuration at all: the default stages, window and thresholds; the host reports only
  // generation and review.
  const mm1_run run = simulate_mm1(78, 1.3, 1.0, 2 * 24 * 60.0);
  auto e = engine_with("{}");
  feeder f(*e);
  for (const auto& ev : run.events) f.send(ev.record);
  const opening* o = f.opened("pipeline.review_bottleneck");
  REQUIRE(o != nullptr);
  CHECK(o->evidence.at("stage") == "review");
  CHECK(o->evidence.at("bottleneck_stage") == "review");
  const double defaults_opened_after = static_cast<double>(o->at - t0) / hour;
  CAPTURE(defaults_opened_after, o->evidence.at("trigger"));
  CHECK(defaults_opened_after < 12.0);
  CHECK(f.opened("pipeline.unreviewed_merge") == nullptr);
  CHECK(f.opened("pipeline.rubber_stamp") == nullptr);
}

TEST_CASE(
    "review_bottleneck M/M/1 at rho 1.3 grows the backlog at lambda minus mu and trips naming "
    "review",
    "[plugins][review_bottleneck]") {
  // λ = 1.3, μ = 1 per minute: the backlog grows by 0.3 an minute (18 an hour). Over 20 000
  // minutes arrivals and departures are Poisson, so the growth rate's standard error is
  // sqrt((λ + μ) T) / T = 0.0107 a minute: the check allows four of them.
  constexpr double lambda = 1.3;
  constexpr double mu = 1.0;
  constexpr double minutes = 20'000.0;
  const mm1_run run = simulate_mm1(77, lambda, mu, minutes);
  auto e = engine_with(mm1_config + std::string());
  feeder f(*e);
  std::vector<double> growth;  // per hour, one per non-overlapping window
  double next = 480.0;
  for (const auto& ev : run.events) {
    f.send(ev.record);
    const double at = static_cast<double>(ev.at - t0) / minute;
    if (at < next) continue;
    REQUIRE(gauge(*e, "review_backlog") == static_cast<double>(exact_in_system(run, next)));
    growth.push_back(gauge(*e, "review_backlog_growth_per_hour"));
    next += 480.0;
  }
  // The last evaluation, at the last 10-minute boundary the records passed.
  const double end = gauge(*e, "window_end_unix_seconds") / 60.0 - static_cast<double>(t0 / minute);
  const double backlog = static_cast<double>(exact_in_system(run, end));
  const double rate = backlog / end;  // per minute, from an empty start
  const double se = std::sqrt((lambda + mu) * end) / end;
  CAPTURE(backlog, end, rate, se);
  CHECK(std::abs(rate - (lambda - mu)) <= 4 * se);
  CHECK(gauge(*e, "review_backlog") == backlog);
  double mean_growth = 0.0;
  for (double g : growth) mean_growth += g;
  mean_growth /= static_cast<double>(growth.size());
  // The windows' growth gauges average the same slope, per hour (each window's own noise is
  // sqrt(2.3 · 480) / 8 = 4.2 an hour; 41 windows: 0.65).
  CAPTURE(mean_growth);
  CHECK(std::abs(mean_growth - 60 * (lambda - mu)) <= 4 * 4.2 / std::sqrt(growth.size()));

  const opening* o = f.opened("pipeline.review_bottleneck");
  REQUIRE(o != nullptr);
  CHECK(o->action == v1::BREAKER_ACTION_THROTTLE);
  CHECK(o->evidence.at("stage") == "review");
  CHECK(o->evidence.at("bottleneck_stage") == "review");
  CHECK(o->evidence.at("trigger") == "sustained_growth");
  CHECK(std::stod(o->evidence.at("utilisation")) > 1.0);
  // The recommended generation rate is review's capacity (60 an hour) × 0.8. The capacity is
  // measured over the window's D reviews, a mean of D exponential services: a relative standard
  // error of 1/sqrt(D); four of them are allowed.
  const double reviews = std::stod(o->evidence.at("review_departures"));
  CAPTURE(reviews);
  CHECK(reviews >= 20.0);
  CHECK(std::stod(o->evidence.at("review_service_rate_per_hour")) ==
        Approx(60.0).epsilon(4.0 / std::sqrt(reviews)));
  CHECK(std::stod(o->evidence.at("recommended_generation_rate_per_hour")) ==
        Approx(0.8 * std::stod(o->evidence.at("review_service_rate_per_hour"))).epsilon(1e-3));
  CHECK(std::stod(o->evidence.at("growth_z")) >= 3.0);
  // Detection: once the net-flow z passes 3 it must hold for `sustain` (window / 8 = 1 h), so
  // not before an hour, and well within a day.
  const double opened_after = static_cast<double>(o->at - t0) / hour;
  CAPTURE(opened_after);
  CHECK(opened_after > 1.0);
  CHECK(opened_after < 24.0);
  CHECK(o->reason.find("review is the bottleneck") == 0);
}

TEST_CASE("review_bottleneck trips at max_backlog when the queue passes it still growing",
          "[plugins][review_bottleneck]") {
  // The same overload with the default max_backlog (100): it gets there (about 333 minutes in)
  // before the growth has been significant for `sustain`.
  const mm1_run run = simulate_mm1(77, 1.3, 1.0, 24 * 60.0);
  auto e = engine_with("{stages: [generate, review], window: 8h, buckets: 48, sustain: 6h}");
  feeder f(*e);
  for (const auto& ev : run.events) f.send(ev.record);
  const opening* o = f.opened("pipeline.review_bottleneck");
  REQUIRE(o != nullptr);
  CHECK(o->evidence.at("trigger") == "max_backlog");
  CHECK(std::stod(o->evidence.at("backlog")) >= 100.0);
  CHECK(std::stod(o->evidence.at("hours_to_max_backlog")) == 0.0);
}

TEST_CASE("review_bottleneck coverage rules on a table of items", "[plugins][review_bottleneck]") {
  // 20 items through generate, review and merge, ten minutes apart. Each row says which items
  // are handled differently and how; the others are approved by a person before they merge.
  enum class how { human, model, none, flag_only, changes_requested };
  struct row {
    std::string name;
    std::string config;
    std::vector<int> items;
    how treatment;
    bool trips;
    std::string trigger;
  };
  const std::vector<row> rows = {
      {"every merge approved by a person", "{}", {}, how::human, false, ""},
      {"a merge with no review", "{}", {7}, how::none, true, "unreviewed_merge"},
      {"a model's review is not a human review", "{}", {7}, how::model, true, "unreviewed_merge"},
      {"the merge record says a person reviewed it", "{}", {7}, how::flag_only, false, ""},
      {"changes requested then merged without another review",
       "{}",
       {7},
       how::changes_requested,
       true,
       "unreviewed_merge"},
      // Without require_review only coverage over the window counts. The unreviewed items come
      // last, so that every evaluation sees the whole table.
      {"coverage 19 of 20 is at the floor of 0.95",
       "{require_review: false}",
       {19},
       how::none,
       false,
       ""},
      {"coverage 18 of 20 is below the floor",
       "{require_review: false}",
       {18, 19},
       how::none,
       true,
       "coverage"},
      {"coverage 0.9 but fewer merges than min_merges",
       "{require_review: false, min_merges: 25}",
       {18, 19},
       how::none,
       false,
       ""},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto e = engine_with(r.config);
    feeder f(*e);
    for (int i = 0; i < 20; ++i) {
      const std::string id = "pr-" + std::to_string(i);
      const std::int64_t t = t0 + i * 10 * minute;
      const bool special = std::find(r.items.begin(), r.items.end(), i) != r.items.end();
      const how h = special ? r.treatment : how::human;
      f.send(timing(id, "generate", t, t + minute));
      if (h == how::human || h == how::changes_requested) {
        f.send(review(
            id, t + minute, t + 2 * minute, "alice", 50,
            h == how::human ? v1::STAGE_OUTCOME_APPROVED : v1::STAGE_OUTCOME_CHANGES_REQUESTED));
      } else if (h == how::model) {
        v1::StageTiming m = review(id, t + minute, t + 2 * minute, "review-bot", 50);
        m.set_actor(v1::ACTOR_KIND_MODEL);
        f.send(m);
      }
      v1::StageTiming merge = timing(id, "merge", t + 2 * minute, t + 3 * minute);
      merge.set_outcome(v1::STAGE_OUTCOME_MERGED);
      merge.set_human_reviewed(h == how::flag_only);
      f.send(merge);
    }
    f.heartbeat(t0 + 6 * hour);  // the engine clock moves on: the pipeline is evaluated
    const opening* o = f.opened("pipeline.unreviewed_merge");
    CHECK((o != nullptr) == r.trips);
    if (o != nullptr) {
      CHECK(o->evidence.at("trigger") == r.trigger);
      CHECK(o->action == v1::BREAKER_ACTION_REQUIRE_APPROVAL);
      if (r.trigger == "unreviewed_merge") CHECK(o->evidence.at("item_id") == "pr-7");
      if (r.trigger == "coverage") CHECK(o->evidence.at("coverage") == "0.9");
    }
    const double merges = 20.0;
    const double reviewed = merges - ((r.treatment == how::human || r.treatment == how::flag_only)
                                          ? 0.0
                                          : static_cast<double>(r.items.size()));
    CHECK(gauge(*e, "review_coverage") == Approx(reviewed / merges));
    CHECK(f.opened("pipeline.review_bottleneck") == nullptr);
    CHECK(f.opened("pipeline.rubber_stamp") == nullptr);
  }
}

TEST_CASE("review_bottleneck rubber-stamp rules on a table of reviews",
          "[plugins][review_bottleneck]") {
  // 30 baseline reviews (the first baseline_items) at a median depth of 6 s per changed line,
  // then, after more than a window, 40 reviews drawn as each row says. Depths are lognormal
  // (σ = 0.5) around their median; each review covers 200 lines and reports its start.
  struct row {
    std::string name;
    std::string config;
    double median;      // s per line of the later reviews
    double fast_share;  // share of them at 0.2 s per line instead
    v1::StageOutcome fast_outcome;
    bool send_baseline;
    std::string trigger;  // "" = no trip
  };
  const std::vector<row> rows = {
      {"steady depth", "{}", 6.0, 0.0, v1::STAGE_OUTCOME_APPROVED, true, ""},
      {"depth falls to two thirds", "{}", 4.0, 0.0, v1::STAGE_OUTCOME_APPROVED, true, ""},
      {"depth collapses to a quarter", "{}", 1.5, 0.0, v1::STAGE_OUTCOME_APPROVED, true, "depth"},
      {"40 percent of approvals are stamps", "{}", 6.0, 0.4, v1::STAGE_OUTCOME_APPROVED, true,
       "stamps"},
      {"10 percent fast approvals", "{}", 6.0, 0.1, v1::STAGE_OUTCOME_APPROVED, true, ""},
      {"fast reviews that request changes are not stamps", "{}", 6.0, 0.4,
       v1::STAGE_OUTCOME_CHANGES_REQUESTED, true, ""},
      {"a declared baseline needs no baseline reviews", "{baseline: {review_seconds_per_line: 6}}",
       1.5, 0.0, v1::STAGE_OUTCOME_APPROVED, false, "depth"},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto e = engine_with(
        "{window: 24h, buckets: 24, stages: [generate, review, test, merge]" +
        (r.config == "{}" ? std::string() : ", " + r.config.substr(1, r.config.size() - 2)) + "}");
    feeder f(*e);
    std::mt19937_64 rng(99);
    std::normal_distribution<double> noise(0.0, 0.5);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    int n = 0;
    auto one = [&](std::int64_t at, double depth, v1::StageOutcome outcome) {
      const std::string id = "r" + std::to_string(n++);
      const auto work = static_cast<std::int64_t>(depth * 200 * second);
      v1::StageTiming t =
          review(id, at, at + 5 * minute + work, "rev" + std::to_string(n % 4), 200, outcome);
      t.set_start_unix_nano(at + 5 * minute);
      f.send(t);
    };
    if (r.send_baseline) {
      for (int i = 0; i < 30; ++i)
        one(t0 + i * 20 * minute, 6.0 * std::exp(noise(rng)), v1::STAGE_OUTCOME_APPROVED);
    }
    const std::int64_t later = t0 + 36 * hour;
    for (int i = 0; i < 40; ++i) {
      const bool fast = u(rng) < r.fast_share;
      one(later + i * 20 * minute, fast ? 0.2 : r.median * std::exp(noise(rng)),
          fast ? r.fast_outcome : v1::STAGE_OUTCOME_APPROVED);
    }
    f.heartbeat(later + 16 * hour);
    const opening* o = f.opened("pipeline.rubber_stamp");
    CHECK((o != nullptr) == !r.trigger.empty());
    if (o != nullptr) {
      CHECK(o->evidence.at("trigger") == r.trigger);
      CHECK(o->action == v1::BREAKER_ACTION_REQUIRE_APPROVAL);
      if (r.send_baseline) {
        CHECK(std::stod(o->evidence.at("baseline_depth_seconds_per_line")) ==
              Approx(6.0).epsilon(0.25));
      }
    }
    CHECK(f.opened("pipeline.unreviewed_merge") == nullptr);
  }
}

namespace {

// An operator who resets one breaker of run "pipe" whenever it is open after an event, as if
// they misjudged it. Records each opening: the 10-minute bucket of its event time (the tests'
// bucket width) and whether it re-opened from probation.
class resetting_operator {
 public:
  resetting_operator(core::engine& e, std::string breaker) : e_(e), breaker_(std::move(breaker)) {
    e.breakers().add_listener([this](const v1::BreakerTransition& t) {
      if (t.breaker().name() != breaker_ || t.breaker().state() != v1::BREAKER_STATE_OPEN) return;
      buckets.push_back(static_cast<int>((t.breaker().changed_unix_nano() - t0) / (10 * minute)));
      from_probation.push_back(t.previous() == v1::BREAKER_STATE_HALF_OPEN);
      severities.push_back(t.breaker().severity());
    });
  }

  // Call after every event.
  void look() {
    auto b = e_.breakers().find({breaker_, "pipe"});
    if (!b || b->state() != v1::BREAKER_STATE_OPEN) return;
    REQUIRE(e_.breakers()
                .reset({breaker_, "pipe"}, "alice", "looked fine to me", b->changed_unix_nano())
                .ok());
  }

  bool open_now() const {
    auto b = e_.breakers().find({breaker_, "pipe"});
    return b && b->state() == v1::BREAKER_STATE_OPEN;
  }

  std::vector<int> buckets;  // of each opening, in order
  std::vector<bool> from_probation;
  std::vector<v1::Severity> severities;

 private:
  core::engine& e_;
  std::string breaker_;
};

std::vector<int> range(int from, int to) {  // [from, to]
  std::vector<int> out;
  for (int i = from; i <= to; ++i) out.push_back(i);
  return out;
}

}  // namespace

TEST_CASE(
    "review_bottleneck opens a breaker again at the next evaluation when an operator resets it "
    "while the cause persists, and not on evidence the reset already judged",
    "[plugins][review_bottleneck]") {
  // Each section runs a cause for a while, with the operator resetting the breaker right after
  // each opening, then removes it. Buckets are 10 minutes; a probation of 1 h spans the next
  // evaluation, so every re-opening comes from probation, escalated to critical. The expected
  // buckets are worked out in each section from the check's definition. For the coverage and
  // depth checks the cause persists while new unreviewed merges or stamps arrive; the old ones
  // still in the window after that do not re-open a breaker an operator reset.
  auto check_openings = [](const resetting_operator& op, const std::vector<int>& expected) {
    CHECK(op.buckets == expected);
    REQUIRE(!op.buckets.empty());
    CHECK_FALSE(op.from_probation.front());
    for (std::size_t i = 1; i < op.buckets.size(); ++i) {
      INFO("opening " << i << " at bucket " << op.buckets[i]);
      CHECK(op.from_probation[i]);
      CHECK(op.severities[i] == v1::SEVERITY_CRITICAL);
    }
    CHECK_FALSE(op.open_now());
  };

  SECTION("pipeline.review_bottleneck: review stalls while work piles up, then catches up") {
    // Item i enters review at minute 10 i + 5 and nobody reviews. The evaluation at minute 10 i
    // (when item i arrives) sees i items waiting, i arrivals and no review: stalled once
    // i >= min_flow (20), and with sustain 0 it trips at once. Then every item is reviewed within
    // bucket 29 (5 s of work each): from bucket 30 on, ρ ≈ 0.01 and the backlog is empty.
    auto e = engine_with("{stages: [generate, review], window: 8h, buckets: 48, sustain: 0s}", true,
                         "probation: 1h\n");
    feeder f(*e);
    resetting_operator op(*e, "pipeline.review_bottleneck");
    const auto arrival = [](int i) { return t0 + i * 10 * minute + 5 * minute; };
    for (int i = 0; i < 30; ++i) {
      const std::string id = "item-" + std::to_string(i);
      v1::StageTiming g = timing(id, "generate", arrival(i) - minute, arrival(i));
      g.set_actor(v1::ACTOR_KIND_MODEL);
      f.send(g);
      op.look();
      f.send(timing(id, "review", arrival(i), 0));
      op.look();
    }
    for (int i = 0; i < 30; ++i) {
      const std::int64_t done = t0 + 296 * minute + i * 5 * second;
      v1::StageTiming r = review("item-" + std::to_string(i), arrival(i), done, "alice", 5);
      r.set_start_unix_nano(done - 5 * second);
      f.send(r);
      op.look();
    }
    for (int k = 30; k < 36; ++k) {
      f.heartbeat(t0 + k * 10 * minute + 5 * minute);
      op.look();
    }
    CHECK(gauge(*e, "review_backlog") == 0.0);
    CHECK(gauge(*e, "review_utilisation") < 0.1);
    check_openings(op, range(20, 29));
  }

  SECTION("pipeline.unreviewed_merge: coverage below the floor while unreviewed merges go on") {
    // Four merges a bucket, none reviewed in buckets 0-7, all reviewed from bucket 8 on. The
    // evaluation at bucket k covers buckets k-6..k-1: at least min_merges (10) from k = 3, and
    // coverage below the floor until k = 13 (20/24); at k = 14 coverage is 1. New unreviewed
    // merges since the last trip: at k = 3..8 (those of bucket k-1), none from k = 9. Before the
    // new-evidence rule this re-opened at every evaluation to k = 13.
    auto e =
        engine_with("{require_review: false, window: 1h, buckets: 6}", true, "probation: 1h\n");
    feeder f(*e);
    resetting_operator op(*e, "pipeline.unreviewed_merge");
    for (int k = 0; k < 16; ++k) {
      for (int j = 0; j < 4; ++j) {
        const std::string id = "pr-" + std::to_string(k) + "-" + std::to_string(j);
        const std::int64_t t = t0 + k * 10 * minute + (1 + 2 * j) * minute;
        f.send(timing(id, "generate", t, t + 30 * second));
        op.look();
        std::int64_t merge_at = t + 30 * second;
        if (k >= 8) {
          f.send(review(id, merge_at, merge_at + 30 * second, "alice", 50));
          op.look();
          merge_at += 30 * second;
        }
        v1::StageTiming m = timing(id, "merge", merge_at, merge_at + 30 * second);
        m.set_outcome(v1::STAGE_OUTCOME_MERGED);
        f.send(m);
        op.look();
      }
    }
    CHECK(gauge(*e, "review_coverage") == 1.0);
    check_openings(op, range(3, 8));
  }

  SECTION("pipeline.rubber_stamp: stamped approvals while the stamping goes on") {
    // Four approvals a bucket: 10 s for 200 lines (0.05 s a line, stamps) in buckets 0-7, 60 s
    // for 20 lines (3 s a line) from bucket 8 on. With min_reviews 10 the evaluation at bucket k
    // decides from k = 3; stamps are 4 (14 - k) of 24 approvals from k = 8, above the 30 %
    // ceiling until k = 12 (8 of 24) and not at k = 13 (4 of 24). New stamps since the last trip:
    // at k = 3..8, none from k = 9 (before the new-evidence rule: re-opened to k = 12).
    auto e = engine_with("{window: 1h, buckets: 6, min_reviews: 10}", true, "probation: 1h\n");
    feeder f(*e);
    resetting_operator op(*e, "pipeline.rubber_stamp");
    for (int k = 0; k < 16; ++k) {
      for (int j = 0; j < 4; ++j) {
        const std::string id = "pr-" + std::to_string(k) + "-" + std::to_string(j);
        const std::int64_t t = t0 + k * 10 * minute + (1 + 2 * j) * minute;
        const bool stamp = k < 8;
        v1::StageTiming r = review(id, t, t + 30 * second + (stamp ? 10 : 60) * second,
                                   "rev" + std::to_string(j), stamp ? 200 : 20);
        r.set_start_unix_nano(t + 30 * second);
        f.send(r);
        op.look();
      }
    }
    CHECK(gauge(*e, "rubber_stamp_share") == 0.0);
    check_openings(op, range(3, 8));
  }
}

TEST_CASE("review_bottleneck refuses bad config naming the field and line",
          "[plugins][review_bottleneck]") {
  struct row {
    std::string config;
    std::string error;
  };
  const std::vector<row> rows = {
      {"{stages: [generate]}",
       "monitors[0].config.stages: expected 2 to 16 stage names, got 1 (rb.yaml:6)"},
      {"{stages: [a, b, a], review_stage: b}",
       "monitors[0].config.stages[2]: stage \"a\" is listed twice (rb.yaml:6)"},
      {"{stages: [write, Check]}",
       "monitors[0].config.stages[1]: expected a stage name of lowercase letters, digits and "
       "'_', got \"Check\" (rb.yaml:6)"},
      {"{stages: [write, check]}",
       "monitors[0].config.review_stage: required: name the stage (none of the stages is called "
       "\"review\") (rb.yaml:6)"},
      {"{review_stage: nope}",
       "monitors[0].config.review_stage: \"nope\" is not one of the stages (rb.yaml:6)"},
      {"{accelerated: [review]}",
       "monitors[0].config.accelerated: the review stage \"review\" can't be accelerated: it is "
       "the stage this monitor protects (rb.yaml:6)"},
      {"{servers: {review: 0}}",
       "monitors[0].config.servers.review: expected auto, unlimited or a positive integer up to "
       "100000, got \"0\" (rb.yaml:6)"},
      {"{servers: {deploy: 2}}",
       "monitors[0].config.servers.deploy: \"deploy\" is not one of the stages (rb.yaml:6)"},
      {"{window: 0s}",
       "monitors[0].config.window: expected a duration > 0, got \"0s\" (rb.yaml:6)"},
      {"{buckets: 7}",
       "monitors[0].config.buckets: must divide the window (86400000000000 ns) into equal "
       "buckets (rb.yaml:6)"},
      {"{buckets: 1}", "monitors[0].config.buckets: expected an integer >= 2, got 1 (rb.yaml:6)"},
      {"{sustain: 48h}",
       "monitors[0].config.sustain: must not be longer than the window (rb.yaml:6)"},
      {"{target_utilisation: 1}",
       "monitors[0].config.target_utilisation: expected a number in (0, 1), got \"1\" (rb.yaml:6)"},
      {"{coverage_flor: 0.9}",
       "monitors[0].config.coverage_flor: unknown key (allowed: stages, "
       "accelerated, review_stage, merge_stage, servers, window, buckets, "
       "sustain, target_utilisation, growth_z, min_flow, max_backlog, "
       "require_review, coverage_floor, min_merges, rubber_stamp_floor, "
       "depth_floor, depth_z, stamp_share_ceiling, min_reviews, "
       "baseline_items, baseline, max_items, max_reviewers, max_runs, "
       "item_timeout, max_clock_jump, bottleneck_breaker, "
       "unreviewed_breaker, rubber_stamp_breaker) (rb.yaml:6)"},
      {"{require_review: maybe}",
       "monitors[0].config.require_review: expected true or false, got \"maybe\" (rb.yaml:6)"},
      {"{max_items: 0}",
       "monitors[0].config.max_items: expected a positive integer, got \"0\" (rb.yaml:6)"},
      {"{baseline: {work_seconds: {deploy: 30}}}",
       "monitors[0].config.baseline.work_seconds.deploy: \"deploy\" is not one of the stages "
       "(rb.yaml:6)"},
      {"{baseline: {review_seconds_per_line: -1}}",
       "monitors[0].config.baseline.review_seconds_per_line: expected a number > 0, got \"-1\" "
       "(rb.yaml:6)"},
      {"{bottleneck_breaker: x, unreviewed_breaker: x}",
       "monitors[0].config: bottleneck_breaker, unreviewed_breaker and rubber_stamp_breaker must "
       "be three different names (rb.yaml:6)"},
  };
  for (const auto& r : rows) {
    INFO(r.config);
    auto cfg = core::parse_config(yaml_for(r.config), "rb.yaml");
    REQUIRE(cfg.ok());
    core::engine_options opts;
    opts.search_bundled_plugins = false;
    auto e = core::engine::create(*cfg, opts);
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().message() == "monitor 'rb': " + r.error);
  }
  // And the defaults, and a full custom pipeline, are accepted.
  engine_with("{}");
  engine_with(
      "{stages: [plan, code, human_review, ci, deploy], accelerated: [plan, code], "
      "review_stage: human_review, merge_stage: deploy, servers: {ci: unlimited, human_review: "
      "3}, window: 12h, buckets: 12, sustain: 0s, baseline: {work_seconds: {code: 3600}}}");
}

TEST_CASE("review_bottleneck counts and ignores malformed and duplicate records",
          "[plugins][review_bottleneck]") {
  // The same clean M/M/1 day twice: once as it is, once with every record sent twice and bad
  // records mixed in. The statistics must be identical and the bad records counted.
  const mm1_run run = simulate_mm1(5, 0.7, 1.0, 24 * 60.0);
  auto clean = engine_with(mm1_config);
  auto noisy = engine_with(mm1_config);
  feeder fc(*clean);
  feeder fn(*noisy);
  std::vector<v1::StageTiming> bad;
  {
    v1::StageTiming t = timing("", "review", t0, t0 + minute);  // no item id
    bad.push_back(t);
    bad.push_back(timing("x1", "deploy", t0, t0 + minute));  // unknown stage
    bad.push_back(timing("x2", "review", t0 + minute, t0));  // leaves before it enters
    bad.push_back(timing("x3", "review", 0, 0));             // no time at all
    bad.push_back(timing("x4", "review", -5, t0));           // negative time
    v1::StageTiming s = timing("x5", "review", t0, t0 + minute);
    s.set_start_unix_nano(t0 + 2 * minute);  // work starts after it left
    bad.push_back(s);
    v1::StageTiming big = review("x6", t0, t0 + minute, "r1", 1'000'000'000'000ULL);
    bad.push_back(big);
    bad.push_back(timing("x7", "review", t0, t0 + 100LL * 365 * 24 * hour));  // a century
    v1::StageTiming name(timing("x8", "review", t0, t0 + minute));
    name.set_reviewer(std::string(1000, 'r'));
    bad.push_back(name);
  }
  std::size_t i = 0;
  for (const auto& ev : run.events) {
    fc.send(ev.record);
    fn.send(ev.record);
    fn.send(ev.record);
    // Bad records arrive in envelopes with sane times (the engine's clock is not the point here).
    if (i < bad.size() && ev.at > t0 + 60 * minute) fn.send(bad[i++], ev.at);
  }
  // A clock jump of years is held back, and dropped when the next record does not confirm it.
  v1::StageTiming jump = timing("x9", "review", t0 + 5LL * 365 * 24 * hour, 0);
  fn.send(jump, run.events.back().at);
  fn.send(run.events.back().record);
  REQUIRE(i == bad.size());
  fc.heartbeat(t0 + 25 * hour);
  fn.heartbeat(t0 + 25 * hour);
  for (const std::string g :
       {"review_wip_mean", "review_arrival_rate_per_hour", "review_utilisation",
        "review_time_p90_seconds", "review_backlog", "generate_arrival_rate_per_hour",
        "lead_time_p50_seconds", "completed_items"}) {
    INFO(g);
    CHECK(gauge(*noisy, g) == gauge(*clean, g));
  }
  CHECK(gauge(*noisy, "malformed_records") == static_cast<double>(bad.size() + 1));
  // Every record of the clean day came twice (the last one three times); the copies are counted,
  // never used.
  CHECK(gauge(*noisy, "duplicate_records") == static_cast<double>(run.events.size() + 1));
  CHECK(gauge(*clean, "duplicate_records") == 0.0);
}

TEST_CASE("review_bottleneck gives the same statistics for hosts that send only completed records",
          "[plugins][review_bottleneck]") {
  // The review queue is seen in real time either way: an item's review arrival is its generate
  // exit, handed on by the monitor when the host does not send the enter record.
  const mm1_run with_enter = simulate_mm1(11, 0.8, 1.0, 3 * 24 * 60.0, true);
  const mm1_run completed_only = simulate_mm1(11, 0.8, 1.0, 3 * 24 * 60.0, false);
  auto a = engine_with(mm1_config);
  auto b = engine_with(mm1_config);
  feeder fa(*a);
  feeder fb(*b);
  for (const auto& ev : with_enter.events) fa.send(ev.record);
  for (const auto& ev : completed_only.events) fb.send(ev.record);
  for (const std::string g :
       {"review_wip_mean", "review_arrival_rate_per_hour", "review_utilisation", "review_backlog",
        "review_little_gap", "review_time_p50_seconds", "bottleneck_share_of_lead_time"}) {
    INFO(g);
    CHECK(gauge(*b, g) == Approx(gauge(*a, g)).epsilon(1e-12));
  }
  const double end = gauge(*b, "window_end_unix_seconds") / 60.0 - static_cast<double>(t0 / minute);
  CHECK(gauge(*b, "review_backlog") == static_cast<double>(exact_in_system(completed_only, end)));
}

TEST_CASE("review_bottleneck keeps memory within max_items and max_runs",
          "[plugins][review_bottleneck]") {
  auto e = engine_with("{max_items: 50, max_runs: 2}");
  feeder f(*e);
  for (int i = 0; i < 2000; ++i) {
    f.send(timing("stuck-" + std::to_string(i), "review", t0 + i * minute, 0));
  }
  f.heartbeat(t0 + 2000 * minute + hour);
  CHECK(gauge(*e, "items_in_flight") == 50.0);
  CHECK(gauge(*e, "evicted_items") == 1950.0);
  CHECK(gauge(*e, "review_wip") == 50.0);
  // A third run is not tracked; it is counted.
  feeder second(*e, "second");
  feeder third(*e, "third");
  second.send(timing("a", "review", t0, 0));
  third.send(timing("b", "review", t0, 0));
  f.heartbeat(t0 + 2000 * minute + 2 * hour);
  CHECK(gauge(*e, "dropped_runs") == 1.0);
  // Both tracked runs share the budget.
  CHECK(gauge(*e, "items_in_flight") <= 50.0);
}

TEST_CASE("review_bottleneck evaluates a quiet pipeline on tick, in replay and live",
          "[plugins][review_bottleneck]") {
  // 30 items enter review in the first hour and none leaves: review has stalled. No record comes
  // after that, so only the tick can see it. In replay the engine clock moves with other events
  // (heartbeats); live it is the wall clock given to tick().
  const std::string config = "{stages: [generate, review], window: 4h, buckets: 4, sustain: 1h}";
  SECTION("replay: heartbeats move the clock") {
    auto e = engine_with(config);
    feeder f(*e);
    for (int i = 0; i < 30; ++i)
      f.send(timing("s" + std::to_string(i), "review", t0 + i * 2 * minute, 0));
    CHECK_FALSE(f.any_opened());
    for (int h = 1; h <= 5; ++h) f.heartbeat(t0 + h * hour);
    const opening* o = f.opened("pipeline.review_bottleneck");
    REQUIRE(o != nullptr);
    CHECK(o->evidence.at("utilisation") == "inf");
    CHECK(o->evidence.at("backlog") == "30");
    CHECK(o->at <= t0 + 3 * hour);
  }
  SECTION("live: the wall clock given to tick moves it") {
    auto e = engine_with(config, false);
    bool opened = false;
    e->breakers().add_listener([&](const v1::BreakerTransition& t) {
      if (t.breaker().state() == v1::BREAKER_STATE_OPEN) opened = true;
    });
    // Received at wall time w0; the events carry their own (simulated) times.
    const std::int64_t w0 = 5'000 * second;
    for (int i = 0; i < 30; ++i) {
      v1::Envelope env;
      env.set_source("host");
      env.set_run_id("pipe");
      env.set_seq(static_cast<std::uint64_t>(i + 1));
      *env.mutable_stage_timing() =
          timing("s" + std::to_string(i), "review", t0 + i * 2 * minute, 0);
      e->process(env, w0 + i * second);
    }
    e->tick(w0 + 30 * second);
    CHECK_FALSE(opened);
    for (int h = 1; h <= 5; ++h) e->tick(w0 + h * hour);
    CHECK(opened);
  }
}

namespace {

// Bytes at the end of a pipeline's state in format 3 (its new-evidence counts and marks, six u64),
// absent from formats 1 and 2.
constexpr std::size_t format_3_marks = 6 * 8;

// `state` (a snapshot in the current format, 3) with its header's format version replaced.
std::string with_format(std::string state, std::uint8_t version) {
  // LWSTATE1, the plugin name as a u64 length and its bytes, then the version as a u64 (LE).
  state[8 + 8 + std::string("review_bottleneck").size()] = static_cast<char>(version);
  return state;
}

// `state` as format 1 wrote it: version 1, and after each pipeline's overload flag the three
// "already tripped" latches of format 1 (all set here: the most a latch could silence), without
// format 3's marks. Each run id must occur in the snapshot first as that pipeline's key; only a
// snapshot of one pipeline is supported (its marks are the snapshot's last bytes).
std::string as_format_1(const std::string& state, const std::vector<std::string>& runs) {
  REQUIRE(runs.size() == 1);
  std::string out = with_format(state.substr(0, state.size() - format_3_marks), 1);
  for (const auto& run : runs) {
    std::string key(8, '\0');
    key[0] = static_cast<char>(run.size());
    key += run;
    const std::size_t at = out.find(key);
    REQUIRE(at != std::string::npos);
    // The pipeline: started (1 byte), six clock fields (8 bytes each), overloaded (1 byte).
    out.insert(at + key.size() + 1 + 6 * 8 + 1, std::string(3, '\1'));
  }
  return out;
}

}  // namespace

TEST_CASE("review_bottleneck restores a format 1 snapshot and trips while the overload lasts",
          "[plugins][review_bottleneck]") {
  // Format 1 kept a latch per check that silenced it until the cause cleared; format 2 has none.
  // A format 1 snapshot taken after the trip restores to the same state as format 2 (byte for
  // byte once written again), and the restored engine trips at its next evaluation.
  const mm1_run run = simulate_mm1(77, 1.3, 1.0, 2 * 24 * 60.0);
  const std::size_t split = run.events.size() * 3 / 4;
  auto a = engine_with(mm1_config);
  feeder fa(*a);
  for (std::size_t i = 0; i < split; ++i) fa.send(run.events[i].record);
  REQUIRE(fa.opened("pipeline.review_bottleneck") != nullptr);  // the latch would be set
  const auto saved = a->snapshot_monitors();
  REQUIRE(saved.size() == 1);
  core::monitor_state old = saved[0];
  old.state = as_format_1(saved[0].state, {"pipe"});
  REQUIRE(old.state.size() == saved[0].state.size() + 3 - format_3_marks);

  auto b = engine_with(mm1_config);
  const auto restored = b->restore_monitor(old);
  INFO(restored.message());
  REQUIRE(restored.ok());
  // The same state, but for the marks format 1 did not keep: restored as one unit of new
  // evidence each (counts 1, marks 0), so a check that holds trips at the first evaluation.
  const std::string again = b->snapshot_monitors()[0].state;
  REQUIRE(again.size() == saved[0].state.size());
  const std::size_t body = again.size() - format_3_marks;
  CHECK(again.substr(0, body) == saved[0].state.substr(0, body));
  const std::string expected_marks = [] {
    std::string m;
    for (std::uint64_t v : {1, 1, 1, 0, 0, 0}) {
      for (int i = 0; i < 8; ++i) m += static_cast<char>((v >> (8 * i)) & 0xff);
    }
    return m;
  }();
  CHECK(again.substr(body) == expected_marks);
  feeder fb(*b);
  for (std::size_t i = split; i < run.events.size(); ++i) fb.send(run.events[i].record);
  const opening* o = fb.opened("pipeline.review_bottleneck");
  REQUIRE(o != nullptr);
  // The next evaluation is at the next 10-minute boundary, reached by the first record after it.
  CHECK(o->at - run.events[split].at < 20 * minute);
}

TEST_CASE("review_bottleneck restored from a snapshot trips as one uninterrupted engine",
          "[plugins][review_bottleneck]") {
  // Two days at ρ = 0.7 (baselines learned, windows full), then a day at ρ = 1.5. Engine A sees
  // the first half of the events and is snapshotted; engine B restores that and sees the rest;
  // engine C sees everything. B and C must trip the same breaker at the same event with the same
  // evidence and end with the same gauges.
  mm1_run calm = simulate_mm1(3, 0.7, 1.0, 2 * 24 * 60.0);
  std::vector<timed> events = calm.events;
  const mm1_run storm = simulate_mm1(4, 1.5, 1.0, 24 * 60.0);
  for (timed ev : storm.events) {
    // Shift the storm two days on, with its own item ids.
    auto shift = [](std::int64_t v) { return v == 0 ? 0 : v + 2 * 24 * hour; };
    ev.at = shift(ev.at);
    ev.record.set_enter_unix_nano(shift(ev.record.enter_unix_nano()));
    ev.record.set_exit_unix_nano(shift(ev.record.exit_unix_nano()));
    ev.record.set_start_unix_nano(shift(ev.record.start_unix_nano()));
    ev.record.set_item_id("storm-" + ev.record.item_id());
    events.push_back(ev);
  }
  const std::size_t half = events.size() / 2;
  auto a = engine_with(mm1_config);
  auto b = engine_with(mm1_config);
  auto c = engine_with(mm1_config);
  feeder fa(*a);
  feeder fc(*c);
  for (std::size_t i = 0; i < half; ++i) {
    fa.send(events[i].record);
    fc.send(events[i].record);
  }
  const auto saved = a->snapshot_monitors();
  REQUIRE(saved.size() == 1);
  CHECK(saved[0].plugin == "review_bottleneck");
  REQUIRE(b->restore_monitor(saved[0]).ok());
  // The restored state is the saved state, byte for byte.
  const auto again = b->snapshot_monitors();
  REQUIRE(again.size() == 1);
  CHECK(again[0].state == saved[0].state);
  feeder fb(*b);
  for (std::size_t i = half; i < events.size(); ++i) {
    fb.send(events[i].record);
    fc.send(events[i].record);
  }
  const opening* ob = fb.opened("pipeline.review_bottleneck");
  const opening* oc = fc.opened("pipeline.review_bottleneck");
  REQUIRE(oc != nullptr);
  REQUIRE(ob != nullptr);
  CHECK(oc->at > events[half].at);  // it tripped after the restore
  CHECK(ob->at == oc->at);
  CHECK(ob->evidence == oc->evidence);
  CHECK(ob->reason == oc->reason);
  for (const auto& m : c->monitors()) {
    for (const auto& [name, value] : m.gauges) {
      if (name == "records") continue;  // B counts only what it was sent
      INFO(name);
      const double other = gauge(*b, name);
      if (std::isnan(value)) {
        CHECK(std::isnan(other));
      } else {
        CHECK(other == value);
      }
    }
  }
}

TEST_CASE("review_bottleneck refuses a damaged snapshot or one of another pipeline shape",
          "[plugins][review_bottleneck]") {
  const mm1_run run = simulate_mm1(8, 0.7, 1.0, 12 * 60.0);
  auto a = engine_with(mm1_config);
  feeder fa(*a);
  for (const auto& ev : run.events) fa.send(ev.record);
  const auto saved = a->snapshot_monitors();
  REQUIRE(saved.size() == 1);
  struct row {
    std::string name;
    std::string config;
    std::string state;
    std::string says;
  };
  const std::string good = saved[0].state;
  const std::vector<row> rows = {
      // Cut inside the last field (a u64): a cut elsewhere may land in a length, which is refused
      // as "longer than the bytes left" instead.
      {"truncated", mm1_config, good.substr(0, good.size() - 5), "truncated"},
      {"cut in half", mm1_config, good.substr(0, good.size() / 2), "bad state snapshot at byte"},
      {"trailing bytes", mm1_config, good + "x", "unread bytes at the end"},
      {"not a snapshot", mm1_config, "hello", "not a loopwarden state snapshot"},
      {"a newer format", mm1_config, with_format(good, 4),
       "snapshot format version 4, this build reads 1 to 3"},
      {"other stages", "{stages: [generate, review, merge]}", good, "other stages"},
      {"other window", "{stages: [generate, review], window: 4h, buckets: 48}", good,
       "other stages or another window"},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto b = engine_with(r.config);
    core::monitor_state st = saved[0];
    st.state = r.state;
    const auto s = b->restore_monitor(st);
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.message(), Catch::Contains(r.says));
    // A refused state leaves the monitor fresh and working.
    feeder fb(*b);
    for (std::size_t i = 0; i < 100; ++i) fb.send(run.events[i].record);
  }
  // Flipping any single byte of the good state never crashes the monitor.
  for (std::size_t i = 0; i < good.size(); i += std::max<std::size_t>(1, good.size() / 200)) {
    auto b = engine_with(mm1_config);
    core::monitor_state st = saved[0];
    st.state[i] = static_cast<char>(st.state[i] ^ 0x5a);
    (void)b->restore_monitor(st);
    feeder fb(*b);
    for (std::size_t j = 0; j < 50; ++j) fb.send(run.events[j].record);
  }
}

TEST_CASE("review_bottleneck counts lead time only for items that merge or pass the last stage",
          "[plugins][review_bottleneck]") {
  // Four items through generate and review (the last stage): approved, rejected, abandoned,
  // changes requested. Only the approved one completes, with a lead time of 30 minutes.
  auto e = engine_with("{stages: [generate, review], window: 2h, buckets: 4}");
  feeder f(*e);
  const std::vector<v1::StageOutcome> outcomes = {
      v1::STAGE_OUTCOME_APPROVED, v1::STAGE_OUTCOME_REJECTED, v1::STAGE_OUTCOME_ABANDONED,
      v1::STAGE_OUTCOME_CHANGES_REQUESTED};
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    const std::string id = "x" + std::to_string(i);
    const std::int64_t t = t0 + static_cast<std::int64_t>(i) * minute;
    f.send(timing(id, "generate", t, t + 10 * minute));
    f.send(review(id, t + 10 * minute, t + 30 * minute, "alice", 30, outcomes[i]));
  }
  f.heartbeat(t0 + hour);
  CHECK(gauge(*e, "completed_items") == 1.0);
  CHECK(gauge(*e, "lead_time_p50_seconds") == Approx(1800.0).epsilon(0.02));
  // The item whose changes were requested is still known (it will come back); the rest are done.
  CHECK(gauge(*e, "items_in_flight") == 1.0);
}
