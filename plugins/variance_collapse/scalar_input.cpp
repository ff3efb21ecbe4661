#include "scalar_input.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <span>
#include <utility>

#include <loopwarden/stats/dispersion.hpp>
#include <loopwarden/stats/distribution.hpp>
#include <loopwarden/stats/divergence.hpp>
#include <loopwarden/stats/diversity.hpp>
#include <loopwarden/stats/welford.hpp>

namespace loopwarden::variance_collapse {

namespace {

constexpr std::size_t max_cached_thresholds = 32;

std::uint64_t seed_of(const std::string& run_id, const std::string& name) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : run_id + '\0' + name) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return stats::mix64(h);
}

// n rounded down to two significant digits (57 → 57, 1003 → 1000, 998 → 990): groups of nearly
// the same size share one bootstrap threshold, computed at the smaller size (a PSI threshold
// falls as n grows, so the shared one errs quiet).
std::uint64_t size_class(std::uint64_t n) {
  std::uint64_t unit = 1;
  while (n / unit >= 100) unit *= 10;
  return n / unit * unit;
}

void write_welford(sdk::state_writer& w, const stats::welford& m) {
  const stats::welford_state s = m.state();
  w.write_u64(s.count);
  w.write_u64(s.ignored);
  w.write_f64(s.mean);
  w.write_f64(s.m2);
  w.write_f64(s.min);
  w.write_f64(s.max);
}

void read_welford(sdk::state_reader& r, stats::welford& m) {
  stats::welford_state s;
  s.count = r.read_u64();
  s.ignored = r.read_u64();
  s.mean = r.read_f64();
  s.m2 = r.read_f64();
  s.min = r.read_f64();
  s.max = r.read_f64();
  if (!r.ok()) return;
  try {
    m.restore(s);
  } catch (const std::invalid_argument& e) {
    r.fail(e.what());
  }
}

}  // namespace

// One run's stream of one metric.
class scalar_stream {
 public:
  scalar_stream(scalar_input& in, std::string name, std::uint64_t seed)
      : in_(in),
        name_(std::move(name)),
        prefix_("scalar." + name_ + "."),
        seed_(seed),
        series_(*in.ds_) {}

  void add(double x, std::int64_t step, run_decision& decision, sdk::context& ctx);
  void complete_through(std::int64_t generation, run_decision& decision, sdk::context& ctx);
  std::size_t state_bytes() const {
    return sizeof(*this) + 8 * (reservoir_.size() + cuts_.size() + base_counts_.size() +
                                counts_.size() + 2 * thresholds_.size());
  }
  void write(sdk::state_writer& w) const;
  void read(sdk::state_reader& r);

 private:
  void route(double x, std::int64_t g, run_decision& decision, sdk::context& ctx);
  void close_baseline(run_decision& decision);
  bool finish_baseline();
  void evaluate(run_decision& decision, sdk::context& ctx);
  double psi_threshold(std::uint64_t n);
  // Var(ln s²) of n values with the baseline's kurtosis κ: Var(s²)/σ⁴ = κ/n − (n − 3)/(n(n − 1)),
  // which is 2/(n − 1) for normal data.
  double log_variance_noise(std::uint64_t n) const {
    if (n < 2) return nan;
    const auto nd = static_cast<double>(n);
    return std::max(kurtosis_ / nd - (nd - 3.0) / (nd * (nd - 1.0)), 1e-12);
  }
  // Counts of `values` in the baseline's bins.
  std::vector<std::uint64_t> bin_counts(std::span<const double> values) const;

  scalar_input& in_;
  std::string name_;
  std::string prefix_;
  std::uint64_t seed_;
  std::optional<std::int64_t> completed_through_;
  std::uint64_t window_fill_ = 0;
  std::int64_t next_window_ = 0;

  // The baseline while it forms: every value in base_all_, a uniform reservoir of them.
  bool ready_ = false;
  bool base_open_ = false;
  std::int64_t base_generation_ = 0;
  stats::welford base_all_;
  std::vector<double> reservoir_;  // sorted once ready
  std::uint64_t seen_ = 0;
  // Kept once ready:
  double kurtosis_ = 3.0;
  std::vector<double> cuts_;
  std::vector<std::uint64_t> base_counts_;
  std::uint64_t low_rank_ = 0;   // i: values below the i-th smallest are in the low tail
  std::uint64_t high_rank_ = 0;  // j: values above the j-th smallest are in the high tail
  // The open group.
  bool group_open_ = false;
  std::int64_t group_generation_ = 0;
  stats::welford group_;
  std::vector<std::uint64_t> counts_;
  std::uint64_t outside_ = 0;
  // Bootstrap thresholds by size class: derived from the baseline and the seed, so not saved.
  std::map<std::uint64_t, double> thresholds_;

