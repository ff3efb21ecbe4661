#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <loopwarden/core/config.hpp>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using loopwarden::core::config;
using loopwarden::core::default_config;
using loopwarden::core::default_config_yaml;
using loopwarden::core::error_policy;
using loopwarden::core::load_config_file;
using loopwarden::core::parse_config;
using loopwarden::sdk::status_code;
using namespace std::chrono_literals;

constexpr const char* source = "loopwarden.yaml";

// A fresh directory under the system temp dir, removed when the test ends.
class temp_dir {
 public:
  temp_dir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() / ("loopwarden_config_test_" + std::to_string(::getpid()) +
                                         "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const fs::path& path() const { return path_; }

  fs::path write(const std::string& name, const std::string& text) const {
    const fs::path p = path_ / name;
    std::ofstream out(p, std::ios::binary);
    out << text;
    return p;
  }

 private:
  fs::path path_;
};

}  // namespace

TEST_CASE("config parser refuses bad documents naming the field and the line", "[config]") {
  struct row {
    const char* label;
    std::string yaml;
    std::string message;
  };
  const std::vector<row> rows = {
      // The document as a whole.
      {"yaml syntax error: unclosed flow sequence", R"(version: 1
log_level: [info
)",
       "loopwarden.yaml:3:1: yaml syntax error: end of sequence flow not found"},
      {"yaml syntax error: bad indentation", R"(version: 1
monitors:
  - name: a
 plugin: threshold
)",
       "loopwarden.yaml:4:2: yaml syntax error: end of map not found"},
      {"yaml syntax error: tab indentation", "version: 1\n\tlog_level: info\n",
       "loopwarden.yaml:2:1: yaml syntax error: illegal tab when looking for indentation"},
      {"yaml syntax error: undefined alias", R"(version: 1
state_dir: *nowhere
)",
       "loopwarden.yaml:2:12: yaml syntax error: the referenced anchor is not defined"},
      {"empty document", "",
       "the document is empty: expected a map of settings starting with `version: 1` "
       "(loopwarden.yaml:1)"},
      {"only comments", "# nothing here\n",
       "the document is empty: expected a map of settings starting with `version: 1` "
       "(loopwarden.yaml:1)"},
      {"only a document marker", "---\n",
       "the document is empty: expected a map of settings starting with `version: 1` "
       "(loopwarden.yaml:1)"},
      {"only a null", "~\n",
       "the document is empty: expected a map of settings starting with `version: 1` "
       "(loopwarden.yaml:1)"},
      {"document is a sequence", R"(- version: 1
)",
       "expected a map of settings at the top level, got a sequence (loopwarden.yaml:1)"},
      {"document is a scalar", "version 1\n",
       "expected a map of settings at the top level, got \"version 1\" (loopwarden.yaml:1)"},
      {"two documents", R"(version: 1
---
version: 1
)",
       "expected one yaml document, found 2 (loopwarden.yaml:3)"},
      {"duplicate key", R"(version: 1
log_level: info
log_level: debug
)",
       "log_level: duplicate key, first at line 2 (loopwarden.yaml:3)"},
      {"a key that is not a string", R"(version: 1
? [a, b]
: 1
)",
       "map keys must be plain strings, got a sequence (loopwarden.yaml:2)"},

      // version
      {"missing version", R"(log_level: info
state_dir: /tmp
)",
       "version: required (loopwarden.yaml:1)"},
      {"wrong version", R"(# a newer file
version: 2
)",
       "version: unsupported config version 2, this loopwarden reads version 1 "
       "(loopwarden.yaml:2)"},
      {"version not a number", R"(version: one
)",
       "version: expected an integer, got \"one\" (loopwarden.yaml:1)"},
      {"version empty", R"(version:
log_level: info
)",
       "version: expected an integer, got null (loopwarden.yaml:1)"},

      // top-level settings
      {"unknown top-level key", R"(version: 1
log_level: info
monitor:
  - name: a
)",
       "monitor: unknown key (allowed: version, log_level, state_dir, plugin_paths, probation, "
       "breakers, monitors, transport, telemetry, alerts, http, approvals, state_sync, "
       "monitor_state_interval) "
       "(loopwarden.yaml:3)"},
      {"bad log level", R"(version: 1
log_level: verbose
)",
       "log_level: expected one of debug, info, warn, error, got \"verbose\" (loopwarden.yaml:2)"},
      {"log level not a scalar", R"(version: 1
log_level: [info]
)",
       "log_level: expected one of debug, info, warn, error, got a sequence (loopwarden.yaml:2)"},
      {"state_dir a map", R"(version: 1
state_dir: {path: /tmp}
)",
       "state_dir: expected a string, got a map (loopwarden.yaml:2)"},
      {"state_dir empty", R"(version: 1
state_dir: ""
)",
       "state_dir: expected a directory, got \"\" (loopwarden.yaml:2)"},
      {"plugin_paths not a list", R"(version: 1
plugin_paths: plugins/
)",
       "plugin_paths: expected a sequence of directories, got \"plugins/\" (loopwarden.yaml:2)"},
      {"plugin_paths entry not a string", R"(version: 1
plugin_paths:
  - plugins/
  - {dir: x}
)",
       "plugin_paths[1]: expected a string, got a map (loopwarden.yaml:4)"},
      {"bad probation", R"(version: 1
probation: soon
)",
       "probation: expected a duration such as 250ms, 5s or 10m, got \"soon\" (loopwarden.yaml:2)"},
      {"negative probation", R"(version: 1
probation: -5m
)",
       "probation: expected a duration such as 250ms, 5s or 10m, got \"-5m\" (loopwarden.yaml:2)"},

      // breakers
      {"breakers not a map", R"(version: 1
breakers:
  - training.collapse
)",
       "breakers: expected a map from breaker name to settings, got a sequence "
       "(loopwarden.yaml:2)"},
      {"breaker settings not a map", R"(version: 1
breakers:
  training.collapse: halt
)",
       "breakers.training.collapse: expected a map with action, severity, scope or probation, "
       "got \"halt\" (loopwarden.yaml:3)"},
      {"bad breaker action", R"(version: 1
breakers:
  agent.destructive: {action: halt}
  training.collapse:
    severity: critical
    # stop everything
    action: stop
)",
       "breakers.training.collapse.action: expected one of halt, pause, rollback, throttle, "
       "require_approval, alert, got \"stop\" (loopwarden.yaml:7)"},
      {"bad breaker severity", R"(version: 1
breakers:
  training.collapse: {severity: fatal}
)",
       "breakers.training.collapse.severity: expected one of info, warning, critical, got "
       "\"fatal\" (loopwarden.yaml:3)"},
      {"bad breaker scope", R"(version: 1
breakers:
  training.collapse:
    scope: cluster
)",
       "breakers.training.collapse.scope: expected one of run, global, got \"cluster\" "
       "(loopwarden.yaml:4)"},
      {"bad breaker probation", R"(version: 1
breakers:
  training.collapse:
    probation: 10 minutes
)",
       "breakers.training.collapse.probation: expected a duration such as 250ms, 5s or 10m, got "
       "\"10 minutes\" (loopwarden.yaml:4)"},
      {"unknown breaker key", R"(version: 1
breakers:
  training.collapse:
    actoin: halt
)",
       "breakers.training.collapse.actoin: unknown key (allowed: action, severity, scope, "
       "probation) (loopwarden.yaml:4)"},

      // monitors
      {"monitors not a sequence", R"(version: 1
monitors:
  name: a
  plugin: threshold
)",
       "monitors: expected a sequence of monitors, got a map (loopwarden.yaml:2)"},
      {"monitors entry not a map", R"(version: 1
monitors:
  - name: a
    plugin: threshold
  - threshold
)",
       "monitors[1]: expected a map with name and plugin (or path), got \"threshold\" "
       "(loopwarden.yaml:5)"},
      {"empty monitors entry points at the list", R"(version: 1
monitors:
  - name: a
    plugin: threshold
  -
  - name: b
    plugin: threshold
)",
       "monitors[1]: expected a map with name and plugin (or path), got null (loopwarden.yaml:2)"},
      {"explicit null monitors entry points at itself", R"(version: 1
monitors:
  - name: a
    plugin: threshold
  - ~
)",
       "monitors[1]: expected a map with name and plugin (or path), got null (loopwarden.yaml:5)"},
      {"missing name", R"(version: 1
monitors:
  - plugin: threshold
)",
       "monitors[0].name: required (loopwarden.yaml:3)"},
      {"name not a string", R"(version: 1
monitors:
  - name: [a]
    plugin: threshold
)",
       "monitors[0].name: expected a string, got a sequence (loopwarden.yaml:3)"},
      {"bad name characters", R"(version: 1
monitors:
  - plugin: threshold
    name: Loss Guard
)",
       "monitors[0].name: expected a name of lowercase letters, digits, '_', '.' or '-', got "
       "\"Loss Guard\" (loopwarden.yaml:4)"},
      {"empty name", R"(version: 1
monitors:
  - name: ""
    plugin: threshold
)",
       "monitors[0].name: expected a name of lowercase letters, digits, '_', '.' or '-', got "
       "\"\" (loopwarden.yaml:3)"},
      {"duplicate name", R"(version: 1
monitors:
  - name: a
    plugin: threshold
  - name: b
    plugin: threshold
  - name: c
    plugin: threshold
  - plugin: threshold
    name: a
)",
       "monitors[3].name: duplicate monitor name \"a\", first at line 3 (loopwarden.yaml:10)"},
      {"both plugin and path", R"(version: 1
monitors:
  - name: a
    plugin: threshold
  - name: b
    plugin: threshold
    path: ./b.so
)",
       "monitors[1]: needs exactly one of plugin or path (loopwarden.yaml:5)"},
      {"neither plugin nor path", R"(version: 1
monitors:
  - name: a
    optional: true
)",
       "monitors[0]: needs exactly one of plugin or path (loopwarden.yaml:3)"},
      {"plugin that is a file name", R"(version: 1
monitors:
  - name: a
    plugin: ../evil
)",
       "monitors[0].plugin: expected a plugin name of lowercase letters, digits, '_', '.' or '-' "
       "(use path: for a file), got \"../evil\" (loopwarden.yaml:4)"},
      {"empty path", R"(version: 1
monitors:
  - name: a
    path: ''
)",
       "monitors[0].path: expected a plugin file, got \"\" (loopwarden.yaml:4)"},
      {"bad on_error", R"(version: 1
monitors:
  - name: a
    plugin: threshold
    on_error: ignore
)",
       "monitors[0].on_error: expected one of fail_closed, disable, got \"ignore\" "
       "(loopwarden.yaml:5)"},
      {"optional not a bool", R"(version: 1
monitors:
  - name: a
    plugin: threshold
    optional: maybe
)",
       "monitors[0].optional: expected true or false, got \"maybe\" (loopwarden.yaml:5)"},
      {"enabled not a bool", R"(version: 1
monitors:
  - name: a
    plugin: threshold
    enabled: 1
)",
       "monitors[0].enabled: expected true or false, got \"1\" (loopwarden.yaml:5)"},
      {"unknown monitor key", R"(version: 1
monitors:
  - name: a
    plugin: threshold
    confg:
      window: 5
)",
       "monitors[0].confg: unknown key (allowed: name, plugin, path, optional, enabled, mode, "
       "on_error, deadline, queue_capacity, isolation, memory_limit, sha256, config) "
       "(loopwarden.yaml:5)"},
  };
  for (const auto& r : rows) {
    INFO(r.label << "\n---\n" << r.yaml << "---");
    auto got = parse_config(r.yaml, source, "/srv/loopwarden");
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().code() == status_code::invalid_argument);
    CHECK(got.error().message() == r.message);
  }
}

