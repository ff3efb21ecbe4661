#pragma once
// The typed configuration of an engine, loaded from YAML. Every error names the field path and
// the line: `monitors[2].config.window: expected a positive integer, got "abc"
// (loopwarden.yaml:14)`.
//
// Document layout (docs/configuration.md has the full reference):
//
//   version: 1                      # required: the config format version
//   log_level: info                 # debug | info | warn | error
//   state_dir: ./loopwarden-state   # where durable state lives (relative: to the config file)
//   plugin_paths: [plugins/]        # directories searched for <plugin>.so (relative: to the file)
//   probation: 5m                   # default half-open probation after a reset (0 = none)
//   breakers:                       # operator overrides of what monitors declare, by name
//     training.collapse: {action: rollback, severity: critical, scope: run, probation: 10m}
//   monitors:
//     - name: loss_guard            # instance name, unique, [a-z0-9_.-]+
//       plugin: threshold           # plugin name (found as <plugin>.so on plugin_paths) ...
//       path: ./my_monitor.so       # ... or an explicit file instead of a plugin name
//       optional: false             # true: a plugin that fails to load is skipped with an error
//       enabled: true
//       on_error: fail_closed       # fail_closed (trip its breakers) | disable
//       deadline: 5s                # a call running longer marks the monitor hung (0: never)
//       queue_capacity: 1024        # events waiting for this monitor (serve: one worker each)
//       isolation: thread           # thread | process (the plugin runs in a child process)
//       memory_limit: 0             # process isolation: address-space limit, e.g. 512MiB
//       sha256: <64 hex digits>     # optional pin: the plugin file's digest (sha256sum FILE)
//       config: {...}               # handed to the monitor's configure()
//   transport:                      # the sidecar's sockets (docs/wire-protocol.md)
//     ingest:                       # default: [{socket: pull, bind:
//     ipc://<state_dir>/run/ingest.sock}]
//       - {socket: pull, bind: "tcp://0.0.0.0:5556"}
//       - {socket: sub, connect: "tcp://trainer:5557", topics: [metrics]}
//     breakers: ipc://<state_dir>/run/breakers.sock   # PUB, bind
//     gate: ipc://<state_dir>/run/gate.sock           # ROUTER, bind
//     control: ipc://<state_dir>/control/control.sock # ROUTER, bind; tcp needs control_curve
//     control_curve: {secret_key_file: server.key, operator_keys: [<z85 public key>, ...]}
//     ipc_mode: "0660"              # file mode of the ingest, breakers and gate ipc sockets
//     heartbeat_interval: 250ms     # breaker snapshot period
//     queue_capacity: 16384         # events between ingest and the monitors
//     overflow: block               # block (back-pressure) | drop (count and drop)
//     drain_timeout: 5s             # at shutdown, how long queued events may still be evaluated
//   telemetry:
//     silence_timeout: 30s          # a source silent this long trips telemetry.silence (0: off)
//     silence_breaker: true
//     loss_threshold: 0             # lost events of one source that trip telemetry.loss (0: off)
//     max_sources: 10000            # sources tracked at once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <loopwarden/config_node.hpp>
#include <loopwarden/core/status.hpp>
#include <loopwarden/status.hpp>
#include <loopwarden/types.hpp>

