#pragma once
// dispersion: streaming mean and covariance of d-dimensional embeddings, the Vendi score and
// effective rank of a batch, and the dispersion ratio against a baseline.

#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace loopwarden::sdk::stats {

// Running mean and scatter of a stream of d-dimensional vectors, the multivariate form of
// welford. For the n finite vectors seen so far it holds the mean and the scatter matrix
// S = Σ (x_i − mean)(x_i − mean)ᵀ, updated per vector by
//   delta = x − mean;  mean += delta / n;  S += ((n − 1) / n) · delta · deltaᵀ
// and per batch (or merge) by Chan, Golub & LeVeque (1979): with δ = mean_b − mean_a,
//   mean = mean_a + δ · n_b / n;  S = S_a + S_b + δ δᵀ · n_a · n_b / n.
// covariance(ddof) = S / (n − ddof) and total_variance(ddof) = trace(S) / (n − ddof), the sum of
// the per-dimension variances; ddof is 0 (population) or 1 (sample).
// Edge cases: with n = 0 the mean, covariance and total variance are NaN; with n = 1 and ddof 1
// they are NaN too, with ddof 0 the covariance is 0. A vector with a NaN or infinite element is
// not added; it is counted in ignored() instead.
// Complexity: add() is O(d²) time (only the lower triangle of S is updated, so S stays exactly
// symmetric) and reuses storage sized at construction (pass a contiguous vector: a strided one,
// such as a row of a column-major matrix, is first copied by Eigen::Ref); add_batch() of n rows is
// O(n·d²) and allocates an n×d centred copy; covariance() allocates the d×d result. Memory is
// O(d²). Numerics: as in welford, every update is built from differences to the running mean, so a
// large common offset does not cancel catastrophically.
// Errors: the constructor throws std::invalid_argument when dimension < 1; add(), add_batch()
// and merge() throw std::invalid_argument on a dimension mismatch; covariance() and
// total_variance() throw std::invalid_argument unless ddof is 0 or 1.
// Thread-safety: not thread-safe; one owner updates and reads it.
class dispersion {
 public:
  // An empty accumulator for vectors of `dimension` elements (≥ 1).
  explicit dispersion(Eigen::Index dimension)
      : dimension_(checked_dimension(dimension)),
        mean_(Eigen::VectorXd::Zero(dimension)),
        scatter_(Eigen::MatrixXd::Zero(dimension, dimension)),
        delta_(dimension) {}

  // Adds one vector of dimension() elements; one with a non-finite element is counted in
  // ignored() and otherwise ignored.
  void add(const Eigen::Ref<const Eigen::VectorXd>& x) {
    check_dimension(x.size(), "add");
    if (!x.allFinite()) {
      ++ignored_;
      return;
    }
    ++count_;
    const double n = static_cast<double>(count_);
    delta_ = x - mean_;
    mean_ += delta_ / n;
    scatter_.selfadjointView<Eigen::Lower>().rankUpdate(delta_, (n - 1.0) / n);
  }