TEST_CASE("config parser turns pathological nesting into a syntax error", "[config]") {
  auto got = parse_config("version: 1\nstate_dir: " + std::string(100000, '['), source, "/srv");
  REQUIRE_FALSE(got.ok());
  CHECK(got.error().code() == status_code::invalid_argument);
  CHECK(got.error().message().rfind("loopwarden.yaml:", 0) == 0);
  CHECK(got.error().message().find(": yaml syntax error: ") != std::string::npos);
}

// Found by the config fuzz target (docs/fuzzing.md): yaml-cpp 0.7's LoadAll loops forever on a
// stream it cannot get past (a lone ','), keeping an empty document per turn until memory runs
// out. tests/fixtures/fuzz-regressions/config/comma-hang.yaml is the input that found it.
TEST_CASE("config parser refuses a stream yaml-cpp cannot get past instead of looping",
          "[config][fuzz]") {
  const std::string fixture =
      std::string(LOOPWARDEN_FIXTURES_DIR) + "/fuzz-regressions/config/comma-hang.yaml";
  auto from_file = load_config_file(fixture);
  REQUIRE_FALSE(from_file.ok());
  CHECK(from_file.error().code() == status_code::invalid_argument);
  CHECK(from_file.error().message() ==
        fixture + ":1:1: yaml syntax error: unexpected token (the parser cannot continue here)");

  const std::vector<std::pair<std::string, std::string>> rows = {
      {",", "loopwarden.yaml:1:1: yaml syntax error: unexpected token"},
      {", a: b}", "loopwarden.yaml:1:1: yaml syntax error: unexpected token"},
      {"version: 1\n,\n", "loopwarden.yaml:2:1: yaml syntax error: end of map not found"},
  };
  for (const auto& [yaml, prefix] : rows) {
    INFO(yaml);
    auto got = parse_config(yaml, source, "/srv");
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().code() == status_code::invalid_argument);
    CHECK(got.error().message().rfind(prefix, 0) == 0);
  }
  // Several real documents are still told apart from a stuck parser.
  auto two = parse_config("version: 1\n---\n---\nversion: 1\n", source, "/srv");
  REQUIRE_FALSE(two.ok());
  CHECK(two.error().message() == "expected one yaml document, found 3 (loopwarden.yaml:3)");
}

