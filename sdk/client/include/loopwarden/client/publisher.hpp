#pragma once
// publisher: sends a host's events to the sidecar's ingest socket (docs/wire-protocol.md,
// "Ingest"), as two-frame messages [topic][Envelope], batching metric samples.
//
//   auto pub = loopwarden::client::publisher::create({.endpoint = "ipc:///run/lw/ingest.sock",
//                                                     .source = "trainer/rank0", .run_id = id});
//   if (!pub) { log(pub.error().message()); return; }
//   (*pub)->metric("train/loss", loss, step);   // batched; never blocks
//
// Sending happens on the caller's thread, with ZMQ_DONTWAIT: ZeroMQ's own I/O thread already
// moves bytes off the process asynchronously, so a second queue and thread would only add a
// hand-off, a lock and a copy. It also makes heartbeats honest: they go out from the loop's own
// thread (on a call, or from tick()), so a hung loop goes silent and trips telemetry.silence,
// which a background heartbeat thread would hide.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <loopwarden/v1/envelope.pb.h>
#include <loopwarden/status.hpp>

namespace loopwarden::client {

// The host side of the ingest socket: PUSH for a sidecar that PULLs (lossless up to the
// high-water mark), PUB for one that SUBscribes (a slow or absent sidecar silently drops).
enum class ingest_socket { push, pub };

// Why an envelope did not leave the host. queue_full and send_error spend the envelope's seq
// (the sidecar sees a gap) and are what heartbeats report as events_dropped; invalid does not.
enum class drop_reason : std::uint8_t {
  queue_full,  // ZeroMQ would block: send high-water mark reached, or no peer to queue for
  invalid,     // the envelope had no body, or is too large to serialize
  send_error,  // any other ZeroMQ error on send
};
inline constexpr std::size_t drop_reason_count = 3;

// "queue_full", "invalid", "send_error".
std::string_view to_string(drop_reason r);

// What publisher::create() needs; only endpoint has no usable default.
// Thread-safety: a value type.
struct publisher_options {
  std::string endpoint{};  // the sidecar's ingest endpoint, ipc://PATH or tcp://HOST:PORT
  ingest_socket socket = ingest_socket::push;
  std::string source = "host";                   // producer id; seq is counted per source
  std::string run_id{};                          // put on envelopes that carry none
  std::map<std::string, std::string> labels{};   // put on every envelope (its own labels win)
  std::size_t max_batch_samples = 256;           // samples buffered before a batch is sent (>= 1)
  std::chrono::milliseconds flush_interval{50};  // oldest buffered sample's maximum age
  int send_hwm = 10000;  // ZMQ_SNDHWM: messages ZeroMQ queues before sends are dropped
  std::chrono::milliseconds heartbeat_interval{0};  // automatic heartbeats; 0 = none
  std::chrono::milliseconds linger{100};  // ZMQ_LINGER: how long unsent messages outlive close
};

// Counters since creation. Drops are counted in envelopes; samples_dropped counts the metric
// samples inside dropped batches. Thread-safety: a value type.
struct publisher_stats {
  std::uint64_t events_sent = 0;  // envelopes handed to ZeroMQ, heartbeats excluded
  std::uint64_t heartbeats_sent = 0;
  std::uint64_t batches_sent = 0;  // metrics envelopes made by metric(), a subset of events_sent
  std::uint64_t samples_sent = 0;  // metric samples inside those batches
  std::uint64_t samples_dropped = 0;
  std::array<std::uint64_t, drop_reason_count> dropped_by_reason{};  // index: drop_reason
  // Envelopes dropped for any reason.
  std::uint64_t dropped() const;
  std::uint64_t dropped(drop_reason r) const {
    return dropped_by_reason[static_cast<std::size_t>(r)];
  }
};

// Stamps and sends envelopes; batches metric samples into MetricsBatch envelopes.
// Every envelope gets the options' source, the run_id (when it has none), the labels, the
// schema version, a time (when it has none) and the next seq (1, 2, 3, ... heartbeats
// included). Nothing ever blocks: when ZeroMQ would block, the envelope is dropped and counted,
// and its seq stays spent, so the sidecar counts the loss as a gap; heartbeats report the same
// drops as events_dropped. Memory is bounded by max_batch_samples plus ZeroMQ's queue.
// Thread-safety: not thread-safe; use one publisher per thread (each has its own socket), or
// guard one with a mutex. stats() alone may be called from any thread.
class publisher {
 public:
  // Connects to options.endpoint (connecting succeeds before the sidecar is up; events queue up
  // to send_hwm). Errors: invalid_argument naming the endpoint or option (bad scheme, empty
  // source, zero max_batch_samples, ZeroMQ rejecting the address); io_error from ZeroMQ.
  static sdk::result<std::unique_ptr<publisher>> create(publisher_options options);

  // Flushes buffered samples, sends a closing heartbeat (so the sidecar does not report this
  // source as silent), then closes the socket; unsent messages get `linger` to leave.
  ~publisher();
  publisher(const publisher&) = delete;
  publisher& operator=(const publisher&) = delete;

  // Stamps and sends one envelope of any body kind, on the topic of its body. Returns true when
  // ZeroMQ took it; false when it was dropped (no body: invalid, no seq spent; would block:
  // queue_full). A heartbeat body gets this publisher's counters.
  // Buffered metric samples are flushed first, so the sidecar sees events in call order.
  bool publish(v1::Envelope envelope);

  // Buffers one sample (with the current time); sends the batch when it holds
  // max_batch_samples, or when its oldest sample is older than flush_interval. Never blocks.
  void metric(std::string_view name, double value, std::int64_t step = 0);

  // Sends buffered samples now. Returns true when there was nothing to send or ZeroMQ took the
  // batch; false when it was dropped.
  bool flush();

  // Sends a heartbeat now (with events_sent / events_dropped). Returns false when dropped.
  bool heartbeat();

  // Does what is due by the clock: flushes an old batch, sends a due heartbeat. metric(),
  // publish() and flush() do this too; call tick() from an otherwise idle loop.
  void tick();

  // Counters; safe to call from any thread.
  publisher_stats stats() const;
  // The next seq this publisher will use (1 before anything was sent).
  std::uint64_t next_seq() const;
  const publisher_options& options() const;

 private:
  struct impl;
  explicit publisher(std::unique_ptr<impl> state);
  std::unique_ptr<impl> impl_;
};

}  // namespace loopwarden::client
