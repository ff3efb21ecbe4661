#include <loopwarden/sidecar/control_client.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <random>
#include <zmq_addon.hpp>

#include "zmq_util.hpp"

namespace loopwarden::sidecar {

core::result<curve_keypair> make_curve_keypair() {
  char pub[41] = {};
  char sec[41] = {};
  if (zmq_curve_keypair(pub, sec) != 0) {
    return core::make_error(
        core::status_code::internal,
        std::string("can't make a CURVE key pair: ") + zmq_strerror(zmq_errno()));
  }
  return curve_keypair{std::string(pub, 40), std::string(sec, 40)};
}

core::result<std::string> read_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return core::make_error(core::status_code::io_error, "can't read key file '" + path + "'");
  std::string key;
  std::getline(in, key);
  key.erase(std::remove_if(key.begin(), key.end(), [](unsigned char c) { return std::isspace(c); }),
            key.end());
  if (key.size() != 40) {
    return core::make_error(core::status_code::invalid_argument,
                            "'" + path +
                                "' must hold a 40-character Z85 CURVE key on its first line "
                                "(make a key pair with `loopwarden keygen`)");
  }
  return key;
}

core::result<v1::ControlResponse> send_control(const std::string& endpoint,
                                               v1::ControlRequest request,
                                               std::chrono::milliseconds timeout,
                                               const curve_credentials* curve) {
  constexpr std::string_view ipc = "ipc://";
  if (endpoint.rfind(ipc, 0) == 0 && !std::filesystem::exists(endpoint.substr(ipc.size()))) {
    return core::make_error(core::status_code::not_found, "no control socket at " + endpoint +
                                                              " (is loopwarden serve running "
                                                              "with this state directory?)");
  }
  if (request.request_id().empty()) {
    std::random_device rd;
    request.set_request_id("cli-" + std::to_string(rd()));
  }
  zmq::socket_t s(detail::zmq_context(), zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  if (curve != nullptr) {
    char pub[41] = {};
    if (curve->server_public_key.size() != 40 || curve->secret_key.size() != 40 ||
        zmq_curve_public(pub, curve->secret_key.c_str()) != 0) {
      return core::make_error(core::status_code::invalid_argument,
                              "CURVE keys must be 40-character Z85 strings");
    }
    try {
      s.set(zmq::sockopt::curve_serverkey, curve->server_public_key);
      s.set(zmq::sockopt::curve_publickey, std::string(pub, 40));
      s.set(zmq::sockopt::curve_secretkey, curve->secret_key);
    } catch (const zmq::error_t& e) {
      return detail::zmq_failure(e, "set up CURVE for the control socket", endpoint);
    }
  }
  if (auto st = detail::connect_socket(s, endpoint, "control"); !st.ok()) return st;
  const std::string payload = request.SerializeAsString();
  std::array<zmq::const_buffer, 2> frames = {zmq::str_buffer(""), zmq::buffer(payload)};
  if (!zmq::send_multipart(s, frames, zmq::send_flags::dontwait)) {
    return core::make_error(core::status_code::io_error, "can't send to " + endpoint);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<zmq::message_t> reply;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return core::make_error(core::status_code::timeout, "no answer from " + endpoint +
                                                              " within " +
                                                              std::to_string(timeout.count()) +
                                                              " ms (is loopwarden serve running?)");
    }
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, left);
    if ((item.revents & ZMQ_POLLIN) == 0) continue;
    reply.clear();
    if (!zmq::recv_multipart(s, std::back_inserter(reply))) continue;
    v1::ControlResponse response;
    if (reply.empty() ||
        !response.ParseFromArray(reply.back().data(), static_cast<int>(reply.back().size()))) {
      return core::make_error(core::status_code::parse_error,
                              "the reply from " + endpoint + " is not a ControlResponse");
    }
    if (response.request_id() != request.request_id()) continue;  // a stale reply
    return response;
  }
}

}  // namespace loopwarden::sidecar