TEST_CASE("config embedded default is the documented text", "[config]") {
  // docs/configuration.md promises that `loopwarden config default` prints exactly its block under
  // "## The embedded default": the test reads the doc, so neither can change without the other.
  std::ifstream in(std::string(LOOPWARDEN_SOURCE_DIR) + "/docs/configuration.md");
  REQUIRE(in);
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto section = doc.find("\n## The embedded default\n");
  REQUIRE(section != std::string::npos);
  const std::string open = "```yaml\n";
  const auto begin = doc.find(open, section);
  REQUIRE(begin != std::string::npos);
  const auto end = doc.find("\n```", begin + open.size());
  REQUIRE(end != std::string::npos);
  const std::string documented = doc.substr(begin + open.size(), end + 1 - (begin + open.size()));
  CHECK(default_config_yaml() == documented);
}

TEST_CASE("config embedded default parses with every bundled monitor at its defaults", "[config]") {
  auto got = default_config();
  REQUIRE(got.ok());
  const config& c = *got;
  CHECK(c.source == "<embedded default>");
  CHECK(c.version == 1);
  CHECK(c.log_level == loopwarden::sdk::log_level::info);
  CHECK(c.state_dir == (fs::current_path() / "loopwarden-state").string());
  CHECK(c.plugin_paths.empty());
  CHECK(c.probation == 5min);
  CHECK(c.breakers.empty());
  // After the threshold guard, each bundled monitor once, named after its plugin, on its
  // documented defaults (no config: section).
  const std::vector<std::string> bundled = {"goal_drift", "review_bottleneck",
                                            "destructive_action", "agent_drift",
                                            "variance_collapse"};
  REQUIRE(c.monitors.size() == 1 + bundled.size());
  for (const auto& name : bundled) {
    INFO(name);
    const auto it = std::find_if(c.monitors.begin(), c.monitors.end(),
                                 [&](const auto& m) { return m.name == name; });
    REQUIRE(it != c.monitors.end());
    CHECK(it->plugin == name);
    CHECK(it->on_error == error_policy::fail_closed);
    CHECK(it->config.is_missing());
  }
  const auto& m = c.monitors[0];
  CHECK(m.name == "nonfinite_loss");
  CHECK(m.plugin == "threshold");
  CHECK(m.path.empty());
  CHECK_FALSE(m.optional);
  CHECK(m.enabled);
  CHECK(m.on_error == error_policy::fail_closed);
  CHECK(m.config.is_map());
  CHECK(m.config["metric"].scalar() == "*loss");
  CHECK(m.config["non_finite"].as_bool().value());
  CHECK(m.config["breaker"].scalar() == "training.nonfinite_loss");
  CHECK(m.config["action"].path() == "monitors[0].config.action");
  CHECK(m.config["action"].file() == "<embedded default>");
  CHECK(m.config["action"].line() == 19);
  CHECK(m.node.path() == "monitors[0]");
  CHECK(m.node.line() == 12);
  CHECK(c.root["version"].line() == 2);
}