  log_ratio_series series_;
};

std::vector<std::uint64_t> scalar_stream::bin_counts(std::span<const double> values) const {
  std::vector<std::uint64_t> counts(cuts_.size() + 1, 0);
  for (double v : values) {
    ++counts[static_cast<std::size_t>(std::upper_bound(cuts_.begin(), cuts_.end(), v) -
                                      cuts_.begin())];
  }
  return counts;
}

bool scalar_stream::finish_baseline() {
  if (base_all_.count() < 2 || reservoir_.size() < 2) return false;
  std::sort(reservoir_.begin(), reservoir_.end());
  const auto m = static_cast<double>(reservoir_.size());
  // Plug-in kurtosis m4 / m2² of the reservoir, for the noise of ln s² (≥ 1 always).
  double mean = 0.0;
  for (double v : reservoir_) mean += v;
  mean /= m;
  double m2 = 0.0;
  double m4 = 0.0;
  for (double v : reservoir_) {
    const double d2 = (v - mean) * (v - mean);
    m2 += d2;
    m4 += d2 * d2;
  }
  m2 /= m;
  m4 /= m;
  // Never lighter-tailed than normal: a plug-in kurtosis from a small baseline is biased low
  // (about 3(m − 1)/(m + 1) for normal data), and understating the noise would make the tests
  // below fire more often than alpha.
  kurtosis_ = m2 > 0.0 ? std::max(3.0, m4 / (m2 * m2)) : 3.0;
  cuts_ = stats::fixed_histogram::from_quantiles(reservoir_, in_.ss_->bins).cuts();
  base_counts_ = bin_counts(reservoir_);
  // Tails at order statistics, so that the null law of the count outside is exact: with
  // i = ⌊q_low (m + 1)⌋ and j = ⌈q_high (m + 1)⌉ the chance a fresh value falls outside
  // [x_(i), x_(j)] is Beta(m − (j − i) + 1, j − i), mean about q_low + 1 − q_high.
  const auto mm = static_cast<std::uint64_t>(reservoir_.size());
  low_rank_ = std::clamp<std::uint64_t>(
      static_cast<std::uint64_t>(std::floor(in_.ss_->low_quantile * (m + 1.0))), 1, mm - 1);
  high_rank_ = std::clamp<std::uint64_t>(
      static_cast<std::uint64_t>(std::ceil(in_.ss_->high_quantile * (m + 1.0))), low_rank_ + 1, mm);
  ready_ = true;
  base_open_ = false;
  series_.set_baseline_variance(log_variance_noise(base_all_.count()));
  return true;
}

void scalar_stream::close_baseline(run_decision& decision) {
  const std::int64_t g = base_generation_;
  if (finish_baseline()) {
    decision.note_baseline(g, "");
  } else {
    in_.counters_.unused_samples += base_all_.count();
    base_all_ = stats::welford();  // too small: the next group is the baseline
    reservoir_.clear();
    seen_ = 0;
    base_open_ = false;
  }
  completed_through_ = g;
}

