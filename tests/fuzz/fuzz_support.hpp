#pragma once
// What every libFuzzer target in tests/fuzz shares: a reader that splits the fuzz input into
// length-prefixed pieces, the bundled plugin directory, and the set-up that keeps the fuzz runs
// fast and quiet. Header-only: each target is its own executable (docs/fuzzing.md).

#include <dlfcn.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <loopwarden/core/logging.hpp>
#include <loopwarden/core/plugin_host.hpp>
#include <loopwarden/types.hpp>

namespace loopwarden::fuzz {

// Reads the fuzz input front to back. Past the end every read yields zero or an empty piece, so
// a target never has to check lengths: any byte string is a valid input.
// Thread-safety: none (one per input).
class byte_reader {
 public:
  byte_reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  bool empty() const { return pos_ >= size_; }

  std::uint8_t u8() { return empty() ? 0 : data_[pos_++]; }

  // Little-endian, like the replay format's prefixes.
  std::uint16_t u16() {
    const std::uint16_t lo = u8();
    return static_cast<std::uint16_t>(lo | (static_cast<std::uint16_t>(u8()) << 8));
  }

  // Up to `n` bytes (fewer at the end of the input).
  std::string_view take(std::size_t n) {
    n = std::min(n, size_ - std::min(pos_, size_));
    std::string_view piece(reinterpret_cast<const char*>(data_) + pos_, n);
    pos_ += n;
    return piece;
  }

  // A piece prefixed by its u16le length.
  std::string_view piece() { return take(u16()); }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

// Appends a u16le length and `bytes` (the seed writers and regression tests build inputs so).
inline void append_piece(std::string& out, std::string_view bytes) {
  const auto n = static_cast<std::uint16_t>(std::min<std::size_t>(bytes.size(), 0xffff));
  out.push_back(static_cast<char>(n & 0xff));
  out.push_back(static_cast<char>(n >> 8));
  out.append(bytes.substr(0, n));
}

// Stops the run with a message: a broken fuzz set-up, or an input that broke an invariant the
// target checks (libFuzzer saves that input as a crash).
[[noreturn]] inline void die(const std::string& message) {
  std::fprintf(stderr, "fuzz: %s\n", message.c_str());
  std::abort();
}

// The bundled plugins beside the fuzz executable (<build>/lib/loopwarden/plugins, since the
// targets live in <build>/bin like `loopwarden`).
inline std::string plugin_dir() {
  const std::string dir = core::bundled_plugin_dir();
  if (dir.empty() || !std::filesystem::is_directory(dir)) {
    die("no bundled plugin directory at '" + dir + "'; build the fuzz preset's plugins first");
  }
  return dir;
}

// The names of the bundled plugins (the stems of <plugin_dir>/*.so), sorted.
inline std::vector<std::string> bundled_plugins() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(plugin_dir())) {
    if (entry.path().extension() == ".so") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  if (names.empty()) die("no plugins in " + plugin_dir());
  return names;
}

// Loads every bundled plugin once for the whole run and never unloads it. Each input creates and
// destroys engines; without this every input would dlopen and dlclose each plugin, which is slow
// and makes libFuzzer register a fresh copy of the plugin's coverage counters every time.
inline void pin_bundled_plugins() {
  for (const auto& name : bundled_plugins()) {
    const std::string path = plugin_dir() + "/" + name + ".so";
    if (::dlopen(path.c_str(), RTLD_NOW | RTLD_NODELETE) == nullptr) {
      die("can't pin " + path + ": " + ::dlerror());
    }
  }
}

// Only errors reach the log: a fuzz run feeds millions of bad inputs, and the engine logs each
// refusal at warn level. Protobuf's own lines go through the same logger, as in the daemon.
inline void quiet_logs() {
  core::log_to_stderr();
  core::set_log_level(sdk::log_level::error);
}

}  // namespace loopwarden::fuzz
