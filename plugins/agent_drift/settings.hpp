#pragma once
// The agent_drift monitor's configuration: every key of docs/monitors/agent-drift.md with its
// default, and the parser that refuses bad values naming the field and line.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include <loopwarden/config_node.hpp>
#include <loopwarden/status.hpp>

namespace loopwarden::agent_drift {

// The stability index's components, in the order they are reported.
enum class component : std::size_t { response, tools, reasoning, agreement, human };
inline constexpr std::size_t component_count = 5;
// "response_consistency", "tool_usage", "reasoning_stability", "agreement", "human_intervention".
std::string_view component_name(std::size_t c);

// The stability index and its change detector (per agent).
struct drift_settings {
  bool enabled = true;
  std::size_t baseline_steps = 300;   // the agent's first steps, its own reference behaviour
  std::size_t baseline_sessions = 3;  // ... spanning at least this many sessions (task attempts)
  std::size_t max_baseline_steps = 1000;  // ... or closed at this many steps whatever the sessions
  std::size_t window = 50;                // steps per recent window (and per detector observation)
  std::size_t length_bins = 5;            // equal-mass bins of the baseline's log lengths
  // Weights of the components (response, tools, reasoning, agreement, human), each >= 0.
  std::array<double, component_count> weights = {0.25, 0.25, 0.25, 0.15, 0.10};
  double cusum_k = 1.0;       // allowance of the lower CUSUM, in baseline standard deviations
  double cusum_h = 6.0;       // decision interval, in baseline standard deviations
  double sigma_floor = 0.02;  // smallest standard deviation of the index used to standardise
  double moved_z = 2.0;       // a component "moved" when it is this many of its sds below
  std::string breaker = "agent.drift";
};

// The runaway-loop guards (per session, and per run for the run budgets). 0 turns a guard off.
struct guard_settings {
  std::uint64_t max_steps = 1000;
  std::uint64_t session_tokens = 100'000'000;
  double session_cost = 0.0;
  std::uint64_t run_tokens = 0;
  double run_cost = 0.0;
  std::uint64_t tokens_without_progress = 5'000'000;
  std::uint64_t same_observation = 4;         // identical successful calls, same observation
  std::uint64_t same_error = 3;               // identical failing calls, same error
  std::uint64_t same_error_varying_args = 6;  // failing calls of one tool with one error
  std::uint64_t failure_despite_edits = 10;   // the same failure after this many state changes
  // Failing retries whose intervals each grow by backoff_factor or more (a retry policy with
  // exponential backoff) may go on to backoff_retries before repeated_failure / same_error trip.
  std::uint64_t backoff_retries = 10;
  double backoff_factor = 1.5;
  // A grown interval shorter than this does not count: backoff waits are seconds (an agent's
  // retry takes a model turn), millisecond jitter between fast retries is not a backoff.
  std::chrono::nanoseconds backoff_min_interval = std::chrono::seconds(1);
  std::size_t cycle_max_period = 5;
  std::size_t cycle_repeats = 3;
  std::chrono::nanoseconds storm_window = std::chrono::minutes(5);
  std::uint64_t storm_max_calls = 1000;
  std::uint64_t storm_max_failed_calls = 50;
  double storm_failed_share = 0.8;
  std::uint64_t no_progress_steps = 20;
  std::uint64_t deferral_steps = 8;
  std::set<std::string, std::less<>> ignore_tools;
  std::string breaker = "agent.runaway";
};

// Memory bounds. Whatever the events, state never grows past these.
struct limit_settings {
  std::size_t max_agents = 1000;
  std::size_t max_sessions = 1000;
  std::size_t max_runs = 1000;
  std::size_t max_tools = 64;              // distinct tool names in one agent's histograms
  std::size_t max_tools_per_session = 64;  // tools with storm and error trackers per session
  std::size_t max_embedding_dim = 4096;
  std::size_t max_tool_calls_per_step = 256;  // calls beyond this in one step are ignored
  std::size_t max_distinct_actions = 1024;    // per session: remembered (call, outcome) pairs
};

struct settings {
  drift_settings drift;
  guard_settings guards;
  limit_settings limits;
};

// Reads the monitor's `config:` node into `out` (defaults for what is absent). Errors name the
// field path and line; unknown keys are refused. `out` is only written on success.
sdk::status parse_settings(const sdk::config_node& config, settings& out);

// A digest of everything that shapes the monitor's state, so a snapshot taken under other
// settings is refused rather than misread.
std::uint64_t settings_digest(const settings& s);

}  // namespace loopwarden::agent_drift
