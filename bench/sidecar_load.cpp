// The Sidecar issue's end-to-end benchmark (docs/benchmarks.md): the real `loopwarden serve`
// process fed by the real C++ client, against the raw ZeroMQ ceiling. bench/sidecar_bench.sh runs
// every part and prints the table; each subcommand can also be run by hand:
//
//   sidecar_load ceiling  [--batch K | --bytes B] [--messages M] [--parse none|reuse|fresh]
//                         [--sender raw|publisher]
//   sidecar_load ingest   --loopwarden BIN [--config FILE] [--batch K] [--events N]
//                         [--window W] [--rss-at N1,N2,...] [--label TEXT]
//   sidecar_load latency  --loopwarden BIN --config FILE [--samples S] [--background EV_PER_S]
//                         [--breaker NAME]
//   sidecar_load gate     --loopwarden BIN --config FILE [--samples S] [--background EV_PER_S]
//   sidecar_load rtt      [--samples S] [--bytes B]   (raw DEALER->ROUTER echo: the floor of gate)
//   sidecar_load soak     --loopwarden BIN --config FILE [--minutes M] [--interval S]
//                         [--rate EV_PER_S] [--publishers P] [--trip-every-ms MS]
//                         [--gate-rate ASKS_PER_S] [--warmup-intervals N]
//                         [--rss-tolerance-pct P] [--rss-tolerance-mib M]
//                         [--max-slope KIB_PER_MIN] [--stall-every-s S --stall-requests K]
//                         (bench/soak.sh; docs/reliability.md)
//   sidecar_load envelope [--batch K]         (prints the size of one batch envelope)
//
// Every subcommand prints readable lines and, for the script, lines "RESULT <key> <value>".
// Figures, not assertions: the machine is shared and noisy, so compare ratios within one run.
//
// The daemon is spawned with fork/exec in a fresh temporary directory (config, state directory,
// ipc sockets, its log), is asked for its figures over the control socket (one persistent DEALER:
// [empty][ControlRequest] -> [empty][ControlResponse], docs/wire-protocol.md), and is stopped with
// SIGTERM. Nothing here blocks forever: every wait has a deadline.

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <loopwarden/client/breaker_watch.hpp>
#include <loopwarden/client/gate_client.hpp>
#include <loopwarden/client/publisher.hpp>
#include <loopwarden/v1/control.pb.h>
#include <loopwarden/v1/envelope.pb.h>
#include <loopwarden/v1/gate.pb.h>

namespace {

using namespace std::chrono_literals;
using namespace loopwarden;
namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "sidecar_load: %s\n", why.c_str());
  std::exit(2);
}

double secs(steady::duration d) { return std::chrono::duration<double>(d).count(); }

std::int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void result(const std::string& key, double value) {
  std::printf("RESULT %s %.6g\n", key.c_str(), value);
  std::fflush(stdout);
}

// ---- options -----------------------------------------------------------------------------

struct args {
  std::map<std::string, std::string> kv;
  std::string get(const std::string& k, const std::string& def = "") const {
    auto it = kv.find(k);
    return it == kv.end() ? def : it->second;
  }
  long num(const std::string& k, long def) const {
    auto it = kv.find(k);
    return it == kv.end() ? def : std::atol(it->second.c_str());
  }
  std::string need(const std::string& k) const {
    auto it = kv.find(k);
    if (it == kv.end()) die("missing --" + k);
    return it->second;
  }
};

args parse_args(int argc, char** argv, int from) {
  args a;
  for (int i = from; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || i + 1 >= argc) die("bad argument '" + k + "'");
    a.kv[k.substr(2)] = argv[++i];
  }
  return a;
}

// ---- statistics ------------------------------------------------------------------------------

struct summary {
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;
  std::size_t n = 0;
};

summary summarize(std::vector<double> v) {
  summary s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto rank = [&](double q) {
    auto i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
    return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
  };
  s.p50 = rank(0.50);
  s.p90 = rank(0.90);
  s.p99 = rank(0.99);
  s.p999 = rank(0.999);
  s.max = v.back();
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  return s;
}

void print_summary(const char* what, const char* unit, const summary& s) {
  std::printf("  %-28s n=%zu  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f %s\n",
              what, s.n, s.p50, s.p90, s.p99, s.p999, s.max, s.mean, unit);
}

// ---- /proc ---------------------------------------------------------------------------------

struct memory_kib {
  long rss = -1;
  long hwm = -1;
  long anon = -1;  // RssAnon: the heap and stacks, without the mapped code (RssFile)
};

memory_kib read_memory(pid_t pid) {
  memory_kib m;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) m.rss = std::atol(line.c_str() + 6);
    if (line.rfind("VmHWM:", 0) == 0) m.hwm = std::atol(line.c_str() + 6);
    if (line.rfind("RssAnon:", 0) == 0) m.anon = std::atol(line.c_str() + 8);
  }
  return m;
}

// User + system CPU seconds of a process (all its threads), from /proc/<pid>/stat.
double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::atol(field.c_str());
    if (i == 15) stime = std::atol(field.c_str());
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Per-thread CPU seconds of a process, in thread-creation order: "tid comm seconds".
std::vector<std::tuple<long, std::string, double>> thread_cpu(pid_t pid) {
  std::vector<std::tuple<long, std::string, double>> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    const long tid = std::atol(entry.path().filename().c_str());
    std::ifstream in(entry.path() / "stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto open = text.find('(');
    const auto close = text.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::istringstream rest(text.substr(close + 2));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::atol(field.c_str());
      if (i == 15) stime = std::atol(field.c_str());
    }
    out.emplace_back(tid, text.substr(open + 1, close - open - 1),
                     static_cast<double>(utime + stime) /
                         static_cast<double>(::sysconf(_SC_CLK_TCK)));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---- envelopes -----------------------------------------------------------------------------

// The streams a training loop reports; the values stay finite and below every threshold of the
// bundled and demo configs (train/loss above 3.0 trips the demo's loss_divergence).
constexpr const char* metric_names[] = {"train/loss", "train/grad_norm", "train/lr",
                                        "eval/accuracy"};

double normal_value(std::uint64_t i) { return 0.5 + static_cast<double>(i % 1000) * 1e-3; }

// One metrics envelope as publisher::metric() makes it (same stamps, same sample fields).
v1::Envelope batch_envelope(int samples) {
  v1::Envelope e;
  e.mutable_schema()->set_major(1);
  e.mutable_schema()->set_minor(0);
  e.set_source("bench/load");
  e.set_run_id("bench");
  e.set_seq(123456);
  e.set_time_unix_nano(wall_ns());
  for (int s = 0; s < samples; ++s) {
    auto* m = e.mutable_metrics()->add_samples();
    m->set_name(metric_names[s % 4]);
    m->set_value(normal_value(static_cast<std::uint64_t>(s)));
    m->set_step(100000 + s / 4);
    m->set_time_unix_nano(wall_ns());
  }
  return e;
}

// ---- the daemon ----------------------------------------------------------------------------

class daemon_process {
 public:
  daemon_process(const std::string& binary, const std::string& config) {
    char pattern[] = "/tmp/lw-bench-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) die("mkdtemp failed");
    dir_ = pattern;
    const std::string state = dir_ + "/state";
    ingest_ = "ipc://" + state + "/run/ingest.sock";
    breakers_ = "ipc://" + state + "/run/breakers.sock";
    gate_ = "ipc://" + state + "/run/gate.sock";
    control_ = "ipc://" + state + "/control/control.sock";
    log_ = dir_ + "/daemon.log";
    std::vector<std::string> argv = {binary,   "serve",     "--state-dir", state,
                                     "--ingest", ingest_,   "--breakers",  breakers_,
                                     "--gate",   gate_,     "--control",   control_,
                                     "--http",   "127.0.0.1:0"};
    if (!config.empty() && config != "default") {
      argv.push_back("--config");
      argv.push_back(config);
    }
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) die("fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the bench
      if (::getppid() != parent) ::_exit(127);
      const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::close(fd);
      }
      std::vector<char*> cargv;
      for (auto& s : argv) cargv.push_back(s.data());
      cargv.push_back(nullptr);
      ::execv(binary.c_str(), cargv.data());
      ::_exit(127);
    }
  }

  ~daemon_process() {
    stop();
    std::error_code ec;
    if (std::getenv("SIDECAR_BENCH_KEEP") == nullptr) fs::remove_all(dir_, ec);
  }

  // SIGTERM, then wait (the daemon drains its queue); SIGKILL after 20 s.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto deadline = steady::now() + 20s;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (steady::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(5ms);
    }
    pid_ = -1;
  }

  bool alive() const { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }
  std::string log_tail() const {
    std::ifstream in(log_);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.size() > 2000 ? text.substr(text.size() - 2000) : text;
  }

  // The daemon's log lines containing any of `needles`.
  std::vector<std::string> log_lines(const std::vector<std::string>& needles) const {
    std::ifstream in(log_);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) {
      for (const auto& n : needles) {
        if (line.find(n) != std::string::npos) {
          out.push_back(line);
          break;
        }
      }
    }
    return out;
  }

  pid_t pid() const { return pid_; }
  const std::string& ingest() const { return ingest_; }
  const std::string& breakers() const { return breakers_; }
  const std::string& gate() const { return gate_; }
  const std::string& control() const { return control_; }

 private:
  std::string dir_, ingest_, breakers_, gate_, control_, log_;
  pid_t pid_ = -1;
};

