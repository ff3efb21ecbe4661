#include "operator_commands.hpp"

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <optional>
#include <ostream>
#include <vector>

#include <loopwarden/core/config.hpp>
#include <loopwarden/sidecar/cli.hpp>
#include <loopwarden/sidecar/control_client.hpp>
#include <loopwarden/sidecar/transition_format.hpp>
#include <loopwarden/types.hpp>

namespace loopwarden::sidecar::detail {

namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  return out;
}

std::string action_name(v1::BreakerAction a) {
  auto v = sdk::from_proto(a);
  return v ? std::string(sdk::to_string(*v)) : "-";
}

// ANSI colour for a breaker state, when colours are on.
struct palette {
  bool on = false;
  std::string state(v1::BreakerState s, std::string text) const {
    if (!on) return text;
    const char* code = "";
    switch (s) {
      case v1::BREAKER_STATE_OPEN:
      case v1::BREAKER_STATE_FORCED_OPEN:
        code = "\x1b[1;31m";  // bold red
        break;
      case v1::BREAKER_STATE_HALF_OPEN:
        code = "\x1b[33m";  // yellow
        break;
      case v1::BREAKER_STATE_CLOSED:
        code = "\x1b[32m";  // green
        break;
      default:
        return text;
    }
    return code + text + "\x1b[0m";
  }
};

bool is_open_state(v1::BreakerState s) {
  return s == v1::BREAKER_STATE_OPEN || s == v1::BREAKER_STATE_FORCED_OPEN;
}

void print_status(const v1::ControlResponse& r, std::ostream& out, const palette& p) {
  const auto& s = r.sidecar();
  out << fmt::format("loopwarden {} serving since {} ({})\n", s.version(),
                     format_time(s.started_unix_nano()), s.config_source());
  out << fmt::format(
      "events {}  malformed {}  dropped {}  duplicates {}  queued {}  gate requests {}\n",
      s.events(), s.malformed(), s.dropped(), s.duplicates(), s.queue_depth(), s.gate_requests());
  if (!s.last_reload_error().empty())
    out << "last reload refused: " << s.last_reload_error() << "\n";
  if (!s.state_store().empty()) {
    out << fmt::format("state store {}  audit head {}:{}{}\n", s.state_store(), s.audit_head_seq(),
                       s.audit_head_hash().substr(0, 16),
                       s.store_errors() > 0 ? fmt::format("  STORE ERRORS {} (durability degraded)",
                                                          s.store_errors())
                                            : "");
  }
  if (s.approvals_pending() > 0) {
    out << fmt::format("approvals pending: {} (loopwarden approvals)\n", s.approvals_pending());
  }
  out << "\nBREAKERS\n";
  if (r.snapshot().breakers_size() == 0) out << "  (none yet)\n";
  // Open ones first: that is what the reader is looking for.
  std::vector<const v1::BreakerStatus*> order;
  for (const auto& b : r.snapshot().breakers()) order.push_back(&b);
  std::stable_partition(order.begin(), order.end(),
                        [](const v1::BreakerStatus* b) { return is_open_state(b->state()); });
  for (const auto* bp : order) {
    const auto& b = *bp;
    std::string state = upper(sdk::to_string(b.state()));
    if (b.acknowledged()) state += " (acked by " + b.acknowledged_by() + ")";
    if (b.shadow()) state += " [shadow]";
    out << fmt::format("  {:<28} {:<12} {} {:<16} epoch {:<3} {}\n", b.name(),
                       b.run_id().empty() ? "(global)" : b.run_id(),
                       p.state(b.state(), fmt::format("{:<24}", state)), action_name(b.action()),
                       b.epoch(), b.reason().empty() ? "" : b.monitor() + ": " + b.reason());
  }
  out << "\nSOURCES\n";
  if (s.sources_size() == 0) out << "  (none yet)\n";
  for (const auto& src : s.sources()) {
    out << fmt::format("  {:<28} run {:<12} received {:<8} lost {:<5} dup {:<4} last seen {}{}\n",
                       src.source(), src.run_id(), src.received(), src.lost(), src.duplicates(),
                       format_time(src.last_seen_unix_nano()),
                       src.silent() ? "  SILENT" : (src.closing() ? "  closed" : ""));
  }
  out << "\nMONITORS\n";
  for (const auto& m : s.monitors()) {
    const double mean_us = m.events() + m.gates() + m.ticks() > 0
                               ? static_cast<double>(m.total_call_ns()) / 1000.0 /
                                     static_cast<double>(m.events() + m.gates() + m.ticks())
                               : 0.0;
    out << fmt::format("  {:<20} {} {:<8} {:<8} events {:<8} errors {:<4} mean {:.1f} us\n",
                       m.name(), m.plugin(), m.version(), m.state(), m.events(), m.errors(),
                       mean_us);
    if (m.dropped() > 0 || m.hangs() > 0 || m.queue_depth() > 0) {
      out << fmt::format("      queued {}  dropped {}  hangs {}\n", m.queue_depth(), m.dropped(),
                         m.hangs());
    }
    if (!m.last_error().empty()) out << "      last error: " << m.last_error() << "\n";
  }
  if (s.alert_sinks_size() > 0) {
    out << "\nALERT SINKS\n";
    for (const auto& a : s.alert_sinks()) {
      out << fmt::format(
          "  {:<20} {:<13} sent {:<6} failed {:<4} retried {:<4} fell back {:<4} "
          "queued {}\n",
          a.name(), a.type(), a.sent(), a.failed(), a.retried(), a.fell_back(), a.queue_depth());
    }
  }
}

