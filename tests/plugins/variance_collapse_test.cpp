#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>

#include "variance_collapse_fixture.hpp"

using namespace loopwarden;
using vc_test::engine_with;
using vc_test::evidence_of;
using vc_test::feeder;
using vc_test::gaussian_summary;
using vc_test::yaml_for;

namespace {

// One recursive run: generation 0 is N(0, 1) itself; each later generation fits a Gaussian
// (mean, ddof-0 variance) to N samples, (1 - real_share) N of them drawn from the previous fit
// and the rest from N(0, 1), and reports the fit. Returns the generation that tripped
// training.collapse, or -1.
std::int64_t run_recursion(feeder& f, const std::string& run, std::mt19937_64& rng, int n,
                           double real_share, int generations) {
  std::normal_distribution<double> normal(0.0, 1.0);
  const int real = static_cast<int>(std::lround(real_share * n));
  double mean = 0.0;
  double variance = 1.0;
  f.send(run, gaussian_summary(0, static_cast<std::uint64_t>(n), 0.0, 1.0, 1.0));
  for (int g = 1; g <= generations; ++g) {
    double sum = 0.0;
    double sum_sq = 0.0;
    std::vector<double> xs(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      const double z = normal(rng);
      xs[static_cast<std::size_t>(i)] = i < real ? z : mean + std::sqrt(variance) * z;
      sum += xs[static_cast<std::size_t>(i)];
    }
    mean = sum / n;
    for (double x : xs) sum_sq += (x - mean) * (x - mean);
    variance = sum_sq / n;  // ddof 0
    f.send(run, gaussian_summary(g, static_cast<std::uint64_t>(n), mean, variance,
                                 static_cast<double>(real) / n));
  }
  return f.opened_at("training.collapse", run);
}

}  // namespace

TEST_CASE("variance_collapse trips on the published collapse table by generation 3, not at 1",
          "[plugins][variance_collapse]") {
  // The published run over generations 0-5: KL from the human baseline per generation;
  // distinct 4-grams 8.2 M -> 4.6 M and rare-token perplexity 12.3 -> 25.9 are given only at the
  // ends, so they are interpolated geometrically (a constant rate per generation, which is how
  // collapse compounds), over a constant 20 M 4-grams per corpus.
  const std::vector<double> kl = {0.00, 0.12, 0.28, 0.49, 0.73, 1.01};
  auto e = engine_with("{}");
  feeder f(*e);
  for (int g = 0; g <= 5; ++g) {
    v1::GenerationSummary s;
    s.set_generation(g);
    s.set_checkpoint_id("gen-" + std::to_string(g));
    auto* d = s.add_diversity();
    d->set_n(4);
    d->set_total(20'000'000);
    d->set_distinct(static_cast<std::uint64_t>(8.2e6 * std::pow(4.6 / 8.2, g / 5.0)));
    auto* m = s.add_metrics();
    m->set_name("rare_token_ppl");
    m->set_value(12.3 * std::pow(25.9 / 12.3, g / 5.0));
    if (g > 0) s.set_kl_from_baseline(kl[static_cast<std::size_t>(g)]);
    f.send("published", s);
    if (g == 1) CHECK_FALSE(e->breakers().any_open());
  }
  const auto at = f.opened_at("training.collapse", "published");
  CHECK(at >= 2);
  CHECK(at <= 3);
  const auto ev = evidence_of(*e, "training.collapse", "published");
  CHECK(ev.at("crossed") == "kl_from_baseline");
  CHECK(ev.at("kl_from_baseline") == "0.49");
  CHECK(ev.at("kl_from_baseline_limit") == "0.25");
  CHECK(ev.at("last_healthy_generation") == "1");
  CHECK(ev.at("last_healthy_checkpoint") == "gen-1");
  auto b = e->breakers().find({"training.collapse", "published"});
  REQUIRE(b);
  CHECK(b->action() == v1::BREAKER_ACTION_ROLLBACK);
  // No provenance was reported, so the provenance breaker has nothing to say.
  CHECK(f.opened_at("training.provenance", "published") == -1);
}

