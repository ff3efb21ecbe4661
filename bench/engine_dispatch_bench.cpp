// Engine dispatch cost: how long the engine takes per event with the bundled threshold monitor
// loaded, against the floor of parsing the same envelopes. Prints figures; asserts nothing.
//
//   build/ci/bench/engine_dispatch_bench [events] [samples_per_event]
//
// Compare the ratios within one run: the machine is shared and absolute times are noisy.

#include <chrono>
#include <cstdio>
#include <cstdlib>
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

}  // namespace

int main(int argc, char** argv) {
  const long events = argc > 1 ? std::atol(argv[1]) : 1'000'000;
  const int samples = argc > 2 ? std::atoi(argv[2]) : 8;

  // Pre-serialised envelopes, as they would arrive on a socket.
  std::vector<std::string> wire;
  wire.reserve(1024);
  for (int i = 0; i < 1024; ++i) {
    v1::Envelope e;
    e.set_source("trainer/rank" + std::to_string(i % 4));
    e.set_run_id("bench");
    e.set_seq(static_cast<std::uint64_t>(i + 1));
    e.set_time_unix_nano(1'700'000'000'000'000'000 + i * 1'000'000LL);
    for (int s = 0; s < samples; ++s) {
      auto* m = e.mutable_metrics()->add_samples();
      m->set_name(s == 0 ? "train/loss" : "metric_" + std::to_string(s));
      m->set_value(1.0 + 0.001 * i);
      m->set_step(i);
    }
    wire.push_back(e.SerializeAsString());
  }

  const std::string yaml = "version: 1\nplugin_paths: [\"" + std::string(LOOPWARDEN_BINARY_DIR) +
                           "/lib/loopwarden/plugins\"]\nmonitors:\n"
                           "  - {name: loss_guard, plugin: threshold, config: {metric: train/loss, "
                           "above: 1000, consecutive: 3}}\n"
                           "  - {name: nonfinite, plugin: threshold, config: {metric: \"*loss\", "
                           "non_finite: true}}\n";
  auto cfg = core::parse_config(yaml, "bench.yaml");
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", cfg.error().message().c_str());
    return 2;
  }
  auto engine = core::engine::create(*cfg);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.error().message().c_str());
    return 2;
  }

  // (a) parse only: the floor any consumer of the wire format pays.
  v1::Envelope env;
  auto start = clock_type::now();
  std::size_t bytes = 0;
  for (long i = 0; i < events; ++i) {
    const auto& w = wire[static_cast<std::size_t>(i) & 1023];
    env.ParseFromString(w);
    bytes += w.size();
  }
  const double parse_s = seconds_since(start);

  // (b) parse + dispatch to two threshold monitors + tick.
  start = clock_type::now();
  for (long i = 0; i < events; ++i) {
    env.ParseFromString(wire[static_cast<std::size_t>(i) & 1023]);
    // Each event is new to the engine (the 1024 envelopes are reused): otherwise the per-source
    // accounting would rightly drop repeats as duplicates.
    env.set_seq(static_cast<std::uint64_t>(i + 1));
    env.set_source("trainer/rank0");
    (*engine)->process(env);
    (*engine)->tick(0);
  }
  const double full_s = seconds_since(start);

  std::printf("engine dispatch benchmark: %ld events, %d metric samples each, %.0f bytes/event\n",
              events, samples, static_cast<double>(bytes) / static_cast<double>(events));
  std::printf("  parse only              %8.0f ns/event  %10.0f events/s\n",
              parse_s * 1e9 / static_cast<double>(events), static_cast<double>(events) / parse_s);
  std::printf("  parse + 2 monitors      %8.0f ns/event  %10.0f events/s  %10.0f samples/s\n",
              full_s * 1e9 / static_cast<double>(events), static_cast<double>(events) / full_s,
              static_cast<double>(events) * samples / full_s);
  std::printf("  engine share            %8.0f ns/event  (%.2fx the parse floor)\n",
              (full_s - parse_s) * 1e9 / static_cast<double>(events), full_s / parse_s);
  for (const auto& m : (*engine)->monitors()) {
    std::printf("  monitor %-12s %8.0f ns/call mean, %8.0f ns max, %llu calls\n", m.name.c_str(),
                static_cast<double>(m.total_call_ns) / static_cast<double>(m.events ? m.events : 1),
                static_cast<double>(m.max_call_ns), static_cast<unsigned long long>(m.events));
  }
  return 0;
}
