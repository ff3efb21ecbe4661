#pragma once
// The ingest thread: reads [topic][envelope] messages from every ingest socket, parses each once,
// drops malformed input with a count (per endpoint and per source) and a rate-limited log line,
// optionally records the stream, and hands envelopes to the engine thread over a bounded queue.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <google/protobuf/arena.h>
#include <loopwarden/v1/envelope.pb.h>
#include <loopwarden/core/config.hpp>
#include <loopwarden/core/replay_file.hpp>
#include <loopwarden/core/status.hpp>

#include "handoff.hpp"

namespace loopwarden::sidecar::detail {

// The inproc endpoint between the ingest thread and the engine thread. Each message is one
// pointer to an event_batch whose ownership passes to the receiver, who hands it back with
// recycle_batch(); a null pointer marks the end of the stream.
inline constexpr const char* event_queue_endpoint = "inproc://loopwarden.events";

// Envelopes parsed into one protobuf arena, handed to the engine thread as one pointer. The arena
// starts on a block the batch owns, so a recycled batch parses without calling malloc: no
// allocation on the ingest thread and no cross-thread free on the engine thread, per event.
struct event_batch {
  static constexpr std::size_t block_size = 64 * 1024;
  static constexpr std::size_t max_events = 64;
  event_batch();
  std::unique_ptr<char[]> block;
  std::unique_ptr<google::protobuf::Arena> arena;
  std::vector<v1::Envelope*> events;  // on the arena
  std::size_t bytes = 0;              // wire bytes parsed into it
  handoff_fence handoff;              // published before each send to the engine thread
  bool full() const { return events.size() >= max_events || bytes >= block_size / 4; }
};
// A bounded, thread-safe free list of batches (the ingest thread takes, the engine returns).
std::unique_ptr<event_batch> take_batch();
void recycle_batch(std::unique_ptr<event_batch> batch);
// Bytes of batches freed so far because the free list was full (the memory a drained backlog
// gave back to the allocator): the server's cue to return it to the system (memory_return.hpp).
std::uint64_t freed_batch_bytes();
// The event queue's high-water mark in batches, for `queue_capacity` events.
int queue_hwm_batches(std::size_t queue_capacity);
// The receive high-water mark of each ingest socket, in messages, for `queue_capacity` events.
int ingest_rcvhwm(std::size_t queue_capacity);

// What the ingest check made of one message.
struct ingest_check {
  std::string why;     // empty: a valid envelope; otherwise why the message is malformed
  std::string source;  // the envelope's source, when the payload parsed far enough to name one
  bool ok() const { return why.empty(); }
};

// Judges one ingest message, `frames` as received: it must be exactly [kind-topic][envelope],
// the topic a known event kind, the payload a loopwarden.v1.Envelope whose body matches the topic
// and which names its source. Parses the payload into `envelope` (left partly filled when the
// message is malformed). The ingest thread's only check, and the fuzz target's entry point
// (tests/fuzz/envelope_fuzz.cpp). Thread-safe: no state.
ingest_check check_ingest_message(std::span<const std::string_view> frames, v1::Envelope& envelope);

struct ingest_endpoint_counters {
  std::string endpoint;
  std::string socket;
  std::uint64_t received = 0;
  std::uint64_t malformed = 0;
};

// Thread-safety: counters() and the atomics are safe from any thread; start/stop from one.
class ingest_loop {
 public:
  // `taken`: how many events the engine thread has taken off the event queue so far (the
  // server's counter); with it, a partial batch is held back while the engine is behind (see
  // run()). Null: every partial batch is sent as soon as the sockets are drained.
  ingest_loop(const core::transport_config& transport, std::string record_file,
              const std::atomic<std::uint64_t>* taken = nullptr);
  ~ingest_loop();

  // Binds/connects the ingest sockets and starts the thread. The engine thread must already
  // have bound the event queue. Errors name the endpoint.
  core::status start();
  // Stops reading, closes the sockets, sends the end-of-stream marker, joins. What already
  // reached the sockets is still read and handed on until transport.drain_timeout from now.
  // Idempotent.
  void stop();
  // The same, draining until `drain_deadline` (a shutdown's one budget for everything).
  void stop(std::chrono::steady_clock::time_point drain_deadline);

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
  const std::atomic<std::uint64_t>* const taken_;
  std::jthread thread_;

  std::atomic<std::uint64_t> malformed_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> enqueued_{0};
  // When the drain after stop() ends, in steady-clock nanoseconds; 0: drain_timeout from the
  // moment the thread sees the stop.
  std::atomic<std::int64_t> drain_deadline_ns_{0};

  mutable std::mutex mu_;
  std::vector<ingest_endpoint_counters> endpoints_;           // guarded by mu_
  std::string record_error_;                                  // guarded by mu_
  std::map<std::string, std::uint64_t> malformed_by_source_;  // guarded by mu_; bounded
  std::map<std::string, std::uint64_t> dropped_by_source_;    // guarded by mu_; bounded
};

}  // namespace loopwarden::sidecar::detail
