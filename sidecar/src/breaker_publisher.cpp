#include "breaker_publisher.hpp"

#include <algorithm>
#include <chrono>
#include <future>
#include <zmq_addon.hpp>

#include <loopwarden/core/logging.hpp>

#include "zmq_util.hpp"

namespace loopwarden::sidecar::detail {

namespace {

std::int64_t wall_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

breaker_publisher::breaker_publisher(std::string endpoint, std::chrono::nanoseconds interval,
                                     core::breaker_registry& registry, std::string sidecar_id,
                                     unsigned ipc_mode, scrubber scrub)
    : endpoint_(std::move(endpoint)),
      interval_(interval),
      registry_(registry),
      sidecar_id_(std::move(sidecar_id)),
      ipc_mode_(ipc_mode),
      scrub_(std::move(scrub)) {}

breaker_publisher::~breaker_publisher() { stop(); }

core::status breaker_publisher::start() {
  auto started = std::make_shared<std::promise<core::status>>();
  auto result = started->get_future();
  thread_ = std::jthread([this, started](std::stop_token st) { run(st, started); });
  core::status s = result.get();
  if (!s.ok()) thread_.join();
  return s;
}

void breaker_publisher::publish(const v1::BreakerTransition& transition) {
  // Shadow breakers (monitors on trial) are for operators only: hosts never hear of them.
  if (transition.breaker().shadow()) return;
  v1::BreakerMessage msg;
  *msg.mutable_transition() = transition;
  if (scrub_) scrub_(msg);
  std::string bytes = msg.SerializeAsString();
  {
    // Sent at once from the tripping thread when the socket is up and nothing is queued ahead.
    std::lock_guard sock_lock(sock_mu_);
    bool empty;
    {
      std::lock_guard lock(mu_);
      empty = pending_.empty();
    }
    if (sock_ != nullptr && empty) {
      std::array<zmq::const_buffer, 2> frames = {zmq::str_buffer("transition"),
                                                 zmq::buffer(bytes)};
      try {
        (void)zmq::send_multipart(*sock_, frames, zmq::send_flags::dontwait);
      } catch (const zmq::error_t&) {
      }
      std::lock_guard lock(mu_);
      ++transitions_;
      return;
    }
  }
  {
    std::lock_guard lock(mu_);
    // Bounded: transitions are rare, but a stuck socket must not grow memory without limit.
    // A dropped transition is repaired by the next snapshot, within one period.
    if (pending_.size() >= 100'000) pending_.pop_front();
    pending_.push_back(std::move(bytes));
  }
  wake_.notify_one();
}

void breaker_publisher::stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    wake_.notify_one();
    thread_.join();
  }
}

std::uint64_t breaker_publisher::snapshots_sent() const {
  std::lock_guard lock(mu_);
  return snapshots_;
}

std::uint64_t breaker_publisher::transitions_sent() const {
  std::lock_guard lock(mu_);
  return transitions_;
}

void breaker_publisher::run(std::stop_token stop,
                            std::shared_ptr<std::promise<core::status>> started) {
  zmq::socket_t pub(zmq_context(), zmq::socket_type::pub);
  pub.set(zmq::sockopt::linger, 200);  // let the final snapshot leave at shutdown
  pub.set(zmq::sockopt::sndhwm, 10'000);
  core::status st = prepare_ipc(endpoint_, 0755);
  if (st.ok()) st = bind_socket(pub, endpoint_, "breakers");
  if (st.ok()) st = set_ipc_mode(endpoint_, ipc_mode_);
  started->set_value(st);
  if (!st.ok()) return;

  {
    std::lock_guard sock_lock(sock_mu_);
    sock_ = &pub;
  }
  std::uint64_t sequence = 0;
  auto send = [&](std::string_view topic, const std::string& payload) {
    std::lock_guard sock_lock(sock_mu_);
    std::array<zmq::const_buffer, 2> frames = {zmq::buffer(topic), zmq::buffer(payload)};
    try {
      (void)zmq::send_multipart(pub, frames, zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      core::log_message(sdk::log_level::error, std::string("breaker publish failed: ") + e.what());
    }
  };
  auto send_snapshot = [&] {
    v1::BreakerMessage msg;
    *msg.mutable_snapshot() = registry_.snapshot();
    auto* snap = msg.mutable_snapshot();
    auto* list = snap->mutable_breakers();
    list->erase(std::remove_if(list->begin(), list->end(),
                               [](const v1::BreakerStatus& b) { return b.shadow(); }),
                list->end());
    snap->set_time_unix_nano(wall_now());
    snap->set_sequence(++sequence);
    snap->set_heartbeat_interval_ms(static_cast<std::uint32_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(interval_).count()));
    snap->set_sidecar_id(sidecar_id_);
    if (scrub_) scrub_(msg);
    send("snapshot", msg.SerializeAsString());
    std::lock_guard lock(mu_);
    ++snapshots_;
  };
  auto next = std::chrono::steady_clock::now();
  std::deque<std::string> batch;
  while (true) {
    {
      std::unique_lock lock(mu_);
      wake_.wait_until(lock, stop, next, [&] { return !pending_.empty(); });
      batch.swap(pending_);
    }
    for (const auto& t : batch) send("transition", t);
    {
      std::lock_guard lock(mu_);
      transitions_ += batch.size();
    }
    batch.clear();
    if (stop.stop_requested()) break;
    const auto now = std::chrono::steady_clock::now();
    if (now >= next) {
      send_snapshot();
      next = now + interval_;
    }
  }
  {
    std::lock_guard lock(mu_);
    batch.swap(pending_);
  }
  for (const auto& t : batch) send("transition", t);
  send_snapshot();  // the final word: hosts see the state as the sidecar leaves it
  std::lock_guard sock_lock(sock_mu_);
  sock_ = nullptr;
}

}  // namespace loopwarden::sidecar::detail
