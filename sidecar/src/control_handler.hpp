#pragma once
// The control commands (status, explain, ack, reset, force-open, reload, approvals, alert test):
// what the daemon does with one decoded ControlRequest. No sockets: the control service hands it
// each request, and the fuzz target (tests/fuzz/control_fuzz.cpp) drives it directly.

#include <cstdint>
#include <functional>
#include <string>

#include <loopwarden/v1/control.pb.h>
#include <loopwarden/core/alert_router.hpp>
#include <loopwarden/core/breaker_registry.hpp>
#include <loopwarden/core/sqlite_store.hpp>
#include <loopwarden/core/status.hpp>

namespace loopwarden::sidecar::detail {

// What the commands reach beyond the registry, the store and the router: the daemon's own status,
// its reload, its clock, and its approval alerts.
struct control_hooks {
  std::function<v1::SidecarStatus()> status;  // the figures added to every successful answer
  std::function<core::status()> reload;       // re-reads the config (ReloadRequest)
  std::function<std::int64_t()> now_unix_nano;
  // An approval was decided or expired by a command. The store committed the resolve of its page
  // with the decision (set_approval_alert_planner); the daemon wakes its alert router.
  std::function<void(const std::string& approval_id)> approval_settled;
};

// Thread-safety: handle() may be called from one thread at a time (the control thread); what it
// reaches (registry, store, router, hooks) is itself safe from any thread.
class control_handler {
 public:
  // Borrows `registry`, `store` and `router`, which must outlive the handler. `config_source`
  // names the config in the reload answer. Every hook must be set.
  control_handler(core::breaker_registry& registry, core::sqlite_state_store& store,
                  core::alert_router& router, std::string config_source, control_hooks hooks);

  // Answers one request as `operator_id` (who sent it, from the channel, never the request).
  // Never throws for any request: a refused command is ok=false with the reason in error.
  v1::ControlResponse handle(const v1::ControlRequest& request, const std::string& operator_id);

 private:
  core::breaker_registry& registry_;
  core::sqlite_state_store& store_;
  core::alert_router& router_;
  const std::string config_source_;
  const control_hooks hooks_;
};

}  // namespace loopwarden::sidecar::detail