// One persistent DEALER on the control socket (a new connection per request would make the
// daemon's I/O thread accept and handshake a hundred connections a second while we measure).
class control_channel {
 public:
  explicit control_channel(const std::string& endpoint)
      : socket_(context_, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.connect(endpoint);
  }

  std::optional<v1::ControlResponse> call(v1::ControlRequest request,
                                          std::chrono::milliseconds timeout) {
    request.set_request_id("bench-" + std::to_string(++counter_));
    const std::string payload = request.SerializeAsString();
    std::array<zmq::const_buffer, 2> frames = {zmq::str_buffer(""), zmq::buffer(payload)};
    if (!zmq::send_multipart(socket_, frames, zmq::send_flags::dontwait)) return std::nullopt;
    const auto deadline = steady::now() + timeout;
    std::vector<zmq::message_t> reply;
    while (steady::now() < deadline) {
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::duration_cast<std::chrono::milliseconds>(
                              deadline - steady::now() + 1ms));
      if ((item.revents & ZMQ_POLLIN) == 0) continue;
      reply.clear();
      if (!zmq::recv_multipart(socket_, std::back_inserter(reply), zmq::recv_flags::dontwait))
        continue;
      v1::ControlResponse r;
      if (reply.empty() ||
          !r.ParseFromArray(reply.back().data(), static_cast<int>(reply.back().size())))
        continue;
      if (r.request_id() != request.request_id()) continue;  // a late reply to a timed-out call
      return r;
    }
    return std::nullopt;
  }

  std::optional<v1::SidecarStatus> status(std::chrono::milliseconds timeout = 2000ms) {
    v1::ControlRequest req;
    req.mutable_status();
    auto r = call(std::move(req), timeout);
    if (!r || !r->ok()) return std::nullopt;
    return r->sidecar();
  }

  bool reset(const std::string& breaker, const std::string& run_id) {
    v1::ControlRequest req;
    req.mutable_reset()->mutable_breaker()->set_name(breaker);
    req.mutable_reset()->mutable_breaker()->set_run_id(run_id);
    req.mutable_reset()->set_reason("sidecar_load: next latency sample");
    auto r = call(std::move(req), 2000ms);
    return r && r->ok();
  }

 private:
  zmq::context_t context_{1};
  zmq::socket_t socket_;
  std::uint64_t counter_ = 0;
};

// Starts a daemon and waits until it answers on the control socket.
std::unique_ptr<daemon_process> start_daemon(const args& a) {
  auto d = std::make_unique<daemon_process>(a.need("loopwarden"), a.get("config", "default"));
  control_channel ctl(d->control());
  const auto deadline = steady::now() + 15s;
  while (steady::now() < deadline) {
    if (!d->alive()) die("the daemon exited at start-up:\n" + d->log_tail());
    if (ctl.status(200ms)) return d;
  }
  die("the daemon did not answer on its control socket:\n" + d->log_tail());
}

std::unique_ptr<client::publisher> make_publisher(const std::string& endpoint,
                                                  const std::string& source,
                                                  const std::string& run_id, std::size_t batch,
                                                  int hwm) {
  auto p = client::publisher::create({.endpoint = endpoint,
                                      .source = source,
                                      .run_id = run_id,
                                      .max_batch_samples = batch,
                                      .flush_interval = 3600s,
                                      .send_hwm = hwm});
  if (!p) die(p.error().message());
  return std::move(p).value();
}

// A host that sends `rate` metrics envelopes per second (each `batch` samples) on its own thread,
// paced in 1 ms slots, until destroyed: the "moderate background load".
class background_load {
 public:
  background_load(const std::string& endpoint, long rate, std::size_t batch,
                  const std::string& source = "bench/background") {
    if (rate <= 0) return;
    thread_ = std::jthread([=, this](const std::stop_token& stop) {
      auto pub = make_publisher(endpoint, source, "bench-bg", batch, 100000);
      auto next = steady::now();
      double owed = 0;
      std::uint64_t i = 0;
      while (!stop.stop_requested()) {
        owed += static_cast<double>(rate) / 1000.0;
        for (; owed >= 1.0; owed -= 1.0) {
          for (std::size_t s = 0; s < batch; ++s, ++i) {
            pub->metric(metric_names[i % 4], normal_value(i), static_cast<std::int64_t>(i / 4));
          }
        }
        if ((i & 1023) < batch) {  // now and then: live counters for the soak's report
          const auto st = pub->stats();
          sent_ = st.events_sent;
          dropped_ = st.dropped();
        }
        next += 1ms;
        std::this_thread::sleep_until(next);
        if (steady::now() > next + 50ms) next = steady::now();  // don't burst after a stall
      }
      const auto st = pub->stats();
      sent_ = st.events_sent;
      dropped_ = st.dropped();
    });
  }
  ~background_load() { stop(); }
  void stop() {
    if (thread_.joinable()) {
      thread_.request_stop();
      thread_.join();
    }
  }
  std::uint64_t sent() const { return sent_; }
  std::uint64_t dropped() const { return dropped_; }

