#include "embedding_input.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include <loopwarden/stats/dispersion.hpp>
#include <loopwarden/stats/distribution.hpp>
#include <loopwarden/stats/diversity.hpp>
#include <loopwarden/stats/welford.hpp>

namespace loopwarden::variance_collapse {

namespace {

// A stable 64-bit seed from a run id (FNV-1a, then splitmix): the reservoir's choices depend on
// the run and the vector's index only, so a replay or a restored snapshot keeps the same vectors.
std::uint64_t seed_of(const std::string& run_id) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : run_id) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return stats::mix64(h);
}

void write_vector(sdk::state_writer& w, const Eigen::VectorXd& v) {
  w.write_f64s(std::span<const double>(v.data(), static_cast<std::size_t>(v.size())));
}

Eigen::VectorXd read_vector(sdk::state_reader& r, Eigen::Index d) {
  const std::vector<double> values = r.read_f64s(static_cast<std::uint64_t>(d));
  if (r.ok() && values.size() != static_cast<std::size_t>(d)) r.fail("a vector of the wrong size");
  if (!r.ok()) return Eigen::VectorXd::Zero(d);
  return Eigen::Map<const Eigen::VectorXd>(values.data(), d);
}

void write_moments(sdk::state_writer& w, const diagonal_moments& m) {
  w.write_u64(m.count);
  write_vector(w, m.mean);
  write_vector(w, m.m2);
}

void read_moments(sdk::state_reader& r, diagonal_moments& m) {
  m.count = r.read_u64();
  m.mean = read_vector(r, m.mean.size());
  m.m2 = read_vector(r, m.m2.size());
}

void write_gram(sdk::state_writer& w, const stats::gram_accumulator& g) {
  w.write_f64s(g.lower_triangle());
  w.write_u64(g.count());
  w.write_u64(g.ignored());
  w.write_f64(g.sum_squared_norms());
  w.write_f64(g.sum_fourth_norms());
}

void read_gram(sdk::state_reader& r, stats::gram_accumulator& g) {
  const auto d = static_cast<std::uint64_t>(g.dimension());
  std::vector<double> lower = r.read_f64s(d * (d + 1) / 2);
  const std::uint64_t count = r.read_u64();
  const std::uint64_t ignored = r.read_u64();
  const double a = r.read_f64();
  const double a2 = r.read_f64();
  if (!r.ok()) return;
  try {
    g.set_state(lower, count, ignored, a, a2);
  } catch (const std::invalid_argument& e) {
    r.fail(e.what());
  }
}

}  // namespace

void diagonal_moments::add_rows(const Eigen::Ref<const Eigen::MatrixXd>& rows) {
  if (rows.rows() == 0) return;
  // The batch's own mean and centred sums of squares, column by column (contiguous), then Chan,
  // Golub & LeVeque's combination: m2 = m2_a + m2_b + δ²·n_a·n_b/n.
  const auto nb = static_cast<double>(rows.rows());
  const Eigen::RowVectorXd batch_mean = rows.colwise().mean();
  const Eigen::RowVectorXd batch_m2 = (rows.rowwise() - batch_mean).colwise().squaredNorm();
  const auto na = static_cast<double>(count);
  count += static_cast<std::uint64_t>(rows.rows());
  const double n = static_cast<double>(count);
  delta = batch_mean.transpose() - mean;
  mean += delta * (nb / n);
  m2 += batch_m2.transpose() + delta.cwiseAbs2() * (na * nb / n);
}

double diagonal_moments::total_variance() const {
  if (count < 2) return nan;
  return m2.sum() / static_cast<double>(count - 1);
}

// ---------------------------------------------------------------------------------------------
// One run's embedding state.

class embedding_run {
 public:
  embedding_run(embedding_input& in, Eigen::Index dim, std::uint64_t seed)
      : in_(in), dim_(dim), seed_(seed), series_(*in.ds_) {
    start_baseline();
  }

  Eigen::Index dimension() const { return dim_; }

