#include <loopwarden/sidecar/server.hpp>

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <nlohmann/json.hpp>
#include <ostream>
#include <shared_mutex>
#include <zmq_addon.hpp>

#include <loopwarden/core/alert_config.hpp>
#include <loopwarden/core/alert_router.hpp>
#include <loopwarden/core/breaker_registry.hpp>
#include <loopwarden/core/engine.hpp>
#include <loopwarden/core/logging.hpp>
#include <loopwarden/core/redactor.hpp>
#include <loopwarden/core/sqlite_store.hpp>
#include <loopwarden/sidecar/cli.hpp>
#include <loopwarden/sidecar/control_client.hpp>
#include <loopwarden/sidecar/transition_format.hpp>

#include "approval_gate.hpp"
#include "background_jobs.hpp"
#include "breaker_publisher.hpp"
#include "control_handler.hpp"
#include "control_service.hpp"
#include "http_endpoint.hpp"
#include "ingest_loop.hpp"
#include "memory_return.hpp"
#include "zmq_util.hpp"

namespace loopwarden::sidecar {

namespace fs = std::filesystem;

namespace {

constexpr const char* command_endpoint = "inproc://loopwarden.engine-commands";
constexpr auto tick_period = std::chrono::milliseconds(50);
constexpr auto slow_step = std::chrono::milliseconds(200);

// When the engine thread returns freed memory to the system (memory_return.hpp): after the event
// queue held 1024 events (16 full batches) or 1 MiB of batches was freed past the free list, once
// the queue is empty and no batch was freed for a second, at most every 10 s.
detail::memory_return_policy::limits memory_return_policy_limits() { return {}; }

std::int64_t wall_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A request for the engine thread, passed by pointer over an inproc socket.
struct engine_command {
  std::unique_ptr<core::engine> next;           // the engine to swap in
  std::promise<std::vector<std::string>> done;  // the monitors that kept their state
  detail::handoff_fence handoff;                // published before it is sent to the engine
};

core::result<core::config> load_config(const serve_options& o) {
  auto cfg = o.config_file.empty() ? core::default_config() : core::load_config_file(o.config_file);
  if (!cfg.ok()) return cfg.error();
  if (!o.state_dir.empty()) core::override_state_dir(*cfg, o.state_dir);
  if (!o.ingest.empty()) {
    cfg->transport.ingest.clear();
    for (const auto& ep : o.ingest)
      cfg->transport.ingest.push_back({core::ingest_socket::pull, ep, true, {}, {}});
  }
  if (!o.breakers_endpoint.empty()) cfg->transport.breakers = o.breakers_endpoint;
  if (!o.gate_endpoint.empty()) cfg->transport.gate = o.gate_endpoint;
  if (!o.control_endpoint.empty()) cfg->transport.control = o.control_endpoint;
  if (o.log_level) cfg->log_level = *o.log_level;
  if (cfg->transport.control.rfind("tcp://", 0) == 0 &&
      cfg->transport.control_secret_key_file.empty()) {
    return core::make_error(core::status_code::invalid_argument,
                            "a tcp control socket needs transport.control_curve in the config");
  }
  return cfg;
}

std::string host_name() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

std::string sidecar_id() { return host_name() + ":" + std::to_string(::getpid()); }

// The id alerts are fingerprinted with: stable across restarts of the same daemon (host and
// state directory), so a trip re-delivered after a crash deduplicates downstream.
std::string stable_sidecar_id(const core::config& cfg) { return host_name() + ":" + cfg.state_dir; }

// The sections of the config the sidecar reads itself (the engine ignores them).
struct sidecar_sections {
  core::alerts_config alerts;
  detail::http_config http;
  detail::approval_policy approvals;
  core::sqlite_state_store::sync_mode state_sync = core::sqlite_state_store::sync_mode::full;
  // How often the monitors' learned state is saved (also at shutdown); zero: only at shutdown.
  std::chrono::milliseconds monitor_state_interval = std::chrono::seconds(60);
};

core::result<sidecar_sections> read_sections(const core::config& cfg, const serve_options& o) {
  sidecar_sections s;
  const std::string base = cfg.source.empty() || cfg.source.front() == '<'
                               ? std::string()
                               : fs::path(cfg.source).parent_path().string();
  auto alerts = core::parse_alerts_config(cfg.root["alerts"], base);
  if (!alerts.ok()) return alerts.error();
  s.alerts = std::move(*alerts);
  auto http = detail::parse_http_config(cfg.root["http"]);
  if (!http.ok()) return http.error();
  s.http = std::move(*http);
  if (o.http_listen) s.http.listen = *o.http_listen;
  if (const sdk::config_node sync = cfg.root["state_sync"]; !sync.is_missing() && !sync.is_null()) {
    auto v = sync.as_string();
    if (!v.ok()) return v.error();
    if (*v == "normal") {
      s.state_sync = core::sqlite_state_store::sync_mode::normal;
    } else if (*v != "full") {
      return sync.error("expected full or normal, got \"" + *v + "\"");
    }
  }
  if (const sdk::config_node every = cfg.root["monitor_state_interval"];
      !every.is_missing() && !every.is_null()) {
    auto v = every.as_duration();
    if (!v.ok()) return v.error();
    s.monitor_state_interval = std::chrono::duration_cast<std::chrono::milliseconds>(*v);
  }
  const sdk::config_node approvals = cfg.root["approvals"];
  if (!approvals.is_missing() && !approvals.is_null()) {
    if (auto k = approvals.check_keys({"ttl"}); !k.ok()) return k;
    auto ttl = approvals.get_duration("ttl", s.approvals.ttl);
    if (!ttl.ok()) return ttl.error();
    s.approvals.ttl = *ttl;
  }
  return s;
}

// The secrets of a configuration (docs/security.md#secrets): the alert sinks' URLs, headers and
// routing keys, and the control socket's CURVE secret key.
core::redactor secrets_of(const core::config& cfg, const sidecar_sections& sections) {
  core::redactor r;
  r.add_alert_secrets(sections.alerts);
  if (!cfg.transport.control_secret_key_file.empty()) {
    // An unreadable key is reported by the control socket's start-up step, not here.
    if (auto key = read_key_file(cfg.transport.control_secret_key_file); key.ok()) r.add(*key);
  }
  return r;
}

}  // namespace

core::status validate_sidecar_sections(const core::config& cfg) {
  auto s = read_sections(cfg, serve_options{});
  return s.ok() ? core::status::success() : s.error();
}

struct server::impl {
  server* self = nullptr;  // the owner, for status() and reload() from the control thread
  serve_options options;
  core::config cfg;
  std::int64_t started_unix_nano = wall_now();

