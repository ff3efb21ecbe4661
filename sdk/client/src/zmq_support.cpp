#include "zmq_support.hpp"

#include <atomic>
#include <cerrno>

namespace loopwarden::client::detail {
namespace {

// Neither the holder nor its context is ever deleted: when sockets are still open at exit (a
// leaked client object, one destroyed after static destruction began), zmq_ctx_term would wait
// for them forever, so the context is left to the operating system. When every socket is
// closed, the terminator below terminates the context, which waits at most the longest linger
// and so lets a publisher's last batch leave.
struct context_holder {
  zmq::context_t context{1};
  std::atomic<int> open_sockets{0};
};

context_holder& holder() {
  static auto* h = new context_holder;
  return *h;
}

struct terminator {
  ~terminator() {
    context_holder& h = holder();
    if (h.open_sockets.load() == 0) h.context.close();
  }
};

}  // namespace

zmq::context_t& process_context() {
  static terminator at_exit;
  return holder().context;
}

owned_socket::owned_socket(zmq::socket_type type, std::chrono::milliseconds linger)
    : socket_(process_context(), type) {
  // Counted before anything else can throw, so the destructor's decrement always matches.
  holder().open_sockets.fetch_add(1);
  socket_.set(zmq::sockopt::linger, static_cast<int>(linger.count()));
}

owned_socket::~owned_socket() {
  socket_.close();
  holder().open_sockets.fetch_sub(1);
}

sdk::status check_endpoint(std::string_view endpoint) {
  if (endpoint.empty()) {
    return sdk::make_error(sdk::status_code::invalid_argument, "no endpoint given");
  }
  constexpr std::string_view ipc = "ipc://";
  constexpr std::string_view tcp = "tcp://";
  const bool is_ipc = endpoint.starts_with(ipc) && endpoint.size() > ipc.size();
  const bool is_tcp = endpoint.starts_with(tcp) && endpoint.size() > tcp.size();
  if (!is_ipc && !is_tcp) {
    return sdk::make_error(
        sdk::status_code::invalid_argument,
        "invalid endpoint '" + std::string(endpoint) + "': expected ipc://PATH or tcp://HOST:PORT");
  }
  return sdk::status::success();
}

sdk::status to_status(const zmq::error_t& e, std::string_view what) {
  sdk::status_code code = sdk::status_code::io_error;
  switch (e.num()) {
    case EINVAL:
    case EPROTONOSUPPORT:
    case ENOCOMPATPROTO:
    case ENAMETOOLONG:
      code = sdk::status_code::invalid_argument;
      break;
    case ETERM:
      code = sdk::status_code::failed_precondition;
      break;
    default:
      break;
  }
  std::string message(what);
  message += ": ";
  message += e.what();
  return sdk::make_error(code, std::move(message));
}

sdk::status connect(zmq::socket_t& socket, const std::string& endpoint) {
  if (auto s = check_endpoint(endpoint); !s.ok()) return s;
  try {
    socket.connect(endpoint);
  } catch (const zmq::error_t& e) {
    return to_status(e, "can't connect to '" + endpoint + "'");
  }
  return sdk::status::success();
}

std::int64_t now_unix_nano() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace loopwarden::client::detail
