#pragma once
// The breaker PUB socket's thread: every transition is sent at once, and a snapshot of every
// breaker every heartbeat interval, so a late joiner knows the state within one period.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <zmq.hpp>

#include <loopwarden/core/breaker_registry.hpp>
#include <loopwarden/core/status.hpp>

namespace loopwarden::sidecar::detail {

// Thread-safety: publish() is safe from any thread (it only queues); start/stop from one.
class breaker_publisher {
 public:
  // Scrubs a message before it leaves for the hosts (the config's secrets: redactor.hpp).
  using scrubber = std::function<void(v1::BreakerMessage&)>;

  // `registry` is borrowed for snapshots and must outlive the publisher. `scrub`, when set, is
  // applied to every transition and snapshot before it is sent, on the calling thread.
  breaker_publisher(std::string endpoint, std::chrono::nanoseconds interval,
                    core::breaker_registry& registry, std::string sidecar_id,
                    unsigned ipc_mode = 0660, scrubber scrub = {});
  ~breaker_publisher();

  // Binds the PUB socket and starts the thread. Errors name the endpoint.
  core::status start();
  // Queues a transition for sending (a registry listener calls this). Never blocks on I/O.
  void publish(const v1::BreakerTransition& transition);
  // Sends what is queued and a final snapshot, then stops. Idempotent.
  void stop();

  std::uint64_t snapshots_sent() const;
  std::uint64_t transitions_sent() const;

 private:
  void run(std::stop_token stop, std::shared_ptr<std::promise<core::status>> started);

  const std::string endpoint_;
  const std::chrono::nanoseconds interval_;
  core::breaker_registry& registry_;
  const std::string sidecar_id_;
  const unsigned ipc_mode_;
  const scrubber scrub_;
  std::jthread thread_;

  // The PUB socket, usable from publish() on the tripping thread under sock_mu_
  // (ZeroMQ allows a socket to change threads behind a full memory barrier), which saves the
  // hand-off to this thread (a condition-variable wake-up) on every transition.
  std::mutex sock_mu_;
  zmq::socket_t* sock_ = nullptr;  // guarded by sock_mu_; set while the thread runs
  mutable std::mutex mu_;
  std::condition_variable_any wake_;
  std::deque<std::string> pending_;  // serialized BreakerMessages; guarded by mu_
  std::uint64_t snapshots_ = 0;      // guarded by mu_
  std::uint64_t transitions_ = 0;    // guarded by mu_
};

}  // namespace loopwarden::sidecar::detail
