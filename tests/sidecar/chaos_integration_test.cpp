// Crash consistency (issue 10, item 4): the real daemon is driven by a host (trip events, gate
// requests) and an operator (ack, reset, approve, deny), killed with SIGKILL at a random moment,
// restarted, and checked against an independent record of everything it acknowledged:
//
//   - a breaker state the daemon told anyone (a control reply, a status, a host's breaker watch)
//     is never lost, reverted or contradicted by a restart: the restarted daemon shows the same
//     epoch with the same state, or a later epoch only where an operation was in flight at the
//     kill (and then the state that operation leads to); an open breaker is never closed by a
//     restart;
//   - an approval the host was given an id for, or an operator decided, or the gate let through,
//     is still there in that state; a used approval still refuses a second use;
//   - `loopwarden audit verify --expect-head` passes after every restart, anchored at the last
//     head the daemon reported before it died (nothing committed was cut off);
//   - at the end, every trip and every reset the store committed, every approval the store
//     committed (and every one the host was given an id for), and the resolve of every approval
//     the store committed as decided, expired or used (and of every one an operator decided with
//     an ok reply), has its alert delivered to a real HTTP receiver at least once, the
//     receiver can deduplicate them by fingerprint (one fingerprint per incident or approval,
//     one incident or approval per fingerprint), and the outbox is empty.
//
// The receiver refuses a share of requests and answers some slowly, so kills land between a
// delivery and its outbox update too. Kill points are seeded (the seed is printed; rerun with
// LOOPWARDEN_CHAOS_SEED=N). LOOPWARDEN_CHAOS_ITERATIONS sets the number of kills (the CI default
// runs in about a minute); bench/chaos.sh runs a long campaign.

#include <catch2/catch.hpp>

#include <httplib.h>
#include <sqlite3.h>

#include <atomic>
#include <compare>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <loopwarden/v1/breaker.pb.h>
#include <loopwarden/client/breaker_watch.hpp>
#include <loopwarden/client/gate_client.hpp>

#include "daemon.hpp"

using namespace loopwarden;
using namespace std::chrono_literals;
using loopwarden::test::daemon_config;
using loopwarden::test::daemon_options;
using loopwarden::test::daemon_process;
using loopwarden::test::wait_until;
namespace fs = std::filesystem;

namespace {

using breaker_key = std::pair<std::string, std::string>;  // name, run_id

std::string describe(const breaker_key& k) {
  return k.second.empty() ? k.first : k.first + "@" + k.second;
}

std::string describe(const v1::BreakerStatus& b) {
  std::ostringstream out;
  out << sdk::to_string(b.state()) << (b.acknowledged() ? "+acked" : "") << " epoch " << b.epoch()
      << " trips " << b.trips();
  return out.str();
}

bool open_state(v1::BreakerState s) {
  return s == v1::BREAKER_STATE_OPEN || s == v1::BREAKER_STATE_FORCED_OPEN;
}

std::uint64_t env_number(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 10);
}

// ---- the alert receiver ----------------------------------------------------------------------

// One alert as the receiver took it.
struct delivery {
  std::string fingerprint;
  std::string kind;
  std::string breaker;
  std::string run_id;
  std::uint64_t trips = 0;
  std::string approval_id;  // kind "approval": the evidence's approval_id
  std::string status;       // firing | resolved
};