void scalar_stream::route(double x, std::int64_t g, run_decision& decision, sdk::context& ctx) {
  if (completed_through_ && g <= *completed_through_) {
    ++in_.counters_.late_samples;
    return;
  }
  if (!ready_) {
    if (!base_open_) {
      base_open_ = true;
      base_generation_ = g;
    }
    if (g == base_generation_) {
      base_all_.add(x);
      // Reservoir sampling with a choice fixed by the stream's seed and the value's index.
      std::uint64_t slot = seen_;
      if (seen_ >= in_.ss_->max_baseline_samples) slot = stats::mix64(seed_ ^ seen_) % (seen_ + 1);
      ++seen_;
      if (slot < reservoir_.size()) {
        reservoir_[slot] = x;
      } else if (slot == reservoir_.size() && slot < in_.ss_->max_baseline_samples) {
        reservoir_.push_back(x);
      }
      return;
    }
    if (g < base_generation_) {
      ++in_.counters_.late_samples;
      return;
    }
    close_baseline(decision);
    if (!ready_) return route(x, g, decision, ctx);
  }
  if (group_open_ && g < group_generation_) {
    ++in_.counters_.late_samples;
    return;
  }
  if (group_open_ && g > group_generation_) evaluate(decision, ctx);
  if (!group_open_) {
    group_open_ = true;
    group_generation_ = g;
    group_ = stats::welford();
    counts_.assign(cuts_.size() + 1, 0);
    outside_ = 0;
  }
  group_.add(x);
  ++counts_[static_cast<std::size_t>(std::upper_bound(cuts_.begin(), cuts_.end(), x) -
                                     cuts_.begin())];
  if (x < reservoir_[low_rank_ - 1] || x > reservoir_[high_rank_ - 1]) ++outside_;
}

void scalar_stream::add(double x, std::int64_t step, run_decision& decision, sdk::context& ctx) {
  if (!std::isfinite(x)) {
    ++in_.counters_.ignored_samples;
    return;
  }
  if (in_.ss_->by_step) return route(x, step, decision, ctx);
  const std::int64_t w = next_window_;
  route(x, w, decision, ctx);
  if (++window_fill_ < in_.ss_->window) return;
  window_fill_ = 0;
  ++next_window_;
  if (!ready_ && base_open_ && base_generation_ == w) {
    close_baseline(decision);
  } else if (group_open_ && group_generation_ == w) {
    evaluate(decision, ctx);
  }
}

void scalar_stream::complete_through(std::int64_t generation, run_decision& decision,
                                     sdk::context& ctx) {
  if (!in_.ss_->by_step) return;
  if (!ready_ && base_open_ && base_generation_ <= generation) close_baseline(decision);
  if (group_open_ && group_generation_ <= generation) evaluate(decision, ctx);
}

double scalar_stream::psi_threshold(std::uint64_t n) {
  const std::uint64_t size = size_class(n);
  if (const auto it = thresholds_.find(size); it != thresholds_.end()) return it->second;
  // The null distribution of PSI between a baseline-sized reference and `size` fresh values,
  // both resampled from the baseline and binned on the baseline's cuts; seeded by the stream and
  // the size, so the same threshold comes back after a restart.
  std::mt19937_64 rng(stats::mix64(seed_ ^ size));
  const double smoothing = in_.smoothing_;
  const auto statistic = [this, smoothing](std::span<const double> reference,
                                           std::span<const double> current) {
    const std::vector<std::uint64_t> p = bin_counts(current);
    const std::vector<std::uint64_t> q = bin_counts(reference);
    return stats::psi(std::span<const std::uint64_t>(p), std::span<const std::uint64_t>(q),
                      smoothing);
  };
  const double threshold = stats::bootstrap_null_quantile(
      std::span<const double>(reservoir_), static_cast<std::size_t>(size), statistic,
      static_cast<std::size_t>(in_.ss_->replicates), 1.0 - in_.alpha_, rng);
  if (thresholds_.size() >= max_cached_thresholds) thresholds_.erase(thresholds_.begin());
  thresholds_[size] = threshold;
  return threshold;
}

