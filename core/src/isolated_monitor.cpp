#include "isolated_monitor.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <loopwarden/core/plugin_trust.hpp>

#include "isolation_protocol.hpp"
#include "log.hpp"

namespace loopwarden::core::detail {

namespace {

std::int64_t now_ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t)
      .count();
}

std::string describe_wait_status(int ws) {
  if (WIFEXITED(ws)) return "exited with status " + std::to_string(WEXITSTATUS(ws));
  if (WIFSIGNALED(ws)) {
    const int sig = WTERMSIG(ws);
    const char* name = ::strsignal(sig);
    return "killed by signal " + std::to_string(sig) + " (" + (name ? name : "?") + ")";
  }
  return "stopped";
}

std::string clock_payload(std::int64_t clock, std::string_view bytes) {
  auto w = payload_writer();
  w.write_i64(clock);
  w.write_string(bytes);
  return w.finish();
}

}  // namespace

isolated_monitor::isolated_monitor(isolated_monitor_options options, sdk::config_node config)
    : options_(std::move(options)), config_(std::move(config)) {}

result<std::unique_ptr<isolated_monitor>> isolated_monitor::start(isolated_monitor_options options,
                                                                  const sdk::config_node& config) {
  if (options.host_command.empty()) {
    return make_error(status_code::failed_precondition,
                      "isolation: process needs the monitor host (`loopwarden monitor-host`), "
                      "which this program does not provide");
  }
  std::unique_ptr<isolated_monitor> m(new isolated_monitor(std::move(options), config));
  if (auto s = m->spawn(); !s.ok()) return s;
  return m;
}

isolated_monitor::~isolated_monitor() {
  if (pid_ == 0) return;
  // Ask politely, then make sure: a plugin's destructor must not keep the engine waiting.
  (void)write_frame(fd_, frame_type::shutdown, payload_writer().finish());
  for (int i = 0; i < 50; ++i) {
    int ws = 0;
    if (::waitpid(pid_, &ws, WNOHANG) == pid_) {
      pid_ = 0;
      break;
    }
    ::usleep(10'000);
  }
  if (pid_ != 0) kill_child("the engine stopped");
  if (fd_ >= 0) ::close(fd_);
}

status isolated_monitor::spawn() const {
  // The file is checked here, in the daemon, every time a child is started: a plugin replaced
  // between restarts is refused like one replaced before the first start.
  auto trusted = verify_plugin_file(options_.plugin_path, options_.expected_sha256, ::geteuid());
  if (!trusted.ok()) {
    return make_error(trusted.error().code(), "can't load plugin '" + options_.plugin_name + "' (" +
                                                  options_.plugin_path +
                                                  "): " + trusted.error().message());
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return make_error(
        status_code::io_error,
        std::string("can't create the monitor's socket pair: ") + std::strerror(errno));
  }
  // Everything the child needs is prepared before fork: between fork and exec only
  // async-signal-safe calls are allowed in a multi-threaded process.
  std::vector<std::string> args = options_.host_command;
  args.insert(args.end(), {"--fd", "3"});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  sigset_t none;
  sigemptyset(&none);
  rlimit limit{};
  limit.rlim_cur = limit.rlim_max = static_cast<rlim_t>(options_.memory_limit_bytes);
  const bool limit_memory = options_.memory_limit_bytes > 0;
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(sv[0]);
    ::close(sv[1]);
    return make_error(status_code::io_error,
                      std::string("can't fork the monitor host: ") + std::strerror(errno));
  }
  if (pid == 0) {
    // The child: its end becomes fd 3 (dup2 clears close-on-exec); it dies with the engine.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (::dup2(sv[1], 3) < 0) ::_exit(127);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // the daemon blocks signals in every thread
    if (limit_memory) ::setrlimit(RLIMIT_AS, &limit);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(sv[1]);
  pid_ = pid;
  fd_ = sv[0];
  started_at_ = std::chrono::steady_clock::now();

  auto w = payload_writer();
  w.write_string(options_.plugin_path);
  w.write_string(options_.plugin_name);
  w.write_string(options_.instance);
  w.write_string(encode_config(config_));
  status sent = write_frame(fd_, frame_type::configure, w.finish());
  // Loading a plugin may take a moment (the dynamic loader, a large model of rules): allow more
  // than one call's deadline, but not forever.
  auto got = sent.ok() ? read_frame(fd_, std::chrono::seconds(30)) : result<frame>(sent);
  if (!got.ok()) {
    kill_child("it did not start");
    return make_error(status_code::io_error, "the monitor host for '" + options_.instance +
                                                 "' did not start: " + got.error().message() +
                                                 " (" + last_death_ + ")");
  }
  if (got->type == frame_type::error) {
    status why = decode_status(got->payload);
    kill_child("refused");
    return why.ok() ? make_error(status_code::internal, "the monitor host refused") : why;
  }
  if (got->type != frame_type::info) {
    kill_child("protocol error");
    return make_error(status_code::internal, "the monitor host answered configure with frame " +
                                                 std::to_string(static_cast<int>(got->type)));
  }
  auto info = decode_info(got->payload);
  if (!info.ok()) {
    kill_child("protocol error");
    return info.error();
  }
  info_ = std::move(*info);
  return status::success();
}

std::string isolated_monitor::reap() const {
  if (pid_ == 0) return last_death_;
  int ws = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &ws, 0);
  } while (r < 0 && errno == EINTR);
  pid_ = 0;
  return r > 0 ? describe_wait_status(ws) : std::string("lost");
}

