#include <loopwarden/core/logging.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "log.hpp"

namespace loopwarden::core {
namespace detail {

spdlog::logger& log() {
  // Function-local static: initialised once, thread-safely, on first use.
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = spdlog::stderr_color_mt("loopwarden");
    l->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    return l;
  }();
  return *logger;
}

}  // namespace detail

void set_log_level(sdk::log_level level) {
  switch (level) {
    case sdk::log_level::debug:
      detail::log().set_level(spdlog::level::debug);
      break;
    case sdk::log_level::info:
      detail::log().set_level(spdlog::level::info);
      break;
    case sdk::log_level::warn:
      detail::log().set_level(spdlog::level::warn);
      break;
    case sdk::log_level::error:
      detail::log().set_level(spdlog::level::err);
      break;
  }
}

void log_to_stderr() { detail::log().flush_on(spdlog::level::warn); }

void log_message(sdk::log_level level, std::string_view message) {
  switch (level) {
    case sdk::log_level::debug:
      detail::log().debug("{}", message);
      break;
    case sdk::log_level::info:
      detail::log().info("{}", message);
      break;
    case sdk::log_level::warn:
      detail::log().warn("{}", message);
      break;
    case sdk::log_level::error:
      detail::log().error("{}", message);
      break;
  }
}

void flush_log() { detail::log().flush(); }

}  // namespace loopwarden::core
