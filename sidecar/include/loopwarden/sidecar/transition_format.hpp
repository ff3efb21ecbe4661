#pragma once
// How breaker transitions are shown to people and to machines (replay, serve logs, status).

#include <cstdint>
#include <string>

#include <loopwarden/v1/breaker.pb.h>

namespace loopwarden::sidecar {

// "2026-11-23T08:00:11.250Z"; "-" for 0.
std::string format_time(std::int64_t unix_nano);

// Several lines of text, e.g.
//   training.collapse OPEN (run r1): halt, critical, epoch 1
//     by variance_collapse: variance below floor for 2 generations
//     at 2026-11-23T08:00:11.250Z, after trainer/rank0 seq 57
//     evidence: metric=train/loss value=4.2
std::string format_transition_text(const v1::BreakerTransition& t);

// One JSON object (no newline) with stable key order.
std::string format_transition_json(const v1::BreakerTransition& t, std::uint64_t event_index);

}  // namespace loopwarden::sidecar
