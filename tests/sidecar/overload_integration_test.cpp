// Overload (issue 10, item 5), against the real daemon (tests/sidecar/daemon.hpp):
//
//   (a) a flood of publishers faster than a slow monitor can evaluate: the daemon's memory stays
//       under the limit stated in docs/reliability.md (computed here from queue_capacity and the
//       monitors' queues), and every envelope is accounted for per source: evaluated, dropped by
//       the daemon (overflow: drop), or dropped by the publisher itself (overflow: block);
//   (b) an alert receiver that takes seconds per request never slows monitoring: trips reach a
//       host's breaker watch at their usual latency and another sink still delivers at once;
//   (c) shutdown ends within drain_timeout (plus a bounded save), keeps the alerts it could not
//       send in the outbox and the monitors' state in the store, and the next run delivers them.
//
// Timing asserts are deliberately loose (seconds where the daemon takes milliseconds): each one
// separates "works" from "blocked behind the slow thing", not fast from slightly slower.

#include <catch2/catch.hpp>

#include <httplib.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include <loopwarden/v1/breaker.pb.h>
#include <loopwarden/client/breaker_watch.hpp>
#include <loopwarden/client/publisher.hpp>

#include "daemon.hpp"

using namespace loopwarden;
using namespace std::chrono_literals;
using loopwarden::test::daemon_options;
using loopwarden::test::daemon_process;
using loopwarden::test::wait_until;
namespace fs = std::filesystem;

namespace {

// VmRSS of `pid` in KiB (0 when it cannot be read).
long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return 0;
}

// Samples a process's RSS every 20 ms on its own thread; keeps the peak.
class rss_sampler {
 public:
  explicit rss_sampler(pid_t pid)
      : thread_([this, pid](std::stop_token st) {
          while (!st.stop_requested()) {
            const long kib = rss_kib(pid);
            long seen = peak_.load();
            while (kib > seen && !peak_.compare_exchange_weak(seen, kib)) {
            }
            std::this_thread::sleep_for(20ms);
          }
        }) {}
  long peak_kib() const { return peak_.load(); }

 private:
  std::atomic<long> peak_{0};
  std::jthread thread_;
};

std::string yaml_config(const std::string& monitors, const std::string& transport,
                        const std::string& extra = "") {
  return "version: 1\n"
         "log_level: info\n"
         "state_dir: @STATE@\n"
         "plugin_paths: [@FIXTURE_PLUGINS@]\n"
         "probation: 0\n"
         "transport:\n"
         "  heartbeat_interval: 50ms\n" +
         transport + "monitors:\n" + monitors + extra;
}

// The memory the daemon may hold for a flood, beyond what it uses idle (docs/reliability.md,
// "Overload"): every place an envelope can wait, at its bound.
//   - the ingest socket's receive buffer: max(1000, queue_capacity / 4) raw messages for each
//     connected publisher (ZeroMQ applies the high-water mark per connection);
//   - the event queue: an inproc pipe of queue_hwm = max(16, queue_capacity / 64) batches on
//     each side (2 x queue_hwm), one batch being filled, and 64 recycled batches kept for reuse;
//   - each monitor's queue of queue_capacity envelopes: at most 64 entries share a batch and the
//     rest are copies of their envelope (under either policy: consecutive envelopes can each be
//     in their own batch when they arrive one or two at a time), so 64 batches plus the copies;
// where a batch is at most 64 envelopes or 16 KiB of wire bytes, parsed into a 64 KiB arena
// block (plus what the arena adds past it). `batch_kib` and `envelope_kib` are generous sizes for
// the test's envelopes; `slack_kib` covers the allocator (per-thread arenas, fragmentation).
// Under ASan or TSan the daemon's RSS is not the program's memory: ASan gives every allocation
// redzones and keeps freed memory in its quarantine (256 MiB by default) before reuse, TSan keeps
// shadow memory per application byte. There the floods still run and every count is checked; the
// RSS bound is checked in the other builds (docs/sanitizers.md).
#if defined(__SANITIZE_ADDRESS__) || defined(LOOPWARDEN_THREAD_SANITIZER)
constexpr bool rss_is_the_daemons = false;
#else
constexpr bool rss_is_the_daemons = true;
#endif

