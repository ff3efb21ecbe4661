// variance_collapse: watches a recursive-training loop (a model retrained on its own samples)
// and trips training.collapse (roll back) when the distribution it produces loses its spread, its
// tails or its diversity, or drifts away from the baseline; trips training.provenance when a
// generation's real-data share is below a floor. Three inputs feed one per-run decision:
//
//   - generation summaries (GenerationSummary): the host's own statistics of each generation;
//   - embedding batches (EmbeddingBatch): the monitor summarises the vectors itself
//     (embedding_input.hpp);
//   - scalar sample streams (MetricsBatch samples of configured names): likewise
//     (scalar_input.hpp).
//
//   config (every key optional; docs/monitors/variance-collapse.md has the full list):
//     statistic: "loglik"        # ScalarSummary whose variance is the dispersion; "" = the first
//     baseline: generation0      # or a map of declared reference values
//     dispersion_floor: 0.7      # floor on the expected dispersion ratio (provenance model)
//     observed_dispersion_floor: 0.05  # floor on an observed variance ratio
//     tail_floor: 0.5, diversity_floor: 0.75, ngram_order: 0, kl_ceiling: 0.25,
//     histogram_smoothing: 0.5, metric_ceilings: {}, consecutive: 2, trend_window: 8,
//     cusum: {k: 0.5, h: 5}, ewma: {lambda: 0.5, width: 3.071}, alpha: 0.01,
//     real_share_floor: 0.1, real_sources: [human, real], collapse_breaker, provenance_breaker,
//     max_runs: 1000, max_histogram_keys: 65536,
//     embeddings: {streams: [], reference_stream: "", window: 256, max_dimension: 1024,
//                  baseline_reservoir: 1024, max_runs: 8, tail_quantile: 0.95, vendi_floor: 0.5,
//                  spectrum_max_dimension: 256}
//     scalar_streams: {names: [], group_by: step, window: 200, bins: 10,
//                      max_baseline_samples: 4096, min_group: 10, replicates: 400,
//                      low_quantile: 0.05, high_quantile: 0.95}
//
// Per-run state lives in std::maps keyed by run id, so replays iterate it in the same order.

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <loopwarden/plugin.hpp>
#include <loopwarden/state_codec.hpp>
#include <loopwarden/stats/dispersion.hpp>
#include <loopwarden/stats/divergence.hpp>
#include <loopwarden/stats/refit_recursion.hpp>
#include <loopwarden/stats/trend.hpp>

#include "decision.hpp"
#include "embedding_input.hpp"
#include "scalar_input.hpp"

namespace {

namespace sdk = loopwarden::sdk;
namespace stats = loopwarden::sdk::stats;
namespace v1 = loopwarden::v1;
namespace vc = loopwarden::variance_collapse;
using vc::format_number;
using vc::nan;

constexpr std::string_view plugin_name = "variance_collapse";
constexpr std::uint32_t snapshot_version = 2;  // 2: the provenance model's mean offset
constexpr std::size_t max_ngram_orders = 16;   // orders of NgramDiversity a baseline keeps

// Reference values of generation 0 or of the operator's declaration; NaN = not known.
struct baseline_values {
  double variance = nan;      // ddof 0
  double sample_count = nan;  // samples behind the variance (for the sampling noise of its log)
  double tail_mass = nan;
  std::map<std::uint32_t, double> distinct_ratio;  // n -> distinct / total
  std::map<std::string, double> metrics;           // only names in metric_ceilings
  std::map<std::uint64_t, double> histogram;       // token key -> count, ≤ max_histogram_keys
};

// Everything the operator can set; defaults as documented in docs/monitors/variance-collapse.md.
struct settings {
  std::string statistic;
  bool declared = false;
  baseline_values declared_baseline;
  double observed_dispersion_floor = 0.05;
  double diversity_floor = 0.75;
  std::uint32_t ngram_order = 0;
  double kl_ceiling = 0.25;
  double histogram_smoothing = 0.5;
  std::map<std::string, double> metric_ceilings;
  double alpha = 0.01;
  double real_share_floor = 0.1;
  std::vector<std::string> real_sources = {"human", "real"};
  std::string provenance_breaker = "training.provenance";
  std::size_t max_runs = 1000;
  std::uint64_t max_histogram_keys = 65536;
  vc::decision_settings decision;
  vc::embedding_settings embeddings;
  vc::scalar_settings scalars;
};

// Everything one run keeps across inputs.
struct run_state {
  explicit run_state(const vc::decision_settings& d) : series(d) {}

