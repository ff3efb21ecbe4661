#include <catch2/catch.hpp>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>

#include "test_paths.hpp"

using namespace loopwarden;

namespace {

// A config whose plugin path is the fixture directory, with the given monitors section.
core::config make_config(const std::string& monitors, const std::string& extra = "") {
  std::string yaml = "version: 1\nplugin_paths: [\"" + test::fixture_plugin_dir() +
                     "\"]\nprobation: 0s\n" + extra + "monitors:\n" + monitors;
  auto cfg = core::parse_config(yaml, "test.yaml");
  INFO(yaml);
  REQUIRE(cfg.ok());
  return *cfg;
}

std::unique_ptr<core::engine> make_engine(const core::config& cfg) {
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  auto e = core::engine::create(cfg, opts);
  INFO((e.ok() ? std::string() : e.error().message()));
  REQUIRE(e.ok());
  return std::move(*e);
}

v1::Envelope metrics_event(std::uint64_t seq, std::vector<std::string> names,
                           std::string run = "run-1") {
  v1::Envelope e;
  e.set_source("trainer/rank0");
  e.set_run_id(std::move(run));
  e.set_seq(seq);
  e.set_time_unix_nano(static_cast<std::int64_t>(seq) * 1'000'000'000);
  for (auto& n : names) {
    auto* s = e.mutable_metrics()->add_samples();
    s->set_name(n);
    s->set_value(1.0);
    s->set_step(static_cast<std::int64_t>(seq));
  }
  return e;
}

const core::monitor_status& status_of(const std::vector<core::monitor_status>& all,
                                      const std::string& name) {
  for (const auto& m : all) {
    if (m.name == name) return m;
  }
  FAIL("no monitor " << name);
  return all.front();
}

}  // namespace

TEST_CASE("engine routes events only to monitors that asked for their kind", "[core][engine]") {
  auto e = make_engine(make_config("  - {name: fx, plugin: fixture_monitor}\n"));
  v1::Envelope hb;
  hb.set_source("s");
  hb.set_seq(1);
  hb.mutable_heartbeat()->set_events_sent(3);
  e->process(hb);
  e->process(metrics_event(2, {"a", "b"}));
  auto mons = e->monitors();
  CHECK(status_of(mons, "fx").events == 1);
  auto c = e->counters();
  CHECK(c.events == 2);
  CHECK(c.by_kind[static_cast<std::size_t>(sdk::event_kind::heartbeat)] == 1);
  CHECK(c.by_kind[static_cast<std::size_t>(sdk::event_kind::metrics)] == 1);
  // Gauges published by the monitor are kept per instance.
  REQUIRE(status_of(mons, "fx").gauges.size() == 1);
  CHECK(status_of(mons, "fx").gauges[0] == std::pair<std::string, double>{"samples", 2.0});
}

TEST_CASE("engine counts an envelope without a body as malformed and drops it", "[core][engine]") {
  auto e = make_engine(make_config("  - {name: fx, plugin: fixture_monitor}\n"));
  v1::Envelope empty;
  empty.set_source("s");
  e->process(empty);
  CHECK(e->counters().malformed == 1);
  CHECK(status_of(e->monitors(), "fx").events == 0);
}

TEST_CASE("a monitor's trip opens its breaker with the declared defaults and the event's run",
          "[core][engine]") {
  auto e =
      make_engine(make_config("  - {name: fx, plugin: fixture_monitor, config: {label: x}}\n"));
  e->process(metrics_event(7, {"trip"}, "run-42"));
  auto b = e->breakers().find({"fixture.trip", "run-42"});
  REQUIRE(b);
  CHECK(b->state() == v1::BREAKER_STATE_OPEN);
  CHECK(b->action() == v1::BREAKER_ACTION_PAUSE);
  CHECK(b->severity() == v1::SEVERITY_WARNING);
  CHECK(b->monitor() == "fx");
  CHECK(b->changed_unix_nano() == 7'000'000'000);
  REQUIRE(b->evidence_size() == 1);
  CHECK(b->evidence(0).value() == "x");
}

TEST_CASE("the operator's breaker config overrides what the monitor declares", "[core][engine]") {
  auto e = make_engine(make_config("  - {name: fx, plugin: fixture_monitor}\n",
                                   "breakers:\n  fixture.trip: {action: halt, severity: critical, "
                                   "scope: global}\n"));
  e->process(metrics_event(1, {"trip"}));
  auto b = e->breakers().find({"fixture.trip", ""});
  REQUIRE(b);
  CHECK(b->action() == v1::BREAKER_ACTION_HALT);
  CHECK(b->severity() == v1::SEVERITY_CRITICAL);
  CHECK(b->scope() == v1::BREAKER_SCOPE_GLOBAL);
}

TEST_CASE("a throwing on_event is contained and fails its breaker closed", "[core][engine]") {
  auto e =
      make_engine(make_config("  - {name: thrower, plugin: throwing_monitor}\n"
                              "  - {name: fx, plugin: fixture_monitor}\n"));
  e->process(metrics_event(3, {"boom"}));
  auto b = e->breakers().find({"fixture.throwing", "run-1"});
  REQUIRE(b);
  CHECK(b->state() == v1::BREAKER_STATE_OPEN);
  CHECK(b->reason() ==
        "monitor 'thrower' failed in on_event: std::runtime_error: boom on sample 3");
  auto mons = e->monitors();
  CHECK(status_of(mons, "thrower").errors == 1);
  CHECK(status_of(mons, "thrower").current == core::monitor_status::state::active);
  CHECK(status_of(mons, "thrower").last_error == "on_event: std::runtime_error: boom on sample 3");
  // The other monitor still saw the event, and both keep receiving later ones.
  CHECK(status_of(mons, "fx").events == 1);
  e->process(metrics_event(4, {"fine"}));
  CHECK(status_of(e->monitors(), "fx").events == 2);
  CHECK(status_of(e->monitors(), "thrower").events == 1);
}

TEST_CASE("a throwing monitor with the disable policy is switched off, tripping nothing",
          "[core][engine]") {
  auto e = make_engine(
      make_config("  - {name: thrower, plugin: throwing_monitor, on_error: disable}\n"));
  e->process(metrics_event(3, {"boom"}));
  e->process(metrics_event(4, {"boom"}));
  CHECK_FALSE(e->breakers().any_open());
  auto m = status_of(e->monitors(), "thrower");
  CHECK(m.current == core::monitor_status::state::disabled);
  CHECK(m.errors == 1);
}

TEST_CASE("the strictest gate answer wins, and a failing gate denies unless disabled",
          "[core][engine]") {
  auto gate = [](core::engine& e, const std::string& cmd) {
    v1::GateRequest r;
    r.set_request_id("r1");
    r.mutable_action()->set_command(cmd);
    return e.gate(r);
  };
  SECTION("no gating monitor allows") {
    auto e = make_engine(make_config("  []\n"));
    auto out = gate(*e, "rm -rf /");
    CHECK(out.decision.verdict == sdk::gate_verdict::allow);
    CHECK(out.monitor.empty());
  }
  SECTION("one gating monitor decides") {
    auto e = make_engine(make_config("  - {name: fx, plugin: fixture_monitor}\n"));
    CHECK(gate(*e, "ls").decision.verdict == sdk::gate_verdict::allow);
    CHECK(gate(*e, "please approve").decision.verdict == sdk::gate_verdict::require_approval);
    auto d = gate(*e, "deny this");
    CHECK(d.decision.verdict == sdk::gate_verdict::deny);
    CHECK(d.decision.rule_id == "fixture.deny");
    CHECK(d.monitor == "fx");
  }
  SECTION("a throwing gate with fail_closed denies even when another allows") {
    auto e =
        make_engine(make_config("  - {name: fx, plugin: fixture_monitor}\n"
                                "  - {name: thrower, plugin: throwing_monitor}\n"));
    auto d = gate(*e, "ls");
    CHECK(d.decision.verdict == sdk::gate_verdict::deny);
    CHECK(d.monitor == "thrower");
    CHECK(d.decision.rule_id == "loopwarden.monitor_failed");
  }
  SECTION("a throwing gate with disable is skipped") {
    auto e =
        make_engine(make_config("  - {name: fx, plugin: fixture_monitor}\n"
                                "  - {name: thrower, plugin: throwing_monitor, on_error: "
                                "disable}\n"));
    auto d = gate(*e, "please approve");
    CHECK(d.decision.verdict == sdk::gate_verdict::require_approval);
    CHECK(d.monitor == "fx");
  }
}

TEST_CASE("engine refuses a missing required plugin and skips a missing optional one",
          "[core][engine]") {
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  auto required = core::engine::create(make_config("  - {name: gd, plugin: goal_drift}\n"), opts);
  REQUIRE_FALSE(required.ok());
  CHECK(required.error().message() ==
        "monitor 'gd': can't find plugin 'goal_drift': no goal_drift.so in " +
            test::fixture_plugin_dir());

  auto optional =
      core::engine::create(make_config("  - {name: gd, plugin: wrong_major, optional: true}\n"
                                       "  - {name: fx, plugin: fixture_monitor}\n"),
                           opts);
  REQUIRE(optional.ok());
  REQUIRE((*optional)->warnings().size() == 1);
  CHECK_THAT((*optional)->warnings()[0],
             Catch::StartsWith("monitor 'gd': can't load plugin 'wrong_major'") &&
                 Catch::EndsWith("sdk abi 2.x, host is 1.0 (optional: skipped)"));
  CHECK((*optional)->monitors().size() == 1);
}

TEST_CASE("engine refuses a monitor config error with the field path and line", "[core][engine]") {
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  auto e = core::engine::create(make_config("  - name: fx\n"
                                            "    plugin: fixture_monitor\n"
                                            "    config:\n"
                                            "      lable: typo\n"),
                                opts);
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().message() ==
        "monitor 'fx': monitors[0].config.lable: unknown key (allowed: label) (test.yaml:8)");
}

TEST_CASE("ticks run on the event clock in replay and measure call time", "[core][engine]") {
  auto e = make_engine(make_config("  - {name: fx, plugin: fixture_monitor}\n"));
  for (std::uint64_t s = 1; s <= 5; ++s) {
    e->process(metrics_event(s, {"x"}));  // events one second apart
    e->tick(0);                           // ignored: the event clock rules in replay
  }
  auto m = status_of(e->monitors(), "fx");
  // First tick is scheduled one interval (1 s) after the first event: at t = 2, 3, 4, 5.
  CHECK(m.ticks == 4);
  std::uint64_t calls = 0;
  for (auto c : m.call_buckets) calls += c;
  CHECK(calls == m.events + m.ticks);
  CHECK(m.total_call_ns > 0);
  CHECK(m.max_call_ns <= m.total_call_ns);
}

TEST_CASE("a monitor in shadow mode trips shadow breakers and never decides a gate",
          "[core][engine][shadow]") {
  auto e = make_engine(make_config(
      "  - {name: trial, plugin: fixture_monitor, mode: shadow, config: {label: s}}\n"));
  e->process(metrics_event(3, {"trip"}, "run-9"));
  // Its breaker lives beside, never on top of, the enforcing breaker of the same name.
  CHECK_FALSE(e->breakers().find({"fixture.trip", "run-9"}));
  auto b = e->breakers().find({"shadow:fixture.trip", "run-9"});
  REQUIRE(b);
  CHECK(b->state() == v1::BREAKER_STATE_OPEN);
  CHECK(b->shadow());
  CHECK(b->monitor() == "trial");

  v1::GateRequest r;
  r.set_request_id("r2");
  r.mutable_action()->set_command("deny this");
  const auto out = e->gate(r);
  CHECK(out.decision.verdict == sdk::gate_verdict::allow);  // what it would say is only logged
  CHECK(out.monitor.empty());
  CHECK(status_of(e->monitors(), "trial").gates == 1);

  SECTION("an enforcing monitor beside it still decides") {
    auto both =
        make_engine(make_config("  - {name: trial, plugin: fixture_monitor, mode: shadow}\n"
                                "  - {name: live, plugin: fixture_monitor}\n"));
    both->process(metrics_event(4, {"trip"}, "run-9"));
    CHECK(both->breakers().find({"fixture.trip", "run-9"})->shadow() == false);
    CHECK(both->breakers().find({"shadow:fixture.trip", "run-9"})->shadow());
    CHECK(both->gate(r).decision.verdict == sdk::gate_verdict::deny);
    CHECK(both->gate(r).monitor == "live");
  }
}

TEST_CASE("a monitor's mode must be enforce or shadow", "[core][engine][shadow]") {
  auto cfg = core::parse_config(
      "version: 1\nmonitors:\n  - {name: a, plugin: fixture_monitor, "
      "mode: trial}\n",
      "m.yaml");
  REQUIRE_FALSE(cfg.ok());
  CHECK(cfg.error().message().find("monitors[0].mode") != std::string::npos);
  CHECK(cfg.error().message().find("expected enforce or shadow") != std::string::npos);
}

TEST_CASE("a monitor's state survives snapshot and restore into a new engine", "[core][engine]") {
  const auto cfg = make_config("  - {name: fx, plugin: fixture_monitor}\n");
  auto first = make_engine(cfg);
  CHECK(first->snapshot_monitors().empty());  // nothing learned yet: nothing to keep
  first->process(metrics_event(1, {"a", "b", "c"}));
  const auto saved = first->snapshot_monitors();
  REQUIRE(saved.size() == 1);
  CHECK(saved[0].monitor == "fx");
  CHECK(saved[0].plugin == "fixture_monitor");
  CHECK(saved[0].version == "0.0.1");
  CHECK(saved[0].state == "fixture-v1:3");
  CHECK(saved[0].saved_unix_nano == 1'000'000'000);  // the engine's clock

  auto second = make_engine(cfg);
  REQUIRE(second->restore_monitor(saved[0]).ok());
  second->process(metrics_event(2, {"d"}));
  const auto mons = second->monitors();
  const auto& gauges = status_of(mons, "fx").gauges;
  REQUIRE(gauges.size() == 1);
  CHECK(gauges[0].first == "samples");
  CHECK(gauges[0].second == 4.0);  // 3 restored + 1
}

TEST_CASE("restore refuses another plugin, another major, an unknown instance and bad data",
          "[core][engine]") {
  auto e = make_engine(make_config("  - {name: fx, plugin: fixture_monitor}\n"));
  struct row {
    core::monitor_state state;
    sdk::status_code code;
    std::string says;
  };
  const std::vector<row> rows = {
      {{"fx", "goal_drift", "0.0.1", "fixture-v1:3", 0},
       sdk::status_code::failed_precondition,
       "saved by plugin 'goal_drift'"},
      {{"fx", "fixture_monitor", "1.0.0", "fixture-v1:3", 0},
       sdk::status_code::failed_precondition,
       "another major"},
      {{"nobody", "fixture_monitor", "0.0.1", "fixture-v1:3", 0},
       sdk::status_code::not_found,
       "no active instance"},
      {{"fx", "fixture_monitor", "0.0.9", "garbage", 0},
       sdk::status_code::parse_error,
       "not a fixture-v1 state"},
  };
  for (const auto& r : rows) {
    INFO(r.state.monitor << " " << r.state.plugin << " " << r.state.version);
    auto s = e->restore_monitor(r.state);
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == r.code);
    CHECK_THAT(s.message(),
               Catch::Contains("can't restore the state of monitor '" + r.state.monitor + "'") &&
                   Catch::Contains(r.says));
  }
  // A minor version difference is accepted.
  CHECK(e->restore_monitor({"fx", "fixture_monitor", "0.7.0", "fixture-v1:5", 0}).ok());
}

TEST_CASE("a snapshot that throws is counted and trips nothing", "[core][engine]") {
  auto e =
      make_engine(make_config("  - {name: fx, plugin: fixture_monitor, config: "
                              "{label: snapshot_throws}}\n"));
  e->process(metrics_event(1, {"a"}));
  CHECK(e->snapshot_monitors().empty());
  const auto mons = e->monitors();
  const auto& st = status_of(mons, "fx");
  CHECK(st.errors == 1);
  CHECK(st.last_error == "snapshot: std::runtime_error: snapshot failed on purpose");
  CHECK(st.current == core::monitor_status::state::active);
  const v1::BreakerSnapshot snap = e->breakers().snapshot();
  for (const auto& b : snap.breakers()) {
    INFO(b.name());
    CHECK(b.state() == v1::BREAKER_STATE_CLOSED);
  }
}