  // Adds the finite rows of a generated batch of generation `generation` (nullopt: windowed).
  void add_generated(const Eigen::Ref<const Eigen::MatrixXd>& rows,
                     std::optional<std::int64_t> generation, run_decision& decision,
                     sdk::context& ctx);
  void add_reference(const Eigen::Ref<const Eigen::MatrixXd>& rows);
  void complete_through(std::int64_t generation, run_decision& decision, sdk::context& ctx);
  std::size_t state_bytes() const;

  void write(sdk::state_writer& w) const;
  void read(sdk::state_reader& r);

 private:
  // The baseline while it forms, then what is kept of it.
  struct baseline {
    explicit baseline(Eigen::Index d) : moments(d), gram(d) {}
    bool ready = false;
    bool open = false;             // a generated generation is collecting into it (no reference)
    std::int64_t generation = -1;  // which one (generation or window index)
    diagonal_moments moments;      // every vector of the baseline
    stats::gram_accumulator gram;  // cosine; emptied once ready
    std::vector<float> reservoir;  // ≤ baseline_reservoir rows × d, uniform sample of the baseline
    std::uint64_t seen = 0;        // vectors offered to the reservoir
    // Kept once ready:
    double total_variance = nan;
    double d_eff = 1.0;
    // n·Var(ln TV) under no change: max(2/d_eff, CV² of the squared distances). Not persisted:
    // recomputed from d_eff and distances (noise_factor) when the baseline completes or is read.
    double noise = 2.0;
    double vendi2 = nan;  // debiased order-2 Vendi score
    double vendi = nan;   // Shannon Vendi score (d ≤ spectrum_max_dimension)
    double effective_rank = nan;
    std::vector<double> distances;     // sorted distances of the reservoir to the mean
    std::uint64_t threshold_rank = 0;  // j: the threshold is the j-th smallest distance
    double threshold = nan;
  };
  // The generation being collected, once the baseline is ready.
  struct group {
    group(std::int64_t g, Eigen::Index d) : generation(g), moments(d), gram(d) {}
    std::int64_t generation;
    diagonal_moments moments;
    stats::gram_accumulator gram;
    std::uint64_t beyond = 0;  // vectors farther from the baseline mean than the threshold
  };

  void start_baseline() { base_ = std::make_unique<baseline>(dim_); }
  void add_to_baseline(const Eigen::Ref<const Eigen::MatrixXd>& rows);
  void add_to_group(const Eigen::Ref<const Eigen::MatrixXd>& rows);
  // Closes the baseline (finite summaries, reservoir freed); false when it had under 2 vectors.
  bool finish_baseline();
  void evaluate(run_decision& decision, sdk::context& ctx);
  // Routes rows of generation g (a generation, or a window index) to the baseline or the open
  // generation, completing what a later generation completes.
  void route(const Eigen::Ref<const Eigen::MatrixXd>& rows, std::int64_t g, run_decision& decision,
             sdk::context& ctx);
  void close_baseline_generation(run_decision& decision);

  embedding_input& in_;
  Eigen::Index dim_;
  std::uint64_t seed_;
  std::unique_ptr<baseline> base_;
  std::optional<group> open_;
  std::optional<std::int64_t> completed_through_;
  int mode_ = 0;  // 0 not yet known, 1 generations, 2 windows (fixed by the first generated batch)
  std::uint64_t window_fill_ = 0;
  std::int64_t next_window_ = 0;
  log_ratio_series series_;
};

void embedding_run::add_to_baseline(const Eigen::Ref<const Eigen::MatrixXd>& rows) {
  base_->gram.add_batch(rows);
  base_->moments.add_rows(rows);
  const auto cap = in_.es_->baseline_reservoir;
  const auto d = static_cast<std::size_t>(dim_);
  for (Eigen::Index i = 0; i < rows.rows(); ++i) {
    // Reservoir sampling (Vitter's algorithm R) with a choice that depends on the run and the
    // vector's index only.
    std::uint64_t slot = base_->seen;
    if (base_->seen >= cap) slot = stats::mix64(seed_ ^ base_->seen) % (base_->seen + 1);
    ++base_->seen;
    if (slot >= cap) continue;
    if (base_->reservoir.size() < (slot + 1) * d) base_->reservoir.resize((slot + 1) * d);
    for (std::size_t j = 0; j < d; ++j) {
      base_->reservoir[slot * d + j] = static_cast<float>(rows(i, static_cast<Eigen::Index>(j)));
    }
  }
}

