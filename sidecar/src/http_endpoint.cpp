#include "http_endpoint.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <httplib.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>

#include "metrics_text.hpp"
#include "status_page.hpp"

namespace loopwarden::sidecar::detail {
namespace {

using clock = std::chrono::steady_clock;

constexpr std::size_t worker_threads = 4;
constexpr std::size_t max_queued_connections = 64;
constexpr std::size_t max_request_body = 64 * 1024;
constexpr std::size_t max_pending_source_calls = 32;
constexpr std::size_t page_transitions = 50;
constexpr const char* allowed_methods = "GET, HEAD";

struct host_port {
  std::string host;  // without IPv6 brackets, as getaddrinfo wants it
  int port = 0;
};

bool is_hostname(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  std::size_t label = 0;
  for (char c : h) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok || ++label > 63) return false;
  }
  return label > 0;
}

// "host:port" or "[v6]:port". The error is the text after "<path>: ".
core::result<host_port> split_host_port(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return core::make_error(core::status_code::invalid_argument,
                            fmt::format("expected host:port (e.g. \"127.0.0.1:9464\"), got \"{}\""
                                        "{}{}",
                                        text, why.empty() ? "" : ": ", why));
  };
  if (text.find("://") != std::string_view::npos) return bad("no scheme, only host:port");
  host_port hp;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return bad("unclosed '['");
    hp.host = std::string(text.substr(1, close - 1));
    in6_addr a6{};
    if (::inet_pton(AF_INET6, hp.host.c_str(), &a6) != 1) return bad("not an IPv6 address");
    if (close + 1 >= text.size() || text[close + 1] != ':') return bad("the port is missing");
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("the port is missing");
    hp.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
    if (hp.host.find(':') != std::string::npos) {
      return bad("an IPv6 address needs brackets, e.g. \"[::1]:9464\"");
    }
    if (hp.host.empty()) return bad("the host is missing (0.0.0.0 listens on every interface)");
    const bool dotted = std::all_of(hp.host.begin(), hp.host.end(),
                                    [](char c) { return c == '.' || (c >= '0' && c <= '9'); });
    in_addr a4{};
    if (dotted && ::inet_pton(AF_INET, hp.host.c_str(), &a4) != 1) {
      return bad("not an IPv4 address");
    }
    if (!dotted && !is_hostname(hp.host)) return bad("not a host name");
  }
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return bad("the port must be a number from 0 to 65535");
  }
  hp.port = std::stoi(std::string(port));
  if (hp.port > 65535) return bad("the port must be a number from 0 to 65535");
  return hp;
}

