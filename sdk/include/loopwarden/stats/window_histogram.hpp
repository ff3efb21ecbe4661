#pragma once
// window_histogram: counts of categories over the last W slots of a stream (a slot is one event
// carrying any number of category occurrences, e.g. the tools one agent turn called).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <span>
#include <stdexcept>
#include <vector>

namespace loopwarden::sdk::stats {

// A sliding-window categorical histogram. The stream is a sequence of slots s_1..s_n; each slot
// is a multiset of category indices in [0, categories) (possibly empty). For the last
// w = min(n, window) slots,
//   counts()[c] = Σ_{j = n−w+1..n} (occurrences of c in s_j),   total() = Σ_c counts()[c]
// push() adds a slot and, once `window` slots are held, drops the oldest, so counts() is always
// the histogram of exactly the last `window` slots (fewer at the start). Feed counts() to
// js_divergence / kl_divergence against a baseline histogram over the same categories.
// Complexity: push() is O(size of the new slot + size of the dropped slot); memory is the
// occurrences held plus one counter per category; no other allocation.
// Errors: the constructor throws std::invalid_argument unless window ≥ 1 and categories ≥ 1;
// push() throws std::out_of_range for a category ≥ categories(), and then changes nothing.
// Thread-safety: not thread-safe; one owner updates and reads it.
class window_histogram {
 public:
  window_histogram(std::size_t window, std::size_t categories)
      : window_(window), counts_(categories, 0) {
    if (window == 0) throw std::invalid_argument("window_histogram: window must be >= 1");
    if (categories == 0) throw std::invalid_argument("window_histogram: need >= 1 category");
  }

  // Adds one slot with these occurrences (a category listed twice counts twice).
  void push(std::span<const std::uint32_t> slot) {
    for (std::uint32_t c : slot) {
      if (c >= counts_.size()) throw std::out_of_range("window_histogram: category out of range");
    }
    if (sizes_.size() == window_) drop_oldest();
    for (std::uint32_t c : slot) {
      items_.push_back(c);
      ++counts_[c];
    }
    total_ += slot.size();
    sizes_.push_back(static_cast<std::uint32_t>(slot.size()));
  }
  void push(std::initializer_list<std::uint32_t> slot) {
    push(std::span<const std::uint32_t>(slot.begin(), slot.size()));
  }

  // Empties the window (the categories stay).
  void reset() {
    items_.clear();
    sizes_.clear();
    std::fill(counts_.begin(), counts_.end(), std::uint64_t{0});
    total_ = 0;
  }

  // Occurrences of each category over the slots held; categories() entries.
  const std::vector<std::uint64_t>& counts() const { return counts_; }
  // Occurrences over the slots held.
  std::uint64_t total() const { return total_; }
  // Slots held, at most window().
  std::size_t slots() const { return sizes_.size(); }
  bool full() const { return sizes_.size() == window_; }
  std::size_t window() const { return window_; }
  std::size_t categories() const { return counts_.size(); }

  // The slots held, oldest first (for a monitor's snapshot; push them back in order to restore).
  std::vector<std::vector<std::uint32_t>> held_slots() const {
    std::vector<std::vector<std::uint32_t>> out;
    out.reserve(sizes_.size());
    auto it = items_.begin();
    for (std::uint32_t size : sizes_) {
      out.emplace_back(it, it + size);
      it += size;
    }
    return out;
  }

 private:
  void drop_oldest() {
    const std::uint32_t size = sizes_.front();
    sizes_.pop_front();
    for (std::uint32_t i = 0; i < size; ++i) {
      --counts_[items_.front()];
      items_.pop_front();
    }
    total_ -= size;
  }

  std::size_t window_;
  std::vector<std::uint64_t> counts_;
  std::deque<std::uint32_t> items_;  // occurrences held, oldest first
  std::deque<std::uint32_t> sizes_;  // occurrences per slot held, oldest first
  std::uint64_t total_ = 0;
};

}  // namespace loopwarden::sdk::stats
