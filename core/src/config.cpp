#include <loopwarden/core/config.hpp>
#include <loopwarden/core/plugin_trust.hpp>

// yaml-cpp appears in this file only: its nodes and exceptions are turned into config_node trees
// and statuses in one place (yaml_to_tree), and everything else reads the trees.
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <loopwarden/core/status.hpp>
#include <map>
#include <optional>
#include <sstream>
#include <system_error>
#include <utility>

namespace loopwarden::core {
namespace {

namespace fs = std::filesystem;
using sdk::config_node;

constexpr std::string_view embedded_default_yaml =
    R"(# loopwarden default configuration (print it with `loopwarden config default`).
version: 1
log_level: info
# Durable state (breakers, audit log) lives here.
state_dir: ./loopwarden-state
# Directories searched for monitor plugins (<plugin>.so). Empty: the bundled plugin directory.
plugin_paths: []
# After an operator resets a breaker it stays half-open this long: a new trip re-opens it at once.
probation: 5m
monitors:
  # Halts a run whose loss (any metric whose name ends in "loss") becomes NaN or infinite.
  - name: nonfinite_loss
    plugin: threshold
    on_error: fail_closed
    config:
      metric: "*loss"
      non_finite: true
      breaker: training.nonfinite_loss
      action: halt
  # Self-improvement loops (cycle reports): rolls back to the last trusted candidate on goal
  # drift or a regression, halts on a failed critical constraint and after cycle 8.
  - name: goal_drift
    plugin: goal_drift
    on_error: fail_closed
  # Throttles generation when human review becomes a delivery pipeline's bottleneck, and asks for
  # approval when merges skip review or reviews become rubber stamps (stage timings).
  - name: review_bottleneck
    plugin: review_bottleneck
  # Answers gate requests for shell, SQL, git, file and HTTP actions (allow, deny, or ask a
  # human) from its shipped rules; trips agent.evasion on varied denied attempts in one session.
  - name: destructive_action
    plugin: destructive_action
    on_error: fail_closed
  # From the agent steps a harness sends: pauses an agent whose behaviour drifts from its own
  # baseline (agent.drift) and halts a session that loops or runs over budget (agent.runaway).
  - name: agent_drift
    plugin: agent_drift
  # Recursive training (generation summaries, embeddings): rolls back when the generated
  # distribution loses its spread, tails or diversity; pauses a generation with < 10 % real data.
  - name: variance_collapse
    plugin: variance_collapse
    on_error: fail_closed
)";

constexpr std::string_view embedded_default_source = "<embedded default>";
constexpr std::int64_t supported_version = 1;

// ---------------------------------------------------------------------------------------------
// yaml-cpp → config_node. The only code in loopwarden that sees yaml-cpp types: everything after
// this works on config_node trees, and every yaml-cpp exception is caught in yaml_to_tree.

struct tree_builder {
  const std::string& file;
  std::string_view text;  // the document, to tell `- ~` from an empty `-` (see element_line)

  static int line_of(const YAML::Node& n) {
    const YAML::Mark m = n.Mark();
    return m.is_null() ? 0 : m.line + 1;
  }

  // An empty sequence element (`-` alone) is marked at the next token, which may be the next
  // element; only an explicit null's mark is its own. The sequence's line is the honest fallback.
  int element_line(const YAML::Node& element, int sequence_line) const {
    if (!element.IsNull()) return line_of(element);
    const YAML::Mark m = element.Mark();
    if (m.is_null() || m.pos < 0 || static_cast<std::size_t>(m.pos) >= text.size()) {
      return sequence_line;
    }
    const std::string_view at = text.substr(static_cast<std::size_t>(m.pos));
    const bool explicit_null = at.starts_with("~") || at.starts_with("null") ||
                               at.starts_with("Null") || at.starts_with("NULL");
    return explicit_null ? line_of(element) : sequence_line;
  }

