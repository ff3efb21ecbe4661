#pragma once
// The plugin host: finds monitor plugins on the search path, loads them with Boost.DLL, checks
// their ABI record before creating anything, and creates monitor instances.
//
// Every refusal names the plugin, the file and the reason, e.g.
//   can't load plugin 'goal_drift' (/usr/lib/loopwarden/plugins/goal_drift.so): sdk abi 2.x, host
//   is 1.0

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <loopwarden/abi.hpp>
#include <loopwarden/core/status.hpp>
#include <loopwarden/monitor.hpp>
#include <loopwarden/status.hpp>

namespace loopwarden::core {

// One loaded plugin library and the monitor instance created from it. It owns both, and destroys
// the instance before it unloads the library (the instance's code lives in the library).
// Thread-safety: not thread-safe; the engine gives each instance one caller at a time.
class loaded_monitor {
 public:
  ~loaded_monitor();
  loaded_monitor(const loaded_monitor&) = delete;
  loaded_monitor& operator=(const loaded_monitor&) = delete;

  sdk::monitor& instance() { return *instance_; }
  const sdk::monitor& instance() const { return *instance_; }
  const std::string& plugin_name() const { return plugin_name_; }
  const std::string& path() const { return path_; }
  const sdk::abi_record& abi() const { return abi_; }

 private:
  friend class plugin_host;
  struct library;  // the Boost.DLL shared_library, kept out of this header
  loaded_monitor(std::string plugin_name, std::string path, std::unique_ptr<library> lib,
                 const sdk::abi_record& abi);

  std::string plugin_name_;
  std::string path_;
  sdk::abi_record abi_{};
  // Declaration order matters: members are destroyed in reverse, so instance_ goes first.
  std::unique_ptr<library> library_;
  std::unique_ptr<sdk::monitor> instance_;
};

// Thread-safety: const methods are safe from any thread.
class plugin_host {
 public:
  // `search_paths`: directories searched, in order, for "<plugin>.so".
  explicit plugin_host(std::vector<std::string> search_paths);

  const std::vector<std::string>& search_paths() const { return search_paths_; }

  // The first "<dir>/<plugin>.so" that exists. Errors: not_found listing the directories searched;
  // invalid_argument for a name that is not [a-z0-9_.-]+ (no path tricks).
  result<std::string> find(std::string_view plugin) const;

  // Checks that `path` may be loaded (plugin_trust.hpp: the permission rule, and the pinned
  // digest when `expected_sha256` is not empty) without loading it. Returns the real path, the
  // one to load. Errors, prefixed "can't load plugin '<name>' (<path>): ": not_found (no such
  // file), refused (a file or directory others can write or own, a digest mismatch), io_error.
  result<std::string> verify(const std::string& path, std::string_view plugin_name = {},
                             std::string_view expected_sha256 = {}) const;

  // Loads `path`, checks its ABI record against the host's, and creates one instance. Errors
  // (all `refused` or `not_found`, message prefixed "can't load plugin '<name>' (<path>): "):
  // the file is missing, fails the permission rule (verify() without a digest), or is not a
  // shared library (with the loader's reason), the ABI record or the factory symbol is missing,
  // the record is incompatible (check_abi_compatible), the constructor throws or returns
  // nothing. `plugin_name` is used in messages (file stem if empty). The real path is loaded.
  result<std::unique_ptr<loaded_monitor>> load(const std::string& path,
                                               std::string_view plugin_name = {}) const;

 private:
  std::vector<std::string> search_paths_;
};

// The directory of bundled plugins relative to the running executable
// ("<exe dir>/../lib/loopwarden/plugins"), or empty when it cannot be determined.
std::string bundled_plugin_dir();

}  // namespace loopwarden::core
