#pragma once
// The monitor interface: what a plugin implements. See docs/plugin-guide.md for a complete
// example, and plugin.hpp for the one line that exports it.

#include <chrono>
#include <string>
#include <vector>

#include <loopwarden/v1/envelope.pb.h>
#include <loopwarden/v1/gate.pb.h>
#include <loopwarden/config_node.hpp>
#include <loopwarden/context.hpp>
#include <loopwarden/event_kind.hpp>
#include <loopwarden/status.hpp>
#include <loopwarden/types.hpp>

namespace loopwarden::sdk {

// A breaker a monitor may trip, with its defaults (the operator's config may override them).
struct breaker_spec {
  std::string name;  // dotted, e.g. "training.collapse"
  breaker_action action = breaker_action::halt;
  sdk::severity severity = sdk::severity::critical;
  breaker_scope scope = breaker_scope::run;
  std::string description;  // one line: what an open breaker means
};

// What a monitor is and wants.
struct monitor_info {
  std::string name;         // the plugin's name, e.g. "threshold"
  std::string version;      // the plugin's own version, e.g. "1.0.0"
  std::string description;  // one line
  event_kind_set kinds;     // the event kinds on_event receives; others are never delivered
  std::vector<breaker_spec> breakers;  // every breaker it may trip
  bool gate = false;                   // true if on_gate answers gate requests
  // How often on_tick runs; zero = never.
  std::chrono::milliseconds tick_interval{0};
};

// A gate answer. The strictest answer of all gating monitors wins (deny > require_approval >
// allow); with no gating monitor the answer is allow.
struct gate_decision {
  gate_verdict verdict = gate_verdict::allow;
  std::string reason;       // plain explanation
  std::string rule_id;      // which rule decided
  std::string alternative;  // a safer way to do the same, where one exists
};

// A monitor instance. The host creates one per configured instance, then calls configure once,
// then the event methods.
//
// Thread-safety: the host never calls one instance concurrently: all its calls (on_event,
// on_gate, on_tick, snapshot, restore) happen on one worker at a time, so a monitor needs no
// locks of its own. Calls must not block. Exceptions thrown from any call are caught by the
// host, counted, logged, and handled by the instance's policy (fail closed: trip its breakers;
// or disable it); prefer returning a status where the interface offers one.
class monitor {
 public:
  virtual ~monitor() = default;

  // Static description. Called before configure; must not depend on it, except that a monitor
  // may list breakers whose names come from config after configure (the host asks again).
  virtual monitor_info info() const = 0;

  // Validates and applies this instance's `config:` subtree (a missing node when absent).
  // Errors name the field: return node["window"].error("expected ..."), or propagate the status
  // of a typed read (they already carry path and line). Refuse unknown keys with check_keys.
  virtual status configure(const config_node& config) = 0;

  // One event of a kind listed in info().kinds. `envelope` is valid only during the call.
  virtual void on_event(const v1::Envelope& envelope, context& ctx) = 0;

  // A synchronous decision on a proposed action; only called when info().gate is true.
  virtual gate_decision on_gate(const v1::GateRequest& request, context& ctx) {
    (void)request;
    (void)ctx;
    return {};
  }

  // Periodic call (silence, rates, timeouts), every info().tick_interval.
  virtual void on_tick(context& ctx) { (void)ctx; }

  // Serialises learned state (baselines, windows) so a restart does not forget it. An empty
  // string means "nothing worth keeping". restore receives exactly what snapshot returned, from
  // the same plugin name and major version; refusing it (bad data) starts the monitor fresh.
  virtual result<std::string> snapshot() const { return std::string(); }
  virtual status restore(std::string_view state) {
    (void)state;
    return status::success();
  }
};

}  // namespace loopwarden::sdk
