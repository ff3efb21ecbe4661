#pragma once
// The per-run decision of variance_collapse: every input (generation summaries, embedding
// batches, scalar sample streams) evaluates its statistics for a generation and hands them here;
// this is where crossings become a training.collapse trip, with the consecutive rule, the
// generations' health, and the last healthy generation to roll back to. Also the charts every
// input runs on its per-generation log-dispersion series (CUSUM, EWMA chart, trend).
//
// Thread-safety: none of these types is thread-safe; the monitor owns them and the host never
// calls one monitor instance concurrently.

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <loopwarden/context.hpp>
#include <loopwarden/state_codec.hpp>
#include <loopwarden/stats/cusum.hpp>
#include <loopwarden/stats/ewma.hpp>
#include <loopwarden/stats/trend.hpp>

namespace loopwarden::variance_collapse {

namespace sdk = loopwarden::sdk;
namespace stats = loopwarden::sdk::stats;

inline constexpr double nan = std::numeric_limits<double>::quiet_NaN();

// Four significant digits, as evidence shows numbers ("0.4912", "1.2e-05").
std::string format_number(double v);

// One statistic of one generation against its limit.
struct statistic_check {
  std::string statistic;  // distinct across inputs, e.g. "embeddings.dispersion_ratio"
  double value = nan;
  double limit = nan;
  bool below = true;  // it crosses by falling below the limit (else by rising above it)
  bool crossed = false;
  bool immediate = false;  // trips without waiting for `consecutive` generations
  std::vector<std::pair<std::string, std::string>> details;  // extra evidence when it decides
};

// Appends a check that crosses when value is strictly beyond limit (NaN never crosses).
void add_check(std::vector<statistic_check>& out, std::string statistic, double value, double limit,
               bool below, bool immediate = false);

// Settings the decision and the charts share (parsed by the monitor; defaults documented in
// docs/monitors/variance-collapse.md).
struct decision_settings {
  std::uint64_t consecutive = 2;
  std::size_t trend_window = 8;
  double dispersion_floor = 0.7;  // the floor projections aim at
  // The share of a baseline's tails that must be lost before a tail check may cross: the
  // summaries' tail_ratio floor, and the material loss the scalar and embedding tail tests test
  // against (stats::tail_loss_p_value), so every input calls the same loss collapse.
  double tail_floor = 0.5;
  double cusum_k = 0.5;
  double cusum_h = 7.0;
  double ewma_lambda = 0.5;
  double ewma_width = 3.7;
  std::string collapse_breaker = "training.collapse";
};

// Limits of what a snapshot may hold (a corrupt count must not allocate gigabytes).
inline constexpr std::uint64_t max_tracked_generations = 256;
inline constexpr std::uint64_t max_statistics_per_run = 4096;

// A per-generation series of ln(dispersion / baseline dispersion) with the sampling variance of
// each point, and the charts on its standardised increments
//   z_g = (ln r_g − ln r_{g−1}) / sqrt(v_g + v_{g−1})
// (v_0 the baseline's): a two-sided CUSUM and an EWMA chart, whose lower sides signal a sudden
// fall of the spread, and a least-squares trend of ln r for the projection to the floor.
class log_ratio_series {
 public:
  explicit log_ratio_series(const decision_settings& s);

  // Starts the series at the baseline, whose ln ratio is 0 by definition, with its variance.
  void set_baseline_variance(double v) { previous_variance_ = v; }

  // Adds generation g. Appends `<prefix>log_dispersion_cusum` and `<prefix>log_dispersion_ewma`
  // checks (immediate; crossed on a lower signal) when the increment is usable, and publishes
  // `<prefix>log_dispersion_slope` and `<prefix>projected_generations_to_floor`.
  void add(std::int64_t generation, double log_ratio, double variance, const std::string& prefix,
           std::vector<statistic_check>& checks, sdk::context& ctx);

  void write(sdk::state_writer& w) const;
  void read(sdk::state_reader& r);

 private:
  // The sample variance of the increments of ln r among the trend window's points before the
  // current one (NaN with fewer than 3): the observed noise, derived from the trend's state.
  double observed_increment_variance() const;

  const decision_settings* s_;
  double previous_log_ratio_ = 0.0;
  double previous_variance_ = nan;
  stats::cusum cusum_;
  stats::ewma_chart ewma_;
  stats::trend trend_;
};

// The decision of one run across its inputs.
class run_decision {
 public:
  // Generation g is a baseline (healthy by definition), with its checkpoint if known.
  void note_baseline(std::int64_t generation, const std::string& checkpoint);
  // The checkpoint that generation g produced (from its summary).
  void note_checkpoint(std::int64_t generation, const std::string& checkpoint);

  // Applies one input's checks of generation g: updates each statistic's run of consecutive
  // crossings and the generation's health, and trips `collapse_breaker` when a crossing is
  // decisive (immediate, or `consecutive` generations in a row) and the run has not tripped since
  // its last healthy generation. Publishes the last_healthy_generation gauge.
  void decide(std::int64_t generation, const std::vector<statistic_check>& checks,
              const decision_settings& s, sdk::context& ctx);

  // The highest healthy generation below `before` (nullopt: none known).
  std::optional<std::int64_t> last_healthy(std::int64_t before) const;
  std::string checkpoint_of(std::int64_t generation) const;

  void write(sdk::state_writer& w) const;
  void read(sdk::state_reader& r);

 private:
  struct streak {
    std::uint64_t in_a_row = 0;
    std::int64_t since = 0;  // the generation the current run of crossings began
  };
  struct health {
    bool reported = false;  // some input evaluated this generation (or it is a baseline)
    bool crossed = false;   // some input crossed in it
    std::string checkpoint;
  };

  health& record(std::int64_t generation);

  std::map<std::string, streak> streaks_;  // statistic -> its current run of crossings
  std::map<std::int64_t, health> health_;  // the last max_tracked_generations generations
  health scratch_;  // what record() hands out for a generation older than all of health_
  std::optional<std::int64_t> healthy_floor_;  // highest healthy generation evicted from health_
  std::string healthy_floor_checkpoint_;
  bool tripped_ = false;
  std::int64_t tripped_at_ = 0;
};

}  // namespace loopwarden::variance_collapse
