#include <loopwarden/core/engine.hpp>

#include <algorithm>
#include <atomic>
#include <boost/core/demangle.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <typeinfo>
#include <unordered_map>

#include <loopwarden/core/plugin_host.hpp>

#include "isolated_monitor.hpp"
#include "log.hpp"

namespace loopwarden::core {

namespace {

using steady = std::chrono::steady_clock;

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch())
      .count();
}

struct runner;

// Deliveries to monitors that were dropped, per source of the envelope (source_stats::
// monitor_dropped). Shared by an engine's runners and handed on with them at a reload. Bounded:
// past max_sources names only the sources already known are counted. Thread-safety: every
// method locks; the dispatcher, the workers and the watchdog all count into it.
class drop_ledger {
 public:
  explicit drop_ledger(std::size_t max_sources) : max_sources_(max_sources) {}
  void add(const std::string& source, std::uint64_t n) {
    std::lock_guard lock(mu_);
    auto it = by_source_.find(source);
    if (it == by_source_.end()) {
      if (by_source_.size() >= max_sources_) return;
      it = by_source_.emplace(source, 0).first;
    }
    it->second += n;
  }
  std::uint64_t of(const std::string& source) const {
    std::lock_guard lock(mu_);
    auto it = by_source_.find(source);
    return it == by_source_.end() ? 0 : it->second;
  }

 private:
  const std::size_t max_sources_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::uint64_t> by_source_;  // guarded by mu_
};

// One call a monitor's worker makes: an event, a tick, or a piece of work the dispatcher waits
// for (a gate answer, a snapshot, a restore).
struct task {
  enum class kind { event, tick, work };
  kind what = kind::event;
  std::shared_ptr<const v1::Envelope> event;  // kind::event (and the run of a trip)
  std::int64_t clock = 0;                     // the engine's clock for this call
  std::function<void(runner&)> work;          // kind::work
};

// A loaded monitor instance with everything a call needs, so that a call never reaches back into
// the engine that queued it (a reload hands the runner to the next engine, queue and all).
struct runner {
  monitor_config cfg;
  // The instance: loaded in this process, or (isolation: process) a proxy to a child process.
  std::unique_ptr<loaded_monitor> loaded;
  std::unique_ptr<detail::isolated_monitor> isolated;
  sdk::monitor& instance() {
    return isolated ? static_cast<sdk::monitor&>(*isolated) : loaded->instance();
  }
  sdk::monitor_info info;
  breaker_registry* registry = nullptr;  // borrowed: outlives the runner's calls

  // The effective breaker specs (declared, with the operator's overrides) and the overrides for
  // breakers the monitor did not declare. Written by apply_specs at creation and at a reload
  // (adopt_unchanged, with the worker idle), read by calls.
  mutable std::mutex spec_mu;
  std::map<std::string, sdk::breaker_spec> specs;   // guarded by spec_mu
  std::map<std::string, breaker_config> overrides;  // guarded by spec_mu
  std::shared_ptr<drop_ledger> drops;               // guarded by spec_mu: the engine's

  std::atomic<bool> disabled{false};
  std::atomic<bool> hung{false};
  std::int64_t next_tick = 0;  // dispatcher thread only

  // The worker (threaded engines only).
  std::mutex queue_mu;
  std::condition_variable work_cv;   // the worker waits for tasks
  std::condition_variable space_cv;  // the dispatcher waits for room; wait_idle for empty
  std::deque<task> queue;            // guarded by queue_mu
  std::size_t queued_events = 0;     // guarded by queue_mu: kind::event entries of queue
  bool busy = false;                 // guarded by queue_mu: the worker is inside a task
  bool tick_pending = false;         // guarded by queue_mu
  bool stopping = false;             // guarded by queue_mu
  std::shared_ptr<const v1::Envelope> current_event;  // guarded by queue_mu: the running call's
  std::int64_t current_clock = 0;                     // guarded by queue_mu
  std::atomic<std::int64_t> call_started_ns{0};       // steady clock; 0 while idle
  std::atomic<const char*> call_name{"idle"};
  std::atomic<bool> finished{false};  // the worker thread has returned
  std::jthread worker;

  mutable std::mutex stats_mu;
  monitor_status stats;  // guarded by stats_mu

  runner() = default;
  runner(const runner&) = delete;
  runner& operator=(const runner&) = delete;
  // Stops an idle worker (one left hung is detached by the engine before this runs).
  ~runner() {
    if (!worker.joinable()) return;
    {
      std::lock_guard lock(queue_mu);
      stopping = true;
    }
    work_cv.notify_all();
    worker.join();
  }

  void set_state(monitor_status::state st) {
    std::lock_guard lock(stats_mu);
    stats.current = st;
  }
  // Counts `e` as not delivered to this monitor, for the monitor and for the event's source.
  void count_dropped(const v1::Envelope& e) {
    {
      std::lock_guard lock(stats_mu);
      ++stats.dropped;
    }
    std::shared_ptr<drop_ledger> ledger;
    {
      std::lock_guard lock(spec_mu);
      ledger = drops;
    }
    if (ledger) ledger->add(e.source(), 1);
  }
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

std::string describe_seconds(std::int64_t ns) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3g s", static_cast<double>(ns) / 1e9);
  return text;
}