  int lock_fd = -1;
  sidecar_sections sections;
  std::unique_ptr<core::sqlite_state_store> store;
  std::unique_ptr<core::breaker_registry> registry;
  std::atomic<bool> restored{false};
  std::unique_ptr<core::alert_router> router;
  // The router as the threads that only wake it see it (the registry's listener, on whichever
  // thread a breaker moves, and the chores thread's approval expiry). Those can run before the
  // router's start-up step has assigned `router` (the engine thread starts first, and its first
  // expiry chore is due after one tick), so they must not read `router` itself: this is published
  // once, with release, after the router has started; until then they have no router to wake, and
  // what they committed is in the outbox, which the router reads when it starts and at each poll.
  std::atomic<core::alert_router*> router_to_wake{nullptr};
  std::unique_ptr<detail::http_endpoint> http;
  // When the engine thread last took events from the queue (steady clock, ns), for /readyz.
  std::atomic<std::int64_t> last_dequeue_ns{0};

  // The engine is owned by the engine thread; the pointer changes only on that thread, under an
  // exclusive lock, so status() can read monitors and sources under a shared lock.
  mutable std::shared_mutex engine_mu;
  std::unique_ptr<core::engine> engine;  // guarded by engine_mu (writes), engine thread (reads)

  std::unique_ptr<detail::breaker_publisher> publisher;
  std::unique_ptr<detail::ingest_loop> ingest;  // set on the starting thread, before control
  // The ingest loop as the engine thread sees it. The engine thread starts before the ingest
  // sockets are opened, so it must not read `ingest` itself (a data race with the assignment, seen
  // by ThreadSanitizer); this is published once, with release, after `ingest` is constructed, and
  // the loop outlives the engine thread (teardown joins the thread before `ingest` is destroyed).
  std::atomic<const detail::ingest_loop*> ingest_for_engine{nullptr};
  std::unique_ptr<detail::control_handler> control_commands;  // used by the control thread
  std::unique_ptr<detail::control_service> control;
  std::jthread engine_thread;
  std::atomic<bool> draining{false};
  // The end of the shutdown's drain (steady clock, ns); 0 until teardown starts.
  std::atomic<std::int64_t> shutdown_deadline_ns{0};
  std::atomic<std::uint64_t> gate_requests{0};
  std::atomic<std::uint64_t> discarded_at_shutdown{0};
  std::atomic<std::uint64_t> queue_received{0};
  // Times free memory was returned to the system after a backlog (memory_return.hpp).
  std::atomic<std::uint64_t> memory_returns{0};

  std::mutex reload_mu;  // serialises reloads
  mutable std::mutex status_mu;
  std::uint64_t reloads = 0;      // guarded by status_mu
  std::string last_reload_error;  // guarded by status_mu

  std::once_flag stopped;

  // What must never be shown (redactor.hpp): the secrets of the running config and of every
  // config reloaded since, so that nothing a reload logged can leak either.
  mutable std::mutex secrets_mu;
  std::shared_ptr<const core::redactor> secrets_ptr =
      std::make_shared<core::redactor>();  // guarded by secrets_mu
  std::shared_ptr<const core::redactor> secrets() const {
    std::lock_guard lock(secrets_mu);
    return secrets_ptr;
  }
  // Adds the secrets of `c` to the known ones, for every output channel and the log.
  void learn_secrets(const core::config& c, const sidecar_sections& sec) {
    auto next = std::make_shared<core::redactor>();
    {
      std::lock_guard lock(secrets_mu);
      next->merge(*secrets_ptr);
      next->merge(secrets_of(c, sec));
      secrets_ptr = next;
    }
    core::set_log_redactor(next);
  }

