// session_budget: a copyable example of a complete loopwarden monitor plugin (see README.md).
//
// It adds up the cost an agent session reports with each agent step and trips a breaker when
// the session spends more than its budget. While a session is over budget it also answers gate
// requests for that session with "deny", and it keeps what each session has spent across a
// sidecar restart (snapshot/restore), so a restart never hands an agent a fresh budget.
//
//   config:
//     budget: 5.0              # required: the most one session may spend (> 0), in the host's
//                              # currency unit (AgentStep.cost)
//     warn_at: 0.8             # share of the budget at which it logs a warning, in [0, 1]
//     breaker: agent.budget    # the breaker it trips
//     max_sessions: 10000      # memory bound: sessions tracked at once (oldest forgotten first)

#include <cstdint>
#include <deque>
#include <loopwarden/plugin.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>

namespace {

namespace sdk = loopwarden::sdk;

std::string format_number(double v) {
  std::ostringstream out;
  out.precision(6);
  out << v;
  return out.str();
}

// "agent/session": how sessions are told apart. Agents reuse session ids, so both are needed.
std::string session_key(const std::string& agent_id, const std::string& session_id) {
  return agent_id + "/" + session_id;
}

// Thread-safety: none needed; the host never calls one instance concurrently.
class session_budget_monitor final : public sdk::monitor {
 public:
  // Called before configure (and again after it): must not fail, must not depend on config
  // except for names that come from it, such as the breaker's.
  sdk::monitor_info info() const override {
    sdk::monitor_info i;
    i.name = "session_budget";
    i.version = "1.0.0";
    i.description = "trips when an agent session spends more than its budget";
    i.kinds = {sdk::event_kind::agent_step};  // the only events on_event will see
    i.gate = true;                            // on_gate answers gate requests
    sdk::breaker_spec b;
    b.name = breaker_;
    b.action = sdk::breaker_action::require_approval;  // defaults; the operator may override
    b.severity = sdk::severity::warning;
    b.scope = sdk::breaker_scope::run;
    b.description = "an agent session spent more than its budget";
    i.breakers.push_back(b);
    return i;
  }

  // Every error names the field, its path and its line: typed reads already do, and
  // node.error() does for checks of our own.
  sdk::status configure(const sdk::config_node& config) override {
    if (auto s = config.check_keys({"budget", "warn_at", "breaker", "max_sessions"}); !s.ok()) {
      return s;
    }
    sdk::status missing;
    const sdk::config_node budget = config.require("budget", missing);
    if (!missing.ok()) return missing;
    auto b = budget.as_double();
    if (!b.ok()) return b.error();
    if (*b <= 0.0) return budget.error("expected a budget > 0, got " + budget.describe());
    budget_ = *b;

    if (config.contains("warn_at")) {
      auto w = config["warn_at"].as_probability();
      if (!w.ok()) return w.error();
      warn_at_ = *w;
    }
    auto breaker = config.get_string("breaker", "agent.budget");
    if (!breaker.ok()) return breaker.error();
    if (breaker->empty()) return config["breaker"].error("expected a breaker name");
    breaker_ = *breaker;
    auto max_sessions = config.get_positive_int("max_sessions", 10000);
    if (!max_sessions.ok()) return max_sessions.error();
    max_sessions_ = static_cast<std::size_t>(*max_sessions);
    return sdk::status::success();
  }

