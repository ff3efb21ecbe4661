#pragma once
// fingerprint: a 64-bit FNV-1a hash of a sequence of fields. The monitor keys actions, outcomes
// and workspace states by it; it is the same on every build and platform (std::hash is not), so
// snapshots and replays agree. Fields are length-prefixed, so ("ab", "c") and ("a", "bc") differ.

#include <cstdint>
#include <string>
#include <string_view>

namespace loopwarden::agent_drift {

// Thread-safety: a value type.
class fingerprint {
 public:
  fingerprint& add(std::string_view field) {
    add_u64(field.size());
    for (unsigned char c : field) mix(c);
    return *this;
  }
  fingerprint& add_u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) mix(static_cast<unsigned char>(v >> (8 * i)));
    return *this;
  }
  std::uint64_t value() const { return h_; }

 private:
  void mix(unsigned char c) {
    h_ ^= c;
    h_ *= 1099511628211ull;  // the 64-bit FNV prime
  }
  std::uint64_t h_ = 14695981039346656037ull;  // the 64-bit FNV offset basis
};

// At most `n` leading characters of a digest or name, for evidence ("9f2c41aa0b3e…").
inline std::string abbreviate(std::string_view s, std::size_t n = 16) {
  if (s.size() <= n) return std::string(s);
  std::string out(s.substr(0, n));
  out += "...";
  return out;
}

}  // namespace loopwarden::agent_drift
