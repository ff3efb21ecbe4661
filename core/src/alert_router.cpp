#include <loopwarden/core/alert_router.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <stop_token>
#include <thread>

#include <sodium.h>
#include <nlohmann/json.hpp>

#include <loopwarden/core/sqlite_store.hpp>
#include <loopwarden/types.hpp>

#include "alert_sinks.hpp"
#include "log.hpp"

namespace loopwarden::core {
namespace {

using json = nlohmann::ordered_json;

// Duplicate suppression remembers this many deliveries (and resolves); older ones are forgotten
// first. The duplicates it is there for come minutes apart (a probation_end resolve after the
// reset's), and one it misses is only a second delivery, which receivers deduplicate anyway; a
// larger window costs memory that grows for hours (about 250 bytes an entry).
constexpr std::size_t remembered_deliveries = 4096;

std::int64_t system_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool is_open(v1::BreakerState s) {
  return s == v1::BREAKER_STATE_OPEN || s == v1::BREAKER_STATE_FORCED_OPEN;
}

std::string effective_sidecar_id(const alerts_config& c, std::string_view daemon_id) {
  return c.sidecar_id.empty() ? std::string(daemon_id) : c.sidecar_id;
}

// ---------------------------------------------------------------------------------------------
// Fingerprints. SHA-256 (libsodium) over length-prefixed fields, so ("a.b", "c") and ("a", "b.c")
// can never collide by concatenation, and the value is the same on every build and platform.

void ensure_sodium() {
  // sodium_init only picks implementations and seeds the RNG; SHA-256 is the same either way.
  static std::once_flag once;
  std::call_once(once, [] { [[maybe_unused]] const int ignored = sodium_init(); });
}

void put_field(std::string& out, std::string_view field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
}

std::string fingerprint(std::string_view sidecar_id, std::string_view breaker,
                        std::string_view run_id, std::string_view origin, std::uint64_t counter) {
  ensure_sodium();
  std::string input = "loopwarden.alert.v1";
  put_field(input, sidecar_id);
  put_field(input, breaker);
  put_field(input, run_id);
  put_field(input, origin);
  put_field(input, std::to_string(counter));
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < 16; ++i) {  // 128 bits: unique enough, short enough for labels
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 0x0f];
  }
  return out;
}

// An incident opened by a monitor: one per trip, named by the trips counter, which only a trip
// changes, so the trip and every later transition until the next trip agree on it.
std::string trip_fingerprint(std::string_view sid, const v1::BreakerStatus& b) {
  return fingerprint(sid, b.name(), b.run_id(), "trip", b.trips());
}

// An incident opened by an operator's force_open, named by the force_open's epoch. The registry
// allows no transition of a forced-open breaker before its reset (acks are refused, trips are
// latched), so the reset has epoch + 1 and a later probation end or second reset epoch + 2.
std::string forced_fingerprint(std::string_view sid, const v1::BreakerStatus& b,
                               std::uint64_t force_epoch) {
  return fingerprint(sid, b.name(), b.run_id(), "force_open", force_epoch);
}

// A half-open breaker came from a reset; the incident that reset ended was forced when the
// breaker's monitor is still the operator force_open put there (a trip would have replaced it).
std::string half_open_fingerprint(std::string_view sid, const v1::BreakerStatus& b) {
  if (b.monitor().starts_with("operator:") && b.epoch() >= 2) {
    return forced_fingerprint(sid, b, b.epoch() - 2);
  }
  return trip_fingerprint(sid, b);
}

// ---------------------------------------------------------------------------------------------
// Routing and payloads.

sdk::severity severity_of(const v1::BreakerStatus& b) {
  // A breaker without a severity is treated as critical: an unknown danger must not be filtered.
  return sdk::from_proto(b.severity()).value_or(sdk::severity::critical);
}

std::vector<std::string> route(const alerts_config& c, const v1::BreakerStatus& b) {
  std::set<std::string_view> chosen;
  const bool shadow = b.shadow();
  const auto severity = static_cast<int>(severity_of(b));
  for (const auto& r : c.routes) {
    const bool name_matches = std::any_of(r.breakers.begin(), r.breakers.end(), [&](const auto& p) {
      return breaker_glob_match(p, b.name());
    });
    if (!name_matches || severity < static_cast<int>(r.min_severity)) continue;
    if (shadow && r.shadow == shadow_routing::exclude) continue;
    if (!shadow && r.shadow == shadow_routing::only) continue;
    for (const auto& name : r.sinks) {
      const alert_sink_config* s = c.find_sink(name);
      if (s == nullptr) continue;
      // A shadow breaker is a monitor on trial: it never pages unless a route is only for shadows.
      if (shadow && r.shadow == shadow_routing::include && s->type == alert_sink_type::pagerduty) {
        continue;
      }
      chosen.insert(s->name);
    }
  }
  std::vector<std::string> out;
  for (const auto& s : c.sinks) {
    if (chosen.count(s.name) != 0) out.push_back(s.name);
  }
  return out;
}

std::string name_of(v1::BreakerAction a) {
  auto v = sdk::from_proto(a);
  return v ? std::string(sdk::to_string(*v)) : "unspecified";
}

std::string name_of(v1::BreakerScope s) {
  auto v = sdk::from_proto(s);
  return v ? std::string(sdk::to_string(*v)) : "unspecified";
}

