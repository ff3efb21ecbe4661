#pragma once
// The on-call status page (served at / and /status) and its JSON twin (/api/status): who is
// open and why, what changed recently, and whether the monitors and producers are healthy.
// The page is one self-contained HTML document: no scripts, no external assets, inline CSS, and
// a 5-second meta refresh. Every text that came from a producer, a monitor or an operator is
// HTML-escaped. Pure: the same input gives the same bytes.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <loopwarden/v1/breaker.pb.h>
#include <loopwarden/v1/control.pb.h>

#include "http_endpoint.hpp"

namespace loopwarden::sidecar::detail {

// Everything the page shows. An empty optional means that source is not available (the page
// says so instead of showing zeros); `problems` lists sources that failed or timed out.
struct status_view {
  std::optional<v1::SidecarStatus> status;
  std::optional<v1::BreakerSnapshot> breakers;
  std::optional<std::vector<v1::BreakerTransition>> transitions;
  std::optional<readiness> ready;
  std::optional<std::vector<alert_sink_stats>> alerts;
  std::vector<std::string> problems;  // e.g. "breakers: no answer within 2000 ms"
  std::int64_t now_unix_nano = 0;     // when the view was taken (ages and uptime are against it)
};

// The HTML page. Thread-safety: none needed (a pure function).
std::string render_status_page(const status_view& view);

// The same data as one JSON object (keys documented in docs/http-endpoint.md), with numbers as
// numbers and enums as the command line's lowercase names. Thread-safety: a pure function.
std::string render_status_json(const status_view& view);

// Breakers in the order the page shows them: open and forced open first, then half-open, then
// closed; within a group the most severe first, then the most recent change, then by name.
std::vector<v1::BreakerStatus> sort_breakers_for_display(const v1::BreakerSnapshot& snapshot);

// "3d 4h", "2h 5m", "4m 10s", "12s", "-" for a non-positive span.
std::string format_age(std::int64_t nanos);

}  // namespace loopwarden::sidecar::detail
