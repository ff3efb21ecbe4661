#pragma once
// The read-only HTTP endpoint (docs/http-endpoint.md):
//   /metrics      Prometheus text exposition format 0.0.4
//   /healthz      200 "ok" while the daemon answers; 503 naming what is stuck
//   /readyz       200 once plugins are loaded, state is restored and events flow; else 503
//   / and /status a self-contained HTML status page for on-call engineers
//   /api/status   the status page's data as JSON, for scripts
// Only GET and HEAD are served (405 otherwise); nothing reachable over HTTP changes state.
//
// The endpoint knows nothing of the daemon: it reads through `http_sources`, plain callbacks the
// server provides. Each callback runs on one caller thread owned by the endpoint, with a deadline,
// so a stuck source makes /healthz say so instead of hanging every HTTP worker.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <loopwarden/v1/breaker.pb.h>
#include <loopwarden/v1/control.pb.h>
#include <loopwarden/config_node.hpp>
#include <loopwarden/core/status.hpp>

namespace loopwarden::sidecar::detail {

// The listen address used when the config has no `http:` section.
inline constexpr const char* default_http_listen = "127.0.0.1:9464";

// The `http:` section of the config.
struct http_config {
  // "host:port" ("[::1]:9464" for IPv6); port 0 picks any free port. Empty: no HTTP endpoint.
  // A host other than a loopback address (e.g. 0.0.0.0) exposes breaker reasons, evidence and
  // source names to whoever can reach the port: read-only, but not secret-free.
  std::string listen = default_http_listen;
  // How long one request waits for the sources before answering 503 (not a YAML key: the daemon
  // uses the default; tests and embedders may shorten it).
  std::chrono::milliseconds source_deadline{2000};
};

// Parses the `http:` section: `listen: "host:port"` (or "" / off to disable). A missing or null
// section gives the default. Errors: invalid_argument naming path and line, e.g.
// `http.listen: expected host:port, got "9464" (loopwarden.yaml:12)`, or an unknown key.
[[nodiscard]] core::result<http_config> parse_http_config(const sdk::config_node& http_section);

// True when `listen` names a loopback host (127.0.0.0/8, ::1, localhost) or is empty, so the
// daemon can warn when the endpoint is reachable from other machines. Precondition: `listen`
// was accepted by parse_http_config (or is empty).
bool is_loopback_listen(const std::string& listen);

// What /readyz reports. Ready means all three conditions hold.
struct readiness {
  bool plugins_loaded = false;  // every non-optional monitor is loaded and configured
  bool state_restored = false;  // breakers (and monitor snapshots) are restored from the store
  // The ingest sockets are open and the engine keeps taking queued events. An idle pipeline that
  // sends nothing is still flowing; a queue that nobody drains is not.
  bool ingest_flowing = false;
  std::string detail;  // one line for humans, e.g. "120 queued events, none taken for 12 s"

  bool ready() const { return plugins_loaded && state_restored && ingest_flowing; }
};

// One alert sink's figures (Slack, PagerDuty, Alertmanager, webhook, log).
struct alert_sink_stats {
  std::string name;               // sink instance name from the config
  std::string type;               // "slack", "pagerduty", "alertmanager", "webhook", "log", ...
  std::uint64_t queue_depth = 0;  // alerts waiting to be sent
  std::uint64_t sent = 0;         // delivered
  std::uint64_t failed = 0;       // given up on after the retries
  std::uint64_t retried = 0;      // retry attempts
  std::uint64_t fell_back = 0;    // handed to the fallback sink after failing here
  std::uint64_t deferred = 0;     // held back (rate limit, quiet hours, dedup window)
};

// Where the endpoint reads from. Each callback may be empty (that part is "not available"). They
// are called from the endpoint's caller thread, one at a time, never concurrently with each other;
// they must be cheap, must not block for long and must not change state. An exception thrown by
// one is caught and reported as that source failing.
struct http_sources {
  std::function<v1::SidecarStatus()> status;
  std::function<v1::BreakerSnapshot()> breakers;
  // The most recent transitions, at most `limit`, in any order (the page sorts newest first).
  std::function<std::vector<v1::BreakerTransition>(std::size_t limit)> recent_transitions;
  std::function<readiness()> ready;
  std::function<std::vector<alert_sink_stats>()> alerts;
};

// The HTTP server: one listener thread, a small bounded worker pool, one source caller thread.
// Request bodies are capped (64 KiB; request line and headers 8 KiB each, by cpp-httplib).
// Thread-safety: start, stop and the destructor from one thread; port() from any thread.
class http_endpoint {
 public:
  // Binds `config.listen` and starts serving. Errors: invalid_argument for an empty or malformed
  // address; io_error "can't listen for http on <address>: <reason>" when the bind fails (e.g. the
  // port is in use: the socket is not shared with another process).
  [[nodiscard]] static core::result<std::unique_ptr<http_endpoint>> start(const http_config& config,
                                                                          http_sources sources);

  // Stops serving: closes the listening socket, waits for requests in flight (each bounded by the
  // source deadline and socket timeouts) and joins every thread. When it returns no source
  // callback is running or will run again (a callback stuck in progress is waited for), so call it
  // before destroying what the sources read. Idempotent.
  void stop();
  ~http_endpoint();

  http_endpoint(const http_endpoint&) = delete;
  http_endpoint& operator=(const http_endpoint&) = delete;

  // The bound port (the one the system picked when the config said 0).
  int port() const;
  // The bound address as "host:port", for logs.
  std::string address() const;

 private:
  struct impl;
  explicit http_endpoint(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace loopwarden::sidecar::detail
