#pragma once
// The real `loopwarden serve`, as a child process, for the integration tests: a fresh temporary
// directory per daemon (config file, state directory, captured stdout/stderr), the endpoints a
// host connects to, signals, and the control socket. Every wait here is bounded, so a broken
// daemon fails a test instead of hanging CI.
//
//   loopwarden::test::daemon_process d;               // fixture_monitor, 50 ms heartbeats
//   auto pub = client::publisher::create({.endpoint = d.ingest(), .run_id = "run-1"});
//   ...
//   REQUIRE(d.wait_status([](auto& r) { return breaker_open(r, "fixture.trip", "run-1"); }));
//
// The destructor sends SIGTERM, waits (then SIGKILL) and removes the directory. The child dies
// with the test process too (PR_SET_PDEATHSIG), so a test killed by a ctest timeout leaves no
// daemon behind.
//
// Every timeout here, and wait_until's, is a "must happen within" limit: each is multiplied by
// time_scale() (LOOPWARDEN_TEST_TIME_SCALE, set by the sanitizer test presets; 1 otherwise).
//
// Thread-safety: a daemon_process belongs to the test's thread; control(), status() and the
// accessors may also be called from helper threads (each control call has its own socket).

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <loopwarden/v1/control.pb.h>
#include <loopwarden/v1/envelope.pb.h>
#include <loopwarden/sidecar/control_client.hpp>

#include "../time_scale.hpp"
#include "../wait_until.hpp"

extern char** environ;

namespace loopwarden::test {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// ---- paths -----------------------------------------------------------------------------------

inline std::string loopwarden_binary() {
  return std::string(LOOPWARDEN_BINARY_DIR) + "/bin/loopwarden";
}
inline std::string daemon_fixture_plugin_dir() {
  return std::string(LOOPWARDEN_BINARY_DIR) + "/tests/fixtures/plugins";
}
inline std::string daemon_bundled_plugin_dir() {
  return std::string(LOOPWARDEN_BINARY_DIR) + "/lib/loopwarden/plugins";
}

// ---- waiting (wait_until: ../wait_until.hpp) ------------------------------------------------

inline double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// ---- sanitizer builds ------------------------------------------------------------------------

// The first sanitizer report in `text` (a daemon's or a command's stderr), or "" when there is
// none. Every sanitizer ends a report with "SUMMARY: <Name>Sanitizer: ...". Under the asan and
// tsan presets a finding stops the daemon (halt_on_error), but one made while it shuts down, or
// a leak found at exit, would only reach its log: daemon_process checks the log when it stops
// the daemon, so the test that drove it fails (docs/sanitizers.md).
inline std::string sanitizer_report(const std::string& text) {
  for (auto summary = text.find("SUMMARY: "); summary != std::string::npos;
       summary = text.find("SUMMARY: ", summary + 1)) {
    auto line_end = text.find('\n', summary);
    if (line_end == std::string::npos) line_end = text.size();
    const auto name = text.find("Sanitizer", summary);
    if (name == std::string::npos || name > line_end) continue;
    // From the report's first line ("==pid==ERROR: ..." or "WARNING: ThreadSanitizer: ...").
    auto start = text.rfind("==ERROR:", summary);
    const auto tsan = text.rfind("WARNING: ThreadSanitizer", summary);
    if (start == std::string::npos || (tsan != std::string::npos && tsan > start)) start = tsan;
    if (start == std::string::npos) start = summary > 4000 ? summary - 4000 : 0;
    return text.substr(start, line_end - start);
  }
  return "";
}

// ---- configuration ---------------------------------------------------------------------------

// Placeholders expanded in config text and in extra `serve` arguments:
//   @DIR@              the daemon's temporary directory
//   @STATE@            its state directory
//   @FIXTURE_PLUGINS@  <build>/tests/fixtures/plugins
//   @BUNDLED_PLUGINS@  <build>/lib/loopwarden/plugins
inline constexpr const char* fixture_monitor_yaml =
    "  - name: fixture\n"
    "    plugin: fixture_monitor\n";

// A config with small timeouts: 50 ms breaker heartbeats, probation 0 (a reset closes at once),
// `silence_timeout` for telemetry.silence, and `monitors` (YAML list items, indented by two).
inline std::string daemon_config(const std::string& monitors = fixture_monitor_yaml,
                                 const std::string& silence_timeout = "30s") {
  return "version: 1\n"
         "log_level: info\n"
         "state_dir: @STATE@\n"
         "plugin_paths: [@FIXTURE_PLUGINS@]\n"
         "probation: 0\n"
         "transport:\n"
         "  heartbeat_interval: 50ms\n"
         "  drain_timeout: 5s\n"
         "telemetry:\n"
         "  silence_timeout: " +
         silence_timeout +
         "\n"
         "monitors:\n" +
         monitors;
}

struct daemon_options {
  std::string config = daemon_config();  // YAML with placeholders, written to <dir>/loopwarden.yaml
  std::vector<std::string> args{};       // extra `serve` arguments (placeholders expanded)
  std::string state_dir{};               // empty: <dir>/state (another daemon's, to share it)
  bool wait_ready = true;                // wait until the control socket answers `status`
  std::chrono::milliseconds ready_timeout = 20s;
  std::string http = "127.0.0.1:0";        // serve --http (port 0: any free port; "": off)
  // Called with the daemon's directory (config written, process not started yet).
  std::function<void(const fs::path&)> before_start{};
  // A command the daemon is started through, which must exec it in place (same pid), e.g.
  // {"ip", "netns", "exec", "<name>"} to run it in a network namespace. Empty: run it directly.
  std::vector<std::string> launcher{};
};

// ---- the daemon ------------------------------------------------------------------------------

class daemon_process {
 public:
  explicit daemon_process(daemon_options options = {}) : options_(std::move(options)) {
    std::string pattern = (fs::temp_directory_path() / "lw-integ-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error(std::string("mkdtemp failed: ") + std::strerror(errno));
    }
    dir_ = pattern;
    state_dir_ = options_.state_dir.empty() ? (dir_ / "state").string() : options_.state_dir;
    config_file_ = (dir_ / "loopwarden.yaml").string();
    write_config(options_.config);
    try {
      if (options_.before_start) options_.before_start(dir_);
      spawn();
      if (options_.wait_ready) wait_ready(options_.ready_timeout);
    } catch (...) {
      cleanup();
      throw;
    }
  }

