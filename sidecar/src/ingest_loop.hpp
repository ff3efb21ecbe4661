#pragma once
// The ingest thread: reads [topic][envelope] messages from every ingest socket, parses each once,
// drops malformed input with a count (per endpoint and per source) and a rate-limited log line,
// optionally records the stream, and hands envelopes to the engine thread over a bounded queue.

#include <atomic>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/replay_file.hpp>
#include <loopwarden/core/status.hpp>

namespace loopwarden::sidecar::detail {

// The inproc endpoint between the ingest thread and the engine thread. Each message is one
// pointer to a heap-allocated v1::Envelope whose ownership passes to the receiver; a null
// pointer marks the end of the stream.
inline constexpr const char* event_queue_endpoint = "inproc://loopwarden.events";

struct ingest_endpoint_counters {
  std::string endpoint;
  std::string socket;
  std::uint64_t received = 0;
  std::uint64_t malformed = 0;
};

// Thread-safety: counters() and the atomics are safe from any thread; start/stop from one.
class ingest_loop {
 public:
  ingest_loop(const core::transport_config& transport, std::string record_file);
  ~ingest_loop();

  // Binds/connects the ingest sockets and starts the thread. The engine thread must already
  // have bound the event queue. Errors name the endpoint.
  core::status start();
  // Stops reading, closes the sockets, sends the end-of-stream marker, joins. Idempotent.
  void stop();

  std::vector<ingest_endpoint_counters> counters() const;
  // Malformed messages per source, for envelopes that parsed far enough to name one.
  std::map<std::string, std::uint64_t> malformed_by_source() const;
  // Envelopes dropped because the queue was full (overflow: drop), per source.
  std::map<std::string, std::uint64_t> dropped_by_source() const;
  std::uint64_t malformed() const { return malformed_.load(std::memory_order_relaxed); }
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  std::uint64_t enqueued() const { return enqueued_.load(std::memory_order_relaxed); }
  // Problems recording (each also logged); recording stops at the first.
  std::string record_error() const;

 private:
  void run(std::stop_token stop, std::shared_ptr<std::promise<core::status>> started);

  const core::transport_config transport_;
  const std::string record_file_;
  std::jthread thread_;

  std::atomic<std::uint64_t> malformed_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> enqueued_{0};

  mutable std::mutex mu_;
  std::vector<ingest_endpoint_counters> endpoints_;           // guarded by mu_
  std::string record_error_;                                  // guarded by mu_
  std::map<std::string, std::uint64_t> malformed_by_source_;  // guarded by mu_; bounded
  std::map<std::string, std::uint64_t> dropped_by_source_;    // guarded by mu_; bounded
};

}  // namespace loopwarden::sidecar::detail