  baseline_values base;
  std::optional<std::int64_t> last_generation;  // of the last summary
  double expected_ratio = 1.0;                  // NaN once a generation came without provenance
  double expected_mean_offset = 0.0;  // E‖μ_g − μ₀‖²/V₀ of the provenance model
  vc::log_ratio_series series;        // ln of the summary statistic's variance ratio
  vc::run_decision decision;
  bool below_real_floor = false;  // the last summary trained on too little real data
};

// --- config helpers ----------------------------------------------------------------------------

// Reads an optional ratio strictly inside (0, 1).
sdk::status read_open_fraction(const sdk::config_node& config, std::string_view key, double& out) {
  if (!config.contains(key) || config[key].is_null()) return sdk::status::success();
  auto v = config[key].as_double();
  if (!v.ok()) return v.error();
  if (!(*v > 0.0 && *v < 1.0)) {
    return config[key].error("expected a number in (0, 1), got " + config[key].describe());
  }
  out = *v;
  return sdk::status::success();
}

sdk::status read_positive(const sdk::config_node& config, std::string_view key, double& out) {
  if (!config.contains(key) || config[key].is_null()) return sdk::status::success();
  auto v = config[key].as_double();
  if (!v.ok()) return v.error();
  if (!(*v > 0.0) || !std::isfinite(*v)) {
    return config[key].error("expected a number > 0, got " + config[key].describe());
  }
  out = *v;
  return sdk::status::success();
}

// An optional integer in [lo, hi].
sdk::status read_count(const sdk::config_node& config, std::string_view key, std::uint64_t lo,
                       std::uint64_t hi, std::uint64_t& out) {
  if (!config.contains(key) || config[key].is_null()) return sdk::status::success();
  auto v = config[key].as_int();
  if (!v.ok()) return v.error();
  if (*v < 0 || static_cast<std::uint64_t>(*v) < lo || static_cast<std::uint64_t>(*v) > hi) {
    return config[key].error("expected an integer in [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "], got " + config[key].describe());
  }
  out = static_cast<std::uint64_t>(*v);
  return sdk::status::success();
}

// name -> number maps (metric_ceilings, baseline.metrics).
sdk::status read_number_map(const sdk::config_node& node, bool positive,
                            std::map<std::string, double>& out) {
  if (node.is_missing() || node.is_null()) return sdk::status::success();
  if (!node.is_map())
    return node.error("expected a map of names to numbers, got " + node.describe());
  for (const auto& key : node.keys()) {
    auto v = node[key].as_double();
    if (!v.ok()) return v.error();
    if (positive && !(*v > 0.0)) {
      return node[key].error("expected a number > 0, got " + node[key].describe());
    }
    out[key] = *v;
  }
  return sdk::status::success();
}

// --- generation summary helpers ----------------------------------------------------------------

// Population (ddof 0) variance of a summary, whatever ddof the host used.
double population_variance(const v1::ScalarSummary& s) {
  if (s.ddof() == 0) return s.variance();
  if (s.count() < 2) return nan;
  const double n = static_cast<double>(s.count());
  return s.variance() * (n - 1.0) / n;
}

const v1::ScalarSummary* find_statistic(const v1::GenerationSummary& g, const std::string& name) {
  for (const auto& s : g.statistics()) {
    if (name.empty() || s.name() == name) return &s;
  }
  return nullptr;
}

// The real-data share of a generation: real_share, else 1 - synthetic_share, else the share of
// provenance_counts whose name is a real source; NaN when the summary says nothing.
double real_share_of(const v1::GenerationSummary& g, const std::vector<std::string>& sources) {
  if (g.has_real_share() && std::isfinite(g.real_share())) return g.real_share();
  if (g.has_synthetic_share() && std::isfinite(g.synthetic_share())) {
    return 1.0 - g.synthetic_share();
  }
  double real = 0.0;
  double total = 0.0;
  for (const auto& c : g.provenance_counts()) {
    if (!(std::isfinite(c.value()) && c.value() >= 0.0)) continue;
    total += c.value();
    for (const auto& s : sources) {
      if (c.name() == s) real += c.value();
    }
  }
  return total > 0.0 ? real / total : nan;
}

double distinct_ratio_of(const v1::NgramDiversity& d) {
  if (d.total() == 0) return nan;
  return static_cast<double>(d.distinct()) / static_cast<double>(d.total());
}

double named_metric(const v1::GenerationSummary& g, const std::string& name) {
  for (const auto& m : g.metrics()) {
    if (m.name() == name) return m.value();
  }
  return nan;
}

// --- the monitor -------------------------------------------------------------------------------

class variance_collapse_monitor final : public sdk::monitor {
 public:
  variance_collapse_monitor() { make_inputs(); }

  sdk::monitor_info info() const override {
    sdk::monitor_info i;
    i.name = std::string(plugin_name);
    i.version = "0.2.0";
    i.description = "trips when recursive training loses spread, tails or diversity";
    i.kinds = {sdk::event_kind::generation, sdk::event_kind::embeddings};
    // The memory gauges walk every run: on a timer, not per event.
    i.tick_interval = std::chrono::seconds(10);
    if (!s_.scalars.names.empty()) i.kinds.add(sdk::event_kind::metrics);
    sdk::breaker_spec collapse;
    collapse.name = s_.decision.collapse_breaker;
    collapse.action = sdk::breaker_action::rollback;
    collapse.severity = sdk::severity::critical;
    collapse.scope = sdk::breaker_scope::run;
    collapse.description = "the generated distribution is collapsing: roll back";
    i.breakers.push_back(collapse);
    sdk::breaker_spec provenance;
    provenance.name = s_.provenance_breaker;
    provenance.action = sdk::breaker_action::pause;
    provenance.severity = sdk::severity::warning;
    provenance.scope = sdk::breaker_scope::run;
    provenance.description = "a generation trained on too little real data";
    i.breakers.push_back(provenance);
    return i;
  }

