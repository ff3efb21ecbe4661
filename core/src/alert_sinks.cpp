// cpp-httplib is used here and nowhere else in core: every httplib error and status code becomes a
// delivery_result in http_sink::post().
#include "alert_sinks.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <mutex>
#include <set>

#include <httplib.h>

#include <loopwarden/core/redactor.hpp>
#include <loopwarden/version.hpp>

#include "log.hpp"

namespace loopwarden::core::detail {
namespace {

using json = nlohmann::ordered_json;

std::string lowercase_first(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

std::string str(const json& alert, const char* key) {
  auto it = alert.find(key);
  return it != alert.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::int64_t int_of(const json& alert, const char* key) {
  auto it = alert.find(key);
  return it != alert.end() && it->is_number_integer() ? it->get<std::int64_t>() : 0;
}

bool bool_of(const json& alert, const char* key) {
  auto it = alert.find(key);
  return it != alert.end() && it->is_boolean() && it->get<bool>();
}

std::int64_t wall_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool is_resolved(const json& alert) { return str(alert, "status") == "resolved"; }

bool is_absolute_http(std::string_view url) {
  return url.starts_with("http://") || url.starts_with("https://");
}

// "k=v, k2=v2": evidence in one line, for log lines and annotations.
std::string evidence_line(const json& alert) {
  std::string out;
  auto it = alert.find("evidence");
  if (it == alert.end() || !it->is_array()) return out;
  for (const auto& kv : *it) {
    if (!out.empty()) out += ", ";
    out += str(kv, "key") + "=" + str(kv, "value");
  }
  return out;
}

std::string truncate(std::string s, std::size_t max) {
  if (s.size() <= max) return s;
  s.resize(max - 3);
  // Do not cut a UTF-8 sequence in half: drop continuation bytes and their lead byte.
  while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();
  if (!s.empty() && (static_cast<unsigned char>(s.back()) & 0x80) != 0) s.pop_back();
  return s + "...";
}

// Slack mrkdwn treats &, < and > as control characters.
std::string slack_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

delivery_result delivered() {
  delivery_result r;
  r.ok = true;
  return r;
}

delivery_result failed(std::string error) {
  delivery_result r;
  r.error = std::move(error);
  return r;
}

json mrkdwn(std::string text) { return json{{"type", "mrkdwn"}, {"text", std::move(text)}}; }

std::string user_agent() {
  return "loopwarden/" + std::to_string(LOOPWARDEN_SDK_VERSION_MAJOR) + "." +
         std::to_string(LOOPWARDEN_SDK_VERSION_MINOR) + "." +
         std::to_string(LOOPWARDEN_SDK_VERSION_PATCH);
}

// cpp-httplib's error names, in words.
std::string describe(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection:
      return "can't connect (refused, unreachable or unknown host)";
    case httplib::Error::ConnectionTimeout:
      return "connect timed out";
    case httplib::Error::Read:
      return "reading the response failed or timed out";
    case httplib::Error::Write:
      return "sending the request failed or timed out";
    case httplib::Error::Canceled:
      return "the request was cancelled";
    case httplib::Error::SSLConnection:
      return "the TLS handshake failed";
    case httplib::Error::SSLLoadingCerts:
      return "can't load the trusted certificates (check ca_file)";
    case httplib::Error::SSLServerVerification:
      return "the server's TLS certificate is not trusted (set ca_file for a private CA)";
    case httplib::Error::Compression:
      return "can't decompress the response";
    default:
      return "http client error " + httplib::to_string(e);
  }
}

// ---------------------------------------------------------------------------------------------

class log_sink final : public alert_sink {
 public:
  explicit log_sink(const alert_sink_config& c) : alert_sink(c) {}

  delivery_result deliver(const alert_delivery& d) override {
    const std::string kind = str(d.alert, "kind");
    const auto level = (kind == "trigger" || kind == "approval") && !is_resolved(d.alert)
                           ? spdlog::level::warn
                           : spdlog::level::info;
    log().log(level, "{}", render_log_line(d.alert));
    return delivered();
  }
};

// One JSON object per line, appended, flushed and fsync'd before the delivery counts: a file sink
// is the fallback of last resort, so a line it acknowledged must survive a crash.
class file_sink final : public alert_sink {
 public:
  explicit file_sink(const alert_sink_config& c) : alert_sink(c) {}

  delivery_result deliver(const alert_delivery& d) override {
    json line = d.alert;
    line["sink"] = config().name;
    if (d.for_sink != config().name) line["for_sink"] = std::string(d.for_sink);
    line["delivered_at"] = format_rfc3339(d.now_unix_nano);
    const std::string text = line.dump() + "\n";

    // Writers of one file are serialised so lines never interleave; the file is opened per write
    // so a rotated file is picked up at once.
    std::lock_guard lock(mu_);
    const std::string& path = config().path;
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
      const int err = errno;
      return failure(err, "can't open alert file '" + path + "'");
    }
    std::size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n < 0) {
        const int err = errno;
        if (err == EINTR) continue;
        auto r = failure(err, "can't append to alert file '" + path + "'");
        ::close(fd);
        return r;
      }
      done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) {
      const int err = errno;
      auto r = failure(err, "can't sync alert file '" + path + "'");
      ::close(fd);
      return r;
    }
    if (::close(fd) != 0) {
      const int err = errno;
      return failure(err, "can't close alert file '" + path + "'");
    }
    return delivered();
  }

