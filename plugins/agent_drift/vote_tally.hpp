#pragma once
// vote_tally: inter-agent agreement from votes. Agents of one run that answer the same turn of
// the same session cast a vote (AgentStep.vote); a step's agreement is the share of the other
// agents' votes, already received for that turn, that equal its own. The first voter of a turn
// has no one to agree with (unknown); order follows arrival, so replays agree with live runs.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <string>

#include <loopwarden/state_codec.hpp>

namespace loopwarden::agent_drift {

// Thread-safety: one owner.
class vote_tally {
 public:
  explicit vote_tally(std::size_t max_turns = 4096) : max_turns_(max_turns) {}

  // Records `agent`'s vote for `turn_key` and returns its agreement with the earlier votes of
  // other agents for the same turn, in [0, 1]; NaN when there are none. A second vote of the same
  // agent for the same turn replaces its first.
  double cast(const std::string& turn_key, const std::string& agent, const std::string& vote) {
    auto it = turns_.find(turn_key);
    if (it == turns_.end()) {
      if (turns_.size() >= max_turns_ && !order_.empty()) {
        turns_.erase(order_.front());
        order_.pop_front();
      }
      it = turns_.emplace(turn_key, std::map<std::string, std::string>{}).first;
      order_.push_back(turn_key);
    }
    double others = 0.0;
    double same = 0.0;
    for (const auto& [a, v] : it->second) {
      if (a == agent) continue;
      others += 1.0;
      if (v == vote) same += 1.0;
    }
    if (it->second.count(agent) != 0 || it->second.size() < max_voters) {
      it->second[agent] = vote.substr(0, max_vote);
    }
    return others > 0.0 ? same / others : std::numeric_limits<double>::quiet_NaN();
  }

  void clear() {
    turns_.clear();
    order_.clear();
  }

  void save(sdk::state_writer& w) const {
    w.write_u64(order_.size());
    for (const auto& key : order_) {
      const auto& votes = turns_.at(key);
      w.write_string(key);
      w.write_u64(votes.size());
      for (const auto& [agent, vote] : votes) {
        w.write_string(agent);
        w.write_string(vote);
      }
    }
  }

  bool load(sdk::state_reader& r) {
    clear();
    const std::uint64_t n = r.read_count(max_turns_);
    for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
      std::string key = r.read_string(4096);
      const std::uint64_t voters = r.read_count(max_voters);
      if (turns_.count(key) != 0) r.fail("a turn listed twice in the vote table");
      if (!r.ok()) break;
      auto& votes = turns_[key];
      order_.push_back(std::move(key));
      for (std::uint64_t v = 0; v < voters && r.ok(); ++v) {
        std::string agent = r.read_string(4096);
        votes[std::move(agent)] = r.read_string(max_vote);
      }
    }
    return r.ok();
  }

 private:
  static constexpr std::size_t max_voters = 64;  // per turn
  static constexpr std::size_t max_vote = 256;   // characters of a vote kept
  std::size_t max_turns_;
  std::map<std::string, std::map<std::string, std::string>> turns_;
  std::deque<std::string> order_;  // turn keys, oldest first
};

}  // namespace loopwarden::agent_drift
