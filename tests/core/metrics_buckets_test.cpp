#include <catch2/catch.hpp>

#include <loopwarden/core/metrics_buckets.hpp>

using loopwarden::core::monitor_call_bucket;
using loopwarden::core::monitor_call_bucket_bounds_ns;

TEST_CASE("call-time buckets follow Prometheus le semantics", "[core][metrics]") {
  // A call of exactly a bound belongs to that bound's bucket; one nanosecond more, to the next.
  CHECK(monitor_call_bucket(0) == 0);
  CHECK(monitor_call_bucket(1'000) == 0);
  CHECK(monitor_call_bucket(1'001) == 1);
  CHECK(monitor_call_bucket(2'500) == 1);
  CHECK(monitor_call_bucket(7'000) == 3);  // (5 µs, 10 µs]
  CHECK(monitor_call_bucket(1'000'000) == 9);
  CHECK(monitor_call_bucket(1'000'000'000) == monitor_call_bucket_bounds_ns.size() - 1);
  CHECK(monitor_call_bucket(1'000'000'001) == monitor_call_bucket_bounds_ns.size());  // +Inf
  for (std::size_t i = 1; i < monitor_call_bucket_bounds_ns.size(); ++i) {
    CHECK(monitor_call_bucket_bounds_ns[i - 1] < monitor_call_bucket_bounds_ns[i]);
  }
}