// httplib's ThreadPool queues connections without limit. This one blocks the accept loop while
// `max_queued` connections wait, so a flood backs up into the kernel's listen backlog instead of
// into memory. Only the listener thread calls enqueue and shutdown.
class bounded_task_queue final : public httplib::TaskQueue {
 public:
  bounded_task_queue(std::size_t threads, std::size_t max_queued) : max_queued_(max_queued) {
    for (std::size_t i = 0; i < threads; ++i) {
      workers_.emplace_back([this](std::stop_token st) { work(st); });
    }
  }
  ~bounded_task_queue() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    std::unique_lock lock(mu_);
    not_full_.wait(lock, [&] { return jobs_.size() < max_queued_; });
    jobs_.push_back(std::move(fn));
    not_empty_.notify_one();
  }

  // Runs what is queued (each job owns an accepted socket, which it closes), then joins.
  void shutdown() override {
    {
      std::lock_guard lock(mu_);
      if (closing_) return;
      closing_ = true;
    }
    not_empty_.notify_all();
    workers_.clear();  // joins
  }

 private:
  void work(std::stop_token) {
    while (true) {
      std::function<void()> job;
      {
        std::unique_lock lock(mu_);
        not_empty_.wait(lock, [&] { return closing_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // closing, and nothing left
        job = std::move(jobs_.front());
        jobs_.pop_front();
        not_full_.notify_one();
      }
      job();
    }
  }

  const std::size_t max_queued_;
  std::mutex mu_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<std::function<void()>> jobs_;  // guarded by mu_
  bool closing_ = false;                    // guarded by mu_
  std::vector<std::jthread> workers_;       // last: joined before the members above go
};

// What one source call produced: fn()'s value, or what it threw, as text. The text is taken on
// the caller thread, so no exception object crosses threads: libstdc++ counts the references to
// an exception and to runtime_error's message inside its own library, where ThreadSanitizer does
// not see them, so an exception handed to an HTTP worker through a future was reported as a race
// between the worker reading what() and the caller thread freeing the message when it dropped the
// last reference ("a source that throws fails the scrape ...", tsan preset).
template <typename T>
struct answer {
  std::optional<T> value;
  std::string failure;  // when value is empty: ": " and what() of what fn threw, or that it was none
};

// Runs the daemon's source callbacks one at a time on its own thread, so an HTTP worker waits for
// a source with a deadline and never longer: a stuck source costs one caller thread, not the pool.
// Thread-safety: submit from any thread.
class source_caller {
 public:
  source_caller() : thread_([this](std::stop_token st) { run(st); }) {}

  // A future for fn()'s answer, or nullopt when too many calls are already waiting (the source is
  // stuck) or the caller is stopped. An exception from fn arrives as its message (answer).
  template <typename T>
  std::optional<std::future<answer<T>>> submit(std::function<T()> fn) {
    auto promise = std::make_shared<std::promise<answer<T>>>();
    auto future = promise->get_future();
    {
      std::lock_guard lock(mu_);
      if (stopped_ || jobs_.size() >= max_pending_source_calls) return std::nullopt;
      jobs_.push_back([promise, fn = std::move(fn)] {
        answer<T> a;
        try {
          a.value.emplace(fn());
        } catch (const std::exception& e) {
          a.failure = std::string(": ") + e.what();
        } catch (...) {
          a.failure = " with an unknown exception";
        }
        promise->set_value(std::move(a));
      });
    }
    cv_.notify_one();
    return future;
  }

  // Waits for the call in progress, if any, and drops the queued ones (requests that timed out
  // leave theirs behind): once this returns no source callback runs again, so the daemon may
  // destroy what the callbacks read. Only the endpoint's stop() calls it.
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopped_ = true;
    }
    thread_.request_stop();
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mu_);
    jobs_.clear();  // their futures report broken promises to nobody: no handler is left
  }

 private:
  void run(std::stop_token st) {
    while (true) {
      std::function<void()> job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, st, [&] { return !jobs_.empty(); });
        if (st.stop_requested()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  std::mutex mu_;
  std::condition_variable_any cv_;
  std::deque<std::function<void()>> jobs_;  // guarded by mu_
  bool stopped_ = false;                    // guarded by mu_
  std::jthread thread_;                     // last: stopped and joined first
};

// One source call in flight: not available (no callback), refused (queue full) or a future.
template <typename T>
struct pending {
  std::string what;  // "status", "breakers", ...
  bool available = false;
  std::optional<std::future<answer<T>>> future;
};

template <typename T>
pending<T> call(source_caller& caller, std::string what, std::function<T()> fn) {
  pending<T> p;
  p.what = std::move(what);
  p.available = static_cast<bool>(fn);
  if (p.available) p.future = caller.submit<T>(std::move(fn));
  return p;
}

// The value, or why there is none (not_found: no such source; timeout; internal: it threw).
template <typename T>
core::result<T> finish(pending<T>& p, clock::time_point deadline,
                       std::chrono::milliseconds budget) {
  if (!p.available) {
    return core::make_error(core::status_code::not_found,
                            "the " + p.what + " source is not available");
  }
  if (!p.future) {
    return core::make_error(core::status_code::timeout,
                            fmt::format("the {} source is stuck: {} calls are already waiting",
                                        p.what, max_pending_source_calls));
  }
  if (p.future->wait_until(deadline) != std::future_status::ready) {
    return core::make_error(
        core::status_code::timeout,
        fmt::format("the {} source did not answer within {} ms", p.what, budget.count()));
  }
  answer<T> a;
  try {
    a = p.future->get();
  } catch (const std::future_error& e) {  // a broken promise: the caller was stopped
    return core::make_error(core::status_code::internal,
                            "the " + p.what + " source was not called: " + e.what());
  }
  if (!a.value) {
    return core::make_error(core::status_code::internal,
                            "the " + p.what + " source failed" + a.failure);
  }
  return std::move(*a.value);
}

std::int64_t wall_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

constexpr const char* text_plain = "text/plain; charset=utf-8";

}  // namespace

