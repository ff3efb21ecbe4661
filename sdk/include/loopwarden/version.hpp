#pragma once
// The SDK's version. A plugin records the version it was built with (see abi.hpp); the host
// refuses a plugin of another major version, or of a newer minor version than its own.

#include <cstdint>

#define LOOPWARDEN_SDK_VERSION_MAJOR 1
#define LOOPWARDEN_SDK_VERSION_MINOR 0
#define LOOPWARDEN_SDK_VERSION_PATCH 0

namespace loopwarden::sdk {

inline constexpr std::uint32_t sdk_version_major = LOOPWARDEN_SDK_VERSION_MAJOR;
inline constexpr std::uint32_t sdk_version_minor = LOOPWARDEN_SDK_VERSION_MINOR;
inline constexpr std::uint32_t sdk_version_patch = LOOPWARDEN_SDK_VERSION_PATCH;

// The event schema this SDK speaks (package loopwarden.v1, minor grows with additive changes).
inline constexpr std::uint32_t schema_version_major = 1;
inline constexpr std::uint32_t schema_version_minor = 0;

// "1.0.0"; the version of the SDK shared library actually loaded (may differ from the headers).
const char* runtime_version();

}  // namespace loopwarden::sdk