// n·Var(ln TV) under no change, for a generation of n vectors. For Gaussian vectors
// Var(tr S) = 2 tr(Σ²)/(n − 1), i.e. 2/d_eff; in general, to first order, Var(tr S) ≈
// Var(‖x − μ‖²)/n, i.e. the squared coefficient of variation of the squared distances to the
// mean, which heavy tails (a Student-t 3 has no fourth moment) make far larger than 2/d_eff. The
// larger of the two (from the baseline's reservoir) is the noise: the Gaussian value is the floor,
// as the scalar streams' kurtosis is never below 3 — a plug-in from a finite reservoir
// understates heavy tails, and understating the noise would make the checks fire more often
// than alpha.
namespace {
double noise_factor(double d_eff, const std::vector<double>& distances) {
  const double gaussian = 2.0 / d_eff;
  if (distances.size() < 2) return gaussian;
  stats::welford squared;
  for (double d : distances) squared.add(d * d);
  const double mean = squared.mean();
  const double cv2 = mean > 0.0 ? squared.sample_variance() / (mean * mean) : 0.0;
  return std::isfinite(cv2) ? std::max(gaussian, cv2) : gaussian;
}
}  // namespace

bool embedding_run::finish_baseline() {
  baseline& b = *base_;
  if (b.moments.count < 2) return false;
  b.total_variance = b.moments.total_variance();
  const Eigen::Index m = static_cast<Eigen::Index>(b.reservoir.size()) / dim_;
  Eigen::MatrixXd rows(m, dim_);
  for (Eigen::Index i = 0; i < m; ++i) {
    for (Eigen::Index j = 0; j < dim_; ++j) {
      rows(i, j) = b.reservoir[static_cast<std::size_t>(i * dim_ + j)];
    }
  }
  // d_eff of the baseline covariance, from the reservoir (the plug-in is biased low when m is
  // not large against d, which overstates the noise: the tests it feeds err quiet).
  if (m >= 2) {
    stats::dispersion cov(dim_);
    cov.add_batch(rows);
    const double pr = stats::participation_ratio(cov.covariance(1));
    if (std::isfinite(pr) && pr >= 1.0) b.d_eff = pr;
  }
  b.vendi2 = b.gram.debiased_order2_vendi();
  if (static_cast<std::uint64_t>(dim_) <= in_.es_->spectrum_max_dimension) {
    const Eigen::VectorXd spectrum = b.gram.eigenvalues();  // one O(d³) decomposition for both
    b.vendi = stats::vendi_from_eigenvalues(spectrum);
    b.effective_rank = stats::effective_rank_from_eigenvalues(spectrum);
  }
  b.distances.resize(static_cast<std::size_t>(m));
  for (Eigen::Index i = 0; i < m; ++i) {
    b.distances[static_cast<std::size_t>(i)] = (rows.row(i).transpose() - b.moments.mean).norm();
  }
  std::sort(b.distances.begin(), b.distances.end());
  const double q = in_.es_->tail_quantile;
  b.threshold_rank =
      std::clamp<std::uint64_t>(static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(m))),
                                1, static_cast<std::uint64_t>(m));
  b.threshold = b.distances[static_cast<std::size_t>(b.threshold_rank - 1)];
  b.reservoir.clear();
  b.reservoir.shrink_to_fit();
  b.gram.reset();
  b.ready = true;
  b.open = false;
  b.noise = noise_factor(b.d_eff, b.distances);
  series_.set_baseline_variance(b.noise / static_cast<double>(b.moments.count - 1));
  return true;
}

void embedding_run::add_to_group(const Eigen::Ref<const Eigen::MatrixXd>& rows) {
  open_->gram.add_batch(rows);
  open_->moments.add_rows(rows);
  const Eigen::VectorXd distances =
      (rows.rowwise() - base_->moments.mean.transpose()).rowwise().norm();
  open_->beyond += static_cast<std::uint64_t>((distances.array() > base_->threshold).count());
}