  core::status start_engine_thread();
  void run_engine(std::stop_token stop, std::shared_ptr<std::promise<core::status>> started);
  void teardown();
  // Restores what the last run saved of each monitor's state (engine thread not yet started).
  void restore_monitor_states();
  // Saves every monitor's state: the snapshots are taken on the engine thread (the monitors'
  // only caller); the store write, which ends in an fsync, goes to `chores` when given (the
  // periodic saves) and is done here otherwise (the final save at shutdown).
  void save_monitor_states(detail::background_jobs* chores = nullptr);
  // Marks overdue approvals expired (their resolves commit with them) and wakes the router; on
  // the chores thread (a store write).
  void expire_approvals();
  void audit(std::string_view kind, std::string_view actor, std::string_view payload_json);
  // An approval was created, decided, used or expired: the store committed its alerts (the page,
  // or the resolve) in the same transaction (set_approval_alert_planner), so all that is left is
  // to wake the router, which would otherwise find them at its next poll. Any thread.
  void approval_alerts_committed();
  detail::readiness readiness() const;
  std::vector<v1::BreakerTransition> recent_transitions(std::size_t limit) const;
};

server::server(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

server::~server() { stop(); }

const core::config& server::config() const { return impl_->cfg; }

core::result<std::unique_ptr<server>> server::start(const serve_options& options) {
  auto p = std::make_unique<impl>();
  p->options = options;
  impl& m = *p;
  std::unique_ptr<server> srv(new server(std::move(p)));
  m.self = srv.get();

  // The start-up steps, in order. Each returns ok or the reason it could not proceed; teardown
  // (in stop()) undoes whatever was started, whichever step failed.
  const std::vector<std::pair<const char*, std::function<core::status()>>> steps = {
      {"load the configuration",
       [&] {
         auto cfg = load_config(options);
         if (!cfg.ok()) return cfg.error();
         m.cfg = std::move(cfg).value();
         core::set_log_level(m.cfg.log_level);
         auto sections = read_sections(m.cfg, options);
         if (!sections.ok()) return sections.error();
         m.sections = std::move(*sections);
         // Before anything else logs: every later line passes through the redactor.
         m.learn_secrets(m.cfg, m.sections);
         return core::status::success();
       }},
      {"lock the state directory",
       [&] {
         std::error_code ec;
         fs::create_directories(m.cfg.state_dir, ec);
         if (ec) {
           return core::make_error(core::status_code::io_error,
                                   "can't create " + m.cfg.state_dir + ": " + ec.message());
         }
         const std::string lock = m.cfg.state_dir + "/loopwarden.lock";
         m.lock_fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
         if (m.lock_fd < 0) {
           return core::make_error(core::status_code::io_error,
                                   "can't open " + lock + ": " + std::strerror(errno));
         }
         if (::flock(m.lock_fd, LOCK_EX | LOCK_NB) != 0) {
           char pid[32] = {};
           (void)::pread(m.lock_fd, pid, sizeof pid - 1, 0);
           return core::make_error(core::status_code::refused,
                                   "another loopwarden (pid " + std::string(pid) +
                                       ") is running with state directory " + m.cfg.state_dir);
         }
         const std::string me = std::to_string(::getpid());
         if (::ftruncate(m.lock_fd, 0) != 0 || ::pwrite(m.lock_fd, me.data(), me.size(), 0) < 0) {
           return core::make_error(core::status_code::io_error, "can't write " + lock);
         }
         return core::status::success();
       }},
      {"open the state store",
       [&] {
         core::sqlite_state_store::open_options so;
         so.sync = m.sections.state_sync;
         auto store = core::sqlite_state_store::open(core::state_database_path(m.cfg), so);
         if (!store.ok()) return store.error();
         m.store = std::move(*store);
         // Planned alerts are written in the same transaction as the transition (the outbox),
         // and an approval's in the same transaction as the approval: a kill between two
         // commits would lose the page (or its resolve), with nothing left to resend it.
         m.store->set_alert_planner(
             core::make_alert_planner(m.sections.alerts, stable_sidecar_id(m.cfg)));
         m.store->set_approval_alert_planner(
             core::make_approval_alert_planner(m.sections.alerts, stable_sidecar_id(m.cfg)));
         return core::status::success();
       }},
      {"restore the breakers",
       [&] {
         m.registry = std::make_unique<core::breaker_registry>(*m.store, m.cfg.probation);
         if (auto s = m.registry->restore(); !s.ok()) return s;
         std::size_t open = 0;
         const v1::BreakerSnapshot snap = m.registry->snapshot();
         for (const auto& b : snap.breakers()) {
           if (b.state() == v1::BREAKER_STATE_OPEN || b.state() == v1::BREAKER_STATE_FORCED_OPEN)
             ++open;
         }
         m.restored = true;
         nlohmann::json start = {{"version", LOOPWARDEN_VERSION},
                                 {"pid", ::getpid()},
                                 {"config", m.cfg.source},
                                 {"open_breakers", open}};
         m.audit("daemon_start", "loopwarden", start.dump());
         core::log_message(sdk::log_level::info,
                           fmt::format("state store {}: restored {} breaker(s), {} open",
                                       m.store->path().string(), snap.breakers_size(), open));
         return core::status::success();
       }},
      {"load the monitors",
       [&] {
         core::engine_options eo;
         eo.extra_plugin_paths = options.plugin_paths;
         eo.registry = m.registry.get();
         eo.event_time_clock = false;
         // Live: each monitor on its own worker, with a watchdog (engine.hpp).
         eo.threaded = true;
         eo.monitor_host_command = monitor_host_command();
         eo.overflow = m.cfg.transport.overflow;
         eo.stop_timeout =
             std::chrono::duration_cast<std::chrono::milliseconds>(m.cfg.transport.drain_timeout);
         auto e = core::engine::create(m.cfg, eo);
         if (!e.ok()) return e.error();
         for (const auto& w : (*e)->warnings()) core::log_message(sdk::log_level::warn, w);
         m.engine = std::move(*e);
         m.restore_monitor_states();
         return core::status::success();
       }},
      {"start the engine and the gate socket", [&] { return m.start_engine_thread(); }},
      {"start the breaker publisher",
       [&] {
         auto* mp = &m;
         // The hosts are the watched pipeline: what they hear carries no secret either.
         m.publisher = std::make_unique<detail::breaker_publisher>(
             m.cfg.transport.breakers, m.cfg.transport.heartbeat_interval, *m.registry,
             sidecar_id(), m.cfg.transport.ipc_mode,
             [mp](v1::BreakerMessage& msg) { mp->secrets()->apply(msg); });
         auto* pub = m.publisher.get();
         m.registry->add_listener([pub, mp](const v1::BreakerTransition& t) {
           pub->publish(t);
           // The transition and its alerts are already committed: wake the router.
           if (auto* r = mp->router_to_wake.load(std::memory_order_acquire)) r->notify();
           const bool opened = t.breaker().state() == v1::BREAKER_STATE_OPEN ||
                               t.breaker().state() == v1::BREAKER_STATE_FORCED_OPEN;
           core::log_message(opened ? sdk::log_level::warn : sdk::log_level::info,
                             "breaker " + format_transition_text(t));
         });
         return m.publisher->start();
       }},
      {"start the alert router",
       [&] {
         core::alert_router_options ro;
         ro.sidecar_id = stable_sidecar_id(m.cfg);
         auto* reg = m.registry.get();
         ro.open_breakers = [reg] {
           std::vector<v1::BreakerStatus> open;
           const v1::BreakerSnapshot snap = reg->snapshot();
           for (const auto& b : snap.breakers()) {
             if (b.state() == v1::BREAKER_STATE_OPEN || b.state() == v1::BREAKER_STATE_FORCED_OPEN)
               open.push_back(b);
           }
           return open;
         };
         m.router = std::make_unique<core::alert_router>(m.sections.alerts, *m.store, ro);
         m.router->start();  // delivers whatever a previous run left pending, too
         m.router_to_wake.store(m.router.get(), std::memory_order_release);
         return core::status::success();
       }},
      {"open the ingest sockets",
       [&] {
         m.ingest = std::make_unique<detail::ingest_loop>(m.cfg.transport, options.record_file,
                                                          &m.queue_received);
         m.ingest_for_engine.store(m.ingest.get(), std::memory_order_release);
         return m.ingest->start();
       }},
      {"open the control socket",
       [&] {
         detail::control_hooks hooks;
         server* owner = m.self;
         hooks.status = [owner] { return owner->status(); };
         hooks.reload = [owner] { return owner->reload(); };
         hooks.now_unix_nano = wall_now;
         impl* daemon = &m;
         hooks.approval_settled = [daemon](const std::string&) {
           daemon->approval_alerts_committed();
         };
         m.control_commands = std::make_unique<detail::control_handler>(
             *m.registry, *m.store, *m.router, m.cfg.source, std::move(hooks));
         auto* commands = m.control_commands.get();
         m.control = std::make_unique<detail::control_service>(
             m.cfg.transport,
             [commands, daemon](const v1::ControlRequest& r, const std::string& who) {
               // Every answer, whatever it carries (an alert test's error, a refused reload's
               // message, a monitor's last error), leaves without the config's secrets.
               v1::ControlResponse response = commands->handle(r, who);
               daemon->secrets()->apply(response);
               return response;
             });
         return m.control->start();
       }},
      {"open the HTTP endpoint",
       [&] {
         if (m.sections.http.listen.empty()) return core::status::success();
         if (!detail::is_loopback_listen(m.sections.http.listen)) {
           core::log_message(sdk::log_level::warn,
                             "http.listen " + m.sections.http.listen +
                                 " is reachable from other machines: it shows breaker reasons "
                                 "and evidence (read-only)");
         }
         detail::http_sources src;
         const impl* mp = &m;
         src.status = [mp] { return mp->self->status(); };
         src.breakers = [mp] {
           v1::BreakerSnapshot snap = mp->registry->snapshot();
           mp->secrets()->apply(snap);
           return snap;
         };
         src.recent_transitions = [mp](std::size_t limit) {
           auto transitions = mp->recent_transitions(limit);
           const auto secrets = mp->secrets();
           for (auto& t : transitions) secrets->apply(t);
           return transitions;
         };
         src.ready = [mp] { return mp->readiness(); };
         src.alerts = [mp] {
           std::vector<detail::alert_sink_stats> out;
           if (!mp->router) return out;
           for (const auto& s : mp->router->stats()) {
             detail::alert_sink_stats a;
             a.name = s.name;
             a.type = std::string(core::to_string(s.type));
             a.queue_depth = s.queue_depth;
             a.sent = s.sent;
             a.failed = s.failed;
             a.retried = s.retried;
             a.fell_back = s.fell_back;
             a.deferred = s.deferred;
             out.push_back(std::move(a));
           }
           return out;
         };
         auto h = detail::http_endpoint::start(m.sections.http, std::move(src));
         if (!h.ok()) return h.error();
         m.http = std::move(*h);
         core::log_message(
             sdk::log_level::info,
             fmt::format("http endpoint on port {}: /metrics /healthz /readyz /", m.http->port()));
         return core::status::success();
       }},
  };
  for (const auto& [name, step] : steps) {
    core::status s = step();
    if (!s.ok()) {
      srv->stop();
      return s.with_context(std::string("can't start: ") + name);
    }
  }
  core::log_message(
      sdk::log_level::info,
      fmt::format("loopwarden serving: {} monitor(s), ingest {}, breakers {}, gate {}, "
                  "control {}",
                  m.engine->monitors().size(), m.cfg.transport.ingest.front().endpoint,
                  m.cfg.transport.breakers, m.cfg.transport.gate, m.cfg.transport.control));
  return srv;
}

void server::stop() {
  std::call_once(impl_->stopped, [this] { impl_->teardown(); });
}

void server::impl::teardown() {
  // One budget for the whole drain, from here: the ingest sockets, the event queue, the
  // monitors' queues and the alerts in flight all finish by drain_timeout (together, not one
  // after the other); what is left is discarded (events, counted) or kept (alerts, in the
  // outbox). Only the final saves come after it.
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(cfg.transport.drain_timeout);
  shutdown_deadline_ns = deadline.time_since_epoch().count();
  // Reverse order of start-up. The operator socket goes first so nobody acts on a daemon that
  // is leaving; ingest next (no new events), then the engine drains what is queued.
  if (http) http->stop();
  if (control) control->stop();
  if (ingest) ingest->stop(deadline);
  if (engine_thread.joinable()) {
    draining = true;
    engine_thread.request_stop();
    engine_thread.join();
  }
  if (publisher) publisher->stop();    // sends a final snapshot
  if (router) router->stop(deadline);  // undelivered alerts stay in the outbox for the next run
  if (store && restored) {
    audit("daemon_stop", "loopwarden", nlohmann::json{{"pid", ::getpid()}}.dump());
  }
  if (lock_fd >= 0) {
    ::close(lock_fd);  // releases the lock
    lock_fd = -1;
  }
  core::flush_log();
}

core::status server::impl::start_engine_thread() {
  auto started = std::make_shared<std::promise<core::status>>();
  auto result = started->get_future();
  engine_thread = std::jthread([this, started](std::stop_token st) { run_engine(st, started); });
  core::status s = result.get();
  if (!s.ok()) engine_thread.join();
  return s;
}

void server::impl::run_engine(std::stop_token stop,
                              std::shared_ptr<std::promise<core::status>> started) {
  zmq::context_t& ctx = detail::zmq_context();
  zmq::socket_t events(ctx, zmq::socket_type::pull);
  zmq::socket_t gate(ctx, zmq::socket_type::router);
  zmq::socket_t commands(ctx, zmq::socket_type::pull);
  for (auto* s : {&events, &gate, &commands}) s->set(zmq::sockopt::linger, 0);
  events.set(zmq::sockopt::rcvhwm, detail::queue_hwm_batches(cfg.transport.queue_capacity));
  core::status st = detail::bind_socket(events, detail::event_queue_endpoint, "event queue");
  if (st.ok()) st = detail::bind_socket(commands, command_endpoint, "engine command");
  if (st.ok()) st = detail::prepare_ipc(cfg.transport.gate, 0755);
  if (st.ok()) st = detail::bind_socket(gate, cfg.transport.gate, "gate");
  if (st.ok()) st = detail::set_ipc_mode(cfg.transport.gate, cfg.transport.ipc_mode);
  started->set_value(st);
  if (!st.ok()) return;

  std::vector<zmq::message_t> frames;
  auto serve_gate = [&] {
    // Gate requests are answered ahead of queued events: a host is waiting on each.
    for (int n = 0; n < 256; ++n) {
      frames.clear();
      auto got = zmq::recv_multipart(gate, std::back_inserter(frames), zmq::recv_flags::dontwait);
      if (!got) return;
      if (frames.size() < 2) continue;
      gate_requests.fetch_add(1, std::memory_order_relaxed);
      v1::GateRequest request;
      v1::GateDecision decision;
      if (!request.ParseFromArray(frames.back().data(), static_cast<int>(frames.back().size()))) {
        decision.set_verdict(v1::GATE_VERDICT_DENY);
        decision.set_reason("the request is not a loopwarden.v1.GateRequest");
        decision.set_rule_id("loopwarden.malformed_request");
      } else {
        auto out = engine->gate(request);
        decision.set_request_id(request.request_id());
        decision.set_verdict(sdk::to_proto(out.decision.verdict));
        decision.set_reason(out.decision.reason);
        decision.set_rule_id(out.decision.rule_id);
        decision.set_monitor(out.monitor);
        decision.set_alternative(out.decision.alternative);
        // "Ask a human" becomes a stored approval the host can wait on (approval_gate.hpp).
        decision = detail::settle_approval(*store, request, std::move(decision), wall_now(),
                                           sections.approvals);
        // A new approval (its page), or one the re-ask found expired (the resolve): already
        // committed with the approval; wake the router.
        if (!decision.approval_id().empty()) approval_alerts_committed();
      }
      const std::string payload = decision.SerializeAsString();
      std::vector<zmq::const_buffer> reply;
      for (std::size_t i = 0; i + 1 < frames.size(); ++i) {
        reply.push_back(zmq::buffer(frames[i].data(), frames[i].size()));
      }
      reply.push_back(zmq::buffer(payload));
      (void)zmq::send_multipart(gate, reply, zmq::send_flags::dontwait);
    }
  };
  auto serve_commands = [&] {
    zmq::message_t msg;
    while (commands.recv(msg, zmq::recv_flags::dontwait)) {
      engine_command* cmd = nullptr;
      std::memcpy(&cmd, msg.data(), sizeof cmd);
      cmd->handoff.accept();
      auto kept = cmd->next->adopt_unchanged(*engine);
      {
        std::unique_lock lock(engine_mu);
        std::swap(engine, cmd->next);  // the old engine is destroyed by the reloader
      }
      cmd->done.set_value(std::move(kept));
    }
  };

  // The slow chores (store writes, returning memory) run on their own thread, never here.
  detail::background_jobs chores;
  detail::memory_return_policy memory_policy(memory_return_policy_limits());
  bool end_of_stream = false;
  std::chrono::steady_clock::time_point drain_deadline{};
  auto next_tick = std::chrono::steady_clock::now() + tick_period;
  auto next_expiry = std::chrono::steady_clock::now();
  const auto state_interval = sections.monitor_state_interval;
  auto next_state_save = std::chrono::steady_clock::now() + state_interval;
  std::array<zmq::pollitem_t, 3> items = {{{gate.handle(), 0, ZMQ_POLLIN, 0},
                                           {commands.handle(), 0, ZMQ_POLLIN, 0},
                                           {events.handle(), 0, ZMQ_POLLIN, 0}}};
  // Once stop is requested: whether the drain deadline has passed (setting it the first time).
  auto past_drain_deadline = [&] {
    if (!stop.stop_requested()) return false;
    if (drain_deadline == std::chrono::steady_clock::time_point{}) {
      const std::int64_t ns = shutdown_deadline_ns.load();
      drain_deadline =
          ns != 0 ? std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(ns))
                  : std::chrono::steady_clock::now() + cfg.transport.drain_timeout;
    }
    return std::chrono::steady_clock::now() > drain_deadline;
  };
  // A step of this thread that runs long backs up the event queue (and with overflow: block,
  // the publishers) and delays every gate answer: each one that takes longer than slow_step is
  // logged with what it was, the evidence for a stall (rate-limited: a slow disk must not also
  // flood the log).
  std::uint64_t slow_steps = 0;
  auto note_step = [&](const char* what, std::chrono::steady_clock::duration took) {
    if (took < slow_step) return;
    ++slow_steps;
    if (slow_steps <= 20 || slow_steps % 100 == 0) {
      core::log_message(
          sdk::log_level::warn,
          fmt::format("engine thread: {} took {} ms (events wait meanwhile; {} slow steps so far)",
                      what, std::chrono::duration_cast<std::chrono::milliseconds>(took).count(),
                      slow_steps));
    }
  };
  auto timed = [&](const char* what, auto&& step) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    note_step(what, std::chrono::steady_clock::now() - t0);
  };
  while (true) {
    const bool past_deadline = past_drain_deadline();
    if (end_of_stream || past_deadline) break;
    const auto wait = std::max(std::chrono::milliseconds(0),
                               std::chrono::duration_cast<std::chrono::milliseconds>(
                                   next_tick - std::chrono::steady_clock::now()));
    try {
      zmq::poll(items.data(), items.size(),
                stop.stop_requested() ? std::chrono::milliseconds(10) : wait);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) break;
    }
    timed("answering gate requests", serve_gate);
    timed("a reload", serve_commands);
    // A bounded number of events, then the gate gets another look.
    const auto events_began = std::chrono::steady_clock::now();
    for (int n = 0; n < 2 && !end_of_stream; ++n) {
      zmq::message_t msg;
      if (!events.recv(msg, zmq::recv_flags::dontwait)) break;
      detail::event_batch* raw = nullptr;
      std::memcpy(&raw, msg.data(), sizeof raw);
      if (raw == nullptr) {
        end_of_stream = true;
        break;
      }
      raw->handoff.accept();
      // The monitors' workers share the batch; the last one done with it recycles it.
      std::shared_ptr<detail::event_batch> batch(raw, [](detail::event_batch* b) {
        detail::recycle_batch(std::unique_ptr<detail::event_batch>(b));
      });
      last_dequeue_ns.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                            std::memory_order_relaxed);
      for (std::size_t i = 0; i < batch->events.size(); ++i) {
        // Checked per event, not per batch: under overflow: block each event can wait a whole
        // monitor call for room in a full queue, so a batch alone could outlast the deadline
        // by seconds. What is left of the batch is counted as not evaluated.
        if (past_drain_deadline()) {
          discarded_at_shutdown.fetch_add(batch->events.size() - i, std::memory_order_relaxed);
          break;
        }
        queue_received.fetch_add(1, std::memory_order_relaxed);
        engine->process(std::shared_ptr<const v1::Envelope>(batch, batch->events[i]), wall_now());
        if ((i & 15) == 15) serve_gate();
      }
    }
    // (A monitor queue full under overflow: block holds this step back too.)
    note_step("dispatching events", std::chrono::steady_clock::now() - events_began);
    const auto now = std::chrono::steady_clock::now();
    // After a backlog has drained, the memory it held goes back to the system (memory_return.hpp).
    if (const auto* in = ingest_for_engine.load(std::memory_order_acquire)) {
      const std::uint64_t sent = in->enqueued();
      const std::uint64_t taken = queue_received.load(std::memory_order_relaxed);
      const std::uint64_t freed = detail::freed_batch_bytes();
      if (memory_policy.observe(sent > taken ? sent - taken : 0, freed, now)) {
        const std::uint64_t peak = memory_policy.peak_depth();
        const std::uint64_t freed_since = memory_policy.freed_since();
        memory_policy.returned(now, freed);
        chores.post("memory", [peak, freed_since, this] {
          const detail::memory_returned r = detail::return_free_memory();
          memory_returns.fetch_add(1, std::memory_order_relaxed);
          // Info for a real backlog or a return worth a line; the routine churn of batches past
          // the free list (a short hiccup, about 1 MiB at a time) only at debug.
          const bool notable = peak >= memory_return_policy_limits().backlog_events ||
                               r.rss_before_kib - r.rss_after_kib >= 4096;
          core::log_message(
              notable ? sdk::log_level::info : sdk::log_level::debug,
              fmt::format("returned free memory to the system after a backlog (event queue "
                          "peaked at {} events, {:.1f} MiB of batches freed): RSS {:.1f} -> "
                          "{:.1f} MiB in {:.1f} ms",
                          peak, static_cast<double>(freed_since) / (1 << 20),
                          static_cast<double>(r.rss_before_kib) / 1024.0,
                          static_cast<double>(r.rss_after_kib) / 1024.0,
                          static_cast<double>(r.took.count()) / 1000.0));
        });
      }
    }
    if (now >= next_tick) {
      timed("a tick", [&] { engine->tick(wall_now()); });
      next_tick = now + tick_period;
      if (now >= next_expiry) {
        // Approvals nobody decided in time: expired (and audited), so hosts are told no. A store
        // write: on the chores thread, so that it never waits for the store here.
        chores.post("expire approvals", [this] { expire_approvals(); });
        next_expiry = now + std::chrono::seconds(5);
      }
      if (state_interval.count() > 0 && now >= next_state_save) {
        save_monitor_states(&chores);  // logs its own split when slow
        next_state_save = now + state_interval;
      }
    }
  }
  engine->tick(wall_now());
  // The monitors finish what their workers hold, within what is left of the drain deadline (the
  // shutdown's, also when the end of the stream arrived before the stop request).
  {
    if (const std::int64_t ns = shutdown_deadline_ns.load();
        drain_deadline == std::chrono::steady_clock::time_point{} && ns != 0) {
      drain_deadline =
          std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(ns));
    }
    auto left = std::chrono::milliseconds(1000);
    if (drain_deadline != std::chrono::steady_clock::time_point{}) {
      left = std::max(std::chrono::milliseconds(0),
                      std::chrono::duration_cast<std::chrono::milliseconds>(
                          drain_deadline - std::chrono::steady_clock::now()));
    }
    if (!engine->wait_idle(left)) {
      // What they still hold is dropped (and counted), so that they are idle for the final
      // snapshot below and the shutdown ends on time.
      const auto dropped = engine->discard_queued_events();
      core::log_message(sdk::log_level::warn,
                        fmt::format("shutdown: {} queued monitor deliveries were not evaluated "
                                    "before the drain timeout (counted as dropped)",
                                    dropped));
    }
  }
  // Whatever is still queued after the deadline is discarded (and counted), never leaked.
  zmq::message_t msg;
  while (events.recv(msg, zmq::recv_flags::dontwait)) {
    detail::event_batch* raw = nullptr;
    std::memcpy(&raw, msg.data(), sizeof raw);
    if (raw != nullptr) {
      raw->handoff.accept();
      discarded_at_shutdown.fetch_add(raw->events.size(), std::memory_order_relaxed);
      delete raw;
    }
  }
  if (auto d = discarded_at_shutdown.load(); d > 0) {
    core::log_message(sdk::log_level::warn,
                      fmt::format("shutdown: {} queued events were not evaluated before the "
                                  "drain timeout",
                                  d));
  }
  chores.stop();          // what is pending (an older save among it) goes first
  save_monitor_states();  // after the drain: the state includes every event evaluated
}

