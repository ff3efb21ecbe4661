// When the server returns freed memory to the system after a backlog (memory_return.hpp), and
// the chores thread that runs it and the store writes off the engine thread (background_jobs.hpp).
#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "../../sidecar/src/background_jobs.hpp"
#include "../../sidecar/src/memory_return.hpp"

using namespace loopwarden::sidecar::detail;
using namespace std::chrono_literals;

TEST_CASE("memory is returned once per drained backlog and never in steady state",
          "[sidecar][memory]") {
  // Small limits so that the rows read easily: a backlog is 100 queued events or 1000 bytes
  // of batches freed; settle 1 s after the last free; at most one return every 10 s.
  memory_return_policy::limits l;
  l.backlog_events = 100;
  l.freed_bytes = 1000;
  l.settle = 1s;
  l.min_gap = 10s;
  memory_return_policy p(l);
  const auto t0 = std::chrono::steady_clock::time_point{} + 1h;

  struct row {
    const char* what;
    double at_s;
    std::uint64_t depth;
    std::uint64_t freed_total;
    bool expect;
  };
  const std::vector<row> rows = {
      {"steady state: a shallow queue, nothing freed", 0.0, 5, 0, false},
      {"steady state, later", 5.0, 0, 0, false},
      {"a backlog builds up", 6.0, 400, 0, false},
      {"it drains: batches freed, the queue not yet empty", 7.0, 30, 500, false},
      {"the queue is empty but batches were freed just now", 7.5, 0, 900, false},
      {"empty, but less than `settle` since the last free", 8.0, 0, 900, false},
      {"empty and settled: return", 8.6, 0, 900, true},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    const auto now = t0 + std::chrono::milliseconds(static_cast<long>(r.at_s * 1000));
    const bool got = p.observe(r.depth, r.freed_total, now);
    CHECK(got == r.expect);
    if (got) {
      CHECK(p.peak_depth() == 400);
      CHECK(p.freed_since() == 900);
      p.returned(now, r.freed_total);
    }
  }
  const std::vector<row> after = {
      {"after a return, steady state again: nothing", 12.0, 0, 900, false},
      {"a second backlog by freed bytes alone (a queue never 100 deep)", 13.0, 50, 2100, false},
      {"drained and settled, but within min_gap of the last return", 15.0, 0, 2100, false},
      {"min_gap passed: return", 18.7, 0, 2100, true},
      {"nothing new since: never again", 40.0, 0, 2100, false},
  };
  for (const auto& r : after) {
    INFO(r.what);
    const auto now = t0 + std::chrono::milliseconds(static_cast<long>(r.at_s * 1000));
    const bool got = p.observe(r.depth, r.freed_total, now);
    CHECK(got == r.expect);
    if (got) {
      CHECK(p.peak_depth() == 50);
      CHECK(p.freed_since() == 1200);
      p.returned(now, r.freed_total);
    }
  }
}

TEST_CASE("return_free_memory reports the process's RSS before and after", "[sidecar][memory]") {
  const memory_returned r = return_free_memory();
  CHECK(r.rss_before_kib > 0);
  CHECK(r.rss_after_kib > 0);
  CHECK(r.took >= 0us);
}

TEST_CASE("background jobs run off the caller's thread and a newer job replaces a pending one",
          "[sidecar][memory]") {
  background_jobs jobs;
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::promise<void> started;
  std::vector<std::string> ran;  // written only by the jobs' thread, read after stop()
  // The first job holds the thread, so that the next two are pending together.
  jobs.post("hold", [&] {
    started.set_value();
    gate.wait();
    ran.push_back("hold");
  });
  started.get_future().wait();
  jobs.post("save", [&] { ran.push_back("save 1"); });
  jobs.post("trim", [&] { ran.push_back("trim"); });
  jobs.post("save", [&] { ran.push_back("save 2"); });  // replaces "save 1", keeps its place
  CHECK(jobs.superseded() == 1);
  release.set_value();
  jobs.stop();  // runs what is pending, then joins
  CHECK(ran == std::vector<std::string>{"hold", "save 2", "trim"});
  CHECK(jobs.done() == 3);
  jobs.post("late", [&] { ran.push_back("late"); });  // after stop: ignored
  CHECK(ran.size() == 3);
}