TEST_CASE("variance_collapse trips on a metric ceiling relative to the baseline",
          "[plugins][variance_collapse]") {
  // The same table's rare-token perplexity alone: ratio 1.16, 1.35, 1.56, 1.81 at 1..4.
  auto e = engine_with("{metric_ceilings: {rare_token_ppl: 1.5}}");
  feeder f(*e);
  for (int g = 0; g <= 5; ++g) {
    v1::GenerationSummary s;
    s.set_generation(g);
    auto* m = s.add_metrics();
    m->set_name("rare_token_ppl");
    m->set_value(12.3 * std::pow(25.9 / 12.3, g / 5.0));
    f.send("ppl", s);
  }
  CHECK(f.opened_at("training.collapse", "ppl") == 4);
  CHECK(evidence_of(*e, "training.collapse", "ppl").at("crossed") == "rare_token_ppl_ratio");
}

TEST_CASE(
    "variance_collapse trips synthetic-only Gaussian recursions within one generation of "
    "the closed-form crossing",
    "[plugins][variance_collapse]") {
  constexpr int n = 60;
  constexpr int runs = 200;
  constexpr double floor = 0.7;  // the default dispersion_floor
  // First g with ((N-1)/N)^g < floor: ln 0.7 / ln(59/60) = 21.2, so 22.
  const auto expected =
      static_cast<std::int64_t>(std::floor(std::log(floor) / std::log((n - 1.0) / n)) + 1);
  REQUIRE(expected == 22);
  auto e = engine_with("{statistic: x}");
  feeder f(*e);
  std::mt19937_64 rng(20261123);
  int within = 0;
  int early = 0;
  int late_or_never = 0;
  for (int r = 0; r < runs; ++r) {
    const auto at = run_recursion(f, "synthetic-" + std::to_string(r), rng, n, 0.0, 40);
    if (at >= expected - 1 && at <= expected + 1) {
      ++within;
    } else if (at >= 0 && at < expected - 1) {
      ++early;
    } else {
      ++late_or_never;
    }
  }
  const double rate = static_cast<double>(within) / runs;
  CAPTURE(expected, within, early, late_or_never, rate);
  CHECK(rate >= 0.95);
  // The trip says why and where to roll back to.
  const auto ev = evidence_of(*e, "training.collapse", "synthetic-0");
  CHECK(ev.count("crossed") == 1);
  CHECK(ev.count("last_healthy_generation") == 1);
  CHECK(ev.at("checkpoint_id").rfind("ckpt-", 0) == 0);
}

TEST_CASE("variance_collapse does not trip when each generation keeps 10 or 30 percent real data",
          "[plugins][variance_collapse]") {
  constexpr int n = 60;
  constexpr int runs = 200;
  for (const double real : {0.1, 0.3}) {
    auto e = engine_with("{statistic: x}");
    feeder f(*e);
    std::mt19937_64 rng(7 + static_cast<std::uint64_t>(real * 100));
    int tripped = 0;
    for (int r = 0; r < runs; ++r) {
      if (run_recursion(f, "mixed-" + std::to_string(r), rng, n, real, 40) >= 0) ++tripped;
    }
    const double no_trip_rate = 1.0 - static_cast<double>(tripped) / runs;
    CAPTURE(real, tripped, no_trip_rate);
    CHECK(no_trip_rate >= 0.99);
    // At the floor of 10 % the provenance breaker stays closed too.
    CHECK(f.opened_at("training.provenance", "mixed-0") == -1);
  }
}

