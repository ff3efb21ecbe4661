#pragma once
// Embedding batches (loopwarden.v1.EmbeddingBatch) for variance_collapse: per run, the vectors of
// each generation (or window) of the generated stream are summarised as they arrive — per-dimension
// mean and variance (total variance = trace of the covariance), the cosine Gram matrix (Vendi
// scores), the share beyond the baseline's high distance quantile — and compared with the
// baseline (the first generation of the generated stream, or a declared reference stream) when the
// generation completes.
//
// Memory per run: the open generation's Gram matrix (8·d² bytes) and per-dimension moments
// (16·d); while the baseline forms, also a reservoir of at most `baseline_reservoir` vectors
// (4·d bytes each, as floats); after it, only the baseline's mean and its sorted distances
// (8 bytes each). d ≤ max_dimension, and at most max_runs runs hold embedding state.
// Thread-safety: not thread-safe (owned by the monitor, never called concurrently).

#include <Eigen/Core>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <loopwarden/v1/generation.pb.h>
#include <loopwarden/context.hpp>
#include <loopwarden/state_codec.hpp>
#include <loopwarden/stats/gram.hpp>

#include "decision.hpp"

namespace loopwarden::variance_collapse {

struct embedding_settings {
  std::vector<std::string> streams;  // generated streams; empty = every stream but the reference
  std::string reference_stream;      // "" = the first generation of the generated stream
  std::uint64_t window = 256;        // vectors per window for batches without a generation
  std::uint64_t max_dimension = 1024;
  std::uint64_t baseline_reservoir = 1024;
  std::uint64_t max_runs = 8;
  double dispersion_floor = 0.5;  // floor on the total-variance ratio (with confidence 1 − alpha)
  double tail_quantile = 0.95;
  double vendi_floor = 0.4;
  std::uint64_t spectrum_max_dimension = 256;  // Shannon Vendi / effective rank (O(d³)) up to this
};

// Per-dimension count, mean and sum of squared deviations (Welford per coordinate): the total
// variance trace(cov) = Σ m2 / (n − 1) without the d × d scatter.
struct diagonal_moments {
  explicit diagonal_moments(Eigen::Index d)
      : mean(Eigen::VectorXd::Zero(d)), m2(Eigen::VectorXd::Zero(d)), delta(d) {}
  // Adds every row of `rows` (n × d).
  void add_rows(const Eigen::Ref<const Eigen::MatrixXd>& rows);
  double total_variance() const;  // ddof 1; NaN below 2 vectors
  std::uint64_t count = 0;
  Eigen::VectorXd mean;
  Eigen::VectorXd m2;
  Eigen::VectorXd delta;  // workspace, sized once
};

// Counters of what the embedding input refused, for gauges.
struct embedding_counters {
  std::uint64_t bad_batches =
      0;  // malformed: no dim, size not rows·dim, dim over the cap or changing
  std::uint64_t ignored_vectors = 0;  // non-finite or zero vectors
  std::uint64_t late_vectors =
      0;  // of a generation already completed, or reference after the freeze
  std::uint64_t unused_vectors = 0;   // of other streams, or with no baseline to compare with
  std::uint64_t dropped_batches = 0;  // of runs beyond max_runs (a new run needs a free slot)
};

class embedding_run;

// All runs' embedding state.
class embedding_input {
 public:
  embedding_input(const embedding_settings& es, const decision_settings& ds, double alpha);
  ~embedding_input();
  // Runs keep a reference to their input: it stays where it was made.
  embedding_input(const embedding_input&) = delete;
  embedding_input& operator=(const embedding_input&) = delete;

  // One batch of run `run_id`; completed generations are evaluated and handed to `decision`.
  void on_batch(const std::string& run_id, const v1::EmbeddingBatch& batch, run_decision& decision,
                sdk::context& ctx);
  // The run's summary of generation g arrived: generations up to g are complete.
  void complete_through(const std::string& run_id, std::int64_t generation, run_decision& decision,
                        sdk::context& ctx);

  const embedding_counters& counters() const { return counters_; }
  std::size_t runs() const { return runs_.size(); }
  // Bytes of vector state held (Gram matrices, moments, reservoirs, distances): the memory bound.
  std::size_t state_bytes() const;

  void write(sdk::state_writer& w) const;
  void read(sdk::state_reader& r, std::uint64_t max_runs);

 private:
  friend class embedding_run;
  const embedding_settings* es_;
  const decision_settings* ds_;
  double alpha_;
  std::map<std::string, std::unique_ptr<embedding_run>> runs_;
  embedding_counters counters_;
};

}  // namespace loopwarden::variance_collapse