void isolated_monitor::kill_child(const std::string& why) const {
  if (pid_ != 0) {
    ::kill(pid_, SIGKILL);
    last_death_ = reap() + ", " + why;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void isolated_monitor::ensure_running() const {
  if (pid_ != 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_start_) {
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_start_ - now);
    throw std::runtime_error("the monitor process is down (" + last_death_ + "); it restarts in " +
                             std::to_string(wait.count()) + " ms");
  }
  if (status s = spawn(); !s.ok()) {
    backoff_ = std::min(options_.restart_max, std::max(options_.restart_initial, backoff_ * 2));
    next_start_ = std::chrono::steady_clock::now() + backoff_;
    throw std::runtime_error("the monitor process could not be restarted: " + s.message());
  }
  ++restarts_;
  detail::log().warn("monitor {}: process restarted (pid {}, restart {}) after: {}",
                     options_.instance, pid_, restarts_, last_death_);
  if (!last_snapshot_.empty()) {
    // What it had learned up to its last snapshot comes back with it.
    auto w = payload_writer();
    w.write_string(last_snapshot_);
    auto r = call(static_cast<std::uint8_t>(frame_type::restore), w.finish(), nullptr, "restore");
    if (r.type == static_cast<std::uint8_t>(frame_type::error)) {
      detail::log().warn("monitor {}: the restarted process refused the last snapshot: {}",
                         options_.instance, decode_status(r.payload).message());
    }
  }
}

isolated_monitor::frame_reply isolated_monitor::call(std::uint8_t type, const std::string& payload,
                                                     sdk::context* ctx, const char* what) const {
  auto died = [&](const std::string& how) {
    // The child is gone (or made useless): wait out the backoff before the next start.
    if (now_ms_since(started_at_) >= options_.restart_max.count()) backoff_ = {};
    backoff_ = std::min(options_.restart_max, std::max(options_.restart_initial, backoff_ * 2));
    next_start_ = std::chrono::steady_clock::now() + backoff_;
    throw std::runtime_error(how + "; it restarts in " + std::to_string(backoff_.count()) + " ms");
  };
  if (status s = write_frame(fd_, static_cast<frame_type>(type), payload); !s.ok()) {
    kill_child("write failed");
    died(std::string("the monitor process died before ") + what + " (" + last_death_ + ")");
  }
  std::optional<std::chrono::nanoseconds> deadline;
  if (options_.deadline.count() > 0) deadline = options_.deadline;
  const auto started = std::chrono::steady_clock::now();
  while (true) {
    std::optional<std::chrono::nanoseconds> left;
    if (deadline) {
      left = *deadline - (std::chrono::steady_clock::now() - started);
      if (*left < std::chrono::nanoseconds(0)) left = std::chrono::nanoseconds(0);
    }
    auto got = read_frame(fd_, left);
    if (!got.ok()) {
      if (got.error().code() == status_code::timeout) {
        kill_child("killed after the deadline");
        died(std::string("hung: ") + what + " has not returned after " +
             std::to_string(
                 std::chrono::duration_cast<std::chrono::milliseconds>(options_.deadline).count()) +
             " ms; the monitor process was killed");
      }
      kill_child("connection lost");  // reap() records how it ended: "killed by signal 11 ..."
      died(std::string("the monitor process died in ") + what + " (" + last_death_ + ")");
    }
    switch (got->type) {
      case frame_type::trip: {
        auto t = decode_trip(got->payload);
        if (t.ok() && ctx != nullptr) ctx->trip(std::move(*t));
        continue;
      }
      case frame_type::gauge: {
        status header;
        auto r = payload_reader(got->payload, header);
        std::string name = r.read_string(1024);
        const double value = r.read_f64();
        if (header.ok() && r.finish().ok() && ctx != nullptr) ctx->set_gauge(name, value);
        continue;
      }
      case frame_type::log: {
        status header;
        auto r = payload_reader(got->payload, header);
        const std::uint64_t level = r.read_u64();
        std::string message = r.read_string(1u << 16);
        if (header.ok() && r.finish().ok() && ctx != nullptr && level <= 3) {
          ctx->log(static_cast<sdk::log_level>(level), message);
        }
        continue;
      }
      case frame_type::failed: {
        status header;
        auto r = payload_reader(got->payload, header);
        std::string text = r.read_string(1u << 20);
        throw std::runtime_error(header.ok() && r.finish().ok() ? text
                                                                : std::string("(unreadable)"));
      }
      default:
        return {static_cast<std::uint8_t>(got->type), std::move(got->payload)};
    }
  }
}

sdk::status isolated_monitor::configure(const sdk::config_node&) {
  return make_error(status_code::failed_precondition,
                    "an isolated monitor is configured when its process starts");
}

void isolated_monitor::on_event(const v1::Envelope& envelope, sdk::context& ctx) {
  ensure_running();
  auto r = call(static_cast<std::uint8_t>(frame_type::event),
                clock_payload(ctx.now_unix_nano(), envelope.SerializeAsString()), &ctx, "on_event");
  if (r.type != static_cast<std::uint8_t>(frame_type::done)) {
    kill_child("protocol error");
    throw std::runtime_error("the monitor process answered on_event with frame " +
                             std::to_string(r.type));
  }
}

sdk::gate_decision isolated_monitor::on_gate(const v1::GateRequest& request, sdk::context& ctx) {
  ensure_running();
  auto r = call(static_cast<std::uint8_t>(frame_type::gate),
                clock_payload(ctx.now_unix_nano(), request.SerializeAsString()), &ctx, "on_gate");
  if (r.type != static_cast<std::uint8_t>(frame_type::gate_result)) {
    kill_child("protocol error");
    throw std::runtime_error("the monitor process answered on_gate with frame " +
                             std::to_string(r.type));
  }
  auto d = decode_gate_decision(r.payload);
  if (!d.ok()) throw std::runtime_error("unreadable gate answer: " + d.error().message());
  return *d;
}

void isolated_monitor::on_tick(sdk::context& ctx) {
  ensure_running();
  auto r = call(static_cast<std::uint8_t>(frame_type::tick), clock_payload(ctx.now_unix_nano(), ""),
                &ctx, "on_tick");
  if (r.type != static_cast<std::uint8_t>(frame_type::done)) {
    kill_child("protocol error");
    throw std::runtime_error("the monitor process answered on_tick with frame " +
                             std::to_string(r.type));
  }
}

sdk::result<std::string> isolated_monitor::snapshot() const {
  ensure_running();
  auto r = call(static_cast<std::uint8_t>(frame_type::snapshot), payload_writer().finish(), nullptr,
                "snapshot");
  if (r.type == static_cast<std::uint8_t>(frame_type::error)) return decode_status(r.payload);
  if (r.type != static_cast<std::uint8_t>(frame_type::snapshot_result)) {
    kill_child("protocol error");
    throw std::runtime_error("the monitor process answered snapshot with frame " +
                             std::to_string(r.type));
  }
  status header;
  auto rd = payload_reader(r.payload, header);
  std::string bytes = rd.read_string();
  if (!header.ok()) return header;
  if (auto s = rd.finish(); !s.ok()) return s;
  last_snapshot_ = bytes;
  return bytes;
}

sdk::status isolated_monitor::restore(std::string_view state) {
  ensure_running();
  auto w = payload_writer();
  w.write_string(state);
  auto r = call(static_cast<std::uint8_t>(frame_type::restore), w.finish(), nullptr, "restore");
  if (r.type == static_cast<std::uint8_t>(frame_type::error)) return decode_status(r.payload);
  if (r.type != static_cast<std::uint8_t>(frame_type::done)) {
    kill_child("protocol error");
    throw std::runtime_error("the monitor process answered restore with frame " +
                             std::to_string(r.type));
  }
  last_snapshot_ = std::string(state);
  return status::success();
}

}  // namespace loopwarden::core::detail
