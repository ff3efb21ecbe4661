#include "ingest_loop.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <limits>
#include <mutex>
#include <utility>
#include <zmq_addon.hpp>

#include <loopwarden/core/logging.hpp>
#include <loopwarden/event_kind.hpp>

#include "zmq_util.hpp"

namespace loopwarden::sidecar::detail {

namespace {

// Only the first malformed messages are logged in full, then one in every 10 000, so a
// misbehaving producer cannot flood the log.
bool should_log(std::uint64_t n) { return n <= 10 || n % 10'000 == 0; }

// Per-source counters are bounded: a flood of made-up source names must not grow memory.
constexpr std::size_t max_tracked_sources = 10'000;

}  // namespace

event_batch::event_batch() : block(new char[block_size]) {
  google::protobuf::ArenaOptions o;
  o.initial_block = block.get();
  o.initial_block_size = block_size;
  arena = std::make_unique<google::protobuf::Arena>(o);
  events.reserve(max_events);
}

namespace {
std::mutex pool_mu;
std::vector<std::unique_ptr<event_batch>>& pool() {
  static auto* p = new std::vector<std::unique_ptr<event_batch>>();  // outlives every thread
  return *p;
}
constexpr std::size_t max_pooled = 64;
std::atomic<std::uint64_t> freed_bytes{0};
}  // namespace

std::uint64_t freed_batch_bytes() { return freed_bytes.load(std::memory_order_relaxed); }

std::unique_ptr<event_batch> take_batch() {
  {
    std::lock_guard lock(pool_mu);
    if (!pool().empty()) {
      auto b = std::move(pool().back());
      pool().pop_back();
      return b;
    }
  }
  return std::make_unique<event_batch>();
}

void recycle_batch(std::unique_ptr<event_batch> batch) {
  if (!batch) return;
  batch->events.clear();
  batch->bytes = 0;
  batch->arena->Reset();  // runs the string destructors; keeps the initial block
  {
    std::lock_guard lock(pool_mu);
    if (pool().size() < max_pooled) {
      pool().push_back(std::move(batch));
      return;
    }
  }
  freed_bytes.fetch_add(event_batch::block_size, std::memory_order_relaxed);
}

ingest_check check_ingest_message(std::span<const std::string_view> frames,
                                  v1::Envelope& envelope) {
  ingest_check c;
  std::optional<sdk::event_kind> topic;
  if (frames.size() != 2) {
    c.why = fmt::format("{} frames, expected 2 ([topic][envelope])", frames.size());
  } else if (!(topic = sdk::parse_event_kind(frames[0]))) {
    c.why = fmt::format("unknown topic '{}'", frames[0].substr(0, 64));
  } else if (frames[1].size() > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
             !envelope.ParseFromArray(frames[1].data(), static_cast<int>(frames[1].size()))) {
    c.why = fmt::format("{}-byte payload is not a loopwarden.v1.Envelope", frames[1].size());
  } else {
    c.source = envelope.source();
    const auto kind = sdk::kind_of(envelope);
    if (!kind) {
      c.why = "envelope has no body";
    } else if (*kind != *topic) {
      c.why = fmt::format("topic '{}' but a {} body", frames[0], sdk::topic_name(*kind));
    } else if (c.source.empty()) {
      // Every producer names itself; bytes that parse as an envelope without a source are
      // something else (a control request sent to the wrong socket, say).
      c.why = "envelope names no source";
    }
  }
  return c;
}

int ingest_rcvhwm(std::size_t queue_capacity) {
  return static_cast<int>(std::clamp<std::size_t>(queue_capacity / 4, 1000, 1'000'000));
}

int queue_hwm_batches(std::size_t queue_capacity) {
  return static_cast<int>(std::max<std::size_t>(16, queue_capacity / event_batch::max_events));
}

ingest_loop::ingest_loop(const core::transport_config& transport, std::string record_file,
                         const std::atomic<std::uint64_t>* taken)
    : transport_(transport), record_file_(std::move(record_file)), taken_(taken) {}

ingest_loop::~ingest_loop() { stop(); }

core::status ingest_loop::start() {
  {
    std::lock_guard lock(mu_);
    for (const auto& in : transport_.ingest) {
      endpoints_.push_back(
          {in.endpoint, in.socket == core::ingest_socket::pull ? "pull" : "sub", 0, 0});
    }
  }
  auto started = std::make_shared<std::promise<core::status>>();
  auto result = started->get_future();
  thread_ = std::jthread([this, started](std::stop_token st) { run(st, started); });
  core::status s = result.get();
  if (!s.ok()) {
    thread_.request_stop();
    thread_.join();
  }
  return s;
}

void ingest_loop::stop(std::chrono::steady_clock::time_point drain_deadline) {
  drain_deadline_ns_ =
      std::chrono::duration_cast<std::chrono::nanoseconds>(drain_deadline.time_since_epoch())
          .count();
  stop();
}

void ingest_loop::stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

std::vector<ingest_endpoint_counters> ingest_loop::counters() const {
  std::lock_guard lock(mu_);
  return endpoints_;
}

std::map<std::string, std::uint64_t> ingest_loop::malformed_by_source() const {
  std::lock_guard lock(mu_);
  return malformed_by_source_;
}

std::map<std::string, std::uint64_t> ingest_loop::dropped_by_source() const {
  std::lock_guard lock(mu_);
  return dropped_by_source_;
}

std::string ingest_loop::record_error() const {
  std::lock_guard lock(mu_);
  return record_error_;
}

void ingest_loop::run(std::stop_token stop, std::shared_ptr<std::promise<core::status>> started) {
  // Every socket is created, used and closed on this thread.
  std::vector<zmq::socket_t> sockets;
  zmq::socket_t queue(zmq_context(), zmq::socket_type::push);
  try {
    queue.set(zmq::sockopt::sndhwm, queue_hwm_batches(transport_.queue_capacity));
    queue.set(zmq::sockopt::linger, 0);
    queue.connect(event_queue_endpoint);
  } catch (const zmq::error_t& e) {
    started->set_value(zmq_failure(e, "connect the event queue", event_queue_endpoint));
    return;
  }
  for (const auto& in : transport_.ingest) {
    const bool pull = in.socket == core::ingest_socket::pull;
    zmq::socket_t s(zmq_context(), pull ? zmq::socket_type::pull : zmq::socket_type::sub);
    s.set(zmq::sockopt::linger, 0);
    // ZeroMQ's own receive buffer in front of the parser: a quarter of the event queue (at least
    // 1000 messages). Its bound is in messages, not bytes, so it is kept small: large envelopes
    // waiting here are raw bytes that nothing has looked at yet.
    s.set(zmq::sockopt::rcvhwm, ingest_rcvhwm(transport_.queue_capacity));
    if (!pull) {
      if (in.topics.empty()) {
        s.set(zmq::sockopt::subscribe, "");
      } else {
        for (const auto& t : in.topics) s.set(zmq::sockopt::subscribe, t);
      }
    }
    core::status st;
    if (in.bind) {
      st = prepare_ipc(in.endpoint, 0755);
      if (st.ok()) st = bind_socket(s, in.endpoint, "ingest");
      if (st.ok()) st = set_ipc_mode(in.endpoint, transport_.ipc_mode);
    } else {
      st = connect_socket(s, in.endpoint, "ingest");
    }
    if (!st.ok()) {
      started->set_value(st);
      return;
    }
    sockets.push_back(std::move(s));
  }

  std::optional<core::replay_writer> recorder;
  if (!record_file_.empty()) {
    v1::ReplayHeader header;
    header.mutable_schema()->set_major(1);
    header.set_producer("loopwarden serve --record");
    header.set_created_unix_nano(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
    auto w = core::replay_writer::create(record_file_, header);
    if (!w.ok()) {
      started->set_value(w.error().with_context("can't record the ingest stream"));
      return;
    }
    recorder.emplace(std::move(*w));
  }
  started->set_value(core::status::success());

  std::vector<zmq::pollitem_t> items;
  for (auto& s : sockets) items.push_back({s.handle(), 0, ZMQ_POLLIN, 0});
  const bool block = transport_.overflow == core::overflow_policy::block;
  std::vector<zmq::message_t> frames;
  std::vector<std::string_view> views;  // frames as text for check_ingest_message, reused

  // While running, a blocked send waits for the engine; once stop is requested, only until the
  // drain deadline (a send blocked behind a slow monitor must not hold the shutdown past it).
  std::optional<std::chrono::steady_clock::time_point> give_up_at;
  auto drain_deadline = [&] {
    if (!give_up_at) {
      const std::int64_t ns = drain_deadline_ns_.load();
      give_up_at = ns != 0 ? std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns))
                           : std::chrono::steady_clock::now() + transport_.drain_timeout;
    }
    return *give_up_at;
  };
  std::unique_ptr<event_batch> batch = take_batch();
  // Whether the engine thread is behind: it still has at least a full batch's worth of events
  // queued. Then a partial batch is held back and filled further instead of sent: it would only
  // wait in the queue, and every batch holds its 64 KiB block however few events it carries.
  // When the engine stalled (a slow disk under its feet, a starved CPU), the ingest thread kept
  // sending a batch per wake-up with one or two envelopes in it: the queue's hundreds of batches
  // held 40 MiB for a few thousand events, and the allocator kept that memory after the backlog
  // drained (docs/reliability.md#soak-memory-flat-over-time). Held back, a backlog is made of
  // full batches: about 1 KiB per queued envelope. No latency is added: the held envelopes
  // would have waited behind the queued ones anyway, and the batch goes as soon as the engine
  // is down to less than a batch (checked every millisecond while one is held).
  auto engine_behind = [&] {
    if (taken_ == nullptr) return false;
    const std::uint64_t sent = enqueued_.load(std::memory_order_relaxed);
    const std::uint64_t taken = taken_->load(std::memory_order_relaxed);
    return sent > taken && sent - taken >= event_batch::max_events;
  };
  // Sends the current batch (if it holds anything; a partial one only when `flush` or the engine
  // is keeping up) and starts a new one.
  auto enqueue = [&](bool flush) {
    if (batch->events.empty()) return;
    if (!flush && !batch->full() && engine_behind()) return;
    event_batch* raw = batch.get();
    const std::size_t n_events = raw->events.size();
    zmq::message_t msg(&raw, sizeof raw);
    raw->handoff.publish();
    while (true) {
      auto sent = queue.send(msg, block ? zmq::send_flags::none : zmq::send_flags::dontwait);
      if (sent) {
        batch.release();  // the engine thread owns it now
        batch = take_batch();
        enqueued_.fetch_add(n_events, std::memory_order_relaxed);
        return;
      }
      if (!block) break;
      if (stop.stop_requested() && std::chrono::steady_clock::now() >= drain_deadline()) break;
    }
    const auto n = dropped_.fetch_add(n_events, std::memory_order_relaxed) + n_events;
    {
      std::lock_guard lock(mu_);
      for (const auto* env : raw->events) {
        if (dropped_by_source_.size() < max_tracked_sources ||
            dropped_by_source_.count(env->source())) {
          ++dropped_by_source_[env->source()];
        }
      }
    }
    if (should_log(n)) {
      core::log_message(
          sdk::log_level::warn,
          fmt::format("event queue full: dropped {} events from {} ({} dropped so far)", n_events,
                      raw->events.front()->source(), n));
    }
    recycle_batch(std::exchange(batch, take_batch()));
  };
  if (block) queue.set(zmq::sockopt::sndtimeo, 100);  // so a blocked send still sees stop