TEST_CASE("variance_collapse trips training.provenance below the real-data floor",
          "[plugins][variance_collapse]") {
  struct row {
    std::string name;
    std::string config;
    std::function<void(v1::GenerationSummary&)> fill;
    std::int64_t expected;  // generation of the trip, -1 for none
  };
  const std::vector<row> rows = {
      {"real_share 0.05", "{}", [](auto& g) { g.set_real_share(0.05); }, 1},
      {"real_share at the floor", "{}", [](auto& g) { g.set_real_share(0.1); }, -1},
      {"synthetic_share 0.95", "{}", [](auto& g) { g.set_synthetic_share(0.95); }, 1},
      {"counts 50 human of 1000", "{}",
       [](auto& g) {
         auto* h = g.add_provenance_counts();
         h->set_name("human");
         h->set_value(50);
         auto* s = g.add_provenance_counts();
         s->set_name("model");
         s->set_value(950);
       },
       1},
      {"counts 100 human of 1000", "{}",
       [](auto& g) {
         auto* h = g.add_provenance_counts();
         h->set_name("human");
         h->set_value(100);
         auto* s = g.add_provenance_counts();
         s->set_name("model");
         s->set_value(900);
       },
       -1},
      {"configured sources", "{real_sources: [wiki]}",
       [](auto& g) {
         auto* h = g.add_provenance_counts();
         h->set_name("human");
         h->set_value(500);
         auto* s = g.add_provenance_counts();
         s->set_name("wiki");
         s->set_value(10);
       },
       1},
      {"configured floor", "{real_share_floor: 0.3}", [](auto& g) { g.set_real_share(0.2); }, 1},
      {"nothing reported", "{}", [](auto&) {}, -1},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto e = engine_with(r.config);
    feeder f(*e);
    v1::GenerationSummary g0;
    g0.set_generation(0);
    f.send("p", g0);
    v1::GenerationSummary g1;
    g1.set_generation(1);
    g1.set_checkpoint_id("c1");
    r.fill(g1);
    f.send("p", g1);
    CHECK(f.opened_at("training.provenance", "p") == r.expected);
    if (r.expected >= 0) {
      auto b = e->breakers().find({"training.provenance", "p"});
      REQUIRE(b);
      CHECK(b->action() == v1::BREAKER_ACTION_PAUSE);
      CHECK(evidence_of(*e, "training.provenance", "p").at("checkpoint_id") == "c1");
    }
  }
}

TEST_CASE("variance_collapse opens a breaker again when an operator resets it while the cause persists",
          "[plugins][variance_collapse]") {
  // The published KL series keeps rising after the first trip; the operator resets each breaker
  // right after it opens (as if they misjudged it). The next generation that still crosses must
  // open it again, escalated from probation, and a generation that does not must leave it be.
  // training.provenance differs on purpose (see the monitor doc): once per stretch below the floor.
  const std::vector<double> kl = {0.00, 0.12, 0.28, 0.49, 0.73, 1.01, 1.30};
  auto e = engine_with("{}");
  feeder f(*e);
  std::map<std::string, std::vector<std::int64_t>> opened;  // breaker -> generations it opened at
  std::int64_t generation = 0;
  e->breakers().add_listener([&](const v1::BreakerTransition& t) {
    if (t.breaker().state() == v1::BREAKER_STATE_OPEN) {
      opened[t.breaker().name()].push_back(generation);
    }
  });
  const auto reset_if_open = [&](const std::string& breaker) {
    auto b = e->breakers().find({breaker, "r"});
    if (b && b->state() == v1::BREAKER_STATE_OPEN) {
      REQUIRE(e->breakers().reset({breaker, "r"}, "alice", "looked fine to me", 1).ok());
    }
  };
  for (generation = 0; generation <= 6; ++generation) {
    v1::GenerationSummary s;
    s.set_generation(generation);
    if (generation > 0) s.set_kl_from_baseline(kl[static_cast<std::size_t>(generation)]);
    // Real data below the floor at generations 2 and 3, back above it from 4 on, below at 6.
    if (generation > 0) {
      s.set_real_share(generation == 2 || generation == 3 || generation == 6 ? 0.02 : 0.5);
    }
    f.send("r", s);
    reset_if_open("training.collapse");
    reset_if_open("training.provenance");
  }
  // KL crosses 0.25 from generation 2 on: two in a row decide at 3, then every later one.
  CHECK(opened["training.collapse"] == std::vector<std::int64_t>{3, 4, 5, 6});
  // The provenance floor is the run's data mix: a reset accepts it for the rest of the stretch.
  CHECK(opened["training.provenance"] == std::vector<std::int64_t>{2, 6});
  auto b = e->breakers().find({"training.collapse", "r"});
  REQUIRE(b);
  CHECK(b->severity() == v1::SEVERITY_CRITICAL);  // re-opened during probation
}

