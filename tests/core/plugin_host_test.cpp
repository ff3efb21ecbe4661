#include <catch2/catch.hpp>

#include <loopwarden/core/plugin_host.hpp>

#include "test_paths.hpp"

using namespace loopwarden;

TEST_CASE("plugin host loads a good plugin and creates its monitor", "[core][plugin_host]") {
  core::plugin_host host({test::fixture_plugin_dir(), test::bundled_plugin_dir()});
  auto path = host.find("threshold");
  REQUIRE(path.ok());
  CHECK(*path == test::bundled_plugin_dir() + "/threshold.so");
  auto loaded = host.load(*path, "threshold");
  REQUIRE(loaded.ok());
  CHECK((*loaded)->plugin_name() == "threshold");
  CHECK((*loaded)->abi().sdk_major == sdk::sdk_version_major);
  CHECK((*loaded)->instance().info().name == "threshold");
}

TEST_CASE("plugin host refuses each bad plugin, naming the file and the reason",
          "[core][plugin_host]") {
  core::plugin_host host({test::fixture_plugin_dir()});
  struct row {
    std::string plugin;
    std::string reason;
  };
  const std::vector<row> rows = {
      {"wrong_major", "sdk abi 2.x, host is 1.0"},
      {"newer_minor", "sdk 1.1 is newer than the host's 1.0"},
      {"foreign_stdlib", "incompatible standard library libc++, host uses libstdc++"},
      {"missing_factory",
       "missing factory symbol 'loopwarden_create_monitor' (was it built with LOOPWARDEN_PLUGIN?)"},
      {"missing_abi",
       "missing abi record symbol 'loopwarden_abi' (was it built with LOOPWARDEN_PLUGIN?)"},
      {"throwing_constructor", "constructor threw std::runtime_error: cannot open model file"},
  };
  for (const auto& r : rows) {
    INFO(r.plugin);
    const std::string path = test::fixture_plugin(r.plugin);
    auto loaded = host.load(path, r.plugin);
    REQUIRE_FALSE(loaded.ok());
    CHECK(loaded.error().code() == sdk::status_code::refused);
    CHECK(loaded.error().message() ==
          "can't load plugin '" + r.plugin + "' (" + path + "): " + r.reason);
  }
}

TEST_CASE("plugin host reports the dynamic loader's reason for a file that is not a library",
          "[core][plugin_host]") {
  core::plugin_host host({test::fixture_plugin_dir()});
  const std::string path = test::fixture_plugin("not_a_library");
  auto loaded = host.load(path);
  REQUIRE_FALSE(loaded.ok());
  CHECK_THAT(loaded.error().message(),
             Catch::StartsWith("can't load plugin 'not_a_library' (" + path + "): ") &&
                 Catch::Contains("invalid ELF header"));
}

TEST_CASE("plugin host names the directories it searched for a missing plugin",
          "[core][plugin_host]") {
  core::plugin_host host({"/nonexistent/a", "/nonexistent/b"});
  auto found = host.find("goal_drift");
  REQUIRE_FALSE(found.ok());
  CHECK(found.error().code() == sdk::status_code::not_found);
  CHECK(found.error().message() ==
        "can't find plugin 'goal_drift': no goal_drift.so in /nonexistent/a, /nonexistent/b");
  auto missing = host.load("/nonexistent/x.so", "x");
  CHECK(missing.error().message() == "can't load plugin 'x' (/nonexistent/x.so): no such file");
}

TEST_CASE("plugin host refuses plugin names that could escape the search path",
          "[core][plugin_host]") {
  core::plugin_host host({test::fixture_plugin_dir()});
  for (const char* name : {"../threshold", "a/b", "", "..", "Threshold"}) {
    INFO(name);
    auto found = host.find(name);
    REQUIRE_FALSE(found.ok());
    CHECK(found.error().code() == sdk::status_code::invalid_argument);
  }
}