void scalar_stream::evaluate(run_decision& decision, sdk::context& ctx) {
  group_open_ = false;
  completed_through_ = group_generation_;
  const std::int64_t generation = group_generation_;
  const std::uint64_t n = group_.count();
  if (n < in_.ss_->min_group) {
    in_.counters_.unused_samples += n;
    return;
  }
  std::vector<statistic_check> checks;

  // Variance against the baseline's, with the sampling noise of both logs.
  const double ratio =
      stats::dispersion_ratio(group_.sample_variance(), base_all_.sample_variance());
  const double log_ratio =
      stats::log_dispersion_ratio(group_.sample_variance(), base_all_.sample_variance());
  const double v_current = log_variance_noise(n);
  const double margin = stats::normal_quantile(1.0 - in_.alpha_) *
                        std::sqrt(v_current + log_variance_noise(base_all_.count()));
  ctx.set_gauge(prefix_ + "variance_ratio", ratio);
  if (!std::isnan(ratio)) {
    add_check(checks, prefix_ + "variance_ratio", ratio,
              in_.ss_->dispersion_floor * std::exp(-margin), true);
    checks.back().details = {{"upper_bound", format_number(ratio * std::exp(margin))},
                             {"floor", format_number(in_.ss_->dispersion_floor)},
                             {"samples", std::to_string(n)}};
  }

  // Tails: the count outside [x_(i), x_(j)] is BetaBinomial(n, m − (j − i) + 1, j − i) under no
  // change; crossing when its lower tail (too few: the tails are going) is below alpha
  // (significant) and the share is below tail_floor times the baseline's (material).
  const auto m = static_cast<double>(reservoir_.size());
  const double inside = static_cast<double>(high_rank_ - low_rank_);
  const double a = m - inside + 1.0;
  const double share = static_cast<double>(outside_) / static_cast<double>(n);
  const double p = stats::beta_binomial_cdf(static_cast<std::int64_t>(outside_), n, a, inside);
  ctx.set_gauge(prefix_ + "tail_share", share);
  statistic_check tail;
  tail.statistic = prefix_ + "tail_share";
  tail.value = share;
  tail.limit = in_.ds_->tail_floor * a / (a + inside);  // the material share
  tail.below = true;
  tail.crossed = p < in_.alpha_ && share < tail.limit;
  tail.details = {{"p_value", format_number(p)},
                  {"alpha", format_number(in_.alpha_)},
                  {"outside", std::to_string(outside_) + "/" + std::to_string(n)}};
  checks.push_back(std::move(tail));

  // PSI on the baseline's quantile bins against the bootstrap threshold at this size.
  const double psi = stats::psi(std::span<const std::uint64_t>(counts_),
                                std::span<const std::uint64_t>(base_counts_), in_.smoothing_);
  // The limit: a material PSI (psi_floor) on top of the (1 − alpha) quantile of PSI with no
  // change at this size, so a crossing says the drift is material, not only detectable.
  const double null_quantile = psi_threshold(n);
  const double limit = in_.ss_->psi_floor + null_quantile;
  ctx.set_gauge(prefix_ + "psi", psi);
  ctx.set_gauge(prefix_ + "psi_limit", limit);
  add_check(checks, prefix_ + "psi", psi, limit, false);
  checks.back().details = {{"null_quantile", format_number(null_quantile)},
                           {"samples", std::to_string(n)},
                           {"bins", std::to_string(counts_.size())}};

  series_.add(generation, log_ratio, v_current, prefix_, checks, ctx);
  decision.decide(generation, checks, *in_.ds_, ctx);
}

void scalar_stream::write(sdk::state_writer& w) const {
  w.write_bool(completed_through_.has_value());
  w.write_i64(completed_through_.value_or(0));
  w.write_u64(window_fill_);
  w.write_i64(next_window_);
  w.write_bool(ready_);
  w.write_bool(base_open_);
  w.write_i64(base_generation_);
  write_welford(w, base_all_);
  w.write_f64s(reservoir_);
  w.write_u64(seen_);
  w.write_f64(kurtosis_);
  w.write_f64s(cuts_);
  w.write_u64s(base_counts_);
  w.write_u64(low_rank_);
  w.write_u64(high_rank_);
  w.write_bool(group_open_);
  w.write_i64(group_generation_);
  write_welford(w, group_);
  w.write_u64s(counts_);
  w.write_u64(outside_);
  series_.write(w);
}

void scalar_stream::read(sdk::state_reader& r) {
  const std::uint64_t max_bins = in_.ss_->bins + 1;
  const bool has_completed = r.read_bool();
  const std::int64_t completed = r.read_i64();
  if (has_completed) completed_through_ = completed;
  window_fill_ = r.read_count(in_.ss_->window);
  next_window_ = r.read_i64();
  ready_ = r.read_bool();
  base_open_ = r.read_bool();
  base_generation_ = r.read_i64();
  read_welford(r, base_all_);
  reservoir_ = r.read_f64s(in_.ss_->max_baseline_samples);
  seen_ = r.read_u64();
  kurtosis_ = r.read_f64();
  cuts_ = r.read_f64s(max_bins);
  base_counts_ = r.read_u64s(max_bins);
  low_rank_ = r.read_u64();
  high_rank_ = r.read_u64();
  group_open_ = r.read_bool();
  group_generation_ = r.read_i64();
  read_welford(r, group_);
  counts_ = r.read_u64s(max_bins);
  outside_ = r.read_u64();
  series_.read(r);
  if (!r.ok()) return;
  for (double v : reservoir_) {
    if (!std::isfinite(v)) return r.fail("a non-finite baseline value");
  }
  if (ready_ && (reservoir_.size() < 2 || base_counts_.size() != cuts_.size() + 1 ||
                 low_rank_ < 1 || high_rank_ <= low_rank_ || high_rank_ > reservoir_.size() ||
                 !std::is_sorted(reservoir_.begin(), reservoir_.end()) ||
                 !std::is_sorted(cuts_.begin(), cuts_.end()) || !(kurtosis_ >= 3.0))) {
    return r.fail("a scalar baseline that is not consistent");
  }
  if (group_open_ && (!ready_ || counts_.size() != cuts_.size() + 1)) {
    return r.fail("an open scalar group that does not fit its baseline");
  }
}

