// variance_collapse: watches a recursive-training loop (a model retrained on its own samples)
// through its generation summaries, and trips training.collapse (roll back) when the
// distribution it produces loses its spread, its tails or its diversity, or drifts away from
// the baseline; trips training.provenance when a generation's real-data share is below a floor.
//
//   config:
//     statistic: "loglik"        # ScalarSummary whose variance is the dispersion; "" = the first
//     baseline: generation0      # or a map of declared reference values (see below)
//     dispersion_floor: 0.7      # floor on the expected dispersion ratio (provenance model)
//     observed_dispersion_floor: 0.05  # floor on the observed variance ratio
//     tail_floor: 0.5            # floor on tail_mass / baseline tail_mass
//     diversity_floor: 0.75      # floor on distinct-n ratio / baseline distinct-n ratio
//     ngram_order: 0             # which NgramDiversity order to watch; 0 = every order
//     kl_ceiling: 0.25           # ceiling on KL(current || baseline), nats
//     histogram_smoothing: 0.5   # additive smoothing of token histograms before KL
//     metric_ceilings: {}        # per-generation metric -> ceiling on value / baseline value
//     consecutive: 2             # generations in a row an observed statistic must cross
//     trend_window: 8            # generations in the log-dispersion trend fit
//     cusum: {k: 0.5, h: 5}      # CUSUM on standardised log-dispersion increments (lower side)
//     real_share_floor: 0.1      # training.provenance when the real share is below this
//     real_sources: [human, real]  # provenance_counts names that count as real data
//     collapse_breaker: training.collapse
//     provenance_breaker: training.provenance
//     max_runs: 1000             # memory bound: runs tracked at once
//
//   baseline (declared form): {variance: 1.0, sample_count: 1000, tail_mass: 0.1,
//                              distinct_ratio: 0.41, metrics: {rare_token_ppl: 12.3}}
//   Declared values win; generation 0, when it arrives, fills in whatever is not declared.
//
// The statistics come from the SDK (loopwarden/stats): dispersion_ratio and
// log_dispersion_ratio, trend and generations_until_floor, cusum, kl_divergence.
// Per run state lives in a std::map keyed by run id, so replays iterate it in the same order.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <loopwarden/plugin.hpp>
#include <loopwarden/stats/cusum.hpp>
#include <loopwarden/stats/dispersion.hpp>
#include <loopwarden/stats/divergence.hpp>
#include <loopwarden/stats/trend.hpp>

namespace {

namespace sdk = loopwarden::sdk;
namespace stats = loopwarden::sdk::stats;
namespace v1 = loopwarden::v1;

constexpr double nan = std::numeric_limits<double>::quiet_NaN();

std::string format_number(double v) {
  std::ostringstream out;
  out.precision(4);
  out << v;
  return out.str();
}

// Reference values of generation 0 or of the operator's declaration; NaN = not known.
struct baseline_values {
  double variance = nan;      // ddof 0
  double sample_count = nan;  // samples behind the variance (for the sampling noise of its log)
  double tail_mass = nan;
  std::map<std::uint32_t, double> distinct_ratio;  // n -> distinct / total
  std::map<std::string, double> metrics;
  std::map<std::uint64_t, double> histogram;  // token key -> count
};

// Everything the operator can set; defaults as documented in docs/monitors/variance-collapse.md.
struct settings {
  std::string statistic;
  bool declared = false;
  baseline_values declared_baseline;
  double dispersion_floor = 0.7;
  double observed_dispersion_floor = 0.05;
  double tail_floor = 0.5;
  double diversity_floor = 0.75;
  std::uint32_t ngram_order = 0;
  double kl_ceiling = 0.25;
  double histogram_smoothing = 0.5;
  std::map<std::string, double> metric_ceilings;
  std::uint64_t consecutive = 2;
  std::size_t trend_window = 8;
  double cusum_k = 0.5;
  double cusum_h = 5.0;
  double real_share_floor = 0.1;
  std::vector<std::string> real_sources = {"human", "real"};
  std::string collapse_breaker = "training.collapse";
  std::string provenance_breaker = "training.provenance";
  std::size_t max_runs = 1000;
};

// One statistic of one generation compared with its limit.
struct crossing {
  std::string statistic;
  double value = nan;
  double limit = nan;
  bool below = true;       // crossed by falling below the limit (else by rising above it)
  bool immediate = false;  // trips without waiting for `consecutive` generations
};

struct run_state {
  explicit run_state(const settings& s)
      : trend(s.trend_window), cusum(stats::cusum_options{.k = s.cusum_k, .h = s.cusum_h}) {}