 private:
  std::atomic<std::uint64_t> sent_{0}, dropped_{0};
  std::jthread thread_;
};

// ---- (a) the raw ZeroMQ ceiling --------------------------------------------------------------

int run_ceiling(const args& a) {
  const long messages = a.num("messages", 2'000'000);
  const int batch = static_cast<int>(a.num("batch", 8));
  const std::string parse = a.get("parse", "none");
  // raw: pre-serialized payloads, blocking sends (the transport alone). publisher: the real
  // client (metric() batching, serialization, non-blocking sends), i.e. (b)'s host without
  // the daemon.
  const std::string sender = a.get("sender", "raw");
  std::string payload = batch_envelope(batch).SerializeAsString();
  if (a.kv.count("bytes")) payload.assign(static_cast<std::size_t>(a.num("bytes", 230)), 'x');
  const std::string topic = "metrics";

  char pattern[] = "/tmp/lw-ceiling-XXXXXX";
  if (::mkdtemp(pattern) == nullptr) die("mkdtemp failed");
  const std::string endpoint = std::string("ipc://") + pattern + "/ingest.sock";

  // Two contexts, one I/O thread each, as two processes would have: the same thread count as
  // the host and the daemon's ingest side.
  zmq::context_t rctx(1), sctx(1);
  zmq::socket_t pull(rctx, zmq::socket_type::pull);
  pull.set(zmq::sockopt::linger, 0);
  pull.set(zmq::sockopt::rcvhwm, 65536);  // what the daemon sets (queue_capacity)
  pull.set(zmq::sockopt::rcvtimeo, 3000);  // a dropped message must not hang the count
  pull.bind(endpoint);

  std::atomic<bool> go{false};
  steady::time_point last{};
  long received = 0;
  std::atomic<long> got{0};  // messages received so far, for the publisher's pacing
  std::uint64_t parsed_samples = 0;
  std::jthread receiver([&] {
    zmq::message_t msg;
    v1::Envelope reused;
    go = true;
    long n = 0;
    while (n < messages) {
      if (!pull.recv(msg)) break;  // 3 s of silence: something was dropped
      if (msg.more()) continue;
      if (parse == "reuse") {
        reused.ParseFromArray(msg.data(), static_cast<int>(msg.size()));
        parsed_samples += static_cast<std::uint64_t>(reused.metrics().samples_size());
      } else if (parse == "fresh") {
        auto env = std::make_unique<v1::Envelope>();  // what the ingest thread does per message
        env->ParseFromArray(msg.data(), static_cast<int>(msg.size()));
        parsed_samples += static_cast<std::uint64_t>(env->metrics().samples_size());
      }
      ++n;
      got.store(n, std::memory_order_relaxed);
    }
    last = steady::now();
    received = n;
  });
  while (!go) std::this_thread::sleep_for(1ms);

  zmq::socket_t push(sctx, zmq::socket_type::push);
  push.set(zmq::sockopt::linger, 1000);
  push.set(zmq::sockopt::sndhwm, 10000);  // the publisher's default send_hwm
  std::unique_ptr<client::publisher> pub;
  if (sender == "publisher") {
    pub = make_publisher(endpoint, "bench/load", "bench", static_cast<std::size_t>(batch), 300000);
  } else {
    push.connect(endpoint);
  }
  std::this_thread::sleep_for(50ms);  // connected before the clock starts
  const double cpu0 = cpu_seconds(::getpid());
  const auto start = steady::now();
  if (pub) {
    std::uint64_t k = 0;
    for (long i = 0; i < messages; ++i) {
      // The publisher never blocks: a full queue drops. Stay well below its send_hwm.
      while (i - got.load(std::memory_order_relaxed) >= 50000) {
        std::this_thread::sleep_for(100us);
      }
      for (int s = 0; s < batch; ++s, ++k) {
        pub->metric(metric_names[k % 4], normal_value(k), static_cast<std::int64_t>(k / 4));
      }
    }
  } else {
    for (long i = 0; i < messages; ++i) {
      // Blocking sends: lossless back-pressure, so the count is exact.
      push.send(zmq::buffer(topic), zmq::send_flags::sndmore);
      push.send(zmq::buffer(payload), zmq::send_flags::none);
    }
  }
  receiver.join();
  if (received < messages) {
    die("the receiver got " + std::to_string(received) + " of " + std::to_string(messages) +
        " messages" + (pub ? " (" + std::to_string(pub->stats().dropped()) + " dropped)" : ""));
  }
  const double cpu = cpu_seconds(::getpid()) - cpu0;
  const double s = secs(last - start);
  const double rate = static_cast<double>(messages) / s;
  std::printf(
      "ceiling: PUSH->PULL ipc, [topic %zu B][payload %zu B], %ld messages, sender=%s, "
      "parse=%s: %.3f s, "
      "%.0f msg/s (%.1f MB/s), %.2f us CPU per message (both ends, all threads)\n",
      topic.size(), payload.size(), messages, sender.c_str(), parse.c_str(), s, rate,
      rate * static_cast<double>(payload.size() + topic.size()) / 1e6,
      cpu * 1e6 / static_cast<double>(messages));
  result("cpu_us_per_msg", cpu * 1e6 / static_cast<double>(messages));
  result("payload_bytes", static_cast<double>(payload.size()));
  result("msgs_per_s", rate);
  std::error_code ec;
  fs::remove_all(pattern, ec);
  return 0;
}

// ---- (b)+(f) ingest throughput and memory ----------------------------------------------------