void server::impl::expire_approvals() {
  auto expired = store->expire_approvals(wall_now());
  if (!expired.ok()) return;
  for (const auto& a : *expired) {
    core::log_message(sdk::log_level::warn,
                      "approval " + a.id + " expired undecided: " + a.summary);
  }
  // Their resolves were committed with the expiry.
  if (!expired->empty()) approval_alerts_committed();
}

void server::impl::restore_monitor_states() {
  auto saved = store->load_monitor_states();
  if (!saved.ok()) {
    core::log_message(sdk::log_level::error,
                      saved.error().message() + " (every monitor starts without learned state)");
    return;
  }
  std::size_t restored_count = 0;
  for (const auto& state : *saved) {
    if (auto s = engine->restore_monitor(state); !s.ok()) {
      // Not fatal: the monitor starts fresh, as on a first run, and says so.
      core::log_message(sdk::log_level::warn, s.message() + " (it starts fresh)");
      continue;
    }
    ++restored_count;
  }
  if (!saved->empty()) {
    core::log_message(sdk::log_level::info,
                      fmt::format("restored the learned state of {} of {} saved monitor(s)",
                                  restored_count, saved->size()));
  }
}

void server::impl::save_monitor_states(detail::background_jobs* chores) {
  if (!engine || !store) return;
  using ms = std::chrono::milliseconds;
  const auto t0 = std::chrono::steady_clock::now();
  auto states = std::make_shared<std::vector<core::monitor_state>>(engine->snapshot_monitors());
  const auto took = std::chrono::steady_clock::now() - t0;
  if (took >= slow_step) {
    std::size_t bytes = 0;
    for (const auto& st : *states) bytes += st.state.size();
    core::log_message(
        sdk::log_level::warn,
        fmt::format("engine thread: the monitors' snapshots took {} ms ({} "
                    "monitors, {} bytes)",
                    std::chrono::duration_cast<ms>(took).count(), states->size(), bytes));
  }
  auto write = [this, states] {
    const auto w0 = std::chrono::steady_clock::now();
    if (auto s = store->save_monitor_states(*states); !s.ok()) {
      core::log_message(sdk::log_level::error, s.message());
    }
    const auto wrote = std::chrono::steady_clock::now() - w0;
    if (wrote >= slow_step) {
      core::log_message(sdk::log_level::warn,
                        fmt::format("saving the monitors' state took {} ms in the store (off "
                                    "the engine thread)",
                                    std::chrono::duration_cast<ms>(wrote).count()));
    }
  };
  if (chores != nullptr) {
    chores->post("save monitor states", std::move(write));
  } else {
    write();
  }
}

