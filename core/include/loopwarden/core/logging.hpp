#pragma once
// Process-wide logging setup for the engine (spdlog underneath; not exposed to plugins, which log
// through their context).

#include <string_view>

#include <loopwarden/types.hpp>

namespace loopwarden::core {

// Sets the minimum level of the engine's logger. Thread-safe.
void set_log_level(sdk::log_level level);

// Sends the engine's log to stderr (the default) with a compact pattern. Thread-safe.
void log_to_stderr();

// Logs one line through the engine's logger (for the sidecar and tools). Thread-safe.
void log_message(sdk::log_level level, std::string_view message);

// Flushes the log (before exiting). Thread-safe.
void flush_log();

}  // namespace loopwarden::core
