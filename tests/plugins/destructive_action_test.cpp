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

namespace {

// Runs a held-out file through the default gate and checks the targets: >= 99 % of destructive
// rows caught, <= 0.5 % of benign rows flagged. Misses and false positives are listed (WARN) so
// they can be read.
void check_held_out(const std::string& name) {
  auto e = engine_with();
  const auto rows = load_corpus(name);
  REQUIRE(rows.size() > 250);
  std::size_t destructive = 0, caught = 0, benign = 0, flagged = 0;
  for (const auto& row : rows) {
    REQUIRE((row.expect == "allow" || row.expect == "flag"));
    auto out = e->gate(shell_request(row.command, name + "-" + std::to_string(row.line)));
    const bool flagged_now = out.decision.verdict != sdk::gate_verdict::allow;
    if (row.expect == "allow") {
      ++benign;
      if (flagged_now) {
        ++flagged;
        WARN("false positive " << name << ":" << row.line << ": " << row.command << " -> "
                               << out.decision.rule_id << ": " << out.decision.reason);
      }
    } else {
      ++destructive;
      if (flagged_now) {
        ++caught;
      } else {
        WARN("missed " << name << ":" << row.line << ": " << row.command);
      }
    }
  }
  const double catch_rate = static_cast<double>(caught) / static_cast<double>(destructive);
  const double fp_rate = static_cast<double>(flagged) / static_cast<double>(benign);
  INFO(name << ": caught " << caught << "/" << destructive << ", flagged " << flagged << "/"
            << benign);
  CHECK(catch_rate >= 0.99);
  CHECK(fp_rate <= 0.005);
}

}  // namespace

TEST_CASE("destructive_action meets its targets on a corpus written after tuning",
          "[plugins][destructive_action]") {
  // holdout.tsv was written after the rules were tuned on corpus.tsv; its first, untouched run
  // is recorded in docs/monitors/destructive-action.md.
  check_held_out("holdout.tsv");
}

TEST_CASE("destructive_action meets its targets on a second corpus written after the first holdout",
          "[plugins][destructive_action]") {
  // holdout2.tsv was written after holdout.tsv had itself been used to fix rules, without reading
  // the rules first; its first, untouched run is recorded in docs/monitors/destructive-action.md.
  check_held_out("holdout2.tsv");
}

