#pragma once
// YAML text -> sdk::config_node, for the rules files (the embedded defaults and `rules_file:`),
// so rule errors name the file, the field path and the line like every other config error.
// The only code in the plugin that sees yaml-cpp.

#include <string>
#include <string_view>

#include <loopwarden/config_node.hpp>
#include <loopwarden/status.hpp>

namespace loopwarden::destructive_action {

// Parses one YAML document. `source` names it in errors; `path` is the root's field path.
// Errors: invalid_argument with the line for syntax errors and duplicate keys.
sdk::result<sdk::config_node> parse_yaml(std::string_view text, const std::string& source,
                                         const std::string& path);

}  // namespace loopwarden::destructive_action
