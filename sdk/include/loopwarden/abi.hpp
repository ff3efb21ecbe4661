#pragma once
// The ABI record a plugin exports beside its factory. The host reads it before creating anything
// and refuses a plugin whose record does not match its own (see check_abi_compatible).
//
// The record is plain data with C linkage, so the host can read it even from a plugin built
// with an incompatible compiler or standard library.

#include <cstdint>
#include <string>

#include <google/protobuf/stubs/common.h>
#include <loopwarden/status.hpp>
#include <loopwarden/version.hpp>

namespace loopwarden::sdk {

// Layout version of abi_record itself; bumped only if its fields change.
inline constexpr std::uint32_t abi_record_layout = 1;

struct abi_record {
  std::uint32_t layout;     // abi_record_layout of the writer
  std::uint32_t sdk_major;  // SDK the plugin was built with
  std::uint32_t sdk_minor;
  std::uint32_t sdk_patch;
  std::uint32_t cxx_standard;      // __cplusplus, e.g. 202002
  char compiler[16];               // "gcc", "clang", "msvc", "unknown"
  std::uint32_t compiler_major;    // e.g. 12
  char stdlib[16];                 // "libstdc++", "libc++", "msvc-stl", "unknown"
  std::uint32_t stdlib_dual_abi;   // libstdc++'s _GLIBCXX_USE_CXX11_ABI (0 or 1), else 0
  std::uint32_t protobuf_version;  // GOOGLE_PROTOBUF_VERSION, e.g. 3021012
};

// The record describing the code being compiled now (a plugin's, or the host's).
constexpr abi_record current_abi_record() {
  abi_record r{};
  r.layout = abi_record_layout;
  r.sdk_major = sdk_version_major;
  r.sdk_minor = sdk_version_minor;
  r.sdk_patch = sdk_version_patch;
  r.cxx_standard = static_cast<std::uint32_t>(__cplusplus);
  auto put = [](char* out, const char* s) {
    int i = 0;
    for (; s[i] != '\0' && i < 15; ++i) out[i] = s[i];
    for (; i < 16; ++i) out[i] = '\0';
  };
#if defined(__clang__)
  put(r.compiler, "clang");
  r.compiler_major = __clang_major__;
#elif defined(__GNUC__)
  put(r.compiler, "gcc");
  r.compiler_major = __GNUC__;
#elif defined(_MSC_VER)
  put(r.compiler, "msvc");
  r.compiler_major = _MSC_VER / 100;
#else
  put(r.compiler, "unknown");
  r.compiler_major = 0;
#endif
#if defined(_LIBCPP_VERSION)
  put(r.stdlib, "libc++");
  r.stdlib_dual_abi = 0;
#elif defined(__GLIBCXX__)
  put(r.stdlib, "libstdc++");
  r.stdlib_dual_abi = _GLIBCXX_USE_CXX11_ABI;
#elif defined(_MSC_VER)
  put(r.stdlib, "msvc-stl");
  r.stdlib_dual_abi = 0;
#else
  put(r.stdlib, "unknown");
  r.stdlib_dual_abi = 0;
#endif
  r.protobuf_version = GOOGLE_PROTOBUF_VERSION;
  return r;
}

// Decides whether a plugin built as `plugin` can run in a host built as `host`.
// Compatible when: same record layout; same SDK major and a minor no newer than the host's; the
// same standard library (name and, for libstdc++, the dual-ABI flag); a C++20 or later standard;
// a known compiler (gcc and clang share the libstdc++ ABI, so either may build a plugin for the
// other); the same protobuf major.minor (generated code is tied to its runtime).
// Returns ok, or `refused` with a message naming the first mismatch, e.g.
// "sdk abi 2.0, host is 1.0".
status check_abi_compatible(const abi_record& plugin, const abi_record& host);

// "sdk 1.0.0, gcc 12, libstdc++ (cxx11 abi), c++202002, protobuf 3.21.12"
std::string describe(const abi_record& record);

}  // namespace loopwarden::sdk
