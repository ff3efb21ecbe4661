#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <loopwarden/config_node.hpp>
#include <loopwarden/status.hpp>
#include <string>
#include <vector>

namespace {

using loopwarden::sdk::config_node;
using loopwarden::sdk::status;
using loopwarden::sdk::status_code;
using namespace std::chrono_literals;

constexpr const char* file = "loopwarden.yaml";
constexpr const char* window_path = "monitors[2].config.window";

// A scalar as the host would build it for `window: <text>` on line 14.
config_node scalar(std::string text, bool quoted = false) {
  return config_node::make_scalar(window_path, file, 14, std::move(text), quoted);
}

// The message a typed read of that scalar gives for `what`.
std::string window_error(const std::string& what) {
  return std::string(window_path) + ": " + what + " (loopwarden.yaml:14)";
}

// monitors[0].config, on line 8, with `window: 30s` on line 9 and `floor: 0.1` on line 10.
config_node sample_config() {
  auto config = config_node::make_map("monitors[0].config", file, 8);
  config.insert("window", config_node::make_scalar("monitors[0].config.window", file, 9, "30s"));
  config.insert("floor", config_node::make_scalar("monitors[0].config.floor", file, 10, "0.1"));
  config.insert("note", config_node::make_null("monitors[0].config.note", file, 11));
  return config;
}

}  // namespace

TEST_CASE("config node reads booleans in their yaml spellings and refuses the rest", "[config]") {
  struct row {
    std::string text;
    bool quoted;
    bool ok;
    bool value;
  };
  const std::vector<row> rows = {
      {"true", false, true, true}, {"True", false, true, true},    {"TRUE", false, true, true},
      {"yes", false, true, true},  {"Yes", false, true, true},     {"on", false, true, true},
      {"ON", false, true, true},   {"false", false, true, false},  {"False", false, true, false},
      {"no", false, true, false},  {"NO", false, true, false},     {"off", false, true, false},
      {"Off", false, true, false}, {"maybe", false, false, false}, {"1", false, false, false},
      {"0", false, false, false},  {"", false, false, false},      {"truee", false, false, false},
      {"y", false, false, false},  {"yes", true, false, false},    {"false", true, false, false},
  };
  for (const auto& r : rows) {
    INFO("text: '" << r.text << "' quoted: " << r.quoted);
    auto got = scalar(r.text, r.quoted).as_bool();
    REQUIRE(got.ok() == r.ok);
    if (r.ok) {
      CHECK(*got == r.value);
    } else {
      CHECK(got.error().code() == status_code::invalid_argument);
    }
  }
}

TEST_CASE("config node bool errors name path, value and line", "[config]") {
  CHECK(scalar("maybe").as_bool().error().message() ==
        window_error("expected true or false, got \"maybe\""));
  CHECK(scalar("yes", true).as_bool().error().message() ==
        window_error("expected true or false without quotes, got the string \"yes\""));
}

TEST_CASE("config node reads decimal integers without junk or overflow", "[config]") {
  struct row {
    std::string text;
    bool ok;
    std::int64_t value;
  };
  const std::vector<row> rows = {
      {"0", true, 0},
      {"42", true, 42},
      {"-7", true, -7},
      {"+7", true, 7},
      {"007", true, 7},
      {"9223372036854775807", true, INT64_MAX},
      {"-9223372036854775808", true, INT64_MIN},
      {"abc", false, 0},
      {"", false, 0},
      {"+", false, 0},
      {"-", false, 0},
      {"+-1", false, 0},
      {"++1", false, 0},
      {"1.5", false, 0},
      {"12abc", false, 0},
      {" 12", false, 0},
      {"12 ", false, 0},
      {"1e3", false, 0},
      {"0x10", false, 0},
      {"9223372036854775808", false, 0},
      {"-9223372036854775809", false, 0},
  };
  for (const auto& r : rows) {
    INFO("text: '" << r.text << "'");
    auto got = scalar(r.text).as_int();
    REQUIRE(got.ok() == r.ok);
    if (r.ok) {
      CHECK(*got == r.value);
    } else {
      CHECK(got.error().message() == window_error("expected an integer, got \"" + r.text + "\""));
    }
  }
}