TEST_CASE("config applies defaults for optional settings", "[config]") {
  auto got = parse_config(R"(version: 1
monitors:
  - name: a
    plugin: threshold
)",
                          source, "/srv/loopwarden");
  REQUIRE(got.ok());
  CHECK(got->log_level == loopwarden::sdk::log_level::info);
  CHECK(got->state_dir == "/srv/loopwarden/loopwarden-state");
  CHECK(got->plugin_paths.empty());
  CHECK(got->probation == 5min);
  REQUIRE(got->monitors.size() == 1);
  CHECK_FALSE(got->monitors[0].optional);
  CHECK(got->monitors[0].enabled);
  CHECK(got->monitors[0].on_error == error_policy::fail_closed);
  CHECK(got->monitors[0].config.is_missing());
  CHECK(got->monitors[0].config.path() == "monitors[0].config");
}

TEST_CASE("config accepts a minimal document and empty sections", "[config]") {
  struct row {
    const char* label;
    std::string yaml;
  };
  const std::vector<row> rows = {
      {"only the version", "version: 1\n"},
      {"empty sections", "version: 1\nbreakers:\nmonitors:\nplugin_paths:\n"},
      {"explicitly empty collections",
       "version: 1\nbreakers: {}\nmonitors: []\nplugin_paths: []\n"},
      {"quoted version", "version: \"1\"\n"},
      {"flow style", "{version: 1, monitors: [{name: a, plugin: threshold}]}"},
      {"crlf line endings", "version: 1\r\nlog_level: warn\r\n"},
  };
  for (const auto& r : rows) {
    INFO(r.label);
    auto got = parse_config(r.yaml, source, "/srv/loopwarden");
    INFO((got.ok() ? std::string("ok") : got.error().message()));
    CHECK(got.ok());
  }
}