struct memory_bound {
  long queue_capacity = 16384;
  std::vector<long> monitor_queues;
  long publishers = 1;    // connections to the ingest socket
  long message_kib = 1;   // a raw message waiting in ZeroMQ, with its overhead
  long batch_kib = 96;    // 64 KiB block + the arena's overflow blocks
  long envelope_kib = 4;  // one copied envelope of 8 samples, heap-allocated
  long slack_kib = 24 * 1024;

  long kib() const {
    const long raw = publishers * std::max(1000L, queue_capacity / 4) * message_kib;
    const long hwm = std::max(16L, queue_capacity / 64);
    const long queue = (2 * hwm + 1 + 64) * batch_kib;
    long monitors = 0;
    for (long q : monitor_queues) {
      monitors += std::min(q, 64L) * batch_kib + std::max(0L, q - 64) * envelope_kib;
    }
    return raw + queue + monitors + slack_kib;
  }
};

v1::Envelope flood_envelope(const std::string& source, std::uint64_t seq) {
  v1::Envelope e = test::envelope(source, "flood", seq);
  static const char* names[] = {"train/loss", "train/grad_norm", "train/lr", "eval/accuracy"};
  for (int s = 0; s < 8; ++s) {
    auto* m = e.mutable_metrics()->add_samples();
    m->set_name(names[s % 4]);
    m->set_value(0.5 + 0.001 * static_cast<double>(seq % 1000));
    m->set_step(static_cast<std::int64_t>(seq));
  }
  return e;
}

// The time of day, in ms, of the first line of a daemon log that contains `text`
// ("2026-12-03T10:25:52.109 warning ..."); -1 when there is none.
long log_time_ms(const std::string& log, std::string_view text) {
  const auto at = log.find(text);
  if (at == std::string::npos) return -1;
  const auto line = log.rfind('\n', at);
  const std::size_t start = line == std::string::npos ? 0 : line + 1;
  int h = 0, m = 0, sec = 0, ms = 0;
  if (std::sscanf(log.c_str() + start, "%*4d-%*2d-%*2dT%2d:%2d:%2d.%3d", &h, &m, &sec, &ms) != 4) {
    return -1;
  }
  return ((h * 60L + m) * 60L + sec) * 1000L + ms;
}

std::uint64_t monitor_events(const v1::ControlResponse& r, std::string_view name) {
  const auto* m = test::find_monitor(r, name);
  return m == nullptr ? 0 : m->events();
}

}  // namespace

