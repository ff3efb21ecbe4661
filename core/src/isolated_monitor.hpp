#pragma once
// A monitor that runs in a child process (`isolation: process`): the plugin is loaded by
// `loopwarden monitor-host` in the child, never in the engine's process, so a plugin that
// crashes, leaks or hangs takes only its child down. This class is the engine's side: an
// sdk::monitor whose calls are forwarded over a socket pair (isolation_protocol.hpp), whose
// context calls (trip, gauge, log) are relayed to the engine's context as they arrive, and which
// restarts the child with exponential backoff after it dies.
//
// A call that fails throws std::runtime_error, so the engine applies the monitor's on_error
// policy exactly as for a plugin that threw: the child crashed ("killed by signal 11"), did not
// answer within the deadline (the child is killed), the plugin threw, or the child is down and
// waiting for its next restart.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <loopwarden/core/status.hpp>
#include <loopwarden/monitor.hpp>

namespace loopwarden::core::detail {

struct isolated_monitor_options {
  // The command that runs the monitor host, e.g. {"/usr/bin/loopwarden", "monitor-host"}; the
  // child is started as <command...> --fd 3, with its end of the socket pair as fd 3.
  std::vector<std::string> host_command;
  std::string plugin_path;  // the .so the child loads
  // The pinned SHA-256 (64 lowercase hex digits), or empty. Before every start of a child, the
  // file must pass the permission rule and match it (plugin_trust.hpp).
  std::string expected_sha256;
  std::string plugin_name;  // for messages
  std::string instance;     // the configured instance name
  // A call without an answer for this long kills the child (zero: wait forever).
  std::chrono::nanoseconds deadline = std::chrono::seconds(5);
  std::uint64_t memory_limit_bytes = 0;  // RLIMIT_AS of the child; zero: none
  // Backoff between restarts: initial, doubled after each death, at most max; reset after a
  // child has lived for max.
  std::chrono::milliseconds restart_initial{1000};
  std::chrono::milliseconds restart_max{60000};
};

// Thread-safety: as any monitor, one call at a time (the engine's worker for this instance).
class isolated_monitor final : public sdk::monitor {
 public:
  // Starts the child, loads and configures the plugin there. Errors: the child cannot be started
  // (io_error), the plugin is refused (the host's own message, e.g. an ABI mismatch), configure
  // fails (invalid_argument with the field path and line, as in-process).
  static result<std::unique_ptr<isolated_monitor>> start(isolated_monitor_options options,
                                                         const sdk::config_node& config);
  ~isolated_monitor() override;

  sdk::monitor_info info() const override { return info_; }
  // The child was configured by start(); a second configure is refused (the engine never does).
  sdk::status configure(const sdk::config_node& config) override;
  void on_event(const v1::Envelope& envelope, sdk::context& ctx) override;
  sdk::gate_decision on_gate(const v1::GateRequest& request, sdk::context& ctx) override;
  void on_tick(sdk::context& ctx) override;
  sdk::result<std::string> snapshot() const override;
  sdk::status restore(std::string_view state) override;

  // The child's pid (0 while it is down) and how many times it has been restarted.
  pid_t child_pid() const { return pid_; }
  std::uint64_t restarts() const { return restarts_; }

 private:
  explicit isolated_monitor(isolated_monitor_options options, sdk::config_node config);

  // The child's state changes inside const calls too (snapshot() may find it dead and restart
  // it), so everything about the child is mutable; the monitor's observable state is the
  // child's, not these members'.
  status spawn() const;  // starts a child and configures it (info_ on success)
  void kill_child(const std::string& why) const;  // SIGKILL, reap, record why
  std::string reap() const;  // waits for the dead child: "exited with 3", "killed by signal 11"
  // Makes sure a child is running (restarting it when its backoff has passed); throws if not.
  void ensure_running() const;
  // Sends a request and relays context calls until its reply (returned); throws on failure.
  struct frame_reply {
    std::uint8_t type = 0;
    std::string payload;
  };
  frame_reply call(std::uint8_t type, const std::string& payload, sdk::context* ctx,
                   const char* what) const;

  isolated_monitor_options options_;
  sdk::config_node config_;
  mutable sdk::monitor_info info_;
  mutable pid_t pid_ = 0;
  mutable int fd_ = -1;
  mutable std::uint64_t restarts_ = 0;
  mutable std::chrono::milliseconds backoff_{0};
  mutable std::chrono::steady_clock::time_point next_start_{};
  mutable std::chrono::steady_clock::time_point started_at_{};
  mutable std::string last_death_;     // why the last child died
  mutable std::string last_snapshot_;  // restored into a restarted child
};

}  // namespace loopwarden::core::detail