  // Adds every row of `rows` (n × dimension()), as if each had been passed to add(); rows with
  // a non-finite element are counted in ignored(). Equal to add() row by row up to rounding.
  void add_batch(const Eigen::Ref<const Eigen::MatrixXd>& rows) {
    check_dimension(rows.cols(), "add_batch");
    const Eigen::Index n = rows.rows();
    Eigen::MatrixXd finite(n, dimension_);
    Eigen::Index used = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
      if (rows.row(i).allFinite()) {
        finite.row(used++) = rows.row(i);
      } else {
        ++ignored_;
      }
    }
    if (used == 0) return;
    const auto batch = finite.topRows(used);
    const Eigen::VectorXd batch_mean = batch.colwise().mean().transpose();
    const Eigen::MatrixXd centred = batch.rowwise() - batch_mean.transpose();
    Eigen::MatrixXd batch_scatter = Eigen::MatrixXd::Zero(dimension_, dimension_);
    batch_scatter.selfadjointView<Eigen::Lower>().rankUpdate(centred.transpose());
    combine(static_cast<std::uint64_t>(used), batch_mean, batch_scatter);
  }

  // Folds `other` into this summary, as if this one had also seen every vector `other` saw
  // (ignored() counts add up too). `other` may be *this.
  void merge(const dispersion& other) {
    check_dimension(other.dimension_, "merge");
    const dispersion b = other;  // a copy, so that merging with *this reads unmodified values
    ignored_ += b.ignored_;
    if (b.count_ == 0) return;
    combine(b.count_, b.mean_, b.scatter_);
  }

  // Forgets everything, including ignored(); the dimension stays.
  void reset() {
    count_ = 0;
    ignored_ = 0;
    mean_.setZero();
    scatter_.setZero();
  }

  Eigen::Index dimension() const { return dimension_; }
  // Number of finite vectors added (merged ones included).
  std::uint64_t count() const { return count_; }
  // Number of vectors with a non-finite element refused (merged ones included).
  std::uint64_t ignored() const { return ignored_; }
  bool empty() const { return count_ == 0; }

  // The mean vector; all NaN when empty.
  Eigen::VectorXd mean() const {
    return count_ == 0 ? Eigen::VectorXd::Constant(dimension_, nan()) : mean_;
  }
  // S = Σ (x_i − mean)(x_i − mean)ᵀ, symmetric; all 0 when empty.
  Eigen::MatrixXd scatter() const {
    Eigen::MatrixXd full = scatter_.selfadjointView<Eigen::Lower>();
    return full;
  }
  // S / (n − ddof), ddof 0 or 1; all NaN when n ≤ ddof.
  Eigen::MatrixXd covariance(int ddof) const {
    const double denominator = denominator_for(ddof);
    if (!(denominator > 0.0)) return Eigen::MatrixXd::Constant(dimension_, dimension_, nan());
    Eigen::MatrixXd full = scatter_.selfadjointView<Eigen::Lower>();
    return full / denominator;
  }
  // trace(S) / (n − ddof): the sum of the per-dimension variances; NaN when n ≤ ddof.
  double total_variance(int ddof) const {
    const double denominator = denominator_for(ddof);
    if (!(denominator > 0.0)) return nan();
    return scatter_.trace() / denominator;
  }

 private:
  static constexpr double nan() { return std::numeric_limits<double>::quiet_NaN(); }

  static Eigen::Index checked_dimension(Eigen::Index dimension) {
    if (dimension < 1) throw std::invalid_argument("dispersion: dimension must be >= 1");
    return dimension;
  }

  void check_dimension(Eigen::Index got, const char* where) const {
    if (got != dimension_) {
      throw std::invalid_argument(std::string("dispersion: ") + where + ": got dimension " +
                                  std::to_string(got) + ", expected " + std::to_string(dimension_));
    }
  }

  double denominator_for(int ddof) const {
    if (ddof != 0 && ddof != 1) throw std::invalid_argument("dispersion: ddof must be 0 or 1");
    return static_cast<double>(count_) - static_cast<double>(ddof);
  }

  // Chan et al.'s combination with a summary of `nb_count` vectors (mean_b, and S_b with a
  // zero strict upper triangle, like scatter_).
  void combine(std::uint64_t nb_count, const Eigen::VectorXd& mean_b,
               const Eigen::MatrixXd& scatter_b) {
    if (count_ == 0) {
      count_ = nb_count;
      mean_ = mean_b;
      scatter_ = scatter_b;
      return;
    }
    const double na = static_cast<double>(count_);
    const double nb = static_cast<double>(nb_count);
    const double n = na + nb;
    delta_ = mean_b - mean_;
    mean_ += delta_ * (nb / n);
    scatter_ += scatter_b;  // the strict upper triangles are both 0
    scatter_.selfadjointView<Eigen::Lower>().rankUpdate(delta_, na * nb / n);
    count_ += nb_count;
  }

  Eigen::Index dimension_;
  std::uint64_t count_ = 0;
  std::uint64_t ignored_ = 0;
  Eigen::VectorXd mean_;
  Eigen::MatrixXd scatter_;  // only the lower triangle is maintained; the upper stays 0
  Eigen::VectorXd delta_;    // workspace for add() and combine(), sized once
};

