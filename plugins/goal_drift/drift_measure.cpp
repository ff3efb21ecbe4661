#include "drift_measure.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>

#include <loopwarden/stats/cosine.hpp>
#include <loopwarden/stats/set_overlap.hpp>
#include <loopwarden/stats/sparse_histogram.hpp>

namespace loopwarden::goal_drift {

namespace {

// A component's value, or why the evidence for it is malformed.
struct outcome {
  double value = nan;
  std::string problem;  // non-empty: malformed
};

outcome problem(std::string why) { return {nan, std::move(why)}; }

std::span<const float> values_of(const v1::FloatMatrix& m) {
  return {m.values().data(), static_cast<std::size_t>(m.values_size())};
}

// 1 − cos is in [0, 2]; a candidate pointing away from the specification is as far from it as
// the index can say, so the component is min(1, distance).
outcome semantic_from(const v1::DriftMaterial& m, const settings& s) {
  const v1::FloatMatrix& c = m.candidate_embeddings();
  const v1::FloatMatrix& r = m.reference_embeddings();
  const bool has_c = c.values_size() > 0;
  const bool has_r = r.values_size() > 0;
  if (!has_c && !has_r) return {};
  if (has_c != has_r) {
    return problem(has_c ? "candidate embeddings without reference embeddings"
                         : "reference embeddings without candidate embeddings");
  }
  if (c.dim() == 0 || r.dim() == 0) return problem("embeddings with dimension 0");
  if (c.dim() != r.dim()) {
    return problem("candidate embeddings of dimension " + std::to_string(c.dim()) +
                   ", reference of " + std::to_string(r.dim()));
  }
  const std::size_t dim = c.dim();
  for (const v1::FloatMatrix* x : {&c, &r}) {
    if (static_cast<std::size_t>(x->values_size()) % dim != 0) {
      return problem(std::to_string(x->values_size()) +
                     " embedding values are not whole rows of dimension " + std::to_string(dim));
    }
    for (float v : x->values()) {
      if (!std::isfinite(v)) return problem("an embedding holds a non-finite value");
    }
  }
  const double d = s.semantic == semantic_method::mean
                       ? stats::mean_cosine_distance(values_of(c), values_of(r), dim)
                       : stats::mean_pairwise_cosine_distance(values_of(c), values_of(r), dim);
  if (std::isnan(d)) return problem("embeddings with no usable direction (zero vectors)");
  return {std::min(1.0, d), {}};
}

outcome lexical_from(const v1::DriftMaterial& m, const settings& s) {
  const bool has_c = m.candidate_tokens_size() > 0;
  const bool has_r = m.reference_tokens_size() > 0;
  if (!has_c && !has_r) return {};
  if (has_c != has_r) {
    return problem(has_c ? "candidate tokens without reference tokens"
                         : "reference tokens without candidate tokens");
  }
  const std::span<const std::uint64_t> c(m.candidate_tokens().data(),
                                         static_cast<std::size_t>(m.candidate_tokens_size()));
  const std::span<const std::uint64_t> r(m.reference_tokens().data(),
                                         static_cast<std::size_t>(m.reference_tokens_size()));
  const double d =
      stats::ngram_jaccard_distance(c, r, s.ngram, s.lexical == lexical_method::multiset);
  if (std::isnan(d)) {
    return problem("token sequences shorter than the n-gram order " + std::to_string(s.ngram));
  }
  return {d, {}};
}

outcome distributional_from(const v1::DriftMaterial& m, const settings& s) {
  const v1::SparseHistogram& c = m.candidate_histogram();
  const v1::SparseHistogram& r = m.reference_histogram();
  const bool has_c = c.keys_size() > 0 || c.counts_size() > 0;
  const bool has_r = r.keys_size() > 0 || r.counts_size() > 0;
  if (!has_c && !has_r) return {};
  if (has_c != has_r) {
    return problem(has_c ? "candidate histogram without reference histogram"
                         : "reference histogram without candidate histogram");
  }
  for (const v1::SparseHistogram* h : {&c, &r}) {
    if (h->keys_size() != h->counts_size()) {
      return problem("a histogram with " + std::to_string(h->keys_size()) + " keys and " +
                     std::to_string(h->counts_size()) + " counts");
    }
    for (double v : h->counts()) {
      if (!(v >= 0.0 && std::isfinite(v)))
        return problem("a histogram count is negative or not finite");
    }
  }
  const double bits = stats::sparse_js_divergence_bits(
      {c.keys().data(), static_cast<std::size_t>(c.keys_size())},
      {c.counts().data(), static_cast<std::size_t>(c.counts_size())},
      {r.keys().data(), static_cast<std::size_t>(r.keys_size())},
      {r.counts().data(), static_cast<std::size_t>(r.counts_size())}, s.histogram_smoothing);
  if (std::isnan(bits)) return problem("a histogram with no mass");
  return {bits, {}};
}

}  // namespace

measured_drift measure_drift(const v1::CycleReport& report, const settings& s) {
  measured_drift out;
  auto fail = [&out](std::string why) {
    out = measured_drift{};
    out.malformed = true;
    out.problem = std::move(why);
    return out;
  };
  const v1::DriftComponents& d = report.drift();
  const std::array<std::optional<double>, component_count> given = {
      d.has_semantic() ? std::optional(d.semantic()) : std::nullopt,
      d.has_lexical() ? std::optional(d.lexical()) : std::nullopt,
      d.has_structural() ? std::optional(d.structural()) : std::nullopt,
      d.has_distributional() ? std::optional(d.distributional()) : std::nullopt};
  for (std::size_t i = 0; i < component_count; ++i) {
    if (!given[i]) continue;
    const double v = *given[i];
    if (!(v >= 0.0 && v <= 1.0)) {  // also refuses NaN
      return fail("precomputed " + std::string(component_names[i]) + " component " +
                  (std::isnan(v) ? std::string("is NaN") : "outside [0, 1]"));
    }
    out.value[i] = v;
  }
  if (!report.has_material()) return out;
  const v1::DriftMaterial& m = report.material();
  // The statistics throw only on shapes checked above; a throw here is a bug, but one report
  // must not take the monitor down with it.
  try {
    const std::array<std::pair<component, outcome (*)(const v1::DriftMaterial&, const settings&)>,
                     3>
        measures = {std::pair{component::semantic, &semantic_from},
                    std::pair{component::lexical, &lexical_from},
                    std::pair{component::distributional, &distributional_from}};
    for (const auto& [c, measure] : measures) {
      const auto i = static_cast<std::size_t>(c);
      if (given[i]) continue;  // precomputed wins
      outcome o = measure(m, s);
      if (!o.problem.empty()) return fail(std::string(name_of(c)) + ": " + o.problem);
      out.value[i] = o.value;
      out.from_material[i] = !std::isnan(o.value);
    }
  } catch (const std::exception& e) {
    return fail(std::string("material: ") + e.what());
  }
  return out;
}

drift_index combine(const measured_drift& drift, const settings& s) {
  drift_index out;
  double weight = 0.0;
  double sum = 0.0;
  for (std::size_t i = 0; i < component_count; ++i) {
    if (std::isnan(drift.value[i]) || !(s.weights[i] > 0.0)) continue;
    weight += s.weights[i];
    sum += s.weights[i] * drift.value[i];
    if (!out.present.empty()) out.present += ",";
    out.present += component_names[i];
  }
  if (!(weight > 0.0)) return out;
  for (std::size_t i = 0; i < component_count; ++i) {
    if (!std::isnan(drift.value[i]) && s.weights[i] > 0.0) out.weights[i] = s.weights[i] / weight;
  }
  // Components are in [0, 1] and the weights sum to 1: only rounding can leave [0, 1].
  out.value = std::clamp(sum / weight, 0.0, 1.0);
  return out;
}

}  // namespace loopwarden::goal_drift
