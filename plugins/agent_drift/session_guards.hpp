#pragma once
// session_guards: the runaway-loop guards of one agent session (iteration cap, session budgets,
// repeated identical calls, same error with varying arguments, the same failure despite edits,
// short cycles, tool-call storms, no progress, tokens without progress, deferral).
// docs/monitors/agent-drift.md explains each guard, its default and why normal work does not reach
// it.

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <loopwarden/v1/agent.pb.h>
#include <loopwarden/state_codec.hpp>
#include <loopwarden/stats/cycle_detector.hpp>
#include <loopwarden/types.hpp>

#include "bounded_set.hpp"
#include "settings.hpp"

namespace loopwarden::agent_drift {

// What one guard found in one step.
struct guard_finding {
  std::string guard;      // e.g. "repeated_failure"; see the monitor doc for the list
  std::string reason;     // one line for humans
  sdk::evidence details;  // the offending pattern, its count and the limit, ...
};

// A step as the guards see it, after the monitor checked its numbers.
struct step_input {
  const v1::AgentStep& step;
  std::uint64_t tokens = 0;  // tokens_in + tokens_out of this step (0 when absurd)
  double cost = 0.0;         // cost of this step (0 when absurd)
  std::int64_t now = 0;      // the engine's clock, ns since the epoch
};

// Calls (all, failed) of one tool over a sliding time window cut into 60 buckets; the window is
// the current bucket and the 59 before it, so between 59/60 and all of the configured length.
// Thread-safety: one owner.
class storm_counter {
 public:
  static constexpr std::size_t buckets = 60;
  void add(std::int64_t now, std::int64_t width, bool failed);
  // Calls and failed calls in the window ending at `now`.
  std::pair<std::uint64_t, std::uint64_t> counts(std::int64_t now, std::int64_t width) const;
  void clear();
  void save(sdk::state_writer& w) const;
  bool load(sdk::state_reader& r);

 private:
  std::array<std::int64_t, buckets> id_{};  // bucket index held by each slot
  std::array<std::uint32_t, buckets> all_{};
  std::array<std::uint32_t, buckets> failed_{};
  bool used_ = false;
};

// The spacing of a streak of failing retries: whether it is an exponential backoff, i.e. no
// interval shorter than the one before and at least one longer by the backoff factor (a capped
// backoff keeps its cap: 1, 2, 4, ... 120, 120 s). Thread-safety: a value type.
struct retry_spacing {
  std::int64_t last_at = 0;   // the clock at the streak's latest failure, ns
  std::int64_t last_gap = 0;  // the interval before it, ns (0 = none yet)
  std::uint64_t grew = 0;     // intervals >= factor x the one before
  bool growing = true;        // no interval shorter than the one before
  // Records a failure at `now` (the streak's first when `first`); returns whether the streak is
  // a backoff.
  bool note(std::int64_t now, bool first, double factor, std::int64_t min_interval);
  void save(sdk::state_writer& w) const;
  void load(sdk::state_reader& r);
};

// The guards of one session. Thread-safety: one owner (the monitor's worker).
class session_guards {
 public:
  explicit session_guards(const settings& s);

  // Runs every guard over one step, in call order; returns what tripped, at most one finding
  // per guard. A guard that trips starts counting afresh, so a loop that goes on trips again
  // after another full count; the iteration cap and the budgets trip at every step past them.
  std::vector<guard_finding> observe(const step_input& in, const settings& s);

  std::uint64_t steps() const { return steps_; }
  std::uint64_t tokens() const { return tokens_; }

  void save(sdk::state_writer& w) const;
  // Reads what save() wrote in the monitor's snapshot format `version` (1, 2 or 3; 1 also held
  // three flags, skipped; 3 added the retries' spacing).
  bool load(sdk::state_reader& r, const settings& s, std::uint32_t version);

 private:
  struct error_streak {
    std::uint64_t count = 0;
    std::vector<std::uint64_t> args;  // distinct argument digests, at most 64
    std::string error;                // abbreviated, for evidence
    retry_spacing spacing;
  };

  void new_epoch();

  std::uint64_t steps_ = 0;
  std::uint64_t tokens_ = 0;
  double cost_ = 0.0;
  std::int64_t now_ = 0;  // the latest clock seen (the session's clock never moves back)

  bool has_hashes_ = false;  // the session has reported a workspace hash
  std::uint64_t last_hash_ = 0;
  std::string last_hash_text_;  // abbreviated, for evidence
  std::uint64_t epoch_ = 0;     // state changes so far (see new_epoch)

  bounded_set seen_pairs_;   // (call, outcome) fingerprints seen in the session
  bounded_set seen_states_;  // workspace hashes seen in the session
  // (call, outcome) -> occurrences in a row: for a failure, since the state last changed; for a
  // success, with nothing new (progress_) in between. Ordered for determinism.
  struct repeat_count {
    std::uint64_t count = 0;
    std::uint64_t progress = 0;  // progress_ at the last occurrence
    retry_spacing spacing;       // of a failure's retries
  };
  std::map<std::uint64_t, repeat_count> repeats_;
  std::uint64_t progress_ = 0;  // new states, new (call, outcome) pairs, humans seen so far
  // (tool, error digest) -> failing calls since the tool last succeeded or the state changed.
  std::map<std::pair<std::string, std::uint64_t>, error_streak> errors_;
  // call -> its last failure and the state epochs it has failed in that way, until it (or its
  // tool on the same target) succeeds or it fails otherwise (failure_despite_edits).
  struct stuck_failure {
    std::uint64_t outcome = 0;  // the (status, error) fingerprint
    std::uint64_t epochs = 0;   // distinct epochs with this failure
    std::uint64_t last_epoch = 0;
    std::uint64_t place = 0;  // (tool, target), or the call itself without a target
  };
  std::map<std::uint64_t, stuck_failure> stuck_;
  sdk::stats::cycle_detector cycles_;
  std::vector<std::string> recent_labels_;       // ring: labels of the last cycle_max_period calls
  std::size_t label_head_ = 0;                   // the ring slot the next label goes to
  std::map<std::string, storm_counter> storms_;  // tool -> calls over the storm window

  std::uint64_t no_progress_steps_ = 0;
  std::uint64_t no_progress_tokens_ = 0;
  std::uint64_t deferral_steps_ = 0;
};

}  // namespace loopwarden::agent_drift