TEST_CASE("a flood with overflow drop stays under the stated memory and counts drops per source",
          "[integration][sidecar][overload]") {
  // A slow monitor (2 ms an envelope, the default queue of 1024) and a fast one, the default
  // event queue, overflow: drop. Four publishers send as fast as ZeroMQ takes their envelopes.
  daemon_options o;
  o.config = yaml_config(
      "  - name: slow\n"
      "    plugin: slow_monitor\n"
      "    config: {delay_ms: 2}\n"
      "  - name: fixture\n"
      "    plugin: fixture_monitor\n",
      "  overflow: drop\n"
      "  drain_timeout: 5s\n");
  daemon_process d(o);
  std::this_thread::sleep_for(300ms);
  const long idle_kib = rss_kib(d.pid());
  REQUIRE(idle_kib > 0);
  memory_bound bound;
  bound.monitor_queues = {1024, 1024};
  bound.publishers = 4;
  const long limit_kib = idle_kib + bound.kib();

  constexpr int n_sources = 4;
  const auto flood_for = 4s;
  std::vector<std::uint64_t> sent(n_sources, 0);
  std::vector<char> stalled(n_sources, 0);  // a send ZeroMQ did not take for 5 s
  {
    rss_sampler rss(d.pid());
    // The sockets stay connected until the daemon has accounted for everything: closing a PUSH
    // hands what ZeroMQ still holds for it to the transport's teardown, which is not the daemon's
    // accounting under test (one run in six lost the last 104 envelopes of a source, neither
    // received nor dropped by the daemon, after its sender had closed its socket).
    std::vector<zmq::socket_t> pushes;
    for (int s = 0; s < n_sources; ++s) {
      pushes.push_back(test::connect_raw(zmq::socket_type::push, d.ingest()));
      pushes.back().set(zmq::sockopt::sndtimeo, 5000);
    }
    std::vector<std::jthread> senders;
    for (int s = 0; s < n_sources; ++s) {
      senders.emplace_back([&, s] {
        zmq::socket_t& push = pushes[static_cast<std::size_t>(s)];
        const std::string source = "flood/" + std::to_string(s);
        const auto until = std::chrono::steady_clock::now() + flood_for;
        std::uint64_t seq = 0;
        while (std::chrono::steady_clock::now() < until) {
          const std::string bytes = flood_envelope(source, ++seq).SerializeAsString();
          if (!push.send(zmq::str_buffer("metrics"), zmq::send_flags::sndmore) ||
              !push.send(zmq::buffer(bytes), zmq::send_flags::none)) {
            --seq;  // not taken (the daemon stopped reading for 5 s): not sent
            stalled[s] = 1;
            break;
          }
        }
        sent[s] = seq;
      });
    }
    senders.clear();  // joins
    // Every envelope is accounted for: accepted by the engine or dropped, per source; and every
    // accepted one evaluated or dropped by each monitor (the slow one needs ~2 s for its queue).
    v1::ControlResponse last;
    auto accounted = [&](const v1::ControlResponse& r, std::string* why) {
      std::uint64_t received = 0;
      for (int s = 0; s < n_sources; ++s) {
        const auto* src = test::find_source(r, "flood/" + std::to_string(s));
        if (src == nullptr) {
          if (why) *why = "no source flood/" + std::to_string(s);
          return false;
        }
        received += src->received();
        if (src->received() + src->dropped() != sent[s]) {
          if (why) {
            *why = "flood/" + std::to_string(s) + ": sent " + std::to_string(sent[s]) +
                   ", received " + std::to_string(src->received()) + ", dropped " +
                   std::to_string(src->dropped());
          }
          return false;
        }
      }
      for (const char* name : {"slow", "fixture"}) {
        const auto* m = test::find_monitor(r, name);
        if (m == nullptr || m->events() + m->dropped() != received) {
          if (why && m != nullptr) {
            *why = std::string(name) + ": evaluated " + std::to_string(m->events()) + ", dropped " +
                   std::to_string(m->dropped()) + " of " + std::to_string(received);
          }
          return false;
        }
      }
      return true;
    };
    const bool settled =
        d.wait_status([&](const auto& r) { return accounted(r, nullptr); }, 60s, &last);
    std::string why;
    (void)accounted(last, &why);
    std::string stalls;
    for (int s = 0; s < n_sources; ++s) {
      if (stalled[s]) stalls += " flood/" + std::to_string(s);
    }
    INFO("not accounted: " << why << "\nsenders whose send timed out (5 s):"
                           << (stalls.empty() ? " none" : stalls) << "\ndaemon log:\n"
                           << d.log());
    REQUIRE(settled);

    const long peak = rss.peak_kib();
    std::uint64_t total_sent = 0, received = 0, ingest_dropped = 0, monitor_dropped_by_source = 0;
    for (int s = 0; s < n_sources; ++s) {
      const auto* src = test::find_source(last, "flood/" + std::to_string(s));
      INFO("source flood/" << s);
      REQUIRE(src != nullptr);
      total_sent += sent[s];
      received += src->received();
      ingest_dropped += src->dropped();
      monitor_dropped_by_source += src->monitor_dropped();
      // Every source lost evaluations to the slow monitor, and its count says how many. What
      // the full event queue dropped, the engine saw as gaps (all but a trailing run of drops).
      CHECK(src->monitor_dropped() > 0);
      CHECK(src->lost() <= src->dropped());
    }
    const auto* slow = test::find_monitor(last, "slow");
    const auto* fast = test::find_monitor(last, "fixture");
    REQUIRE(slow != nullptr);
    REQUIRE(fast != nullptr);
    // Each envelope the engine accepted was evaluated by each monitor or dropped for it, and
    // each drop is attributed to exactly one source.
    CHECK(slow->events() + slow->dropped() == received);
    CHECK(fast->events() + fast->dropped() == received);
    CHECK(monitor_dropped_by_source == slow->dropped() + fast->dropped());
    CHECK(slow->dropped() > 0);
    // The same counts reach Prometheus, per source (the status is settled: nothing moves now).
    {
      REQUIRE(d.http_port() > 0);
      httplib::Client http("127.0.0.1", d.http_port());
      const auto res = http.Get("/metrics");
      REQUIRE(res);
      REQUIRE(res->status == 200);
      for (int s = 0; s < n_sources; ++s) {
        const auto* src = test::find_source(last, "flood/" + std::to_string(s));
        const std::string label = "{source=\"flood/" + std::to_string(s) + "\"} ";
        CHECK_THAT(res->body, Catch::Contains("loopwarden_source_dropped_events_total" + label +
                                              std::to_string(src->dropped()) + "\n"));
        CHECK_THAT(res->body,
                   Catch::Contains("loopwarden_source_monitor_dropped_events_total" + label +
                                   std::to_string(src->monitor_dropped()) + "\n"));
      }
    }
    std::cout << "overload (drop): " << total_sent << " envelopes from " << n_sources
              << " sources in " << std::chrono::duration<double>(flood_for).count() << " s; "
              << received << " accepted, " << ingest_dropped << " dropped at the queue; slow "
              << "monitor evaluated " << slow->events() << ", dropped " << slow->dropped()
              << "; fixture evaluated " << fast->events() << ", dropped " << fast->dropped()
              << "; RSS idle " << idle_kib / 1024 << " MiB, peak " << peak / 1024 << " MiB, limit "
              << limit_kib / 1024 << " MiB" << std::endl;
    if (rss_is_the_daemons) CHECK(peak <= limit_kib);
  }
  // Still monitoring: a trip on a new run opens its breaker.
  test::raw_ingest_send(d, "metrics", test::metric_envelope("after", "run-after", 1, "trip"));
  CHECK(d.wait_status(
      [](const auto& r) { return test::breaker_open(r, "fixture.trip", "run-after"); }));
}