// A webhook receiver on 127.0.0.1 that refuses (503) a share of requests and answers some
// slowly, from its own seeded generator, and records every alert it accepted.
class flaky_receiver {
 public:
  explicit flaky_receiver(std::uint64_t seed) : rng_(seed) {
    server_.Post("/alerts", [this](const httplib::Request& req, httplib::Response& res) {
      double roll = 0;
      int delay_ms = 0;
      {
        std::lock_guard lock(mu_);
        ++requests_;
        roll = std::uniform_real_distribution<double>(0, 1)(rng_);
        delay_ms = std::uniform_int_distribution<int>(0, 8)(rng_);
      }
      // A slow answer widens the window between the receiver's acceptance and the outbox
      // update, where a kill makes a duplicate.
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      std::lock_guard lock(mu_);
      if (roll < refuse_share_) {
        res.status = 503;
        return;
      }
      try {
        const auto j = nlohmann::json::parse(req.body);
        std::string approval_id;
        for (const auto& e : j.value("evidence", nlohmann::json::array())) {
          if (e.value("key", "") == "approval_id") approval_id = e.value("value", "");
        }
        deliveries_.push_back({j.value("fingerprint", ""), j.value("kind", ""),
                               j.value("breaker", ""), j.value("run_id", ""),
                               j.value("trips", std::uint64_t{0}), approval_id,
                               j.value("status", "")});
        res.status = 200;
      } catch (const nlohmann::json::exception&) {
        ++unreadable_;
        res.status = 400;
      }
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~flaky_receiver() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  void set_refuse_share(double share) {
    std::lock_guard lock(mu_);
    refuse_share_ = share;
  }
  std::vector<delivery> deliveries() const {
    std::lock_guard lock(mu_);
    return deliveries_;
  }
  int requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  int unreadable() const {
    std::lock_guard lock(mu_);
    return unreadable_;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::mt19937_64 rng_;               // guarded by mu_
  double refuse_share_ = 0.2;         // guarded by mu_
  int requests_ = 0;                  // guarded by mu_
  int unreadable_ = 0;                // guarded by mu_
  std::vector<delivery> deliveries_;  // guarded by mu_
};

// ---- the independent record ------------------------------------------------------------------

// An operation whose outcome the test does not know: it was in flight when the daemon died (or
// got no answer in time). Its key (a breaker, or an approval id) may legitimately have moved on.
struct in_flight {
  enum class kind { trip, ack, reset, ask_new, approve, deny, use };
  kind what;
  breaker_key breaker{};
  std::string approval{};
};

struct approval_fact {
  std::string command;  // the gated action's command (re-asking needs the same action)
  std::string state;    // pending | approved | denied | used, as the daemon acknowledged it
};

// Everything the daemon acknowledged, from any channel. For each breaker, the status with the
// highest epoch the daemon ever told anyone; two different states told for one epoch are a
// contradiction. Thread-safety: every method locks; the breaker watch's thread calls observe().
class record {
 public:
  void observe(const v1::BreakerStatus& b, std::string_view channel) {
    std::lock_guard lock(mu_);
    observe_locked(b, channel);
    changed_.notify_all();
  }
  void observe_all(const v1::BreakerSnapshot& snap, std::string_view channel) {
    std::lock_guard lock(mu_);
    for (const auto& b : snap.breakers()) observe_locked(b, channel);
    changed_.notify_all();
  }
  void observe_head(std::uint64_t seq, const std::string& hash) {
    std::lock_guard lock(mu_);
    if (seq >= head_seq_) {
      head_seq_ = seq;
      head_hash_ = hash;
    }
  }
  std::pair<std::uint64_t, std::string> head() const {
    std::lock_guard lock(mu_);
    return {head_seq_, head_hash_};
  }
  std::map<breaker_key, v1::BreakerStatus> breakers() const {
    std::lock_guard lock(mu_);
    return breakers_;
  }
  std::optional<v1::BreakerStatus> find(const breaker_key& k) const {
    std::lock_guard lock(mu_);
    auto it = breakers_.find(k);
    if (it == breakers_.end()) return std::nullopt;
    return it->second;
  }
  // Waits until `k` is open at an epoch above `after`, `stop` turns true, or `timeout` passes.
  bool wait_open(const breaker_key& k, std::uint64_t after, const std::atomic<bool>& stop,
                 std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      auto it = breakers_.find(k);
      if (it != breakers_.end() && it->second.epoch() > after && open_state(it->second.state())) {
        return true;
      }
      if (stop.load() || std::chrono::steady_clock::now() >= deadline) return false;
      changed_.wait_for(lock, 5ms);
    }
  }
  std::vector<std::string> take_contradictions() {
    std::lock_guard lock(mu_);
    return std::exchange(contradictions_, {});
  }

 private:
  void observe_locked(const v1::BreakerStatus& b, std::string_view channel) {
    const breaker_key k{b.name(), b.run_id()};
    auto it = breakers_.find(k);
    if (it == breakers_.end() || b.epoch() > it->second.epoch()) {
      breakers_[k] = b;
      return;
    }
    const v1::BreakerStatus& known = it->second;
    if (b.epoch() == known.epoch() &&
        (b.state() != known.state() || b.acknowledged() != known.acknowledged() ||
         b.trips() != known.trips())) {
      contradictions_.push_back(describe(k) + ": " + std::string(channel) + " said " + describe(b) +
                                " but the daemon had said " + describe(known) +
                                " for the same epoch");
    }
  }

  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::map<breaker_key, v1::BreakerStatus> breakers_;  // guarded by mu_
  std::vector<std::string> contradictions_;            // guarded by mu_
  std::uint64_t head_seq_ = 0;                         // guarded by mu_
  std::string head_hash_;                              // guarded by mu_
};

// ---- the chaos run ---------------------------------------------------------------------------

constexpr const char* trip_name = "fixture.trip";
constexpr const char* global_name = "fixture.global";
const std::vector<std::string> chaos_runs = {"run-0", "run-1", "run-2", "run-3"};
constexpr const char* host_source = "chaos/host";
constexpr const char* agent_source = "chaos/agent";
constexpr const char* agent_run = "run-agent";
constexpr auto call_timeout = 1500ms;

std::string chaos_config(int receiver_port) {
  return daemon_config() +
         "alerts:\n"
         "  sinks:\n"
         "    - name: hook\n"
         "      type: webhook\n"
         "      url: http://127.0.0.1:" +
         std::to_string(receiver_port) +
         "/alerts\n"
         "      timeout: 2s\n"
         "      backoff: {initial: 20ms, max: 200ms}\n"
         "      max_attempts: 1000\n"
         "  routes:\n"
         "    - sinks: [hook]\n";
}

v1::ActionRequest approval_action(const std::string& command) {
  v1::ActionRequest a;
  a.set_kind(v1::ACTION_KIND_SHELL);
  a.set_tool("bash");
  a.set_command(command);  // "approve" in it: the fixture monitor asks for a human
  return a;
}

// The outcome of the whole campaign, for the summary line and the docs.
struct campaign {
  int iterations = 0;
  std::map<std::string, int> kill_points;   // what was in flight when SIGKILL landed
  std::map<std::string, int> acknowledged;  // operations the daemon acknowledged, by kind
  int uncertain = 0;                        // operations in flight at a kill
  std::vector<std::string> violations;
};

class chaos_driver {
 public:
  chaos_driver(daemon_process& d, record& rec, std::mt19937_64& rng, campaign& out)
      : d_(d), rec_(rec), rng_(rng), out_(out) {}

  // Connects a host (ingest, gate) and a breaker watch to the running daemon.
  void connect() {
    push_.emplace(test::connect_raw(zmq::socket_type::push, d_.ingest()));
    push_->set(zmq::sockopt::sndtimeo, 1000);
    auto gate = client::gate_client::create({.endpoint = d_.gate(),
                                             .source = agent_source,
                                             .run_id = agent_run,
                                             .timeout = call_timeout});
    REQUIRE(gate.ok());
    gate_ = std::move(*gate);
  }
  // Forgets the sockets of a dead daemon (nothing queued for it reaches the next one).
  void disconnect() {
    push_.reset();
    gate_.reset();
  }

  // Runs random operations, each after a random pause of up to `pace`, until `killed` turns
  // true. Returns what was in flight then ("idle": between operations).
  std::string run_until(const std::atomic<bool>& killed, std::chrono::milliseconds pace) {
    while (!killed.load()) {
      if (pace.count() > 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(
            std::uniform_int_distribution<long>(0, 1000 * pace.count())(rng_)));
        if (killed.load()) break;
      }
      const std::string doing = one_operation(killed);
      if (killed.load()) return doing;
    }
    return "idle";
  }

  std::vector<in_flight>& uncertain() { return uncertain_; }
  std::map<std::string, approval_fact>& approvals() { return approvals_; }
  // The approvals whose id the gate gave the host, and those an operator decided with an ok
  // reply (their alert, firing or resolved, was queued before the reply).
  const std::set<std::string>& acknowledged_approvals() const { return acknowledged_approvals_; }
  const std::set<std::string>& acknowledged_decisions() const { return acknowledged_decisions_; }

  // Status, recorded (its breakers and audit head count as acknowledged).
  std::optional<v1::ControlResponse> status() {
    v1::ControlRequest r;
    r.mutable_status();
    auto got = d_.control(r, call_timeout);
    if (!got.ok() || !got->ok()) return std::nullopt;
    rec_.observe_all(got->snapshot(), "status");
    rec_.observe_head(got->sidecar().audit_head_seq(), got->sidecar().audit_head_hash());
    return std::move(got).value();
  }

  // After a restart: asks the gate to use each used approval again, which must be refused.
  void check_used_refused(std::vector<std::string>& violations) {
    int asked = 0;
    for (const auto& [id, fact] : approvals_) {
      if (fact.state != "used" || ++asked > 3) continue;
      const auto again = gate_->ask(approval_action(fact.command), call_timeout, id);
      if (again.timed_out) continue;
      if (again.verdict != sdk::gate_verdict::deny) {
        violations.push_back("approval " + id +
                             " was used before the restart, and the gate let "
                             "it through again after it: " +
                             again.reason);
      }
    }
  }

 private:
  template <typename T>
  T pick(const std::vector<T>& v) {
    return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng_)];
  }

