#pragma once
// Breaker alerts: the planner that turns transitions into outbox rows, and the router that
// delivers the rows to their sinks (log, file, webhook, Slack, PagerDuty, Alertmanager) with
// retries, backoff, fallback and deduplication. docs/alerts.md describes the behaviour and the
// sink-neutral alert object every sink renders.
//
// Wiring, in order: the store writes each transition together with make_alert_planner()'s rows,
// and each approval change with make_approval_alert_planner()'s (alert_outbox.hpp); after the
// write, the daemon calls alert_router::notify(); the router's dispatcher delivers whatever the
// outbox holds as pending, including rows left by a previous run.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <loopwarden/v1/breaker.pb.h>
#include <loopwarden/core/alert_config.hpp>
#include <loopwarden/core/alert_outbox.hpp>
#include <loopwarden/core/status.hpp>
#include <loopwarden/status.hpp>

namespace loopwarden::core {

// The planner for `config`. `sidecar_id` must be stable across restarts (a host name, not
// host:pid), because it is part of every fingerprint; `config.sidecar_id` wins when set.
// trip / force_open give "trigger" rows ("shadow" for shadow breakers); reset and probation_end
// give "resolve" rows with the fingerprint of the trigger they end; ack, restore and other causes
// give none. One row per routed sink. The planner copies what it needs from `config`.
alert_planner make_alert_planner(const alerts_config& config, std::string sidecar_id);

// A "test" alert for `sink` (for `loopwarden alerts test SINK` through the outbox). The sink is
// not checked against `config`; the fingerprint is unique per `now_unix_nano`.
outbox_alert make_test_alert(const alerts_config& config, std::string_view sink,
                             std::string_view sidecar_id, std::int64_t now_unix_nano);

struct approval;  // sqlite_store.hpp

// The alerts for an action waiting for a human (a stored require_approval): one "approval" row
// per sink that routes the name "approval.<monitor>" at severity warning, so operators route
// them like breakers (routes: [{breakers: ["approval.*"], sinks: [pager]}]); the default route
// sends them to the log. The payload is the sink-neutral alert object with state "pending",
// action "require_approval", the approval's id, requester, run and expiry as evidence, and the
// commands that decide it. The fingerprint is unique per approval id. For an approval that was
// approved, denied or expired: resolve rows for the same fingerprint (status "resolved", the
// outcome in "resolution"), so the page closes; for a used one, nothing.
std::vector<outbox_alert> make_approval_alerts(const alerts_config& config,
                                               std::string_view sidecar_id, const approval& a);

// make_approval_alerts as the state store's approval planner
// (sqlite_state_store::set_approval_alert_planner), so each approval change and its alerts are
// committed in one transaction. Copies what it needs from `config`; `sidecar_id` as for
// make_alert_planner.
approval_alert_planner make_approval_alert_planner(const alerts_config& config,
                                                   std::string sidecar_id);

// Delivery counters of one sink, for /metrics. Counters only grow.
struct alert_sink_stats {
  std::string name;
  alert_sink_type type = alert_sink_type::log;
  std::size_t queue_depth = 0;     // alerts waiting for this sink's worker now
  std::uint64_t sent = 0;          // outbox alerts delivered here (its own and fallen-back ones)
  std::uint64_t failed = 0;        // this sink's alerts given up for good (fallbacks failed too)
  std::uint64_t retried = 0;       // failed attempts on this sink scheduled for another try
  std::uint64_t fell_back = 0;     // alerts this sink handed to its fallback
  std::uint64_t deferred = 0;      // times an alert stayed in the outbox because the queue was full
  std::uint64_t deduplicated = 0;  // duplicates of delivered alerts, marked delivered unsent
  std::uint64_t resent = 0;        // Alertmanager re-posts of firing alerts that succeeded
};

// What send_test() did.
struct alert_test_report {
  std::string sink;
  bool delivered = false;
  int http_status = 0;  // the receiver's answer; 0 for local sinks or without an HTTP response
  std::string error;    // empty when delivered
  std::chrono::nanoseconds elapsed{0};
};

struct alert_router_options {
  // The daemon's id, as given to make_alert_planner (config.sidecar_id wins when set). Re-sent
  // Alertmanager alerts are re-planned with it, so it must be the planner's.
  std::string sidecar_id;
  // Now, in Unix nanoseconds; empty: the system clock. Retry times in the outbox use this clock.
  std::function<std::int64_t()> clock;
  // The breakers that are open or forced open now (e.g. from breaker_registry::snapshot()), for
  // Alertmanager re-sends every resend_interval; empty: no re-sends. Called on the router's
  // dispatcher thread; it must not call the router.
  std::function<std::vector<v1::BreakerStatus>()> open_breakers;
  // How often the dispatcher looks at the outbox without a notify().
  std::chrono::nanoseconds poll_interval = std::chrono::seconds(1);
  // At most this many pending alerts are read per look.
  std::size_t scan_limit = 10000;
  // stop() lets queued deliveries finish for this long, then abandons them (they stay pending).
  std::chrono::nanoseconds stop_deadline = std::chrono::seconds(5);
};

// Delivers the outbox's pending alerts. One dispatcher thread reads the outbox and hands each due
// alert to its sink's worker through that sink's bounded queue; a full queue leaves the alert in
// the outbox (counted as deferred). A worker makes one attempt per hand-over and records the
// outcome in the outbox: delivered, another attempt at a backed-off time (Retry-After honoured),
// the fallback sink after max_attempts, or failed for good. Alerts of one (sink, fingerprint) are
// delivered in outbox order, and a (sink, fingerprint, kind) delivered once is never sent again by
// this router (duplicates are marked delivered). Delivery is at least once across restarts.
// Thread-safety: every method is safe from any thread. The outbox is borrowed and must outlive
// the router.
class alert_router {
 public:
  // `config` must be valid as parse_alerts_config() returns it: a sink URL that is not http(s)
  // is a broken invariant (std::invalid_argument). Starts nothing.
  alert_router(alerts_config config, alert_outbox& outbox, alert_router_options options = {});
  ~alert_router();  // stop()
  alert_router(const alert_router&) = delete;
  alert_router& operator=(const alert_router&) = delete;

