// agent_drift per-step cost: how long the engine takes per agent step with the agent_drift
// monitor loaded (every guard and the stability index on), against the floor of parsing the
// same envelopes, with and without a 256-d output embedding, 3 tool calls per step. Prints
// figures; asserts nothing.
//
//   build/ci/bench/agent_drift_bench [steps] [sessions]
//
// The steps come from 20 agents working in `sessions` concurrent sessions (round robin), each
// step with fresh arguments and results, the workspace moving every few steps: the guards'
// novelty sets and trackers fill as they do in real sessions. Compare within one run: the
// machine is shared and absolute times are noisy.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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

// Pre-serialised agent steps, as they would arrive on a socket.
std::vector<std::string> make_steps(std::size_t count, std::size_t sessions, int dim) {
  std::mt19937_64 rng(42);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_int_distribution<int> tool(0, 5);
  const char* tools[] = {"read_file", "edit_file", "bash", "grep", "write_file", "web_fetch"};
  std::vector<std::string> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t session = i % sessions;
    v1::Envelope e;
    e.set_source("harness/0");
    e.set_run_id("bench");
    v1::AgentStep& s = *e.mutable_agent_step();
    s.set_agent_id("agent-" + std::to_string(session % 20));
    s.set_session_id("session-" + std::to_string(session));
    s.set_turn(i / sessions);
    for (int c = 0; c < 3; ++c) {
      v1::ToolCall& call = *s.add_tool_calls();
      call.set_name(tools[tool(rng)]);
      call.set_target("src/file" + std::to_string(rng() % 500) + ".py");
      call.set_args_digest("a" + std::to_string(rng()));
      call.set_status(v1::TOOL_STATUS_OK);
      call.set_observation_digest("o" + std::to_string(rng()));
    }
    for (int d = 0; d < dim; ++d) s.add_output_embedding(static_cast<float>(normal(rng)));
    s.set_output_digest("d" + std::to_string(rng()));
    s.set_output_length(200 + rng() % 800);
    s.set_reasoning_length(rng() % 3000);
    s.set_tokens_in(20'000 + rng() % 60'000);
    s.set_tokens_out(100 + rng() % 1000);
    s.set_cost(0.05);
    s.set_agreement(0.6 + 0.4 * static_cast<double>(rng() % 1000) / 1000.0);
    s.set_workspace_hash("ws-" + std::to_string(session) + "-" +
                         std::to_string(i / (sessions * 3)));
    out.push_back(e.SerializeAsString());
  }
  return out;
}

struct figures {
  double parse_ns = 0;
  double full_ns = 0;
  double mean_call_ns = 0;
  double max_call_ns = 0;
};

figures measure(const std::vector<std::string>& wire, long steps) {
  const std::string yaml = "version: 1\nplugin_paths: [\"" + std::string(LOOPWARDEN_BINARY_DIR) +
                           "/lib/loopwarden/plugins\"]\nmonitors:\n"
                           "  - {name: agent_drift, plugin: agent_drift}\n";
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
  const std::size_t n = wire.size();
  v1::Envelope env;
  auto start = clock_type::now();
  for (long i = 0; i < steps; ++i) env.ParseFromString(wire[static_cast<std::size_t>(i) % n]);
  const double parse_s = seconds_since(start);

  start = clock_type::now();
  for (long i = 0; i < steps; ++i) {
    env.ParseFromString(wire[static_cast<std::size_t>(i) % n]);
    env.set_seq(static_cast<std::uint64_t>(i + 1));  // each step is new to the engine
    env.set_time_unix_nano(1'700'000'000'000'000'000 + i * 2'000'000'000LL);
    (*engine)->process(env);
  }
  const double full_s = seconds_since(start);
  figures f;
  f.parse_ns = parse_s * 1e9 / static_cast<double>(steps);
  f.full_ns = full_s * 1e9 / static_cast<double>(steps);
  for (const auto& m : (*engine)->monitors()) {
    f.mean_call_ns =
        static_cast<double>(m.total_call_ns) / static_cast<double>(m.events ? m.events : 1);
    f.max_call_ns = static_cast<double>(m.max_call_ns);
  }
  return f;
}

// The one step that closes an agent's baseline runs the calibration (every 50-step window of the
// 300-step baseline scored against the rest): timed apart, over 50 agents.
void calibration_cost() {
  const std::string yaml = "version: 1\nplugin_paths: [\"" + std::string(LOOPWARDEN_BINARY_DIR) +
                           "/lib/loopwarden/plugins\"]\nmonitors:\n"
                           "  - {name: agent_drift, plugin: agent_drift}\n";
  auto cfg = core::parse_config(yaml, "bench.yaml");
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  auto engine = core::engine::create(*cfg, opts);
  if (!engine.ok()) std::exit(2);
  // 3 sessions of 100 steps per agent: step 300 of each agent closes its baseline.
  const auto wire = make_steps(300, 3, 256);
  double closing_ns = 0;
  double other_ns = 0;
  std::uint64_t seq = 0;
  constexpr int agents = 50;
  v1::Envelope env;
  for (int a = 0; a < agents; ++a) {
    for (std::size_t i = 0; i < wire.size(); ++i) {
      env.ParseFromString(wire[i]);
      env.mutable_agent_step()->set_agent_id("calibrating-" + std::to_string(a));
      env.set_seq(++seq);
      env.set_time_unix_nano(1'800'000'000'000'000'000 +
                             static_cast<std::int64_t>(seq) * 1'000'000'000);
      const auto start = clock_type::now();
      (*engine)->process(env);
      const double ns = seconds_since(start) * 1e9;
      (i + 1 == wire.size() ? closing_ns : other_ns) += ns;
    }
  }
  std::printf("  the step that closes a 300-step baseline (calibration), 256-d embeddings:\n");
  std::printf("    closing step               %8.0f ns mean over %d agents\n", closing_ns / agents,
              agents);
  std::printf("    the other 299 steps        %8.0f ns mean\n",
              other_ns / (agents * (static_cast<double>(wire.size()) - 1)));
}

}  // namespace

int main(int argc, char** argv) {
  const long steps = argc > 1 ? std::atol(argv[1]) : 200'000;
  const std::size_t sessions = argc > 2 ? static_cast<std::size_t>(std::atol(argv[2])) : 100;
  std::printf(
      "agent_drift benchmark: %ld steps, 3 tool calls each, %zu concurrent sessions, "
      "20 agents, every guard and the index on (defaults)\n",
      steps, sessions);
  for (const int dim : {0, 256}) {
    const auto wire = make_steps(20'000, sessions, dim);
    const figures f = measure(wire, steps);
    std::printf("  %s\n", dim == 0 ? "no embedding" : "256-d output embedding");
    std::printf("    parse only                 %8.0f ns/step\n", f.parse_ns);
    std::printf("    parse + engine + monitor   %8.0f ns/step  %10.0f steps/s\n", f.full_ns,
                1e9 / f.full_ns);
    std::printf("    agent_drift on_event       %8.0f ns/step mean, %8.0f ns max\n", f.mean_call_ns,
                f.max_call_ns);
  }
  calibration_cost();
  return 0;
}
