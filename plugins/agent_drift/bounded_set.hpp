#pragma once
// bounded_set: a set of 64-bit keys with a capacity, forgetting its oldest key when full.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_set>

#include <loopwarden/state_codec.hpp>

namespace loopwarden::agent_drift {

// A set of 64-bit keys that forgets its oldest key when full (FIFO), so a session's memory of
// what it has seen stays bounded. Forgetting errs towards "new", i.e. towards progress.
// Thread-safety: one owner.
class bounded_set {
 public:
  explicit bounded_set(std::size_t capacity) : capacity_(capacity) {}
  bool contains(std::uint64_t k) const { return set_.count(k) != 0; }
  // Adds k; true when it was not there.
  bool insert(std::uint64_t k);
  std::size_t size() const { return order_.size(); }
  void save(sdk::state_writer& w) const;
  bool load(sdk::state_reader& r);

 private:
  std::size_t capacity_;
  std::unordered_set<std::uint64_t> set_;
  std::deque<std::uint64_t> order_;  // insertion order, oldest first
};

}  // namespace loopwarden::agent_drift
