#pragma once
// distribution: tail probabilities for calibrated tests — the standard normal distribution
// function and its inverse, the regularized incomplete beta function, and the distribution
// functions of the binomial and beta-binomial distributions.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <stdexcept>

namespace loopwarden::sdk::stats {

// Φ(x), the standard normal distribution function, by the complementary error function (so the
// lower tail keeps full relative precision down to Φ(−37) ≈ 6e-300). Φ(±inf) = 0 / 1, Φ(NaN) = NaN.
// Thread-safety: a pure function.
inline double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::numbers::sqrt2); }

// Φ⁻¹(p), the standard normal quantile: normal_quantile(0.975) = 1.959964,
// normal_quantile(0.999) = 3.090232. Acklam's rational approximation (relative error < 1.2e-9)
// refined by one Halley step on normal_cdf, which brings it to a few ulps. ±inf at p = 0 / 1.
// Errors: throws std::invalid_argument unless p is in [0, 1].
// Thread-safety: a pure function.
inline double normal_quantile(double p) {
  if (!(p >= 0.0 && p <= 1.0)) throw std::invalid_argument("normal_quantile: p must be in [0, 1]");
  if (p == 0.0) return -std::numeric_limits<double>::infinity();
  if (p == 1.0) return std::numeric_limits<double>::infinity();
  constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                          1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                          6.680131188771972e+01, -1.328068155288572e+01};
  constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                          -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                          3.754408661907416e+00};
  constexpr double low = 0.02425;
  double x = 0.0;
  if (p < low) {
    const double q = std::sqrt(-2.0 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  } else if (p <= 1.0 - low) {
    const double q = p - 0.5;
    const double r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
  } else {
    const double q = std::sqrt(-2.0 * std::log1p(-p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  }
  // One Halley step: e = Φ(x) − p, u = e·√(2π)·exp(x²/2), x −= u / (1 + x·u/2). For x ≥ 0 the
  // error is taken on the upper tail, (1 − p) − Φ(−x), where Φ(x) − p would cancel (1 − p is
  // exact there, p ≥ 1/2).
  const double e = x < 0.0 ? normal_cdf(x) - p : (1.0 - p) - normal_cdf(-x);
  const double u = e * std::sqrt(2.0 * std::numbers::pi) * std::exp(0.5 * x * x);
  return x - u / (1.0 + 0.5 * x * u);
}

namespace details {

// The continued fraction of the incomplete beta function (Numerical Recipes 6.4, modified Lentz),
// valid for x < (a + 1) / (a + b + 2); converges in O(sqrt(max(a, b))) terms.
inline double beta_continued_fraction(double a, double b, double x) {
  constexpr int max_terms = 100000;
  constexpr double epsilon = 1e-16;
  constexpr double tiny = 1e-300;
  const double qab = a + b;
  const double qap = a + 1.0;
  const double qam = a - 1.0;
  double c = 1.0;
  double d = 1.0 - qab * x / qap;
  if (std::abs(d) < tiny) d = tiny;
  d = 1.0 / d;
  double h = d;
  for (int m = 1; m <= max_terms; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1.0 + aa * d;
    if (std::abs(d) < tiny) d = tiny;
    c = 1.0 + aa / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1.0 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1.0 + aa * d;
    if (std::abs(d) < tiny) d = tiny;
    c = 1.0 + aa / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1.0 / d;
    const double delta = d * c;
    h *= delta;
    if (std::abs(delta - 1.0) < epsilon) break;
  }
  return h;
}

// ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b).
inline double log_beta(double a, double b) {
  return std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b);
}

}  // namespace details

// I_x(a, b) = B(x; a, b) / B(a, b), the regularized incomplete beta function, for a, b > 0 and x
// in [0, 1]: the distribution function of a Beta(a, b) variable at x. By the continued fraction
// (Numerical Recipes 6.4), on whichever of I_x(a, b) and 1 − I_{1−x}(b, a) converges; relative
// accuracy about 1e-13 on the smaller tail.
// Errors: throws std::invalid_argument unless a > 0, b > 0 (finite) and 0 ≤ x ≤ 1.
// Thread-safety: a pure function.
inline double regularized_incomplete_beta(double a, double b, double x) {
  if (!(a > 0.0 && b > 0.0 && std::isfinite(a) && std::isfinite(b))) {
    throw std::invalid_argument("regularized_incomplete_beta: need finite a > 0 and b > 0");
  }
  if (!(x >= 0.0 && x <= 1.0)) {
    throw std::invalid_argument("regularized_incomplete_beta: x must be in [0, 1]");
  }
  if (x == 0.0) return 0.0;
  if (x == 1.0) return 1.0;
  const double front = std::exp(a * std::log(x) + b * std::log1p(-x) - details::log_beta(a, b));
  if (x < (a + 1.0) / (a + b + 2.0)) {
    return front * details::beta_continued_fraction(a, b, x) / a;
  }
  return 1.0 - front * details::beta_continued_fraction(b, a, 1.0 - x) / b;
}

// P(X ≤ k) for X ~ Binomial(n, p): the number of successes in n independent trials of
// probability p. Exact up to rounding: P(X ≤ k) = I_{1−p}(n − k, k + 1) (Abramowitz & Stegun
// 26.5.24), so it costs O(sqrt(n)), not O(k). 0 for k < 0, 1 for k ≥ n.
// Example: n = 10, p = 1/2, k = 2 gives (1 + 10 + 45) / 1024 = 56/1024.
// Errors: throws std::invalid_argument unless p is in [0, 1].
// Thread-safety: a pure function.
inline double binomial_cdf(std::int64_t k, std::uint64_t n, double p) {
  if (!(p >= 0.0 && p <= 1.0)) throw std::invalid_argument("binomial_cdf: p must be in [0, 1]");
  if (k < 0) return 0.0;
  if (static_cast<std::uint64_t>(k) >= n) return 1.0;
  if (p == 0.0) return 1.0;
  if (p == 1.0) return 0.0;  // k < n successes are impossible
  const double kd = static_cast<double>(k);
  return regularized_incomplete_beta(static_cast<double>(n) - kd, kd + 1.0, 1.0 - p);
}

// P(X ≥ k) for X ~ Binomial(n, p), the upper tail, computed as I_p(k, n − k + 1) rather than
// 1 − binomial_cdf(k − 1, n, p), so a tiny upper tail keeps its relative precision. 1 for k ≤ 0,
// 0 for k > n.
// Errors: throws std::invalid_argument unless p is in [0, 1].
// Thread-safety: a pure function.
inline double binomial_upper_tail(std::int64_t k, std::uint64_t n, double p) {
  if (!(p >= 0.0 && p <= 1.0)) {
    throw std::invalid_argument("binomial_upper_tail: p must be in [0, 1]");
  }
  if (k <= 0) return 1.0;
  if (static_cast<std::uint64_t>(k) > n) return 0.0;
  if (p == 0.0) return 0.0;
  if (p == 1.0) return 1.0;
  const double kd = static_cast<double>(k);
  return regularized_incomplete_beta(kd, static_cast<double>(n) - kd + 1.0, p);
}

// P(K ≤ k) for K ~ BetaBinomial(n, a, b): n trials whose success probability is itself drawn
// from Beta(a, b). Its use here: when a threshold is the j-th smallest of m baseline values, the
// share of fresh values (from the same continuous distribution) above it is Beta(m − j + 1, j),
// so the count of n fresh values above it is exactly BetaBinomial(n, m − j + 1, j) whatever the
// distribution — a tail test that accounts for the baseline's own sampling noise. As a, b grow
// with a / (a + b) = p it tends to binomial_cdf(k, n, p); a = b = 1 gives (k + 1) / (n + 1).
// Summed term by term from whichever end is nearer (pmf ratios, one lgamma start), O(min(k, n −
// k)). 0 for k < 0, 1 for k ≥ n. Errors: throws std::invalid_argument unless a > 0 and b > 0 are
// finite. Thread-safety: a pure function.
inline double beta_binomial_cdf(std::int64_t k, std::uint64_t n, double a, double b) {
  if (!(a > 0.0 && b > 0.0 && std::isfinite(a) && std::isfinite(b))) {
    throw std::invalid_argument("beta_binomial_cdf: need finite a > 0 and b > 0");
  }
  if (k < 0) return 0.0;
  if (static_cast<std::uint64_t>(k) >= n) return 1.0;
  const double nd = static_cast<double>(n);
  const double kd = static_cast<double>(k);
  if (kd <= nd / 2.0) {
    // pmf(0) = B(a, n + b) / B(a, b); pmf(i + 1) / pmf(i) = (n − i)(i + a) / ((i + 1)(n − i − 1 +
    // b)).
    double pmf = std::exp(details::log_beta(a, nd + b) - details::log_beta(a, b));
    double sum = pmf;
    for (std::int64_t i = 0; i < k; ++i) {
      const double id = static_cast<double>(i);
      pmf *= (nd - id) * (id + a) / ((id + 1.0) * (nd - id - 1.0 + b));
      sum += pmf;
    }
    return std::min(1.0, sum);
  }
  // The upper sum from i = n down to k + 1: pmf(n) = B(n + a, b) / B(a, b);
  // pmf(i − 1) / pmf(i) = i (n − i + b) / ((n − i + 1)(i − 1 + a)).
  double pmf = std::exp(details::log_beta(nd + a, b) - details::log_beta(a, b));
  double upper = 0.0;
  for (double i = nd; i > kd; i -= 1.0) {
    upper += pmf;
    pmf *= i * (nd - i + b) / ((nd - i + 1.0) * (i - 1.0 + a));
  }
  return std::max(0.0, 1.0 - upper);
}

}  // namespace loopwarden::sdk::stats
