#pragma once
// gram: the d × d Gram matrix of a stream of embeddings, accumulated one vector or batch at a
// time, and the spectral diversity measures read from it (Vendi score, effective rank, the
// order-2 Vendi score with a small-sample correction); the participation ratio of a covariance.

#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <cmath>
#include <cstdint>
#include <limits>
#include <loopwarden/stats/dispersion.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace loopwarden::sdk::stats {

// The Vendi score and the effective rank from eigenvalues already computed (of G / n, as
// gram_accumulator::eigenvalues() returns them), so a caller that wants both pays for one
// eigendecomposition: exp(entropy of the normalised eigenvalues) and exp(entropy of their
// normalised square roots). NaN for no eigenvalues or a zero sum. Thread-safety: pure functions.
inline double vendi_from_eigenvalues(const Eigen::VectorXd& eigenvalues) {
  return details::exp_entropy(eigenvalues);
}
inline double effective_rank_from_eigenvalues(const Eigen::VectorXd& eigenvalues) {
  if (eigenvalues.size() == 0) return std::numeric_limits<double>::quiet_NaN();
  return details::exp_entropy(eigenvalues.cwiseMax(0.0).cwiseSqrt());
}

// Which kernel the Gram matrix is of.
enum class gram_kernel {
  cosine,  // rows scaled to unit L2 norm first (zero rows skipped): the Vendi score's kernel
  linear,  // rows as given: the matrix of effective_rank()
};

// G = Σ x_i x_iᵀ over a stream of d-dimensional vectors (each scaled to unit norm first for the
// cosine kernel), with n, Σ a_i and Σ a_i² for a_i = ‖x_i‖² (1 for the cosine kernel). The
// nonzero eigenvalues of G / n are those of the n × n kernel matrix X Xᵀ / n, so everything the
// batch functions vendi_score() and effective_rank() compute from a whole matrix is available
// from the stream, in O(d²) memory, whatever the number of vectors:
//   vendi_score()    exp(−Σ p_i ln p_i), p = eigenvalues of G normalised to sum 1; with the
//                    cosine kernel it equals vendi_score(rows) of the same vectors
//   effective_rank() exp of the entropy of the normalised square roots of those eigenvalues; with
//                    the linear kernel it equals effective_rank(rows)
//   order2_vendi()   1 / Σ p_i² = (tr G)² / ‖G‖²_F, the Vendi score of order 2 (Pasarkar & Dieng
//                    2023), a plug-in estimate: from n vectors it is at most n, so it is biased low
//                    when n is not large against the population's value
//   debiased_order2_vendi()  the same ratio with each of its two parts replaced by its unbiased
//                    estimate over pairs i ≠ j (a U-statistic):
//                      ((Σ a_i)² − Σ a_i²) / (‖G‖²_F − Σ a_i²)
//                    = Σ_{i≠j} a_i a_j / Σ_{i≠j} (x_iᵀ x_j)², for the cosine kernel
//                    (n − 1) / (n·tr(Ĝ²) − 1) with Ĝ = G / n. Its numerator and denominator are
//                    unbiased for n(n − 1)·(E a)² and n(n − 1)·tr(E[x xᵀ]²), so ratios of it
//                    between samples of different sizes compare like with like. NaN for n < 2; +inf
//                    when every pair is orthogonal.
// For k orthogonal directions equally represented, vendi_score(), effective_rank() (cosine) and
// order2_vendi() are all k; identical rows give 1.
// Complexity: add() O(d²) (lower triangle only, so G stays exactly symmetric; no allocation);
// add_batch() of n rows O(n·d²) through one symmetric rank-n update, allocating an n × d copy;
// order2 measures O(d²); vendi_score() and effective_rank() O(d³) (Eigen::SelfAdjointEigenSolver,
// eigenvalues only: ~10 ms at d = 256, ~1 s at d = 1024) — call them once per sample, not per
// vector. Memory: d² doubles.
// A vector with a non-finite element, or (cosine) of zero norm, is not added; it is counted in
// ignored().
// Errors: the constructor throws std::invalid_argument when dimension < 1; add(), add_batch() and
// merge() throw std::invalid_argument on a dimension or kernel mismatch.
// Thread-safety: not thread-safe; one owner updates and reads it.
class gram_accumulator {
 public:
  // An empty accumulator for vectors of `dimension` (≥ 1) elements.
  explicit gram_accumulator(Eigen::Index dimension, gram_kernel kernel = gram_kernel::cosine)
      : dimension_(checked_dimension(dimension)),
        kernel_(kernel),
        gram_(Eigen::MatrixXd::Zero(dimension, dimension)),
        row_(dimension) {}

