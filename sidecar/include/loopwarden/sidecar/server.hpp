#pragma once
// The live daemon behind `loopwarden serve`: the engine behind ZeroMQ sockets (ingest, breakers,
// gate, control), started by an ordered list of steps and stopped by an orderly drain.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <loopwarden/v1/control.pb.h>
#include <loopwarden/core/config.hpp>
#include <loopwarden/core/status.hpp>
#include <loopwarden/types.hpp>

namespace loopwarden::sidecar {

// What `loopwarden serve` was asked for; flags and environment override the config file.
struct serve_options {
  std::string config_file;          // empty: the embedded default
  std::string state_dir;            // override of state_dir
  std::vector<std::string> ingest;  // override: PULL sockets bound here
  std::string breakers_endpoint;    // overrides of the other sockets
  std::string gate_endpoint;
  std::string control_endpoint;
  std::vector<std::string> plugin_paths;  // searched after the config's
  std::string record_file;                // capture the ingest stream in the replay format
  std::optional<sdk::log_level> log_level;
  std::optional<std::string> http_listen;  // override of http.listen ("" turns it off)
};

// Checks the sections only the daemon reads (alerts, http, approvals), as serve would at start.
// Errors name the field path and line.
core::status validate_sidecar_sections(const core::config& cfg);

// Thread-safety: stop(), reload() and status() are safe from any thread (the signal loop and the
// control thread both call them).
class server {
 public:
  // Runs the start-up steps in order: load the config, lock the state directory (one daemon per
  // state directory), create the breaker registry and the engine (plugins), start the engine
  // thread (event queue and gate socket), the breaker publisher, the ingest sockets and the
  // control socket. On the first failure, what was started is torn down again and the error,
  // naming the step, is returned.
  static core::result<std::unique_ptr<server>> start(const serve_options& options);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Orderly shutdown: stop ingest, evaluate queued events until drained or drain_timeout, publish
  // a final snapshot, close every socket. Idempotent.
  void stop();

  // Re-reads the config file and swaps in a new engine; monitors whose config is unchanged keep
  // their state, breakers keep theirs. On any error the running config stays, and the error is
  // returned (and shown in status). Socket settings are not changed by a reload.
  core::status reload();

  // The daemon's figures: events, drops, sources, monitors, reloads.
  v1::SidecarStatus status() const;

  const core::config& config() const;

  struct impl;  // implementation detail (sidecar/src/server.cpp)

 private:
  explicit server(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

// `loopwarden serve`: starts the server, then waits for signals (SIGINT/SIGTERM stop, SIGHUP
// reloads) with every thread's signals blocked, so no handler runs anywhere. Returns the exit code.
int run_serve(const serve_options& options, std::ostream& out, std::ostream& err);

}  // namespace loopwarden::sidecar