TEST_CASE("a flood with overflow block holds the publishers back and they count their own drops",
          "[integration][sidecar][overload]") {
  // Back-pressure: the slow monitor's full queue stops the dispatcher, the event queue fills, the
  // ingest thread stops reading, and the publishers' non-blocking sends fail and are counted.
  daemon_options o;
  o.config = yaml_config(
      "  - name: slow\n"
      "    plugin: slow_monitor\n"
      "    queue_capacity: 256\n"
      "    config: {delay_ms: 1}\n",
      "  overflow: block\n"
      "  queue_capacity: 2048\n"
      "  drain_timeout: 5s\n");
  daemon_process d(o);
  std::this_thread::sleep_for(300ms);
  const long idle_kib = rss_kib(d.pid());
  memory_bound bound;
  bound.queue_capacity = 2048;
  bound.monitor_queues = {256};
  bound.publishers = 3;
  const long limit_kib = idle_kib + bound.kib();

  constexpr int n_sources = 3;
  std::vector<client::publisher_stats> stats(n_sources);
  // Alive until the daemon has everything: a closed publisher's queue lives only `linger` long,
  // and its closing heartbeat would add to what the daemon counts.
  std::vector<std::unique_ptr<client::publisher>> pubs;
  for (int s = 0; s < n_sources; ++s) {
    auto pub = client::publisher::create({.endpoint = d.ingest(),
                                          .source = "block/" + std::to_string(s),
                                          .run_id = "flood",
                                          .max_batch_samples = 8,
                                          .send_hwm = 1000});
    REQUIRE(pub.ok());
    pubs.push_back(std::move(*pub));
  }
  {
    rss_sampler rss(d.pid());
    std::vector<std::jthread> senders;
    std::atomic<int> heard{0};
    for (int s = 0; s < n_sources; ++s) {
      senders.emplace_back([&, s] {
        client::publisher& pub = *pubs[s];
        const auto until = std::chrono::steady_clock::now() + 3s;
        std::uint64_t i = 0;
        while (std::chrono::steady_clock::now() < until) {
          pub.metric("train/loss", 0.5, static_cast<std::int64_t>(++i));
        }
        (void)pub.flush();
        // The last word, retried until ZeroMQ takes it: the daemon then counts every earlier drop
        // as a gap in the sequence.
        if (wait_until([&] { return pub.heartbeat(); }, 60s, 20ms)) ++heard;
        stats[s] = pub.stats();
      });
    }
    senders.clear();
    REQUIRE(heard == n_sources);
    v1::ControlResponse last;
    const bool settled = d.wait_status(
        [&](const v1::ControlResponse& r) {
          for (int s = 0; s < n_sources; ++s) {
            const auto* src = test::find_source(r, "block/" + std::to_string(s));
            if (src == nullptr || src->heartbeats() == 0) return false;
          }
          return true;
        },
        90s, &last);
    std::string seen;
    for (const auto& src : last.sidecar().sources()) {
      seen += src.source() + ": received " + std::to_string(src.received()) + ", lost " +
              std::to_string(src.lost()) + ", heartbeats " + std::to_string(src.heartbeats()) +
              "; ";
    }
    for (const auto& m : last.sidecar().monitors()) {
      seen += m.name() + ": evaluated " + std::to_string(m.events()) + ", queued " +
              std::to_string(m.queue_depth()) + "; ";
    }
    INFO("daemon status: " << seen << "queue " << last.sidecar().queue_depth());
    INFO("daemon log:\n" << d.log());
    REQUIRE(settled);
    const long peak = rss.peak_kib();
    std::uint64_t sent = 0, dropped = 0;
    for (int s = 0; s < n_sources; ++s) {
      INFO("source block/" << s);
      const auto* src = test::find_source(last, "block/" + std::to_string(s));
      REQUIRE(src != nullptr);
      // Lossless once ZeroMQ took it; every envelope the publisher dropped is a gap the daemon
      // counted, and the publisher's own counter says the same.
      CHECK(src->received() == stats[s].events_sent + stats[s].heartbeats_sent);
      CHECK(src->lost() == stats[s].dropped());
      CHECK(src->dropped() == 0);
      CHECK(stats[s].dropped(client::drop_reason::queue_full) > 0);
      sent += stats[s].events_sent;
      dropped += stats[s].dropped();
    }
    const auto* slow = test::find_monitor(last, "slow");
    REQUIRE(slow != nullptr);
    CHECK(slow->dropped() == 0);
    std::cout << "overload (block): publishers sent " << sent << " envelopes and dropped "
              << dropped << " themselves; the daemon dropped none; RSS idle " << idle_kib / 1024
              << " MiB, peak " << peak / 1024 << " MiB, limit " << limit_kib / 1024 << " MiB"
              << std::endl;
    if (rss_is_the_daemons) CHECK(peak <= limit_kib);
  }
}

