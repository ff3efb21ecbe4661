#pragma once
// Renders the daemon's figures as Prometheus text exposition format 0.0.4 (what /metrics serves).
// Pure: the same input gives the same bytes. The metric names, types and labels are the contract
// documented in docs/http-endpoint.md; change them only additively.

#include <string>
#include <string_view>
#include <vector>

#include <loopwarden/v1/breaker.pb.h>
#include <loopwarden/v1/control.pb.h>

#include "http_endpoint.hpp"

namespace loopwarden::sidecar::detail {

// The Content-Type of the rendered text.
inline constexpr const char* metrics_content_type = "text/plain; version=0.0.4; charset=utf-8";

// What to render. A null pointer means that source is not available: its metric families are left
// out (not rendered as zeros, which would read as real values). Borrowed for the call only.
struct metrics_input {
  const v1::SidecarStatus* status = nullptr;
  const v1::BreakerSnapshot* breakers = nullptr;
  const std::vector<alert_sink_stats>* alerts = nullptr;
};

// The exposition text: for each family a HELP line, a TYPE line and its samples; families without
// samples are omitted. Label values are escaped (backslash, double quote, newline) and invalid
// UTF-8 in them is replaced by U+FFFD. Thread-safety: none needed (a pure function).
std::string render_metrics_text(const metrics_input& input);

// A label value escaped for the text format: `\` -> `\\`, `"` -> `\"`, newline -> `\n`, after
// to_valid_utf8.
std::string escape_label_value(std::string_view value);

// `text` with every invalid UTF-8 sequence replaced by U+FFFD (producers name sources, breakers
// and reasons freely; Prometheus, browsers and JSON all need valid UTF-8).
std::string to_valid_utf8(std::string_view text);

// A sample value as Prometheus writes it: shortest round-trip form ("1e-06", "0.25", "3"), with
// "NaN", "+Inf" and "-Inf".
std::string format_sample_value(double value);

}  // namespace loopwarden::sidecar::detail
