// variance_collapse cost per event, for its two inputs that carry raw samples, and its memory:
//   (a) metric batches of scalar samples of a watched metric (grouped by step);
//   (b) embedding batches of 256-dimensional vectors (64 per batch, 16 batches a generation);
//   (c) (run first) the monitor's vector state and the process's resident memory after many events,
//   with
//       more runs than the configured caps, showing that memory follows the configuration and
//       not the number of events.
// Prints figures; asserts nothing. Events are built beforehand and handed to the engine directly
// (no ZeroMQ, no parsing), so the figures are the engine's dispatch plus the monitor's call.
//
//   build/<preset>/bench/variance_collapse_bench [scale]   (scale 1 = default counts)
//
// Compare within one run: the machine is shared and absolute times are noisy.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>

using namespace loopwarden;
using clock_type = std::chrono::steady_clock;

namespace {

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

// VmRSS of this process, in MiB (0 if /proc is not there).
double resident_mib() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      double kib = 0;
      status >> kib;
      return kib / 1024.0;
    }
    std::string rest;
    std::getline(status, rest);
  }
  return 0.0;
}

// event_time_clock false: tick() takes the time it is given (the memory part drives on_tick).
std::unique_ptr<core::engine> make_engine(const std::string& monitor_config,
                                          bool event_time_clock = true) {
  const std::string yaml = "version: 1\nplugin_paths: [\"" + std::string(LOOPWARDEN_BINARY_DIR) +
                           "/lib/loopwarden/plugins\"]\nmonitors:\n"
                           "  - {name: vc, plugin: variance_collapse, config: " +
                           monitor_config + "}\n";
  auto cfg = core::parse_config(yaml, "bench.yaml");
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", cfg.error().message().c_str());
    std::exit(2);
  }
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  opts.event_time_clock = event_time_clock;
  auto e = core::engine::create(*cfg, opts);
  if (!e.ok()) {
    std::fprintf(stderr, "%s\n", e.error().message().c_str());
    std::exit(2);
  }
  return std::move(*e);
}

const core::monitor_status& monitor_of(const std::vector<core::monitor_status>& all) {
  return all.at(0);
}

double gauge(const core::monitor_status& m, const std::string& name) {
  for (const auto& [n, v] : m.gauges) {
    if (n == name) return v;
  }
  return std::nan("");
}

void stamp(v1::Envelope& e, const std::string& run, std::uint64_t seq) {
  e.set_source("bench");
  e.set_run_id(run);
  e.set_seq(seq);
  e.set_time_unix_nano(1'700'000'000'000'000'000 + static_cast<std::int64_t>(seq) * 1000);
}

void report(const char* what, long events, double per_event_units, const char* unit, double seconds,
            const core::monitor_status& m) {
  const double ns = seconds * 1e9 / static_cast<double>(events);
  std::printf("  %-34s %9.0f ns/event  %8.1f ns/%s  (monitor: %.0f ns/call mean, %.2f ms max)\n",
              what, ns, ns / per_event_units, unit,
              static_cast<double>(m.total_call_ns) / static_cast<double>(m.events ? m.events : 1),
              static_cast<double>(m.max_call_ns) / 1e6);
}

}  // namespace