  std::string one_operation(const std::atomic<bool>& killed) {
    std::vector<breaker_key> closed, open, unacked;
    for (const auto& run : chaos_runs) {
      const breaker_key k{trip_name, run};
      auto b = rec_.find(k);
      (b && open_state(b->state()) ? open : closed).push_back(k);
      if (b && open_state(b->state()) && !b->acknowledged()) unacked.push_back(k);
    }
    {
      const breaker_key g{global_name, ""};
      auto b = rec_.find(g);
      (b && open_state(b->state()) ? open : closed).push_back(g);
      if (b && open_state(b->state()) && !b->acknowledged()) unacked.push_back(g);
    }
    std::vector<std::string> pending, approved;
    for (const auto& [id, f] : approvals_) {
      if (f.state == "pending") pending.push_back(id);
      if (f.state == "approved") approved.push_back(id);
    }
    // Weighted choice among what is possible now.
    std::vector<std::pair<int, std::string>> menu;
    if (!closed.empty()) menu.push_back({4, "trip"});
    if (!unacked.empty()) menu.push_back({2, "ack"});
    if (!open.empty()) menu.push_back({3, "reset"});
    if (pending.size() < 3) menu.push_back({1, "ask"});
    if (!pending.empty()) menu.push_back({2, "decide"});
    if (!approved.empty()) menu.push_back({2, "use"});
    menu.push_back({1, "status"});
    int total = 0;
    for (const auto& m : menu) total += m.first;
    int roll = std::uniform_int_distribution<int>(0, total - 1)(rng_);
    std::string op;
    for (const auto& m : menu) {
      if (roll < m.first) {
        op = m.second;
        break;
      }
      roll -= m.first;
    }

    if (op == "trip") return trip(pick(closed), killed);
    if (op == "ack") return breaker_command(pick(unacked), in_flight::kind::ack, killed);
    if (op == "reset") return breaker_command(pick(open), in_flight::kind::reset, killed);
    if (op == "ask") return ask_new(killed);
    if (op == "decide") return decide(pick(pending), killed);
    if (op == "use") return use(pick(approved), killed);
    return status() ? "idle" : "status: control call in flight";
  }

  std::string trip(const breaker_key& k, const std::atomic<bool>& killed) {
    const auto before = rec_.find(k);
    const std::uint64_t epoch = before ? before->epoch() : 0;
    v1::Envelope e = test::metric_envelope(host_source, k.second.empty() ? "run-global" : k.second,
                                           ++seq_, k.first == global_name ? "trip_global" : "trip");
    uncertain_.push_back({in_flight::kind::trip, k});
    // Not test::send_frames: a send that fails because the daemon just died is no failure here.
    const std::string bytes = e.SerializeAsString();
    if (!push_->send(zmq::str_buffer("metrics"), zmq::send_flags::sndmore) ||
        !push_->send(zmq::buffer(bytes), zmq::send_flags::none)) {
      return "trip: event sent, transition not yet seen";
    }
    // Acknowledged once a host (the breaker watch) or a control reply shows it open.
    if (rec_.wait_open(k, epoch, killed, 5s)) {
      uncertain_.pop_back();
      ++out_.acknowledged["trip"];
      return "idle";
    }
    return "trip: event sent, transition not yet seen";
  }

  std::string breaker_command(const breaker_key& k, in_flight::kind what,
                              const std::atomic<bool>& killed) {
    v1::ControlRequest r;
    v1::BreakerRef* ref = nullptr;
    const bool ack = what == in_flight::kind::ack;
    if (ack) {
      ref = r.mutable_ack()->mutable_breaker();
      r.mutable_ack()->set_note("chaos ack");
    } else {
      ref = r.mutable_reset()->mutable_breaker();
      r.mutable_reset()->set_reason("chaos reset");
    }
    ref->set_name(k.first);
    ref->set_run_id(k.second);
    uncertain_.push_back({what, k});
    auto got = d_.control(r, call_timeout);
    if (!got.ok()) return ack ? "ack: control call in flight" : "reset: control call in flight";
    if (!got->ok()) {
      // A live daemon refused: the record said the breaker was open (unacknowledged). Unless an
      // operation on it is still unsettled, the daemon lost or changed what it had said.
      uncertain_.pop_back();
      if (!killed.load() && !unsettled(k)) {
        const auto known = rec_.find(k);
        out_.violations.push_back("the daemon refused to " + std::string(ack ? "ack" : "reset") +
                                  " " + describe(k) + ", which it had reported as " +
                                  (known ? describe(*known) : std::string("unknown")) + ": " +
                                  got->error());
      }
      (void)status();
      return "idle";
    }
    uncertain_.pop_back();
    for (const auto& t : got->history()) rec_.observe(t.breaker(), "control reply");
    rec_.observe_all(got->snapshot(), "control reply");
    ++out_.acknowledged[ack ? "ack" : "reset"];
    return "idle";
  }

  std::string ask_new(const std::atomic<bool>&) {
    const std::string command = "please approve step " + std::to_string(++asked_);
    uncertain_.push_back({in_flight::kind::ask_new});
    const auto got = gate_->ask(approval_action(command));
    if (got.timed_out) return "gate: request in flight";
    uncertain_.pop_back();
    if (got.verdict == sdk::gate_verdict::require_approval && !got.approval_id.empty()) {
      approvals_[got.approval_id] = {command, "pending"};
      acknowledged_approvals_.insert(got.approval_id);
      ++out_.acknowledged["approval requested"];
    } else {
      out_.violations.push_back("the gate answered " + std::string(sdk::to_string(got.verdict)) +
                                " (" + got.reason + ") to an action that needs approval");
    }
    return "idle";
  }

