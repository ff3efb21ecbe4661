#pragma once
// The kinds of evidence an envelope can carry, one per body of loopwarden.v1.Envelope, and their
// topic names on the wire (the first frame of an ingest message).

#include <bitset>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string_view>

#include <loopwarden/v1/envelope.pb.h>

namespace loopwarden::sdk {

enum class event_kind : std::uint8_t {
  metrics,
  generation,
  embeddings,
  agent_step,
  action,
  stage_timing,
  cycle_report,
  heartbeat,
};

inline constexpr std::size_t event_kind_count = 8;

// The kind of an envelope's body; nullopt when the body is unset (a malformed event).
std::optional<event_kind> kind_of(const v1::Envelope& envelope);

// The topic name of a kind: "metrics", "generation", "embeddings", "agent_step", "action",
// "stage_timing", "cycle_report", "heartbeat".
std::string_view topic_name(event_kind kind);

// The kind named by a topic; nullopt for an unknown name.
std::optional<event_kind> parse_event_kind(std::string_view topic);

// A set of event kinds (what a monitor wants). Cheap value type.
class event_kind_set {
 public:
  event_kind_set() = default;
  event_kind_set(std::initializer_list<event_kind> kinds) {
    for (event_kind k : kinds) add(k);
  }
  void add(event_kind k) { bits_.set(static_cast<std::size_t>(k)); }
  bool contains(event_kind k) const { return bits_.test(static_cast<std::size_t>(k)); }
  bool empty() const { return bits_.none(); }

 private:
  std::bitset<event_kind_count> bits_;
};

}  // namespace loopwarden::sdk