  baseline_values base;
  std::optional<std::int64_t> last_generation;
  double expected_ratio = 1.0;  // NaN once a generation came without provenance
  double previous_log_ratio = 0.0;
  double previous_count = nan;
  stats::trend trend;
  stats::cusum cusum;
  std::map<std::string, std::uint64_t> crossings_in_a_row;  // statistic -> generations
  std::optional<std::int64_t> last_healthy;
  std::string last_healthy_checkpoint;
  bool collapse_tripped = false;
  bool provenance_tripped = false;
};

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
  if (!(*v > 0.0)) {
    return config[key].error("expected a number > 0, got " + config[key].describe());
  }
  out = *v;
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

class variance_collapse_monitor final : public sdk::monitor {
 public:
  sdk::monitor_info info() const override {
    sdk::monitor_info i;
    i.name = "variance_collapse";
    i.version = "0.1.0";
    i.description = "trips when recursive training loses spread, tails or diversity";
    i.kinds = {sdk::event_kind::generation};
    sdk::breaker_spec collapse;
    collapse.name = s_.collapse_breaker;
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
    if (auto st = config.check_keys(
            {"statistic", "baseline", "dispersion_floor", "observed_dispersion_floor", "tail_floor",
             "diversity_floor", "ngram_order", "kl_ceiling", "histogram_smoothing",
             "metric_ceilings", "consecutive", "trend_window", "cusum", "real_share_floor",
             "real_sources", "collapse_breaker", "provenance_breaker", "max_runs"});
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
    for (auto [key, field] : {std::pair{"dispersion_floor", &s.dispersion_floor},
                              std::pair{"observed_dispersion_floor", &s.observed_dispersion_floor},
                              std::pair{"tail_floor", &s.tail_floor},
                              std::pair{"diversity_floor", &s.diversity_floor}}) {
      if (auto st = read_open_fraction(config, key, *field); !st.ok()) return st;
    }
    if (s.observed_dispersion_floor > s.dispersion_floor) {
      return config["observed_dispersion_floor"].error(
          "observed_dispersion_floor (" + format_number(s.observed_dispersion_floor) +
          ") is above dispersion_floor (" + format_number(s.dispersion_floor) + ")");
    }
    if (auto st = read_positive(config, "kl_ceiling", s.kl_ceiling); !st.ok()) return st;
    auto smoothing = config.get_double("histogram_smoothing", s.histogram_smoothing);
    if (!smoothing.ok()) return smoothing.error();
    if (*smoothing < 0.0) {
      return config["histogram_smoothing"].error("expected a number >= 0, got " +
                                                 config["histogram_smoothing"].describe());
    }
    s.histogram_smoothing = *smoothing;
    if (auto st = read_number_map(config["metric_ceilings"], true, s.metric_ceilings); !st.ok()) {
      return st;
    }
    auto consecutive = config.get_positive_int("consecutive", 2);
    if (!consecutive.ok()) return consecutive.error();
    s.consecutive = static_cast<std::uint64_t>(*consecutive);
    auto window = config.get_positive_int("trend_window", 8);
    if (!window.ok()) return window.error();
    if (*window < 2) {
      return config["trend_window"].error("expected an integer >= 2, got " +
                                          config["trend_window"].describe());
    }
    s.trend_window = static_cast<std::size_t>(*window);
    if (auto st = read_cusum(config["cusum"], s); !st.ok()) return st;
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
    for (auto [key, field] : {std::pair{"collapse_breaker", &s.collapse_breaker},
                              std::pair{"provenance_breaker", &s.provenance_breaker}}) {
      auto name = config.get_string(key, *field);
      if (!name.ok()) return name.error();
      if (name->empty()) return config[key].error("expected a breaker name");
      *field = *name;
    }
    if (s.collapse_breaker == s.provenance_breaker) {
      return config["provenance_breaker"].error("must differ from collapse_breaker (\"" +
                                                s.collapse_breaker + "\")");
    }
    auto max_runs = config.get_positive_int("max_runs", 1000);
    if (!max_runs.ok()) return max_runs.error();
    s.max_runs = static_cast<std::size_t>(*max_runs);
    s_ = std::move(s);
    runs_.clear();
    return sdk::status::success();
  }

  void on_event(const v1::Envelope& envelope, sdk::context& ctx) override {
    const v1::GenerationSummary& g = envelope.generation();
    auto it = runs_.find(envelope.run_id());
    if (it == runs_.end()) {
      if (runs_.size() >= s_.max_runs) {
        ++dropped_runs_;
        ctx.set_gauge("dropped_runs", static_cast<double>(dropped_runs_));
        return;
      }
      it = runs_.emplace(envelope.run_id(), run_state(s_)).first;
      if (s_.declared) it->second.base = s_.declared_baseline;
    }
    run_state& run = it->second;
    if (run.last_generation && g.generation() <= *run.last_generation) {
      ++ignored_generations_;  // a repeat or out of order: the series must move forward
      ctx.set_gauge("ignored_generations", static_cast<double>(ignored_generations_));
      return;
    }
    run.last_generation = g.generation();
    if (g.generation() == 0) {
      learn_baseline(g, run);
      run.last_healthy = 0;
      run.last_healthy_checkpoint = g.checkpoint_id();
      return;
    }
    check_provenance(g, run, ctx);
    check_collapse(g, run, ctx);
  }

 private:
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
    auto k = node.get_double("k", s.cusum_k);
    if (!k.ok()) return k.error();
    if (*k < 0.0) return node["k"].error("expected a number >= 0, got " + node["k"].describe());
    s.cusum_k = *k;
    return read_positive(node, "h", s.cusum_h);
  }

