#pragma once
// The engine's logger, for core/src only.

#include <memory>

#include <spdlog/spdlog.h>

namespace loopwarden::core::detail {

// The "loopwarden" logger, created on first use (stderr, thread-safe sink).
spdlog::logger& log();

}  // namespace loopwarden::core::detail
