#include <loopwarden/client/breaker_watch.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <future>
#include <iterator>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include <zmq_addon.hpp>

#include <loopwarden/types.hpp>

#include "zmq_support.hpp"

namespace loopwarden::client {
namespace {

using steady = std::chrono::steady_clock;
using breaker_key = std::pair<std::string, std::string>;  // name, run_id ("" for global)

constexpr std::string_view transition_topic = "transition";
constexpr std::string_view snapshot_topic = "snapshot";

std::int64_t steady_ns(steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

breaker_key key_of(const v1::BreakerStatus& b) {
  return {b.name(), b.scope() == v1::BREAKER_SCOPE_GLOBAL ? std::string() : b.run_id()};
}

bool is_open(const v1::BreakerStatus& b) {
  return b.state() == v1::BREAKER_STATE_OPEN || b.state() == v1::BREAKER_STATE_FORCED_OPEN;
}

// ALERT only tells on-call; every other action (an unknown one included) stops the host.
bool stops_host(const v1::BreakerStatus& b) {
  return is_open(b) && b.action() != v1::BREAKER_ACTION_ALERT;
}

bool applies_to(const v1::BreakerStatus& b, const std::string& run_id) {
  return is_open(b) && (b.scope() == v1::BREAKER_SCOPE_GLOBAL || b.run_id() == run_id);
}

// Strongest first: halt (and an unspecified action, treated as halt), pause, rollback,
// require_approval, throttle, then alert, which does not stop the host.
int strength_rank(v1::BreakerAction a) {
  switch (a) {
    case v1::BREAKER_ACTION_PAUSE:
      return 1;
    case v1::BREAKER_ACTION_ROLLBACK:
      return 2;
    case v1::BREAKER_ACTION_REQUIRE_APPROVAL:
      return 3;
    case v1::BREAKER_ACTION_THROTTLE:
      return 4;
    case v1::BREAKER_ACTION_ALERT:
      return 5;
    default:
      return 0;
  }
}

bool same_state(const v1::BreakerStatus& a, const v1::BreakerStatus& b) {
  return a.epoch() == b.epoch() && a.state() == b.state() && a.action() == b.action();
}

std::string describe(const v1::BreakerStatus& b) {
  std::string line = b.name();
  if (b.scope() != v1::BREAKER_SCOPE_GLOBAL) line += " (run " + b.run_id() + ")";
  line += " is ";
  line += sdk::to_string(b.state());
  const auto action = sdk::from_proto(b.action());
  line += ", action ";
  line += action ? sdk::to_string(*action) : std::string_view("unspecified");
  if (!b.monitor().empty()) line += ", by " + b.monitor();
  if (!b.reason().empty()) line += ": " + b.reason();
  return line;
}

}  // namespace

struct breaker_watch::impl {
  explicit impl(breaker_watch_options o)
      : options(std::move(o)),
        started(steady::now()),
        timeout_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(options.timeout).count()),
        poll_period(std::clamp(options.timeout / 4, std::chrono::milliseconds(1),
                               std::chrono::milliseconds(25))) {}

  bool silent_at(std::int64_t now_ns) const {
    const std::int64_t last = last_message_ns.load(std::memory_order_acquire);
    // Never heard from the sidecar: the time since start is the grace period.
    const std::int64_t since = last != 0 ? last : steady_ns(started);
    return now_ns - since >= timeout_ns;
  }

  std::string silence_reason(std::int64_t now_ns) const {
    const std::int64_t last = last_message_ns.load(std::memory_order_acquire);
    const auto ms = [](std::int64_t ns) { return std::to_string(ns / 1'000'000); };
    std::string r = "sidecar silent: no breaker message from '" + options.endpoint + "' ";
    if (last == 0) {
      r += "since the watch started " + ms(now_ns - steady_ns(started)) + " ms ago";
    } else {
      r += "for " + ms(now_ns - last) + " ms";
    }
    r += " (timeout " + std::to_string(options.timeout.count()) + " ms)";
    if (options.fail_open) r += "; fail_open is set, carrying on";
    return r;
  }

  // Recounts the lock-free summary after the table changed and wakes waiters. Caller holds mu.
  void publish_change_locked() {
    std::uint32_t global = 0;
    std::uint32_t run = 0;
    for (const auto& [key, b] : breakers) {
      if (!stops_host(b)) continue;
      (b.scope() == v1::BREAKER_SCOPE_GLOBAL ? global : run) += 1;
    }
    global_stops.store(global, std::memory_order_release);
    run_stops.store(run, std::memory_order_release);
    epoch.fetch_add(1, std::memory_order_acq_rel);
    changed.notify_all();
  }

