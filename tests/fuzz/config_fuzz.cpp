// Fuzz target: configuration loading on arbitrary YAML text.
//
// The input is a whole config file. It goes through what `loopwarden config check` and `serve`
// do with one: core::parse_config (YAML → typed config, every error naming field and line), the
// sidecar's own sections (validate_sidecar_sections: alerts, http, approvals, state_sync), and
// core::engine::create, which hands each monitor's `config:` subtree to the bundled plugin's
// configure(). A refusal is fine; a crash, a hang or a leak is not, and neither is an error
// message that does not say where (the config.hpp contract).
//
// Loading arbitrary files is not what this target tests: plugin_paths are dropped, and monitors
// given by `path:` are kept only when the file is a bundled plugin. Relative paths resolve against
// a directory that does not exist.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>
#include <loopwarden/sidecar/server.hpp>

#include "fuzz_support.hpp"

using namespace loopwarden;

namespace {

std::string* plugins = nullptr;  // the bundled plugin directory, set once

bool is_bundled_plugin_file(const std::string& path) {
  const std::filesystem::path p = std::filesystem::path(path).lexically_normal();
  return p.parent_path() == std::filesystem::path(*plugins) && p.extension() == ".so";
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quiet_logs();
  fuzz::pin_bundled_plugins();
  plugins = new std::string(std::filesystem::path(fuzz::plugin_dir()).lexically_normal());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view yaml(reinterpret_cast<const char*>(data), size);
  auto cfg = core::parse_config(yaml, "fuzz.yaml", "/nonexistent/fuzz");
  if (!cfg.ok()) {
    // Every refusal names the document (and the field and line where there is one).
    if (cfg.error().message().find("fuzz.yaml") == std::string::npos) {
      fuzz::die("a config error that does not name the file: " + cfg.error().message());
    }
    return 0;
  }
  (void)sidecar::validate_sidecar_sections(*cfg);

  cfg->plugin_paths.clear();
  std::erase_if(cfg->monitors, [](const core::monitor_config& m) {
    return !m.path.empty() && !is_bundled_plugin_file(m.path);
  });
  core::engine_options o;
  o.extra_plugin_paths = {*plugins};
  o.search_bundled_plugins = false;
  o.event_time_clock = true;
  o.threaded = false;
  auto engine = core::engine::create(*cfg, o);
  if (engine.ok()) {
    (void)(*engine)->monitors();
    (void)(*engine)->breakers().snapshot();
  }
  return 0;
}
