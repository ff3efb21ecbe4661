// agent_drift: watches autonomous agents through their steps (loopwarden.v1.AgentStep) and
//   - trips agent.drift (pause, ask a human) when an agent's stability index falls against its
//     own early baseline: response consistency, tool usage, reasoning/output lengths,
//     inter-agent agreement and human interventions, combined with configurable weights, under
//     a lower CUSUM whose in-control mean and sd are estimated from the baseline;
//   - trips agent.runaway (halt) when a session loops or runs away: iteration cap, token and
//     cost budgets per session and per run, repeated identical calls, the same error with
//     varying arguments, the same failure despite edits, short cycles, tool-call storms, no
//     progress, tokens without progress, deferral.
//
//   config:                       (docs/monitors/agent-drift.md lists every key and default)
//     drift:  {baseline_steps: 300, baseline_sessions: 3, window: 50, cusum: {k: 1, h: 6},
//              length_bins: 5, sigma_floor: 0.02, moved_z: 2, weights: {...}, ...}
//     guards: {max_steps: 1000, session_tokens: 100000000, same_observation: 4, same_error: 3,
//              same_error_varying_args: 6, failure_despite_edits: 10, cycle: {max_period: 5,
//              repeats: 3}, storm: {window: 5m, max_calls: 1000, max_failed_calls: 50,
//              failed_share: 0.8}, no_progress_steps: 20, tokens_without_progress: 5000000,
//              deferral_steps: 8, breaker: agent.runaway, ...}
//     limits: {max_agents: 1000, max_sessions: 1000, max_runs: 1000, ...}
//
// State: per run (budgets), per session (guards) and per agent (index), each in an lru_map
// bounded by limits.*; an evicted entry is counted in a gauge. A session ends with the step that
// reports task_completed: its guard state is dropped (the next step with that id starts afresh);
// the agent's index and the run's budgets carry on.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <loopwarden/plugin.hpp>
#include <loopwarden/state_codec.hpp>

#include "agent_stability.hpp"
#include "lru_map.hpp"
#include "session_guards.hpp"
#include "settings.hpp"
#include "vote_tally.hpp"

namespace {

namespace sdk = loopwarden::sdk;
namespace v1 = loopwarden::v1;
namespace ad = loopwarden::agent_drift;

constexpr double nan = std::numeric_limits<double>::quiet_NaN();
// Beyond these a field is absurd (a unit mistake, an overflow, garbage) and is ignored.
constexpr std::uint64_t max_tokens_per_step = 1'000'000'000;
constexpr double max_cost_per_step = 1e9;
constexpr std::uint64_t max_length = 1'000'000'000;
constexpr std::size_t max_id_length = 256;
// Format 2 dropped the budgets' and the iteration cap's "already tripped" flags (they trip at
// every step past the limit; the registry latches an open breaker); format 3 added the spacing
// of failing retries (backoff_retries). Formats 1 and 2 are still read (their retry streaks
// restore without spacing: held to the plain limits until they show a backoff again).
constexpr std::uint32_t snapshot_version = 3;

// A map key made of several ids, each length-prefixed so that no two id tuples share a key
// ("a" + "b|c" and "a|b" + "c" differ whatever characters the ids hold).
std::string key_of(std::initializer_list<std::string_view> ids) {
  std::string key;
  for (std::string_view id : ids) {
    key += std::to_string(id.size());
    key += ':';
    key += id;
  }
  return key;
}

std::string format_number(double v) {
  std::ostringstream out;
  out.precision(4);
  out << v;
  return out.str();
}

// Token and cost use of one run, for the run budgets.
struct run_budget {
  std::uint64_t tokens = 0;
  double cost = 0.0;
};

class agent_drift_monitor final : public sdk::monitor {
 public:
  agent_drift_monitor()
      : runs_(s_.limits.max_runs),
        sessions_(s_.limits.max_sessions),
        agents_(s_.limits.max_agents) {}