std::string upper(std::string_view s) {
  std::string out;
  for (char c : s)
    out += c == '_' ? ' ' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// What one alert says beyond the breaker's own status.
struct alert_facts {
  std::string fingerprint;
  std::string kind;  // trigger | resolve | shadow
  bool firing = true;
  std::string cause;
  std::optional<v1::BreakerState> previous;
  std::string operator_id;
  std::string note;
  std::string trigger_source;
  std::uint64_t trigger_seq = 0;
  std::string resolution;  // for resolves: why, in words ("reset by alice", "probation ended")
};

std::string summary_of(const v1::BreakerStatus& b, const alert_facts& f) {
  std::string s = b.shadow() ? "[shadow] " : "";
  s += b.name();
  if (f.firing) {
    s += " " + upper(sdk::to_string(b.state()));
  } else {
    s += " RESOLVED";
  }
  if (!b.run_id().empty()) s += " (run " + b.run_id() + ")";
  if (f.firing) {
    s += ": " + name_of(b.action()) + ", " + std::string(sdk::to_string(severity_of(b)));
    if (f.cause == "force_open" && !f.operator_id.empty()) s += ", by operator " + f.operator_id;
    if (!b.reason().empty()) s += ": " + b.reason();
  } else {
    s += ": " + f.resolution;
  }
  return s;
}

json make_payload(const alerts_config& c, std::string_view sid, const v1::BreakerStatus& b,
                  const alert_facts& f) {
  json p;
  p["version"] = 1;
  p["fingerprint"] = f.fingerprint;
  p["kind"] = f.kind;
  p["status"] = f.firing ? "firing" : "resolved";
  p["shadow"] = b.shadow();
  p["summary"] = summary_of(b, f);
  p["breaker"] = b.name();
  p["run_id"] = b.run_id();
  p["scope"] = name_of(b.scope());
  p["monitor"] = b.monitor();
  p["state"] = std::string(sdk::to_string(b.state()));
  if (f.previous) p["previous_state"] = std::string(sdk::to_string(*f.previous));
  p["cause"] = f.cause;
  p["action"] = name_of(b.action());
  p["severity"] = std::string(sdk::to_string(severity_of(b)));
  p["reason"] = b.reason();
  json evidence = json::array();
  for (const auto& kv : b.evidence())
    evidence.push_back({{"key", kv.key()}, {"value", kv.value()}});
  p["evidence"] = std::move(evidence);
  p["epoch"] = b.epoch();
  p["trips"] = b.trips();
  p["time"] = detail::format_rfc3339(b.changed_unix_nano());
  p["time_unix_nano"] = b.changed_unix_nano();
  if (!f.operator_id.empty()) p["operator"] = f.operator_id;
  if (!f.note.empty()) p["note"] = f.note;
  if (!f.trigger_source.empty()) {
    p["trigger"] = {{"source", f.trigger_source}, {"seq", f.trigger_seq}};
  }
  if (!c.runbook_url.empty()) p["runbook_url"] = c.runbook_url + "#" + b.name();
  p["sidecar_id"] = std::string(sid);
  if (!c.cluster.empty()) p["cluster"] = c.cluster;
  return p;
}

void add_rows(const alerts_config& c, std::string_view sid, const v1::BreakerStatus& b,
              const alert_facts& f, std::vector<outbox_alert>& out) {
  const std::vector<std::string> sinks = route(c, b);
  if (sinks.empty()) return;
  const std::string payload = make_payload(c, sid, b, f).dump();
  for (const auto& sink : sinks) {
    outbox_alert a;
    a.sink = sink;
    a.fingerprint = f.fingerprint;
    a.kind = f.kind;
    a.payload_json = payload;
    a.created_unix_nano = b.changed_unix_nano();
    out.push_back(std::move(a));
  }
}

std::vector<outbox_alert> plan(const alerts_config& c, std::string_view sid,
                               const v1::BreakerTransition& t) {
  const v1::BreakerStatus& b = t.breaker();
  std::vector<outbox_alert> out;
  const std::string firing_kind = b.shadow() ? "shadow" : "trigger";

  auto resolve = [&](std::string fp, std::string resolution) {
    alert_facts f;
    f.fingerprint = std::move(fp);
    f.kind = "resolve";
    f.firing = false;
    f.cause = t.cause();
    f.previous = t.previous();
    f.operator_id = t.operator_id();
    f.note = t.note();
    f.resolution = std::move(resolution);
    add_rows(c, sid, b, f, out);
  };
  auto by_operator = [&](std::string what) {
    if (!t.operator_id().empty()) what += " by " + t.operator_id();
    if (!t.note().empty()) what += ": " + t.note();
    return what;
  };

  const std::string& cause = t.cause();
  if (cause == "trip" || cause == "force_open") {
    if (cause == "force_open" && t.previous() == v1::BREAKER_STATE_OPEN) {
      // The operator's incident replaces the monitor's: end the monitor's so it does not stay
      // open forever in PagerDuty (nothing later names it again).
      std::string what = "superseded by force_open";
      if (!t.operator_id().empty()) what += " by " + t.operator_id();
      resolve(trip_fingerprint(sid, b), what);
    }
    alert_facts f;
    f.fingerprint =
        cause == "trip" ? trip_fingerprint(sid, b) : forced_fingerprint(sid, b, b.epoch());
    f.kind = firing_kind;
    f.cause = cause;
    f.previous = t.previous();
    f.operator_id = t.operator_id();
    f.note = t.note();
    f.trigger_source = t.trigger_source();
    f.trigger_seq = t.trigger_seq();
    add_rows(c, sid, b, f, out);
  } else if (cause == "reset") {
    std::string what = by_operator("reset");
    if (b.state() == v1::BREAKER_STATE_HALF_OPEN) what = "on probation, " + what;
    switch (t.previous()) {
      case v1::BREAKER_STATE_OPEN:
        resolve(trip_fingerprint(sid, b), what);
        break;
      case v1::BREAKER_STATE_FORCED_OPEN:
        if (b.epoch() >= 1) resolve(forced_fingerprint(sid, b, b.epoch() - 1), what);
        break;
      case v1::BREAKER_STATE_HALF_OPEN:
        resolve(half_open_fingerprint(sid, b), what);
        break;
      default:
        break;
    }
  } else if (cause == "probation_end") {
    resolve(half_open_fingerprint(sid, b), "probation ended");
  }
  // "ack" pages nobody (the daemon logs it and the audit log records it); "restore" replays a
  // state that was alerted before the restart.
  return out;
}

// The firing alerts an open breaker warrants now, as its trigger would have planned them: what
// Alertmanager re-sends post.
std::vector<outbox_alert> plan_firing(const alerts_config& c, std::string_view sid,
                                      const v1::BreakerStatus& b) {
  std::vector<outbox_alert> out;
  if (!is_open(b.state())) return out;
  alert_facts f;
  f.kind = b.shadow() ? "shadow" : "trigger";
  if (b.state() == v1::BREAKER_STATE_FORCED_OPEN) {
    f.fingerprint = forced_fingerprint(sid, b, b.epoch());
    f.cause = "force_open";
    if (b.monitor().starts_with("operator:")) f.operator_id = b.monitor().substr(9);
  } else {
    f.fingerprint = trip_fingerprint(sid, b);
    f.cause = "trip";
  }
  add_rows(c, sid, b, f, out);
  return out;
}

// A set that forgets its oldest entries past a size.
class bounded_set {
 public:
  explicit bounded_set(std::size_t capacity) : capacity_(capacity) {}
  bool contains(const std::string& k) const { return items_.count(k) != 0; }
  void insert(std::string k) {
    if (!items_.insert(k).second) return;
    order_.push_back(std::move(k));
    if (order_.size() > capacity_) {
      items_.erase(order_.front());
      order_.pop_front();
    }
  }
  void clear() {
    items_.clear();
    order_.clear();
  }

 private:
  std::size_t capacity_;
  std::set<std::string> items_;
  std::deque<std::string> order_;
};

std::string delivery_key(std::string_view sink, std::string_view fp, std::string_view kind) {
  std::string k(sink);
  k += '\0';
  k += fp;
  k += '\0';
  k += kind;
  return k;
}

std::string seconds_text(std::chrono::nanoseconds d) {
  char buf[32];
  if (d < std::chrono::seconds(1)) {
    std::snprintf(
        buf, sizeof buf, "%lldms",
        static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()));
  } else {
    std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(d.count()) / 1e9);
  }
  return buf;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

