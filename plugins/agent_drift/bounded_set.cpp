#include "bounded_set.hpp"

#include <algorithm>

namespace loopwarden::agent_drift {

bool bounded_set::contains(std::uint64_t k) const {
  if (table_.empty()) return false;
  k = stored(k);
  for (std::size_t i = slot_of(k);; i = (i + 1) & mask_) {
    if (table_[i] == k) return true;
    if (table_[i] == 0) return false;
  }
}

void bounded_set::grow() {
  const std::size_t slots = table_.empty() ? 16 : table_.size() * 2;
  std::vector<std::uint64_t> old = std::move(table_);
  table_.assign(slots, 0);
  mask_ = slots - 1;
  for (std::uint64_t k : old) {
    if (k == 0) continue;
    std::size_t i = slot_of(k);
    while (table_[i] != 0) i = (i + 1) & mask_;
    table_[i] = k;
  }
  // The ring becomes contiguous from 0, oldest first, with room up to the capacity.
  std::vector<std::uint64_t> ring;
  ring.reserve(std::min(capacity_, slots / 2));
  for (std::size_t n = 0; n < size_; ++n) ring.push_back(ring_[(head_ + n) % ring_.size()]);
  ring_ = std::move(ring);
  head_ = 0;
}

// Linear-probing deletion by backward shift: later keys of the same run move up, so lookups
// never need tombstones.
void bounded_set::erase(std::uint64_t k) {
  std::size_t i = slot_of(k);
  while (table_[i] != k) {
    if (table_[i] == 0) return;
    i = (i + 1) & mask_;
  }
  for (std::size_t j = (i + 1) & mask_; table_[j] != 0; j = (j + 1) & mask_) {
    const std::size_t home = slot_of(table_[j]);
    // Move table_[j] into the hole at i when its home is not in (i, j] (cyclically).
    const bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      table_[i] = table_[j];
      i = j;
    }
  }
  table_[i] = 0;
}

bool bounded_set::insert(std::uint64_t key) {
  const std::uint64_t k = stored(key);
  if (contains(k)) return false;
  if (size_ == capacity_) {
    // Full: forget the oldest key, whose ring slot the new key takes.
    erase(ring_[head_]);
    ring_[head_] = k;
    head_ = (head_ + 1) % ring_.size();
  } else {
    if (2 * (size_ + 1) > table_.size()) grow();
    ring_.push_back(k);
    ++size_;
  }
  std::size_t i = slot_of(k);
  while (table_[i] != 0) i = (i + 1) & mask_;
  table_[i] = k;
  return true;
}

void bounded_set::save(sdk::state_writer& w) const {
  w.write_u64(size_);
  for (std::size_t n = 0; n < size_; ++n) w.write_u64(ring_[(head_ + n) % ring_.size()]);
}

bool bounded_set::load(sdk::state_reader& r) {
  *this = bounded_set(capacity_);
  const std::uint64_t n = r.read_count(capacity_);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    if (!insert(r.read_u64())) r.fail("a key listed twice in a bounded set");
  }
  return r.ok();
}

}  // namespace loopwarden::agent_drift