// Opens (or keeps open) a breaker on behalf of `r`. Safe from any thread.
void trip_for(runner& r, sdk::trip_request req, const v1::Envelope* current, std::int64_t clock) {
  sdk::breaker_spec spec;
  std::optional<breaker_config> override_of;
  {
    std::lock_guard lock(r.spec_mu);
    if (auto it = r.specs.find(req.breaker); it != r.specs.end()) {
      spec = it->second;
    } else {
      // Undeclared breakers still trip (failing safe), with the strict defaults.
      detail::log().warn("monitor {} tripped undeclared breaker '{}'", r.cfg.name, req.breaker);
      spec.name = req.breaker;
    }
    if (auto it = r.overrides.find(req.breaker); it != r.overrides.end()) {
      override_of = it->second;
    }
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
  if (override_of) {
    if (override_of->action) in.action = *override_of->action;
    if (override_of->severity) in.severity = *override_of->severity;
    if (override_of->scope) in.scope = *override_of->scope;
  }
  in.run_id = !req.run_id.empty()  ? std::move(req.run_id)
              : current != nullptr ? current->run_id()
                                   : std::string();
  in.time_unix_nano = clock;
  if (current != nullptr) {
    in.trigger_source = current->source();
    in.trigger_seq = current->seq();
  }
  r.registry->trip(in);
}

// Applies the monitor's on_error policy after `call` failed (threw, or hung). Safe from any
// thread; `current` is the event being handled, if any (the run of run-scoped trips).
void apply_policy(runner& r, std::string_view call, const std::string& error,
                  const v1::Envelope* current, std::int64_t clock) {
  std::uint64_t errors = 0;
  {
    std::lock_guard lock(r.stats_mu);
    errors = ++r.stats.errors;
    r.stats.last_error = std::string(call) + ": " + error;
  }
  // Log the first failures in full, then every 1000th, so a monitor failing on every event
  // cannot flood the log.
  if (errors <= 10 || errors % 1000 == 0) {
    detail::log().error("monitor {} failed in {}: {} ({} failures so far, policy {})", r.cfg.name,
                        call, error, errors,
                        r.cfg.on_error == error_policy::fail_closed ? "fail_closed" : "disable");
  }
  if (r.cfg.on_error == error_policy::disable) {
    r.disabled = true;
    r.set_state(monitor_status::state::disabled);
    return;
  }
  // Fail closed: the protection this monitor provides goes to its safe state.
  std::vector<sdk::breaker_spec> specs;
  {
    std::lock_guard lock(r.spec_mu);
    for (const auto& [name, spec] : r.specs) specs.push_back(spec);
    if (specs.empty()) {
      sdk::breaker_spec s;
      s.name = "monitor.failed";
      s.scope = sdk::breaker_scope::global;
      r.specs[s.name] = s;
      specs.push_back(s);
    }
  }
  for (const auto& spec : specs) {
    sdk::trip_request req;
    req.breaker = spec.name;
    req.reason = "monitor '" + r.cfg.name + "' failed in " + std::string(call) + ": " + error;
    req.evidence = {{"monitor", r.cfg.name},
                    {"call", std::string(call)},
                    {"error", error},
                    {"policy", "fail_closed"}};
    trip_for(r, std::move(req), current, clock);
  }
}

// The context handed to one monitor call.
class call_context final : public sdk::context {
 public:
  call_context(runner& r, std::int64_t clock, const v1::Envelope* current)
      : runner_(r), clock_(clock), current_(current) {}

  void trip(sdk::trip_request request) override {
    trip_for(runner_, std::move(request), current_, clock_);
  }

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

  std::int64_t now_unix_nano() const override { return clock_; }
  std::string_view instance_name() const override { return runner_.cfg.name; }

 private:
  runner& runner_;
  std::int64_t clock_;
  const v1::Envelope* current_;
};

// Runs one monitor call: times it (the watchdog reads the start), contains any exception and
// applies the policy. Returns false when the call threw or the monitor is disabled.
template <typename F>
bool invoke(runner& r, const char* call, std::int64_t clock, const v1::Envelope* current, F&& f) {
  if (r.disabled) return false;
  r.call_name.store(call, std::memory_order_relaxed);
  const std::int64_t start = steady_ns();
  r.call_started_ns.store(start, std::memory_order_release);
  std::exception_ptr thrown;
  try {
    f();
  } catch (...) {
    thrown = std::current_exception();
  }
  r.call_started_ns.store(0, std::memory_order_release);
  const std::int64_t ns_signed = steady_ns() - start;
  const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(ns_signed, 0));
  {
    std::lock_guard lock(r.stats_mu);
    r.stats.total_call_ns += ns;
    r.stats.max_call_ns = std::max(r.stats.max_call_ns, ns);
    ++r.stats.call_buckets[monitor_call_bucket(ns)];
  }
  if (r.hung.exchange(false)) {
    // The watchdog gave up on this call and applied the policy; it has now come back.
    detail::log().warn("monitor {}: {} returned after {} (it had been marked hung)", r.cfg.name,
                       call, describe_seconds(ns_signed));
    if (!r.disabled) r.set_state(monitor_status::state::active);
  }
  if (thrown) {
    apply_policy(r, call, describe_exception(thrown), current, clock);
    return false;
  }
  return true;
}

