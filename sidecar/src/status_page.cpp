#include "status_page.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string_view>

#include <loopwarden/sidecar/transition_format.hpp>
#include <loopwarden/types.hpp>

#include "metrics_text.hpp"

namespace loopwarden::sidecar::detail {
namespace {

using json = nlohmann::ordered_json;

// Text for HTML element content and attribute values alike.
std::string esc(std::string_view text) {
  const std::string valid = to_valid_utf8(text);
  std::string out;
  out.reserve(valid.size() + 16);
  for (char c : valid) {
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
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// A word for a POSIX shell, quoted only when it needs to be, for the copyable commands.
std::string shell_word(std::string_view w) {
  const bool plain = !w.empty() && std::all_of(w.begin(), w.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '/' || c == ':' || c == '-' || c == '@';
  });
  if (plain) return std::string(w);
  std::string out = "'";
  for (char c : w) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string state_name(v1::BreakerState s) { return std::string(sdk::to_string(s)); }

bool is_open(const v1::BreakerStatus& b) {
  return b.state() == v1::BREAKER_STATE_OPEN || b.state() == v1::BREAKER_STATE_FORCED_OPEN;
}

int state_rank(v1::BreakerState s) {
  switch (s) {
    case v1::BREAKER_STATE_OPEN:
    case v1::BREAKER_STATE_FORCED_OPEN:
      return 0;
    case v1::BREAKER_STATE_HALF_OPEN:
      return 1;
    case v1::BREAKER_STATE_CLOSED:
      return 2;
    default:
      return 3;
  }
}

// "850 ns", "12.5 µs", "4.25 ms", "1.5 s".
std::string format_call_time(double ns) {
  if (ns < 1e3) return fmt::format("{:.0f} ns", ns);
  if (ns < 1e6) return fmt::format("{:.3g} µs", ns / 1e3);
  if (ns < 1e9) return fmt::format("{:.3g} ms", ns / 1e6);
  return fmt::format("{:.3g} s", ns / 1e9);
}

std::uint64_t monitor_calls(const v1::MonitorStatus& m) {
  return m.events() + m.gates() + m.ticks();
}

// "2026-11-23 08:00:11Z": seconds are enough for people, and the space lets a cell wrap.
std::string short_time(std::int64_t unix_nano) {
  std::string s = format_time(unix_nano);  // 2026-11-23T08:00:11.250Z
  if (s.size() == 24 && s[10] == 'T') s = s.substr(0, 10) + " " + s.substr(11, 8) + "Z";
  return s;
}

// "4m 10s ago" over the time it happened, as HTML.
std::string when_html(std::int64_t unix_nano, std::int64_t now) {
  if (unix_nano == 0) return "-";
  if (now <= unix_nano) return esc(short_time(unix_nano));
  return "<b>" + esc(format_age(now - unix_nano)) + " ago</b><br><span class=\"note\">" +
         esc(short_time(unix_nano)) + "</span>";
}

std::string evidence_html(const google::protobuf::RepeatedPtrField<v1::KeyValue>& evidence) {
  std::string out;
  for (const auto& kv : evidence) {
    if (!out.empty()) out += "<br>";
    out += "<span class=\"ev\"><b>" + esc(kv.key()) + "</b>=" + esc(kv.value()) + "</span>";
  }
  return out;
}

json evidence_json(const google::protobuf::RepeatedPtrField<v1::KeyValue>& evidence) {
  json out = json::array();
  for (const auto& kv : evidence) out.push_back({{"key", kv.key()}, {"value", kv.value()}});
  return out;
}

std::vector<v1::BreakerTransition> sorted_transitions(std::vector<v1::BreakerTransition> ts) {
  std::stable_sort(ts.begin(), ts.end(), [](const auto& a, const auto& b) {
    if (a.breaker().changed_unix_nano() != b.breaker().changed_unix_nano()) {
      return a.breaker().changed_unix_nano() > b.breaker().changed_unix_nano();
    }
    return a.breaker().epoch() > b.breaker().epoch();
  });
  return ts;
}

constexpr std::string_view page_style = R"css(
:root{color-scheme:light dark;--bg:#fff;--fg:#111;--muted:#555;--line:#d0d0d0;--head:#f0f0f0;
  --hi:rgba(198,40,40,.10)}
@media (prefers-color-scheme:dark){:root{--bg:#141414;--fg:#eee;--muted:#aaa;--line:#3a3a3a;
  --head:#222;--hi:rgba(239,83,80,.18)}}
body{font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",sans-serif;
  margin:0 1.5rem 2rem;background:var(--bg);color:var(--fg)}
h1{font-size:1.7rem;margin:1rem 0 .2rem}
h2{font-size:1.3rem;margin:1.8rem 0 .5rem}
.meta,.note{color:var(--muted)}
.banner{font-size:1.5rem;font-weight:700;padding:.7rem 1rem;border-radius:6px;margin:1rem 0}
.banner.bad{background:#b71c1c;color:#fff}
.banner.good{background:#1b5e20;color:#fff}
.banner.warn{background:#e65100;color:#fff}
.box{border:2px solid #e65100;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}
table{border-collapse:collapse;width:100%;font-size:.95rem}
th,td{border-bottom:1px solid var(--line);padding:.4rem .5rem;text-align:left;vertical-align:top}
th{background:var(--head)}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.open td{background:var(--hi)}
.state{display:inline-block;padding:.1rem .5rem;border-radius:4px;font-weight:700;color:#fff;
  white-space:nowrap}
.state-open{background:#c62828}
.state-forced_open{background:#6a1b9a}
.state-half_open{background:#f9a825;color:#000}
.state-closed{background:#2e7d32}
.state-unspecified{background:#757575}
.sev-critical{color:#d32f2f;font-weight:700}
.sev-warning{color:#ef6c00;font-weight:700}
.unacked{color:#d32f2f;font-weight:700}
.ev,code,pre{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:.88rem}
.ok{color:#2e7d32;font-weight:700}
.scroll{overflow-x:auto}
pre{background:var(--head);padding:.6rem 1rem;border-radius:6px;overflow-x:auto}
.bad{color:#d32f2f;font-weight:700}
)css";

void render_header(const status_view& v, std::string& out) {
  std::size_t open = 0;
  std::size_t shadow_open = 0;
  if (v.breakers) {
    for (const auto& b : v.breakers->breakers()) {
      if (is_open(b)) ++(b.shadow() ? shadow_open : open);
    }
  }
  const std::string title = !v.breakers ? "loopwarden"
                                        : (open > 0 ? fmt::format("{} OPEN - loopwarden", open)
                                                    : std::string("all closed - loopwarden"));
  out += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  out += "<meta http-equiv=\"refresh\" content=\"5\">\n";
  out += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  out += "<title>" + esc(title) + "</title>\n<style>" + std::string(page_style) +
         "</style>\n</head>\n<body>\n";

  out += "<header>\n<h1>loopwarden</h1>\n<div class=\"meta\">";
  if (v.status) {
    out += "version " + esc(v.status->version());
    if (v.status->started_unix_nano() != 0) {
      out += " &middot; up " + esc(format_age(v.now_unix_nano - v.status->started_unix_nano())) +
             " (since " + esc(short_time(v.status->started_unix_nano())) + ")";
    }
    if (!v.status->config_source().empty()) {
      out += " &middot; config " + esc(v.status->config_source());
    }
    out += "<br>";
  }
  out += "page generated " + esc(short_time(v.now_unix_nano)) +
         " (UTC) &middot; refreshes every 5 s</div>\n</header>\n";

  if (!v.breakers) {
    out += "<div class=\"banner warn\" id=\"summary\">Breaker state not available</div>\n";
  } else if (open > 0) {
    out += fmt::format("<div class=\"banner bad\" id=\"summary\">{} breaker{} OPEN{}</div>\n", open,
                       open == 1 ? "" : "s",
                       shadow_open > 0 ? fmt::format(" (+{} shadow)", shadow_open) : "");
  } else {
    out += fmt::format("<div class=\"banner good\" id=\"summary\">All breakers closed{}</div>\n",
                       shadow_open > 0 ? fmt::format(" ({} shadow open)", shadow_open) : "");
  }

  if (!v.problems.empty()) {
    out += "<div class=\"box\" id=\"problems\"><b>Some figures could not be read:</b><ul>";
    for (const auto& p : v.problems) out += "<li>" + esc(p) + "</li>";
    out += "</ul></div>\n";
  }

  if (v.ready) {
    const auto& r = *v.ready;
    auto cond = [](bool ok) {
      return std::string(ok ? "<span class=\"ok\">yes</span>" : "<span class=\"bad\">no</span>");
    };
    out += "<p id=\"readiness\">Ready: " + cond(r.ready()) +
           " &middot; plugins loaded: " + cond(r.plugins_loaded) +
           " &middot; state restored: " + cond(r.state_restored) +
           " &middot; ingest flowing: " + cond(r.ingest_flowing);
    if (!r.detail.empty()) out += " &middot; " + esc(r.detail);
    out += "</p>\n";
  }
  if (v.status) {
    const auto& s = *v.status;
    out += fmt::format(
        "<p class=\"meta\">{} events evaluated &middot; {} queued &middot; {} dropped &middot; "
        "{} malformed &middot; {} duplicates &middot; {} gate requests &middot; {} reloads</p>\n",
        s.events(), s.queue_depth(), s.dropped(), s.malformed(), s.duplicates(), s.gate_requests(),
        s.reloads());
    if (!s.last_reload_error().empty()) {
      out +=
          "<div class=\"box\">The last reload was refused (the previous configuration is "
          "still running): " +
          esc(s.last_reload_error()) + "</div>\n";
    }
  }
}

void render_breakers(const status_view& v, std::string& out) {
  out += "<section id=\"breakers\">\n<h2>Breakers</h2>\n";
  if (!v.breakers) {
    out += "<p class=\"note\">Not available.</p>\n</section>\n";
    return;
  }
  const auto breakers = sort_breakers_for_display(*v.breakers);
  if (breakers.empty()) {
    out += "<p class=\"note\">No breaker has been declared yet.</p>\n</section>\n";
    return;
  }
  // Eight columns, so the table fits a laptop screen: the state and how long it has been so are
  // the first thing anyone reads.
  out +=
      "<div class=\"scroll\"><table>\n<thead><tr><th>Breaker</th><th>State and since</th>"
      "<th>Action and severity</th><th>Monitor</th><th>Reason</th><th>Evidence</th>"
      "<th>Acknowledged by</th><th class=\"num\">Epoch / trips</th></tr></thead>\n<tbody>\n";
  for (const auto& b : breakers) {
    const std::string state = state_name(b.state());
    const std::string sev = std::string(sdk::to_string(b.severity()));
    out += is_open(b) ? "<tr class=\"open\">" : "<tr>";
    out += "<td><b>" + esc(b.name()) + "</b><br>" +
           (b.run_id().empty() ? std::string("global") : "run " + esc(b.run_id())) +
           (b.shadow() ? " <i>(shadow)</i>" : "") + "</td>";
    out += "<td><span class=\"state state-" + esc(state) + "\">" + esc(state) + "</span><br>" +
           when_html(b.changed_unix_nano(), v.now_unix_nano);
    if (b.state() == v1::BREAKER_STATE_HALF_OPEN && b.probation_until_unix_nano() != 0) {
      out += "<br><span class=\"note\">probation until " +
             esc(short_time(b.probation_until_unix_nano())) + "</span>";
    }
    out += "</td>";
    out += "<td>" + esc(std::string(sdk::to_string(b.action()))) + "<br><span class=\"sev-" +
           esc(sev) + "\">" + esc(sev) + "</span></td>";
    out += "<td>" + esc(b.monitor()) + "</td>";
    out += "<td>" + esc(b.reason()) + "</td>";
    out += "<td>" + evidence_html(b.evidence()) + "</td>";
    if (b.acknowledged()) {
      out += "<td>" + esc(b.acknowledged_by().empty() ? "(yes)" : b.acknowledged_by()) + "</td>";
    } else if (is_open(b)) {
      out += "<td><span class=\"unacked\">not acknowledged</span></td>";
    } else {
      out += "<td>-</td>";
    }
    out += fmt::format("<td class=\"num\">{} / {}</td></tr>\n", b.epoch(), b.trips());
  }
  out += "</tbody>\n</table></div>\n";

  // What to type next, for each open breaker: nothing here acts, the command line does.
  std::string commands;
  for (const auto& b : breakers) {
    if (!is_open(b)) continue;
    const std::string ref =
        shell_word(b.name()) + (b.run_id().empty() ? "" : " --run " + shell_word(b.run_id()));
    commands += esc("loopwarden explain " + ref + "\nloopwarden ack " + ref +
                    " --note '...'\nloopwarden reset " + ref + " --reason '...'\n");
  }
  if (!commands.empty()) {
    out +=
        "<p class=\"note\">This page is read-only. To act on an open breaker:</p>\n"
        "<pre id=\"commands\">" +
        commands + "</pre>\n";
  }
  out += "</section>\n";
}

void render_transitions(const status_view& v, std::string& out) {
  out += "<section id=\"transitions\">\n<h2>Recent transitions</h2>\n";
  if (!v.transitions) {
    out += "<p class=\"note\">Not available.</p>\n</section>\n";
    return;
  }
  if (v.transitions->empty()) {
    out += "<p class=\"note\">No breaker has changed yet.</p>\n</section>\n";
    return;
  }
  out +=
      "<div "
      "class=\"scroll\"><table>\n<thead><tr><th>When</th><th>Breaker</th><th>Change</th><th>Cause</"
      "th>"
      "<th>Operator</th><th>Note</th><th>Monitor and reason</th><th>Trigger</th><th>Evidence</th>"
      "</tr></thead>\n<tbody>\n";
  for (const auto& t : sorted_transitions(*v.transitions)) {
    const auto& b = t.breaker();
    const std::string to = state_name(b.state());
    out += is_open(b) ? "<tr class=\"open\">" : "<tr>";
    out += "<td>" + when_html(b.changed_unix_nano(), v.now_unix_nano) + "</td>";
    out += "<td><b>" + esc(b.name()) + "</b>" +
           (b.run_id().empty() ? "" : "<br>run " + esc(b.run_id())) + "</td>";
    out += "<td>" + esc(state_name(t.previous())) + " &rarr; <span class=\"state state-" + esc(to) +
           "\">" + esc(to) + "</span></td>";
    out += "<td>" + esc(t.cause()) + "</td>";
    out += "<td>" + esc(t.operator_id()) + "</td>";
    out += "<td>" + esc(t.note()) + "</td>";
    out += "<td>" + esc(b.monitor()) + (b.reason().empty() ? "" : ": " + esc(b.reason())) + "</td>";
    out += "<td>" +
           (t.trigger_source().empty()
                ? std::string()
                : esc(t.trigger_source()) + fmt::format(" seq {}", t.trigger_seq())) +
           "</td>";
    out += "<td>" + evidence_html(b.evidence()) + "</td></tr>\n";
  }
  out += "</tbody>\n</table></div>\n</section>\n";
}

void render_monitors(const status_view& v, std::string& out) {
  out += "<section id=\"monitors\">\n<h2>Monitors</h2>\n";
  if (!v.status) {
    out += "<p class=\"note\">Not available.</p>\n</section>\n";
    return;
  }
  if (v.status->monitors_size() == 0) {
    out += "<p class=\"note\">No monitor is loaded.</p>\n</section>\n";
    return;
  }
  out +=
      "<div class=\"scroll\"><table>\n<thead><tr><th>Monitor</th><th>Plugin</th><th>State</th><th "
      "class=\"num\">Events"
      "</th><th class=\"num\">Gates</th><th class=\"num\">Ticks</th><th class=\"num\">Errors</th>"
      "<th class=\"num\">Dropped</th><th class=\"num\">Mean call</th><th class=\"num\">Max "
      "call</th><th>Last error</th></tr>"
      "</thead>\n<tbody>\n";
  for (const auto& m : v.status->monitors()) {
    const std::uint64_t calls = monitor_calls(m);
    out += "<tr><td><b>" + esc(m.name()) + "</b></td>";
    out += "<td>" + esc(m.plugin()) + (m.version().empty() ? "" : " " + esc(m.version())) + "</td>";
    out += m.state() == "active" ? std::string("<td><span class=\"ok\">active</span></td>")
                                 : "<td><span class=\"bad\">" + esc(m.state()) + "</span></td>";
    out +=
        fmt::format("<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
                    m.events(), m.gates(), m.ticks());
    out += m.errors() > 0 ? fmt::format("<td class=\"num bad\">{}</td>", m.errors())
                          : std::string("<td class=\"num\">0</td>");
    out += m.dropped() > 0 ? fmt::format("<td class=\"num bad\">{}</td>", m.dropped())
                           : std::string("<td class=\"num\">0</td>");
    out += "<td class=\"num\">" +
           (calls > 0 ? esc(format_call_time(static_cast<double>(m.total_call_ns()) /
                                             static_cast<double>(calls)))
                      : std::string("-")) +
           "</td>";
    out += "<td class=\"num\">" +
           (calls > 0 ? esc(format_call_time(static_cast<double>(m.max_call_ns())))
                      : std::string("-")) +
           "</td>";
    out += "<td>" + esc(m.last_error()) + "</td></tr>\n";
  }
  out += "</tbody>\n</table></div>\n</section>\n";
}

void render_sources(const status_view& v, std::string& out) {
  out += "<section id=\"sources\">\n<h2>Sources</h2>\n";
  if (!v.status) {
    out += "<p class=\"note\">Not available.</p>\n</section>\n";
    return;
  }
  const auto& s = *v.status;
  if (s.sources_size() == 0) {
    out += "<p class=\"note\">No producer has sent anything yet.</p>\n";
  } else {
    out +=
        "<div class=\"scroll\"><table>\n<thead><tr><th>Source</th><th>Run</th><th "
        "class=\"num\">Received</th>"
        "<th class=\"num\">Lost</th><th class=\"num\">Duplicates</th><th class=\"num\">Late</th>"
        "<th class=\"num\">Malformed</th><th class=\"num\">Dropped</th><th>Last seen</th>"
        "<th>Status</th></tr></thead>\n<tbody>\n";
    for (const auto& src : s.sources()) {
      out += "<tr><td><b>" + esc(src.source()) + "</b></td><td>" + esc(src.run_id()) + "</td>";
      out += fmt::format(
          "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
          "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
          src.received(), src.lost(), src.duplicates(), src.late(), src.malformed(), src.dropped());
      out += "<td>" + when_html(src.last_seen_unix_nano(), v.now_unix_nano) + "</td>";
      if (src.silent()) {
        out += "<td><span class=\"bad\">silent</span></td>";
      } else if (src.closing()) {
        out += "<td>closed</td>";
      } else {
        out += "<td><span class=\"ok\">sending</span></td>";
      }
      out += "</tr>\n";
    }
    out += "</tbody>\n</table></div>\n";
  }
  if (s.ingest_size() > 0) {
    out += "<p class=\"note\">Ingest sockets: ";
    bool first = true;
    for (const auto& in : s.ingest()) {
      if (!first) out += " &middot; ";
      first = false;
      out += "<code>" + esc(in.socket()) + " " + esc(in.endpoint()) + "</code> " +
             fmt::format("{} received, {} malformed", in.received(), in.malformed());
    }
    out += "</p>\n";
  }
  out += "</section>\n";
}

void render_alerts(const status_view& v, std::string& out) {
  out += "<section id=\"alerts\">\n<h2>Alert sinks</h2>\n";
  if (!v.alerts) {
    out += "<p class=\"note\">Not available.</p>\n</section>\n";
    return;
  }
  if (v.alerts->empty()) {
    out += "<p class=\"note\">No alert sink is configured.</p>\n</section>\n";
    return;
  }
  out +=
      "<div class=\"scroll\"><table>\n<thead><tr><th>Sink</th><th>Type</th><th "
      "class=\"num\">Queued</th>"
      "<th class=\"num\">Sent</th><th class=\"num\">Failed</th><th class=\"num\">Retried</th>"
      "<th class=\"num\">Fell back</th><th class=\"num\">Deferred</th></tr></thead>\n<tbody>\n";
  for (const auto& a : *v.alerts) {
    out += "<tr><td><b>" + esc(a.name) + "</b></td><td>" + esc(a.type) + "</td>";
    out += fmt::format(
        "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num{}\">{}</td>"
        "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
        a.queue_depth, a.sent, a.failed > 0 ? " bad" : "", a.failed, a.retried, a.fell_back,
        a.deferred);
  }
  out += "</tbody>\n</table></div>\n</section>\n";
}

json breaker_json(const v1::BreakerStatus& b) {
  json j;
  j["name"] = b.name();
  j["run_id"] = b.run_id();
  j["scope"] = std::string(sdk::to_string(b.scope()));
  j["state"] = state_name(b.state());
  j["open"] = is_open(b);
  j["action"] = std::string(sdk::to_string(b.action()));
  j["severity"] = std::string(sdk::to_string(b.severity()));
  j["epoch"] = b.epoch();
  j["monitor"] = b.monitor();
  j["reason"] = b.reason();
  j["evidence"] = evidence_json(b.evidence());
  j["changed"] = format_time(b.changed_unix_nano());
  j["changed_unix_nano"] = b.changed_unix_nano();
  j["acknowledged"] = b.acknowledged();
  j["acknowledged_by"] = b.acknowledged_by();
  j["probation_until_unix_nano"] = b.probation_until_unix_nano();
  j["trips"] = b.trips();
  j["shadow"] = b.shadow();
  return j;
}

}  // namespace

std::string format_age(std::int64_t nanos) {
  if (nanos <= 0) return "-";
  std::int64_t s = nanos / 1'000'000'000;
  if (s < 60) return fmt::format("{}s", s);
  const std::int64_t d = s / 86400;
  const std::int64_t h = (s % 86400) / 3600;
  const std::int64_t m = (s % 3600) / 60;
  s %= 60;
  if (d > 0) return fmt::format("{}d {}h", d, h);
  if (h > 0) return fmt::format("{}h {}m", h, m);
  return fmt::format("{}m {}s", m, s);
}

std::vector<v1::BreakerStatus> sort_breakers_for_display(const v1::BreakerSnapshot& snapshot) {
  std::vector<v1::BreakerStatus> out(snapshot.breakers().begin(), snapshot.breakers().end());
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    if (state_rank(a.state()) != state_rank(b.state())) {
      return state_rank(a.state()) < state_rank(b.state());
    }
    if (a.shadow() != b.shadow()) return !a.shadow();  // enforced before shadow
    if (a.severity() != b.severity()) return a.severity() > b.severity();
    if (a.changed_unix_nano() != b.changed_unix_nano()) {
      return a.changed_unix_nano() > b.changed_unix_nano();
    }
    if (a.name() != b.name()) return a.name() < b.name();
    return a.run_id() < b.run_id();
  });
  return out;
}

std::string render_status_page(const status_view& view) {
  std::string out;
  out.reserve(16384);
  render_header(view, out);
  render_breakers(view, out);
  render_transitions(view, out);
  render_monitors(view, out);
  render_sources(view, out);
  render_alerts(view, out);
  out +=
      "<footer>\n<p class=\"note\">Read-only: nothing on this page or anywhere on this HTTP "
      "endpoint changes state. Machine-readable: <a href=\"/api/status\">/api/status</a> &middot; "
      "<a href=\"/metrics\">/metrics</a> &middot; <a href=\"/healthz\">/healthz</a> &middot; "
      "<a href=\"/readyz\">/readyz</a></p>\n</footer>\n</body>\n</html>\n";
  return out;
}

std::string render_status_json(const status_view& view) {
  json j;
  j["generated"] = format_time(view.now_unix_nano);
  j["generated_unix_nano"] = view.now_unix_nano;

  if (view.status) {
    const auto& s = *view.status;
    json d;
    d["version"] = s.version();
    d["started"] = format_time(s.started_unix_nano());
    d["started_unix_nano"] = s.started_unix_nano();
    d["uptime_seconds"] = s.started_unix_nano() != 0 && view.now_unix_nano > s.started_unix_nano()
                              ? (view.now_unix_nano - s.started_unix_nano()) / 1'000'000'000
                              : 0;
    d["config_source"] = s.config_source();
    d["events"] = s.events();
    d["malformed"] = s.malformed();
    d["dropped"] = s.dropped();
    d["duplicates"] = s.duplicates();
    d["queue_depth"] = s.queue_depth();
    d["gate_requests"] = s.gate_requests();
    d["reloads"] = s.reloads();
    d["last_reload_error"] = s.last_reload_error();
    j["daemon"] = std::move(d);
  } else {
    j["daemon"] = nullptr;
  }

  if (view.ready) {
    const auto& r = *view.ready;
    j["readiness"] = {{"ready", r.ready()},
                      {"plugins_loaded", r.plugins_loaded},
                      {"state_restored", r.state_restored},
                      {"ingest_flowing", r.ingest_flowing},
                      {"detail", r.detail}};
  } else {
    j["readiness"] = nullptr;
  }

  if (view.breakers) {
    json list = json::array();
    std::size_t open = 0;
    for (const auto& b : sort_breakers_for_display(*view.breakers)) {
      if (is_open(b) && !b.shadow()) ++open;
      list.push_back(breaker_json(b));
    }
    j["open_breakers"] = open;
    j["breakers"] = std::move(list);
  } else {
    j["open_breakers"] = nullptr;
    j["breakers"] = nullptr;
  }

  if (view.transitions) {
    json list = json::array();
    for (const auto& t : sorted_transitions(*view.transitions)) {
      json x;
      x["time"] = format_time(t.breaker().changed_unix_nano());
      x["from"] = state_name(t.previous());
      x["to"] = state_name(t.breaker().state());
      x["cause"] = t.cause();
      x["operator"] = t.operator_id();
      x["note"] = t.note();
      x["trigger_source"] = t.trigger_source();
      x["trigger_seq"] = t.trigger_seq();
      x["breaker"] = breaker_json(t.breaker());
      list.push_back(std::move(x));
    }
    j["transitions"] = std::move(list);
  } else {
    j["transitions"] = nullptr;
  }

  if (view.status) {
    json monitors = json::array();
    for (const auto& m : view.status->monitors()) {
      const std::uint64_t calls = monitor_calls(m);
      json x;
      x["name"] = m.name();
      x["plugin"] = m.plugin();
      x["version"] = m.version();
      x["state"] = m.state();
      x["events"] = m.events();
      x["gates"] = m.gates();
      x["ticks"] = m.ticks();
      x["errors"] = m.errors();
      x["last_error"] = m.last_error();
      x["mean_call_seconds"] =
          calls > 0 ? static_cast<double>(m.total_call_ns()) / static_cast<double>(calls) / 1e9
                    : 0.0;
      x["max_call_seconds"] = static_cast<double>(m.max_call_ns()) / 1e9;
      json gauges = json::object();
      for (const auto& g : m.gauges()) gauges[g.name()] = g.value();
      x["gauges"] = std::move(gauges);
      monitors.push_back(std::move(x));
    }
    j["monitors"] = std::move(monitors);
    json sources = json::array();
    for (const auto& src : view.status->sources()) {
      sources.push_back({{"source", src.source()},
                         {"run_id", src.run_id()},
                         {"received", src.received()},
                         {"lost", src.lost()},
                         {"duplicates", src.duplicates()},
                         {"late", src.late()},
                         {"restarts", src.restarts()},
                         {"heartbeats", src.heartbeats()},
                         {"malformed", src.malformed()},
                         {"dropped", src.dropped()},
                         {"monitor_dropped", src.monitor_dropped()},
                         {"last_seen", format_time(src.last_seen_unix_nano())},
                         {"last_seen_unix_nano", src.last_seen_unix_nano()},
                         {"silent", src.silent()},
                         {"closing", src.closing()}});
    }
    j["sources"] = std::move(sources);
    json ingest = json::array();
    for (const auto& in : view.status->ingest()) {
      ingest.push_back({{"endpoint", in.endpoint()},
                        {"socket", in.socket()},
                        {"received", in.received()},
                        {"malformed", in.malformed()}});
    }
    j["ingest"] = std::move(ingest);
  } else {
    j["monitors"] = nullptr;
    j["sources"] = nullptr;
    j["ingest"] = nullptr;
  }

  if (view.alerts) {
    json list = json::array();
    for (const auto& a : *view.alerts) {
      list.push_back({{"name", a.name},
                      {"type", a.type},
                      {"queue_depth", a.queue_depth},
                      {"sent", a.sent},
                      {"failed", a.failed},
                      {"retried", a.retried},
                      {"fell_back", a.fell_back},
                      {"deferred", a.deferred}});
    }
    j["alerts"] = std::move(list);
  } else {
    j["alerts"] = nullptr;
  }
  j["problems"] = view.problems;
  // Producers name things freely; invalid UTF-8 becomes U+FFFD rather than an exception.
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace loopwarden::sidecar::detail