TEST_CASE("config resolves relative paths against the base directory", "[config]") {
  auto got = parse_config(R"(version: 1
state_dir: state
plugin_paths:
  - plugins/
  - ./more/../extra
  - /opt//loopwarden/./plugins/
monitors:
  - name: custom
    path: ./monitors/../monitors/custom.so
  - name: absolute
    path: /usr/lib/loopwarden/x.so
)",
                          source, "/srv/loopwarden/conf");
  REQUIRE(got.ok());
  CHECK(got->state_dir == "/srv/loopwarden/conf/state");
  CHECK(got->plugin_paths == std::vector<std::string>{"/srv/loopwarden/conf/plugins",
                                                      "/srv/loopwarden/conf/extra",
                                                      "/opt/loopwarden/plugins"});
  REQUIRE(got->monitors.size() == 2);
  CHECK(got->monitors[0].path == "/srv/loopwarden/conf/monitors/custom.so");
  CHECK(got->monitors[0].plugin.empty());
  CHECK(got->monitors[1].path == "/usr/lib/loopwarden/x.so");
}

TEST_CASE("config resolves relative paths against the current directory without a base",
          "[config]") {
  auto got = parse_config("version: 1\nstate_dir: ../state\n", source);
  REQUIRE(got.ok());
  CHECK(got->state_dir == (fs::current_path() / "../state").lexically_normal().string());
}

