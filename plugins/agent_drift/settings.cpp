#include "settings.hpp"

#include <bit>
#include <cmath>
#include <string>
#include <tuple>
#include <utility>

#include "fingerprint.hpp"

namespace loopwarden::agent_drift {
namespace {

using sdk::config_node;
using sdk::status;

constexpr std::array<std::string_view, component_count> component_names = {
    "response_consistency", "tool_usage", "reasoning_stability", "agreement", "human_intervention"};
// The config keys of the weights, in component order.
constexpr std::array<std::string_view, component_count> weight_keys = {
    "response", "tools", "reasoning", "agreement", "human"};

// An optional integer in [min, max]; `out` keeps its default when the key is absent.
template <typename T>
status read_int(const config_node& node, std::string_view key, std::int64_t min, std::int64_t max,
                T& out) {
  if (!node.contains(key) || node[key].is_null()) return status::success();
  auto v = node[key].as_int();
  if (!v.ok()) return v.error();
  if (*v < min || *v > max) {
    return node[key].error("expected an integer in [" + std::to_string(min) + ", " +
                           std::to_string(max) + "], got " + node[key].describe());
  }
  out = static_cast<T>(*v);
  return status::success();
}

// A guard's count: 0 (off) or an integer in [min, max].
template <typename T>
status read_guard_count(const config_node& node, std::string_view key, std::int64_t min,
                        std::int64_t max, T& out) {
  if (!node.contains(key) || node[key].is_null()) return status::success();
  auto v = node[key].as_int();
  if (!v.ok()) return v.error();
  if (*v != 0 && (*v < min || *v > max)) {
    return node[key].error("expected 0 (off) or an integer in [" + std::to_string(min) + ", " +
                           std::to_string(max) + "], got " + node[key].describe());
  }
  out = static_cast<T>(*v);
  return status::success();
}

// An optional number with a lower bound (strict or not).
status read_number(const config_node& node, std::string_view key, double min, bool strict,
                   double& out) {
  if (!node.contains(key) || node[key].is_null()) return status::success();
  auto v = node[key].as_double();
  if (!v.ok()) return v.error();
  if (strict ? !(*v > min) : !(*v >= min)) {
    std::string bound = (strict ? "> " : ">= ") + std::to_string(min);
    bound.erase(bound.find_last_not_of('0') + 1);
    if (bound.back() == '.') bound.pop_back();
    return node[key].error("expected a number " + bound + ", got " + node[key].describe());
  }
  out = *v;
  return status::success();
}

status read_breaker(const config_node& node, std::string& out) {
  auto name = node.get_string("breaker", out);
  if (!name.ok()) return name.error();
  if (name->empty()) return node["breaker"].error("expected a breaker name");
  out = *name;
  return status::success();
}

status read_drift(const config_node& node, drift_settings& d) {
  if (node.is_missing() || node.is_null()) return status::success();
  if (auto st = node.check_keys({"enabled", "baseline_steps", "baseline_sessions",
                                 "max_baseline_steps", "window", "length_bins", "weights", "cusum",
                                 "sigma_floor", "moved_z", "breaker"});
      !st.ok()) {
    return st;
  }
  auto enabled = node.get_bool("enabled", d.enabled);
  if (!enabled.ok()) return enabled.error();
  d.enabled = *enabled;
  if (auto st = read_int(node, "window", 2, 10'000, d.window); !st.ok()) return st;
  if (auto st = read_int(node, "baseline_steps", 4, 100'000, d.baseline_steps); !st.ok()) {
    return st;
  }
  if (d.baseline_steps < 2 * d.window) {
    return node[node.contains("baseline_steps") ? "baseline_steps" : "window"].error(
        "baseline_steps (" + std::to_string(d.baseline_steps) +
        ") must be at least twice the window (" + std::to_string(d.window) + ")");
  }
  if (auto st = read_int(node, "baseline_sessions", 1, 10'000, d.baseline_sessions); !st.ok()) {
    return st;
  }
  d.max_baseline_steps = std::max(d.max_baseline_steps, d.baseline_steps);
  if (auto st = read_int(node, "max_baseline_steps", 4, 100'000, d.max_baseline_steps); !st.ok()) {
    return st;
  }
  if (d.max_baseline_steps < d.baseline_steps) {
    return node["max_baseline_steps"].error(
        "max_baseline_steps (" + std::to_string(d.max_baseline_steps) +
        ") is below baseline_steps (" + std::to_string(d.baseline_steps) + ")");
  }
  if (auto st = read_int(node, "length_bins", 2, 64, d.length_bins); !st.ok()) return st;
  const config_node weights = node["weights"];
  if (!weights.is_missing() && !weights.is_null()) {
    if (auto st = weights.check_keys({"response", "tools", "reasoning", "agreement", "human"});
        !st.ok()) {
      return st;
    }
    for (std::size_t c = 0; c < component_count; ++c) {
      if (auto st = read_number(weights, weight_keys[c], 0.0, false, d.weights[c]); !st.ok()) {
        return st;
      }
    }
    double sum = 0.0;
    for (double w : d.weights) sum += w;
    if (!(sum > 0.0)) return weights.error("at least one weight must be > 0");
  }
  const config_node cusum = node["cusum"];
  if (!cusum.is_missing() && !cusum.is_null()) {
    if (auto st = cusum.check_keys({"k", "h"}); !st.ok()) return st;
    if (auto st = read_number(cusum, "k", 0.0, false, d.cusum_k); !st.ok()) return st;
    if (auto st = read_number(cusum, "h", 0.0, true, d.cusum_h); !st.ok()) return st;
  }
  if (auto st = read_number(node, "sigma_floor", 0.0, true, d.sigma_floor); !st.ok()) return st;
  if (auto st = read_number(node, "moved_z", 0.0, true, d.moved_z); !st.ok()) return st;
  return read_breaker(node, d.breaker);
}

status read_guards(const config_node& node, guard_settings& g) {
  if (node.is_missing() || node.is_null()) return status::success();
  if (auto st = node.check_keys(
          {"max_steps", "session_tokens", "session_cost", "run_tokens", "run_cost",
           "tokens_without_progress", "same_observation", "same_error", "same_error_varying_args",
           "failure_despite_edits", "backoff_retries", "backoff_factor", "backoff_min_interval",
           "cycle", "storm", "no_progress_steps", "deferral_steps", "ignore_tools", "breaker"});
      !st.ok()) {
    return st;
  }
  constexpr std::int64_t big = 1'000'000'000'000'000'000;  // 1e18: "no practical limit"
  if (auto st = read_guard_count(node, "max_steps", 1, big, g.max_steps); !st.ok()) return st;
  for (auto [key, field] :
       {std::pair{"session_tokens", &g.session_tokens}, std::pair{"run_tokens", &g.run_tokens},
        std::pair{"tokens_without_progress", &g.tokens_without_progress}}) {
    if (auto st = read_guard_count(node, key, 1, big, *field); !st.ok()) return st;
  }
  for (auto [key, field] :
       {std::pair{"session_cost", &g.session_cost}, std::pair{"run_cost", &g.run_cost}}) {
    if (auto st = read_number(node, key, 0.0, false, *field); !st.ok()) return st;
  }
  // A repeat limit of 1 would trip on the first call: the smallest loop is two.
  for (auto [key, field] :
       {std::pair{"same_observation", &g.same_observation}, std::pair{"same_error", &g.same_error},
        std::pair{"same_error_varying_args", &g.same_error_varying_args},
        std::pair{"failure_despite_edits", &g.failure_despite_edits},
        std::pair{"backoff_retries", &g.backoff_retries}}) {
    if (auto st = read_guard_count(node, key, 2, 1'000'000, *field); !st.ok()) return st;
  }
  // A factor of 1 or less would call any steady retry loop a backoff.
  if (auto st = read_number(node, "backoff_factor", 1.0, true, g.backoff_factor); !st.ok()) {
    return st;
  }
  if (node.contains("backoff_min_interval")) {
    auto interval = node.get_duration("backoff_min_interval", g.backoff_min_interval);
    if (!interval.ok()) return interval.error();
    if (*interval < std::chrono::nanoseconds(0) || *interval > std::chrono::hours(24)) {
      return node["backoff_min_interval"].error("expected a duration from 0s to 24h, got " +
                                                node["backoff_min_interval"].describe());
    }
    g.backoff_min_interval = *interval;
  }
  for (auto [key, field] : {std::pair{"no_progress_steps", &g.no_progress_steps},
                            std::pair{"deferral_steps", &g.deferral_steps}}) {
    if (auto st = read_guard_count(node, key, 1, 1'000'000, *field); !st.ok()) return st;
  }
  const config_node cycle = node["cycle"];
  if (!cycle.is_missing() && !cycle.is_null()) {
    if (auto st = cycle.check_keys({"max_period", "repeats"}); !st.ok()) return st;
    // Period 1 is an exact repeat (same_observation / same_error); cycles start at 2.
    if (auto st = read_guard_count(cycle, "max_period", 2, 64, g.cycle_max_period); !st.ok()) {
      return st;
    }
    if (auto st = read_int(cycle, "repeats", 2, 100, g.cycle_repeats); !st.ok()) return st;
  }
  const config_node storm = node["storm"];
  if (!storm.is_missing() && !storm.is_null()) {
    if (auto st = storm.check_keys({"window", "max_calls", "max_failed_calls", "failed_share"});
        !st.ok()) {
      return st;
    }
    auto window = storm.get_duration("window", g.storm_window);
    if (!window.ok()) return window.error();
    if (*window < std::chrono::seconds(1) || *window > std::chrono::hours(24)) {
      return storm["window"].error("expected a duration from 1s to 24h, got " +
                                   storm["window"].describe());
    }
    g.storm_window = *window;
    for (auto [key, field] : {std::pair{"max_calls", &g.storm_max_calls},
                              std::pair{"max_failed_calls", &g.storm_max_failed_calls}}) {
      if (auto st = read_guard_count(storm, key, 1, 100'000'000, *field); !st.ok()) return st;
    }
    if (storm.contains("failed_share")) {
      auto share = storm["failed_share"].as_probability();
      if (!share.ok()) return share.error();
      g.storm_failed_share = *share;
    }
  }
  if (node.contains("ignore_tools") && !node["ignore_tools"].is_null()) {
    auto tools = node["ignore_tools"].as_string_list();
    if (!tools.ok()) return tools.error();
    g.ignore_tools = {tools->begin(), tools->end()};
  }
  return read_breaker(node, g.breaker);
}

status read_limits(const config_node& node, limit_settings& l) {
  if (node.is_missing() || node.is_null()) return status::success();
  if (auto st = node.check_keys({"max_agents", "max_sessions", "max_runs", "max_tools",
                                 "max_tools_per_session", "max_embedding_dim",
                                 "max_tool_calls_per_step", "max_distinct_actions"});
      !st.ok()) {
    return st;
  }
  for (auto [key, field, max] :
       {std::tuple{"max_agents", &l.max_agents, 1'000'000},
        std::tuple{"max_sessions", &l.max_sessions, 1'000'000},
        std::tuple{"max_runs", &l.max_runs, 1'000'000}, std::tuple{"max_tools", &l.max_tools, 4096},
        std::tuple{"max_tools_per_session", &l.max_tools_per_session, 4096},
        std::tuple{"max_embedding_dim", &l.max_embedding_dim, 65'536},
        std::tuple{"max_tool_calls_per_step", &l.max_tool_calls_per_step, 65'536},
        std::tuple{"max_distinct_actions", &l.max_distinct_actions, 1'000'000}}) {
    if (auto st = read_int(node, key, 1, max, *field); !st.ok()) return st;
  }
  return status::success();
}

}  // namespace

std::string_view component_name(std::size_t c) {
  return c < component_count ? component_names[c] : "unknown";
}

status parse_settings(const config_node& config, settings& out) {
  if (auto st = config.check_keys({"drift", "guards", "limits"}); !st.ok()) return st;
  settings s;
  if (auto st = read_drift(config["drift"], s.drift); !st.ok()) return st;
  if (auto st = read_guards(config["guards"], s.guards); !st.ok()) return st;
  if (auto st = read_limits(config["limits"], s.limits); !st.ok()) return st;
  if (s.drift.breaker == s.guards.breaker) {
    return config["guards"]["breaker"].error("must differ from drift.breaker (\"" +
                                             s.drift.breaker + "\")");
  }
  out = std::move(s);
  return status::success();
}

std::uint64_t settings_digest(const settings& s) {
  // Only what gives the state its shape and meaning: thresholds, budgets, breaker names and
  // memory bounds on counts may change across a restart without invalidating what was learned.
  fingerprint f;
  const drift_settings& d = s.drift;
  f.add_u64(d.enabled).add_u64(d.baseline_steps).add_u64(d.window).add_u64(d.length_bins);
  f.add_u64(d.baseline_sessions).add_u64(d.max_baseline_steps);
  for (double w : d.weights) f.add_u64(std::bit_cast<std::uint64_t>(w));
  for (double v : {d.cusum_k, d.cusum_h, d.sigma_floor}) {
    f.add_u64(std::bit_cast<std::uint64_t>(v));
  }
  const guard_settings& g = s.guards;
  f.add_u64(g.cycle_max_period).add_u64(g.cycle_repeats);
  f.add_u64(static_cast<std::uint64_t>(g.storm_window.count()));
  const limit_settings& l = s.limits;
  f.add_u64(l.max_tools).add_u64(l.max_embedding_dim).add_u64(l.max_distinct_actions);
  return f.value();
}

}  // namespace loopwarden::agent_drift
