#pragma once
// status and result<T>: the cheap return types for expected failures (I/O, parsing, a refused
// plugin, a timeout). Exceptions are reserved for broken invariants.

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace loopwarden::sdk {

// What kind of failure a status carries. Callers branch on the code; humans read the message.
enum class status_code {
  ok,
  invalid_argument,  // the caller passed something malformed (bad config, bad request)
  not_found,         // a named thing does not exist (file, breaker, plugin)
  io_error,          // the operating system refused (open, read, write)
  parse_error,       // bytes that should have been a message, file or document were not
  refused,  // a well-formed request that policy rejects (abi mismatch, reset without reason)
  failed_precondition,  // the request does not fit the current state (reset of a closed breaker)
  timeout,
  internal,  // a bug or an exception from a plugin
};

// The outcome of an operation: ok, or a code and a lowercase message with context.
// A default-constructed status is ok. Cheap to copy when ok (an empty string).
// Thread-safety: a value type; distinct objects may be used from distinct threads.
class [[nodiscard]] status {
 public:
  status() = default;
  status(status_code code, std::string message) : code_(code), message_(std::move(message)) {}

  static status success() { return status(); }

  bool ok() const { return code_ == status_code::ok; }
  status_code code() const { return code_; }
  // The message; empty when ok.
  const std::string& message() const { return message_; }

  // Returns this status with "context: " put in front of the message; ok stays ok.
  status with_context(std::string_view context) const {
    if (ok()) return *this;
    std::string m(context);
    m += ": ";
    m += message_;
    return status(code_, std::move(m));
  }

 private:
  status_code code_ = status_code::ok;
  std::string message_;
};

inline status make_error(status_code code, std::string message) {
  return status(code, std::move(message));
}

// A value of type T, or the status that explains why there is none.
// Thread-safety: a value type, as T is.
template <typename T>
class [[nodiscard]] result {
 public:
  // NOLINTNEXTLINE(google-explicit-constructor): implicit so `return value;` reads naturally.
  result(T value) : value_(std::move(value)) {}
  // NOLINTNEXTLINE(google-explicit-constructor): implicit so `return make_error(...)` works.
  result(status error) : status_(std::move(error)) { assert(!status_.ok()); }

  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  // The failure; ok when a value is present.
  const status& error() const { return status_; }

  // The value. Precondition: ok().
  T& value() & {
    assert(ok());
    return *value_;
  }
  const T& value() const& {
    assert(ok());
    return *value_;
  }
  T&& value() && {
    assert(ok());
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  // The value, or `fallback` when there is none.
  T value_or(T fallback) const& { return ok() ? *value_ : std::move(fallback); }

 private:
  std::optional<T> value_;
  status status_;
};

}  // namespace loopwarden::sdk