alert_planner make_alert_planner(const alerts_config& config, std::string sidecar_id) {
  auto c = std::make_shared<const alerts_config>(config);
  std::string sid = effective_sidecar_id(config, sidecar_id);
  return [c, sid](const v1::BreakerTransition& t) { return plan(*c, sid, t); };
}

outbox_alert make_test_alert(const alerts_config& config, std::string_view sink,
                             std::string_view sidecar_id, std::int64_t now_unix_nano) {
  const std::string sid = effective_sidecar_id(config, sidecar_id);
  outbox_alert a;
  a.sink = std::string(sink);
  a.kind = "test";
  a.fingerprint =
      fingerprint(sid, "loopwarden.test", sink, "test", static_cast<std::uint64_t>(now_unix_nano));
  a.created_unix_nano = now_unix_nano;
  json p;
  p["version"] = 1;
  p["fingerprint"] = a.fingerprint;
  p["kind"] = "test";
  p["status"] = "firing";
  p["shadow"] = false;
  p["summary"] = "loopwarden test alert from " + (sid.empty() ? std::string("loopwarden") : sid) +
                 " to sink '" + std::string(sink) + "'";
  p["breaker"] = "loopwarden.test";
  p["run_id"] = "";
  p["scope"] = "global";
  p["monitor"] = "loopwarden";
  p["state"] = "open";
  p["cause"] = "test";
  p["action"] = "alert";
  p["severity"] = "info";
  p["reason"] = "a test of the alert sink; no breaker changed";
  p["evidence"] = json::array({json{{"key", "sink"}, {"value", std::string(sink)}}});
  p["epoch"] = 0;
  p["trips"] = 0;
  p["time"] = detail::format_rfc3339(now_unix_nano);
  p["time_unix_nano"] = now_unix_nano;
  p["sidecar_id"] = sid;
  if (!config.cluster.empty()) p["cluster"] = config.cluster;
  a.payload_json = p.dump();
  return a;
}

