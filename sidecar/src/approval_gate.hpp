#pragma once
// Human approval at the gate. When the monitors answer REQUIRE_APPROVAL, the sidecar stores a
// pending approval (state store, audited) and tells the host its id; the host waits and re-asks
// the gate with that id (GateRequest.approval_id). An operator decides with `loopwarden approve`
// or `deny`. On the re-ask:
//   - approved, for the same action (digest of the request without its action_id): ALLOW, once;
//     the approval is then used up, and a third ask with the same id is denied;
//   - denied, expired or used: DENY, with who decided and why;
//   - still pending: REQUIRE_APPROVAL again, with the same id;
//   - a monitor that now DENIES outright still wins: an approval lifts "ask a human", nothing else.
// Anything the store cannot do fails closed (DENY, with the store's error as the reason).

#include <chrono>
#include <cstdint>
#include <string>

#include <loopwarden/v1/gate.pb.h>
#include <loopwarden/core/sqlite_store.hpp>

namespace loopwarden::sidecar::detail {

struct approval_policy {
  std::chrono::nanoseconds ttl = std::chrono::hours(1);  // a pending approval expires after this
};

// The digest that ties an approval to one action: SHA-256 (hex) of the run id, the source and
// the ActionRequest without its action_id, deterministically serialised.
std::string action_digest(const v1::GateRequest& request);

// Applies the approval rules above to the monitors' decision. Runs on the engine thread.
v1::GateDecision settle_approval(core::sqlite_state_store& store, const v1::GateRequest& request,
                                 v1::GateDecision decided, std::int64_t now_unix_nano,
                                 const approval_policy& policy);

}  // namespace loopwarden::sidecar::detail