core::result<http_config> parse_http_config(const sdk::config_node& http_section) {
  http_config cfg;
  if (http_section.is_missing() || http_section.is_null()) return cfg;
  if (auto s = http_section.check_keys({"listen"}); !s.ok()) return s;
  const sdk::config_node listen = http_section["listen"];
  if (listen.is_missing() || listen.is_null()) return cfg;
  auto text = listen.as_string();
  if (!text.ok()) return text.error();
  if (text->empty() || *text == "off") {
    cfg.listen.clear();
    return cfg;
  }
  auto hp = split_host_port(*text);
  if (!hp.ok()) return listen.error(hp.error().message());
  cfg.listen = *text;
  return cfg;
}

bool is_loopback_listen(const std::string& listen) {
  if (listen.empty()) return true;
  auto hp = split_host_port(listen);
  if (!hp.ok()) return false;
  if (hp->host == "localhost" || hp->host == "::1") return true;
  in_addr a4{};
  if (::inet_pton(AF_INET, hp->host.c_str(), &a4) == 1) {
    return (ntohl(a4.s_addr) >> 24) == 127;
  }
  return false;
}

struct http_endpoint::impl {
  http_config cfg;
  http_sources sources;
  host_port bound;

  // Declared before the server, so it outlives every handler that submits to it.
  source_caller caller;
  httplib::Server server;
  std::jthread listener;
  std::atomic<bool> listener_done{false};
  std::once_flag stopped;

  void route(const httplib::Request& req, httplib::Response& res);
  void serve_metrics(httplib::Response& res);
  void serve_healthz(httplib::Response& res);
  void serve_readyz(httplib::Response& res);
  status_view collect_view();
};

namespace {

enum class page { status_html, status_json, metrics, healthz, readyz };

std::optional<page> find_page(const std::string& path) {
  if (path == "/" || path == "/status") return page::status_html;
  if (path == "/api/status") return page::status_json;
  if (path == "/metrics") return page::metrics;
  if (path == "/healthz") return page::healthz;
  if (path == "/readyz") return page::readyz;
  return std::nullopt;
}

}  // namespace

void http_endpoint::impl::route(const httplib::Request& req, httplib::Response& res) {
  const auto p = find_page(req.path);
  if (!p) {
    res.status = 404;
    res.set_content("not found: " + to_valid_utf8(req.path) +
                        "\nendpoints: / /status /api/status /metrics /healthz /readyz\n",
                    text_plain);
    return;
  }
  if (req.method != "GET" && req.method != "HEAD") {
    res.status = 405;
    res.set_header("Allow", allowed_methods);
    res.set_content(
        "method not allowed: " + req.method + " (this endpoint is read-only; allowed: GET, HEAD)\n",
        text_plain);
    return;
  }
  switch (*p) {
    case page::status_html: {
      res.set_header("Content-Security-Policy",
                     "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
                     "form-action 'none'; frame-ancestors 'none'");
      res.set_content(render_status_page(collect_view()), "text/html; charset=utf-8");
      return;
    }
    case page::status_json:
      res.set_content(render_status_json(collect_view()), "application/json");
      return;
    case page::metrics:
      serve_metrics(res);
      return;
    case page::healthz:
      serve_healthz(res);
      return;
    case page::readyz:
      serve_readyz(res);
      return;
  }
}

