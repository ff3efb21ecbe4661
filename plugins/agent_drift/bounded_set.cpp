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

void bounded_set::save(sdk::state_writer& w) const {
  w.write_u64(order_.size());
  for (std::uint64_t k : order_) w.write_u64(k);
}

bool bounded_set::load(sdk::state_reader& r) {
  set_.clear();
  order_.clear();
  const std::uint64_t n = r.read_count(capacity_);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    const std::uint64_t k = r.read_u64();
    if (!set_.insert(k).second) r.fail("a key listed twice in a bounded set");
    order_.push_back(k);
  }
  return r.ok();
}

}  // namespace loopwarden::agent_drift
