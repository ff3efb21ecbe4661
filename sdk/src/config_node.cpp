#include <loopwarden/config_node.hpp>

// The standard library only: the SDK must not depend on a YAML library (the host builds trees).
#include <array>
#include <cassert>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
#include <system_error>
#include <utility>

namespace loopwarden::sdk {
namespace {

constexpr std::size_t max_described_chars = 60;

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char ca = a[i];
    char cb = b[i];
    if (ca >= 'A' && ca <= 'Z') ca = static_cast<char>(ca - 'A' + 'a');
    if (cb >= 'A' && cb <= 'Z') cb = static_cast<char>(cb - 'A' + 'a');
    if (ca != cb) return false;
  }
  return true;
}

// from_chars refuses a leading '+', which YAML writers use; accept exactly one, then a digit or
// '.', so "+-5" and "++5" stay refused.
std::string_view strip_plus(std::string_view text) {
  if (text.size() >= 2 && text[0] == '+' && text[1] != '+' && text[1] != '-') text.remove_prefix(1);
  return text;
}

std::optional<std::int64_t> parse_int(std::string_view text) {
  text = strip_plus(text);
  std::int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) return std::nullopt;
  return value;
}

std::optional<double> parse_double(std::string_view text) {
  text = strip_plus(text);
  double value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty() || !std::isfinite(value)) return std::nullopt;
  return value;
}

struct duration_unit {
  std::string_view suffix;
  std::int64_t nanoseconds;
};