  // `line` is passed in rather than read from `n` because yaml-cpp marks an empty value (`key:`)
  // at the token after it, often the next line; map values therefore carry their key's line,
  // which is also where an operator looks for the field named in a message.
  result<config_node> convert(const YAML::Node& n, const std::string& path, int line) const {
    switch (n.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        return config_node::make_null(path, file, line);
      case YAML::NodeType::Scalar:
        // Plain scalars carry the tag "?"; quoted ones "!", explicit tags their own name.
        return config_node::make_scalar(path, file, line, n.Scalar(), n.Tag() != "?");
      case YAML::NodeType::Sequence: {
        auto seq = config_node::make_sequence(path, file, line);
        std::size_t index = 0;
        for (const auto& element : n) {
          auto child = convert(element, path + "[" + std::to_string(index) + "]",
                               element_line(element, line));
          if (!child) return child.error();
          seq.push_back(std::move(child).value());
          ++index;
        }
        return seq;
      }
      case YAML::NodeType::Map: {
        auto map = config_node::make_map(path, file, line);
        std::map<std::string, int, std::less<>> first_line;
        for (const auto& entry : n) {
          const YAML::Node& key = entry.first;
          const int key_line = line_of(key);
          if (!key.IsScalar()) {
            const char* kind = key.IsMap() ? "a map" : key.IsSequence() ? "a sequence" : "null";
            return config_node::make_null(path, file, key_line)
                .error(std::string("map keys must be plain strings, got ") + kind);
          }
          const std::string& name = key.Scalar();
          std::string child_path = path.empty() ? name : path + "." + name;
          // YAML forbids duplicate keys but yaml-cpp keeps both; a silent "last one wins" would
          // hide a half-edited file.
          if (auto [it, fresh] = first_line.emplace(name, key_line); !fresh) {
            return config_node::make_null(child_path, file, key_line)
                .error("duplicate key, first at line " + std::to_string(it->second));
          }
          auto child = convert(entry.second, child_path, key_line);
          if (!child) return child.error();
          map.insert(name, std::move(child).value());
        }
        return map;
      }
    }
    return config_node::make_null(path, file, line);
  }
};

status empty_document(const std::string& source) {
  return config_node::make_null("", source, 1)
      .error("the document is empty: expected a map of settings starting with `version: 1`");
}

// Counts the documents of a stream without building them, and notices a parser that is stuck.
// yaml-cpp 0.7 (Debian bookworm's) loops forever on some malformed streams, a lone `,` among
// them (jbeder/yaml-cpp#1040, fixed upstream after 0.8): it reports an empty document at the same
// position again and again, and YAML::LoadAll keeps every one, so a config of two bytes took all
// memory (found by the config fuzz target). A document that starts where the one before it
// started is where the parser stopped making progress.
class document_counter final : public YAML::EventHandler {
 public:
  std::size_t documents = 0;
  YAML::Mark second_node = YAML::Mark::null_mark();  // the second document's first node
  std::optional<YAML::Mark> stuck_at;

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (documents > 0 && mark.pos == last_start_.pos) stuck_at = mark;
    last_start_ = mark;
    ++documents;
    seen_node_ = false;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnMapEnd() override {}

 private:
  void node(const YAML::Mark& mark) {
    if (!seen_node_ && documents == 2) second_node = mark;
    seen_node_ = true;
  }
  YAML::Mark last_start_;
  bool seen_node_ = false;
};

result<config_node> yaml_to_tree(std::string_view yaml, const std::string& source) {
  try {
    const std::string text(yaml);
    document_counter counter;
    {
      std::istringstream in(text);
      YAML::Parser parser(in);
      while (parser.HandleNextDocument(counter) && !counter.stuck_at) {
      }
    }
    if (counter.stuck_at) {
      return make_error(status_code::invalid_argument,
                        source + ":" + std::to_string(counter.stuck_at->line + 1) + ":" +
                            std::to_string(counter.stuck_at->column + 1) +
                            ": yaml syntax error: unexpected token (the parser cannot continue "
                            "here)");
    }
    if (counter.documents == 0) return empty_document(source);
    if (counter.documents > 1) {
      const int line = counter.second_node.is_null() ? 0 : counter.second_node.line + 1;
      return config_node::make_null("", source, line)
          .error("expected one yaml document, found " + std::to_string(counter.documents));
    }
    const YAML::Node root = YAML::Load(text);
    // `---` or `~` alone: as empty as no text at all, and yaml-cpp marks it at the end.
    if (root.IsNull()) return empty_document(source);
    return tree_builder{source, yaml}.convert(root, "", std::max(1, tree_builder::line_of(root)));
  } catch (const YAML::Exception& e) {
    std::string m = source;
    if (!e.mark.is_null()) {
      m += ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1);
    }
    m += ": yaml syntax error: " + e.msg;
    return make_error(status_code::invalid_argument, std::move(m));
  }
}