core::status server::reload() {
  impl& m = *impl_;
  std::lock_guard guard(m.reload_mu);
  auto fail = [&](const core::status& s) {
    m.audit("config_reload", "loopwarden",
            nlohmann::json{{"ok", false}, {"error", s.message()}}.dump());
    std::lock_guard lock(m.status_mu);
    m.last_reload_error = s.message();
    core::log_message(sdk::log_level::error,
                      "reload refused, keeping the running config: " + s.message());
    return s;
  };
  auto cfg = load_config(m.options);
  if (!cfg.ok()) return fail(cfg.error());
  // The sidecar's own sections must be valid too; they apply after a restart (sockets, sinks).
  auto sections = read_sections(*cfg, m.options);
  if (!sections.ok()) return fail(sections.error());
  m.learn_secrets(*cfg, *sections);  // before anything about the new config is logged
  core::engine_options eo;
  eo.extra_plugin_paths = m.options.plugin_paths;
  eo.registry = m.registry.get();
  eo.event_time_clock = false;
  eo.threaded = true;
  eo.monitor_host_command = monitor_host_command();
  eo.overflow = cfg->transport.overflow;
  eo.stop_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(cfg->transport.drain_timeout);
  auto next = core::engine::create(*cfg, eo);
  if (!next.ok()) return fail(next.error());

  auto* cmd = new engine_command{std::move(*next), {}, {}};
  auto done = cmd->done.get_future();
  {
    zmq::socket_t push(detail::zmq_context(), zmq::socket_type::push);
    push.set(zmq::sockopt::linger, 0);
    push.connect(command_endpoint);
    zmq::message_t msg(&cmd, sizeof cmd);
    cmd->handoff.publish();
    if (!push.send(msg, zmq::send_flags::none)) {
      delete cmd;
      return fail(core::make_error(core::status_code::internal, "the engine thread is gone"));
    }
  }
  if (done.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    // The command stays with the engine thread; it will complete and free it later.
    return fail(core::make_error(core::status_code::timeout,
                                 "the engine thread did not take the new config"));
  }
  auto kept = done.get();
  delete cmd;  // now holds the old engine: destroyed here, off the engine thread
  if (cfg->transport.ingest.size() != m.cfg.transport.ingest.size() ||
      cfg->transport.breakers != m.cfg.transport.breakers ||
      cfg->transport.gate != m.cfg.transport.gate ||
      cfg->transport.control != m.cfg.transport.control) {
    core::log_message(sdk::log_level::warn,
                      "reload: socket settings changed; they apply after a restart");
  }
  std::string kept_text;
  for (const auto& k : kept) kept_text += (kept_text.empty() ? "" : ", ") + k;
  core::log_message(sdk::log_level::info,
                    fmt::format("reloaded {}; kept the state of: {}", cfg->source,
                                kept_text.empty() ? "none" : kept_text));
  core::set_log_level(cfg->log_level);
  m.audit("config_reload", "loopwarden",
          nlohmann::json{{"ok", true}, {"config", cfg->source}, {"kept", kept}}.dump());
  {
    std::lock_guard lock(m.status_mu);
    ++m.reloads;
    m.last_reload_error.clear();
  }
  return core::status::success();
}

