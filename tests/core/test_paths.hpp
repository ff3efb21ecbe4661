#pragma once
// Where the tests find what the build made.
#include <string>

namespace loopwarden::test {

inline std::string fixture_plugin(const std::string& name) {
  return std::string(LOOPWARDEN_BINARY_DIR) + "/tests/fixtures/plugins/" + name + ".so";
}
inline std::string fixture_plugin_dir() {
  return std::string(LOOPWARDEN_BINARY_DIR) + "/tests/fixtures/plugins";
}
inline std::string bundled_plugin_dir() {
  return std::string(LOOPWARDEN_BINARY_DIR) + "/lib/loopwarden/plugins";
}

}  // namespace loopwarden::test