int run_ingest(const args& a) {
  const long events = a.num("events", 2'000'000);
  const auto batch = static_cast<std::size_t>(a.num("batch", 8));
  // Envelopes in flight (sent, not yet evaluated). Enough to keep the daemon busy between two
  // status polls many times over, and well below the publisher's send_hwm, so nothing is dropped:
  // the publisher never blocks (a full queue drops), whatever the daemon's overflow policy.
  const long window = a.num("window", 20000);
  const std::string label = a.get("label", "ingest");
  std::vector<long> rss_at;
  {
    std::stringstream in(a.get("rss-at", ""));
    std::string part;
    while (std::getline(in, part, ',')) {
      if (!part.empty()) rss_at.push_back(std::atol(part.c_str()));
    }
  }

  auto d = start_daemon(a);
  const memory_kib at_start = read_memory(d->pid());
  control_channel ctl(d->control());
  auto st0 = ctl.status();
  if (!st0) die("no status");
  const std::uint64_t base = st0->events();

  // The PUSH socket's writer learns what its I/O thread has taken only every send_hwm / 2
  // messages (ZeroMQ's low-water mark), so the queue may look up to half a send_hwm fuller than
  // it is: with send_hwm >= 3 x window, in-flight <= window can never reach it.
  auto pub = make_publisher(d->ingest(), "bench/load", "bench", batch,
                            static_cast<int>(3 * window + 1000));
  // Let the PUSH connect before timing starts.
  std::this_thread::sleep_for(50ms);

  std::atomic<std::uint64_t> evaluated{0};
  std::atomic<bool> done{false};
  std::atomic<bool> stalled{false};  // no progress for 10 s: events were lost on the way
  steady::time_point finished{};
  struct rss_point {
    long requested;  // the checkpoint asked for
    long evaluated;  // the count when it was read (the first poll at or past the checkpoint)
    memory_kib memory;
  };
  std::vector<rss_point> rss_points;
  v1::SidecarStatus last_status;
  const double cpu0 = cpu_seconds(d->pid());
  const double host0 = cpu_seconds(::getpid());
  const auto start = steady::now();

  // The poller: the daemon's evaluated count, every 5 ms, over one persistent DEALER.
  std::jthread poller([&] {
    control_channel poll_ctl(d->control());
    std::size_t next_rss = 0;
    std::uint64_t seen = 0;
    auto progress_at = steady::now();
    while (!done) {
      auto st = poll_ctl.status(5000ms);
      const auto now = steady::now();
      if (!st) {
        if (!d->alive()) die("the daemon died:\n" + d->log_tail());
        continue;
      }
      const std::uint64_t n = st->events() - base;
      evaluated.store(n, std::memory_order_release);
      if (n != seen) {
        seen = n;
        progress_at = now;
      } else if (now - progress_at > 10s) {
        finished = now;
        last_status = *st;
        stalled = true;
        done = true;
        break;
      }
      while (next_rss < rss_at.size() && n >= static_cast<std::uint64_t>(rss_at[next_rss])) {
        rss_points.push_back({rss_at[next_rss], static_cast<long>(n), read_memory(d->pid())});
        ++next_rss;
      }
      if (n >= static_cast<std::uint64_t>(events)) {
        finished = now;
        last_status = *st;
        done = true;
        break;
      }
      std::this_thread::sleep_for(5ms);
    }
  });

  std::uint64_t i = 0;
  long waits = 0;
  for (long e = 0; e < events && !stalled; ++e) {
    while (!stalled &&
           static_cast<long>(e - static_cast<long>(evaluated.load(std::memory_order_acquire))) >=
               window) {
      ++waits;
      std::this_thread::sleep_for(200us);
    }
    for (std::size_t s = 0; s < batch; ++s, ++i) {
      pub->metric(metric_names[i % 4], normal_value(i), static_cast<std::int64_t>(i / 4));
    }
  }
  const auto sent_at = steady::now();
  poller.join();
  const double cpu1 = cpu_seconds(d->pid());
  const double host1 = cpu_seconds(::getpid());
  const auto threads = thread_cpu(d->pid());
  const memory_kib at_end = read_memory(d->pid());
  const auto stats = pub->stats();

  const double elapsed = secs(finished - start);
  const double ev_rate = static_cast<double>(events) / elapsed;
  std::uint64_t lost = 0;
  for (const auto& src : last_status.sources()) lost += src.lost();
  std::printf("%s: %ld events x %zu samples, window %ld: %.3f s (sender done at %.3f s)\n",
              label.c_str(), events, batch, window, elapsed, secs(sent_at - start));
  std::printf(
      "  %.0f events/s, %.0f samples/s; CPU per event: daemon %.2f us, host (this process) "
      "%.2f us; daemon %.0f%% of one core\n",
      ev_rate, ev_rate * static_cast<double>(batch),
      (cpu1 - cpu0) * 1e6 / static_cast<double>(events),
      (host1 - host0) * 1e6 / static_cast<double>(events), 100.0 * (cpu1 - cpu0) / elapsed);
  std::printf(
      "  client: %llu sent, %llu dropped; daemon: %llu evaluated, dropped %llu, malformed %llu, "
      "lost %llu; sender waited %ld times\n",
      static_cast<unsigned long long>(stats.events_sent),
      static_cast<unsigned long long>(stats.dropped()),
      static_cast<unsigned long long>(last_status.events() - base),
      static_cast<unsigned long long>(last_status.dropped()),
      static_cast<unsigned long long>(last_status.malformed()),
      static_cast<unsigned long long>(lost), waits);
  std::printf("  daemon threads (tid, name, CPU s since start):");
  for (const auto& [tid, comm, cpu] : threads) {
    if (cpu >= 0.05) std::printf(" %ld %s %.2f;", tid, comm.c_str(), cpu);
  }
  std::printf("\n");
  if (stalled) {
    std::printf("  !! STALLED: the daemon stopped making progress at %llu of %ld events "
                "(client drops by reason: queue_full %llu, send_error %llu)\n",
                static_cast<unsigned long long>(last_status.events() - base), events,
                static_cast<unsigned long long>(stats.dropped(client::drop_reason::queue_full)),
                static_cast<unsigned long long>(stats.dropped(client::drop_reason::send_error)));
  }
  for (const auto& m : last_status.monitors()) {
    std::printf("  monitor %-16s %10llu calls, %6.0f ns/call mean\n", m.name().c_str(),
                static_cast<unsigned long long>(m.events()),
                static_cast<double>(m.total_call_ns()) /
                    static_cast<double>(std::max<std::uint64_t>(1, m.events())));
  }
  std::printf("  daemon memory: start VmRSS %.1f MiB", static_cast<double>(at_start.rss) / 1024.0);
  for (const auto& p : rss_points) {
    std::printf("; after %ld: VmRSS %.1f MiB (VmHWM %.1f)", p.evaluated,
                static_cast<double>(p.memory.rss) / 1024.0,
                static_cast<double>(p.memory.hwm) / 1024.0);
  }
  std::printf("; end VmRSS %.1f MiB, VmHWM %.1f MiB\n", static_cast<double>(at_end.rss) / 1024.0,
              static_cast<double>(at_end.hwm) / 1024.0);

  result("events_per_s", ev_rate);
  result("samples_per_s", ev_rate * static_cast<double>(batch));
  result("payload_bytes", static_cast<double>(batch_envelope(static_cast<int>(batch)).ByteSizeLong()));
  result("client_dropped", static_cast<double>(stats.dropped()));
  result("daemon_dropped", static_cast<double>(last_status.dropped()));
  result("lost", static_cast<double>(lost));
  result("daemon_cpu_share", (cpu1 - cpu0) / elapsed);
  result("daemon_cpu_us_per_event", (cpu1 - cpu0) * 1e6 / static_cast<double>(events));
  result("host_cpu_us_per_event", (host1 - host0) * 1e6 / static_cast<double>(events));
  result("rss_start_mib", static_cast<double>(at_start.rss) / 1024.0);
  for (const auto& p : rss_points) {
    result("rss_at_" + std::to_string(p.requested) + "_mib",
           static_cast<double>(p.memory.rss) / 1024.0);
    result("hwm_at_" + std::to_string(p.requested) + "_mib",
           static_cast<double>(p.memory.hwm) / 1024.0);
  }
  result("rss_end_mib", static_cast<double>(at_end.rss) / 1024.0);
  result("hwm_end_mib", static_cast<double>(at_end.hwm) / 1024.0);
  pub.reset();
  d->stop();
  return !stalled && stats.dropped() == 0 && last_status.dropped() == 0 && lost == 0 ? 0 : 1;
}

// ---- (c) event -> breaker latency ----------------------------------------------------------

