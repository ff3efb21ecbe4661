#include <loopwarden/core/plugin_host.hpp>

#include <dlfcn.h>
#include <unistd.h>

#include <boost/core/demangle.hpp>
#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>
#include <exception>
#include <filesystem>
#include <typeinfo>

#include <loopwarden/core/plugin_trust.hpp>
#include <loopwarden/plugin.hpp>

namespace loopwarden::core {

namespace fs = std::filesystem;

struct loaded_monitor::library {
  boost::dll::shared_library lib;
};

loaded_monitor::loaded_monitor(std::string plugin_name, std::string path,
                               std::unique_ptr<library> lib, const sdk::abi_record& abi)
    : plugin_name_(std::move(plugin_name)),
      path_(std::move(path)),
      abi_(abi),
      library_(std::move(lib)) {}

loaded_monitor::~loaded_monitor() {
  // The instance's vtable and destructor live in the library: destroy it while still loaded.
  instance_.reset();
  library_.reset();
}

plugin_host::plugin_host(std::vector<std::string> search_paths)
    : search_paths_(std::move(search_paths)) {}

namespace {

bool valid_plugin_name(std::string_view name) {
  if (name.empty() || name == "." || name == "..") return false;
  for (char c : name) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// Boost.DLL clears dlerror() on failure; ask the dynamic loader once more for its reason.
std::string loader_reason(const std::string& path) {
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle != nullptr) {
    dlclose(handle);
    return "the dynamic loader refused it";
  }
  const char* why = dlerror();
  return why != nullptr ? why : "the dynamic loader refused it";
}

}  // namespace

result<std::string> plugin_host::find(std::string_view plugin) const {
  if (!valid_plugin_name(plugin)) {
    return make_error(sdk::status_code::invalid_argument,
                      "invalid plugin name '" + std::string(plugin) +
                          "' (use lowercase letters, digits, '_', '-', '.')");
  }
  std::string searched;
  for (const auto& dir : search_paths_) {
    fs::path candidate = fs::path(dir) / (std::string(plugin) + ".so");
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec)) return candidate.lexically_normal().string();
    if (!searched.empty()) searched += ", ";
    searched += dir;
  }
  return make_error(sdk::status_code::not_found,
                    "can't find plugin '" + std::string(plugin) + "': no " + std::string(plugin) +
                        ".so in " + (searched.empty() ? "an empty search path" : searched));
}

result<std::string> plugin_host::verify(const std::string& path, std::string_view plugin_name,
                                        std::string_view expected_sha256) const {
  const std::string name =
      plugin_name.empty() ? fs::path(path).stem().string() : std::string(plugin_name);
  auto real = verify_plugin_file(path, expected_sha256, ::geteuid());
  if (!real.ok()) {
    return make_error(real.error().code(),
                      "can't load plugin '" + name + "' (" + path + "): " + real.error().message());
  }
  return real;
}

result<std::unique_ptr<loaded_monitor>> plugin_host::load(const std::string& given_path,
                                                          std::string_view plugin_name) const {
  // Nothing reaches the dynamic loader (which runs the library's constructors) before the
  // permission rule has passed; the real path it returns is what is loaded.
  auto real = verify(given_path, plugin_name);
  if (!real.ok()) return real.error();
  const std::string& path = *real;
  const std::string name =
      plugin_name.empty() ? fs::path(path).stem().string() : std::string(plugin_name);
  const std::string prefix = "can't load plugin '" + name + "' (" + path + "): ";
  auto refuse = [&](std::string why) {
    return make_error(sdk::status_code::refused, prefix + why);
  };

  auto lib = std::make_unique<loaded_monitor::library>();
  boost::dll::fs::error_code ec;
  lib->lib.load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
  if (ec || !lib->lib.is_loaded()) return refuse(loader_reason(path));

  if (!lib->lib.has(LOOPWARDEN_ABI_SYMBOL)) {
    return refuse("missing abi record symbol '" LOOPWARDEN_ABI_SYMBOL
                  "' (was it built with LOOPWARDEN_PLUGIN?)");
  }
  // Copy the record before trusting anything else the library exports.
  const sdk::abi_record abi = lib->lib.get<const sdk::abi_record>(LOOPWARDEN_ABI_SYMBOL);
  const sdk::abi_record host = sdk::current_abi_record();
  if (auto s = sdk::check_abi_compatible(abi, host); !s.ok()) return refuse(s.message());

  if (!lib->lib.has(LOOPWARDEN_FACTORY_SYMBOL)) {
    return refuse("missing factory symbol '" LOOPWARDEN_FACTORY_SYMBOL
                  "' (was it built with LOOPWARDEN_PLUGIN?)");
  }
  auto factory = lib->lib.get_alias<sdk::monitor_factory>(LOOPWARDEN_FACTORY_SYMBOL);

  std::unique_ptr<sdk::monitor> instance;
  try {
    instance = factory();
  } catch (const std::exception& e) {
    return refuse("constructor threw " + boost::core::demangle(typeid(e).name()) + ": " + e.what());
  } catch (...) {
    return refuse("constructor threw a non-standard exception");
  }
  if (!instance) return refuse("factory returned no monitor");

  auto loaded = std::unique_ptr<loaded_monitor>(
      new loaded_monitor(name, fs::path(path).lexically_normal().string(), std::move(lib), abi));
  loaded->instance_ = std::move(instance);
  return loaded;
}

std::string bundled_plugin_dir() {
  boost::dll::fs::error_code ec;
  auto exe = boost::dll::program_location(ec);
  if (ec) return {};
  fs::path dir = fs::path(exe.string()).parent_path() / ".." / "lib" / "loopwarden" / "plugins";
  return dir.lexically_normal().string();
}

}  // namespace loopwarden::core