  // Generation 0 fills every baseline value the operator did not declare.
  void learn_baseline(const v1::GenerationSummary& g, run_state& run) const {
    baseline_values& b = run.base;
    if (const auto* stat = find_statistic(g, s_.statistic); stat != nullptr) {
      if (std::isnan(b.variance)) b.variance = population_variance(*stat);
      if (std::isnan(b.sample_count)) b.sample_count = static_cast<double>(stat->count());
    }
    if (std::isnan(b.tail_mass) && g.has_tail_mass()) b.tail_mass = g.tail_mass();
    for (const auto& d : g.diversity()) {
      if (b.distinct_ratio.count(d.n()) == 0) b.distinct_ratio[d.n()] = distinct_ratio_of(d);
    }
    for (const auto& m : g.metrics()) {
      if (b.metrics.count(m.name()) == 0) b.metrics[m.name()] = m.value();
    }
    const auto& h = g.token_histogram();
    for (int i = 0; i < h.keys_size() && i < h.counts_size(); ++i) {
      b.histogram[h.keys(i)] += h.counts(i);
    }
  }

  void check_provenance(const v1::GenerationSummary& g, run_state& run, sdk::context& ctx) const {
    const double real = real_share_of(g, s_.real_sources);
    ctx.set_gauge("real_share", real);
    if (!(real < s_.real_share_floor)) {
      run.provenance_tripped = false;  // the condition went away: a later breach is news
      return;
    }
    if (run.provenance_tripped) return;
    run.provenance_tripped = true;
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
  // drawn from the previous generation and 1 - s from the real distribution:
  //   E_g = (1 - 1/N) (s E_{g-1} + (1 - s))
  // which is ((N-1)/N)^g for s = 1: the closed form of a Gaussian refitted with the ddof-0
  // variance, and of Gini-Simpson diversity under multinomial resampling. It does not depend on
  // the sampling noise of one run, so its crossing of the floor is where collapse is expected;
  // the observed statistics below catch a run that collapses faster than the model says.
  void update_expected_ratio(const v1::GenerationSummary& g, run_state& run) const {
    const double real = real_share_of(g, s_.real_sources);
    double n = static_cast<double>(g.sample_count());
    if (n < 2.0) {
      if (const auto* stat = find_statistic(g, s_.statistic); stat != nullptr) {
        n = static_cast<double>(stat->count());
      }
    }
    if (std::isnan(real) || n < 2.0) {
      run.expected_ratio = nan;  // without provenance the model can say nothing from now on
      return;
    }
    const double synthetic = std::clamp(1.0 - real, 0.0, 1.0);
    run.expected_ratio = (1.0 - 1.0 / n) * (synthetic * run.expected_ratio + (1.0 - synthetic));
  }

  void check_collapse(const v1::GenerationSummary& g, run_state& run, sdk::context& ctx) {
    std::vector<crossing> crossed;  // this generation's crossings, in a fixed order
    auto observe = [&](crossing c) {
      const bool is_crossing = c.below ? c.value < c.limit : c.value > c.limit;
      std::uint64_t& in_a_row = run.crossings_in_a_row[c.statistic];
      in_a_row = is_crossing ? in_a_row + 1 : 0;
      if (is_crossing) crossed.push_back(std::move(c));
    };

    const double previous_expected = run.expected_ratio;
    update_expected_ratio(g, run);
    ctx.set_gauge("expected_dispersion_ratio", run.expected_ratio);
    if (!std::isnan(run.expected_ratio)) {
      observe({"expected_dispersion_ratio", run.expected_ratio, s_.dispersion_floor, true, true});
      ctx.set_gauge(
          "expected_generations_to_floor",
          stats::generations_until_floor(std::log(run.expected_ratio),
                                         std::log(run.expected_ratio) - std::log(previous_expected),
                                         s_.dispersion_floor));
    }

    if (const auto* stat = find_statistic(g, s_.statistic); stat != nullptr) {
      const double variance = population_variance(*stat);
      const double ratio = stats::dispersion_ratio(variance, run.base.variance);
      const double log_ratio = stats::log_dispersion_ratio(variance, run.base.variance);
      ctx.set_gauge("dispersion_ratio", ratio);
      if (!std::isnan(ratio)) {
        observe({"dispersion_ratio", ratio, s_.observed_dispersion_floor, true, false});
        run.trend.add(static_cast<double>(g.generation()), log_ratio);
        const stats::line_fit fit = run.trend.fit();
        ctx.set_gauge("log_dispersion_slope", fit.slope);
        ctx.set_gauge("projected_generations_to_floor",
                      stats::generations_until_floor(log_ratio, fit.slope, s_.dispersion_floor));
        update_cusum(*stat, log_ratio, run, observe);
      }
    }

    if (g.has_tail_mass()) {
      const double ratio = g.tail_mass() / run.base.tail_mass;
      ctx.set_gauge("tail_ratio", ratio);
      if (std::isfinite(ratio)) observe({"tail_ratio", ratio, s_.tail_floor, true, false});
    }

    for (const auto& d : g.diversity()) {
      if (s_.ngram_order != 0 && d.n() != s_.ngram_order) continue;
      const auto base = run.base.distinct_ratio.find(d.n());
      if (base == run.base.distinct_ratio.end() || !(base->second > 0.0)) continue;
      const double ratio = distinct_ratio_of(d) / base->second;
      const std::string name = "distinct_" + std::to_string(d.n()) + "_ratio";
      ctx.set_gauge(name, ratio);
      if (std::isfinite(ratio)) observe({name, ratio, s_.diversity_floor, true, false});
    }

    const auto [kl, kl_limit] = divergence_from_baseline(g, run);
    if (!std::isnan(kl)) {
      ctx.set_gauge("kl_from_baseline", kl);
      observe({"kl_from_baseline", kl, kl_limit, false, false});
    }

    for (const auto& [name, ceiling] : s_.metric_ceilings) {
      const auto base = run.base.metrics.find(name);
      if (base == run.base.metrics.end() || !(base->second > 0.0)) continue;
      const double ratio = named_metric(g, name) / base->second;
      if (std::isfinite(ratio)) observe({name + "_ratio", ratio, ceiling, false, false});
    }

    std::vector<const crossing*> decisive;
    for (const auto& c : crossed) {
      if (c.immediate || run.crossings_in_a_row[c.statistic] >= s_.consecutive) {
        decisive.push_back(&c);
      }
    }
    if (crossed.empty()) {
      run.last_healthy = g.generation();
      run.last_healthy_checkpoint = g.checkpoint_id();
      run.collapse_tripped = false;
    }
    if (run.last_healthy)
      ctx.set_gauge("last_healthy_generation", static_cast<double>(*run.last_healthy));
    if (decisive.empty() || run.collapse_tripped) return;
    run.collapse_tripped = true;
    trip_collapse(g, run, crossed, decisive, ctx);
  }

  // CUSUM, lower side, on the generation-to-generation change of the log dispersion ratio,
  // standardised by its sampling noise under no change: ln of a ddof-0 variance of N normal
  // values has variance about 2 / (N - 1), so the difference of two generations has
  // 2 / (N_g - 1) + 2 / (N_{g-1} - 1). The chart then has its tabulated run lengths (k 0.5, h 4:
  // 168 generations in control) and signals a sudden drop of the spread.
  template <typename Observe>
  void update_cusum(const v1::ScalarSummary& stat, double log_ratio, run_state& run,
                    Observe& observe) const {
    const double n = static_cast<double>(stat.count());
    const double previous_n =
        std::isnan(run.previous_count) ? run.base.sample_count : run.previous_count;
    double noise = n >= 2.0 ? 2.0 / (n - 1.0) : nan;
    if (previous_n >= 2.0) noise += 2.0 / (previous_n - 1.0);
    const double change = log_ratio - run.previous_log_ratio;
    run.previous_log_ratio = log_ratio;
    run.previous_count = n;
    if (!(noise > 0.0) || !std::isfinite(change)) return;
    const stats::signal_side side = run.cusum.update(change / std::sqrt(noise));
    if (stats::signalled_lower(side)) {
      observe({"log_dispersion_cusum", run.cusum.lower(), s_.cusum_h, false, true});
    }
  }

  // KL(current || baseline): the host's kl_from_baseline, else from the token histograms. A
  // histogram KL of n samples against a fixed distribution over K bins is biased upwards by
  // about (K - 1) / (2n) with no drift at all, so that bias is added to the ceiling.
  std::pair<double, double> divergence_from_baseline(const v1::GenerationSummary& g,
                                                     const run_state& run) const {
    if (g.has_kl_from_baseline()) return {g.kl_from_baseline(), s_.kl_ceiling};
    const auto& h = g.token_histogram();
    if (h.keys_size() == 0 || run.base.histogram.empty()) return {nan, nan};
    std::map<std::uint64_t, double> current;
    for (int i = 0; i < h.keys_size() && i < h.counts_size(); ++i) {
      if (std::isfinite(h.counts(i)) && h.counts(i) >= 0.0) current[h.keys(i)] += h.counts(i);
    }
    std::map<std::uint64_t, std::pair<double, double>> joined;
    for (const auto& [k, c] : current) joined[k].first = c;
    for (const auto& [k, c] : run.base.histogram) joined[k].second = c;
    std::vector<double> p;
    std::vector<double> q;
    p.reserve(joined.size());
    q.reserve(joined.size());
    double n = 0.0;
    for (const auto& [k, pq] : joined) {
      p.push_back(pq.first);
      q.push_back(pq.second);
      n += pq.first;
    }
    if (!(n > 0.0)) return {nan, nan};
    const double kl = stats::kl_divergence(p, q, s_.histogram_smoothing);
    const double bias = (static_cast<double>(joined.size()) - 1.0) / (2.0 * n);
    return {kl, s_.kl_ceiling + bias};
  }

  void trip_collapse(const v1::GenerationSummary& g, const run_state& run,
                     const std::vector<crossing>& crossed,
                     const std::vector<const crossing*>& decisive, sdk::context& ctx) const {
    sdk::trip_request req;
    req.breaker = s_.collapse_breaker;
    std::string names;
    for (const auto* c : decisive) {
      if (!names.empty()) names += ",";
      names += c->statistic;
    }
    const crossing& first = *decisive.front();
    req.reason = "generation " + std::to_string(g.generation()) + ": " + first.statistic + " " +
                 format_number(first.value) + (first.below ? " < " : " > ") +
                 format_number(first.limit);
    if (decisive.size() > 1) {
      req.reason += " (and " + std::to_string(decisive.size() - 1) + " more)";
    }
    req.reason += "; roll back to generation " +
                  (run.last_healthy ? std::to_string(*run.last_healthy) : std::string("none"));
    req.evidence = {{"generation", std::to_string(g.generation())},
                    {"checkpoint_id", g.checkpoint_id()},
                    {"crossed", names}};
    for (const auto* c : decisive) {
      req.evidence.push_back({c->statistic, format_number(c->value)});
      req.evidence.push_back({c->statistic + "_limit", format_number(c->limit)});
      // By how much, as a fraction of the limit: 0.1 = 10 % beyond it.
      req.evidence.push_back(
          {c->statistic + "_excess", format_number(c->below ? (c->limit - c->value) / c->limit
                                                            : (c->value - c->limit) / c->limit)});
    }
    // Crossings still short of `consecutive` generations: context for the operator.
    for (const auto& c : crossed) {
      bool listed = false;
      for (const auto* d : decisive) listed = listed || d == &c;
      if (!listed) req.evidence.push_back({c.statistic + "_pending", format_number(c.value)});
    }
    req.evidence.push_back(
        {"last_healthy_generation", run.last_healthy ? std::to_string(*run.last_healthy) : "none"});
    req.evidence.push_back({"last_healthy_checkpoint", run.last_healthy_checkpoint});
    ctx.trip(std::move(req));
  }

  settings s_;
  std::map<std::string, run_state> runs_;  // run id -> state; ordered for deterministic replay
  std::uint64_t dropped_runs_ = 0;
  std::uint64_t ignored_generations_ = 0;
};

}  // namespace

LOOPWARDEN_PLUGIN(variance_collapse_monitor);
