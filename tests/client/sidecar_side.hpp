#pragma once
// The sidecar's side of the client tests: real ZeroMQ sockets in the test's own context, bound on
// ipc in a temporary directory or on tcp 127.0.0.1 with a port the kernel picks.

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "../time_scale.hpp"

namespace loopwarden::test {

using namespace std::chrono_literals;

// The tests' context, apart from the client library's: the sidecar is another process.
inline zmq::context_t& sidecar_context() {
  static zmq::context_t context(1);
  return context;
}

// A fresh directory under the temporary directory, removed with everything in it.
class temp_dir {
 public:
  temp_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "lw-client-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A socket of the sidecar's context with linger 0, so no test waits on close.
inline zmq::socket_t sidecar_socket(zmq::socket_type type) {
  zmq::socket_t s(sidecar_context(), type);
  s.set(zmq::sockopt::linger, 0);
  return s;
}

// Binds `s` on `transport` ("ipc" or "tcp") and returns the endpoint a client connects to.
inline std::string bind_fresh(zmq::socket_t& s, const std::string& transport, const temp_dir& dir,
                              const std::string& name) {
  if (transport == "ipc") {
    const std::string endpoint = "ipc://" + (dir.path() / (name + ".sock")).string();
    s.bind(endpoint);
    return endpoint;
  }
  s.bind("tcp://127.0.0.1:*");
  return s.get(zmq::sockopt::last_endpoint);
}

// The next multipart message on `s`, or nullopt after `timeout`.
inline std::optional<std::vector<zmq::message_t>> receive(zmq::socket_t& s,
                                                          std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, timeout);
  if ((item.revents & ZMQ_POLLIN) == 0) return std::nullopt;
  std::vector<zmq::message_t> parts;
  if (!zmq::recv_multipart(s, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
    return std::nullopt;
  }
  return parts;
}

// Repeats `step` every `period` until `done()` or `timeout` (scaled: time_scale.hpp); returns
// done().
template <typename Step, typename Done>
bool repeat_until(Step step, Done done, std::chrono::milliseconds timeout,
                  std::chrono::milliseconds period = 5ms) {
  const auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return done();
    step();
    std::this_thread::sleep_for(period);
  }
  return true;
}

inline std::string as_string(const zmq::message_t& m) { return m.to_string(); }

}  // namespace loopwarden::test
