#pragma once
// The engine: loads the configured monitors, routes each event to the monitors that asked for
// its kind, answers gate requests, runs periodic ticks, and owns the breaker registry. It has no
// sockets: `loopwarden serve` feeds it from ZeroMQ, `loopwarden replay` from a file, and both get
// the same trips for the same events in the same order.

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <loopwarden/v1/envelope.pb.h>
#include <loopwarden/v1/gate.pb.h>
#include <loopwarden/core/breaker_registry.hpp>
#include <loopwarden/core/breaker_store.hpp>
#include <loopwarden/core/config.hpp>
#include <loopwarden/core/metrics_buckets.hpp>
#include <loopwarden/core/monitor_state.hpp>
#include <loopwarden/core/status.hpp>
#include <loopwarden/core/telemetry.hpp>
#include <loopwarden/event_kind.hpp>
#include <loopwarden/monitor.hpp>
#include <loopwarden/status.hpp>

namespace loopwarden::core {

struct engine_options {
  // Directories searched after the config's plugin_paths (e.g. from --plugin-path).
  std::vector<std::string> extra_plugin_paths;
  // Search the bundled plugin directory last (core::bundled_plugin_dir()).
  bool search_bundled_plugins = true;
  // Where breakers are recorded; borrowed, must outlive the engine. Null: an in-memory store.
  // Ignored when `registry` is given.
  breaker_store* store = nullptr;
  // A registry to use instead of the engine's own; borrowed, must outlive the engine. The sidecar
  // passes one so that breakers survive a config reload (a new engine, the same registry).
  breaker_registry* registry = nullptr;
  // true (replay): the clock is the time of the last event, so output is deterministic.
  // false (live): the caller passes wall-clock time to tick() and events carry receive time.
  bool event_time_clock = true;
  // false (replay): every monitor call runs on the caller's thread, in event order.
  // true (live): each monitor instance runs on its own worker thread with a bounded queue
  // (monitor_config::queue_capacity), and a watchdog marks a monitor hung when one call runs
  // longer than its deadline; a slow or hung monitor never stalls the others.
  bool threaded = false;
  // threaded: what process() does when a monitor's queue is full. block: wait for room (back-
  // pressure) until the monitor drains, hangs or is disabled; drop: drop the event for that
  // monitor only, counted in its status.
  overflow_policy overflow = overflow_policy::block;
  // threaded: how long gate() waits for the gating monitors; a monitor that has not answered by
  // then counts as failed for this request (fail_closed: deny).
  std::chrono::milliseconds gate_deadline{1000};
  // threaded: how long the destructor waits for each worker to finish its queue. A worker still
  // inside a call after that (a hung plugin) is abandoned with its library still loaded: a thread
  // cannot be killed safely, so it is left to die with the process (see isolation: process).
  std::chrono::milliseconds stop_timeout{5000};
  // The command that runs `loopwarden monitor-host`, for monitors with `isolation: process`
  // (e.g. {"/usr/bin/loopwarden", "monitor-host"}). Empty: such monitors are refused at load.
  std::vector<std::string> monitor_host_command;
};

// Per-monitor figures, for status output and metrics.
struct monitor_status {
  // hung: a call has run past the deadline and not returned (its policy has been applied).
  enum class state { active, disabled, hung };
  std::string name;     // instance name
  std::string plugin;   // plugin name from its info()
  std::string version;  // plugin version from its info()
  std::string path;     // the loaded file
  state current = state::active;
  std::uint64_t events = 0;       // on_event calls
  std::uint64_t gates = 0;        // on_gate calls
  std::uint64_t ticks = 0;        // on_tick calls
  std::uint64_t errors = 0;       // calls that threw
  std::uint64_t hangs = 0;        // calls that ran past the deadline (threaded)
  std::uint64_t dropped = 0;      // events not delivered: queue full (drop), hung or disabled
  std::uint64_t queue_depth = 0;  // events and calls waiting for its worker (threaded)
  std::string last_error;
  std::uint64_t total_call_ns = 0;  // wall time spent in the monitor's calls
  std::uint64_t max_call_ns = 0;
  // Call-time histogram (not cumulative): bucket i counts calls of at most
  // monitor_call_bucket_bounds_ns[i] and more than the bound before it; the last counts the rest.
  std::array<std::uint64_t, monitor_call_bucket_bounds_ns.size() + 1> call_buckets{};
  std::vector<std::pair<std::string, double>> gauges;  // in the order first published
};

struct engine_counters {
  std::uint64_t events = 0;      // envelopes processed
  std::uint64_t malformed = 0;   // envelopes dropped because their body was not set
  std::uint64_t duplicates = 0;  // envelopes dropped because their seq was already seen
  std::array<std::uint64_t, sdk::event_kind_count> by_kind{};
};

// The result of a gate request: the strictest decision and the monitor that gave it.
struct gate_outcome {
  sdk::gate_decision decision;
  std::string monitor;  // empty when no monitor gated (the answer is allow)
};

// Thread-safety: process, gate, tick, snapshot_monitors, restore_monitor, adopt_unchanged and
// wait_idle must be called from one thread at a time (the engine's dispatcher); the registry
// (breakers()) is safe from any thread; monitors(), sources() and counters() may be called
// concurrently with the dispatcher. With engine_options::threaded the monitors themselves run on
// their own workers, each instance still one call at a time.
class engine {
 public:
  // Loads and configures every enabled monitor of `cfg`. Errors: a non-optional plugin that
  // can't be found or loaded (refused, with file and reason), a monitor whose configure fails
  // (invalid_argument, with field path and line), the store failing to restore. An optional
  // plugin that fails to load is skipped and reported in warnings().
  static result<std::unique_ptr<engine>> create(const config& cfg, engine_options options = {});
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  // Accounts the event to its source (gaps, duplicates, silence), then routes it to the monitors
  // that want its kind, in config order. An envelope without a body is counted as malformed and
  // dropped; a duplicate (a seq already seen from its source) is counted and dropped.
  // `receive_unix_nano` is the wall-clock receive time, used by the live clock (ignored with the
  // event-time clock).
  void process(const v1::Envelope& envelope, std::int64_t receive_unix_nano = 0);
  // The same, for a threaded engine without a copy: the monitors' workers share `envelope` and
  // release it when the last one is done with it (a synchronous engine uses it in place).
  void process(std::shared_ptr<const v1::Envelope> envelope, std::int64_t receive_unix_nano = 0);

