#pragma once
// The breaker registry: every breaker's state machine, in memory, behind a persistence seam.
//
//   closed --trip--> open --ack--> open (acknowledged) --reset(reason)--> half_open --probation-->
//   closed half_open --trip--> open (escalated to critical)      any --force_open(reason)-->
//   forced_open forced_open --reset(reason)--> half_open / closed
//
// An open breaker is latched: further trips change nothing until an operator resets it. Every
// change increments the breaker's epoch, is recorded in the store, and then reaches listeners.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <loopwarden/v1/breaker.pb.h>
#include <loopwarden/core/breaker_store.hpp>
#include <loopwarden/core/status.hpp>
#include <loopwarden/monitor.hpp>
#include <loopwarden/status.hpp>
#include <loopwarden/types.hpp>

namespace loopwarden::core {

// The name prefix of breakers tripped by a monitor in shadow mode ("shadow:training.collapse").
inline constexpr const char* shadow_prefix = "shadow:";

// Names one breaker: its name and, for run-scoped breakers, the run ("" for global ones).
struct breaker_key {
  std::string name;
  std::string run_id;
  auto operator<=>(const breaker_key&) const = default;
};

// Everything needed to open a breaker.
struct trip_input {
  std::string breaker;
  std::string run_id;   // ignored for global scope
  std::string monitor;  // the monitor instance that tripped it
  std::string reason;
  sdk::evidence evidence;
  sdk::breaker_action action = sdk::breaker_action::halt;
  sdk::severity severity = sdk::severity::critical;
  sdk::breaker_scope scope = sdk::breaker_scope::run;
  std::int64_t time_unix_nano = 0;
  std::string trigger_source;  // the event that caused it, if any
  std::uint64_t trigger_seq = 0;
  bool shadow = false;  // tripped by a monitor in shadow mode (never published to hosts)
};

// Thread-safety: every method is safe from any thread. Two locks:
// - `commit_mu_` serialises every change: it is held from the decision through the store's commit
//   (which ends in an fsync) and the listeners, so transitions are recorded and heard in order.
// - `mu_` guards the breakers' state and is held only for in-memory work, never across a commit.
// So a reader (snapshot, find, any_open: the control plane's `status`, the publisher's heartbeat)
// never waits on the disk, and it sees a change only once the change is recorded (what a reader
// sees open, a restart keeps open). Listeners run under `commit_mu_` in transition order; they may
// read the registry but must not change it.
class breaker_registry {
 public:
  using listener = std::function<void(const v1::BreakerTransition&)>;

  // `store` is borrowed and must outlive the registry. `default_probation` is the half-open time
  // after a reset (zero: a reset closes the breaker at once).
  breaker_registry(breaker_store& store, std::chrono::nanoseconds default_probation);

  // Loads every breaker's last state from the store (open breakers stay open). Call before use.
  status restore();

  // Probation for one breaker name, overriding the default.
  void set_probation(const std::string& name, std::chrono::nanoseconds probation);

  // Replaces every probation setting at once: the default and the per-name overrides (names not
  // in `per_breaker` fall back to the default). A config reload calls this.
  void configure_probation(std::chrono::nanoseconds default_probation,
                           std::map<std::string, std::chrono::nanoseconds> per_breaker);

  // Adds a listener for every later transition.
  void add_listener(listener l);

  // Makes a global breaker visible as closed before it ever trips (run-scoped ones appear with
  // their first trip). Does nothing for a breaker that already exists.
  void declare(const sdk::breaker_spec& spec, std::string_view monitor, bool shadow = false);

  // Opens a breaker. Returns the transition, or nullopt when it was already open (latched).
  std::optional<v1::BreakerTransition> trip(const trip_input& input);

  // Operator actions. Errors: not_found (no such breaker), failed_precondition (wrong state,
  // e.g. ack of a closed breaker), refused (reset or force_open without a reason).
  result<v1::BreakerTransition> acknowledge(const breaker_key& key, std::string_view operator_id,
                                            std::string_view note, std::int64_t now_unix_nano);
  result<v1::BreakerTransition> reset(const breaker_key& key, std::string_view operator_id,
                                      std::string_view reason, std::int64_t now_unix_nano);
  result<v1::BreakerTransition> force_open(const breaker_key& key, std::string_view operator_id,
                                           std::string_view reason, sdk::breaker_action action,
                                           std::int64_t now_unix_nano);

  // Closes half-open breakers whose probation ended at or before `now_unix_nano`.
  std::vector<v1::BreakerTransition> advance(std::int64_t now_unix_nano);
  // The same, but returns at once (closing nothing) while another thread is changing the
  // registry: it does so while it records a transition, through a store commit that ends in an
  // fsync.
  // For the engine thread's tick, which must never wait on the disk (a tick that waited for a
  // trip's commit stalled the event queue for 1.6 s under a busy disk; docs/reliability.md,
  // "Soak"). A probation end is then seen by the next tick that finds the registry free.
  std::vector<v1::BreakerTransition> try_advance(std::int64_t now_unix_nano);

  // Every breaker, sorted by (name, run_id).
  v1::BreakerSnapshot snapshot() const;
  // The newest `limit` transitions of one breaker, oldest first (from the store).
  result<std::vector<v1::BreakerTransition>> history(const breaker_key& key,
                                                     std::size_t limit) const;
  std::optional<v1::BreakerStatus> find(const breaker_key& key) const;
  // True when any breaker is open or forced open.
  bool any_open() const;
  // Store errors so far (each is also logged); a non-zero count means durability is degraded.
  std::uint64_t store_errors() const;

 private:
  v1::BreakerTransition commit(v1::BreakerStatus& status, v1::BreakerState previous,
                               std::string_view cause, std::string_view operator_id,
                               std::string_view note);
  std::chrono::nanoseconds probation_for(const std::string& name) const;

  breaker_store& store_;

  // Both hold commit_mu_.
  std::vector<v1::BreakerTransition> advance_committing(std::int64_t now_unix_nano);
  // Records `t` (counting and logging a failure when `keep_on_failure`, as for trips, which stay
  // open in memory even if the disk refuses them), then stores `next` as `key`'s state and tells
  // the listeners. Returns the store's status.
  status record_and_apply(const breaker_key& key, v1::BreakerStatus next,
                          const v1::BreakerTransition& t, bool keep_on_failure);

  // Lock order: commit_mu_, then mu_. breakers_ changes only with both held, so a holder of
  // commit_mu_ may read it under mu_ and know it is unchanged until it applies its own change.
  std::mutex commit_mu_;
  std::vector<listener> listeners_;  // guarded by commit_mu_

  mutable std::mutex mu_;
  std::map<breaker_key, v1::BreakerStatus> breakers_;          // guarded by mu_ (see above)
  std::chrono::nanoseconds default_probation_;                 // guarded by mu_
  std::map<std::string, std::chrono::nanoseconds> probation_;  // guarded by mu_
  std::atomic<std::uint64_t> store_errors_{0};
};

}  // namespace loopwarden::core
