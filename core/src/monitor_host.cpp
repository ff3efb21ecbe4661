#include <loopwarden/core/monitor_host.hpp>

#include <boost/core/demangle.hpp>
#include <cstdlib>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <typeinfo>

#include <loopwarden/core/plugin_host.hpp>

#include "isolation_protocol.hpp"

namespace loopwarden::core {

namespace {

using detail::frame_type;
using detail::payload_reader;
using detail::payload_writer;
using detail::write_frame;

std::string describe_current_exception() {
  try {
    throw;
  } catch (const std::exception& e) {
    return boost::core::demangle(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    return "a non-standard exception";
  }
}

// The monitor's context in the child: every call goes to the engine at once, in order, ahead of
// the reply that ends the request. A write that fails (the engine is gone) is ignored here; the
// next read ends the process.
class relay_context final : public sdk::context {
 public:
  relay_context(int fd, std::string instance) : fd_(fd), instance_(std::move(instance)) {}
  void set_clock(std::int64_t clock) { clock_ = clock; }

  void trip(sdk::trip_request request) override {
    (void)write_frame(fd_, frame_type::trip, detail::encode_trip(request));
  }
  void set_gauge(std::string_view name, double value) override {
    auto w = payload_writer();
    w.write_string(name.substr(0, 1024));
    w.write_f64(value);
    (void)write_frame(fd_, frame_type::gauge, w.finish());
  }
  void log(sdk::log_level level, std::string_view message) override {
    auto w = payload_writer();
    w.write_u64(static_cast<std::uint64_t>(level));
    w.write_string(message.substr(0, 4096));
    (void)write_frame(fd_, frame_type::log, w.finish());
  }
  std::int64_t now_unix_nano() const override { return clock_; }
  std::string_view instance_name() const override { return instance_; }

 private:
  int fd_;
  std::string instance_;
  std::int64_t clock_ = 0;
};

void send_failed(int fd, const std::string& text) {
  auto w = payload_writer();
  w.write_string(text);
  (void)write_frame(fd, frame_type::failed, w.finish());
}

// Reports the exception in flight. Out of memory is fatal here: a process that has hit its
// memory limit cannot be trusted to recover, so it exits and the engine restarts a fresh one.
void send_current_failure(int fd) {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    send_failed(fd, "std::bad_alloc: out of memory; the monitor process exits to be restarted");
    std::_Exit(3);
  } catch (...) {
    send_failed(fd, describe_current_exception());
  }
}

// Reads the clock and the protobuf bytes of an event or gate request.
bool read_clock_and_bytes(const std::string& payload, std::int64_t& clock, std::string& bytes) {
  status header;
  auto r = payload_reader(payload, header);
  clock = r.read_i64();
  bytes = r.read_string(detail::max_frame_bytes);
  return header.ok() && r.finish().ok();
}

}  // namespace

int run_monitor_host(int fd) {
  auto first = detail::read_frame(fd, std::nullopt);
  if (!first.ok() || first->type != frame_type::configure) return 2;
  status header;
  auto r = payload_reader(first->payload, header);
  const std::string path = r.read_string(1u << 16);
  const std::string plugin = r.read_string(1u << 16);
  const std::string instance = r.read_string(1u << 16);
  const std::string config_bytes = r.read_string(detail::max_frame_bytes);
  if (!header.ok() || !r.finish().ok()) return 2;
  auto config = detail::decode_config(config_bytes);
  if (!config.ok()) {
    (void)write_frame(fd, frame_type::error, detail::encode_status(config.error()));
    return 2;
  }

  plugin_host host({});
  auto loaded = host.load(path, plugin);
  if (!loaded.ok()) {
    (void)write_frame(fd, frame_type::error, detail::encode_status(loaded.error()));
    return 2;
  }
  sdk::monitor& mon = (*loaded)->instance();
  status configured;
  try {
    configured = mon.configure(*config);
  } catch (...) {
    configured =
        make_error(status_code::internal, "threw in configure: " + describe_current_exception());
  }
  if (!configured.ok()) {
    (void)write_frame(fd, frame_type::error, detail::encode_status(configured));
    return 2;
  }
  if (!write_frame(fd, frame_type::info, detail::encode_info(mon.info())).ok()) return 2;

  relay_context ctx(fd, instance);
  v1::Envelope envelope;
  v1::GateRequest request;
  while (true) {
    auto f = detail::read_frame(fd, std::nullopt);
    if (!f.ok()) return 0;  // the engine went away: nothing left to do
    std::int64_t clock = 0;
    std::string bytes;
    switch (f->type) {
      case frame_type::event: {
        if (!read_clock_and_bytes(f->payload, clock, bytes) || !envelope.ParseFromString(bytes)) {
          send_failed(fd, "the event did not parse in the monitor process");
          break;
        }
        ctx.set_clock(clock);
        try {
          mon.on_event(envelope, ctx);
          (void)write_frame(fd, frame_type::done, payload_writer().finish());
        } catch (...) {
          send_current_failure(fd);
        }
        break;
      }
      case frame_type::gate: {
        if (!read_clock_and_bytes(f->payload, clock, bytes) || !request.ParseFromString(bytes)) {
          send_failed(fd, "the gate request did not parse in the monitor process");
          break;
        }
        ctx.set_clock(clock);
        try {
          const sdk::gate_decision d = mon.on_gate(request, ctx);
          (void)write_frame(fd, frame_type::gate_result, detail::encode_gate_decision(d));
        } catch (...) {
          send_current_failure(fd);
        }
        break;
      }
      case frame_type::tick: {
        if (!read_clock_and_bytes(f->payload, clock, bytes)) {
          send_failed(fd, "the tick did not parse in the monitor process");
          break;
        }
        ctx.set_clock(clock);
        try {
          mon.on_tick(ctx);
          (void)write_frame(fd, frame_type::done, payload_writer().finish());
        } catch (...) {
          send_current_failure(fd);
        }
        break;
      }
      case frame_type::snapshot: {
        try {
          auto taken = mon.snapshot();
          if (!taken.ok()) {
            (void)write_frame(fd, frame_type::error, detail::encode_status(taken.error()));
            break;
          }
          auto w = payload_writer();
          w.write_string(*taken);
          (void)write_frame(fd, frame_type::snapshot_result, w.finish());
        } catch (...) {
          send_current_failure(fd);
        }
        break;
      }
      case frame_type::restore: {
        status h;
        auto rd = payload_reader(f->payload, h);
        const std::string state = rd.read_string(detail::max_frame_bytes);
        if (!h.ok() || !rd.finish().ok()) {
          send_failed(fd, "the restore request did not parse in the monitor process");
          break;
        }
        try {
          status s = mon.restore(state);
          if (s.ok()) {
            (void)write_frame(fd, frame_type::done, payload_writer().finish());
          } else {
            (void)write_frame(fd, frame_type::error, detail::encode_status(s));
          }
        } catch (...) {
          send_current_failure(fd);
        }
        break;
      }
      case frame_type::shutdown:
        return 0;
      default:
        send_failed(fd, "unknown request frame " + std::to_string(static_cast<int>(f->type)));
        break;
    }
  }
}

}  // namespace loopwarden::core
