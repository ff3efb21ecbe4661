#pragma once
// A thread for the engine thread's slow chores: SQLite writes that end in an fsync (saving the
// monitors' state, expiring approvals) and returning freed memory to the system. The engine
// thread answers gate requests and feeds the monitors; a chore that waits on a disk or on the
// store's mutex there backs up the event queue and times out hosts (docs/reliability.md#soak).
//
// Each job has a key. A job posted while another with the same key is still pending replaces it
// (the newest state save supersedes an older one that has not run yet; one memory return is
// enough), so the backlog is bounded by the number of keys however slow the disk is.
//
// Thread-safety: post() and done() from any thread; stop() from the owner (idempotent).

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace loopwarden::sidecar::detail {

class background_jobs {
 public:
  background_jobs() : thread_([this](std::stop_token st) { run(st); }) {}
  ~background_jobs() { stop(); }
  background_jobs(const background_jobs&) = delete;
  background_jobs& operator=(const background_jobs&) = delete;

  void post(std::string key, std::function<void()> job) {
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      bool replaced = false;
      for (auto& p : pending_) {
        if (p.first == key) {
          p.second = std::move(job);
          replaced = true;
          ++superseded_;
        }
      }
      if (!replaced) pending_.emplace_back(std::move(key), std::move(job));
    }
    cv_.notify_one();
  }

  // Runs what is pending, then joins the thread. Later posts are ignored.
  void stop() {
    if (!thread_.joinable()) return;
    thread_.request_stop();
    cv_.notify_one();
    thread_.join();
    std::lock_guard lock(mu_);
    stopped_ = true;
  }

  std::uint64_t done() const {
    std::lock_guard lock(mu_);
    return done_;
  }
  std::uint64_t superseded() const {
    std::lock_guard lock(mu_);
    return superseded_;
  }

 private:
  void run(std::stop_token st) {
    while (true) {
      std::vector<std::pair<std::string, std::function<void()>>> now;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, st, [&] { return !pending_.empty(); });
        if (pending_.empty() && st.stop_requested()) return;
        now.swap(pending_);
      }
      for (auto& [key, job] : now) job();
      std::lock_guard lock(mu_);
      done_ += now.size();
    }
  }

  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  std::vector<std::pair<std::string, std::function<void()>>> pending_;  // guarded by mu_
  std::uint64_t done_ = 0;                                              // guarded by mu_
  std::uint64_t superseded_ = 0;                                        // guarded by mu_
  bool stopped_ = false;                                                // guarded by mu_
  std::jthread thread_;  // last: started after the members it uses exist
};

}  // namespace loopwarden::sidecar::detail
