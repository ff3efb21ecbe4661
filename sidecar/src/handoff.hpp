#pragma once
// The order of a pointer handed to another thread over an inproc ZeroMQ socket (event batches
// from the ingest thread, engine commands from a reload), made visible to ThreadSanitizer.
//
// ZeroMQ's pipe orders such a hand-off: what the sender wrote before sending the pointer is
// visible to the receiver after receiving it. But that order comes from libzmq's own atomics,
// compiled outside this project, which ThreadSanitizer does not see: it reported the engine
// thread reading a batch's events as racing with the ingest thread's push_back. A handoff_fence
// states the same order where the compiler and ThreadSanitizer see it: the sender publishes
// (release) just before sending the pointer, the receiver accepts (acquire) just after receiving
// it. One atomic increment and load per message (a message carries up to 64 events).
//
// Thread-safety: publish() on the sending thread, accept() on the receiving one.

#include <atomic>
#include <cstdint>

namespace loopwarden::sidecar::detail {

class handoff_fence {
 public:
  void publish() noexcept { seq_.fetch_add(1, std::memory_order_release); }
  void accept() const noexcept { (void)seq_.load(std::memory_order_acquire); }

 private:
  std::atomic<std::uint64_t> seq_{0};
};

}  // namespace loopwarden::sidecar::detail