  // Adds one vector of dimension() elements (see the class comment for what is refused).
  void add(const Eigen::Ref<const Eigen::VectorXd>& x) {
    check_dimension(x.size(), "add");
    if (!x.allFinite()) {
      ++ignored_;
      return;
    }
    row_ = x;
    double a = row_.squaredNorm();
    if (kernel_ == gram_kernel::cosine) {
      if (!(a > 0.0)) {
        ++ignored_;
        return;
      }
      row_ /= std::sqrt(a);
      a = 1.0;
    }
    gram_.selfadjointView<Eigen::Lower>().rankUpdate(row_, 1.0);
    add_norm(a);
  }

  // Adds every row of `rows` (n × dimension()), as add() would row by row (equal up to rounding).
  void add_batch(const Eigen::Ref<const Eigen::MatrixXd>& rows) {
    check_dimension(rows.cols(), "add_batch");
    Eigen::MatrixXd used(rows.rows(), dimension_);
    Eigen::Index m = 0;
    for (Eigen::Index i = 0; i < rows.rows(); ++i) {
      if (!rows.row(i).allFinite()) {
        ++ignored_;
        continue;
      }
      double a = rows.row(i).squaredNorm();
      if (kernel_ == gram_kernel::cosine) {
        if (!(a > 0.0)) {
          ++ignored_;
          continue;
        }
        used.row(m) = rows.row(i) / std::sqrt(a);
        a = 1.0;
      } else {
        used.row(m) = rows.row(i);
      }
      add_norm(a);
      ++m;
    }
    if (m == 0) return;
    gram_.selfadjointView<Eigen::Lower>().rankUpdate(used.topRows(m).transpose(), 1.0);
  }

  // Folds `other` (same dimension and kernel) into this one, as if this had seen its vectors too.
  void merge(const gram_accumulator& other) {
    check_dimension(other.dimension_, "merge");
    if (other.kernel_ != kernel_)
      throw std::invalid_argument("gram_accumulator: merge: kernels differ");
    const gram_accumulator b = other;  // a copy, so merging with *this reads unmodified values
    gram_ += b.gram_;                  // both strict upper triangles are 0
    count_ += b.count_;
    ignored_ += b.ignored_;
    sum_a_ += b.sum_a_;
    sum_a2_ += b.sum_a2_;
  }

  // Forgets every vector (and ignored()); dimension and kernel stay.
  void reset() {
    gram_.setZero();
    count_ = 0;
    ignored_ = 0;
    sum_a_ = 0.0;
    sum_a2_ = 0.0;
  }

  Eigen::Index dimension() const { return dimension_; }
  gram_kernel kernel() const { return kernel_; }
  // Vectors added (merged ones included), and vectors refused.
  std::uint64_t count() const { return count_; }
  std::uint64_t ignored() const { return ignored_; }
  bool empty() const { return count_ == 0; }
  // Σ a_i and Σ a_i² (a_i = ‖x_i‖², 1 for the cosine kernel).
  double sum_squared_norms() const { return sum_a_; }
  double sum_fourth_norms() const { return sum_a2_; }

  // G = Σ x xᵀ, full and symmetric.
  Eigen::MatrixXd gram() const {
    Eigen::MatrixXd full = gram_.selfadjointView<Eigen::Lower>();
    return full;
  }
  // The lower triangle of G, column by column (d(d + 1)/2 values), and its inverse: for
  // snapshots. set_state() throws std::invalid_argument on a size mismatch or non-finite value.
  std::vector<double> lower_triangle() const {
    std::vector<double> out;
    out.reserve(static_cast<std::size_t>(dimension_ * (dimension_ + 1) / 2));
    for (Eigen::Index j = 0; j < dimension_; ++j) {
      for (Eigen::Index i = j; i < dimension_; ++i) out.push_back(gram_(i, j));
    }
    return out;
  }
  void set_state(const std::vector<double>& lower, std::uint64_t count, std::uint64_t ignored,
                 double sum_squared_norms, double sum_fourth_norms) {
    if (lower.size() != static_cast<std::size_t>(dimension_ * (dimension_ + 1) / 2)) {
      throw std::invalid_argument("gram_accumulator: set_state: wrong triangle size");
    }
    std::size_t k = 0;
    gram_.setZero();
    for (Eigen::Index j = 0; j < dimension_; ++j) {
      for (Eigen::Index i = j; i < dimension_; ++i) {
        if (!std::isfinite(lower[k])) {
          throw std::invalid_argument("gram_accumulator: set_state: non-finite entry");
        }
        gram_(i, j) = lower[k++];
      }
    }
    count_ = count;
    ignored_ = ignored;
    sum_a_ = sum_squared_norms;
    sum_a2_ = sum_fourth_norms;
  }

