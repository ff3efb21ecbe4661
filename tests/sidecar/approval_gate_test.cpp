// The approval flow at the gate, against a real SQLite state store in a temporary directory.
#include <catch2/catch.hpp>

#include <stdlib.h>

#include <filesystem>
#include <string>

#include <loopwarden/core/sqlite_store.hpp>

#include "../../sidecar/src/approval_gate.hpp"

using namespace loopwarden;
namespace fs = std::filesystem;

namespace {

struct temp_store {
  fs::path dir;
  std::unique_ptr<core::sqlite_state_store> store;
  temp_store() {
    std::string pattern = (fs::temp_directory_path() / "lw-approval-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    dir = pattern;
    auto s = core::sqlite_state_store::open(dir / "loopwarden.db");
    REQUIRE(s.ok());
    store = std::move(*s);
  }
  ~temp_store() {
    store.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

v1::GateRequest request(const std::string& command, const std::string& approval_id = "") {
  v1::GateRequest r;
  r.set_request_id("q");
  r.set_source("agent/1");
  r.set_run_id("run-7");
  r.mutable_action()->set_action_id("a-" + approval_id);  // differs between asks: not digested
  r.mutable_action()->set_command(command);
  r.set_approval_id(approval_id);
  return r;
}

v1::GateDecision verdict(v1::GateVerdict v) {
  v1::GateDecision d;
  d.set_verdict(v);
  d.set_monitor("destructive");
  d.set_reason("deletes outside the workspace");
  return d;
}

constexpr std::int64_t t0 = 1'700'000'000'000'000'000;

}  // namespace

using sidecar::detail::approval_policy;
using sidecar::detail::settle_approval;

TEST_CASE("require_approval creates a pending approval the host can wait on",
          "[sidecar][approvals]") {
  temp_store t;
  auto d = settle_approval(*t.store, request("rm -rf /data"),
                           verdict(v1::GATE_VERDICT_REQUIRE_APPROVAL), t0, approval_policy{});
  CHECK(d.verdict() == v1::GATE_VERDICT_REQUIRE_APPROVAL);
  REQUIRE_FALSE(d.approval_id().empty());
  auto a = t.store->get_approval(d.approval_id());
  REQUIRE(a.ok());
  CHECK(a->state == core::approval_state::pending);
  CHECK(a->monitor == "destructive");
  CHECK(a->run_id == "run-7");
  CHECK(a->requested_by == "agent/1");
  CHECK(a->summary.find("rm -rf /data") != std::string::npos);
  CHECK(a->expires_unix_nano == t0 + 3'600'000'000'000);  // the default ttl: one hour

  SECTION("still pending: asked again, the same id, still waiting") {
    auto again = settle_approval(*t.store, request("rm -rf /data", d.approval_id()),
                                 verdict(v1::GATE_VERDICT_REQUIRE_APPROVAL), t0 + 1,
                                 approval_policy{});
    CHECK(again.verdict() == v1::GATE_VERDICT_REQUIRE_APPROVAL);
    CHECK(again.approval_id() == d.approval_id());
  }
  SECTION("approved: allowed exactly once") {
    REQUIRE(t.store->decide_approval(d.approval_id(), true, "unix:alice", "backup verified", t0 + 5)
                .ok());
    auto yes = settle_approval(*t.store, request("rm -rf /data", d.approval_id()),
                               verdict(v1::GATE_VERDICT_REQUIRE_APPROVAL), t0 + 6,
                               approval_policy{});
    CHECK(yes.verdict() == v1::GATE_VERDICT_ALLOW);
    CHECK(yes.reason() == "approved by unix:alice: backup verified");
    auto twice = settle_approval(*t.store, request("rm -rf /data", d.approval_id()),
                                 verdict(v1::GATE_VERDICT_REQUIRE_APPROVAL), t0 + 7,
                                 approval_policy{});
    CHECK(twice.verdict() == v1::GATE_VERDICT_DENY);
    CHECK(twice.reason().find("already used") != std::string::npos);
  }
  SECTION("approved, but for another action: denied") {
    REQUIRE(t.store->decide_approval(d.approval_id(), true, "unix:alice", "ok", t0 + 5).ok());
    auto other = settle_approval(*t.store, request("rm -rf /", d.approval_id()),
                                 verdict(v1::GATE_VERDICT_REQUIRE_APPROVAL), t0 + 6,
                                 approval_policy{});
    CHECK(other.verdict() == v1::GATE_VERDICT_DENY);
    CHECK(other.rule_id() == "loopwarden.approval_mismatch");
  }
  SECTION("approved, but a monitor now denies outright: the denial wins") {
    REQUIRE(t.store->decide_approval(d.approval_id(), true, "unix:alice", "ok", t0 + 5).ok());
    auto no = settle_approval(*t.store, request("rm -rf /data", d.approval_id()),
                              verdict(v1::GATE_VERDICT_DENY), t0 + 6, approval_policy{});
    CHECK(no.verdict() == v1::GATE_VERDICT_DENY);
    // And the approval was not used up by that refusal.
    CHECK(t.store->get_approval(d.approval_id())->state == core::approval_state::approved);
  }
  SECTION("denied: the host is told who and why") {
    REQUIRE(t.store->decide_approval(d.approval_id(), false, "unix:bob", "no backup", t0 + 5)
                .ok());
    auto no = settle_approval(*t.store, request("rm -rf /data", d.approval_id()),
                              verdict(v1::GATE_VERDICT_REQUIRE_APPROVAL), t0 + 6,
                              approval_policy{});
    CHECK(no.verdict() == v1::GATE_VERDICT_DENY);
    CHECK(no.reason() == "denied by unix:bob: no backup");
  }
  SECTION("nobody decided in time: expired, denied") {
    auto late = settle_approval(*t.store, request("rm -rf /data", d.approval_id()),
                                verdict(v1::GATE_VERDICT_REQUIRE_APPROVAL),
                                t0 + 3'600'000'000'000, approval_policy{});
    CHECK(late.verdict() == v1::GATE_VERDICT_DENY);
    CHECK(late.rule_id() == "loopwarden.approval_expired");
    CHECK(t.store->get_approval(d.approval_id())->state == core::approval_state::expired);
  }
}

TEST_CASE("approval ids the store does not know are denied, and allow and deny pass through",
          "[sidecar][approvals]") {
  temp_store t;
  auto unknown = settle_approval(*t.store, request("rm x", "ap-999999"),
                                 verdict(v1::GATE_VERDICT_REQUIRE_APPROVAL), t0, approval_policy{});
  CHECK(unknown.verdict() == v1::GATE_VERDICT_DENY);
  CHECK(unknown.rule_id() == "loopwarden.approval_unknown");
  auto allow = settle_approval(*t.store, request("ls"), verdict(v1::GATE_VERDICT_ALLOW), t0,
                               approval_policy{});
  CHECK(allow.verdict() == v1::GATE_VERDICT_ALLOW);
  CHECK(allow.approval_id().empty());
  auto deny = settle_approval(*t.store, request("rm -rf /"), verdict(v1::GATE_VERDICT_DENY), t0,
                              approval_policy{});
  CHECK(deny.verdict() == v1::GATE_VERDICT_DENY);
  CHECK(t.store->list_approvals(false)->empty());  // nothing was created for either
}

TEST_CASE("the action digest ignores the host's action id and nothing else",
          "[sidecar][approvals]") {
  using sidecar::detail::action_digest;
  auto a = request("rm -rf /data");
  auto b = a;
  b.mutable_action()->set_action_id("another id");
  CHECK(action_digest(a) == action_digest(b));
  b.mutable_action()->set_working_directory("/tmp");
  CHECK(action_digest(a) != action_digest(b));
  auto c = a;
  c.set_run_id("run-8");
  CHECK(action_digest(a) != action_digest(c));
  CHECK(action_digest(a).size() == 64);
}
