#pragma once
// gate_client: asks the sidecar's gate "may I run this action?" (docs/wire-protocol.md, "Gate")
// and always comes back with an answer: the sidecar's, or, when it does not answer in time,
// deny (or allow, when configured).
//
//   auto gate = loopwarden::client::gate_client::create({.endpoint = gate_endpoint});
//   if (!gate) { log(gate.error().message()); return; }
//   auto d = (*gate)->ask(action);
//   if (!d.allowed()) { report(d.reason, d.alternative); return; }

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <loopwarden/v1/agent.pb.h>
#include <loopwarden/status.hpp>
#include <loopwarden/types.hpp>

namespace loopwarden::client {

// What ask() answers when the sidecar does not: deny (fail closed, the default) or allow.
enum class gate_timeout_policy { deny, allow };

// What gate_client::create() needs; only endpoint has no usable default.
// Thread-safety: a value type.
struct gate_client_options {
  std::string endpoint{};                   // the sidecar's gate endpoint, ipc:// or tcp://
  std::string source = "host";              // the asking producer, sent with every request
  std::string run_id{};                     // sent with every request
  std::chrono::milliseconds timeout{1000};  // how long ask() waits by default
  gate_timeout_policy on_timeout = gate_timeout_policy::deny;
};

// The answer to one request. Thread-safety: a value type.
struct gate_decision {
  sdk::gate_verdict verdict = sdk::gate_verdict::deny;
  std::string reason;       // plain explanation; on timeout "sidecar did not answer within N ms"
  std::string rule_id;      // the rule that decided, e.g. "shell.rm_recursive_outside_workspace";
                            // "client.timeout" when the sidecar did not answer
  std::string monitor;      // the monitor that decided
  std::string alternative;  // a safer way to do the same thing, where one exists
  std::string approval_id;  // for require_approval: the pending approval's id
  std::string request_id;   // the id this client gave the request
  bool timed_out = false;   // no answer in time (or the request could not be sent): the verdict
                            // is on_timeout's, not the sidecar's

  bool allowed() const { return verdict == sdk::gate_verdict::allow; }
};

// Counters since creation. Thread-safety: a value type.
struct gate_client_stats {
  std::uint64_t asked = 0;
  std::uint64_t answered = 0;
  std::uint64_t timed_out = 0;      // requests that got no answer in time (or were not sent)
  std::uint64_t stale_replies = 0;  // replies to other (earlier, given-up) requests, discarded
  std::uint64_t malformed = 0;      // replies that were not [empty][GateDecision], discarded
  std::uint64_t reconnects = 0;     // socket reopened after a timeout
};

// A DEALER socket on the gate. Each request gets a fresh request_id; replies carrying another
// id are stale and discarded. After a timeout the socket is closed and reopened, so a late
// reply cannot be taken for the answer to a later request.
// Thread-safety: not thread-safe, and the socket stays on one thread: use one gate_client per
// thread (they are cheap: one socket each).
class gate_client {
 public:
  // Connects to options.endpoint (succeeds before the sidecar is up). Errors: invalid_argument
  // naming the endpoint (bad scheme, rejected by ZeroMQ) or a bad timeout; io_error from ZeroMQ.
  static sdk::result<std::unique_ptr<gate_client>> create(gate_client_options options);

  // Closes the socket at once (linger 0): an unanswered request is abandoned.
  ~gate_client();
  gate_client(const gate_client&) = delete;
  gate_client& operator=(const gate_client&) = delete;

  // Asks about `action` and waits up to options().timeout for the answer. Never fails: without
  // an answer in time the decision is on_timeout's (deny by default), with timed_out set. A reply
  // without a verdict counts as deny.
  gate_decision ask(const v1::ActionRequest& action);
  // The same with its own timeout.
  gate_decision ask(const v1::ActionRequest& action, std::chrono::milliseconds timeout);
  // Asks again about an action that got require_approval, naming the approval: allow once a
  // human approved this same action (once), deny when they denied or it expired, and
  // require_approval again while nobody has decided. Poll it (e.g. every few seconds) to wait.
  gate_decision ask(const v1::ActionRequest& action, std::chrono::milliseconds timeout,
                    const std::string& approval_id);

  // Waits for a human's decision on an action that got require_approval: asks again with
  // `approval_id` every `poll` until the answer is allow (approved, for this same action, once)
  // or deny (denied, expired, or a monitor now refuses), or until `max_wait` has passed. Never
  // fails: past max_wait the answer is deny with rule_id "client.approval_timeout" and timed_out
  // set (fail closed; the approval stays pending, so asking again later with the same id still
  // gets the human's decision). Unanswered polls (sidecar down) are retried, never taken for a
  // decision. Blocks the calling thread.
  gate_decision wait_for_approval(const v1::ActionRequest& action, const std::string& approval_id,
                                  std::chrono::milliseconds max_wait,
                                  std::chrono::milliseconds poll = std::chrono::seconds(1));
  // ask(action), then wait_for_approval when the answer is require_approval. The decision's
  // approval_id names the approval either way.
  gate_decision ask_and_wait(const v1::ActionRequest& action, std::chrono::milliseconds max_wait,
                             std::chrono::milliseconds poll = std::chrono::seconds(1));

  gate_client_stats stats() const;
  const gate_client_options& options() const;

 private:
  struct impl;
  explicit gate_client(std::unique_ptr<impl> state);
  std::unique_ptr<impl> impl_;
};

}  // namespace loopwarden::client
