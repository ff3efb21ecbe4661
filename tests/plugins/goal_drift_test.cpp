// goal_drift through the real engine and the real plugin .so, each check against a value that
// can be worked out by hand: the components on orthogonal / identical / disjoint material, the
// weighted index, the calibrated threshold of a seeded run with a drift ramp, the CUSUM on slow
// creep, constraint preservation, regression, the knee, the cycle cap, malformed reports, and a
// snapshot that continues exactly where the monitor left off.

#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <numbers>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>
#include <loopwarden/core/plugin_host.hpp>
#include <loopwarden/state_codec.hpp>
#include <loopwarden/stats/welford.hpp>

using namespace loopwarden;

namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();
constexpr const char* drift_breaker = "improvement.goal_drift";
constexpr const char* constraint_breaker = "improvement.constraint";
constexpr const char* cap_breaker = "improvement.cycle_cap";

using components = std::array<double, 4>;  // semantic, lexical, structural, distributional

std::string plugin_dir() { return std::string(LOOPWARDEN_BINARY_DIR) + "/lib/loopwarden/plugins"; }

std::string yaml_for(const std::string& monitor_config) {
  return "version: 1\nplugin_paths: [\"" + plugin_dir() +
         "\"]\nmonitors:\n  - name: gd\n    plugin: goal_drift\n    config: " + monitor_config +
         "\n";
}

std::unique_ptr<core::engine> engine_with(const std::string& monitor_config) {
  const std::string yaml = yaml_for(monitor_config);
  auto cfg = core::parse_config(yaml, "gd.yaml");
  INFO(yaml);
  REQUIRE(cfg.ok());
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  auto e = core::engine::create(*cfg, opts);
  INFO((e.ok() ? std::string() : e.error().message()));
  REQUIRE(e.ok());
  return std::move(*e);
}

// A cycle report: candidate "c<cycle>" built on "c<cycle - 1>", the given precomputed
// components (NaN = not reported) and metrics.
v1::CycleReport make_report(std::uint64_t cycle, const components& c,
                            const std::map<std::string, double>& capability = {},
                            const std::map<std::string, double>& alignment = {}) {
  v1::CycleReport r;
  r.set_cycle(cycle);
  r.set_candidate_id("c" + std::to_string(cycle));
  r.set_parent_id("c" + std::to_string(cycle - 1));
  auto* d = r.mutable_drift();
  if (!std::isnan(c[0])) d->set_semantic(c[0]);
  if (!std::isnan(c[1])) d->set_lexical(c[1]);
  if (!std::isnan(c[2])) d->set_structural(c[2]);
  if (!std::isnan(c[3])) d->set_distributional(c[3]);
  for (const auto& [name, value] : capability) {
    auto* m = r.add_capability_metrics();
    m->set_name(name);
    m->set_value(value);
  }
  for (const auto& [name, value] : alignment) {
    auto* m = r.add_alignment_metrics();
    m->set_name(name);
    m->set_value(value);
  }
  return r;
}

components all(double v) { return {v, v, v, v}; }

void add_constraint(v1::CycleReport& r, const std::string& name, bool passed, bool critical) {
  auto* c = r.add_constraints();
  c->set_name(name);
  c->set_passed(passed);
  c->set_critical(critical);
  c->set_detail(passed ? "" : name + " failed on 3 of 40 probes");
}

v1::Envelope envelope_of(const std::string& run, std::uint64_t seq, v1::CycleReport report) {
  v1::Envelope e;
  e.set_source("improver/" + run);
  e.set_run_id(run);
  e.set_seq(seq);
  e.set_time_unix_nano(static_cast<std::int64_t>(seq) * 1'000'000);
  *e.mutable_cycle_report() = std::move(report);
  return e;
}

// Sends cycle reports to one engine and remembers the cycle at which each breaker first opened.
class feeder {
 public:
  explicit feeder(core::engine& e) : engine_(e) {
    e.breakers().add_listener([this](const v1::BreakerTransition& t) {
      if (t.breaker().state() != v1::BREAKER_STATE_OPEN) return;
      auto& first = opened_[t.breaker().name()];
      if (first.count(t.breaker().run_id()) == 0) first[t.breaker().run_id()] = cycle_;
    });
  }

  void send(const std::string& run, v1::CycleReport report) {
    cycle_ = static_cast<std::int64_t>(report.cycle());
    engine_.process(envelope_of(run, ++seq_, std::move(report)));
  }

  // The cycle whose report opened `breaker` for `run`, or -1.
  std::int64_t opened_at(const std::string& breaker, const std::string& run) const {
    auto b = opened_.find(breaker);
    if (b == opened_.end()) return -1;
    auto r = b->second.find(run);
    return r == b->second.end() ? -1 : r->second;
  }

 private:
  core::engine& engine_;
  std::uint64_t seq_ = 0;
  std::int64_t cycle_ = -1;
  std::map<std::string, std::map<std::string, std::int64_t>> opened_;
};

std::map<std::string, std::string> evidence_of(core::engine& e, const std::string& breaker,
                                               const std::string& run) {
  std::map<std::string, std::string> out;
  auto b = e.breakers().find({breaker, run});
  if (!b) return out;
  for (const auto& kv : b->evidence()) out[kv.key()] = kv.value();
  return out;
}

// The monitor's gauge `name` (NaN when it was never published).
double gauge(core::engine& e, const std::string& name) {
  for (const auto& m : e.monitors()) {
    if (m.name != "gd") continue;
    for (const auto& [n, v] : m.gauges) {
      if (n == name) return v;
    }
  }
  return nan_value;
}

// Row-major float embeddings.
void set_matrix(v1::FloatMatrix* m, std::uint32_t dim, const std::vector<float>& values) {
  m->set_dim(dim);
  for (float v : values) m->add_values(v);
}

void set_histogram(v1::SparseHistogram* h, const std::vector<std::uint64_t>& keys,
                   const std::vector<double>& counts) {
  for (auto k : keys) h->add_keys(k);
  for (auto c : counts) h->add_counts(c);
}

// The calibrated threshold worked out the way the docs define it: max(floor, mean + k·max(sd,
// min_sd)) over the first trusted indices, sd with ddof 1 (defaults k 3, floor 0.1, min_sd 0.02).
double calibrated_threshold(const std::vector<double>& indices, double k = 3.0, double floor = 0.1,
                            double min_sd = 0.02) {
  double mean = 0.0;
  for (double x : indices) mean += x;
  mean /= static_cast<double>(indices.size());
  double ss = 0.0;
  for (double x : indices) ss += (x - mean) * (x - mean);
  const double sd = std::sqrt(ss / static_cast<double>(indices.size() - 1));
  return std::max(floor, mean + k * std::max(sd, min_sd));
}

}  // namespace

