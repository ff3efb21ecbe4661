// review_bottleneck's cost per stage-timing record, through the real engine and the real plugin.
// Prints figures; asserts nothing.
//
//   build/ci/bench/review_bottleneck_bench [items]
//
// Three pipelines of `items` work items each (default 100 000), every item an enter and a
// completed record for generate and review and a completed record for test and merge (6 records):
//   steady    review at ρ = 0.8: a few items in flight;
//   overload  review at ρ = 1.3: the backlog grows to tens of thousands of items in flight,
//             capped by max_items (10 000), so evaluations walk the largest item table there is;
//   churn     every record a new item id that never finishes: eviction on every record.
// For each: the engine's wall time per record (parse excluded; dispatch, accounting and the
// monitor), the monitor's own mean and worst call, and how its calls spread over the engine's
// call-time buckets, and the size and time of the monitor's snapshot at the end (what `serve`
// saves every minute). A record that crosses a bucket boundary pays for the window's evaluation
// (every stage's buckets and sketches, every item in flight), which is what the worst call shows.
// Compare within one run: the machine is shared and absolute times are noisy.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>
#include <loopwarden/core/metrics_buckets.hpp>

using namespace loopwarden;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr std::int64_t second = 1'000'000'000;
constexpr std::int64_t t0 = 1'699'920'000LL * second;

struct timed {
  std::int64_t at;
  std::uint64_t order;
  v1::Envelope envelope;
};

v1::Envelope make(const std::string& item, const char* stage, std::int64_t enter, std::int64_t exit,
                  v1::StageOutcome outcome) {
  v1::Envelope e;
  e.set_source("bench/pipeline");
  e.set_run_id("bench");
  auto* t = e.mutable_stage_timing();
  t->set_item_id(item);
  t->set_stage(stage);
  t->set_enter_unix_nano(enter);
  t->set_exit_unix_nano(exit);
  t->set_outcome(outcome);
  t->set_size(40);
  if (std::string(stage) == "review") {
    t->set_reviewer("reviewer-" + std::to_string(item.size() % 3));
    t->set_actor(v1::ACTOR_KIND_HUMAN);
  }
  if (std::string(stage) == "merge") t->set_human_reviewed(true);
  e.set_time_unix_nano(std::max(enter, exit));
  return e;
}

// An M/M/c review queue (3 reviewers) fed by Poisson arrivals at rate rho × capacity.
std::vector<timed> pipeline(std::uint64_t seed, double rho, long items) {
  std::mt19937_64 rng(seed);
  const double mu = 1.0 / 60.0;  // per second per reviewer: a minute a review
  std::exponential_distribution<double> gap(rho * 3 * mu);
  std::exponential_distribution<double> service(mu);
  std::vector<double> free_at(3, 0.0);
  std::vector<timed> out;
  out.reserve(static_cast<std::size_t>(items) * 6);
  double t = 0.0;
  std::uint64_t order = 0;
  auto at = [](double s) { return t0 + static_cast<std::int64_t>(s * 1e9); };
  for (long i = 0; i < items; ++i) {
    t += gap(rng);
    const std::string id = "pr-" + std::to_string(i);
    const double gen_enter = t - 30.0;
    auto r = std::min_element(free_at.begin(), free_at.end());
    const double start = std::max(t, *r);
    const double done = start + service(rng);
    *r = done;
    out.push_back({at(gen_enter), order++,
                   make(id, "generate", at(gen_enter), 0, v1::STAGE_OUTCOME_UNSPECIFIED)});
    out.push_back(
        {at(t), order++, make(id, "generate", at(gen_enter), at(t), v1::STAGE_OUTCOME_DONE)});
    out.push_back({at(t), order++, make(id, "review", at(t), 0, v1::STAGE_OUTCOME_UNSPECIFIED)});
    out.push_back(
        {at(done), order++, make(id, "review", at(t), at(done), v1::STAGE_OUTCOME_APPROVED)});
    out.push_back({at(done + 300), order++,
                   make(id, "test", at(done), at(done + 300), v1::STAGE_OUTCOME_PASSED)});
    out.push_back({at(done + 330), order++,
                   make(id, "merge", at(done + 300), at(done + 330), v1::STAGE_OUTCOME_MERGED)});
  }
  std::sort(out.begin(), out.end(), [](const timed& a, const timed& b) {
    return a.at != b.at ? a.at < b.at : a.order < b.order;
  });
  return out;
}