  std::string decide(const std::string& id, const std::atomic<bool>& killed) {
    const bool approve = std::uniform_int_distribution<int>(0, 3)(rng_) != 0;
    v1::ControlRequest r;
    r.mutable_approval()->set_approval_id(id);
    r.mutable_approval()->set_approve(approve);
    r.mutable_approval()->set_note("chaos decision");
    uncertain_.push_back({approve ? in_flight::kind::approve : in_flight::kind::deny, {}, id});
    auto got = d_.control(r, call_timeout);
    if (!got.ok()) return "approve/deny: control call in flight";
    uncertain_.pop_back();
    if (!got->ok()) {
      if (!killed.load() && !unsettled_approval(id)) {
        out_.violations.push_back("the daemon refused to decide approval " + id +
                                  ", which it had reported pending: " + got->error());
      }
      return "idle";
    }
    approvals_[id].state = approve ? "approved" : "denied";
    acknowledged_decisions_.insert(id);
    ++out_.acknowledged[approve ? "approve" : "deny"];
    return "idle";
  }

  std::string use(const std::string& id, const std::atomic<bool>&) {
    uncertain_.push_back({in_flight::kind::use, {}, id});
    const auto got = gate_->ask(approval_action(approvals_[id].command), call_timeout, id);
    if (got.timed_out) return "gate: approved action in flight";
    uncertain_.pop_back();
    if (got.allowed()) {
      approvals_[id].state = "used";
      ++out_.acknowledged["approval used"];
    } else if (!unsettled_approval(id)) {
      out_.violations.push_back("approval " + id + " was approved, but the gate said " +
                                std::string(sdk::to_string(got.verdict)) + ": " + got.reason);
    }
    return "idle";
  }

  bool unsettled(const breaker_key& k) const {
    return std::any_of(uncertain_.begin(), uncertain_.end(),
                       [&](const in_flight& f) { return f.breaker == k; });
  }
  bool unsettled_approval(const std::string& id) const {
    return std::any_of(uncertain_.begin(), uncertain_.end(),
                       [&](const in_flight& f) { return f.approval == id; });
  }

  daemon_process& d_;
  record& rec_;
  std::mt19937_64& rng_;
  campaign& out_;
  std::optional<zmq::socket_t> push_;
  std::unique_ptr<client::gate_client> gate_;
  std::uint64_t seq_ = 0;
  int asked_ = 0;
  std::vector<in_flight> uncertain_;
  std::map<std::string, approval_fact> approvals_;
  std::set<std::string> acknowledged_approvals_;
  std::set<std::string> acknowledged_decisions_;
};

// The state `b` may have after `op` ran on a breaker whose acknowledged state was `known`.
bool explained_by(const in_flight& op, const v1::BreakerStatus& b) {
  switch (op.what) {
    case in_flight::kind::trip:
      return open_state(b.state());
    case in_flight::kind::ack:
      return open_state(b.state()) && b.acknowledged();
    case in_flight::kind::reset:
      return b.state() == v1::BREAKER_STATE_CLOSED;
    default:
      return false;
  }
}

// Compares the restarted daemon with what it had acknowledged before the kill.
void check_breakers(const std::map<breaker_key, v1::BreakerStatus>& before,
                    const v1::BreakerSnapshot& after, const std::vector<in_flight>& uncertain,
                    std::vector<std::string>& violations) {
  std::map<breaker_key, v1::BreakerStatus> now;
  // Only the fixture's breakers: the test drives them alone (telemetry breakers may trip on
  // their own, and their alerts are checked at the end like every other).
  for (const auto& b : after.breakers()) {
    if (b.name().starts_with("fixture.")) now[{b.name(), b.run_id()}] = b;
  }
  auto ops_on = [&](const breaker_key& k) {
    std::vector<in_flight> ops;
    for (const auto& f : uncertain) {
      if (f.breaker == k) ops.push_back(f);
    }
    return ops;
  };
  for (const auto& [k, was] : before) {
    if (!k.first.starts_with("fixture.")) continue;
    auto it = now.find(k);
    if (it == now.end()) {
      violations.push_back(describe(k) + " was " + describe(was) +
                           " and is gone after the restart");
      continue;
    }
    const v1::BreakerStatus& is = it->second;
    if (is.epoch() < was.epoch()) {
      violations.push_back(describe(k) + " went back from " + describe(was) + " to " +
                           describe(is) + " across the restart");
      continue;
    }
    if (is.epoch() == was.epoch()) {
      if (is.state() != was.state() || is.acknowledged() != was.acknowledged() ||
          is.trips() != was.trips()) {
        violations.push_back(describe(k) + " was " + describe(was) + ", and the restart made it " +
                             describe(is) + " at the same epoch" +
                             (open_state(was.state()) && !open_state(is.state())
                                  ? " (a restart closed an open breaker)"
                                  : ""));
      }
      continue;
    }
    // A later epoch: only an operation in flight at the kill may explain it.
    const auto ops = ops_on(k);
    const bool explained = is.epoch() <= was.epoch() + ops.size() &&
                           std::any_of(ops.begin(), ops.end(),
                                       [&](const in_flight& op) { return explained_by(op, is); });
    if (!explained) {
      violations.push_back(describe(k) + " was " + describe(was) + " and is " + describe(is) +
                           " after the restart, with no operation in flight to explain it");
    }
  }
  for (const auto& [k, is] : now) {
    if (before.count(k) != 0 || is.epoch() == 0) continue;  // epoch 0: declared, never changed
    const auto ops = ops_on(k);
    if (!std::any_of(ops.begin(), ops.end(),
                     [&](const in_flight& op) { return explained_by(op, is); })) {
      violations.push_back(describe(k) + " appeared after the restart (" + describe(is) +
                           ") with no trip in flight");
    }
  }
}

