#include <loopwarden/core/alert_config.hpp>

#include <fnmatch.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "alert_sinks.hpp"

namespace loopwarden::core {
namespace {

namespace fs = std::filesystem;
using sdk::config_node;

bool absent(const config_node& n) { return n.is_missing() || n.is_null(); }

// Sink names end up in metric labels, log lines and outbox rows.
bool is_plain_name(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
  });
}

std::optional<alert_sink_type> parse_sink_type(std::string_view s) {
  if (s == "log") return alert_sink_type::log;
  if (s == "file") return alert_sink_type::file;
  if (s == "webhook") return alert_sink_type::webhook;
  if (s == "slack") return alert_sink_type::slack;
  if (s == "pagerduty") return alert_sink_type::pagerduty;
  if (s == "alertmanager") return alert_sink_type::alertmanager;
  return std::nullopt;
}

std::optional<shadow_routing> parse_shadow_routing(std::string_view s) {
  if (s == "include") return shadow_routing::include;
  if (s == "only") return shadow_routing::only;
  if (s == "exclude") return shadow_routing::exclude;
  return std::nullopt;
}

template <typename E>
result<E> read_enum(const config_node& n, std::optional<E> (*parse)(std::string_view),
                    std::string_view names) {
  if (n.is_scalar()) {
    if (auto v = parse(n.scalar())) return *v;
  }
  return n.error("expected one of " + std::string(names) + ", got " + n.describe());
}

result<std::chrono::nanoseconds> read_positive_duration(const config_node& parent,
                                                        std::string_view key,
                                                        std::chrono::nanoseconds fallback) {
  auto v = parent.get_duration(key, fallback);
  if (!v) return v.error();
  if (v->count() <= 0) return parent[key].error("expected a duration above zero");
  return *v;
}

// Which keys each sink type uses beyond the common ones; anything else is refused by name, so a
// `path:` on a webhook sink is an error instead of being silently ignored.
bool key_applies(std::string_view key, alert_sink_type t) {
  if (key == "url" || key == "ca_file") {
    return t == alert_sink_type::webhook || t == alert_sink_type::slack ||
           t == alert_sink_type::pagerduty || t == alert_sink_type::alertmanager;
  }
  if (key == "path") return t == alert_sink_type::file;
  if (key == "routing_key" || key == "routing_key_env") return t == alert_sink_type::pagerduty;
  // Alertmanager behind a proxy takes an Authorization header (basic auth or a bearer token).
  if (key == "headers") return t == alert_sink_type::webhook || t == alert_sink_type::alertmanager;
  return true;
}

status read_url(const config_node& entry, alert_sink_config& s) {
  const config_node n = entry["url"];
  if (absent(n)) {
    if (s.type == alert_sink_type::pagerduty) {
      s.url = std::string(pagerduty_events_url);
    } else {
      return n.error("required for a " + std::string(to_string(s.type)) + " sink");
    }
  } else {
    auto text = n.as_string();
    if (!text) return text.error();
    s.url = *text;
  }
  auto target = detail::parse_http_url(s.url);
  if (!target) return (absent(n) ? entry : n).error(target.error().message());
  if (target->tls && !detail::https_supported()) {
    return (absent(n) ? entry : n)
        .error(
            "https is not available: this loopwarden was built without TLS support in "
            "cpp-httplib; use an http:// URL (for example through a local TLS proxy)");
  }
  return status::success();
}

