#include "control_service.hpp"

#include <fmt/format.h>

#include <pwd.h>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <future>
#include <limits>
#include <string_view>
#include <vector>
#include <zmq_addon.hpp>

#include <loopwarden/core/logging.hpp>
#include <loopwarden/sidecar/control_client.hpp>

#include "zmq_util.hpp"

namespace loopwarden::sidecar::detail {

namespace {

constexpr const char* zap_endpoint = "inproc://zeromq.zap.01";

// Refused connections are logged, but a client that retries in a loop must not flood the log:
// at most `burst` lines per window, and the number left out is logged with the next line.
class refusal_log {
 public:
  void refused(const std::string& what) {
    const auto now = std::chrono::steady_clock::now();
    if (now - window_start_ >= window) {
      window_start_ = now;
      logged_ = 0;
    }
    if (logged_ >= burst) {
      ++suppressed_;
      return;
    }
    ++logged_;
    std::string line = "refused a control connection " + what;
    if (suppressed_ > 0) {
      line += fmt::format(" ({} more refused connection(s) were not logged)", suppressed_);
      suppressed_ = 0;
    }
    core::log_message(sdk::log_level::warn, line);
  }

 private:
  static constexpr std::size_t burst = 20;
  static constexpr auto window = std::chrono::seconds(10);
  std::chrono::steady_clock::time_point window_start_{};
  std::size_t logged_ = 0;
  std::uint64_t suppressed_ = 0;
};

}  // namespace

std::string ipc_peer_operator(const char* peer_address, const std::string& fallback) {
  // libzmq reports an ipc peer as "<address>:<uid>:<gid>:<pid>" from SO_PEERCRED.
  if (peer_address == nullptr) return fallback;
  const std::string_view a(peer_address);
  const auto p3 = a.rfind(':');
  if (p3 == std::string_view::npos || p3 == 0) return fallback;
  const auto p2 = a.rfind(':', p3 - 1);
  if (p2 == std::string_view::npos || p2 == 0) return fallback;
  const auto p1 = a.rfind(':', p2 - 1);
  if (p1 == std::string_view::npos) return fallback;
  const std::string uid_text(a.substr(p1 + 1, p2 - p1 - 1));
  if (uid_text.empty() || uid_text.find_first_not_of("0123456789") != std::string::npos) {
    return fallback;
  }
  const auto uid = static_cast<uid_t>(std::stoul(uid_text));
  std::string name;
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
    name = found->pw_name;
  }
  return "unix:" + (name.empty() ? "uid" + uid_text : name);
}

std::string answer_control_request(std::string_view payload, const std::string& operator_id,
                                   const control_service::handler& h) {
  v1::ControlRequest request;
  v1::ControlResponse response;
  if (payload.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
      !request.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    response.set_ok(false);
    response.set_error("the request is not a loopwarden.v1.ControlRequest");
  } else {
    response = h(request, operator_id);
    response.set_request_id(request.request_id());
  }
  return response.SerializeAsString();
}

control_service::control_service(const core::transport_config& transport, handler h)
    : transport_(transport), handler_(std::move(h)) {}

control_service::~control_service() { stop(); }

core::status control_service::start() {
  auto started = std::make_shared<std::promise<core::status>>();
  auto result = started->get_future();
  thread_ = std::jthread([this, started](std::stop_token st) { run(st, started); });
  core::status s = result.get();
  if (!s.ok()) thread_.join();
  return s;
}

void control_service::stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