int run_latency(const args& a) {
  const long samples = a.num("samples", 300);
  const long background = a.num("background", 10000);
  const std::string breaker = a.get("breaker", "training.nonfinite_loss");
  const std::string run_id = "bench-latency";

  auto d = start_daemon(a);
  control_channel ctl(d->control());

  // What the watch thread saw: the time of the OPEN and of the CLOSED transition.
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t opened = 0, closed = 0;
  steady::time_point opened_at{};
  std::int64_t opened_changed_ns = 0;
  auto watch = client::breaker_watch::create(
      {.endpoint = d->breakers(),
       .timeout = 2000ms,
       .on_transition = [&](const v1::BreakerTransition& t) {
         const auto now = steady::now();
         if (t.breaker().name() != breaker || t.breaker().run_id() != run_id) return;
         std::lock_guard lock(mu);
         if (t.breaker().state() == v1::BREAKER_STATE_OPEN) {
           opened_at = now;
           opened_changed_ns = t.breaker().changed_unix_nano();
           ++opened;
         } else if (t.breaker().state() == v1::BREAKER_STATE_CLOSED) {
           ++closed;
         }
         cv.notify_all();
       }});
  if (!watch) die(watch.error().message());
  // Wait for the first snapshot: the SUB is connected and subscribed.
  const auto ready_by = steady::now() + 5s;
  while ((*watch)->snapshot_sequence() == 0 && steady::now() < ready_by) {
    std::this_thread::sleep_for(5ms);
  }
  if ((*watch)->snapshot_sequence() == 0) die("no breaker snapshot from the daemon");

  background_load load(d->ingest(), background, 8);
  auto trip_pub = make_publisher(d->ingest(), "bench/trip", run_id, 1, 1000);
  std::this_thread::sleep_for(300ms);  // let the background settle

  std::mt19937 rng(42);
  std::uniform_int_distribution<int> gap_us(1000, 4000);
  std::vector<double> total_us, to_engine_us, to_watch_us;
  long timeouts = 0;
  for (long k = 0; k < samples; ++k) {
    std::this_thread::sleep_for(std::chrono::microseconds(gap_us(rng)));
    v1::Envelope e;
    e.set_run_id(run_id);
    auto* s = e.mutable_metrics()->add_samples();
    s->set_name("train/loss");
    s->set_value(std::numeric_limits<double>::quiet_NaN());
    s->set_step(k);
    std::uint64_t before;
    {
      std::lock_guard lock(mu);
      before = opened;
    }
    const std::int64_t sent_wall = wall_ns();
    const auto sent = steady::now();
    e.set_time_unix_nano(sent_wall);
    if (!trip_pub->publish(std::move(e))) die("the trip event was dropped");
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, 2s, [&] { return opened > before; })) {
      ++timeouts;
      lock.unlock();
    } else {
      total_us.push_back(std::chrono::duration<double, std::micro>(opened_at - sent).count());
      // The transition's changed_unix_nano is the engine's receive time (wall clock, same host).
      const double engine_us = static_cast<double>(opened_changed_ns - sent_wall) / 1e3;
      to_engine_us.push_back(engine_us);
      to_watch_us.push_back(total_us.back() - engine_us);
      lock.unlock();
    }
    std::uint64_t closed_before;
    {
      std::lock_guard l2(mu);
      closed_before = closed;
    }
    if (!ctl.reset(breaker, run_id)) die("reset refused (is probation 0 in the config?)");
    std::unique_lock l3(mu);
    if (!cv.wait_for(l3, 2s, [&] { return closed > closed_before; })) {
      die("the watch never saw the reset close the breaker (probation must be 0)");
    }
  }
  load.stop();
  auto st = ctl.status();
  std::printf("latency: event -> breaker_watch transition, %ld samples, background %ld events/s "
              "(8 samples each; %llu sent, %llu dropped), %ld timeouts\n",
              samples, background, static_cast<unsigned long long>(load.sent()),
              static_cast<unsigned long long>(load.dropped()), timeouts);
  const summary tot = summarize(total_us), eng = summarize(to_engine_us),
                wat = summarize(to_watch_us);
  print_summary("host send -> watch callback", "us", tot);
  print_summary("  host send -> engine", "us", eng);
  print_summary("  engine -> watch callback", "us", wat);
  if (st) std::printf("  daemon evaluated %llu events\n", static_cast<unsigned long long>(st->events()));
  result("p50_us", tot.p50);
  result("p99_us", tot.p99);
  result("max_us", tot.max);
  result("engine_p50_us", eng.p50);
  result("engine_p99_us", eng.p99);
  result("watch_p50_us", wat.p50);
  result("watch_p99_us", wat.p99);
  result("samples", static_cast<double>(tot.n));
  result("timeouts", static_cast<double>(timeouts));
  trip_pub.reset();
  watch->reset();
  d->stop();
  return timeouts == 0 ? 0 : 1;
}

// ---- (d) gate round trip ------------------------------------------------------------------

int run_gate(const args& a) {
  const long samples = a.num("samples", 10000);
  const long background = a.num("background", 0);
  auto d = start_daemon(a);
  auto gate = client::gate_client::create(
      {.endpoint = d->gate(), .source = "bench/agent", .run_id = "bench-gate", .timeout = 1000ms});
  if (!gate) die(gate.error().message());
  background_load load(d->ingest(), background, 8);
  v1::ActionRequest action;
  action.set_kind(v1::ACTION_KIND_SHELL);
  action.set_command("ls -la build/");
  action.set_working_directory("/work");
  for (int i = 0; i < 500; ++i) (void)(*gate)->ask(action);  // warm up (connect, caches)
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(samples));
  long denied = 0, timeouts = 0;
  std::string monitor;
  for (long i = 0; i < samples; ++i) {
    const auto t0 = steady::now();
    const auto dec = (*gate)->ask(action);
    const auto t1 = steady::now();
    if (dec.timed_out) {
      ++timeouts;
      continue;
    }
    if (!dec.allowed()) ++denied;
    monitor = dec.monitor;
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  load.stop();
  const summary s = summarize(us);
  std::printf("gate: gate_client::ask() round trip, %ld samples, background %ld events/s, "
              "deciding monitor '%s', %ld denied, %ld timeouts\n",
              samples, background, monitor.c_str(), denied, timeouts);
  print_summary("ask() round trip", "us", s);
  result("p50_us", s.p50);
  result("p99_us", s.p99);
  result("p999_us", s.p999);
  result("max_us", s.max);
  result("samples", static_cast<double>(s.n));
  result("timeouts", static_cast<double>(timeouts));
  gate->reset();
  d->stop();
  return timeouts == 0 ? 0 : 1;
}

