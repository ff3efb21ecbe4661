#pragma once
// LOOPWARDEN_PLUGIN(type): the one line that turns a monitor class into a loadable plugin.
//
//   class my_monitor : public loopwarden::sdk::monitor { ... };
//   LOOPWARDEN_PLUGIN(my_monitor)
//
// It exports two symbols with C linkage and default visibility (build plugins with hidden
// visibility; nothing else needs to be exported):
//   - loopwarden_abi: the abi_record of the build (SDK version, compiler, standard library), which
//     the host checks before it creates anything;
//   - loopwarden_create_monitor: a Boost.DLL alias of the factory
//     `std::unique_ptr<loopwarden::sdk::monitor>()`, imported by the host with get_alias.
// The monitor type must be default-constructible. Its constructor may throw; the host reports
// that as a refused plugin.

#include <cstdint>
#include <memory>

#include <loopwarden/abi.hpp>
#include <loopwarden/monitor.hpp>

#define LOOPWARDEN_EXPORT __attribute__((visibility("default")))

// The factory type behind loopwarden_create_monitor.
namespace loopwarden::sdk {
using monitor_factory = std::unique_ptr<monitor>();
}

// The symbol names the host looks up.
#define LOOPWARDEN_ABI_SYMBOL "loopwarden_abi"
#define LOOPWARDEN_FACTORY_SYMBOL "loopwarden_create_monitor"

// Same layout as BOOST_DLL_ALIAS: an exported pointer-sized variable holding the function's
// address, so the plugin needs no Boost headers of its own.
#define LOOPWARDEN_PLUGIN(monitor_type)                                                           \
  extern "C" {                                                                                    \
  extern const ::loopwarden::sdk::abi_record loopwarden_abi LOOPWARDEN_EXPORT;                    \
  const ::loopwarden::sdk::abi_record loopwarden_abi = ::loopwarden::sdk::current_abi_record();   \
  }                                                                                               \
  namespace {                                                                                     \
  std::unique_ptr<::loopwarden::sdk::monitor> loopwarden_plugin_factory() {                       \
    return std::make_unique<monitor_type>();                                                      \
  }                                                                                               \
  }                                                                                               \
  extern "C" {                                                                                    \
  LOOPWARDEN_EXPORT const void* loopwarden_create_monitor =                                       \
      reinterpret_cast<const void*>(reinterpret_cast<std::intptr_t>(&loopwarden_plugin_factory)); \
  }                                                                                               \
  static_assert(true, "LOOPWARDEN_PLUGIN is used as a statement: end it with a semicolon")