status read_sink(const config_node& entry, std::string_view base_dir, alert_sink_config& s) {
  if (!entry.is_map()) {
    return entry.error("expected a map with name and type, got " + entry.describe());
  }
  if (auto st = entry.check_keys({"name", "type", "url", "path", "routing_key", "routing_key_env",
                                  "headers", "ca_file", "timeout", "max_attempts", "backoff",
                                  "queue_capacity", "fallback"});
      !st.ok()) {
    return st;
  }
  status missing;
  const config_node name = entry.require("name", missing);
  const config_node type = entry.require("type", missing);
  if (!missing.ok()) return missing;
  auto name_text = name.as_string();
  if (!name_text) return name_text.error();
  if (!is_plain_name(*name_text)) {
    return name.error("expected a sink name of lowercase letters, digits, '_', '.' or '-', got " +
                      name.describe());
  }
  s.name = *name_text;
  auto t = read_enum(type, &parse_sink_type, "log, file, webhook, slack, pagerduty, alertmanager");
  if (!t) return t.error();
  s.type = *t;

  for (const auto& key : entry.keys()) {
    if (!key_applies(key, s.type) && !absent(entry[key])) {
      return entry[key].error("not used by a " + std::string(to_string(s.type)) + " sink");
    }
  }

  switch (s.type) {
    case alert_sink_type::log:
      break;
    case alert_sink_type::file: {
      const config_node p = entry.require("path", missing);
      if (!missing.ok()) return missing;
      auto text = p.as_string();
      if (!text) return text.error();
      if (text->empty()) return p.error("expected a file path, got \"\"");
      fs::path path(*text);
      if (path.is_relative() && !base_dir.empty()) path = fs::path(base_dir) / path;
      s.path = path.lexically_normal().string();
      break;
    }
    case alert_sink_type::webhook:
    case alert_sink_type::slack:
    case alert_sink_type::alertmanager:
    case alert_sink_type::pagerduty:
      if (auto st = read_url(entry, s); !st.ok()) return st;
      break;
  }

  if (s.type == alert_sink_type::pagerduty) {
    const config_node key = entry["routing_key"];
    const config_node env = entry["routing_key_env"];
    if (absent(key) == absent(env)) {
      return entry.error("a pagerduty sink needs exactly one of routing_key or routing_key_env");
    }
    if (!absent(key)) {
      auto text = key.as_string();
      if (!text) return text.error();
      if (text->empty()) return key.error("expected a routing key, got \"\"");
      s.routing_key = *text;
    } else {
      auto var = env.as_string();
      if (!var) return var.error();
      const char* value = var->empty() ? nullptr : std::getenv(var->c_str());
      if (value == nullptr || *value == '\0') {
        return env.error("environment variable '" + *var + "' is not set or empty");
      }
      s.routing_key = value;
    }
  }

  if (const config_node h = entry["headers"]; !absent(h)) {
    if (!h.is_map())
      return h.error("expected a map of header names to values, got " + h.describe());
    for (const auto& k : h.keys()) {
      auto v = h[k].as_string();
      if (!v) return v.error();
      const bool bad_name = k.empty() || k.find_first_of(" :\r\n\t") != std::string::npos;
      if (bad_name) return h[k].error("not a valid HTTP header name");
      if (v->find_first_of("\r\n") != std::string::npos) {
        return h[k].error("a header value can't contain a line break");
      }
      s.headers.emplace_back(k, *v);
    }
  }

  if (const config_node ca = entry["ca_file"]; !absent(ca)) {
    auto text = ca.as_string();
    if (!text) return text.error();
    fs::path path(*text);
    if (path.is_relative() && !base_dir.empty()) path = fs::path(base_dir) / path;
    s.ca_file = path.lexically_normal().string();
  }

  auto timeout = read_positive_duration(entry, "timeout", s.timeout);
  if (!timeout) return timeout.error();
  s.timeout = *timeout;

  auto attempts = entry.get_positive_int("max_attempts", s.max_attempts);
  if (!attempts) return attempts.error();
  if (*attempts > 1000) return entry["max_attempts"].error("expected at most 1000 attempts");
  s.max_attempts = static_cast<std::uint32_t>(*attempts);

  if (const config_node b = entry["backoff"]; !absent(b)) {
    if (!b.is_map()) return b.error("expected a map with initial and max, got " + b.describe());
    if (auto st = b.check_keys({"initial", "max"}); !st.ok()) return st;
    auto initial = read_positive_duration(b, "initial", s.backoff_initial);
    if (!initial) return initial.error();
    auto max = read_positive_duration(b, "max", s.backoff_max);
    if (!max) return max.error();
    if (*max < *initial) return b["max"].error("must not be shorter than backoff.initial");
    s.backoff_initial = *initial;
    s.backoff_max = *max;
  }

  auto capacity =
      entry.get_positive_int("queue_capacity", static_cast<std::int64_t>(s.queue_capacity));
  if (!capacity) return capacity.error();
  s.queue_capacity = static_cast<std::size_t>(*capacity);

  auto fallback = entry.get_string("fallback", "");
  if (!fallback) return fallback.error();
  s.fallback = *fallback;
  return status::success();
}