v1::SidecarStatus server::status() const {
  const impl& m = *impl_;
  v1::SidecarStatus s;
  s.set_version(LOOPWARDEN_VERSION);
  s.set_started_unix_nano(m.started_unix_nano);
  s.set_config_source(m.cfg.source);
  s.set_gate_requests(m.gate_requests.load());
  if (m.ingest) {
    s.set_malformed(m.ingest->malformed());
    s.set_dropped(m.ingest->dropped());
    const auto enq = m.ingest->enqueued();
    const auto got = m.queue_received.load();
    s.set_queue_depth(enq > got ? enq - got : 0);
    for (const auto& c : m.ingest->counters()) {
      auto* in = s.add_ingest();
      in->set_endpoint(c.endpoint);
      in->set_socket(c.socket);
      in->set_received(c.received);
      in->set_malformed(c.malformed);
    }
  }
  {
    std::shared_lock lock(m.engine_mu);
    if (m.engine) {
      const auto c = m.engine->counters();
      s.set_events(c.events);
      s.set_duplicates(c.duplicates);
      const auto malformed =
          m.ingest ? m.ingest->malformed_by_source() : std::map<std::string, std::uint64_t>{};
      const auto dropped =
          m.ingest ? m.ingest->dropped_by_source() : std::map<std::string, std::uint64_t>{};
      auto count_of = [](const std::map<std::string, std::uint64_t>& counts, const std::string& k) {
        auto it = counts.find(k);
        return it == counts.end() ? std::uint64_t{0} : it->second;
      };
      for (const auto& src : m.engine->sources()) {
        auto* o = s.add_sources();
        o->set_malformed(count_of(malformed, src.source));
        o->set_dropped(count_of(dropped, src.source));
        o->set_monitor_dropped(src.monitor_dropped);
        o->set_source(src.source);
        o->set_run_id(src.run_id);
        o->set_received(src.received);
        o->set_lost(src.lost);
        o->set_duplicates(src.duplicates);
        o->set_late(src.late);
        o->set_restarts(src.restarts);
        o->set_heartbeats(src.heartbeats);
        o->set_last_seen_unix_nano(src.last_seen_unix_nano);
        o->set_silent(src.silent);
        o->set_closing(src.closing);
      }
      for (const auto& mon : m.engine->monitors()) {
        auto* o = s.add_monitors();
        o->set_name(mon.name);
        o->set_plugin(mon.plugin);
        o->set_version(mon.version);
        switch (mon.current) {
          case core::monitor_status::state::active:
            o->set_state("active");
            break;
          case core::monitor_status::state::disabled:
            o->set_state("disabled");
            break;
          case core::monitor_status::state::hung:
            o->set_state("hung");
            break;
        }
        o->set_hangs(mon.hangs);
        o->set_dropped(mon.dropped);
        o->set_queue_depth(mon.queue_depth);
        o->set_events(mon.events);
        o->set_gates(mon.gates);
        o->set_ticks(mon.ticks);
        o->set_errors(mon.errors);
        o->set_last_error(mon.last_error);
        o->set_total_call_ns(mon.total_call_ns);
        o->set_max_call_ns(mon.max_call_ns);
        for (auto n : mon.call_buckets) o->add_call_ns_buckets(n);
        for (const auto& [name, value] : mon.gauges) {
          auto* g = o->add_gauges();
          g->set_name(name);
          g->set_value(value);
        }
      }
    }
  }
  {
    std::lock_guard lock(m.status_mu);
    s.set_reloads(m.reloads);
    s.set_last_reload_error(m.last_reload_error);
  }
  if (m.store) {
    s.set_state_store(m.store->path().string());
    if (auto head = m.store->audit_head(); head.ok()) {
      s.set_audit_head_seq(head->seq);
      s.set_audit_head_hash(head->hash);
    }
    if (auto pending = m.store->list_approvals(true); pending.ok()) {
      s.set_approvals_pending(pending->size());
    }
  }
  if (m.registry) s.set_store_errors(m.registry->store_errors());
  if (m.router) {
    for (const auto& a : m.router->stats()) {
      auto* o = s.add_alert_sinks();
      o->set_name(a.name);
      o->set_type(std::string(core::to_string(a.type)));
      o->set_queue_depth(a.queue_depth);
      o->set_sent(a.sent);
      o->set_failed(a.failed);
      o->set_retried(a.retried);
      o->set_fell_back(a.fell_back);
      o->set_deferred(a.deferred);
    }
  }
  // The HTTP pages and /metrics are made from this: nothing in it may show a secret.
  m.secrets()->apply(s);
  return s;
}

