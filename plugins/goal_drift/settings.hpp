#pragma once
// goal_drift settings: everything an operator can set, with the documented defaults
// (docs/monitors/goal-drift.md), and the parser that refuses a bad config naming field and line.

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <loopwarden/config_node.hpp>
#include <loopwarden/status.hpp>

namespace loopwarden::sdk::stats {}  // namespace loopwarden::sdk::stats

namespace loopwarden::goal_drift {

namespace sdk = loopwarden::sdk;
namespace stats = loopwarden::sdk::stats;

// The four drift components, in the order of the index, the gauges and the evidence.
enum class component : std::size_t { semantic, lexical, structural, distributional };
inline constexpr std::size_t component_count = 4;
inline constexpr std::array<std::string_view, component_count> component_names = {
    "semantic", "lexical", "structural", "distributional"};

// How the semantic component is measured from embeddings.
enum class semantic_method {
  mean,      // 1 − cos(mean candidate, mean reference)
  pairwise,  // 1 − mean over all pairs of cos(candidate_i, reference_j)
};

// How the lexical component is measured from token ids.
enum class lexical_method {
  set,       // 1 − Jaccard index of the sets of distinct n-grams
  multiset,  // 1 − weighted Jaccard index of the n-gram counts
};

// How far two weights may sum from 1 before the config is refused.
inline constexpr double weight_sum_tolerance = 1e-3;

struct settings {
  // Index weights, normalised to sum exactly 1 after the tolerance check. A weight of 0 leaves
  // the component out of the index (it is still measured and published as a gauge).
  std::array<double, component_count> weights = {0.25, 0.25, 0.25, 0.25};
  semantic_method semantic = semantic_method::mean;
  lexical_method lexical = lexical_method::set;
  std::size_t ngram = 1;             // n-gram order of the lexical component
  double histogram_smoothing = 0.0;  // additive smoothing before Jensen–Shannon

  // Threshold: the prior until `calibration_cycles` trusted cycles were seen, then
  // max(floor, mean + k·max(sd, min_sd)) of their indices (sd with ddof 1).
  double prior = 0.44;
  std::size_t calibration_cycles = 5;  // 0: keep the prior for the whole run (and no CUSUM)
  double k = 3.0;
  double floor = 0.1;
  double min_sd = 0.02;

  // One-sided upper CUSUM on (index − mean) / max(sd, min_sd) after calibration.
  bool cusum_enabled = true;
  double cusum_k = 0.5;
  double cusum_h = 4.0;

  // Regression: a capability metric below (best trusted value − margin), in its own units.
  double regression_margin = 0.05;
  std::map<std::string, double> regression_margins;  // per-metric overrides

  // Knee: alignment lost per unit of capability gained over `knee_window` cycles.
  std::size_t knee_window = 3;
  double knee_ratio_limit = 0.0;  // 0: a gauge only; > 0: a failed check above it
  std::size_t knee_consecutive = 2;

  std::uint64_t max_cycles = 8;
  std::size_t max_runs = 1000;
  std::size_t max_metrics = 64;  // distinct capability metric names remembered per run

  std::string drift_breaker = "improvement.goal_drift";
  std::string constraint_breaker = "improvement.constraint";
  std::string cycle_cap_breaker = "improvement.cycle_cap";
};

// Parses the monitor's `config:` node (missing or null: every default). Errors are
// invalid_argument statuses naming the field path and line, e.g.
//   monitors[0].config.weights: weights sum to 0.9, expected 1 (within 0.001) (gd.yaml:7)
sdk::status parse_settings(const sdk::config_node& config, settings& out);

// "semantic" ... for a component.
inline std::string_view name_of(component c) {
  return component_names[static_cast<std::size_t>(c)];
}

}  // namespace loopwarden::goal_drift