void run_event(runner& r, const v1::Envelope& e, std::int64_t clock) {
  call_context ctx(r, clock, &e);
  if (invoke(r, "on_event", clock, &e, [&] { r.instance().on_event(e, ctx); })) {
    std::lock_guard lock(r.stats_mu);
    ++r.stats.events;
  }
}

void run_tick(runner& r, std::int64_t clock) {
  call_context ctx(r, clock, nullptr);
  if (invoke(r, "on_tick", clock, nullptr, [&] { r.instance().on_tick(ctx); })) {
    std::lock_guard lock(r.stats_mu);
    ++r.stats.ticks;
  }
}

void execute(runner& r, task& t) {
  switch (t.what) {
    case task::kind::event:
      run_event(r, *t.event, t.clock);
      break;
    case task::kind::tick:
      run_tick(r, t.clock);
      break;
    case task::kind::work:
      t.work(r);
      break;
  }
}

// The worker of one monitor: runs its tasks in order until stopped, then finishes what is queued.
void worker_loop(runner& r) {
  while (true) {
    task t;
    {
      std::unique_lock lock(r.queue_mu);
      r.work_cv.wait(lock, [&] { return r.stopping || !r.queue.empty(); });
      if (r.queue.empty()) break;  // stopping, and nothing left
      t = std::move(r.queue.front());
      r.queue.pop_front();
      if (t.what == task::kind::event) --r.queued_events;
      if (t.what == task::kind::tick) r.tick_pending = false;
      r.busy = true;
      r.current_event = t.event;
      r.current_clock = t.clock;
    }
    r.space_cv.notify_all();
    if (r.disabled && t.what == task::kind::event) {
      r.count_dropped(*t.event);
    } else {
      execute(r, t);
    }
    t = task();  // releases the event (and its batch) on this thread, before waiting again
    {
      std::lock_guard lock(r.queue_mu);
      r.busy = false;
      r.current_event.reset();
    }
    r.space_cv.notify_all();
  }
  r.finished = true;
  r.space_cv.notify_all();
}

// Drops every queued event of a hung or disabled monitor (releasing what they pin); returns how
// many. Work the dispatcher waits for stays queued: it is answered when the worker comes back.
std::uint64_t drop_queued_events(runner& r) {
  std::vector<std::shared_ptr<const v1::Envelope>> dropped;
  {
    std::lock_guard lock(r.queue_mu);
    for (auto it = r.queue.begin(); it != r.queue.end();) {
      if (it->what == task::kind::event) {
        dropped.push_back(std::move(it->event));
        it = r.queue.erase(it);
      } else {
        ++it;
      }
    }
    r.queued_events = 0;
  }
  r.space_cv.notify_all();
  for (const auto& e : dropped) r.count_dropped(*e);
  return dropped.size();
}

struct done_flag {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
};

// Queues `work` on the runner's worker (threaded) or runs it here. Returns what to wait on, or
// null when it already ran here or will never run (the worker is stopping: check done).
std::shared_ptr<done_flag> post_to_worker(runner& r, bool threaded,
                                          std::function<void(runner&)> work, bool front) {
  auto flag = std::make_shared<done_flag>();
  if (!threaded) {
    work(r);
    flag->done = true;
    return flag;
  }
  task t;
  t.what = task::kind::work;
  t.work = [flag, work = std::move(work)](runner& target) {
    work(target);
    std::lock_guard lock(flag->mu);
    flag->done = true;
    flag->cv.notify_all();
  };
  {
    std::lock_guard lock(r.queue_mu);
    if (r.stopping) return nullptr;
    if (front) {
      r.queue.push_front(std::move(t));
    } else {
      r.queue.push_back(std::move(t));
    }
  }
  r.work_cv.notify_one();
  return flag;
}

// Waits for what post_to_worker queued until `deadline`; false when it did not run by then.
bool wait_for_worker(const std::shared_ptr<done_flag>& flag,
                     std::chrono::steady_clock::time_point deadline) {
  if (!flag) return false;
  std::unique_lock lock(flag->mu);
  return flag->cv.wait_until(lock, deadline, [&] { return flag->done; });
}

// Runs `work` on the runner's worker (threaded) or here, and waits up to `timeout` for it.
// Returns false when it did not run in time (it may still run later: `work` must own its data).
bool run_on_worker(runner& r, bool threaded, std::function<void(runner&)> work,
                   std::chrono::milliseconds timeout, bool front) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  return wait_for_worker(post_to_worker(r, threaded, std::move(work), front), deadline);
}

}  // namespace

