#pragma once
// state_writer / state_reader: a small binary format for monitor::snapshot() and restore(), so a
// plugin author does not hand-roll one. A snapshot starts with a header (the plugin's name and a
// format version the plugin owns), then whatever the plugin writes, in the order it reads it back:
//
//   sdk::state_writer w("my_monitor", 1);
//   w.write_u64(runs_.size());
//   for (const auto& [id, r] : runs_) { w.write_string(id); w.write_f64(r.baseline); }
//   return w.finish();
//
//   sdk::state_reader r(bytes);
//   auto version = r.read_header("my_monitor", 1);     // the versions this build can read
//   if (!version.ok()) return version.error();
//   const std::uint64_t n = r.read_count(max_runs_);  // refuses a count above the limit
//   for (std::uint64_t i = 0; i < n && r.ok(); ++i) { ... r.read_string() ... r.read_f64() ... }
//   return r.finish();                                 // truncated, corrupt or trailing bytes
//
// Encoding: integers and doubles as 8 little-endian bytes (doubles by their IEEE-754 bits, so NaN
// and infinities round-trip exactly), booleans as one byte 0 or 1, strings and byte vectors as a
// u64 length then the bytes. Nothing is compressed or aligned; the format is the same on every
// platform.
//
// Errors: a reader never throws and never reads past the end. The first problem (a truncated
// field, a boolean that is not 0 or 1, a count above its limit, a wrong header) makes the reader
// fail: every later read returns a zero value and finish() returns the first error, with the
// byte offset where it happened.
// Thread-safety: not thread-safe; one owner per object.

#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <loopwarden/status.hpp>

namespace loopwarden::sdk {

class state_writer {
 public:
  // Starts a snapshot of `plugin`'s state in format `version` (the plugin's own numbering).
  state_writer(std::string_view plugin, std::uint32_t version) {
    write_bytes(magic);
    write_string(plugin);
    write_u64(version);
  }

  void write_u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
  }
  void write_i64(std::int64_t v) { write_u64(static_cast<std::uint64_t>(v)); }
  void write_f64(double v) { write_u64(std::bit_cast<std::uint64_t>(v)); }
  void write_bool(bool v) { out_.push_back(v ? '\1' : '\0'); }
  void write_string(std::string_view s) {
    write_u64(s.size());
    out_.append(s.data(), s.size());
  }
  // A length, then each value.
  void write_f64s(std::span<const double> values) {
    write_u64(values.size());
    for (double v : values) write_f64(v);
  }
  void write_u64s(std::span<const std::uint64_t> values) {
    write_u64(values.size());
    for (std::uint64_t v : values) write_u64(v);
  }

  // The snapshot, ready to return from monitor::snapshot(). The writer is empty afterwards.
  std::string finish() { return std::move(out_); }

 private:
  static constexpr std::string_view magic = "LWSTATE1";
  void write_bytes(std::string_view b) { out_.append(b.data(), b.size()); }

  std::string out_;
};

class state_reader {
 public:
  // Borrows `bytes`: they must outlive the reader.
  explicit state_reader(std::string_view bytes) : in_(bytes) {}

  // Reads the header and returns its version. Errors (parse_error): not a state_writer snapshot,
  // another plugin's, or a version outside [min_version, max_version].
  result<std::uint32_t> read_header(std::string_view plugin, std::uint32_t max_version,
                                    std::uint32_t min_version = 1) {
    if (in_.substr(0, magic.size()) != magic) {
      fail("not a loopwarden state snapshot (bad magic)");
      return error_;
    }
    pos_ = magic.size();
    const std::string name = read_string(256);
    const std::uint64_t version = read_u64();
    if (!ok()) return error_;
    if (name != plugin) {
      fail("a snapshot of '" + name + "', not of '" + std::string(plugin) + "'");
      return error_;
    }
    if (version < min_version || version > max_version) {
      fail("snapshot format version " + std::to_string(version) + ", this build reads " +
           std::to_string(min_version) + " to " + std::to_string(max_version));
      return error_;
    }
    return static_cast<std::uint32_t>(version);
  }

  std::uint64_t read_u64() {
    if (!take(8)) return 0;
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) {
      v = (v << 8) | static_cast<unsigned char>(in_[pos_ - 8 + static_cast<std::size_t>(i)]);
    }
    return v;
  }
  std::int64_t read_i64() { return static_cast<std::int64_t>(read_u64()); }
  double read_f64() { return std::bit_cast<double>(read_u64()); }
  bool read_bool() {
    if (!take(1)) return false;
    const char c = in_[pos_ - 1];
    if (c != '\0' && c != '\1') fail("a boolean that is neither 0 nor 1");
    return c == '\1';
  }
  // A string of at most `max_size` bytes (a corrupt length must not allocate gigabytes).
  std::string read_string(std::uint64_t max_size = std::numeric_limits<std::uint32_t>::max()) {
    const std::uint64_t n = read_count(max_size);
    if (!ok() || !take(n)) return {};
    return std::string(in_.substr(pos_ - n, n));
  }
  // A count (of entries the caller then reads) of at most `limit`.
  std::uint64_t read_count(std::uint64_t limit) {
    const std::uint64_t n = read_u64();
    if (!ok()) return 0;
    if (n > limit) {
      fail("a count of " + std::to_string(n) + " above its limit of " + std::to_string(limit));
      return 0;
    }
    return n;
  }
  std::vector<double> read_f64s(std::uint64_t max_size) {
    const std::uint64_t n = read_count(max_size);
    std::vector<double> out;
    if (!ok() || remaining() / 8 < n) {
      if (ok()) fail("a vector longer than the bytes left");
      return out;
    }
    out.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) out.push_back(read_f64());
    return out;
  }
  std::vector<std::uint64_t> read_u64s(std::uint64_t max_size) {
    const std::uint64_t n = read_count(max_size);
    std::vector<std::uint64_t> out;
    if (!ok() || remaining() / 8 < n) {
      if (ok()) fail("a vector longer than the bytes left");
      return out;
    }
    out.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) out.push_back(read_u64());
    return out;
  }

  // Marks the snapshot invalid for a reason the caller found (a value out of range, ...).
  void fail(const std::string& why) {
    if (!ok()) return;
    error_ = status(status_code::parse_error,
                    "bad state snapshot at byte " + std::to_string(pos_) + ": " + why);
  }

  bool ok() const { return error_.ok(); }
  std::size_t remaining() const { return in_.size() - pos_; }

  // ok when every read succeeded and every byte was read; else the first error.
  status finish() {
    if (ok() && pos_ != in_.size()) {
      fail(std::to_string(in_.size() - pos_) + " unread bytes at the end");
    }
    return error_;
  }

 private:
  static constexpr std::string_view magic = "LWSTATE1";

  bool take(std::uint64_t n) {
    if (!ok()) return false;
    if (remaining() < n) {
      fail("truncated: " + std::to_string(n) + " bytes wanted, " + std::to_string(remaining()) +
           " left");
      return false;
    }
    pos_ += static_cast<std::size_t>(n);
    return true;
  }

  std::string_view in_;
  std::size_t pos_ = 0;
  status error_;
};

}  // namespace loopwarden::sdk