  // Eigenvalues of G / n, ascending, clamped to ≥ 0 (rounding leaves the zero eigenvalues of a
  // rank-deficient G near ±1e-17); empty when nothing was added.
  Eigen::VectorXd eigenvalues() const {
    if (count_ == 0) return Eigen::VectorXd();
    const Eigen::MatrixXd full = gram() / static_cast<double>(count_);
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(full, Eigen::EigenvaluesOnly);
    if (solver.info() != Eigen::Success) return Eigen::VectorXd();
    return solver.eigenvalues().cwiseMax(0.0);
  }
  // See the class comment; NaN when nothing usable was added.
  double vendi_score() const { return vendi_from_eigenvalues(eigenvalues()); }
  double effective_rank() const { return effective_rank_from_eigenvalues(eigenvalues()); }
  double order2_vendi() const {
    const double frobenius2 = frobenius_squared();
    if (count_ == 0 || !(frobenius2 > 0.0)) return nan();
    const double trace = gram_.trace();
    return trace * trace / frobenius2;
  }
  double debiased_order2_vendi() const {
    if (count_ < 2) return nan();
    const double pairs_norm = sum_a_ * sum_a_ - sum_a2_;       // Σ_{i≠j} a_i a_j
    const double pairs_inner = frobenius_squared() - sum_a2_;  // Σ_{i≠j} (x_iᵀ x_j)²
    if (!(pairs_norm > 0.0)) return nan();
    if (!(pairs_inner > 0.0)) return std::numeric_limits<double>::infinity();
    return pairs_norm / pairs_inner;
  }

 private:
  static constexpr double nan() { return std::numeric_limits<double>::quiet_NaN(); }

  static Eigen::Index checked_dimension(Eigen::Index dimension) {
    if (dimension < 1) throw std::invalid_argument("gram_accumulator: dimension must be >= 1");
    return dimension;
  }

  void check_dimension(Eigen::Index got, const char* where) const {
    if (got != dimension_) {
      throw std::invalid_argument(std::string("gram_accumulator: ") + where + ": got dimension " +
                                  std::to_string(got) + ", expected " + std::to_string(dimension_));
    }
  }

  void add_norm(double a) {
    ++count_;
    sum_a_ += a;
    sum_a2_ += a * a;
  }

  // ‖G‖²_F from the lower triangle (the strict upper one is 0): the diagonal once, the strict
  // lower part twice.
  double frobenius_squared() const {
    return 2.0 * gram_.squaredNorm() - gram_.diagonal().squaredNorm();
  }

  Eigen::Index dimension_;
  gram_kernel kernel_;
  Eigen::MatrixXd gram_;  // only the lower triangle is maintained; the upper stays 0
  Eigen::VectorXd row_;   // workspace for add(), sized once
  std::uint64_t count_ = 0;
  std::uint64_t ignored_ = 0;
  double sum_a_ = 0.0;
  double sum_a2_ = 0.0;
};

// (tr A)² / ‖A‖²_F = (Σ λ)² / Σ λ² for a symmetric positive semi-definite matrix A (a
// covariance): the participation ratio, the number of equally weighted directions with the same
// second moment of the spectrum. d for a multiple of the d × d identity, 1 for rank one,
// 1.6 for diag(3, 1). For a covariance Σ it is the d_eff in Var(tr S) ≈ 2 (tr Σ)² / (d_eff ν) of
// a Gaussian sample covariance S with ν degrees of freedom (Var tr S = 2 tr(Σ²) / ν). No
// eigendecomposition: O(d²). NaN when A is 0, empty or not finite. A is taken as symmetric (both
// triangles are read). Thread-safety: a pure function.
inline double participation_ratio(const Eigen::Ref<const Eigen::MatrixXd>& a) {
  if (a.size() == 0 || !a.allFinite()) return std::numeric_limits<double>::quiet_NaN();
  const double frobenius2 = a.squaredNorm();
  if (!(frobenius2 > 0.0)) return std::numeric_limits<double>::quiet_NaN();
  const double trace = a.trace();
  return trace * trace / frobenius2;
}

}  // namespace loopwarden::sdk::stats
