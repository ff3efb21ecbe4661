// Alerts for actions waiting for a human's approval (make_approval_alerts).

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <loopwarden/core/alert_config.hpp>
#include <loopwarden/core/alert_router.hpp>
#include <loopwarden/core/config.hpp>
#include <loopwarden/core/sqlite_store.hpp>

using namespace loopwarden;

namespace {

core::alerts_config alerts_from(const std::string& yaml_alerts) {
  auto cfg = core::parse_config("version: 1\nalerts:\n" + yaml_alerts, "alerts.yaml");
  REQUIRE(cfg.ok());
  auto a = core::parse_alerts_config(cfg->root["alerts"]);
  INFO((a.ok() ? std::string() : a.error().message()));
  REQUIRE(a.ok());
  return *a;
}

core::approval pending() {
  core::approval a;
  a.id = "ap-000042";
  a.monitor = "destructive_action";
  a.run_id = "run-7";
  a.requested_by = "agent/claude";
  a.summary = "git reset --hard — discards uncommitted work";
  a.created_unix_nano = 1'700'000'000'000'000'000LL;
  a.expires_unix_nano = a.created_unix_nano + 3'600'000'000'000LL;
  return a;
}

}  // namespace

TEST_CASE("approval alerts go to the sinks that route approval.<monitor>", "[core][alerts]") {
  const auto config = alerts_from(R"(  sinks:
    - {name: log, type: log}
    - {name: pager, type: webhook, url: "http://127.0.0.1:9/hook"}
  routes:
    - {breakers: ["approval.*"], sinks: [pager]}
    - {breakers: ["training.*"], sinks: [log]}
)");
  const auto rows = core::make_approval_alerts(config, "host:/state", pending());
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].sink == "pager");
  CHECK(rows[0].kind == "approval");
  const auto p = nlohmann::json::parse(rows[0].payload_json);
  CHECK(p["breaker"] == "approval.destructive_action");
  CHECK(p["state"] == "pending");
  CHECK(p["action"] == "require_approval");
  CHECK(p["status"] == "firing");
  CHECK(p["summary"].get<std::string>().find("ap-000042") != std::string::npos);
  bool has_approve = false;
  for (const auto& kv : p["evidence"]) {
    if (kv["key"] == "approve") {
      has_approve = kv["value"].get<std::string>().starts_with("loopwarden approve ap-000042");
    }
  }
  CHECK(has_approve);
  CHECK(p["runbook_url"].get<std::string>().ends_with("#approvals"));
}

TEST_CASE("approval alerts follow the default route and are unique per approval",
          "[core][alerts]") {
  const auto config = core::default_alerts_config();
  const auto a = core::make_approval_alerts(config, "host:/state", pending());
  REQUIRE(a.size() == 1);
  CHECK(a[0].sink == "log");
  auto other = pending();
  other.id = "ap-000043";
  const auto b = core::make_approval_alerts(config, "host:/state", other);
  REQUIRE(b.size() == 1);
  CHECK(a[0].fingerprint != b[0].fingerprint);
  // The same approval planned twice (a retry) has the same fingerprint: receivers deduplicate.
  CHECK(core::make_approval_alerts(config, "host:/state", pending())[0].fingerprint ==
        a[0].fingerprint);
  // A route that never matches approvals sends them nowhere.
  const auto only_training = alerts_from(R"(  sinks: [{name: log, type: log}]
  routes: [{breakers: ["training.*"], sinks: [log]}]
)");
  CHECK(core::make_approval_alerts(only_training, "host:/state", pending()).empty());
  // Severity filters apply: approvals are warnings.
  const auto critical_only = alerts_from(R"(  sinks: [{name: log, type: log}]
  routes: [{min_severity: critical, sinks: [log]}]
)");
  CHECK(core::make_approval_alerts(critical_only, "host:/state", pending()).empty());
}

TEST_CASE("a decided or expired approval resolves the alert that asked for it", "[core][alerts]") {
  const auto config = alerts_from(R"(  sinks:
    - {name: pager, type: webhook, url: "http://127.0.0.1:9/hook"}
  routes:
    - {breakers: ["approval.*"], sinks: [pager]}
)");
  const auto asked = core::make_approval_alerts(config, "host:/state", pending());
  REQUIRE(asked.size() == 1);
  struct row {
    core::approval_state state;
    std::string decided_by;
    std::string reason;
    std::string resolution;
  };
  const std::vector<row> rows = {
      {core::approval_state::approved, "alice", "backup verified",
       "approved by alice: backup verified"},
      {core::approval_state::denied, "bob", "", "denied by bob"},
      {core::approval_state::expired, "", "", "expired undecided"},
  };
  for (const auto& r : rows) {
    INFO(r.resolution);
    auto a = pending();
    a.state = r.state;
    a.decided_by = r.decided_by;
    a.reason = r.reason;
    a.decided_unix_nano = a.created_unix_nano + 60'000'000'000LL;
    const auto out = core::make_approval_alerts(config, "host:/state", a);
    REQUIRE(out.size() == 1);
    CHECK(out[0].sink == "pager");
    CHECK(out[0].kind == "resolve");  // the router orders it behind its trigger
    CHECK(out[0].fingerprint == asked[0].fingerprint);
    CHECK(out[0].created_unix_nano == a.decided_unix_nano);
    const auto p = nlohmann::json::parse(out[0].payload_json);
    CHECK(p["status"] == "resolved");
    CHECK(p["kind"] == "approval");  // Alertmanager's alertname must match the firing one
    CHECK(p["fingerprint"] == asked[0].fingerprint);
    CHECK(p["resolution"] == r.resolution);
    CHECK(p["summary"] == "approval ap-000042 " + r.resolution + ": " + a.summary);
    CHECK(p["state"] == std::string(core::to_string(r.state)));
  }
  // Used: the host acted on an approval already resolved when it was decided.
  auto used = pending();
  used.state = core::approval_state::used;
  CHECK(core::make_approval_alerts(config, "host:/state", used).empty());
}
