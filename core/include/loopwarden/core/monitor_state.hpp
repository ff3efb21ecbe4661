#pragma once
// The learned state of one monitor instance (baselines, windows), as its snapshot() returned it,
// so that a restart of the daemon does not forget what the monitor had learned.

#include <cstdint>
#include <string>

namespace loopwarden::core {

// Thread-safety: a plain value.
struct monitor_state {
  std::string monitor;  // the configured instance name
  std::string plugin;   // the plugin's name, from its info()
  std::string version;  // the plugin's version when the state was taken (restore needs its major)
  std::string state;    // opaque bytes, exactly what monitor::snapshot returned
  std::int64_t saved_unix_nano = 0;  // when it was taken (0 = unknown)
};

}  // namespace loopwarden::core
