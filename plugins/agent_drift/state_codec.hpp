#pragma once
// state_codec: the byte format of the monitor's snapshot. Little-endian fixed-width integers,
// IEEE doubles by their bits, and length-prefixed strings; the reader checks every length
// against what is left and against a caller's bound, so a truncated or hostile snapshot is
// refused instead of allocating or reading past the end.

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace loopwarden::agent_drift {

// Thread-safety: one owner.
class byte_writer {
 public:
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>(v >> (8 * i)));
  }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void f64(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
  void boolean(bool v) { out_.push_back(v ? '\1' : '\0'); }
  void str(std::string_view s) {
    u64(s.size());
    out_.append(s);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads what byte_writer wrote. Every read returns false (and the reader stays failed) once
// the input is short or a value is out of its bound; callers check ok() at the end, or bail out
// at the first false.
// Thread-safety: one owner; the viewed bytes must outlive it.
class byte_reader {
 public:
  explicit byte_reader(std::string_view in) : in_(in) {}

  bool u64(std::uint64_t& v) {
    if (!ok_ || in_.size() - pos_ < 8) return fail();
    v = 0;
    for (int i = 0; i < 8; ++i) {
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in_[pos_ + i])) << (8 * i);
    }
    pos_ += 8;
    return true;
  }
  // An unsigned value that must be at most `max` (counts, sizes, indices).
  bool bounded(std::uint64_t& v, std::uint64_t max) { return u64(v) && (v <= max || fail()); }
  template <typename T>
  bool size(T& v, std::uint64_t max) {
    std::uint64_t x = 0;
    if (!bounded(x, max)) return false;
    v = static_cast<T>(x);
    return true;
  }
  bool i64(std::int64_t& v) {
    std::uint64_t x = 0;
    if (!u64(x)) return false;
    v = static_cast<std::int64_t>(x);
    return true;
  }
  bool f64(double& v) {
    std::uint64_t x = 0;
    if (!u64(x)) return false;
    v = std::bit_cast<double>(x);
    return true;
  }
  bool boolean(bool& v) {
    if (!ok_ || pos_ >= in_.size()) return fail();
    const char c = in_[pos_++];
    if (c != '\0' && c != '\1') return fail();
    v = c == '\1';
    return true;
  }
  bool str(std::string& s, std::uint64_t max_len = 1 << 20) {
    std::uint64_t n = 0;
    if (!bounded(n, max_len) || in_.size() - pos_ < n) return fail();
    s.assign(in_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  // Marks the input bad (a value the caller found impossible); always returns false.
  bool fail() {
    ok_ = false;
    return false;
  }
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == in_.size(); }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace loopwarden::agent_drift
