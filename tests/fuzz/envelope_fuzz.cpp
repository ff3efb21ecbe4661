// Fuzz target: ingest messages through the sidecar's check and the engine's dispatch.
//
// Each input is a sequence of messages, as the ingest sockets would receive them, fed to a fresh
// synchronous engine running every bundled plugin (envelope_monitors.yaml, plus any bundled
// plugin it does not name, with default settings):
//
//   input   := message*
//   message := u8 head, then
//              head & 0x80 == 0: (head & 3) frames, each u16le length + bytes
//                                → check_ingest_message (ingest_loop.cpp) → engine::process, tick
//              head & 0x80 != 0: one u16le-prefixed GateRequest → engine::gate
//
// After the stream, every monitor's state is snapshotted and restored into a second engine, as a
// restart would. The engine is fresh per input, so a crash reproduces from its input alone.

#include <cstdint>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <loopwarden/v1/envelope.pb.h>
#include <loopwarden/v1/gate.pb.h>
#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>

#include "../../sidecar/src/ingest_loop.hpp"
#include "fuzz_support.hpp"

using namespace loopwarden;

namespace {

// Messages read from one input at most; the rest is ignored (keeps one input's run time bounded
// whatever -max_len is).
constexpr int max_messages = 512;

core::config* fuzz_config = nullptr;  // built once by LLVMFuzzerInitialize, never freed

core::engine_options engine_options() {
  core::engine_options o;
  o.extra_plugin_paths = {fuzz::plugin_dir()};
  o.search_bundled_plugins = false;
  o.event_time_clock = true;  // replay's clock: deterministic
  o.threaded = false;
  return o;
}

// envelope_monitors.yaml, plus one default-settings instance of each bundled plugin it leaves out.
core::config build_config() {
  const std::string path = std::string(LOOPWARDEN_FUZZ_DIR) + "/envelope_monitors.yaml";
  std::ifstream in(path);
  if (!in) fuzz::die("can't read " + path);
  std::stringstream text;
  text << in.rdbuf();
  std::string yaml = text.str();
  auto base = core::parse_config(yaml, path);
  if (!base.ok()) fuzz::die(base.error().message());
  std::set<std::string> named;
  for (const auto& m : base->monitors) named.insert(m.plugin);
  for (const auto& plugin : fuzz::bundled_plugins()) {
    if (named.count(plugin) == 0) {
      yaml += "  - {name: default_" + plugin + ", plugin: " + plugin + "}\n";
    }
  }
  auto cfg = core::parse_config(yaml, path);
  if (!cfg.ok()) fuzz::die(cfg.error().message());
  auto probe = core::engine::create(*cfg, engine_options());
  if (!probe.ok()) {
    fuzz::die(probe.error().message() + " (a new bundled plugin may need settings in " + path +
              ")");
  }
  return std::move(*cfg);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quiet_logs();
  fuzz::pin_bundled_plugins();
  fuzz_config = new core::config(build_config());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto created = core::engine::create(*fuzz_config, engine_options());
  if (!created.ok()) fuzz::die(created.error().message());
  core::engine& engine = **created;

  fuzz::byte_reader in(data, size);
  std::vector<std::string_view> frames;
  for (int n = 0; n < max_messages && !in.empty(); ++n) {
    const std::uint8_t head = in.u8();
    if ((head & 0x80) != 0) {
      const std::string_view bytes = in.piece();
      v1::GateRequest request;
      if (request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
        (void)engine.gate(request);
      }
      continue;
    }
    frames.clear();
    for (int f = 0; f < (head & 3); ++f) frames.push_back(in.piece());
    v1::Envelope envelope;
    if (!sidecar::detail::check_ingest_message(frames, envelope).ok()) continue;
    engine.process(envelope);
    engine.tick(0);
  }

  // What status and a restart read: the figures, then each monitor's state into a new engine.
  (void)engine.counters();
  (void)engine.sources();
  (void)engine.monitors();
  (void)engine.breakers().snapshot();
  const std::vector<core::monitor_state> states = engine.snapshot_monitors();
  if (!states.empty()) {
    auto next = core::engine::create(*fuzz_config, engine_options());
    if (!next.ok()) fuzz::die(next.error().message());
    for (const auto& s : states) {
      if (auto st = (*next)->restore_monitor(s); !st.ok()) {
        // A monitor that cannot take back the state it just gave is a bug, not bad input.
        fuzz::die("monitor '" + s.monitor + "' refused its own snapshot: " + st.message());
      }
    }
  }
  return 0;
}