TEST_CASE("goal_drift measures each component from raw material as the hand computation says",
          "[plugins][goal_drift]") {
  struct row {
    std::string name;
    std::function<void(v1::DriftMaterial&)> fill;
    std::string component;
    double expected;
  };
  const std::vector<row> rows = {
      {"identical embeddings",
       [](v1::DriftMaterial& m) {
         set_matrix(m.mutable_candidate_embeddings(), 3, {1, 2, 3, 0, 1, 0});
         set_matrix(m.mutable_reference_embeddings(), 3, {1, 2, 3, 0, 1, 0});
       },
       "semantic", 0.0},
      {"orthogonal embeddings",
       [](v1::DriftMaterial& m) {
         set_matrix(m.mutable_candidate_embeddings(), 2, {1, 0, 2, 0});
         set_matrix(m.mutable_reference_embeddings(), 2, {0, 3});
       },
       "semantic", 1.0},
      {"embeddings at 60 degrees: 1 - cos 60 = 0.5",
       [](v1::DriftMaterial& m) {
         set_matrix(m.mutable_candidate_embeddings(), 2, {1, 0});
         set_matrix(m.mutable_reference_embeddings(), 2,
                    {0.5F, static_cast<float>(std::sqrt(3.0) / 2.0)});
       },
       "semantic", 0.5},
      {"opposite embeddings are as far as the index goes",
       [](v1::DriftMaterial& m) {
         set_matrix(m.mutable_candidate_embeddings(), 2, {1, 0});
         set_matrix(m.mutable_reference_embeddings(), 2, {-1, 0});
       },
       "semantic", 1.0},
      {"identical token sets",
       [](v1::DriftMaterial& m) {
         for (std::uint64_t t : {5, 6, 7, 5}) m.add_candidate_tokens(t);
         for (std::uint64_t t : {7, 6, 5}) m.add_reference_tokens(t);
       },
       "lexical", 0.0},
      {"disjoint token sets",
       [](v1::DriftMaterial& m) {
         for (std::uint64_t t : {1, 2, 3}) m.add_candidate_tokens(t);
         for (std::uint64_t t : {4, 5}) m.add_reference_tokens(t);
       },
       "lexical", 1.0},
      {"token sets sharing 2 of 4: 1 - 2/4",
       [](v1::DriftMaterial& m) {
         for (std::uint64_t t : {1, 2, 3}) m.add_candidate_tokens(t);
         for (std::uint64_t t : {2, 3, 4}) m.add_reference_tokens(t);
       },
       "lexical", 0.5},
      {"identical histograms",
       [](v1::DriftMaterial& m) {
         set_histogram(m.mutable_candidate_histogram(), {1, 2, 3}, {10, 20, 30});
         set_histogram(m.mutable_reference_histogram(), {3, 2, 1}, {3, 2, 1});
       },
       "distributional", 0.0},
      {"disjoint histograms: ln 2 nats = 1 bit",
       [](v1::DriftMaterial& m) {
         set_histogram(m.mutable_candidate_histogram(), {1, 2}, {5, 5});
         set_histogram(m.mutable_reference_histogram(), {3}, {1});
       },
       "distributional", 1.0},
      {"(1/2, 1/2) against (1, 0): 3/4 log2(4/3) bits",
       [](v1::DriftMaterial& m) {
         set_histogram(m.mutable_candidate_histogram(), {1, 2}, {1, 1});
         set_histogram(m.mutable_reference_histogram(), {1}, {4});
       },
       "distributional", 0.75 * std::log2(4.0 / 3.0)},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto e = engine_with("{}");
    feeder f(*e);
    v1::CycleReport report = make_report(1, all(nan_value));
    r.fill(*report.mutable_material());
    f.send("material", report);
    CHECK(gauge(*e, r.component) == Approx(r.expected).margin(1e-7));
    // With one component present the index is that component.
    CHECK(gauge(*e, "index") == Approx(r.expected).margin(1e-7));
    CHECK(gauge(*e, "components_present") == 1.0);
    CHECK(std::isnan(gauge(*e, "malformed_reports")));  // never published: nothing was malformed
  }
}

TEST_CASE("goal_drift mean pairwise semantic distance sees spread the means hide",
          "[plugins][goal_drift]") {
  // {e1, e2} against itself: the means coincide (distance 0), the four pair cosines are
  // 1, 0, 0, 1 (distance 1/2).
  for (const auto& [method, expected] : {std::pair{"mean", 0.0}, std::pair{"pairwise", 0.5}}) {
    INFO(method);
    auto e = engine_with(std::string("{semantic_method: ") + method + "}");
    feeder f(*e);
    v1::CycleReport report = make_report(1, all(nan_value));
    set_matrix(report.mutable_material()->mutable_candidate_embeddings(), 2, {1, 0, 0, 1});
    set_matrix(report.mutable_material()->mutable_reference_embeddings(), 2, {0, 1, 1, 0});
    f.send("r", report);
    CHECK(gauge(*e, "semantic") == Approx(expected).margin(1e-12));
  }
}

TEST_CASE("goal_drift lexical component over bigrams and multisets", "[plugins][goal_drift]") {
  struct row {
    std::string config;
    double expected;
  };
  // Candidate 1 2 3 4, reference 1 2 3 5 (and 1 1 1 against 1 for the multiset row).
  const std::vector<row> rows = {
      {"{}", 1.0 - 3.0 / 5.0},          // unigram sets {1,2,3,4} / {1,2,3,5}
      {"{ngram: 2}", 0.5},              // bigrams {12,23,34} / {12,23,35}
      {"{ngram: 3}", 1.0 - 1.0 / 3.0},  // trigrams {123,234} / {123,235}
  };
  for (const auto& r : rows) {
    INFO(r.config);
    auto e = engine_with(r.config);
    feeder f(*e);
    v1::CycleReport report = make_report(1, all(nan_value));
    for (std::uint64_t t : {1, 2, 3, 4}) report.mutable_material()->add_candidate_tokens(t);
    for (std::uint64_t t : {1, 2, 3, 5}) report.mutable_material()->add_reference_tokens(t);
    f.send("r", report);
    CHECK(gauge(*e, "lexical") == Approx(r.expected).margin(1e-12));
  }
  auto e = engine_with("{lexical_method: multiset}");
  feeder f(*e);
  v1::CycleReport report = make_report(1, all(nan_value));
  for (std::uint64_t t : {1, 1, 1, 2}) report.mutable_material()->add_candidate_tokens(t);
  for (std::uint64_t t : {1, 2}) report.mutable_material()->add_reference_tokens(t);
  f.send("r", report);
  // counts {1: 3, 2: 1} against {1: 1, 2: 1}: min 1 + 1, max 3 + 1.
  CHECK(gauge(*e, "lexical") == Approx(1.0 - 2.0 / 4.0).margin(1e-12));
}

TEST_CASE("goal_drift takes a precomputed component over the material for it",
          "[plugins][goal_drift]") {
  auto e = engine_with("{}");
  feeder f(*e);
  v1::CycleReport report = make_report(1, {0.25, nan_value, nan_value, nan_value});
  set_matrix(report.mutable_material()->mutable_candidate_embeddings(), 2, {1, 0});
  set_matrix(report.mutable_material()->mutable_reference_embeddings(), 2, {0, 1});  // would be 1
  for (std::uint64_t t : {1, 2}) report.mutable_material()->add_candidate_tokens(t);
  for (std::uint64_t t : {2, 3}) report.mutable_material()->add_reference_tokens(t);  // 1 - 1/3
  f.send("r", report);
  CHECK(gauge(*e, "semantic") == 0.25);
  CHECK(gauge(*e, "lexical") == Approx(2.0 / 3.0).margin(1e-12));
  // Equal weights renormalised over the two present: (0.25 + 2/3) / 2.
  CHECK(gauge(*e, "index") == Approx((0.25 + 2.0 / 3.0) / 2.0).margin(1e-12));
}

