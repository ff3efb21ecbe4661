// libsodium is used here for SHA-256; its errors become statuses in sodium_status() only.
#include <loopwarden/core/plugin_trust.hpp>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <vector>

#include <fmt/format.h>

namespace loopwarden::core {
namespace {

namespace fs = std::filesystem;

// libsodium reports failure as a negative return value and nothing else.
status sodium_status(int rc, std::string_view what) {
  if (rc == 0) return status::success();
  return make_error(status_code::internal,
                    fmt::format("libsodium failed to {} (return value {})", what, rc));
}

status ensure_sodium() {
  // sodium_init returns 1 when already initialised: both are fine.
  static const int rc = sodium_init();
  return sodium_status(rc < 0 ? rc : 0, "initialise");
}

std::string user_name(uid_t uid) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
    return fmt::format("user '{}' (uid {})", found->pw_name, uid);
  }
  return fmt::format("uid {}", uid);
}

std::string group_name(gid_t gid) {
  std::vector<char> buf(16384);
  group gr{};
  group* found = nullptr;
  if (::getgrgid_r(gid, &gr, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
    return fmt::format("group '{}'", found->gr_name);
  }
  return fmt::format("group {}", gid);
}

// One component of the path: the file itself or a directory above it.
status check_component(const std::string& where, const struct stat& st, bool is_file,
                       uid_t trusted_uid) {
  const char* kind = is_file ? "file" : "directory";
  if (st.st_uid != 0 && st.st_uid != trusted_uid) {
    return make_error(status_code::refused,
                      fmt::format("{} {} is owned by {}, not by root or the daemon's {}: its "
                                  "owner could replace the plugin",
                                  kind, where, user_name(st.st_uid), user_name(trusted_uid)));
  }
  const mode_t mode = st.st_mode & 07777;
  // A sticky directory (like /tmp) lets others add entries but not rename or remove ours, and
  // the entry below it is checked next: it cannot be swapped for someone else's.
  const bool sticky_dir = !is_file && (mode & S_ISVTX) != 0;
  if (sticky_dir) return status::success();
  if ((mode & S_IWOTH) != 0) {
    return make_error(status_code::refused,
                      fmt::format("{} {} is writable by everyone (mode {:04o}): anyone could "
                                  "replace the plugin; remove the write bit (chmod go-w {})",
                                  kind, where, mode, where));
  }
  if ((mode & S_IWGRP) != 0) {
    return make_error(status_code::refused,
                      fmt::format("{} {} is writable by group (mode {:04o}): anyone in {} could "
                                  "replace the plugin; remove the write bit (chmod go-w {})",
                                  kind, where, mode, group_name(st.st_gid), where));
  }
  return status::success();
}

status stat_error(const std::string& where, int err) {
  return make_error(status_code::io_error,
                    fmt::format("can't examine {}: {}", where, std::strerror(err)));
}

}  // namespace

result<std::string> check_plugin_permissions(const std::string& path, uid_t trusted_uid) {
  std::error_code ec;
  // The real path is both what is checked and what is loaded: a symlink swapped afterwards
  // changes nothing, and a link into an unsafe place is judged by where it leads.
  const fs::path real = fs::canonical(path, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) {
      return make_error(status_code::not_found, "no such file");
    }
    return make_error(status_code::io_error,
                      fmt::format("can't resolve {}: {}", path, ec.message()));
  }
  struct stat st {};
  if (::lstat(real.c_str(), &st) != 0) return stat_error(real.string(), errno);
  if (!S_ISREG(st.st_mode)) {
    return make_error(status_code::refused, fmt::format("{} is not a regular file", real.string()));
  }
  if (auto s = check_component(real.string(), st, true, trusted_uid); !s.ok()) return s;
  for (fs::path dir = real.parent_path();; dir = dir.parent_path()) {
    if (::lstat(dir.c_str(), &st) != 0) return stat_error(dir.string(), errno);
    if (auto s = check_component(dir.string(), st, false, trusted_uid); !s.ok()) return s;
    if (dir == dir.root_path() || dir.empty()) break;
  }
  return real.string();
}

result<std::string> sha256_file(const std::string& path) {
  if (auto s = ensure_sodium(); !s.ok()) return s;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return make_error(status_code::io_error,
                      fmt::format("can't read {}: {}", path, std::strerror(errno)));
  }
  crypto_hash_sha256_state state;
  status s = sodium_status(crypto_hash_sha256_init(&state), "start a sha256");
  std::array<unsigned char, 1 << 16> buf{};
  while (s.ok()) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      s = make_error(status_code::io_error,
                     fmt::format("can't read {}: {}", path, std::strerror(errno)));
      break;
    }
    if (n == 0) break;
    s = sodium_status(crypto_hash_sha256_update(&state, buf.data(), static_cast<std::size_t>(n)),
                      "hash");
  }
  ::close(fd);
  if (!s.ok()) return s;
  std::array<unsigned char, crypto_hash_sha256_BYTES> digest{};
  if (auto f = sodium_status(crypto_hash_sha256_final(&state, digest.data()), "finish a sha256");
      !f.ok()) {
    return f;
  }
  std::array<char, 2 * crypto_hash_sha256_BYTES + 1> hex{};
  sodium_bin2hex(hex.data(), hex.size(), digest.data(), digest.size());
  return std::string(hex.data(), 2 * crypto_hash_sha256_BYTES);
}

std::optional<std::string> parse_sha256_hex(std::string_view text) {
  if (text.size() != 2 * crypto_hash_sha256_BYTES) return std::nullopt;
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    if (!hex) return std::nullopt;
  }
  return out;
}

result<std::string> verify_plugin_file(const std::string& path, std::string_view expected_sha256,
                                       uid_t trusted_uid) {
  auto real = check_plugin_permissions(path, trusted_uid);
  if (!real.ok() || expected_sha256.empty()) return real;
  auto actual = sha256_file(*real);
  if (!actual.ok()) return actual.error();
  if (*actual != expected_sha256) {
    return make_error(status_code::refused,
                      fmt::format("its sha256 is {}, the config pins {} (the file changed since "
                                  "it was pinned, or the pin is for another build)",
                                  *actual, expected_sha256));
  }
  return real;
}

}  // namespace loopwarden::core
