#include <loopwarden/core/engine.hpp>

#include <algorithm>
#include <boost/core/demangle.hpp>
#include <chrono>
#include <exception>
#include <map>
#include <mutex>
#include <typeinfo>

#include <loopwarden/core/plugin_host.hpp>

#include "log.hpp"

namespace loopwarden::core {

namespace {

struct runner {
  monitor_config cfg;
  std::unique_ptr<loaded_monitor> loaded;
  sdk::monitor_info info;
  std::map<std::string, sdk::breaker_spec> specs;  // declared breakers by name
  bool disabled = false;                           // only the dispatcher thread reads or writes it
  std::int64_t next_tick = 0;                      // dispatcher thread only

  mutable std::mutex stats_mu;
  monitor_status stats;  // guarded by stats_mu
};

int severity_rank(sdk::gate_verdict v) {
  switch (v) {
    case sdk::gate_verdict::allow:
      return 0;
    case sdk::gate_verdict::require_approval:
      return 1;
    case sdk::gate_verdict::deny:
      return 2;
  }
  return 2;
}

std::string describe_exception(std::exception_ptr p) {
  try {
    std::rethrow_exception(p);
  } catch (const std::exception& e) {
    return boost::core::demangle(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    return "a non-standard exception";
  }
}

}  // namespace

struct engine::impl {
  config cfg;
  bool event_time_clock = true;
  breaker_registry* registry = nullptr;  // owned by the engine, outlives impl's use of it
  std::vector<std::unique_ptr<runner>> runners;
  std::array<std::vector<runner*>, sdk::event_kind_count> routes;
  std::vector<runner*> gaters;
  std::vector<runner*> tickers;
  std::map<std::string, const breaker_config*> overrides;  // into cfg.breakers

  // Dispatcher-thread state.
  std::int64_t clock_unix_nano = 0;
  const v1::Envelope* current_event = nullptr;

  mutable std::mutex counters_mu;
  engine_counters counters;  // guarded by counters_mu

  mutable std::mutex accounting_mu;
  std::unique_ptr<source_accounting> accounting;             // guarded by accounting_mu
  std::map<std::string, sdk::breaker_spec> telemetry_specs;  // telemetry.silence, telemetry.loss

  void trip_telemetry(const std::string& breaker, const source_stats& s, std::string reason);
  // The runner's breakers as declared, with the operator's overrides applied; declares them.
  void apply_specs(runner& r);

  void trip_for(runner& r, sdk::trip_request req);
  void fail(runner& r, std::string_view call, const std::string& error);
  template <typename F>
  bool invoke(runner& r, std::string_view call, F&& f);
};

namespace {

// The context handed to one monitor call.
class call_context final : public sdk::context {
 public:
  call_context(engine::impl& e, runner& r) : engine_(e), runner_(r) {}

  void trip(sdk::trip_request request) override { engine_.trip_for(runner_, std::move(request)); }

  void set_gauge(std::string_view name, double value) override {
    std::lock_guard lock(runner_.stats_mu);
    auto& gauges = runner_.stats.gauges;
    auto it =
        std::find_if(gauges.begin(), gauges.end(), [&](const auto& g) { return g.first == name; });
    if (it != gauges.end()) {
      it->second = value;
    } else {
      gauges.emplace_back(std::string(name), value);
    }
  }

  void log(sdk::log_level level, std::string_view message) override {
    constexpr std::size_t max_len = 4096;  // a monitor must not flood the log with one line
    std::string_view m = message.substr(0, std::min(message.size(), max_len));
    switch (level) {
      case sdk::log_level::debug:
        detail::log().debug("monitor {}: {}", runner_.cfg.name, m);
        break;
      case sdk::log_level::info:
        detail::log().info("monitor {}: {}", runner_.cfg.name, m);
        break;
      case sdk::log_level::warn:
        detail::log().warn("monitor {}: {}", runner_.cfg.name, m);
        break;
      case sdk::log_level::error:
        detail::log().error("monitor {}: {}", runner_.cfg.name, m);
        break;
    }
  }

  std::int64_t now_unix_nano() const override { return engine_.clock_unix_nano; }
  std::string_view instance_name() const override { return runner_.cfg.name; }

