// isolation: process — the plugin runs in a child process started from the real `loopwarden
// monitor-host`. Crashes, hangs and leaks take only the child down; the engine fails the
// monitor closed and restarts the child with backoff. The fixture plugins misbehave on purpose.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <string>
#include <thread>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>

#include "test_paths.hpp"
#include "engine_samples.hpp"

using namespace loopwarden;
using namespace std::chrono_literals;
using test::gauge;
using test::sample;
using test::status_of;

namespace {

std::vector<std::string> host_command() {
  return {std::string(LOOPWARDEN_BINARY_DIR) + "/bin/loopwarden", "monitor-host"};
}

core::config isolated_config(const std::string& monitors) {
  std::string yaml = "version: 1\nplugin_paths: [\"" + test::fixture_plugin_dir() +
                     "\"]\nprobation: 0s\nmonitors:\n" + monitors;
  auto cfg = core::parse_config(yaml, "test.yaml");
  INFO(yaml);
  REQUIRE(cfg.ok());
  return *cfg;
}

core::result<std::unique_ptr<core::engine>> try_engine(const core::config& cfg,
                                                       bool threaded = false) {
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  opts.monitor_host_command = host_command();
  opts.threaded = threaded;
  opts.event_time_clock = !threaded;
  return core::engine::create(cfg, opts);
}

std::unique_ptr<core::engine> isolated_engine(const core::config& cfg, bool threaded = false) {
  auto e = try_engine(cfg, threaded);
  INFO((e.ok() ? std::string() : e.error().message()));
  REQUIRE(e.ok());
  return std::move(*e);
}

const v1::BreakerStatus* open_breaker(core::engine& e, const std::string& name,
                                      const std::string& run, v1::BreakerStatus& out) {
  auto b = e.breakers().find({name, run});
  if (!b || b->state() != v1::BREAKER_STATE_OPEN) return nullptr;
  out = *b;
  return &out;
}

// Resident memory of this process, from /proc/self/status (kB).
long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      long kb = 0;
      in >> kb;
      return kb;
    }
    std::string rest;
    std::getline(in, rest);
  }
  return -1;
}

}  // namespace

TEST_CASE("an isolated monitor trips, publishes gauges and answers gates as in-process",
          "[core][isolation]") {
  auto e = isolated_engine(isolated_config(
      "  - {name: fx, plugin: fixture_monitor, isolation: process, config: {label: child}}\n"));
  e->process(sample(1, "x"));
  e->process(sample(2, "trip"));
  v1::BreakerStatus b;
  REQUIRE(open_breaker(*e, "fixture.trip", "run-1", b));
  CHECK(b.monitor() == "fx");
  CHECK(b.reason() == "saw a trip sample");
  REQUIRE(b.evidence_size() == 1);
  CHECK(b.evidence(0).value() == "child");  // the config crossed into the child intact
  CHECK(gauge(status_of(*e, "fx"), "samples") == 2.0);

  v1::GateRequest r;
  r.set_run_id("run-1");
  r.mutable_action()->set_command("please deny this");
  auto d = e->gate(r);
  CHECK(d.decision.verdict == sdk::gate_verdict::deny);
  CHECK(d.decision.rule_id == "fixture.deny");
  CHECK(d.monitor == "fx");

  // Its state goes through snapshot and restore too.
  const auto saved = e->snapshot_monitors();
  REQUIRE(saved.size() == 1);
  CHECK(saved[0].state == "fixture-v1:2");
  auto other = isolated_engine(
      isolated_config("  - {name: fx, plugin: fixture_monitor, isolation: process}\n"));
  REQUIRE(other->restore_monitor(saved[0]).ok());
  other->process(sample(1, "x"));
  CHECK(gauge(status_of(*other, "fx"), "samples") == 3.0);
}

TEST_CASE("an isolated monitor's config errors name the field and the line", "[core][isolation]") {
  auto e =
      try_engine(isolated_config("  - name: fx\n"
                                 "    plugin: fixture_monitor\n"
                                 "    isolation: process\n"
                                 "    config:\n"
                                 "      lable: typo\n"));
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().code() == sdk::status_code::invalid_argument);
  CHECK_THAT(e.error().message(),
             Catch::Contains("monitor 'fx'") &&
                 Catch::Contains("monitors[0].config.lable: unknown key (allowed: label)") &&
                 Catch::Contains("(test.yaml:9)"));
}

TEST_CASE("the monitor host refuses a plugin of another sdk major, as the engine does",
          "[core][isolation]") {
  auto e =
      try_engine(isolated_config("  - {name: old, plugin: wrong_major, isolation: process}\n"));
  REQUIRE_FALSE(e.ok());
  CHECK_THAT(e.error().message(),
             Catch::Contains("monitor 'old'") && Catch::Contains("can't load plugin") &&
                 Catch::Contains("wrong_major.so") && Catch::Contains("sdk abi"));
}

