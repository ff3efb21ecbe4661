#pragma once
// agent_stability: one agent's stability index against its own early baseline, and the
// calibrated downward change detector on it (docs/monitors/agent-drift.md, "Stability index").
//
//   steps 1..B           the baseline: per-step features are kept (B = drift.baseline_steps,
//                        extended until the steps span drift.baseline_sessions sessions, at
//                        most drift.max_baseline_steps)
//   after step B         calibration: length bins from the baseline's quantiles, the reference
//                        histograms and rates, and the in-control mean and sd of the index over
//                        every window of W consecutive baseline steps (W = drift.window), each
//                        scored against the rest of the baseline
//   each later step      the index of the last W steps (a gauge)
//   every W later steps  one observation for a lower CUSUM on (index − mean) / sd: the windows
//                        do not overlap, so the observations are as independent as the steps
//   a signal             agent.drift with the components that moved; the agent then learns a
//                        new baseline from its next B steps

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <loopwarden/v1/agent.pb.h>
#include <loopwarden/state_codec.hpp>
#include <loopwarden/stats/cusum.hpp>
#include <loopwarden/stats/window_histogram.hpp>
#include <loopwarden/types.hpp>

#include "bounded_set.hpp"
#include "settings.hpp"

namespace loopwarden::agent_drift {

// A step as the index sees it, after the monitor checked its numbers.
struct agent_step_input {
  const v1::AgentStep& step;         // its session_id counts towards the baseline's sessions
  std::span<const float> embedding;  // empty when absent or refused (wrong size, non-finite)
  double agreement;                  // [0, 1]; NaN when unknown
  double log_output_length;          // ln(1 + output_length); NaN when refused
  double log_reasoning_length;       // ln(1 + reasoning_length); NaN when refused
};

// An agent.drift trip.
struct drift_finding {
  std::string reason;
  sdk::evidence details;
};

// How the response-consistency component is measured for this agent.
enum class response_mode : std::uint8_t { none, embedding, digest };

// Thread-safety: one owner (the monitor's worker).
class agent_stability {
 public:
  explicit agent_stability(const settings& s);

  // Feeds one step. Returns a finding when the detector signals (the agent then re-baselines).
  std::optional<drift_finding> observe(const agent_step_input& in, const settings& s);

  bool calibrated() const { return calibrated_; }
  std::uint64_t steps() const { return steps_; }
  // The index of the last W steps; NaN before calibration or a full window.
  double index() const { return last_index_; }
  // The standardised index of the last detector observation, and the lower CUSUM after it.
  double last_z() const { return last_z_; }
  double cusum_lower() const { return cusum_.lower(); }
  double baseline_mean() const { return index_mean_; }
  double baseline_sd() const { return index_sd_; }
  // The component scores of the last W steps (NaN where absent or disabled).
  const std::array<double, component_count>& scores() const { return last_scores_; }
  response_mode mode() const { return mode_; }
  // Embedding dimension fixed by the agent's first embedding (0 before).
  std::size_t dimension() const { return dim_; }

  void save(sdk::state_writer& w) const;
  bool load(sdk::state_reader& r, const settings& s);

 private:
  // What one step contributes.
  struct features {
    double cosine;         // to the centroid (the running one during the baseline); NaN if none
    std::int8_t repeated;  // digest mode: the output repeats a recent one (1) or not (0); -1
    bool human;
    double agreement;  // NaN if unknown
    double log_output;
    double log_reasoning;
    std::vector<std::uint32_t> tools;  // tool ids; no_tool for a step without calls
  };
  // Sums over a set of steps (a window, the baseline, the baseline minus a window).
  struct totals {
    std::vector<double> tools;
    std::vector<double> output_bins;
    std::vector<double> reasoning_bins;
    double cos_sum = 0, cos_n = 0, rep_sum = 0, rep_n = 0, agree_sum = 0, agree_n = 0;
    double human = 0, steps = 0;
  };
  // The recent window: categorical parts in window_histograms, scalars in a ring.
  struct window {
    window(std::size_t w, std::size_t tools, std::size_t bins);
    void push(const features& f, int output_bin, int reasoning_bin);
    // Fills `t` (reusing its vectors' storage).
    void sums(totals& t) const;
    void clear();
    sdk::stats::window_histogram tools, output_bins, reasoning_bins;
    struct scalars {
      double cosine;
      std::int8_t repeated;
      bool human;
      double agreement;
    };
    std::deque<scalars> ring;
    std::size_t capacity;
  };

  static constexpr std::uint32_t no_tool = 0;     // a step without tool calls
  static constexpr std::uint32_t other_tool = 1;  // tools beyond limits.max_tools
  std::uint32_t tool_id(const std::string& name, const settings& s);
  features extract(const agent_step_input& in, const settings& s);
  void calibrate(const settings& s);
  // Component scores of `win` against `ref`; NaN where a component cannot be measured.
  std::array<double, component_count> score(const totals& win, const totals& ref) const;
  // The weighted index of scores, absent components replaced by their baseline mean.
  double combine(const std::array<double, component_count>& scores) const;
  int bin_of(const std::vector<double>& cuts, double v) const;
  drift_finding describe(const settings& s) const;
  void restart_baseline(const settings& s);

  std::uint64_t steps_ = 0;
  std::map<std::string, std::uint32_t> tool_ids_;  // name -> id (from 2), at most max_tools

  // Embeddings: the dimension is fixed by the first; the centroid of unit vectors is the mean
  // direction of the baseline's outputs.
  std::size_t dim_ = 0;
  std::vector<double> centroid_sum_;  // Σ of unit embeddings over the baseline so far
  std::uint64_t embeddings_ = 0;      // embeddings in that sum
  std::vector<double> centroid_;      // unit centroid, fixed at calibration
  std::vector<double> embedding_;     // the step's embedding in double, reused from step to step
  bounded_set recent_outputs_;        // digests of the last outputs (digest mode)

  std::vector<features> baseline_;                // while learning; emptied at calibration
  std::vector<std::uint64_t> baseline_sessions_;  // distinct sessions seen, up to the number needed
  std::uint64_t baseline_embeddings_ = 0;
  std::uint64_t baseline_digests_ = 0;

  bool calibrated_ = false;
  std::uint64_t baseline_size_ = 0;  // steps the calibrated baseline held
  bool restart_pending_ = false;     // the detector signalled: re-baseline from the next step
  response_mode mode_ = response_mode::none;
  std::vector<double> output_cuts_;
  std::vector<double> reasoning_cuts_;
  bool use_output_ = false;
  bool use_reasoning_ = false;
  totals reference_;
  totals scratch_;                                 // the window's sums, reused from step to step
  std::array<double, component_count> weights_{};  // drift.weights at calibration
  std::array<bool, component_count> enabled_{};
  std::array<double, component_count> mean_{};  // per component, over the baseline windows
  std::array<double, component_count> sd_{};
  double index_mean_;
  double index_sd_;

  window window_;
  std::uint64_t since_observation_ = 0;
  sdk::stats::cusum cusum_;
  double last_index_;
  double last_z_;
  std::array<double, component_count> last_scores_;
};

}  // namespace loopwarden::agent_drift