void check_approvals(const std::map<std::string, approval_fact>& before,
                     const v1::ControlResponse& listed, const std::vector<in_flight>& uncertain,
                     std::vector<std::string>& violations) {
  std::map<std::string, std::string> now;
  for (const auto& a : listed.approvals()) now[a.id()] = a.state();
  auto ops_on = [&](const std::string& id) {
    std::set<std::string> states;
    for (const auto& f : uncertain) {
      if (f.approval != id) continue;
      if (f.what == in_flight::kind::approve) states.insert("approved");
      if (f.what == in_flight::kind::deny) states.insert("denied");
      if (f.what == in_flight::kind::use) states.insert("used");
    }
    return states;
  };
  for (const auto& [id, fact] : before) {
    auto it = now.find(id);
    if (it == now.end()) {
      violations.push_back("approval " + id + " (" + fact.state + ") is gone after the restart");
      continue;
    }
    if (it->second != fact.state && ops_on(id).count(it->second) == 0) {
      violations.push_back("approval " + id + " was " + fact.state + " and is " + it->second +
                           " after the restart");
    }
  }
  const auto asks = std::count_if(uncertain.begin(), uncertain.end(), [](const in_flight& f) {
    return f.what == in_flight::kind::ask_new;
  });
  long unknown = 0;
  for (const auto& [id, state] : now) {
    if (before.count(id) == 0) ++unknown;
  }
  if (unknown > asks) {
    violations.push_back(std::to_string(unknown) +
                         " approval(s) appeared after the restart, with " + std::to_string(asks) +
                         " gate request(s) in flight");
  }
}

// The alerts of approvals, at the end: every approval the store committed (id -> state) was
// alerted, and every one it committed as settled (approved, denied, expired, used) had its page
// resolved. An approval and its alerts are one transaction, so no kill can leave one without the
// other, not even an approval created just before a kill whose host never heard of it. Checked
// from the store's side (what it committed) and from the host's and operator's (what they were
// told), so a store that lost an approval cannot make its missing alert look fine. No alert names
// an approval the store does not have. `alerted`: approval id -> its alerts' fingerprint;
// `resolved`: ids whose resolve arrived.
void check_approval_alerts(const std::map<std::string, std::string>& stored,
                           const std::map<std::string, std::string>& alerted,
                           const std::set<std::string>& resolved,
                           const std::set<std::string>& given_to_host,
                           const std::set<std::string>& decided_ok,
                           std::vector<std::string>& violations) {
  for (const auto& [id, state] : stored) {
    if (alerted.count(id) == 0) {
      violations.push_back("approval " + id + " (" + state + ") was committed but never alerted");
    }
    if (state != "pending" && resolved.count(id) == 0) {
      violations.push_back("approval " + id + " was committed " + state +
                           ", but its page was never resolved");
    }
  }
  for (const auto& id : given_to_host) {
    if (alerted.count(id) == 0) {
      violations.push_back("approval " + id + " was given to the host but never alerted");
    }
  }
  for (const auto& id : decided_ok) {
    if (resolved.count(id) == 0) {
      violations.push_back("approval " + id +
                           " was decided with an ok reply, but its page was never resolved");
    }
  }
  for (const auto& [id, fp] : alerted) {
    if (stored.count(id) == 0) {
      violations.push_back("the receiver got an alert for approval " + id +
                           ", which the store does not have");
    }
  }
}

// Read-only queries on the daemon's database (safe while it runs: WAL readers take no lock).
class database {
 public:
  explicit database(const fs::path& path) {
    const std::string uri = "file:" + path.string() + "?mode=ro";
    REQUIRE(sqlite3_open_v2(uri.c_str(), &db_, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, nullptr) ==
            SQLITE_OK);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~database() { sqlite3_close(db_); }
  database(const database&) = delete;
  database& operator=(const database&) = delete;

  // Runs `sql`, calling on_row for each row.
  void each(const std::string& sql, const std::function<void(sqlite3_stmt*)>& on_row) {
    sqlite3_stmt* st = nullptr;
    INFO(sql << ": " << sqlite3_errmsg(db_));
    REQUIRE(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
    int rc = SQLITE_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) on_row(st);
    sqlite3_finalize(st);
    REQUIRE(rc == SQLITE_DONE);
  }
  std::int64_t count(const std::string& sql) {
    std::int64_t n = -1;
    each(sql, [&](sqlite3_stmt* st) { n = sqlite3_column_int64(st, 0); });
    return n;
  }

 private:
  sqlite3* db_ = nullptr;
};

// The command of the gated action an approval was created for (from its detail_json).
std::string command_of(const std::string& detail_json) {
  try {
    return nlohmann::json::parse(detail_json)["request"]["action"].value("command", "");
  } catch (const nlohmann::json::exception&) {
    return "";
  }
}

}  // namespace

