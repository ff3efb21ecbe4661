#pragma once
// What a monitor may do to the world: trip breakers, publish gauges, log, and read the time.
// The host passes a context to every monitor call; it is valid only for that call.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <loopwarden/types.hpp>

namespace loopwarden::sdk {

// A request to open a breaker.
struct trip_request {
  std::string breaker;     // a breaker the monitor declared in monitor_info::breakers
  std::string reason;      // one line for humans: "loss > 3.0 for 5 consecutive samples"
  sdk::evidence evidence;  // what the monitor saw, as ordered key/values
  // Overrides of the declared defaults for this trip; the operator's config overrides both.
  std::optional<breaker_action> action;
  std::optional<sdk::severity> severity;
  // For run-scoped breakers: the run to trip. Empty = the run of the event being handled.
  std::string run_id;
};

// Thread-safety: a context is handed to one call on one thread and must not be kept or shared.
class context {
 public:
  // Opens (or keeps open) a breaker. Never blocks; the host records, persists and publishes it.
  // An open breaker stays open until an operator resets it, so tripping it again is harmless.
  virtual void trip(trip_request request) = 0;

  // Publishes a named gauge (exported as a metric, shown by `loopwarden explain`). The name is
  // scoped to the monitor instance; use snake_case, e.g. "projected_generations_to_floor".
  virtual void set_gauge(std::string_view name, double value) = 0;

  // Logs a line attributed to the monitor instance. Rate-limit anything per-event yourself.
  virtual void log(log_level level, std::string_view message) = 0;

  // The engine's clock, in nanoseconds since the Unix epoch. In live mode the wall clock; in
  // replay the time of the event being handled (or of the last event, in on_tick), so monitors
  // that use it stay deterministic. Monitors must not read the system clock themselves.
  virtual std::int64_t now_unix_nano() const = 0;

  // The configured name of this monitor instance (several instances may share one plugin).
  virtual std::string_view instance_name() const = 0;

 protected:
  ~context() = default;
};

}  // namespace loopwarden::sdk