TEST_CASE("config node positive integers start at one", "[config]") {
  struct row {
    std::string text;
    bool ok;
    std::int64_t value;
  };
  const std::vector<row> rows = {
      {"1", true, 1},   {"5000", true, 5000}, {"+3", true, 3},   {"0", false, 0},
      {"-1", false, 0}, {"abc", false, 0},    {"2.5", false, 0}, {"", false, 0},
  };
  for (const auto& r : rows) {
    INFO("text: '" << r.text << "'");
    auto got = scalar(r.text).as_positive_int();
    REQUIRE(got.ok() == r.ok);
    if (r.ok) {
      CHECK(*got == r.value);
    } else {
      CHECK(got.error().message() ==
            window_error("expected a positive integer, got \"" + r.text + "\""));
    }
  }
}

TEST_CASE("config node reads finite numbers only", "[config]") {
  struct row {
    std::string text;
    bool ok;
    double value;
  };
  const std::vector<row> rows = {
      {"0", true, 0.0},      {"1.5", true, 1.5},     {"-2.25", true, -2.25}, {"+3", true, 3.0},
      {"1e3", true, 1000.0}, {"2.5E-1", true, 0.25}, {".5", true, 0.5},      {"7.", true, 7.0},
      {"abc", false, 0},     {"", false, 0},         {"inf", false, 0},      {".inf", false, 0},
      {"-inf", false, 0},    {"nan", false, 0},      {".nan", false, 0},     {"1e999", false, 0},
      {"1.5x", false, 0},    {"1,5", false, 0},      {"0x1p3", false, 0},    {" 1", false, 0},
  };
  for (const auto& r : rows) {
    INFO("text: '" << r.text << "'");
    auto got = scalar(r.text).as_double();
    REQUIRE(got.ok() == r.ok);
    if (r.ok) {
      CHECK(*got == Approx(r.value));
    } else {
      CHECK(got.error().message() == window_error("expected a number, got \"" + r.text + "\""));
    }
  }
}

TEST_CASE("config node probabilities lie in the closed unit interval", "[config]") {
  struct row {
    std::string text;
    bool ok;
    double value;
  };
  const std::vector<row> rows = {
      {"0", true, 0.0},   {"1", true, 1.0},        {"0.25", true, 0.25}, {"1.0", true, 1.0},
      {"-0.1", false, 0}, {"1.5", false, 0},       {"abc", false, 0},    {"nan", false, 0},
      {"2", false, 0},    {"1.0000001", false, 0},
  };
  for (const auto& r : rows) {
    INFO("text: '" << r.text << "'");
    auto got = scalar(r.text).as_probability();
    REQUIRE(got.ok() == r.ok);
    if (r.ok) {
      CHECK(*got == Approx(r.value));
    } else {
      CHECK(got.error().message() ==
            window_error("expected a number in [0, 1], got \"" + r.text + "\""));
    }
  }
}

TEST_CASE("config node reads durations with units or as plain seconds", "[config]") {
  struct row {
    std::string text;
    bool ok;
    std::chrono::nanoseconds value;
  };
  const std::vector<row> rows = {
      {"250ms", true, 250ms},
      {"5s", true, 5s},
      {"10m", true, 10min},
      {"1h", true, 1h},
      {"2d", true, 48h},
      {"1500us", true, 1500us},
      {"100ns", true, 100ns},
      {"30", true, 30s},
      {"0", true, 0ns},
      {"0s", true, 0ns},
      {"0.5", true, 500ms},
      {"1.5m", true, 90s},
      {"0.25s", true, 250ms},
      {"2.5ms", true, 2500us},
      {"106751d", true, std::chrono::hours(24 * 106751)},
      {"-5s", false, 0ns},
      {"-1", false, 0ns},
      {"+5s", false, 0ns},
      {"abc", false, 0ns},
      {"", false, 0ns},
      {"5x", false, 0ns},
      {"5 s", false, 0ns},
      {"5S", false, 0ns},
      {"s", false, 0ns},
      {"ms", false, 0ns},
      {"1.2.3s", false, 0ns},
      {"inf", false, 0ns},
      {"nan", false, 0ns},
      {"1e400", false, 0ns},
      {"106752d", false, 0ns},
      {"9223372036854775808ns", false, 0ns},
      {"1e10d", false, 0ns},
  };
  for (const auto& r : rows) {
    INFO("text: '" << r.text << "'");
    auto got = scalar(r.text).as_duration();
    REQUIRE(got.ok() == r.ok);
    if (r.ok) {
      CHECK(got->count() == r.value.count());
    } else {
      CHECK(got.error().message() ==
            window_error("expected a duration such as 250ms, 5s or 10m, got \"" + r.text + "\""));
    }
  }
}