TEST_CASE("goal_drift index is the hand-computed weighted combination", "[plugins][goal_drift]") {
  struct row {
    std::string config;
    components c;
    double expected;
    double present;
  };
  const std::vector<row> rows = {
      // Equal weights by default: (0.2 + 0.4 + 0.6 + 0.8) / 4.
      {"{}", {0.2, 0.4, 0.6, 0.8}, 0.5, 4},
      // 0.5·0.2 + 0.3·0.4 + 0.2·0.6 + 0·0.9 = 0.1 + 0.12 + 0.12.
      {"{weights: {semantic: 0.5, lexical: 0.3, structural: 0.2, distributional: 0}}",
       {0.2, 0.4, 0.6, 0.9},
       0.34,
       3},
      // Structural missing: its weight is spread in proportion, (0.5·0.2 + 0.3·0.4) / 0.8.
      {"{weights: {semantic: 0.5, lexical: 0.3, structural: 0.2}}",
       {0.2, 0.4, nan_value, 0.9},
       0.275,
       2},
      // Only one component present: the index is that component.
      {"{}", {nan_value, nan_value, 0.37, nan_value}, 0.37, 1},
      // Weights within the 0.001 tolerance are accepted and rescaled to sum 1:
      // (0.333·0.3 + 0.333·0.6 + 0.333·0.9) / 0.999 = 0.6.
      {"{weights: {semantic: 0.333, lexical: 0.333, structural: 0.333}}",
       {0.3, 0.6, 0.9, 0.1},
       0.6,
       3},
  };
  for (const auto& r : rows) {
    INFO(r.config);
    auto e = engine_with(r.config);
    feeder f(*e);
    f.send("w", make_report(1, r.c));
    CHECK(gauge(*e, "index") == Approx(r.expected).margin(1e-12));
    CHECK(gauge(*e, "components_present") == r.present);
  }
}

TEST_CASE("goal_drift refuses bad config naming the field and line", "[plugins][goal_drift]") {
  struct row {
    std::string config;
    std::string error;
  };
  const std::vector<row> rows = {
      {"{weights: {semantic: 0.5, lexical: 0.4}}",
       "monitors[0].config.weights: weights sum to 0.9, expected 1 (within 0.001) (gd.yaml:6)"},
      {"{weights: {semantic: 0.7, lexical: 0.7}}",
       "monitors[0].config.weights: weights sum to 1.4, expected 1 (within 0.001) (gd.yaml:6)"},
      {"{weights: {semantic: 1.5}}",
       "monitors[0].config.weights.semantic: expected a number in [0, 1], got \"1.5\" "
       "(gd.yaml:6)"},
      {"{weights: {semantics: 1}}",
       "monitors[0].config.weights.semantics: unknown key (allowed: semantic, lexical, "
       "structural, distributional) (gd.yaml:6)"},
      {"{weights: 1}",
       "monitors[0].config.weights: expected a map of component names to weights, got \"1\" "
       "(gd.yaml:6)"},
      {"{treshold: {}}",
       "monitors[0].config.treshold: unknown key (allowed: weights, semantic_method, "
       "lexical_method, ngram, histogram_smoothing, threshold, cusum, regression, knee, "
       "max_cycles, max_runs, max_metrics, drift_breaker, constraint_breaker, "
       "cycle_cap_breaker) (gd.yaml:6)"},
      {"{semantic_method: median}",
       "monitors[0].config.semantic_method: expected mean or pairwise, got \"median\" "
       "(gd.yaml:6)"},
      {"{lexical_method: bag}",
       "monitors[0].config.lexical_method: expected set or multiset, got \"bag\" (gd.yaml:6)"},
      {"{ngram: 0}",
       "monitors[0].config.ngram: expected an integer in [1, 16], got \"0\" (gd.yaml:6)"},
      {"{histogram_smoothing: -1}",
       "monitors[0].config.histogram_smoothing: expected a number >= 0, got \"-1\" (gd.yaml:6)"},
      {"{threshold: {prior: 1.2}}",
       "monitors[0].config.threshold.prior: expected a number in (0, 1), got \"1.2\" (gd.yaml:6)"},
      {"{threshold: {calibration_cycles: 1}}",
       "monitors[0].config.threshold.calibration_cycles: expected 0 (keep the prior) or at least "
       "2 cycles, got 1 (gd.yaml:6)"},
      {"{threshold: {calibration_cycles: -3}}",
       "monitors[0].config.threshold.calibration_cycles: expected an integer in [0, 1000], got "
       "\"-3\" (gd.yaml:6)"},
      {"{threshold: {k: -1}}",
       "monitors[0].config.threshold.k: expected a number >= 0, got \"-1\" (gd.yaml:6)"},
      {"{threshold: {floor: 0.5}}",
       "monitors[0].config.threshold.floor: floor (0.5) is above prior (0.44) (gd.yaml:6)"},
      {"{threshold: {min_sd: 0}}",
       "monitors[0].config.threshold.min_sd: expected a number in (0, 1), got \"0\" (gd.yaml:6)"},
      {"{cusum: {h: 0}}",
       "monitors[0].config.cusum.h: expected a number > 0, got \"0\" (gd.yaml:6)"},
      {"{cusum: {enabled: maybe}}",
       "monitors[0].config.cusum.enabled: expected true or false, got \"maybe\" (gd.yaml:6)"},
      {"{regression: {margin: -0.1}}",
       "monitors[0].config.regression.margin: expected a number >= 0, got \"-0.1\" (gd.yaml:6)"},
      {"{regression: {margins: {pass_rate: abc}}}",
       "monitors[0].config.regression.margins.pass_rate: expected a number, got \"abc\" "
       "(gd.yaml:6)"},
      {"{knee: {window: 0}}",
       "monitors[0].config.knee.window: expected an integer in [1, 1000], got \"0\" (gd.yaml:6)"},
      {"{knee: {ratio_limit: -1}}",
       "monitors[0].config.knee.ratio_limit: expected a number >= 0 (0: gauge only), got \"-1\" "
       "(gd.yaml:6)"},
      {"{max_cycles: 0}",
       "monitors[0].config.max_cycles: expected a positive integer, got \"0\" (gd.yaml:6)"},
      {"{max_runs: many}",
       "monitors[0].config.max_runs: expected an integer, got \"many\" (gd.yaml:6)"},
      {"{drift_breaker: x, constraint_breaker: x}",
       "monitors[0].config.constraint_breaker: must differ from drift_breaker (\"x\") "
       "(gd.yaml:6)"},
      {"{cycle_cap_breaker: \"\"}",
       "monitors[0].config.cycle_cap_breaker: expected a breaker name (gd.yaml:6)"},
  };
  for (const auto& r : rows) {
    INFO(r.config);
    auto cfg = core::parse_config(yaml_for(r.config), "gd.yaml");
    REQUIRE(cfg.ok());
    core::engine_options opts;
    opts.search_bundled_plugins = false;
    auto e = core::engine::create(*cfg, opts);
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().message() == "monitor 'gd': " + r.error);
  }
}

TEST_CASE("goal_drift names the line of a bad weight in a multi-line file",
          "[plugins][goal_drift]") {
  const std::string yaml = "version: 1\nplugin_paths: [\"" + plugin_dir() +
                           "\"]\nmonitors:\n  - name: gd\n    plugin: goal_drift\n"
                           "    config:\n      max_cycles: 8\n      weights:\n"
                           "        semantic: 0.6\n        lexical: 0.6\n";
  auto cfg = core::parse_config(yaml, "gd.yaml");
  REQUIRE(cfg.ok());
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  auto e = core::engine::create(*cfg, opts);
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().message() ==
        "monitor 'gd': monitors[0].config.weights: weights sum to 1.2, expected 1 (within "
        "0.001) (gd.yaml:8)");
}