  ~daemon_process() { cleanup(); }
  daemon_process(const daemon_process&) = delete;
  daemon_process& operator=(const daemon_process&) = delete;

  // -- where things are --
  pid_t pid() const { return pid_; }
  const fs::path& dir() const { return dir_; }
  const std::string& state_dir() const { return state_dir_; }
  const std::string& config_file() const { return config_file_; }
  std::string ingest() const { return "ipc://" + state_dir_ + "/run/ingest.sock"; }
  std::string breakers() const { return "ipc://" + state_dir_ + "/run/breakers.sock"; }
  std::string gate() const { return "ipc://" + state_dir_ + "/run/gate.sock"; }
  std::string control_endpoint() const { return "ipc://" + state_dir_ + "/control/control.sock"; }
  std::string control_dir() const { return state_dir_ + "/control"; }

  // Expands the placeholders in `text`.
  std::string expand(std::string text) const {
    const std::pair<const char*, std::string> subst[] = {
        {"@DIR@", dir_.string()},
        {"@STATE@", state_dir_},
        {"@FIXTURE_PLUGINS@", daemon_fixture_plugin_dir()},
        {"@BUNDLED_PLUGINS@", daemon_bundled_plugin_dir()}};
    for (const auto& [key, value] : subst) {
      for (auto at = text.find(key); at != std::string::npos; at = text.find(key, at)) {
        text.replace(at, std::strlen(key), value);
        at += value.size();
      }
    }
    return text;
  }

  // Rewrites the config file (placeholders expanded): the next SIGHUP or `reload` reads it.
  void write_config(const std::string& yaml) const {
    const std::string tmp = config_file_ + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << expand(yaml);
      if (!out) throw std::runtime_error("can't write " + tmp);
    }
    fs::rename(tmp, config_file_);  // atomic: a reload never reads half a file
  }