std::vector<outbox_alert> make_approval_alerts(const alerts_config& config,
                                               std::string_view sidecar_id, const approval& a) {
  const std::string sid = effective_sidecar_id(config, sidecar_id);
  // Routed as if it were a warning-level breaker named after the asking monitor.
  v1::BreakerStatus pseudo;
  pseudo.set_name("approval." + (a.monitor.empty() ? std::string("gate") : a.monitor));
  pseudo.set_severity(v1::SEVERITY_WARNING);
  std::vector<outbox_alert> out;
  // Pending: the page. Decided or expired: the same incident resolved, so the page closes where
  // it was opened. Used (an approval the host already acted on): it was resolved when decided.
  if (a.state == approval_state::used) return out;
  const bool firing = a.state == approval_state::pending;
  const std::vector<std::string> sinks = route(config, pseudo);
  if (sinks.empty()) return out;
  const std::string fp = fingerprint(sid, pseudo.name(), a.run_id, a.id, 0);
  std::string outcome;
  if (a.state == approval_state::expired) {
    outcome = "expired undecided";
  } else if (!firing) {
    outcome = std::string(to_string(a.state)) + " by " +
              (a.decided_by.empty() ? std::string("an operator") : a.decided_by);
    if (!a.reason.empty()) outcome += ": " + a.reason;
  }
  json p;
  p["version"] = 1;
  p["fingerprint"] = fp;
  // The kind stays "approval" when resolved, so sinks that key on it (Alertmanager's alertname)
  // resolve the alert they opened; the status says which.
  p["kind"] = "approval";
  p["status"] = firing ? "firing" : "resolved";
  p["shadow"] = false;
  p["summary"] = firing ? "approval " + a.id + " pending: " + a.summary
                        : "approval " + a.id + " " + outcome + ": " + a.summary;
  p["breaker"] = pseudo.name();
  p["run_id"] = a.run_id;
  p["scope"] = "run";
  p["monitor"] = a.monitor;
  p["state"] = std::string(to_string(a.state));
  p["cause"] = firing ? "approval_requested" : "approval_" + std::string(to_string(a.state));
  p["action"] = "require_approval";
  p["severity"] = "warning";
  p["reason"] = a.summary;
  json evidence = json::array();
  auto add = [&](const char* k, const std::string& v) {
    if (!v.empty()) evidence.push_back({{"key", k}, {"value", v}});
  };
  add("approval_id", a.id);
  add("requested_by", a.requested_by);
  add("run_id", a.run_id);
  if (a.expires_unix_nano > 0) add("expires", detail::format_rfc3339(a.expires_unix_nano));
  add("approve", "loopwarden approve " + a.id + " --reason \"...\"");
  add("deny", "loopwarden deny " + a.id + " --reason \"...\"");
  p["evidence"] = std::move(evidence);
  p["epoch"] = 0;
  p["trips"] = 0;
  p["time"] = detail::format_rfc3339(a.created_unix_nano);
  p["time_unix_nano"] = a.created_unix_nano;
  if (!firing) {
    p["resolution"] = outcome;
    if (a.decided_unix_nano > 0) p["decided"] = detail::format_rfc3339(a.decided_unix_nano);
  }
  if (!config.runbook_url.empty()) p["runbook_url"] = config.runbook_url + "#approvals";
  p["sidecar_id"] = sid;
  if (!config.cluster.empty()) p["cluster"] = config.cluster;
  const std::string payload = p.dump();
  for (const auto& sink : sinks) {
    outbox_alert row;
    row.sink = sink;
    row.fingerprint = fp;
    // A resolve row is ordered behind its trigger and stops any re-send of it (the router).
    row.kind = firing ? "approval" : "resolve";
    row.payload_json = payload;
    row.created_unix_nano = firing ? a.created_unix_nano : a.decided_unix_nano;
    out.push_back(std::move(row));
  }
  return out;
}

approval_alert_planner make_approval_alert_planner(const alerts_config& config,
                                                   std::string sidecar_id) {
  auto c = std::make_shared<const alerts_config>(config);
  return [c, sid = std::move(sidecar_id)](const approval& a) {
    return make_approval_alerts(*c, sid, a);
  };
}

// ---------------------------------------------------------------------------------------------
// memory_alert_outbox

status memory_alert_outbox::enqueue(std::vector<outbox_alert> alerts) {
  std::lock_guard lock(mu_);
  for (auto& a : alerts) {
    entry e;
    e.alert = std::move(a);
    e.alert.id = next_id_++;
    entries_.push_back(std::move(e));
  }
  return status::success();
}

result<std::vector<outbox_alert>> memory_alert_outbox::pending(std::size_t limit) {
  std::lock_guard lock(mu_);
  std::vector<outbox_alert> out;
  for (const auto& e : entries_) {
    if (out.size() >= limit) break;
    if (e.state == alert_state::pending) out.push_back(e.alert);
  }
  return out;
}

memory_alert_outbox::entry* memory_alert_outbox::find_locked(std::int64_t id) {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), id,
                             [](const entry& e, std::int64_t v) { return e.alert.id < v; });
  return it != entries_.end() && it->alert.id == id ? &*it : nullptr;
}

status memory_alert_outbox::mark_delivered(std::int64_t id, std::string_view via_sink,
                                           std::int64_t now_unix_nano) {
  std::lock_guard lock(mu_);
  entry* e = find_locked(id);
  if (e == nullptr) return make_error(status_code::not_found, "no alert " + std::to_string(id));
  if (e->state != alert_state::pending) {
    return make_error(status_code::failed_precondition,
                      "alert " + std::to_string(id) + " is no longer pending");
  }
  e->state = alert_state::delivered;
  e->delivered_via = std::string(via_sink);
  e->finished_unix_nano = now_unix_nano;
  return status::success();
}

status memory_alert_outbox::mark_attempt(std::int64_t id, std::uint32_t attempts,
                                         std::int64_t next_attempt_unix_nano,
                                         std::string_view error) {
  std::lock_guard lock(mu_);
  entry* e = find_locked(id);
  if (e == nullptr) return make_error(status_code::not_found, "no alert " + std::to_string(id));
  if (e->state != alert_state::pending) {
    return make_error(status_code::failed_precondition,
                      "alert " + std::to_string(id) + " is no longer pending");
  }
  e->alert.attempts = attempts;
  e->alert.next_attempt_unix_nano = next_attempt_unix_nano;
  e->alert.last_error = std::string(error);
  return status::success();
}

status memory_alert_outbox::mark_failed(std::int64_t id, std::string_view error,
                                        std::int64_t now_unix_nano) {
  std::lock_guard lock(mu_);
  entry* e = find_locked(id);
  if (e == nullptr) return make_error(status_code::not_found, "no alert " + std::to_string(id));
  if (e->state != alert_state::pending) {
    return make_error(status_code::failed_precondition,
                      "alert " + std::to_string(id) + " is no longer pending");
  }
  e->state = alert_state::failed;
  e->alert.last_error = std::string(error);
  e->finished_unix_nano = now_unix_nano;
  return status::success();
}

std::vector<memory_alert_outbox::entry> memory_alert_outbox::entries() const {
  std::lock_guard lock(mu_);
  return entries_;
}

std::size_t memory_alert_outbox::pending_count() const {
  std::lock_guard lock(mu_);
  return static_cast<std::size_t>(
      std::count_if(entries_.begin(), entries_.end(),
                    [](const auto& e) { return e.state == alert_state::pending; }));
}

