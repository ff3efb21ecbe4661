// destructive_action: answers the gate's "may I run this?" for shell, SQL, git, file and HTTP
// actions with allow, deny or require_approval, each with a rule id, a plain explanation and,
// where one exists, a safer alternative; audits executed actions reported as events; and trips
// agent.evasion when one session keeps trying variations of denied actions.
//
//   config:
//     rules_file: ""              # a rules YAML replacing the shipped default_rules.yaml
//     default_rules: true         # false: only `rules` below (and rules_file)
//     rules: []                   # extra rules, same format (rules.hpp); they come first
//     disable_rules: []           # ids of shipped rules to drop
//     on_unparseable: require_approval   # decision for input that cannot be parsed
//     workspace: ""               # workspace when a request declares none (default: its cwd)
//     protected_branches: [main, master, trunk, develop, release, release/*, releases/*,
//                          production, prod, stable]
//     protected_paths: [.git, .git/**, **/.git, **/.git/**, **/.env, **/backup, ...]
//     allowed_hosts: [localhost, 127.0.0.1, ::1, 0.0.0.0, *.localhost]
//     scratch_paths: [/tmp, /var/tmp, ~/.cache, ~/.npm, ~/.m2/repository, ...]
//     protected_environments: [prod, production, prd, live]
//     shared_resources: []        # globs over resources: paths, db:NAME, table:NAME, hosts
//     trusted_eval_sources: [ssh-agent, pyenv, direnv, ...]  # eval "$(tool ...)" is fine
//     max_depth: 8                # nested shells / wrappers / interpreters
//     max_command_bytes: 65536    # longer input is unparseable
//     max_findings: 2000          # facts per action
//     evasion: {min_variants: 3, window: 10m, breaker: agent.evasion, max_sessions: 10000}
//     audit: {breaker: agent.destructive, trip: true}
//
// Everything is judged from the parsed structure (analyzer.hpp) by rules that are data
// (rules.hpp, default_rules.yaml). docs/monitors/destructive-action.md documents every rule.

#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <re2/re2.h>
#include <loopwarden/plugin.hpp>
#include <loopwarden/state_codec.hpp>

#include "analyzer.hpp"
#include "rules.hpp"
#include "yaml_tree.hpp"

namespace loopwarden::destructive_action {
extern const std::string_view default_rules_yaml;
}

