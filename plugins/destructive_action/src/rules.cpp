#include "rules.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "paths.hpp"

namespace loopwarden::destructive_action {
namespace {

constexpr std::string_view effects[] = {"exec",
                                        "file.delete",
                                        "file.write",
                                        "file.truncate",
                                        "file.move",
                                        "file.chmod",
                                        "disk.write",
                                        "git.push",
                                        "sql",
                                        "http",
                                        "code",
                                        "shell.pipe",
                                        "shell.dynamic",
                                        "shell.unparseable",
                                        "shell.fork_bomb",
                                        "net.raw",
                                        "scope.environment",
                                        "scope.resource"};

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool known_attribute(std::string_view key) {
  return std::find(fact_attributes.begin(), fact_attributes.end(), key) != fact_attributes.end();
}

sdk::result<std::shared_ptr<const re2::RE2>> compile(const sdk::config_node& node) {
  auto text = node.as_string();
  if (!text.ok()) return text.error();
  RE2::Options o;
  o.set_log_errors(false);
  auto re = std::make_shared<const re2::RE2>(*text, o);
  if (!re->ok()) return node.error("bad RE2 pattern: " + re->error());
  return re;
}

sdk::status check_placeholders(const sdk::config_node& node, const std::string& text) {
  std::size_t i = 0;
  while ((i = text.find('{', i)) != std::string::npos) {
    const auto close = text.find('}', i);
    if (close == std::string::npos) break;
    const std::string name = text.substr(i + 1, close - i - 1);
    if (name != "program" && name != "command" && name != "args" && !known_attribute(name)) {
      return node.error("unknown placeholder {" + name +
                        "}: use {program}, {command}, {args} "
                        "or an attribute name");
    }
    i = close + 1;
  }
  return sdk::status::success();
}

sdk::result<rule> parse_rule(const sdk::config_node& n) {
  if (!n.is_map())
    return n.error("expected a rule (a map with id, effect, decision), got " + n.describe());
  if (auto s = n.check_keys({"id", "effect", "when", "decision", "explain", "alternative"});
      !s.ok()) {
    return s;
  }
  rule r;
  r.origin = n.file() + ":" + std::to_string(n.line());
  sdk::status err;
  auto id = n.require("id", err);
  if (!err.ok()) return err;
  auto id_text = id.as_string();
  if (!id_text.ok()) return id_text.error();
  r.id = *id_text;
  if (r.id.empty() ||
      r.id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_.-") != std::string::npos) {
    return id.error("expected an id of lowercase letters, digits, '_', '.', '-', got " +
                    id.describe());
  }
  auto eff = n.require("effect", err);
  if (!err.ok()) return err;
  auto eff_list = eff.as_string_list();
  if (!eff_list.ok()) return eff_list.error();
  for (const auto& e : *eff_list) {
    if (!known_effect(e)) return eff.error("unknown effect \"" + e + "\"");
  }
  r.effects = *eff_list;
  auto dec = n.require("decision", err);
  if (!err.ok()) return err;
  auto dec_text = dec.as_string();
  if (!dec_text.ok()) return dec_text.error();
  if (*dec_text == "allow") {
    r.decision = sdk::gate_verdict::allow;
  } else if (*dec_text == "deny") {
    r.decision = sdk::gate_verdict::deny;
  } else if (*dec_text == "require_approval") {
    r.decision = sdk::gate_verdict::require_approval;
  } else {
    return dec.error("expected allow, require_approval or deny, got " + dec.describe());
  }
  auto explain = n.get_string("explain", "");
  if (!explain.ok()) return explain.error();
  r.explain = *explain;
  if (auto s = check_placeholders(n["explain"], r.explain); !s.ok()) return s;
  auto alt = n.get_string("alternative", "");
  if (!alt.ok()) return alt.error();
  r.alternative = *alt;
  if (auto s = check_placeholders(n["alternative"], r.alternative); !s.ok()) return s;

  const sdk::config_node when = n["when"];
  if (!when.is_missing() && !when.is_null() && !when.is_map()) {
    return when.error("expected a map of conditions, got " + when.describe());
  }
  for (const auto& key : when.keys()) {
    const sdk::config_node v = when[key];
    auto list = [&]() -> sdk::result<std::vector<std::string>> { return v.as_string_list(); };
    if (key == "program") {
      auto l = list();
      if (!l.ok()) return l.error();
      r.programs = *l;
    } else if (key == "subcommand") {
      auto l = list();
      if (!l.ok()) return l.error();
      for (const auto& s : *l) {
        std::vector<std::string> words;
        std::size_t i = 0;
        while (i < s.size()) {
          while (i < s.size() && s[i] == ' ') ++i;
          std::size_t j = s.find(' ', i);
          if (j == std::string::npos) j = s.size();
          if (j > i) words.push_back(lower(s.substr(i, j - i)));
          i = j;
        }
        if (words.empty()) return v.error("an empty subcommand matches everything: remove it");
        r.subcommands.push_back(std::move(words));
      }
    } else if (key == "positional_any" || key == "flags_any" || key == "flags_all" ||
               key == "flags_none") {
      auto l = list();
      if (!l.ok()) return l.error();
      auto& target = key == "positional_any" ? r.positional_any
                     : key == "flags_any"    ? r.flags_any
                     : key == "flags_all"    ? r.flags_all
                                             : r.flags_none;
      target = *l;
      if (key == "positional_any") {
        for (auto& w : target) w = lower(w);
      }
    } else if (key == "argv_regex" || key == "subcommand_regex") {
      auto re = compile(v);
      if (!re.ok()) return re.error();
      (key == "argv_regex" ? r.argv_regex : r.subcommand_regex) = *re;
    } else if (key.size() > 6 && key.ends_with("_regex") &&
               known_attribute(std::string_view(key).substr(0, key.size() - 6))) {
      auto re = compile(v);
      if (!re.ok()) return re.error();
      r.attr_regexes.push_back({key.substr(0, key.size() - 6), *re});
    } else if (known_attribute(key)) {
      auto l = list();
      if (!l.ok()) return l.error();
      rule::attr_values a{key, {}};
      for (const auto& s : *l) a.values.push_back(lower(s));
      r.attrs.push_back(std::move(a));
    } else {
      return v.error(
          "unknown condition: use program, subcommand, subcommand_regex, "
          "positional_any, flags_any, flags_all, flags_none, argv_regex, or an attribute (see "
          "docs/monitors/destructive-action.md), optionally with _regex");
    }
  }
  const bool exec_conditions = !r.programs.empty() || !r.subcommands.empty() ||
                               !r.positional_any.empty() || !r.flags_any.empty() ||
                               !r.flags_all.empty() || !r.flags_none.empty() || r.argv_regex ||
                               r.subcommand_regex;
  if (exec_conditions && std::find(r.effects.begin(), r.effects.end(), "exec") == r.effects.end()) {
    return when.error(
        "program, subcommand, positional_any, flags_* and argv_regex only apply "
        "to effect exec");
  }
  return r;
}

// ASCII case-insensitive equality; `lower_b` is already lower case.
bool equal_fold(std::string_view a, std::string_view lower_b) {
  if (a.size() != lower_b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != lower_b[i]) return false;
  }
  return true;
}

bool has_flag(const fact& f, const std::string& flag) {
  return std::find(f.flags.begin(), f.flags.end(), flag) != f.flags.end();
}

}  // namespace