struct engine::impl {
  config cfg;
  bool event_time_clock = true;
  bool threaded = false;
  engine_options options;
  breaker_registry* registry = nullptr;  // owned by the engine, outlives impl's use of it
  // The vector's entries change only in adopt_unchanged (a reload moves them to the next
  // engine); readers on other threads (monitors(), the watchdog) hold runners_mu.
  mutable std::mutex runners_mu;
  std::vector<std::unique_ptr<runner>> runners;
  std::array<std::vector<runner*>, sdk::event_kind_count> routes;
  std::vector<runner*> gaters;
  std::vector<runner*> tickers;
  std::map<std::string, const breaker_config*> overrides;  // into cfg.breakers

  // Dispatcher-thread state.
  std::int64_t clock_unix_nano = 0;

  mutable std::mutex counters_mu;
  engine_counters counters;  // guarded by counters_mu

  mutable std::mutex accounting_mu;
  std::unique_ptr<source_accounting> accounting;  // guarded by accounting_mu
  std::shared_ptr<drop_ledger> drops;  // set at creation; replaced only by adopt_unchanged
  std::map<std::string, sdk::breaker_spec> telemetry_specs;  // telemetry.silence, telemetry.loss

  std::jthread watchdog;  // threaded engines: marks monitors hung

  ~impl();
  void trip_telemetry(const std::string& breaker, const source_stats& s, std::string reason);
  // The runner's breakers as declared, with the operator's overrides applied; declares them.
  void apply_specs(runner& r);
  void start_worker(runner& r);
  void stop_workers();
  void watch(std::stop_token stop);
  // Queues `e` for `r` (threaded) or runs it (synchronous). `copy` is the event's own copy for
  // lagging monitors, made by the first that needs it and shared by the rest.
  void dispatch(runner& r, const std::shared_ptr<const v1::Envelope>& e, std::int64_t clock,
                std::shared_ptr<const v1::Envelope>& copy);
};

engine::impl::~impl() {
  if (watchdog.joinable()) {
    watchdog.request_stop();
    watchdog.join();
  }
  stop_workers();
}

void engine::impl::start_worker(runner& r) {
  runner* p = &r;
  r.worker = std::jthread([p] { worker_loop(*p); });
}

void engine::impl::stop_workers() {
  for (auto& r : runners) {
    if (!r || !r->worker.joinable()) continue;
    {
      std::lock_guard lock(r->queue_mu);
      r->stopping = true;
    }
    r->work_cv.notify_all();
  }
  const auto deadline = steady::now() + options.stop_timeout;
  for (auto& r : runners) {
    if (!r || !r->worker.joinable()) continue;
    {
      // A monitor the watchdog marked hung is not waited for: it has already had its deadline.
      std::unique_lock lock(r->queue_mu);
      r->space_cv.wait_until(lock, deadline, [&] { return r->finished.load() || r->hung.load(); });
    }
    if (r->finished) {
      r->worker.join();
      continue;
    }
    // Still inside a call: a hung plugin. Joining would hang the daemon with it, and unloading
    // the library under a running call would crash it, so the thread is abandoned and the
    // monitor (instance and library) deliberately leaked; both end with the process.
    detail::log().error(
        "monitor {}: its worker is still inside {} after {} ms; abandoning it (the process "
        "exits with it; use isolation: process for plugins that can hang)",
        r->cfg.name, r->call_name.load(), options.stop_timeout.count());
    drop_queued_events(*r);
    r->worker.detach();
    (void)r.release();
  }
}

void engine::impl::watch(std::stop_token stop) {
  std::chrono::nanoseconds shortest{std::chrono::seconds(1)};
  {
    // Under runners_mu like every other reader, and skipping moved-out entries: a reload's
    // adopt_unchanged may already be moving this engine's runners to the next one (this thread
    // starts with the engine, and a reload can come before it gets here).
    std::lock_guard runners_lock(runners_mu);
    for (const auto& r : runners) {
      if (r && r->cfg.deadline.count() > 0) shortest = std::min(shortest, r->cfg.deadline);
    }
  }
  const auto period = std::clamp<std::chrono::nanoseconds>(
      shortest / 4, std::chrono::milliseconds(5), std::chrono::milliseconds(250));
  std::mutex mu;
  std::condition_variable_any cv;
  while (!stop.stop_requested()) {
    {
      std::unique_lock lock(mu);
      cv.wait_for(lock, stop, period, [] { return false; });
    }
    if (stop.stop_requested()) break;
    const std::int64_t now = steady_ns();
    std::lock_guard runners_lock(runners_mu);
    for (auto& r : runners) {
      // An isolated monitor enforces its deadline itself, by killing its process.
      if (!r || r->cfg.deadline.count() <= 0 || r->hung || r->isolated) continue;
      const std::int64_t started = r->call_started_ns.load(std::memory_order_acquire);
      if (started == 0 || now - started <= r->cfg.deadline.count()) continue;
      if (r->hung.exchange(true)) continue;
      std::shared_ptr<const v1::Envelope> event;
      std::int64_t clock = 0;
      {
        std::lock_guard lock(r->queue_mu);
        event = r->current_event;
        clock = r->current_clock;
      }
      {
        std::lock_guard lock(r->stats_mu);
        ++r->stats.hangs;
        r->stats.current = monitor_status::state::hung;
      }
      const std::string error = std::string(r->call_name.load()) + " has not returned after " +
                                describe_seconds(now - started) + " (deadline " +
                                describe_seconds(r->cfg.deadline.count()) + ")";
      apply_policy(*r, "watchdog", "hung: " + error, event.get(), clock);
      // Whatever it has not reached is dropped (and counted): a hung monitor must not pin the
      // events others are done with, nor make the dispatcher wait for room.
      drop_queued_events(*r);
      if (r->disabled) {
        r->set_state(monitor_status::state::disabled);
      } else {
        r->set_state(monitor_status::state::hung);
      }
    }
  }
}