TEST_CASE("variance_collapse uses a declared baseline without generation 0",
          "[plugins][variance_collapse]") {
  auto e = engine_with(
      "{statistic: x, baseline: {variance: 4.0, sample_count: 500}, "
      "observed_dispersion_floor: 0.3, consecutive: 1}");
  feeder f(*e);
  // No provenance, so the model is silent and only the observed series speak. 3.8 / 4 is a
  // small step; 1.0 / 4 is below the observed floor of 0.3 and, from 500 samples a generation,
  // a drop of ln 3.8 = 1.3 in one generation is 15 standard errors: the CUSUM signals as well.
  v1::GenerationSummary g1 = gaussian_summary(1, 500, 0.0, 3.8, 0.5);
  g1.clear_real_share();
  g1.clear_synthetic_share();
  f.send("d", g1);
  CHECK_FALSE(e->breakers().any_open());
  v1::GenerationSummary g2 = gaussian_summary(2, 500, 0.0, 1.0, 0.5);
  g2.clear_real_share();
  g2.clear_synthetic_share();
  f.send("d", g2);
  CHECK(f.opened_at("training.collapse", "d") == 2);
  const auto ev = evidence_of(*e, "training.collapse", "d");
  // The EWMA chart on the same standardised increments signals too.
  CHECK(ev.at("crossed") == "dispersion_ratio,log_dispersion_cusum,log_dispersion_ewma");
  CHECK(ev.at("dispersion_ratio") == "0.25");
  CHECK(ev.at("dispersion_ratio_limit") == "0.3");
  CHECK(ev.at("dispersion_ratio_excess") == "0.1667");
  CHECK(ev.at("log_dispersion_cusum_limit") == "7");
  CHECK(ev.at("last_healthy_generation") == "1");
}

TEST_CASE("variance_collapse refuses bad config naming the field and line",
          "[plugins][variance_collapse]") {
  struct row {
    std::string config;
    std::string error;
  };
  const std::vector<row> rows = {
      {"{dispersion_flor: 0.5}",
       "monitors[0].config.dispersion_flor: unknown key (allowed: statistic, baseline, "
       "dispersion_floor, observed_dispersion_floor, tail_floor, diversity_floor, ngram_order, "
       "kl_ceiling, histogram_smoothing, metric_ceilings, consecutive, trend_window, cusum, "
       "real_share_floor, real_sources, collapse_breaker, provenance_breaker, max_runs, ewma, "
       "alpha, max_histogram_keys, embeddings, scalar_streams) (vc.yaml:6)"},
      {"{dispersion_floor: 1.5}",
       "monitors[0].config.dispersion_floor: expected a number in (0, 1), got \"1.5\" (vc.yaml:6)"},
      {"{dispersion_floor: 0.3, observed_dispersion_floor: 0.4}",
       "monitors[0].config.observed_dispersion_floor: observed_dispersion_floor (0.4) is above "
       "dispersion_floor (0.3) (vc.yaml:6)"},
      {"{kl_ceiling: -1}",
       "monitors[0].config.kl_ceiling: expected a number > 0, got \"-1\" (vc.yaml:6)"},
      {"{consecutive: 0}",
       "monitors[0].config.consecutive: expected a positive integer, got \"0\" (vc.yaml:6)"},
      {"{trend_window: 1}",
       "monitors[0].config.trend_window: expected an integer in [2, 1024], got \"1\" (vc.yaml:6)"},
      {"{cusum: {h: 0}}",
       "monitors[0].config.cusum.h: expected a number > 0, got \"0\" (vc.yaml:6)"},
      {"{cusum: {hh: 4}}", "monitors[0].config.cusum.hh: unknown key (allowed: k, h) (vc.yaml:6)"},
      {"{real_share_floor: 2}",
       "monitors[0].config.real_share_floor: expected a number in [0, 1], got \"2\" (vc.yaml:6)"},
      {"{baseline: gen0}",
       "monitors[0].config.baseline: expected generation0 or a map of declared values, got "
       "\"gen0\" (vc.yaml:6)"},
      {"{baseline: {variance: abc}}",
       "monitors[0].config.baseline.variance: expected a number, got \"abc\" (vc.yaml:6)"},
      {"{baseline: {distinct_ratio: 0.4}}",
       "monitors[0].config.baseline.distinct_ratio: needs ngram_order to say which order it is "
       "for (vc.yaml:6)"},
      {"{metric_ceilings: {ppl: 0}}",
       "monitors[0].config.metric_ceilings.ppl: expected a number > 0, got \"0\" (vc.yaml:6)"},
      {"{collapse_breaker: x, provenance_breaker: x}",
       "monitors[0].config.provenance_breaker: must differ from collapse_breaker (\"x\") "
       "(vc.yaml:6)"},
  };
  for (const auto& r : rows) {
    INFO(r.config);
    auto cfg = core::parse_config(yaml_for(r.config), "vc.yaml");
    REQUIRE(cfg.ok());
    core::engine_options opts;
    opts.search_bundled_plugins = false;
    auto e = core::engine::create(*cfg, opts);
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().message() == "monitor 'vc': " + r.error);
  }
}

