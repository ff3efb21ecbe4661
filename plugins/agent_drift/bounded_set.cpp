#include "bounded_set.hpp"

namespace loopwarden::agent_drift {


bool bounded_set::insert(std::uint64_t k) {
  if (!set_.insert(k).second) return false;
  order_.push_back(k);
  if (order_.size() > capacity_) {
    set_.erase(order_.front());
    order_.pop_front();
  }
  return true;
}

void bounded_set::save(byte_writer& w) const {
  w.u64(order_.size());
  for (std::uint64_t k : order_) w.u64(k);
}

bool bounded_set::load(byte_reader& r) {
  std::size_t n = 0;
  if (!r.size(n, capacity_)) return false;
  set_.clear();
  order_.clear();
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t k = 0;
    if (!r.u64(k)) return false;
    if (!set_.insert(k).second) return r.fail();  // a duplicate: not something save() writes
    order_.push_back(k);
  }
  return true;
}

}  // namespace loopwarden::agent_drift