void server::impl::approval_alerts_committed() {
  if (auto* r = router_to_wake.load(std::memory_order_acquire)) r->notify();
}

void server::impl::audit(std::string_view kind, std::string_view actor,
                         std::string_view payload_json) {
  if (!store) return;
  // The audit log is printed by `loopwarden audit`: it holds no secret either.
  auto r = store->append_audit(kind, actor, "", secrets()->apply(payload_json), 0);
  if (!r.ok()) {
    core::log_message(sdk::log_level::error, "audit log: " + r.error().message());
    return;
  }
  // The head, logged: kept outside the database it is what proves nothing was cut off its end
  // (loopwarden audit verify --expect-head SEQ:HASH).
  core::log_message(sdk::log_level::info,
                    fmt::format("audit {} recorded; audit head {}:{}", kind, r->seq, r->hash));
}

detail::readiness server::impl::readiness() const {
  detail::readiness r;
  {
    std::shared_lock lock(engine_mu);
    r.plugins_loaded = engine != nullptr;
  }
  r.state_restored = restored.load();
  const bool ingest_up = ingest != nullptr && engine_thread.joinable() && !draining.load();
  // Flowing: the sockets are up and the engine keeps taking events (nothing waits unread for
  // more than 10 s).
  const std::int64_t queued = static_cast<std::int64_t>(ingest ? ingest->enqueued() : 0) -
                              static_cast<std::int64_t>(queue_received.load());
  const auto idle = std::chrono::nanoseconds(
      std::chrono::steady_clock::now().time_since_epoch().count() - last_dequeue_ns.load());
  const bool stuck = queued > 0 && last_dequeue_ns.load() != 0 && idle > std::chrono::seconds(10);
  r.ingest_flowing = ingest_up && !stuck;
  std::vector<std::string> why;
  if (!r.plugins_loaded) why.push_back("monitors are not loaded");
  if (!r.state_restored) why.push_back("breakers are not restored from the state store");
  if (!ingest_up) why.push_back("the ingest sockets are not open (starting or stopping)");
  if (stuck) {
    why.push_back(fmt::format("{} queued events, none taken for {} s", queued,
                              std::chrono::duration_cast<std::chrono::seconds>(idle).count()));
  }
  for (const auto& w : why) r.detail += (r.detail.empty() ? "" : "; ") + w;
  if (r.detail.empty()) r.detail = "ready";
  return r;
}