TEST_CASE("config reads every monitor and breaker setting", "[config]") {
  auto got = parse_config(R"(version: 1
log_level: debug
probation: 90s
breakers:
  training.collapse:
    action: rollback
    severity: critical
    scope: run
    probation: 10m
  agent.destructive: {action: require_approval}
  telemetry.silence:
monitors:
  - name: loss_guard
    plugin: threshold
    optional: yes
    enabled: off
    on_error: disable
    config:
      window: abc
      bounds:
        - low: 1
          high: 2
  - name: collapse.v2
    plugin: variance_collapse
    config:
)",
                          source, "/srv/loopwarden");
  REQUIRE(got.ok());
  const config& c = *got;
  CHECK(c.log_level == loopwarden::sdk::log_level::debug);
  CHECK(c.probation == 90s);

  REQUIRE(c.breakers.size() == 3);
  const auto& collapse = c.breakers[0];
  CHECK(collapse.name == "training.collapse");
  CHECK(collapse.action == loopwarden::sdk::breaker_action::rollback);
  CHECK(collapse.severity == loopwarden::sdk::severity::critical);
  CHECK(collapse.scope == loopwarden::sdk::breaker_scope::run);
  CHECK(collapse.probation == 10min);
  CHECK(collapse.node.path() == "breakers.training.collapse");
  CHECK(collapse.node.line() == 5);
  const auto& destructive = c.breakers[1];
  CHECK(destructive.name == "agent.destructive");
  CHECK(destructive.action == loopwarden::sdk::breaker_action::require_approval);
  CHECK_FALSE(destructive.severity.has_value());
  CHECK_FALSE(destructive.scope.has_value());
  CHECK_FALSE(destructive.probation.has_value());
  CHECK(c.breakers[2].name == "telemetry.silence");
  CHECK_FALSE(c.breakers[2].action.has_value());

  REQUIRE(c.monitors.size() == 2);
  const auto& guard = c.monitors[0];
  CHECK(guard.name == "loss_guard");
  CHECK(guard.optional);
  CHECK_FALSE(guard.enabled);
  CHECK(guard.on_error == error_policy::disable);
  CHECK(guard.node.line() == 13);
  // The config subtree is the plugin's: kept as written, with paths and lines for its errors.
  CHECK(guard.config.path() == "monitors[0].config");
  CHECK(guard.config.line() == 18);
  CHECK(guard.config.keys() == std::vector<std::string>{"window", "bounds"});
  CHECK(guard.config.get_positive_int("window", 10).error().message() ==
        "monitors[0].config.window: expected a positive integer, got \"abc\" "
        "(loopwarden.yaml:19)");
  const auto high = guard.config["bounds"].at(0)["high"];
  CHECK(high.path() == "monitors[0].config.bounds[0].high");
  CHECK(high.line() == 22);
  CHECK(high.as_int().value() == 2);
  CHECK(guard.config.check_keys({"window"}).message() ==
        "monitors[0].config.bounds: unknown key (allowed: window) (loopwarden.yaml:20)");
  CHECK(guard.config["floor"].error("required").message() ==
        "monitors[0].config.floor: required (loopwarden.yaml:18)");

  const auto& v2 = c.monitors[1];
  CHECK(v2.name == "collapse.v2");
  CHECK(v2.plugin == "variance_collapse");
  CHECK(v2.config.is_null());
  CHECK(v2.config.check_keys({"window"}).ok());
}

TEST_CASE("config keeps quoted scalars as written", "[config]") {
  auto got = parse_config(R"(version: 1
monitors:
  - name: a
    plugin: threshold
    config:
      label: "yes"
      flag: yes
      nothing: ~
      text: "null"
)",
                          source, "/srv/loopwarden");
  REQUIRE(got.ok());
  const auto& config = got->monitors[0].config;
  CHECK(config["label"].scalar() == "yes");
  CHECK_FALSE(config["label"].as_bool().ok());
  CHECK(config["flag"].as_bool().value());
  CHECK(config["nothing"].is_null());
  CHECK(config["text"].is_scalar());
  CHECK(config["text"].scalar() == "null");
}

TEST_CASE("config file loading resolves paths against the file's directory", "[config]") {
  temp_dir dir;
  const auto file = dir.write("loopwarden.yaml", R"(version: 1
state_dir: state
plugin_paths: [plugins]
)");
  auto got = load_config_file(file.string());
  REQUIRE(got.ok());
  CHECK(got->source == file.string());
  CHECK(got->state_dir == (dir.path() / "state").string());
  CHECK(got->plugin_paths == std::vector<std::string>{(dir.path() / "plugins").string()});
}

TEST_CASE("config file errors name the file", "[config]") {
  temp_dir dir;
  SECTION("a missing file is an io error") {
    const auto missing = (dir.path() / "absent.yaml").string();
    auto got = load_config_file(missing);
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().code() == status_code::io_error);
    CHECK(got.error().message() ==
          "can't read config file '" + missing + "': no such file or directory");
  }
  SECTION("a directory is an io error") {
    auto got = load_config_file(dir.path().string());
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().code() == status_code::io_error);
    CHECK(got.error().message() ==
          "can't read config file '" + dir.path().string() + "': it is a directory");
  }
  SECTION("a bad field names the file and line") {
    const auto file = dir.write("bad.yaml", "version: 1\n\nlog_level: loud\n").string();
    auto got = load_config_file(file);
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().code() == status_code::invalid_argument);
    CHECK(got.error().message() ==
          "log_level: expected one of debug, info, warn, error, got \"loud\" (" + file + ":3)");
  }
  SECTION("a syntax error names the file, line and column") {
    const auto file = dir.write("broken.yaml", "version: 1\nmonitors: [\n").string();
    auto got = load_config_file(file);
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().message().rfind(file + ":", 0) == 0);
    CHECK(got.error().message().find(": yaml syntax error: ") != std::string::npos);
  }
}
