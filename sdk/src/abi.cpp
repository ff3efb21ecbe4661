#include <loopwarden/abi.hpp>

#include <cstring>
#include <string>

namespace loopwarden::sdk {
namespace {

// The fixed-size name fields may come from a foreign build: never trust a terminator.
std::string field(const char (&chars)[16]) { return std::string(chars, strnlen(chars, 16)); }

std::string protobuf_text(std::uint32_t v) {
  return std::to_string(v / 1000000) + "." + std::to_string(v / 1000 % 1000) + "." +
         std::to_string(v % 1000);
}

}  // namespace

std::string describe(const abi_record& r) {
  std::string out = "sdk " + std::to_string(r.sdk_major) + "." + std::to_string(r.sdk_minor) + "." +
                    std::to_string(r.sdk_patch) + ", " + field(r.compiler) + " " +
                    std::to_string(r.compiler_major) + ", " + field(r.stdlib);
  if (field(r.stdlib) == "libstdc++") out += r.stdlib_dual_abi ? " (cxx11 abi)" : " (old abi)";
  out +=
      ", c++" + std::to_string(r.cxx_standard) + ", protobuf " + protobuf_text(r.protobuf_version);
  return out;
}

status check_abi_compatible(const abi_record& plugin, const abi_record& host) {
  auto refuse = [](std::string m) { return make_error(status_code::refused, std::move(m)); };
  if (plugin.layout != host.layout) {
    return refuse("abi record layout " + std::to_string(plugin.layout) + ", host reads layout " +
                  std::to_string(host.layout));
  }
  if (plugin.sdk_major != host.sdk_major) {
    return refuse("sdk abi " + std::to_string(plugin.sdk_major) + ".x, host is " +
                  std::to_string(host.sdk_major) + "." + std::to_string(host.sdk_minor));
  }
  if (plugin.sdk_minor > host.sdk_minor) {
    return refuse("sdk " + std::to_string(plugin.sdk_major) + "." +
                  std::to_string(plugin.sdk_minor) + " is newer than the host's " +
                  std::to_string(host.sdk_major) + "." + std::to_string(host.sdk_minor));
  }
  const std::string plugin_compiler = field(plugin.compiler);
  if (plugin_compiler != "gcc" && plugin_compiler != "clang") {
    return refuse("incompatible compiler '" + plugin_compiler + "' (host accepts gcc or clang)");
  }
  const std::string plugin_stdlib = field(plugin.stdlib);
  const std::string host_stdlib = field(host.stdlib);
  if (plugin_stdlib != host_stdlib) {
    return refuse("incompatible standard library " + plugin_stdlib + ", host uses " + host_stdlib);
  }
  if (plugin.stdlib_dual_abi != host.stdlib_dual_abi) {
    return refuse(std::string("incompatible libstdc++ abi: plugin built with ") +
                  "_GLIBCXX_USE_CXX11_ABI=" + std::to_string(plugin.stdlib_dual_abi) +
                  ", host with " + std::to_string(host.stdlib_dual_abi));
  }
  if (plugin.cxx_standard < 202002) {
    return refuse("built as c++" + std::to_string(plugin.cxx_standard) +
                  ", the sdk needs c++20 (202002) or later");
  }
  if (plugin.protobuf_version / 1000 != host.protobuf_version / 1000) {
    return refuse("built against protobuf " + protobuf_text(plugin.protobuf_version) +
                  ", host uses " + protobuf_text(host.protobuf_version));
  }
  return status::success();
}

}  // namespace loopwarden::sdk
