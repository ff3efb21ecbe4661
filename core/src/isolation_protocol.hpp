#pragma once
// The wire between the engine and a monitor running in its own process (`isolation: process`):
// length-prefixed frames over a Unix stream socket, one request at a time from the engine, and
// from the monitor any number of context calls (trip, gauge, log) before the reply that ends
// the request. Payloads are written with sdk::state_writer (bounds-checked on read).
//
//   frame = u32 little-endian length of (type + payload) | u8 type | payload
//
// Both ends are loopwarden, built together: the protocol has no version negotiation, only a
// check that every frame parses completely.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <loopwarden/config_node.hpp>
#include <loopwarden/context.hpp>
#include <loopwarden/core/status.hpp>
#include <loopwarden/monitor.hpp>
#include <loopwarden/state_codec.hpp>

namespace loopwarden::core::detail {

enum class frame_type : std::uint8_t {
  // engine -> monitor process
  configure = 1,  // plugin path, plugin name, instance name, config tree
  event = 2,      // clock, serialized Envelope
  gate = 3,       // clock, serialized GateRequest
  tick = 4,       // clock
  snapshot = 5,
  restore = 6,  // state bytes
  shutdown = 7,
  // monitor process -> engine: replies (each ends a request)
  info = 20,             // the monitor's info after a successful configure
  error = 21,            // a status: configure, restore or snapshot refused
  done = 22,             // on_event / on_tick returned
  failed = 23,           // the call threw: the exception's description
  gate_result = 24,      // a gate_decision
  snapshot_result = 25,  // the snapshot's bytes
  // monitor process -> engine: context calls during a request
  trip = 30,
  gauge = 31,
  log = 32,
};

// Frames larger than this are refused on read (a corrupt length must not allocate gigabytes).
inline constexpr std::uint32_t max_frame_bytes = 64u << 20;

struct frame {
  frame_type type = frame_type::done;
  std::string payload;
};

// Writes one frame, retrying on EINTR and short writes. Errors: io_error (the peer is gone).
status write_frame(int fd, frame_type type, std::string_view payload);

// Reads one frame, waiting at most `timeout` (nullopt: forever). Errors: timeout (nothing in
// time), io_error (EOF: the peer is gone; or a read error), parse_error (a length above
// max_frame_bytes or of zero).
result<frame> read_frame(int fd, std::optional<std::chrono::nanoseconds> timeout);

// Payload codecs. Each encode_* has a decode_* that refuses anything but exactly what it wrote.
std::string encode_config(const sdk::config_node& node);
result<sdk::config_node> decode_config(std::string_view bytes);

std::string encode_info(const sdk::monitor_info& info);
result<sdk::monitor_info> decode_info(std::string_view bytes);

std::string encode_trip(const sdk::trip_request& trip);
result<sdk::trip_request> decode_trip(std::string_view bytes);

std::string encode_gate_decision(const sdk::gate_decision& d);
result<sdk::gate_decision> decode_gate_decision(std::string_view bytes);

std::string encode_status(const status& s);
status decode_status(std::string_view bytes);

// A writer/reader with the protocol's header, for the small payloads.
sdk::state_writer payload_writer();
// Reads the header; the caller reads the fields and calls finish().
sdk::state_reader payload_reader(std::string_view bytes, status& header_status);

}  // namespace loopwarden::core::detail