std::vector<timed> churn(long records) {
  std::vector<timed> out;
  out.reserve(static_cast<std::size_t>(records));
  for (long i = 0; i < records; ++i) {
    const std::int64_t at = t0 + i * second;
    out.push_back(
        {at, static_cast<std::uint64_t>(i),
         make("stray-" + std::to_string(i), "review", at, 0, v1::STAGE_OUTCOME_UNSPECIFIED)});
  }
  return out;
}

void run(const char* name, std::vector<timed> events) {
  const std::string yaml =
      "version: 1\nplugin_paths: [\"" + std::string(LOOPWARDEN_BINARY_DIR) +
      "/lib/loopwarden/plugins\"]\nmonitors:\n"
      "  - {name: rb, plugin: review_bottleneck, config: {window: 4h, buckets: 24, "
      "servers: {test: unlimited, merge: unlimited}, max_backlog: 1000000}}\n";
  auto cfg = core::parse_config(yaml, "bench.yaml");
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", cfg.error().message().c_str());
    std::exit(2);
  }
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  auto engine = core::engine::create(*cfg, opts);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.error().message().c_str());
    std::exit(2);
  }
  std::uint64_t seq = 0;
  for (auto& e : events) e.envelope.set_seq(++seq);
  const auto start = clock_type::now();
  for (const auto& e : events) {
    (*engine)->process(e.envelope);
    (*engine)->tick(0);
  }
  const double secs = std::chrono::duration<double>(clock_type::now() - start).count();
  const auto n = static_cast<double>(events.size());
  std::printf("%-9s %9zu records  %7.0f ns/record  %9.0f records/s", name, events.size(),
              secs * 1e9 / n, n / secs);
  for (const auto& m : (*engine)->monitors()) {
    const double calls = static_cast<double>(m.events + m.ticks);
    std::printf("  monitor %6.0f ns mean, %9.0f ns worst",
                static_cast<double>(m.total_call_ns) / calls, static_cast<double>(m.max_call_ns));
    double items = 0.0;
    double evicted = 0.0;
    for (const auto& [g, v] : m.gauges) {
      if (g == "items_in_flight") items = v;
      if (g == "evicted_items") evicted = v;
    }
    std::printf(", %.0f items in flight, %.0f evicted\n", items, evicted);
    std::printf("          calls by duration:");
    for (std::size_t i = 0; i < m.call_buckets.size(); ++i) {
      if (m.call_buckets[i] == 0) continue;
      if (i < core::monitor_call_bucket_bounds_ns.size()) {
        std::printf("  <=%lluus %llu",
                    static_cast<unsigned long long>(core::monitor_call_bucket_bounds_ns[i] / 1000),
                    static_cast<unsigned long long>(m.call_buckets[i]));
      } else {
        std::printf("  more %llu", static_cast<unsigned long long>(m.call_buckets[i]));
      }
    }
    std::printf("\n");
  }
  // What `serve` pays every minute to keep the learned state: the snapshot of this state.
  const auto snap_start = clock_type::now();
  const auto saved = (*engine)->snapshot_monitors();
  const double snap_ms =
      std::chrono::duration<double, std::milli>(clock_type::now() - snap_start).count();
  std::printf("          snapshot: %zu bytes in %.2f ms\n",
              saved.empty() ? std::size_t{0} : saved[0].state.size(), snap_ms);
}

}  // namespace

int main(int argc, char** argv) {
  const long items = argc > 1 ? std::atol(argv[1]) : 100'000;
  std::printf("review_bottleneck benchmark: %ld items a pipeline, window 4h in 24 buckets\n",
              items);
  run("steady", pipeline(1, 0.8, items));
  run("overload", pipeline(2, 1.3, items));
  run("churn", churn(items * 6));
  return 0;
}
