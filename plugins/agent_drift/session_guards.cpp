#include "session_guards.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>
#include <string_view>

#include "fingerprint.hpp"

namespace loopwarden::agent_drift {
namespace {

// Tool names are keys of per-session maps: long ones are cut so memory stays bounded.
constexpr std::size_t max_tool_name = 128;

std::string format_number(double v) {
  std::ostringstream out;
  out.precision(4);
  out << v;
  return out.str();
}

// 51'200'000 -> "51.2M": token counts in reasons.
std::string format_tokens(std::uint64_t v) {
  if (v >= 1'000'000) return format_number(static_cast<double>(v) / 1e6) + "M";
  if (v >= 10'000) return format_number(static_cast<double>(v) / 1e3) + "k";
  return std::to_string(v);
}

std::string format_duration(std::chrono::nanoseconds d) {
  using namespace std::chrono;
  const auto s = duration_cast<seconds>(d).count();
  if (s % 3600 == 0) return std::to_string(s / 3600) + "h";
  if (s % 60 == 0) return std::to_string(s / 60) + "m";
  return std::to_string(s) + "s";
}

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) {
  return b > std::numeric_limits<std::uint64_t>::max() - a
             ? std::numeric_limits<std::uint64_t>::max()
             : a + b;
}

bool is_failing(v1::ToolStatus s) {
  return s == v1::TOOL_STATUS_ERROR || s == v1::TOOL_STATUS_TIMEOUT || s == v1::TOOL_STATUS_DENIED;
}

std::string_view status_word(v1::ToolStatus s) {
  switch (s) {
    case v1::TOOL_STATUS_OK:
      return "ok";
    case v1::TOOL_STATUS_ERROR:
      return "error";
    case v1::TOOL_STATUS_TIMEOUT:
      return "timeout";
    case v1::TOOL_STATUS_DENIED:
      return "denied";
    default:
      return "unknown";
  }
}

void append_abbreviated(std::string& out, std::string_view s, std::size_t n) {
  out.append(s.substr(0, n));
  if (s.size() > n) out += "...";
}

// "run_migrations(target=db/main, args=9f2c41aa) -> error 3e1b77c0": one call as on-call reads
// it. Writes into `out`, reusing its storage (the cycle guard keeps one per recent call).
void label_into(std::string& out, const v1::ToolCall& c) {
  out.clear();
  append_abbreviated(out, c.name(), 48);
  out += '(';
  if (!c.target().empty()) {
    out += "target=";
    append_abbreviated(out, c.target(), 64);
  }
  if (!c.args_digest().empty()) {
    if (!c.target().empty()) out += ", ";
    out += "args=";
    append_abbreviated(out, c.args_digest(), 12);
  }
  out += ") -> ";
  out += status_word(c.status());
  const std::string& digest =
      c.status() == v1::TOOL_STATUS_OK ? c.observation_digest() : c.error_digest();
  if (!digest.empty()) {
    out += ' ';
    append_abbreviated(out, digest, 12);
  }
}

std::string label_of(const v1::ToolCall& c) {
  std::string out;
  label_into(out, c);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// storm_counter

void storm_counter::add(std::int64_t now, std::int64_t width, bool failed) {
  const std::int64_t id = now / width;
  constexpr auto n = static_cast<std::int64_t>(buckets);
  const auto slot = static_cast<std::size_t>(((id % n) + n) % n);
  if (!used_ || id_[slot] != id) {
    if (!used_) id_.fill(std::numeric_limits<std::int64_t>::min());
    used_ = true;
    id_[slot] = id;
    all_[slot] = 0;
    failed_[slot] = 0;
  }
  if (all_[slot] < std::numeric_limits<std::uint32_t>::max()) ++all_[slot];
  if (failed && failed_[slot] < std::numeric_limits<std::uint32_t>::max()) ++failed_[slot];
}

std::pair<std::uint64_t, std::uint64_t> storm_counter::counts(std::int64_t now,
                                                              std::int64_t width) const {
  if (!used_) return {0, 0};
  const std::int64_t newest = now / width;
  std::uint64_t all = 0;
  std::uint64_t failed = 0;
  for (std::size_t i = 0; i < buckets; ++i) {
    if (id_[i] > newest - static_cast<std::int64_t>(buckets) && id_[i] <= newest) {
      all += all_[i];
      failed += failed_[i];
    }
  }
  return {all, failed};
}

void storm_counter::clear() { *this = storm_counter(); }

void storm_counter::save(sdk::state_writer& w) const {
  w.write_bool(used_);
  if (!used_) return;
  for (std::size_t i = 0; i < buckets; ++i) {
    w.write_i64(id_[i]);
    w.write_u64(all_[i]);
    w.write_u64(failed_[i]);
  }
}

bool storm_counter::load(sdk::state_reader& r) {
  clear();
  used_ = r.read_bool();
  if (!used_) return r.ok();
  constexpr std::uint64_t max32 = std::numeric_limits<std::uint32_t>::max();
  for (std::size_t i = 0; i < buckets && r.ok(); ++i) {
    id_[i] = r.read_i64();
    all_[i] = static_cast<std::uint32_t>(r.read_count(max32));
    failed_[i] = static_cast<std::uint32_t>(r.read_count(all_[i]));
  }
  return r.ok();
}

// ---------------------------------------------------------------------------------------------
// session_guards

session_guards::session_guards(const settings& s)
    : seen_pairs_(s.limits.max_distinct_actions),
      seen_states_(s.limits.max_distinct_actions),
      cycles_({.max_period = std::max<std::size_t>(1, s.guards.cycle_max_period),
               .repeats = s.guards.cycle_repeats}) {}

bool retry_spacing::note(std::int64_t now, bool first, double factor, std::int64_t min_interval) {
  if (first) {
    *this = retry_spacing{};
  } else {
    const std::int64_t gap = now - last_at;
    // A backoff never shortens its wait; it grows by the factor, or stays at its cap once there.
    if (gap <= 0 || (last_gap > 0 && gap < last_gap)) growing = false;
    if (last_gap > 0 && gap >= min_interval &&
        static_cast<double>(gap) >= factor * static_cast<double>(last_gap)) {
      ++grew;
    }
    last_gap = gap;
  }
  last_at = now;
  return growing && grew > 0;
}

void retry_spacing::save(sdk::state_writer& w) const {
  w.write_i64(last_at);
  w.write_i64(last_gap);
  w.write_u64(grew);
  w.write_bool(growing);
}

void retry_spacing::load(sdk::state_reader& r) {
  last_at = r.read_i64();
  last_gap = r.read_i64();
  grew = r.read_u64();
  growing = r.read_bool();
}

// The workspace changed (or, without hashes, may have): "the same call gave the same result" and
// "the same error again" start counting afresh, because re-running after a change is normal work.
void session_guards::new_epoch() {
  repeats_.clear();
  errors_.clear();
  ++epoch_;
}

std::vector<guard_finding> session_guards::observe(const step_input& in, const settings& s) {
  const guard_settings& g = s.guards;
  const v1::AgentStep& step = in.step;
  std::vector<guard_finding> found;
  auto tripped = [&](std::string_view guard) {
    return std::any_of(found.begin(), found.end(),
                       [&](const guard_finding& f) { return f.guard == guard; });
  };
  auto report = [&](guard_finding f) {
    if (!tripped(f.guard)) found.push_back(std::move(f));
  };

  ++steps_;
  tokens_ = saturating_add(tokens_, in.tokens);
  cost_ += in.cost;
  now_ = std::max(now_, in.now);

  // The workspace: a move to a state never seen in this session is progress; a move back to a
  // seen state (edit, revert, edit, ...) is not, but it still ends the "nothing changed" epoch.
  bool new_state = false;
  if (!step.workspace_hash().empty()) {
    const std::uint64_t h = fingerprint().add(step.workspace_hash()).value();
    const bool moved = has_hashes_ && h != last_hash_;
    const bool unseen = seen_states_.insert(h);
    new_state = has_hashes_ && unseen;  // the first hash is where the session starts
    has_hashes_ = true;
    last_hash_ = h;
    last_hash_text_.clear();
    append_abbreviated(last_hash_text_, step.workspace_hash(), 16);
    if (moved) new_epoch();
  }
  if (new_state || step.human_intervention() || step.task_completed()) ++progress_;

  const std::int64_t storm_width = std::max<std::int64_t>(
      1, g.storm_window.count() / static_cast<std::int64_t>(storm_counter::buckets));
  const std::size_t calls = std::min<std::size_t>(static_cast<std::size_t>(step.tool_calls_size()),
                                                  s.limits.max_tool_calls_per_step);
  bool watched_call = false;
  bool results_known = true;  // every watched call's result is known (see no_progress)
  bool novel_call = false;
  for (std::size_t i = 0; i < calls; ++i) {
    const v1::ToolCall& c = step.tool_calls(static_cast<int>(i));
    if (g.ignore_tools.count(c.name()) != 0) continue;
    watched_call = true;
    const bool ok = c.status() == v1::TOOL_STATUS_OK;
    const bool failing = is_failing(c.status());
    const std::string& outcome = ok ? c.observation_digest() : c.error_digest();
    const std::uint64_t action =
        fingerprint().add(c.name()).add(c.target()).add(c.args_digest()).value();
    const std::uint64_t pair = fingerprint()
                                   .add_u64(action)
                                   .add_u64(static_cast<std::uint64_t>(c.status()))
                                   .add(outcome)
                                   .value();
    const bool novel = seen_pairs_.insert(pair);
    // Progress is a result never seen, not a call never seen: the next page of a search that has
    // nothing new, a scroll that loads nothing, a click a pixel off, a file re-opened at another
    // line are new calls with old results (the holdout fixture's loops that vary an argument
    // trivially). A success's result is its observation at its place (tool, target); a
    // failure's is its error from the tool, wherever it was aimed. A success without an
    // observation digest has no known result: the call's novelty stands in for it. The results
    // share the session's novelty table with the (call, outcome) pairs (other fingerprints).
    bool novel_result = novel;
    const bool result_known =
        failing ? !c.error_digest().empty() : ok && !c.observation_digest().empty();
    results_known = results_known && result_known;
    if (result_known) {
      fingerprint result;
      result.add("result").add(c.name()).add(failing ? std::string_view{} : c.target());
      novel_result = seen_pairs_.insert(
          result.add_u64(static_cast<std::uint64_t>(c.status())).add(outcome).value());
    }
    novel_call = novel_call || novel_result;
    // Without hashes, a successful call never seen before may have changed the workspace (an
    // edit); count it as a change, before counting the call itself, so it opens the new epoch.
    if (!has_hashes_ && ok && novel) new_epoch();
    const std::string tool = c.name().substr(0, max_tool_name);

    // The same call with the same result. A failure repeated with the workspace unchanged is a
    // retry (the retry limit); a success repeated is only a loop when nothing new came
    // in between (re-reading a file between reads of new ones is normal). A call is only "the
    // same" when it names its arguments or target; a result is only "the same" when it is known
    // (a failure, an observation digest) or the workspace hash vouches for it.
    if (novel_result) ++progress_;
    const bool identifiable = !c.args_digest().empty() || !c.target().empty();
    const bool known = failing || (ok && (!c.observation_digest().empty() || has_hashes_));
    const std::uint64_t repeat_limit = failing ? g.same_error : g.same_observation;
    if (identifiable && known && repeat_limit > 0) {
      auto it = repeats_.find(pair);
      if (it == repeats_.end() && repeats_.size() < s.limits.max_distinct_actions) {
        it = repeats_.emplace(pair, repeat_count{}).first;
      }
      if (it != repeats_.end()) {
        repeat_count& r = it->second;
        r.count = (failing || r.count == 0 || r.progress == progress_) ? r.count + 1 : 1;
        r.progress = progress_;
        // Retries that wait longer each time (exponential backoff) are a retry policy waiting
        // out a transient failure (a rate limit, a service restarting), not a loop: they may
        // go on to backoff_retries while every interval keeps growing. A retry at a steady
        // pace, or one that stops backing off, is held to the plain limit.
        const bool backoff = failing && r.spacing.note(in.now, r.count == 1, g.backoff_factor,
                                                       g.backoff_min_interval.count());
        const std::uint64_t limit =
            backoff ? std::max(repeat_limit, g.backoff_retries) : repeat_limit;
        if (r.count >= limit) {
          const std::string guard = failing ? "repeated_failure" : "repeated_action";
          const std::string what = failing
                                       ? "failed with the same error " + std::to_string(r.count) +
                                             " times with the workspace unchanged"
                                       : "returned the same result " + std::to_string(r.count) +
                                             " times with nothing new in between";
          report({guard,
                  "the same call " + label_of(c) + " " + what + " (limit " + std::to_string(limit) +
                      ")",
                  {{"pattern", label_of(c)},
                   {"count", std::to_string(r.count)},
                   {"limit", std::to_string(limit)},
                   {"workspace_hash", has_hashes_ ? last_hash_text_ : "not reported"},
                   {"backoff", backoff ? "yes" : "no"}}});
          r.count = 0;
        }
      }
    }

    // The same error from one tool whatever its arguments: the loop that varies its arguments
    // just enough to dodge the exact-repeat key. A success of the tool ends the streak.
    if (ok) {
      for (auto e = errors_.lower_bound({tool, 0}); e != errors_.end() && e->first.first == tool;) {
        e = errors_.erase(e);
      }
    }
    if (failing && !c.error_digest().empty() && g.same_error_varying_args > 0) {
      const std::pair<std::string, std::uint64_t> key{tool,
                                                      fingerprint().add(c.error_digest()).value()};
      auto it = errors_.find(key);
      if (it == errors_.end() && errors_.size() < s.limits.max_distinct_actions) {
        it = errors_.emplace(key, error_streak{}).first;
        it->second.error = abbreviate(c.error_digest(), 16);
      }
      if (it != errors_.end()) {
        error_streak& e = it->second;
        ++e.count;
        const bool backoff =
            e.spacing.note(in.now, e.count == 1, g.backoff_factor, g.backoff_min_interval.count());
        const std::uint64_t args = fingerprint().add(c.target()).add(c.args_digest()).value();
        if (e.args.size() < 64 && std::find(e.args.begin(), e.args.end(), args) == e.args.end()) {
          e.args.push_back(args);
        }
        const std::uint64_t limit = backoff ? std::max(g.same_error_varying_args, g.backoff_retries)
                                            : g.same_error_varying_args;
        if (e.count >= limit) {
          report({"same_error",
                  std::to_string(e.count) + " failing calls of " + abbreviate(tool, 48) + " with " +
                      std::to_string(e.args.size()) +
                      " different arguments all failed with error " + e.error + " (limit " +
                      std::to_string(limit) + ")",
                  {{"pattern", abbreviate(tool, 48) + "(*) -> " +
                                   std::string(status_word(c.status())) + " " + e.error},
                   {"count", std::to_string(e.count)},
                   {"distinct_arguments", std::to_string(e.args.size())},
                   {"limit", std::to_string(limit)},
                   {"last_call", label_of(c)}}});
          errors_.erase(it);
        }
      }
    }

    // The same failure despite edits: each attempt changes the workspace (so the retry limit
    // above restarts) and the same call fails the same way again. Debugging takes a few rounds;
    // ten rounds of one unchanged failure is an agent going through the motions.
    if (g.failure_despite_edits > 0 && identifiable) {
      const std::uint64_t outcome_key =
          fingerprint().add_u64(static_cast<std::uint64_t>(c.status())).add(outcome).value();
      // A success of the call, or of another call of the same tool on the same target (a retry
      // with other arguments that worked), means the agent got past it.
      const std::uint64_t place =
          c.target().empty() ? action : fingerprint().add(c.name()).add(c.target()).value();
      if (ok) {
        for (auto it = stuck_.begin(); it != stuck_.end();) {
          it =
              (it->first == action || it->second.place == place) ? stuck_.erase(it) : std::next(it);
        }
      } else if (failing) {
        auto it = stuck_.find(action);
        if (it == stuck_.end() && stuck_.size() < s.limits.max_distinct_actions) {
          it = stuck_.emplace(action, stuck_failure{outcome_key, 0, epoch_, place}).first;
          it->second.epochs = 1;
        } else if (it != stuck_.end()) {
          stuck_failure& f = it->second;
          if (f.outcome != outcome_key) {
            f = {outcome_key, 1, epoch_, place};  // it fails differently now: that is news
          } else if (f.last_epoch != epoch_) {
            ++f.epochs;
            f.last_epoch = epoch_;
          }
        }
        if (it != stuck_.end() && it->second.epochs >= g.failure_despite_edits) {
          report({"failure_despite_edits",
                  "the call " + label_of(c) + " failed the same way after " +
                      std::to_string(it->second.epochs - 1) + " changes of the workspace (limit " +
                      std::to_string(g.failure_despite_edits) + " failures)",
                  {{"pattern", label_of(c)},
                   {"count", std::to_string(it->second.epochs)},
                   {"limit", std::to_string(g.failure_despite_edits)},
                   {"workspace_hash", has_hashes_ ? last_hash_text_ : "not reported"}}});
          stuck_.erase(it);
        }
      }
    }

    // Short cycles: the sequence of (call, result, workspace state) repeating with period >= 2.
    if (g.cycle_max_period >= 2) {
      const std::uint64_t token =
          fingerprint().add_u64(pair).add_u64(has_hashes_ ? last_hash_ : 0).value();
      // The labels of the last max_period calls, in a ring of reused strings.
      if (recent_labels_.size() < g.cycle_max_period) recent_labels_.resize(g.cycle_max_period);
      label_into(recent_labels_[label_head_], c);
      label_head_ = (label_head_ + 1) % g.cycle_max_period;
      const sdk::stats::cycle_match m = cycles_.update(token);
      if (m && m.period >= 2) {
        std::string cycle;
        for (std::size_t k = m.period; k > 0; --k) {
          if (!cycle.empty()) cycle += " => ";
          cycle += recent_labels_[(label_head_ + g.cycle_max_period - k) % g.cycle_max_period];
        }
        report({"cycle",
                "the last " + std::to_string(m.length) + " calls repeat a cycle of " +
                    std::to_string(m.period) + " calls with the same results: " + cycle,
                {{"pattern", cycle},
                 {"period", std::to_string(m.period)},
                 {"repeats",
                  format_number(static_cast<double>(m.length) / static_cast<double>(m.period))},
                 {"calls_in_cycle", std::to_string(m.length)},
                 {"limit", std::to_string(g.cycle_repeats) + " repeats"}}});
        cycles_.reset();
      }
    }

    // Storms: too many calls of one tool in the window, or too many failing ones that make up
    // most of its calls (a broken tool hammered).
    if (g.storm_max_calls > 0 || g.storm_max_failed_calls > 0) {
      auto it = storms_.find(tool);
      if (it == storms_.end() && storms_.size() < s.limits.max_tools_per_session) {
        it = storms_.emplace(tool, storm_counter{}).first;
      }
      if (it != storms_.end()) {
        it->second.add(now_, storm_width, failing);
        const auto [all, failed] = it->second.counts(now_, storm_width);
        const std::string window = format_duration(g.storm_window);
        if (g.storm_max_calls > 0 && all > g.storm_max_calls) {
          report({"tool_storm",
                  std::to_string(all) + " calls of " + abbreviate(tool, 48) + " within " + window +
                      " (limit " + std::to_string(g.storm_max_calls) + ")",
                  {{"pattern", abbreviate(tool, 48) + " x" + std::to_string(all)},
                   {"count", std::to_string(all)},
                   {"failed", std::to_string(failed)},
                   {"limit", std::to_string(g.storm_max_calls)},
                   {"window", window},
                   {"last_call", label_of(c)}}});
          it->second.clear();
        } else if (g.storm_max_failed_calls > 0 && failed > g.storm_max_failed_calls &&
                   static_cast<double>(failed) >= g.storm_failed_share * static_cast<double>(all)) {
          report(
              {"failing_tool_storm",
               std::to_string(failed) + " failing calls of " + abbreviate(tool, 48) + " within " +
                   window + ", " +
                   format_number(100.0 * static_cast<double>(failed) / static_cast<double>(all)) +
                   "% of its calls (limit " + std::to_string(g.storm_max_failed_calls) + ")",
               {{"pattern", label_of(c)},
                {"count", std::to_string(failed)},
                {"calls", std::to_string(all)},
                {"limit", std::to_string(g.storm_max_failed_calls)},
                {"failed_share_limit", format_number(g.storm_failed_share)},
                {"window", window}}});
          it->second.clear();
        }
      }
    }
  }

  // Progress: a workspace state never seen in this session, a result never seen in it (or, when
  // the result is unknown, a call never seen), the task completed, or a human stepped in.
  // Reading new files is progress (new results); calling the same things again, or other things
  // that give the same answers, is not.
  const bool progress =
      new_state || novel_call || step.task_completed() || step.human_intervention();

  if (progress) {
    no_progress_steps_ = 0;
  } else if (g.no_progress_steps > 0 && (has_hashes_ || results_known) && watched_call) {
    // Without workspace hashes a step counts only when every call's result is known: then
    // "nothing new" is the results' own word (a browser scrolling a page that loads nothing). A
    // call without an observation digest may have changed the world unseen.
    if (++no_progress_steps_ >= g.no_progress_steps) {
      const std::string where = has_hashes_
                                    ? "the workspace unchanged (hash " + last_hash_text_ + ")"
                                    : "no workspace reported";
      report({"no_progress",
              std::to_string(no_progress_steps_) + " steps of tool calls with " + where +
                  " and no result that was not seen before (limit " +
                  std::to_string(g.no_progress_steps) + ")",
              {{"pattern", (has_hashes_ ? "workspace " + last_hash_text_ + " unchanged"
                                        : std::string("no workspace reported")) +
                               ", only results seen before"},
               {"count", std::to_string(no_progress_steps_)},
               {"limit", std::to_string(g.no_progress_steps)},
               {"workspace_hash", last_hash_text_}}});
      no_progress_steps_ = 0;
    }
  }

  if (progress) {
    no_progress_tokens_ = 0;
  } else {
    no_progress_tokens_ = saturating_add(no_progress_tokens_, in.tokens);
    if (g.tokens_without_progress > 0 && no_progress_tokens_ > g.tokens_without_progress) {
      report({"tokens_without_progress",
              format_tokens(no_progress_tokens_) +
                  " tokens since the last step that made progress (limit " +
                  format_tokens(g.tokens_without_progress) + ")",
              {{"pattern", "tokens spent on steps that changed nothing and learned nothing"},
               {"count", std::to_string(no_progress_tokens_)},
               {"limit", std::to_string(g.tokens_without_progress)}}});
      no_progress_tokens_ = 0;
    }
  }

  if (step.tool_calls_size() > 0 || step.task_completed() || step.human_intervention()) {
    deferral_steps_ = 0;
  } else if (g.deferral_steps > 0 && ++deferral_steps_ >= g.deferral_steps) {
    report({"deferral",
            std::to_string(deferral_steps_) +
                " turns in a row without a tool call or a completed task (limit " +
                std::to_string(g.deferral_steps) + ")",
            {{"pattern", "turns with no action and no completion"},
             {"count", std::to_string(deferral_steps_)},
             {"limit", std::to_string(g.deferral_steps)}}});
    deferral_steps_ = 0;
  }

  // The cap and the budgets trip at every step past them, not once: the registry ignores a trip
  // on an open breaker, and one an operator reset while the session goes on past its cap or
  // budget opens again at the session's next step. To continue past a budget, raise it (a config
  // reload) or start a new session.
  if (g.max_steps > 0 && steps_ >= g.max_steps) {
    report({"iteration_cap",
            "the session reached its cap of " + std::to_string(g.max_steps) + " steps",
            {{"pattern", "step " + std::to_string(steps_) + " of the session"},
             {"count", std::to_string(steps_)},
             {"limit", std::to_string(g.max_steps)}}});
  }
  if (g.session_tokens > 0 && tokens_ > g.session_tokens) {
    report({"session_tokens",
            "the session used " + format_tokens(tokens_) + " tokens (budget " +
                format_tokens(g.session_tokens) + ")",
            {{"pattern", "session token budget exhausted"},
             {"count", std::to_string(tokens_)},
             {"limit", std::to_string(g.session_tokens)}}});
  }
  if (g.session_cost > 0.0 && cost_ > g.session_cost) {
    report({"session_cost",
            "the session cost " + format_number(cost_) + " (budget " +
                format_number(g.session_cost) + ")",
            {{"pattern", "session cost budget exhausted"},
             {"count", format_number(cost_)},
             {"limit", format_number(g.session_cost)}}});
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// snapshot

void session_guards::save(sdk::state_writer& w) const {
  w.write_u64(steps_);
  w.write_u64(tokens_);
  w.write_f64(cost_);
  w.write_i64(now_);
  w.write_bool(has_hashes_);
  w.write_u64(last_hash_);
  w.write_string(last_hash_text_);
  w.write_u64(epoch_);
  seen_pairs_.save(w);
  seen_states_.save(w);
  w.write_u64(repeats_.size());
  for (const auto& [k, r] : repeats_) {
    w.write_u64(k);
    w.write_u64(r.count);
    w.write_u64(r.progress);
    r.spacing.save(w);
  }
  w.write_u64(progress_);
  w.write_u64(errors_.size());
  for (const auto& [k, e] : errors_) {
    w.write_string(k.first);
    w.write_u64(k.second);
    w.write_u64(e.count);
    w.write_u64s(e.args);
    w.write_string(e.error);
    e.spacing.save(w);
  }
  w.write_u64(stuck_.size());
  for (const auto& [k, f] : stuck_) {
    w.write_u64(k);
    w.write_u64(f.outcome);
    w.write_u64(f.epochs);
    w.write_u64(f.last_epoch);
    w.write_u64(f.place);
  }
  const auto kept = cycles_.kept_tokens();
  w.write_u64(cycles_.count());
  w.write_u64s(kept);
  const auto& runs = cycles_.run_lengths();
  w.write_u64s(std::vector<std::uint64_t>(runs.begin(), runs.end()));
  w.write_u64(recent_labels_.size());
  for (const auto& l : recent_labels_) w.write_string(l);
  w.write_u64(label_head_);
  w.write_u64(storms_.size());
  for (const auto& [tool, counter] : storms_) {
    w.write_string(tool);
    counter.save(w);
  }
  w.write_u64(no_progress_steps_);
  w.write_u64(no_progress_tokens_);
  w.write_u64(deferral_steps_);
}

bool session_guards::load(sdk::state_reader& r, const settings& s, std::uint32_t version) {
  const std::size_t max_keys = s.limits.max_distinct_actions;
  steps_ = r.read_u64();
  tokens_ = r.read_u64();
  cost_ = r.read_f64();
  if (version == 1) {
    // The cap's and the budgets' "already tripped" flags: no longer kept (they trip at every step
    // past the limit), read only so that a format 1 snapshot still restores.
    for (int i = 0; i < 3; ++i) (void)r.read_bool();
  }
  now_ = r.read_i64();
  has_hashes_ = r.read_bool();
  last_hash_ = r.read_u64();
  last_hash_text_ = r.read_string(64);
  epoch_ = r.read_u64();
  if (!seen_pairs_.load(r) || !seen_states_.load(r)) return false;
  if (!(std::isfinite(cost_) && cost_ >= 0.0)) r.fail("a session cost that is not finite and >= 0");
  repeats_.clear();
  std::uint64_t n = r.read_count(max_keys);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    const std::uint64_t k = r.read_u64();
    repeat_count& rc = repeats_[k];
    rc.count = r.read_u64();
    rc.progress = r.read_u64();
    if (version >= 3) rc.spacing.load(r);
  }
  progress_ = r.read_u64();
  errors_.clear();
  n = r.read_count(max_keys);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    std::string tool = r.read_string(max_tool_name);
    const std::uint64_t key = r.read_u64();
    error_streak e;
    e.count = r.read_u64();
    e.args = r.read_u64s(64);
    e.error = r.read_string(64);
    if (version >= 3) e.spacing.load(r);
    errors_[{std::move(tool), key}] = std::move(e);
  }
  stuck_.clear();
  n = r.read_count(max_keys);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    stuck_failure& f = stuck_[r.read_u64()];
    f.outcome = r.read_u64();
    f.epochs = r.read_u64();
    f.last_epoch = r.read_u64();
    f.place = r.read_u64();
  }
  const std::uint64_t count = r.read_u64();
  const std::vector<std::uint64_t> kept = r.read_u64s(64);
  const std::vector<std::uint64_t> runs64 = r.read_u64s(65);
  if (!r.ok()) return false;
  try {
    cycles_.restore(count, kept, std::vector<std::size_t>(runs64.begin(), runs64.end()));
  } catch (const std::exception& e) {
    r.fail(e.what());
    return false;
  }
  recent_labels_.clear();
  n = r.read_count(64);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) recent_labels_.push_back(r.read_string(1024));
  label_head_ = r.read_count(recent_labels_.empty() ? 0 : recent_labels_.size() - 1);
  storms_.clear();
  n = r.read_count(s.limits.max_tools_per_session);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    std::string tool = r.read_string(max_tool_name);
    storm_counter counter;
    if (!counter.load(r)) return false;
    storms_[std::move(tool)] = counter;
  }
  no_progress_steps_ = r.read_u64();
  no_progress_tokens_ = r.read_u64();
  deferral_steps_ = r.read_u64();
  return r.ok();
}

}  // namespace loopwarden::agent_drift
