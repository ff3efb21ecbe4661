#include "audit_command.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ostream>

#include <loopwarden/core/audit.hpp>
#include <loopwarden/core/config.hpp>
#include <loopwarden/sidecar/cli.hpp>

namespace loopwarden::sidecar::detail {

namespace {

// The database the options name: --db, or the state store in the config's state directory.
std::optional<std::filesystem::path> database_of(const audit_options& o, std::ostream& err,
                                                 std::string_view command) {
  if (!o.db.empty()) return std::filesystem::path(o.db);
  auto cfg = o.config_file.empty() ? core::default_config() : core::load_config_file(o.config_file);
  if (!cfg.ok()) {
    err << "loopwarden " << command << ": " << cfg.error().message() << "\n";
    return std::nullopt;
  }
  if (!o.state_dir.empty()) core::override_state_dir(*cfg, o.state_dir);
  return core::state_database_path(*cfg);
}

// "SEQ:HASH" → an anchor; nullopt (with the reason in `why`) when malformed.
std::optional<core::audit_anchor> parse_anchor(const std::string& text, std::string& why) {
  const auto colon = text.find(':');
  if (colon == std::string::npos) {
    why = "expected SEQ:HASH (e.g. 42:3f9a...), got \"" + text + "\"";
    return std::nullopt;
  }
  core::audit_anchor a;
  const char* first = text.data();
  const char* last = text.data() + colon;
  auto [ptr, ec] = std::from_chars(first, last, a.seq);
  if (ec != std::errc() || ptr != last) {
    why = "the sequence number before ':' is not a non-negative integer: \"" +
          text.substr(0, colon) + "\"";
    return std::nullopt;
  }
  a.hash = text.substr(colon + 1);
  return a;
}

}  // namespace

int run_audit_verify(const audit_options& o, std::ostream& out, std::ostream& err) {
  const auto db = database_of(o, err, "audit verify");
  if (!db) return exit_error;
  std::optional<core::audit_anchor> anchor;
  if (!o.expect_head.empty()) {
    std::string why;
    anchor = parse_anchor(o.expect_head, why);
    if (!anchor) {
      err << "loopwarden audit verify: --expect-head: " << why << "\n";
      return exit_error;
    }
  }
  auto report = core::verify_audit(*db, anchor);
  if (!report.ok()) {
    err << "loopwarden audit verify: " << report.error().message() << "\n";
    return exit_error;
  }
  if (o.json) {
    nlohmann::json j = {{"database", db->string()},
                        {"intact", report->intact()},
                        {"records", report->count},
                        {"head_seq", report->head_seq},
                        {"head_hash", report->head_hash}};
    if (report->fault) {
      j["fault"] = {{"kind", std::string(core::to_string(report->fault->kind))},
                    {"seq", report->fault->seq},
                    {"position", report->fault->position},
                    {"message", report->fault->message}};
    }
    out << j.dump() << "\n";
    return report->intact() ? exit_ok : exit_found;
  }
  if (report->intact()) {
    out << fmt::format("ok: {}: {} audit record{}, chain intact\n", db->string(), report->count,
                       report->count == 1 ? "" : "s");
    out << fmt::format("head: {}:{}\n", report->head_seq, report->head_hash);
    if (!anchor) {
      out << "(records cut off the end are only detected against a head kept elsewhere: pass it "
             "as --expect-head SEQ:HASH)\n";
    }
    return exit_ok;
  }
  const auto& f = *report->fault;
  out << fmt::format("BROKEN: {}: first bad record: seq {} (position {}): {}\n", db->string(), f.seq,
                     f.position, core::to_string(f.kind));
  out << "  " << f.message << "\n";
  return exit_found;
}

int run_audit_export(const audit_options& o, std::ostream& out, std::ostream& err) {
  const auto db = database_of(o, err, "audit export");
  if (!db) return exit_error;
  std::ofstream file;
  std::ostream* target = &out;
  if (!o.out_file.empty()) {
    file.open(o.out_file, std::ios::out | std::ios::trunc);
    if (!file) {
      err << "loopwarden audit export: can't write '" << o.out_file << "'\n";
      return exit_error;
    }
    target = &file;
  }
  if (auto s = core::export_audit(*db, *target); !s.ok()) {
    err << "loopwarden audit export: " << s.message() << "\n";
    return exit_error;
  }
  target->flush();
  if (!*target) {
    err << "loopwarden audit export: writing failed\n";
    return exit_error;
  }
  return exit_ok;
}

}  // namespace loopwarden::sidecar::detail