std::vector<v1::BreakerTransition> server::impl::recent_transitions(std::size_t limit) const {
  std::vector<v1::BreakerTransition> all;
  if (!registry) return all;
  const v1::BreakerSnapshot snap = registry->snapshot();
  for (const auto& b : snap.breakers()) {
    auto h = registry->history({b.name(), b.run_id()}, limit);
    if (!h.ok()) continue;
    for (auto& t : *h) all.push_back(std::move(t));
  }
  // Newest first; ties (one breaker's changes in one nanosecond) by epoch.
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    if (a.breaker().changed_unix_nano() != b.breaker().changed_unix_nano())
      return a.breaker().changed_unix_nano() > b.breaker().changed_unix_nano();
    return a.breaker().epoch() > b.breaker().epoch();
  });
  if (all.size() > limit) all.resize(limit);
  return all;
}

int run_serve(const serve_options& options, std::ostream& out, std::ostream& err) {
  // Block the signals we handle in every thread (threads inherit the mask), then wait for them
  // synchronously here: no signal handler runs anywhere.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto srv = server::start(options);
  if (!srv.ok()) {
    err << "loopwarden serve: " << srv.error().message() << "\n";
    return exit_error;
  }
  const auto& t = (*srv)->config().transport;
  out << "loopwarden serving (pid " << ::getpid() << ")\n";
  for (const auto& in : t.ingest) out << "  ingest    " << in.endpoint << "\n";
  out << "  breakers  " << t.breakers << "\n"
      << "  gate      " << t.gate << "\n"
      << "  control   " << t.control << "\n"
      << "SIGINT/SIGTERM stop, SIGHUP reloads the config\n"
      << std::flush;

  while (true) {
    timespec timeout{0, 200'000'000};
    const int sig = sigtimedwait(&set, nullptr, &timeout);
    if (sig == SIGHUP) {
      (void)(*srv)->reload();  // logged either way; a bad config keeps the old one
    } else if (sig == SIGINT || sig == SIGTERM) {
      core::log_message(sdk::log_level::info, std::string("received ") +
                                                  (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                                                  ": stopping (draining queued events)");
      break;
    }
  }
  (*srv)->stop();
  out << "loopwarden stopped\n" << std::flush;
  return exit_ok;
}

}  // namespace loopwarden::sidecar