  sdk::status configure(const sdk::config_node& config) override {
    if (auto st = config.check_keys({"statistic",
                                     "baseline",
                                     "dispersion_floor",
                                     "observed_dispersion_floor",
                                     "tail_floor",
                                     "diversity_floor",
                                     "ngram_order",
                                     "kl_ceiling",
                                     "histogram_smoothing",
                                     "metric_ceilings",
                                     "consecutive",
                                     "trend_window",
                                     "cusum",
                                     "real_share_floor",
                                     "real_sources",
                                     "collapse_breaker",
                                     "provenance_breaker",
                                     "max_runs",
                                     "ewma",
                                     "alpha",
                                     "max_histogram_keys",
                                     "embeddings",
                                     "scalar_streams"});
        !st.ok()) {
      return st;
    }
    settings s;
    auto statistic = config.get_string("statistic", "");
    if (!statistic.ok()) return statistic.error();
    s.statistic = *statistic;
    auto order = config.get_int("ngram_order", 0);
    if (!order.ok()) return order.error();
    if (*order < 0 || *order > 64) {
      return config["ngram_order"].error("expected an integer in [0, 64], got " +
                                         config["ngram_order"].describe());
    }
    s.ngram_order = static_cast<std::uint32_t>(*order);
    if (auto st = read_baseline(config["baseline"], s); !st.ok()) return st;
    for (auto [key, field] :
         {std::pair{"dispersion_floor", &s.decision.dispersion_floor},
          std::pair{"observed_dispersion_floor", &s.observed_dispersion_floor},
          std::pair{"tail_floor", &s.decision.tail_floor},
          std::pair{"diversity_floor", &s.diversity_floor}, std::pair{"alpha", &s.alpha}}) {
      if (auto st = read_open_fraction(config, key, *field); !st.ok()) return st;
    }
    if (s.observed_dispersion_floor > s.decision.dispersion_floor) {
      return config["observed_dispersion_floor"].error(
          "observed_dispersion_floor (" + format_number(s.observed_dispersion_floor) +
          ") is above dispersion_floor (" + format_number(s.decision.dispersion_floor) + ")");
    }
    if (auto st = read_positive(config, "kl_ceiling", s.kl_ceiling); !st.ok()) return st;
    auto smoothing = config.get_double("histogram_smoothing", s.histogram_smoothing);
    if (!smoothing.ok()) return smoothing.error();
    if (!(*smoothing >= 0.0) || !std::isfinite(*smoothing)) {
      return config["histogram_smoothing"].error("expected a number >= 0, got " +
                                                 config["histogram_smoothing"].describe());
    }
    s.histogram_smoothing = *smoothing;
    if (auto st = read_number_map(config["metric_ceilings"], true, s.metric_ceilings); !st.ok()) {
      return st;
    }
    auto consecutive = config.get_positive_int("consecutive", 2);
    if (!consecutive.ok()) return consecutive.error();
    s.decision.consecutive = static_cast<std::uint64_t>(*consecutive);
    auto window = config.get_positive_int("trend_window", 8);
    if (!window.ok()) return window.error();
    if (*window < 2 || *window > 1024) {
      return config["trend_window"].error("expected an integer in [2, 1024], got " +
                                          config["trend_window"].describe());
    }
    s.decision.trend_window = static_cast<std::size_t>(*window);
    if (auto st = read_cusum(config["cusum"], s); !st.ok()) return st;
    if (auto st = read_ewma(config["ewma"], s); !st.ok()) return st;
    if (config.contains("real_share_floor")) {
      auto floor = config["real_share_floor"].as_probability();
      if (!floor.ok()) return floor.error();
      s.real_share_floor = *floor;
    }
    if (config.contains("real_sources")) {
      auto sources = config["real_sources"].as_string_list();
      if (!sources.ok()) return sources.error();
      s.real_sources = *sources;
    }
    for (auto [key, field] : {std::pair{"collapse_breaker", &s.decision.collapse_breaker},
                              std::pair{"provenance_breaker", &s.provenance_breaker}}) {
      auto name = config.get_string(key, *field);
      if (!name.ok()) return name.error();
      if (name->empty()) return config[key].error("expected a breaker name");
      *field = *name;
    }
    if (s.decision.collapse_breaker == s.provenance_breaker) {
      return config["provenance_breaker"].error("must differ from collapse_breaker (\"" +
                                                s.decision.collapse_breaker + "\")");
    }
    auto max_runs = config.get_positive_int("max_runs", 1000);
    if (!max_runs.ok()) return max_runs.error();
    s.max_runs = static_cast<std::size_t>(*max_runs);
    if (auto st = read_count(config, "max_histogram_keys", 1, 1u << 24, s.max_histogram_keys);
        !st.ok()) {
      return st;
    }
    if (auto st = read_embeddings(config["embeddings"], s.embeddings); !st.ok()) return st;
    if (auto st = read_scalars(config["scalar_streams"], s.scalars); !st.ok()) return st;
    s_ = std::move(s);
    runs_.clear();
    published_counters_ = {};
    dropped_runs_ = 0;
    ignored_generations_ = 0;
    make_inputs();
    return sdk::status::success();
  }