void embedding_run::close_baseline_generation(run_decision& decision) {
  const std::int64_t g = base_->generation;
  if (finish_baseline()) {
    decision.note_baseline(g, "");
  } else {
    in_.counters_.unused_vectors += base_->moments.count;
    start_baseline();  // too small to compare with: the next generation is the baseline
  }
  completed_through_ = g;
}

void embedding_run::route(const Eigen::Ref<const Eigen::MatrixXd>& rows, std::int64_t g,
                          run_decision& decision, sdk::context& ctx) {
  if (completed_through_ && g <= *completed_through_) {
    in_.counters_.late_vectors += static_cast<std::uint64_t>(rows.rows());
    return;
  }
  if (!base_->ready) {
    if (!base_->open) {
      base_->open = true;
      base_->generation = g;
    }
    if (g == base_->generation) return add_to_baseline(rows);
    if (g < base_->generation) {
      in_.counters_.late_vectors += static_cast<std::uint64_t>(rows.rows());
      return;
    }
    close_baseline_generation(decision);
    if (!base_->ready) return route(rows, g, decision, ctx);  // g is the baseline now
  }
  if (open_ && g < open_->generation) {
    in_.counters_.late_vectors += static_cast<std::uint64_t>(rows.rows());
    return;
  }
  if (open_ && g > open_->generation) evaluate(decision, ctx);
  if (!open_) open_.emplace(g, dim_);
  add_to_group(rows);
}

void embedding_run::add_generated(const Eigen::Ref<const Eigen::MatrixXd>& rows,
                                  std::optional<std::int64_t> generation, run_decision& decision,
                                  sdk::context& ctx) {
  const int mode = generation ? 1 : 2;
  if (mode_ == 0) mode_ = mode;
  if (mode != mode_) {
    ++in_.counters_.bad_batches;  // generations and windows do not mix within a run
    return;
  }
  // With a reference stream, the baseline freezes at the first generated vector.
  if (!in_.es_->reference_stream.empty() && !base_->ready) {
    if (base_->moments.count < 2 || !finish_baseline()) {
      in_.counters_.unused_vectors += static_cast<std::uint64_t>(rows.rows());
      return;
    }
  }
  if (generation) return route(rows, *generation, decision, ctx);
  // Windows: cut the batch where a window fills up.
  Eigen::Index done = 0;
  while (done < rows.rows()) {
    const auto room = static_cast<Eigen::Index>(in_.es_->window - window_fill_);
    const Eigen::Index take = std::min(room, rows.rows() - done);
    route(rows.middleRows(done, take), next_window_, decision, ctx);
    done += take;
    window_fill_ += static_cast<std::uint64_t>(take);
    if (window_fill_ < in_.es_->window) break;
    window_fill_ = 0;
    const std::int64_t w = next_window_++;
    if (base_->open && base_->generation == w) {
      close_baseline_generation(decision);
    } else if (open_ && open_->generation == w) {
      evaluate(decision, ctx);
    }
  }
}

void embedding_run::add_reference(const Eigen::Ref<const Eigen::MatrixXd>& rows) {
  if (base_->ready) {
    in_.counters_.late_vectors += static_cast<std::uint64_t>(rows.rows());
    return;
  }
  add_to_baseline(rows);
}

void embedding_run::complete_through(std::int64_t generation, run_decision& decision,
                                     sdk::context& ctx) {
  if (mode_ != 1) return;  // windows complete by their size, not by summaries
  if (!base_->ready && base_->open && base_->generation <= generation) {
    close_baseline_generation(decision);
  }
  if (open_ && open_->generation <= generation) evaluate(decision, ctx);
}