TEST_CASE("variance_collapse reports its config line on a multi-line file",
          "[plugins][variance_collapse]") {
  const std::string yaml = "version: 1\nplugin_paths: [\"" + std::string(LOOPWARDEN_BINARY_DIR) +
                           "/lib/loopwarden/plugins\"]\nmonitors:\n  - name: vc\n    plugin: "
                           "variance_collapse\n    config:\n      statistic: x\n"
                           "      tail_floor: 0\n";
  auto cfg = core::parse_config(yaml, "vc.yaml");
  REQUIRE(cfg.ok());
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  auto e = core::engine::create(*cfg, opts);
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().message() ==
        "monitor 'vc': monitors[0].config.tail_floor: expected a number in (0, 1), got \"0\" "
        "(vc.yaml:8)");
}

TEST_CASE("variance_collapse watches tails, distinct-n and token histograms against generation 0",
          "[plugins][variance_collapse]") {
  struct row {
    std::string name;
    std::function<void(v1::GenerationSummary&, int)> fill;
    std::int64_t expected;  // generation of the trip, -1 for none
    std::string crossed;
  };
  auto histogram = [](v1::GenerationSummary& g, const std::vector<double>& counts) {
    for (std::size_t k = 0; k < counts.size(); ++k) {
      g.mutable_token_histogram()->add_keys(100 + k);
      g.mutable_token_histogram()->add_counts(counts[k]);
    }
  };
  const std::vector<row> rows = {
      // tail share 0.1 -> 0.08, 0.04, 0.03: ratios 0.8, 0.4, 0.3 against the floor 0.5.
      {"tails",
       [](auto& g, int gen) {
         g.set_tail_mass(std::vector<double>{0.1, 0.08, 0.04, 0.03}[gen]);
       },
       3, "tail_ratio"},
      {"tails that hold",
       [](auto& g, int gen) {
         g.set_tail_mass(std::vector<double>{0.1, 0.09, 0.11, 0.1}[gen]);
       },
       -1, ""},
      // distinct/total 0.5 -> 0.45, 0.35, 0.3: ratios 0.9, 0.7, 0.6 against the floor 0.75.
      {"distinct-2",
       [](auto& g, int gen) {
         auto* d = g.add_diversity();
         d->set_n(2);
         d->set_total(1000);
         d->set_distinct(std::vector<std::uint64_t>{500, 450, 350, 300}[gen]);
       },
       3, "distinct_2_ratio"},
      // 1000 tokens a generation, uniform over 10 keys, then piling onto the first three.
      {"token histogram",
       [histogram](auto& g, int gen) {
         const std::vector<std::vector<double>> h = {
             {100, 100, 100, 100, 100, 100, 100, 100, 100, 100},
             {110, 90, 105, 95, 100, 100, 98, 102, 100, 100},
             {300, 300, 300, 20, 20, 20, 10, 10, 10, 10},
             {330, 330, 330, 2, 2, 2, 1, 1, 1, 1}};
         histogram(g, h[static_cast<std::size_t>(gen)]);
       },
       3, "kl_from_baseline"},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto e = engine_with("{}");
    feeder f(*e);
    for (int gen = 0; gen <= 3; ++gen) {
      v1::GenerationSummary g;
      g.set_generation(gen);
      r.fill(g, gen);
      f.send("t", g);
    }
    CHECK(f.opened_at("training.collapse", "t") == r.expected);
    if (r.expected >= 0)
      CHECK(evidence_of(*e, "training.collapse", "t").at("crossed") == r.crossed);
  }
}