TEST_CASE("chaos: SIGKILL at random points loses nothing the daemon acknowledged",
          "[integration][sidecar][chaos]") {
  const std::uint64_t seed = env_number("LOOPWARDEN_CHAOS_SEED", std::random_device{}());
  const int iterations = static_cast<int>(env_number("LOOPWARDEN_CHAOS_ITERATIONS", 20));
  const auto max_run = std::chrono::milliseconds(env_number("LOOPWARDEN_CHAOS_MAX_RUN_MS", 1200));
  // A random pause of up to this before each operation: kills also land between operations, and
  // the state (audit log, outbox) grows at a pace a long campaign can verify after every kill.
  const auto pace = std::chrono::milliseconds(env_number("LOOPWARDEN_CHAOS_PACE_MS", 5));
  std::cout << "chaos: seed " << seed << ", " << iterations
            << " kills (rerun with LOOPWARDEN_CHAOS_SEED=" << seed << ")" << std::endl;
  INFO("chaos seed " << seed << " (rerun with LOOPWARDEN_CHAOS_SEED=" << seed << ")");

  std::mt19937_64 rng(seed);
  flaky_receiver receiver(seed + 1);
  daemon_options o;
  o.config = chaos_config(receiver.port());
  daemon_process d(o);
  const fs::path db_path = fs::path(d.state_dir()) / "loopwarden.db";

  record rec;
  campaign out;
  auto watch = client::breaker_watch::create({.endpoint = d.breakers(),
                                              .timeout = 5000ms,
                                              .fail_open = true,
                                              .on_transition = [&](const v1::BreakerTransition& t) {
                                                rec.observe(t.breaker(), "a host's breaker watch");
                                              }});
  REQUIRE(watch.ok());
  chaos_driver driver(d, rec, rng, out);
  driver.connect();
  REQUIRE(driver.status());

  const auto started = std::chrono::steady_clock::now();
  for (int i = 1; i <= iterations && out.violations.empty(); ++i) {
    INFO("iteration " << i);
    out.iterations = i;
    // How this daemon dies: SIGKILL at a random moment (most), or SIGKILL in the middle of a
    // graceful SIGTERM shutdown; and sometimes its successor is killed again while starting.
    const int style = std::uniform_int_distribution<int>(0, 9)(rng);
    const auto delay =
        std::chrono::milliseconds(std::uniform_int_distribution<long>(0, max_run.count())(rng));
    const auto term_grace =
        std::chrono::milliseconds(std::uniform_int_distribution<long>(0, 300)(rng));
    std::atomic<bool> killed{false};
    std::jthread killer([&](std::stop_token st) {
      std::mutex m;
      std::condition_variable_any cv;
      std::unique_lock lock(m);
      cv.wait_for(lock, st, delay, [] { return false; });
      if (st.stop_requested()) return;
      if (style == 0) {
        d.signal(SIGTERM);
        cv.wait_for(lock, st, term_grace, [] { return false; });
      }
      d.signal(SIGKILL);
      killed = true;
    });
    const std::string doing = driver.run_until(killed, pace);
    killer.join();
    REQUIRE(d.wait_exit(10s).has_value());
    ++out.kill_points[style == 0 ? "during a graceful shutdown (SIGTERM, then SIGKILL)" : doing];
    driver.disconnect();
    // Transitions the watch had already received are applied before the record is frozen.
    std::this_thread::sleep_for(100ms);
    const auto before = rec.breakers();
    const auto head = rec.head();
    const auto approvals_before = driver.approvals();
    const auto uncertain = driver.uncertain();
    out.uncertain += static_cast<int>(uncertain.size());

    if (std::uniform_int_distribution<int>(0, 9)(rng) == 0) {
      // Killed again while it starts (opening the store, restoring breakers, binding sockets).
      d.restart_nowait();
      std::this_thread::sleep_for(
          std::chrono::milliseconds(std::uniform_int_distribution<long>(0, 250)(rng)));
      d.kill();
      ++out.kill_points["during start-up"];
    }
    d.restart();
    driver.connect();

    // The checks, against the record frozen at the kill. The restarted daemon answered its
    // readiness probe; on a machine this loaded a single status call may still time out.
    std::optional<v1::ControlResponse> after;
    for (int attempt = 0; attempt < 5 && !after; ++attempt) after = driver.status();
    if (!after) FAIL("the restarted daemon does not answer status; its log:\n" << d.log());
    for (auto& c : rec.take_contradictions()) out.violations.push_back(std::move(c));
    check_breakers(before, after->snapshot(), uncertain, out.violations);
    v1::ControlRequest list;
    list.mutable_approvals()->set_all(true);
    auto listed = d.control(list, call_timeout);
    REQUIRE(listed.ok());
    REQUIRE(listed->ok());
    check_approvals(approvals_before, *listed, uncertain, out.violations);
    const std::string anchor = std::to_string(head.first) + ":" + head.second;
    const auto verify = test::run_loopwarden(
        "audit verify --state-dir '" + d.state_dir() + "' --expect-head " + anchor, d.dir());
    if (verify.code != 0) {
      out.violations.push_back("audit verify --expect-head " + anchor + " failed (exit " +
                               std::to_string(verify.code) + "): " + verify.out + verify.err);
    }
    // What was in flight is settled now: the record takes the restarted daemon's word.
    for (const auto& a : listed->approvals()) {
      approval_fact& fact = driver.approvals()[a.id()];
      fact.state = a.state();
      if (fact.command.empty()) fact.command = command_of(a.detail_json());
    }
    driver.uncertain().clear();
    driver.check_used_refused(out.violations);
    if (!out.violations.empty()) {
      std::cout << "chaos: iteration " << i << " (" << doing << ") found:\n";
      for (const auto& v : out.violations) std::cout << "  " << v << "\n";
      std::cout << "daemon log:\n" << d.log() << std::endl;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  // The end: the receiver takes everything; every alert the store planned is delivered.
  receiver.set_refuse_share(0.0);
  {
    database db(db_path);
    const bool drained = wait_until(
        [&] { return db.count("SELECT COUNT(*) FROM outbox WHERE state = 'pending'") == 0; }, 60s,
        50ms);
    INFO("daemon log:\n" << d.log());
    CHECK(drained);
  }
  const auto final_status = driver.status();
  REQUIRE(final_status.has_value());
  const auto final_head = rec.head();
  watch->reset();
  driver.disconnect();
  CHECK(d.stop() == 0);
  const auto verify =
      test::run_loopwarden("audit verify --state-dir '" + d.state_dir() + "' --expect-head " +
                               std::to_string(final_head.first) + ":" + final_head.second,
                           d.dir());
  CHECK(verify.code == 0);

  // What the store committed: every trip (its trips counter) and every reset of an open breaker.
  struct incident_key {
    std::string breaker, run;
    std::uint64_t trips;
    std::string kind;
    auto operator<=>(const incident_key&) const = default;
  };
  std::set<incident_key> committed;
  database db(db_path);
  db.each("SELECT transition FROM transitions WHERE cause IN ('trip', 'reset')",
          [&](sqlite3_stmt* st) {
            v1::BreakerTransition t;
            REQUIRE(t.ParseFromArray(sqlite3_column_blob(st, 0), sqlite3_column_bytes(st, 0)));
            const auto& b = t.breaker();
            if (t.cause() == "trip") {
              committed.insert({b.name(), b.run_id(), b.trips(), "trigger"});
            } else if (open_state(t.previous())) {
              committed.insert({b.name(), b.run_id(), b.trips(), "resolve"});
            }
          });
  CHECK(db.count("SELECT COUNT(*) FROM outbox WHERE state != 'delivered'") == 0);

  const auto got = receiver.deliveries();
  // (fingerprint, kind and status): an approval's page and its resolve share a fingerprint.
  std::map<std::pair<std::string, std::string>, int> by_fingerprint;
  std::map<std::string, std::tuple<std::string, std::string, std::uint64_t>> incident_of;
  std::set<incident_key> delivered;
  int duplicates = 0;
  // Approval alerts: one fingerprint per approval id, and the other way round.
  std::map<std::string, std::string> approval_of;  // fingerprint -> approval id
  std::map<std::string, std::string> approval_fp;  // approval id -> fingerprint
  std::set<std::string> approvals_resolved;        // approval ids whose resolve arrived
  for (const auto& a : got) {
    if (++by_fingerprint[{a.fingerprint, a.kind + "/" + a.status}] > 1) ++duplicates;
    if (a.kind == "approval") {
      const auto [it, fresh] = approval_of.emplace(a.fingerprint, a.approval_id);
      const auto [jt, new_id] = approval_fp.emplace(a.approval_id, a.fingerprint);
      if (a.approval_id.empty() || (!fresh && it->second != a.approval_id) ||
          (!new_id && jt->second != a.fingerprint)) {
        out.violations.push_back("approval alert " + a.fingerprint + " for approval '" +
                                 a.approval_id + "' does not name one approval by one fingerprint");
      }
      if (a.status == "resolved") approvals_resolved.insert(a.approval_id);
      continue;
    }
    delivered.insert({a.breaker, a.run_id, a.trips, a.kind});
    const auto incident = std::make_tuple(a.breaker, a.run_id, a.trips);
    auto [it, fresh] = incident_of.emplace(a.fingerprint, incident);
    if (!fresh && it->second != incident) {
      out.violations.push_back("fingerprint " + a.fingerprint +
                               " names two incidents: " + a.breaker + "@" + a.run_id + " trip " +
                               std::to_string(a.trips) + " and another");
    }
  }
  std::set<std::tuple<std::string, std::string, std::uint64_t>> incidents;
  for (const auto& [fp, incident] : incident_of) {
    if (!incidents.insert(incident).second) {
      out.violations.push_back("incident " + std::get<0>(incident) + "@" + std::get<1>(incident) +
                               " trip " + std::to_string(std::get<2>(incident)) +
                               " has two fingerprints");
    }
  }
  for (const auto& c : committed) {
    if (delivered.count(c) == 0) {
      out.violations.push_back("the " + c.kind + " of " + c.breaker + "@" + c.run + " trip " +
                               std::to_string(c.trips) + " was committed but never delivered");
    }
  }
  for (const auto& a : delivered) {
    if (committed.count(a) == 0) {
      out.violations.push_back("the receiver got a " + a.kind + " of " + a.breaker + "@" + a.run +
                               " trip " + std::to_string(a.trips) +
                               " that the store never committed");
    }
  }
  std::map<std::string, std::string> stored_approvals;  // id -> state
  db.each("SELECT id, state FROM approvals", [&](sqlite3_stmt* st) {
    stored_approvals.emplace(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)),
                             reinterpret_cast<const char*>(sqlite3_column_text(st, 1)));
  });
  check_approval_alerts(stored_approvals, approval_fp, approvals_resolved,
                        driver.acknowledged_approvals(), driver.acknowledged_decisions(),
                        out.violations);
  CHECK(receiver.unreadable() == 0);

  std::cout << "chaos: " << out.iterations << " kills in " << static_cast<int>(seconds)
            << " s (seed " << seed << "); kill points:";
  for (const auto& [what, n] : out.kill_points) std::cout << " [" << what << "] " << n << ";";
  std::cout << "\nchaos: acknowledged:";
  for (const auto& [what, n] : out.acknowledged) std::cout << " " << what << " " << n << ";";
  std::cout << " in flight at a kill: " << out.uncertain << "\nchaos: alerts: " << committed.size()
            << " committed incidents (triggers and resolves) and " << approval_fp.size()
            << " approvals alerted of " << stored_approvals.size() << " committed ("
            << driver.acknowledged_approvals().size() << " given to the host, "
            << approvals_resolved.size() << " resolved), " << got.size() << " deliveries of "
            << receiver.requests() << " requests, " << duplicates
            << " duplicate(s) deduplicated by fingerprint" << std::endl;
  INFO("violations:\n"
       << [&] {
            std::string all;
            for (const auto& v : out.violations) all += "  " + v + "\n";
            return all;
          }());
  CHECK(out.violations.empty());
  CHECK(out.acknowledged["trip"] > 0);
  CHECK(out.acknowledged["reset"] > 0);
}