status read_route(const config_node& entry, const alerts_config& cfg, alert_route& r) {
  if (!entry.is_map()) return entry.error("expected a map with sinks, got " + entry.describe());
  if (auto st = entry.check_keys({"breakers", "min_severity", "shadow", "sinks"}); !st.ok()) {
    return st;
  }
  if (const config_node b = entry["breakers"]; !absent(b)) {
    auto list = b.as_string_list();
    if (!list) return list.error();
    if (list->empty()) return b.error("expected at least one breaker pattern");
    for (std::size_t i = 0; i < list->size(); ++i) {
      if ((*list)[i].empty()) {
        return (b.is_sequence() ? b.at(i) : b).error("expected a breaker name pattern, got \"\"");
      }
    }
    r.breakers = std::move(list).value();
  }
  if (const config_node n = entry["min_severity"]; !absent(n)) {
    auto v = read_enum(n, &sdk::parse_severity, "info, warning, critical");
    if (!v) return v.error();
    r.min_severity = *v;
  }
  if (const config_node n = entry["shadow"]; !absent(n)) {
    auto v = read_enum(n, &parse_shadow_routing, "include, only, exclude");
    if (!v) return v.error();
    r.shadow = *v;
  }
  status missing;
  const config_node sinks = entry.require("sinks", missing);
  if (!missing.ok()) return missing;
  auto names = sinks.as_string_list();
  if (!names) return names.error();
  if (names->empty()) return sinks.error("expected at least one sink name");
  for (std::size_t i = 0; i < names->size(); ++i) {
    const std::string& name = (*names)[i];
    const config_node at = sinks.is_sequence() ? sinks.at(i) : sinks;
    if (cfg.find_sink(name) == nullptr) return at.error("no sink named '" + name + "'");
    if (std::count(names->begin(), names->begin() + static_cast<std::ptrdiff_t>(i), name) > 0) {
      return at.error("sink '" + name + "' is listed twice");
    }
  }
  r.sinks = std::move(names).value();
  return status::success();
}

// Fallbacks must name another sink and must not loop, or a dead sink would bounce alerts forever.
status check_fallbacks(const config_node& sinks_node, const alerts_config& cfg) {
  for (std::size_t i = 0; i < cfg.sinks.size(); ++i) {
    const alert_sink_config& s = cfg.sinks[i];
    if (s.fallback.empty()) continue;
    const config_node at = sinks_node.at(i)["fallback"];
    if (s.fallback == s.name) return at.error("a sink can't be its own fallback");
    if (cfg.find_sink(s.fallback) == nullptr) {
      return at.error("no sink named '" + s.fallback + "'");
    }
    std::vector<std::string> chain{s.name};
    for (const alert_sink_config* next = cfg.find_sink(s.fallback); next != nullptr;
         next = next->fallback.empty() ? nullptr : cfg.find_sink(next->fallback)) {
      const bool repeated = std::find(chain.begin(), chain.end(), next->name) != chain.end();
      chain.push_back(next->name);
      if (repeated) {
        std::string text;
        for (const auto& c : chain) text += (text.empty() ? "" : " -> ") + c;
        return at.error("fallback cycle: " + text);
      }
    }
  }
  return status::success();
}

}  // namespace

std::string_view to_string(alert_sink_type t) {
  switch (t) {
    case alert_sink_type::log:
      return "log";
    case alert_sink_type::file:
      return "file";
    case alert_sink_type::webhook:
      return "webhook";
    case alert_sink_type::slack:
      return "slack";
    case alert_sink_type::pagerduty:
      return "pagerduty";
    case alert_sink_type::alertmanager:
      return "alertmanager";
  }
  return "unknown";
}

