// `loopwarden check -- COMMAND...`: the gate for shell scripts and CI steps.

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <ostream>

#include <nlohmann/json.hpp>

#include <loopwarden/core/config.hpp>
#include <loopwarden/sidecar/cli.hpp>

#include "gate_commands.hpp"

namespace loopwarden::sidecar::detail {
namespace {

std::string current_directory() {
  std::error_code ec;
  const auto p = std::filesystem::current_path(ec);
  return ec ? std::string() : p.string();
}

std::string_view verdict_name(sdk::gate_verdict v) { return sdk::to_string(v); }

}  // namespace

client::gate_decision ask_gate(const gate_command_options& options, const v1::ActionRequest& action,
                               bool& reached) {
  reached = false;
  std::string endpoint = options.gate;
  if (endpoint.empty()) {
    auto cfg = options.config_file.empty() ? core::default_config()
                                           : core::load_config_file(options.config_file);
    if (!cfg.ok()) {
      client::gate_decision d;
      d.verdict = sdk::gate_verdict::deny;
      d.rule_id = "loopwarden.config";
      d.reason = cfg.error().message();
      return d;
    }
    if (!options.state_dir.empty()) core::override_state_dir(*cfg, options.state_dir);
    endpoint = cfg->transport.gate;
  }
  client::gate_client_options o;
  o.endpoint = endpoint;
  o.source = "loopwarden-cli";
  o.timeout = std::chrono::milliseconds(std::max(1, options.timeout_ms));
  o.on_timeout = client::gate_timeout_policy::deny;
  auto gate = client::gate_client::create(o);
  if (!gate.ok()) {
    client::gate_decision d;
    d.verdict = sdk::gate_verdict::deny;
    d.rule_id = "client.unreachable";
    d.reason = gate.error().message();
    d.timed_out = true;
    return d;
  }
  client::gate_decision d =
      options.wait_seconds > 0
          ? (*gate)->ask_and_wait(action, std::chrono::milliseconds(static_cast<std::int64_t>(
                                              options.wait_seconds * 1000.0)))
          : (*gate)->ask(action);
  reached = !(d.timed_out && d.rule_id == "client.timeout");
  if (d.rule_id == "client.approval_timeout") {
    // Nobody decided within --wait: still pending, which is not a no.
    d.verdict = sdk::gate_verdict::require_approval;
  }
  return d;
}

int run_check(const gate_command_options& options, const std::string& kind,
              const std::vector<std::string>& words, bool json, std::ostream& out,
              std::ostream& err) {
  if (words.empty()) {
    err << "loopwarden check: nothing to check: loopwarden check -- COMMAND...\n";
    return exit_error;
  }
  v1::ActionRequest action;
  action.set_kind(kind == "sql"   ? v1::ACTION_KIND_SQL
                  : kind == "git" ? v1::ACTION_KIND_GIT
                                  : v1::ACTION_KIND_SHELL);
  action.set_tool("loopwarden check");
  if (words.size() == 1) {
    action.set_command(words[0]);  // a whole shell line, as a script would write it
  } else {
    for (const auto& w : words) action.add_argv(w);
  }
  const std::string cwd = current_directory();
  action.set_working_directory(cwd);
  action.mutable_scope()->set_workspace_root(options.workspace.empty() ? cwd : options.workspace);
  action.set_environment(options.environment);
  action.set_session_id(options.session);
  action.set_agent_id("loopwarden-check");
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') {
    auto* kv = action.add_attributes();
    kv->set_key("home");
    kv->set_value(home);
  }
  bool reached = false;
  client::gate_decision d = ask_gate(options, action, reached);
  if (!reached && d.rule_id != "loopwarden.config" && options.on_unreachable == "allow") {
    d.verdict = sdk::gate_verdict::allow;
    d.reason = "the gate did not answer (" + d.reason + "); allowed by --on-unreachable allow";
  }
  if (json) {
    nlohmann::json j = {{"verdict", std::string(verdict_name(d.verdict))},
                        {"rule_id", d.rule_id},
                        {"reason", d.reason},
                        {"alternative", d.alternative},
                        {"approval_id", d.approval_id},
                        {"monitor", d.monitor},
                        {"reached", reached}};
    out << j.dump() << "\n";
  } else {
    out << verdict_name(d.verdict);
    if (!d.rule_id.empty()) out << " (" << d.rule_id << ")";
    if (!d.reason.empty()) out << ": " << d.reason;
    out << "\n";
    if (!d.alternative.empty()) out << "instead: " << d.alternative << "\n";
    if (d.verdict == sdk::gate_verdict::require_approval && !d.approval_id.empty()) {
      out << "waiting for approval " << d.approval_id << ": an operator runs `loopwarden approve "
          << d.approval_id << " --reason ...` (or deny); check again with --wait SECONDS\n";
    }
  }
  if (d.rule_id == "loopwarden.config") {
    err << "loopwarden check: " << d.reason << "\n";
    return exit_error;
  }
  if (!reached && options.on_unreachable != "allow") return exit_error;
  switch (d.verdict) {
    case sdk::gate_verdict::allow:
      return exit_ok;
    case sdk::gate_verdict::deny:
      return exit_found;
    case sdk::gate_verdict::require_approval:
      return 3;
  }
  return exit_found;
}

}  // namespace loopwarden::sidecar::detail
