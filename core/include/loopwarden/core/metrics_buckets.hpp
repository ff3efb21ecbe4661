#pragma once
// Bucket bounds of the per-monitor call-time histogram (MonitorStatus.call_ns_buckets), shared by
// the engine that counts and the /metrics endpoint that renders them as a Prometheus histogram.

#include <array>
#include <cstddef>
#include <cstdint>

namespace loopwarden::core {

// Upper bounds in nanoseconds, increasing: 1 µs … 1 s in a 1-2.5-5 series. A call of exactly a
// bound's length falls in that bound's bucket (Prometheus `le` semantics).
inline constexpr std::array<std::uint64_t, 19> monitor_call_bucket_bounds_ns = {
    1'000,      2'500,       5'000,       10'000,      25'000,       50'000,     100'000,
    250'000,    500'000,     1'000'000,   2'500'000,   5'000'000,    10'000'000, 25'000'000,
    50'000'000, 100'000'000, 250'000'000, 500'000'000, 1'000'000'000};

// The bucket index for a call of `ns` nanoseconds: 0 … bounds.size() (the last is "+Inf").
constexpr std::size_t monitor_call_bucket(std::uint64_t ns) {
  std::size_t i = 0;
  while (i < monitor_call_bucket_bounds_ns.size() && ns > monitor_call_bucket_bounds_ns[i]) ++i;
  return i;
}

}  // namespace loopwarden::core
