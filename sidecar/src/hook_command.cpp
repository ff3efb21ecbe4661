// `loopwarden hook claude-code`: a Claude Code PreToolUse hook that asks the gate.
//
// Claude Code runs the hook with the tool call as JSON on stdin:
//   {"session_id": "...", "cwd": "/work/app", "hook_event_name": "PreToolUse",
//    "tool_name": "Bash", "tool_input": {"command": "rm -rf build"}, ...}
// and reads the decision as JSON on stdout (exit 0):
//   {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
//                           "permissionDecisionReason": "..."}}
// permissionDecision "deny" blocks the call and shows the reason to the model; "ask" shows it to
// the user in the permission prompt; "allow" skips the prompt (printed only with --grant: by
// default an allowed call goes through Claude Code's own permission rules as usual).

#include <cstdlib>
#include <istream>
#include <iterator>
#include <ostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include <loopwarden/sidecar/cli.hpp>

#include "gate_commands.hpp"

namespace loopwarden::sidecar::detail {
namespace {

using json = nlohmann::json;

void print_decision(std::ostream& out, std::string_view decision, const std::string& reason) {
  json j = {{"hookSpecificOutput",
             {{"hookEventName", "PreToolUse"},
              {"permissionDecision", std::string(decision)},
              {"permissionDecisionReason", reason}}}};
  out << j.dump() << "\n";
}

std::string str(const json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The gate's action for one tool call; false when the tool changes nothing the gate judges.
bool action_for(const json& hook, v1::ActionRequest& a) {
  const std::string tool = str(hook, "tool_name");
  const json input = hook.contains("tool_input") ? hook["tool_input"] : json::object();
  a.set_tool(tool);
  if (tool == "Bash") {
    a.set_kind(v1::ACTION_KIND_SHELL);
    a.set_command(str(input, "command"));
    return true;
  }
  if (tool == "Write" || tool == "Edit" || tool == "MultiEdit" || tool == "NotebookEdit") {
    a.set_kind(v1::ACTION_KIND_FILE);
    a.set_file_operation(v1::FILE_OPERATION_WRITE);
    std::string path = str(input, "file_path");
    if (path.empty()) path = str(input, "notebook_path");
    a.set_target(path);
    return !path.empty();
  }
  return false;  // Read, Grep, Glob, WebFetch, ...: nothing to gate
}

}  // namespace

int run_claude_code_hook(const gate_command_options& options, bool grant, std::istream& in,
                         std::ostream& out, std::ostream& err) {
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  json hook;
  try {
    hook = json::parse(text);
  } catch (const json::exception& e) {
    err << "loopwarden hook claude-code: the hook input is not JSON: " << e.what() << "\n";
    print_decision(out, "deny", "loopwarden could not read the tool call, so it is refused");
    return exit_ok;
  }
  v1::ActionRequest action;
  if (!action_for(hook, action)) return exit_ok;  // no opinion: Claude Code decides as usual
  const std::string cwd = str(hook, "cwd");
  action.set_working_directory(cwd);
  std::string workspace = options.workspace;
  if (workspace.empty()) {
    if (const char* dir = std::getenv("CLAUDE_PROJECT_DIR"); dir != nullptr && dir[0] == '/') {
      workspace = dir;
    }
  }
  action.mutable_scope()->set_workspace_root(workspace.empty() ? cwd : workspace);
  action.set_agent_id("claude-code");
  action.set_session_id(!options.session.empty() ? options.session : str(hook, "session_id"));
  action.set_environment(options.environment);
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') {
    auto* kv = action.add_attributes();
    kv->set_key("home");
    kv->set_value(home);
  }
  if (const std::string id = str(hook, "tool_use_id"); !id.empty()) action.set_action_id(id);

  bool reached = false;
  const client::gate_decision d = ask_gate(options, action, reached);
  if (!reached || d.rule_id == "loopwarden.config") {
    const std::string why = "loopwarden's gate did not answer (" + d.reason + ")";
    if (options.on_unreachable == "allow") {
      if (grant) print_decision(out, "allow", why + "; allowed by --on-unreachable allow");
      return exit_ok;
    }
    if (options.on_unreachable == "ask") {
      print_decision(out, "ask", why + "; asking you instead");
      return exit_ok;
    }
    print_decision(out, "deny", why + "; refused (fail closed)");
    return exit_ok;
  }
  std::string reason = "loopwarden " + d.rule_id + ": " + d.reason;
  if (!d.alternative.empty()) reason += " Instead: " + d.alternative;
  switch (d.verdict) {
    case sdk::gate_verdict::allow:
      if (grant) print_decision(out, "allow", reason);
      return exit_ok;
    case sdk::gate_verdict::deny:
      print_decision(out, "deny", reason);
      return exit_ok;
    case sdk::gate_verdict::require_approval:
      // Not decided by on-call within --wait: the person at the terminal decides, told which
      // approval is pending for on-call too.
      if (!d.approval_id.empty()) {
        reason += " (approval " + d.approval_id + " is pending for on-call: loopwarden approve " +
                  d.approval_id + ")";
      }
      print_decision(out, "ask", reason);
      return exit_ok;
  }
  print_decision(out, "deny", reason);
  return exit_ok;
}

}  // namespace loopwarden::sidecar::detail