namespace {

namespace sdk = loopwarden::sdk;
namespace v1 = loopwarden::v1;
namespace da = loopwarden::destructive_action;

// RE2 (Debian's 20220601) allocates three objects on first use that live as long as the process
// (its empty string and empty capture-group maps: 32, 48 and 48 bytes) and never frees them. This
// plugin is usually libre2's only user, so unloading the plugin unloaded libre2 too and orphaned
// them: 128 bytes lost at each load and unload (a `config check`, a reload), which
// LeakSanitizer reported. Marking libre2 RTLD_NODELETE keeps it mapped for the life of the
// process, so they are allocated once and stay reachable. Nothing happens when RE2 is linked
// into this library itself (the loader would then pin the plugin).
void keep_re2_loaded() {
  static const bool pinned = [] {
    Dl_info re2_lib{};
    Dl_info self{};
    if (dladdr(reinterpret_cast<const void*>(&re2::RE2::QuoteMeta), &re2_lib) == 0 ||
        dladdr(reinterpret_cast<const void*>(&keep_re2_loaded), &self) == 0 ||
        re2_lib.dli_fname == nullptr || re2_lib.dli_fbase == self.dli_fbase) {
      return false;
    }
    void* handle = dlopen(re2_lib.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    if (handle == nullptr) return false;
    dlclose(handle);  // NODELETE stays; this only drops the reference dlopen added
    return true;
  }();
  static_cast<void>(pinned);
}

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

std::string clip(std::string_view s, std::size_t n) {
  std::string out(s.substr(0, n));
  if (s.size() > n) out += "...";
  for (auto& c : out) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  return out;
}

// One denied attempt, for the evasion check.
struct denial {
  std::int64_t time = 0;
  std::string rule_id;
  std::uint64_t digest = 0;  // of the action text: equal text, one variant
  std::string example;       // the text, clipped
};

struct session_state {
  std::vector<denial> denials;  // oldest first, at most max_denials_per_session
  std::int64_t last_seen = 0;
  std::int64_t tripped_at = 0;  // 0: not tripped in the current window
};

struct evasion_settings {
  std::uint64_t min_variants = 3;
  std::int64_t window_ns = 10LL * 60 * 1'000'000'000;
  std::string breaker = "agent.evasion";
  std::size_t max_sessions = 10000;
};

constexpr std::size_t max_denials_per_session = 64;

struct evaluation {
  sdk::gate_verdict verdict = sdk::gate_verdict::allow;
  const da::rule* rule = nullptr;
  const da::fact* fact = nullptr;
  std::size_t findings = 0;  // facts that a non-allow rule matched
};

std::string action_text(const v1::ActionRequest& a) {
  if (!a.command().empty()) return a.command();
  std::string out;
  for (const auto& s : a.argv()) {
    if (!out.empty()) out += ' ';
    out += s;
  }
  if (!out.empty()) return out;
  if (!a.url().empty()) return a.http_method() + " " + a.url();
  return a.target();
}

std::string session_key(const v1::ActionRequest& a, const std::string& source,
                        const std::string& run) {
  if (!a.agent_id().empty() || !a.session_id().empty()) return a.agent_id() + "/" + a.session_id();
  return source + "/" + run;
}

sdk::status read_list(const sdk::config_node& config, std::string_view key,
                      std::vector<std::string>& out) {
  if (!config.contains(key) || config[key].is_null()) return sdk::status::success();
  auto l = config[key].as_string_list();
  if (!l.ok()) return l.error();
  out = *l;
  return sdk::status::success();
}

// What a rules file holds (default_rules.yaml or an operator's rules_file).
struct rules_file {
  std::map<std::string, std::set<std::string>, std::less<>> option_values;
  std::vector<std::vector<std::string>> read_only;
  std::vector<da::rule> rules;
};

sdk::result<rules_file> parse_rules_file(const std::string& text, const std::string& source) {
  rules_file out;
  auto root = da::parse_yaml(text, source, "");
  if (!root.ok()) return root.error();
  if (!root->is_map())
    return root->error("expected a map with version, option_values, read_only, rules");
  if (auto s = root->check_keys({"version", "option_values", "read_only", "rules"}); !s.ok()) {
    return s;
  }
  auto version = root->get_int("version", 1);
  if (!version.ok()) return version.error();
  if (*version != 1) return (*root)["version"].error("expected version 1");
  const sdk::config_node ov = (*root)["option_values"];
  if (!ov.is_missing() && !ov.is_null()) {
    if (!ov.is_map()) return ov.error("expected a map of program -> options, got " + ov.describe());
    for (const auto& program : ov.keys()) {
      auto l = ov[program].as_string_list();
      if (!l.ok()) return l.error();
      out.option_values[program] = std::set<std::string>(l->begin(), l->end());
    }
  }
  std::vector<std::string> read_only;
  if (auto s = read_list(*root, "read_only", read_only); !s.ok()) return s;
  for (const auto& entry : read_only) {
    std::vector<std::string> words;
    std::istringstream ws(entry);
    for (std::string w; ws >> w;) words.push_back(w);
    if (!words.empty()) out.read_only.push_back(std::move(words));
  }
  auto parsed = da::parse_rules((*root)["rules"]);
  if (!parsed.ok()) return parsed.error();
  out.rules = std::move(parsed).value();
  return out;
}

// The shipped rules, parsed once per process: 118 rules and their RE2 patterns took about 11 ms
// of every configure (each monitor instance, each reload, each fuzz input's engine). The text is
// compiled in, so the result never changes; a failure is kept too (a test checks there is none).
sdk::result<std::shared_ptr<const rules_file>> shipped_rules() {
  static const sdk::result<std::shared_ptr<const rules_file>> parsed =
      []() -> sdk::result<std::shared_ptr<const rules_file>> {
    auto file = parse_rules_file(std::string(da::default_rules_yaml),
                                 "<destructive_action default_rules.yaml>");
    if (!file.ok()) return file.error();
    return std::make_shared<const rules_file>(std::move(file).value());
  }();
  return parsed;
}

class destructive_action_monitor final : public sdk::monitor {
 public:
  // The shipped rules always load (a test checks it); the analyzer exists even if they did not.
  destructive_action_monitor() {
    keep_re2_loaded();
    if (!apply(sdk::config_node()).ok())
      analyzer_ = std::make_unique<da::analyzer>(da::analyzer_settings{});
  }

  sdk::monitor_info info() const override {
    sdk::monitor_info i;
    i.name = "destructive_action";
    i.version = "0.1.0";
    i.description = "gates destructive shell, SQL, git, file and HTTP actions";
    i.kinds = {sdk::event_kind::action};
    i.gate = true;
    sdk::breaker_spec evasion;
    evasion.name = evasion_.breaker;
    evasion.action = sdk::breaker_action::pause;
    evasion.severity = sdk::severity::critical;
    evasion.scope = sdk::breaker_scope::run;
    evasion.description = "an agent keeps trying variations of denied actions";
    i.breakers.push_back(evasion);
    if (!audit_breaker_.empty()) {
      sdk::breaker_spec audit;
      audit.name = audit_breaker_;
      audit.action = sdk::breaker_action::pause;
      audit.severity = sdk::severity::critical;
      audit.scope = sdk::breaker_scope::run;
      audit.description = "an action the gate would deny was executed";
      i.breakers.push_back(audit);
    }
    return i;
  }

  sdk::status configure(const sdk::config_node& config) override { return apply(config); }

  sdk::gate_decision on_gate(const v1::GateRequest& request, sdk::context& ctx) override {
    ++gate_requests_;
    const v1::ActionRequest& action = request.action();
    const std::vector<da::fact> facts = analyzer_->analyze(action);
    const evaluation e = evaluate(facts);
    sdk::gate_decision d = describe(e, action);
    switch (d.verdict) {
      case sdk::gate_verdict::allow:
        ++allowed_;
        break;
      case sdk::gate_verdict::require_approval:
        ++approvals_;
        break;
      case sdk::gate_verdict::deny:
        ++denied_;
        record_denial(session_key(action, request.source(), request.run_id()), request.run_id(),
                      d.rule_id, action_text(action), ctx);
        break;
    }
    publish(ctx);
    return d;
  }

  void on_event(const v1::Envelope& envelope, sdk::context& ctx) override {
    if (!envelope.has_action()) return;
    const v1::ActionRequest& action = envelope.action();
    if (!action.executed()) return;
    ++audited_;
    const std::string key = session_key(action, envelope.source(), envelope.run_id());
    const std::vector<da::fact> facts = analyzer_->analyze(action);
    const evaluation e = evaluate(facts);
    const sdk::gate_decision d = describe(e, action);
    if (action.status() == v1::TOOL_STATUS_DENIED) {
      // Another guard refused it: still an attempt the agent may be routing around.
      record_denial(key, envelope.run_id(), d.rule_id.empty() ? "host.denied" : d.rule_id,
                    action_text(action), ctx);
    } else if (d.verdict == sdk::gate_verdict::deny) {
      ++executed_denied_;
      if (audit_trip_ && !audit_breaker_.empty()) {
        sdk::trip_request t;
        t.breaker = audit_breaker_;
        t.reason = "an action the gate denies was executed: " + d.reason;
        t.evidence = {{"rule", d.rule_id},
                      {"action", clip(action_text(action), 300)},
                      {"session", key},
                      {"status", v1::ToolStatus_Name(action.status())},
                      {"explanation", d.reason},
                      {"alternative", d.alternative},
                      {"what_to_do",
                       "check what the action changed and restore it; find why it ran without "
                       "asking the gate (a tool not wired to the gate, or a bypass)"}};
        t.run_id = envelope.run_id();
        ctx.trip(std::move(t));
      }
    } else if (d.verdict == sdk::gate_verdict::require_approval) {
      ++executed_unapproved_;
    }
    publish(ctx);
  }

  // The evasion state: per session, the denied attempts still inside the window (format 1).
  sdk::result<std::string> snapshot() const override {
    if (sessions_.empty()) return std::string();
    sdk::state_writer w("destructive_action", 1);
    w.write_u64(sessions_.size());
    for (const auto& [key, s] : sessions_) {
      w.write_string(key);
      w.write_i64(s.last_seen);
      w.write_i64(s.tripped_at);
      w.write_u64(s.denials.size());
      for (const auto& d : s.denials) {
        w.write_i64(d.time);
        w.write_string(d.rule_id);
        w.write_u64(d.digest);
        w.write_string(d.example);
      }
    }
    return w.finish();
  }

  sdk::status restore(std::string_view state) override {
    sdk::state_reader r(state);
    auto version = r.read_header("destructive_action", 1);
    if (!version.ok()) return version.error();
    std::map<std::string, session_state> sessions;
    const std::uint64_t n = r.read_count(evasion_.max_sessions);
    for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
      std::string key = r.read_string(4096);
      session_state s;
      s.last_seen = r.read_i64();
      s.tripped_at = r.read_i64();
      const std::uint64_t m = r.read_count(max_denials_per_session);
      for (std::uint64_t k = 0; k < m && r.ok(); ++k) {
        denial d;
        d.time = r.read_i64();
        d.rule_id = r.read_string(256);
        d.digest = r.read_u64();
        d.example = r.read_string(1024);
        s.denials.push_back(std::move(d));
      }
      sessions[std::move(key)] = std::move(s);
    }
    if (auto st = r.finish(); !st.ok()) return st.with_context("destructive_action snapshot");
    sessions_ = std::move(sessions);
    return sdk::status::success();
  }

 private:
  sdk::status apply(const sdk::config_node& config) {
    if (auto s = config.check_keys(
            {"rules_file", "default_rules", "rules", "disable_rules", "on_unparseable", "workspace",
             "protected_branches", "protected_paths", "allowed_hosts", "scratch_paths",
             "protected_environments", "shared_resources", "trusted_eval_sources", "max_depth",
             "max_command_bytes", "max_findings", "evasion", "audit"});
        !s.ok()) {
      return s;
    }
    da::analyzer_settings as;
    // The rules file: the shipped defaults, or the operator's replacement.
    auto rules_file = config.get_string("rules_file", "");
    if (!rules_file.ok()) return rules_file.error();
    auto use_defaults = config.get_bool("default_rules", true);
    if (!use_defaults.ok()) return use_defaults.error();
    std::vector<da::rule> rules;
    if (!rules_file->empty()) {
      std::ifstream in(*rules_file);
      if (!in) return config["rules_file"].error("can't read \"" + *rules_file + "\"");
      std::ostringstream buf;
      buf << in.rdbuf();
      auto file = parse_rules_file(buf.str(), *rules_file);
      if (!file.ok()) return file.error();
      as.option_values = std::move(file->option_values);
      as.read_only = std::move(file->read_only);
      rules = std::move(file->rules);
    } else if (*use_defaults) {
      auto file = shipped_rules();
      if (!file.ok()) return file.error();
      // A copy: the rules are adjusted below (on_unparseable); their compiled patterns are
      // shared, immutable RE2 objects.
      as.option_values = (*file)->option_values;
      as.read_only = (*file)->read_only;
      rules = (*file)->rules;
    }
    auto extra = da::parse_rules(config["rules"]);
    if (!extra.ok()) return extra.error();
    for (const auto& r : *extra) {
      if (std::any_of(rules.begin(), rules.end(),
                      [&](const da::rule& x) { return x.id == r.id; })) {
        // Same id as a shipped rule: the operator's replaces it.
        rules.erase(std::remove_if(rules.begin(), rules.end(),
                                   [&](const da::rule& x) { return x.id == r.id; }),
                    rules.end());
      }
    }
    rules.insert(rules.begin(), extra->begin(), extra->end());
    std::vector<std::string> disabled;
    if (auto s = read_list(config, "disable_rules", disabled); !s.ok()) return s;
    for (const auto& id : disabled) {
      const auto before = rules.size();
      rules.erase(
          std::remove_if(rules.begin(), rules.end(), [&](const da::rule& x) { return x.id == id; }),
          rules.end());
      if (rules.size() == before) {
        return config["disable_rules"].error("no rule with id \"" + id + "\"");
      }
    }
    auto unparseable = config.get_string("on_unparseable", "require_approval");
    if (!unparseable.ok()) return unparseable.error();
    sdk::gate_verdict unparseable_verdict;
    if (*unparseable == "allow") {
      unparseable_verdict = sdk::gate_verdict::allow;
    } else if (*unparseable == "deny") {
      unparseable_verdict = sdk::gate_verdict::deny;
    } else if (*unparseable == "require_approval") {
      unparseable_verdict = sdk::gate_verdict::require_approval;
    } else {
      return config["on_unparseable"].error("expected allow, require_approval or deny, got " +
                                            config["on_unparseable"].describe());
    }
    for (auto& r : rules) {
      if (r.effects.size() == 1 && r.effects[0] == "shell.unparseable")
        r.decision = unparseable_verdict;
    }
    auto ws = config.get_string("workspace", "");
    if (!ws.ok()) return ws.error();
    if (!ws->empty() && (*ws)[0] != '/')
      return config["workspace"].error("expected an absolute path");
    as.default_workspace = *ws;
    for (auto [key, field] : {std::pair{"protected_branches", &as.protected_branches},
                              std::pair{"protected_paths", &as.protected_paths},
                              std::pair{"allowed_hosts", &as.allowed_hosts},
                              std::pair{"scratch_paths", &as.scratch_paths},
                              std::pair{"protected_environments", &as.protected_environments},
                              std::pair{"shared_resources", &as.shared_resources},
                              std::pair{"trusted_eval_sources", &as.trusted_eval_sources}}) {
      if (auto s = read_list(config, key, *field); !s.ok()) return s;
    }
    for (const auto& p : as.scratch_paths) {
      if (p.empty() || (p[0] != '/' && !p.starts_with("~/")) || p == "/" || p == "~/") {
        return config["scratch_paths"].error(
            "expected absolute (or ~/...) paths other than / and ~, got \"" + p + "\"");
      }
    }
    for (auto& h : as.allowed_hosts) {
      for (auto& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    auto depth = config.get_positive_int("max_depth", as.max_depth);
    if (!depth.ok()) return depth.error();
    if (*depth > 64) return config["max_depth"].error("expected at most 64");
    as.max_depth = static_cast<int>(*depth);
    auto bytes = config.get_positive_int("max_command_bytes",
                                         static_cast<std::int64_t>(as.max_command_bytes));
    if (!bytes.ok()) return bytes.error();
    if (*bytes > 16 * 1024 * 1024)
      return config["max_command_bytes"].error("expected at most 16 MiB");
    as.max_command_bytes = static_cast<std::size_t>(*bytes);
    auto findings =
        config.get_positive_int("max_findings", static_cast<std::int64_t>(as.max_facts));
    if (!findings.ok()) return findings.error();
    as.max_facts = static_cast<std::size_t>(*findings);

    evasion_settings ev;
    const sdk::config_node evn = config["evasion"];
    if (!evn.is_missing() && !evn.is_null()) {
      if (auto s = evn.check_keys({"min_variants", "window", "breaker", "max_sessions"}); !s.ok())
        return s;
      auto mv = evn.get_positive_int("min_variants", static_cast<std::int64_t>(ev.min_variants));
      if (!mv.ok()) return mv.error();
      if (*mv < 2)
        return evn["min_variants"].error("expected at least 2 (one denial alone never trips)");
      if (*mv > static_cast<std::int64_t>(max_denials_per_session)) {
        return evn["min_variants"].error("expected at most " +
                                         std::to_string(max_denials_per_session));
      }
      ev.min_variants = static_cast<std::uint64_t>(*mv);
      auto w = evn.get_duration("window", std::chrono::nanoseconds(ev.window_ns));
      if (!w.ok()) return w.error();
      if (w->count() <= 0) return evn["window"].error("expected a positive duration");
      ev.window_ns = w->count();
      auto b = evn.get_string("breaker", ev.breaker);
      if (!b.ok()) return b.error();
      if (b->empty()) return evn["breaker"].error("expected a breaker name");
      ev.breaker = *b;
      auto ms = evn.get_positive_int("max_sessions", static_cast<std::int64_t>(ev.max_sessions));
      if (!ms.ok()) return ms.error();
      ev.max_sessions = static_cast<std::size_t>(*ms);
    }
    std::string audit_breaker = "agent.destructive";
    bool audit_trip = true;
    const sdk::config_node au = config["audit"];
    if (!au.is_missing() && !au.is_null()) {
      if (auto s = au.check_keys({"breaker", "trip"}); !s.ok()) return s;
      auto b = au.get_string("breaker", audit_breaker);
      if (!b.ok()) return b.error();
      audit_breaker = *b;
      auto t = au.get_bool("trip", audit_trip);
      if (!t.ok()) return t.error();
      audit_trip = *t;
    }
    rules_ = std::move(rules);
    analyzer_ = std::make_unique<da::analyzer>(std::move(as));
    evasion_ = std::move(ev);
    audit_breaker_ = std::move(audit_breaker);
    audit_trip_ = audit_trip;
    return sdk::status::success();
  }

  static int rank(sdk::gate_verdict v) {
    switch (v) {
      case sdk::gate_verdict::allow:
        return 0;
      case sdk::gate_verdict::require_approval:
        return 1;
      case sdk::gate_verdict::deny:
        return 2;
    }
    return 2;
  }

  evaluation evaluate(const std::vector<da::fact>& facts) const {
    evaluation best;
    for (const auto& f : facts) {
      const da::rule* decided = nullptr;
      bool excepted = false;
      for (const auto& r : rules_) {
        if (!da::rule_matches(r, f)) continue;
        if (r.decision == sdk::gate_verdict::allow) {
          excepted = true;
          break;
        }
        if (decided == nullptr || rank(r.decision) > rank(decided->decision)) decided = &r;
      }
      if (excepted || decided == nullptr) continue;
      ++best.findings;
      if (best.rule == nullptr || rank(decided->decision) > rank(best.verdict)) {
        best.verdict = decided->decision;
        best.rule = decided;
        best.fact = &f;
      }
    }
    return best;
  }

  sdk::gate_decision describe(const evaluation& e, const v1::ActionRequest& action) const {
    sdk::gate_decision d;
    if (e.rule == nullptr) {
      d.verdict = sdk::gate_verdict::allow;
      d.rule_id = "destructive_action.no_match";
      d.reason = "nothing destructive found";
      return d;
    }
    d.verdict = e.verdict;
    d.rule_id = e.rule->id;
    std::string reason =
        da::render(e.rule->explain.empty() ? e.rule->id : e.rule->explain, *e.fact);
    const std::string snippet = e.fact->snippet.empty() ? action_text(action) : e.fact->snippet;
    if (!snippet.empty()) reason += " [" + clip(snippet, 160) + "]";
    const std::string& via = e.fact->attr("via");
    if (!via.empty()) reason += " (via " + clip(via, 120) + ")";
    if (e.findings > 1) {
      reason +=
          "; " + std::to_string(e.findings - 1) + " other finding" + (e.findings > 2 ? "s" : "");
    }
    d.reason = std::move(reason);
    d.alternative = da::render(e.rule->alternative, *e.fact);
    if (e.rule->alternative.empty()) d.alternative.clear();
    return d;
  }

  void record_denial(const std::string& key, const std::string& run_id, const std::string& rule_id,
                     const std::string& text, sdk::context& ctx) {
    const std::int64_t now = ctx.now_unix_nano();
    auto it = sessions_.find(key);
    if (it == sessions_.end()) {
      if (sessions_.size() >= evasion_.max_sessions) {
        // Forget the session seen least recently (bounded memory, whatever the traffic).
        auto oldest = std::min_element(
            sessions_.begin(), sessions_.end(),
            [](const auto& a, const auto& b) { return a.second.last_seen < b.second.last_seen; });
        sessions_.erase(oldest);
        ++sessions_evicted_;
      }
      it = sessions_.emplace(key, session_state{}).first;
    }
    session_state& s = it->second;
    s.last_seen = now;
    const std::int64_t horizon = now - evasion_.window_ns;
    s.denials.erase(std::remove_if(s.denials.begin(), s.denials.end(),
                                   [&](const denial& d) { return d.time < horizon; }),
                    s.denials.end());
    if (s.denials.size() >= max_denials_per_session) s.denials.erase(s.denials.begin());
    s.denials.push_back({now, rule_id, fnv1a(text), clip(text, 160)});
    if (s.tripped_at != 0 && s.tripped_at >= horizon) return;  // already told, this window
    std::vector<std::uint64_t> digests;
    for (const auto& d : s.denials) digests.push_back(d.digest);
    std::sort(digests.begin(), digests.end());
    const auto variants =
        static_cast<std::uint64_t>(std::unique(digests.begin(), digests.end()) - digests.begin());
    if (variants < evasion_.min_variants) return;
    s.tripped_at = now;
    ++evasion_trips_;
    std::map<std::string, int> rules;
    for (const auto& d : s.denials) ++rules[d.rule_id];
    std::string rule_list;
    for (const auto& [r, n] : rules) {
      if (!rule_list.empty()) rule_list += ", ";
      rule_list += r + " x" + std::to_string(n);
    }
    sdk::trip_request t;
    t.breaker = evasion_.breaker;
    t.reason = std::to_string(variants) + " different denied actions in one session within " +
               std::to_string(evasion_.window_ns / 1'000'000'000) +
               "s: the agent is trying variations of what the gate refuses";
    t.evidence = {{"session", key},
                  {"denied_variants", std::to_string(variants)},
                  {"denied_attempts", std::to_string(s.denials.size())},
                  {"threshold", std::to_string(evasion_.min_variants)},
                  {"rules", rule_list}};
    const std::size_t shown = std::min<std::size_t>(3, s.denials.size());
    for (std::size_t i = s.denials.size() - shown; i < s.denials.size(); ++i) {
      t.evidence.push_back({"attempt_" + std::to_string(i + 1), s.denials[i].example});
    }
    t.evidence.push_back({"what_to_do",
                          "read the attempts; stop the session and review its task before "
                          "resetting (docs/runbook.md#agent.evasion)"});
    t.run_id = run_id;
    ctx.trip(std::move(t));
  }

  void publish(sdk::context& ctx) const {
    ctx.set_gauge("gate_requests", static_cast<double>(gate_requests_));
    ctx.set_gauge("allowed", static_cast<double>(allowed_));
    ctx.set_gauge("approvals_required", static_cast<double>(approvals_));
    ctx.set_gauge("denied", static_cast<double>(denied_));
    ctx.set_gauge("executed_audited", static_cast<double>(audited_));
    ctx.set_gauge("executed_denied", static_cast<double>(executed_denied_));
    ctx.set_gauge("executed_unapproved", static_cast<double>(executed_unapproved_));
    ctx.set_gauge("evasion_trips", static_cast<double>(evasion_trips_));
    ctx.set_gauge("sessions_tracked", static_cast<double>(sessions_.size()));
    ctx.set_gauge("sessions_evicted", static_cast<double>(sessions_evicted_));
  }

  std::vector<da::rule> rules_;
  std::unique_ptr<da::analyzer> analyzer_;
  evasion_settings evasion_;
  std::string audit_breaker_ = "agent.destructive";
  bool audit_trip_ = true;
  std::map<std::string, session_state> sessions_;
  std::uint64_t gate_requests_ = 0;
  std::uint64_t allowed_ = 0;
  std::uint64_t approvals_ = 0;
  std::uint64_t denied_ = 0;
  std::uint64_t audited_ = 0;
  std::uint64_t executed_denied_ = 0;
  std::uint64_t executed_unapproved_ = 0;
  std::uint64_t evasion_trips_ = 0;
  std::uint64_t sessions_evicted_ = 0;
};

}  // namespace

LOOPWARDEN_PLUGIN(destructive_action_monitor);