// ---------------------------------------------------------------------------------------------
// Validation of the typed config, from the config_node tree only.

// `parse` is the SDK's name parser, so config files accept exactly the names the rest of
// loopwarden prints; `names` lists them for the message.
template <typename E>
result<E> read_enum(const config_node& n, std::optional<E> (*parse)(std::string_view),
                    std::string_view names) {
  if (n.is_scalar()) {
    if (auto v = parse(n.scalar())) return *v;
  }
  return n.error("expected one of " + std::string(names) + ", got " + n.describe());
}

std::optional<error_policy> parse_error_policy(std::string_view name) {
  if (name == "fail_closed") return error_policy::fail_closed;
  if (name == "disable") return error_policy::disable;
  return std::nullopt;
}

bool absent(const config_node& n) { return n.is_missing() || n.is_null(); }

// Monitor instance and plugin names end up in file names, metric labels and log lines.
bool is_plain_name(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

constexpr std::string_view plain_name_rule = "lowercase letters, digits, '_', '.' or '-'";

// Absolute and lexically normal, without a trailing separator.
std::string resolve_path(const std::string& text, const fs::path& base) {
  fs::path p(text);
  if (p.is_relative()) p = base / p;
  p = p.lexically_normal();
  if (!p.has_filename() && p.has_relative_path()) p = p.parent_path();
  return p.string();
}

result<std::string> read_path(const config_node& n, const fs::path& base, std::string_view what) {
  auto text = n.as_string();
  if (!text) return text.error();
  if (text->empty()) return n.error("expected " + std::string(what) + ", got \"\"");
  return resolve_path(*text, base);
}

status read_breakers(const config_node& node, config& out) {
  if (absent(node)) return status::success();
  if (!node.is_map()) {
    return node.error("expected a map from breaker name to settings, got " + node.describe());
  }
  for (const auto& name : node.keys()) {
    const config_node entry = node[name];
    breaker_config b;
    b.name = name;
    b.node = entry;
    if (!entry.is_map() && !entry.is_null()) {
      return entry.error("expected a map with action, severity, scope or probation, got " +
                         entry.describe());
    }
    if (auto s = entry.check_keys({"action", "severity", "scope", "probation"}); !s.ok()) return s;
    if (auto n = entry["action"]; !absent(n)) {
      auto v = read_enum(n, &sdk::parse_breaker_action,
                         "halt, pause, rollback, throttle, require_approval, alert");
      if (!v) return v.error();
      b.action = *v;
    }
    if (auto n = entry["severity"]; !absent(n)) {
      auto v = read_enum(n, &sdk::parse_severity, "info, warning, critical");
      if (!v) return v.error();
      b.severity = *v;
    }
    if (auto n = entry["scope"]; !absent(n)) {
      auto v = read_enum(n, &sdk::parse_breaker_scope, "run, global");
      if (!v) return v.error();
      b.scope = *v;
    }
    if (auto n = entry["probation"]; !absent(n)) {
      auto v = n.as_duration();
      if (!v) return v.error();
      b.probation = *v;
    }
    out.breakers.push_back(std::move(b));
  }
  return status::success();
}

// A byte count: a plain integer, or one with a unit: 512MiB, 2GiB, 100MB, 64KiB, 1G.
result<std::uint64_t> read_byte_size(const config_node& n) {
  auto text = n.as_string();
  if (!text) return text.error();
  const std::string& t = *text;
  std::size_t digits = 0;
  while (digits < t.size() && t[digits] >= '0' && t[digits] <= '9') ++digits;
  if (digits == 0 || digits > 15) {
    return n.error("expected a size such as 512MiB or 2GiB, got " + n.describe());
  }
  const std::uint64_t value = std::stoull(t.substr(0, digits));
  static const std::pair<const char*, std::uint64_t> units[] = {{"", 1},
                                                                {"B", 1},
                                                                {"K", 1ull << 10},
                                                                {"KiB", 1ull << 10},
                                                                {"KB", 1000},
                                                                {"M", 1ull << 20},
                                                                {"MiB", 1ull << 20},
                                                                {"MB", 1000 * 1000},
                                                                {"G", 1ull << 30},
                                                                {"GiB", 1ull << 30},
                                                                {"GB", 1000ull * 1000 * 1000}};
  const std::string unit = t.substr(digits);
  for (const auto& [name, factor] : units) {
    if (unit == name) return value * factor;
  }
  return n.error("expected a size such as 512MiB or 2GiB, got " + n.describe());
}

status read_monitor(const config_node& entry, const fs::path& base, monitor_config& m) {
  m.node = entry;
  if (!entry.is_map()) {
    return entry.error("expected a map with name and plugin (or path), got " + entry.describe());
  }
  if (auto s = entry.check_keys({"name", "plugin", "path", "optional", "enabled", "mode",
                                 "on_error", "deadline", "queue_capacity", "isolation",
                                 "memory_limit", "sha256", "config"});
      !s.ok()) {
    return s;
  }

  status missing;
  const config_node name = entry.require("name", missing);
  if (!missing.ok()) return missing;
  auto name_text = name.as_string();
  if (!name_text) return name_text.error();
  if (!is_plain_name(*name_text)) {
    return name.error("expected a name of " + std::string(plain_name_rule) + ", got " +
                      name.describe());
  }
  m.name = std::move(name_text).value();

  const config_node plugin = entry["plugin"];
  const config_node path = entry["path"];
  if (absent(plugin) == absent(path)) return entry.error("needs exactly one of plugin or path");
  if (!absent(plugin)) {
    auto text = plugin.as_string();
    if (!text) return text.error();
    // A plugin name becomes "<name>.so" on the search path: no separators, no "..".
    if (!is_plain_name(*text) || *text == "." || *text == "..") {
      return plugin.error("expected a plugin name of " + std::string(plain_name_rule) +
                          " (use path: for a file), got " + plugin.describe());
    }
    m.plugin = std::move(text).value();
  } else {
    auto p = read_path(path, base, "a plugin file");
    if (!p) return p.error();
    m.path = std::move(p).value();
  }

  auto optional = entry.get_bool("optional", false);
  if (!optional) return optional.error();
  m.optional = *optional;
  auto enabled = entry.get_bool("enabled", true);
  if (!enabled) return enabled.error();
  m.enabled = *enabled;
  if (auto n = entry["mode"]; !absent(n)) {
    auto v = n.as_string();
    if (!v) return v.error();
    if (*v == "shadow") {
      m.shadow = true;
    } else if (*v != "enforce") {
      return n.error("expected enforce or shadow, got \"" + *v + "\"");
    }
  }
  if (auto n = entry["on_error"]; !absent(n)) {
    auto v = read_enum(n, &parse_error_policy, "fail_closed, disable");
    if (!v) return v.error();
    m.on_error = *v;
  }
  auto deadline = entry.get_duration("deadline", m.deadline);
  if (!deadline) return deadline.error();
  m.deadline = *deadline;
  auto capacity =
      entry.get_positive_int("queue_capacity", static_cast<std::int64_t>(m.queue_capacity));
  if (!capacity) return capacity.error();
  if (*capacity > 1'000'000) {
    return entry["queue_capacity"].error("expected at most 1000000, got " +
                                         entry["queue_capacity"].describe());
  }
  m.queue_capacity = static_cast<std::size_t>(*capacity);
  if (auto n = entry["isolation"]; !absent(n)) {
    auto v = n.as_string();
    if (!v) return v.error();
    if (*v == "process") {
      m.isolation = isolation_mode::process;
    } else if (*v != "thread") {
      return n.error("expected thread or process, got \"" + *v + "\"");
    }
  }
  if (auto n = entry["memory_limit"]; !absent(n)) {
    auto bytes = read_byte_size(n);
    if (!bytes) return bytes.error();
    if (*bytes != 0 && m.isolation != isolation_mode::process) {
      return n.error("needs isolation: process (a thread cannot have its own memory limit)");
    }
    if (*bytes != 0 && *bytes < (64u << 20)) {
      return n.error("expected at least 64MiB (the monitor host needs room to start), got " +
                     n.describe());
    }
    m.memory_limit_bytes = *bytes;
  }
  if (auto n = entry["sha256"]; !absent(n)) {
    // The scalar's text, whatever YAML thinks it is: an all-digit digest reads as a number.
    auto digest = n.is_scalar() ? parse_sha256_hex(n.scalar()) : std::nullopt;
    if (!digest) {
      return n.error(
          "expected 64 hexadecimal digits (the plugin file's SHA-256, as `sha256sum FILE` "
          "prints it), got " +
          n.describe());
    }
    m.sha256 = std::move(*digest);
  }
  m.config = entry["config"];
  return status::success();
}

status read_monitors(const config_node& node, const fs::path& base, config& out) {
  if (absent(node)) return status::success();
  if (!node.is_sequence()) {
    return node.error("expected a sequence of monitors, got " + node.describe());
  }
  std::map<std::string, int, std::less<>> first_line;
  for (std::size_t i = 0; i < node.size(); ++i) {
    monitor_config m;
    if (auto s = read_monitor(node.at(i), base, m); !s.ok()) return s;
    const config_node name = m.node["name"];
    if (auto [it, fresh] = first_line.emplace(m.name, name.line()); !fresh) {
      return name.error("duplicate monitor name \"" + m.name + "\", first at line " +
                        std::to_string(it->second));
    }
    out.monitors.push_back(std::move(m));
  }
  return status::success();
}

// The longest ipc path the kernel accepts (sockaddr_un.sun_path less its terminator).
constexpr std::size_t max_ipc_path = 107;

// An endpoint: ipc (relative paths resolved against the config's directory) or tcp.
result<std::string> read_endpoint(const config_node& n, const fs::path& base) {
  auto text = n.as_string();
  if (!text) return text.error();
  constexpr std::string_view ipc = "ipc://";
  constexpr std::string_view tcp = "tcp://";
  if (text->rfind(ipc, 0) == 0) {
    const std::string path = text->substr(ipc.size());
    if (path.empty()) return n.error("expected an ipc path after ipc://");
    std::string resolved = resolve_path(path, base);
    if (resolved.size() > max_ipc_path) {
      return n.error("ipc path is " + std::to_string(resolved.size()) +
                     " bytes once made absolute, longer than the " + std::to_string(max_ipc_path) +
                     " the operating system allows");
    }
    return std::string(ipc) + resolved;
  }
  if (text->rfind(tcp, 0) == 0 && text->size() > tcp.size()) return *text;
  return n.error(
      "expected an endpoint such as ipc:///run/loopwarden/ingest.sock or "
      "tcp://127.0.0.1:5556, got " +
      n.describe());
}

std::optional<ingest_socket> parse_ingest_socket(std::string_view name) {
  if (name == "pull") return ingest_socket::pull;
  if (name == "sub") return ingest_socket::sub;
  return std::nullopt;
}

std::optional<overflow_policy> parse_overflow(std::string_view name) {
  if (name == "block") return overflow_policy::block;
  if (name == "drop") return overflow_policy::drop;
  return std::nullopt;
}

status read_ingest(const config_node& entry, const fs::path& base, ingest_config& in) {
  in.node = entry;
  if (!entry.is_map()) {
    return entry.error("expected a map with socket and bind (or connect), got " + entry.describe());
  }
  if (auto s = entry.check_keys({"socket", "bind", "connect", "topics"}); !s.ok()) return s;
  status missing;
  auto kind = read_enum(entry.require("socket", missing), &parse_ingest_socket, "pull, sub");
  if (!missing.ok()) return missing;
  if (!kind) return kind.error();
  in.socket = *kind;
  const config_node bind = entry["bind"];
  const config_node connect = entry["connect"];
  if (absent(bind) == absent(connect)) return entry.error("needs exactly one of bind or connect");
  if (in.socket == ingest_socket::pull && !absent(connect)) {
    return connect.error("a pull socket binds; use socket: sub to connect to a publisher");
  }
  in.bind = !absent(bind);
  auto ep = read_endpoint(in.bind ? bind : connect, base);
  if (!ep) return ep.error();
  in.endpoint = std::move(ep).value();
  if (auto t = entry["topics"]; !absent(t)) {
    if (in.socket != ingest_socket::sub) return t.error("topics apply to sub sockets only");
    auto topics = t.as_string_list();
    if (!topics) return topics.error();
    in.topics = std::move(topics).value();
  }
  return status::success();
}

status read_transport(const config_node& node, const fs::path& base, config& out) {
  transport_config& t = out.transport;
  const std::string run = "ipc://" + out.state_dir + "/run/";
  t.breakers = run + "breakers.sock";
  t.gate = run + "gate.sock";
  t.control = "ipc://" + out.state_dir + "/control/control.sock";
  if (absent(node)) {
    t.ingest.push_back({ingest_socket::pull, run + "ingest.sock", true, {}, {}});
    return status::success();
  }
  if (!node.is_map())
    return node.error("expected a map of transport settings, got " + node.describe());
  if (auto s =
          node.check_keys({"ingest", "breakers", "gate", "control", "control_curve", "ipc_mode",
                           "heartbeat_interval", "queue_capacity", "overflow", "drain_timeout"});
      !s.ok()) {
    return s;
  }
  if (auto n = node["ingest"]; !absent(n)) {
    if (!n.is_sequence() || n.size() == 0) {
      return n.error("expected a non-empty sequence of ingest sockets, got " + n.describe());
    }
    for (std::size_t i = 0; i < n.size(); ++i) {
      ingest_config in;
      if (auto s = read_ingest(n.at(i), base, in); !s.ok()) return s;
      t.ingest.push_back(std::move(in));
    }
  } else {
    t.ingest.push_back({ingest_socket::pull, run + "ingest.sock", true, {}, {}});
  }
  for (auto [key, field] : {std::pair{"breakers", &t.breakers}, std::pair{"gate", &t.gate},
                            std::pair{"control", &t.control}}) {
    if (auto n = node[key]; !absent(n)) {
      auto ep = read_endpoint(n, base);
      if (!ep) return ep.error();
      *field = std::move(ep).value();
    }
  }
  if (auto n = node["control_curve"]; !absent(n)) {
    if (auto s = n.check_keys({"secret_key_file", "operator_keys"}); !s.ok()) return s;
    status missing;
    auto key_file = read_path(n.require("secret_key_file", missing), base, "a key file");
    if (!missing.ok()) return missing;
    if (!key_file) return key_file.error();
    t.control_secret_key_file = std::move(key_file).value();
    auto keys = n.require("operator_keys", missing).as_string_list();
    if (!missing.ok()) return missing;
    if (!keys) return keys.error();
    for (std::size_t i = 0; i < keys->size(); ++i) {
      if ((*keys)[i].size() != 40) {
        const config_node k =
            n["operator_keys"].is_sequence() ? n["operator_keys"].at(i) : n["operator_keys"];
        return k.error("expected a 40-character Z85 CURVE public key, got " + k.describe());
      }
    }
    t.operator_keys = std::move(keys).value();
  }
  if (t.control.rfind("tcp://", 0) == 0 && t.control_secret_key_file.empty()) {
    return node["control"].error(
        "a tcp control socket needs control_curve (CURVE keys), so that only operators can "
        "connect; use ipc:// for a local operator");
  }
  if (auto n = node["ipc_mode"]; !absent(n)) {
    auto text = n.as_string();
    if (!text) return text.error();
    unsigned mode = 0;
    bool octal = !text->empty() && text->size() <= 4;
    for (char c : *text) {
      if (c < '0' || c > '7') octal = false;
      mode = mode * 8 + static_cast<unsigned>(c - '0');
    }
    if (!octal || mode > 0777) {
      return n.error("expected an octal file mode such as \"0660\" (quote it), got " +
                     n.describe());
    }
    t.ipc_mode = mode;
  }
  auto hb = node.get_duration("heartbeat_interval", t.heartbeat_interval);
  if (!hb) return hb.error();
  if (hb->count() <= 0) return node["heartbeat_interval"].error("expected a positive duration");
  t.heartbeat_interval = *hb;
  auto cap = node.get_positive_int("queue_capacity", static_cast<std::int64_t>(t.queue_capacity));
  if (!cap) return cap.error();
  t.queue_capacity = static_cast<std::size_t>(*cap);
  if (auto n = node["overflow"]; !absent(n)) {
    auto v = read_enum(n, &parse_overflow, "block, drop");
    if (!v) return v.error();
    t.overflow = *v;
  }
  auto drain = node.get_duration("drain_timeout", t.drain_timeout);
  if (!drain) return drain.error();
  t.drain_timeout = *drain;
  return status::success();
}

status read_telemetry(const config_node& node, config& out) {
  telemetry_config& t = out.telemetry;
  if (absent(node)) return status::success();
  if (!node.is_map())
    return node.error("expected a map of telemetry settings, got " + node.describe());
  if (auto s =
          node.check_keys({"silence_timeout", "silence_breaker", "loss_threshold", "max_sources"});
      !s.ok()) {
    return s;
  }
  auto silence = node.get_duration("silence_timeout", t.silence_timeout);
  if (!silence) return silence.error();
  t.silence_timeout = *silence;
  auto breaker = node.get_bool("silence_breaker", t.silence_breaker);
  if (!breaker) return breaker.error();
  t.silence_breaker = *breaker;
  auto loss = node.get_int("loss_threshold", 0);
  if (!loss) return loss.error();
  if (*loss < 0) return node["loss_threshold"].error("expected 0 (off) or a positive count");
  t.loss_threshold = static_cast<std::uint64_t>(*loss);
  auto max = node.get_positive_int("max_sources", static_cast<std::int64_t>(t.max_sources));
  if (!max) return max.error();
  t.max_sources = static_cast<std::size_t>(*max);
  return status::success();
}

status read_config(const config_node& root, const fs::path& base, config& out) {
  if (!root.is_map()) {
    return root.error("expected a map of settings at the top level, got " + root.describe());
  }
  // The version comes first: a file written for another version would otherwise fail on the
  // first key this version does not know, which hides the real problem.
  status missing;
  const config_node version = root.require("version", missing);
  if (!missing.ok()) return missing;
  auto v = version.as_int();
  if (!v) return v.error();
  if (*v != supported_version) {
    return version.error("unsupported config version " + std::to_string(*v) +
                         ", this loopwarden reads version " + std::to_string(supported_version));
  }
  out.version = static_cast<int>(*v);

  if (auto s =
          root.check_keys({"version", "log_level", "state_dir", "plugin_paths", "probation",
                           "breakers", "monitors", "transport", "telemetry",
                           // read by the sidecar (serve, config check), not the engine:
                           "alerts", "http", "approvals", "state_sync", "monitor_state_interval"});
      !s.ok()) {
    return s;
  }

  if (auto n = root["log_level"]; !absent(n)) {
    auto level = read_enum(n, &sdk::parse_log_level, "debug, info, warn, error");
    if (!level) return level.error();
    out.log_level = *level;
  }

  if (auto n = root["state_dir"]; !absent(n)) {
    auto dir = read_path(n, base, "a directory");
    if (!dir) return dir.error();
    out.state_dir = std::move(dir).value();
  } else {
    out.state_dir = resolve_path("./loopwarden-state", base);
  }

  if (auto n = root["plugin_paths"]; !absent(n)) {
    if (!n.is_sequence()) return n.error("expected a sequence of directories, got " + n.describe());
    for (std::size_t i = 0; i < n.size(); ++i) {
      auto dir = read_path(n.at(i), base, "a directory");
      if (!dir) return dir.error();
      out.plugin_paths.push_back(std::move(dir).value());
    }
  }

  auto probation = root.get_duration("probation", std::chrono::minutes(5));
  if (!probation) return probation.error();
  out.probation = *probation;

  if (auto s = read_breakers(root["breakers"], out); !s.ok()) return s;
  if (auto s = read_monitors(root["monitors"], base, out); !s.ok()) return s;
  if (auto s = read_transport(root["transport"], base, out); !s.ok()) return s;
  return read_telemetry(root["telemetry"], out);
}

}  // namespace