void embedding_run::evaluate(run_decision& decision, sdk::context& ctx) {
  const group g = std::move(*open_);
  open_.reset();
  completed_through_ = g.generation;
  const baseline& b = *base_;
  const std::uint64_t n = g.moments.count;
  if (n < 2) {
    in_.counters_.unused_vectors += n;
    return;
  }
  std::vector<statistic_check> checks;

  // Total variance against the baseline's, with the sampling noise of its log under no change:
  // Var(ln tr S) ≈ noise / (n − 1) (noise_factor: 2/d_eff for Gaussian vectors, more for
  // heavier tails).
  const double tv = g.moments.total_variance();
  const double ratio = stats::dispersion_ratio(tv, b.total_variance);
  const double log_ratio = stats::log_dispersion_ratio(tv, b.total_variance);
  const double v_current = b.noise / static_cast<double>(n - 1);
  const double v_base = b.noise / static_cast<double>(b.moments.count - 1);
  const double z = stats::normal_quantile(1.0 - in_.alpha_);
  const double margin = z * std::sqrt(v_current + v_base);
  ctx.set_gauge("embeddings.dispersion_ratio", ratio);
  if (!std::isnan(ratio)) {
    add_check(checks, "embeddings.dispersion_ratio", ratio,
              in_.es_->dispersion_floor * std::exp(-margin), true);
    checks.back().details = {{"upper_bound", format_number(ratio * std::exp(margin))},
                             {"floor", format_number(in_.es_->dispersion_floor)},
                             {"vectors", std::to_string(n)}};
  }

  // Order-2 Vendi score, debiased, so groups and baselines of different sizes compare.
  const double vendi2 = g.gram.debiased_order2_vendi();
  const double vendi_ratio = vendi2 / b.vendi2;
  ctx.set_gauge("embeddings.vendi2", vendi2);
  ctx.set_gauge("embeddings.vendi_ratio", vendi_ratio);
  if (std::isfinite(vendi_ratio)) {
    add_check(checks, "embeddings.vendi_ratio", vendi_ratio, in_.es_->vendi_floor, true);
    checks.back().details = {{"vendi2", format_number(vendi2)},
                             {"baseline_vendi2", format_number(b.vendi2)}};
  }
  if (static_cast<std::uint64_t>(dim_) <= in_.es_->spectrum_max_dimension) {
    const Eigen::VectorXd spectrum = g.gram.eigenvalues();  // one O(d³) decomposition for both
    ctx.set_gauge("embeddings.vendi", stats::vendi_from_eigenvalues(spectrum));
    ctx.set_gauge("embeddings.effective_rank", stats::effective_rank_from_eigenvalues(spectrum));
    ctx.set_gauge("embeddings.vendi_baseline", b.vendi);
    ctx.set_gauge("embeddings.effective_rank_baseline", b.effective_rank);
  }

  // Tail share: the count beyond the j-th smallest of m baseline distances is exactly
  // BetaBinomial(n, m − j + 1, j) under no change; crossing when its lower tail is below alpha
  // (significant) and the share is below tail_floor times the baseline's (material).
  const auto m = static_cast<double>(b.distances.size());
  const double a = m - static_cast<double>(b.threshold_rank) + 1.0;
  const double bb = static_cast<double>(b.threshold_rank);
  const double share = static_cast<double>(g.beyond) / static_cast<double>(n);
  const double p = stats::beta_binomial_cdf(static_cast<std::int64_t>(g.beyond), n, a, bb);
  ctx.set_gauge("embeddings.tail_share", share);
  ctx.set_gauge("embeddings.tail_p_value", p);
  statistic_check tail;
  tail.statistic = "embeddings.tail_share";
  tail.value = share;
  tail.limit = in_.ds_->tail_floor * a / (a + bb);  // the material share
  tail.below = true;
  tail.crossed = p < in_.alpha_ && share < tail.limit;
  tail.details = {{"p_value", format_number(p)},
                  {"alpha", format_number(in_.alpha_)},
                  {"beyond", std::to_string(g.beyond) + "/" + std::to_string(n)}};
  checks.push_back(std::move(tail));

  series_.add(g.generation, log_ratio, v_current, "embeddings.", checks, ctx);
  decision.decide(g.generation, checks, *in_.ds_, ctx);
}

std::size_t embedding_run::state_bytes() const {
  const auto d = static_cast<std::size_t>(dim_);
  std::size_t bytes = sizeof(*this) + sizeof(baseline) + 2 * 8 * d;  // moments
  if (!base_->ready) bytes += 8 * d * d + 4 * base_->reservoir.size();
  bytes += 8 * base_->distances.size();
  if (open_) bytes += 8 * d * d + 16 * d;
  return bytes;
}

