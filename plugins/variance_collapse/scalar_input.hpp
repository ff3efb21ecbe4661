#pragma once
// Scalar sample streams (MetricsBatch samples whose name is configured) for variance_collapse:
// per run and metric, samples are grouped by their step (= generation) or into fixed windows; the
// first group is the baseline; each later group is compared with it when it completes: variance
// ratio, the share outside the baseline's low and high order statistics (an exact beta-binomial
// test), and PSI on baseline-quantile bins against a bootstrap threshold at the group's size.
//
// Memory per run and metric: the baseline's sorted sample (≤ max_baseline_samples doubles), its
// bin counts, a cache of ≤ 32 thresholds, and O(bins) for the open group.
// Thread-safety: not thread-safe (owned by the monitor, never called concurrently).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <loopwarden/v1/metrics.pb.h>
#include <loopwarden/context.hpp>
#include <loopwarden/state_codec.hpp>

#include "decision.hpp"

namespace loopwarden::variance_collapse {

struct scalar_settings {
  std::vector<std::string> names;  // MetricSample names to watch; none by default
  bool by_step = true;             // group_by: step (true) or window
  std::uint64_t window = 200;      // samples per window (group_by: window)
  std::uint64_t bins = 10;         // PSI bins: the baseline's deciles by default
  std::uint64_t max_baseline_samples = 4096;
  std::uint64_t min_group = 10;    // smaller groups are counted and not evaluated
  std::uint64_t replicates = 400;  // bootstrap replicates per threshold
  double dispersion_floor = 0.3;   // floor on the variance ratio (with confidence 1 − alpha)
  double psi_floor = 1.0;          // material PSI, added to the bootstrap threshold
  double low_quantile = 0.05;
  double high_quantile = 0.95;
};

struct scalar_counters {
  std::uint64_t ignored_samples = 0;  // non-finite values
  std::uint64_t late_samples = 0;     // of a group already completed
  std::uint64_t unused_samples = 0;   // in groups too small to evaluate
};

class scalar_stream;

// All runs' scalar streams.
class scalar_input {
 public:
  scalar_input(const scalar_settings& ss, const decision_settings& ds, double alpha,
               double smoothing);
  ~scalar_input();
  scalar_input(const scalar_input&) = delete;
  scalar_input& operator=(const scalar_input&) = delete;

  bool watches(const std::string& name) const;
  // The samples of watched metrics in one batch of run `run_id`, in order.
  void on_batch(const std::string& run_id, const v1::MetricsBatch& batch, run_decision& decision,
                sdk::context& ctx);
  // The run's summary of generation g arrived: step groups up to g are complete.
  void complete_through(const std::string& run_id, std::int64_t generation, run_decision& decision,
                        sdk::context& ctx);

  const scalar_counters& counters() const { return counters_; }
  std::size_t state_bytes() const;

  void write(sdk::state_writer& w) const;
  void read(sdk::state_reader& r, std::uint64_t max_runs);

 private:
  friend class scalar_stream;
  const scalar_settings* ss_;
  const decision_settings* ds_;
  double alpha_;
  double smoothing_;
  // run id -> metric name -> stream; ordered for deterministic replay.
  std::map<std::string, std::map<std::string, std::unique_ptr<scalar_stream>>> runs_;
  scalar_counters counters_;
};

}  // namespace loopwarden::variance_collapse
