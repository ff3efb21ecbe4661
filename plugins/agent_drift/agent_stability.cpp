#include "agent_stability.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <sstream>

#include <loopwarden/stats/cosine.hpp>
#include <loopwarden/stats/divergence.hpp>
#include <loopwarden/stats/signal.hpp>
#include <loopwarden/stats/welford.hpp>

#include "fingerprint.hpp"

namespace loopwarden::agent_drift {
namespace {

constexpr double nan = std::numeric_limits<double>::quiet_NaN();
constexpr std::size_t recent_output_memory = 256;  // digests remembered for the repetition rate

std::string format_number(double v) {
  std::ostringstream out;
  out.precision(3);
  out << v;
  return out.str();
}

sdk::stats::cusum make_cusum(const settings& s) {
  // The monitor standardises the index itself, so the chart runs on N(0, 1)-scaled values.
  return sdk::stats::cusum(sdk::stats::cusum_options{
      .target = 0.0, .sigma = 1.0, .k = s.drift.cusum_k, .h = s.drift.cusum_h});
}

// A component's score from the means of a window and of the reference: the ratio, capped at 1
// (a window more consistent than the baseline is as stable as it gets).
double ratio_score(double win_sum, double win_n, double ref_sum, double ref_n, double min_n) {
  if (win_n < min_n || !(ref_n > 0.0)) return nan;
  const double ref = ref_sum / ref_n;
  if (!(ref > 0.0)) return nan;
  return std::clamp((win_sum / win_n) / ref, 0.0, 1.0);
}

// A rate that should not rise (human interventions, verbatim repeats): 1 minus the share of the
// headroom the rise used up, 1 − max(0, r_win − r_ref) / (1 − r_ref).
double rise_score(double win_sum, double win_n, double ref_sum, double ref_n, double min_n) {
  if (win_n < min_n || !(ref_n > 0.0)) return nan;
  const double ref = ref_sum / ref_n;
  if (!(ref < 1.0)) return nan;
  return std::clamp(1.0 - std::max(0.0, win_sum / win_n - ref) / (1.0 - ref), 0.0, 1.0);
}

// 1 − JS(win, ref) / ln 2: 1 for the same distribution, 0 for disjoint ones.
// Over the first `used` categories (the rest are 0 on both sides).
double histogram_score(const std::vector<double>& win, const std::vector<double>& ref,
                       std::size_t used) {
  used = std::min({used, win.size(), ref.size()});
  const std::span<const double> w(win.data(), used);
  const std::span<const double> r(ref.data(), used);
  double wn = 0.0;
  double rn = 0.0;
  for (double x : w) wn += x;
  for (double x : r) rn += x;
  if (!(wn > 0.0 && rn > 0.0)) return nan;
  return 1.0 - sdk::stats::js_divergence(w, r) / std::numbers::ln2;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// the window

agent_stability::window::window(std::size_t w, std::size_t tool_categories, std::size_t bins)
    : tools(w, tool_categories), output_bins(w, bins), reasoning_bins(w, bins), capacity(w) {}

void agent_stability::window::push(const features& f, int output_bin, int reasoning_bin) {
  tools.push(f.tools);
  const std::uint32_t ob = static_cast<std::uint32_t>(output_bin);
  const std::uint32_t rb = static_cast<std::uint32_t>(reasoning_bin);
  output_bins.push(output_bin >= 0 ? std::span<const std::uint32_t>(&ob, 1)
                                   : std::span<const std::uint32_t>());
  reasoning_bins.push(reasoning_bin >= 0 ? std::span<const std::uint32_t>(&rb, 1)
                                         : std::span<const std::uint32_t>());
  ring.push_back({f.cosine, f.repeated, f.human, f.agreement});
  if (ring.size() > capacity) ring.pop_front();
}

void agent_stability::window::sums(totals& t) const {
  t = totals{std::move(t.tools), std::move(t.output_bins), std::move(t.reasoning_bins)};
  t.tools.assign(tools.counts().begin(), tools.counts().end());
  t.output_bins.assign(output_bins.counts().begin(), output_bins.counts().end());
  t.reasoning_bins.assign(reasoning_bins.counts().begin(), reasoning_bins.counts().end());
  for (const scalars& s : ring) {
    if (!std::isnan(s.cosine)) {
      t.cos_sum += s.cosine;
      t.cos_n += 1;
    }
    if (s.repeated >= 0) {
      t.rep_sum += s.repeated;
      t.rep_n += 1;
    }
    if (!std::isnan(s.agreement)) {
      t.agree_sum += s.agreement;
      t.agree_n += 1;
    }
    t.human += s.human ? 1.0 : 0.0;
    t.steps += 1;
  }
}

void agent_stability::window::clear() {
  tools.reset();
  output_bins.reset();
  reasoning_bins.reset();
  ring.clear();
}

// ---------------------------------------------------------------------------------------------
// agent_stability

agent_stability::agent_stability(const settings& s)
    : recent_outputs_(recent_output_memory),
      index_mean_(nan),
      index_sd_(nan),
      window_(s.drift.window, s.limits.max_tools + 2, s.drift.length_bins),
      cusum_(make_cusum(s)),
      last_index_(nan),
      last_z_(nan) {
  last_scores_.fill(nan);
  baseline_.reserve(s.drift.baseline_steps);
}

std::uint32_t agent_stability::tool_id(const std::string& name, const settings& s) {
  const auto it = tool_ids_.find(name);
  if (it != tool_ids_.end()) return it->second;
  if (tool_ids_.size() >= s.limits.max_tools) return other_tool;
  const auto id = static_cast<std::uint32_t>(tool_ids_.size() + 2);
  tool_ids_.emplace(name.substr(0, 128), id);
  return id;
}

agent_stability::features agent_stability::extract(const agent_step_input& in, const settings& s) {
  const v1::AgentStep& step = in.step;
  features f{nan,
             -1,
             step.human_intervention(),
             in.agreement,
             in.log_output_length,
             in.log_reasoning_length,
             {}};
  const std::size_t calls = std::min<std::size_t>(static_cast<std::size_t>(step.tool_calls_size()),
                                                  s.limits.max_tool_calls_per_step);
  for (std::size_t i = 0; i < calls; ++i) {
    f.tools.push_back(tool_id(step.tool_calls(static_cast<int>(i)).name(), s));
  }
  if (f.tools.empty()) f.tools.push_back(no_tool);

  if (!in.embedding.empty() && (dim_ == 0 || in.embedding.size() == dim_)) {
    embedding_.assign(in.embedding.begin(), in.embedding.end());
    double norm = 0.0;
    for (double x : embedding_) norm += x * x;
    norm = std::sqrt(norm);
    if (norm > 0.0 && std::isfinite(norm)) {
      if (dim_ == 0) {
        dim_ = embedding_.size();
        centroid_sum_.assign(dim_, 0.0);
      }
      if (!calibrated_) {
        ++baseline_embeddings_;
        // During the baseline: the cosine to the centroid of the earlier baseline embeddings
        // (leave-one-out, so a step is not compared with itself), once a few are in. The sum of
        // unit vectors points where their mean does.
        const std::uint64_t warmup = std::max<std::uint64_t>(5, s.drift.baseline_steps / 10);
        if (embeddings_ >= warmup) {
          f.cosine = sdk::stats::cosine_similarity(embedding_, centroid_sum_);
        }
        for (std::size_t i = 0; i < dim_; ++i) centroid_sum_[i] += embedding_[i] / norm;
        ++embeddings_;
      } else if (!centroid_.empty()) {
        f.cosine = sdk::stats::cosine_similarity(embedding_, centroid_);
      }
    }
  }
  if (!step.output_digest().empty()) {
    if (!calibrated_) ++baseline_digests_;
    f.repeated = recent_outputs_.insert(fingerprint().add(step.output_digest()).value()) ? 0 : 1;
  }
  return f;
}

int agent_stability::bin_of(const std::vector<double>& cuts, double v) const {
  if (std::isnan(v)) return -1;
  return static_cast<int>(std::upper_bound(cuts.begin(), cuts.end(), v) - cuts.begin());
}

std::array<double, component_count> agent_stability::score(const totals& win,
                                                           const totals& ref) const {
  std::array<double, component_count> out;
  out.fill(nan);
  // A mean needs a few values before it says anything: a quarter of the window, at least 2.
  const double min_n = std::max(2.0, std::floor(static_cast<double>(window_.capacity) / 4.0));
  if (mode_ == response_mode::embedding) {
    out[0] = ratio_score(win.cos_sum, win.cos_n, ref.cos_sum, ref.cos_n, min_n);
  } else if (mode_ == response_mode::digest) {
    out[0] = rise_score(win.rep_sum, win.rep_n, ref.rep_sum, ref.rep_n, min_n);
  }
  out[1] = histogram_score(win.tools, ref.tools, tool_ids_.size() + 2);
  double js_sum = 0.0;
  int parts = 0;
  if (use_output_) {
    const double v = histogram_score(win.output_bins, ref.output_bins, output_cuts_.size() + 1);
    if (!std::isnan(v)) {
      js_sum += v;
      ++parts;
    }
  }
  if (use_reasoning_) {
    const double v =
        histogram_score(win.reasoning_bins, ref.reasoning_bins, reasoning_cuts_.size() + 1);
    if (!std::isnan(v)) {
      js_sum += v;
      ++parts;
    }
  }
  if (parts > 0) out[2] = js_sum / parts;
  out[3] = ratio_score(win.agree_sum, win.agree_n, ref.agree_sum, ref.agree_n, min_n);
  out[4] = rise_score(win.human, win.steps, ref.human, ref.steps, 1.0);
  return out;
}

double agent_stability::combine(const std::array<double, component_count>& scores) const {
  double num = 0.0;
  double den = 0.0;
  for (std::size_t c = 0; c < component_count; ++c) {
    if (!enabled_[c]) continue;
    const double w = weights_[c];
    num += w * (std::isnan(scores[c]) ? mean_[c] : scores[c]);
    den += w;
  }
  return den > 0.0 ? num / den : nan;
}

// The end of the baseline. Everything the detector compares with is fixed here.
void agent_stability::calibrate(const settings& s) {
  const std::size_t b = baseline_.size();
  baseline_size_ = b;
  const std::size_t w = s.drift.window;
  weights_ = s.drift.weights;

  // Response consistency: by embeddings when most baseline steps carried one, else by output
  // digests (the verbatim repetition rate) when most carried one, else not measured.
  if (2 * baseline_embeddings_ >= b) {
    mode_ = response_mode::embedding;
  } else if (2 * baseline_digests_ >= b) {
    mode_ = response_mode::digest;
  } else {
    mode_ = response_mode::none;
  }
  if (mode_ == response_mode::embedding && embeddings_ > 0) {
    double norm = 0.0;
    for (double x : centroid_sum_) norm += x * x;
    norm = std::sqrt(norm);
    centroid_.assign(dim_, 0.0);
    if (norm > 0.0) {
      for (std::size_t i = 0; i < dim_; ++i) centroid_[i] = centroid_sum_[i] / norm;
    }
  }

  // Length bins: equal-mass bins of the baseline's log lengths. A series that puts the whole
  // baseline in one bin (a host that never reports it, or a constant) carries no information.
  auto cuts_of = [&](auto member, std::vector<double>& cuts, bool& use) {
    std::vector<double> values;
    for (const features& f : baseline_) {
      if (!std::isnan(f.*member)) values.push_back(f.*member);
    }
    cuts.clear();
    use = false;
    if (values.size() < w) return;
    cuts = sdk::stats::fixed_histogram::from_quantiles(values, s.drift.length_bins).cuts();
    std::vector<std::size_t> occupied(cuts.size() + 1, 0);
    for (double v : values) ++occupied[static_cast<std::size_t>(bin_of(cuts, v))];
    use = std::count_if(occupied.begin(), occupied.end(), [](std::size_t n) { return n > 0; }) >= 2;
  };
  cuts_of(&features::log_output, output_cuts_, use_output_);
  cuts_of(&features::log_reasoning, reasoning_cuts_, use_reasoning_);

  // The reference: the whole baseline.
  window all(b, s.limits.max_tools + 2, s.drift.length_bins);
  for (const features& f : baseline_) {
    all.push(f, bin_of(output_cuts_, f.log_output), bin_of(reasoning_cuts_, f.log_reasoning));
  }
  all.sums(reference_);

  // The in-control distribution: every run of W consecutive baseline steps, scored against the
  // rest of the baseline (leave-window-out). Contiguous windows keep the phases of real work
  // (explore, edit, test) that an i.i.d. resample of steps would average away.
  std::vector<std::array<double, component_count>> windows;
  totals rest;
  window_.clear();
  for (const features& f : baseline_) {
    window_.push(f, bin_of(output_cuts_, f.log_output), bin_of(reasoning_cuts_, f.log_reasoning));
    if (window_.ring.size() < w) continue;
    window_.sums(scratch_);
    const totals& win = scratch_;
    rest = reference_;
    for (std::size_t i = 0; i < rest.tools.size(); ++i) rest.tools[i] -= win.tools[i];
    for (std::size_t i = 0; i < rest.output_bins.size(); ++i) {
      rest.output_bins[i] -= win.output_bins[i];
    }
    for (std::size_t i = 0; i < rest.reasoning_bins.size(); ++i) {
      rest.reasoning_bins[i] -= win.reasoning_bins[i];
    }
    rest.cos_sum -= win.cos_sum;
    rest.cos_n -= win.cos_n;
    rest.rep_sum -= win.rep_sum;
    rest.rep_n -= win.rep_n;
    rest.agree_sum -= win.agree_sum;
    rest.agree_n -= win.agree_n;
    rest.human -= win.human;
    rest.steps -= win.steps;
    windows.push_back(score(win, rest));
  }
  window_.clear();

  // A component takes part when its weight is positive and it could be measured in at least half
  // of the baseline windows; its in-control mean and sd are over those windows.
  for (std::size_t c = 0; c < component_count; ++c) {
    sdk::stats::welford m;
    for (const auto& sc : windows) m.add(sc[c]);  // NaN (absent) is ignored
    enabled_[c] = weights_[c] > 0.0 && 2 * m.count() >= windows.size() && m.count() >= 2;
    mean_[c] = enabled_[c] ? m.mean() : nan;
    sd_[c] = enabled_[c] ? m.sample_stddev() : nan;
  }
  sdk::stats::welford index;
  for (const auto& sc : windows) index.add(combine(sc));
  index_mean_ = index.mean();
  index_sd_ = index.sample_stddev();
  calibrated_ = !std::isnan(index_mean_);
  cusum_ = make_cusum(s);
  since_observation_ = 0;
  baseline_.clear();
  baseline_.shrink_to_fit();
  baseline_sessions_.clear();
}

void agent_stability::restart_baseline(const settings& s) {
  calibrated_ = false;
  mode_ = response_mode::none;
  centroid_sum_.assign(dim_, 0.0);
  embeddings_ = 0;
  centroid_.clear();
  baseline_.clear();
  baseline_.reserve(s.drift.baseline_steps);
  baseline_sessions_.clear();
  baseline_embeddings_ = 0;
  baseline_digests_ = 0;
  output_cuts_.clear();
  reasoning_cuts_.clear();
  use_output_ = false;
  use_reasoning_ = false;
  reference_ = totals{};
  enabled_.fill(false);
  mean_.fill(nan);
  sd_.fill(nan);
  index_mean_ = nan;
  index_sd_ = nan;
  window_.clear();
  since_observation_ = 0;
  cusum_ = make_cusum(s);
  last_index_ = nan;
  last_z_ = nan;
  last_scores_.fill(nan);
}

std::optional<drift_finding> agent_stability::observe(const agent_step_input& in,
                                                      const settings& s) {
  // A trip restarts the baseline with the next step, so the gauges still show the tripped window.
  if (restart_pending_) {
    restart_pending_ = false;
    restart_baseline(s);
  }
  ++steps_;
  features f = extract(in, s);
  if (!calibrated_) {
    baseline_.push_back(std::move(f));
    // The baseline is the agent's usual behaviour across tasks, not the arc of one task
    // (explore, then edit, then test): it closes once it spans enough sessions as well.
    const std::uint64_t session = fingerprint().add(in.step.session_id()).value();
    if (baseline_sessions_.size() < s.drift.baseline_sessions &&
        std::find(baseline_sessions_.begin(), baseline_sessions_.end(), session) ==
            baseline_sessions_.end()) {
      baseline_sessions_.push_back(session);
    }
    const bool enough = baseline_.size() >= s.drift.baseline_steps &&
                        baseline_sessions_.size() >= s.drift.baseline_sessions;
    if (enough || baseline_.size() >= s.drift.max_baseline_steps) calibrate(s);
    return std::nullopt;
  }
  window_.push(f, bin_of(output_cuts_, f.log_output), bin_of(reasoning_cuts_, f.log_reasoning));
  ++since_observation_;
  if (window_.ring.size() < s.drift.window) return std::nullopt;
  window_.sums(scratch_);
  last_scores_ = score(scratch_, reference_);
  for (std::size_t c = 0; c < component_count; ++c) {
    if (!enabled_[c]) last_scores_[c] = nan;
  }
  last_index_ = combine(last_scores_);
  if (since_observation_ < s.drift.window) return std::nullopt;

  // One detector observation per W steps: the windows it sees do not overlap.
  since_observation_ = 0;
  const double sd = std::max(index_sd_, s.drift.sigma_floor);
  last_z_ = (last_index_ - index_mean_) / sd;
  if (!sdk::stats::signalled_lower(cusum_.update(last_z_))) return std::nullopt;
  restart_pending_ = true;
  return describe(s);
}

drift_finding agent_stability::describe(const settings& s) const {
  // The components that moved: this many of their own baseline sds below their baseline mean;
  // when none did on its own, the one that fell furthest.
  std::array<double, component_count> z;
  z.fill(nan);
  std::string moved;
  std::size_t worst = component_count;
  for (std::size_t c = 0; c < component_count; ++c) {
    if (!enabled_[c] || std::isnan(last_scores_[c])) continue;
    z[c] = (last_scores_[c] - mean_[c]) / std::max(sd_[c], s.drift.sigma_floor);
    if (worst == component_count || z[c] < z[worst]) worst = c;
    if (z[c] < -s.drift.moved_z)
      moved += std::string(moved.empty() ? "" : ",") + std::string(component_name(c));
  }
  if (moved.empty() && worst < component_count) moved = component_name(worst);
  drift_finding f;
  f.reason = "stability index " + format_number(last_index_) + " against its baseline " +
             format_number(index_mean_) + " +- " + format_number(index_sd_) + " (CUSUM " +
             format_number(cusum_.lower()) + " > " + format_number(s.drift.cusum_h) +
             "); moved: " + (moved.empty() ? std::string("none measurable") : moved);
  f.details = {{"moved", moved},
               {"index", format_number(last_index_)},
               {"baseline_index_mean", format_number(index_mean_)},
               {"baseline_index_sd", format_number(index_sd_)},
               {"z", format_number(last_z_)},
               {"cusum", format_number(cusum_.lower())},
               {"cusum_h", format_number(s.drift.cusum_h)},
               {"cusum_k", format_number(s.drift.cusum_k)}};
  for (std::size_t c = 0; c < component_count; ++c) {
    if (!enabled_[c]) continue;
    const std::string name(component_name(c));
    f.details.push_back({name, format_number(last_scores_[c])});
    f.details.push_back({name + "_baseline", format_number(mean_[c])});
    f.details.push_back({name + "_z", format_number(z[c])});
  }
  f.details.push_back({"response_mode", mode_ == response_mode::embedding ? "embedding"
                                        : mode_ == response_mode::digest  ? "digest"
                                                                          : "none"});
  f.details.push_back({"window_steps", std::to_string(s.drift.window)});
  f.details.push_back({"baseline_steps", std::to_string(baseline_size_)});
  return f;
}

// ---------------------------------------------------------------------------------------------
// snapshot

void agent_stability::save(sdk::state_writer& w) const {
  w.write_u64(steps_);
  w.write_u64(tool_ids_.size());
  for (const auto& [name, id] : tool_ids_) {
    w.write_string(name);
    w.write_u64(id);
  }
  w.write_u64(dim_);
  w.write_f64s(centroid_sum_);
  w.write_u64(embeddings_);
  w.write_f64s(centroid_);
  recent_outputs_.save(w);
  auto put_features = [&](const features& f) {
    w.write_f64(f.cosine);
    w.write_i64(f.repeated);
    w.write_bool(f.human);
    w.write_f64(f.agreement);
    w.write_f64(f.log_output);
    w.write_f64(f.log_reasoning);
    w.write_u64(f.tools.size());
    for (std::uint32_t t : f.tools) w.write_u64(t);
  };
  w.write_u64(baseline_.size());
  for (const features& f : baseline_) put_features(f);
  w.write_u64s(baseline_sessions_);
  w.write_u64(baseline_embeddings_);
  w.write_u64(baseline_digests_);
  w.write_bool(restart_pending_);
  w.write_bool(calibrated_);
  if (!calibrated_) return;
  w.write_u64(baseline_size_);
  w.write_u64(static_cast<std::uint64_t>(mode_));
  w.write_f64s(output_cuts_);
  w.write_f64s(reasoning_cuts_);
  w.write_bool(use_output_);
  w.write_bool(use_reasoning_);
  w.write_f64s(reference_.tools);
  w.write_f64s(reference_.output_bins);
  w.write_f64s(reference_.reasoning_bins);
  for (double v : {reference_.cos_sum, reference_.cos_n, reference_.rep_sum, reference_.rep_n,
                   reference_.agree_sum, reference_.agree_n, reference_.human, reference_.steps}) {
    w.write_f64(v);
  }
  for (std::size_t c = 0; c < component_count; ++c) {
    w.write_bool(enabled_[c]);
    w.write_f64(mean_[c]);
    w.write_f64(sd_[c]);
    w.write_f64(weights_[c]);
  }
  w.write_f64(index_mean_);
  w.write_f64(index_sd_);
  // The live window, oldest step first: categorical slots and scalars side by side.
  const auto tools = window_.tools.held_slots();
  const auto outs = window_.output_bins.held_slots();
  const auto reasons = window_.reasoning_bins.held_slots();
  w.write_u64(window_.ring.size());
  for (std::size_t i = 0; i < window_.ring.size(); ++i) {
    const auto& sc = window_.ring[i];
    w.write_f64(sc.cosine);
    w.write_i64(sc.repeated);
    w.write_bool(sc.human);
    w.write_f64(sc.agreement);
    w.write_u64(tools[i].size());
    for (std::uint32_t t : tools[i]) w.write_u64(t);
    w.write_i64(outs[i].empty() ? -1 : static_cast<std::int64_t>(outs[i][0]));
    w.write_i64(reasons[i].empty() ? -1 : static_cast<std::int64_t>(reasons[i][0]));
  }
  w.write_u64(since_observation_);
  const sdk::stats::cusum_state cs = cusum_.state();
  w.write_f64(cs.upper);
  w.write_f64(cs.lower);
  w.write_u64(static_cast<std::uint64_t>(cs.last));
  w.write_u64(cs.count);
  w.write_u64(cs.ignored);
  w.write_u64(cs.signals);
  w.write_f64(last_index_);
  w.write_f64(last_z_);
  for (double v : last_scores_) w.write_f64(v);
}

bool agent_stability::load(sdk::state_reader& r, const settings& s) {
  restart_baseline(s);
  tool_ids_.clear();
  const std::uint64_t categories = s.limits.max_tools + 2;
  const std::uint64_t bins = s.drift.length_bins;
  const std::uint64_t max_calls = s.limits.max_tool_calls_per_step + 1;
  steps_ = r.read_u64();
  std::uint64_t n = r.read_count(s.limits.max_tools);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    std::string name = r.read_string(128);
    const std::uint64_t id = r.read_count(categories - 1);
    if (id < 2) r.fail("a tool id below 2");
    tool_ids_[std::move(name)] = static_cast<std::uint32_t>(id);
  }
  dim_ = r.read_count(s.limits.max_embedding_dim);
  centroid_sum_ = r.read_f64s(dim_);
  embeddings_ = r.read_u64();
  centroid_ = r.read_f64s(dim_);
  if (r.ok() &&
      (centroid_sum_.size() != dim_ || (!centroid_.empty() && centroid_.size() != dim_))) {
    r.fail("a centroid of the wrong dimension");
  }
  if (!r.ok() || !recent_outputs_.load(r)) return false;
  auto read_tools = [&](std::vector<std::uint32_t>& tools) {
    tools.clear();
    const std::uint64_t k = r.read_count(max_calls);
    for (std::uint64_t t = 0; t < k && r.ok(); ++t) {
      tools.push_back(static_cast<std::uint32_t>(r.read_count(categories - 1)));
    }
  };
  auto read_repeated = [&]() {
    const std::int64_t rep = r.read_i64();
    if (rep < -1 || rep > 1) r.fail("a repetition flag outside {-1, 0, 1}");
    return static_cast<std::int8_t>(rep);
  };
  n = r.read_count(s.drift.max_baseline_steps);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    features f{};
    f.cosine = r.read_f64();
    f.repeated = read_repeated();
    f.human = r.read_bool();
    f.agreement = r.read_f64();
    f.log_output = r.read_f64();
    f.log_reasoning = r.read_f64();
    read_tools(f.tools);
    baseline_.push_back(std::move(f));
  }
  baseline_sessions_ = r.read_u64s(s.drift.baseline_sessions);
  baseline_embeddings_ = r.read_u64();
  baseline_digests_ = r.read_u64();
  restart_pending_ = r.read_bool();
  calibrated_ = r.read_bool();
  if (!r.ok() || !calibrated_) return r.ok();
  baseline_size_ = r.read_count(s.drift.max_baseline_steps);
  mode_ = static_cast<response_mode>(r.read_count(2));
  output_cuts_ = r.read_f64s(bins);
  reasoning_cuts_ = r.read_f64s(bins);
  use_output_ = r.read_bool();
  use_reasoning_ = r.read_bool();
  reference_.tools = r.read_f64s(categories);
  reference_.output_bins = r.read_f64s(bins);
  reference_.reasoning_bins = r.read_f64s(bins);
  if (r.ok() && (reference_.tools.size() != categories || reference_.output_bins.size() != bins ||
                 reference_.reasoning_bins.size() != bins)) {
    r.fail("reference histograms of the wrong size");
  }
  for (double* v :
       {&reference_.cos_sum, &reference_.cos_n, &reference_.rep_sum, &reference_.rep_n,
        &reference_.agree_sum, &reference_.agree_n, &reference_.human, &reference_.steps}) {
    *v = r.read_f64();
  }
  for (std::size_t c = 0; c < component_count; ++c) {
    enabled_[c] = r.read_bool();
    mean_[c] = r.read_f64();
    sd_[c] = r.read_f64();
    weights_[c] = r.read_f64();
  }
  index_mean_ = r.read_f64();
  index_sd_ = r.read_f64();
  n = r.read_count(s.drift.window);
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    features f{};
    f.cosine = r.read_f64();
    f.repeated = read_repeated();
    f.human = r.read_bool();
    f.agreement = r.read_f64();
    read_tools(f.tools);
    const std::int64_t ob = r.read_i64();
    const std::int64_t rb = r.read_i64();
    const auto nbins = static_cast<std::int64_t>(bins);
    if (ob < -1 || rb < -1 || ob >= nbins || rb >= nbins) r.fail("a length bin out of range");
    if (r.ok()) window_.push(f, static_cast<int>(ob), static_cast<int>(rb));
  }
  since_observation_ = r.read_count(s.drift.window);
  sdk::stats::cusum_state cs;
  cs.upper = r.read_f64();
  cs.lower = r.read_f64();
  cs.last = static_cast<sdk::stats::signal_side>(r.read_count(3));
  cs.count = r.read_u64();
  cs.ignored = r.read_u64();
  cs.signals = r.read_u64();
  if (!r.ok()) return false;
  try {
    cusum_.restore(cs);
  } catch (const std::exception& e) {
    r.fail(e.what());
    return false;
  }
  last_index_ = r.read_f64();
  last_z_ = r.read_f64();
  for (double& v : last_scores_) v = r.read_f64();
  return r.ok();
}

}  // namespace loopwarden::agent_drift
