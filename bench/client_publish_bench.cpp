// What a host pays per call of the C++ client: publisher::metric() (batched), publisher::publish()
// of a small envelope, and breaker_watch::should_stop(). A PULL socket on another thread drains
// the ingest side as the sidecar would; the figures are wall time per call on the caller's
// thread, best of several rounds. Run: build/<preset>/bench/client_publish_bench [calls]

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include <loopwarden/client/breaker_watch.hpp>
#include <loopwarden/client/publisher.hpp>

namespace {

using namespace std::chrono_literals;
using namespace loopwarden;
using steady = std::chrono::steady_clock;

// Drains an ingest endpoint on its own thread, counting messages, until destroyed.
class drain {
 public:
  explicit drain(const std::string& endpoint) {
    thread_ = std::jthread([this, endpoint](const std::stop_token& stop) {
      zmq::socket_t pull(context_, zmq::socket_type::pull);
      pull.set(zmq::sockopt::linger, 0);
      pull.set(zmq::sockopt::rcvtimeo, 20);
      pull.set(zmq::sockopt::rcvhwm, 100000);
      pull.bind(endpoint);
      bound_ = true;
      zmq::message_t m;
      while (!stop.stop_requested()) {
        if (pull.recv(m)) {
          if (!m.more()) messages_.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
    while (!bound_) std::this_thread::sleep_for(1ms);
  }
  std::uint64_t messages() const { return messages_.load(); }

 private:
  zmq::context_t context_{1};
  std::atomic<bool> bound_{false};
  std::atomic<std::uint64_t> messages_{0};
  std::jthread thread_;
};

template <typename F>
double best_ns_per_call(int rounds, long calls, F&& body) {
  double best = 1e300;
  for (int r = 0; r < rounds; ++r) {
    const auto start = steady::now();
    for (long i = 0; i < calls; ++i) body(i);
    const double ns = std::chrono::duration<double, std::nano>(steady::now() - start).count();
    best = std::min(best, ns / static_cast<double>(calls));
  }
  return best;
}

std::unique_ptr<client::publisher> make_publisher(const std::string& endpoint,
                                                  std::size_t max_batch) {
  auto p = client::publisher::create({.endpoint = endpoint,
                                      .source = "bench/rank0",
                                      .run_id = "bench",
                                      .max_batch_samples = max_batch,
                                      .flush_interval = 200ms,
                                      .send_hwm = 100000});
  if (!p) {
    std::fprintf(stderr, "%s\n", p.error().message().c_str());
    std::exit(1);
  }
  return std::move(p).value();
}

}  // namespace

int main(int argc, char** argv) {
  const long calls = argc > 1 ? std::atol(argv[1]) : 2'000'000;
  const auto dir =
      std::filesystem::temp_directory_path() / ("lw-client-bench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string endpoint = "ipc://" + (dir / "ingest.sock").string();
  drain sidecar(endpoint);
  constexpr int rounds = 5;

  std::printf("client_publish_bench: %ld calls per round, best of %d rounds, ipc, drained\n", calls,
              rounds);
  for (std::size_t max_batch : {64, 512, 4096}) {
    auto pub = make_publisher(endpoint, max_batch);
    const double ns = best_ns_per_call(rounds, calls, [&](long i) {
      pub->metric("train/loss", static_cast<double>(i) * 1e-3, i);
    });
    pub->flush();
    const auto s = pub->stats();
    std::printf("  metric()  max_batch_samples=%-5zu %7.1f ns/call  (%llu batches, %llu dropped)\n",
                max_batch, ns, static_cast<unsigned long long>(s.batches_sent),
                static_cast<unsigned long long>(s.dropped()));
  }
  {
    auto pub = make_publisher(endpoint, 512);
    v1::Envelope step;
    auto* a = step.mutable_agent_step();
    a->set_agent_id("agent-1");
    a->set_session_id("session-1");
    a->set_tokens_in(1200);
    a->set_tokens_out(300);
    a->set_cost(0.004);
    a->add_tool_calls()->set_name("bash");
    const long n = calls / 10;
    const double ns = best_ns_per_call(rounds, n, [&](long i) {
      step.mutable_agent_step()->set_turn(static_cast<std::uint64_t>(i));
      step.set_time_unix_nano(0);
      pub->publish(step);
    });
    const auto s = pub->stats();
    std::printf("  publish() agent_step (%zu bytes)   %7.1f ns/call  (%llu sent, %llu dropped)\n",
                step.ByteSizeLong(), ns, static_cast<unsigned long long>(s.events_sent),
                static_cast<unsigned long long>(s.dropped()));
  }
  {
    // Nobody publishes breakers: fail_open keeps the poll on its normal path.
    auto watch = client::breaker_watch::create(
        {.endpoint = "ipc://" + (dir / "breakers.sock").string(), .fail_open = true});
    if (!watch) {
      std::fprintf(stderr, "%s\n", watch.error().message().c_str());
      return 1;
    }
    const std::string run = "bench";
    long stops = 0;
    const double ns =
        best_ns_per_call(rounds, calls, [&](long) { stops += (*watch)->should_stop(run); });
    std::printf("  breaker_watch::should_stop()      %7.1f ns/call  (%ld stops)\n", ns, stops);
  }
  std::this_thread::sleep_for(100ms);
  std::printf("  drained %llu messages\n", static_cast<unsigned long long>(sidecar.messages()));
  std::filesystem::remove_all(dir);
  return 0;
}