 private:
  engine::impl& engine_;
  runner& runner_;
};

}  // namespace

void engine::impl::trip_for(runner& r, sdk::trip_request req) {
  sdk::breaker_spec spec;
  if (auto it = r.specs.find(req.breaker); it != r.specs.end()) {
    spec = it->second;
  } else {
    // Undeclared breakers still trip (failing safe), with the strict defaults.
    detail::log().warn("monitor {} tripped undeclared breaker '{}'", r.cfg.name, req.breaker);
    spec.name = req.breaker;
  }
  trip_input in;
  in.breaker = r.cfg.shadow ? shadow_prefix + req.breaker : req.breaker;
  in.shadow = r.cfg.shadow;
  in.monitor = r.cfg.name;
  in.reason = std::move(req.reason);
  in.evidence = std::move(req.evidence);
  // Precedence: the operator's config, then the monitor's request, then its declaration.
  in.action = req.action.value_or(spec.action);
  in.severity = req.severity.value_or(spec.severity);
  in.scope = spec.scope;
  if (auto it = overrides.find(req.breaker); it != overrides.end()) {
    const breaker_config& o = *it->second;
    if (o.action) in.action = *o.action;
    if (o.severity) in.severity = *o.severity;
    if (o.scope) in.scope = *o.scope;
  }
  in.run_id = !req.run_id.empty()        ? std::move(req.run_id)
              : current_event != nullptr ? current_event->run_id()
                                         : std::string();
  in.time_unix_nano = clock_unix_nano;
  if (current_event != nullptr) {
    in.trigger_source = current_event->source();
    in.trigger_seq = current_event->seq();
  }
  registry->trip(in);
}

void engine::impl::fail(runner& r, std::string_view call, const std::string& error) {
  std::uint64_t errors = 0;
  {
    std::lock_guard lock(r.stats_mu);
    errors = ++r.stats.errors;
    r.stats.last_error = std::string(call) + ": " + error;
  }
  // Log the first failures in full, then every 1000th, so a monitor failing on every event
  // cannot flood the log.
  if (errors <= 10 || errors % 1000 == 0) {
    detail::log().error("monitor {} threw in {}: {} ({} failures so far, policy {})", r.cfg.name,
                        call, error, errors,
                        r.cfg.on_error == error_policy::fail_closed ? "fail_closed" : "disable");
  }
  if (r.cfg.on_error == error_policy::disable) {
    r.disabled = true;
    std::lock_guard lock(r.stats_mu);
    r.stats.current = monitor_status::state::disabled;
    return;
  }
  // Fail closed: the protection this monitor provides goes to its safe state.
  std::vector<sdk::breaker_spec> specs;
  for (const auto& [name, spec] : r.specs) specs.push_back(spec);
  if (specs.empty()) {
    sdk::breaker_spec s;
    s.name = "monitor.failed";
    s.scope = sdk::breaker_scope::global;
    r.specs[s.name] = s;
    specs.push_back(s);
  }
  for (const auto& spec : specs) {
    sdk::trip_request req;
    req.breaker = spec.name;
    req.reason = "monitor '" + r.cfg.name + "' failed in " + std::string(call) + ": " + error;
    req.evidence = {{"monitor", r.cfg.name},
                    {"call", std::string(call)},
                    {"error", error},
                    {"policy", "fail_closed"}};
    trip_for(r, std::move(req));
  }
}

void engine::impl::apply_specs(runner& r) {
  r.specs.clear();
  for (const auto& spec : r.info.breakers) {
    sdk::breaker_spec effective = spec;
    if (auto it = overrides.find(spec.name); it != overrides.end()) {
      if (it->second->action) effective.action = *it->second->action;
      if (it->second->severity) effective.severity = *it->second->severity;
      if (it->second->scope) effective.scope = *it->second->scope;
    }
    r.specs[spec.name] = effective;
    if (r.cfg.shadow) {
      sdk::breaker_spec named = effective;
      named.name = shadow_prefix + named.name;
      registry->declare(named, r.cfg.name, true);
    } else {
      registry->declare(effective, r.cfg.name);
    }
  }
}

void engine::impl::trip_telemetry(const std::string& breaker, const source_stats& s,
                                  std::string reason) {
  const sdk::breaker_spec& spec = telemetry_specs.at(breaker);
  trip_input in;
  in.breaker = breaker;
  in.monitor = "loopwarden.telemetry";
  in.reason = std::move(reason);
  in.evidence = {{"source", s.source},
                 {"run_id", s.run_id},
                 {"received", std::to_string(s.received)},
                 {"lost", std::to_string(s.lost)},
                 {"duplicates", std::to_string(s.duplicates)},
                 {"highest_seq", std::to_string(s.highest_seq)},
                 {"last_seen_unix_nano", std::to_string(s.last_seen_unix_nano)}};
  in.action = spec.action;
  in.severity = spec.severity;
  in.scope = spec.scope;
  in.run_id = s.run_id;
  in.time_unix_nano = clock_unix_nano;
  in.trigger_source = s.source;
  in.trigger_seq = s.highest_seq;
  registry->trip(in);
}

template <typename F>
bool engine::impl::invoke(runner& r, std::string_view call, F&& f) {
  if (r.disabled) return false;
  const auto start = std::chrono::steady_clock::now();
  std::exception_ptr thrown;
  try {
    f();
  } catch (...) {
    thrown = std::current_exception();
  }
  const auto ns = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count());
  {
    std::lock_guard lock(r.stats_mu);
    r.stats.total_call_ns += ns;
    r.stats.max_call_ns = std::max(r.stats.max_call_ns, ns);
    ++r.stats.call_buckets[monitor_call_bucket(ns)];
  }
  if (thrown) {
    fail(r, call, describe_exception(thrown));
    return false;
  }
  return true;
}

engine::engine(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

engine::~engine() {
  // Monitors go first (each destroys its instance, then unloads its library).
  impl_.reset();
}

result<std::unique_ptr<engine>> engine::create(const config& cfg, engine_options options) {
  auto p = std::make_unique<impl>();
  p->cfg = cfg;
  p->event_time_clock = options.event_time_clock;
  std::unique_ptr<engine> e(new engine(std::move(p)));
  impl& m = *e->impl_;

  if (options.registry != nullptr) {
    e->registry_ = options.registry;
  } else {
    breaker_store* store = options.store;
    if (store == nullptr) {
      e->owned_store_ = std::make_unique<memory_breaker_store>();
      store = e->owned_store_.get();
    }
    e->owned_registry_ = std::make_unique<breaker_registry>(*store, m.cfg.probation);
    e->registry_ = e->owned_registry_.get();
    if (auto s = e->registry_->restore(); !s.ok()) return s;
  }
  m.registry = e->registry_;
  for (const auto& b : m.cfg.breakers) m.overrides[b.name] = &b;

  // The engine's own breakers, for the event stream itself.
  m.accounting = std::make_unique<source_accounting>(m.cfg.telemetry);
  m.telemetry_specs["telemetry.silence"] = {"telemetry.silence", sdk::breaker_action::pause,
                                            sdk::severity::warning, sdk::breaker_scope::run,
                                            "a source stopped sending events and heartbeats"};
  m.telemetry_specs["telemetry.loss"] = {"telemetry.loss", sdk::breaker_action::alert,
                                         sdk::severity::warning, sdk::breaker_scope::run,
                                         "a source lost more events than allowed"};
  for (auto& [name, spec] : m.telemetry_specs) {
    if (auto it = m.overrides.find(name); it != m.overrides.end()) {
      if (it->second->action) spec.action = *it->second->action;
      if (it->second->severity) spec.severity = *it->second->severity;
      if (it->second->scope) spec.scope = *it->second->scope;
    }
  }

  std::vector<std::string> paths = m.cfg.plugin_paths;
  paths.insert(paths.end(), options.extra_plugin_paths.begin(), options.extra_plugin_paths.end());
  if (options.search_bundled_plugins) {
    if (auto dir = bundled_plugin_dir(); !dir.empty()) paths.push_back(dir);
  }
  plugin_host host(std::move(paths));

  for (const monitor_config& mc : m.cfg.monitors) {
    if (!mc.enabled) continue;
    result<std::string> path =
        mc.path.empty() ? host.find(mc.plugin) : result<std::string>(mc.path);
    result<std::unique_ptr<loaded_monitor>> loaded =
        path.ok() ? host.load(*path, mc.plugin)
                  : result<std::unique_ptr<loaded_monitor>>(path.error());
    if (!loaded.ok()) {
      sdk::status why = loaded.error().with_context("monitor '" + mc.name + "'");
      if (mc.optional) {
        detail::log().warn("{} (optional: carrying on without it)", why.message());
        e->warnings_.push_back(why.message() + " (optional: skipped)");
        continue;
      }
      return why;
    }

    auto r = std::make_unique<runner>();
    r->cfg = mc;
    r->loaded = std::move(*loaded);
    sdk::monitor& mon = r->loaded->instance();
    sdk::status configured;
    try {
      configured = mon.configure(mc.config);
      if (configured.ok()) r->info = mon.info();
    } catch (...) {
      configured =
          make_error(sdk::status_code::internal,
                     "threw in configure: " + describe_exception(std::current_exception()));
    }
    if (!configured.ok()) return configured.with_context("monitor '" + mc.name + "'");

    r->stats.name = mc.name;
    r->stats.plugin = r->info.name;
    r->stats.version = r->info.version;
    r->stats.path = r->loaded->path();
    m.apply_specs(*r);
    runner* raw = r.get();
    for (std::size_t k = 0; k < sdk::event_kind_count; ++k) {
      if (r->info.kinds.contains(static_cast<sdk::event_kind>(k))) m.routes[k].push_back(raw);
    }
    if (r->info.gate) m.gaters.push_back(raw);
    if (r->info.tick_interval.count() > 0) m.tickers.push_back(raw);
    if (r->info.kinds.empty() && !r->info.gate && r->info.tick_interval.count() == 0) {
      e->warnings_.push_back("monitor '" + mc.name + "' asks for no events, gates or ticks");
    }
    m.runners.push_back(std::move(r));
  }

  // Probation settings go to the (possibly shared) registry only now that the engine is built:
  // a config that fails to load must not change the running daemon's breakers.
  std::map<std::string, std::chrono::nanoseconds> probations;
  for (const auto& b : m.cfg.breakers) {
    if (b.probation) probations[b.name] = *b.probation;
  }
  e->registry_->configure_probation(m.cfg.probation, std::move(probations));

  for (const auto& b : m.cfg.breakers) {
    bool declared = m.telemetry_specs.count(b.name) != 0 ||
                    std::any_of(m.runners.begin(), m.runners.end(),
                                [&](const auto& r) { return r->specs.count(b.name) != 0; });
    if (!declared) {
      e->warnings_.push_back(b.node.path() + ": no configured monitor declares breaker '" + b.name +
                             "' (" + b.node.file() + ":" + std::to_string(b.node.line()) + ")");
    }
  }
  return e;
}

void engine::process(const v1::Envelope& envelope, std::int64_t receive_unix_nano) {
  impl& m = *impl_;
  const auto kind = sdk::kind_of(envelope);
  if (!kind) {
    std::lock_guard lock(m.counters_mu);
    ++m.counters.events;
    ++m.counters.malformed;
    return;
  }
  if (m.event_time_clock) {
    if (envelope.time_unix_nano() != 0) m.clock_unix_nano = envelope.time_unix_nano();
  } else if (receive_unix_nano != 0) {
    m.clock_unix_nano = receive_unix_nano;
  }
  seq_verdict verdict;
  std::vector<source_stats> lossy;
  {
    std::lock_guard lock(m.accounting_mu);
    verdict = m.accounting->observe(envelope, m.clock_unix_nano);
    lossy = m.accounting->newly_lossy();
  }
  {
    std::lock_guard lock(m.counters_mu);
    ++m.counters.events;
    if (verdict == seq_verdict::duplicate) {
      ++m.counters.duplicates;
    } else {
      ++m.counters.by_kind[static_cast<std::size_t>(*kind)];
    }
  }
  for (const auto& s : lossy) {
    m.trip_telemetry("telemetry.loss", s,
                     "source " + s.source + " lost " + std::to_string(s.lost) +
                         " events (sequence gaps), at or above the limit of " +
                         std::to_string(m.cfg.telemetry.loss_threshold));
  }
  if (verdict == seq_verdict::duplicate) return;
  m.current_event = &envelope;
  for (runner* r : m.routes[static_cast<std::size_t>(*kind)]) {
    call_context ctx(m, *r);
    if (m.invoke(*r, "on_event", [&] { r->loaded->instance().on_event(envelope, ctx); })) {
      std::lock_guard lock(r->stats_mu);
      ++r->stats.events;
    }
  }
  m.current_event = nullptr;
}

gate_outcome engine::gate(const v1::GateRequest& request) {
  impl& m = *impl_;
  if (m.event_time_clock && request.time_unix_nano() != 0) {
    m.clock_unix_nano = request.time_unix_nano();
  }
  gate_outcome out;
  for (runner* r : m.gaters) {
    call_context ctx(m, *r);
    sdk::gate_decision d;
    const bool ok =
        m.invoke(*r, "on_gate", [&] { d = r->loaded->instance().on_gate(request, ctx); });
    if (r->cfg.shadow) {
      // On trial: what it would have answered is logged, never applied.
      if (ok && d.verdict != sdk::gate_verdict::allow) {
        detail::log().info("shadow monitor {} would have answered {} to action {}: {}", r->cfg.name,
                           sdk::to_string(d.verdict), request.request_id(), d.reason);
      }
      if (ok) {
        std::lock_guard lock(r->stats_mu);
        ++r->stats.gates;
      }
      continue;
    }
    if (!ok) {
      if (r->cfg.on_error == error_policy::disable) continue;
      // A gating monitor that fails closed denies: an unjudged action must not pass.
      d.verdict = sdk::gate_verdict::deny;
      d.reason = "monitor '" + r->cfg.name + "' failed while judging this action";
      d.rule_id = "loopwarden.monitor_failed";
    } else {
      std::lock_guard lock(r->stats_mu);
      ++r->stats.gates;
    }
    if (out.monitor.empty() || severity_rank(d.verdict) > severity_rank(out.decision.verdict)) {
      out.decision = std::move(d);
      out.monitor = r->cfg.name;
    }
  }
  return out;
}

void engine::tick(std::int64_t now_unix_nano) {
  impl& m = *impl_;
  if (!m.event_time_clock) m.clock_unix_nano = now_unix_nano;
  const std::int64_t now = m.clock_unix_nano;
  for (runner* r : m.tickers) {
    const std::int64_t interval =
        std::chrono::duration_cast<std::chrono::nanoseconds>(r->info.tick_interval).count();
    if (r->next_tick == 0) r->next_tick = now + interval;
    if (now < r->next_tick) continue;
    r->next_tick = now + interval;
    call_context ctx(m, *r);
    if (m.invoke(*r, "on_tick", [&] { r->loaded->instance().on_tick(ctx); })) {
      std::lock_guard lock(r->stats_mu);
      ++r->stats.ticks;
    }
  }
  std::vector<source_stats> silent;
  {
    std::lock_guard lock(m.accounting_mu);
    silent = m.accounting->newly_silent(now);
  }
  if (m.cfg.telemetry.silence_breaker) {
    const double secs = std::chrono::duration<double>(m.cfg.telemetry.silence_timeout).count();
    for (const auto& s : silent) {
      char text[64];
      std::snprintf(text, sizeof text, "%.3g", secs);
      m.trip_telemetry("telemetry.silence", s,
                       "source " + s.source +
                           " sent nothing (no event, no heartbeat) for more than " + text + " s");
    }
  }
  registry_->advance(now);
}

std::vector<source_stats> engine::sources() const {
  std::lock_guard lock(impl_->accounting_mu);
  return impl_->accounting->sources();
}

namespace {

// A canonical text of a config subtree, to tell whether a monitor's config changed on reload.
void canonical(const sdk::config_node& n, std::string& out) {
  switch (n.type()) {
    case sdk::config_node::node_type::missing:
      out += "~missing";
      break;
    case sdk::config_node::node_type::null:
      out += "~null";
      break;
    case sdk::config_node::node_type::scalar:
      out += "s" + std::to_string(n.scalar().size()) + ":" + n.scalar();
      break;
    case sdk::config_node::node_type::sequence:
      out += "[";
      for (std::size_t i = 0; i < n.size(); ++i) canonical(n.at(i), out);
      out += "]";
      break;
    case sdk::config_node::node_type::map:
      out += "{";
      for (const auto& k : n.keys()) {
        out += "k" + std::to_string(k.size()) + ":" + k;
        canonical(n[k], out);
      }
      out += "}";
      break;
  }
}

std::string identity(const monitor_config& c) {
  std::string out = c.name + '\0' + c.plugin + '\0' + c.path + '\0' +
                    (c.on_error == error_policy::fail_closed ? "fc" : "d") + '\0' +
                    (c.shadow ? "shadow" : "enforce") + '\0';
  canonical(c.config, out);
  return out;
}

}  // namespace

std::vector<std::string> engine::adopt_unchanged(engine& old) {
  impl& m = *impl_;
  impl& o = *old.impl_;
  std::vector<std::string> kept;
  for (auto& fresh : m.runners) {
    for (auto& previous : o.runners) {
      if (!previous || identity(previous->cfg) != identity(fresh->cfg)) continue;
      runner* from = fresh.get();
      runner* to = previous.get();
      for (auto& route : m.routes) std::replace(route.begin(), route.end(), from, to);
      std::replace(m.gaters.begin(), m.gaters.end(), from, to);
      std::replace(m.tickers.begin(), m.tickers.end(), from, to);
      fresh = std::move(previous);  // the fresh instance is destroyed here, the old one kept
      m.apply_specs(*fresh);        // the new config's breaker overrides apply to it
      kept.push_back(fresh->cfg.name);
      break;
    }
  }
  std::scoped_lock lock(m.accounting_mu, o.accounting_mu);
  std::swap(m.accounting, o.accounting);
  m.accounting->set_config(m.cfg.telemetry);  // the sources carry over; the settings are new
  return kept;
}

namespace {

// The major part of a plugin version ("1.4.2" -> "1"); the whole string when it has no dot.
std::string_view version_major(std::string_view v) { return v.substr(0, v.find('.')); }

}  // namespace

std::vector<monitor_state> engine::snapshot_monitors() {
  impl& m = *impl_;
  std::vector<monitor_state> out;
  for (const auto& r : m.runners) {
    if (r->disabled) continue;
    result<std::string> taken = std::string();
    std::string error;
    const auto start = std::chrono::steady_clock::now();
    try {
      taken = r->loaded->instance().snapshot();
      if (!taken.ok()) error = taken.error().message();
    } catch (...) {
      error = describe_exception(std::current_exception());
    }
    const auto ns = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                   std::chrono::steady_clock::now() - start)
                                                   .count());
    if (!error.empty()) {
      // Not fail(): a state that cannot be saved must not trip breakers or disable the monitor.
      std::lock_guard lock(r->stats_mu);
      ++r->stats.errors;
      r->stats.last_error = "snapshot: " + error;
      detail::log().error("monitor {}: can't snapshot its state: {}", r->cfg.name, error);
      continue;
    }
    if (ns > 10'000'000) {
      detail::log().warn("monitor {}: snapshot took {} ms (the engine waits for it)", r->cfg.name,
                         ns / 1'000'000);
    }
    if (taken->empty()) continue;
    out.push_back(
        {r->cfg.name, r->info.name, r->info.version, std::move(*taken), m.clock_unix_nano});
  }
  return out;
}