  // threaded: waits until every worker has handled everything queued before the call (or
  // `timeout` passes); true when all did. Synchronous engines are always idle.
  bool wait_idle(std::chrono::milliseconds timeout);

  // threaded: drops every event still waiting in the monitors' queues, counted as dropped for
  // each monitor and each event's source; calls in progress finish. For a shutdown whose drain
  // deadline passed, so that the monitors are idle for their final snapshot. Returns how many
  // (event, monitor) deliveries were dropped; 0 for a synchronous engine.
  std::uint64_t discard_queued_events();

  // Asks every gating monitor; the strictest answer wins (deny > require_approval > allow).
  gate_outcome gate(const v1::GateRequest& request);

  // Runs due on_tick calls and ends due breaker probations. `now_unix_nano` is ignored with the
  // event-time clock (the time of the last event is used).
  void tick(std::int64_t now_unix_nano);

  // Takes over the monitors of `old` whose configuration is identical (same name, plugin or path,
  // policy and config subtree), with all their learned state, in place of this engine's freshly
  // loaded ones, and the per-source telemetry. Used by a reload; `old` is discarded afterwards.
  // Call on the dispatcher thread, with neither engine processing. Returns the names kept.
  std::vector<std::string> adopt_unchanged(engine& old);

  // Asks every active monitor for its learned state (monitor::snapshot), in config order. Empty
  // snapshots are left out. A snapshot that throws or returns an error is left out too, counted
  // as that monitor's error and logged; it changes nothing else (the monitor keeps running, no
  // breaker trips: failing to save state loses nothing live). Call on the dispatcher thread.
  std::vector<monitor_state> snapshot_monitors();

  // Hands `state` to the instance it names, before events flow. Errors: not_found (no active
  // instance of that name), failed_precondition (another plugin, or another major version of
  // it), or the monitor's own refusal (a throw counts as one). A refused state leaves the
  // monitor as configure() left it. Call on the dispatcher thread.
  status restore_monitor(const monitor_state& state);

  breaker_registry& breakers() { return *registry_; }
  std::vector<monitor_status> monitors() const;
  // Every source seen, with its gap, duplicate and silence accounting. Safe from any thread.
  std::vector<source_stats> sources() const;
  engine_counters counters() const;
  // Problems that did not stop the engine (optional plugins that failed to load, ...).
  const std::vector<std::string>& warnings() const { return warnings_; }
  // The engine's clock now (see engine_options::event_time_clock).
  std::int64_t now_unix_nano() const;

  struct impl;  // implementation detail (core/src/engine.cpp)

 private:
  explicit engine(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
  std::unique_ptr<breaker_store> owned_store_;
  std::unique_ptr<breaker_registry> owned_registry_;
  breaker_registry* registry_ = nullptr;  // owned_registry_ or engine_options::registry
  std::vector<std::string> warnings_;
};

}  // namespace loopwarden::core