// ---------------------------------------------------------------------------------------------
// alert_router

struct alert_router::impl {
  // One hand-over from the dispatcher to a sink's worker.
  struct job {
    outbox_alert alert;
    std::size_t own = 0;            // the alert's own sink
    std::size_t stage = 0;          // the sink delivering it (own, or a fallback down the chain)
    std::uint64_t stage_start = 0;  // attempts spent before this stage
    bool resend = false;            // an Alertmanager re-send: not in the outbox, one attempt
  };

  struct slot {
    std::unique_ptr<detail::alert_sink> sink;
    std::vector<std::size_t> chain;  // this sink, its fallback, the fallback's fallback, ...

    std::mutex mu;
    std::condition_variable_any cv;
    std::deque<job> queue;  // guarded by mu

    std::atomic<std::uint64_t> sent{0}, failed{0}, retried{0}, fell_back{0}, deferred{0},
        deduplicated{0}, resent{0};
    std::atomic<bool> resend_failing{false};  // the last re-send to this sink failed

    std::jthread worker;  // started by start(), stopped (drained) by stop()
  };

  impl(alerts_config c, alert_outbox& o, alert_router_options opt)
      : config(std::move(c)),
        outbox(o),
        options(std::move(opt)),
        sidecar_id(effective_sidecar_id(config, options.sidecar_id)),
        clock(options.clock ? options.clock : std::function<std::int64_t()>(&system_now)) {
    for (const auto& s : config.sinks) {
      auto sl = std::make_unique<slot>();
      sl->sink = detail::make_alert_sink(s, config);
      index.emplace(s.name, slots.size());
      slots.push_back(std::move(sl));
    }
    for (std::size_t i = 0; i < slots.size(); ++i) {
      // Fallback cycles are refused by parse_alerts_config; the visited check keeps a hand-built
      // config from looping here.
      std::vector<std::size_t>& chain = slots[i]->chain;
      for (std::optional<std::size_t> at = i; at;) {
        if (std::find(chain.begin(), chain.end(), *at) != chain.end()) break;
        chain.push_back(*at);
        at = find(slots[*at]->sink->config().fallback);
      }
    }
    has_alertmanager = std::any_of(config.sinks.begin(), config.sinks.end(), [](const auto& s) {
      return s.type == alert_sink_type::alertmanager;
    });
  }

  std::optional<std::size_t> find(std::string_view name) const {
    auto it = index.find(name);
    if (it == index.end()) return std::nullopt;
    return it->second;
  }

  const std::string& name_of(std::size_t i) const { return slots[i]->sink->config().name; }

  // Which sink makes attempt number `attempts` (0-based) of an alert of sink `own`, and how many
  // attempts the chain spent before that sink; nullopt when every budget is spent.
  std::optional<std::pair<std::size_t, std::uint64_t>> stage_for(std::size_t own,
                                                                 std::uint64_t attempts) const {
    std::uint64_t start = 0;
    for (std::size_t s : slots[own]->chain) {
      const std::uint64_t budget = slots[s]->sink->config().max_attempts;
      if (attempts < start + budget) return std::make_pair(s, start);
      start += budget;
    }
    return std::nullopt;
  }

  bool try_push(std::size_t stage, job j) {
    slot& s = *slots[stage];
    {
      std::lock_guard lock(s.mu);
      if (s.queue.size() >= s.sink->config().queue_capacity) return false;
      s.queue.push_back(std::move(j));
    }
    s.cv.notify_one();
    return true;
  }

  void wake_dispatcher() {
    {
      std::lock_guard lock(mu);
      dirty = true;
    }
    dispatch_cv.notify_all();
  }

  // Logs an outbox error, at most once a minute for the same message (a broken database must not
  // flood the log at the poll rate).
  void report_outbox_error(const status& s, std::string_view doing) {
    if (s.ok()) return;
    const std::string msg = "alert outbox: can't " + std::string(doing) + ": " + s.message();
    std::lock_guard lock(mu);
    const auto now = std::chrono::steady_clock::now();
    if (msg != last_outbox_error || now - last_outbox_error_at > std::chrono::minutes(1)) {
      detail::log().error("{}", msg);
      last_outbox_error = msg;
      last_outbox_error_at = now;
    }
  }

  // ---- dispatcher ----

  void dispatch_loop(std::stop_token st) {
    using steady = std::chrono::steady_clock;
    // Every finished delivery wakes the dispatcher; a burst of them is coalesced into one scan of
    // the outbox per this gap, so a backlog is not re-read once per alert.
    constexpr auto min_scan_gap = std::chrono::milliseconds(10);
    auto next_resend = steady::now();  // once at start: Alertmanager may have expired our alerts
                                       // while we were down
    auto last_scan = steady::now() - min_scan_gap;
    steady::duration scan_gap = min_scan_gap;
    while (!st.stop_requested()) {
      if (const auto earliest = last_scan + scan_gap; steady::now() < earliest) {
        std::unique_lock lock(mu);
        dispatch_cv.wait_until(lock, st, earliest, [] { return false; });
        if (st.stop_requested()) break;
      }
      last_scan = steady::now();
      auto wake = last_scan + std::chrono::duration_cast<steady::duration>(options.poll_interval);
      try {
        if (has_alertmanager && options.open_breakers) {
          if (steady::now() >= next_resend) {
            resend_firing();
            next_resend = steady::now() +
                          std::chrono::duration_cast<steady::duration>(config.resend_interval);
          }
          wake = std::min(wake, next_resend);
        }
        dispatch_pending(wake);
      } catch (const std::exception& e) {
        // An outbox or allocation failure must not end the thread: the next round retries.
        detail::log().error("alert router: dispatching failed: {}", e.what());
      } catch (...) {
        detail::log().error("alert router: dispatching failed");
      }
      // A scan costs in proportion to the backlog (a slow receiver can leave thousands of
      // alerts pending): the next one waits at least four times as long as this one took, so the
      // dispatcher uses at most a fifth of a core however large the backlog grows.
      scan_gap = std::max<steady::duration>(min_scan_gap, 4 * (steady::now() - last_scan));
      std::unique_lock lock(mu);
      dispatch_cv.wait_until(lock, st, wake, [&] { return dirty; });
      dirty = false;
    }
  }