namespace {

v1::BreakerStatus breaker(const std::string& run, v1::BreakerState state, std::uint64_t epoch,
                          std::uint64_t trips, bool acked = false) {
  v1::BreakerStatus b;
  b.set_name(trip_name);
  b.set_run_id(run);
  b.set_state(state);
  b.set_epoch(epoch);
  b.set_trips(trips);
  b.set_acknowledged(acked);
  return b;
}

}  // namespace

// The checks above must be able to fail: each row is a restart that lost or invented something.
TEST_CASE("the chaos checks flag every way a restart can lose or invent a breaker state",
          "[sidecar][chaos]") {
  using S = v1::BreakerState;
  const breaker_key k{trip_name, "run-0"};
  const auto open1 = breaker("run-0", S::BREAKER_STATE_OPEN, 1, 1);
  const auto acked2 = breaker("run-0", S::BREAKER_STATE_OPEN, 2, 1, true);
  const auto closed3 = breaker("run-0", S::BREAKER_STATE_CLOSED, 3, 1);
  const auto open4 = breaker("run-0", S::BREAKER_STATE_OPEN, 4, 2);
  const in_flight trip{in_flight::kind::trip, k};
  const in_flight reset{in_flight::kind::reset, k};
  const in_flight ack{in_flight::kind::ack, k};
  struct row {
    const char* what;
    std::optional<v1::BreakerStatus> before;
    std::optional<v1::BreakerStatus> after;
    std::vector<in_flight> uncertain;
    bool violation;
  };
  const std::vector<row> rows = {
      {"unchanged", open1, open1, {}, false},
      {"an acknowledged trip lost", open1, std::nullopt, {}, true},
      {"an open breaker closed by the restart",
       acked2,
       breaker("run-0", S::BREAKER_STATE_CLOSED, 2, 1),
       {},
       true},
      {"an acknowledged ack lost", acked2, breaker("run-0", S::BREAKER_STATE_OPEN, 2, 1), {}, true},
      {"a reset lost (epoch went back)", closed3, acked2, {}, true},
      {"a trip counter went back", open4, breaker("run-0", S::BREAKER_STATE_OPEN, 4, 1), {}, true},
      {"a later epoch with nothing in flight", open1, acked2, {}, true},
      {"an ack in flight that committed", open1, acked2, {ack}, false},
      {"a reset in flight that committed", acked2, closed3, {reset}, false},
      {"a reset in flight cannot explain an ack", open1, acked2, {reset}, true},
      {"a trip in flight that committed", closed3, open4, {trip}, false},
      {"a trip in flight cannot explain two epochs",
       closed3,
       breaker("run-0", S::BREAKER_STATE_OPEN, 5, 2),
       {trip},
       true},
      {"a breaker that appeared from nothing", std::nullopt, open1, {}, true},
      {"a breaker that appeared from a trip in flight", std::nullopt, open1, {trip}, false},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    std::map<breaker_key, v1::BreakerStatus> before;
    if (r.before) before[k] = *r.before;
    v1::BreakerSnapshot after;
    if (r.after) *after.add_breakers() = *r.after;
    std::vector<std::string> violations;
    check_breakers(before, after, r.uncertain, violations);
    CHECK(violations.empty() != r.violation);
  }
}

