#include "zmq_util.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace loopwarden::sidecar::detail {

namespace fs = std::filesystem;

zmq::context_t& zmq_context() {
  static zmq::context_t context(1);
  return context;
}

core::status zmq_failure(const zmq::error_t& e, std::string_view what, std::string_view endpoint) {
  return core::make_error(
      core::status_code::io_error,
      "can't " + std::string(what) + " (" + std::string(endpoint) + "): " + e.what());
}

core::status prepare_ipc(const std::string& endpoint, mode_t mode) {
  constexpr std::string_view ipc = "ipc://";
  if (endpoint.rfind(ipc, 0) != 0) return core::status::success();
  const fs::path socket_path(endpoint.substr(ipc.size()));
  const fs::path dir = socket_path.parent_path();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return core::make_error(core::status_code::io_error,
                            "can't create directory " + dir.string() + ": " + ec.message());
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return core::make_error(core::status_code::io_error,
                            "can't stat " + dir.string() + ": " + std::strerror(errno));
  }
  if (st.st_uid != ::geteuid()) {
    return core::make_error(core::status_code::refused,
                            "directory " + dir.string() + " belongs to uid " +
                                std::to_string(st.st_uid) + ", not to this user (uid " +
                                std::to_string(::geteuid()) + "); refusing to put a socket there");
  }
  if ((st.st_mode & 07777) != mode && ::chmod(dir.c_str(), mode) != 0) {
    return core::make_error(core::status_code::io_error,
                            "can't set mode of " + dir.string() + ": " + std::strerror(errno));
  }
  // A socket file left by a process that died: binding over it is what we want. (A live
  // sidecar on the same state directory is refused earlier, by the state directory's lock.)
  fs::remove(socket_path, ec);
  return core::status::success();
}

core::status set_ipc_mode(const std::string& endpoint, unsigned mode) {
  constexpr std::string_view ipc = "ipc://";
  if (endpoint.rfind(ipc, 0) != 0) return core::status::success();
  const std::string path = endpoint.substr(ipc.size());
  if (::chmod(path.c_str(), static_cast<mode_t>(mode)) != 0) {
    return core::make_error(core::status_code::io_error,
                            "can't set mode of " + path + ": " + std::strerror(errno));
  }
  return core::status::success();
}

core::status bind_socket(zmq::socket_t& socket, const std::string& endpoint,
                         std::string_view role) {
  try {
    socket.bind(endpoint);
  } catch (const zmq::error_t& e) {
    return zmq_failure(e, "bind the " + std::string(role) + " socket", endpoint);
  }
  return core::status::success();
}

core::status connect_socket(zmq::socket_t& socket, const std::string& endpoint,
                            std::string_view role) {
  try {
    socket.connect(endpoint);
  } catch (const zmq::error_t& e) {
    return zmq_failure(e, "connect the " + std::string(role) + " socket", endpoint);
  }
  return core::status::success();
}

std::string current_user() {
  const uid_t uid = ::geteuid();
  struct passwd pw {};
  struct passwd* found = nullptr;
  char buf[4096];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) {
    return found->pw_name;
  }
  return "uid " + std::to_string(uid);
}

}  // namespace loopwarden::sidecar::detail
