#pragma once
// `loopwarden check -- COMMAND...` and `loopwarden hook claude-code`: the gate from a shell
// script and from a Claude Code PreToolUse hook. Both ask the running sidecar's gate socket
// (docs/integrations.md): the sidecar's monitors decide, approvals are stored and alerted there,
// and operators decide them with `loopwarden approve/deny`.

#include <chrono>
#include <iosfwd>
#include <string>
#include <vector>

#include <loopwarden/v1/agent.pb.h>
#include <loopwarden/client/gate_client.hpp>

namespace loopwarden::sidecar::detail {

// What both commands share: where the gate is and how long to wait.
struct gate_command_options {
  std::string gate;         // explicit gate endpoint; else derived from the config
  std::string config_file;  // to find the gate endpoint (default: the embedded default)
  std::string state_dir;    // override of the config's state_dir
  int timeout_ms = 2000;    // one gate request
  double wait_seconds = 0;  // require_approval: wait this long for an operator's decision
  std::string on_unreachable = "deny";  // deny | allow (| ask, hook only)
  std::string session;      // the session id sent with the action
  std::string workspace;    // the declared workspace (default: the working directory)
  std::string environment;  // the environment the action acts on, if any
};

// Asks the gate about `action` (and, for require_approval with wait_seconds > 0, waits for the
// operator's decision). `reached` is false when the sidecar did not answer (the decision is then
// the client's fail-closed deny). Errors (a config that cannot be read): the decision is deny with
// rule_id "loopwarden.config" and the reason.
client::gate_decision ask_gate(const gate_command_options& options, const v1::ActionRequest& action,
                               bool& reached);

// `loopwarden check`: asks about one action and prints the answer. `words` are the command's
// words (one word: a whole shell line; several: an argv). `kind`: shell, sql or git.
// Exit status: 0 allow, 1 deny, 3 require_approval (not decided within --wait), 2 the gate
// could not be asked (unless --on-unreachable allow, then 0).
int run_check(const gate_command_options& options, const std::string& kind,
              const std::vector<std::string>& words, bool json, std::ostream& out,
              std::ostream& err);

// `loopwarden hook claude-code`: reads Claude Code's PreToolUse hook JSON from `in`, asks the
// gate about Bash commands and file writes, and prints Claude Code's hook decision JSON
// (hookSpecificOutput.permissionDecision: deny, ask, or allow with --grant; nothing for allow
// otherwise, so Claude Code's own permission rules still apply). Fails closed: unreadable input
// or an unreachable sidecar answer deny unless --on-unreachable says otherwise. Always exits 0
// when it printed a decision (Claude Code reads the JSON), 2 on bad usage.
int run_claude_code_hook(const gate_command_options& options, bool grant, std::istream& in,
                         std::ostream& out, std::ostream& err);

}  // namespace loopwarden::sidecar::detail
