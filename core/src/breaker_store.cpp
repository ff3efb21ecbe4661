#include <loopwarden/core/breaker_store.hpp>

#include <algorithm>

namespace loopwarden::core {

result<std::vector<v1::BreakerStatus>> memory_breaker_store::load() {
  std::lock_guard lock(mu_);
  return latest_;
}

status memory_breaker_store::record(const v1::BreakerTransition& transition) {
  std::lock_guard lock(mu_);
  const auto& b = transition.breaker();
  auto it = std::find_if(latest_.begin(), latest_.end(), [&](const v1::BreakerStatus& s) {
    return s.name() == b.name() && s.run_id() == b.run_id();
  });
  if (it == latest_.end()) {
    latest_.push_back(b);
  } else {
    *it = b;
  }
  transitions_.push_back(transition);
  // Bound memory: drop the oldest transitions of this breaker beyond the limit.
  std::size_t count = 0;
  for (auto t = transitions_.rbegin(); t != transitions_.rend(); ++t) {
    if (t->breaker().name() == b.name() && t->breaker().run_id() == b.run_id()) ++count;
  }
  if (count > history_limit_) {
    auto first = std::find_if(transitions_.begin(), transitions_.end(), [&](const auto& t) {
      return t.breaker().name() == b.name() && t.breaker().run_id() == b.run_id();
    });
    transitions_.erase(first);
  }
  return status::success();
}

result<std::vector<v1::BreakerTransition>> memory_breaker_store::history(const std::string& name,
                                                                         const std::string& run_id,
                                                                         std::size_t limit) {
  std::lock_guard lock(mu_);
  std::vector<v1::BreakerTransition> out;
  for (auto t = transitions_.rbegin(); t != transitions_.rend() && out.size() < limit; ++t) {
    if (t->breaker().name() == name && t->breaker().run_id() == run_id) out.push_back(*t);
  }
  std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace loopwarden::core