TEST_CASE(
    "goal_drift trips at the first cycle above the calibrated threshold and names the last "
    "trusted candidate",
    "[plugins][goal_drift]") {
  // Seeded runs: 10 healthy cycles whose four components are drawn from N(0.3, 0.03), then a
  // drift ramp that adds 0.1 per cycle to every component. The test works out the threshold
  // from the first 5 indices itself (mean + 3·sd, sd ddof 1, never below 0.1, sd never below
  // 0.02) and the first cycle whose index exceeds it.
  constexpr int runs = 20;
  constexpr int healthy = 10;
  constexpr int ramp = 8;
  int checked = 0;
  for (int seed = 1; seed <= runs; ++seed) {
    std::mt19937_64 rng(static_cast<std::uint64_t>(seed));
    std::normal_distribution<double> noise(0.0, 0.03);
    auto e = engine_with("{max_cycles: 100}");
    feeder f(*e);
    const std::string run = "seeded-" + std::to_string(seed);
    std::vector<double> indices;
    for (int cycle = 1; cycle <= healthy + ramp; ++cycle) {
      const double shift = cycle > healthy ? 0.1 * (cycle - healthy) : 0.0;
      components c{};
      double index = 0.0;
      for (double& x : c) {
        x = std::clamp(0.3 + noise(rng) + shift, 0.0, 1.0);
        index += x / 4.0;
      }
      indices.push_back(index);
      f.send(run, make_report(static_cast<std::uint64_t>(cycle), c));
    }
    const double threshold =
        calibrated_threshold(std::vector<double>(indices.begin(), indices.begin() + 5));
    int first_above = -1;
    for (int i = 5; i < static_cast<int>(indices.size()); ++i) {
      if (indices[static_cast<std::size_t>(i)] > threshold) {
        first_above = i + 1;
        break;
      }
    }
    INFO("seed " << seed << ", threshold " << threshold << ", first above " << first_above);
    REQUIRE(first_above > healthy);  // the healthy phase stays below its own threshold
    CHECK(f.opened_at(drift_breaker, run) == first_above);
    const auto ev = evidence_of(*e, drift_breaker, run);
    CHECK(ev.at("failed").rfind("threshold", 0) == 0);
    CHECK(ev.at("threshold_source") == "calibrated");
    CHECK(std::stod(ev.at("threshold")) == Approx(threshold).epsilon(1e-3));
    CHECK(ev.at("last_trusted_cycle") == std::to_string(first_above - 1));
    CHECK(ev.at("last_trusted_candidate") == "c" + std::to_string(first_above - 1));
    auto b = e->breakers().find({drift_breaker, run});
    REQUIRE(b);
    CHECK(b->action() == v1::BREAKER_ACTION_ROLLBACK);
    CHECK(f.opened_at(constraint_breaker, run) == -1);
    ++checked;
  }
  CHECK(checked == runs);
}

TEST_CASE("goal_drift trips on the prior before calibration", "[plugins][goal_drift]") {
  // Calibration needs 5 trusted cycles; cycle 3 at 0.45 is above the prior 0.44 already.
  auto e = engine_with("{}");
  feeder f(*e);
  f.send("early", make_report(1, all(0.30)));
  f.send("early", make_report(2, all(0.32)));
  f.send("early", make_report(3, all(0.45)));
  CHECK(f.opened_at(drift_breaker, "early") == 3);
  const auto ev = evidence_of(*e, drift_breaker, "early");
  CHECK(ev.at("threshold_source") == "prior");
  CHECK(ev.at("threshold") == "0.44");
  CHECK(ev.at("index") == "0.45");
  CHECK(ev.at("index_excess") == "0.01");
  CHECK(ev.at("last_trusted_candidate") == "c2");
  // Exactly at the prior is not above it.
  auto e2 = engine_with("{}");
  feeder f2(*e2);
  f2.send("edge", make_report(1, all(0.44)));
  CHECK(f2.opened_at(drift_breaker, "edge") == -1);
}

TEST_CASE("goal_drift rolls back to the run's starting version when the first cycle drifts",
          "[plugins][goal_drift]") {
  auto e = engine_with("{}");
  feeder f(*e);
  f.send("first", make_report(1, all(0.9)));
  CHECK(f.opened_at(drift_breaker, "first") == 1);
  const auto ev = evidence_of(*e, drift_breaker, "first");
  CHECK(ev.at("last_trusted_cycle") == "0");
  CHECK(ev.at("last_trusted_candidate") == "c0");  // the first report's parent_id
}

TEST_CASE("goal_drift cusum catches slow creep below the calibrated threshold",
          "[plugins][goal_drift]") {
  // Calibration indices 0.28, 0.30, 0.32, 0.30, 0.30: mean 0.30, sd √(0.0008/4) = 0.01414,
  // raised to min_sd 0.02; threshold max(0.1, 0.30 + 3·0.02) = 0.36. The creep 0.32, 0.33,
  // 0.34, 0.35 stays below 0.36; standardised z = 1, 1.5, 2, 2.5 and S = max(0, S + z − 0.5):
  // 0.5, 1.5, 3.0, 5.0 > h = 4 at the fourth creep cycle, cycle 9.
  const std::vector<double> series = {0.28, 0.30, 0.32, 0.30, 0.30, 0.32, 0.33, 0.34, 0.35};
  auto e = engine_with("{max_cycles: 20}");
  feeder f(*e);
  for (std::size_t i = 0; i < series.size(); ++i) {
    f.send("creep", make_report(i + 1, {nan_value, nan_value, series[i], nan_value}));
    if (i == 5) CHECK(gauge(*e, "cusum") == Approx(0.5).margin(1e-9));
    if (i == 7) CHECK(gauge(*e, "cusum") == Approx(3.0).margin(1e-9));
  }
  CHECK(gauge(*e, "threshold") == Approx(0.36).margin(1e-12));
  CHECK(f.opened_at(drift_breaker, "creep") == 9);
  const auto ev = evidence_of(*e, drift_breaker, "creep");
  CHECK(ev.at("failed") == "cusum");
  CHECK(ev.at("cusum") == "5");
  CHECK(ev.at("cusum_h") == "4");
  CHECK(ev.at("index") == "0.35");
  CHECK(ev.at("last_trusted_candidate") == "c8");

  SECTION("without the cusum the creep goes unnoticed") {
    auto quiet = engine_with("{max_cycles: 20, cusum: {enabled: false}}");
    feeder q(*quiet);
    for (std::size_t i = 0; i < series.size(); ++i) {
      q.send("creep", make_report(i + 1, {nan_value, nan_value, series[i], nan_value}));
    }
    CHECK(q.opened_at(drift_breaker, "creep") == -1);
  }
}

