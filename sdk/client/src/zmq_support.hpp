#pragma once
// Private to loopwarden::client: the process's ZeroMQ context, owned sockets, and the one place
// where ZeroMQ errors become statuses. Never included by a public header.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <zmq.hpp>

#include <loopwarden/status.hpp>

namespace loopwarden::client::detail {

// The one ZeroMQ context of the process, shared by every client object. Made on first use and
// terminated at exit only when no client socket is still open: terminating waits for open
// sockets, and a host that leaks a client object must still be able to exit.
// Thread-safety: safe from any thread (ZeroMQ contexts are).
zmq::context_t& process_context();

// A socket of the process context that closes itself (with its linger) when destroyed.
// Throws zmq::error_t from the constructor. Thread-safety: use from the thread that made it.
class owned_socket {
 public:
  owned_socket(zmq::socket_type type, std::chrono::milliseconds linger);
  ~owned_socket();
  owned_socket(const owned_socket&) = delete;
  owned_socket& operator=(const owned_socket&) = delete;

  zmq::socket_t& get() { return socket_; }

 private:
  zmq::socket_t socket_;
};

// Ok when `endpoint` is ipc://PATH or tcp://HOST:PORT; otherwise invalid_argument.
sdk::status check_endpoint(std::string_view endpoint);

// A ZeroMQ error as a status: "what: zmq's message" with a code from its errno.
sdk::status to_status(const zmq::error_t& e, std::string_view what);

// Connects `socket` to `endpoint`, converting ZeroMQ's error.
sdk::status connect(zmq::socket_t& socket, const std::string& endpoint);

// The wall clock, in nanoseconds since the Unix epoch.
std::int64_t now_unix_nano();

}  // namespace loopwarden::client::detail
