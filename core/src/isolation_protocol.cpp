#include "isolation_protocol.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace loopwarden::core::detail {

namespace {

constexpr std::string_view codec_name = "isolation";
constexpr std::uint32_t codec_version = 1;
// Bounds on what a decoder accepts: generous for real monitors, small enough that a corrupt
// count cannot allocate without limit.
constexpr std::uint64_t max_text = 1u << 20;
constexpr std::uint64_t max_items = 1u << 16;
constexpr int max_config_depth = 64;

std::int64_t ms_of(std::chrono::nanoseconds ns) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(ns).count();
}

template <typename Enum>
bool read_enum(sdk::state_reader& r, Enum max, Enum& out) {
  const std::uint64_t v = r.read_u64();
  if (v > static_cast<std::uint64_t>(max)) {
    r.fail("an enumeration value out of range");
    return false;
  }
  out = static_cast<Enum>(v);
  return true;
}

void write_config(sdk::state_writer& w, const sdk::config_node& n) {
  w.write_u64(static_cast<std::uint64_t>(n.type()));
  w.write_bool(n.quoted());
  w.write_string(n.path());
  w.write_string(n.file());
  w.write_i64(n.line());
  w.write_string(n.scalar());
  if (n.is_map()) {
    const auto keys = n.keys();
    w.write_u64(keys.size());
    for (const auto& k : keys) {
      w.write_string(k);
      write_config(w, n[k]);
    }
  } else if (n.is_sequence()) {
    w.write_u64(n.size());
    for (std::size_t i = 0; i < n.size(); ++i) write_config(w, n.at(i));
  } else {
    w.write_u64(0);
  }
}

sdk::config_node read_config(sdk::state_reader& r, int depth) {
  if (depth > max_config_depth) {
    r.fail("a config tree deeper than " + std::to_string(max_config_depth));
    return {};
  }
  sdk::config_node::node_type type{};
  if (!read_enum(r, sdk::config_node::node_type::map, type)) return {};
  const bool quoted = r.read_bool();
  std::string path = r.read_string(max_text);
  std::string file = r.read_string(max_text);
  const auto line = static_cast<int>(r.read_i64());
  std::string scalar = r.read_string(max_text);
  const std::uint64_t children = r.read_count(max_items);
  if (!r.ok()) return {};
  using t = sdk::config_node::node_type;
  switch (type) {
    case t::missing:
      return {};
    case t::null:
      return sdk::config_node::make_null(std::move(path), std::move(file), line);
    case t::scalar:
      return sdk::config_node::make_scalar(std::move(path), std::move(file), line,
                                           std::move(scalar), quoted);
    case t::sequence: {
      auto n = sdk::config_node::make_sequence(std::move(path), std::move(file), line);
      for (std::uint64_t i = 0; i < children && r.ok(); ++i) n.push_back(read_config(r, depth + 1));
      return n;
    }
    case t::map: {
      auto n = sdk::config_node::make_map(std::move(path), std::move(file), line);
      for (std::uint64_t i = 0; i < children && r.ok(); ++i) {
        std::string key = r.read_string(max_text);
        n.insert(std::move(key), read_config(r, depth + 1));
      }
      return n;
    }
  }
  return {};
}

}  // namespace

sdk::state_writer payload_writer() { return sdk::state_writer(codec_name, codec_version); }

sdk::state_reader payload_reader(std::string_view bytes, status& header_status) {
  sdk::state_reader r(bytes);
  auto v = r.read_header(codec_name, codec_version, codec_version);
  header_status = v.ok() ? status::success() : v.error();
  return r;
}