int main(int argc, char** argv) {
  const double scale = argc > 1 ? std::atof(argv[1]) : 1.0;
  std::mt19937_64 rng(1);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::printf("variance_collapse benchmark (scale %.2g), RSS at start %.1f MiB\n", scale,
              resident_mib());

  // (c) memory, measured first, before the other parts allocate their pre-built events (the
  // process RSS then shows the engine and the monitor, not the benchmark's own data).: 32 runs send
  // embeddings (d = 256) and scalar samples, with caps of 8 runs with embedding state and 1000
  // samples of baseline reservoir; the state is measured as the events grow. It must level off once
  // every capped structure is full.
  {
    constexpr int dim = 256;
    constexpr int runs = 32;
    auto e = make_engine(
        "{scalar_streams: {names: [sample/x], max_baseline_samples: 1000}, embeddings: {max_runs: "
        "8, baseline_reservoir: 512}}",
        false);
    std::printf(
        "(c) memory: %d runs, embeddings.max_runs 8, baseline_reservoir 512, d = %d, "
        "max_baseline_samples 1000\n",
        runs, dim);
    std::printf("  %10s %12s %14s %12s %14s\n", "events", "generations", "state (MiB)", "RSS (MiB)",
                "dropped batches");
    std::uint64_t seq = 0;
    const int checkpoints[] = {1, 4, 16, 64};
    int done = 0;
    for (int c : checkpoints) {
      const int until = static_cast<int>(c * scale) > 0 ? static_cast<int>(c * scale) : 1;
      for (int g = done; g < until; ++g) {
        for (int r = 0; r < runs; ++r) {
          const std::string run = "run-" + std::to_string(r);
          v1::Envelope emb;
          auto* batch = emb.mutable_embeddings();
          batch->set_generation(g);
          batch->mutable_vectors()->set_dim(dim);
          for (int i = 0; i < 64 * dim; ++i) {
            batch->mutable_vectors()->add_values(static_cast<float>(normal(rng)));
          }
          stamp(emb, run, ++seq);
          e->process(emb);
          v1::Envelope metrics;
          for (int s = 0; s < 500; ++s) {
            auto* m = metrics.mutable_metrics()->add_samples();
            m->set_name("sample/x");
            m->set_value(normal(rng));
            m->set_step(g);
          }
          stamp(metrics, run, ++seq);
          e->process(metrics);
        }
      }
      done = until;
      // The memory gauges are refreshed by on_tick (every 10 s of the engine's clock; the first
      // call only starts that clock).
      const std::int64_t now = 1'800'000'000'000'000'000 + static_cast<std::int64_t>(seq) * 1000;
      e->tick(now);
      e->tick(now + 11'000'000'000);
      const auto mons = e->monitors();
      const auto& m = monitor_of(mons);
      std::printf("  %10llu %12d %14.2f %12.1f %14.0f\n", static_cast<unsigned long long>(seq),
                  done, gauge(m, "state_bytes") / (1024.0 * 1024.0), resident_mib(),
                  gauge(m, "embeddings.dropped_batches"));
    }
    std::printf(
        "  bound: per run with embeddings 8·d² (open generation's Gram matrix) + 16·d, plus"
        " 4·d per reservoir vector while the baseline forms = %.2f MiB each at d = %d\n",
        (8.0 * dim * dim + 16.0 * dim + 4.0 * 512 * dim) / (1024.0 * 1024.0), dim);
  }
  // (a) scalar samples: 64 samples of the watched metric per batch, 1000 per step (generation).
  {
    constexpr int per_batch = 64;
    constexpr int per_step = 1000;
    const long batches = static_cast<long>(20000 * scale);
    auto e = make_engine("{scalar_streams: {names: [sample/x]}}");
    std::vector<v1::Envelope> wire;
    long produced = 0;
    for (long b = 0; b < batches; ++b) {
      v1::Envelope env;
      for (int s = 0; s < per_batch; ++s, ++produced) {
        auto* m = env.mutable_metrics()->add_samples();
        m->set_name("sample/x");
        m->set_value(normal(rng));
        m->set_step(produced / per_step);
      }
      stamp(env, "scalar-run", static_cast<std::uint64_t>(b + 1));
      wire.push_back(std::move(env));
    }
    const auto start = clock_type::now();
    for (const auto& env : wire) e->process(env);
    const double s = seconds_since(start);
    const auto mons = e->monitors();
    std::printf("(a) scalar stream: %ld batches of %d samples, %d samples per step\n", batches,
                per_batch, per_step);
    report("metrics batch (64 samples)", batches, per_batch, "sample", s, monitor_of(mons));
  }

  // (b) embeddings: d = 256, 64 vectors per batch, 16 batches per generation.
  {
    constexpr int dim = 256;
    constexpr int per_batch = 64;
    constexpr int per_generation = 16;
    const long batches = static_cast<long>(800 * scale);
    auto e = make_engine("{}");
    std::vector<v1::Envelope> wire;
    for (long b = 0; b < batches; ++b) {
      v1::Envelope env;
      auto* batch = env.mutable_embeddings();
      batch->set_stream("generated");
      batch->set_generation(b / per_generation);
      batch->mutable_vectors()->set_dim(dim);
      for (int i = 0; i < per_batch * dim; ++i) {
        batch->mutable_vectors()->add_values(static_cast<float>(normal(rng)));
      }
      stamp(env, "embedding-run", static_cast<std::uint64_t>(b + 1));
      wire.push_back(std::move(env));
    }
    const auto start = clock_type::now();
    for (const auto& env : wire) e->process(env);
    const double s = seconds_since(start);
    const auto mons = e->monitors();
    std::printf("(b) embeddings: %ld batches of %d vectors, d = %d, %d batches per generation\n",
                batches, per_batch, dim, per_generation);
    report("embedding batch (64 x 256)", batches, per_batch, "vector", s, monitor_of(mons));
  }

  return 0;
}