 private:
  // Callers save errno first: building the message may clobber it.
  static delivery_result failure(int err, std::string what) {
    return failed(what + ": " + lowercase_first(std::strerror(err)));
  }

  std::mutex mu_;
};

// The HTTP sinks share one request path: a client per attempt (alerts are rare; a fresh
// connection never inherits a half-dead keep-alive socket), the sink's timeout on connect, read
// and write, no redirects, and the status-code policy below.
class http_sink : public alert_sink {
 public:
  void cancel() override {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    for (httplib::Client* c : active_) c->stop();
  }
  void resume() override {
    std::lock_guard lock(mu_);
    cancelled_ = false;
  }

 protected:
  http_sink(const alert_sink_config& c, http_target target)
      : alert_sink(c), target_(std::move(target)) {
    secrets_.add_sink_secrets(c);
  }

  const http_target& target() const { return target_; }

  // One attempt; the error never carries this sink's secrets (a receiver may echo the request).
  delivery_result post(const std::string& path, const std::string& body,
                       const std::vector<std::pair<std::string, std::string>>& extra_headers) {
    delivery_result r = post_once(path, body, extra_headers);
    if (!r.error.empty()) r.error = secrets_.apply(r.error);
    return r;
  }

 private:
  delivery_result post_once(const std::string& path, const std::string& body,
                            const std::vector<std::pair<std::string, std::string>>& extra_headers) {
    httplib::Client client(target_.scheme_host_port);
    const auto timeout = std::chrono::duration_cast<std::chrono::microseconds>(config().timeout);
    client.set_connection_timeout(timeout);
    client.set_read_timeout(timeout);
    client.set_write_timeout(timeout);
    client.set_keep_alive(false);
    client.set_follow_location(false);
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
    if (target_.tls && !config().ca_file.empty()) client.set_ca_cert_path(config().ca_file);
#endif
    httplib::Headers headers{{"User-Agent", user_agent()}, {"Accept", "application/json"}};
    for (const auto& [k, v] : extra_headers) headers.emplace(k, v);

    {
      std::lock_guard lock(mu_);
      if (cancelled_) return failed("delivery cancelled (the router is stopping)");
      active_.insert(&client);
    }
    httplib::Result res = client.Post(path, headers, body, "application/json");
    {
      std::lock_guard lock(mu_);
      active_.erase(&client);
    }

    // The target's path may carry a secret (Slack and some webhook URLs do): messages name only
    // scheme, host and port.
    const std::string where = target_.scheme_host_port;
    delivery_result r;
    if (!res) {
      r.error = "can't deliver to " + where + ": " + describe(res.error());
      return r;
    }
    r.http_status = res->status;
    if (res->status >= 200 && res->status < 300) {
      r.ok = true;
      return r;
    }
    std::string snippet = truncate(res->body, 200);
    std::replace_if(
        snippet.begin(), snippet.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
    r.error = "http " + std::to_string(res->status) + " from " + where;
    if (!snippet.empty()) r.error += ": " + snippet;
    if (res->status == 429 || res->status == 503) {
      if (res->has_header("Retry-After")) {
        // An HTTP-date is wall-clock time, whatever clock the router runs on.
        r.retry_after = parse_retry_after(res->get_header_value("Retry-After"), wall_now());
      }
    }
    // A redirect we do not follow, or a client error other than timeout / too early / rate limit,
    // will fail the same way on every retry.
    const int s = res->status;
    r.permanent = s >= 300 && s < 500 && s != 408 && s != 425 && s != 429;
    if (s >= 300 && s < 400 && res->has_header("Location")) {
      r.error += " (redirected; configure the final URL)";
    }
    return r;
  }

  const http_target target_;
  redactor secrets_;  // this sink's URL, headers and routing key (redactor.hpp)
  std::mutex mu_;
  std::set<httplib::Client*> active_;  // guarded by mu_; clients of requests in flight
  bool cancelled_ = false;             // guarded by mu_
};

class webhook_sink final : public http_sink {
 public:
  webhook_sink(const alert_sink_config& c, http_target t) : http_sink(c, std::move(t)) {}
  delivery_result deliver(const alert_delivery& d) override {
    return post(target().path, d.alert.dump(), config().headers);
  }
};

class slack_sink final : public http_sink {
 public:
  slack_sink(const alert_sink_config& c, http_target t) : http_sink(c, std::move(t)) {}
  delivery_result deliver(const alert_delivery& d) override {
    return post(target().path, render_slack(d.alert).dump(), {});
  }
};

class pagerduty_sink final : public http_sink {
 public:
  pagerduty_sink(const alert_sink_config& c, http_target t) : http_sink(c, std::move(t)) {}
  delivery_result deliver(const alert_delivery& d) override {
    return post(target().path, render_pagerduty(d.alert, config().routing_key).dump(), {});
  }
};

class alertmanager_sink final : public http_sink {
 public:
  alertmanager_sink(const alert_sink_config& c, http_target t, std::chrono::nanoseconds resend)
      : http_sink(c, std::move(t)), resend_(resend) {
    path_ = target().path;
    while (!path_.empty() && path_.back() == '/') path_.pop_back();
    path_ += "/api/v2/alerts";
  }
  delivery_result deliver(const alert_delivery& d) override {
    return post(path_, render_alertmanager(d.alert, d.now_unix_nano, resend_).dump(),
                config().headers);
  }

