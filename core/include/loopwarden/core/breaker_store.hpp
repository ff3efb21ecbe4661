#pragma once
// The persistence seam of the breaker registry. The registry records every transition in its
// store before any listener (publisher, printer, alert router) hears of it, so whatever the
// store keeps survives a crash of everything after it. The in-memory store here keeps the
// history for `explain` but nothing across a restart; the SQLite store (Durable breakers issue)
// implements the same interface.

#include <cstddef>
#include <mutex>
#include <vector>

#include <loopwarden/v1/breaker.pb.h>
#include <loopwarden/core/status.hpp>
#include <loopwarden/status.hpp>

namespace loopwarden::core {

// Thread-safety: implementations must be safe to call from any thread; the registry serialises
// its own calls.
class breaker_store {
 public:
  virtual ~breaker_store() = default;

  // Every breaker's last known state, to restore at start-up. Errors: io_error / parse_error.
  virtual result<std::vector<v1::BreakerStatus>> load() = 0;

  // Records one transition durably (as far as the store can). Errors: io_error.
  virtual status record(const v1::BreakerTransition& transition) = 0;

  // The transitions of one breaker, oldest first, at most `limit` of the newest.
  virtual result<std::vector<v1::BreakerTransition>> history(const std::string& name,
                                                             const std::string& run_id,
                                                             std::size_t limit) = 0;
};

// Keeps states and history in memory (bounded history per breaker). Nothing survives the process.
// Thread-safety: safe from any thread (one mutex).
class memory_breaker_store final : public breaker_store {
 public:
  explicit memory_breaker_store(std::size_t history_per_breaker = 256)
      : history_limit_(history_per_breaker) {}

  result<std::vector<v1::BreakerStatus>> load() override;
  status record(const v1::BreakerTransition& transition) override;
  result<std::vector<v1::BreakerTransition>> history(const std::string& name,
                                                     const std::string& run_id,
                                                     std::size_t limit) override;

 private:
  const std::size_t history_limit_;
  std::mutex mu_;
  std::vector<v1::BreakerStatus> latest_;           // guarded by mu_
  std::vector<v1::BreakerTransition> transitions_;  // guarded by mu_
};

}  // namespace loopwarden::core