  sdk::monitor_info info() const override {
    sdk::monitor_info i;
    i.name = "agent_drift";
    i.version = "0.1.0";
    i.description = "trips when an agent drifts from its own baseline or a session loops";
    i.kinds = {sdk::event_kind::agent_step};
    sdk::breaker_spec drift;
    drift.name = s_.drift.breaker;
    drift.action = sdk::breaker_action::pause;
    drift.severity = sdk::severity::warning;
    drift.scope = sdk::breaker_scope::run;
    drift.description = "an agent's behaviour drifted from its own baseline: pause, ask a human";
    i.breakers.push_back(drift);
    sdk::breaker_spec runaway;
    runaway.name = s_.guards.breaker;
    runaway.action = sdk::breaker_action::halt;
    runaway.severity = sdk::severity::critical;
    runaway.scope = sdk::breaker_scope::run;
    runaway.description = "an agent session is looping or over budget: halt it";
    i.breakers.push_back(runaway);
    return i;
  }

  sdk::status configure(const sdk::config_node& config) override {
    ad::settings s;
    if (auto st = ad::parse_settings(config, s); !st.ok()) return st;
    s_ = std::move(s);
    reset_state();
    return sdk::status::success();
  }

  void on_event(const v1::Envelope& envelope, sdk::context& ctx) override {
    const v1::AgentStep& step = envelope.agent_step();
    if (envelope.run_id().size() > max_id_length || step.agent_id().size() > max_id_length ||
        step.session_id().size() > max_id_length) {
      ++ignored_steps_;
      ctx.set_gauge("ignored_steps", static_cast<double>(ignored_steps_));
      return;
    }
    const std::uint64_t ignored_before = ignored_fields_;
    const std::int64_t now = ctx.now_unix_nano();

    // Numbers first: an absurd field is ignored (and counted), the rest of the step still counts.
    std::uint64_t tokens = 0;
    for (std::uint64_t t : {step.tokens_in(), step.tokens_out()}) {
      if (t > max_tokens_per_step) {
        ++ignored_fields_;
      } else {
        tokens += t;
      }
    }
    double cost = step.cost();
    if (!(std::isfinite(cost) && cost >= 0.0 && cost <= max_cost_per_step)) {
      ++ignored_fields_;
      cost = 0.0;
    }
    if (static_cast<std::size_t>(step.tool_calls_size()) > s_.limits.max_tool_calls_per_step) {
      ++ignored_fields_;  // the calls beyond the limit are not looked at
    }

    const std::string run_key = envelope.run_id();
    const std::string agent_key = key_of({run_key, step.agent_id()});
    const std::string session_key = key_of({run_key, step.agent_id(), step.session_id()});

    std::vector<ad::guard_finding> findings = observe_session(session_key, step, tokens, cost, now);
    observe_run(run_key, tokens, cost, findings);
    if (!findings.empty()) trip_runaway(envelope, findings, ctx);

    if (s_.drift.enabled) observe_agent(envelope, agent_key, ctx);

    if (step.task_completed()) sessions_.erase(session_key);
    publish_counts(ctx, ignored_before != ignored_fields_);
  }

  sdk::result<std::string> snapshot() const override {
    sdk::state_writer w("agent_drift", snapshot_version);
    w.write_u64(ad::settings_digest(s_));
    for (std::uint64_t v : {evicted_runs_, evicted_sessions_, evicted_agents_, ignored_steps_,
                            ignored_fields_, runaway_trips_, drift_trips_}) {
      w.write_u64(v);
    }
    w.write_u64(runs_.size());
    runs_.for_each_by_recency([&](const std::string& key, const run_budget& r) {
      w.write_string(key);
      w.write_u64(r.tokens);
      w.write_f64(r.cost);
    });
    w.write_u64(sessions_.size());
    sessions_.for_each_by_recency([&](const std::string& key, const ad::session_guards& g) {
      w.write_string(key);
      g.save(w);
    });
    w.write_u64(agents_.size());
    agents_.for_each_by_recency([&](const std::string& key, const ad::agent_stability& a) {
      w.write_string(key);
      a.save(w);
    });
    votes_.save(w);
    return w.finish();
  }

