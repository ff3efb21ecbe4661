#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>

using namespace loopwarden;

namespace {

constexpr const char* workspace = "/home/dev/project";

std::string yaml_for(const std::string& monitor_config) {
  return "version: 1\nplugin_paths: [\"" + std::string(LOOPWARDEN_BINARY_DIR) +
         "/lib/loopwarden/plugins\"]\nmonitors:\n  - name: gate\n    plugin: "
         "destructive_action\n    config: " +
         monitor_config + "\n";
}

std::unique_ptr<core::engine> engine_with(const std::string& monitor_config = "{}") {
  const std::string yaml = yaml_for(monitor_config);
  auto cfg = core::parse_config(yaml, "gate.yaml");
  INFO(yaml);
  REQUIRE(cfg.ok());
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  auto e = core::engine::create(*cfg, opts);
  INFO((e.ok() ? std::string() : e.error().message()));
  REQUIRE(e.ok());
  return std::move(*e);
}

// The error configure() gives for `monitor_config`, or "" when it is accepted.
std::string config_error(const std::string& monitor_config) {
  auto cfg = core::parse_config(yaml_for(monitor_config), "gate.yaml");
  if (!cfg.ok()) return cfg.error().message();
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  auto e = core::engine::create(*cfg, opts);
  return e.ok() ? std::string() : e.error().message();
}

v1::GateRequest shell_request(const std::string& command, const std::string& session = "s1") {
  v1::GateRequest r;
  r.set_request_id("r");
  r.set_source("agent/test");
  r.set_run_id("run-1");
  auto* a = r.mutable_action();
  a->set_kind(v1::ACTION_KIND_SHELL);
  a->set_command(command);
  a->set_agent_id("agent-1");
  a->set_session_id(session);
  a->set_working_directory(workspace);
  a->mutable_scope()->set_workspace_root(workspace);
  auto* home = a->add_attributes();
  home->set_key("home");
  home->set_value("/home/dev");
  return r;
}

struct corpus_row {
  int line = 0;
  std::string expect;  // deny, approval, flag, allow
  std::string klass;
  std::string command;
};

std::vector<corpus_row> load_corpus(const std::string& name) {
  std::ifstream in(std::string(LOOPWARDEN_FIXTURES_DIR) + "/destructive_action/" + name);
  REQUIRE(in.good());
  std::vector<corpus_row> rows;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty() || line[0] == '#') continue;
    const auto t1 = line.find('\t');
    const auto t2 = line.find('\t', t1 + 1);
    REQUIRE(t1 != std::string::npos);
    REQUIRE(t2 != std::string::npos);
    corpus_row r;
    r.line = n;
    r.expect = line.substr(0, t1);
    r.klass = line.substr(t1 + 1, t2 - t1 - 1);
    r.command = line.substr(t2 + 1);
    // "↵" (U+21B5) stands for a newline.
    for (std::size_t p; (p = r.command.find("\u21b5")) != std::string::npos;) {
      r.command.replace(p, std::string("\u21b5").size(), "\n");
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

bool verdict_matches(const std::string& expect, sdk::gate_verdict v) {
  if (expect == "allow") return v == sdk::gate_verdict::allow;
  if (expect == "deny") return v == sdk::gate_verdict::deny;
  if (expect == "approval") return v == sdk::gate_verdict::require_approval;
  return v != sdk::gate_verdict::allow;  // flag
}

}  // namespace

TEST_CASE("destructive_action judges every row of its corpus as the corpus expects",
          "[plugins][destructive_action]") {
  auto e = engine_with();
  const auto rows = load_corpus("corpus.tsv");
  REQUIRE(rows.size() > 600);
  std::size_t destructive = 0, caught = 0, benign = 0, flagged = 0;
  std::map<std::string, int> per_class;
  for (const auto& row : rows) {
    // Each row its own session, so no evasion breaker gets in the way.
    auto out = e->gate(shell_request(row.command, "row-" + std::to_string(row.line)));
    INFO("corpus.tsv:" << row.line << " [" << row.klass << "] expect " << row.expect << ": "
                       << row.command);
    INFO("got " << sdk::to_string(out.decision.verdict) << " " << out.decision.rule_id << ": "
                << out.decision.reason);
    CHECK(verdict_matches(row.expect, out.decision.verdict));
    if (row.expect == "allow") {
      ++benign;
      if (out.decision.verdict != sdk::gate_verdict::allow) ++flagged;
    } else {
      ++destructive;
      if (out.decision.verdict != sdk::gate_verdict::allow) ++caught;
      // A destructive verdict always says why and names its rule.
      if (out.decision.verdict != sdk::gate_verdict::allow) {
        CHECK_FALSE(out.decision.rule_id.empty());
        CHECK_FALSE(out.decision.reason.empty());
      }
    }
    ++per_class[row.klass];
  }
  // Every bypass class has destructive rows and benign twins.
  for (const auto& [klass, n] : per_class) {
    INFO(klass);
    CHECK(n >= 2);
  }
  CHECK(destructive > 300);
  CHECK(benign > 350);
  CHECK(caught == destructive);
  CHECK(flagged == 0);
}

TEST_CASE("destructive_action meets its targets on a corpus written after tuning",
          "[plugins][destructive_action]") {
  // holdout.tsv was written after the rules were tuned on corpus.tsv; its first, untouched run
  // is recorded in docs/monitors/destructive-action.md. Targets: >= 99 % of destructive rows
  // caught, <= 0.5 % of benign rows flagged. Misses are listed (WARN) so they can be read.
  auto e = engine_with();
  const auto rows = load_corpus("holdout.tsv");
  REQUIRE(rows.size() > 250);
  std::size_t destructive = 0, caught = 0, benign = 0, flagged = 0;
  for (const auto& row : rows) {
    auto out = e->gate(shell_request(row.command, "holdout-" + std::to_string(row.line)));
    const bool flagged_now = out.decision.verdict != sdk::gate_verdict::allow;
    if (row.expect == "allow") {
      ++benign;
      if (flagged_now) {
        ++flagged;
        WARN("false positive holdout.tsv:" << row.line << ": " << row.command << " -> "
                                           << out.decision.rule_id << ": " << out.decision.reason);
      }
    } else {
      ++destructive;
      if (flagged_now) {
        ++caught;
      } else {
        WARN("missed holdout.tsv:" << row.line << ": " << row.command);
      }
    }
  }
  const double catch_rate = static_cast<double>(caught) / static_cast<double>(destructive);
  const double fp_rate = static_cast<double>(flagged) / static_cast<double>(benign);
  INFO("caught " << caught << "/" << destructive << ", flagged " << flagged << "/" << benign);
  CHECK(catch_rate >= 0.99);
  CHECK(fp_rate <= 0.005);
}