  // Reads what socket i holds now, up to a bound (so one busy socket cannot starve the others).
  // Returns how many messages it read.
  auto read_socket = [&](std::size_t i) {
    int n = 0;
    for (; n < 1024; ++n) {
      frames.clear();
      std::optional<std::size_t> got;
      try {
        got =
            zmq::recv_multipart(sockets[i], std::back_inserter(frames), zmq::recv_flags::dontwait);
      } catch (const zmq::error_t&) {
        break;
      }
      if (!got) break;
      auto* env = google::protobuf::Arena::CreateMessage<v1::Envelope>(batch->arena.get());
      views.clear();
      for (const auto& f : frames) views.push_back(f.to_string_view());
      const ingest_check check = check_ingest_message(views, *env);
      const std::string& why = check.why;
      const std::string& source = check.source;
      {
        std::lock_guard lock(mu_);
        ++endpoints_[i].received;
        if (!why.empty()) ++endpoints_[i].malformed;
        if (!why.empty() && !source.empty() &&
            (malformed_by_source_.size() < max_tracked_sources ||
             malformed_by_source_.count(source))) {
          ++malformed_by_source_[source];
        }
      }
      if (!why.empty()) {
        const auto m = malformed_.fetch_add(1, std::memory_order_relaxed) + 1;
        if (should_log(m)) {
          core::log_message(
              sdk::log_level::warn,
              fmt::format("dropped a malformed message on {}{}: {} ({} malformed so far)",
                          transport_.ingest[i].endpoint, source.empty() ? "" : " from " + source,
                          why, m));
        }
        continue;
      }
      if (recorder) {
        if (auto s = recorder->append(*env); !s.ok()) {
          core::log_message(sdk::log_level::error, s.message() + " (recording stopped)");
          std::lock_guard lock(mu_);
          record_error_ = s.message();
          recorder.reset();
        }
      }
      batch->events.push_back(env);
      batch->bytes += frames[1].size();
      if (batch->full()) enqueue(true);
    }
    // The socket is drained (or its bound reached): hand over what we have, so a lone event
    // waits for nothing (unless the engine is behind: then it is held, see engine_behind).
    enqueue(false);
    return n;
  };