TEST_CASE("goal_drift trips improvement.constraint on a critical failure even at a low index",
          "[plugins][goal_drift]") {
  auto e = engine_with("{}");
  feeder f(*e);
  f.send("c", make_report(1, all(0.1)));
  v1::CycleReport second = make_report(2, all(0.1));
  add_constraint(second, "style_guide", false, false);  // non-critical: no trip
  add_constraint(second, "tests_pass", true, true);
  f.send("c", second);
  CHECK(f.opened_at(constraint_breaker, "c") == -1);
  CHECK(gauge(*e, "failed_constraints") == 1.0);
  v1::CycleReport third = make_report(3, all(0.1));
  add_constraint(third, "no_network_in_tests", false, true);
  f.send("c", third);
  CHECK(f.opened_at(constraint_breaker, "c") == 3);
  CHECK(f.opened_at(drift_breaker, "c") == -1);
  const auto ev = evidence_of(*e, constraint_breaker, "c");
  CHECK(ev.at("failed_critical") == "no_network_in_tests");
  CHECK(ev.at("constraint.no_network_in_tests") == "no_network_in_tests failed on 3 of 40 probes");
  // Cycle 2 failed a (non-critical) check, so the last trusted candidate is c1.
  CHECK(ev.at("last_trusted_candidate") == "c1");
  auto b = e->breakers().find({constraint_breaker, "c"});
  REQUIRE(b);
  CHECK(b->action() == v1::BREAKER_ACTION_HALT);
}

TEST_CASE("goal_drift trips at the drop of a metric that rose for 4 cycles",
          "[plugins][goal_drift]") {
  struct row {
    std::string name;
    std::string config;
    double drop;
    std::int64_t expected;
  };
  // pass_rate 0.50, 0.60, 0.70, 0.80 then the drop: best 0.80, default margin 0.05.
  const std::vector<row> rows = {
      {"0.74 < 0.80 - 0.05", "{}", 0.74, 5},
      {"0.76 is within the margin", "{}", 0.76, -1},
      {"0.75 is exactly at best - margin: not below", "{}", 0.75, -1},
      {"a per-metric margin of 0.02 catches 0.77", "{regression: {margins: {pass_rate: 0.02}}}",
       0.77, 5},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto e = engine_with(r.config);
    feeder f(*e);
    const std::vector<double> rising = {0.5, 0.6, 0.7, 0.8, r.drop};
    for (std::size_t i = 0; i < rising.size(); ++i) {
      f.send("reg", make_report(i + 1, all(0.3), {{"pass_rate", rising[i]}}));
    }
    CHECK(f.opened_at(drift_breaker, "reg") == r.expected);
    if (r.expected > 0) {
      const auto ev = evidence_of(*e, drift_breaker, "reg");
      CHECK(ev.at("failed") == "regression");
      CHECK(ev.at("last_trusted_candidate") == "c4");
      CHECK(ev.count("regressed.pass_rate") == 1);
    }
  }
}

TEST_CASE("goal_drift cycle cap: cycle 9 trips with default settings, cycles 1 to 8 do not",
          "[plugins][goal_drift]") {
  auto e = engine_with("{}");
  feeder f(*e);
  std::mt19937_64 rng(8);
  std::normal_distribution<double> noise(0.3, 0.02);
  for (std::uint64_t cycle = 1; cycle <= 9; ++cycle) {
    f.send("cap", make_report(cycle, {noise(rng), noise(rng), noise(rng), noise(rng)},
                              {{"pass_rate", 0.5 + 0.02 * static_cast<double>(cycle)}},
                              {{"truthfulness", 0.9}}));
    if (cycle == 8) CHECK_FALSE(e->breakers().any_open());
  }
  CHECK(f.opened_at(cap_breaker, "cap") == 9);
  CHECK(f.opened_at(drift_breaker, "cap") == -1);
  const auto ev = evidence_of(*e, cap_breaker, "cap");
  CHECK(ev.at("cycle") == "9");
  CHECK(ev.at("max_cycles") == "8");
  auto b = e->breakers().find({cap_breaker, "cap"});
  REQUIRE(b);
  CHECK(b->action() == v1::BREAKER_ACTION_HALT);
}

TEST_CASE("goal_drift knee ratio and verifiable-soft divergence gauges, and the opt-in trip",
          "[plugins][goal_drift]") {
  // Capability 0.5, 0.6, 0.7, 0.8, 0.85 and alignment 0.9, 0.88, 0.84, 0.78, 0.70. Window 3:
  // at cycle 4, capability +0.3 and alignment −0.12: ratio 0.4, divergence 0.42; at cycle 5
  // (from cycle 2), +0.25 and −0.18: ratio 0.72, divergence 0.43.
  const std::vector<double> capability = {0.5, 0.6, 0.7, 0.8, 0.85};
  const std::vector<double> alignment = {0.9, 0.88, 0.84, 0.78, 0.70};
  auto run = [&](core::engine& e, feeder& f) {
    for (std::size_t i = 0; i < capability.size(); ++i) {
      f.send("knee", make_report(i + 1, all(0.3), {{"pass_rate", capability[i]}},
                                 {{"truthfulness", alignment[i]}}));
      if (i < 3) CHECK(std::isnan(gauge(e, "knee_ratio")));
      if (i == 3) {
        CHECK(gauge(e, "knee_ratio") == Approx(0.4).margin(1e-9));
        CHECK(gauge(e, "verifiable_soft_divergence") == Approx(0.42).margin(1e-9));
      }
    }
    CHECK(gauge(e, "knee_ratio") == Approx(0.72).margin(1e-9));
    CHECK(gauge(e, "verifiable_soft_divergence") == Approx(0.43).margin(1e-9));
  };
  SECTION("by default the knee is a gauge") {
    auto e = engine_with("{}");
    feeder f(*e);
    run(*e, f);
    CHECK_FALSE(e->breakers().any_open());
  }
  SECTION("with ratio_limit 0.3 it trips on the second cycle in a row above it") {
    auto e = engine_with("{knee: {ratio_limit: 0.3}}");
    feeder f(*e);
    run(*e, f);
    CHECK(f.opened_at(drift_breaker, "knee") == 5);
    const auto ev = evidence_of(*e, drift_breaker, "knee");
    CHECK(ev.at("failed") == "knee");
    CHECK(ev.at("knee_ratio") == "0.72");
    // Cycle 4 was above the limit once, short of `consecutive`: it passed and is trusted.
    CHECK(ev.at("last_trusted_candidate") == "c4");
  }
}