 private:
  std::string path_;
  const std::chrono::nanoseconds resend_;
};

// Parses "Sun, 06 Nov 1994 08:49:37 GMT" and the two obsolete HTTP-date forms.
std::optional<std::int64_t> parse_http_date(const std::string& text) {
  for (const char* format :
       {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"}) {
    std::tm tm{};
    const char* end = ::strptime(text.c_str(), format, &tm);
    if (end != nullptr && *end == '\0') return static_cast<std::int64_t>(::timegm(&tm));
  }
  return std::nullopt;
}

}  // namespace

bool https_supported() {
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
  return true;
#else
  return false;
#endif
}

result<http_target> parse_http_url(std::string_view url) {
  // The URL may be a credential (Slack's is): the message shows it without path or user-info.
  auto bad = [&](std::string why) {
    return make_error(status_code::invalid_argument, why + ", got \"" + redact_url(url) + "\"");
  };
  http_target t;
  std::string_view rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    t.tls = true;
    rest = url.substr(8);
  } else {
    return bad("expected an http:// or https:// URL");
  }
  const std::size_t slash = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, slash);
  std::string path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (path.front() != '/') path.insert(path.begin(), '/');
  if (const auto hash = path.find('#'); hash != std::string::npos) path.resize(hash);
  if (authority.find('@') != std::string_view::npos) {
    return bad("credentials in the URL are not supported (use headers)");
  }
  std::string_view port_text;
  if (authority.starts_with("[")) {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated IPv6 address in URL");
    t.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("expected ':port' after the IPv6 address");
      port_text = after.substr(1);
    }
  } else {
    const std::size_t colon = authority.rfind(':');
    t.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (t.host.empty()) return bad("expected a host in the URL");
  t.port = t.tls ? 443 : 80;
  if (!port_text.empty()) {
    int port = 0;
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port < 1 ||
        port > 65535) {
      return bad("expected a port between 1 and 65535 in the URL");
    }
    t.port = port;
  }
  const bool v6 = t.host.find(':') != std::string::npos;
  t.scheme_host_port = std::string(t.tls ? "https://" : "http://") + (v6 ? "[" : "") + t.host +
                       (v6 ? "]" : "") + ":" + std::to_string(t.port);
  t.path = std::move(path);
  return t;
}

std::unique_ptr<alert_sink> make_alert_sink(const alert_sink_config& sink,
                                            const alerts_config& all) {
  auto target = [&]() {
    auto t = parse_http_url(sink.url);
    // parse_alerts_config validated the URL; a hand-built config with a bad one is a bug.
    if (!t) throw std::invalid_argument("alert sink '" + sink.name + "': " + t.error().message());
    return std::move(t).value();
  };
  switch (sink.type) {
    case alert_sink_type::log:
      return std::make_unique<log_sink>(sink);
    case alert_sink_type::file:
      return std::make_unique<file_sink>(sink);
    case alert_sink_type::webhook:
      return std::make_unique<webhook_sink>(sink, target());
    case alert_sink_type::slack:
      return std::make_unique<slack_sink>(sink, target());
    case alert_sink_type::pagerduty:
      return std::make_unique<pagerduty_sink>(sink, target());
    case alert_sink_type::alertmanager:
      return std::make_unique<alertmanager_sink>(sink, target(), all.resend_interval);
  }
  throw std::invalid_argument("alert sink '" + sink.name + "': unknown type");
}