void control_service::run(std::stop_token stop,
                          std::shared_ptr<std::promise<core::status>> started) {
  const std::string& endpoint = transport_.control;
  const bool tcp = endpoint.rfind("tcp://", 0) == 0;
  std::string local_operator = current_user();

  // CURVE: the ZAP handler must be bound before the server socket binds.
  std::optional<zmq::socket_t> zap;
  // Handshakes that fail before ZAP is asked (a client without CURVE, a garbled greeting).
  std::optional<zmq::socket_t> monitor;
  refusal_log refusals;
  zmq::socket_t router(zmq_context(), zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  if (tcp) {
    auto secret = read_key_file(transport_.control_secret_key_file);
    if (!secret.ok()) {
      started->set_value(secret.error());
      return;
    }
    zap.emplace(zmq_context(), zmq::socket_type::rep);
    zap->set(zmq::sockopt::linger, 0);
    if (auto s = bind_socket(*zap, zap_endpoint, "zap"); !s.ok()) {
      started->set_value(s);
      return;
    }
    try {
      router.set(zmq::sockopt::curve_server, true);
      router.set(zmq::sockopt::curve_secretkey, *secret);
      router.set(zmq::sockopt::zap_domain, "loopwarden.control");
      // Failed authentications are ZAP's to log (with the key); these are the rest.
      const std::string monitor_endpoint =
          fmt::format("inproc://loopwarden.control-monitor.{}", static_cast<const void*>(this));
      if (zmq_socket_monitor(
              router.handle(), monitor_endpoint.c_str(),
              ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0) {
        throw zmq::error_t();
      }
      monitor.emplace(zmq_context(), zmq::socket_type::pair);
      monitor->set(zmq::sockopt::linger, 0);
      monitor->connect(monitor_endpoint);
    } catch (const zmq::error_t& e) {
      started->set_value(zmq_failure(e, "enable CURVE on the control socket", endpoint));
      return;
    }
  } else if (auto s = prepare_ipc(endpoint, 0700); !s.ok()) {
    started->set_value(s.with_context("control socket"));
    return;
  }
  if (auto s = bind_socket(router, endpoint, "control"); !s.ok()) {
    started->set_value(s);
    return;
  }
  started->set_value(core::status::success());

  std::vector<zmq::pollitem_t> items = {{router.handle(), 0, ZMQ_POLLIN, 0}};
  if (zap) items.push_back({zap->handle(), 0, ZMQ_POLLIN, 0});
  if (monitor) items.push_back({monitor->handle(), 0, ZMQ_POLLIN, 0});
  std::vector<zmq::message_t> frames;
  while (!stop.stop_requested()) {
    try {
      zmq::poll(items, std::chrono::milliseconds(100));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      break;
    }
    if (zap && (items[1].revents & ZMQ_POLLIN) != 0) {
      // ZAP request (RFC 27): version, request id, domain, address, identity, mechanism, creds.
      frames.clear();
      if (zmq::recv_multipart(*zap, std::back_inserter(frames))) {
        const bool well_formed =
            frames.size() >= 7 && frames[5].to_string_view() == "CURVE" && frames[6].size() == 32;
        std::string key_z85;
        if (well_formed) {
          char text[41];
          zmq_z85_encode(text, static_cast<const std::uint8_t*>(frames[6].data()), 32);
          key_z85.assign(text, 40);
        }
        const bool allowed = well_formed && std::find(transport_.operator_keys.begin(),
                                                      transport_.operator_keys.end(),
                                                      key_z85) != transport_.operator_keys.end();
        if (!allowed) {
          refusals.refused(fmt::format(
              "from {}: {}", frames.size() > 3 ? frames[3].to_string() : "?",
              well_formed ? "key " + key_z85 + " is not an operator key" : "not a CURVE client"));
        }
        std::array<zmq::const_buffer, 6> reply = {
            zmq::str_buffer("1.0"),
            frames.size() > 1 ? zmq::buffer(frames[1].data(), frames[1].size())
                              : zmq::str_buffer(""),
            allowed ? zmq::str_buffer("200") : zmq::str_buffer("400"),
            allowed ? zmq::str_buffer("OK") : zmq::str_buffer("not an operator key"),
            zmq::buffer(key_z85),  // becomes the connection's User-Id
            zmq::str_buffer("")};
        (void)zmq::send_multipart(*zap, reply);
      }
    }
    if (monitor && (items[2].revents & ZMQ_POLLIN) != 0) {
      // A monitor event: [u16 event, u32 value][the endpoint]. The peer's address is not part of
      // it; the endpoint says which socket refused.
      frames.clear();
      while (zmq::recv_multipart(*monitor, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
        if (frames.size() >= 2 && frames[0].size() >= 6) {
          std::uint16_t event = 0;
          std::uint32_t value = 0;
          std::memcpy(&event, frames[0].data(), sizeof event);
          std::memcpy(&value, static_cast<const char*>(frames[0].data()) + 2, sizeof value);
          std::string why;
          if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
              value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
            why = "the client does not use CURVE (a plaintext client)";
          } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
            // The value is an errno. libzmq 4.3 reports a plaintext client this way: the client
            // sees the mechanism mismatch first and hangs up.
            why = fmt::format(
                "the handshake failed before authentication ({}): a client without CURVE, or "
                "one that does not have the server's public key",
                std::strerror(static_cast<int>(value)));
          } else {
            why = fmt::format("the handshake failed (zmq event {:#x}, value {:#x})", event, value);
          }
          refusals.refused(fmt::format("on {}: {}", frames[1].to_string(), why));
        }
        frames.clear();
      }
    }
    if ((items[0].revents & ZMQ_POLLIN) == 0) continue;
    for (int n = 0; n < 64; ++n) {
      frames.clear();
      auto got = zmq::recv_multipart(router, std::back_inserter(frames), zmq::recv_flags::dontwait);
      if (!got) break;
      if (frames.size() < 2) continue;
      std::string operator_id =
          ipc_peer_operator(frames.back().gets("Peer-Address"), local_operator);
      if (tcp) {
        const char* uid = frames.back().gets("User-Id");
        operator_id = std::string("key:") + (uid != nullptr ? uid : "?");
      }
      // Reply with the same envelope frames (identity, and the empty delimiter if any).
      const std::string payload =
          answer_control_request(frames.back().to_string_view(), operator_id, handler_);
      std::vector<zmq::const_buffer> reply;
      for (std::size_t i = 0; i + 1 < frames.size(); ++i) {
        reply.push_back(zmq::buffer(frames[i].data(), frames[i].size()));
      }
      reply.push_back(zmq::buffer(payload));
      (void)zmq::send_multipart(router, reply, zmq::send_flags::dontwait);
    }
  }
}

}  // namespace loopwarden::sidecar::detail