void embedding_run::write(sdk::state_writer& w) const {
  w.write_u64(static_cast<std::uint64_t>(mode_));
  w.write_u64(window_fill_);
  w.write_i64(next_window_);
  w.write_bool(completed_through_.has_value());
  w.write_i64(completed_through_.value_or(0));
  const baseline& b = *base_;
  w.write_bool(b.ready);
  w.write_bool(b.open);
  w.write_i64(b.generation);
  write_moments(w, b.moments);
  w.write_u64(b.seen);
  if (!b.ready) {
    write_gram(w, b.gram);
    w.write_u64(b.reservoir.size());
    for (float v : b.reservoir) w.write_f64(v);
  } else {
    w.write_f64(b.total_variance);
    w.write_f64(b.d_eff);
    w.write_f64(b.vendi2);
    w.write_f64(b.vendi);
    w.write_f64(b.effective_rank);
    w.write_f64s(b.distances);
    w.write_u64(b.threshold_rank);
    w.write_f64(b.threshold);
  }
  w.write_bool(open_.has_value());
  if (open_) {
    w.write_i64(open_->generation);
    write_moments(w, open_->moments);
    write_gram(w, open_->gram);
    w.write_u64(open_->beyond);
  }
  series_.write(w);
}

void embedding_run::read(sdk::state_reader& r) {
  const auto cap = in_.es_->baseline_reservoir;
  const auto d = static_cast<std::uint64_t>(dim_);
  mode_ = static_cast<int>(r.read_count(2));
  window_fill_ = r.read_count(in_.es_->window);
  next_window_ = r.read_i64();
  const bool has_completed = r.read_bool();
  const std::int64_t completed = r.read_i64();
  if (has_completed) completed_through_ = completed;
  baseline& b = *base_;
  b.ready = r.read_bool();
  b.open = r.read_bool();
  b.generation = r.read_i64();
  read_moments(r, b.moments);
  b.seen = r.read_u64();
  if (!b.ready) {
    read_gram(r, b.gram);
    const std::uint64_t values = r.read_count(cap * d);
    if (r.ok() && values % d != 0) r.fail("a reservoir that is not whole vectors");
    if (r.ok() && r.remaining() / 8 < values) r.fail("a reservoir longer than the bytes left");
    if (!r.ok()) return;
    b.reservoir.resize(static_cast<std::size_t>(values));
    for (float& v : b.reservoir) v = static_cast<float>(r.read_f64());
  } else {
    b.total_variance = r.read_f64();
    b.d_eff = r.read_f64();
    b.vendi2 = r.read_f64();
    b.vendi = r.read_f64();
    b.effective_rank = r.read_f64();
    b.distances = r.read_f64s(cap);
    b.threshold_rank = r.read_u64();
    b.threshold = r.read_f64();
    if (r.ok() &&
        (b.distances.empty() || b.threshold_rank < 1 || b.threshold_rank > b.distances.size() ||
         !(b.d_eff >= 1.0) || b.moments.count < 2 ||
         !std::is_sorted(b.distances.begin(), b.distances.end()))) {
      r.fail("an embedding baseline that is not consistent");
    }
    if (r.ok()) b.noise = noise_factor(b.d_eff, b.distances);
  }
  if (r.read_bool()) {
    open_.emplace(r.read_i64(), dim_);
    read_moments(r, open_->moments);
    read_gram(r, open_->gram);
    open_->beyond = r.read_u64();
    if (r.ok() && !b.ready) r.fail("an open generation before the baseline is ready");
  }
  series_.read(r);
}

// ---------------------------------------------------------------------------------------------

embedding_input::embedding_input(const embedding_settings& es, const decision_settings& ds,
                                 double alpha)
    : es_(&es), ds_(&ds), alpha_(alpha) {}

embedding_input::~embedding_input() = default;