void print_approvals(const v1::ControlResponse& r, std::ostream& out) {
  if (r.approvals_size() == 0) {
    out << "no approvals" << (r.message().empty() ? "" : ": " + r.message()) << "\n";
    return;
  }
  for (const auto& a : r.approvals()) {
    out << fmt::format("{}  {:<8}  {}  run {}  by {}  (monitor {})\n", a.id(), upper(a.state()),
                       format_time(a.created_unix_nano()), a.run_id().empty() ? "-" : a.run_id(),
                       a.requested_by().empty() ? "-" : a.requested_by(), a.monitor());
    out << "    " << a.summary() << "\n";
    if (!a.decided_by().empty()) {
      out << fmt::format("    {} by {} at {}: {}\n", a.state(), a.decided_by(),
                         format_time(a.decided_unix_nano()), a.reason());
    } else if (a.state() == "pending") {
      out << fmt::format(
          "    loopwarden approve {} --reason \"...\"   |   loopwarden deny {} "
          "--reason \"...\"\n",
          a.id(), a.id());
    }
  }
}

void print_explain(const v1::ControlResponse& r, std::ostream& out) {
  if (r.snapshot().breakers_size() == 0) return;
  const auto& b = r.snapshot().breakers(0);
  out << fmt::format("{} {}{}\n", b.name(), upper(sdk::to_string(b.state())),
                     b.run_id().empty() ? "" : " (run " + b.run_id() + ")");
  out << fmt::format("  host action:  {}\n", action_name(b.action()));
  out << fmt::format("  tripped by:   {}\n", b.monitor().empty() ? "-" : b.monitor());
  out << fmt::format("  reason:       {}\n", b.reason().empty() ? "-" : b.reason());
  out << fmt::format("  since:        {} (epoch {}, {} trip(s) in total)\n",
                     format_time(b.changed_unix_nano()), b.epoch(), b.trips());
  if (b.acknowledged()) out << "  acknowledged: by " << b.acknowledged_by() << "\n";
  if (b.evidence_size() > 0) {
    out << "  evidence:\n";
    for (const auto& e : b.evidence()) out << fmt::format("    {:<20} {}\n", e.key(), e.value());
  }
  for (const auto& m : r.sidecar().monitors()) {
    if (m.name() != b.monitor() || m.gauges_size() == 0) continue;
    out << "  " << m.name() << " gauges now:\n";
    for (const auto& g : m.gauges()) out << fmt::format("    {:<20} {}\n", g.name(), g.value());
  }
  out << "\ntimeline:\n";
  for (const auto& t : r.history()) out << "  " << format_transition_text(t);
  out << "\nto reset once the cause is fixed: loopwarden reset " << b.name()
      << (b.run_id().empty() ? "" : " --run " + b.run_id()) << " --reason \"...\"\n";
}

}  // namespace

int run_operator_command(const operator_options& options, v1::ControlRequest request,
                         std::ostream& out, std::ostream& err) {
  std::string endpoint = options.control;
  if (endpoint.empty()) {
    auto cfg = options.config_file.empty() ? core::default_config()
                                           : core::load_config_file(options.config_file);
    if (!cfg.ok()) {
      err << "loopwarden: " << cfg.error().message() << "\n";
      return exit_error;
    }
    if (!options.state_dir.empty()) core::override_state_dir(*cfg, options.state_dir);
    endpoint = cfg->transport.control;
  }
  std::optional<curve_credentials> curve;
  if (!options.server_key.empty() || !options.secret_key_file.empty()) {
    if (options.server_key.empty() || options.secret_key_file.empty()) {
      err << "loopwarden: CURVE needs both --server-key and --key-file\n";
      return exit_error;
    }
    curve.emplace();
    curve->server_public_key = options.server_key;
    if (options.server_key.size() != 40) {
      auto k = read_key_file(options.server_key);
      if (!k.ok()) {
        err << "loopwarden: " << k.error().message() << "\n";
        return exit_error;
      }
      curve->server_public_key = *k;
    }
    auto secret = read_key_file(options.secret_key_file);
    if (!secret.ok()) {
      err << "loopwarden: " << secret.error().message() << "\n";
      return exit_error;
    }
    curve->secret_key = *secret;
  }
  auto r = send_control(endpoint, request, std::chrono::milliseconds(options.timeout_ms),
                        curve ? &*curve : nullptr);
  if (!r.ok()) {
    err << "loopwarden: " << r.error().message() << "\n";
    return exit_error;
  }
  if (options.json) {
    std::string json;
    google::protobuf::util::JsonPrintOptions jo;
    jo.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(*r, &json, jo);
    out << json << "\n";
    return r->ok() ? exit_ok : exit_found;
  }
  if (!r->ok()) {
    err << "loopwarden: " << r->error() << "\n";
    return exit_found;
  }
  switch (request.command_case()) {
    case v1::ControlRequest::kStatus:
      print_status(*r, out, palette{options.color});
      break;
    case v1::ControlRequest::kApprovals:
      print_approvals(*r, out);
      break;
    case v1::ControlRequest::kExplain:
      print_explain(*r, out);
      break;
    default:
      out << r->message() << "\n";
      for (const auto& t : r->history()) out << format_transition_text(t);
      break;
  }
  return exit_ok;
}

}  // namespace loopwarden::sidecar::detail
