#include <loopwarden/core/breaker_registry.hpp>

#include "log.hpp"

namespace loopwarden::core {
namespace {

bool is_open(v1::BreakerState s) {
  return s == v1::BREAKER_STATE_OPEN || s == v1::BREAKER_STATE_FORCED_OPEN;
}

std::string describe_key(const breaker_key& key) {
  std::string out = "breaker '" + key.name + "'";
  if (!key.run_id.empty()) out += " (run '" + key.run_id + "')";
  return out;
}

}  // namespace

breaker_registry::breaker_registry(breaker_store& store, std::chrono::nanoseconds default_probation)
    : store_(store), default_probation_(default_probation) {}

status breaker_registry::restore() {
  std::lock_guard commit_lock(commit_mu_);
  auto loaded = store_.load();
  if (!loaded.ok()) return loaded.error().with_context("can't restore breakers");
  std::lock_guard lock(mu_);
  for (const auto& b : *loaded) breakers_[breaker_key{b.name(), b.run_id()}] = b;
  return status::success();
}

void breaker_registry::set_probation(const std::string& name, std::chrono::nanoseconds probation) {
  std::lock_guard lock(mu_);
  probation_[name] = probation;
}

void breaker_registry::configure_probation(
    std::chrono::nanoseconds default_probation,
    std::map<std::string, std::chrono::nanoseconds> per_breaker) {
  std::lock_guard lock(mu_);
  default_probation_ = default_probation;
  probation_ = std::move(per_breaker);
}

void breaker_registry::add_listener(listener l) {
  std::lock_guard lock(commit_mu_);
  listeners_.push_back(std::move(l));
}

void breaker_registry::declare(const sdk::breaker_spec& spec, std::string_view monitor,
                               bool shadow) {
  if (spec.scope != sdk::breaker_scope::global) return;
  std::lock_guard commit_lock(commit_mu_);
  std::lock_guard lock(mu_);
  breaker_key key{spec.name, ""};
  if (breakers_.count(key) != 0) return;
  v1::BreakerStatus& b = breakers_[key];
  b.set_name(spec.name);
  b.set_scope(sdk::to_proto(spec.scope));
  b.set_state(v1::BREAKER_STATE_CLOSED);
  b.set_action(sdk::to_proto(spec.action));
  b.set_severity(sdk::to_proto(spec.severity));
  b.set_monitor(std::string(monitor));
  b.set_shadow(shadow);
}

std::chrono::nanoseconds breaker_registry::probation_for(const std::string& name) const {
  auto it = probation_.find(name);
  return it == probation_.end() ? default_probation_ : it->second;
}

v1::BreakerTransition breaker_registry::commit(v1::BreakerStatus& b, v1::BreakerState previous,
                                               std::string_view cause, std::string_view operator_id,
                                               std::string_view note) {
  b.set_epoch(b.epoch() + 1);
  v1::BreakerTransition t;
  *t.mutable_breaker() = b;
  t.set_previous(previous);
  t.set_cause(std::string(cause));
  t.set_operator_id(std::string(operator_id));
  t.set_note(std::string(note));
  return t;
}

status breaker_registry::record_and_apply(const breaker_key& key, v1::BreakerStatus next,
                                          const v1::BreakerTransition& t, bool keep_on_failure) {
  // The commit (and its fsync) runs without mu_: readers go on seeing the last recorded state.
  status s = store_.record(t);
  if (!s.ok()) {
    ++store_errors_;
    if (!keep_on_failure) return s;
    detail::log().error("{}: {}", describe_key(key), s.message());
  }
  {
    std::lock_guard lock(mu_);
    breakers_[key] = std::move(next);
  }
  for (auto& l : listeners_) l(t);
  return s;
}

std::optional<v1::BreakerTransition> breaker_registry::trip(const trip_input& in) {
  std::lock_guard commit_lock(commit_mu_);
  const bool global = in.scope == sdk::breaker_scope::global;
  breaker_key key{in.breaker, global ? std::string() : in.run_id};
  v1::BreakerStatus b;
  {
    std::lock_guard lock(mu_);
    if (auto it = breakers_.find(key); it != breakers_.end()) b = it->second;
  }
  const v1::BreakerState previous =
      b.state() == v1::BREAKER_STATE_UNSPECIFIED ? v1::BREAKER_STATE_CLOSED : b.state();
  if (is_open(previous)) return std::nullopt;  // latched until an operator resets it

  b.set_name(key.name);
  b.set_run_id(key.run_id);
  b.set_scope(sdk::to_proto(in.scope));
  b.set_state(v1::BREAKER_STATE_OPEN);
  b.set_action(sdk::to_proto(in.action));
  // A trip during probation means the reset was premature: escalate.
  const bool escalated = previous == v1::BREAKER_STATE_HALF_OPEN;
  b.set_severity(sdk::to_proto(escalated ? sdk::severity::critical : in.severity));
  b.set_monitor(in.monitor);
  b.set_reason(in.reason);
  b.clear_evidence();
  for (const auto& kv : in.evidence) {
    auto* e = b.add_evidence();
    e->set_key(kv.key);
    e->set_value(kv.value);
  }
  b.set_changed_unix_nano(in.time_unix_nano);
  b.set_acknowledged(false);
  b.clear_acknowledged_by();
  b.clear_probation_until_unix_nano();
  b.set_trips(b.trips() + 1);
  b.set_shadow(in.shadow);

  v1::BreakerTransition t =
      commit(b, previous, "trip", "", escalated ? "re-opened during probation (escalated)" : "");
  t.set_trigger_source(in.trigger_source);
  t.set_trigger_seq(in.trigger_seq);
  // A trip the store refuses still opens the breaker in memory (fail safe), counted and logged.
  (void)record_and_apply(key, std::move(b), t, /*keep_on_failure=*/true);
  return t;
}

result<v1::BreakerTransition> breaker_registry::acknowledge(const breaker_key& key,
                                                            std::string_view operator_id,
                                                            std::string_view note,
                                                            std::int64_t now_unix_nano) {
  std::lock_guard commit_lock(commit_mu_);
  v1::BreakerStatus b;
  {
    std::lock_guard lock(mu_);
    auto it = breakers_.find(key);
    if (it == breakers_.end()) {
      return make_error(sdk::status_code::not_found, "no " + describe_key(key));
    }
    b = it->second;
  }
  if (!is_open(b.state())) {
    return make_error(sdk::status_code::failed_precondition,
                      "can't acknowledge " + describe_key(key) + ": it is " +
                          std::string(sdk::to_string(b.state())));
  }
  if (b.acknowledged()) {
    return make_error(sdk::status_code::failed_precondition,
                      describe_key(key) + " is already acknowledged by " + b.acknowledged_by());
  }
  // Operator actions take effect only once recorded: an unrecorded ack would vanish on restart.
  b.set_acknowledged(true);
  b.set_acknowledged_by(std::string(operator_id));
  b.set_changed_unix_nano(now_unix_nano);
  v1::BreakerTransition t = commit(b, b.state(), "ack", operator_id, note);
  if (auto s = record_and_apply(key, std::move(b), t, /*keep_on_failure=*/false); !s.ok()) {
    return s.with_context("can't record acknowledgement of " + describe_key(key));
  }
  return t;
}

result<v1::BreakerTransition> breaker_registry::reset(const breaker_key& key,
                                                      std::string_view operator_id,
                                                      std::string_view reason,
                                                      std::int64_t now_unix_nano) {
  if (reason.empty()) {
    return make_error(sdk::status_code::refused,
                      "can't reset " + describe_key(key) + ": a reset needs a reason");
  }
  std::lock_guard commit_lock(commit_mu_);
  v1::BreakerStatus b;
  std::chrono::nanoseconds probation{};
  {
    std::lock_guard lock(mu_);
    auto it = breakers_.find(key);
    if (it == breakers_.end()) {
      return make_error(sdk::status_code::not_found, "no " + describe_key(key));
    }
    b = it->second;
    probation = probation_for(key.name);
  }
  const v1::BreakerState previous = b.state();
  if (!is_open(previous) && previous != v1::BREAKER_STATE_HALF_OPEN) {
    return make_error(
        sdk::status_code::failed_precondition,
        "can't reset " + describe_key(key) + ": it is " + std::string(sdk::to_string(previous)));
  }
  // Resetting a half-open breaker ends its probation early; an open one starts probation.
  // A reset that cannot be recorded does not happen: the breaker stays open (fail safe).
  if (previous != v1::BREAKER_STATE_HALF_OPEN && probation.count() > 0) {
    b.set_state(v1::BREAKER_STATE_HALF_OPEN);
    b.set_probation_until_unix_nano(now_unix_nano + probation.count());
  } else {
    b.set_state(v1::BREAKER_STATE_CLOSED);
    b.clear_probation_until_unix_nano();
  }
  b.set_acknowledged(false);
  b.clear_acknowledged_by();
  b.set_changed_unix_nano(now_unix_nano);
  v1::BreakerTransition t = commit(b, previous, "reset", operator_id, reason);
  if (auto s = record_and_apply(key, std::move(b), t, /*keep_on_failure=*/false); !s.ok()) {
    return s.with_context("can't record reset of " + describe_key(key));
  }
  return t;
}

result<v1::BreakerTransition> breaker_registry::force_open(const breaker_key& key,
                                                           std::string_view operator_id,
                                                           std::string_view reason,
                                                           sdk::breaker_action action,
                                                           std::int64_t now_unix_nano) {
  if (reason.empty()) {
    return make_error(sdk::status_code::refused,
                      "can't force " + describe_key(key) + " open: it needs a reason");
  }
  std::lock_guard commit_lock(commit_mu_);
  v1::BreakerStatus b;
  {
    std::lock_guard lock(mu_);
    if (auto it = breakers_.find(key); it != breakers_.end()) b = it->second;
  }
  const v1::BreakerState previous =
      b.state() == v1::BREAKER_STATE_UNSPECIFIED ? v1::BREAKER_STATE_CLOSED : b.state();
  if (previous == v1::BREAKER_STATE_FORCED_OPEN) {
    return make_error(sdk::status_code::failed_precondition,
                      describe_key(key) + " is already forced open");
  }
  b.set_name(key.name);
  b.set_run_id(key.run_id);
  if (b.scope() == v1::BREAKER_SCOPE_UNSPECIFIED) {
    b.set_scope(key.run_id.empty() ? v1::BREAKER_SCOPE_GLOBAL : v1::BREAKER_SCOPE_RUN);
  }
  b.set_state(v1::BREAKER_STATE_FORCED_OPEN);
  b.set_action(sdk::to_proto(action));
  b.set_severity(v1::SEVERITY_CRITICAL);
  b.set_monitor("operator:" + std::string(operator_id));
  b.set_reason(std::string(reason));
  b.clear_evidence();
  b.set_acknowledged(true);
  b.set_acknowledged_by(std::string(operator_id));
  b.clear_probation_until_unix_nano();
  b.set_changed_unix_nano(now_unix_nano);
  v1::BreakerTransition t = commit(b, previous, "force_open", operator_id, reason);
  (void)record_and_apply(key, std::move(b), t, /*keep_on_failure=*/true);
  return t;
}

std::vector<v1::BreakerTransition> breaker_registry::advance(std::int64_t now_unix_nano) {
  std::lock_guard commit_lock(commit_mu_);
  return advance_committing(now_unix_nano);
}

std::vector<v1::BreakerTransition> breaker_registry::try_advance(std::int64_t now_unix_nano) {
  std::unique_lock commit_lock(commit_mu_, std::try_to_lock);
  if (!commit_lock.owns_lock()) return {};
  return advance_committing(now_unix_nano);
}

std::vector<v1::BreakerTransition> breaker_registry::advance_committing(
    std::int64_t now_unix_nano) {
  std::vector<std::pair<breaker_key, v1::BreakerStatus>> due;
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, b] : breakers_) {
      if (b.state() != v1::BREAKER_STATE_HALF_OPEN) continue;
      if (b.probation_until_unix_nano() > now_unix_nano) continue;
      due.emplace_back(key, b);
    }
  }
  std::vector<v1::BreakerTransition> out;
  for (auto& [key, b] : due) {
    b.set_state(v1::BREAKER_STATE_CLOSED);
    b.clear_probation_until_unix_nano();
    b.set_changed_unix_nano(now_unix_nano);
    v1::BreakerTransition t =
        commit(b, v1::BREAKER_STATE_HALF_OPEN, "probation_end", "", "probation ended");
    (void)record_and_apply(key, std::move(b), t, /*keep_on_failure=*/true);
    out.push_back(std::move(t));
  }
  return out;
}

v1::BreakerSnapshot breaker_registry::snapshot() const {
  std::lock_guard lock(mu_);
  v1::BreakerSnapshot snap;
  for (const auto& [key, b] : breakers_) *snap.add_breakers() = b;
  return snap;
}

result<std::vector<v1::BreakerTransition>> breaker_registry::history(const breaker_key& key,
                                                                     std::size_t limit) const {
  return store_.history(key.name, key.run_id, limit);
}

std::optional<v1::BreakerStatus> breaker_registry::find(const breaker_key& key) const {
  std::lock_guard lock(mu_);
  auto it = breakers_.find(key);
  if (it == breakers_.end()) return std::nullopt;
  return it->second;
}

bool breaker_registry::any_open() const {
  std::lock_guard lock(mu_);
  for (const auto& [key, b] : breakers_) {
    if (is_open(b.state())) return true;
  }
  return false;
}

std::uint64_t breaker_registry::store_errors() const { return store_errors_.load(); }

}  // namespace loopwarden::core
