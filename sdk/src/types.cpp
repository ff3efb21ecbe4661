#include <loopwarden/types.hpp>

#include <array>
#include <utility>

namespace loopwarden::sdk {
namespace {

template <typename E, std::size_t N>
std::optional<E> lookup(const std::array<std::pair<E, std::string_view>, N>& table,
                        std::string_view name) {
  for (const auto& [value, text] : table) {
    if (text == name) return value;
  }
  return std::nullopt;
}

template <typename E, std::size_t N>
std::string_view name_of(const std::array<std::pair<E, std::string_view>, N>& table, E value) {
  for (const auto& [v, text] : table) {
    if (v == value) return text;
  }
  return "unknown";
}

constexpr std::array<std::pair<breaker_action, std::string_view>, 6> action_names = {{
    {breaker_action::halt, "halt"},
    {breaker_action::pause, "pause"},
    {breaker_action::rollback, "rollback"},
    {breaker_action::throttle, "throttle"},
    {breaker_action::require_approval, "require_approval"},
    {breaker_action::alert, "alert"},
}};
constexpr std::array<std::pair<severity, std::string_view>, 3> severity_names = {{
    {severity::info, "info"},
    {severity::warning, "warning"},
    {severity::critical, "critical"},
}};
constexpr std::array<std::pair<breaker_scope, std::string_view>, 2> scope_names = {{
    {breaker_scope::run, "run"},
    {breaker_scope::global, "global"},
}};
constexpr std::array<std::pair<gate_verdict, std::string_view>, 3> verdict_names = {{
    {gate_verdict::allow, "allow"},
    {gate_verdict::require_approval, "require_approval"},
    {gate_verdict::deny, "deny"},
}};
constexpr std::array<std::pair<log_level, std::string_view>, 4> level_names = {{
    {log_level::debug, "debug"},
    {log_level::info, "info"},
    {log_level::warn, "warn"},
    {log_level::error, "error"},
}};

}  // namespace

std::string_view to_string(breaker_action a) { return name_of(action_names, a); }
std::string_view to_string(severity s) { return name_of(severity_names, s); }
std::string_view to_string(breaker_scope s) { return name_of(scope_names, s); }
std::string_view to_string(gate_verdict v) { return name_of(verdict_names, v); }
std::string_view to_string(log_level l) { return name_of(level_names, l); }

std::optional<breaker_action> parse_breaker_action(std::string_view name) {
  return lookup(action_names, name);
}
std::optional<severity> parse_severity(std::string_view name) {
  return lookup(severity_names, name);
}
std::optional<breaker_scope> parse_breaker_scope(std::string_view name) {
  return lookup(scope_names, name);
}
std::optional<log_level> parse_log_level(std::string_view name) {
  return lookup(level_names, name);
}

v1::BreakerAction to_proto(breaker_action a) {
  switch (a) {
    case breaker_action::halt:
      return v1::BREAKER_ACTION_HALT;
    case breaker_action::pause:
      return v1::BREAKER_ACTION_PAUSE;
    case breaker_action::rollback:
      return v1::BREAKER_ACTION_ROLLBACK;
    case breaker_action::throttle:
      return v1::BREAKER_ACTION_THROTTLE;
    case breaker_action::require_approval:
      return v1::BREAKER_ACTION_REQUIRE_APPROVAL;
    case breaker_action::alert:
      return v1::BREAKER_ACTION_ALERT;
  }
  return v1::BREAKER_ACTION_UNSPECIFIED;
}

v1::Severity to_proto(severity s) {
  switch (s) {
    case severity::info:
      return v1::SEVERITY_INFO;
    case severity::warning:
      return v1::SEVERITY_WARNING;
    case severity::critical:
      return v1::SEVERITY_CRITICAL;
  }
  return v1::SEVERITY_UNSPECIFIED;
}

v1::BreakerScope to_proto(breaker_scope s) {
  return s == breaker_scope::run ? v1::BREAKER_SCOPE_RUN : v1::BREAKER_SCOPE_GLOBAL;
}

v1::GateVerdict to_proto(gate_verdict v) {
  switch (v) {
    case gate_verdict::allow:
      return v1::GATE_VERDICT_ALLOW;
    case gate_verdict::require_approval:
      return v1::GATE_VERDICT_REQUIRE_APPROVAL;
    case gate_verdict::deny:
      return v1::GATE_VERDICT_DENY;
  }
  return v1::GATE_VERDICT_UNSPECIFIED;
}

std::optional<breaker_action> from_proto(v1::BreakerAction a) {
  switch (a) {
    case v1::BREAKER_ACTION_HALT:
      return breaker_action::halt;
    case v1::BREAKER_ACTION_PAUSE:
      return breaker_action::pause;
    case v1::BREAKER_ACTION_ROLLBACK:
      return breaker_action::rollback;
    case v1::BREAKER_ACTION_THROTTLE:
      return breaker_action::throttle;
    case v1::BREAKER_ACTION_REQUIRE_APPROVAL:
      return breaker_action::require_approval;
    case v1::BREAKER_ACTION_ALERT:
      return breaker_action::alert;
    default:
      return std::nullopt;
  }
}

std::optional<severity> from_proto(v1::Severity s) {
  switch (s) {
    case v1::SEVERITY_INFO:
      return severity::info;
    case v1::SEVERITY_WARNING:
      return severity::warning;
    case v1::SEVERITY_CRITICAL:
      return severity::critical;
    default:
      return std::nullopt;
  }
}

std::optional<breaker_scope> from_proto(v1::BreakerScope s) {
  switch (s) {
    case v1::BREAKER_SCOPE_RUN:
      return breaker_scope::run;
    case v1::BREAKER_SCOPE_GLOBAL:
      return breaker_scope::global;
    default:
      return std::nullopt;
  }
}

std::string_view to_string(v1::BreakerState s) {
  switch (s) {
    case v1::BREAKER_STATE_CLOSED:
      return "closed";
    case v1::BREAKER_STATE_OPEN:
      return "open";
    case v1::BREAKER_STATE_HALF_OPEN:
      return "half_open";
    case v1::BREAKER_STATE_FORCED_OPEN:
      return "forced_open";
    default:
      return "unspecified";
  }
}

std::string_view to_string(v1::BreakerAction a) {
  const auto v = from_proto(a);
  return v ? to_string(*v) : "unspecified";
}

std::string_view to_string(v1::Severity s) {
  const auto v = from_proto(s);
  return v ? to_string(*v) : "unspecified";
}

std::string_view to_string(v1::BreakerScope s) {
  const auto v = from_proto(s);
  return v ? to_string(*v) : "unspecified";
}

}  // namespace loopwarden::sdk
