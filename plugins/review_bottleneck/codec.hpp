#pragma once
// A small binary writer and a bounds-checked reader for the monitor's snapshot: fixed-width
// little-endian integers, IEEE doubles by their bits, length-prefixed strings. The reader never
// trusts a length: every read checks what is left, and a failed read poisons the reader so the
// caller checks once at the end.

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <loopwarden/stats/quantile_sketch.hpp>

namespace loopwarden::plugins::review_bottleneck {

// Thread-safety: not thread-safe; one owner.
class writer {
 public:
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void f64(double v) {
    std::uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof bits);
    u64(bits);
  }
  void boolean(bool v) { out_.push_back(v ? '\1' : '\0'); }
  void str(std::string_view s) {
    u64(s.size());
    out_.append(s);
  }
  void sketch(const sdk::stats::quantile_sketch& s) {
    const auto st = s.export_state();
    f64(st.relative_accuracy);
    u64(st.max_bins);
    f64(st.min_value);
    i64(st.offset);
    u64(st.counts.size());
    for (auto c : st.counts) u64(c);
    u64(st.zero_count);
    u64(st.count);
    f64(st.sum);
    f64(st.min);
    f64(st.max);
    u64(st.ignored);
    u64(st.collapsed);
  }

  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Thread-safety: not thread-safe; one owner. `data` must outlive the reader.
class reader {
 public:
  explicit reader(std::string_view data) : data_(data) {}

  std::uint64_t u64() {
    if (!need(8)) return 0;
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(data_[pos_ + i])) << (8 * i);
    }
    pos_ += 8;
    return v;
  }
  std::int64_t i64() { return static_cast<std::int64_t>(u64()); }
  double f64() {
    const std::uint64_t bits = u64();
    double v = 0.0;
    std::memcpy(&v, &bits, sizeof v);
    return v;
  }
  bool boolean() {
    if (!need(1)) return false;
    const char c = data_[pos_++];
    if (c != '\0' && c != '\1') ok_ = false;
    return c == '\1';
  }
  std::string str(std::size_t max_len = 4096) {
    const std::uint64_t n = u64();
    if (n > max_len || !need(static_cast<std::size_t>(n))) {
      ok_ = false;
      return {};
    }
    std::string s(data_.substr(pos_, static_cast<std::size_t>(n)));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  // A count that must not exceed `max` (so a corrupt length can't ask for a huge allocation).
  std::size_t count(std::size_t max) {
    const std::uint64_t n = u64();
    if (n > max) {
      ok_ = false;
      return 0;
    }
    return static_cast<std::size_t>(n);
  }
  // Reads a sketch into `out`; fails (and leaves `out` alone) on inconsistent data.
  void sketch(sdk::stats::quantile_sketch& out) {
    sdk::stats::quantile_sketch_state st;
    st.relative_accuracy = f64();
    st.max_bins = count(1 << 20);
    st.min_value = f64();
    st.offset = i64();
    const std::size_t n = count(st.max_bins);
    st.counts.reserve(n);
    for (std::size_t i = 0; i < n && ok_; ++i) st.counts.push_back(u64());
    st.zero_count = u64();
    st.count = u64();
    st.sum = f64();
    st.min = f64();
    st.max = f64();
    st.ignored = u64();
    st.collapsed = u64();
    if (!ok_ || !out.import_state(st)) ok_ = false;
  }
  void fail() { ok_ = false; }

  bool ok() const { return ok_; }
  bool done() const { return pos_ == data_.size(); }

 private:
  bool need(std::size_t n) {
    if (!ok_ || data_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    return true;
  }

  std::string_view data_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace loopwarden::plugins::review_bottleneck