  // Starts the dispatcher and one worker per sink. Does nothing when already running.
  void start();

  // Stops dispatching, lets queued deliveries finish until options.stop_deadline, then cancels
  // requests in flight and abandons the rest (they stay pending in the outbox, their attempts
  // uncounted). Returns within the deadline, plus at worst the sink timeout of a request that was
  // still connecting when cancelled. Does nothing when not running; start() may follow.
  void stop();
  // The same with an absolute deadline (e.g. what is left of a daemon's shutdown budget); a
  // deadline already past abandons at once whatever is queued or in flight.
  void stop(std::chrono::steady_clock::time_point deadline);

  // Wakes the dispatcher now (call after a transition and its alerts were recorded).
  void notify();

  // Delivers a "test" alert to `sink_name` synchronously: one attempt, no fallback, no outbox.
  // Works whether or not the router is running. Errors: not_found for an unknown sink. A failed
  // delivery is not an error: the report says what happened.
  result<alert_test_report> send_test(std::string_view sink_name);

  // One entry per configured sink, in config order.
  std::vector<alert_sink_stats> stats() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// An alert_outbox in memory, for tests and offline replay. Not durable.
// Thread-safety: every method is safe from any thread.
class memory_alert_outbox final : public alert_outbox {
 public:
  enum class alert_state { pending, delivered, failed };
  struct entry {
    outbox_alert alert;
    alert_state state = alert_state::pending;
    std::string delivered_via;            // the sink that delivered it (its own or a fallback)
    std::int64_t finished_unix_nano = 0;  // when it was delivered or given up
  };

  status enqueue(std::vector<outbox_alert> alerts) override;
  result<std::vector<outbox_alert>> pending(std::size_t limit) override;
  status mark_delivered(std::int64_t id, std::string_view via_sink,
                        std::int64_t now_unix_nano) override;
  status mark_attempt(std::int64_t id, std::uint32_t attempts, std::int64_t next_attempt_unix_nano,
                      std::string_view error) override;
  status mark_failed(std::int64_t id, std::string_view error, std::int64_t now_unix_nano) override;

  // Every alert ever enqueued, by id.
  std::vector<entry> entries() const;
  // How many are still pending.
  std::size_t pending_count() const;

 private:
  // The entry with that id, or nullptr. Requires mu_.
  entry* find_locked(std::int64_t id);

  mutable std::mutex mu_;
  std::vector<entry> entries_;  // guarded by mu_; ordered by id
  std::int64_t next_id_ = 1;    // guarded by mu_
};

}  // namespace loopwarden::core
