#pragma once
// Returning the memory a drained backlog freed to the system.
//
// When the engine thread falls behind, envelopes pile up in the event queue, each batch of them
// in its own 64 KiB block (ingest_loop.hpp), and in the monitors' queues. Once the backlog has
// drained they are freed, but glibc's malloc keeps freed memory inside its arenas: a freed chunk
// below one still in use cannot be handed back by shrinking the heap, so RSS stays at the
// backlog's high-water mark for the rest of the process's life. malloc_trim(0) walks every
// arena and gives the whole free pages inside them back (madvise(MADV_DONTNEED)).
//
// Why this and not the alternatives (measured, docs/reliability.md#soak-memory-flat-over-time):
// - the ingest thread no longer sends a partial batch while the engine is behind (ingest_loop),
//   so a backlog costs about 1 KiB per envelope instead of 64 KiB per wake-up: that shrinks
//   the step, but a long stall still fills the queue up to its bound;
// - M_ARENA_MAX (fewer arenas) changes where freed memory sits, not whether it is given back;
// - shrinking containers does not help: the queues are ZeroMQ pipes and std::deques whose
//   nodes are already freed as they drain.
// malloc_trim costs a walk of the free lists (about a millisecond at these sizes), so it runs
// off the engine thread (background_jobs.hpp), only after a backlog, at most every 10 s.
//
// Thread-safety: any thread.

#include <chrono>
#include <cstdint>

namespace loopwarden::sidecar::detail {

struct memory_returned {
  std::int64_t rss_before_kib = 0;  // from /proc/self/statm; 0 when unreadable
  std::int64_t rss_after_kib = 0;
  std::chrono::microseconds took{0};
};

// malloc_trim(0) with the process's RSS before and after.
memory_returned return_free_memory();

// When to return memory, from what the engine thread sees after each step: a backlog has
// happened since the last return (the event queue reached `backlog_events`, or the ingest's
// batch free list overflowed by `freed_bytes` as it drained), the queue is empty again, no
// batch has been freed for `settle` (the monitors are done with the backlog's batches too), and
// the last return was at least `min_gap` ago. Steady clock; single-threaded (the engine thread).
class memory_return_policy {
 public:
  struct limits {
    std::uint64_t backlog_events = 1024;
    std::uint64_t freed_bytes = 1 << 20;
    std::chrono::milliseconds settle{1000};
    std::chrono::milliseconds min_gap{10'000};
  };
  explicit memory_return_policy(limits l) : limits_(l) {}

  // Feeds one observation; true: return memory now (the caller does, then calls returned()).
  bool observe(std::uint64_t queue_depth, std::uint64_t freed_total,
               std::chrono::steady_clock::time_point now);
  void returned(std::chrono::steady_clock::time_point now, std::uint64_t freed_total);
  // The deepest queue and the bytes freed since the last return (for the log line).
  std::uint64_t peak_depth() const { return peak_; }
  std::uint64_t freed_since() const { return freed_since_; }

 private:
  limits limits_;
  std::uint64_t peak_ = 0;
  std::uint64_t freed_base_ = 0;   // freed_total at the last return
  std::uint64_t freed_since_ = 0;  // freed_total - freed_base_ at the last observation
  std::uint64_t last_freed_total_ = 0;
  std::chrono::steady_clock::time_point last_free_change_{};
  std::chrono::steady_clock::time_point last_return_{};
  bool any_return_ = false;
};

}  // namespace loopwarden::sidecar::detail