void http_endpoint::impl::serve_metrics(httplib::Response& res) {
  const auto deadline = clock::now() + cfg.source_deadline;
  auto st = call(caller, "status", sources.status);
  auto br = call(caller, "breakers", sources.breakers);
  auto al = call(caller, "alerts", sources.alerts);
  auto status = finish(st, deadline, cfg.source_deadline);
  auto breakers = finish(br, deadline, cfg.source_deadline);
  auto alerts = finish(al, deadline, cfg.source_deadline);
  // A partial scrape would make series vanish (and alerts on them resolve) while the daemon is
  // stuck; a failed scrape shows up as `up == 0`, which every Prometheus setup alerts on.
  std::string problems;
  auto check = [&](const auto& r) {
    if (!r.ok() && r.error().code() != core::status_code::not_found) {
      problems += r.error().message() + "\n";
    }
  };
  check(status);
  check(breakers);
  check(alerts);
  if (!problems.empty()) {
    res.status = 503;
    res.set_content("can't collect metrics:\n" + problems, text_plain);
    return;
  }
  metrics_input in;
  if (status.ok()) in.status = &*status;
  if (breakers.ok()) in.breakers = &*breakers;
  if (alerts.ok()) in.alerts = &*alerts;
  res.set_content(render_metrics_text(in), metrics_content_type);
}

void http_endpoint::impl::serve_healthz(httplib::Response& res) {
  auto st = call(caller, "status", sources.status);
  auto status = finish(st, clock::now() + cfg.source_deadline, cfg.source_deadline);
  if (!status.ok() && status.error().code() != core::status_code::not_found) {
    res.status = 503;
    res.set_content("unhealthy: " + status.error().message() + "\n", text_plain);
    return;
  }
  res.set_content("ok\n", text_plain);
}

void http_endpoint::impl::serve_readyz(httplib::Response& res) {
  auto rd = call(caller, "readiness", sources.ready);
  auto ready = finish(rd, clock::now() + cfg.source_deadline, cfg.source_deadline);
  if (!ready.ok()) {
    res.status = 503;
    res.set_content("not ready: " + ready.error().message() + "\n", text_plain);
    return;
  }
  const readiness& r = *ready;
  auto yes = [](bool b) { return b ? "yes" : "no"; };
  std::string body = r.ready() ? "ready\n" : "not ready\n";
  body += fmt::format("plugins_loaded: {}\nstate_restored: {}\ningest_flowing: {}\n",
                      yes(r.plugins_loaded), yes(r.state_restored), yes(r.ingest_flowing));
  if (!r.detail.empty()) body += "detail: " + to_valid_utf8(r.detail) + "\n";
  res.status = r.ready() ? 200 : 503;
  res.set_content(body, text_plain);
}

status_view http_endpoint::impl::collect_view() {
  const auto deadline = clock::now() + cfg.source_deadline;
  // All submitted at once: they run back to back on the caller thread under one deadline.
  auto st = call(caller, "status", sources.status);
  auto br = call(caller, "breakers", sources.breakers);
  std::function<std::vector<v1::BreakerTransition>()> recent;
  if (sources.recent_transitions) {
    recent = [fn = sources.recent_transitions] { return fn(page_transitions); };
  }
  auto tr = call(caller, "transitions", std::move(recent));
  auto rd = call(caller, "readiness", sources.ready);
  auto al = call(caller, "alerts", sources.alerts);

  status_view v;
  auto take = [&](auto& pending_call, auto& slot) {
    auto r = finish(pending_call, deadline, cfg.source_deadline);
    if (r.ok()) {
      slot = std::move(*r);
    } else if (r.error().code() != core::status_code::not_found) {
      v.problems.push_back(r.error().message());
    }
  };
  take(st, v.status);
  take(br, v.breakers);
  take(tr, v.transitions);
  take(rd, v.ready);
  take(al, v.alerts);
  v.now_unix_nano = wall_now();
  return v;
}