  while (!stop.stop_requested()) {
    const bool holding = !batch->events.empty();
    try {
      zmq::poll(items, std::chrono::milliseconds(holding ? 1 : 100));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      core::log_message(sdk::log_level::error, std::string("ingest poll failed: ") + e.what());
      break;
    }
    for (std::size_t i = 0; i < items.size(); ++i) {
      if ((items[i].revents & ZMQ_POLLIN) != 0) read_socket(i);
    }
    enqueue(false);  // a held batch goes once the engine has caught up
  }

  // Stop requested: what already reached the sockets is still read and evaluated, until the
  // sockets are empty or the drain deadline passes.
  bool emptied = false;
  while (std::chrono::steady_clock::now() < drain_deadline()) {
    int read = 0;
    for (std::size_t i = 0; i < sockets.size(); ++i) read += read_socket(i);
    if (read == 0) {
      emptied = true;
      break;
    }
  }
  enqueue(true);  // what is held goes before the end-of-stream marker
  if (!emptied) {
    core::log_message(sdk::log_level::warn,
                      "shutdown: the drain timeout passed with messages still arriving; the rest "
                      "were not read");
  }

  // Shutdown: stop reading first, then tell the engine thread the stream has ended.
  sockets.clear();
  if (recorder) {
    if (auto s = recorder->close(); !s.ok()) {
      core::log_message(sdk::log_level::error, s.message());
      std::lock_guard lock(mu_);
      record_error_ = s.message();
    }
  }
  event_batch* end = nullptr;
  zmq::message_t marker(&end, sizeof end);
  queue.set(zmq::sockopt::sndtimeo, 1000);
  (void)queue.send(marker, zmq::send_flags::none);
}

}  // namespace loopwarden::sidecar::detail