  void dispatch_pending(std::chrono::steady_clock::time_point& wake) {
    // Workers record their outcome in the outbox and then settle the alert; settlements up to
    // `seen` happened before this read, so the read shows their outcome. A later settlement may
    // have raced the read (a stale row would be re-sent at once, skipping its backoff): such
    // alerts wait for the next scan, which the settlement's wake-up triggers.
    std::uint64_t seen = 0;
    {
      std::lock_guard lock(mu);
      seen = settle_seq;
    }
    auto pend = outbox.pending(options.scan_limit);
    if (!pend) {
      report_outbox_error(pend.error(), "read pending alerts");
      return;
    }
    const std::int64_t now = clock();
    // (sink, fingerprint) pairs with an earlier alert still undelivered: later alerts of the same
    // incident wait, so a resolve never overtakes its trigger.
    std::set<std::pair<std::string, std::string>> blocked;
    for (auto& a : *pend) {
      auto key = std::make_pair(a.sink, a.fingerprint);
      if (blocked.count(key) != 0) continue;
      {
        std::lock_guard lock(mu);
        const auto s = settled.find(a.id);
        if (in_flight.count(a.id) != 0 || (s != settled.end() && s->second > seen)) {
          blocked.insert(std::move(key));
          continue;
        }
      }
      const auto own = find(a.sink);
      if (!own) {
        const std::string err = "no alert sink named '" + a.sink + "' in the configuration";
        detail::log().error("alert {} ({} {}): {}; giving it up", a.id, a.kind, a.fingerprint, err);
        report_outbox_error(outbox.mark_failed(a.id, err, now), "mark an alert failed");
        continue;
      }
      bool duplicate = false;
      {
        std::lock_guard lock(mu);
        duplicate = delivered.contains(delivery_key(a.sink, a.fingerprint, a.kind));
      }
      if (duplicate) {
        ++slots[*own]->deduplicated;
        detail::log().debug("alert {} to '{}' is a duplicate of a delivered {} ({}): not sent",
                            a.id, a.sink, a.kind, a.fingerprint);
        report_outbox_error(outbox.mark_delivered(a.id, a.sink, now), "mark an alert delivered");
        continue;
      }
      if (a.next_attempt_unix_nano > now) {
        const auto delay = std::chrono::nanoseconds(a.next_attempt_unix_nano - now);
        wake = std::min(wake,
                        std::chrono::steady_clock::now() +
                            std::chrono::duration_cast<std::chrono::steady_clock::duration>(delay));
        blocked.insert(std::move(key));
        continue;
      }
      const auto stage = stage_for(*own, a.attempts);
      if (!stage) {
        // Only after a config change shrank the budgets: the chain has nothing left to try.
        give_up(a, *own, a.last_error.empty() ? "retry budget exhausted" : a.last_error, now);
        continue;
      }
      blocked.insert(std::move(key));
      const bool is_resolve = a.kind == "resolve";
      const std::string resolved_key = delivery_key(a.sink, a.fingerprint, "");
      {
        std::lock_guard lock(mu);
        in_flight.insert(a.id);
      }
      const std::int64_t id = a.id;
      if (!try_push(stage->first, job{std::move(a), *own, stage->first, stage->second, false})) {
        ++slots[stage->first]->deferred;
        std::lock_guard lock(mu);
        in_flight.erase(id);
        continue;
      }
      if (is_resolve && has_alertmanager) {
        // From here on, no re-send may fire this incident again: the resolve is queued behind
        // any re-send already queued, and later ones check this set (only re-sends do).
        std::lock_guard lock(mu);
        resolved.insert(resolved_key);
      }
    }
    prune_settled(seen);
  }

  // Settlements the last scan read past are no longer needed to judge staleness.
  void prune_settled(std::uint64_t seen) {
    std::lock_guard lock(mu);
    std::erase_if(settled, [&](const auto& kv) { return kv.second <= seen; });
  }

  void resend_firing() {
    std::vector<v1::BreakerStatus> open;
    try {
      open = options.open_breakers();
    } catch (const std::exception& e) {
      detail::log().error("alertmanager re-send: can't list open breakers: {}", e.what());
      return;
    }
    for (const auto& b : open) {
      for (auto& a : plan_firing(config, sidecar_id, b)) {
        const auto own = find(a.sink);
        if (!own || slots[*own]->sink->config().type != alert_sink_type::alertmanager) continue;
        {
          std::lock_guard lock(mu);
          if (resolved.contains(delivery_key(a.sink, a.fingerprint, ""))) continue;
        }
        // A full queue skips this round; the next interval tries again.
        static_cast<void>(try_push(*own, job{std::move(a), *own, *own, 0, true}));
      }
    }
  }

  // ---- workers ----

  void worker_loop(std::stop_token st, std::size_t index_of_slot) {
    slot& s = *slots[index_of_slot];
    for (;;) {
      job j;
      {
        std::unique_lock lock(s.mu);
        // Stop drains: the wait returns false only when stop was requested and the queue is empty.
        if (!s.cv.wait(lock, st, [&] { return !s.queue.empty(); })) break;
        j = std::move(s.queue.front());
        s.queue.pop_front();
      }
      if (abandon.load()) {
        forget(j);
        continue;
      }
      try {
        run(j);
      } catch (const std::exception& e) {
        // Nothing in run() should throw; if it does, the alert stays pending for the next run.
        detail::log().error("alert {} to '{}': internal error: {}", j.alert.id, j.alert.sink,
                            e.what());
        forget(j);
      } catch (...) {
        detail::log().error("alert {} to '{}': internal error", j.alert.id, j.alert.sink);
        forget(j);
      }
    }
    {
      std::lock_guard lock(workers_mu);
      --workers_running;
    }
    workers_cv.notify_all();
  }