std::string render_log_line(const json& alert) {
  std::string line = "alert " + str(alert, "kind") + " " + str(alert, "fingerprint") + ": " +
                     str(alert, "summary");
  if (const std::string ev = evidence_line(alert); !ev.empty()) line += "; evidence: " + ev;
  if (const std::string rb = str(alert, "runbook_url"); !rb.empty()) line += "; runbook " + rb;
  return line;
}

json render_slack(const json& alert) {
  const std::string summary = str(alert, "summary");
  json blocks = json::array();
  blocks.push_back({{"type", "section"}, {"text", mrkdwn("*" + slack_escape(summary) + "*")}});

  json fields = json::array();
  auto field = [&](const char* label, const std::string& value) {
    if (!value.empty())
      fields.push_back(mrkdwn("*" + std::string(label) + "*\n" + slack_escape(value)));
  };
  field("Breaker", str(alert, "breaker"));
  field("Run", str(alert, "run_id"));
  field("State", str(alert, "state"));
  field("Action", str(alert, "action"));
  field("Severity", str(alert, "severity"));
  field("Monitor", str(alert, "monitor"));
  if (!fields.empty()) blocks.push_back({{"type", "section"}, {"fields", fields}});

  if (const std::string reason = str(alert, "reason"); !reason.empty()) {
    blocks.push_back({{"type", "section"},
                      {"text", mrkdwn("*Reason*\n" + truncate(slack_escape(reason), 2900))}});
  }
  if (auto ev = alert.find("evidence"); ev != alert.end() && ev->is_array() && !ev->empty()) {
    std::string text = "*Evidence*";
    for (const auto& kv : *ev) {
      text += "\n- " + slack_escape(str(kv, "key")) + ": `" + slack_escape(str(kv, "value")) + "`";
    }
    blocks.push_back({{"type", "section"}, {"text", mrkdwn(truncate(text, 2900))}});
  }
  const std::string op = str(alert, "operator");
  const std::string note = str(alert, "note");
  if (!op.empty() || !note.empty()) {
    std::string text = "*Operator*";
    if (!op.empty()) text += " " + slack_escape(op);
    if (!note.empty()) text += "\n" + slack_escape(note);
    blocks.push_back({{"type", "section"}, {"text", mrkdwn(truncate(text, 2900))}});
  }
  json context = json::array();
  if (const std::string rb = str(alert, "runbook_url"); !rb.empty()) {
    context.push_back(
        mrkdwn(is_absolute_http(rb) ? "<" + rb + "|Runbook>" : "Runbook: " + slack_escape(rb)));
  }
  std::string meta = "fingerprint `" + str(alert, "fingerprint") + "`";
  if (const std::string sid = str(alert, "sidecar_id"); !sid.empty()) {
    meta += " | sidecar " + slack_escape(sid);
  }
  if (const std::string t = str(alert, "time"); !t.empty()) meta += " | " + t;
  context.push_back(mrkdwn(meta));
  blocks.push_back({{"type", "context"}, {"elements", context}});

  return json{{"text", summary}, {"blocks", blocks}};
}