// ---------------------------------------------------------------------------------------------

scalar_input::scalar_input(const scalar_settings& ss, const decision_settings& ds, double alpha,
                           double smoothing)
    : ss_(&ss), ds_(&ds), alpha_(alpha), smoothing_(smoothing) {}

scalar_input::~scalar_input() = default;

bool scalar_input::watches(const std::string& name) const {
  return std::find(ss_->names.begin(), ss_->names.end(), name) != ss_->names.end();
}

void scalar_input::on_batch(const std::string& run_id, const v1::MetricsBatch& batch,
                            run_decision& decision, sdk::context& ctx) {
  auto& streams = runs_[run_id];
  // Hosts batch samples of one metric together: remember the last stream looked up.
  const std::string* last_name = nullptr;
  scalar_stream* last = nullptr;
  for (const auto& sample : batch.samples()) {
    if (last_name == nullptr || sample.name() != *last_name) {
      if (!watches(sample.name())) continue;
      auto it = streams.find(sample.name());
      if (it == streams.end()) {
        it = streams
                 .emplace(sample.name(), std::make_unique<scalar_stream>(
                                             *this, sample.name(), seed_of(run_id, sample.name())))
                 .first;
      }
      last_name = &sample.name();
      last = it->second.get();
    }
    last->add(sample.value(), sample.step(), decision, ctx);
  }
}

void scalar_input::complete_through(const std::string& run_id, std::int64_t generation,
                                    run_decision& decision, sdk::context& ctx) {
  const auto it = runs_.find(run_id);
  if (it == runs_.end()) return;
  for (auto& [name, stream] : it->second) stream->complete_through(generation, decision, ctx);
}

std::size_t scalar_input::state_bytes() const {
  std::size_t bytes = 0;
  for (const auto& [id, streams] : runs_) {
    for (const auto& [name, stream] : streams)
      bytes += id.size() + name.size() + stream->state_bytes();
  }
  return bytes;
}

void scalar_input::write(sdk::state_writer& w) const {
  w.write_u64(counters_.ignored_samples);
  w.write_u64(counters_.late_samples);
  w.write_u64(counters_.unused_samples);
  w.write_u64(runs_.size());
  for (const auto& [id, streams] : runs_) {
    w.write_string(id);
    w.write_u64(streams.size());
    for (const auto& [name, stream] : streams) {
      w.write_string(name);
      stream->write(w);
    }
  }
}

void scalar_input::read(sdk::state_reader& r, std::uint64_t max_runs) {
  counters_.ignored_samples = r.read_u64();
  counters_.late_samples = r.read_u64();
  counters_.unused_samples = r.read_u64();
  const std::uint64_t runs = r.read_count(max_runs);
  for (std::uint64_t i = 0; i < runs && r.ok(); ++i) {
    std::string id = r.read_string(4096);
    const std::uint64_t n = r.read_count(ss_->names.size());
    auto& streams = runs_[id];
    for (std::uint64_t k = 0; k < n && r.ok(); ++k) {
      std::string name = r.read_string(4096);
      if (!r.ok()) return;
      if (!watches(name)) return r.fail("a scalar stream '" + name + "' that is not configured");
      auto stream = std::make_unique<scalar_stream>(*this, name, seed_of(id, name));
      stream->read(r);
      streams[std::move(name)] = std::move(stream);
    }
  }
}

}  // namespace loopwarden::variance_collapse