namespace details {

// exp(Shannon entropy) of the non-negative weights w after normalising them to sum 1, with
// 0 · ln 0 = 0; NaN when the weights sum to 0 or are not finite.
inline double exp_entropy(const Eigen::VectorXd& w) {
  const double total = w.sum();
  if (!(total > 0.0) || !std::isfinite(total)) return std::numeric_limits<double>::quiet_NaN();
  double entropy = 0.0;
  for (Eigen::Index i = 0; i < w.size(); ++i) {
    const double p = w[i] / total;
    if (p > 0.0) entropy -= p * std::log(p);
  }
  return std::exp(entropy);
}

// Eigenvalues of XᵀX / m (d × d) for the m usable rows X of `rows`, clamped to ≥ 0 (rounding
// can leave the zero eigenvalues of a rank-deficient Gram matrix at −1e-17). With
// normalise_rows each usable row is scaled to unit L2 norm and rows of zero norm are skipped;
// rows with a non-finite element are always skipped. Empty when no row is usable.
inline Eigen::VectorXd gram_eigenvalues(const Eigen::Ref<const Eigen::MatrixXd>& rows,
                                        bool normalise_rows) {
  const Eigen::Index d = rows.cols();
  Eigen::MatrixXd gram = Eigen::MatrixXd::Zero(d, d);
  Eigen::VectorXd row(d);
  Eigen::Index used = 0;
  for (Eigen::Index i = 0; i < rows.rows(); ++i) {
    if (!rows.row(i).allFinite()) continue;
    row = rows.row(i).transpose();
    if (normalise_rows) {
      const double norm = row.norm();
      if (!(norm > 0.0)) continue;
      row /= norm;
    }
    gram.selfadjointView<Eigen::Lower>().rankUpdate(row, 1.0);
    ++used;
  }
  if (used == 0 || d == 0) return Eigen::VectorXd();
  gram /= static_cast<double>(used);
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(gram, Eigen::EigenvaluesOnly);
  if (solver.info() != Eigen::Success) return Eigen::VectorXd();
  return solver.eigenvalues().cwiseMax(0.0);
}

}  // namespace details

// The Vendi score (Friedman & Dieng 2023) of the rows of `rows` (n embeddings × d) with the
// cosine kernel: each row is scaled to unit L2 norm, K = X Xᵀ / n (n × n, trace 1) and
//   vendi = exp(−Σ λ_i ln λ_i)
// over the eigenvalues λ of K, normalised to sum 1 (they already do, up to rounding). It is the
// effective number of distinct directions: 1 for identical rows, k for k orthogonal directions
// equally represented, at most min(n, d). K is never formed: its nonzero eigenvalues are those of
// XᵀX / n (d × d), found with Eigen::SelfAdjointEigenSolver. Rows with a non-finite element or
// zero norm are skipped; NaN when none is left. O(n·d² + d³) time, O(d²) memory.
// Thread-safety: a pure function.
inline double vendi_score(const Eigen::Ref<const Eigen::MatrixXd>& rows) {
  return details::exp_entropy(details::gram_eigenvalues(rows, true));
}

// The effective rank (Roy & Vetterli 2007) of the n × d matrix `rows` as given (neither centred
// nor row-normalised; centre it first for the rank of the covariance): with the singular values
// σ_i of the matrix, p_i = σ_i / Σ σ_j and
//   effective_rank = exp(−Σ p_i ln p_i),
// i.e. the entropy of the normalised *singular values*, not of the eigenvalues σ_i² (that
// variant, on row-normalised data, is vendi_score()). It lies in [1, rank]. The σ_i are the
// square roots of the eigenvalues of XᵀX (d × d, Eigen::SelfAdjointEigenSolver); the scale of the
// matrix does not matter. Rows with a non-finite element are skipped; NaN when none is left or
// every usable row is 0. O(n·d² + d³) time, O(d²) memory.
// Numerics: a zero singular value comes out as sqrt(rounding) ≈ 1e-8 · σ_max and adds about
// 1e-7 to the result; compare with a tolerance, not exactly.
// Thread-safety: a pure function.
inline double effective_rank(const Eigen::Ref<const Eigen::MatrixXd>& rows) {
  const Eigen::VectorXd eigenvalues = details::gram_eigenvalues(rows, false);
  if (eigenvalues.size() == 0) return std::numeric_limits<double>::quiet_NaN();
  return details::exp_entropy(eigenvalues.cwiseSqrt());
}

// current / baseline, two total variances (dispersion::total_variance with the same ddof):
// 1 means no change, 0.5 means the embeddings spread half as much as at the baseline. NaN when
// either is NaN, infinite or negative, or the baseline is 0.
// Thread-safety: a pure function.
inline double dispersion_ratio(double current_total_variance, double baseline_total_variance) {
  if (!(std::isfinite(current_total_variance) && std::isfinite(baseline_total_variance)) ||
      current_total_variance < 0.0 || !(baseline_total_variance > 0.0)) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  return current_total_variance / baseline_total_variance;
}

// ln(current / baseline), computed as ln current − ln baseline so that it stays accurate when
// both are tiny or huge: 0 means no change, ln 0.5 ≈ −0.693 half the spread; −inf when the
// current total variance is 0 (a complete collapse). NaN under the same conditions as
// dispersion_ratio().
// Thread-safety: a pure function.
inline double log_dispersion_ratio(double current_total_variance, double baseline_total_variance) {
  if (std::isnan(dispersion_ratio(current_total_variance, baseline_total_variance))) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  return std::log(current_total_variance) - std::log(baseline_total_variance);
}

}  // namespace loopwarden::sdk::stats
