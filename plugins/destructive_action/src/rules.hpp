#pragma once
// Rules are data: a YAML list that says which facts (fact.hpp) are allowed, denied or sent to a
// human, why, and what to do instead. The defaults ship as default_rules.yaml; an operator adds,
// replaces or disables rules in the monitor's config. docs/monitors/destructive-action.md has
// the full format and every default rule.
//
//   - id: git.force_push_protected        # unique, [a-z0-9_.-]
//     effect: git.push                    # one effect or a list (see fact.hpp); required
//     when:                               # every condition must hold (all optional)
//       force: true                       # an attribute: a value or a list of values
//       branch_protected: true
//       path_regex: '^/etc/'              # <attribute>_regex: an RE2 pattern (partial match)
//       program: [git]                    # exec facts: program names (globs allowed)
//       subcommand: ["push", "s3 rm"]     # exec: positional words the command starts with
//       subcommand_regex: '^\S+ delete-'  # exec: RE2 on the positional words (lower case)
//       positional_any: [delete]          # exec: any positional word equal to one of these
//       flags_any: [-f, --force]          # exec: any of these options present
//       flags_all: [--delete, --force]    # exec: all of them present
//       flags_none: [-n, --dry-run]       # exec: none of them present
//       argv_regex: '(?i)\bflushall\b'    # exec: RE2 on "program arg1 arg2 ..."
//     decision: deny                      # allow | require_approval | deny
//     explain: "force-pushes over {branch}, a protected branch"   # {attribute}, {program},
//     alternative: "push to a new branch and open a pull request"  # {command}, {args}
//
// For each fact, a matching `allow` rule is an exception that clears it; otherwise the strictest
// matching rule decides (ties: the first in order). The strictest fact decides the action.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <loopwarden/config_node.hpp>
#include <loopwarden/status.hpp>
#include <loopwarden/types.hpp>

#include "fact.hpp"

namespace re2 {
class RE2;
}

namespace loopwarden::destructive_action {

struct rule {
  std::string id;
  std::vector<std::string> effects;
  std::vector<std::string> programs;
  std::vector<std::vector<std::string>> subcommands;
  std::vector<std::string> positional_any;
  std::vector<std::string> flags_any;
  std::vector<std::string> flags_all;
  std::vector<std::string> flags_none;
  std::shared_ptr<const re2::RE2> argv_regex;
  std::shared_ptr<const re2::RE2> subcommand_regex;  // on the positional words, lower case
  struct attr_values {
    std::string key;
    std::vector<std::string> values;  // lower case
  };
  struct attr_pattern {
    std::string key;
    std::shared_ptr<const re2::RE2> re;
  };
  std::vector<attr_values> attrs;
  std::vector<attr_pattern> attr_regexes;
  sdk::gate_verdict decision = sdk::gate_verdict::allow;
  std::string explain;
  std::string alternative;
  std::string origin;  // "file:line", for messages
};

// Parses a `rules:` sequence. Errors name the field path and line of the first bad rule:
// unknown keys, a missing id/effect/decision, an unknown effect or attribute, a bad RE2 pattern
// (with RE2's reason), a placeholder that names no attribute, a duplicate id.
sdk::result<std::vector<rule>> parse_rules(const sdk::config_node& sequence);

// True when every condition of `r` holds for `f`.
bool rule_matches(const rule& r, const fact& f);

// `text` with each {name} replaced from `f` ({program}, {command}, {args} or an attribute).
std::string render(std::string_view text, const fact& f);

// The effects a rule may name.
bool known_effect(std::string_view effect);

}  // namespace loopwarden::destructive_action