TEST_CASE("config node typed reads refuse maps, sequences, null and missing nodes", "[config]") {
  const auto map = config_node::make_map(window_path, file, 14);
  const auto seq = config_node::make_sequence(window_path, file, 14);
  const auto null = config_node::make_null(window_path, file, 14);
  const auto missing = config_node::make_map("monitors[2].config", file, 14)["window"];
  struct row {
    const char* label;
    config_node node;
    const char* got;
  };
  const std::vector<row> rows = {
      {"map", map, "a map"},
      {"sequence", seq, "a sequence"},
      {"null", null, "null"},
      {"missing", missing, "nothing"},
  };
  for (const auto& r : rows) {
    INFO("node: " << r.label);
    const std::string got = r.got;
    CHECK(r.node.as_string().error().message() == window_error("expected a string, got " + got));
    CHECK(r.node.as_bool().error().message() == window_error("expected true or false, got " + got));
    CHECK(r.node.as_int().error().message() == window_error("expected an integer, got " + got));
    CHECK(r.node.as_positive_int().error().message() ==
          window_error("expected a positive integer, got " + got));
    CHECK(r.node.as_double().error().message() == window_error("expected a number, got " + got));
    CHECK(r.node.as_probability().error().message() ==
          window_error("expected a number in [0, 1], got " + got));
    CHECK(r.node.as_duration().error().message() ==
          window_error("expected a duration such as 250ms, 5s or 10m, got " + got));
  }
}

TEST_CASE("config node reads any scalar as a string, quoted or not", "[config]") {
  CHECK(scalar("abc").as_string().value() == "abc");
  CHECK(scalar("yes", true).as_string().value() == "yes");
  CHECK(scalar("").as_string().value() == "");
  CHECK(scalar("42").as_string().value() == "42");
}

TEST_CASE("config node numbers and durations may be quoted", "[config]") {
  CHECK(scalar("42", true).as_int().value() == 42);
  CHECK(scalar("0.5", true).as_double().value() == Approx(0.5));
  CHECK(scalar("5s", true).as_duration().value() == 5s);
}

TEST_CASE("config node string lists take one string or a sequence of strings", "[config]") {
  SECTION("a single scalar is a one-element list") {
    CHECK(scalar("plugins").as_string_list().value() == std::vector<std::string>{"plugins"});
  }
  SECTION("a sequence keeps its order") {
    auto seq = config_node::make_sequence("plugin_paths", file, 3);
    seq.push_back(config_node::make_scalar("plugin_paths[0]", file, 4, "a"));
    seq.push_back(config_node::make_scalar("plugin_paths[1]", file, 5, "b"));
    CHECK(seq.as_string_list().value() == std::vector<std::string>{"a", "b"});
  }
  SECTION("an empty sequence is an empty list") {
    CHECK(config_node::make_sequence("plugin_paths", file, 3).as_string_list().value().empty());
  }
  SECTION("a non-string element is named by its index") {
    auto seq = config_node::make_sequence("plugin_paths", file, 3);
    seq.push_back(config_node::make_scalar("plugin_paths[0]", file, 4, "a"));
    seq.push_back(config_node::make_map("plugin_paths[1]", file, 5));
    CHECK(seq.as_string_list().error().message() ==
          "plugin_paths[1]: expected a string, got a map (loopwarden.yaml:5)");
  }
  SECTION("a map is refused") {
    CHECK(config_node::make_map("plugin_paths", file, 3).as_string_list().error().message() ==
          "plugin_paths: expected a string or a sequence of strings, got a map "
          "(loopwarden.yaml:3)");
  }
  SECTION("null is refused") {
    CHECK(config_node::make_null("plugin_paths", file, 3).as_string_list().error().message() ==
          "plugin_paths: expected a string or a sequence of strings, got null "
          "(loopwarden.yaml:3)");
  }
}

