#pragma once
// lru_map: string-keyed state with a capacity; inserting into a full map evicts the entry used
// least recently. Iteration is by key (std::map), so replays see the same order every time.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace loopwarden::agent_drift {

// Thread-safety: one owner.
template <typename T>
class lru_map {
 public:
  explicit lru_map(std::size_t capacity) : capacity_(capacity) {}

  // The entry for `key`, marked as used now; nullptr when absent.
  T* find(const std::string& key) {
    auto it = items_.find(key);
    if (it == items_.end()) return nullptr;
    touch(it);
    return &it->second.value;
  }

  // Inserts (or replaces) `key`, evicting the least recently used entry first when full.
  // Returns the entry and whether one was evicted to make room.
  std::pair<T*, bool> insert(const std::string& key, T value) {
    bool evicted = false;
    if (auto it = items_.find(key); it != items_.end()) {
      order_.erase(it->second.stamp);
      items_.erase(it);
    } else if (items_.size() >= capacity_ && !order_.empty()) {
      items_.erase(order_.begin()->second);
      order_.erase(order_.begin());
      evicted = true;
    }
    const std::uint64_t stamp = next_++;
    auto it = items_.emplace(key, slot{std::move(value), stamp}).first;
    order_.emplace(stamp, key);
    return {&it->second.value, evicted};
  }

  void erase(const std::string& key) {
    auto it = items_.find(key);
    if (it == items_.end()) return;
    order_.erase(it->second.stamp);
    items_.erase(it);
  }

  void clear() {
    items_.clear();
    order_.clear();
    next_ = 0;
  }

  std::size_t size() const { return items_.size(); }
  std::size_t capacity() const { return capacity_; }

  // Calls f(key, value) from the least to the most recently used entry (a snapshot writes them in
  // this order and inserts them back in the same order, which restores the recency order).
  template <typename F>
  void for_each_by_recency(F&& f) const {
    for (const auto& [stamp, key] : order_) f(key, items_.at(key).value);
  }

 private:
  struct slot {
    T value;
    std::uint64_t stamp;
  };
  void touch(typename std::map<std::string, slot>::iterator it) {
    order_.erase(it->second.stamp);
    it->second.stamp = next_++;
    order_.emplace(it->second.stamp, it->first);
  }

  std::size_t capacity_;
  std::map<std::string, slot> items_;
  std::map<std::uint64_t, std::string> order_;  // stamp -> key, least recent first
  std::uint64_t next_ = 0;
};

}  // namespace loopwarden::agent_drift
