// The alert planner (transitions -> outbox rows), the `alerts:` config, the in-memory outbox and
// the router's behaviour with local sinks (dedup, ordering, restarts). The HTTP sinks, retries and
// fallback against a real receiver are in alert_sinks_test.cpp.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <loopwarden/core/alert_config.hpp>
#include <loopwarden/core/alert_router.hpp>
#include <loopwarden/core/breaker_registry.hpp>
#include <loopwarden/core/logging.hpp>

#include "../wait_until.hpp"

using namespace loopwarden;
using test::wait_until;
using core::alert_sink_type;
using core::alerts_config;
using core::memory_alert_outbox;
using core::outbox_alert;
using json = nlohmann::json;

namespace {

// YAML -> config_node the way the daemon's loader builds it (map values carry their key's line),
// so error messages can be checked with real paths and lines.
sdk::config_node to_node(const YAML::Node& n, const std::string& path, int line) {
  const std::string file = "alerts.yaml";
  switch (n.Type()) {
    case YAML::NodeType::Scalar:
      return sdk::config_node::make_scalar(path, file, line, n.Scalar(), n.Tag() != "?");
    case YAML::NodeType::Sequence: {
      auto seq = sdk::config_node::make_sequence(path, file, line);
      std::size_t i = 0;
      for (const auto& e : n) {
        seq.push_back(to_node(e, path + "[" + std::to_string(i++) + "]", e.Mark().line + 1));
      }
      return seq;
    }
    case YAML::NodeType::Map: {
      auto map = sdk::config_node::make_map(path, file, line);
      for (const auto& kv : n) {
        const std::string key = kv.first.Scalar();
        map.insert(key, to_node(kv.second, path.empty() ? key : path + "." + key,
                                kv.first.Mark().line + 1));
      }
      return map;
    }
    default:
      return sdk::config_node::make_null(path, file, line);
  }
}

sdk::result<alerts_config> parse_yaml(const std::string& yaml, std::string base_dir = {}) {
  const YAML::Node root = YAML::Load(yaml);
  const sdk::config_node doc = to_node(root, "", 1);
  return core::parse_alerts_config(doc["alerts"], base_dir);
}

alerts_config must_parse(const std::string& yaml) {
  auto cfg = parse_yaml(yaml);
  INFO(cfg.error().message());
  REQUIRE(cfg.ok());
  return std::move(cfg).value();
}

// A fresh directory under the system temp dir, removed at the end of the test.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() /
           ("lw-alerts-" + std::to_string(rd()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

std::vector<json> read_json_lines(const std::filesystem::path& p) {
  std::vector<json> out;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}

// Polls `done` until it holds or `limit` passes; true when it held.

core::trip_input make_trip(std::string name, std::string run = "run-7", std::int64_t t = 1'000) {
  core::trip_input in;
  in.breaker = std::move(name);
  in.run_id = std::move(run);
  in.monitor = "collapse";
  in.reason = "variance fell below 5% of its baseline";
  in.evidence = {{"variance", "0.012"}, {"baseline", "0.31"}};
  in.action = sdk::breaker_action::rollback;
  in.severity = sdk::severity::critical;
  in.time_unix_nano = t;
  in.trigger_source = "trainer/rank0";
  in.trigger_seq = 42;
  return in;
}

// Two sinks, everything routed to both: the planner's rows come in pairs.
const char* two_sinks_yaml = R"(
alerts:
  sidecar_id: box-1
  runbook_url: https://runbooks.example/loopwarden.md
  sinks:
    - {name: ops, type: log}
    - {name: pager, type: pagerduty, routing_key: abc}
)";

struct registry_fixture {
  core::memory_breaker_store store;
  core::breaker_registry reg{store, std::chrono::minutes(5)};
};

std::vector<std::string> sinks_of(const std::vector<outbox_alert>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.sink);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The planner

TEST_CASE(
    "a trip plans one trigger per routed sink, and its reset a resolve of the same fingerprint",
    "[alerts]") {
  const auto cfg = must_parse(two_sinks_yaml);
  const auto planner = core::make_alert_planner(cfg, "ignored-because-config-sets-it");
  registry_fixture f;

  auto trip = f.reg.trip(make_trip("training.collapse"));
  REQUIRE(trip);
  const auto triggers = planner(*trip);
  REQUIRE(triggers.size() == 2);
  CHECK(sinks_of(triggers) == std::vector<std::string>{"ops", "pager"});
  for (const auto& a : triggers) {
    CHECK(a.kind == "trigger");
    CHECK(a.id == 0);
    CHECK(a.attempts == 0);
    CHECK(a.created_unix_nano == 1'000);
    CHECK(a.fingerprint.size() == 32);
    CHECK(a.fingerprint == triggers[0].fingerprint);
  }
  const json p = json::parse(triggers[0].payload_json);
  CHECK(p["fingerprint"] == triggers[0].fingerprint);
  CHECK(p["kind"] == "trigger");
  CHECK(p["status"] == "firing");
  CHECK(p["shadow"] == false);
  CHECK(p["breaker"] == "training.collapse");
  CHECK(p["run_id"] == "run-7");
  CHECK(p["scope"] == "run");
  CHECK(p["monitor"] == "collapse");
  CHECK(p["state"] == "open");
  CHECK(p["previous_state"] == "closed");
  CHECK(p["cause"] == "trip");
  CHECK(p["action"] == "rollback");
  CHECK(p["severity"] == "critical");
  CHECK(p["reason"] == "variance fell below 5% of its baseline");
  CHECK(p["evidence"] == json::parse(R"([{"key":"variance","value":"0.012"},
                                         {"key":"baseline","value":"0.31"}])"));
  CHECK(p["epoch"] == 1);
  CHECK(p["trips"] == 1);
  CHECK(p["time"] == "1970-01-01T00:00:00.000Z");
  CHECK(p["time_unix_nano"] == 1'000);
  CHECK(p["trigger"] == json{{"source", "trainer/rank0"}, {"seq", 42}});
  CHECK(p["runbook_url"] == "https://runbooks.example/loopwarden.md#training.collapse");
  CHECK(p["sidecar_id"] == "box-1");
  CHECK(p["summary"] ==
        "training.collapse OPEN (run run-7): rollback, critical: variance fell "
        "below 5% of its baseline");
  CHECK_FALSE(p.contains("operator"));

  auto ack = f.reg.acknowledge({"training.collapse", "run-7"}, "alice", "looking", 2'000);
  REQUIRE(ack.ok());
  CHECK(planner(*ack).empty());

  auto reset = f.reg.reset({"training.collapse", "run-7"}, "alice", "false alarm", 3'000);
  REQUIRE(reset.ok());
  const auto resolves = planner(*reset);
  REQUIRE(resolves.size() == 2);
  for (const auto& a : resolves) {
    CHECK(a.kind == "resolve");
    CHECK(a.fingerprint == triggers[0].fingerprint);
  }
  const json r = json::parse(resolves[0].payload_json);
  CHECK(r["status"] == "resolved");
  CHECK(r["state"] == "half_open");
  CHECK(r["cause"] == "reset");
  CHECK(r["operator"] == "alice");
  CHECK(r["note"] == "false alarm");
  CHECK(r["summary"] ==
        "training.collapse RESOLVED (run run-7): on probation, reset by alice: false alarm");

  // Probation ending repeats the resolve of the same incident (the router sends it once).
  const auto closed =
      f.reg.advance(3'000 + std::chrono::nanoseconds(std::chrono::minutes(5)).count());
  REQUIRE(closed.size() == 1);
  const auto again = planner(closed[0]);
  REQUIRE(again.size() == 2);
  CHECK(again[0].kind == "resolve");
  CHECK(again[0].fingerprint == triggers[0].fingerprint);
  CHECK(json::parse(again[0].payload_json)["summary"] ==
        "training.collapse RESOLVED (run run-7): probation ended");

  // The next trip is a new incident.
  auto second = f.reg.trip(make_trip("training.collapse", "run-7", 9'000));
  REQUIRE(second);
  const auto next = planner(*second);
  REQUIRE(next.size() == 2);
  CHECK(next[0].fingerprint != triggers[0].fingerprint);
}

TEST_CASE("fingerprints are stable across planner instances and differ per incident", "[alerts]") {
  alerts_config cfg = core::default_alerts_config();
  registry_fixture a;
  registry_fixture b;
  auto ta = a.reg.trip(make_trip("agent.drift", "run-1"));
  auto tb = b.reg.trip(make_trip("agent.drift", "run-1"));
  REQUIRE(ta);
  REQUIRE(tb);
  // Two planners (as after a restart) agree, whatever else differs in the transition.
  tb->mutable_breaker()->set_reason("another reason");
  tb->mutable_breaker()->set_changed_unix_nano(77);
  const auto fa = core::make_alert_planner(cfg, "host-a")(*ta).at(0).fingerprint;
  const auto fb = core::make_alert_planner(cfg, "host-a")(*tb).at(0).fingerprint;
  CHECK(fa == fb);

  // Any part of the identity changes it.
  CHECK(core::make_alert_planner(cfg, "host-b")(*ta).at(0).fingerprint != fa);
  auto other_run = *ta;
  other_run.mutable_breaker()->set_run_id("run-2");
  CHECK(core::make_alert_planner(cfg, "host-a")(other_run).at(0).fingerprint != fa);
  auto other_trip = *ta;
  other_trip.mutable_breaker()->set_trips(2);
  CHECK(core::make_alert_planner(cfg, "host-a")(other_trip).at(0).fingerprint != fa);
  // The config's sidecar_id replaces the daemon's.
  cfg.sidecar_id = "host-b";
  CHECK(core::make_alert_planner(cfg, "host-a")(*ta).at(0).fingerprint ==
        core::make_alert_planner(core::default_alerts_config(), "host-b")(*ta).at(0).fingerprint);
}

TEST_CASE("an operator's force_open is its own incident, resolved by its reset", "[alerts]") {
  const auto cfg = must_parse(two_sinks_yaml);
  const auto planner = core::make_alert_planner(cfg, "box-1");
  registry_fixture f;
  const core::breaker_key key{"ops.halt", ""};

  // From closed: a trigger with the operator in it.
  auto forced = f.reg.force_open(key, "bob", "migration", sdk::breaker_action::pause, 5'000);
  REQUIRE(forced.ok());
  const auto fo = planner(*forced);
  REQUIRE(fo.size() == 2);
  CHECK(fo[0].kind == "trigger");
  const json p = json::parse(fo[0].payload_json);
  CHECK(p["cause"] == "force_open");
  CHECK(p["state"] == "forced_open");
  CHECK(p["operator"] == "bob");
  CHECK(p["note"] == "migration");
  CHECK(p["summary"] == "ops.halt FORCED OPEN: pause, critical, by operator bob: migration");

  auto reset = f.reg.reset(key, "bob", "done", 6'000);
  REQUIRE(reset.ok());
  const auto rr = planner(*reset);
  REQUIRE(rr.size() == 2);
  CHECK(rr[0].kind == "resolve");
  CHECK(rr[0].fingerprint == fo[0].fingerprint);
  // Probation after a forced incident resolves the same incident again.
  const auto closed =
      f.reg.advance(6'000 + std::chrono::nanoseconds(std::chrono::minutes(5)).count());
  REQUIRE(closed.size() == 1);
  CHECK(planner(closed[0]).at(0).fingerprint == fo[0].fingerprint);

  // A second force_open is a new incident, though no trip happened in between.
  auto forced2 =
      f.reg.force_open(key, "bob", "again", sdk::breaker_action::halt, 7'000'000'000'000);
  REQUIRE(forced2.ok());
  CHECK(planner(*forced2).at(0).fingerprint != fo[0].fingerprint);
}

TEST_CASE("a force_open over a tripped breaker resolves the monitor's incident and opens its own",
          "[alerts]") {
  const auto cfg = must_parse(two_sinks_yaml);
  const auto planner = core::make_alert_planner(cfg, "box-1");
  registry_fixture f;
  auto trip = f.reg.trip(make_trip("training.collapse"));
  REQUIRE(trip);
  const std::string trip_fp = planner(*trip).at(0).fingerprint;

  auto forced = f.reg.force_open({"training.collapse", "run-7"}, "carol", "stop everything",
                                 sdk::breaker_action::halt, 2'000);
  REQUIRE(forced.ok());
  const auto rows = planner(*forced);
  REQUIRE(rows.size() == 4);
  CHECK(rows[0].kind == "resolve");
  CHECK(rows[0].fingerprint == trip_fp);
  CHECK(json::parse(rows[0].payload_json)["summary"] ==
        "training.collapse RESOLVED (run run-7): superseded by force_open by carol");
  CHECK(rows[2].kind == "trigger");
  CHECK(rows[2].fingerprint != trip_fp);

  auto reset = f.reg.reset({"training.collapse", "run-7"}, "carol", "ok now", 3'000);
  REQUIRE(reset.ok());
  CHECK(planner(*reset).at(0).fingerprint == rows[2].fingerprint);
}

TEST_CASE("routes pick sinks by breaker glob, minimum severity and shadow policy", "[alerts]") {
  const auto cfg = must_parse(R"(
alerts:
  sinks:
    - {name: ops, type: log}
    - {name: pager, type: pagerduty, routing_key: k}
    - {name: trial, type: log}
    - {name: trial-pager, type: pagerduty, routing_key: k2}
  routes:
    - {breakers: ["training.*", "agent.destructive"], min_severity: critical, sinks: [pager]}
    - {breakers: "*", sinks: [ops]}
    - {shadow: only, sinks: [trial, trial-pager]}
    - {shadow: exclude, min_severity: warning, sinks: [trial]}
)");
  const auto planner = core::make_alert_planner(cfg, "box");
  auto plan_for = [&](std::string name, sdk::severity sev, bool shadow) {
    registry_fixture f;
    auto in = make_trip(std::move(name));
    in.severity = sev;
    auto t = f.reg.trip(in);
    REQUIRE(t);
    t->mutable_breaker()->set_shadow(shadow);
    return planner(*t);
  };
  struct row {
    std::string breaker;
    sdk::severity severity;
    bool shadow;
    std::vector<std::string> sinks;
  };
  const std::vector<row> table = {
      {"training.collapse", sdk::severity::critical, false, {"ops", "pager", "trial"}},
      {"training.collapse", sdk::severity::warning, false, {"ops", "trial"}},
      {"training.collapse", sdk::severity::info, false, {"ops"}},
      {"agent.destructive", sdk::severity::critical, false, {"ops", "pager", "trial"}},
      {"agent.drift", sdk::severity::critical, false, {"ops", "trial"}},
      // Shadow: the include route drops its PagerDuty sink; the shadow-only route pages.
      {"training.collapse", sdk::severity::critical, true, {"ops", "trial", "trial-pager"}},
      {"agent.drift", sdk::severity::info, true, {"ops", "trial", "trial-pager"}},
  };
  for (const auto& r : table) {
    INFO(r.breaker << " severity " << sdk::to_string(r.severity) << " shadow " << r.shadow);
    const auto rows = plan_for(r.breaker, r.severity, r.shadow);
    CHECK(sinks_of(rows) == r.sinks);
    for (const auto& a : rows) CHECK(a.kind == (r.shadow ? "shadow" : "trigger"));
  }
  const auto shadow_rows = plan_for("agent.drift", sdk::severity::info, true);
  const json p = json::parse(shadow_rows.at(0).payload_json);
  CHECK(p["shadow"] == true);
  CHECK(p["summary"].get<std::string>().rfind("[shadow] agent.drift OPEN", 0) == 0);
}

TEST_CASE("a shadow breaker's reset resolves on the sinks its trip went to", "[alerts]") {
  const auto cfg = must_parse(two_sinks_yaml);
  const auto planner = core::make_alert_planner(cfg, "box");
  registry_fixture f;
  auto trip = f.reg.trip(make_trip("training.collapse"));
  REQUIRE(trip);
  trip->mutable_breaker()->set_shadow(true);
  auto reset = f.reg.reset({"training.collapse", "run-7"}, "al", "trial over", 2'000);
  REQUIRE(reset.ok());
  reset->mutable_breaker()->set_shadow(true);
  const auto t = planner(*trip);
  const auto r = planner(*reset);
  REQUIRE(t.size() == 1);  // the default route includes shadows but never pages them
  CHECK(t[0].sink == "ops");
  CHECK(t[0].kind == "shadow");
  REQUIRE(r.size() == 1);
  CHECK(r[0].sink == "ops");
  CHECK(r[0].kind == "resolve");
  CHECK(r[0].fingerprint == t[0].fingerprint);
}

TEST_CASE("restore and unknown causes plan no alerts", "[alerts]") {
  const auto planner = core::make_alert_planner(core::default_alerts_config(), "box");
  registry_fixture f;
  auto trip = f.reg.trip(make_trip("x.y"));
  REQUIRE(trip);
  for (const char* cause : {"restore", "ack", "something_new"}) {
    INFO(cause);
    auto t = *trip;
    t.set_cause(cause);
    CHECK(planner(t).empty());
  }
}

// ---------------------------------------------------------------------------------------------
// The configuration

TEST_CASE("a missing alerts section routes everything to one log sink", "[alerts]") {
  auto cfg = parse_yaml("version: 1\n");
  REQUIRE(cfg.ok());
  REQUIRE(cfg->sinks.size() == 1);
  CHECK(cfg->sinks[0].name == "log");
  CHECK(cfg->sinks[0].type == alert_sink_type::log);
  REQUIRE(cfg->routes.size() == 1);
  CHECK(cfg->routes[0].breakers == std::vector<std::string>{"*"});
  CHECK(cfg->routes[0].sinks == std::vector<std::string>{"log"});
  CHECK(cfg->routes[0].shadow == core::shadow_routing::include);
  CHECK(cfg->resend_interval == std::chrono::seconds(60));
  CHECK(cfg->runbook_url == "docs/runbook.md");
}

TEST_CASE("sink settings have documented defaults and parse every field", "[alerts]") {
  ::setenv("LW_TEST_PD_KEY", "from-env", 1);
  temp_dir dir;
  auto cfg = parse_yaml(R"(
alerts:
  sidecar_id: box-9
  cluster: eu-1
  runbook_url: ""
  resend_interval: 30s
  sinks:
    - {name: pd, type: pagerduty, routing_key_env: LW_TEST_PD_KEY}
    - name: hook
      type: webhook
      url: "http://127.0.0.1:9/hook?x=1"
      headers: {Authorization: "Bearer t", X-Team: ml}
      timeout: 250ms
      max_attempts: 3
      backoff: {initial: 100ms, max: 2s}
      queue_capacity: 7
      fallback: archive
    - {name: archive, type: file, path: alerts.jsonl}
  routes:
    - {sinks: [pd, hook]}
)",
                        dir.path.string());
  INFO(cfg.error().message());
  REQUIRE(cfg.ok());
  CHECK(cfg->sidecar_id == "box-9");
  CHECK(cfg->cluster == "eu-1");
  CHECK(cfg->runbook_url.empty());
  CHECK(cfg->resend_interval == std::chrono::seconds(30));
  const auto* pd = cfg->find_sink("pd");
  REQUIRE(pd != nullptr);
  CHECK(pd->url == "https://events.pagerduty.com/v2/enqueue");
  CHECK(pd->routing_key == "from-env");
  CHECK(pd->timeout == std::chrono::seconds(5));
  CHECK(pd->max_attempts == 8);
  CHECK(pd->backoff_initial == std::chrono::seconds(1));
  CHECK(pd->backoff_max == std::chrono::minutes(5));
  CHECK(pd->queue_capacity == 1024);
  CHECK(pd->fallback.empty());
  const auto* hook = cfg->find_sink("hook");
  REQUIRE(hook != nullptr);
  CHECK(hook->url == "http://127.0.0.1:9/hook?x=1");
  CHECK(hook->headers == std::vector<std::pair<std::string, std::string>>{
                             {"Authorization", "Bearer t"}, {"X-Team", "ml"}});
  CHECK(hook->timeout == std::chrono::milliseconds(250));
  CHECK(hook->max_attempts == 3);
  CHECK(hook->backoff_initial == std::chrono::milliseconds(100));
  CHECK(hook->backoff_max == std::chrono::seconds(2));
  CHECK(hook->queue_capacity == 7);
  CHECK(hook->fallback == "archive");
  CHECK(cfg->find_sink("archive")->path == (dir.path / "alerts.jsonl").string());
  CHECK(cfg->find_sink("nope") == nullptr);
  ::unsetenv("LW_TEST_PD_KEY");
}

TEST_CASE("without routes every sink that is not only a fallback gets everything", "[alerts]") {
  const auto cfg = must_parse(R"(
alerts:
  sinks:
    - {name: a, type: log, fallback: c}
    - {name: b, type: log}
    - {name: c, type: log}
)");
  REQUIRE(cfg.routes.size() == 1);
  CHECK(cfg.routes[0].sinks == std::vector<std::string>{"a", "b"});
}

TEST_CASE("alerts config errors name the field path and line", "[alerts]") {
  ::unsetenv("LW_TEST_UNSET_VAR");
  struct row {
    const char* yaml;
    const char* error;
  };
  const std::vector<row> table = {
      {"alerts: [1]\n",
       "alerts: expected a map with sinks and routes, got a sequence (alerts.yaml:1)"},
      {"alerts:\n  sinkz: []\n",
       "alerts.sinkz: unknown key (allowed: sidecar_id, cluster, runbook_url, resend_interval, "
       "sinks, routes) (alerts.yaml:2)"},
      {"alerts:\n  sinks:\n    - {name: a, type: log}\n    - {name: b, type: webhook, url: "
       "\"ftp://x\"}\n",
       "alerts.sinks[1].url: expected an http:// or https:// URL, got \"ftp://x\" (alerts.yaml:4)"},
      {"alerts:\n  sinks:\n    - {name: a, type: webhook, url: \"http://h:99999/\"}\n",
       "alerts.sinks[0].url: expected a port between 1 and 65535 in the URL, got "
       "\"http://h:99999/\" (alerts.yaml:3)"},
      {"alerts:\n  sinks:\n    - {name: a, type: slack}\n",
       "alerts.sinks[0].url: required for a slack sink (alerts.yaml:3)"},
      {"alerts:\n  sinks:\n    - {name: a, type: sms}\n",
       "alerts.sinks[0].type: expected one of log, file, webhook, slack, pagerduty, alertmanager, "
       "got \"sms\" (alerts.yaml:3)"},
      {"alerts:\n  sinks:\n    - {type: log}\n", "alerts.sinks[0].name: required (alerts.yaml:3)"},
      {"alerts:\n  sinks:\n    - {name: Big, type: log}\n",
       "alerts.sinks[0].name: expected a sink name of lowercase letters, digits, '_', '.' or '-', "
       "got \"Big\" (alerts.yaml:3)"},
      {"alerts:\n  sinks:\n    - {name: a, type: log}\n    - {name: a, type: log}\n",
       "alerts.sinks[1].name: duplicate sink name 'a', first at line 3 (alerts.yaml:4)"},
      {"alerts:\n  sinks:\n    - {name: a, type: webhook, url: \"http://h/\", path: /tmp/x}\n",
       "alerts.sinks[0].path: not used by a webhook sink (alerts.yaml:3)"},
      {"alerts:\n  sinks:\n    - {name: a, type: log, colour: red}\n",
       "alerts.sinks[0].colour: unknown key (allowed: name, type, url, path, routing_key, "
       "routing_key_env, headers, ca_file, timeout, max_attempts, backoff, queue_capacity, "
       "fallback) (alerts.yaml:3)"},
      {"alerts:\n  sinks:\n    - {name: a, type: file}\n",
       "alerts.sinks[0].path: required (alerts.yaml:3)"},
      {"alerts:\n  sinks:\n    - {name: a, type: pagerduty}\n",
       "alerts.sinks[0]: a pagerduty sink needs exactly one of routing_key or routing_key_env "
       "(alerts.yaml:3)"},
      {"alerts:\n  sinks:\n    - {name: a, type: pagerduty, routing_key_env: LW_TEST_UNSET_VAR}\n",
       "alerts.sinks[0].routing_key_env: environment variable 'LW_TEST_UNSET_VAR' is not set or "
       "empty (alerts.yaml:3)"},
      {"alerts:\n  sinks:\n    - {name: a, type: log, timeout: 0s}\n",
       "alerts.sinks[0].timeout: expected a duration above zero (alerts.yaml:3)"},
      {"alerts:\n  sinks:\n    - {name: a, type: log, max_attempts: 0}\n",
       "alerts.sinks[0].max_attempts: expected a positive integer, got \"0\" (alerts.yaml:3)"},
      {"alerts:\n  sinks:\n    - name: a\n      type: log\n      backoff: {initial: 10s, max: "
       "1s}\n",
       "alerts.sinks[0].backoff.max: must not be shorter than backoff.initial (alerts.yaml:5)"},
      {"alerts:\n  sinks:\n    - {name: a, type: log, fallback: b}\n",
       "alerts.sinks[0].fallback: no sink named 'b' (alerts.yaml:3)"},
      {"alerts:\n  sinks:\n    - {name: a, type: log, fallback: a}\n",
       "alerts.sinks[0].fallback: a sink can't be its own fallback (alerts.yaml:3)"},
      {"alerts:\n  sinks:\n    - {name: a, type: log, fallback: b}\n    - {name: b, type: log, "
       "fallback: c}\n    - {name: c, type: log, fallback: a}\n",
       "alerts.sinks[0].fallback: fallback cycle: a -> b -> c -> a (alerts.yaml:3)"},
      {"alerts:\n  sinks:\n    - {name: a, type: log}\n  routes:\n    - {sinks: [a, b]}\n",
       "alerts.routes[0].sinks[1]: no sink named 'b' (alerts.yaml:5)"},
      {"alerts:\n  sinks:\n    - {name: a, type: log}\n  routes:\n    - breakers: x\n",
       "alerts.routes[0].sinks: required (alerts.yaml:5)"},
      {"alerts:\n  sinks:\n    - {name: a, type: log}\n  routes:\n    - {sinks: a, min_severity: "
       "high}\n",
       "alerts.routes[0].min_severity: expected one of info, warning, critical, got \"high\" "
       "(alerts.yaml:5)"},
      {"alerts:\n  sinks:\n    - {name: a, type: log}\n  routes:\n    - {sinks: a, shadow: yes}\n",
       "alerts.routes[0].shadow: expected one of include, only, exclude, got \"yes\" "
       "(alerts.yaml:5)"},
      {"alerts:\n  resend_interval: soon\n",
       "alerts.resend_interval: expected a duration such as 250ms, 5s or 10m, got \"soon\" "
       "(alerts.yaml:2)"},
      {"alerts:\n  sinks:\n    - name: a\n      type: webhook\n      url: \"http://h/\"\n      "
       "headers: {\"Bad Name\": x}\n",
       "alerts.sinks[0].headers.Bad Name: not a valid HTTP header name (alerts.yaml:6)"},
  };
  for (const auto& r : table) {
    INFO(r.yaml);
    auto cfg = parse_yaml(r.yaml);
    REQUIRE_FALSE(cfg.ok());
    CHECK(cfg.error().code() == sdk::status_code::invalid_argument);
    CHECK(cfg.error().message() == r.error);
  }
}

// ---------------------------------------------------------------------------------------------
// The in-memory outbox

TEST_CASE("the memory outbox assigns ids and returns only pending alerts, oldest first",
          "[alerts]") {
  memory_alert_outbox box;
  std::vector<outbox_alert> rows(3);
  rows[0].sink = "a";
  rows[1].sink = "b";
  rows[2].sink = "c";
  REQUIRE(box.enqueue(rows).ok());
  auto p = box.pending(10);
  REQUIRE(p.ok());
  REQUIRE(p->size() == 3);
  CHECK((*p)[0].id == 1);
  CHECK((*p)[2].id == 3);
  CHECK(box.pending(2)->size() == 2);

  REQUIRE(box.mark_attempt(1, 1, 500, "http 500").ok());
  REQUIRE(box.mark_delivered(2, "b", 10).ok());
  REQUIRE(box.mark_failed(3, "dead", 11).ok());
  p = box.pending(10);
  REQUIRE(p->size() == 1);
  CHECK((*p)[0].attempts == 1);
  CHECK((*p)[0].next_attempt_unix_nano == 500);
  CHECK((*p)[0].last_error == "http 500");
  CHECK(box.pending_count() == 1);
  CHECK(box.mark_delivered(2, "b", 12).code() == sdk::status_code::failed_precondition);
  CHECK(box.mark_failed(99, "x", 1).code() == sdk::status_code::not_found);
  const auto all = box.entries();
  CHECK(all[1].state == memory_alert_outbox::alert_state::delivered);
  CHECK(all[1].delivered_via == "b");
  CHECK(all[2].state == memory_alert_outbox::alert_state::failed);
}

// ---------------------------------------------------------------------------------------------
// The router with local sinks

namespace {

alerts_config file_sink_config(const std::filesystem::path& file) {
  alerts_config cfg;
  core::alert_sink_config s;
  s.name = "archive";
  s.type = alert_sink_type::file;
  s.path = file.string();
  cfg.sinks.push_back(s);
  core::alert_route r;
  r.sinks = {"archive"};
  cfg.routes.push_back(r);
  return cfg;
}

core::alert_router_options fast_options() {
  core::alert_router_options o;
  o.sidecar_id = "box";
  o.poll_interval = std::chrono::milliseconds(20);
  return o;
}

}  // namespace

TEST_CASE("the router delivers the same alert enqueued twice only once", "[alerts]") {
  temp_dir dir;
  const auto file = dir.path / "alerts.jsonl";
  const auto cfg = file_sink_config(file);
  const auto planner = core::make_alert_planner(cfg, "box");
  registry_fixture f;
  auto trip = f.reg.trip(make_trip("training.collapse"));
  REQUIRE(trip);
  const auto rows = planner(*trip);
  REQUIRE(rows.size() == 1);

  memory_alert_outbox box;
  REQUIRE(box.enqueue(rows).ok());
  REQUIRE(box.enqueue(rows).ok());
  core::alert_router router(cfg, box, fast_options());
  router.start();
  router.notify();
  REQUIRE(wait_until([&] { return box.pending_count() == 0; }));
  // A third copy arriving later (a store replaying its outbox) is recognised too.
  REQUIRE(box.enqueue(rows).ok());
  router.notify();
  REQUIRE(wait_until([&] { return box.pending_count() == 0; }));
  router.stop();

  const auto lines = read_json_lines(file);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0]["fingerprint"] == rows[0].fingerprint);
  CHECK(lines[0]["sink"] == "archive");
  CHECK_FALSE(lines[0].contains("for_sink"));
  const auto st = router.stats();
  REQUIRE(st.size() == 1);
  CHECK(st[0].sent == 1);
  CHECK(st[0].deduplicated == 2);
  for (const auto& e : box.entries()) {
    CHECK(e.state == memory_alert_outbox::alert_state::delivered);
    CHECK(e.delivered_via == "archive");
  }
}

TEST_CASE("the router delivers a trigger before its resolve and both exactly once", "[alerts]") {
  temp_dir dir;
  const auto file = dir.path / "alerts.jsonl";
  const auto cfg = file_sink_config(file);
  const auto planner = core::make_alert_planner(cfg, "box");
  registry_fixture f;
  auto trip = f.reg.trip(make_trip("training.collapse"));
  REQUIRE(trip);
  auto reset = f.reg.reset({"training.collapse", "run-7"}, "al", "fine", 2'000);
  REQUIRE(reset.ok());
  const auto closed = f.reg.advance(std::numeric_limits<std::int64_t>::max());
  REQUIRE(closed.size() == 1);

  memory_alert_outbox box;
  REQUIRE(box.enqueue(planner(*trip)).ok());
  REQUIRE(box.enqueue(planner(*reset)).ok());
  REQUIRE(box.enqueue(planner(closed[0])).ok());  // a second resolve of the same incident
  core::alert_router router(cfg, box, fast_options());
  router.start();
  REQUIRE(wait_until([&] { return box.pending_count() == 0; }));
  router.stop();
  const auto lines = read_json_lines(file);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0]["kind"] == "trigger");
  CHECK(lines[1]["kind"] == "resolve");
  CHECK(lines[0]["fingerprint"] == lines[1]["fingerprint"]);
}

TEST_CASE("a new router delivers what an earlier one left pending", "[alerts]") {
  temp_dir dir;
  const auto file = dir.path / "alerts.jsonl";
  const auto cfg = file_sink_config(file);
  const auto planner = core::make_alert_planner(cfg, "box");
  memory_alert_outbox box;  // stands in for the durable store across the "restart"
  registry_fixture f;
  auto t1 = f.reg.trip(make_trip("a.one"));
  REQUIRE(t1);
  REQUIRE(box.enqueue(planner(*t1)).ok());
  {
    core::alert_router first(cfg, box, fast_options());
    // Never started: the process died before delivering.
  }
  CHECK(box.pending_count() == 1);
  core::alert_router second(cfg, box, fast_options());
  second.start();
  REQUIRE(wait_until([&] { return box.pending_count() == 0; }));
  second.stop();
  CHECK(read_json_lines(file).size() == 1);
}

TEST_CASE("an alert for a sink that is no longer configured is given up with an error",
          "[alerts]") {
  temp_dir dir;
  const auto cfg = file_sink_config(dir.path / "alerts.jsonl");
  memory_alert_outbox box;
  outbox_alert orphan;
  orphan.sink = "renamed";
  orphan.kind = "trigger";
  orphan.fingerprint = "f";
  orphan.payload_json = "{}";
  REQUIRE(box.enqueue({orphan}).ok());
  core::alert_router router(cfg, box, fast_options());
  router.start();
  REQUIRE(wait_until([&] { return box.pending_count() == 0; }));
  router.stop();
  const auto e = box.entries().at(0);
  CHECK(e.state == memory_alert_outbox::alert_state::failed);
  CHECK(e.alert.last_error == "no alert sink named 'renamed' in the configuration");
}

TEST_CASE("a file sink that cannot write gives the alert up after its attempts", "[alerts]") {
  temp_dir dir;
  auto cfg = file_sink_config(dir.path / "missing-dir" / "alerts.jsonl");
  cfg.sinks[0].max_attempts = 2;
  cfg.sinks[0].backoff_initial = std::chrono::milliseconds(5);
  cfg.sinks[0].backoff_max = std::chrono::milliseconds(5);
  memory_alert_outbox box;
  REQUIRE(box.enqueue({core::make_test_alert(cfg, "archive", "box", 1)}).ok());
  core::alert_router router(cfg, box, fast_options());
  router.start();
  REQUIRE(wait_until([&] { return box.pending_count() == 0; }));
  router.stop();
  const auto e = box.entries().at(0);
  CHECK(e.state == memory_alert_outbox::alert_state::failed);
  CHECK(e.alert.attempts == 1);  // the give-up itself is not recorded as an attempt
  CHECK(e.alert.last_error.find("can't open alert file") != std::string::npos);
  CHECK(e.alert.last_error.find("no such file or directory") != std::string::npos);
  const auto st = router.stats().at(0);
  CHECK(st.retried == 1);
  CHECK(st.failed == 1);
  CHECK(st.sent == 0);
}

namespace {

// Sends this process's stderr (where the engine logs) to a file while it lives.
class stderr_capture {
 public:
  explicit stderr_capture(std::filesystem::path file) : file_(std::move(file)) {
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    const int fd = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    ::dup2(fd, STDERR_FILENO);
    ::close(fd);
  }
  ~stderr_capture() { restore(); }
  // Restores stderr and returns what was written meanwhile.
  std::string finish() {
    restore();
    std::ifstream in(file_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    core::flush_log();
    std::fflush(stderr);
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    saved_ = -1;
  }
  std::filesystem::path file_;
  int saved_ = -1;
};

}  // namespace

TEST_CASE("a log sink writes one readable line per alert through the engine's log", "[alerts]") {
  temp_dir dir;
  auto cfg = core::default_alerts_config();
  cfg.runbook_url = "https://runbooks.example/lw.md";
  const auto planner = core::make_alert_planner(cfg, "box");
  registry_fixture f;
  auto trip = f.reg.trip(make_trip("training.collapse"));
  REQUIRE(trip);
  memory_alert_outbox box;
  const auto rows = planner(*trip);
  REQUIRE(rows.size() == 1);
  REQUIRE(box.enqueue(rows).ok());
  std::string text;
  {
    stderr_capture capture(dir.path / "stderr.txt");
    core::alert_router router(cfg, box, fast_options());
    router.start();
    const bool done = wait_until([&] { return box.pending_count() == 0; });
    router.stop();
    text = capture.finish();
    REQUIRE(done);
  }
  INFO(text);
  CHECK(text.find("warning alert trigger " + rows[0].fingerprint +
                  ": training.collapse OPEN (run run-7): rollback, critical: variance fell below "
                  "5% of its baseline; evidence: variance=0.012, baseline=0.31; runbook "
                  "https://runbooks.example/lw.md#training.collapse\n") != std::string::npos);
  CHECK(box.entries().at(0).delivered_via == "log");
}

TEST_CASE("send_test delivers a test alert to a local sink and refuses unknown sinks", "[alerts]") {
  temp_dir dir;
  const auto file = dir.path / "alerts.jsonl";
  const auto cfg = file_sink_config(file);
  memory_alert_outbox box;
  core::alert_router router(cfg, box, fast_options());  // not started: works all the same
  auto report = router.send_test("archive");
  REQUIRE(report.ok());
  CHECK(report->delivered);
  CHECK(report->http_status == 0);
  CHECK(report->error.empty());
  const auto lines = read_json_lines(file);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0]["kind"] == "test");
  CHECK(lines[0]["summary"] == "loopwarden test alert from box to sink 'archive'");
  CHECK(box.pending_count() == 0);
  auto missing = router.send_test("nope");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code() == sdk::status_code::not_found);
  CHECK(missing.error().message() == "no alert sink named 'nope' (configured: archive)");
}

TEST_CASE("breaker globs follow fnmatch rules", "[alerts]") {
  struct row {
    const char* pattern;
    const char* name;
    bool match;
  };
  for (const auto& r : std::vector<row>{{"*", "a.b", true},
                                        {"training.*", "training.collapse", true},
                                        {"training.*", "agent.drift", false},
                                        {"agent.?rift", "agent.drift", true},
                                        {"agent.[dx]rift", "agent.xrift", true},
                                        {"agent.drift", "agent.drift.x", false}}) {
    INFO(r.pattern << " vs " << r.name);
    CHECK(core::breaker_glob_match(r.pattern, r.name) == r.match);
  }
}
