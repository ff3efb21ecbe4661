#pragma once
// The operator's side of the control socket, used by `loopwarden status|explain|ack|reset|halt|
// reload`. One request, one reply, with a timeout.

#include <chrono>
#include <string>

#include <loopwarden/v1/control.pb.h>
#include <loopwarden/core/status.hpp>

namespace loopwarden::sidecar {

// Sends `request` to the control socket at `endpoint` and waits up to `timeout` for the reply.
// Errors: io_error naming the endpoint when it cannot connect or send; timeout when the sidecar
// does not answer (it may not be running); parse_error for a reply that is not a ControlResponse.
// Thread-safety: safe from any thread (each call has its own socket).
core::result<v1::ControlResponse> send_control(const std::string& endpoint,
                                               v1::ControlRequest request,
                                               std::chrono::milliseconds timeout);

}  // namespace loopwarden::sidecar