result<config> parse_config(std::string_view yaml, std::string source, std::string base_dir) {
  auto tree = yaml_to_tree(yaml, source);
  if (!tree) return tree.error();

  std::error_code ec;
  fs::path base = base_dir.empty() ? fs::current_path(ec) : fs::absolute(base_dir, ec);
  if (ec) {
    return make_error(
        status_code::io_error,
        source + ": can't resolve the base directory for relative paths: " + ec.message());
  }

  config out;
  out.source = std::move(source);
  out.root = tree.value();
  if (auto s = read_config(out.root, base, out); !s.ok()) return s;
  return out;
}

result<config> load_config_file(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    return make_error(status_code::io_error,
                      "can't read config file '" + path + "': it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    // errno names the reason on every platform we build for; fall back to a plain phrase.
    const int err = errno;
    std::string reason = err != 0 ? std::generic_category().message(err) : "can't open it";
    if (!reason.empty()) {
      reason[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(reason[0])));
    }
    return make_error(status_code::io_error, "can't read config file '" + path + "': " + reason);
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return make_error(status_code::io_error, "can't read config file '" + path + "': read failed");
  }
  const fs::path base = fs::absolute(fs::path(path), ec).parent_path();
  if (ec) {
    return make_error(status_code::io_error,
                      "can't read config file '" + path + "': " + ec.message());
  }
  return parse_config(text.str(), path, base.string());
}

void override_state_dir(config& cfg, const std::string& dir) {
  cfg.state_dir = resolve_path(dir, fs::current_path());
  const config_node t = cfg.root["transport"];
  const std::string run = "ipc://" + cfg.state_dir + "/run/";
  if (absent(t["breakers"])) cfg.transport.breakers = run + "breakers.sock";
  if (absent(t["gate"])) cfg.transport.gate = run + "gate.sock";
  if (absent(t["control"]))
    cfg.transport.control = "ipc://" + cfg.state_dir + "/control/control.sock";
  if (absent(t["ingest"])) {
    cfg.transport.ingest.clear();
    cfg.transport.ingest.push_back({ingest_socket::pull, run + "ingest.sock", true, {}, {}});
  }
}

std::string state_database_path(const config& cfg) {
  return (fs::path(cfg.state_dir) / "loopwarden.db").string();
}

std::string_view default_config_yaml() { return embedded_default_yaml; }

result<config> default_config() {
  return parse_config(embedded_default_yaml, std::string(embedded_default_source));
}

}  // namespace loopwarden::core
