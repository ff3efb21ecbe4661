#pragma once
// The control socket's thread: a ROUTER that only operators can reach (ipc in a 0700 directory,
// or tcp with CURVE and an allowlist of operator keys, checked by a ZAP handler on the same
// thread). It decodes ControlRequests and hands them to a handler.

#include <functional>
#include <future>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <loopwarden/v1/control.pb.h>
#include <loopwarden/core/config.hpp>
#include <loopwarden/core/status.hpp>

namespace loopwarden::sidecar::detail {

// The operator behind an ipc control connection: "unix:<user>" from the peer credentials libzmq
// reports in a message's Peer-Address ("<addr>:<uid>:<gid>:<pid>"), or `fallback` when absent.
std::string ipc_peer_operator(const char* peer_address, const std::string& fallback);

// Thread-safety: start/stop from one thread; the handler runs on the control thread.
class control_service {
 public:
  // Answers one request; `operator_id` is who sent it, taken from the channel (the OS user owning
  // the ipc directory, or the CURVE key's allowlist entry), never from the request.
  using handler =
      std::function<v1::ControlResponse(const v1::ControlRequest&, const std::string& operator_id)>;

  control_service(const core::transport_config& transport, handler h);
  ~control_service();

  // Prepares the directory (ipc: mode 0700), binds, starts the thread. Errors name the endpoint.
  core::status start();
  void stop();

 private:
  void run(std::stop_token stop, std::shared_ptr<std::promise<core::status>> started);

  const core::transport_config transport_;
  handler handler_;
  std::jthread thread_;
};

// One request's round trip, without the socket: decodes `payload` as a ControlRequest, answers it
// with `h` as `operator_id` (echoing its request_id), and returns the serialized ControlResponse;
// bytes that are not a ControlRequest get an ok=false answer. The control thread's only decode
// step, and the fuzz target's entry point (tests/fuzz/control_fuzz.cpp).
std::string answer_control_request(std::string_view payload, const std::string& operator_id,
                                   const control_service::handler& h);

}  // namespace loopwarden::sidecar::detail