// The floor under (d): a DEALER -> ROUTER echo over ipc, two contexts (as two processes), the
// same framing and sizes as a gate request and decision, no protobuf and no engine.
int run_rtt(const args& a) {
  const long samples = a.num("samples", 10000);
  const auto bytes = static_cast<std::size_t>(a.num("bytes", 120));
  char pattern[] = "/tmp/lw-rtt-XXXXXX";
  if (::mkdtemp(pattern) == nullptr) die("mkdtemp failed");
  const std::string endpoint = std::string("ipc://") + pattern + "/gate.sock";
  zmq::context_t sctx(1), cctx(1);
  zmq::socket_t router(sctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.bind(endpoint);
  std::jthread echo([&](const std::stop_token& stop) {
    std::vector<zmq::message_t> frames;
    zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
    while (!stop.stop_requested()) {
      zmq::poll(&item, 1, 50ms);  // as the engine thread waits: in zmq_poll
      while (true) {
        frames.clear();
        if (!zmq::recv_multipart(router, std::back_inserter(frames), zmq::recv_flags::dontwait))
          break;
        (void)zmq::send_multipart(router, frames, zmq::send_flags::dontwait);
      }
    }
  });
  zmq::socket_t dealer(cctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(endpoint);
  const std::string payload(bytes, 'g');
  std::vector<double> us;
  std::vector<zmq::message_t> reply;
  for (long i = -500; i < samples; ++i) {
    const auto t0 = steady::now();
    dealer.send(zmq::const_buffer(), zmq::send_flags::sndmore);
    dealer.send(zmq::buffer(payload), zmq::send_flags::none);
    zmq::pollitem_t item{dealer.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, 1000ms);  // as gate_client::ask() waits
    reply.clear();
    if (!zmq::recv_multipart(dealer, std::back_inserter(reply), zmq::recv_flags::dontwait))
      die("no echo");
    if (i >= 0) us.push_back(std::chrono::duration<double, std::micro>(steady::now() - t0).count());
  }
  echo.request_stop();
  echo.join();
  const summary s = summarize(us);
  std::printf("rtt: raw DEALER -> ROUTER echo over ipc, %zu-byte payload, %ld samples\n", bytes,
              samples);
  print_summary("echo round trip", "us", s);
  result("p50_us", s.p50);
  result("p99_us", s.p99);
  result("p999_us", s.p999);
  std::error_code ec;
  fs::remove_all(pattern, ec);
  return 0;
}

// ---- soak: a steady load for a long time; memory, queues and latency over time ----------------

// The least-squares slope of y over x (0 with fewer than two distinct x).
double fitted_slope(const std::vector<std::pair<double, double>>& points) {
  if (points.size() < 2) return 0;
  double sx = 0, sy = 0;
  for (const auto& [x, y] : points) {
    sx += x;
    sy += y;
  }
  const double n = static_cast<double>(points.size());
  const double mx = sx / n, my = sy / n;
  double sxy = 0, sxx = 0;
  for (const auto& [x, y] : points) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) * (x - mx);
  }
  return sxx == 0 ? 0 : sxy / sxx;
}