http_endpoint::http_endpoint(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

http_endpoint::~http_endpoint() { stop(); }

int http_endpoint::port() const { return impl_->bound.port; }

std::string http_endpoint::address() const {
  const auto& b = impl_->bound;
  return b.host.find(':') != std::string::npos ? fmt::format("[{}]:{}", b.host, b.port)
                                               : fmt::format("{}:{}", b.host, b.port);
}

core::result<std::unique_ptr<http_endpoint>> http_endpoint::start(const http_config& config,
                                                                  http_sources sources) {
  if (config.listen.empty()) {
    return core::make_error(core::status_code::invalid_argument,
                            "the http endpoint is off (no listen address)");
  }
  auto hp = split_host_port(config.listen);
  if (!hp.ok()) return hp.error().with_context("http listen address");
  auto fail = [&](std::string_view why) {
    return core::make_error(core::status_code::io_error,
                            fmt::format("can't listen for http on {}: {}", config.listen, why));
  };
  // Resolved here first so a bad name is reported as such, not as whatever errno the library's
  // own getaddrinfo left behind.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(hp->port);
  if (int rc = ::getaddrinfo(hp->host.c_str(), port_text.c_str(), &hints, &found); rc != 0) {
    return fail(::gai_strerror(rc));
  }
  ::freeaddrinfo(found);

  auto p = std::make_unique<impl>();
  p->cfg = config;
  p->sources = std::move(sources);
  impl& m = *p;
  httplib::Server& srv = m.server;

  // httplib's default sets SO_REUSEPORT, which would let a second daemon bind the same port and
  // silently take half the scrapes. SO_REUSEADDR only allows a restart over TIME_WAIT sockets.
  srv.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  srv.new_task_queue = [] {
    return new bounded_task_queue(worker_threads, max_queued_connections);
  };
  srv.set_payload_max_length(max_request_body);
  srv.set_read_timeout(std::chrono::seconds(5));
  srv.set_write_timeout(std::chrono::seconds(5));
  // Short keep-alive: an idle scraper connection must not hold stop() (or a worker) for long.
  srv.set_keep_alive_timeout(1);
  srv.set_keep_alive_max_count(16);
  srv.set_default_headers({{"Cache-Control", "no-store"}, {"X-Content-Type-Options", "nosniff"}});
  srv.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        res.status = 500;
        res.set_content("internal error: " + what + "\n", text_plain);
      });

  // Every request goes through route(), which answers 404 / 405 / the page. A request without a
  // body is answered before httplib's own routing, which would refuse a body-less POST, PUT,
  // PATCH or DELETE (no Content-Length) with 400, and has no route at all for TRACE or CONNECT. A
  // request with a body is routed after httplib has read it (bounded by the payload limit), so an
  // unread body never poisons a kept-alive connection.
  auto handler = [&m](const httplib::Request& req, httplib::Response& res) { m.route(req, res); };
  srv.Get(".*", handler);  // GET and HEAD
  srv.Post(".*", handler);
  srv.Put(".*", handler);
  srv.Patch(".*", handler);
  srv.Delete(".*", handler);
  srv.Options(".*", handler);
  srv.set_pre_routing_handler([&m](const httplib::Request& req, httplib::Response& res) {
    static const char* const with_routes[] = {"GET",   "HEAD",   "POST",   "PUT",
                                              "PATCH", "DELETE", "OPTIONS"};
    const bool has_body =
        req.has_header("Transfer-Encoding") ||
        (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0");
    const bool routable = std::find(std::begin(with_routes), std::end(with_routes), req.method) !=
                          std::end(with_routes);
    if (has_body && routable) return httplib::Server::HandlerResponse::Unhandled;
    m.route(req, res);
    return httplib::Server::HandlerResponse::Handled;
  });

  errno = 0;
  int port = hp->port;
  if (hp->port == 0) {
    port = srv.bind_to_any_port(hp->host);
  } else if (!srv.bind_to_port(hp->host, hp->port)) {
    port = -1;
  }
  if (port < 0) {
    return fail(errno != 0 ? std::strerror(errno) : "the address can't be bound");
  }
  m.bound = {hp->host, port};

  m.listener = std::jthread([&m] {
    m.server.listen_after_bind();
    m.listener_done = true;
  });
  // stop() only works on a running server: wait until the accept loop has started (httplib marks
  // it running first thing) or has already given up.
  while (!m.server.is_running() && !m.listener_done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!m.server.is_running()) {
    m.listener.join();
    return fail("the accept loop ended at once");
  }
  return std::unique_ptr<http_endpoint>(new http_endpoint(std::move(p)));
}

void http_endpoint::stop() {
  std::call_once(impl_->stopped, [this] {
    // The server first: once its workers are joined nobody submits to the caller any more.
    impl_->server.stop();
    if (impl_->listener.joinable()) impl_->listener.join();
    impl_->caller.stop();
  });
}

}  // namespace loopwarden::sidecar::detail