  sdk::status restore(std::string_view state) override {
    if (state.empty()) return sdk::status::success();
    reset_state();
    if (auto st = read_snapshot(state); !st.ok()) {
      reset_state();  // refused: start fresh rather than half-restored
      return st.with_context("agent_drift");
    }
    return sdk::status::success();
  }

 private:
  void reset_state() {
    runs_ = ad::lru_map<run_budget>(s_.limits.max_runs);
    sessions_ = ad::lru_map<ad::session_guards>(s_.limits.max_sessions);
    agents_ = ad::lru_map<ad::agent_stability>(s_.limits.max_agents);
    votes_.clear();
    evicted_runs_ = evicted_sessions_ = evicted_agents_ = 0;
    ignored_steps_ = ignored_fields_ = runaway_trips_ = drift_trips_ = 0;
    published_once_ = false;
  }

  std::vector<ad::guard_finding> observe_session(const std::string& key, const v1::AgentStep& step,
                                                 std::uint64_t tokens, double cost,
                                                 std::int64_t now) {
    ad::session_guards* guards = sessions_.find(key);
    if (guards == nullptr) {
      auto [inserted, evicted] = sessions_.insert(key, ad::session_guards(s_));
      guards = inserted;
      if (evicted) ++evicted_sessions_;
    }
    return guards->observe({step, tokens, cost, now}, s_);
  }

  void observe_run(const std::string& key, std::uint64_t tokens, double cost,
                   std::vector<ad::guard_finding>& findings) {
    const ad::guard_settings& g = s_.guards;
    run_budget* run = runs_.find(key);
    if (run == nullptr) {
      auto [inserted, evicted] = runs_.insert(key, run_budget{});
      run = inserted;
      if (evicted) ++evicted_runs_;
    }
    run->tokens = tokens > std::numeric_limits<std::uint64_t>::max() - run->tokens
                      ? std::numeric_limits<std::uint64_t>::max()
                      : run->tokens + tokens;
    run->cost += cost;
    // Every step of a run over its budget trips (see session_guards::observe for why).
    if (g.run_tokens > 0 && run->tokens > g.run_tokens) {
      findings.push_back({"run_tokens",
                          "the run used " + std::to_string(run->tokens) + " tokens (budget " +
                              std::to_string(g.run_tokens) + ")",
                          {{"pattern", "run token budget exhausted"},
                           {"count", std::to_string(run->tokens)},
                           {"limit", std::to_string(g.run_tokens)}}});
    }
    if (g.run_cost > 0.0 && run->cost > g.run_cost) {
      findings.push_back({"run_cost",
                          "the run cost " + format_number(run->cost) + " (budget " +
                              format_number(g.run_cost) + ")",
                          {{"pattern", "run cost budget exhausted"},
                           {"count", format_number(run->cost)},
                           {"limit", format_number(g.run_cost)}}});
    }
  }