  void on_event(const v1::Envelope& envelope, sdk::context& ctx) override {
    switch (envelope.body_case()) {
      case v1::Envelope::kGeneration:
        return on_generation(envelope.run_id(), envelope.generation(), ctx);
      case v1::Envelope::kEmbeddings: {
        run_state* run = find_or_add_run(envelope.run_id(), ctx);
        if (run == nullptr) return;
        embeddings_->on_batch(envelope.run_id(), envelope.embeddings(), run->decision, ctx);
        publish_input_counters(ctx);
        return;
      }
      case v1::Envelope::kMetrics: {
        const auto& samples = envelope.metrics().samples();
        if (std::none_of(samples.begin(), samples.end(), [this](const v1::MetricSample& s) {
              return scalars_->watches(s.name());
            })) {
          return;  // a run is tracked only once it sends something this monitor watches
        }
        run_state* run = find_or_add_run(envelope.run_id(), ctx);
        if (run == nullptr) return;
        scalars_->on_batch(envelope.run_id(), envelope.metrics(), run->decision, ctx);
        publish_input_counters(ctx);
        return;
      }
      default:
        return;
    }
  }

  void on_tick(sdk::context& ctx) override {
    ctx.set_gauge("runs", static_cast<double>(runs_.size()));
    ctx.set_gauge("embeddings.runs", static_cast<double>(embeddings_->runs()));
    ctx.set_gauge("state_bytes",
                  static_cast<double>(embeddings_->state_bytes() + scalars_->state_bytes()));
  }

  sdk::result<std::string> snapshot() const override {
    if (runs_.empty()) return std::string();
    sdk::state_writer w(plugin_name, snapshot_version);
    w.write_u64(dropped_runs_);
    w.write_u64(ignored_generations_);
    w.write_u64(runs_.size());
    for (const auto& [id, run] : runs_) {
      w.write_string(id);
      write_run(w, *run);
    }
    embeddings_->write(w);
    scalars_->write(w);
    return w.finish();
  }

  sdk::status restore(std::string_view state) override {
    sdk::state_reader r(state);
    // Version 1 lacked the provenance model's mean term: refused rather than misread.
    if (auto version = r.read_header(plugin_name, snapshot_version, snapshot_version);
        !version.ok()) {
      return version.error();
    }
    std::map<std::string, std::unique_ptr<run_state>> runs;
    const std::uint64_t dropped = r.read_u64();
    const std::uint64_t ignored = r.read_u64();
    const std::uint64_t n = r.read_count(s_.max_runs);
    for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
      std::string id = r.read_string(4096);
      auto run = std::make_unique<run_state>(s_.decision);
      read_run(r, *run);
      runs[std::move(id)] = std::move(run);
    }
    // Into fresh inputs, so a refused snapshot leaves the monitor as it was.
    auto embeddings = std::make_unique<vc::embedding_input>(s_.embeddings, s_.decision, s_.alpha);
    auto scalars = std::make_unique<vc::scalar_input>(s_.scalars, s_.decision, s_.alpha,
                                                      s_.histogram_smoothing);
    embeddings->read(r, s_.max_runs);
    scalars->read(r, s_.max_runs);
    if (auto st = r.finish(); !st.ok()) return st;
    runs_ = std::move(runs);
    embeddings_ = std::move(embeddings);
    scalars_ = std::move(scalars);
    dropped_runs_ = dropped;
    ignored_generations_ = ignored;
    return sdk::status::success();
  }

 private:
  void make_inputs() {
    embeddings_ = std::make_unique<vc::embedding_input>(s_.embeddings, s_.decision, s_.alpha);
    scalars_ = std::make_unique<vc::scalar_input>(s_.scalars, s_.decision, s_.alpha,
                                                  s_.histogram_smoothing);
  }

  // The run's state, created on first sight unless max_runs runs are tracked (then counted and
  // nullptr: a run beyond the limit is not watched).
  run_state* find_or_add_run(const std::string& run_id, sdk::context& ctx) {
    auto it = runs_.find(run_id);
    if (it != runs_.end()) return it->second.get();
    if (runs_.size() >= s_.max_runs) {
      ++dropped_runs_;
      ctx.set_gauge("dropped_runs", static_cast<double>(dropped_runs_));
      return nullptr;
    }
    auto run = std::make_unique<run_state>(s_.decision);
    if (s_.declared) {
      run->base = s_.declared_baseline;
      if (run->base.sample_count >= 2.0) {
        run->series.set_baseline_variance(2.0 / (run->base.sample_count - 1.0));
      }
    }
    return runs_.emplace(run_id, std::move(run)).first->second.get();
  }

  // The inputs' refusal counters, published when one has changed (a compare of eight integers
  // per event instead of eight gauge writes).
  void publish_input_counters(sdk::context& ctx) {
    const auto& e = embeddings_->counters();
    const auto& c = scalars_->counters();
    const std::array<std::uint64_t, 8> now = {
        e.bad_batches,     e.ignored_vectors, e.late_vectors, e.unused_vectors,
        e.dropped_batches, c.ignored_samples, c.late_samples, c.unused_samples};
    if (now == published_counters_) return;
    published_counters_ = now;
    static constexpr std::array<const char*, 8> names = {
        "embeddings.bad_batches",    "embeddings.ignored_vectors", "embeddings.late_vectors",
        "embeddings.unused_vectors", "embeddings.dropped_batches", "scalar.ignored_samples",
        "scalar.late_samples",       "scalar.unused_samples"};
    for (std::size_t i = 0; i < names.size(); ++i) {
      ctx.set_gauge(names[i], static_cast<double>(now[i]));
    }
  }