void embedding_input::on_batch(const std::string& run_id, const v1::EmbeddingBatch& batch,
                               run_decision& decision, sdk::context& ctx) {
  const bool reference = !es_->reference_stream.empty() && batch.stream() == es_->reference_stream;
  const bool generated =
      !reference && (es_->streams.empty() ? true
                                          : std::find(es_->streams.begin(), es_->streams.end(),
                                                      batch.stream()) != es_->streams.end());
  const auto& m = batch.vectors();
  const std::uint64_t dim = m.dim();
  const auto values = static_cast<std::uint64_t>(m.values_size());
  if (!reference && !generated) {
    counters_.unused_vectors += dim > 0 ? values / dim : 0;
    return;
  }
  if (dim == 0 || dim > es_->max_dimension || values == 0 || values % dim != 0) {
    ++counters_.bad_batches;
    return;
  }
  auto it = runs_.find(run_id);
  if (it == runs_.end()) {
    if (runs_.size() >= es_->max_runs) {
      ++counters_.dropped_batches;
      return;
    }
    it = runs_
             .emplace(run_id, std::make_unique<embedding_run>(*this, static_cast<Eigen::Index>(dim),
                                                              seed_of(run_id)))
             .first;
  }
  embedding_run& run = *it->second;
  if (static_cast<std::uint64_t>(run.dimension()) != dim) {
    ++counters_.bad_batches;  // the dimension of a run's embeddings never changes
    return;
  }
  // Float rows → double, keeping only finite, nonzero vectors (the cosine kernel needs a
  // direction).
  const auto rows = static_cast<Eigen::Index>(values / dim);
  const auto d = static_cast<Eigen::Index>(dim);
  const Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> raw(
      m.values().data(), rows, d);
  Eigen::MatrixXd usable(rows, d);
  Eigen::Index kept = 0;
  for (Eigen::Index i = 0; i < rows; ++i) {
    if (!raw.row(i).allFinite() || raw.row(i).squaredNorm() == 0.0f) {
      ++counters_.ignored_vectors;
      continue;
    }
    usable.row(kept++) = raw.row(i).cast<double>();
  }
  if (kept == 0) return;
  if (reference) {
    run.add_reference(usable.topRows(kept));
  } else {
    std::optional<std::int64_t> generation;
    if (batch.has_generation()) generation = batch.generation();
    run.add_generated(usable.topRows(kept), generation, decision, ctx);
  }
}

void embedding_input::complete_through(const std::string& run_id, std::int64_t generation,
                                       run_decision& decision, sdk::context& ctx) {
  const auto it = runs_.find(run_id);
  if (it != runs_.end()) it->second->complete_through(generation, decision, ctx);
}

std::size_t embedding_input::state_bytes() const {
  std::size_t bytes = 0;
  for (const auto& [id, run] : runs_) bytes += id.size() + run->state_bytes();
  return bytes;
}

void embedding_input::write(sdk::state_writer& w) const {
  w.write_u64(counters_.bad_batches);
  w.write_u64(counters_.ignored_vectors);
  w.write_u64(counters_.late_vectors);
  w.write_u64(counters_.unused_vectors);
  w.write_u64(counters_.dropped_batches);
  w.write_u64(runs_.size());
  for (const auto& [id, run] : runs_) {
    w.write_string(id);
    w.write_u64(static_cast<std::uint64_t>(run->dimension()));
    run->write(w);
  }
}

void embedding_input::read(sdk::state_reader& r, std::uint64_t max_runs) {
  counters_.bad_batches = r.read_u64();
  counters_.ignored_vectors = r.read_u64();
  counters_.late_vectors = r.read_u64();
  counters_.unused_vectors = r.read_u64();
  counters_.dropped_batches = r.read_u64();
  const std::uint64_t n = r.read_count(std::min(max_runs, es_->max_runs));
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    std::string id = r.read_string(4096);
    const std::uint64_t dim = r.read_count(es_->max_dimension);
    if (!r.ok()) return;
    if (dim == 0) return r.fail("an embedding run of dimension 0");
    auto run = std::make_unique<embedding_run>(*this, static_cast<Eigen::Index>(dim), seed_of(id));
    run->read(r);
    runs_[std::move(id)] = std::move(run);
  }
}

}  // namespace loopwarden::variance_collapse