namespace {

// A monitor this many events behind gets its own copy of each further envelope instead of
// sharing the caller's. The live daemon's envelopes share one ingest batch (up to 64 envelopes
// parsed into one 64 KiB arena) that stays alive while any of them is queued anywhere. A lagging
// monitor that drops most of a flood (overflow: drop) keeps one envelope of each of
// queue_capacity different batches; and under back-pressure (block) the consecutive envelopes
// in its queue are just as many batches when the ingest thread hands them over one or two at a
// time, as it does at a steady few thousand envelopes a second: either way queue_capacity whole
// batches (64 MiB at the default 1024, per lagging monitor; the 30-minute soak churned through
// 200 MiB of them in 10 s at load average 18). With copies a monitor pins at most this many
// batches plus the copies' own size (docs/reliability.md).
constexpr std::size_t shared_queue_limit = 64;

}  // namespace

void engine::impl::dispatch(runner& r, const std::shared_ptr<const v1::Envelope>& e,
                            std::int64_t clock, std::shared_ptr<const v1::Envelope>& copy) {
  if (!threaded) {
    run_event(r, *e, clock);
    return;
  }
  if (r.disabled || r.hung) {
    r.count_dropped(*e);
    return;
  }
  {
    std::unique_lock lock(r.queue_mu);
    if (r.queued_events >= r.cfg.queue_capacity) {
      if (options.overflow == overflow_policy::drop) {
        lock.unlock();
        r.count_dropped(*e);
        return;
      }
      // Back-pressure, but never behind a monitor that hangs or gets disabled meanwhile.
      while (r.queued_events >= r.cfg.queue_capacity && !r.hung && !r.disabled && !r.stopping) {
        r.space_cv.wait_for(lock, std::chrono::milliseconds(10));
      }
      if (r.hung || r.disabled || r.stopping) {
        lock.unlock();
        r.count_dropped(*e);
        return;
      }
    }
    if (r.queued_events < shared_queue_limit) {
      task t;
      t.event = e;
      t.clock = clock;
      r.queue.push_back(std::move(t));
      ++r.queued_events;
      lock.unlock();
      r.work_cv.notify_one();
      return;
    }
  }
  // Copied outside the lock, so the worker keeps taking events meanwhile; only this thread adds
  // events, so the room found above is still there.
  if (!copy) copy = std::make_shared<const v1::Envelope>(*e);
  task t;
  t.event = copy;
  t.clock = clock;
  {
    std::lock_guard lock(r.queue_mu);
    r.queue.push_back(std::move(t));
    ++r.queued_events;
  }
  r.work_cv.notify_one();
}