// Longest suffixes first, so "ms" is not read as "m" after a number ending in "s".
constexpr std::array<duration_unit, 7> duration_units = {{
    {"ns", 1},
    {"us", 1'000},
    {"ms", 1'000'000},
    {"s", 1'000'000'000},
    {"m", 60LL * 1'000'000'000},
    {"h", 3'600LL * 1'000'000'000},
    {"d", 86'400LL * 1'000'000'000},
}};

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  std::int64_t unit = 1'000'000'000;  // a plain number is seconds
  for (const auto& u : duration_units) {
    if (text.size() > u.suffix.size() && text.ends_with(u.suffix)) {
      text.remove_suffix(u.suffix.size());
      unit = u.nanoseconds;
      break;
    }
  }
  if (text.empty() || text[0] == '-' || text[0] == '+') return std::nullopt;
  // Whole numbers take the exact integer path; only fractions go through a double.
  if (auto whole = parse_int(text)) {
    if (*whole > std::numeric_limits<std::int64_t>::max() / unit) return std::nullopt;
    return std::chrono::nanoseconds(*whole * unit);
  }
  auto fraction = parse_double(text);
  if (!fraction || *fraction < 0) return std::nullopt;
  const double ns = std::round(*fraction * static_cast<double>(unit));
  // 2^63 is exactly representable; anything at or above it does not fit an int64.
  if (ns >= 9223372036854775808.0) return std::nullopt;
  return std::chrono::nanoseconds(static_cast<std::int64_t>(ns));
}

}  // namespace

config_node config_node::make_null(std::string path, std::string file, int line) {
  auto d = std::make_shared<data>();
  d->type = node_type::null;
  d->path = std::move(path);
  d->file = std::move(file);
  d->line = line;
  return config_node(std::move(d));
}

config_node config_node::make_scalar(std::string path, std::string file, int line,
                                     std::string value, bool quoted) {
  auto d = std::make_shared<data>();
  d->type = node_type::scalar;
  d->quoted = quoted;
  d->path = std::move(path);
  d->file = std::move(file);
  d->line = line;
  d->scalar = std::move(value);
  return config_node(std::move(d));
}

config_node config_node::make_sequence(std::string path, std::string file, int line) {
  auto d = std::make_shared<data>();
  d->type = node_type::sequence;
  d->path = std::move(path);
  d->file = std::move(file);
  d->line = line;
  return config_node(std::move(d));
}

config_node config_node::make_map(std::string path, std::string file, int line) {
  auto d = std::make_shared<data>();
  d->type = node_type::map;
  d->path = std::move(path);
  d->file = std::move(file);
  d->line = line;
  return config_node(std::move(d));
}

void config_node::push_back(config_node child) {
  assert(is_sequence());
  if (!is_sequence()) return;
  d_->children.push_back(std::move(child));
}

void config_node::insert(std::string key, config_node child) {
  assert(is_map());
  if (!is_map()) return;
  d_->keys.push_back(std::move(key));
  d_->children.push_back(std::move(child));
}

config_node config_node::operator[](std::string_view key) const {
  if (is_map()) {
    for (std::size_t i = 0; i < d_->keys.size(); ++i) {
      if (d_->keys[i] == key) return d_->children[i];
    }
  }
  auto d = std::make_shared<data>();
  d->path = d_->path.empty() ? std::string(key) : d_->path + "." + std::string(key);
  d->file = d_->file;
  d->line = d_->line;
  return config_node(std::move(d));
}

bool config_node::contains(std::string_view key) const {
  if (!is_map()) return false;
  for (const auto& k : d_->keys) {
    if (k == key) return true;
  }
  return false;
}

std::vector<std::string> config_node::keys() const {
  return is_map() ? d_->keys : std::vector<std::string>{};
}

std::size_t config_node::size() const { return is_sequence() ? d_->children.size() : 0; }

config_node config_node::at(std::size_t index) const {
  if (is_sequence() && index < d_->children.size()) return d_->children[index];
  auto d = std::make_shared<data>();
  d->path = d_->path + "[" + std::to_string(index) + "]";
  d->file = d_->file;
  d->line = d_->line;
  return config_node(std::move(d));
}

result<std::string> config_node::as_string() const {
  if (!is_scalar()) return error("expected a string, got " + describe());
  return d_->scalar;
}

result<bool> config_node::as_bool() const {
  if (is_scalar()) {
    const std::string& s = d_->scalar;
    std::optional<bool> value;
    if (iequals(s, "true") || iequals(s, "yes") || iequals(s, "on")) value = true;
    if (iequals(s, "false") || iequals(s, "no") || iequals(s, "off")) value = false;
    // A quoted scalar is a string by YAML's rules: `"yes"` is text, never a boolean. Say so, or
    // the message would read as if the accepted word itself were wrong.
    if (value && d_->quoted) {
      return error("expected true or false without quotes, got the string " + describe());
    }
    if (value) return *value;
  }
  return error("expected true or false, got " + describe());
}

result<std::int64_t> config_node::as_int() const {
  if (is_scalar()) {
    if (auto v = parse_int(d_->scalar)) return *v;
  }
  return error("expected an integer, got " + describe());
}

result<std::int64_t> config_node::as_positive_int() const {
  if (is_scalar()) {
    if (auto v = parse_int(d_->scalar); v && *v >= 1) return *v;
  }
  return error("expected a positive integer, got " + describe());
}

result<double> config_node::as_double() const {
  if (is_scalar()) {
    if (auto v = parse_double(d_->scalar)) return *v;
  }
  return error("expected a number, got " + describe());
}

result<double> config_node::as_probability() const {
  if (is_scalar()) {
    if (auto v = parse_double(d_->scalar); v && *v >= 0.0 && *v <= 1.0) return *v;
  }
  return error("expected a number in [0, 1], got " + describe());
}

result<std::chrono::nanoseconds> config_node::as_duration() const {
  if (is_scalar()) {
    if (auto v = parse_duration(d_->scalar)) return *v;
  }
  return error("expected a duration such as 250ms, 5s or 10m, got " + describe());
}

result<std::vector<std::string>> config_node::as_string_list() const {
  if (is_scalar()) return std::vector<std::string>{d_->scalar};
  if (!is_sequence()) return error("expected a string or a sequence of strings, got " + describe());
  std::vector<std::string> out;
  out.reserve(d_->children.size());
  for (const auto& child : d_->children) {
    auto s = child.as_string();
    if (!s) return s.error();
    out.push_back(std::move(s).value());
  }
  return out;
}

result<std::string> config_node::get_string(std::string_view key, std::string fallback) const {
  auto n = (*this)[key];
  if (n.is_missing() || n.is_null()) return fallback;
  return n.as_string();
}

result<bool> config_node::get_bool(std::string_view key, bool fallback) const {
  auto n = (*this)[key];
  if (n.is_missing() || n.is_null()) return fallback;
  return n.as_bool();
}

result<std::int64_t> config_node::get_int(std::string_view key, std::int64_t fallback) const {
  auto n = (*this)[key];
  if (n.is_missing() || n.is_null()) return fallback;
  return n.as_int();
}

result<std::int64_t> config_node::get_positive_int(std::string_view key,
                                                   std::int64_t fallback) const {
  auto n = (*this)[key];
  if (n.is_missing() || n.is_null()) return fallback;
  return n.as_positive_int();
}

result<double> config_node::get_double(std::string_view key, double fallback) const {
  auto n = (*this)[key];
  if (n.is_missing() || n.is_null()) return fallback;
  return n.as_double();
}

result<std::chrono::nanoseconds> config_node::get_duration(
    std::string_view key, std::chrono::nanoseconds fallback) const {
  auto n = (*this)[key];
  if (n.is_missing() || n.is_null()) return fallback;
  return n.as_duration();
}

config_node config_node::require(std::string_view key, status& error_out) const {
  auto n = (*this)[key];
  // Keep the first failure, so a chain of requires reports the earliest missing key.
  if (n.is_missing() && error_out.ok()) error_out = n.error("required");
  return n;
}

status config_node::check_keys(std::initializer_list<std::string_view> allowed) const {
  if (is_missing() || is_null()) return status::success();
  if (!is_map()) return error("expected a map, got " + describe());
  for (std::size_t i = 0; i < d_->keys.size(); ++i) {
    bool known = false;
    for (auto a : allowed) {
      if (a == d_->keys[i]) {
        known = true;
        break;
      }
    }
    if (known) continue;
    std::string list;
    for (auto a : allowed) {
      if (!list.empty()) list += ", ";
      list += a;
    }
    return d_->children[i].error("unknown key (allowed: " + list + ")");
  }
  return status::success();
}

status config_node::error(std::string_view what) const {
  std::string m;
  if (!d_->path.empty()) {
    m += d_->path;
    m += ": ";
  }
  m += what;
  // A node built without a location (a default-constructed one) has nothing useful to show.
  if (!d_->file.empty() || d_->line > 0) {
    m += " (";
    m += d_->file;
    if (d_->line > 0) {
      if (!d_->file.empty()) m += ":";
      m += std::to_string(d_->line);
    }
    m += ")";
  }
  return make_error(status_code::invalid_argument, std::move(m));
}

std::string config_node::describe() const {
  switch (d_->type) {
    case node_type::missing:
      return "nothing";
    case node_type::null:
      return "null";
    case node_type::sequence:
      return "a sequence";
    case node_type::map:
      return "a map";
    case node_type::scalar:
      break;
  }
  // Escape quotes and control characters and cut long text, so a block scalar pasted into the
  // wrong field still gives a one-line message.
  std::string out = "\"";
  std::size_t shown = 0;
  for (char c : d_->scalar) {
    if (shown == max_described_chars) {
      out += "...";
      break;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += c;
        break;
    }
    ++shown;
  }
  out += "\"";
  return out;
}

}  // namespace loopwarden::sdk
