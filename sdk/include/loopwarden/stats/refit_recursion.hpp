#pragma once
// refit_recursion: the exact expected dispersion of a loop that refits a model on N samples, a
// share of them the previous model's own output and the rest fresh real data.

#include <cmath>
#include <stdexcept>

namespace loopwarden::sdk::stats {

// Generation g + 1 fits a mean and a ddof-0 (total) variance to R = (1 − s)·N fresh samples of
// the real distribution (mean μ₀, total variance V₀) and S = s·N samples of model g (mean μ_g,
// total variance V_g). In units of V₀, with D_g = V_g/V₀ and M_g = ‖μ_g − μ₀‖²/V₀, exactly and
// whatever the distributions (only first and second moments enter):
//   E[D_{g+1} | g] = (N − 1)/N · ((1 − s) + s·D_g) + s(1 − s)·M_g
//   E[M_{g+1} | g] = s²·M_g + ((1 − s) + s·D_g)/N
// The first term is the pooled variance's usual (N − 1)/N; the second is the spread that the
// model's wandering mean adds once it is mixed with real data of another mean. Both right-hand
// sides are linear, so the expectations E D_g, E M_g follow the same recursion, from D_0 = 1,
// M_0 = 0. With s = 1 (no real data) M never enters: E D_g = ((N − 1)/N)^g. With s < 1 the fixed
// point is D* = (1 − s)c / (1 − s·c), c = (N − 1)/N + s/(N(1 + s)). It holds for a Gaussian
// refit, for the total variance of refitted vectors, and for Gini–Simpson diversity under
// multinomial resampling (the total variance of one-hot vectors). Checked by simulation in
// tests/sdk/refit_recursion_test.cpp. O(1), no allocation.
class refit_expectation {
 public:
  // One generation: `n` samples (≥ 2), `synthetic_share` of them model-made, in [0, 1].
  // Throws std::invalid_argument otherwise.
  void step(double n, double synthetic_share) {
    if (!(n >= 2.0) || !std::isfinite(n)) {
      throw std::invalid_argument("refit_expectation: n must be finite and >= 2");
    }
    if (!(synthetic_share >= 0.0 && synthetic_share <= 1.0)) {
      throw std::invalid_argument("refit_expectation: synthetic_share must be in [0, 1]");
    }
    const double s = synthetic_share;
    const double pooled = (1.0 - s) + s * dispersion_;
    const double next = (n - 1.0) / n * pooled + s * (1.0 - s) * mean_offset_;
    mean_offset_ = s * s * mean_offset_ + pooled / n;
    dispersion_ = next;
  }

  // E D_g: the expected dispersion ratio after the steps so far (1 before any).
  double dispersion() const { return dispersion_; }
  // E M_g: the expected squared offset of the model's mean from the real mean, in units of V₀.
  double mean_offset() const { return mean_offset_; }

  // Restores a state written from dispersion() and mean_offset(); false (unchanged) when either
  // is not finite or is negative.
  bool restore(double dispersion, double mean_offset) {
    if (!std::isfinite(dispersion) || !std::isfinite(mean_offset) || dispersion < 0.0 ||
        mean_offset < 0.0) {
      return false;
    }
    dispersion_ = dispersion;
    mean_offset_ = mean_offset;
    return true;
  }

  // The fixed point D* of a loop that keeps `n` and `synthetic_share` constant (< 1).
  static double fixed_point(double n, double synthetic_share) {
    const double s = synthetic_share;
    const double c = (n - 1.0) / n + s / (n * (1.0 + s));
    return (1.0 - s) * c / (1.0 - s * c);
  }

 private:
  double dispersion_ = 1.0;
  double mean_offset_ = 0.0;
};

}  // namespace loopwarden::sdk::stats