  // -- the process --
  // Sends `sig` to the daemon (no-op once it has been reaped).
  void signal(int sig) const {
    if (pid_ > 0 && !exit_status_) ::kill(pid_, sig);
  }

  // SIGKILL, and reaps the process (bounded).
  void kill() {
    signal(SIGKILL);
    (void)wait_exit(10s);
  }

  // Waits up to `timeout` (scaled) for the daemon to exit; its exit code (128 + signal when
  // killed by one), or nullopt if it is still running.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    if (exit_status_) return exit_status_;
    if (pid_ <= 0) return std::nullopt;
    const auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
    while (true) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status)
                                         : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        return exit_status_;
      }
      if (r < 0 && errno != EINTR) return std::nullopt;
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(5ms);
    }
  }

  bool running() { return !wait_exit(0ms).has_value(); }

  // Starts the daemon again (same directory, config and state) after it exited or was killed,
  // and waits until it answers. Its earlier output is replaced.
  void restart() {
    restart_nowait();
    wait_ready(options_.ready_timeout);
  }

  // Starts the daemon again like restart(), without waiting for it to answer (to kill it while
  // it starts).
  void restart_nowait() {
    if (!wait_exit(0ms)) throw std::runtime_error("restart: the daemon is still running");
    check_sanitizer_report();  // before its log is replaced
    exit_status_.reset();
    pid_ = -1;
    spawn();
  }

  // SIGTERM, then waits up to `timeout` (then SIGKILL); the exit code as wait_exit() gives it.
  int stop(std::chrono::milliseconds timeout = 15s) {
    if (exit_status_) return *exit_status_;
    signal(SIGTERM);
    if (auto code = wait_exit(timeout)) return *code;
    signal(SIGKILL);
    return wait_exit(10s).value_or(-1);
  }

  // -- what it printed --
  std::string out() const { return read_file(dir_ / "stdout.txt"); }
  std::string err() const { return read_file(dir_ / "stderr.txt"); }
  // stdout then stderr (the engine logs to stderr).
  std::string log() const { return out() + err(); }

  // The HTTP endpoint's port, from the daemon's start-up log line; 0 when it has none.
  int http_port() const {
    const std::string text = log();
    const std::string marker = "http endpoint on port ";
    const auto at = text.find(marker);
    return at == std::string::npos ? 0 : std::atoi(text.c_str() + at + marker.size());
  }

  // -- the control socket --
  // Waits up to `timeout` (scaled) for the answer.
  core::result<v1::ControlResponse> control(v1::ControlRequest request,
                                            std::chrono::milliseconds timeout = 5s) const {
    return sidecar::send_control(control_endpoint(), std::move(request), scaled(timeout));
  }

  // The daemon's status; fails the test when it does not answer.
  v1::ControlResponse status() const {
    v1::ControlRequest request;
    request.mutable_status();
    auto r = control(request);
    INFO("daemon log:\n" << log());
    REQUIRE(r.ok());
    REQUIRE(r->ok());
    return std::move(r).value();
  }

  // Polls status until `pred(response)` holds or `timeout` passes; true when it held. The last
  // response seen goes to *last when given.
  bool wait_status(const std::function<bool(const v1::ControlResponse&)>& pred,
                   std::chrono::milliseconds timeout = 10s,
                   v1::ControlResponse* last = nullptr) const {
    v1::ControlResponse seen;
    const bool ok = wait_until(
        [&] {
          v1::ControlRequest request;
          request.mutable_status();
          auto r = control(request, 2s);
          if (!r.ok() || !r->ok()) return false;
          seen = std::move(r).value();
          return pred(seen);
        },
        timeout, 20ms);
    if (last != nullptr) *last = seen;
    return ok;
  }

 private:
  static std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  void spawn() {
    // Any free port for the HTTP endpoint: tests run in parallel (the port is in the log).
    std::vector<std::string> args = options_.launcher;
    for (std::string a : {loopwarden_binary(), std::string("serve"), std::string("--config"),
                          config_file_, std::string("--http"), options_.http}) {
      args.push_back(std::move(a));
    }
    if (!options_.state_dir.empty()) {
      args.push_back("--state-dir");
      args.push_back(state_dir_);
    }
    for (const auto& a : options_.args) args.push_back(expand(a));
    // The environment without LOOPWARDEN_* (serve reads its endpoints from those), so a
    // developer's shell cannot redirect a test's daemon.
    std::vector<std::string> env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      if (std::string_view(*e).rfind("LOOPWARDEN_", 0) != 0) env.emplace_back(*e);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    const std::string out_path = (dir_ / "stdout.txt").string();
    const std::string err_path = (dir_ / "stderr.txt").string();
    const pid_t parent = ::getpid();

    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(std::string("fork failed: ") + std::strerror(errno));
    if (pid == 0) {
      // The child of a threaded process: only async-signal-safe calls until exec.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP}) ::sigaction(sig, &dfl, nullptr);
      const int null_in = ::open("/dev/null", O_RDONLY);
      const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (null_in < 0 || out < 0 || err < 0) ::_exit(127);
      ::dup2(null_in, 0);
      ::dup2(out, 1);
      ::dup2(err, 2);
      ::execvpe(argv[0], argv.data(), envp.data());  // a launcher is found on PATH
      ::_exit(127);
    }
    pid_ = pid;
  }

  void wait_ready(std::chrono::milliseconds timeout) {
    const bool ready = wait_until(
        [&] {
          if (!running()) return true;  // reported below
          v1::ControlRequest request;
          request.mutable_status();
          auto r = control(request, 500ms);
          return r.ok() && r->ok();
        },
        timeout, 10ms);
    INFO("daemon log:\n" << log());
    if (!running()) FAIL("loopwarden serve exited with " << *exit_status_ << " while starting");
    if (!ready) {
      FAIL("loopwarden serve did not answer status within " << scaled(timeout).count() << " ms");
    }
  }

  // A sanitizer's report in the daemon's log fails the running test. When the test is already
  // failing (unwinding: often because the report stopped the daemon), the report goes to stderr
  // instead, so the failure shows its cause (and ctest's SUMMARY regex sees it).
  void check_sanitizer_report() const {
    const std::string report = sanitizer_report(err());
    if (report.empty()) return;
    if (std::uncaught_exceptions() != 0) {
      std::cerr << "the daemon's sanitizer report:\n" << report << "\n";
      return;
    }
    FAIL_CHECK("the daemon's sanitizer report:\n" << report);
  }

  void cleanup() {
    if (pid_ > 0 && !exit_status_) (void)stop(10s);
    // The daemon has exited: its log is complete.
    if (pid_ > 0 && !dir_.empty()) check_sanitizer_report();
    if (!dir_.empty()) {
      std::error_code ignored;
      fs::remove_all(dir_, ignored);
      dir_.clear();
    }
  }

  daemon_options options_;
  fs::path dir_;
  std::string state_dir_;
  std::string config_file_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
};