TEST_CASE(
    "a plugin that segfaults takes down only its process: the monitor fails closed "
    "and comes back",
    "[core][isolation]") {
  auto e = isolated_engine(
      isolated_config("  - {name: crashy, plugin: crashing_monitor, isolation: process}\n"
                      "  - {name: fx, plugin: fixture_monitor}\n"));
  e->process(sample(1, "x"));
  // crashy's state (1 sample) is snapshotted, as the daemon does every minute.
  const auto saved = e->snapshot_monitors();
  REQUIRE(std::any_of(saved.begin(), saved.end(),
                      [](const auto& s) { return s.monitor == "crashy" && s.state == "1"; }));
  e->process(sample(2, "crash"));
  v1::BreakerStatus b;
  REQUIRE(open_breaker(*e, "crashing.trip", "run-1", b));
  CHECK_THAT(b.reason(), Catch::Contains("monitor 'crashy' failed in on_event") &&
                             Catch::Contains("killed by signal 11"));
  // The engine and the in-process monitor carry on.
  e->process(sample(3, "x"));
  CHECK(gauge(status_of(*e, "fx"), "samples") == 3.0);
  // While the child waits out its backoff, calls fail fast (and count as errors).
  const auto errors_before = status_of(*e, "crashy").errors;
  CHECK(errors_before >= 2);
  // After the backoff (1 s) the next event starts a new child, with the last snapshot restored.
  std::this_thread::sleep_for(1200ms);
  e->process(sample(4, "x"));
  const auto crashy = status_of(*e, "crashy");
  CHECK(crashy.errors == errors_before);
  CHECK(gauge(crashy, "samples") == 2.0);  // 1 restored + this one
}

TEST_CASE("an isolated monitor that hangs is killed at its deadline, without abandoning a thread",
          "[core][isolation]") {
  auto e = isolated_engine(
      isolated_config("  - {name: stuck, plugin: hanging_monitor, isolation: process, "
                      "deadline: 300ms}\n"),
      true);
  e->process(sample(1, "hang"));
  v1::BreakerStatus b;
  for (int i = 0; i < 200 && !open_breaker(*e, "hanging.trip", "run-1", b); ++i) {
    std::this_thread::sleep_for(20ms);
  }
  REQUIRE(open_breaker(*e, "hanging.trip", "run-1", b));
  CHECK_THAT(b.reason(), Catch::Contains("hung: on_event has not returned after 300 ms") &&
                             Catch::Contains("the monitor process was killed"));
  REQUIRE(e->wait_idle(5s));
  const auto stuck = status_of(*e, "stuck");
  CHECK(stuck.current == core::monitor_status::state::active);  // its thread came back at once
  const auto stop_start = std::chrono::steady_clock::now();
  e.reset();
  CHECK(std::chrono::steady_clock::now() - stop_start < 2s);
}

TEST_CASE("a leaking plugin in a process with a memory limit never grows the engine",
          "[core][isolation]") {
  auto e = isolated_engine(isolated_config(
      "  - {name: leaky, plugin: leaking_monitor, isolation: process, memory_limit: 256MiB, "
      "config: {mib_per_event: 32}}\n"));
  const long before = rss_kib();
  for (std::uint64_t seq = 1; seq <= 12; ++seq) e->process(sample(seq, "x"));
  const long after = rss_kib();
  v1::BreakerStatus b;
  REQUIRE(open_breaker(*e, "leaking.trip", "", b));  // a global breaker
  CHECK_THAT(b.reason(), Catch::Contains("out of memory"));
  INFO("engine rss before " << before << " KiB, after " << after << " KiB");
  CHECK(after - before < 64 * 1024);  // 12 × 32 MiB = 384 MiB went to the child, not here
}

TEST_CASE("isolation and memory_limit are checked at load", "[core][isolation][config]") {
  struct row {
    std::string monitor;
    std::string says;
  };
  const std::vector<row> rows = {
      {"  - {name: a, plugin: fixture_monitor, isolation: fork}\n",
       "monitors[0].isolation: expected thread or process, got \"fork\""},
      {"  - {name: a, plugin: fixture_monitor, memory_limit: 512MiB}\n",
       "monitors[0].memory_limit: needs isolation: process"},
      {"  - {name: a, plugin: fixture_monitor, isolation: process, memory_limit: 12XB}\n",
       "monitors[0].memory_limit: expected a size such as 512MiB or 2GiB, got \"12XB\""},
      {"  - {name: a, plugin: fixture_monitor, isolation: process, memory_limit: 1MiB}\n",
       "monitors[0].memory_limit: expected at least 64MiB"},
  };
  for (const auto& r : rows) {
    INFO(r.monitor);
    const std::string yaml = "version: 1\nmonitors:\n" + r.monitor;
    auto cfg = core::parse_config(yaml, "test.yaml");
    REQUIRE_FALSE(cfg.ok());
    CHECK_THAT(cfg.error().message(), Catch::Contains(r.says) && Catch::Contains("(test.yaml:3)"));
  }
  auto ok = core::parse_config(
      "version: 1\nmonitors:\n  - {name: a, plugin: fixture_monitor, isolation: process, "
      "memory_limit: 2GiB}\n",
      "test.yaml");
  REQUIRE(ok.ok());
  CHECK(ok->monitors[0].isolation == core::isolation_mode::process);
  CHECK(ok->monitors[0].memory_limit_bytes == (2ull << 30));
}
