#pragma once
// The typed `alerts:` section of the daemon's configuration: where breaker alerts go (sinks), which
// alerts go where (routes), and how hard delivery tries. docs/alerts.md is the full reference.
//
//   alerts:
//     sidecar_id: trainer-eu-1          # stable id in fingerprints and labels (default: the
//     daemon's) cluster: prod-eu                  # optional label on every alert runbook_url:
//     https://wiki/runbook.md   # alerts link to <runbook_url>#<breaker name> resend_interval: 60s
//     # Alertmanager re-posts of firing alerts sinks:
//       - {name: ops-log, type: log}
//       - {name: archive, type: file, path: /var/log/loopwarden/alerts.jsonl}
//       - {name: hook, type: webhook, url: "http://hooks.internal/loopwarden",
//          headers: {Authorization: "Bearer ..."}, fallback: archive}
//       - {name: chat, type: slack, url: "https://hooks.slack.com/services/..."}
//       - {name: pager, type: pagerduty, routing_key_env: PD_ROUTING_KEY, fallback: archive}
//       - {name: am, type: alertmanager, url: "http://alertmanager:9093"}
//     routes:
//       - {breakers: ["training.*"], min_severity: critical, sinks: [pager, am]}
//       - {sinks: [ops-log, chat], shadow: include}
//
// Without an `alerts:` key every alert goes to one `log` sink.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <loopwarden/config_node.hpp>
#include <loopwarden/core/status.hpp>
#include <loopwarden/status.hpp>
#include <loopwarden/types.hpp>

namespace loopwarden::core {

// Config names: log, file, webhook, slack, pagerduty, alertmanager.
enum class alert_sink_type { log, file, webhook, slack, pagerduty, alertmanager };

std::string_view to_string(alert_sink_type t);

// How a route treats alerts of shadow breakers (monitors on trial). Config names as below.
enum class shadow_routing {
  include,  // shadow and live alerts; shadow ones skip the route's PagerDuty sinks (never page)
  only,     // shadow alerts only, to every sink of the route, PagerDuty included
  exclude,  // live alerts only
};

std::string_view to_string(shadow_routing s);

// PagerDuty's Events API v2 endpoint, the default `url` of a pagerduty sink.
inline constexpr std::string_view pagerduty_events_url = "https://events.pagerduty.com/v2/enqueue";

// One destination.
struct alert_sink_config {
  std::string name;  // unique, [a-z0-9_.-]+
  alert_sink_type type = alert_sink_type::log;
  std::string url;          // webhook, slack: the POST target; pagerduty: the events endpoint;
                            // alertmanager: the base URL (alerts go to <url>/api/v2/alerts)
  std::string path;         // file: the JSON-lines file (absolute once loaded with a base dir)
  std::string routing_key;  // pagerduty: the integration key (read from routing_key_env if given)
  std::vector<std::pair<std::string, std::string>> headers;  // webhook: extra request headers
  std::string ca_file;  // https: a PEM bundle to trust instead of the system's
  std::chrono::nanoseconds timeout = std::chrono::seconds(5);  // per delivery attempt
  std::uint32_t max_attempts = 8;  // attempts on this sink before its fallback takes over
  std::chrono::nanoseconds backoff_initial = std::chrono::seconds(1);
  std::chrono::nanoseconds backoff_max = std::chrono::minutes(5);
  std::size_t queue_capacity = 1024;  // alerts waiting for this sink's worker
  std::string fallback;  // another sink's name, used when this one gives up; empty: none
};

// Which alerts go to which sinks. An alert goes to the union of the sinks of every matching route.
struct alert_route {
  std::vector<std::string> breakers{"*"};  // glob patterns (fnmatch: *, ?, [...]) on the name
  sdk::severity min_severity = sdk::severity::info;
  shadow_routing shadow = shadow_routing::include;
  std::vector<std::string> sinks;  // sink names, at least one
};

struct alerts_config {
  std::string sidecar_id;                       // empty: the id the daemon passes to the planner
  std::string cluster;                          // empty: no cluster label
  std::string runbook_url = "docs/runbook.md";  // base; empty: alerts carry no runbook link
  std::chrono::nanoseconds resend_interval = std::chrono::seconds(60);
  std::vector<alert_sink_config> sinks;
  std::vector<alert_route> routes;

  // The sink of that name, or nullptr.
  const alert_sink_config* find_sink(std::string_view name) const;
};

// The configuration used when the document has no `alerts:` key: one log sink named "log" and one
// route sending everything (shadow alerts included) to it.
alerts_config default_alerts_config();

// Parses the `alerts:` section (a missing or null node gives default_alerts_config()). Relative
// file sink paths are resolved against `base_dir` (the config file's directory; empty: as given).
// Reads the environment for `routing_key_env`. Errors: invalid_argument naming the field path and
// line, e.g. `alerts.sinks[1].url: expected an http:// or https:// URL, got "ftp://x"
// (loopwarden.yaml:12)`; unknown keys, duplicate names, unknown sink names in routes and fallback
// cycles are refused.
result<alerts_config> parse_alerts_config(const sdk::config_node& alerts_section,
                                          std::string_view base_dir = {});

// True when `name` matches the glob `pattern` (fnmatch rules; `*` also matches '.').
bool breaker_glob_match(std::string_view pattern, std::string_view name);

}  // namespace loopwarden::core
