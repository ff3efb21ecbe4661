#include "operator_commands.hpp"

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>

#include <optional>
#include <ostream>

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

void print_status(const v1::ControlResponse& r, std::ostream& out) {
  const auto& s = r.sidecar();
  out << fmt::format("loopwarden {} serving since {} ({})\n", s.version(),
                     format_time(s.started_unix_nano()), s.config_source());
  out << fmt::format(
      "events {}  malformed {}  dropped {}  duplicates {}  queued {}  gate requests {}\n",
      s.events(), s.malformed(), s.dropped(), s.duplicates(), s.queue_depth(), s.gate_requests());
  if (!s.last_reload_error().empty())
    out << "last reload refused: " << s.last_reload_error() << "\n";
  out << "\nBREAKERS\n";
  if (r.snapshot().breakers_size() == 0) out << "  (none yet)\n";
  for (const auto& b : r.snapshot().breakers()) {
    std::string state = upper(sdk::to_string(b.state()));
    if (b.acknowledged()) state += " (acked by " + b.acknowledged_by() + ")";
    out << fmt::format("  {:<28} {:<12} {:<24} {:<16} epoch {:<3} {}\n", b.name(),
                       b.run_id().empty() ? "(global)" : b.run_id(), state, action_name(b.action()),
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
    if (!m.last_error().empty()) out << "      last error: " << m.last_error() << "\n";
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
      print_status(*r, out);
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
