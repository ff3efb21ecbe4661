#pragma once
// cosine: the cosine similarity of two vectors, and two cosine distances between two sets of
// embeddings (the rows of row-major matrices): between their means, and averaged over all pairs.

#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace loopwarden::sdk::stats {

namespace details {

inline double clamp_unit(double c) { return c > 1.0 ? 1.0 : (c < -1.0 ? -1.0 : c); }

template <typename T>
double cosine_similarity(std::span<const T> a, std::span<const T> b) {
  if (a.size() != b.size()) throw std::invalid_argument("cosine_similarity: sizes differ");
  if (a.empty()) throw std::invalid_argument("cosine_similarity: empty vectors");
  double dot = 0.0;
  double aa = 0.0;
  double bb = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto x = static_cast<double>(a[i]);
    const auto y = static_cast<double>(b[i]);
    dot += x * y;
    aa += x * x;
    bb += y * y;
  }
  if (!(std::isfinite(dot) && std::isfinite(aa) && std::isfinite(bb)) || !(aa > 0.0) ||
      !(bb > 0.0)) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  return clamp_unit(dot / (std::sqrt(aa) * std::sqrt(bb)));
}

// The number of rows of a row-major matrix of `dim` columns held in `values`. Throws
// std::invalid_argument for dim = 0 or a size that is not a multiple of dim.
template <typename T>
std::size_t row_count(std::span<const T> values, std::size_t dim, const char* who) {
  if (dim == 0) throw std::invalid_argument(std::string(who) + ": dimension must be >= 1");
  if (values.size() % dim != 0) {
    throw std::invalid_argument(std::string(who) + ": " + std::to_string(values.size()) +
                                " values are not whole rows of dimension " + std::to_string(dim));
  }
  return values.size() / dim;
}

// The mean of the rows whose elements are all finite, each divided by its L2 norm first when
// `normalise` (rows of zero norm are then skipped too). Empty when no row is usable.
template <typename T>
std::vector<double> mean_row(std::span<const T> values, std::size_t dim, bool normalise,
                             const char* who) {
  const std::size_t rows = row_count(values, dim, who);
  std::vector<double> mean(dim, 0.0);
  std::size_t used = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    const std::span<const T> row = values.subspan(r * dim, dim);
    double norm2 = 0.0;
    for (const T& x : row) norm2 += static_cast<double>(x) * static_cast<double>(x);
    if (!std::isfinite(norm2)) continue;  // a NaN or infinite element (or an overflow)
    double scale = 1.0;
    if (normalise) {
      if (!(norm2 > 0.0)) continue;
      scale = 1.0 / std::sqrt(norm2);
    }
    for (std::size_t i = 0; i < dim; ++i) mean[i] += static_cast<double>(row[i]) * scale;
    ++used;
  }
  if (used == 0) return {};
  for (double& m : mean) m /= static_cast<double>(used);
  return mean;
}

template <typename T>
double mean_cosine_distance(std::span<const T> a, std::span<const T> b, std::size_t dim) {
  const std::vector<double> ma = mean_row(a, dim, false, "mean_cosine_distance");
  const std::vector<double> mb = mean_row(b, dim, false, "mean_cosine_distance");
  if (ma.empty() || mb.empty()) return std::numeric_limits<double>::quiet_NaN();
  return 1.0 - cosine_similarity(std::span<const double>(ma), std::span<const double>(mb));
}

template <typename T>
double mean_pairwise_cosine_distance(std::span<const T> a, std::span<const T> b, std::size_t dim) {
  const std::vector<double> ua = mean_row(a, dim, true, "mean_pairwise_cosine_distance");
  const std::vector<double> ub = mean_row(b, dim, true, "mean_pairwise_cosine_distance");
  if (ua.empty() || ub.empty()) return std::numeric_limits<double>::quiet_NaN();
  double dot = 0.0;
  for (std::size_t i = 0; i < dim; ++i) dot += ua[i] * ub[i];
  // A mean of cosines lies in [−1, 1]; clamp the rounding of the sums.
  return 1.0 - clamp_unit(dot);
}

}  // namespace details

// cos(a, b) = a·b / (‖a‖ ‖b‖), in [−1, 1] (clamped against rounding). NaN when either vector
// has zero norm or a non-finite element. Sums are taken in double for float input too.
// Errors: throws std::invalid_argument when the sizes differ or the vectors are empty.
// O(d), no allocation. Thread-safety: a pure function.
inline double cosine_similarity(std::span<const double> a, std::span<const double> b) {
  return details::cosine_similarity(a, b);
}
inline double cosine_similarity(std::span<const float> a, std::span<const float> b) {
  return details::cosine_similarity(a, b);
}

// 1 − cos(ā, b̄): the cosine distance between the mean ā of the rows of `a` and the mean b̄ of
// the rows of `b`, both row-major with `dim` columns (a.size() = n·dim, b.size() = m·dim). In
// [0, 2]: 0 when the means point the same way (identical sets, or one a positive multiple of the
// other), 1 when they are orthogonal, 2 when opposite. Rows with a non-finite element are
// skipped. NaN when a side has no usable row or its mean is the zero vector.
// Errors: throws std::invalid_argument for dim = 0 or a size that is not whole rows.
// O((n + m)·d) time, O(d) memory. Thread-safety: a pure function.
inline double mean_cosine_distance(std::span<const double> a, std::span<const double> b,
                                   std::size_t dim) {
  return details::mean_cosine_distance(a, b, dim);
}
inline double mean_cosine_distance(std::span<const float> a, std::span<const float> b,
                                   std::size_t dim) {
  return details::mean_cosine_distance(a, b, dim);
}

// 1 − (1 / (n·m)) Σ_i Σ_j cos(a_i, b_j): the cosine distance averaged over every pair of a row
// of `a` and a row of `b` (row-major, `dim` columns). In [0, 2]: 0 only when every row of both
// sets points the same way, 1 when every a_i is orthogonal to every b_j. Unlike
// mean_cosine_distance it sees the spread inside each set: two identical sets of several
// directions are at a positive distance from each other.
// Computed without the n·m loop, by the identity Σ_i Σ_j â_i·b̂_j = (Σ_i â_i)·(Σ_j b̂_j) over the
// unit rows â_i = a_i / ‖a_i‖: the result is 1 − ā̂·b̄̂, the dot product of the means of the unit
// rows. Rows with a non-finite element or zero norm are skipped (their cosine is undefined).
// NaN when a side has no usable row.
// Errors: throws std::invalid_argument for dim = 0 or a size that is not whole rows.
// O((n + m)·d) time, O(d) memory. Thread-safety: a pure function.
inline double mean_pairwise_cosine_distance(std::span<const double> a, std::span<const double> b,
                                            std::size_t dim) {
  return details::mean_pairwise_cosine_distance(a, b, dim);
}
inline double mean_pairwise_cosine_distance(std::span<const float> a, std::span<const float> b,
                                            std::size_t dim) {
  return details::mean_pairwise_cosine_distance(a, b, dim);
}

}  // namespace loopwarden::sdk::stats