  void on_generation(const std::string& run_id, const v1::GenerationSummary& g, sdk::context& ctx) {
    run_state* run = find_or_add_run(run_id, ctx);
    if (run == nullptr) return;
    if (run->last_generation && g.generation() <= *run->last_generation) {
      ++ignored_generations_;  // a repeat or out of order: the series must move forward
      ctx.set_gauge("ignored_generations", static_cast<double>(ignored_generations_));
      return;
    }
    run->last_generation = g.generation();
    // The checkpoint first, so a trip the other inputs make while they complete this generation
    // names it; then everything they collected up to this generation is complete.
    run->decision.note_checkpoint(g.generation(), g.checkpoint_id());
    embeddings_->complete_through(run_id, g.generation(), run->decision, ctx);
    scalars_->complete_through(run_id, g.generation(), run->decision, ctx);
    if (g.generation() == 0) {
      learn_baseline(g, *run);
      run->decision.note_baseline(0, g.checkpoint_id());
      return;
    }
    check_provenance(g, *run, ctx);
    check_collapse(g, *run, ctx);
  }

  sdk::status read_baseline(const sdk::config_node& node, settings& s) const {
    if (node.is_missing() || node.is_null()) return sdk::status::success();
    if (node.is_scalar()) {
      if (node.scalar() == "generation0") return sdk::status::success();
      return node.error("expected generation0 or a map of declared values, got " + node.describe());
    }
    if (auto st =
            node.check_keys({"variance", "sample_count", "tail_mass", "distinct_ratio", "metrics"});
        !st.ok()) {
      return st;
    }
    s.declared = true;
    baseline_values& b = s.declared_baseline;
    if (auto st = read_positive(node, "variance", b.variance); !st.ok()) return st;
    if (node.contains("sample_count")) {
      auto n = node["sample_count"].as_positive_int();
      if (!n.ok()) return n.error();
      b.sample_count = static_cast<double>(*n);
    }
    if (auto st = read_open_fraction(node, "tail_mass", b.tail_mass); !st.ok()) return st;
    if (node.contains("distinct_ratio")) {
      double ratio = nan;
      if (auto st = read_open_fraction(node, "distinct_ratio", ratio); !st.ok()) return st;
      // A declared ratio belongs to one n-gram order; with every order watched it is ambiguous.
      if (s.ngram_order == 0) {
        return node["distinct_ratio"].error("needs ngram_order to say which order it is for");
      }
      b.distinct_ratio[s.ngram_order] = ratio;
    }
    return read_number_map(node["metrics"], true, b.metrics);
  }

  sdk::status read_cusum(const sdk::config_node& node, settings& s) const {
    if (node.is_missing() || node.is_null()) return sdk::status::success();
    if (auto st = node.check_keys({"k", "h"}); !st.ok()) return st;
    auto k = node.get_double("k", s.decision.cusum_k);
    if (!k.ok()) return k.error();
    if (!(*k >= 0.0) || !std::isfinite(*k)) {
      return node["k"].error("expected a number >= 0, got " + node["k"].describe());
    }
    s.decision.cusum_k = *k;
    return read_positive(node, "h", s.decision.cusum_h);
  }

  sdk::status read_ewma(const sdk::config_node& node, settings& s) const {
    if (node.is_missing() || node.is_null()) return sdk::status::success();
    if (auto st = node.check_keys({"lambda", "width"}); !st.ok()) return st;
    if (node.contains("lambda")) {
      auto lambda = node["lambda"].as_double();
      if (!lambda.ok()) return lambda.error();
      if (!(*lambda > 0.0 && *lambda <= 1.0)) {
        return node["lambda"].error("expected a number in (0, 1], got " +
                                    node["lambda"].describe());
      }
      s.decision.ewma_lambda = *lambda;
    }
    return read_positive(node, "width", s.decision.ewma_width);
  }

  sdk::status read_embeddings(const sdk::config_node& node, vc::embedding_settings& e) const {
    if (node.is_missing() || node.is_null()) return sdk::status::success();
    if (!node.is_map()) return node.error("expected a map, got " + node.describe());
    if (auto st = node.check_keys({"streams", "reference_stream", "window", "max_dimension",
                                   "baseline_reservoir", "max_runs", "dispersion_floor",
                                   "tail_quantile", "vendi_floor", "spectrum_max_dimension"});
        !st.ok()) {
      return st;
    }
    if (node.contains("streams")) {
      auto streams = node["streams"].as_string_list();
      if (!streams.ok()) return streams.error();
      e.streams = *streams;
    }
    auto reference = node.get_string("reference_stream", "");
    if (!reference.ok()) return reference.error();
    e.reference_stream = *reference;
    if (!e.reference_stream.empty() &&
        std::find(e.streams.begin(), e.streams.end(), e.reference_stream) != e.streams.end()) {
      return node["reference_stream"].error("is also listed in streams");
    }
    for (auto [key, lo, hi, field] :
         {std::tuple{"window", 2ULL, 1ULL << 24, &e.window},
          std::tuple{"max_dimension", 1ULL, 8192ULL, &e.max_dimension},
          std::tuple{"baseline_reservoir", 2ULL, 1ULL << 20, &e.baseline_reservoir},
          std::tuple{"max_runs", 1ULL, 1ULL << 16, &e.max_runs},
          std::tuple{"spectrum_max_dimension", 0ULL, 8192ULL, &e.spectrum_max_dimension}}) {
      if (auto st = read_count(node, key, lo, hi, *field); !st.ok()) return st;
    }
    if (auto st = read_open_fraction(node, "dispersion_floor", e.dispersion_floor); !st.ok()) {
      return st;
    }
    if (auto st = read_open_fraction(node, "tail_quantile", e.tail_quantile); !st.ok()) return st;
    return read_open_fraction(node, "vendi_floor", e.vendi_floor);
  }

