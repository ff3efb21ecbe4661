#include <loopwarden/core/logging.hpp>

#include <google/protobuf/stubs/logging.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include <loopwarden/core/redactor.hpp>

#include "log.hpp"

namespace loopwarden::core {
namespace {

// Every line of the engine's log passes through here, whoever wrote it (the engine, a plugin
// through its context, the sidecar, the alert router): the one place secrets leave the log.
// Thread-safety: log() may be called from any thread; the redactor is swapped under mu_.
class redacting_sink final : public spdlog::sinks::sink {
 public:
  explicit redacting_sink(std::shared_ptr<spdlog::sinks::sink> inner) : inner_(std::move(inner)) {}

  void set_redactor(std::shared_ptr<const redactor> r) {
    std::lock_guard lock(mu_);
    redactor_ = std::move(r);
  }

  void log(const spdlog::details::log_msg& msg) override {
    std::shared_ptr<const redactor> r;
    {
      std::lock_guard lock(mu_);
      r = redactor_;
    }
    if (r == nullptr || r->empty()) {
      inner_->log(msg);
      return;
    }
    const std::string text = r->apply(std::string_view(msg.payload.data(), msg.payload.size()));
    spdlog::details::log_msg copy(msg);
    copy.payload = spdlog::string_view_t(text.data(), text.size());
    inner_->log(copy);
  }
  void flush() override { inner_->flush(); }
  void set_pattern(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter(std::unique_ptr<spdlog::formatter> f) override {
    inner_->set_formatter(std::move(f));
  }

 private:
  const std::shared_ptr<spdlog::sinks::sink> inner_;
  std::mutex mu_;
  std::shared_ptr<const redactor> redactor_;  // guarded by mu_; null: nothing to redact
};

const std::shared_ptr<redacting_sink>& log_sink() {
  static const auto sink =
      std::make_shared<redacting_sink>(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  return sink;
}

}  // namespace

namespace detail {

spdlog::logger& log() {
  // Function-local static: initialised once, thread-safely, on first use.
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = std::make_shared<spdlog::logger>("loopwarden", log_sink());
    spdlog::register_logger(l);
    l->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    return l;
  }();
  return *logger;
}

}  // namespace detail

void set_log_redactor(std::shared_ptr<const redactor> r) { log_sink()->set_redactor(std::move(r)); }

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

namespace {

std::atomic<std::uint64_t> protobuf_lines{0};

void protobuf_log(google::protobuf::LogLevel level, const char* filename, int line,
                  const std::string& message) {
  // Protobuf logs a parse problem once per message parsed, and the message bytes come from
  // producers: limit it as ingest_loop limits its own malformed-message lines.
  const std::uint64_t n = protobuf_lines.fetch_add(1, std::memory_order_relaxed) + 1;
  const bool fatal = level >= google::protobuf::LOGLEVEL_FATAL;
  if (!fatal && n > 10 && n % 10'000 != 0) return;
  const spdlog::level::level_enum to = fatal ? spdlog::level::critical
                                       : level >= google::protobuf::LOGLEVEL_ERROR
                                           ? spdlog::level::warn
                                           : spdlog::level::debug;
  detail::log().log(to,
                    "protobuf ({}:{}): {} ({} protobuf log lines so far; only the first 10 "
                    "and one in every 10 000 are shown)",
                    filename != nullptr ? filename : "?", line, message, n);
}

}  // namespace

void route_protobuf_logs() { google::protobuf::SetLogHandler(&protobuf_log); }

void log_to_stderr() {
  detail::log().flush_on(spdlog::level::warn);
  route_protobuf_logs();
}

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
