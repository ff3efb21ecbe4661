#pragma once
// Small builders and lookups shared by the engine tests (worker threads, process isolation).

#include <cstdint>
#include <string>

#include <catch2/catch.hpp>

#include <loopwarden/v1/envelope.pb.h>
#include <loopwarden/core/engine.hpp>

namespace loopwarden::test {

// A metrics envelope from "trainer/rank0" with one sample `name` = 1.0, at seq milliseconds.
inline v1::Envelope sample(std::uint64_t seq, const std::string& name,
                           const std::string& run = "run-1") {
  v1::Envelope e;
  e.set_source("trainer/rank0");
  e.set_run_id(run);
  e.set_seq(seq);
  e.set_time_unix_nano(static_cast<std::int64_t>(seq) * 1'000'000);
  auto* s = e.mutable_metrics()->add_samples();
  s->set_name(name);
  s->set_value(1.0);
  return e;
}

// The engine's status of monitor instance `name`; fails the test if there is none.
inline core::monitor_status status_of(core::engine& e, const std::string& name) {
  for (const auto& m : e.monitors()) {
    if (m.name == name) return m;
  }
  FAIL("no monitor " << name);
  return {};
}

// A monitor's gauge `name`, or -1 when it has none.
inline double gauge(const core::monitor_status& m, const std::string& name) {
  for (const auto& [n, v] : m.gauges) {
    if (n == name) return v;
  }
  return -1.0;
}

}  // namespace loopwarden::test