  sdk::status read_scalars(const sdk::config_node& node, vc::scalar_settings& c) const {
    if (node.is_missing() || node.is_null()) return sdk::status::success();
    if (!node.is_map()) return node.error("expected a map, got " + node.describe());
    if (auto st = node.check_keys({"names", "group_by", "window", "bins", "max_baseline_samples",
                                   "min_group", "replicates", "dispersion_floor", "psi_floor",
                                   "low_quantile", "high_quantile"});
        !st.ok()) {
      return st;
    }
    if (node.contains("names")) {
      auto names = node["names"].as_string_list();
      if (!names.ok()) return names.error();
      if (names->size() > 64) return node["names"].error("at most 64 names");
      c.names = *names;
    }
    auto group_by = node.get_string("group_by", "step");
    if (!group_by.ok()) return group_by.error();
    if (*group_by != "step" && *group_by != "window") {
      return node["group_by"].error("expected step or window, got " + node["group_by"].describe());
    }
    c.by_step = *group_by == "step";
    for (auto [key, lo, hi, field] :
         {std::tuple{"window", 2ULL, 1ULL << 24, &c.window},
          std::tuple{"bins", 2ULL, 1000ULL, &c.bins},
          std::tuple{"max_baseline_samples", 10ULL, 1ULL << 22, &c.max_baseline_samples},
          std::tuple{"min_group", 2ULL, 1ULL << 24, &c.min_group},
          std::tuple{"replicates", 50ULL, 100000ULL, &c.replicates}}) {
      if (auto st = read_count(node, key, lo, hi, *field); !st.ok()) return st;
    }
    if (auto st = read_open_fraction(node, "dispersion_floor", c.dispersion_floor); !st.ok()) {
      return st;
    }
    if (node.contains("psi_floor")) {
      auto v = node["psi_floor"].as_double();
      if (!v.ok()) return v.error();
      if (!(*v >= 0.0) || !std::isfinite(*v)) {
        return node["psi_floor"].error("expected a number >= 0, got " +
                                       node["psi_floor"].describe());
      }
      c.psi_floor = *v;
    }
    if (auto st = read_open_fraction(node, "low_quantile", c.low_quantile); !st.ok()) return st;
    if (auto st = read_open_fraction(node, "high_quantile", c.high_quantile); !st.ok()) return st;
    if (!(c.low_quantile < c.high_quantile)) {
      return node["high_quantile"].error("must be above low_quantile (" +
                                         format_number(c.low_quantile) + ")");
    }
    return sdk::status::success();
  }

  // Generation 0 fills every baseline value the operator did not declare.
  void learn_baseline(const v1::GenerationSummary& g, run_state& run) const {
    baseline_values& b = run.base;
    if (const auto* stat = find_statistic(g, s_.statistic); stat != nullptr) {
      if (std::isnan(b.variance)) b.variance = population_variance(*stat);
      if (std::isnan(b.sample_count)) b.sample_count = static_cast<double>(stat->count());
    }
    if (b.sample_count >= 2.0) run.series.set_baseline_variance(2.0 / (b.sample_count - 1.0));
    if (std::isnan(b.tail_mass) && g.has_tail_mass()) b.tail_mass = g.tail_mass();
    for (const auto& d : g.diversity()) {
      if (b.distinct_ratio.size() >= max_ngram_orders) break;
      if (b.distinct_ratio.count(d.n()) == 0) b.distinct_ratio[d.n()] = distinct_ratio_of(d);
    }
    for (const auto& m : g.metrics()) {
      if (s_.metric_ceilings.count(m.name()) != 0 && b.metrics.count(m.name()) == 0) {
        b.metrics[m.name()] = m.value();
      }
    }
    const auto& h = g.token_histogram();
    for (int i = 0; i < h.keys_size() && i < h.counts_size(); ++i) {
      if (!(std::isfinite(h.counts(i)) && h.counts(i) >= 0.0)) continue;
      const auto it = b.histogram.find(h.keys(i));
      if (it != b.histogram.end()) {
        it->second += h.counts(i);
      } else if (b.histogram.size() < s_.max_histogram_keys) {
        b.histogram[h.keys(i)] = h.counts(i);
      }
    }
  }

  void check_provenance(const v1::GenerationSummary& g, run_state& run, sdk::context& ctx) const {
    const double real = real_share_of(g, s_.real_sources);
    ctx.set_gauge("real_share", real);
    // Once per stretch of generations below the floor. Unlike a collapse, which deepens, the real
    // share is a property of the run's data mix: an operator who resets the breaker has accepted
    // that mix for this run (a deliberate experiment), so the same stretch does not trip again; a
    // generation back at or above the floor re-arms it.
    if (!(real < s_.real_share_floor)) {
      run.below_real_floor = false;
      return;
    }
    if (run.below_real_floor) return;
    run.below_real_floor = true;
    sdk::trip_request req;
    req.breaker = s_.provenance_breaker;
    req.reason = "generation " + std::to_string(g.generation()) + " trained on " +
                 format_number(100.0 * real) + "% real data, below the floor of " +
                 format_number(100.0 * s_.real_share_floor) + "%";
    req.evidence = {{"generation", std::to_string(g.generation())},
                    {"real_share", format_number(real)},
                    {"real_share_floor", format_number(s_.real_share_floor)},
                    {"checkpoint_id", g.checkpoint_id()}};
    ctx.trip(std::move(req));
  }