status engine::restore_monitor(const monitor_state& state) {
  impl& m = *impl_;
  const std::string what = "can't restore the state of monitor '" + state.monitor + "'";
  for (const auto& r : m.runners) {
    if (r->cfg.name != state.monitor) continue;
    if (r->disabled) break;
    if (r->info.name != state.plugin) {
      return make_error(status_code::failed_precondition,
                        what + ": it was saved by plugin '" + state.plugin +
                            "', the instance now runs '" + r->info.name + "'");
    }
    if (version_major(r->info.version) != version_major(state.version)) {
      return make_error(status_code::failed_precondition,
                        what + ": it was saved by " + state.plugin + " " + state.version +
                            ", the loaded plugin is " + r->info.version + " (another major)");
    }
    status restored;
    try {
      restored = r->loaded->instance().restore(state.state);
    } catch (...) {
      restored = make_error(status_code::internal,
                            "threw in restore: " + describe_exception(std::current_exception()));
    }
    if (!restored.ok()) return restored.with_context(what);
    return status::success();
  }
  return make_error(status_code::not_found, what + ": no active instance of that name");
}

std::vector<monitor_status> engine::monitors() const {
  std::vector<monitor_status> out;
  for (const auto& r : impl_->runners) {
    std::lock_guard lock(r->stats_mu);
    out.push_back(r->stats);
  }
  return out;
}

engine_counters engine::counters() const {
  std::lock_guard lock(impl_->counters_mu);
  return impl_->counters;
}

std::int64_t engine::now_unix_nano() const { return impl_->clock_unix_nano; }

}  // namespace loopwarden::core