  void apply_snapshot(const v1::BreakerSnapshot& snap) {
    std::lock_guard lock(mu);
    // A transition published after the snapshot was taken may have overtaken it; within one
    // sidecar its epoch (or, for a breaker the snapshot lacks, its time) says so. A different
    // sidecar_id means a different sidecar: its snapshot is the whole truth.
    const bool same_sidecar = snap.sidecar_id() == sidecar_id;
    std::map<breaker_key, v1::BreakerStatus> next;
    for (const auto& b : snap.breakers()) {
      breaker_key key = key_of(b);
      auto known = breakers.find(key);
      if (same_sidecar && known != breakers.end() && known->second.epoch() > b.epoch()) {
        next.emplace(std::move(key), known->second);
      } else {
        next.emplace(std::move(key), b);
      }
    }
    if (same_sidecar) {
      for (const auto& [key, b] : breakers) {
        if (!next.contains(key) && b.changed_unix_nano() > snap.time_unix_nano()) {
          next.emplace(key, b);
        }
      }
    }
    const bool differs =
        !same_sidecar || next.size() != breakers.size() ||
        !std::equal(next.begin(), next.end(), breakers.begin(), [](const auto& a, const auto& b) {
          return a.first == b.first && same_state(a.second, b.second);
        });
    breakers = std::move(next);
    sidecar_id = snap.sidecar_id();
    snapshot_sequence.store(snap.sequence(), std::memory_order_release);
    snapshots.fetch_add(1, std::memory_order_relaxed);
    if (differs) publish_change_locked();
  }

  // Returns false for a transition older than what is known (it is then ignored).
  bool apply_transition(const v1::BreakerTransition& t) {
    std::lock_guard lock(mu);
    const v1::BreakerStatus& b = t.breaker();
    auto [it, inserted] = breakers.try_emplace(key_of(b), b);
    bool differs = inserted;
    if (!inserted) {
      if (it->second.epoch() > b.epoch()) return false;
      differs = !same_state(it->second, b);
      it->second = b;
    }
    transitions.fetch_add(1, std::memory_order_relaxed);
    if (differs) publish_change_locked();
    return true;
  }