  // The worker is done with the alert (its outcome, if any, is in the outbox already).
  void forget(const job& j) {
    if (j.resend) return;
    {
      std::lock_guard lock(mu);
      settled[j.alert.id] = ++settle_seq;
      in_flight.erase(j.alert.id);
    }
    wake_dispatcher();
  }

  void run(job& j) {
    slot& stage = *slots[j.stage];
    const std::string& stage_name = name_of(j.stage);
    json payload;
    try {
      payload = json::parse(j.alert.payload_json);
    } catch (const json::exception& e) {
      if (j.resend) return;
      give_up(j.alert, j.own, std::string("unreadable alert payload: ") + e.what(), clock());
      forget(j);
      return;
    }

    if (j.resend) {
      {
        std::lock_guard lock(mu);
        if (resolved.contains(delivery_key(j.alert.sink, j.alert.fingerprint, ""))) return;
      }
      const auto r = stage.sink->deliver({payload, j.alert.sink, clock()});
      // Re-sends repeat every interval for every open breaker: log when they start failing and
      // when they recover, not every time.
      if (r.ok) {
        ++stage.resent;
        if (stage.resend_failing.exchange(false)) {
          detail::log().info("alertmanager re-sends to '{}' work again", stage_name);
        }
      } else if (!abandon.load() && !stage.resend_failing.exchange(true)) {
        detail::log().warn("alertmanager re-send of {} to '{}' failed: {}", j.alert.fingerprint,
                           stage_name, r.error);
      }
      return;
    }

    const auto r = stage.sink->deliver({payload, j.alert.sink, clock()});
    const std::int64_t now = clock();
    if (!r.ok && abandon.load()) {
      // Cancelled by stop(): not the receiver's fault, so the attempt is not counted.
      forget(j);
      return;
    }
    if (r.ok) {
      {
        std::lock_guard lock(mu);
        delivered.insert(delivery_key(j.alert.sink, j.alert.fingerprint, j.alert.kind));
      }
      ++stage.sent;
      if (j.stage != j.own) {
        detail::log().warn("alert {} ({} {}) for sink '{}' delivered by fallback '{}'", j.alert.id,
                           j.alert.kind, j.alert.fingerprint, j.alert.sink, stage_name);
      }
      report_outbox_error(outbox.mark_delivered(j.alert.id, stage_name, now),
                          "mark an alert delivered");
      forget(j);
      return;
    }

    const std::uint64_t budget = stage.sink->config().max_attempts;
    const std::uint64_t stage_end = j.stage_start + budget;
    std::uint64_t attempts = std::uint64_t{j.alert.attempts} + 1;
    if (r.permanent) attempts = std::max(attempts, stage_end);
    const auto next = stage_for(j.own, attempts);
    const auto attempts32 =
        static_cast<std::uint32_t>(std::min<std::uint64_t>(attempts, UINT32_MAX));
    if (next && next->first == j.stage) {
      const std::uint64_t failed_here = attempts - j.stage_start;  // >= 1
      // The receiver's Retry-After is a floor, not a replacement: "0" must not turn the retry
      // loop into a hammer.
      auto delay = backoff(stage.sink->config(), failed_here);
      if (r.retry_after) delay = std::max(delay, *r.retry_after);
      ++stage.retried;
      detail::log().warn("alert {} ({} {}) to '{}': attempt {} of {} failed, retrying in {}: {}",
                         j.alert.id, j.alert.kind, j.alert.fingerprint, stage_name, failed_here,
                         budget, seconds_text(delay), r.error);
      report_outbox_error(outbox.mark_attempt(j.alert.id, attempts32, now + delay.count(), r.error),
                          "record a failed attempt");
    } else if (next) {
      ++stage.fell_back;
      detail::log().warn(
          "alert {} ({} {}) to '{}': giving up on it after {}: {}; falling back to "
          "'{}'",
          j.alert.id, j.alert.kind, j.alert.fingerprint, stage_name,
          r.permanent ? "a permanent error" : std::to_string(budget) + " attempts", r.error,
          name_of(next->first));
      report_outbox_error(outbox.mark_attempt(j.alert.id, attempts32, now, r.error),
                          "record a failed attempt");
    } else {
      give_up(j.alert, j.own, r.error, now);
    }
    forget(j);
  }

  void give_up(const outbox_alert& a, std::size_t own, const std::string& error, std::int64_t now) {
    ++slots[own]->failed;
    std::string via;
    for (std::size_t s : slots[own]->chain) via += (via.empty() ? "'" : ", '") + name_of(s) + "'";
    detail::log().error("alert {} ({} {}) for sink '{}' failed for good (tried {}): {}", a.id,
                        a.kind, a.fingerprint, a.sink, via, error);
    report_outbox_error(outbox.mark_failed(a.id, error, now), "mark an alert failed");
  }

  // Exponential backoff with equal jitter: half the step is fixed, half random, so retries of
  // many alerts spread out but never come sooner than half the nominal step.
  std::chrono::nanoseconds backoff(const alert_sink_config& c, std::uint64_t failed_attempts) {
    const double initial = static_cast<double>(c.backoff_initial.count());
    const double max = static_cast<double>(c.backoff_max.count());
    const double step =
        std::min(max, initial * std::pow(2.0, static_cast<double>(std::min<std::uint64_t>(
                                                  failed_attempts - 1, 62))));
    double jitter = 0;
    {
      std::lock_guard lock(rng_mu);
      jitter = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    }
    return std::chrono::nanoseconds(static_cast<std::int64_t>(step / 2 + jitter * step / 2));
  }