namespace {

// A webhook receiver on 127.0.0.1 that sleeps `delay` before answering each request, and records
// the breakers of the alerts it took (thread-safe: httplib runs handlers on a pool).
class http_receiver {
 public:
  explicit http_receiver(std::chrono::milliseconds delay, int status = 200)
      : delay_(delay), status_(status) {
    server_.Post("/alerts", [this](const httplib::Request& req, httplib::Response& res) {
      {
        std::lock_guard lock(mu_);
        ++requests_;
      }
      std::this_thread::sleep_for(delay_);
      std::lock_guard lock(mu_);
      res.status = status_;
      if (status_ / 100 == 2) {
        const auto j = nlohmann::json::parse(req.body);
        runs_.push_back(j.value("run_id", ""));
      }
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~http_receiver() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  void set_status(int status) {
    std::lock_guard lock(mu_);
    status_ = status;
  }
  int requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::vector<std::string> runs() const {
    std::lock_guard lock(mu_);
    return runs_;
  }

 private:
  httplib::Server server_;
  std::chrono::milliseconds delay_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  int status_;                     // guarded by mu_
  int requests_ = 0;               // guarded by mu_
  std::vector<std::string> runs_;  // guarded by mu_
};

std::string webhook(const std::string& name, int port, const std::string& timeout) {
  return "    - name: " + name +
         "\n      type: webhook\n      url: http://127.0.0.1:" + std::to_string(port) +
         "/alerts\n      timeout: " + timeout +
         "\n      backoff: {initial: 100ms, max: 500ms}\n      max_attempts: 1000\n";
}

}  // namespace

namespace {

// Trips and resets `fixture.trip` on four runs, `cycles` times, and returns each trip's latency
// from the host's send to a host's breaker watch seeing it open, in ms.
std::vector<double> trip_reset_cycles(const daemon_process& d, int cycles) {
  std::mutex mu;
  std::map<std::string, std::uint64_t> opens;  // guarded by mu: OPEN transitions seen, per run
  std::chrono::steady_clock::time_point last_open{};  // guarded by mu
  auto watch = client::breaker_watch::create({.endpoint = d.breakers(),
                                              .timeout = 5000ms,
                                              .on_transition = [&](const v1::BreakerTransition& t) {
                                                if (t.breaker().state() != v1::BREAKER_STATE_OPEN)
                                                  return;
                                                std::lock_guard lock(mu);
                                                ++opens[t.breaker().run_id()];
                                                last_open = std::chrono::steady_clock::now();
                                              }});
  REQUIRE(watch.ok());
  REQUIRE(wait_until([&] { return (*watch)->snapshot_sequence() > 0; }, 10s));
  zmq::socket_t push = test::connect_raw(zmq::socket_type::push, d.ingest());
  std::vector<double> latency_ms;
  for (int k = 0; k < cycles; ++k) {
    const std::string run = "run-" + std::to_string(k % 4);
    std::uint64_t before = 0;
    {
      std::lock_guard lock(mu);
      before = opens[run];
    }
    const auto sent = std::chrono::steady_clock::now();
    test::send_frames(
        push, {"metrics", test::metric_envelope("host", run, k + 1, "trip").SerializeAsString()});
    const bool seen = wait_until(
        [&] {
          std::lock_guard lock(mu);
          return opens[run] > before;
        },
        10s, 0ms);
    INFO("cycle " << k << ", trip on " << run);
    REQUIRE(seen);
    {
      std::lock_guard lock(mu);
      latency_ms.push_back(std::chrono::duration<double, std::milli>(last_open - sent).count());
    }
    v1::ControlRequest reset;
    reset.mutable_reset()->mutable_breaker()->set_name("fixture.trip");
    reset.mutable_reset()->mutable_breaker()->set_run_id(run);
    reset.mutable_reset()->set_reason("next cycle");
    auto r = d.control(reset);
    REQUIRE(r.ok());
    REQUIRE(r->ok());
  }
  return latency_ms;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

TEST_CASE("a slow alert receiver never slows monitoring or the other sinks",
          "[integration][sidecar][overload]") {
  const auto receiver_delay = 5s;
  http_receiver slow(receiver_delay);
  http_receiver fast(0ms);
  constexpr int window = 300;  // the cycles compared: the baseline, and the first and last
  const std::string fixture = "  - name: fixture\n    plugin: fixture_monitor\n";

  // Without: the same trips and resets with only the fast receiver, the baseline latency on this
  // machine at this moment.
  std::vector<double> without;
  {
    daemon_options o;
    o.config = yaml_config(fixture, "  drain_timeout: 2s\n",
                           "alerts:\n  sinks:\n" + webhook("fast", fast.port(), "5s") +
                               "  routes:\n    - sinks: [fast]\n");
    daemon_process d(o);
    without = trip_reset_cycles(d, window);
    CHECK(wait_until([&] { return fast.runs().size() >= 2 * window; }, 30s));
  }
  const std::size_t fast_before = fast.runs().size();

  // With: both receivers. Each cycle queues a trigger and a resolve for both sinks, and the slow
  // receiver (5 s a request) falls ever further behind, to thousands of pending alerts.
  // Monitoring must not notice: a trip with the backlog at its largest reaches the host about as
  // fast as one with no slow receiver at all. LOOPWARDEN_OVERLOAD_CYCLES makes the backlog
  // larger (docs/reliability.md has figures for 5000 cycles).
  daemon_options o;
  o.config = yaml_config(fixture, "  drain_timeout: 2s\n",
                         "alerts:\n  sinks:\n" + webhook("slow", slow.port(), "30s") +
                             webhook("fast", fast.port(), "5s") +
                             "  routes:\n    - sinks: [slow, fast]\n");
  daemon_process d(o);
  const int cycles = static_cast<int>(std::max<std::uint64_t>(
      1000, std::strtoull(std::getenv("LOOPWARDEN_OVERLOAD_CYCLES") != nullptr
                              ? std::getenv("LOOPWARDEN_OVERLOAD_CYCLES")
                              : "1500",
                          nullptr, 10)));
  const auto began = std::chrono::steady_clock::now();
  const std::vector<double> with = trip_reset_cycles(d, cycles);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  // The fast sink delivers everything while the slow one is on its first few.
  const auto alerts = static_cast<std::size_t>(2 * cycles);
  const bool all_fast = wait_until([&] { return fast.runs().size() - fast_before >= alerts; }, 60s);
  const int slow_requests = slow.requests();
  const double base = median(without);
  const double first = median({with.begin(), with.begin() + window});
  const double last = median({with.end() - window, with.end()});
  const double max = *std::max_element(with.begin(), with.end());
  std::cout << "slow receiver (5 s per request): event -> breaker watch p50 " << base
            << " ms without it (" << window << " trips, fast receiver only); with it, " << cycles
            << " trip/reset cycles in " << took << " s, p50 " << first << " ms over the first "
            << window << " trips, " << last << " ms over the last " << window << " (backlog ~"
            << alerts - static_cast<std::size_t>(slow_requests) << " alerts), max " << max
            << " ms (without: " << *std::max_element(without.begin(), without.end())
            << " ms); the fast sink got " << fast.runs().size() - fast_before
            << " alerts, the slow receiver " << slow_requests << " requests" << std::endl;
  INFO("daemon log:\n" << d.log());
  CHECK(all_fast);
  // The test really had a backlog behind the slow receiver: it answered at most a tenth of the
  // alerts. (Not a count of requests: at 5 s each it answers more the longer the cycles take, and
  // under ASan on a loaded machine they took 114 s, for 23 requests.)
  CHECK(static_cast<std::size_t>(slow_requests) * 10 < alerts);
  // A trip never waits for a delivery (the receiver takes 5 s), and neither the slow receiver
  // nor its backlog slows trips down. Loose bounds on a shared machine: they catch a trip stuck
  // behind a delivery or behind the outbox scans, not noise (before the fix, 5000 cycles reached
  // a p50 of 35 ms against 1 ms without the receiver).
  CHECK(max < 4000.0);
  CHECK(first <= 4 * base + 25.0);
  CHECK(last <= 4 * base + 25.0);
  const auto st = d.status();
  for (const auto& sink : st.sidecar().alert_sinks()) {
    INFO("sink " << sink.name());
    if (sink.name() == "fast") CHECK(sink.sent() >= alerts);
  }
}

TEST_CASE("shutdown ends within drain_timeout and keeps what it could not send for the next run",
          "[integration][sidecar][overload]") {
  http_receiver hook(0ms, 503);  // refuses everything: every alert stays pending
  const std::string config = yaml_config(
      "  - name: slow\n"
      "    plugin: slow_monitor\n"
      "    config: {delay_ms: 20}\n"
      "  - name: fixture\n"
      "    plugin: fixture_monitor\n",
      "  drain_timeout: 2s\n",
      "monitor_state_interval: 0s\n"
      "alerts:\n  sinks:\n" +
          webhook("hook", hook.port(), "2s") + "  routes:\n    - sinks: [hook]\n");
  daemon_options o;
  o.config = config;
  daemon_process d(o);
  // Three trip samples: both monitors trip on each (fixture.trip, slow.trip), six alerts the
  // receiver refuses.
  for (int k = 0; k < 3; ++k) {
    test::raw_ingest_send(d, "metrics",
                          test::metric_envelope("host", "run-" + std::to_string(k),
                                                static_cast<std::uint64_t>(k + 1), "trip"));
  }
  REQUIRE(d.wait_status([](const auto& r) {
    return test::breaker_open(r, "fixture.trip", "run-0") &&
           test::breaker_open(r, "fixture.trip", "run-1") &&
           test::breaker_open(r, "fixture.trip", "run-2");
  }));
  REQUIRE(d.wait_status([](const auto& r) {
    return test::breaker_open(r, "slow.trip", "run-0") &&
           test::breaker_open(r, "slow.trip", "run-1") &&
           test::breaker_open(r, "slow.trip", "run-2");
  }));
  REQUIRE(wait_until([&] { return hook.requests() >= 6; }, 10s));
  // A backlog the slow monitor needs ~60 s for (3000 envelopes at 20 ms).
  {
    zmq::socket_t push = test::connect_raw(zmq::socket_type::push, d.ingest());
    push.set(zmq::sockopt::linger, 5000);
    for (std::uint64_t seq = 1; seq <= 3000; ++seq) {
      test::send_frames(
          push,
          {"metrics", test::metric_envelope("backlog", "run-b", seq, "x").SerializeAsString()});
    }
  }
  REQUIRE(d.wait_status([](const auto& r) {
    const auto* m = test::find_monitor(r, "slow");
    return m != nullptr && m->queue_depth() >= 500;
  }));
  const auto before = d.status();
  const double slow_seen = static_cast<double>(monitor_events(before, "slow"));

  const auto t0 = std::chrono::steady_clock::now();
  d.signal(SIGTERM);
  const auto code = d.wait_exit(30s);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO("daemon log:\n" << d.log());
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  std::cout << "shutdown with a 3000-envelope backlog and 6 undeliverable alerts took " << took
            << " s (drain_timeout 2 s)" << std::endl;
  // The drain ends at drain_timeout from the signal (by the daemon's own log clock, so the
  // signal's delivery does not count); then the saves (monitor states, the final snapshot, the
  // audit record) end the process. Before the drain was checked per event, one batch waiting
  // for room in the slow monitor's full queue could hold it up to 2.3 s past the deadline.
  const std::string log = d.log();
  const long signal_ms = log_time_ms(log, "SIGTERM: stopping");
  const long drained_ms = log_time_ms(log, "were not evaluated before the drain timeout");
  REQUIRE(signal_ms >= 0);
  REQUIRE(drained_ms >= 0);
  std::cout << "  the drain ended " << drained_ms - signal_ms
            << " ms after the daemon saw SIGTERM (drain_timeout 2000 ms)" << std::endl;
  CHECK(drained_ms - signal_ms >= 1900);  // it did wait for the monitors
  CHECK(drained_ms - signal_ms <= 2000 + test::scaled(300ms).count());
  CHECK(took < 2.0 + 2.0 * test::time_scale());

  // What it could not send is in the outbox, and every monitor's state was saved.
  {
    sqlite3* db = nullptr;
    const std::string uri =
        "file:" + (fs::path(d.state_dir()) / "loopwarden.db").string() + "?mode=ro";
    REQUIRE(sqlite3_open_v2(uri.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, nullptr) ==
            SQLITE_OK);
    auto count = [&](const char* sql) {
      sqlite3_stmt* st = nullptr;
      REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK);
      std::int64_t n = -1;
      if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
      sqlite3_finalize(st);
      return n;
    };
    CHECK(count("SELECT COUNT(*) FROM outbox WHERE state = 'pending'") == 6);
    CHECK(count("SELECT COUNT(*) FROM monitor_states WHERE monitor IN ('slow', 'fixture')") == 2);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, "SELECT state FROM monitor_states WHERE monitor = 'slow'", -1,
                               &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    const std::string saved(reinterpret_cast<const char*>(sqlite3_column_blob(st, 0)),
                            static_cast<std::size_t>(sqlite3_column_bytes(st, 0)));
    sqlite3_finalize(st);
    sqlite3_close(db);
    // The slow monitor's count of samples: at least what it had evaluated before SIGTERM.
    CHECK(std::stod(saved) >= slow_seen);
  }

  // The next run delivers them, and the monitors start from their saved state.
  hook.set_status(200);
  d.restart();
  CHECK(wait_until([&] { return hook.runs().size() >= 6; }, 20s));
  auto runs = hook.runs();
  std::sort(runs.begin(), runs.end());
  runs.erase(std::unique(runs.begin(), runs.end()), runs.end());
  CHECK(runs == std::vector<std::string>{"run-0", "run-1", "run-2"});
  CHECK_THAT(d.log(), Catch::Contains("restored the learned state of 2 of 2 saved monitor(s)"));
}
