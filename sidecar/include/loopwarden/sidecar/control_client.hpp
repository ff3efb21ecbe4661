#pragma once
// The operator's side of the control socket, used by `loopwarden status|explain|ack|reset|halt|
// reload`. One request, one reply, with a timeout.

#include <chrono>
#include <string>

#include <loopwarden/v1/control.pb.h>
#include <loopwarden/core/status.hpp>

namespace loopwarden::sidecar {

// CURVE credentials for a tcp control socket: the sidecar's public key and the operator's own
// secret key (its public key is derived from it, and must be on the sidecar's allowlist).
struct curve_credentials {
  std::string server_public_key;  // 40-character Z85
  std::string secret_key;         // 40-character Z85
};

// Sends `request` to the control socket at `endpoint` and waits up to `timeout` for the reply.
// Errors: io_error naming the endpoint when it cannot connect or send; timeout when the sidecar
// does not answer (it may not be running, or it refused our CURVE key); parse_error for a reply
// that is not a ControlResponse; invalid_argument for malformed keys.
// Thread-safety: safe from any thread (each call has its own socket).
core::result<v1::ControlResponse> send_control(const std::string& endpoint,
                                               v1::ControlRequest request,
                                               std::chrono::milliseconds timeout,
                                               const curve_credentials* curve = nullptr);

// A new CURVE key pair, as 40-character Z85 strings. Errors: internal when libzmq lacks CURVE.
struct curve_keypair {
  std::string public_key;
  std::string secret_key;
};
core::result<curve_keypair> make_curve_keypair();

// Reads a key file: the first line holds a 40-character Z85 key (later lines are comments).
// Errors name the file.
core::result<std::string> read_key_file(const std::string& path);

}  // namespace loopwarden::sidecar
