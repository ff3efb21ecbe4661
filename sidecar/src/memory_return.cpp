#include "memory_return.hpp"

#include <malloc.h>
#include <unistd.h>

#include <fstream>

namespace loopwarden::sidecar::detail {

namespace {

std::int64_t rss_kib() {
  std::ifstream statm("/proc/self/statm");
  std::int64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

}  // namespace

memory_returned return_free_memory() {
  memory_returned r;
  r.rss_before_kib = rss_kib();
  const auto t0 = std::chrono::steady_clock::now();
  (void)malloc_trim(0);
  r.took =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
  r.rss_after_kib = rss_kib();
  return r;
}

bool memory_return_policy::observe(std::uint64_t queue_depth, std::uint64_t freed_total,
                                   std::chrono::steady_clock::time_point now) {
  if (queue_depth > peak_) peak_ = queue_depth;
  if (freed_total != last_freed_total_) {
    last_freed_total_ = freed_total;
    last_free_change_ = now;
  }
  freed_since_ = freed_total - freed_base_;
  const bool backlog = peak_ >= limits_.backlog_events || freed_since_ >= limits_.freed_bytes;
  if (!backlog || queue_depth != 0) return false;
  if (now - last_free_change_ < limits_.settle) return false;
  if (any_return_ && now - last_return_ < limits_.min_gap) return false;
  return true;
}

void memory_return_policy::returned(std::chrono::steady_clock::time_point now,
                                    std::uint64_t freed_total) {
  any_return_ = true;
  last_return_ = now;
  peak_ = 0;
  freed_base_ = freed_total;
  freed_since_ = 0;
}

}  // namespace loopwarden::sidecar::detail
