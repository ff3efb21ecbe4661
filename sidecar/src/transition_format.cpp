#include <loopwarden/sidecar/transition_format.hpp>

#include <ctime>
#include <nlohmann/json.hpp>

#include <loopwarden/types.hpp>

namespace loopwarden::sidecar {
namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  return out;
}

}  // namespace

std::string format_time(std::int64_t unix_nano) {
  if (unix_nano == 0) return "-";
  std::int64_t secs = unix_nano / 1'000'000'000;
  std::int64_t ms = (unix_nano % 1'000'000'000) / 1'000'000;
  if (ms < 0) {
    ms += 1000;
    secs -= 1;
  }
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms));
  return out;
}

std::string format_transition_text(const v1::BreakerTransition& t) {
  const auto& b = t.breaker();
  std::string s = b.name() + " " + upper(sdk::to_string(b.state()));
  if (!b.run_id().empty()) s += " (run " + b.run_id() + ")";
  s += ": " + std::string(sdk::to_string(b.action())) + ", " + std::string(sdk::to_string(b.severity())) + ", epoch " +
       std::to_string(b.epoch());
  s += "  [" + t.cause() + " from " + std::string(sdk::to_string(t.previous())) + "]\n";
  if (t.cause() == "trip" || t.cause() == "force_open") {
    s += "    by " + b.monitor() + ": " + b.reason() + "\n";
  }
  if (!t.operator_id().empty() || !t.note().empty()) {
    s += "    ";
    if (!t.operator_id().empty()) s += "operator " + t.operator_id() + ": ";
    s += t.note() + "\n";
  }
  s += "    at " + format_time(b.changed_unix_nano());
  if (!t.trigger_source().empty()) {
    s += ", after " + t.trigger_source() + " seq " + std::to_string(t.trigger_seq());
  }
  s += "\n";
  if (b.evidence_size() > 0) {
    s += "    evidence:";
    for (const auto& e : b.evidence()) s += " " + e.key() + "=" + e.value();
    s += "\n";
  }
  return s;
}

std::string format_transition_json(const v1::BreakerTransition& t, std::uint64_t event_index) {
  const auto& b = t.breaker();
  nlohmann::ordered_json j;
  j["type"] = "transition";
  j["event_index"] = event_index;
  j["breaker"] = b.name();
  j["run_id"] = b.run_id();
  j["from"] = sdk::to_string(t.previous());
  j["to"] = sdk::to_string(b.state());
  j["cause"] = t.cause();
  j["action"] = std::string(sdk::to_string(b.action()));
  j["severity"] = std::string(sdk::to_string(b.severity()));
  j["epoch"] = b.epoch();
  j["monitor"] = b.monitor();
  j["reason"] = b.reason();
  nlohmann::ordered_json ev = nlohmann::ordered_json::array();
  for (const auto& e : b.evidence()) ev.push_back({e.key(), e.value()});
  j["evidence"] = std::move(ev);
  j["time"] = format_time(b.changed_unix_nano());
  j["trigger_source"] = t.trigger_source();
  j["trigger_seq"] = t.trigger_seq();
  if (!t.operator_id().empty()) j["operator"] = t.operator_id();
  if (!t.note().empty()) j["note"] = t.note();
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace loopwarden::sidecar
