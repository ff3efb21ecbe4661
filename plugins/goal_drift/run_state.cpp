#include "run_state.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <utility>

namespace loopwarden::goal_drift {

namespace {

constexpr std::string_view tag = "goal_drift";
constexpr std::size_t max_string = 1 << 20;  // run ids, candidate ids, metric names

class writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xffU));
  }
  void f64(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
  void str(std::string_view s) {
    u64(s.size());
    out_.append(s);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads what writer wrote; every read checks the remaining length, and the first failure
// sticks (later reads return zeros) so callers check ok() once per record.
class reader {
 public:
  explicit reader(std::string_view in) : in_(in) {}

  std::uint8_t u8() {
    if (!need(1)) return 0;
    return static_cast<std::uint8_t>(in_[pos_++]);
  }
  std::uint64_t u64() {
    if (!need(8)) return 0;
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in_[pos_ + i])) << (8 * i);
    }
    pos_ += 8;
    return v;
  }
  double f64() { return std::bit_cast<double>(u64()); }
  std::string str() {
    const std::uint64_t n = u64();
    if (n > max_string) {
      fail("a string of " + std::to_string(n) + " bytes");
      return {};
    }
    if (!need(static_cast<std::size_t>(n))) return {};
    std::string s(in_.substr(pos_, static_cast<std::size_t>(n)));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  // A finite double (NaN and infinities are refused: no stored number may be one).
  double finite() {
    const double v = f64();
    if (ok() && !std::isfinite(v)) fail("a non-finite number");
    return v;
  }
  bool flag() {
    const std::uint8_t v = u8();
    if (v > 1) fail("a flag of " + std::to_string(v));
    return v == 1;
  }

  void fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
  }
  bool ok() const { return error_.empty(); }
  bool at_end() const { return pos_ == in_.size(); }
  const std::string& error() const { return error_; }

 private:
  bool need(std::size_t n) {
    if (!ok()) return false;
    if (in_.size() - pos_ < n) {
      fail("truncated at byte " + std::to_string(pos_));
      return false;
    }
    return true;
  }

  std::string_view in_;
  std::size_t pos_ = 0;
  std::string error_;
};

void write_run(writer& w, const run_state& r) {
  w.u64(r.last_cycle);
  w.str(r.last_candidate);
  w.u8(r.has_trusted ? 1 : 0);
  w.u64(r.trusted_cycle);
  w.str(r.trusted_candidate);
  w.u64(r.calibration.size());
  for (double v : r.calibration) w.f64(v);
  w.u8(r.calibrated ? 1 : 0);
  w.f64(r.mean);
  w.f64(r.sd);
  w.f64(r.threshold);
  w.u8(r.cusum ? 1 : 0);
  if (r.cusum) {
    const stats::cusum_state c = r.cusum->state();
    w.f64(c.upper);
    w.f64(c.lower);
    w.u8(static_cast<std::uint8_t>(c.last));
    w.u64(c.count);
    w.u64(c.ignored);
    w.u64(c.signals);
  }
  w.u64(r.best.size());
  for (const auto& [name, value] : r.best) {
    w.str(name);
    w.f64(value);
  }
  w.u64(r.knee.size());
  for (const knee_point& p : r.knee) {
    w.u64(p.cycle);
    w.f64(p.capability);
    w.f64(p.alignment);
  }
  w.u64(r.knee_in_a_row);
}