TEST_CASE("goal_drift counts and ignores malformed reports without changing the outcome",
          "[plugins][goal_drift]") {
  struct bad {
    std::string name;
    std::function<void(v1::CycleReport&)> spoil;
  };
  const std::vector<bad> spoilers = {
      {"NaN component", [](v1::CycleReport& r) { r.mutable_drift()->set_semantic(nan_value); }},
      {"component above 1", [](v1::CycleReport& r) { r.mutable_drift()->set_lexical(1.5); }},
      {"negative component", [](v1::CycleReport& r) { r.mutable_drift()->set_structural(-0.1); }},
      {"infinite component",
       [](v1::CycleReport& r) {
         r.mutable_drift()->set_distributional(std::numeric_limits<double>::infinity());
       }},
      {"embedding dims differ",
       [](v1::CycleReport& r) {
         r.clear_drift();
         set_matrix(r.mutable_material()->mutable_candidate_embeddings(), 2, {1, 0});
         set_matrix(r.mutable_material()->mutable_reference_embeddings(), 3, {1, 0, 0});
       }},
      {"embedding values not whole rows",
       [](v1::CycleReport& r) {
         r.clear_drift();
         set_matrix(r.mutable_material()->mutable_candidate_embeddings(), 2, {1, 0, 1});
         set_matrix(r.mutable_material()->mutable_reference_embeddings(), 2, {1, 0});
       }},
      {"embedding of dimension 0",
       [](v1::CycleReport& r) {
         r.clear_drift();
         set_matrix(r.mutable_material()->mutable_candidate_embeddings(), 0, {1, 0});
         set_matrix(r.mutable_material()->mutable_reference_embeddings(), 0, {1, 0});
       }},
      {"NaN in an embedding",
       [](v1::CycleReport& r) {
         r.clear_drift();
         set_matrix(r.mutable_material()->mutable_candidate_embeddings(), 2,
                    {1, std::numeric_limits<float>::quiet_NaN()});
         set_matrix(r.mutable_material()->mutable_reference_embeddings(), 2, {1, 0});
       }},
      {"zero embeddings",
       [](v1::CycleReport& r) {
         r.clear_drift();
         set_matrix(r.mutable_material()->mutable_candidate_embeddings(), 2, {0, 0});
         set_matrix(r.mutable_material()->mutable_reference_embeddings(), 2, {1, 0});
       }},
      {"candidate embeddings without a reference",
       [](v1::CycleReport& r) {
         r.clear_drift();
         set_matrix(r.mutable_material()->mutable_candidate_embeddings(), 2, {1, 0});
       }},
      {"empty reference tokens",
       [](v1::CycleReport& r) {
         r.clear_drift();
         r.mutable_material()->add_candidate_tokens(3);
       }},
      {"histogram keys and counts differ",
       [](v1::CycleReport& r) {
         r.clear_drift();
         set_histogram(r.mutable_material()->mutable_candidate_histogram(), {1, 2}, {1});
         set_histogram(r.mutable_material()->mutable_reference_histogram(), {1}, {1});
       }},
      {"negative histogram count",
       [](v1::CycleReport& r) {
         r.clear_drift();
         set_histogram(r.mutable_material()->mutable_candidate_histogram(), {1}, {-2});
         set_histogram(r.mutable_material()->mutable_reference_histogram(), {1}, {1});
       }},
      {"histogram without mass",
       [](v1::CycleReport& r) {
         r.clear_drift();
         set_histogram(r.mutable_material()->mutable_candidate_histogram(), {1}, {0});
         set_histogram(r.mutable_material()->mutable_reference_histogram(), {1}, {1});
       }},
  };
  // The same run twice: clean, and with every spoiled report interleaved (each with the next
  // cycle number, so they also take up cycle numbers the clean run does not use).
  const std::vector<double> series = {0.30, 0.31, 0.29, 0.30, 0.32, 0.31, 0.30, 0.55};
  auto clean = engine_with("{max_cycles: 1000}");
  feeder fc(*clean);
  for (std::size_t i = 0; i < series.size(); ++i) {
    fc.send("run", make_report(2 * i + 1, all(series[i])));
  }
  auto dirty = engine_with("{max_cycles: 1000}");
  feeder fd(*dirty);
  std::size_t spoiled = 0;
  for (std::size_t i = 0; i < series.size(); ++i) {
    if (i > 0) {
      // Between two clean cycles, a spoiled report of the cycle in between.
      const bad& b = spoilers[(i - 1) % spoilers.size()];
      v1::CycleReport r = make_report(2 * i, all(0.99));
      r.set_parent_id("c" + std::to_string(2 * i - 1));
      b.spoil(r);
      INFO(b.name);
      fd.send("run", r);
      ++spoiled;
      CHECK(gauge(*dirty, "malformed_reports") == static_cast<double>(spoiled));
    }
    fd.send("run", make_report(2 * i + 1, all(series[i])));
  }
  CHECK(fc.opened_at(drift_breaker, "run") == 15);
  CHECK(fd.opened_at(drift_breaker, "run") == 15);
  CHECK(evidence_of(*clean, drift_breaker, "run").at("threshold") ==
        evidence_of(*dirty, drift_breaker, "run").at("threshold"));
  // The last trusted is the last clean cycle: a malformed report is never trusted.
  CHECK(evidence_of(*dirty, drift_breaker, "run").at("last_trusted_candidate") == "c13");

  SECTION("every spoiler on its own is counted and ignored") {
    for (const auto& b : spoilers) {
      INFO(b.name);
      auto e = engine_with("{}");
      feeder f(*e);
      v1::CycleReport r = make_report(1, all(0.9));
      b.spoil(r);
      f.send("one", r);
      CHECK(gauge(*e, "malformed_reports") == 1.0);
      CHECK_FALSE(e->breakers().any_open());
      CHECK(e->monitors().front().errors == 0);
    }
  }
  SECTION("a malformed report still trips on a failed critical constraint") {
    auto e = engine_with("{}");
    feeder f(*e);
    v1::CycleReport r = make_report(1, all(nan_value));
    r.mutable_drift()->set_semantic(nan_value);
    add_constraint(r, "sandbox", false, true);
    f.send("one", r);
    CHECK(gauge(*e, "malformed_reports") == 1.0);
    CHECK(f.opened_at(constraint_breaker, "one") == 1);
  }
}

TEST_CASE("goal_drift ignores repeated, out-of-order and zero cycle numbers",
          "[plugins][goal_drift]") {
  auto e = engine_with("{}");
  feeder f(*e);
  f.send("order", make_report(2, all(0.3)));
  f.send("order", make_report(2, all(0.9)));  // a repeat
  f.send("order", make_report(1, all(0.9)));  // backwards
  f.send("order", make_report(0, all(0.9)));  // cycles count from 1
  CHECK(gauge(*e, "ignored_reports") == 3.0);
  CHECK_FALSE(e->breakers().any_open());
  f.send("order", make_report(3, all(0.9)));
  CHECK(f.opened_at(drift_breaker, "order") == 3);
}

TEST_CASE("goal_drift keeps at most max_runs runs and forgets the least recent one",
          "[plugins][goal_drift]") {
  auto e = engine_with("{max_runs: 2}");
  feeder f(*e);
  f.send("a", make_report(1, all(0.3)));
  f.send("b", make_report(1, all(0.3)));
  f.send("b", make_report(2, all(0.3)));
  CHECK(std::isnan(gauge(*e, "evicted_runs")));
  f.send("c", make_report(1, all(0.9)));  // a reported least recently: forgotten for c
  CHECK(gauge(*e, "evicted_runs") == 1.0);
  CHECK(f.opened_at(drift_breaker, "c") == 1);
  // b is kept: its next cycle continues its own series (a repeat of cycle 2 is still ignored).
  f.send("b", make_report(2, all(0.9)));
  CHECK(gauge(*e, "ignored_reports") == 1.0);
  CHECK(f.opened_at(drift_breaker, "b") == -1);
  // a comes back as a new run (c is now the least recent): its cycle 1 is accepted again.
  f.send("a", make_report(1, all(0.9)));
  CHECK(gauge(*e, "evicted_runs") == 2.0);
  CHECK(f.opened_at(drift_breaker, "a") == 1);
  CHECK(evidence_of(*e, drift_breaker, "a").at("last_trusted_candidate") == "c0");
}