TEST_CASE("variance_collapse adds the small-sample bias of a histogram KL to its ceiling",
          "[plugins][variance_collapse]") {
  auto e = engine_with("{consecutive: 1}");
  feeder f(*e);
  v1::GenerationSummary g0;
  g0.set_generation(0);
  for (std::uint64_t k = 0; k < 10; ++k) {
    g0.mutable_token_histogram()->add_keys(k);
    g0.mutable_token_histogram()->add_counts(1000);
  }
  f.send("b", g0);
  // 20 tokens, 4 on each of 5 of the 10 keys: with smoothing 0.5 the KL is
  // 0.9 ln 1.8 + 0.1 ln 0.2 = 0.368, above the raw ceiling 0.25 but below the ceiling plus the
  // bias (10 - 1) / (2 * 20) = 0.225 of a 20-token sample.
  v1::GenerationSummary g1;
  g1.set_generation(1);
  for (std::uint64_t k = 0; k < 5; ++k) {
    g1.mutable_token_histogram()->add_keys(k);
    g1.mutable_token_histogram()->add_counts(4);
  }
  f.send("b", g1);
  CHECK_FALSE(e->breakers().any_open());
  double kl = -1.0;
  const auto monitors = e->monitors();
  for (const auto& [name, value] : monitors.at(0).gauges) {
    if (name == "kl_from_baseline") kl = value;
  }
  CHECK(kl == Approx(0.9 * std::log(1.8) + 0.1 * std::log(0.2)));
}

TEST_CASE("variance_collapse publishes the projected generations to the floor before it trips",
          "[plugins][variance_collapse]") {
  auto e = engine_with("{statistic: x}");
  feeder f(*e);
  // The spread shrinks by 0.9 a generation with N = 60 and no real data: after generation 3
  // the fitted slope is ln 0.9 and the projection (ln 0.7 - 3 ln 0.9) / ln 0.9 = 0.385.
  for (int g = 0; g <= 3; ++g) {
    f.send("p", gaussian_summary(g, 60, 0.0, std::pow(0.9, g), g == 0 ? 1.0 : 0.0));
  }
  std::map<std::string, double> gauges;
  const auto monitors = e->monitors();
  for (const auto& [name, value] : monitors.at(0).gauges) gauges[name] = value;
  CHECK(gauges.at("projected_generations_to_floor") ==
        Approx((std::log(0.7) - 3 * std::log(0.9)) / std::log(0.9)));
  CHECK(gauges.at("log_dispersion_slope") == Approx(std::log(0.9)));
  CHECK(gauges.at("expected_dispersion_ratio") == Approx(std::pow(59.0 / 60.0, 3)));
  // ((59/60)^g crosses 0.7 at 21.2: 18.2 generations to go after generation 3.
  CHECK(gauges.at("expected_generations_to_floor") ==
        Approx(std::log(0.7) / std::log(59.0 / 60.0) - 3));
  CHECK(gauges.at("last_healthy_generation") == 3);
  CHECK(f.opened_at("training.collapse", "p") == -1);
}