namespace loopwarden::core {

// What happens when a monitor throws or hangs.
// Where a monitor's plugin runs.
enum class isolation_mode {
  thread,   // in the engine's process, on its own worker (serve) or the caller's thread (replay)
  process,  // in a child process (`loopwarden monitor-host`): a crash or leak takes only it down
};

enum class error_policy {
  fail_closed,  // trip every breaker the monitor declares: its protection goes to the safe state
  disable,      // stop calling it; report it as disabled
};

// Operator overrides for one breaker, by name.
struct breaker_config {
  std::string name;
  std::optional<sdk::breaker_action> action;
  std::optional<sdk::severity> severity;
  std::optional<sdk::breaker_scope> scope;
  std::optional<std::chrono::nanoseconds> probation;
  sdk::config_node node;  // for errors that only the engine can find (e.g. no such breaker)
};

// One monitor instance.
struct monitor_config {
  std::string name;    // instance name, unique within the config
  std::string plugin;  // plugin name; empty when path is given
  std::string path;    // explicit plugin file (absolute, or made absolute against the config dir)
  bool optional = false;
  bool enabled = true;
  // mode: shadow — a monitor on trial. Its breakers are named "shadow:<breaker>", flagged shadow,
  // recorded, audited and alerted as shadow, never published to hosts; its gate answers are logged
  // and never applied.
  bool shadow = false;
  error_policy on_error = error_policy::fail_closed;
  // Live (`serve`), each monitor runs on its own worker: a call running longer than `deadline`
  // marks it hung (its on_error policy applies; zero = no watchdog), and at most
  // `queue_capacity` events wait for it (then transport.overflow decides: wait or drop).
  std::chrono::nanoseconds deadline = std::chrono::seconds(5);
  std::size_t queue_capacity = 1024;
  isolation_mode isolation = isolation_mode::thread;
  std::uint64_t memory_limit_bytes = 0;  // process isolation: RLIMIT_AS of the child; 0: none
  // The pinned SHA-256 of the plugin file (64 lowercase hex digits), checked before the file is
  // loaded (plugin_trust.hpp); empty: not pinned.
  std::string sha256;
  sdk::config_node config;               // the `config:` subtree (missing when absent)
  sdk::config_node node;                 // the whole `monitors[i]` node, for errors found later
};

enum class ingest_socket { pull, sub };
enum class overflow_policy { block, drop };

// One ingest socket.
struct ingest_config {
  ingest_socket socket = ingest_socket::pull;
  std::string endpoint;             // "ipc:///abs/path" or "tcp://host:port"
  bool bind = true;                 // bind, or connect to a pipeline's existing PUB
  std::vector<std::string> topics;  // SUB only: topic prefixes; empty = everything
  sdk::config_node node;
};

struct transport_config {
  std::vector<ingest_config> ingest;
  std::string breakers;                    // PUB endpoint (bind)
  std::string gate;                        // ROUTER endpoint (bind)
  std::string control;                     // ROUTER endpoint (bind)
  std::string control_secret_key_file;     // CURVE server secret key (Z85 text), tcp control only
  std::vector<std::string> operator_keys;  // CURVE public keys (Z85) allowed on tcp control
  // File mode of the ingest, breakers and gate ipc socket files. Hosts running as another user
  // need group (or other) write access; the control socket is always in a 0700 directory.
  unsigned ipc_mode = 0660;
  std::chrono::nanoseconds heartbeat_interval = std::chrono::milliseconds(250);
  std::size_t queue_capacity = 16384;
  overflow_policy overflow = overflow_policy::block;
  std::chrono::nanoseconds drain_timeout = std::chrono::seconds(5);
};

struct telemetry_config {
  std::chrono::nanoseconds silence_timeout = std::chrono::seconds(30);  // zero: off
  bool silence_breaker = true;
  std::uint64_t loss_threshold = 0;  // zero: never trip telemetry.loss
  std::size_t max_sources = 10000;
};

struct config {
  std::string source;  // the file it came from, or "<embedded default>"
  int version = 1;
  sdk::log_level log_level = sdk::log_level::info;
  std::string state_dir;                  // absolute once loaded from a file
  std::vector<std::string> plugin_paths;  // absolute once loaded from a file; may be empty
  std::chrono::nanoseconds probation = std::chrono::minutes(5);
  std::vector<breaker_config> breakers;
  std::vector<monitor_config> monitors;
  transport_config transport;
  telemetry_config telemetry;
  sdk::config_node root;  // the whole document
};

// Parses and validates a YAML document. `source` names it in errors (a path or a label);
// relative paths in it are resolved against `base_dir` (empty: the current directory).
// Errors: invalid_argument with path and line (a YAML syntax error names line and column).
result<config> parse_config(std::string_view yaml, std::string source, std::string base_dir = {});

// Reads and parses a file. Errors: io_error naming the file, or parse_config's.
result<config> load_config_file(const std::string& path);

// Moves the state directory (a command-line or environment override) and re-derives the socket
// endpoints that the document left at their defaults under it. `dir` is made absolute.
void override_state_dir(config& cfg, const std::string& dir);

// The state store's database file: <state_dir>/loopwarden.db.
std::string state_database_path(const config& cfg);

// The embedded default configuration (used by `serve` and `replay` without --config; printed by
// `loopwarden config default`). Always parses.
std::string_view default_config_yaml();
result<config> default_config();

}  // namespace loopwarden::core
