#pragma once
// The alert sinks behind alert_router: one class per sink type, each turning the sink-neutral alert
// (docs/alerts.md) into its receiver's format and delivering it once. Retries, backoff and fallback
// are the router's; a sink makes exactly one attempt per deliver() call.
//
// cpp-httplib appears in alert_sinks.cpp only: its errors become delivery_result values there.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include <loopwarden/core/alert_config.hpp>
#include <loopwarden/core/status.hpp>

namespace loopwarden::core::detail {

// An http:// or https:// URL split for cpp-httplib.
struct http_target {
  bool tls = false;
  std::string host;              // without brackets for IPv6 literals
  int port = 0;                  // explicit or the scheme's default
  std::string path;              // "/..." including any query; "/" when the URL has none
  std::string scheme_host_port;  // "http://host:port", what httplib::Client takes
};

// Errors: invalid_argument "expected an http:// or https:// URL, got ..." and friends (lowercase,
// without path or line: callers add their own context).
result<http_target> parse_http_url(std::string_view url);

// True when cpp-httplib was built with OpenSSL, so https:// URLs can be used.
bool https_supported();

// What one delivery attempt did.
struct delivery_result {
  bool ok = false;
  int http_status = 0;  // the receiver's status code; 0 when there was no HTTP response
  std::string error;    // lowercase, empty on success
  // From a Retry-After header on 429 or 503: how long the receiver asks us to wait.
  std::optional<std::chrono::nanoseconds> retry_after;
  // Retrying the same request cannot succeed (e.g. 400, 401, 403, 404): skip to the fallback.
  bool permanent = false;
};

// One alert handed to a sink.
struct alert_delivery {
  const nlohmann::ordered_json& alert;  // the sink-neutral alert (borrowed for the call)
  std::string_view for_sink;            // the alert's own sink (not this one when falling back)
  std::int64_t now_unix_nano = 0;
};

// Thread-safety: deliver() and cancel() may be called from several threads at once (the sink's
// worker, send_test callers, the router's stop()).
class alert_sink {
 public:
  virtual ~alert_sink() = default;
  alert_sink(const alert_sink&) = delete;
  alert_sink& operator=(const alert_sink&) = delete;

  const alert_sink_config& config() const { return config_; }

  // One attempt. Never throws.
  virtual delivery_result deliver(const alert_delivery& d) = 0;

  // Aborts HTTP requests in flight and makes new ones fail at once, until resume(). Does nothing
  // for local sinks.
  virtual void cancel() {}
  virtual void resume() {}

 protected:
  explicit alert_sink(alert_sink_config config) : config_(std::move(config)) {}

 private:
  const alert_sink_config config_;
};

// The sink for `sink` (`all` supplies alert-wide settings such as the resend interval).
std::unique_ptr<alert_sink> make_alert_sink(const alert_sink_config& sink,
                                            const alerts_config& all);

// Renderers, exposed for the sinks' own use and kept pure: same alert, same output.
std::string render_log_line(const nlohmann::ordered_json& alert);
nlohmann::ordered_json render_slack(const nlohmann::ordered_json& alert);
nlohmann::ordered_json render_pagerduty(const nlohmann::ordered_json& alert,
                                        std::string_view routing_key);
nlohmann::ordered_json render_alertmanager(const nlohmann::ordered_json& alert,
                                           std::int64_t now_unix_nano,
                                           std::chrono::nanoseconds resend_interval);

// A Retry-After value: delay-seconds or an HTTP-date (RFC 9110), relative to now, at most a day.
// nullopt when it is neither; a date in the past gives zero.
std::optional<std::chrono::nanoseconds> parse_retry_after(std::string_view value,
                                                          std::int64_t now_unix_nano);

// RFC 3339 in UTC with milliseconds: "2024-05-01T12:00:00.123Z".
std::string format_rfc3339(std::int64_t unix_nano);

}  // namespace loopwarden::core::detail