// Reads one run; the limits come from the restoring monitor's settings.
run_state read_run(reader& in, const settings& s) {
  run_state r;
  r.last_cycle = in.u64();
  r.last_candidate = in.str();
  r.has_trusted = in.flag();
  r.trusted_cycle = in.u64();
  r.trusted_candidate = in.str();
  const std::uint64_t n_calibration = in.u64();
  if (n_calibration > s.calibration_cycles) {
    in.fail(std::to_string(n_calibration) + " calibration values, configured for " +
            std::to_string(s.calibration_cycles));
    return r;
  }
  for (std::uint64_t i = 0; i < n_calibration && in.ok(); ++i) r.calibration.push_back(in.finite());
  r.calibrated = in.flag();
  r.mean = in.finite();
  r.sd = in.finite();
  r.threshold = in.finite();
  if (in.flag()) {
    stats::cusum_state c;
    c.upper = in.finite();
    c.lower = in.finite();
    const std::uint8_t last = in.u8();
    if (last > static_cast<std::uint8_t>(stats::signal_side::both)) in.fail("a bad cusum signal");
    c.last = static_cast<stats::signal_side>(last);
    c.count = in.u64();
    c.ignored = in.u64();
    c.signals = in.u64();
    if (in.ok()) {
      if (!r.calibrated || c.upper < 0.0 || c.lower < 0.0) {
        in.fail("a cusum without a calibration, or with a negative statistic");
        return r;
      }
      // The options are re-derived as the monitor derives them, so a restored run and an
      // uninterrupted one update the same chart.
      r.cusum.emplace(stats::cusum_options{
          .target = r.mean, .sigma = std::max(r.sd, s.min_sd), .k = s.cusum_k, .h = s.cusum_h});
      r.cusum->restore(c);
    }
  }
  const std::uint64_t n_best = in.u64();
  if (n_best > s.max_metrics) {
    in.fail(std::to_string(n_best) + " metrics, configured for " + std::to_string(s.max_metrics));
    return r;
  }
  for (std::uint64_t i = 0; i < n_best && in.ok(); ++i) {
    std::string name = in.str();
    r.best[std::move(name)] = in.finite();
  }
  const std::uint64_t n_knee = in.u64();
  if (n_knee > s.knee_window + 1) {
    in.fail(std::to_string(n_knee) + " knee points, configured for a window of " +
            std::to_string(s.knee_window));
    return r;
  }
  for (std::uint64_t i = 0; i < n_knee && in.ok(); ++i) {
    knee_point p;
    p.cycle = in.u64();
    p.capability = in.finite();
    p.alignment = in.finite();
    r.knee.push_back(p);
  }
  r.knee_in_a_row = in.u64();
  return r;
}

}  // namespace

std::string encode_state(const std::map<std::string, run_state>& runs, const counters& c) {
  writer w;
  w.str(tag);
  w.u64(snapshot_version);
  w.u64(c.malformed_reports);
  w.u64(c.ignored_reports);
  w.u64(c.dropped_runs);
  w.u64(c.rollbacks_seen);
  w.u64(c.cycles_without_index);
  w.u64(runs.size());
  for (const auto& [id, run] : runs) {
    w.str(id);
    write_run(w, run);
  }
  return w.take();
}

sdk::status decode_state(std::string_view data, const settings& s,
                         std::map<std::string, run_state>& runs, counters& c) {
  auto refuse = [](const std::string& why) {
    return sdk::make_error(sdk::status_code::invalid_argument, "goal_drift snapshot: " + why);
  };
  reader in(data);
  if (in.str() != tag || !in.ok()) return refuse("not a goal_drift snapshot");
  const std::uint64_t version = in.u64();
  if (version != snapshot_version) {
    return refuse("format version " + std::to_string(version) + ", this monitor reads " +
                  std::to_string(snapshot_version));
  }
  counters read_counters;
  read_counters.malformed_reports = in.u64();
  read_counters.ignored_reports = in.u64();
  read_counters.dropped_runs = in.u64();
  read_counters.rollbacks_seen = in.u64();
  read_counters.cycles_without_index = in.u64();
  const std::uint64_t n_runs = in.u64();
  if (in.ok() && n_runs > s.max_runs) {
    return refuse(std::to_string(n_runs) + " runs, more than max_runs " +
                  std::to_string(s.max_runs));
  }
  std::map<std::string, run_state> read_runs;
  for (std::uint64_t i = 0; i < n_runs && in.ok(); ++i) {
    std::string id = in.str();
    run_state r = read_run(in, s);
    if (in.ok() && !read_runs.emplace(std::move(id), std::move(r)).second) {
      in.fail("a run id listed twice");
    }
  }
  if (!in.ok()) return refuse(in.error());
  if (!in.at_end()) return refuse("trailing bytes after the last run");
  runs = std::move(read_runs);
  c = read_counters;
  return sdk::status::success();
}

}  // namespace loopwarden::goal_drift
