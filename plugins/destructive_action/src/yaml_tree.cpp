#include "yaml_tree.hpp"

#include <yaml-cpp/yaml.h>

#include <map>

namespace loopwarden::destructive_action {
namespace {

using sdk::config_node;

int line_of(const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  return m.is_null() ? 0 : m.line + 1;
}

sdk::result<config_node> convert(const YAML::Node& n, const std::string& file,
                                 const std::string& path, int line) {
  switch (n.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return config_node::make_null(path, file, line);
    case YAML::NodeType::Scalar:
      return config_node::make_scalar(path, file, line_of(n) > 0 ? line_of(n) : line, n.Scalar(),
                                      n.Tag() != "?");
    case YAML::NodeType::Sequence: {
      auto seq = config_node::make_sequence(path, file, line);
      std::size_t i = 0;
      for (const auto& e : n) {
        const int l = line_of(e) > 0 ? line_of(e) : line;
        auto c = convert(e, file, path + "[" + std::to_string(i) + "]", l);
        if (!c.ok()) return c.error();
        seq.push_back(std::move(c).value());
        ++i;
      }
      return seq;
    }
    case YAML::NodeType::Map: {
      auto map = config_node::make_map(path, file, line);
      std::map<std::string, int> seen;
      for (const auto& entry : n) {
        const int key_line = line_of(entry.first);
        if (!entry.first.IsScalar()) {
          return config_node::make_null(path, file, key_line).error("map keys must be strings");
        }
        const std::string& key = entry.first.Scalar();
        const std::string child_path = path.empty() ? key : path + "." + key;
        if (auto [it, fresh] = seen.emplace(key, key_line); !fresh) {
          return config_node::make_null(child_path, file, key_line)
              .error("duplicate key, first at line " + std::to_string(it->second));
        }
        auto c = convert(entry.second, file, child_path, key_line);
        if (!c.ok()) return c.error();
        map.insert(key, std::move(c).value());
      }
      return map;
    }
  }
  return config_node::make_null(path, file, line);
}

}  // namespace

sdk::result<sdk::config_node> parse_yaml(std::string_view text, const std::string& source,
                                         const std::string& path) {
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    return convert(root, source, path, std::max(1, line_of(root)));
  } catch (const YAML::Exception& e) {
    std::string m = source;
    if (!e.mark.is_null()) m += ":" + std::to_string(e.mark.line + 1);
    return sdk::make_error(sdk::status_code::invalid_argument, m + ": yaml syntax error: " + e.msg);
  }
}

}  // namespace loopwarden::destructive_action
