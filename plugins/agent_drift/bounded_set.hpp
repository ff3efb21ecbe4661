#pragma once
// bounded_set: a set of 64-bit keys with a capacity, forgetting its oldest key when full.

#include <cstddef>
#include <cstdint>
#include <vector>

#include <loopwarden/state_codec.hpp>

namespace loopwarden::agent_drift {

// A set of 64-bit keys (fingerprints, already well mixed) that forgets its oldest key when full
// (FIFO), so a session's memory of what it has seen stays bounded. Forgetting errs towards "new",
// i.e. towards progress. An open-addressing table (linear probing, backward-shift deletion) and a
// ring of the keys in insertion order, both flat and grown by doubling up to the capacity: no
// allocation per key, and memory follows what was inserted, not the capacity.
// Thread-safety: one owner.
class bounded_set {
 public:
  explicit bounded_set(std::size_t capacity) : capacity_(capacity < 1 ? 1 : capacity) {}
  bool contains(std::uint64_t k) const;
  // Adds k; true when it was not there.
  bool insert(std::uint64_t k);
  std::size_t size() const { return size_; }
  void save(sdk::state_writer& w) const;
  bool load(sdk::state_reader& r);

 private:
  // 0 marks an empty slot, so key 0 is stored as another constant (a fingerprint is 0 with
  // probability 2^-64; the two then share a slot, which only makes one of them look seen).
  static std::uint64_t stored(std::uint64_t k) { return k == 0 ? 0x9e3779b97f4a7c15ull : k; }
  std::size_t slot_of(std::uint64_t k) const { return static_cast<std::size_t>(k) & mask_; }
  void grow();
  void erase(std::uint64_t k);

  std::size_t capacity_;
  std::vector<std::uint64_t> table_;  // size a power of two, at least twice size_; 0 = empty
  std::size_t mask_ = 0;
  std::vector<std::uint64_t> ring_;  // keys in insertion order, oldest at head_
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

}  // namespace loopwarden::agent_drift