std::string_view to_string(shadow_routing s) {
  switch (s) {
    case shadow_routing::include:
      return "include";
    case shadow_routing::only:
      return "only";
    case shadow_routing::exclude:
      return "exclude";
  }
  return "unknown";
}

const alert_sink_config* alerts_config::find_sink(std::string_view name) const {
  for (const auto& s : sinks) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

alerts_config default_alerts_config() {
  alerts_config cfg;
  alert_sink_config log;
  log.name = "log";
  log.type = alert_sink_type::log;
  cfg.sinks.push_back(std::move(log));
  alert_route everything;
  everything.sinks = {"log"};
  cfg.routes.push_back(std::move(everything));
  return cfg;
}

bool breaker_glob_match(std::string_view pattern, std::string_view name) {
  return ::fnmatch(std::string(pattern).c_str(), std::string(name).c_str(), 0) == 0;
}

result<alerts_config> parse_alerts_config(const sdk::config_node& node, std::string_view base_dir) {
  if (absent(node)) return default_alerts_config();
  if (!node.is_map())
    return node.error("expected a map with sinks and routes, got " + node.describe());
  if (auto st = node.check_keys(
          {"sidecar_id", "cluster", "runbook_url", "resend_interval", "sinks", "routes"});
      !st.ok()) {
    return st;
  }

  alerts_config cfg;
  auto sidecar = node.get_string("sidecar_id", "");
  if (!sidecar) return sidecar.error();
  cfg.sidecar_id = *sidecar;
  auto cluster = node.get_string("cluster", "");
  if (!cluster) return cluster.error();
  cfg.cluster = *cluster;
  auto runbook = node.get_string("runbook_url", cfg.runbook_url);
  if (!runbook) return runbook.error();
  cfg.runbook_url = *runbook;
  auto resend = read_positive_duration(node, "resend_interval", cfg.resend_interval);
  if (!resend) return resend.error();
  cfg.resend_interval = *resend;

  const config_node sinks = node["sinks"];
  if (absent(sinks)) {
    // Routes without sinks can name only the default log sink.
    cfg.sinks = default_alerts_config().sinks;
  } else {
    if (!sinks.is_sequence())
      return sinks.error("expected a list of sinks, got " + sinks.describe());
    if (sinks.size() == 0) return sinks.error("expected at least one sink");
    std::map<std::string, int> first_line;
    for (std::size_t i = 0; i < sinks.size(); ++i) {
      alert_sink_config s;
      if (auto st = read_sink(sinks.at(i), base_dir, s); !st.ok()) return st;
      if (auto [it, fresh] = first_line.emplace(s.name, sinks.at(i)["name"].line()); !fresh) {
        return sinks.at(i)["name"].error("duplicate sink name '" + s.name + "', first at line " +
                                         std::to_string(it->second));
      }
      cfg.sinks.push_back(std::move(s));
    }
    if (auto st = check_fallbacks(sinks, cfg); !st.ok()) return st;
  }

  const config_node routes = node["routes"];
  if (absent(routes)) {
    // No routes: everything to every sink that is not only somebody's fallback.
    alert_route everything;
    for (const auto& s : cfg.sinks) {
      const bool is_fallback = std::any_of(cfg.sinks.begin(), cfg.sinks.end(),
                                           [&](const auto& o) { return o.fallback == s.name; });
      if (!is_fallback) everything.sinks.push_back(s.name);
    }
    if (everything.sinks.empty()) {
      return sinks.error("every sink is another sink's fallback: add routes that name a sink");
    }
    cfg.routes.push_back(std::move(everything));
  } else {
    if (!routes.is_sequence()) {
      return routes.error("expected a list of routes, got " + routes.describe());
    }
    for (std::size_t i = 0; i < routes.size(); ++i) {
      alert_route r;
      if (auto st = read_route(routes.at(i), cfg, r); !st.ok()) return st;
      cfg.routes.push_back(std::move(r));
    }
  }
  return cfg;
}

}  // namespace loopwarden::core