namespace {

sdk::gate_decision ask(core::engine& e, v1::GateRequest r) { return e.gate(r).decision; }

v1::GateRequest at(v1::GateRequest r, std::int64_t seconds) {
  r.set_time_unix_nano(1'700'000'000'000'000'000LL + seconds * 1'000'000'000LL);
  return r;
}

bool breaker_open(core::engine& e, const std::string& name) {
  const v1::BreakerSnapshot snap = e.breakers().snapshot();
  for (const auto& b : snap.breakers()) {
    if (b.name() == name && b.state() == v1::BREAKER_STATE_OPEN) return true;
  }
  return false;
}

v1::Envelope executed(const std::string& command, v1::ToolStatus status, std::uint64_t seq) {
  v1::Envelope env;
  env.set_source("agent/test");
  env.set_run_id("run-1");
  env.set_seq(seq);
  env.set_time_unix_nano(1'700'000'000'000'000'000LL +
                         static_cast<std::int64_t>(seq) * 1'000'000'000LL);
  auto* a = env.mutable_action();
  a->set_kind(v1::ACTION_KIND_SHELL);
  a->set_command(command);
  a->set_agent_id("agent-1");
  a->set_session_id("s-exec");
  a->set_working_directory(workspace);
  a->mutable_scope()->set_workspace_root(workspace);
  a->set_executed(true);
  a->set_status(status);
  return env;
}

}  // namespace

TEST_CASE("destructive_action refuses bad rules and settings naming the field and the line",
          "[plugins][destructive_action]") {
  struct row {
    std::string config;
    std::string expect;  // a fragment of the error
  };
  const std::vector<row> rows = {
      {"{rules: [{id: x, effect: exec, when: {argv_regex: \"(\"}, decision: deny}]}",
       "rules[0].when.argv_regex: bad RE2 pattern"},
      {"{rules: [{id: x, effect: exec, when: {colour: red}, decision: deny}]}",
       "rules[0].when.colour: unknown condition"},
      {"{rules: [{id: x, effect: files, decision: deny}]}", "unknown effect \"files\""},
      {"{rules: [{id: x, effect: exec, decision: maybe}]}", "rules[0].decision: expected allow"},
      {"{rules: [{effect: exec, decision: deny}]}", "rules[0].id: required"},
      {"{rules: [{id: X!, effect: exec, decision: deny}]}", "rules[0].id: expected an id"},
      {"{rules: [{id: x, effect: exec, decision: deny, explain: \"{nope}\"}]}",
       "unknown placeholder {nope}"},
      {"{rules: [{id: x, effect: sql, when: {program: [psql]}, decision: deny}]}",
       "only apply to effect exec"},
      {"{rules: [{id: x, effect: exec, decision: deny}, {id: x, effect: sql, decision: deny}]}",
       "duplicate rule id \"x\""},
      {"{rules: [{id: x, effect: exec, decision: deny, severity: high}]}",
       "rules[0].severity: unknown key"},
      {"{disable_rules: [no.such.rule]}", "no rule with id \"no.such.rule\""},
      {"{on_unparseable: sometimes}", "on_unparseable: expected allow"},
      {"{scratch_paths: [tmp]}", "scratch_paths: expected absolute"},
      {"{workspace: relative/dir}", "workspace: expected an absolute path"},
      {"{evasion: {min_variants: 1}}", "evasion.min_variants: expected at least 2"},
      {"{evasion: {window: 0s}}", "evasion.window: expected a positive duration"},
      {"{max_depth: 0}", "max_depth: expected a positive integer"},
      {"{rules_file: /no/such/rules.yaml}", "can't read"},
      {"{colour: red}", "colour: unknown key"},
  };
  for (const auto& r : rows) {
    INFO(r.config);
    const std::string err = config_error(r.config);
    INFO(err);
    CHECK(err.find(r.expect) != std::string::npos);
    CHECK(err.find("gate.yaml:") != std::string::npos);  // the file and line are named
  }
  CHECK(config_error("{}").empty());
}

TEST_CASE("destructive_action rules from config add, replace, disable and except",
          "[plugins][destructive_action]") {
  auto e = engine_with(
      "{rules: [{id: local.no_echo, effect: exec, when: {program: [echo]}, decision: deny, "
      "explain: \"no echo: {args}\", alternative: \"printf {args}\"}, "
      "{id: local.scratch_data, effect: file.delete, when: {path_regex: '^/data/scratch/'}, "
      "decision: allow}, "
      "{id: git.stash_drop, effect: exec, when: {program: git, subcommand: [\"stash drop\"]}, "
      "decision: deny, explain: \"never drop stashes\"}], "
      "disable_rules: [git.reset_hard]}");
  auto d = ask(*e, shell_request("echo hi"));
  CHECK(d.verdict == sdk::gate_verdict::deny);
  CHECK(d.rule_id == "local.no_echo");
  CHECK(d.reason.find("no echo: hi") != std::string::npos);
  CHECK(d.alternative == "printf hi");
  // An allow rule is an exception: this outside-the-workspace delete is cleared.
  CHECK(ask(*e, shell_request("rm -rf /data/scratch/run1")).verdict == sdk::gate_verdict::allow);
  CHECK(ask(*e, shell_request("rm -rf /data/models")).verdict == sdk::gate_verdict::deny);
  // Same id as a shipped rule: the operator's replaces it.
  d = ask(*e, shell_request("git stash drop"));
  CHECK(d.verdict == sdk::gate_verdict::deny);
  CHECK(d.reason.find("never drop stashes") != std::string::npos);
  // Disabled.
  CHECK(ask(*e, shell_request("git reset --hard")).verdict == sdk::gate_verdict::allow);
}

TEST_CASE("destructive_action sends unparseable input where on_unparseable says",
          "[plugins][destructive_action]") {
  const std::string broken = "echo \"unterminated";
  CHECK(ask(*engine_with(), shell_request(broken)).verdict == sdk::gate_verdict::require_approval);
  CHECK(ask(*engine_with("{on_unparseable: deny}"), shell_request(broken)).verdict ==
        sdk::gate_verdict::deny);
  CHECK(ask(*engine_with("{on_unparseable: allow}"), shell_request(broken)).verdict ==
        sdk::gate_verdict::allow);
  // Too long to judge, and nested beyond max_depth: asked about, never a crash.
  auto small = engine_with("{max_command_bytes: 64, max_depth: 2}");
  auto d = ask(*small, shell_request("echo " + std::string(100, 'x')));
  CHECK(d.verdict == sdk::gate_verdict::require_approval);
  CHECK(d.rule_id == "shell.unparseable");
  d = ask(*small, shell_request("sh -c \"sh -c 'sh -c \\\"sh -c ls\\\"'\""));
  CHECK(d.verdict == sdk::gate_verdict::require_approval);
  // Pathological nesting is bounded by the walker, not the stack.
  std::string deep;
  for (int i = 0; i < 3000; ++i) deep += "$(";
  deep += "ls";
  for (int i = 0; i < 3000; ++i) deep += ")";
  CHECK(ask(*engine_with(), shell_request("echo " + deep)).verdict != sdk::gate_verdict::allow);
  // Empty and odd requests: nothing to judge.
  v1::GateRequest empty;
  CHECK(ask(*engine_with(), empty).verdict == sdk::gate_verdict::allow);
  CHECK(ask(*engine_with(), shell_request(std::string("ls \xff\xfe\x01", 6))).verdict !=
        sdk::gate_verdict::deny);
}

TEST_CASE("destructive_action judges SQL, file, git and HTTP actions by their kind",
          "[plugins][destructive_action]") {
  auto e = engine_with();
  auto of_kind = [](v1::ActionKind kind) {
    v1::GateRequest r = shell_request("");
    r.mutable_action()->set_kind(kind);
    return r;
  };
  struct row {
    v1::ActionKind kind;
    std::string command, target, method, url;
    v1::FileOperation op;
    sdk::gate_verdict expect;
  };
  using V = sdk::gate_verdict;
  const std::vector<row> rows = {
      {v1::ACTION_KIND_SQL, "DELETE FROM users", "", "", "", {}, V::require_approval},
      {v1::ACTION_KIND_SQL, "DELETE FROM users WHERE id = 1", "", "", "", {}, V::allow},
      {v1::ACTION_KIND_SQL, "DROP DATABASE app", "", "", "", {}, V::deny},
      {v1::ACTION_KIND_SQL, "SELECT 1; TRUNCATE t", "", "", "", {}, V::require_approval},
      {v1::ACTION_KIND_FILE, "", "/etc/passwd", "", "", v1::FILE_OPERATION_DELETE, V::deny},
      {v1::ACTION_KIND_FILE, "", "src/app.py", "", "", v1::FILE_OPERATION_WRITE, V::allow},
      {v1::ACTION_KIND_FILE, "", "/home/dev/project/.git/config", "", "",
       v1::FILE_OPERATION_TRUNCATE, V::require_approval},
      {v1::ACTION_KIND_FILE, "", "/home/dev/.bashrc", "", "", v1::FILE_OPERATION_READ, V::allow},
      {v1::ACTION_KIND_GIT, "push --force origin main", "", "", "", {}, V::deny},
      {v1::ACTION_KIND_GIT, "git push origin feature/x", "", "", "", {}, V::allow},
      {v1::ACTION_KIND_HTTP,
       "",
       "",
       "DELETE",
       "https://api.example.com/v1/x",
       {},
       V::require_approval},
      {v1::ACTION_KIND_HTTP, "", "", "GET", "https://api.example.com/v1/x", {}, V::allow},
      {v1::ACTION_KIND_HTTP, "", "", "POST", "http://localhost:8080/x", {}, V::allow},
      {v1::ACTION_KIND_HTTP, "", "", "POST", "https://{{host}}/x", {}, V::require_approval},
      {v1::ACTION_KIND_OTHER, "rm -rf /", "", "", "", {}, V::deny},
  };
  for (const auto& r : rows) {
    v1::GateRequest req = of_kind(r.kind);
    auto* a = req.mutable_action();
    a->set_command(r.command);
    a->set_target(r.target);
    a->set_http_method(r.method);
    a->set_url(r.url);
    a->set_file_operation(r.op);
    const auto d = ask(*e, req);
    INFO(v1::ActionKind_Name(r.kind) << " " << r.command << r.target << r.method << " " << r.url
                                     << " -> " << d.rule_id << ": " << d.reason);
    CHECK(d.verdict == r.expect);
  }
}

TEST_CASE("destructive_action asks about actions outside the declared scope even when harmless",
          "[plugins][destructive_action]") {
  auto e = engine_with(
      "{shared_resources: [\"/home/dev/project/data/measurements/**\", "
      "\"table:experiments\"]}");
  using V = sdk::gate_verdict;
  // A shared resource inside the workspace: harmless locally, still a human's call.
  auto d = ask(*e, shell_request("rm data/measurements/run-17.csv"));
  CHECK(d.verdict == V::require_approval);
  CHECK(d.rule_id == "scope.shared_resource");
  CHECK(ask(*e, shell_request("rm data/scratch/run-17.csv")).verdict == V::allow);
  d = ask(*e, shell_request("psql -c \"DELETE FROM experiments WHERE id = 3\""));
  CHECK(d.rule_id == "scope.shared_resource");
  // Declared environments: acting on another needs approval, reading does not.
  auto r = shell_request("kubectl --context staging apply -f k8s/");
  r.mutable_action()->mutable_scope()->add_environments("dev");
  d = ask(*e, r);
  CHECK(d.verdict == V::require_approval);
  CHECK(d.rule_id == "scope.undeclared_environment");
  r = shell_request("kubectl --context staging get pods");
  r.mutable_action()->mutable_scope()->add_environments("dev");
  CHECK(ask(*e, r).verdict == V::allow);
  // The request's own environment: production changes are asked about.
  r = shell_request("make deploy");
  r.mutable_action()->set_environment("prod");
  d = ask(*e, r);
  CHECK(d.verdict == V::require_approval);
  CHECK(d.rule_id == "scope.protected_environment");
  r = shell_request("ls -la");
  r.mutable_action()->set_environment("prod");
  CHECK(ask(*e, r).verdict == V::allow);
  // Declared resources: a change outside them (and outside the workspace) is asked about.
  r = shell_request("cp report.csv /srv/reports/");
  r.mutable_action()->mutable_scope()->add_resources("/srv/shared/**");
  CHECK(ask(*e, r).verdict == V::require_approval);
  r = shell_request("cp report.csv build/report.csv");
  r.mutable_action()->mutable_scope()->add_resources("/srv/shared/**");
  CHECK(ask(*e, r).verdict == V::allow);
  // Declared hosts: state-changing HTTP to them is fine.
  r = shell_request("curl -X POST https://api.partner.example/v1/jobs -d '{}'");
  CHECK(ask(*e, r).verdict == V::require_approval);
  r.mutable_action()->mutable_scope()->add_allowed_hosts("api.partner.example");
  CHECK(ask(*e, r).verdict == V::allow);
  // A different workspace changes what is inside.
  r = shell_request("rm -rf /srv/app/build");
  CHECK(ask(*e, r).verdict == V::deny);
  r.mutable_action()->mutable_scope()->set_workspace_root("/srv/app");
  r.mutable_action()->set_working_directory("/srv/app");
  CHECK(ask(*e, r).verdict == V::allow);
}

// Found by the envelope fuzz target (tests/fixtures/fuzz-regressions/envelope/
// gate-scope-use-after-free): scope_facts read a fact by reference while appending the scope
// facts to the same list, so a fact with two resources outside the declared scope (an SQL
// statement's database and table) read freed memory when the first append reallocated the list.
// 1 to 9 statements put the list at its capacity for several counts (1, 2, 4, 8 with the usual
// doubling); the asan preset (make test-asan) reports the old read, every preset checks verdicts.
TEST_CASE(
    "destructive_action asks about SQL outside the declared resources however many statements",
    "[plugins][destructive_action]") {
  auto e = engine_with();
  for (int statements = 1; statements <= 9; ++statements) {
    std::string sql;
    for (int i = 0; i < statements; ++i) {
      sql += "UPDATE t" + std::to_string(i) + " SET done = true WHERE id = 1; ";
    }
    auto r = shell_request(sql);
    r.mutable_action()->set_kind(v1::ACTION_KIND_SQL);
    r.mutable_action()->set_database("analytics");
    r.mutable_action()->mutable_scope()->add_resources("/srv/shared/**");
    const auto d = ask(*e, r);
    INFO(sql << " -> " << d.rule_id << ": " << d.reason);
    CHECK(d.verdict == sdk::gate_verdict::require_approval);
    CHECK(d.rule_id == "scope.outside_resource");
    // Without declared resources the same statements are ordinary updates.
    r.mutable_action()->mutable_scope()->clear_resources();
    CHECK(ask(*e, r).verdict == sdk::gate_verdict::allow);
  }
}

TEST_CASE("destructive_action trips agent.evasion on varied denied attempts in one session only",
          "[plugins][destructive_action]") {
  SECTION("three different denied actions in the window trip it") {
    auto e = engine_with("{evasion: {min_variants: 3, window: 10m}}");
    CHECK(ask(*e, at(shell_request("rm -rf /data", "s"), 0)).verdict == sdk::gate_verdict::deny);
    CHECK_FALSE(breaker_open(*e, "agent.evasion"));  // a deny alone trips nothing
    ask(*e, at(shell_request("find /data -delete", "s"), 10));
    CHECK_FALSE(breaker_open(*e, "agent.evasion"));
    ask(*e, at(shell_request("python3 -c \"import shutil; shutil.rmtree('/data')\"", "s"), 20));
    CHECK(breaker_open(*e, "agent.evasion"));
  }
  SECTION("the same command retried is not a variation") {
    auto e = engine_with();
    for (int i = 0; i < 6; ++i) ask(*e, at(shell_request("rm -rf /data", "s"), i));
    CHECK_FALSE(breaker_open(*e, "agent.evasion"));
  }
  SECTION("denials in different sessions do not add up") {
    auto e = engine_with();
    ask(*e, at(shell_request("rm -rf /data", "a"), 0));
    ask(*e, at(shell_request("find /data -delete", "b"), 1));
    ask(*e, at(shell_request("rm -r -f /data/", "c"), 2));
    CHECK_FALSE(breaker_open(*e, "agent.evasion"));
  }
  SECTION("denials older than the window are forgotten") {
    auto e = engine_with("{evasion: {window: 1m}}");
    ask(*e, at(shell_request("rm -rf /data", "s"), 0));
    ask(*e, at(shell_request("find /data -delete", "s"), 30));
    ask(*e, at(shell_request("rm -r -f /data/", "s"), 200));
    CHECK_FALSE(breaker_open(*e, "agent.evasion"));
    ask(*e, at(shell_request("rm -rf /data/*", "s"), 210));
    ask(*e, at(shell_request("sudo rm -rf /data", "s"), 220));
    CHECK(breaker_open(*e, "agent.evasion"));
  }
  SECTION("approvals are not denials") {
    auto e = engine_with();
    ask(*e, at(shell_request("git reset --hard", "s"), 0));
    ask(*e, at(shell_request("git clean -fdx", "s"), 1));
    ask(*e, at(shell_request("git stash clear", "s"), 2));
    CHECK_FALSE(breaker_open(*e, "agent.evasion"));
  }
}

TEST_CASE("destructive_action audits executed actions and counts other guards' refusals",
          "[plugins][destructive_action]") {
  auto e = engine_with();
  e->process(executed("ls -la", v1::TOOL_STATUS_OK, 1));
  e->process(executed("git reset --hard", v1::TOOL_STATUS_OK, 2));
  CHECK_FALSE(breaker_open(*e, "agent.destructive"));
  e->process(executed("rm -rf /etc", v1::TOOL_STATUS_OK, 3));
  CHECK(breaker_open(*e, "agent.destructive"));
  // Refusals by another guard (status DENIED) count as denied attempts of the session.
  auto f = engine_with("{audit: {trip: false}}");
  f->process(executed("rm -rf /data", v1::TOOL_STATUS_DENIED, 1));
  f->process(executed("find /data -delete", v1::TOOL_STATUS_DENIED, 2));
  CHECK_FALSE(breaker_open(*f, "agent.evasion"));
  f->process(executed("perl -e 'use File::Path; rmtree(\"/data\")'", v1::TOOL_STATUS_DENIED, 3));
  CHECK(breaker_open(*f, "agent.evasion"));
  CHECK_FALSE(breaker_open(*f, "agent.destructive"));
}

TEST_CASE("destructive_action keeps evasion state across a snapshot and restore",
          "[plugins][destructive_action]") {
  // Half the attempts to engine A, snapshot, the rest to engine B: the same trip as one engine.
  auto a = engine_with();
  ask(*a, at(shell_request("rm -rf /data", "s"), 0));
  ask(*a, at(shell_request("find /data -delete", "s"), 1));
  const auto states = a->snapshot_monitors();
  REQUIRE(states.size() == 1);
  auto b = engine_with();
  REQUIRE(b->restore_monitor(states[0]).ok());
  CHECK_FALSE(breaker_open(*b, "agent.evasion"));
  ask(*b, at(shell_request("rm -r -f /data/", "s"), 2));
  CHECK(breaker_open(*b, "agent.evasion"));
  // Without the restore, B would not have tripped.
  auto c = engine_with();
  ask(*c, at(shell_request("rm -r -f /data/", "s"), 2));
  CHECK_FALSE(breaker_open(*c, "agent.evasion"));
  // Bad state is refused with a reason, and leaves the monitor working.
  core::monitor_state bad = states[0];
  bad.state = bad.state.substr(0, bad.state.size() / 2);
  const auto refused = c->restore_monitor(bad);
  CHECK_FALSE(refused.ok());
  CHECK(refused.message().find("truncated") != std::string::npos);
  CHECK(ask(*c, shell_request("rm -rf /")).verdict == sdk::gate_verdict::deny);
}

TEST_CASE("destructive_action bounds the sessions it remembers", "[plugins][destructive_action]") {
  auto e = engine_with("{evasion: {max_sessions: 3}}");
  for (int i = 0; i < 20; ++i)
    ask(*e, at(shell_request("rm -rf /data", "s" + std::to_string(i)), i));
  double tracked = -1, evicted = -1;
  for (const auto& m : e->monitors()) {
    for (const auto& [name, value] : m.gauges) {
      if (name == "sessions_tracked") tracked = value;
      if (name == "sessions_evicted") evicted = value;
    }
  }
  CHECK(tracked == 3);
  CHECK(evicted == 17);
}