bool known_effect(std::string_view e) {
  return std::find(std::begin(effects), std::end(effects), e) != std::end(effects);
}

sdk::result<std::vector<rule>> parse_rules(const sdk::config_node& seq) {
  std::vector<rule> out;
  if (seq.is_missing() || seq.is_null()) return out;
  if (!seq.is_sequence()) return seq.error("expected a list of rules, got " + seq.describe());
  std::set<std::string> ids;
  for (std::size_t i = 0; i < seq.size(); ++i) {
    auto r = parse_rule(seq.at(i));
    if (!r.ok()) return r.error();
    if (!ids.insert(r->id).second) {
      return seq.at(i)["id"].error("duplicate rule id \"" + r->id + "\"");
    }
    out.push_back(std::move(r).value());
  }
  return out;
}

bool rule_matches(const rule& r, const fact& f) {
  if (std::find(r.effects.begin(), r.effects.end(), f.effect) == r.effects.end()) return false;
  if (!r.programs.empty()) {
    bool hit = false;
    for (const auto& p : r.programs) {
      if (p == f.program ||
          (p.find_first_of("*?[") != std::string::npos && glob_match(p, f.program))) {
        hit = true;
        break;
      }
    }
    if (!hit) return false;
  }
  if (!r.subcommands.empty()) {
    bool hit = false;
    for (const auto& words : r.subcommands) {
      if (words.size() > f.positional.size()) continue;
      if (std::equal(words.begin(), words.end(), f.positional.begin(),
                     [](const std::string& a, const std::string& b) { return equal_fold(b, a); })) {
        hit = true;
        break;
      }
    }
    if (!hit) return false;
  }
  if (!r.positional_any.empty()) {
    bool hit = false;
    for (const auto& p : f.positional) {
      if (std::any_of(r.positional_any.begin(), r.positional_any.end(),
                      [&](const std::string& want) { return equal_fold(p, want); })) {
        hit = true;
        break;
      }
    }
    if (!hit) return false;
  }
  if (!r.flags_any.empty() && std::none_of(r.flags_any.begin(), r.flags_any.end(),
                                           [&](const std::string& x) { return has_flag(f, x); })) {
    return false;
  }
  for (const auto& x : r.flags_all) {
    if (!has_flag(f, x)) return false;
  }
  for (const auto& x : r.flags_none) {
    if (has_flag(f, x)) return false;
  }
  if (r.subcommand_regex && !RE2::PartialMatch(f.positional_text, *r.subcommand_regex)) {
    return false;
  }
  if (r.argv_regex && !RE2::PartialMatch(f.argv_text, *r.argv_regex)) return false;
  for (const auto& a : r.attrs) {
    const std::string& v = f.attr(a.key);
    if (std::none_of(a.values.begin(), a.values.end(),
                     [&](const std::string& want) { return equal_fold(v, want); })) {
      return false;
    }
  }
  for (const auto& a : r.attr_regexes) {
    if (!RE2::PartialMatch(f.attr(a.key), *a.re)) return false;
  }
  return true;
}

std::string render(std::string_view text, const fact& f) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    const auto open = text.find('{', i);
    if (open == std::string_view::npos) break;
    const auto close = text.find('}', open);
    if (close == std::string_view::npos) break;
    out += text.substr(i, open - i);
    const std::string_view name = text.substr(open + 1, close - open - 1);
    std::string value;
    if (name == "program") {
      value = f.program;
    } else if (name == "command") {
      value = f.snippet;
    } else if (name == "args") {
      for (const auto& a : f.args) {
        if (!value.empty()) value += ' ';
        value += a;
      }
    } else {
      value = f.attr(name);
    }
    for (auto& c : value) {
      if (c == unknown_marker) c = '?';
    }
    if (value.size() > 160) value = value.substr(0, 157) + "...";
    out += value.empty() ? std::string("(unknown)") : value;
    i = close + 1;
  }
  out += text.substr(i);
  return out;
}

}  // namespace loopwarden::destructive_action