TEST_CASE("goal_drift sees the host roll back and starts its cusum again",
          "[plugins][goal_drift]") {
  // Calibrated as in the creep test (threshold 0.36, sigma 0.02); then cycle 6 jumps to 0.5
  // (trips), and cycle 7 is built on c5, the last trusted candidate: a rollback. Cycles 7-9 at
  // 0.33 (z = 1.5 each) give S = 1, 2, 3 from a fresh start; without the restart S would have
  // carried cycle 6's 9.5 and signalled at once.
  auto e = engine_with("{max_cycles: 20}");
  feeder f(*e);
  const std::vector<double> calibration = {0.28, 0.30, 0.32, 0.30, 0.30};
  for (std::size_t i = 0; i < calibration.size(); ++i) {
    f.send("rb", make_report(i + 1, {nan_value, nan_value, calibration[i], nan_value}));
  }
  f.send("rb", make_report(6, {nan_value, nan_value, 0.5, nan_value}));
  CHECK(f.opened_at(drift_breaker, "rb") == 6);
  CHECK(evidence_of(*e, drift_breaker, "rb").at("last_trusted_candidate") == "c5");
  for (std::uint64_t cycle = 7; cycle <= 9; ++cycle) {
    v1::CycleReport r = make_report(cycle, {nan_value, nan_value, 0.33, nan_value});
    if (cycle == 7) r.set_parent_id("c5");
    f.send("rb", r);
  }
  CHECK(gauge(*e, "rollbacks_seen") == 1.0);
  CHECK(gauge(*e, "cusum") == Approx(3.0).margin(1e-9));
  CHECK(gauge(*e, "last_trusted_cycle") == 9.0);
}

namespace {

// A context that records what a monitor does, for driving a plugin instance without an engine.
class recording_context final : public sdk::context {
 public:
  void trip(sdk::trip_request request) override { trips.push_back({cycle, std::move(request)}); }
  void set_gauge(std::string_view name, double value) override {
    gauges[std::string(name)] = value;
  }
  void log(sdk::log_level, std::string_view) override {}
  std::int64_t now_unix_nano() const override { return 0; }
  std::string_view instance_name() const override { return "gd"; }

  std::uint64_t cycle = 0;
  std::vector<std::pair<std::uint64_t, sdk::trip_request>> trips;
  std::map<std::string, double> gauges;
};

std::unique_ptr<core::loaded_monitor> load_goal_drift(const std::string& config_yaml) {
  core::plugin_host host({plugin_dir()});
  auto path = host.find("goal_drift");
  REQUIRE(path.ok());
  auto loaded = host.load(*path, "goal_drift");
  REQUIRE(loaded.ok());
  auto cfg = core::parse_config(yaml_for(config_yaml), "gd.yaml");
  REQUIRE(cfg.ok());
  REQUIRE((*loaded)->instance().configure(cfg->monitors.at(0).config).ok());
  return std::move(*loaded);
}

// A mixed stream over three runs: calibration, creep, a regression, a critical constraint, a
// rollback, raw material, and the cycle cap.
std::vector<v1::Envelope> mixed_stream() {
  std::vector<v1::Envelope> out;
  std::mt19937_64 rng(77);
  std::normal_distribution<double> noise(0.3, 0.03);
  std::uint64_t seq = 0;
  for (std::uint64_t cycle = 1; cycle <= 12; ++cycle) {
    for (const std::string run : {"alpha", "beta", "gamma"}) {
      const double creep = run == "alpha" && cycle > 6 ? 0.03 * static_cast<double>(cycle - 6) : 0;
      v1::CycleReport r =
          make_report(cycle, {noise(rng) + creep, noise(rng) + creep, noise(rng), nan_value},
                      {{"pass_rate", run == "beta" && cycle == 8 ? 0.4 : 0.5 + 0.01 * cycle}},
                      {{"truthfulness", 0.9 - 0.01 * static_cast<double>(cycle)}});
      if (run == "gamma" && cycle == 10) add_constraint(r, "sandbox", false, true);
      if (run == "gamma") {
        for (std::uint64_t t : {1, 2, 3, 4}) r.mutable_material()->add_candidate_tokens(t + cycle);
        for (std::uint64_t t : {1, 2, 3, 4}) r.mutable_material()->add_reference_tokens(t);
      }
      if (run == "beta" && cycle == 9) r.set_parent_id("c7");
      out.push_back(envelope_of(run, ++seq, std::move(r)));
    }
  }
  return out;
}

// Equal maps, NaN equal to NaN (a gauge is NaN while its statistic is undefined).
bool same_gauges(const std::map<std::string, double>& a, const std::map<std::string, double>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, value] : a) {
    const auto it = b.find(name);
    if (it == b.end()) return false;
    if (!(value == it->second || (std::isnan(value) && std::isnan(it->second)))) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("goal_drift snapshot and restore continue exactly where the monitor left off",
          "[plugins][goal_drift]") {
  const std::string config = "{max_cycles: 10}";
  const std::vector<v1::Envelope> stream = mixed_stream();
  auto describe = [](const recording_context& ctx) {
    std::vector<std::string> out;
    for (const auto& [cycle, t] : ctx.trips) {
      std::string line = std::to_string(cycle) + " " + t.breaker + " " + t.reason;
      for (const auto& kv : t.evidence) line += " " + kv.key + "=" + kv.value;
      out.push_back(line);
    }
    return out;
  };
  auto feed = [](sdk::monitor& m, recording_context& ctx, const std::vector<v1::Envelope>& s,
                 std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) {
      ctx.cycle = s[i].cycle_report().cycle();
      m.on_event(s[i], ctx);
    }
  };
  auto whole = load_goal_drift(config);
  recording_context whole_ctx;
  feed(whole->instance(), whole_ctx, stream, 0, stream.size());
  REQUIRE(whole_ctx.trips.size() >= 4);  // the stream trips something on every breaker

  for (const std::size_t half : {stream.size() / 3, stream.size() / 2, stream.size() - 4}) {
    INFO("split at event " << half);
    auto first = load_goal_drift(config);
    recording_context ctx;
    feed(first->instance(), ctx, stream, 0, half);
    auto state = first->instance().snapshot();
    REQUIRE(state.ok());
    CHECK_FALSE(state->empty());
    auto second = load_goal_drift(config);
    REQUIRE(second->instance().restore(*state).ok());
    feed(second->instance(), ctx, stream, half, stream.size());
    CHECK(describe(ctx) == describe(whole_ctx));
    CHECK(same_gauges(ctx.gauges, whole_ctx.gauges));
    // Snapshots of the continued and the uninterrupted monitor are the same bytes.
    CHECK(second->instance().snapshot().value() == whole->instance().snapshot().value());
  }
}

TEST_CASE("goal_drift refuses a bad snapshot and keeps its state", "[plugins][goal_drift]") {
  auto m = load_goal_drift("{}");
  recording_context ctx;
  for (const auto& e : mixed_stream()) m->instance().on_event(e, ctx);
  const std::string good = m->instance().snapshot().value();
  struct row {
    std::string name;
    std::string data;
    std::string error;
  };
  std::string other_version = good;
  other_version[8 + 8 + 10] = 2;  // after the magic, the name's length and "goal_drift"
  sdk::state_writer other_plugin("variance_collapse", 1);
  const std::vector<row> rows = {
      {"garbage", "hello world", "not a loopwarden state snapshot"},
      {"another plugin's", other_plugin.finish(),
       "a snapshot of 'variance_collapse', not of 'goal_drift'"},
      {"another version", other_version, "snapshot format version 2, this build reads 1 to 1"},
      {"truncated", good.substr(0, good.size() - 3), "truncated: 8 bytes wanted, 5 left"},
      {"trailing bytes", good + "x", "1 unread bytes at the end"},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto fresh = load_goal_drift("{}");
    const sdk::status st = fresh->instance().restore(r.data);
    REQUIRE_FALSE(st.ok());
    CHECK(st.code() == sdk::status_code::parse_error);
    CHECK(st.message().rfind("bad state snapshot at byte ", 0) == 0);
    CHECK(st.message().find(r.error) != std::string::npos);
    CHECK(fresh->instance().snapshot().value() ==
          load_goal_drift("{}")->instance().snapshot().value());
  }
  SECTION("a snapshot with more runs than max_runs is refused") {
    auto small = load_goal_drift("{max_runs: 2}");
    const sdk::status st = small->instance().restore(good);
    REQUIRE_FALSE(st.ok());
    CHECK(st.message().find("a count of 3 above its limit of 2") != std::string::npos);
  }
  SECTION("a monitor that saw nothing has nothing to keep, and restores nothing") {
    auto fresh = load_goal_drift("{}");
    CHECK(fresh->instance().snapshot().value().empty());
    CHECK(fresh->instance().restore("").ok());
  }
}

