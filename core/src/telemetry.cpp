#include <loopwarden/core/telemetry.hpp>

#include <algorithm>

namespace loopwarden::core {

seq_verdict source_accounting::observe(const v1::Envelope& envelope, std::int64_t now) {
  newly_lossy_.clear();
  auto it = sources_.find(envelope.source());
  if (it == sources_.end()) {
    if (sources_.size() >= config_.max_sources) evict_one();
    it = sources_.emplace(envelope.source(), state{}).first;
    it->second.stats.source = envelope.source();
  }
  state& st = it->second;
  source_stats& s = st.stats;
  s.run_id = envelope.run_id();
  s.last_seen_unix_nano = now;
  s.silent = false;
  if (envelope.has_heartbeat()) {
    ++s.heartbeats;
    s.closing = envelope.heartbeat().closing();
  } else {
    s.closing = false;
  }

  const std::uint64_t seq = envelope.seq();
  if (seq == 0) {
    ++s.received;
    return seq_verdict::accepted;
  }
  if (seq == 1 && s.highest_seq > 1) {
    // The producer restarted its numbering: start a fresh window rather than calling every
    // later event a duplicate or late.
    ++s.restarts;
    s.highest_seq = 0;
    st.window = 0;
  }
  if (seq > s.highest_seq) {
    const std::uint64_t advance = seq - s.highest_seq;
    if (s.highest_seq > 0) s.lost += advance - 1;
    st.window = advance >= 64 ? 0 : st.window << advance;
    st.window |= 1;
    s.highest_seq = seq;
  } else {
    const std::uint64_t behind = s.highest_seq - seq;
    if (behind < 64) {
      const std::uint64_t bit = std::uint64_t{1} << behind;
      if ((st.window & bit) != 0) {
        ++s.duplicates;
        return seq_verdict::duplicate;
      }
      st.window |= bit;
    }
    // A late arrival fills a gap counted as lost.
    ++s.late;
    if (s.lost > 0) --s.lost;
  }
  ++s.received;
  if (config_.loss_threshold > 0 && !st.loss_reported && s.lost >= config_.loss_threshold) {
    st.loss_reported = true;
    newly_lossy_.push_back(s);
  }
  return seq_verdict::accepted;
}

std::vector<source_stats> source_accounting::newly_silent(std::int64_t now) {
  std::vector<source_stats> out;
  const std::int64_t timeout = config_.silence_timeout.count();
  if (timeout <= 0) return out;
  for (auto& [name, st] : sources_) {
    source_stats& s = st.stats;
    if (s.silent || s.closing) continue;
    if (now - s.last_seen_unix_nano > timeout) {
      s.silent = true;
      out.push_back(s);
    }
  }
  std::sort(out.begin(), out.end(),
            [](const source_stats& a, const source_stats& b) { return a.source < b.source; });
  return out;
}

void source_accounting::set_config(const telemetry_config& config) {
  config_ = config;
  while (sources_.size() > config_.max_sources) evict_one();
}

std::vector<source_stats> source_accounting::sources() const {
  std::vector<source_stats> out;
  out.reserve(sources_.size());
  for (const auto& [name, st] : sources_) out.push_back(st.stats);
  std::sort(out.begin(), out.end(),
            [](const source_stats& a, const source_stats& b) { return a.source < b.source; });
  return out;
}

void source_accounting::evict_one() {
  // Prefer a source that said goodbye; otherwise the one heard from longest ago.
  auto victim = sources_.end();
  for (auto it = sources_.begin(); it != sources_.end(); ++it) {
    if (victim == sources_.end()) {
      victim = it;
      continue;
    }
    const auto& a = it->second.stats;
    const auto& b = victim->second.stats;
    if (a.closing != b.closing ? a.closing
                               : (a.last_seen_unix_nano != b.last_seen_unix_nano
                                      ? a.last_seen_unix_nano < b.last_seen_unix_nano
                                      : a.source < b.source)) {
      victim = it;
    }
  }
  if (victim != sources_.end()) {
    sources_.erase(victim);
    ++evicted_;
  }
}

}  // namespace loopwarden::core
