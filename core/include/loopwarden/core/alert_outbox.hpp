#pragma once
// The durable outbox between breaker transitions and the alert router.
//
// A transition's alerts are planned (which sinks, which payload) by an alert_planner and written
// to the outbox in the same store transaction as the transition itself (an approval's by an
// approval_alert_planner, in the approval's transaction), so a crash between the change and the
// delivery loses nothing: the router delivers whatever is still pending after a
// restart (at least once; receivers deduplicate on the fingerprint).
//
// Implementations: memory_alert_outbox (alert_router.hpp; tests, replay) and the SQLite state
// store (sqlite_store.hpp), where the outbox is a table in the same database as the breakers.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <loopwarden/v1/breaker.pb.h>
#include <loopwarden/core/status.hpp>
#include <loopwarden/status.hpp>

namespace loopwarden::core {

// One alert for one sink.
struct outbox_alert {
  std::int64_t id = 0;       // assigned by the outbox on enqueue (increasing)
  std::string sink;          // the sink's name in the config's `alerts.sinks`
  std::string fingerprint;   // stable: the same trip gives the same fingerprint
  std::string kind;          // "trigger" | "resolve" | "shadow" | "test"
  std::string payload_json;  // the sink-neutral alert (alert_router.hpp)
  std::int64_t created_unix_nano = 0;
  std::uint32_t attempts = 0;               // delivery attempts so far
  std::int64_t next_attempt_unix_nano = 0;  // not before this (0: now)
  std::string last_error;
};

// Decides which alerts one transition makes (possibly none). Pure: no I/O, no clock.
using alert_planner = std::function<std::vector<outbox_alert>(const v1::BreakerTransition&)>;

struct approval;  // sqlite_store.hpp

// Decides which alerts one approval change makes (possibly none), given the approval as it now
// stands: a new pending one, or one just approved, denied, expired or used. Pure: no I/O, no
// clock. The store writes them in the same transaction as the change, as for transitions.
using approval_alert_planner = std::function<std::vector<outbox_alert>(const approval&)>;

// Thread-safety: implementations are safe from any thread.
class alert_outbox {
 public:
  virtual ~alert_outbox() = default;

  // Adds alerts that do not come with a transition (e.g. `loopwarden alerts test`). Assigns ids.
  virtual status enqueue(std::vector<outbox_alert> alerts) = 0;

  // Undelivered, not given up, oldest first, at most `limit`.
  virtual result<std::vector<outbox_alert>> pending(std::size_t limit) = 0;

  // Delivered (by `via_sink`: the alert's own sink or its fallback). It is never returned again.
  virtual status mark_delivered(std::int64_t id, std::string_view via_sink,
                                std::int64_t now_unix_nano) = 0;

  // One failed attempt; the alert stays pending and is retried at `next_attempt_unix_nano`.
  virtual status mark_attempt(std::int64_t id, std::uint32_t attempts,
                              std::int64_t next_attempt_unix_nano, std::string_view error) = 0;

  // Given up for good (its sink and fallback both failed past their retry budgets).
  virtual status mark_failed(std::int64_t id, std::string_view error,
                             std::int64_t now_unix_nano) = 0;
};

}  // namespace loopwarden::core