TEST_CASE("config node optional getters fall back when the key is missing or null", "[config]") {
  const auto config = sample_config();
  CHECK(config.get_string("absent", "x").value() == "x");
  CHECK(config.get_string("note", "x").value() == "x");
  CHECK(config.get_bool("absent", true).value() == true);
  CHECK(config.get_bool("note", false).value() == false);
  CHECK(config.get_int("absent", -3).value() == -3);
  CHECK(config.get_positive_int("note", 9).value() == 9);
  CHECK(config.get_double("absent", 2.5).value() == Approx(2.5));
  CHECK(config.get_duration("note", 7s).value() == 7s);
}

TEST_CASE("config node optional getters read present keys and report their errors", "[config]") {
  const auto config = sample_config();
  CHECK(config.get_duration("window", 1s).value() == 30s);
  CHECK(config.get_double("floor", 0.0).value() == Approx(0.1));
  CHECK(config.get_string("window", "").value() == "30s");
  CHECK(config.get_int("window", 0).error().message() ==
        "monitors[0].config.window: expected an integer, got \"30s\" (loopwarden.yaml:9)");
  CHECK(config.get_positive_int("floor", 1).error().message() ==
        "monitors[0].config.floor: expected a positive integer, got \"0.1\" (loopwarden.yaml:10)");
  CHECK(config.get_bool("floor", false).error().message() ==
        "monitors[0].config.floor: expected true or false, got \"0.1\" (loopwarden.yaml:10)");
}

TEST_CASE("config node lookups of absent keys name the key and point at the parent", "[config]") {
  struct row {
    const char* label;
    config_node node;
    std::string path;
    int line;
  };
  const auto root = config_node::make_map("", file, 1);
  const auto config = sample_config();
  const auto seq = config_node::make_sequence("monitors", file, 5);
  const auto text = config_node::make_scalar("log_level", file, 2, "info");
  const std::vector<row> rows = {
      {"key at the root", root["version"], "version", 1},
      {"key in a nested map", config["windw"], "monitors[0].config.windw", 8},
      {"key of a missing key", config["a"]["b"], "monitors[0].config.a.b", 8},
      {"key in a sequence", seq["name"], "monitors.name", 5},
      {"key in a scalar", text["level"], "log_level.level", 2},
      {"index out of range", seq.at(3), "monitors[3]", 5},
      {"index in a map", config.at(0), "monitors[0].config[0]", 8},
      {"key in a default node", config_node()["x"], "x", 0},
  };
  for (const auto& r : rows) {
    INFO(r.label);
    CHECK(r.node.is_missing());
    CHECK(r.node.path() == r.path);
    CHECK(r.node.line() == r.line);
  }
  CHECK(config["windw"].file() == file);
}

TEST_CASE("config node require reports the first missing key and leaves success alone",
          "[config]") {
  const auto config = sample_config();
  SECTION("a present key") {
    status error;
    auto window = config.require("window", error);
    CHECK(error.ok());
    CHECK(window.scalar() == "30s");
  }
  SECTION("a present null key is returned, not refused") {
    status error;
    CHECK(config.require("note", error).is_null());
    CHECK(error.ok());
  }
  SECTION("missing keys") {
    status error;
    auto a = config.require("alpha", error);
    auto window = config.require("window", error);
    auto b = config.require("beta", error);
    CHECK(a.is_missing());
    CHECK(b.is_missing());
    CHECK(window.is_scalar());
    CHECK(error.code() == status_code::invalid_argument);
    CHECK(error.message() == "monitors[0].config.alpha: required (loopwarden.yaml:8)");
  }
  SECTION("at the document root") {
    status error;
    (void)config_node::make_map("", file, 1).require("version", error);
    CHECK(error.message() == "version: required (loopwarden.yaml:1)");
  }
}