TEST_CASE("the chaos checks flag approvals a restart lost, changed or invented",
          "[sidecar][chaos]") {
  auto listed = [](std::vector<std::pair<std::string, std::string>> approvals) {
    v1::ControlResponse r;
    for (const auto& [id, state] : approvals) {
      auto* a = r.add_approvals();
      a->set_id(id);
      a->set_state(state);
    }
    return r;
  };
  const std::map<std::string, approval_fact> before = {
      {"ap-1", {"c1", "pending"}}, {"ap-2", {"c2", "approved"}}, {"ap-3", {"c3", "used"}}};
  const in_flight use2{in_flight::kind::use, {}, "ap-2"};
  const in_flight ask{in_flight::kind::ask_new};
  struct row {
    const char* what;
    v1::ControlResponse after;
    std::vector<in_flight> uncertain;
    bool violation;
  };
  const std::vector<row> rows = {
      {"unchanged",
       listed({{"ap-1", "pending"}, {"ap-2", "approved"}, {"ap-3", "used"}}),
       {},
       false},
      {"a requested approval lost", listed({{"ap-2", "approved"}, {"ap-3", "used"}}), {}, true},
      {"an approval decision lost",
       listed({{"ap-1", "pending"}, {"ap-2", "pending"}, {"ap-3", "used"}}),
       {},
       true},
      {"a use lost (approved again)",
       listed({{"ap-1", "pending"}, {"ap-2", "approved"}, {"ap-3", "approved"}}),
       {},
       true},
      {"a use in flight that committed",
       listed({{"ap-1", "pending"}, {"ap-2", "used"}, {"ap-3", "used"}}),
       {use2},
       false},
      {"a use with nothing in flight",
       listed({{"ap-1", "pending"}, {"ap-2", "used"}, {"ap-3", "used"}}),
       {},
       true},
      {"a new approval from a request in flight",
       listed({{"ap-1", "pending"}, {"ap-2", "approved"}, {"ap-3", "used"}, {"ap-4", "pending"}}),
       {ask},
       false},
      {"a new approval from nothing",
       listed({{"ap-1", "pending"}, {"ap-2", "approved"}, {"ap-3", "used"}, {"ap-4", "pending"}}),
       {},
       true},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    std::vector<std::string> violations;
    check_approvals(before, r.after, r.uncertain, violations);
    CHECK(violations.empty() != r.violation);
  }
}

TEST_CASE("the chaos checks flag approvals committed without their alert or resolve",
          "[sidecar][chaos]") {
  using ids = std::set<std::string>;
  using by_id = std::map<std::string, std::string>;
  struct row {
    const char* what;
    by_id stored;    // id -> state, as committed
    by_id alerted;   // id -> fingerprint of the alerts the receiver got
    ids resolved;    // ids whose resolve arrived
    ids given;       // ids the host was given
    ids decided_ok;  // ids an operator decided with an ok reply
    bool violation;
  };
  const by_id all = {{"ap-1", "pending"},
                     {"ap-2", "approved"},
                     {"ap-3", "used"},
                     {"ap-4", "denied"},
                     {"ap-5", "expired"}};
  const by_id paged = {
      {"ap-1", "f1"}, {"ap-2", "f2"}, {"ap-3", "f3"}, {"ap-4", "f4"}, {"ap-5", "f5"}};
  const ids settled = {"ap-2", "ap-3", "ap-4", "ap-5"};
  const std::vector<row> rows = {
      {"every approval paged, every settled one resolved",
       all,
       paged,
       settled,
       {"ap-1"},
       {"ap-2"},
       false},
      {"an approval committed just before a kill, never given to the host, never paged",
       by_id{{"ap-1", "pending"}, {"ap-9", "pending"}},
       by_id{{"ap-1", "f1"}},
       {},
       {"ap-1"},
       {},
       true},
      {"an approval decided, but the operator's reply was lost, never resolved",
       by_id{{"ap-4", "denied"}},
       by_id{{"ap-4", "f4"}},
       {},
       {},
       {},
       true},
      {"an expired approval never resolved",
       by_id{{"ap-5", "expired"}},
       by_id{{"ap-5", "f5"}},
       {},
       {},
       {},
       true},
      {"a used approval whose approval was never resolved",
       by_id{{"ap-3", "used"}},
       by_id{{"ap-3", "f3"}},
       {},
       {},
       {},
       true},
      {"a pending approval needs no resolve",
       by_id{{"ap-1", "pending"}},
       by_id{{"ap-1", "f1"}},
       {},
       {},
       {},
       false},
      {"an approval given to the host that the store lost, and its alert with it",
       by_id{},
       by_id{},
       {},
       {"ap-1"},
       {},
       true},
      {"an ok decision the store lost, and its resolve with it",
       by_id{},
       by_id{},
       {},
       {},
       {"ap-2"},
       true},
      {"an alert for an approval the store does not have",
       by_id{},
       by_id{{"ap-7", "f7"}},
       {},
       {},
       {},
       true},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    std::vector<std::string> violations;
    check_approval_alerts(r.stored, r.alerted, r.resolved, r.given, r.decided_ok, violations);
    INFO((violations.empty() ? std::string("no violation") : violations.front()));
    CHECK(violations.empty() != r.violation);
  }
}
