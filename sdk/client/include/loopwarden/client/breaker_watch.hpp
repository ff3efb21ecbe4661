#pragma once
// breaker_watch: follows the sidecar's breaker socket (docs/wire-protocol.md, "Breakers") and
// answers "must this run stop?" cheaply enough to ask on every step.
//
//   auto watch = loopwarden::client::breaker_watch::create({.endpoint = breakers_endpoint});
//   if (!watch) { log(watch.error().message()); return; }
//   while (train_step()) {
//     if ((*watch)->should_stop(run_id)) { halt((*watch)->current(run_id).reason); break; }
//   }
//
// Fails closed: when no message arrived for `timeout` (also when none has arrived since the
// watch started, after the same grace), should_stop() is true, because the sidecar is gone,
// stalled or unreachable. `fail_open` turns that off.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <loopwarden/v1/breaker.pb.h>
#include <loopwarden/status.hpp>

namespace loopwarden::client {

// What breaker_watch::create() needs; only endpoint has no usable default.
// Thread-safety: a value type (on_transition is called on the watch thread).
struct breaker_watch_options {
  std::string endpoint{};                   // the sidecar's breakers endpoint, ipc:// or tcp://
  std::chrono::milliseconds timeout{1000};  // silence after which every breaker counts as open
  bool fail_open = false;                   // true: silence does not stop the host
  // Called on the watch's own thread after each transition is applied (so should_stop() inside
  // it already sees the change), in arrival order. Keep it short: the watch reads no further
  // message until it returns (one slower than `timeout` makes the sidecar look silent). An
  // exception it throws is caught and counted.
  std::function<void(const v1::BreakerTransition&)> on_transition{};
};

// What applies to one run right now. Thread-safety: a value type.
struct breaker_verdict {
  bool stop = false;    // the host should stop: a breaker below says so, or the sidecar is silent
  bool silent = false;  // no message within the timeout (reported even with fail_open)
  // One line for logs: the sidecar's silence, or the strongest breaker's name, action and
  // reason; empty when nothing applies.
  std::string reason;
  // Breakers that apply to the run: OPEN or FORCED_OPEN, global or of this run; strongest action
  // first (halt, pause, rollback, require_approval, throttle, alert), then by name. ALERT ones
  // are listed but do not set `stop`.
  std::vector<v1::BreakerStatus> open;
};

// Counters since creation. Thread-safety: a value type.
struct breaker_watch_stats {
  std::uint64_t transitions = 0;      // transition messages applied
  std::uint64_t snapshots = 0;        // snapshot messages applied
  std::uint64_t malformed = 0;        // messages dropped: bad framing, topic or payload
  std::uint64_t callback_errors = 0;  // exceptions thrown by on_transition
};

// Keeps the latest state of every breaker the sidecar publishes, on a background thread with
// its own SUB socket. A snapshot replaces the table (an entry a newer transition already
// updated is kept); a transition replaces one breaker, unless its epoch is older than what is
// known. Thread-safety: every method is safe from any thread; should_stop() takes no lock
// unless a run-scoped breaker is open, and current() copies under a short mutex.
class breaker_watch {
 public:
  // Starts the watch thread and connects it; returns once the socket is connected (the sidecar
  // need not be up). Errors: invalid_argument naming the endpoint (bad scheme, rejected by
  // ZeroMQ) or a bad timeout; io_error from ZeroMQ.
  static sdk::result<std::unique_ptr<breaker_watch>> create(breaker_watch_options options);

  // Stops and joins the watch thread (within a few tens of milliseconds).
  ~breaker_watch();
  breaker_watch(const breaker_watch&) = delete;
  breaker_watch& operator=(const breaker_watch&) = delete;

  // True when a breaker that applies to `run_id` is open with an action other than ALERT, or
  // when the sidecar is silent and fail_open is off. Lock-free in the common case.
  bool should_stop(const std::string& run_id) const;

  // The details behind should_stop(run_id).
  breaker_verdict current(const std::string& run_id) const;

  // True when no message arrived within the timeout (the grace after start included).
  bool silent() const;

  // When the last valid message arrived; nullopt before the first one.
  std::optional<std::chrono::steady_clock::time_point> last_message() const;
  // The sequence of the last snapshot applied; 0 before the first one.
  std::uint64_t snapshot_sequence() const;

  // Grows whenever what the watch knows changes: a breaker's state, the set of breakers, or the
  // first message after a silence. Pair it with wait_for_change().
  std::uint64_t epoch() const;
  // Blocks until epoch() differs from `seen` or `timeout` passes; true when it changed.
  bool wait_for_change(std::uint64_t seen, std::chrono::milliseconds timeout) const;
  // The same, from the epoch at the moment of the call.
  bool wait_for_change(std::chrono::milliseconds timeout) const;

  breaker_watch_stats stats() const;
  const breaker_watch_options& options() const;

 private:
  struct impl;
  explicit breaker_watch(std::unique_ptr<impl> state);
  std::unique_ptr<impl> impl_;
};

}  // namespace loopwarden::client
