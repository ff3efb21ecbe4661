#pragma once
// time_buckets: a sliding time window cut into equal buckets, each holding a summary (counts, a
// sketch, ...) of what happened in it. The window slides one bucket at a time, so memory is
// `count` summaries whatever the event rate.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <utility>
#include <vector>

namespace loopwarden::sdk::stats {

// floor(t / width) for any sign of t (width > 0): the index of the bucket holding time t.
inline std::int64_t bucket_index(std::int64_t t, std::int64_t width) {
  const std::int64_t q = t / width;
  return (t % width != 0 && t < 0) ? q - 1 : q;
}

// Bucket i covers times [i·width, (i + 1)·width). The newest bucket is the one of the latest time
// given to at() or advance(); the `count` buckets ending with it are kept, older ones are reset
// to the prototype when their slot is reused. The window *of a time now* is the `count` buckets
// whose start lies in [now − count·width, now): for now on a bucket boundary, the `count`
// complete buckets before it; otherwise the current partial bucket and the `count` − 1 before.
// T is any copyable summary; a bucket never written is a copy of the prototype.
// Complexity: at() and advance() are O(1) amortised (a slot is reset once per width of time
// passed, at most `count` per call); for_each_in_window() is O(count).
// Errors: the constructor throws std::invalid_argument when width ≤ 0 or count = 0.
// Thread-safety: not thread-safe; one owner.
template <typename T>
class time_buckets {
 public:
  time_buckets(std::int64_t width, std::size_t count, T prototype = T{})
      : width_(width), prototype_(std::move(prototype)) {
    if (width <= 0) throw std::invalid_argument("time_buckets: width must be > 0");
    if (count == 0) throw std::invalid_argument("time_buckets: count must be >= 1");
    slots_.assign(count, slot{unset, prototype_});
  }

  // The bucket holding time t, advancing the newest bucket to t's when t is later. nullptr when t
  // falls before the oldest bucket kept (a late value: the caller counts it).
  T* at(std::int64_t t) {
    const std::int64_t index = bucket_index(t, width_);
    if (!started_ || index > newest_) advance_to(index);
    if (index <= newest_ - static_cast<std::int64_t>(slots_.size())) return nullptr;
    slot& s = slots_[slot_of(index)];
    if (s.index != index) {
      s.index = index;
      s.value = prototype_;
    }
    return &s.value;
  }

  // Makes now's bucket the newest (never moves backwards).
  void advance(std::int64_t now) {
    const std::int64_t index = bucket_index(now, width_);
    if (!started_ || index > newest_) advance_to(index);
  }

  // Calls f(bucket_start, const T&) for each bucket of the window of `now` (see the class
  // comment), oldest first; a bucket with no data (never written, or already reused) is passed as
  // the prototype. `now` may be later than the newest bucket; buckets after it are empty.
  template <typename F>
  void for_each_in_window(std::int64_t now, F&& f) const {
    const auto n = static_cast<std::int64_t>(slots_.size());
    // last = ceil(now / width) − 1: the newest bucket whose start is before now.
    const std::int64_t last = bucket_index(now - 1, width_);
    for (std::int64_t index = last - n + 1; index <= last; ++index) {
      const slot& s = slots_[slot_of(index)];
      f(index * width_, s.index == index ? s.value : prototype_);
    }
  }

  // Forgets every bucket.
  void clear() {
    for (auto& s : slots_) s = slot{unset, prototype_};
    started_ = false;
    newest_ = 0;
  }

  std::int64_t width() const { return width_; }
  std::size_t count() const { return slots_.size(); }
  // The window's length, count · width.
  std::int64_t span() const { return width_ * static_cast<std::int64_t>(slots_.size()); }
  // Index of the newest bucket; meaningful once started().
  std::int64_t newest_index() const { return newest_; }
  bool started() const { return started_; }

  // Raw access for snapshots: slot k holds bucket index `slot_index(k)` (or no bucket, when it
  // equals unset) and its value. restore_slot() puts them back; restore_newest() the newest index.
  static constexpr std::int64_t unset = INT64_MIN;
  std::int64_t slot_index(std::size_t k) const { return slots_[k].index; }
  const T& slot_value(std::size_t k) const { return slots_[k].value; }
  // Returns false (nothing changed) when `index` does not belong in slot k.
  bool restore_slot(std::size_t k, std::int64_t index, T value) {
    if (k >= slots_.size() || (index != unset && slot_of(index) != k)) return false;
    slots_[k] = slot{index, std::move(value)};
    return true;
  }
  void restore_newest(bool started, std::int64_t newest) {
    started_ = started;
    newest_ = newest;
  }

 private:
  struct slot {
    std::int64_t index;
    T value;
  };

  std::size_t slot_of(std::int64_t index) const {
    const auto n = static_cast<std::int64_t>(slots_.size());
    const std::int64_t m = index % n;
    return static_cast<std::size_t>(m < 0 ? m + n : m);
  }

  void advance_to(std::int64_t index) {
    started_ = true;
    newest_ = index;
  }

  std::int64_t width_;
  T prototype_;
  std::vector<slot> slots_;
  bool started_ = false;
  std::int64_t newest_ = 0;
};

}  // namespace loopwarden::sdk::stats