  void trip_runaway(const v1::Envelope& envelope, const std::vector<ad::guard_finding>& findings,
                    sdk::context& ctx) {
    const v1::AgentStep& step = envelope.agent_step();
    const ad::guard_finding& first = findings.front();
    sdk::trip_request req;
    req.breaker = s_.guards.breaker;
    req.reason = "agent " + step.agent_id() + " session " + step.session_id() + " turn " +
                 std::to_string(step.turn()) + ": " + first.reason;
    req.evidence = {{"guard", first.guard},
                    {"agent_id", step.agent_id()},
                    {"session_id", step.session_id()},
                    {"turn", std::to_string(step.turn())}};
    if (const ad::session_guards* g =
            sessions_.find(key_of({envelope.run_id(), step.agent_id(), step.session_id()}));
        g != nullptr) {
      req.evidence.push_back({"session_step", std::to_string(g->steps())});
      req.evidence.push_back({"session_tokens", std::to_string(g->tokens())});
    }
    for (const auto& kv : first.details) req.evidence.push_back(kv);
    if (findings.size() > 1) {
      std::string also;
      for (std::size_t i = 1; i < findings.size(); ++i) {
        also += (also.empty() ? "" : ",") + findings[i].guard;
        req.evidence.push_back({findings[i].guard, findings[i].reason});
      }
      req.evidence.push_back({"also", also});
    }
    req.evidence.push_back(
        {"what_to_do",
         "halt the session; read the pattern above in the agent's transcript, fix the tool, "
         "prompt or budget, then reset with a reason (docs/runbook.md#agent.runaway)"});
    runaway_trips_ += 1;
    ctx.set_gauge("runaway_trips", static_cast<double>(runaway_trips_));
    ctx.trip(std::move(req));
  }

  void observe_agent(const v1::Envelope& envelope, const std::string& key, sdk::context& ctx) {
    const v1::AgentStep& step = envelope.agent_step();
    ad::agent_stability* agent = agents_.find(key);
    if (agent == nullptr) {
      auto [inserted, evicted] = agents_.insert(key, ad::agent_stability(s_));
      agent = inserted;
      if (evicted) ++evicted_agents_;
    }
    std::span<const float> embedding(step.output_embedding().data(),
                                     static_cast<std::size_t>(step.output_embedding_size()));
    if (!embedding.empty()) {
      const bool wrong_size = embedding.size() > s_.limits.max_embedding_dim ||
                              (agent->dimension() != 0 && embedding.size() != agent->dimension());
      const bool non_finite = !wrong_size && std::any_of(embedding.begin(), embedding.end(),
                                                         [](float x) { return !std::isfinite(x); });
      if (wrong_size || non_finite) {
        ++ignored_fields_;
        embedding = {};
      }
    }
    double agreement = nan;
    if (step.has_agreement()) {
      if (std::isfinite(step.agreement()) && step.agreement() >= 0.0 && step.agreement() <= 1.0) {
        agreement = step.agreement();
      } else {
        ++ignored_fields_;
      }
    } else if (!step.vote().empty()) {
      agreement =
          votes_.cast(key_of({envelope.run_id(), step.session_id(), std::to_string(step.turn())}),
                      step.agent_id(), step.vote());
    }
    auto log_length = [&](std::uint64_t n) {
      if (n > max_length) {
        ++ignored_fields_;
        return nan;
      }
      return std::log1p(static_cast<double>(n));
    };
    const double out_len = log_length(step.output_length());
    const double reason_len = log_length(step.reasoning_length());
    const std::optional<ad::drift_finding> drift =
        agent->observe({step, embedding, agreement, out_len, reason_len}, s_);
    ctx.set_gauge("stability_index", agent->index());
    if (agent->calibrated()) {
      ctx.set_gauge("stability_baseline_mean", agent->baseline_mean());
      ctx.set_gauge("stability_baseline_sd", agent->baseline_sd());
      ctx.set_gauge("stability_cusum", agent->cusum_lower());
      ctx.set_gauge("stability_z", agent->last_z());
      static constexpr std::array<std::string_view, ad::component_count> names = {
          "stability_response_consistency", "stability_tool_usage", "stability_reasoning_stability",
          "stability_agreement", "stability_human_intervention"};
      for (std::size_t c = 0; c < ad::component_count; ++c) {
        ctx.set_gauge(names[c], agent->scores()[c]);
      }
    }
    if (!drift) return;
    sdk::trip_request req;
    req.breaker = s_.drift.breaker;
    req.reason = "agent " + step.agent_id() + ": " + drift->reason;
    req.evidence = {{"agent_id", step.agent_id()},
                    {"session_id", step.session_id()},
                    {"turn", std::to_string(step.turn())},
                    {"agent_step", std::to_string(agent->steps())}};
    for (const auto& kv : drift->details) req.evidence.push_back(kv);
    req.evidence.push_back(
        {"what_to_do",
         "compare recent transcripts of this agent with early ones along the moved dimensions; "
         "reset with a reason if the new behaviour is intended (the agent re-learns its "
         "baseline either way; docs/runbook.md#agent.drift)"});
    drift_trips_ += 1;
    ctx.set_gauge("drift_trips", static_cast<double>(drift_trips_));
    ctx.trip(std::move(req));
  }

