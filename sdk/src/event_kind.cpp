#include <loopwarden/event_kind.hpp>

#include <array>

namespace loopwarden::sdk {
namespace {

constexpr std::array<std::string_view, event_kind_count> topic_names = {
    "metrics", "generation",   "embeddings",   "agent_step",
    "action",  "stage_timing", "cycle_report", "heartbeat"};

}  // namespace

std::optional<event_kind> kind_of(const v1::Envelope& envelope) {
  switch (envelope.body_case()) {
    case v1::Envelope::kMetrics:
      return event_kind::metrics;
    case v1::Envelope::kGeneration:
      return event_kind::generation;
    case v1::Envelope::kEmbeddings:
      return event_kind::embeddings;
    case v1::Envelope::kAgentStep:
      return event_kind::agent_step;
    case v1::Envelope::kAction:
      return event_kind::action;
    case v1::Envelope::kStageTiming:
      return event_kind::stage_timing;
    case v1::Envelope::kCycleReport:
      return event_kind::cycle_report;
    case v1::Envelope::kHeartbeat:
      return event_kind::heartbeat;
    case v1::Envelope::BODY_NOT_SET:
      break;
  }
  return std::nullopt;
}

std::string_view topic_name(event_kind kind) { return topic_names[static_cast<std::size_t>(kind)]; }

std::optional<event_kind> parse_event_kind(std::string_view topic) {
  for (std::size_t i = 0; i < topic_names.size(); ++i) {
    if (topic_names[i] == topic) return static_cast<event_kind>(i);
  }
  return std::nullopt;
}

}  // namespace loopwarden::sdk
