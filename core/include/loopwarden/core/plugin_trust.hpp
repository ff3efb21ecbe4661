#pragma once
// Which plugin files loopwarden agrees to map into a process (docs/security.md#plugins).
//
// A plugin runs with the daemon's privileges, so whoever can replace the file, or a directory
// above it, controls the daemon. Before the dynamic loader sees a plugin (in the daemon, or in an
// `isolation: process` child), its file must pass the permission rule, modelled on sshd's
// StrictModes:
//
//   - the path is resolved to its real path (symlinks followed), and that path is what is loaded;
//   - it is a regular file;
//   - the file and every directory above it, up to "/", are owned by root or by the user the
//     daemon runs as, and are not writable by group or others; a directory with the sticky bit
//     (like /tmp) may be writable by others, because nobody but an entry's owner can rename or
//     remove it there, and the entry below it is checked in turn.
//
// A monitor may also pin the file's SHA-256 (`sha256:` in its config entry): the digest is
// computed from the file before it is loaded, and a mismatch is refused with both digests.

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include <loopwarden/core/status.hpp>

namespace loopwarden::core {

// Applies the permission rule above to `path` for a daemon whose trusted user is `trusted_uid`
// (besides root). Returns the real path, the one to load. Errors: not_found when the file does
// not exist; io_error when a component cannot be examined; refused naming the file or directory
// and the reason, e.g. "directory /opt/plugins is writable by group (mode 0775): anyone in group
// 'staff' could replace the plugin; remove the write bit (chmod go-w /opt/plugins)".
// Thread-safety: safe from any thread.
result<std::string> check_plugin_permissions(const std::string& path, uid_t trusted_uid);

// The SHA-256 of the file's contents as 64 lowercase hex digits (libsodium). Errors: io_error
// naming the file. Thread-safety: safe from any thread.
result<std::string> sha256_file(const std::string& path);

// A pinned digest as written in a config: 64 hexadecimal digits, either case. Returns them in
// lowercase, or nullopt for anything else (wrong length, other characters).
std::optional<std::string> parse_sha256_hex(std::string_view text);

// What a loader calls before mapping a plugin: the permission rule, then, when `expected_sha256`
// is not empty (64 lowercase hex digits), the digest of the real file. Returns the real path.
// Errors: check_plugin_permissions's; sha256_file's; refused "its sha256 is <actual>, the config
// pins <expected>". Messages carry no prefix: the caller names the plugin.
result<std::string> verify_plugin_file(const std::string& path, std::string_view expected_sha256,
                                       uid_t trusted_uid);

}  // namespace loopwarden::core