  void publish_counts(sdk::context& ctx, bool ignored_changed) {
    // Sizes and evictions move rarely; setting them on change keeps the per-step cost down.
    const std::array<std::pair<const char*, std::uint64_t>, 6> counts = {
        {{"sessions", sessions_.size()},
         {"agents", agents_.size()},
         {"runs", runs_.size()},
         {"evicted_sessions", evicted_sessions_},
         {"evicted_agents", evicted_agents_},
         {"evicted_runs", evicted_runs_}}};
    for (std::size_t i = 0; i < counts.size(); ++i) {
      if (published_[i] != counts[i].second || !published_once_) {
        published_[i] = counts[i].second;
        ctx.set_gauge(counts[i].first, static_cast<double>(counts[i].second));
      }
    }
    published_once_ = true;
    if (ignored_changed) ctx.set_gauge("ignored_fields", static_cast<double>(ignored_fields_));
  }

  sdk::status read_snapshot(std::string_view state) {
    sdk::state_reader r(state);
    const auto version = r.read_header("agent_drift", snapshot_version);
    if (!version.ok()) return version.error();
    if (r.read_u64() != ad::settings_digest(s_)) {
      r.fail("taken under other drift, cycle, storm or memory settings");
      return r.finish();
    }
    for (std::uint64_t* v : {&evicted_runs_, &evicted_sessions_, &evicted_agents_, &ignored_steps_,
                             &ignored_fields_, &runaway_trips_, &drift_trips_}) {
      *v = r.read_u64();
    }
    constexpr std::uint64_t max_key = 4 * max_id_length;
    std::uint64_t n = r.read_count(s_.limits.max_runs);
    for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
      std::string key = r.read_string(max_key);
      run_budget b;
      b.tokens = r.read_u64();
      b.cost = r.read_f64();
      if (*version == 1) {
        (void)r.read_bool();  // format 1's "run tokens tripped" and "run cost tripped": unused
        (void)r.read_bool();
      }
      if (r.ok()) runs_.insert(key, b);
    }
    n = r.read_count(s_.limits.max_sessions);
    for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
      std::string key = r.read_string(max_key);
      ad::session_guards g(s_);
      if (g.load(r, s_, *version)) sessions_.insert(key, std::move(g));
    }
    n = r.read_count(s_.limits.max_agents);
    for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
      std::string key = r.read_string(max_key);
      ad::agent_stability a(s_);
      if (a.load(r, s_)) agents_.insert(key, std::move(a));
    }
    if (r.ok()) votes_.load(r);
    return r.finish();
  }

  ad::settings s_;
  ad::lru_map<run_budget> runs_;              // run id -> budgets
  ad::lru_map<ad::session_guards> sessions_;  // run, agent, session -> guards
  ad::lru_map<ad::agent_stability> agents_;   // run, agent -> stability index
  ad::vote_tally votes_;
  std::uint64_t evicted_runs_ = 0;
  std::uint64_t evicted_sessions_ = 0;
  std::uint64_t evicted_agents_ = 0;
  std::uint64_t ignored_steps_ = 0;
  std::uint64_t ignored_fields_ = 0;
  std::uint64_t runaway_trips_ = 0;
  std::uint64_t drift_trips_ = 0;
  std::array<std::uint64_t, 6> published_{};
  bool published_once_ = false;
};

}  // namespace

LOOPWARDEN_PLUGIN(agent_drift_monitor);