  // Must not block: no I/O, no sleeping, no waiting on locks held elsewhere.
  void on_event(const loopwarden::v1::Envelope& envelope, sdk::context& ctx) override {
    const auto& step = envelope.agent_step();
    if (!(step.cost() >= 0.0)) return;  // a negative or NaN cost is a host bug; ignore it
    const std::string key = session_key(step.agent_id(), step.session_id());
    session& s = find_or_add(key);
    const double before = s.spent;
    s.spent += step.cost();
    ctx.set_gauge("sessions", static_cast<double>(sessions_.size()));

    if (before < warn_at_ * budget_ && s.spent >= warn_at_ * budget_ && s.spent <= budget_) {
      ctx.log(sdk::log_level::warn, "session " + key + " has spent " + format_number(s.spent) +
                                        " of its budget of " + format_number(budget_));
    }
    if (s.spent <= budget_ || s.tripped) return;
    s.tripped = true;  // the breaker stays open until an operator resets it: trip once
    sdk::trip_request req;
    req.breaker = breaker_;
    req.reason = "session " + key + " spent " + format_number(s.spent) + ", over its budget of " +
                 format_number(budget_);
    req.evidence = {
        {"agent_id", step.agent_id()},         {"session_id", step.session_id()},
        {"turn", std::to_string(step.turn())}, {"spent", format_number(s.spent)},
        {"budget", format_number(budget_)},    {"last_step_cost", format_number(step.cost())},
    };
    ctx.trip(std::move(req));  // run_id left empty: the run of the event being handled
  }

  // Gate requests arrive ahead of queued events; answer from what is known now.
  sdk::gate_decision on_gate(const loopwarden::v1::GateRequest& request,
                             sdk::context& ctx) override {
    (void)ctx;
    sdk::gate_decision d;
    const auto& action = request.action();
    auto it = sessions_.find(session_key(action.agent_id(), action.session_id()));
    if (it == sessions_.end() || it->second.spent <= budget_) return d;  // allow
    d.verdict = sdk::gate_verdict::deny;
    d.reason = "the session has spent " + format_number(it->second.spent) + " of a budget of " +
               format_number(budget_);
    d.rule_id = "session_budget.exhausted";
    d.alternative = "ask an operator to raise the budget, or start a new session";
    return d;
  }

  // State worth keeping across a restart: one line per session, "<spent>\t<tripped>\t<key>".
  sdk::result<std::string> snapshot() const override {
    std::ostringstream out;
    out.precision(17);  // round-trips a double
    for (const std::string& key : order_) {
      if (key.find('\n') != std::string::npos) continue;  // cannot be written as one line
      const session& s = sessions_.at(key);
      out << s.spent << '\t' << (s.tripped ? 1 : 0) << '\t' << key << '\n';
    }
    return out.str();
  }

  // Receives exactly what snapshot returned. Refusing it (bad data) starts the monitor fresh.
  sdk::status restore(std::string_view state) override {
    std::unordered_map<std::string, session> sessions;
    std::deque<std::string> order;
    std::istringstream in{std::string(state)};
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      session s;
      int tripped = 0;
      std::string key;
      if (!(fields >> s.spent >> tripped) || fields.get() != '\t' || !std::getline(fields, key) ||
          key.empty() || !(s.spent >= 0.0)) {
        return sdk::make_error(sdk::status_code::parse_error,
                               "session_budget: bad snapshot line \"" + line + "\"");
      }
      s.tripped = tripped != 0;
      if (sessions.emplace(key, s).second) order.push_back(key);
    }
    sessions_ = std::move(sessions);
    order_ = std::move(order);
    return sdk::status::success();
  }

 private:
  struct session {
    double spent = 0.0;
    bool tripped = false;
  };

  // The session's entry, created if new; forgets the oldest session beyond max_sessions.
  session& find_or_add(const std::string& key) {
    auto it = sessions_.find(key);
    if (it != sessions_.end()) return it->second;
    if (sessions_.size() >= max_sessions_) {
      sessions_.erase(order_.front());
      order_.pop_front();
    }
    order_.push_back(key);
    return sessions_[key];
  }

  double budget_ = 0.0;
  double warn_at_ = 0.8;
  std::string breaker_ = "agent.budget";
  std::size_t max_sessions_ = 10000;
  std::unordered_map<std::string, session> sessions_;  // by session_key
  std::deque<std::string> order_;                      // keys of sessions_, oldest first
};

}  // namespace

// The one line that makes this file a loadable plugin: it exports the factory and the ABI record.
LOOPWARDEN_PLUGIN(session_budget_monitor);