void engine::impl::apply_specs(runner& r) {
  std::map<std::string, sdk::breaker_spec> specs;
  std::map<std::string, breaker_config> own_overrides;
  for (const auto& [name, o] : overrides) own_overrides[name] = *o;
  for (const auto& spec : r.info.breakers) {
    sdk::breaker_spec effective = spec;
    if (auto it = overrides.find(spec.name); it != overrides.end()) {
      if (it->second->action) effective.action = *it->second->action;
      if (it->second->severity) effective.severity = *it->second->severity;
      if (it->second->scope) effective.scope = *it->second->scope;
    }
    specs[spec.name] = effective;
    if (r.cfg.shadow) {
      sdk::breaker_spec named = effective;
      named.name = shadow_prefix + named.name;
      registry->declare(named, r.cfg.name, true);
    } else {
      registry->declare(effective, r.cfg.name);
    }
  }
  std::lock_guard lock(r.spec_mu);
  r.specs = std::move(specs);
  r.overrides = std::move(own_overrides);
  r.registry = registry;
  r.drops = drops;
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

engine::engine(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

engine::~engine() {
  // Monitors go first (each destroys its instance, then unloads its library).
  impl_.reset();
}

result<std::unique_ptr<engine>> engine::create(const config& cfg, engine_options options) {
  auto p = std::make_unique<impl>();
  p->cfg = cfg;
  p->event_time_clock = options.event_time_clock;
  p->threaded = options.threaded;
  p->options = options;
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
  m.drops = std::make_shared<drop_ledger>(m.cfg.telemetry.max_sources);
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
    if (path.ok()) {
      // The permission rule and the pinned digest (plugin_trust.hpp), before anything loads the
      // file. A refusal here means someone else could have changed the plugin, or did: it stops
      // the engine even for an optional monitor. A missing file is an ordinary load failure.
      path = host.verify(*path, mc.plugin.empty() ? std::string_view() : mc.plugin, mc.sha256);
      if (!path.ok() && path.error().code() != sdk::status_code::not_found) {
        return path.error().with_context("monitor '" + mc.name + "'");
      }
    }
    auto r = std::make_unique<runner>();
    r->cfg = mc;
    sdk::status loaded_ok;
    if (!path.ok()) {
      loaded_ok = path.error();
    } else if (mc.isolation == isolation_mode::process) {
      // The plugin is loaded (ABI-checked and configured) by the child, never in this process.
      detail::isolated_monitor_options io;
      io.host_command = options.monitor_host_command;
      io.plugin_path = *path;
      io.plugin_name = mc.plugin.empty() ? *path : mc.plugin;
      io.expected_sha256 = mc.sha256;  // checked again before every (re)start of the child
      io.instance = mc.name;
      io.deadline = mc.deadline;
      io.memory_limit_bytes = mc.memory_limit_bytes;
      auto started = detail::isolated_monitor::start(std::move(io), mc.config);
      if (started.ok()) {
        r->isolated = std::move(*started);
        r->info = r->isolated->info();
      } else {
        loaded_ok = started.error();
      }
    } else {
      auto loaded = host.load(*path, mc.plugin);
      if (loaded.ok()) {
        r->loaded = std::move(*loaded);
      } else {
        loaded_ok = loaded.error();
      }
    }
    if (!loaded_ok.ok()) {
      sdk::status why = loaded_ok.with_context("monitor '" + mc.name + "'");
      // A configure error is the operator's to fix, optional or not.
      if (mc.optional && why.code() != sdk::status_code::invalid_argument) {
        detail::log().warn("{} (optional: carrying on without it)", why.message());
        e->warnings_.push_back(why.message() + " (optional: skipped)");
        continue;
      }
      return why;
    }

    if (!r->isolated) {
      sdk::monitor& mon = r->instance();
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
    }

    r->stats.name = mc.name;
    r->stats.plugin = r->info.name;
    r->stats.version = r->info.version;
    r->stats.path = r->isolated ? *path : r->loaded->path();
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
                    std::any_of(m.runners.begin(), m.runners.end(), [&](const auto& r) {
                      std::lock_guard lock(r->spec_mu);
                      return r->specs.count(b.name) != 0;
                    });
    if (!declared) {
      e->warnings_.push_back(b.node.path() + ": no configured monitor declares breaker '" + b.name +
                             "' (" + b.node.file() + ":" + std::to_string(b.node.line()) + ")");
    }
  }
  if (m.threaded) {
    for (auto& r : m.runners) m.start_worker(*r);
    impl* raw = &m;
    m.watchdog = std::jthread([raw](std::stop_token st) { raw->watch(st); });
  }
  return e;
}

void engine::process(const v1::Envelope& envelope, std::int64_t receive_unix_nano) {
  if (impl_->threaded) {
    // The workers outlive this call: they need their own copy.
    process(std::make_shared<const v1::Envelope>(envelope), receive_unix_nano);
    return;
  }
  // Synchronous: the caller's envelope is used in place, never copied (a no-op deleter).
  process(std::shared_ptr<const v1::Envelope>(&envelope, [](const v1::Envelope*) {}),
          receive_unix_nano);
}

void engine::process(std::shared_ptr<const v1::Envelope> event, std::int64_t receive_unix_nano) {
  impl& m = *impl_;
  const v1::Envelope& envelope = *event;
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
  std::shared_ptr<const v1::Envelope> copy;
  for (runner* r : m.routes[static_cast<std::size_t>(*kind)])
    m.dispatch(*r, event, m.clock_unix_nano, copy);
}

bool engine::wait_idle(std::chrono::milliseconds timeout) {
  impl& m = *impl_;
  if (!m.threaded) return true;
  const auto deadline = steady::now() + timeout;
  bool all = true;
  for (auto& r : m.runners) {
    std::unique_lock lock(r->queue_mu);
    const bool idle = r->space_cv.wait_until(
        lock, deadline, [&] { return (r->queue.empty() && !r->busy) || r->hung || r->finished; });
    all = all && idle && !r->hung;
  }
  return all;
}

std::uint64_t engine::discard_queued_events() {
  impl& m = *impl_;
  if (!m.threaded) return 0;
  std::uint64_t dropped = 0;
  std::lock_guard runners_lock(m.runners_mu);
  for (auto& r : m.runners) {
    if (r) dropped += drop_queued_events(*r);
  }
  return dropped;
}

gate_outcome engine::gate(const v1::GateRequest& request) {
  impl& m = *impl_;
  if (m.event_time_clock && request.time_unix_nano() != 0) {
    m.clock_unix_nano = request.time_unix_nano();
  }
  const std::int64_t clock = m.clock_unix_nano;

  // Every gating monitor is asked at once (each on its own worker, ahead of its queued events);
  // the answers are collected here. What a monitor answers after the deadline is discarded.
  struct answer {
    bool done = false;
    bool ok = false;
    sdk::gate_decision decision;
  };
  struct answers {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<answer> slots;
    std::size_t pending = 0;
  };
  auto shared = std::make_shared<answers>();
  shared->slots.resize(m.gaters.size());
  // Workers may still run after this call returns: they get their own copy of the request.
  auto req = m.threaded
                 ? std::make_shared<const v1::GateRequest>(request)
                 : std::shared_ptr<const v1::GateRequest>(&request, [](const v1::GateRequest*) {});
  // Trips made while judging (and a watchdog trip if the call hangs) belong to the asking run.
  auto origin = std::make_shared<v1::Envelope>();
  origin->set_run_id(request.run_id());
  origin->set_source(request.source());
  for (std::size_t i = 0; i < m.gaters.size(); ++i) {
    runner& r = *m.gaters[i];
    if (r.disabled || r.hung) {
      shared->slots[i].done = true;  // not asked: ok stays false
      continue;
    }
    auto ask = [shared, req, origin, i, clock](runner& target) {
      call_context ctx(target, clock, origin.get());
      sdk::gate_decision d;
      const bool ok = invoke(target, "on_gate", clock, origin.get(),
                             [&] { d = target.instance().on_gate(*req, ctx); });
      if (ok) {
        std::lock_guard lock(target.stats_mu);
        ++target.stats.gates;
      }
      std::lock_guard lock(shared->mu);
      shared->slots[i].done = true;
      shared->slots[i].ok = ok;
      shared->slots[i].decision = std::move(d);
      --shared->pending;
      shared->cv.notify_all();
    };
    if (!m.threaded) {
      ++shared->pending;
      ask(r);
      continue;
    }
    task t;
    t.what = task::kind::work;
    t.event = origin;
    t.clock = clock;
    t.work = std::move(ask);
    {
      std::lock_guard lock(r.queue_mu);
      if (r.stopping) {
        shared->slots[i].done = true;
        continue;
      }
      std::lock_guard answers_lock(shared->mu);
      ++shared->pending;
      r.queue.push_front(std::move(t));  // a host is waiting: ahead of queued events
    }
    r.work_cv.notify_one();
  }

  std::vector<answer> got;
  {
    std::unique_lock lock(shared->mu);
    if (m.threaded) {
      shared->cv.wait_for(lock, m.options.gate_deadline, [&] { return shared->pending == 0; });
    }
    got = shared->slots;
  }

  gate_outcome out;
  for (std::size_t i = 0; i < m.gaters.size(); ++i) {
    runner& r = *m.gaters[i];
    const answer& a = got[i];
    sdk::gate_decision d = a.decision;
    if (r.cfg.shadow) {
      // On trial: what it would have answered is logged, never applied.
      if (a.ok && d.verdict != sdk::gate_verdict::allow) {
        detail::log().info("shadow monitor {} would have answered {} to action {}: {}", r.cfg.name,
                           sdk::to_string(d.verdict), request.request_id(), d.reason);
      }
      continue;
    }
    if (!a.ok) {
      if (r.cfg.on_error == error_policy::disable) continue;
      // A gating monitor that fails closed denies: an unjudged action must not pass.
      d = sdk::gate_decision{};
      d.verdict = sdk::gate_verdict::deny;
      if (!a.done) {
        d.reason = "monitor '" + r.cfg.name + "' did not answer within " +
                   std::to_string(m.options.gate_deadline.count()) + " ms";
        d.rule_id = "loopwarden.monitor_timeout";
      } else if (r.hung) {
        d.reason = "monitor '" + r.cfg.name + "' is hung and cannot judge this action";
        d.rule_id = "loopwarden.monitor_hung";
      } else {
        d.reason = "monitor '" + r.cfg.name + "' failed while judging this action";
        d.rule_id = "loopwarden.monitor_failed";
      }
    }
    if (out.monitor.empty() || severity_rank(d.verdict) > severity_rank(out.decision.verdict)) {
      out.decision = std::move(d);
      out.monitor = r.cfg.name;
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
    if (!m.threaded) {
      run_tick(*r, now);
      continue;
    }
    if (r->disabled || r->hung) continue;
    {
      std::lock_guard lock(r->queue_mu);
      if (r->tick_pending || r->stopping) continue;  // one tick waiting is enough
      task t;
      t.what = task::kind::tick;
      t.clock = now;
      r->queue.push_back(std::move(t));
      r->tick_pending = true;
    }
    r->work_cv.notify_one();
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
  // Never waits: a trip or reset being recorded holds the registry through an fsync.
  registry_->try_advance(now);
}

std::vector<source_stats> engine::sources() const {
  std::vector<source_stats> out;
  {
    std::lock_guard lock(impl_->accounting_mu);
    out = impl_->accounting->sources();
  }
  for (auto& s : out) s.monitor_dropped = impl_->drops->of(s.source);
  return out;
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
  std::string out = c.name + '\0' + c.plugin + '\0' + c.path + '\0' + c.sha256 + '\0' +
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
  std::scoped_lock runners_lock(m.runners_mu, o.runners_mu);
  // The drop counts carry over like the sources they belong to (swapped below).
  m.drops = o.drops;
  for (auto& fresh : m.runners) {
    for (auto& previous : o.runners) {
      if (!previous || identity(previous->cfg) != identity(fresh->cfg)) continue;
      // A hung instance is not worth keeping: the new engine starts a fresh one.
      if (previous->hung) continue;
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
  for (auto& r : m.runners) {
    std::lock_guard lock(r->spec_mu);
    r->drops = m.drops;
  }
  std::scoped_lock lock(m.accounting_mu, o.accounting_mu);
  std::swap(m.accounting, o.accounting);
  m.accounting->set_config(m.cfg.telemetry);  // the sources carry over; the settings are new
  return kept;
}

namespace {

// The major part of a plugin version ("1.4.2" -> "1"); the whole string when it has no dot.
std::string_view version_major(std::string_view v) { return v.substr(0, v.find('.')); }

// How long snapshot_monitors and restore_monitor wait for a monitor's worker.
constexpr std::chrono::milliseconds state_call_timeout{5000};

}  // namespace

std::vector<monitor_state> engine::snapshot_monitors() {
  impl& m = *impl_;
  // The answers live in shared blocks: a worker that answers after the timeout must not write
  // into this frame.
  struct reply {
    result<std::string> taken = std::string();
    std::string error;
    std::int64_t ns = 0;
  };
  struct asked {
    runner* r;
    std::shared_ptr<reply> got;
    std::shared_ptr<done_flag> flag;
  };
  // Every worker is asked first and all are waited for together, against one deadline: the
  // caller (the server's engine thread) waits for the slowest queue, not for their sum.
  std::vector<asked> pending;
  for (const auto& r : m.runners) {
    if (r->disabled || r->hung) continue;
    auto got = std::make_shared<reply>();
    auto flag = post_to_worker(
        *r, m.threaded,
        [got](runner& target) {
          const std::int64_t start = steady_ns();
          try {
            got->taken = target.instance().snapshot();
            if (!got->taken.ok()) got->error = got->taken.error().message();
          } catch (...) {
            got->error = describe_exception(std::current_exception());
          }
          got->ns = steady_ns() - start;
        },
        false);
    pending.push_back({r.get(), std::move(got), std::move(flag)});
  }
  const auto deadline = std::chrono::steady_clock::now() + state_call_timeout;
  std::vector<monitor_state> out;
  for (auto& [r, got, flag] : pending) {
    if (!wait_for_worker(flag, deadline)) {
      // Only the timeout writes here: a late answer writes into its own block, not this one.
      auto late = std::make_shared<reply>();
      late->error = "no answer within " + std::to_string(state_call_timeout.count()) + " ms";
      got = std::move(late);
    }
    if (!got->error.empty()) {
      // Not apply_policy(): a state that cannot be saved must not trip breakers or disable it.
      std::lock_guard lock(r->stats_mu);
      ++r->stats.errors;
      r->stats.last_error = "snapshot: " + got->error;
      detail::log().error("monitor {}: can't snapshot its state: {}", r->cfg.name, got->error);
      continue;
    }
    if (got->ns > 10'000'000) {
      detail::log().warn("monitor {}: snapshot took {} ms", r->cfg.name, got->ns / 1'000'000);
    }
    if (got->taken->empty()) continue;
    out.push_back(
        {r->cfg.name, r->info.name, r->info.version, std::move(*got->taken), m.clock_unix_nano});
  }
  return out;
}

status engine::restore_monitor(const monitor_state& state) {
  impl& m = *impl_;
  const std::string what = "can't restore the state of monitor '" + state.monitor + "'";
  for (const auto& r : m.runners) {
    if (r->cfg.name != state.monitor) continue;
    if (r->disabled || r->hung) break;
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
    auto restored = std::make_shared<status>(make_error(
        status_code::timeout,
        "restore did not finish within " + std::to_string(state_call_timeout.count()) + " ms"));
    auto bytes = std::make_shared<const std::string>(state.state);
    run_on_worker(
        *r, m.threaded,
        [restored, bytes](runner& target) {
          status s;
          try {
            s = target.instance().restore(*bytes);
          } catch (...) {
            s = make_error(status_code::internal,
                           "threw in restore: " + describe_exception(std::current_exception()));
          }
          *restored = s;
        },
        state_call_timeout, false);
    if (!restored->ok()) return restored->with_context(what);
    return status::success();
  }
  return make_error(status_code::not_found, what + ": no active instance of that name");
}

std::vector<monitor_status> engine::monitors() const {
  std::vector<monitor_status> out;
  std::lock_guard runners_lock(impl_->runners_mu);
  for (const auto& r : impl_->runners) {
    if (!r) continue;  // handed to the next engine by a reload
    std::size_t depth = 0;
    if (impl_->threaded) {
      std::lock_guard lock(r->queue_mu);
      depth = r->queue.size();
    }
    std::lock_guard lock(r->stats_mu);
    out.push_back(r->stats);
    out.back().queue_depth = depth;
  }
  return out;
}

engine_counters engine::counters() const {
  std::lock_guard lock(impl_->counters_mu);
  return impl_->counters;
}

std::int64_t engine::now_unix_nano() const { return impl_->clock_unix_nano; }

}  // namespace loopwarden::core