  void handle(const std::vector<zmq::message_t>& parts) {
    if (parts.size() != 2) {
      malformed.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const std::string_view topic = parts[0].to_string_view();
    v1::BreakerMessage message;
    const bool parsed = message.ParseFromArray(parts[1].data(), static_cast<int>(parts[1].size()));
    const bool is_transition = topic == transition_topic && message.has_transition();
    const bool is_snapshot = topic == snapshot_topic && message.has_snapshot();
    if (!parsed || (!is_transition && !is_snapshot)) {
      malformed.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    last_message_ns.store(steady_ns(steady::now()), std::memory_order_release);
    if (is_snapshot) {
      apply_snapshot(message.snapshot());
      return;
    }
    if (apply_transition(message.transition()) && options.on_transition) {
      // Outside the lock, so the callback may call back into the watch.
      try {
        options.on_transition(message.transition());
      } catch (...) {
        callback_errors.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }

  // The watch thread: owns the SUB socket from creation to close.
  void run(const std::stop_token& stop, std::promise<sdk::status>& ready) {
    std::optional<detail::owned_socket> socket;
    try {
      socket.emplace(zmq::socket_type::sub, std::chrono::milliseconds(0));
      socket->get().set(zmq::sockopt::rcvtimeo, static_cast<int>(poll_period.count()));
      socket->get().set(zmq::sockopt::subscribe, transition_topic);
      socket->get().set(zmq::sockopt::subscribe, snapshot_topic);
    } catch (const zmq::error_t& e) {
      ready.set_value(detail::to_status(e, "can't open socket"));
      return;
    }
    if (auto s = detail::connect(socket->get(), options.endpoint); !s.ok()) {
      ready.set_value(s);
      return;
    }
    ready.set_value(sdk::status::success());

    // Within the grace after start the sidecar does not count as silent yet.
    bool was_silent = silent_at(steady_ns(steady::now()));
    std::vector<zmq::message_t> parts;
    while (!stop.stop_requested()) {
      parts.clear();
      try {
        if (zmq::recv_multipart(socket->get(), std::back_inserter(parts))) handle(parts);
      } catch (const zmq::error_t&) {
        // EINTR and the like: the loop retries; a dead context ends in silence, which fails
        // closed.
      }
      // Silence begins and ends by the clock; waiters learn both through the epoch.
      const bool silent_now = silent_at(steady_ns(steady::now()));
      if (silent_now != was_silent) {
        was_silent = silent_now;
        std::lock_guard lock(mu);
        epoch.fetch_add(1, std::memory_order_acq_rel);
        changed.notify_all();
      }
    }
  }

  const breaker_watch_options options;
  const steady::time_point started;
  const std::int64_t timeout_ns;
  const std::chrono::milliseconds poll_period;

  // The lock-free summary should_stop() reads.
  std::atomic<std::int64_t> last_message_ns{0};  // steady clock; 0 = never
  std::atomic<std::uint32_t> global_stops{0};    // open global breakers that stop hosts
  std::atomic<std::uint32_t> run_stops{0};       // open run-scoped ones, any run
  std::atomic<std::uint64_t> epoch{0};
  std::atomic<std::uint64_t> snapshot_sequence{0};
  std::atomic<std::uint64_t> transitions{0};
  std::atomic<std::uint64_t> snapshots{0};
  std::atomic<std::uint64_t> malformed{0};
  std::atomic<std::uint64_t> callback_errors{0};

  mutable std::mutex mu;
  mutable std::condition_variable changed;            // signalled when epoch grows
  std::map<breaker_key, v1::BreakerStatus> breakers;  // guarded by mu
  std::string sidecar_id;                             // guarded by mu; of the last snapshot

  // Last, so it is joined before anything it uses is destroyed.
  std::jthread thread;
};

sdk::result<std::unique_ptr<breaker_watch>> breaker_watch::create(breaker_watch_options options) {
  const std::string context = "can't watch breakers at '" + options.endpoint + "'";
  if (auto s = detail::check_endpoint(options.endpoint); !s.ok()) return s.with_context(context);
  if (options.timeout.count() <= 0) {
    return sdk::make_error(sdk::status_code::invalid_argument, "timeout must be positive")
        .with_context(context);
  }
  auto m = std::make_unique<impl>(std::move(options));
  std::promise<sdk::status> ready;
  auto connected = ready.get_future();
  impl* state = m.get();
  m->thread =
      std::jthread([state, &ready](const std::stop_token& stop) { state->run(stop, ready); });
  if (auto s = connected.get(); !s.ok()) return s.with_context(context);
  return std::unique_ptr<breaker_watch>(new breaker_watch(std::move(m)));
}

breaker_watch::breaker_watch(std::unique_ptr<impl> state) : impl_(std::move(state)) {}

breaker_watch::~breaker_watch() = default;

bool breaker_watch::should_stop(const std::string& run_id) const {
  const impl& m = *impl_;
  if (!m.options.fail_open && m.silent_at(steady_ns(steady::now()))) return true;
  if (m.global_stops.load(std::memory_order_acquire) > 0) return true;
  if (m.run_stops.load(std::memory_order_acquire) == 0) return false;
  std::lock_guard lock(m.mu);
  return std::any_of(m.breakers.begin(), m.breakers.end(), [&](const auto& entry) {
    return applies_to(entry.second, run_id) && stops_host(entry.second);
  });
}

breaker_verdict breaker_watch::current(const std::string& run_id) const {
  const impl& m = *impl_;
  const std::int64_t now = steady_ns(steady::now());
  breaker_verdict v;
  v.silent = m.silent_at(now);
  {
    std::lock_guard lock(m.mu);
    for (const auto& [key, b] : m.breakers) {
      if (applies_to(b, run_id)) v.open.push_back(b);
    }
  }
  std::stable_sort(v.open.begin(), v.open.end(), [](const auto& a, const auto& b) {
    return strength_rank(a.action()) < strength_rank(b.action());
  });
  const auto stopping = std::find_if(v.open.begin(), v.open.end(), stops_host);
  if (v.silent && !m.options.fail_open) {
    v.stop = true;
    v.reason = m.silence_reason(now);
  } else if (stopping != v.open.end()) {
    v.stop = true;
    v.reason = describe(*stopping);
  } else if (v.silent) {
    v.reason = m.silence_reason(now);
  } else if (!v.open.empty()) {
    v.reason = describe(v.open.front());
  }
  return v;
}

bool breaker_watch::silent() const { return impl_->silent_at(steady_ns(steady::now())); }

std::optional<steady::time_point> breaker_watch::last_message() const {
  const std::int64_t last = impl_->last_message_ns.load(std::memory_order_acquire);
  if (last == 0) return std::nullopt;
  return steady::time_point(
      std::chrono::duration_cast<steady::duration>(std::chrono::nanoseconds(last)));
}

std::uint64_t breaker_watch::snapshot_sequence() const {
  return impl_->snapshot_sequence.load(std::memory_order_acquire);
}

std::uint64_t breaker_watch::epoch() const { return impl_->epoch.load(std::memory_order_acquire); }

bool breaker_watch::wait_for_change(std::uint64_t seen, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mu);
  return impl_->changed.wait_for(
      lock, timeout, [&] { return impl_->epoch.load(std::memory_order_acquire) != seen; });
}

bool breaker_watch::wait_for_change(std::chrono::milliseconds timeout) const {
  return wait_for_change(epoch(), timeout);
}

breaker_watch_stats breaker_watch::stats() const {
  const impl& m = *impl_;
  breaker_watch_stats s;
  s.transitions = m.transitions.load(std::memory_order_relaxed);
  s.snapshots = m.snapshots.load(std::memory_order_relaxed);
  s.malformed = m.malformed.load(std::memory_order_relaxed);
  s.callback_errors = m.callback_errors.load(std::memory_order_relaxed);
  return s;
}

const breaker_watch_options& breaker_watch::options() const { return impl_->options; }

}  // namespace loopwarden::client
