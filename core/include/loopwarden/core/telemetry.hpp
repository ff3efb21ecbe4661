#pragma once
// Per-source accounting of the event stream: sequence gaps (lost events), duplicates, events that
// arrive late, producer restarts, and silence. It runs inside the engine, before the monitors, so
// live and replayed streams are judged the same way.

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <loopwarden/v1/envelope.pb.h>
#include <loopwarden/core/config.hpp>

namespace loopwarden::core {

// What is known about one producer.
struct source_stats {
  std::string source;
  std::string run_id;            // of its last event
  std::uint64_t received = 0;    // envelopes accepted (duplicates excluded)
  std::uint64_t lost = 0;        // sequence numbers skipped and never seen since
  std::uint64_t duplicates = 0;  // envelopes whose seq was already seen (dropped)
  std::uint64_t late = 0;        // envelopes below the highest seq, not seen before (accepted)
  std::uint64_t restarts = 0;    // seq went back to 1: the producer restarted
  std::uint64_t heartbeats = 0;
  // Deliveries of its envelopes to monitors that were dropped (a monitor's queue full, or the
  // monitor hung or disabled): one per envelope and monitor. Counted by the engine, not here.
  std::uint64_t monitor_dropped = 0;
  std::uint64_t highest_seq = 0;
  std::int64_t last_seen_unix_nano = 0;
  bool closing = false;  // said goodbye (heartbeat with closing = true): never silent
  bool silent = false;   // reported silent and not heard since
};

// The verdict on one envelope.
enum class seq_verdict {
  accepted,   // new: deliver it
  duplicate,  // already seen: drop it
};

// Thread-safety: not thread-safe; the engine's dispatcher owns it.
class source_accounting {
 public:
  explicit source_accounting(const telemetry_config& config) : config_(config) {}

  // Accounts one envelope received at `now_unix_nano`. Envelopes with seq 0 (the producer does not
  // number them) only refresh the source's liveness. A duplicate is detected exactly within a
  // window of the 64 numbers below the highest seen, and counted; anything older that arrives is
  // counted late and accepted. A seq of 1 after a higher one is a producer restart (its first
  // event), never a duplicate.
  seq_verdict observe(const v1::Envelope& envelope, std::int64_t now_unix_nano);

  // Sources that have become silent (no envelope for silence_timeout) since the last call.
  // Each silence is reported once; hearing from the source again re-arms it.
  std::vector<source_stats> newly_silent(std::int64_t now_unix_nano);

  // Sources whose lost count reached loss_threshold with this envelope (at most once per source).
  const std::vector<source_stats>& newly_lossy() const { return newly_lossy_; }

  // Every tracked source, sorted by name.
  std::vector<source_stats> sources() const;

  // Applies new settings (a reload), keeping what is known about every source; forgets the
  // longest-quiet sources if max_sources shrank.
  void set_config(const telemetry_config& config);

  // Sources forgotten because more than max_sources were tracked.
  std::uint64_t evicted() const { return evicted_; }

 private:
  struct state {
    source_stats stats;
    std::uint64_t window = 0;  // bit i set: highest_seq - i was seen
    bool loss_reported = false;
  };
  void evict_one();

  telemetry_config config_;
  std::unordered_map<std::string, state> sources_;
  std::vector<source_stats> newly_lossy_;
  std::uint64_t evicted_ = 0;
};

}  // namespace loopwarden::core
