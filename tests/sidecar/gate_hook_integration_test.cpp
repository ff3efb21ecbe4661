// `loopwarden hook claude-code` and `loopwarden check` end to end: the real binary against the
// real daemon running the destructive_action plugin, through the gate socket; approvals stored,
// alerted to on-call through the alert router, and decided with the control socket.

#include <catch2/catch.hpp>

#include <fstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "daemon.hpp"

using namespace loopwarden;
using namespace loopwarden::test;

namespace {

std::string gate_config() {
  return "version: 1\n"
         "log_level: info\n"
         "state_dir: @STATE@\n"
         "plugin_paths: [@BUNDLED_PLUGINS@]\n"
         "probation: 0\n"
         "transport:\n"
         "  heartbeat_interval: 50ms\n"
         "alerts:\n"
         "  sinks:\n"
         "    - {name: oncall, type: file, path: @DIR@/alerts.jsonl}\n"
         "  routes:\n"
         "    - {breakers: [\"approval.*\"], sinks: [oncall]}\n"
         "monitors:\n"
         "  - name: destructive_action\n"
         "    plugin: destructive_action\n";
}

// Writes a Claude Code PreToolUse hook input and returns its path.
std::string hook_input(const daemon_process& d, const std::string& name, const std::string& tool,
                       const nlohmann::json& tool_input) {
  const nlohmann::json j = {{"session_id", "sess-42"},
                            {"transcript_path", "/tmp/t.jsonl"},
                            {"cwd", "/home/dev/project"},
                            {"hook_event_name", "PreToolUse"},
                            {"tool_name", tool},
                            {"tool_input", tool_input},
                            {"tool_use_id", "toolu_" + name}};
  const std::string path = (d.dir() / (name + ".json")).string();
  std::ofstream(path) << j.dump();
  return path;
}

cli_result hook(const daemon_process& d, const std::string& input, const std::string& extra = "") {
  return run_loopwarden("hook claude-code --gate '" + d.gate() + "' " + extra + " < '" + input +
                            "'",
                        d.dir());
}

// The hook's decision: "" when it printed nothing (Claude Code decides as usual).
std::string decision_of(const cli_result& r) {
  if (r.out.find_first_not_of(" \n") == std::string::npos) return "";
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["hookSpecificOutput"]["hookEventName"] == "PreToolUse");
  return j["hookSpecificOutput"]["permissionDecision"].get<std::string>();
}

std::string reason_of(const cli_result& r) {
  return nlohmann::json::parse(r.out)["hookSpecificOutput"]["permissionDecisionReason"];
}

std::vector<v1::Approval> pending_approvals(const daemon_process& d) {
  v1::ControlRequest req;
  req.mutable_approvals()->set_all(false);
  auto r = d.control(req);
  REQUIRE(r.ok());
  return {r->approvals().begin(), r->approvals().end()};
}

}  // namespace

TEST_CASE("claude-code hook answers deny, ask or nothing through the real daemon",
          "[integration][sidecar][destructive_action]") {
  daemon_options o;
  o.config = gate_config();
  daemon_process d(o);

  auto r = hook(d, hook_input(d, "rm", "Bash", {{"command", "rm -rf /"}}));
  INFO(r.out << r.err);
  CHECK(r.code == 0);
  CHECK(decision_of(r) == "deny");
  CHECK(reason_of(r).find("fs.delete_system") != std::string::npos);

  r = hook(d, hook_input(d, "ls", "Bash", {{"command", "ls -la"}}));
  CHECK(r.code == 0);
  CHECK(decision_of(r).empty());  // allowed: Claude Code's own permission rules still apply
  r = hook(d, hook_input(d, "ls2", "Bash", {{"command", "ls -la"}}), "--grant");
  CHECK(decision_of(r) == "allow");

  // A read tool is not gated at all; a write outside the workspace is.
  r = hook(d, hook_input(d, "read", "Read", {{"file_path", "/etc/passwd"}}));
  CHECK(decision_of(r).empty());
  r = hook(d, hook_input(d, "write", "Write", {{"file_path", "/etc/hosts"}, {"content", "x"}}));
  CHECK(decision_of(r) == "ask");

  // require_approval: the user is asked, and the pending approval is alerted to on-call.
  r = hook(d, hook_input(d, "reset", "Bash", {{"command", "git reset --hard"}}));
  CHECK(decision_of(r) == "ask");
  CHECK(reason_of(r).find("git.reset_hard") != std::string::npos);
  CHECK(reason_of(r).find("ap-") != std::string::npos);
  const fs::path alerts = d.dir() / "alerts.jsonl";
  REQUIRE(wait_until(
      [&] {
        std::ifstream in(alerts);
        const std::string text((std::istreambuf_iterator<char>(in)), {});
        return text.find("approval.destructive_action") != std::string::npos &&
               text.find("git reset --hard") != std::string::npos;
      },
      10s));

  // Malformed input fails closed.
  const std::string junk = (d.dir() / "junk.json").string();
  std::ofstream(junk) << "{not json";
  r = hook(d, junk);
  CHECK(r.code == 0);
  CHECK(decision_of(r) == "deny");
}