  // ---- members ----

  const alerts_config config;
  alert_outbox& outbox;
  const alert_router_options options;
  const std::string sidecar_id;
  const std::function<std::int64_t()> clock;
  std::vector<std::unique_ptr<slot>> slots;               // config order; fixed
  std::map<std::string, std::size_t, std::less<>> index;  // sink name -> slot; fixed
  bool has_alertmanager = false;                          // fixed

  std::mutex lifecycle_mu;  // serialises start() and stop()
  bool running = false;     // guarded by lifecycle_mu
  std::jthread dispatcher;  // guarded by lifecycle_mu
  std::atomic<bool> abandon{false};

  std::mutex mu;
  std::condition_variable_any dispatch_cv;
  bool dirty = false;                             // guarded by mu
  std::set<std::int64_t> in_flight;               // guarded by mu; ids queued or delivering
  std::map<std::int64_t, std::uint64_t> settled;  // guarded by mu; id -> settle_seq when done
  std::uint64_t settle_seq = 0;                   // guarded by mu
  bounded_set delivered{remembered_deliveries};   // guarded by mu; (sink, fp, kind)
  bounded_set resolved{remembered_deliveries};    // guarded by mu; (sink, fp) resolves queued
  std::string last_outbox_error;                  // guarded by mu
  std::chrono::steady_clock::time_point last_outbox_error_at;  // guarded by mu

  std::mutex workers_mu;
  std::condition_variable workers_cv;
  std::size_t workers_running = 0;  // guarded by workers_mu

  std::mutex rng_mu;
  std::mt19937_64 rng{std::random_device{}()};  // guarded by rng_mu
};

alert_router::alert_router(alerts_config config, alert_outbox& outbox, alert_router_options options)
    : impl_(std::make_unique<impl>(std::move(config), outbox, std::move(options))) {}

alert_router::~alert_router() { stop(); }

void alert_router::start() {
  impl& m = *impl_;
  std::lock_guard lock(m.lifecycle_mu);
  if (m.running) return;
  m.abandon = false;
  {
    std::lock_guard wl(m.workers_mu);
    m.workers_running = m.slots.size();
  }
  for (std::size_t i = 0; i < m.slots.size(); ++i) {
    m.slots[i]->worker = std::jthread([&m, i](std::stop_token st) { m.worker_loop(st, i); });
  }
  m.dispatcher = std::jthread([&m](std::stop_token st) { m.dispatch_loop(st); });
  m.running = true;
}

void alert_router::stop() {
  stop(std::chrono::steady_clock::now() +
       std::chrono::duration_cast<std::chrono::steady_clock::duration>(
           impl_->options.stop_deadline));
}

void alert_router::stop(std::chrono::steady_clock::time_point deadline) {
  impl& m = *impl_;
  std::lock_guard lock(m.lifecycle_mu);
  if (!m.running) return;
  // First no new hand-overs, then the workers drain what they hold until the deadline.
  m.dispatcher.request_stop();
  m.dispatcher.join();
  for (auto& s : m.slots) s->worker.request_stop();
  bool drained = false;
  {
    std::unique_lock wl(m.workers_mu);
    drained = m.workers_cv.wait_until(wl, deadline, [&] { return m.workers_running == 0; });
  }
  if (!drained) {
    std::size_t left = 0;
    for (auto& s : m.slots) {
      std::lock_guard sl(s->mu);
      left += s->queue.size();
    }
    detail::log().warn(
        "alert router: stop deadline passed; abandoning {} queued alert(s) and "
        "requests in flight (they stay pending in the outbox)",
        left);
    m.abandon = true;
    for (auto& s : m.slots) s->sink->cancel();
  }
  for (auto& s : m.slots) s->worker.join();
  for (auto& s : m.slots) s->sink->resume();
  {
    std::lock_guard l(m.mu);
    m.in_flight.clear();
    m.settled.clear();
    m.dirty = false;
  }
  m.running = false;
}

void alert_router::notify() { impl_->wake_dispatcher(); }

result<alert_test_report> alert_router::send_test(std::string_view sink_name) {
  impl& m = *impl_;
  const auto idx = m.find(sink_name);
  if (!idx) {
    std::string names;
    for (const auto& s : m.config.sinks) names += (names.empty() ? "" : ", ") + s.name;
    return make_error(status_code::not_found, "no alert sink named '" + std::string(sink_name) +
                                                  "' (configured: " + names + ")");
  }
  const std::int64_t now = m.clock();
  const outbox_alert a = make_test_alert(m.config, sink_name, m.sidecar_id, now);
  const json payload = json::parse(a.payload_json);
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = m.slots[*idx]->sink->deliver({payload, a.sink, now});
  alert_test_report report;
  report.sink = std::string(sink_name);
  report.delivered = r.ok;
  report.http_status = r.http_status;
  report.error = r.error;
  report.elapsed = std::chrono::steady_clock::now() - t0;
  return report;
}

std::vector<alert_sink_stats> alert_router::stats() const {
  const impl& m = *impl_;
  std::vector<alert_sink_stats> out;
  for (const auto& s : m.slots) {
    alert_sink_stats st;
    st.name = s->sink->config().name;
    st.type = s->sink->config().type;
    {
      std::lock_guard lock(s->mu);
      st.queue_depth = s->queue.size();
    }
    st.sent = s->sent.load();
    st.failed = s->failed.load();
    st.retried = s->retried.load();
    st.fell_back = s->fell_back.load();
    st.deferred = s->deferred.load();
    st.deduplicated = s->deduplicated.load();
    st.resent = s->resent.load();
    out.push_back(std::move(st));
  }
  return out;
}

}  // namespace loopwarden::core