  // The expected dispersion ratio of a recursion that refits on N samples, a share s of them
  // drawn from the previous generation and 1 - s from the real distribution, exactly
  // (stats::refit_expectation):
  //   E_g = (1 - 1/N) (s E_{g-1} + (1 - s)) + s (1 - s) M_{g-1},
  //   M_g = s² M_{g-1} + (s E_{g-1} + (1 - s)) / N
  // where M is the expected squared offset of the model's mean from the real data's: with real
  // data in the mix the model's wandering mean adds spread back. For s = 1 it is ((N-1)/N)^g:
  // the closed form of a Gaussian refitted with the ddof-0 variance, and of Gini-Simpson diversity
  // under multinomial resampling. It does not depend on the sampling noise of one run, so its
  // crossing of the floor is where collapse is expected; the observed statistics catch a run
  // that collapses faster than the model says.
  void update_expected_ratio(const v1::GenerationSummary& g, run_state& run) const {
    const double real = real_share_of(g, s_.real_sources);
    double n = static_cast<double>(g.sample_count());
    if (n < 2.0) {
      if (const auto* stat = find_statistic(g, s_.statistic); stat != nullptr) {
        n = static_cast<double>(stat->count());
      }
    }
    if (std::isnan(real) || n < 2.0 || !std::isfinite(n)) {
      run.expected_ratio = nan;  // without provenance the model can say nothing from now on
      return;
    }
    stats::refit_expectation e;
    if (!e.restore(run.expected_ratio, run.expected_mean_offset)) return;  // already unknown
    e.step(n, std::clamp(1.0 - real, 0.0, 1.0));
    run.expected_ratio = e.dispersion();
    run.expected_mean_offset = e.mean_offset();
  }

  void check_collapse(const v1::GenerationSummary& g, run_state& run, sdk::context& ctx) const {
    std::vector<vc::statistic_check> checks;  // this generation's checks, in a fixed order

    const double previous_expected = run.expected_ratio;
    update_expected_ratio(g, run);
    ctx.set_gauge("expected_dispersion_ratio", run.expected_ratio);
    if (!std::isnan(run.expected_ratio)) {
      vc::add_check(checks, "expected_dispersion_ratio", run.expected_ratio,
                    s_.decision.dispersion_floor, true, true);
      ctx.set_gauge(
          "expected_generations_to_floor",
          stats::generations_until_floor(std::log(run.expected_ratio),
                                         std::log(run.expected_ratio) - std::log(previous_expected),
                                         s_.decision.dispersion_floor));
    }

    if (const auto* stat = find_statistic(g, s_.statistic); stat != nullptr) {
      const double variance = population_variance(*stat);
      const double ratio = stats::dispersion_ratio(variance, run.base.variance);
      const double log_ratio = stats::log_dispersion_ratio(variance, run.base.variance);
      ctx.set_gauge("dispersion_ratio", ratio);
      if (!std::isnan(ratio)) {
        vc::add_check(checks, "dispersion_ratio", ratio, s_.observed_dispersion_floor, true);
        // ln of a ddof-0 variance of N normal values has variance about 2 / (N - 1).
        const double n = static_cast<double>(stat->count());
        run.series.add(g.generation(), log_ratio, n >= 2.0 ? 2.0 / (n - 1.0) : nan, "", checks,
                       ctx);
      }
    }

    if (g.has_tail_mass()) {
      const double ratio = g.tail_mass() / run.base.tail_mass;
      ctx.set_gauge("tail_ratio", ratio);
      if (std::isfinite(ratio))
        vc::add_check(checks, "tail_ratio", ratio, s_.decision.tail_floor, true);
    }

    for (const auto& d : g.diversity()) {
      if (s_.ngram_order != 0 && d.n() != s_.ngram_order) continue;
      const auto base = run.base.distinct_ratio.find(d.n());
      if (base == run.base.distinct_ratio.end() || !(base->second > 0.0)) continue;
      const double ratio = distinct_ratio_of(d) / base->second;
      const std::string name = "distinct_" + std::to_string(d.n()) + "_ratio";
      ctx.set_gauge(name, ratio);
      if (std::isfinite(ratio)) vc::add_check(checks, name, ratio, s_.diversity_floor, true);
    }

    const auto [kl, kl_limit] = divergence_from_baseline(g, run);
    if (!std::isnan(kl)) {
      ctx.set_gauge("kl_from_baseline", kl);
      vc::add_check(checks, "kl_from_baseline", kl, kl_limit, false);
    }

    for (const auto& [name, ceiling] : s_.metric_ceilings) {
      const auto base = run.base.metrics.find(name);
      if (base == run.base.metrics.end() || !(base->second > 0.0)) continue;
      const double ratio = named_metric(g, name) / base->second;
      if (std::isfinite(ratio)) vc::add_check(checks, name + "_ratio", ratio, ceiling, false);
    }

    run.decision.decide(g.generation(), checks, s_.decision, ctx);
  }

