#include "metrics_text.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>

#include <loopwarden/core/metrics_buckets.hpp>
#include <loopwarden/types.hpp>

namespace loopwarden::sidecar::detail {
namespace {

struct label {
  std::string_view name;
  std::string_view value;
};

// Writes families in the order they are declared. Every sample of a family follows its HELP and
// TYPE lines without interruption: the text format requires a family's samples to be contiguous.
class writer {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    // HELP text escapes only backslash and newline.
    for (char c : to_valid_utf8(help)) {
      if (c == '\\') {
        out_ += "\\\\";
      } else if (c == '\n') {
        out_ += "\\n";
      } else {
        out_ += c;
      }
    }
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  void sample(std::string_view name, std::initializer_list<label> labels, std::string_view value) {
    out_ += name;
    if (labels.size() > 0) {
      out_ += '{';
      bool first = true;
      for (const auto& l : labels) {
        if (!first) out_ += ',';
        first = false;
        out_ += l.name;
        out_ += "=\"";
        out_ += escape_label_value(l.value);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  void sample(std::string_view name, std::initializer_list<label> labels, std::uint64_t value) {
    sample(name, labels, std::string_view(std::to_string(value)));
  }
  void sample(std::string_view name, std::initializer_list<label> labels, double value) {
    sample(name, labels, std::string_view(format_sample_value(value)));
  }
  void flag(std::string_view name, std::initializer_list<label> labels, bool value) {
    sample(name, labels, std::string_view(value ? "1" : "0"));
  }

  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

double ns_to_seconds(std::int64_t ns) { return static_cast<double>(ns) / 1e9; }
double ns_to_seconds(std::uint64_t ns) { return static_cast<double>(ns) / 1e9; }

void render_daemon(const v1::SidecarStatus& s, writer& w) {
  w.family("loopwarden_build_info", "gauge", "Always 1; the version of the running daemon.");
  w.sample("loopwarden_build_info", {{"version", s.version()}}, std::uint64_t{1});
  if (s.started_unix_nano() != 0) {
    w.family("loopwarden_start_time_seconds", "gauge",
             "When the daemon started, in seconds since the Unix epoch.");
    w.sample("loopwarden_start_time_seconds", {}, ns_to_seconds(s.started_unix_nano()));
  }
  w.family("loopwarden_events_total", "counter", "Envelopes evaluated by the engine.");
  w.sample("loopwarden_events_total", {}, s.events());
  w.family("loopwarden_malformed_messages_total", "counter",
           "Messages dropped as malformed, all ingest endpoints.");
  w.sample("loopwarden_malformed_messages_total", {}, s.malformed());
  w.family("loopwarden_dropped_events_total", "counter",
           "Envelopes dropped because the queue between ingest and the monitors was full.");
  w.sample("loopwarden_dropped_events_total", {}, s.dropped());
  w.family("loopwarden_duplicate_events_total", "counter",
           "Envelopes dropped because their sequence number was already seen.");
  w.sample("loopwarden_duplicate_events_total", {}, s.duplicates());
  w.family("loopwarden_event_queue_depth", "gauge",
           "Envelopes waiting between ingest and the monitors.");
  w.sample("loopwarden_event_queue_depth", {}, s.queue_depth());
  w.family("loopwarden_gate_requests_total", "counter", "Synchronous gate requests received.");
  w.sample("loopwarden_gate_requests_total", {}, s.gate_requests());
  w.family("loopwarden_config_reloads_total", "counter", "Successful configuration reloads.");
  w.sample("loopwarden_config_reloads_total", {}, s.reloads());
  w.family("loopwarden_config_last_reload_failed", "gauge",
           "1 when the last reload was refused (the previous configuration is still running).");
  w.flag("loopwarden_config_last_reload_failed", {}, !s.last_reload_error().empty());
}

void render_ingest(const v1::SidecarStatus& s, writer& w) {
  if (s.ingest_size() == 0) return;
  w.family("loopwarden_ingest_messages_total", "counter", "Messages read from an ingest socket.");
  for (const auto& in : s.ingest()) {
    w.sample("loopwarden_ingest_messages_total",
             {{"endpoint", in.endpoint()}, {"socket", in.socket()}}, in.received());
  }
  w.family("loopwarden_ingest_malformed_messages_total", "counter",
           "Messages from an ingest socket dropped as malformed.");
  for (const auto& in : s.ingest()) {
    w.sample("loopwarden_ingest_malformed_messages_total",
             {{"endpoint", in.endpoint()}, {"socket", in.socket()}}, in.malformed());
  }
}

void render_sources(const v1::SidecarStatus& s, writer& w) {
  if (s.sources_size() == 0) return;
  // One counter family per SourceStatus field, labelled by source only: the run id changes over a
  // source's life and would split its counters into short series.
  struct counter_field {
    const char* name;
    const char* help;
    std::uint64_t (v1::SourceStatus::*get)() const;
  };
  static constexpr counter_field counters[] = {
      {"loopwarden_source_received_events_total", "Envelopes accepted from a source.",
       &v1::SourceStatus::received},
      {"loopwarden_source_lost_events_total",
       "Sequence numbers a source skipped that were never seen.", &v1::SourceStatus::lost},
      {"loopwarden_source_duplicate_events_total",
       "Envelopes of a source dropped because their sequence number was already seen.",
       &v1::SourceStatus::duplicates},
      {"loopwarden_source_late_events_total",
       "Envelopes of a source that arrived below its highest sequence number.",
       &v1::SourceStatus::late},
      {"loopwarden_source_restarts_total", "Times a source started again from sequence 1.",
       &v1::SourceStatus::restarts},
      {"loopwarden_source_heartbeats_total", "Heartbeats received from a source.",
       &v1::SourceStatus::heartbeats},
      {"loopwarden_source_malformed_messages_total",
       "Messages naming a source that were dropped as malformed.", &v1::SourceStatus::malformed},
      {"loopwarden_source_dropped_events_total",
       "Envelopes of a source dropped because the queue was full.", &v1::SourceStatus::dropped},
      {"loopwarden_source_monitor_dropped_events_total",
       "Envelopes of a source a monitor did not evaluate (its queue was full, or it was hung or "
       "disabled), once per monitor.",
       &v1::SourceStatus::monitor_dropped},
  };
  for (const auto& f : counters) {
    w.family(f.name, "counter", f.help);
    for (const auto& src : s.sources())
      w.sample(f.name, {{"source", src.source()}}, (src.*f.get)());
  }
  w.family("loopwarden_source_last_seen_timestamp_seconds", "gauge",
           "When a source was last heard from, in seconds since the Unix epoch.");
  for (const auto& src : s.sources()) {
    w.sample("loopwarden_source_last_seen_timestamp_seconds", {{"source", src.source()}},
             ns_to_seconds(src.last_seen_unix_nano()));
  }
  w.family("loopwarden_source_silent", "gauge",
           "1 when a source has been silent longer than the silence timeout.");
  for (const auto& src : s.sources()) {
    w.flag("loopwarden_source_silent", {{"source", src.source()}}, src.silent());
  }
  w.family("loopwarden_source_closing", "gauge", "1 when a source has said goodbye.");
  for (const auto& src : s.sources()) {
    w.flag("loopwarden_source_closing", {{"source", src.source()}}, src.closing());
  }
}

void render_monitors(const v1::SidecarStatus& s, writer& w) {
  if (s.monitors_size() == 0) return;
  w.family("loopwarden_monitor_info", "gauge",
           "Always 1; the plugin and version behind a monitor instance.");
  for (const auto& m : s.monitors()) {
    w.sample("loopwarden_monitor_info",
             {{"monitor", m.name()}, {"plugin", m.plugin()}, {"version", m.version()}},
             std::uint64_t{1});
  }
  w.family("loopwarden_monitor_active", "gauge",
           "1 while a monitor is active; 0 once it has been disabled.");
  for (const auto& m : s.monitors()) {
    w.flag("loopwarden_monitor_active", {{"monitor", m.name()}}, m.state() == "active");
  }
  w.family("loopwarden_monitor_calls_total", "counter",
           "Calls of a monitor, by kind: event (on_event), gate (on_gate), tick (on_tick).");
  for (const auto& m : s.monitors()) {
    w.sample("loopwarden_monitor_calls_total", {{"monitor", m.name()}, {"call", "event"}},
             m.events());
    w.sample("loopwarden_monitor_calls_total", {{"monitor", m.name()}, {"call", "gate"}},
             m.gates());
    w.sample("loopwarden_monitor_calls_total", {{"monitor", m.name()}, {"call", "tick"}},
             m.ticks());
  }
  w.family("loopwarden_monitor_errors_total", "counter",
           "Calls of a monitor that threw or failed.");
  for (const auto& m : s.monitors()) {
    w.sample("loopwarden_monitor_errors_total", {{"monitor", m.name()}}, m.errors());
  }
  w.family("loopwarden_monitor_hung", "gauge",
           "1 while a monitor is inside a call that has run past its deadline.");
  for (const auto& m : s.monitors()) {
    w.flag("loopwarden_monitor_hung", {{"monitor", m.name()}}, m.state() == "hung");
  }
  w.family("loopwarden_monitor_hangs_total", "counter",
           "Calls of a monitor that ran past its deadline (the watchdog fired).");
  for (const auto& m : s.monitors()) {
    w.sample("loopwarden_monitor_hangs_total", {{"monitor", m.name()}}, m.hangs());
  }
  w.family("loopwarden_monitor_dropped_events_total", "counter",
           "Events not delivered to a monitor: its queue was full (overflow: drop), or it was "
           "hung or disabled.");
  for (const auto& m : s.monitors()) {
    w.sample("loopwarden_monitor_dropped_events_total", {{"monitor", m.name()}}, m.dropped());
  }
  w.family("loopwarden_monitor_queue_depth", "gauge",
           "Events and calls waiting for a monitor's worker.");
  for (const auto& m : s.monitors()) {
    w.sample("loopwarden_monitor_queue_depth", {{"monitor", m.name()}}, m.queue_depth());
  }
  w.family("loopwarden_monitor_call_max_seconds", "gauge",
           "The longest single call of a monitor since it was loaded.");
  for (const auto& m : s.monitors()) {
    w.sample("loopwarden_monitor_call_max_seconds", {{"monitor", m.name()}},
             ns_to_seconds(m.max_call_ns()));
  }

  bool any_histogram = false;
  for (const auto& m : s.monitors()) any_histogram = any_histogram || m.call_ns_buckets_size() > 0;
  if (any_histogram) {
    w.family("loopwarden_monitor_call_seconds", "histogram",
             "Time a monitor spent in each call (on_event, on_gate, on_tick).");
    const auto& bounds = core::monitor_call_bucket_bounds_ns;
    for (const auto& m : s.monitors()) {
      // A monitor without buckets (an engine that does not count them) gets no histogram rather
      // than one of zeros, which would contradict its call counters.
      if (m.call_ns_buckets_size() == 0) continue;
      // The status carries per-bucket counts; Prometheus buckets are cumulative. Entries beyond the
      // known bounds (a newer engine with more buckets) can only be counted in +Inf.
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < bounds.size(); ++i) {
        if (static_cast<int>(i) < m.call_ns_buckets_size()) {
          cumulative += m.call_ns_buckets(static_cast<int>(i));
        }
        const std::string le = format_sample_value(static_cast<double>(bounds[i]) / 1e9);
        w.sample("loopwarden_monitor_call_seconds_bucket", {{"monitor", m.name()}, {"le", le}},
                 cumulative);
      }
      for (int i = static_cast<int>(bounds.size()); i < m.call_ns_buckets_size(); ++i) {
        cumulative += m.call_ns_buckets(i);
      }
      w.sample("loopwarden_monitor_call_seconds_bucket", {{"monitor", m.name()}, {"le", "+Inf"}},
               cumulative);
      w.sample("loopwarden_monitor_call_seconds_sum", {{"monitor", m.name()}},
               ns_to_seconds(m.total_call_ns()));
      w.sample("loopwarden_monitor_call_seconds_count", {{"monitor", m.name()}}, cumulative);
    }
  }

  bool any_gauge = false;
  for (const auto& m : s.monitors()) any_gauge = any_gauge || m.gauges_size() > 0;
  if (any_gauge) {
    w.family("loopwarden_monitor_value", "gauge",
             "A named value a monitor publishes (its meaning is in the monitor's documentation).");
    for (const auto& m : s.monitors()) {
      for (const auto& g : m.gauges()) {
        w.sample("loopwarden_monitor_value", {{"monitor", m.name()}, {"name", g.name()}},
                 g.value());
      }
    }
  }
}

void render_breakers(const v1::BreakerSnapshot& snap, writer& w) {
  if (snap.breakers_size() == 0) return;
  // One-hot over the states, the idiom for an enum in Prometheus: `loopwarden_breaker_state
  // {state="open"} == 1` selects open breakers, and a change of state is a change of series value
  // rather than of series identity for the other states.
  static constexpr v1::BreakerState states[] = {v1::BREAKER_STATE_CLOSED, v1::BREAKER_STATE_OPEN,
                                                v1::BREAKER_STATE_HALF_OPEN,
                                                v1::BREAKER_STATE_FORCED_OPEN};
  w.family("loopwarden_breaker_state", "gauge",
           "1 for the state a breaker is in (closed, open, half_open, forced_open), 0 for the "
           "others.");
  for (const auto& b : snap.breakers()) {
    for (auto st : states) {
      w.flag("loopwarden_breaker_state",
             {{"breaker", b.name()}, {"run_id", b.run_id()}, {"state", sdk::to_string(st)}},
             b.state() == st);
    }
  }
  w.family("loopwarden_breaker_open", "gauge",
           "1 while a breaker is open or forced open (hosts must act on it), else 0.");
  for (const auto& b : snap.breakers()) {
    w.flag("loopwarden_breaker_open", {{"breaker", b.name()}, {"run_id", b.run_id()}},
           b.state() == v1::BREAKER_STATE_OPEN || b.state() == v1::BREAKER_STATE_FORCED_OPEN);
  }
  w.family("loopwarden_breaker_acknowledged", "gauge",
           "1 when an operator has acknowledged the open breaker.");
  for (const auto& b : snap.breakers()) {
    w.flag("loopwarden_breaker_acknowledged", {{"breaker", b.name()}, {"run_id", b.run_id()}},
           b.acknowledged());
  }
  w.family("loopwarden_breaker_shadow", "gauge",
           "1 for a shadow breaker (a monitor on trial: recorded and alerted, never enforced).");
  for (const auto& b : snap.breakers()) {
    w.flag("loopwarden_breaker_shadow", {{"breaker", b.name()}, {"run_id", b.run_id()}},
           b.shadow());
  }
  w.family("loopwarden_breaker_epoch", "gauge",
           "A breaker's epoch: grows by one with every change of the breaker.");
  for (const auto& b : snap.breakers()) {
    w.sample("loopwarden_breaker_epoch", {{"breaker", b.name()}, {"run_id", b.run_id()}},
             b.epoch());
  }
  w.family("loopwarden_breaker_trips_total", "counter", "Times a breaker has tripped.");
  for (const auto& b : snap.breakers()) {
    w.sample("loopwarden_breaker_trips_total", {{"breaker", b.name()}, {"run_id", b.run_id()}},
             std::uint64_t{b.trips()});
  }
  w.family("loopwarden_breaker_last_change_timestamp_seconds", "gauge",
           "When a breaker last changed, in seconds since the Unix epoch.");
  for (const auto& b : snap.breakers()) {
    w.sample("loopwarden_breaker_last_change_timestamp_seconds",
             {{"breaker", b.name()}, {"run_id", b.run_id()}}, ns_to_seconds(b.changed_unix_nano()));
  }
  w.family("loopwarden_breaker_info", "gauge",
           "Always 1; a breaker's scope, the action hosts take while it is open, its severity and "
           "the monitor (or operator) behind its last change.");
  for (const auto& b : snap.breakers()) {
    const std::string scope = std::string(sdk::to_string(b.scope()));
    const std::string action = std::string(sdk::to_string(b.action()));
    const std::string severity = std::string(sdk::to_string(b.severity()));
    w.sample("loopwarden_breaker_info",
             {{"breaker", b.name()},
              {"run_id", b.run_id()},
              {"scope", scope},
              {"action", action},
              {"severity", severity},
              {"monitor", b.monitor()}},
             std::uint64_t{1});
  }
}

void render_alerts(const std::vector<alert_sink_stats>& sinks, writer& w) {
  if (sinks.empty()) return;
  w.family("loopwarden_alert_queue_depth", "gauge", "Alerts waiting to be sent by a sink.");
  for (const auto& a : sinks) {
    w.sample("loopwarden_alert_queue_depth", {{"sink", a.name}, {"type", a.type}}, a.queue_depth);
  }
  struct counter_field {
    const char* name;
    const char* help;
    std::uint64_t alert_sink_stats::*field;
  };
  static constexpr counter_field counters[] = {
      {"loopwarden_alerts_sent_total", "Alerts a sink delivered.", &alert_sink_stats::sent},
      {"loopwarden_alerts_failed_total", "Alerts a sink gave up on after its retries.",
       &alert_sink_stats::failed},
      {"loopwarden_alert_retries_total", "Delivery attempts a sink retried.",
       &alert_sink_stats::retried},
      {"loopwarden_alerts_fell_back_total",
       "Alerts a sink failed to deliver and handed to its fallback sink.",
       &alert_sink_stats::fell_back},
      {"loopwarden_alerts_deferred_total",
       "Alerts a sink held back (rate limit, quiet hours, deduplication).",
       &alert_sink_stats::deferred},
  };
  for (const auto& f : counters) {
    w.family(f.name, "counter", f.help);
    for (const auto& a : sinks) w.sample(f.name, {{"sink", a.name}, {"type", a.type}}, a.*f.field);
  }
}

}  // namespace

std::string to_valid_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  auto cont = [&](std::size_t k, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return i + k < n && p[i + k] >= lo && p[i + k] <= hi;
  };
  while (i < n) {
    const unsigned char c = p[i];
    std::size_t len = 0;  // 0: invalid
    if (c < 0x80) {
      len = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = cont(1) ? 2 : 0;
    } else if (c == 0xE0) {
      len = cont(1, 0xA0) && cont(2) ? 3 : 0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
      len = cont(1) && cont(2) ? 3 : 0;
    } else if (c == 0xED) {
      len = cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;  // no UTF-16 surrogates
    } else if (c == 0xF0) {
      len = cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
    } else if (c >= 0xF1 && c <= 0xF3) {
      len = cont(1) && cont(2) && cont(3) ? 4 : 0;
    } else if (c == 0xF4) {
      len = cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
    }
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(text.substr(i, len));
      i += len;
    }
  }
  return out;
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : to_valid_utf8(value)) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_sample_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // fmt's shortest round-trip form switches to an exponent below 1e-4, as Go's 'g' formatting
  // (and so Prometheus' own client libraries) does: le="1e-06", le="0.0001".
  return fmt::format("{}", value);
}

std::string render_metrics_text(const metrics_input& input) {
  writer w;
  if (input.status != nullptr) {
    render_daemon(*input.status, w);
    render_ingest(*input.status, w);
    render_sources(*input.status, w);
    render_monitors(*input.status, w);
  }
  if (input.breakers != nullptr) render_breakers(*input.breakers, w);
  if (input.alerts != nullptr) render_alerts(*input.alerts, w);
  return w.take();
}

}  // namespace loopwarden::sidecar::detail
