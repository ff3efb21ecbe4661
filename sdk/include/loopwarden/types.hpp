#pragma once
// Small vocabulary types shared by monitors, the host and the command line, with their names in
// configuration files and their loopwarden.v1 wire values.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <loopwarden/v1/breaker.pb.h>
#include <loopwarden/v1/gate.pb.h>

namespace loopwarden::sdk {

// What the host must do while a breaker is open. Config names: halt, pause, rollback, throttle,
// require_approval, alert.
enum class breaker_action { halt, pause, rollback, throttle, require_approval, alert };

// How bad a trip is. Config names: info, warning, critical.
enum class severity { info, warning, critical };

// One breaker per run, or one for everything. Config names: run, global.
enum class breaker_scope { run, global };

// A gate's answer, ordered from most to least permissive: the strictest answer wins.
enum class gate_verdict { allow, require_approval, deny };

enum class log_level { debug, info, warn, error };

std::string_view to_string(breaker_action a);
std::string_view to_string(severity s);
std::string_view to_string(breaker_scope s);
std::string_view to_string(gate_verdict v);
std::string_view to_string(log_level l);

std::optional<breaker_action> parse_breaker_action(std::string_view name);
std::optional<severity> parse_severity(std::string_view name);
std::optional<breaker_scope> parse_breaker_scope(std::string_view name);
std::optional<log_level> parse_log_level(std::string_view name);

v1::BreakerAction to_proto(breaker_action a);
v1::Severity to_proto(severity s);
v1::BreakerScope to_proto(breaker_scope s);
v1::GateVerdict to_proto(gate_verdict v);
// Wire values back to SDK values; nullopt for UNSPECIFIED or values this SDK does not know.
std::optional<breaker_action> from_proto(v1::BreakerAction a);
std::optional<severity> from_proto(v1::Severity s);
std::optional<breaker_scope> from_proto(v1::BreakerScope s);

// "closed", "open", "half_open", "forced_open", "unspecified".
std::string_view to_string(v1::BreakerState s);
// Wire values by their SDK names ("halt", "critical", "run", ...); "unspecified" for
// UNSPECIFIED or a value this SDK does not know.
std::string_view to_string(v1::BreakerAction a);
std::string_view to_string(v1::Severity s);
std::string_view to_string(v1::BreakerScope s);

// One piece of evidence, in the order the monitor gave it.
struct key_value {
  std::string key;
  std::string value;
};
using evidence = std::vector<key_value>;

}  // namespace loopwarden::sdk