json render_pagerduty(const json& alert, std::string_view routing_key) {
  json event;
  event["routing_key"] = std::string(routing_key);
  event["event_action"] = is_resolved(alert) ? "resolve" : "trigger";
  event["dedup_key"] = str(alert, "fingerprint");
  if (is_resolved(alert)) return event;  // PagerDuty needs only the key to resolve

  std::string severity = str(alert, "severity");
  if (severity != "critical" && severity != "warning" && severity != "info") severity = "critical";
  json custom;
  for (const char* key : {"kind", "run_id", "state", "action", "reason", "monitor", "cause",
                          "operator", "note", "cluster"}) {
    if (const std::string v = str(alert, key); !v.empty()) custom[key] = v;
  }
  custom["epoch"] = int_of(alert, "epoch");
  custom["trips"] = int_of(alert, "trips");
  if (auto ev = alert.find("evidence"); ev != alert.end() && ev->is_array()) {
    json evidence = json::object();
    for (const auto& kv : *ev) evidence[str(kv, "key")] = str(kv, "value");
    custom["evidence"] = evidence;
  }
  const std::string runbook = str(alert, "runbook_url");
  if (!runbook.empty() && !is_absolute_http(runbook)) custom["runbook"] = runbook;

  json payload;
  payload["summary"] = truncate(str(alert, "summary"), 1024);
  const std::string sidecar = str(alert, "sidecar_id");
  payload["source"] = sidecar.empty() ? std::string("loopwarden") : sidecar;
  payload["severity"] = severity;
  if (const std::string t = str(alert, "time"); !t.empty()) payload["timestamp"] = t;
  payload["component"] = str(alert, "breaker");
  payload["group"] = str(alert, "monitor");
  payload["class"] = str(alert, "cause");
  payload["custom_details"] = custom;
  event["payload"] = payload;
  event["client"] = "loopwarden";
  event["links"] = json::array();
  if (is_absolute_http(runbook)) event["links"].push_back({{"href", runbook}, {"text", "Runbook"}});
  return event;
}

json render_alertmanager(const json& alert, std::int64_t now, std::chrono::nanoseconds resend) {
  const std::string kind = str(alert, "kind");
  json labels;
  labels["alertname"] = kind == "test"             ? "LoopwardenTest"
                        : kind == "approval"       ? "LoopwardenApprovalPending"
                        : bool_of(alert, "shadow") ? "LoopwardenShadowBreakerOpen"
                                                   : "LoopwardenBreakerOpen";
  labels["breaker"] = str(alert, "breaker");
  for (const char* key : {"monitor", "run_id", "severity"}) {
    if (const std::string v = str(alert, key); !v.empty()) labels[key] = v;
  }
  if (const std::string v = str(alert, "sidecar_id"); !v.empty()) labels["sidecar"] = v;
  if (const std::string v = str(alert, "cluster"); !v.empty()) labels["cluster"] = v;
  // The incident's fingerprint keeps two trips of one breaker apart, so a late resolve of the first
  // can never resolve the second.
  labels["incident"] = str(alert, "fingerprint");

  json annotations;
  annotations["summary"] = str(alert, "summary");
  for (const char* key : {"reason", "runbook_url", "action", "state", "note"}) {
    if (const std::string v = str(alert, key); !v.empty()) annotations[key] = v;
  }
  if (const std::string ev = evidence_line(alert); !ev.empty()) annotations["evidence"] = ev;

  // startsAt never lies in the future (host clocks feed trip times) and never after endsAt,
  // which Alertmanager rejects.
  std::int64_t starts = int_of(alert, "time_unix_nano");
  if (starts <= 0 || starts > now) starts = now;
  json a;
  a["labels"] = labels;
  a["annotations"] = annotations;
  a["startsAt"] = format_rfc3339(starts);
  // Firing alerts expire after four missed re-sends, so a dead sidecar's alerts resolve by
  // themselves while a live one keeps them firing.
  a["endsAt"] = format_rfc3339(is_resolved(alert) ? now : now + 4 * resend.count());
  if (const std::string rb = str(alert, "runbook_url"); is_absolute_http(rb))
    a["generatorURL"] = rb;
  return json::array({a});
}

std::optional<std::chrono::nanoseconds> parse_retry_after(std::string_view value,
                                                          std::int64_t now_unix_nano) {
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.front()))) {
    value.remove_prefix(1);
  }
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) {
    value.remove_suffix(1);
  }
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    std::int64_t seconds = 0;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec != std::errc() || ptr != value.data() + value.size()) return std::nullopt;
    // Capped at a day (the HTTP-date form too): the alert must go out eventually.
    seconds = std::min<std::int64_t>(seconds, 86400);
    return std::chrono::seconds(seconds);
  }
  auto when = parse_http_date(std::string(value));
  if (!when) return std::nullopt;
  const std::int64_t delta = *when * 1'000'000'000 - now_unix_nano;
  const std::int64_t day = std::chrono::nanoseconds(std::chrono::hours(24)).count();
  return std::chrono::nanoseconds(std::clamp<std::int64_t>(delta, 0, day));
}

std::string format_rfc3339(std::int64_t unix_nano) {
  std::int64_t secs = unix_nano / 1'000'000'000;
  std::int64_t ms = (unix_nano % 1'000'000'000) / 1'000'000;
  if (ms < 0) {
    ms += 1000;
    secs -= 1;
  }
  const auto t = static_cast<std::time_t>(secs);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms));
  return out;
}

}  // namespace loopwarden::core::detail