TEST_CASE(
    "goal_drift restored by a new engine from half the events trips as one uninterrupted engine",
    "[plugins][goal_drift]") {
  const std::string config = "{max_cycles: 10}";
  const std::vector<v1::Envelope> stream = mixed_stream();
  // The breakers as on-call would see them: name, run, reason and evidence.
  auto breakers_of = [](core::breaker_registry& registry) {
    std::vector<std::string> out;
    const v1::BreakerSnapshot snapshot = registry.snapshot();
    for (const auto& b : snapshot.breakers()) {
      std::string line = b.name() + " " + b.run_id() + " " + b.reason();
      for (const auto& kv : b.evidence()) line += " " + kv.key() + "=" + kv.value();
      out.push_back(line);
    }
    return out;
  };
  auto whole = engine_with(config);
  for (const auto& e : stream) whole->process(e);
  const auto expected = breakers_of(whole->breakers());
  REQUIRE(expected.size() >= 4);

  const std::size_t half = stream.size() / 2;
  auto first = engine_with(config);
  for (std::size_t i = 0; i < half; ++i) first->process(stream[i]);
  const std::vector<core::monitor_state> saved = first->snapshot_monitors();
  REQUIRE(saved.size() == 1);
  CHECK(saved[0].plugin == "goal_drift");

  // The second engine shares the first one's breaker registry, as a restarted daemon shares its
  // durable breakers, and starts from the saved monitor state.
  const std::string yaml = yaml_for(config);
  auto cfg = core::parse_config(yaml, "gd.yaml");
  REQUIRE(cfg.ok());
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  opts.registry = &first->breakers();
  auto second = core::engine::create(*cfg, opts);
  REQUIRE(second.ok());
  REQUIRE((*second)->restore_monitor(saved[0]).ok());
  for (std::size_t i = half; i < stream.size(); ++i) (*second)->process(stream[i]);
  CHECK(breakers_of(first->breakers()) == expected);

  SECTION("without the restored state the second engine decides differently") {
    auto forgetful_first = engine_with(config);
    for (std::size_t i = 0; i < half; ++i) forgetful_first->process(stream[i]);
    core::engine_options o;
    o.search_bundled_plugins = false;
    o.registry = &forgetful_first->breakers();
    auto forgetful = core::engine::create(*cfg, o);
    REQUIRE(forgetful.ok());
    for (std::size_t i = half; i < stream.size(); ++i) (*forgetful)->process(stream[i]);
    CHECK(breakers_of(forgetful_first->breakers()) != expected);
  }
}

TEST_CASE("goal_drift never calibrates its threshold below the floor", "[plugins][goal_drift]") {
  // Five cycles at 0.02 (sd 0, raised to min_sd 0.02): mean + 3·0.02 = 0.08, below the default
  // floor 0.1, so the threshold is 0.1; 0.09 passes, 0.11 trips. With floor 0.05 the same 0.09
  // trips. (The CUSUM is off to look at the threshold alone.)
  struct row {
    std::string config;
    double threshold;
    std::int64_t trips_at;
  };
  const std::vector<row> rows = {
      {"{cusum: {enabled: false}}", 0.1, 7},
      {"{cusum: {enabled: false}, threshold: {floor: 0.05}}", 0.08, 6},
  };
  for (const auto& r : rows) {
    INFO(r.config);
    auto e = engine_with(r.config);
    feeder f(*e);
    for (std::uint64_t cycle = 1; cycle <= 5; ++cycle)
      f.send("floor", make_report(cycle, all(0.02)));
    CHECK(gauge(*e, "threshold") == Approx(r.threshold).margin(1e-12));
    f.send("floor", make_report(6, all(0.09)));
    f.send("floor", make_report(7, all(0.11)));
    CHECK(f.opened_at(drift_breaker, "floor") == r.trips_at);
  }
}

TEST_CASE(
    "goal_drift on healthy runs around the published mean rarely trips, and catches a jump to "
    "0.5",
    "[plugins][goal_drift]") {
  // Seeded simulation with default settings: the index of each cycle is drawn from
  // N(0.335, sigma) (the published healthy mean; sigma 0.035 is what a 0.44 threshold at
  // mean + 3 sd implies). Healthy runs: 8 cycles. Drifting runs: the same, plus 0.165 from cycle
  // 7 on (an index near 0.5). The rates are measured here and in docs/monitors/goal-drift.md
  // (a Python replica of the rules over 20 000 runs gave 0.9 % / 6.1 % false trips and 99.8 % /
  // 88 % detection at cycle 7 for sigma 0.02 / 0.035).
  struct row {
    double sigma;
    double max_false_trips;
    double min_caught_at_7;
  };
  const std::vector<row> rows = {{0.02, 0.02, 0.98}, {0.035, 0.08, 0.85}};
  constexpr int runs = 2000;
  for (const auto& r : rows) {
    auto e = engine_with("{max_runs: 5000}");  // 4000 runs in one engine
    feeder f(*e);
    std::mt19937_64 rng(static_cast<std::uint64_t>(r.sigma * 1e4));
    std::normal_distribution<double> index(0.335, r.sigma);
    int false_trips = 0;
    int caught_at_7 = 0;
    for (int run = 0; run < runs; ++run) {
      for (const bool drifting : {false, true}) {
        const std::string id = std::string(drifting ? "drift-" : "healthy-") + std::to_string(run);
        for (std::uint64_t cycle = 1; cycle <= 8; ++cycle) {
          const double shift = drifting && cycle >= 7 ? 0.165 : 0.0;
          f.send(id, make_report(cycle, all(std::clamp(index(rng) + shift, 0.0, 1.0))));
        }
        const auto at = f.opened_at(drift_breaker, id);
        if (!drifting && at > 0) ++false_trips;
        if (drifting && at == 7) ++caught_at_7;
      }
    }
    const double false_rate = static_cast<double>(false_trips) / runs;
    const double caught_rate = static_cast<double>(caught_at_7) / runs;
    CAPTURE(r.sigma, false_rate, caught_rate);
    CHECK(false_rate <= r.max_false_trips);
    CHECK(caught_rate >= r.min_caught_at_7);
    WARN("sigma " << r.sigma << ": healthy runs tripped " << 100.0 * false_rate
                  << " %, a jump to 0.5 at cycle 7 caught at 7 in " << 100.0 * caught_rate << " %");
  }
}
