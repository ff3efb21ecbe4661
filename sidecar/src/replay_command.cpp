#include <loopwarden/sidecar/replay_command.hpp>

#include <nlohmann/json.hpp>
#include <ostream>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>
#include <loopwarden/core/replay_file.hpp>
#include <loopwarden/sidecar/cli.hpp>
#include <loopwarden/sidecar/transition_format.hpp>

namespace loopwarden::sidecar {

int run_replay(const replay_options& options, std::ostream& out, std::ostream& err) {
  auto cfg = options.config_file.empty() ? core::default_config()
                                         : core::load_config_file(options.config_file);
  if (!cfg.ok()) {
    err << "loopwarden replay: " << cfg.error().message() << "\n";
    return exit_error;
  }
  auto reader = core::replay_reader::open(options.file);
  if (!reader.ok()) {
    err << "loopwarden replay: " << reader.error().message() << "\n";
    return exit_error;
  }

  core::engine_options eo;
  eo.extra_plugin_paths = options.plugin_paths;
  eo.event_time_clock = true;  // replay is deterministic: time is the events' time
  eo.monitor_host_command = monitor_host_command();
  auto engine = core::engine::create(*cfg, eo);
  if (!engine.ok()) {
    err << "loopwarden replay: " << engine.error().message() << "\n";
    return exit_error;
  }
  core::engine& e = **engine;
  for (const auto& w : e.warnings()) err << "loopwarden replay: warning: " << w << "\n";

  if (!options.json && !options.quiet) {
    out << "replaying " << options.file << " with " << cfg->source << " (" << e.monitors().size()
        << " monitor" << (e.monitors().size() == 1 ? "" : "s");
    for (const auto& m : e.monitors())
      out << ", " << m.name << ": " << m.plugin << " " << m.version;
    out << ")\n";
  }

  std::uint64_t event_index = 0;
  std::uint64_t transitions = 0;
  std::vector<std::string> opened;
  e.breakers().add_listener([&](const v1::BreakerTransition& t) {
    ++transitions;
    const auto& b = t.breaker();
    if (b.state() == v1::BREAKER_STATE_OPEN || b.state() == v1::BREAKER_STATE_FORCED_OPEN) {
      opened.push_back(b.run_id().empty() ? b.name() : b.name() + " (run " + b.run_id() + ")");
    }
    if (options.json) {
      out << format_transition_json(t, event_index) << "\n";
    } else if (!options.quiet) {
      out << "[event " << event_index << "] " << format_transition_text(t);
    }
  });
  reader->set_problem_handler([&](const core::replay_problem& p) {
    if (options.json) {
      nlohmann::ordered_json j;
      j["type"] = "problem";
      j["record_index"] = p.index;
      j["offset"] = p.offset;
      j["message"] = p.message;
      out << j.dump() << "\n";
    } else {
      err << "loopwarden replay: " << options.file << ": " << p.message << "\n";
    }
  });

  while (true) {
    auto rec = reader->next();
    if (!rec.ok()) {
      err << "loopwarden replay: " << rec.error().message() << "\n";
      return exit_error;
    }
    if (!rec->has_value()) break;
    event_index = (*rec)->index;
    e.process((*rec)->envelope);
    e.tick(0);  // on the event clock: runs ticks and probation ends deterministically
  }

  const auto c = e.counters();
  if (options.json) {
    nlohmann::ordered_json j;
    j["type"] = "summary";
    j["events"] = c.events;
    j["malformed"] = c.malformed;
    j["damaged_records"] = reader->problem_count();
    j["transitions"] = transitions;
    j["opened"] = opened;
    out << j.dump() << "\n";
  } else {
    out << "summary: " << c.events << " events replayed (" << c.malformed << " malformed, "
        << reader->problem_count() << " damaged records skipped), " << transitions
        << " breaker transition" << (transitions == 1 ? "" : "s") << ", " << opened.size()
        << " opened";
    for (std::size_t i = 0; i < opened.size(); ++i) out << (i == 0 ? ": " : ", ") << opened[i];
    out << "\n";
  }
  return opened.empty() ? exit_ok : exit_found;
}

}  // namespace loopwarden::sidecar