// ---- reading a ControlResponse ---------------------------------------------------------------

// The breaker `name` of run `run_id` ("" for a global one) in a status reply, or nullptr.
inline const v1::BreakerStatus* find_breaker(const v1::ControlResponse& r, std::string_view name,
                                             std::string_view run_id = "") {
  for (const auto& b : r.snapshot().breakers()) {
    if (b.name() == name && b.run_id() == run_id) return &b;
  }
  return nullptr;
}

inline bool is_open(const v1::BreakerStatus* b) {
  return b != nullptr &&
         (b->state() == v1::BREAKER_STATE_OPEN || b->state() == v1::BREAKER_STATE_FORCED_OPEN);
}

inline bool breaker_open(const v1::ControlResponse& r, std::string_view name,
                         std::string_view run_id = "") {
  return is_open(find_breaker(r, name, run_id));
}

inline const v1::SourceStatus* find_source(const v1::ControlResponse& r, std::string_view source) {
  for (const auto& s : r.sidecar().sources()) {
    if (s.source() == source) return &s;
  }
  return nullptr;
}

inline const v1::MonitorStatus* find_monitor(const v1::ControlResponse& r, std::string_view name) {
  for (const auto& m : r.sidecar().monitors()) {
    if (m.name() == name) return &m;
  }
  return nullptr;
}

// ---- raw ZeroMQ, for what the clients never send ---------------------------------------------

// The tests' own ZeroMQ context (the daemon is another process; the client library has its own).
inline zmq::context_t& test_context() {
  static zmq::context_t context(1);
  return context;
}