status write_frame(int fd, frame_type type, std::string_view payload) {
  if (payload.size() + 1 > max_frame_bytes) {
    return make_error(status_code::invalid_argument,
                      "a frame of " + std::to_string(payload.size()) + " bytes is too large");
  }
  const auto length = static_cast<std::uint32_t>(payload.size() + 1);
  std::string head(5, '\0');
  for (int i = 0; i < 4; ++i)
    head[static_cast<std::size_t>(i)] = static_cast<char>(length >> (8 * i));
  head[4] = static_cast<char>(type);
  for (std::string_view part : {std::string_view(head), payload}) {
    while (!part.empty()) {
      const ssize_t n = ::send(fd, part.data(), part.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return make_error(status_code::io_error, std::string("write: ") + std::strerror(errno));
      }
      part.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  return status::success();
}

namespace {

// Reads exactly n bytes before `deadline` (steady clock; nullopt: no deadline).
status read_exact(int fd, char* out, std::size_t n,
                  std::optional<std::chrono::steady_clock::time_point> deadline) {
  while (n > 0) {
    int wait_ms = -1;
    if (deadline) {
      const auto left = *deadline - std::chrono::steady_clock::now();
      if (left <= std::chrono::nanoseconds(0)) {
        return make_error(status_code::timeout, "no answer in time");
      }
      wait_ms = static_cast<int>(std::max<std::int64_t>(1, ms_of(left)));
    }
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, wait_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return make_error(status_code::io_error, std::string("poll: ") + std::strerror(errno));
    }
    if (ready == 0) continue;  // the deadline is checked at the top
    const ssize_t got = ::read(fd, out, n);
    if (got == 0) return make_error(status_code::io_error, "the peer closed the connection");
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return make_error(status_code::io_error, std::string("read: ") + std::strerror(errno));
    }
    out += got;
    n -= static_cast<std::size_t>(got);
  }
  return status::success();
}

}  // namespace

result<frame> read_frame(int fd, std::optional<std::chrono::nanoseconds> timeout) {
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (timeout) {
    deadline = std::chrono::steady_clock::now() +
               std::chrono::duration_cast<std::chrono::steady_clock::duration>(*timeout);
  }
  char head[5];
  if (auto s = read_exact(fd, head, sizeof head, deadline); !s.ok()) return s;
  std::uint32_t length = 0;
  for (int i = 3; i >= 0; --i) length = (length << 8) | static_cast<unsigned char>(head[i]);
  if (length == 0 || length > max_frame_bytes) {
    return make_error(status_code::parse_error,
                      "a frame length of " + std::to_string(length) + " bytes");
  }
  frame f;
  f.type = static_cast<frame_type>(static_cast<unsigned char>(head[4]));
  f.payload.resize(length - 1);
  if (length > 1) {
    if (auto s = read_exact(fd, f.payload.data(), f.payload.size(), deadline); !s.ok()) return s;
  }
  return f;
}

std::string encode_config(const sdk::config_node& node) {
  auto w = payload_writer();
  write_config(w, node);
  return w.finish();
}

result<sdk::config_node> decode_config(std::string_view bytes) {
  status header;
  auto r = payload_reader(bytes, header);
  if (!header.ok()) return header;
  sdk::config_node n = read_config(r, 0);
  if (auto s = r.finish(); !s.ok()) return s;
  return n;
}

std::string encode_info(const sdk::monitor_info& info) {
  auto w = payload_writer();
  w.write_string(info.name);
  w.write_string(info.version);
  w.write_string(info.description);
  std::uint64_t kinds = 0;
  for (std::size_t k = 0; k < sdk::event_kind_count; ++k) {
    if (info.kinds.contains(static_cast<sdk::event_kind>(k))) kinds |= std::uint64_t{1} << k;
  }
  w.write_u64(kinds);
  w.write_u64(info.breakers.size());
  for (const auto& b : info.breakers) {
    w.write_string(b.name);
    w.write_u64(static_cast<std::uint64_t>(b.action));
    w.write_u64(static_cast<std::uint64_t>(b.severity));
    w.write_u64(static_cast<std::uint64_t>(b.scope));
    w.write_string(b.description);
  }
  w.write_bool(info.gate);
  w.write_i64(info.tick_interval.count());
  return w.finish();
}

