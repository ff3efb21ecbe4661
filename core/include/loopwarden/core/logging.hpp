#pragma once
// Process-wide logging setup for the engine (spdlog underneath; not exposed to plugins, which log
// through their context).

#include <memory>
#include <string_view>

#include <loopwarden/types.hpp>

namespace loopwarden::core {

// Sets the minimum level of the engine's logger. Thread-safe.
void set_log_level(sdk::log_level level);

// Sends the engine's log to stderr (the default) with a compact pattern, and protobuf's own log
// lines through it (route_protobuf_logs). Thread-safe.
void log_to_stderr();

// Routes protobuf's log lines (it reports, e.g., a string field with invalid UTF-8 in every
// message it parses) through the engine's logger, rate-limited like the ingest's malformed-message
// log: the first 10, then one in every 10 000, each with the count so far; fatal ones always.
// Without it each such message from a hostile producer writes a line to stderr. Idempotent,
// thread-safe; the handler is process-wide.
void route_protobuf_logs();

// Logs one line through the engine's logger (for the sidecar and tools). Thread-safe.
void log_message(sdk::log_level level, std::string_view message);

class redactor;

// From now on every line of the log, whoever writes it, passes through `r` (redactor.hpp) before
// it is written; null: no redaction. Thread-safe; lines being written keep the one they started
// with.
void set_log_redactor(std::shared_ptr<const redactor> r);

// Flushes the log (before exiting). Thread-safe.
void flush_log();

}  // namespace loopwarden::core
