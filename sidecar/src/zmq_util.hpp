#pragma once
// ZeroMQ plumbing shared by the sidecar's sockets: the process's one context, the one place where
// zmq errors become statuses, and preparing ipc directories with the right permissions.

#include <sys/types.h>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include <loopwarden/core/status.hpp>

namespace loopwarden::sidecar::detail {

// The process's ZeroMQ context (one per process), created on first use. Thread-safe.
zmq::context_t& zmq_context();

// "can't <what> (<endpoint>): <zmq's reason>" as an io_error.
core::status zmq_failure(const zmq::error_t& e, std::string_view what, std::string_view endpoint);

// For an ipc:// endpoint, creates its directory with `mode` (an existing directory is given that
// mode and must belong to this user) and removes a stale socket file. tcp endpoints: nothing.
core::status prepare_ipc(const std::string& endpoint, mode_t mode);

// For an ipc:// endpoint, sets the socket file's mode (after bind). tcp endpoints: nothing.
core::status set_ipc_mode(const std::string& endpoint, unsigned mode);

// Binds or connects `socket`, converting failures (role names the socket in messages).
core::status bind_socket(zmq::socket_t& socket, const std::string& endpoint, std::string_view role);
core::status connect_socket(zmq::socket_t& socket, const std::string& endpoint,
                            std::string_view role);

// The OS user name of this process ("uid 1000" when it has none).
std::string current_user();

}  // namespace loopwarden::sidecar::detail