int run_soak(const args& a) {
  const double minutes = std::atof(a.get("minutes", "10").c_str());
  const long interval_s = std::max(1L, a.num("interval", 10));
  const long rate = a.num("rate", 2000);  // metrics envelopes per second, all publishers together
  const long publishers = std::max(1L, a.num("publishers", 2));
  const auto batch = static_cast<std::size_t>(a.num("batch", 8));
  const long trip_every_ms = a.num("trip-every-ms", 500);
  const long gate_rate = a.num("gate-rate", 20);
  // The verdict: after the first `warmup` rows, the floor of RSS in each interval (the lowest of
  // its samples, one a second: the level the daemon comes back to) must stay within
  // max(tolerance_pct % of the lowest floor, tolerance_mib) of the lowest floor; optionally
  // (--max-slope > 0) the line fitted to the samples must also rise no faster than max_slope
  // KiB/min. The floor, not every sample: a backlog may lift RSS for seconds (within the bound of
  // docs/reliability.md#memory-under-a-flood) as long as it comes back down; memory that a
  // backlog or a leak keeps lifts every later floor. The highest sample is printed too.
  const long rows_planned =
      std::max(1L, static_cast<long>(minutes * 60.0 / static_cast<double>(interval_s)));
  const long warmup =
      std::clamp(a.num("warmup-intervals", std::max(1L, rows_planned / 5)), 0L, rows_planned - 1);
  const double tolerance_pct = std::atof(a.get("rss-tolerance-pct", "10").c_str());
  const double tolerance_mib = std::atof(a.get("rss-tolerance-mib", "2").c_str());
  const double max_slope = std::atof(a.get("max-slope", "0").c_str());  // KiB/min; 0: not checked
  // An injected stall of the engine thread (needs the hanging fixture monitor in the config,
  // bench/soak.sh --stall-ms): every stall_every_s, stall_requests gate requests at once whose
  // action names "hang"; the engine thread waits for each in turn.
  const long stall_every_s = a.num("stall-every-s", 0);
  const long stall_requests = std::max(1L, a.num("stall-requests", 3));
  const std::string breaker = a.get("breaker", "training.nonfinite_loss");
  const std::string run_id = "soak-latency";
  const auto duration =
      std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(minutes * 60.0));

  auto d = start_daemon(a);
  control_channel ctl(d->control());

  // Event -> breaker latency, as in `latency`: a trip event, the OPEN at a breaker watch, a reset.
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t opened = 0, closed = 0;
  steady::time_point opened_at{};
  std::vector<double> trip_ms, gate_ms;       // guarded by mu: samples of the current interval
  long trip_timeouts = 0, gate_timeouts = 0;  // guarded by mu
  auto watch = client::breaker_watch::create(
      {.endpoint = d->breakers(),
       .timeout = 5000ms,
       .on_transition = [&](const v1::BreakerTransition& t) {
         const auto now = steady::now();
         if (t.breaker().name() != breaker || t.breaker().run_id() != run_id) return;
         std::lock_guard lock(mu);
         if (t.breaker().state() == v1::BREAKER_STATE_OPEN) {
           opened_at = now;
           ++opened;
         } else if (t.breaker().state() == v1::BREAKER_STATE_CLOSED) {
           ++closed;
         }
         cv.notify_all();
       }});
  if (!watch) die(watch.error().message());
  const auto ready_by = steady::now() + 5s;
  while ((*watch)->snapshot_sequence() == 0 && steady::now() < ready_by) {
    std::this_thread::sleep_for(5ms);
  }
  if ((*watch)->snapshot_sequence() == 0) die("no breaker snapshot from the daemon");

  std::vector<std::unique_ptr<background_load>> loads;
  for (long p = 0; p < publishers; ++p) {
    loads.push_back(std::make_unique<background_load>(d->ingest(), rate / publishers, batch,
                                                      "soak/publisher-" + std::to_string(p)));
  }

  std::atomic<bool> stop{false};
  std::jthread tripper([&] {
    control_channel reset_ctl(d->control());
    auto pub = make_publisher(d->ingest(), "soak/trip", run_id, 1, 1000);
    std::int64_t k = 0;
    while (!stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(trip_every_ms));
      if (stop) break;
      v1::Envelope e;
      e.set_run_id(run_id);
      auto* s = e.mutable_metrics()->add_samples();
      s->set_name("train/loss");
      s->set_value(std::numeric_limits<double>::quiet_NaN());
      s->set_step(++k);
      std::uint64_t before, closed_before;
      {
        std::lock_guard lock(mu);
        before = opened;
        closed_before = closed;
      }
      const auto sent = steady::now();
      if (!pub->publish(std::move(e))) continue;
      {
        std::unique_lock lock(mu);
        if (cv.wait_for(lock, 2s, [&] { return opened > before; })) {
          trip_ms.push_back(std::chrono::duration<double, std::milli>(opened_at - sent).count());
        } else {
          // Late (or lost): reset anyway, or a breaker that opened after the wait would stay
          // open and every later trip would time out too.
          ++trip_timeouts;
        }
      }
      if (!reset_ctl.reset(breaker, run_id)) continue;
      std::unique_lock lock(mu);
      cv.wait_for(lock, 2s, [&] { return closed > closed_before; });
    }
  });
  std::jthread asker([&] {
    if (gate_rate <= 0) return;
    auto gate = client::gate_client::create(
        {.endpoint = d->gate(), .source = "soak/agent", .run_id = "soak-gate", .timeout = 1000ms});
    if (!gate) return;
    v1::ActionRequest action;
    action.set_kind(v1::ACTION_KIND_SHELL);
    action.set_command("ls -la build/");
    const auto gap = std::chrono::microseconds(1'000'000 / gate_rate);
    auto next = steady::now();
    while (!stop) {
      next += gap;
      std::this_thread::sleep_until(next);
      const auto t0 = steady::now();
      const auto dec = (*gate)->ask(action);
      const double ms = std::chrono::duration<double, std::milli>(steady::now() - t0).count();
      std::lock_guard lock(mu);
      if (dec.timed_out) {
        ++gate_timeouts;
      } else {
        gate_ms.push_back(ms);
      }
    }
  });

  std::atomic<long> stalls{0};
  std::jthread staller([&] {
    if (stall_every_s <= 0) return;
    auto next = steady::now() + std::chrono::seconds(stall_every_s);
    while (!stop) {
      while (!stop && steady::now() < next) std::this_thread::sleep_for(100ms);
      if (stop) break;
      next += std::chrono::seconds(stall_every_s);
      std::vector<std::jthread> askers;
      for (long k = 0; k < stall_requests; ++k) {
        askers.emplace_back([&, k] {
          auto gate = client::gate_client::create({.endpoint = d->gate(),
                                                   .source = "soak/staller",
                                                   .run_id = "soak-stall-" + std::to_string(k),
                                                   .timeout = 10'000ms});
          if (!gate) return;
          v1::ActionRequest action;
          action.set_kind(v1::ACTION_KIND_SHELL);
          action.set_command("hang");
          (void)(*gate)->ask(action);
        });
      }
      askers.clear();  // joins
      ++stalls;
    }
  });

  std::printf(
      "soak: %.1f min, %ld metrics envelopes/s (%zu samples each) from %ld publishers, a trip "
      "every %ld ms, %ld gate requests/s; a row every %ld s; warm-up %ld rows",
      minutes, rate, batch, publishers, trip_every_ms, gate_rate, interval_s, warmup);
  if (stall_every_s > 0) {
    std::printf("; an injected stall (%ld hanging gate requests) every %ld s", stall_requests,
                stall_every_s);
  }
  std::printf("\n");
  std::printf("%7s %8s %8s %8s %8s %8s %7s %-22s %9s %6s %-22s %-14s\n", "t min", "RSS MiB",
              "floor", "anon", "HWM MiB", "ev/s", "queue", "monitor queues", "dropped", "trips",
              "trip ms p50/p99/max", "gate ms p50/p99");
  std::printf("%7s %8s %8s %8s %8s %8s %-30s\n", "", "(at row)", "(min 1s)", "(at row)", "", "",
              "(queues: max of the 1 s samples)");
  std::fflush(stdout);

  const auto start = steady::now();
  std::vector<std::pair<double, double>> rss_series;  // (minutes, KiB), every second
  double warm_at = 0;                                 // minutes: the end of the warm-up rows
  long rows = 0;
  double interval_floor = -1;                           // KiB: the interval's lowest sample
  std::vector<std::pair<double, double>> floors;        // (minutes, KiB) after the warm-up
  long interval_queue = 0, interval_monitor_queue = 0;  // the interval's deepest, every second
  std::uint64_t events0 = 0, last_events = 0;
  if (auto st = ctl.status()) events0 = last_events = st->events();
  std::vector<double> all_trip_ms;
  long max_queue = 0, max_monitor_queue = 0;
  bool lost_daemon = false;
  auto next_row = start + std::chrono::seconds(interval_s);
  auto last_row = start;
  while (steady::now() - start < duration) {
    std::this_thread::sleep_for(1s);
    if (!d->alive()) {
      lost_daemon = true;
      std::printf("!! the daemon died:\n%s\n", d->log_tail().c_str());
      break;
    }
    const auto now = steady::now();
    const double t_min = std::chrono::duration<double>(now - start).count() / 60.0;
    const memory_kib mem = read_memory(d->pid());
    rss_series.push_back({t_min, static_cast<double>(mem.rss)});
    if (interval_floor < 0 || static_cast<double>(mem.rss) < interval_floor) {
      interval_floor = static_cast<double>(mem.rss);
    }
    // Queue depths every second, not only at the rows: a backlog that drains within an interval
    // would not show at the row.
    auto st = ctl.status(now < next_row ? 900ms : 5000ms);
    if (st) {
      interval_queue = std::max(interval_queue, static_cast<long>(st->queue_depth()));
      for (const auto& m : st->monitors()) {
        interval_monitor_queue =
            std::max(interval_monitor_queue, static_cast<long>(m.queue_depth()));
      }
    }
    if (now < next_row) continue;
    next_row += std::chrono::seconds(interval_s);
    if (++rows == warmup) warm_at = t_min;
    if (rows > warmup) floors.push_back({t_min, interval_floor});
    const double floor_mib = interval_floor / 1024.0;
    interval_floor = -1;
    std::vector<double> trips, gates;
    long t_timeouts = 0, g_timeouts = 0;
    {
      std::lock_guard lock(mu);
      trips.swap(trip_ms);
      gates.swap(gate_ms);
      t_timeouts = std::exchange(trip_timeouts, 0);
      g_timeouts = std::exchange(gate_timeouts, 0);
    }
    all_trip_ms.insert(all_trip_ms.end(), trips.begin(), trips.end());
    const summary ts = summarize(trips), gs = summarize(gates);
    std::string monitor_queues = "-";
    std::uint64_t dropped = 0;
    double ev_rate = 0;
    long queue = -1;
    if (st) {
      monitor_queues.clear();
      for (const auto& m : st->monitors()) dropped += m.dropped();
      const long worst = std::exchange(interval_monitor_queue, 0);
      monitor_queues =
          "max " + std::to_string(worst) + " of " + std::to_string(st->monitors_size());
      max_monitor_queue = std::max(max_monitor_queue, worst);
      queue = std::exchange(interval_queue, 0);
      max_queue = std::max(max_queue, queue);
      dropped += st->dropped();
      for (const auto& src : st->sources()) dropped += src.lost();
      ev_rate = static_cast<double>(st->events() - last_events) /
                std::chrono::duration<double>(now - last_row).count();
      last_events = st->events();
    }
    for (const auto& l : loads) dropped += l->dropped();
    last_row = now;
    char trip_text[64], gate_text[48];
    std::snprintf(trip_text, sizeof trip_text, "%.1f/%.1f/%.1f%s", ts.p50, ts.p99, ts.max,
                  t_timeouts > 0 ? " !" : "");
    std::snprintf(gate_text, sizeof gate_text, "%.2f/%.2f%s", gs.p50, gs.p99,
                  g_timeouts > 0 ? " !" : "");
    std::printf("%7.2f %8.1f %8.1f %8.1f %8.1f %8.0f %7ld %-22s %9llu %6zu %-22s %-14s\n", t_min,
                static_cast<double>(mem.rss) / 1024.0, floor_mib,
                static_cast<double>(mem.anon) / 1024.0, static_cast<double>(mem.hwm) / 1024.0,
                ev_rate, queue, monitor_queues.c_str(), static_cast<unsigned long long>(dropped),
                ts.n, trip_text, gate_text);
    if (t_timeouts > 0 || g_timeouts > 0) {
      std::printf("        (timeouts this interval: %ld trips, %ld gate requests)\n", t_timeouts,
                  g_timeouts);
    }
    std::fflush(stdout);
  }
  stop = true;
  tripper.join();
  asker.join();
  for (auto& l : loads) l->stop();
  auto final_status = ctl.status(5000ms);

  staller.join();
  // Flat after warm-up: every per-second RSS sample after the warm-up rows within the tolerance
  // of the lowest one (and, with --max-slope, the fitted slope over them within it).
  std::vector<std::pair<double, double>> after_warmup;
  double warm_sum = 0;
  std::size_t warm_n = 0;
  for (const auto& p : rss_series) {
    if (rows > warmup && p.first > warm_at) {
      after_warmup.push_back(p);
    } else {
      warm_sum += p.second;
      ++warm_n;
    }
  }
  const double slope = fitted_slope(after_warmup);  // KiB per minute
  double lo = 0, hi = 0, lo_t = 0, hi_t = 0;
  if (!after_warmup.empty()) {
    lo = hi = after_warmup.front().second;
    lo_t = hi_t = after_warmup.front().first;
    for (const auto& [t, kib] : after_warmup) {
      if (kib < lo) lo = kib, lo_t = t;
      if (kib > hi) hi = kib, hi_t = t;
    }
  }
  double floor_lo = 0, floor_hi = 0, floor_lo_t = 0, floor_hi_t = 0;
  if (!floors.empty()) {
    floor_lo = floor_hi = floors.front().second;
    floor_lo_t = floor_hi_t = floors.front().first;
    for (const auto& [t, kib] : floors) {
      if (kib < floor_lo) floor_lo = kib, floor_lo_t = t;
      if (kib > floor_hi) floor_hi = kib, floor_hi_t = t;
    }
  }
  const double tolerance_kib = std::max(floor_lo * tolerance_pct / 100.0, tolerance_mib * 1024.0);
  const bool within = floor_hi - floor_lo <= tolerance_kib;
  const bool slope_ok = max_slope <= 0 || slope <= max_slope;
  const bool flat = !lost_daemon && floors.size() >= 2 && within && slope_ok;
  const summary all = summarize(all_trip_ms);
  std::uint64_t sent = 0, client_dropped = 0;
  for (const auto& l : loads) {
    sent += l->sent();
    client_dropped += l->dropped();
  }
  std::printf(
      "soak summary: %.1f min, %llu envelopes sent (%llu dropped by the publishers), "
      "%llu evaluated\n",
      minutes, static_cast<unsigned long long>(sent),
      static_cast<unsigned long long>(client_dropped),
      static_cast<unsigned long long>(final_status ? final_status->events() - events0 : 0));
  std::printf("  RSS during the warm-up (%ld rows, to %.1f min): mean %.1f MiB\n", warmup, warm_at,
              warm_n > 0 ? warm_sum / static_cast<double>(warm_n) / 1024.0 : 0.0);
  std::printf(
      "  RSS floor after the warm-up (the lowest sample of each of %zu intervals): lowest %.1f "
      "MiB at %.1f min, highest %.1f MiB at %.1f min: %.1f MiB apart, tolerance %.1f MiB (%.0f "
      "%% of the lowest, at least %.1f MiB): %s\n",
      floors.size(), floor_lo / 1024.0, floor_lo_t, floor_hi / 1024.0, floor_hi_t,
      (floor_hi - floor_lo) / 1024.0, tolerance_kib / 1024.0, tolerance_pct, tolerance_mib,
      within ? "within" : "EXCEEDED");
  std::printf(
      "  RSS samples after the warm-up (%zu, 1 s apart): min %.1f MiB at %.1f min, max %.1f MiB "
      "at %.1f min\n",
      after_warmup.size(), lo / 1024.0, lo_t, hi / 1024.0, hi_t);
  std::printf("  RSS fitted slope after the warm-up: %+.1f KiB/min (%s)\n", slope,
              max_slope > 0 ? (slope_ok ? "within --max-slope" : "ABOVE --max-slope")
                            : "not checked: --max-slope 0");
  std::printf("  queues: engine at most %ld, monitors at most %ld (sampled every second)\n",
              max_queue, max_monitor_queue);
  if (stall_every_s > 0) std::printf("  injected stalls: %ld\n", stalls.load());
  // What the daemon said about stalls of its engine thread and about memory it returned.
  const auto said = d->log_lines(
      {"engine thread:", "saving the monitors' state took", "snapshot took", "memory"});
  std::printf("  daemon log: %zu line(s) on slow engine steps or memory%s\n", said.size(),
              said.empty() ? "" : " (the first 30):");
  for (std::size_t i = 0; i < said.size() && i < 30; ++i) {
    std::printf("    %s\n", said[i].c_str());
  }
  print_summary("event -> breaker (all rows)", "ms", all);
  std::printf("  RSS flat after warm-up: %s\n", flat ? "yes" : "NO");
  result("rss_slope_kib_per_min", slope);
  result("rss_after_warmup_min_mib", lo / 1024.0);
  result("rss_after_warmup_max_mib", hi / 1024.0);
  result("rss_floor_lowest_mib", floor_lo / 1024.0);
  result("rss_floor_highest_mib", floor_hi / 1024.0);
  result("rss_tolerance_mib", tolerance_kib / 1024.0);
  result("trip_p50_ms", all.p50);
  result("trip_p99_ms", all.p99);
  result("flat", flat ? 1 : 0);
  watch->reset();
  d->stop();
  return flat ? 0 : 1;
}

int run_envelope(const args& a) {
  const int batch = static_cast<int>(a.num("batch", 8));
  const auto size = batch_envelope(batch).ByteSizeLong();
  std::printf("a metrics envelope with %d samples: %zu bytes\n", batch, size);
  result("payload_bytes", static_cast<double>(size));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: sidecar_load ceiling|ingest|latency|gate|rtt|soak|envelope "
                 "[--opt value]...\n");
    return 2;
  }
  const std::string cmd = argv[1];
  const args a = parse_args(argc, argv, 2);
  if (cmd == "ceiling") return run_ceiling(a);
  if (cmd == "ingest") return run_ingest(a);
  if (cmd == "latency") return run_latency(a);
  if (cmd == "gate") return run_gate(a);
  if (cmd == "envelope") return run_envelope(a);
  if (cmd == "rtt") return run_rtt(a);
  if (cmd == "soak") return run_soak(a);
  die("unknown subcommand '" + cmd + "'");
}