result<sdk::monitor_info> decode_info(std::string_view bytes) {
  status header;
  auto r = payload_reader(bytes, header);
  if (!header.ok()) return header;
  sdk::monitor_info info;
  info.name = r.read_string(max_text);
  info.version = r.read_string(max_text);
  info.description = r.read_string(max_text);
  const std::uint64_t kinds = r.read_u64();
  for (std::size_t k = 0; k < sdk::event_kind_count; ++k) {
    if ((kinds >> k) & 1u) info.kinds.add(static_cast<sdk::event_kind>(k));
  }
  const std::uint64_t n = r.read_count(max_items);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    sdk::breaker_spec b;
    b.name = r.read_string(max_text);
    read_enum(r, sdk::breaker_action::alert, b.action);
    read_enum(r, sdk::severity::critical, b.severity);
    read_enum(r, sdk::breaker_scope::global, b.scope);
    b.description = r.read_string(max_text);
    info.breakers.push_back(std::move(b));
  }
  info.gate = r.read_bool();
  info.tick_interval = std::chrono::milliseconds(r.read_i64());
  if (auto s = r.finish(); !s.ok()) return s;
  return info;
}

std::string encode_trip(const sdk::trip_request& trip) {
  auto w = payload_writer();
  w.write_string(trip.breaker);
  w.write_string(trip.reason);
  w.write_u64(trip.evidence.size());
  for (const auto& kv : trip.evidence) {
    w.write_string(kv.key);
    w.write_string(kv.value);
  }
  w.write_bool(trip.action.has_value());
  w.write_u64(trip.action ? static_cast<std::uint64_t>(*trip.action) : 0);
  w.write_bool(trip.severity.has_value());
  w.write_u64(trip.severity ? static_cast<std::uint64_t>(*trip.severity) : 0);
  w.write_string(trip.run_id);
  return w.finish();
}

result<sdk::trip_request> decode_trip(std::string_view bytes) {
  status header;
  auto r = payload_reader(bytes, header);
  if (!header.ok()) return header;
  sdk::trip_request t;
  t.breaker = r.read_string(max_text);
  t.reason = r.read_string(max_text);
  const std::uint64_t n = r.read_count(max_items);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    std::string key = r.read_string(max_text);
    std::string value = r.read_string(max_text);
    t.evidence.push_back({std::move(key), std::move(value)});
  }
  const bool has_action = r.read_bool();
  sdk::breaker_action action{};
  read_enum(r, sdk::breaker_action::alert, action);
  if (has_action) t.action = action;
  const bool has_severity = r.read_bool();
  sdk::severity severity{};
  read_enum(r, sdk::severity::critical, severity);
  if (has_severity) t.severity = severity;
  t.run_id = r.read_string(max_text);
  if (auto s = r.finish(); !s.ok()) return s;
  return t;
}

std::string encode_gate_decision(const sdk::gate_decision& d) {
  auto w = payload_writer();
  w.write_u64(static_cast<std::uint64_t>(d.verdict));
  w.write_string(d.reason);
  w.write_string(d.rule_id);
  w.write_string(d.alternative);
  return w.finish();
}

result<sdk::gate_decision> decode_gate_decision(std::string_view bytes) {
  status header;
  auto r = payload_reader(bytes, header);
  if (!header.ok()) return header;
  sdk::gate_decision d;
  read_enum(r, sdk::gate_verdict::deny, d.verdict);
  d.reason = r.read_string(max_text);
  d.rule_id = r.read_string(max_text);
  d.alternative = r.read_string(max_text);
  if (auto s = r.finish(); !s.ok()) return s;
  return d;
}

std::string encode_status(const status& s) {
  auto w = payload_writer();
  w.write_u64(static_cast<std::uint64_t>(s.code()));
  w.write_string(s.message());
  return w.finish();
}

status decode_status(std::string_view bytes) {
  status header;
  auto r = payload_reader(bytes, header);
  if (!header.ok()) return header;
  status_code code{};
  read_enum(r, status_code::internal, code);
  std::string message = r.read_string(max_text);
  if (auto s = r.finish(); !s.ok()) return s;
  if (code == status_code::ok) return status::success();
  return status(code, std::move(message));
}

}  // namespace loopwarden::core::detail