// A port that was free a moment ago on 127.0.0.1 (tests run in parallel: never a fixed port).
inline int free_tcp_port() {
  zmq::socket_t s(test_context(), zmq::socket_type::rep);
  s.set(zmq::sockopt::linger, 0);
  s.bind("tcp://127.0.0.1:*");
  const std::string ep = s.get(zmq::sockopt::last_endpoint);
  return std::stoi(ep.substr(ep.rfind(':') + 1));
}

// A socket of test_context() with linger 0, connected to `endpoint`.
inline zmq::socket_t connect_raw(zmq::socket_type type, const std::string& endpoint) {
  zmq::socket_t s(test_context(), type);
  s.set(zmq::sockopt::linger, 0);
  s.connect(endpoint);
  return s;
}

// Sends the frames as one multipart message (blocking: PUSH queues until connected).
inline void send_frames(zmq::socket_t& s, const std::vector<std::string>& frames) {
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const auto more = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
    if (!s.send(zmq::buffer(frames[i]), more))
      FAIL("can't send frame " << i << " of " << frames.size());
  }
}

// The next multipart message on `s`, or nullopt after `timeout`.
inline std::optional<std::vector<zmq::message_t>> receive_frames(
    zmq::socket_t& s, std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, timeout);
  if ((item.revents & ZMQ_POLLIN) == 0) return std::nullopt;
  std::vector<zmq::message_t> parts;
  if (!zmq::recv_multipart(s, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
    return std::nullopt;
  }
  return parts;
}

inline std::int64_t unix_nano_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// An envelope of `source` in `run_id` with `seq`, stamped now and with no body yet.
inline v1::Envelope envelope(const std::string& source, const std::string& run_id,
                             std::uint64_t seq) {
  v1::Envelope e;
  e.mutable_schema()->set_major(1);
  e.set_source(source);
  e.set_run_id(run_id);
  e.set_seq(seq);
  e.set_time_unix_nano(unix_nano_now());
  return e;
}

// A metrics envelope with one sample `name` = `value`.
inline v1::Envelope metric_envelope(const std::string& source, const std::string& run_id,
                                    std::uint64_t seq, const std::string& name,
                                    double value = 1.0) {
  v1::Envelope e = envelope(source, run_id, seq);
  auto* s = e.mutable_metrics()->add_samples();
  s->set_name(name);
  s->set_value(value);
  s->set_step(static_cast<std::int64_t>(seq));
  return e;
}

inline v1::Envelope heartbeat_envelope(const std::string& source, const std::string& run_id,
                                       std::uint64_t seq, bool closing = false) {
  v1::Envelope e = envelope(source, run_id, seq);
  e.mutable_heartbeat()->set_closing(closing);
  return e;
}

// ---- the command line ------------------------------------------------------------------------

struct cli_result {
  int code = -1;
  std::string out;
  std::string err;
};

// Runs `<build>/bin/loopwarden <args>` through popen (args are passed to /bin/sh as written);
// stderr is captured through a file in `scratch`.
// Sends one [topic][envelope] message to the daemon's ingest socket on a fresh PUSH socket and
// waits until ZeroMQ has handed it over.
inline void raw_ingest_send(const daemon_process& d, const std::string& topic,
                            const v1::Envelope& e) {
  zmq::socket_t s = connect_raw(zmq::socket_type::push, d.ingest());
  s.set(zmq::sockopt::linger, 5000);
  send_frames(s, {topic, e.SerializeAsString()});
}

inline cli_result run_loopwarden(const std::string& args, const fs::path& scratch) {
  static int counter = 0;
  const fs::path err_file = scratch / ("cli-" + std::to_string(++counter) + ".err");
  // LOOPWARDEN_* are unset, so only the arguments decide where the command goes.
  const std::string cmd =
      "env -u LOOPWARDEN_CONTROL -u LOOPWARDEN_CONFIG -u LOOPWARDEN_STATE_DIR '" +
      loopwarden_binary() + "' " + args + " 2>'" + err_file.string() + "'";
  cli_result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err_file);
  r.err.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return r;
}

}  // namespace loopwarden::test