TEST_CASE("config node check_keys refuses unknown keys with the allowed list", "[config]") {
  auto config = sample_config();
  CHECK(config.check_keys({"window", "floor", "note"}).ok());
  CHECK(config.check_keys({"note", "floor", "window", "extra"}).ok());

  auto typo = config_node::make_map("monitors[0].config", file, 8);
  typo.insert("floor", config_node::make_scalar("monitors[0].config.floor", file, 8, "1"));
  typo.insert("windw", config_node::make_scalar("monitors[0].config.windw", file, 9, "5"));
  typo.insert("other", config_node::make_scalar("monitors[0].config.other", file, 10, "5"));
  auto s = typo.check_keys({"window", "floor"});
  CHECK(s.code() == status_code::invalid_argument);
  CHECK(s.message() ==
        "monitors[0].config.windw: unknown key (allowed: window, floor) (loopwarden.yaml:9)");

  CHECK(config_node().check_keys({"a"}).ok());
  CHECK(config_node::make_null("monitors[0].config", file, 8).check_keys({"a"}).ok());
  CHECK(config["absent"].check_keys({"a"}).ok());
  CHECK(config_node::make_sequence("monitors[0].config", file, 8).check_keys({"a"}).message() ==
        "monitors[0].config: expected a map, got a sequence (loopwarden.yaml:8)");
  CHECK(scalar("5").check_keys({"a"}).message() == window_error("expected a map, got \"5\""));
}

TEST_CASE("config node errors follow path: what (file:line)", "[config]") {
  struct row {
    const char* label;
    config_node node;
    std::string message;
  };
  const std::vector<row> rows = {
      {"nested", scalar("5"), window_error("window too small")},
      {"document root", config_node::make_map("", file, 1), "window too small (loopwarden.yaml:1)"},
      {"embedded default", config_node::make_map("probation", "<embedded default>", 9),
       "probation: window too small (<embedded default>:9)"},
      {"unknown line", config_node::make_null("a.b", file, 0),
       "a.b: window too small (loopwarden.yaml)"},
      {"no location", config_node(), "window too small"},
  };
  for (const auto& r : rows) {
    INFO(r.label);
    auto s = r.node.error("window too small");
    CHECK(s.code() == status_code::invalid_argument);
    CHECK(s.message() == r.message);
  }
}

TEST_CASE("config node describes nodes for messages", "[config]") {
  struct row {
    const char* label;
    config_node node;
    std::string description;
  };
  const std::vector<row> rows = {
      {"scalar", scalar("abc"), "\"abc\""},
      {"empty scalar", scalar(""), "\"\""},
      {"quoted scalar", scalar("yes", true), "\"yes\""},
      {"quotes and newlines are escaped", scalar("a\"b\nc\\d"), "\"a\\\"b\\nc\\\\d\""},
      {"long text is cut", scalar(std::string(70, 'x')), "\"" + std::string(60, 'x') + "...\""},
      {"sixty characters are kept", scalar(std::string(60, 'x')),
       "\"" + std::string(60, 'x') + "\""},
      {"map", config_node::make_map("a", file, 1), "a map"},
      {"sequence", config_node::make_sequence("a", file, 1), "a sequence"},
      {"null", config_node::make_null("a", file, 1), "null"},
      {"missing", config_node(), "nothing"},
  };
  for (const auto& r : rows) {
    INFO(r.label);
    CHECK(r.node.describe() == r.description);
  }
}

TEST_CASE("config node keeps map keys in document order and shares its tree", "[config]") {
  auto config = sample_config();
  CHECK(config.keys() == std::vector<std::string>{"window", "floor", "note"});
  CHECK(config.contains("floor"));
  CHECK_FALSE(config.contains("floors"));
  CHECK(config.size() == 0);
  CHECK(config.type() == config_node::node_type::map);
  CHECK(config["window"].line() == 9);
  CHECK(config["window"].path() == "monitors[0].config.window");

  auto seq = config_node::make_sequence("monitors", file, 5);
  seq.push_back(config);
  const auto copy = seq;
  CHECK(copy.size() == 1);
  CHECK(copy.at(0)["floor"].scalar() == "0.1");
  CHECK(copy.keys().empty());
  CHECK(scalar("x").keys().empty());
  CHECK_FALSE(scalar("x").contains("x"));

  const config_node missing;
  CHECK(missing.is_missing());
  CHECK(missing.path().empty());
  CHECK(missing.scalar().empty());
  CHECK(config_node::make_map("a", file, 1).scalar().empty());
}