TEST_CASE("claude-code hook waits for an operator's approval when told to",
          "[integration][sidecar][destructive_action]") {
  daemon_options o;
  o.config = gate_config();
  daemon_process d(o);
  const std::string input =
      hook_input(d, "clean", "Bash", {{"command", "git clean -fdx"}});
  cli_result waited;
  std::thread waiter([&] { waited = hook(d, input, "--wait 30 --grant"); });
  // The hook's request created a pending approval: an operator approves it.
  std::vector<v1::Approval> pending;
  REQUIRE(wait_until(
      [&] {
        pending = pending_approvals(d);
        return !pending.empty();
      },
      15s));
  REQUIRE(pending.size() == 1);
  v1::ControlRequest approve;
  approve.mutable_approval()->set_approval_id(pending[0].id());
  approve.mutable_approval()->set_approve(true);
  approve.mutable_approval()->set_note("scratch checkout, nothing to keep");
  auto decided = d.control(approve);
  REQUIRE(decided.ok());
  waiter.join();
  INFO(waited.out << waited.err);
  CHECK(waited.code == 0);
  CHECK(decision_of(waited) == "allow");
  CHECK(reason_of(waited).find("approved by") != std::string::npos);
}

TEST_CASE("claude-code hook fails closed when the sidecar is unreachable unless told otherwise",
          "[integration][sidecar][destructive_action]") {
  daemon_options o;
  o.config = gate_config();
  daemon_process d(o);
  const std::string input = hook_input(d, "ls", "Bash", {{"command", "ls"}});
  const std::string nowhere = "ipc://" + (d.dir() / "no-gate.sock").string();
  auto ask = [&](const std::string& extra) {
    return run_loopwarden("hook claude-code --timeout-ms 300 --gate '" + nowhere + "' " + extra +
                              " < '" + input + "'",
                          d.dir());
  };
  auto r = ask("");
  CHECK(r.code == 0);
  CHECK(decision_of(r) == "deny");
  CHECK(decision_of(ask("--on-unreachable ask")) == "ask");
  CHECK(decision_of(ask("--on-unreachable allow")).empty());
}

TEST_CASE("loopwarden check exits by the gate's verdict", "[integration][sidecar][destructive_action]") {
  daemon_options o;
  o.config = gate_config();
  daemon_process d(o);
  auto check = [&](const std::string& args) {
    return run_loopwarden("check --gate '" + d.gate() + "' " + args, d.dir());
  };
  auto r = check("-- 'rm -rf /'");
  INFO(r.out << r.err);
  CHECK(r.code == 1);
  CHECK(r.out.find("deny (fs.delete_system)") != std::string::npos);
  CHECK(check("-- ls -la").code == 0);
  r = check("-- git reset --hard");
  CHECK(r.code == 3);
  CHECK(r.out.find("waiting for approval ap-") != std::string::npos);
  r = check("--kind sql -- 'DROP DATABASE app'");
  CHECK(r.code == 1);
  r = check("--json -- 'curl -X DELETE https://api.example.com/x'");
  CHECK(r.code == 3);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["verdict"] == "require_approval");
  CHECK(j["rule_id"] == "http.write_not_allowed");
  // Unreachable: exit 2, or 0 when the script says so.
  const std::string nowhere = "ipc://" + (d.dir() / "no-gate.sock").string();
  CHECK(run_loopwarden("check --timeout-ms 200 --gate '" + nowhere + "' -- ls", d.dir()).code == 2);
  CHECK(run_loopwarden("check --timeout-ms 200 --on-unreachable allow --gate '" + nowhere +
                           "' -- ls",
                       d.dir())
            .code == 0);
}