  // KL(current || baseline): the host's kl_from_baseline, else from the token histograms. A
  // histogram KL of n samples against a fixed distribution over K bins is biased upwards by
  // about (K - 1) / (2n) with no drift at all, so that bias is added to the ceiling.
  std::pair<double, double> divergence_from_baseline(const v1::GenerationSummary& g,
                                                     const run_state& run) const {
    if (g.has_kl_from_baseline()) return {g.kl_from_baseline(), s_.kl_ceiling};
    const auto& h = g.token_histogram();
    if (h.keys_size() == 0 || run.base.histogram.empty()) return {nan, nan};
    // Keys the baseline does not know beyond max_histogram_keys share one overflow bin, so an
    // absurd histogram costs bounded memory.
    constexpr std::uint64_t overflow_key = std::numeric_limits<std::uint64_t>::max();
    std::map<std::uint64_t, std::pair<double, double>> joined;
    for (const auto& [k, c] : run.base.histogram) joined[k].second = c;
    double n = 0.0;
    std::size_t novel = 0;
    for (int i = 0; i < h.keys_size() && i < h.counts_size(); ++i) {
      if (!(std::isfinite(h.counts(i)) && h.counts(i) >= 0.0)) continue;
      auto it = joined.find(h.keys(i));
      if (it == joined.end()) {
        it = joined
                 .emplace(++novel < s_.max_histogram_keys ? h.keys(i) : overflow_key,
                          std::pair{0.0, 0.0})
                 .first;
      }
      it->second.first += h.counts(i);
      n += h.counts(i);
    }
    if (!(n > 0.0)) return {nan, nan};
    std::vector<double> p;
    std::vector<double> q;
    p.reserve(joined.size());
    q.reserve(joined.size());
    for (const auto& [k, pq] : joined) {
      p.push_back(pq.first);
      q.push_back(pq.second);
    }
    const double kl = stats::kl_divergence(p, q, s_.histogram_smoothing);
    const double bias = (static_cast<double>(joined.size()) - 1.0) / (2.0 * n);
    return {kl, s_.kl_ceiling + bias};
  }

  void write_run(sdk::state_writer& w, const run_state& run) const {
    const baseline_values& b = run.base;
    w.write_f64(b.variance);
    w.write_f64(b.sample_count);
    w.write_f64(b.tail_mass);
    w.write_u64(b.distinct_ratio.size());
    for (const auto& [n, ratio] : b.distinct_ratio) {
      w.write_u64(n);
      w.write_f64(ratio);
    }
    w.write_u64(b.metrics.size());
    for (const auto& [name, value] : b.metrics) {
      w.write_string(name);
      w.write_f64(value);
    }
    w.write_u64(b.histogram.size());
    for (const auto& [key, count] : b.histogram) {
      w.write_u64(key);
      w.write_f64(count);
    }
    w.write_bool(run.last_generation.has_value());
    w.write_i64(run.last_generation.value_or(0));
    w.write_f64(run.expected_ratio);
    w.write_f64(run.expected_mean_offset);
    run.series.write(w);
    run.decision.write(w);
    w.write_bool(run.below_real_floor);
  }

  void read_run(sdk::state_reader& r, run_state& run) const {
    baseline_values& b = run.base;
    b.variance = r.read_f64();
    b.sample_count = r.read_f64();
    b.tail_mass = r.read_f64();
    const std::uint64_t orders = r.read_count(max_ngram_orders + 1);
    for (std::uint64_t i = 0; i < orders && r.ok(); ++i) {
      const auto n =
          static_cast<std::uint32_t>(r.read_count(std::numeric_limits<std::uint32_t>::max()));
      b.distinct_ratio[n] = r.read_f64();
    }
    const std::uint64_t metrics = r.read_count(s_.metric_ceilings.size() + 64);
    for (std::uint64_t i = 0; i < metrics && r.ok(); ++i) {
      std::string name = r.read_string(4096);
      b.metrics[std::move(name)] = r.read_f64();
    }
    const std::uint64_t keys = r.read_count(s_.max_histogram_keys);
    for (std::uint64_t i = 0; i < keys && r.ok(); ++i) {
      const std::uint64_t key = r.read_u64();
      b.histogram[key] = r.read_f64();
    }
    const bool has_last = r.read_bool();
    const std::int64_t last = r.read_i64();
    if (has_last) run.last_generation = last;
    run.expected_ratio = r.read_f64();
    run.expected_mean_offset = r.read_f64();
    run.series.read(r);
    run.decision.read(r);
    run.below_real_floor = r.read_bool();
  }

  settings s_;
  std::array<std::uint64_t, 8> published_counters_{};       // last published input counters
  std::map<std::string, std::unique_ptr<run_state>> runs_;  // ordered for deterministic replay
  std::unique_ptr<vc::embedding_input> embeddings_;  // hold references into s_: rebuilt with it
  std::unique_ptr<vc::scalar_input> scalars_;
  std::uint64_t dropped_runs_ = 0;
  std::uint64_t ignored_generations_ = 0;
};

}  // namespace

LOOPWARDEN_PLUGIN(variance_collapse_monitor);
