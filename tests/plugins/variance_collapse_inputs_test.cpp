// variance_collapse's embedding and scalar-stream inputs, the one decision they share with the
// generation summaries, the detection rates with every input present, and snapshot/restore.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>
#include <loopwarden/state_codec.hpp>

#include "variance_collapse_fixture.hpp"

using namespace loopwarden;
using vc_test::embedding_batch;
using vc_test::engine_with;
using vc_test::evidence_of;
using vc_test::feeder;
using vc_test::gauges_of;
using vc_test::gaussian_recursion;
using vc_test::gaussian_summary;
using vc_test::recursion_inputs;
using vc_test::scalar_batch;
using vc_test::yaml_for;

namespace {

// Charts out of the way, to test a floor rule on its own.
constexpr const char* quiet_charts = "cusum: {h: 1000}, ewma: {width: 1000}";

// n seeded N(0, I_d) vectors times `scale`.
std::vector<std::vector<double>> gaussian_vectors(int n, int d, unsigned seed, double scale = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<std::vector<double>> rows(static_cast<std::size_t>(n),
                                        std::vector<double>(static_cast<std::size_t>(d)));
  for (auto& row : rows) {
    for (double& v : row) v = scale * normal(rng);
  }
  return rows;
}

std::vector<std::vector<double>> scaled(std::vector<std::vector<double>> rows, double s) {
  for (auto& row : rows) {
    for (double& v : row) v *= s;
  }
  return rows;
}

// Feeds one seeded recursion to a fresh engine; the generation that opened training.collapse
// (-1: none) and the statistics that decided.
struct trip {
  std::int64_t at = -1;
  std::string crossed;
};

// Equal maps, with NaN equal to NaN (an undefined gauge is undefined in both).
bool same_gauges(const std::map<std::string, double>& a, const std::map<std::string, double>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, value] : a) {
    const auto it = b.find(name);
    if (it == b.end()) return false;
    if (!(it->second == value || (std::isnan(it->second) && std::isnan(value)))) {
      UNSCOPED_INFO("gauge " << name << ": " << value << " vs " << it->second);
      return false;
    }
  }
  return true;
}

trip run_inputs(const std::string& config, std::mt19937_64& rng, int dim, double real_share,
                int generations, const recursion_inputs& inputs) {
  auto e = engine_with(config);
  feeder f(*e);
  for (auto& [g, env] : gaussian_recursion(rng, 60, dim, real_share, generations, inputs)) {
    f.send_envelope("run", g, std::move(env));
    if (f.opened_at("training.collapse", "run") >= 0) break;
  }
  trip t;
  t.at = f.opened_at("training.collapse", "run");
  if (t.at >= 0) t.crossed = evidence_of(*e, "training.collapse", "run").at("crossed");
  return t;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// embedding batches

TEST_CASE("variance_collapse trips at once when the embeddings' total variance falls to a quarter",
          "[plugins][variance_collapse][embeddings]") {
  // 256 vectors in d = 16, then the same vectors at half the length: the total variance ratio is
  // exactly 0.25, far below the floor of 0.5, and the drop of ln 0.25 = −1.39 in one generation
  // is about 40 standard errors (2 / (d_eff · 255) per side), so both charts signal at once.
  auto e = engine_with("{}");
  feeder f(*e);
  const auto base = gaussian_vectors(256, 16, 1);
  f.send_envelope("r", 0, embedding_batch(base, 0));
  f.send_envelope("r", 1, embedding_batch(scaled(base, 0.5), 1));
  CHECK(f.opened_at("training.collapse", "r") == -1);  // generation 1 is not complete yet
  f.send_envelope("r", 2, embedding_batch(base, 2));   // a later generation completes it
  REQUIRE(f.opened_at("training.collapse", "r") == 2);
  const auto ev = evidence_of(*e, "training.collapse", "r");
  CHECK(ev.at("generation") == "1");
  CHECK(ev.at("crossed") == "embeddings.log_dispersion_cusum,embeddings.log_dispersion_ewma");
  CHECK(ev.at("embeddings.dispersion_ratio_pending") == "0.25");
  CHECK(ev.at("last_healthy_generation") == "0");
  const auto gauges = gauges_of(*e);
  CHECK(gauges.at("embeddings.dispersion_ratio") == Approx(0.25).epsilon(1e-5));
  // The cosine kernel does not see lengths: the same directions keep the same Vendi score.
  CHECK(gauges.at("embeddings.vendi_ratio") == Approx(1.0).epsilon(1e-9));
  CHECK(e->breakers().find({"training.collapse", "r"})->action() == v1::BREAKER_ACTION_ROLLBACK);
}

TEST_CASE(
    "variance_collapse embedding floor waits for consecutive generations and names the margin",
    "[plugins][variance_collapse][embeddings]") {
  // With the charts out of the way: ratio 0.25 at generations 1 and 2 against a floor of 0.5
  // lowered by the noise margin z_0.99 · sqrt(2/(d_eff·255) · 2).
  auto e = engine_with(std::string("{") + quiet_charts + "}");
  feeder f(*e);
  const auto base = gaussian_vectors(256, 16, 2);
  f.send_envelope("r", 0, embedding_batch(base, 0));
  f.send_envelope("r", 1, embedding_batch(scaled(base, 0.5), 1));
  f.send_envelope("r", 2, embedding_batch(scaled(base, 0.5), 2));
  CHECK(f.opened_at("training.collapse", "r") == -1);  // generation 1 crossed once: pending
  f.send_envelope("r", 3, embedding_batch(base, 3));
  REQUIRE(f.opened_at("training.collapse", "r") == 3);
  const auto ev = evidence_of(*e, "training.collapse", "r");
  CHECK(ev.at("generation") == "2");
  CHECK(ev.at("crossed") == "embeddings.dispersion_ratio,embeddings.tail_share");
  CHECK(ev.at("embeddings.dispersion_ratio") == "0.25");
  CHECK(ev.at("embeddings.dispersion_ratio_floor") == "0.5");
  CHECK(ev.at("embeddings.dispersion_ratio_vectors") == "256");
  const double limit = std::stod(ev.at("embeddings.dispersion_ratio_limit"));
  CHECK(limit < 0.5);
  CHECK(limit > 0.4);  // d_eff ≈ 15 and 255 degrees of freedom: a margin of a few percent
  // Half-length vectors sit close to the centroid: hardly any beyond the 95 % distance.
  CHECK(std::stod(ev.at("embeddings.tail_share_p_value")) < 0.01);
  CHECK(ev.at("last_healthy_generation") == "0");
}

TEST_CASE("variance_collapse embedding vendi ratio follows the debiased order-2 score",
          "[plugins][variance_collapse][embeddings]") {
  // Baseline: 128 vectors along the 16 axes of R^16 (8 each, signs and lengths varying);
  // generation 1: 128 vectors along 2 of them (64 each), same signs and lengths. With equal
  // repeats r of k directions the debiased order-2 Vendi score is (n − 1)/(r − 1):
  // 127/7 for the baseline, 127/63 for generation 1, a ratio of 7/63 = 0.1111.
  auto rows = [](int axes) {
    std::vector<std::vector<double>> out;
    for (int i = 0; i < 128; ++i) {
      std::vector<double> v(16, 0.0);
      v[static_cast<std::size_t>(i % axes)] = (i / 16 % 2 == 0 ? 1.0 : -1.0) * (1.0 + i / 128.0);
      out.push_back(v);
    }
    return out;
  };
  auto e = engine_with(std::string("{consecutive: 1, ") + quiet_charts + "}");
  feeder f(*e);
  f.send_envelope("r", 0, embedding_batch(rows(16), 0));
  f.send_envelope("r", 1, embedding_batch(rows(2), 1));
  v1::GenerationSummary g1;
  g1.set_generation(1);
  g1.set_checkpoint_id("c1");
  f.send("r", g1);  // the summary of generation 1 completes its embeddings
  REQUIRE(f.opened_at("training.collapse", "r") == 1);
  const auto ev = evidence_of(*e, "training.collapse", "r");
  CHECK(ev.at("crossed") == "embeddings.vendi_ratio");
  CHECK(std::stod(ev.at("embeddings.vendi_ratio")) == Approx(7.0 / 63.0).epsilon(1e-3));
  CHECK(ev.at("embeddings.vendi_ratio_limit") == "0.4");
  CHECK(ev.at("checkpoint_id") == "c1");
  const auto gauges = gauges_of(*e);
  CHECK(gauges.at("embeddings.vendi2") == Approx(127.0 / 63.0).epsilon(1e-6));
  // d ≤ spectrum_max_dimension: the Shannon Vendi score of 2 equally used axes is 2.
  CHECK(gauges.at("embeddings.vendi") == Approx(2.0).epsilon(1e-9));
}

TEST_CASE("variance_collapse groups embeddings without a generation into windows",
          "[plugins][variance_collapse][embeddings]") {
  // Windows of 64 vectors, sent in batches of 32: window 0 is the baseline, window 1 is at half
  // the length, and completes (and trips) with the batch that fills it.
  auto e = engine_with("{embeddings: {window: 64}}");
  feeder f(*e);
  const auto base = gaussian_vectors(64, 8, 3);
  const std::vector<std::vector<double>> first(base.begin(), base.begin() + 32);
  const std::vector<std::vector<double>> second(base.begin() + 32, base.end());
  f.send_envelope("w", 0, embedding_batch(first, -1));
  f.send_envelope("w", 0, embedding_batch(second, -1));
  f.send_envelope("w", 1, embedding_batch(scaled(first, 0.5), -1));
  CHECK(f.opened_at("training.collapse", "w") == -1);
  f.send_envelope("w", 1, embedding_batch(scaled(second, 0.5), -1));
  CHECK(f.opened_at("training.collapse", "w") == 1);
  CHECK(evidence_of(*e, "training.collapse", "w").at("generation") == "1");
  CHECK(gauges_of(*e).at("embeddings.dispersion_ratio") == Approx(0.25).epsilon(1e-5));
}

TEST_CASE("variance_collapse compares embeddings with a declared reference stream",
          "[plugins][variance_collapse][embeddings]") {
  auto e = engine_with("{embeddings: {reference_stream: human}}");
  feeder f(*e);
  const auto human = gaussian_vectors(200, 8, 4);
  f.send_envelope("r", 0, embedding_batch(human, -1, "human"));
  // Generation 0 of the generated stream is compared too: it is healthy.
  f.send_envelope("r", 0, embedding_batch(gaussian_vectors(200, 8, 5), 0));
  f.send_envelope("r", 1, embedding_batch(gaussian_vectors(200, 8, 6, 0.4), 1));
  CHECK(f.opened_at("training.collapse", "r") == -1);
  CHECK(gauges_of(*e).at("embeddings.dispersion_ratio") == Approx(1.0).margin(0.25));
  f.send_envelope("r", 2, embedding_batch(gaussian_vectors(200, 8, 7), 2));
  CHECK(f.opened_at("training.collapse", "r") == 2);
  const auto ev = evidence_of(*e, "training.collapse", "r");
  CHECK(ev.at("generation") == "1");
  CHECK(ev.at("last_healthy_generation") == "0");
  // Reference vectors after the baseline froze are counted, not used.
  f.send_envelope("r", 3, embedding_batch(human, -1, "human"));
  CHECK(gauges_of(*e).at("embeddings.late_vectors") == 200);
}

TEST_CASE("variance_collapse counts malformed and late embedding batches and ignores them",
          "[plugins][variance_collapse][embeddings]") {
  auto e = engine_with("{embeddings: {max_dimension: 8, max_runs: 1}}");
  feeder f(*e);
  f.send_envelope("r", 0, embedding_batch(gaussian_vectors(50, 4, 8), 0));
  v1::Envelope ragged = embedding_batch(gaussian_vectors(3, 4, 9), 0);
  ragged.mutable_embeddings()->mutable_vectors()->add_values(1.0f);  // 13 values, dim 4
  f.send_envelope("r", 0, ragged);
  v1::Envelope no_dim = embedding_batch(gaussian_vectors(3, 4, 9), 0);
  no_dim.mutable_embeddings()->mutable_vectors()->set_dim(0);
  f.send_envelope("r", 0, no_dim);
  f.send_envelope("r", 0, embedding_batch(gaussian_vectors(3, 9, 9), 0));  // over max_dimension
  f.send_envelope("r", 0, embedding_batch(gaussian_vectors(3, 5, 9), 0));  // another dimension
  auto with_nan = gaussian_vectors(4, 4, 10);
  with_nan[1][2] = std::nan("");
  with_nan[2] = {0.0, 0.0, 0.0, 0.0};  // no direction
  f.send_envelope("r", 0, embedding_batch(with_nan, 0));
  f.send_envelope("r", 1, embedding_batch(gaussian_vectors(50, 4, 11), 1));
  f.send_envelope("r", 0, embedding_batch(gaussian_vectors(5, 4, 12), 0));  // generation 0 is done
  f.send_envelope("other", 0, embedding_batch(gaussian_vectors(5, 4, 12), 0));  // max_runs: 1
  const auto gauges = gauges_of(*e);
  CHECK(gauges.at("embeddings.bad_batches") == 4);
  CHECK(gauges.at("embeddings.ignored_vectors") == 2);
  CHECK(gauges.at("embeddings.late_vectors") == 5);
  CHECK(gauges.at("embeddings.dropped_batches") == 1);
  CHECK_FALSE(e->breakers().any_open());
  CHECK(e->monitors().at(0).errors == 0);
}

// ---------------------------------------------------------------------------------------------
// scalar sample streams

TEST_CASE("variance_collapse watches a configured scalar stream grouped by step",
          "[plugins][variance_collapse][scalar]") {
  // Step 0: 1..200. Steps 1 and 2: the same values pulled towards their mean by 0.3, so the
  // variance ratio is exactly 0.09, below the floor of 0.3 less its margin; the values now sit
  // inside the baseline's 5 % and 95 % order statistics, and in its middle deciles.
  std::vector<double> base;
  for (int i = 1; i <= 200; ++i) base.push_back(i);
  std::vector<double> narrow;
  for (double v : base) narrow.push_back(100.5 + 0.3 * (v - 100.5));
  auto e = engine_with(std::string("{scalar_streams: {names: [loglik]}, ") + quiet_charts + "}");
  feeder f(*e);
  f.send_envelope("s", 0, scalar_batch("loglik", base, 0));
  f.send_envelope("s", 0, scalar_batch("other_metric", base, 0));  // not watched
  f.send_envelope("s", 1, scalar_batch("loglik", narrow, 1));
  f.send_envelope("s", 2, scalar_batch("loglik", narrow, 2));
  CHECK(f.opened_at("training.collapse", "s") == -1);
  f.send("s", gaussian_summary(2, 200, 0.0, 1.0, 0.5));  // its summary completes step 2
  REQUIRE(f.opened_at("training.collapse", "s") == 2);
  const auto ev = evidence_of(*e, "training.collapse", "s");
  CHECK(ev.at("crossed") ==
        "scalar.loglik.variance_ratio,scalar.loglik.tail_share,scalar.loglik.psi");
  CHECK(ev.at("scalar.loglik.variance_ratio") == "0.09");
  CHECK(ev.at("scalar.loglik.variance_ratio_samples") == "200");
  CHECK(ev.at("scalar.loglik.tail_share") == "0");
  CHECK(ev.at("scalar.loglik.tail_share_outside") == "0/200");
  CHECK(ev.at("last_healthy_generation") == "0");
  CHECK(ev.at("checkpoint_id") == "ckpt-2");
}

TEST_CASE("variance_collapse scalar PSI limit is the material floor plus the bootstrap quantile",
          "[plugins][variance_collapse][scalar]") {
  // Groups of 100 fresh N(0, 1) values against a baseline of 1000: no change, so the PSI stays
  // below its limit; the limit is psi_floor (1.0) plus the 99 % bootstrap quantile at n = 100,
  // which for 10 deciles is about (K − 1)(1/n + 1/m) ≈ 0.1 on average and below 0.5.
  std::mt19937_64 rng(13);
  std::normal_distribution<double> normal(0.0, 1.0);
  auto draw = [&](int n, double shift) {
    std::vector<double> v(static_cast<std::size_t>(n));
    for (double& x : v) x = normal(rng) + shift;
    return v;
  };
  auto e = engine_with("{scalar_streams: {names: [x]}}");
  feeder f(*e);
  f.send_envelope("p", 0, scalar_batch("x", draw(1000, 0.0), 0));
  for (int g = 1; g <= 5; ++g) f.send_envelope("p", g, scalar_batch("x", draw(100, 0.0), g));
  auto gauges = gauges_of(*e);
  const double limit = gauges.at("scalar.x.psi_limit");
  CHECK(limit > 1.0);
  CHECK(limit < 1.5);
  CHECK(gauges.at("scalar.x.psi") < limit);
  CHECK_FALSE(e->breakers().any_open());
  // A shift of 1.5 sd in the mean: PSI ≈ 2.3 with deciles, above the limit, twice in a row.
  f.send_envelope("p", 6, scalar_batch("x", draw(100, 1.5), 6));
  f.send_envelope("p", 7, scalar_batch("x", draw(100, 1.5), 7));
  f.send_envelope("p", 8, scalar_batch("x", draw(100, 0.0), 8));
  REQUIRE(f.opened_at("training.collapse", "p") == 8);
  const auto ev = evidence_of(*e, "training.collapse", "p");
  CHECK(ev.at("crossed").find("scalar.x.psi") != std::string::npos);
  CHECK(std::stod(ev.at("scalar.x.psi_limit")) == Approx(limit).epsilon(1e-3));  // cached per size
  CHECK(ev.at("generation") == "7");
  CHECK(ev.at("last_healthy_generation") == "5");
}

TEST_CASE("variance_collapse groups a scalar stream into windows and counts bad samples",
          "[plugins][variance_collapse][scalar]") {
  auto e = engine_with("{scalar_streams: {names: [x], group_by: window, window: 50}}");
  feeder f(*e);
  std::vector<double> base;
  for (int i = 0; i < 50; ++i) base.push_back(std::sin(i * 1.7) * 10.0);
  std::vector<double> flat;
  for (double v : base) flat.push_back(0.05 * v);
  // Steps are ignored with windows; NaN and infinity are counted and skipped.
  f.send_envelope("w", 0, scalar_batch("x", base, 7));
  f.send_envelope("w", 0, scalar_batch("x", {std::nan(""), INFINITY}, 7));
  f.send_envelope("w", 1, scalar_batch("x", flat, 3));
  f.send_envelope("w", 2, scalar_batch("x", flat, 3));
  CHECK(f.opened_at("training.collapse", "w") >= 1);
  CHECK(gauges_of(*e).at("scalar.ignored_samples") == 2);
  CHECK(gauges_of(*e).at("scalar.x.variance_ratio") == Approx(0.0025).epsilon(1e-9));
}

TEST_CASE("variance_collapse counts scalar samples of a finished step as late",
          "[plugins][variance_collapse][scalar]") {
  auto e = engine_with("{scalar_streams: {names: [x]}}");
  feeder f(*e);
  std::vector<double> v;
  for (int i = 0; i < 30; ++i) v.push_back(i);
  f.send_envelope("l", 0, scalar_batch("x", v, 0));
  f.send_envelope("l", 1, scalar_batch("x", v, 1));
  f.send_envelope("l", 0, scalar_batch("x", {1.0, 2.0}, 0));  // step 0 was complete
  f.send_envelope("l", 2, scalar_batch("x", {1.0, 2.0}, 2));  // completes step 1
  f.send_envelope("l", 3, scalar_batch("x", {1.0}, 3));       // step 2: 2 values, too few
  const auto gauges = gauges_of(*e);
  CHECK(gauges.at("scalar.late_samples") == 2);
  CHECK(gauges.at("scalar.unused_samples") == 2);
  CHECK(gauges.at("scalar.x.variance_ratio") == Approx(1.0));
}

// ---------------------------------------------------------------------------------------------
// one decision across inputs

TEST_CASE("variance_collapse rolls back to a generation no input called unhealthy",
          "[plugins][variance_collapse]") {
  // Summaries say every generation is fine; the embeddings of generation 3 and 4 have lost three
  // quarters of their spread. The trip comes with generation 4's summary, and the generation to
  // roll back to is 2: generation 3 was healthy for the summaries, not for the embeddings.
  auto e = engine_with(std::string("{statistic: x, ") + quiet_charts + "}");
  feeder f(*e);
  const auto base = gaussian_vectors(256, 16, 20);
  for (int g = 0; g <= 4; ++g) {
    f.send_envelope("m", g, embedding_batch(g >= 3 ? scaled(base, 0.5) : base, g));
    f.send("m", gaussian_summary(g, 1000, 0.0, 1.0, g == 0 ? 1.0 : 0.5));
  }
  REQUIRE(f.opened_at("training.collapse", "m") == 4);
  const auto ev = evidence_of(*e, "training.collapse", "m");
  CHECK(ev.at("generation") == "4");
  CHECK(ev.at("checkpoint_id") == "ckpt-4");
  CHECK(ev.at("crossed") == "embeddings.dispersion_ratio,embeddings.tail_share");
  CHECK(ev.at("last_healthy_generation") == "2");
  CHECK(ev.at("last_healthy_checkpoint") == "ckpt-2");
  CHECK(gauges_of(*e).at("last_healthy_generation") == 2);
}

TEST_CASE("variance_collapse remembers a bounded number of generations per run",
          "[plugins][variance_collapse]") {
  // Summaries run 300 generations ahead of the embeddings; the embeddings of generation 1 then
  // complete, older than every generation the decision still keeps. They are evaluated, not
  // remembered, and nothing breaks.
  auto e = engine_with("{statistic: x}");
  feeder f(*e);
  f.send_envelope("b", 0, embedding_batch(gaussian_vectors(64, 4, 30), 0));
  for (int g = 0; g <= 300; ++g) f.send("b", gaussian_summary(g, 1000, 0.0, 1.0, 0.5));
  f.send_envelope("b", 1, embedding_batch(gaussian_vectors(64, 4, 31), 1));
  f.send_envelope("b", 2, embedding_batch(gaussian_vectors(64, 4, 32), 2));
  CHECK(gauges_of(*e).count("embeddings.dispersion_ratio") == 1);
  CHECK(gauges_of(*e).at("last_healthy_generation") == 300);
  CHECK(e->monitors().at(0).errors == 0);
  CHECK_FALSE(e->breakers().any_open());
}

// ---------------------------------------------------------------------------------------------
// detection rates with every input present

TEST_CASE(
    "variance_collapse trips synthetic-only recursions fed through every input by one generation "
    "past the closed-form crossing",
    "[plugins][variance_collapse][detection]") {
  // The issue's recursion (N = 60; 8 coordinates, each its own copy of the scalar recursion),
  // published as summaries, embedding batches and a scalar stream at default settings. The
  // expected-ratio model trips at generation 22 (((59/60)^g < 0.7); the observed inputs may trip
  // a run earlier, when its own spread or diversity has already collapsed past their calibrated
  // limits (a random walk: by generation 15 a fifth of the runs have lost half their spread).
  constexpr int runs = 200;
  std::mt19937_64 rng(20261124);
  int within = 0;
  int early = 0;
  int late = 0;
  std::map<std::string, int> early_by;
  for (int r = 0; r < runs; ++r) {
    const trip t = run_inputs("{statistic: x, scalar_streams: {names: [sample/x]}}", rng, 8, 0.0,
                              30, recursion_inputs{});
    if (t.at >= 21 && t.at <= 23) {
      ++within;
    } else if (t.at >= 0 && t.at < 21) {
      ++early;
      ++early_by[t.crossed.substr(0, t.crossed.find(','))];
    } else {
      ++late;
    }
  }
  std::string why;
  for (const auto& [name, count] : early_by) why += name + ":" + std::to_string(count) + " ";
  CAPTURE(within, early, late, why);
  CHECK(within + early >= runs * 95 / 100);  // by generation 23
  CHECK(late == 0);
  CHECK(within > early);
}

TEST_CASE(
    "variance_collapse does not trip recursions with 10 or 30 percent real data fed through every "
    "input",
    "[plugins][variance_collapse][detection]") {
  constexpr int runs = 200;
  for (const double real : {0.1, 0.3}) {
    std::mt19937_64 rng(70 + static_cast<std::uint64_t>(real * 100));
    int tripped = 0;
    std::string why;
    for (int r = 0; r < runs; ++r) {
      const trip t = run_inputs("{statistic: x, scalar_streams: {names: [sample/x]}}", rng, 8, real,
                                40, recursion_inputs{});
      if (t.at >= 0) {
        ++tripped;
        why += t.crossed + "@" + std::to_string(t.at) + " ";
      }
    }
    const double no_trip_rate = 1.0 - static_cast<double>(tripped) / runs;
    CAPTURE(real, tripped, no_trip_rate, why);
    CHECK(no_trip_rate >= 0.99);
  }
}

TEST_CASE(
    "variance_collapse trips synthetic-only recursions seen only through embeddings or a scalar "
    "stream, not mixed ones",
    "[plugins][variance_collapse][detection]") {
  // No summaries: no provenance, no expected-ratio model. Only the observed statistics speak, so
  // collapse is caught when it is visible in the samples: embeddings (d = 16) within 100
  // generations, a single scalar coordinate (whose variance is a random walk with a drift of
  // only −1/60 a generation) within 150. Mixed runs stay quiet for 40 generations.
  struct row {
    std::string name;
    recursion_inputs inputs;
    int synthetic_horizon;
  };
  const std::vector<row> rows = {
      {"embeddings", {false, true, false}, 100},
      {"scalar stream", {false, false, true}, 150},
  };
  constexpr int runs = 200;
  for (const auto& r : rows) {
    INFO(r.name);
    std::mt19937_64 rng(31);
    int tripped = 0;
    std::vector<std::int64_t> at;
    for (int i = 0; i < runs; ++i) {
      const trip t = run_inputs("{scalar_streams: {names: [sample/x]}}", rng, 16, 0.0,
                                r.synthetic_horizon, r.inputs);
      if (t.at >= 0) {
        ++tripped;
        at.push_back(t.at);
      }
    }
    std::sort(at.begin(), at.end());
    const auto median = at.empty() ? -1 : at[at.size() / 2];
    CAPTURE(tripped, median);
    CHECK(tripped >= runs * 95 / 100);
    for (const double real : {0.1, 0.3}) {
      int false_trips = 0;
      for (int i = 0; i < runs; ++i) {
        if (run_inputs("{scalar_streams: {names: [sample/x]}}", rng, 16, real, 40, r.inputs).at >=
            0) {
          ++false_trips;
        }
      }
      CAPTURE(real, false_trips);
      CHECK(false_trips <= runs / 100);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// snapshot and restore

TEST_CASE("variance_collapse restored from a snapshot trips like one uninterrupted engine",
          "[plugins][variance_collapse][snapshot]") {
  const std::string config = "{statistic: x, scalar_streams: {names: [sample/x]}}";
  for (unsigned seed : {1u, 2u, 3u, 4u}) {
    std::mt19937_64 rng(seed);
    // Two runs interleaved generation by generation: one synthetic (trips), one mixed.
    auto synthetic = gaussian_recursion(rng, 60, 8, 0.0, 30, {});
    auto mixed = gaussian_recursion(rng, 60, 8, 0.3, 30, {});
    std::vector<std::tuple<std::string, std::int64_t, v1::Envelope>> events;
    for (std::size_t i = 0; i < std::max(synthetic.size(), mixed.size()); ++i) {
      if (i < synthetic.size()) events.emplace_back("syn", synthetic[i].first, synthetic[i].second);
      if (i < mixed.size()) events.emplace_back("mix", mixed[i].first, mixed[i].second);
    }
    // The uninterrupted engine.
    auto whole = engine_with(config);
    feeder fw(*whole);
    for (const auto& [run, g, env] : events) fw.send_envelope(run, g, env);
    const auto trip_at = fw.opened_at("training.collapse", "syn");
    REQUIRE(trip_at > 5);
    // Split part-way through a generation (after its embeddings, before its summary).
    const std::size_t split = seed * 7 + 1 + events.size() / 8;
    INFO("seed " << seed << ", split at event " << split << " of " << events.size());
    auto a = engine_with(config);
    feeder fa(*a);
    for (std::size_t i = 0; i < split; ++i) {
      const auto& [run, g, env] = events[i];
      fa.send_envelope(run, g, env);
    }
    const auto saved = a->snapshot_monitors();
    REQUIRE(saved.size() == 1);
    CHECK(saved[0].plugin == "variance_collapse");
    auto b = engine_with(config);
    REQUIRE(b->restore_monitor(saved[0]).ok());
    feeder fb(*b, fa.seq());
    for (std::size_t i = split; i < events.size(); ++i) {
      const auto& [run, g, env] = events[i];
      fb.send_envelope(run, g, env);
    }
    CHECK(fb.opened_at("training.collapse", "syn") == trip_at);
    CHECK(fb.opened_at("training.collapse", "mix") == fw.opened_at("training.collapse", "mix"));
    CHECK(evidence_of(*b, "training.collapse", "syn") ==
          evidence_of(*whole, "training.collapse", "syn"));
    CHECK(same_gauges(gauges_of(*b), gauges_of(*whole)));
  }
}

TEST_CASE("variance_collapse refuses a corrupt or oversized snapshot and keeps its state",
          "[plugins][variance_collapse][snapshot]") {
  const std::string config =
      "{statistic: x, scalar_streams: {names: [sample/x]}, embeddings: {max_dimension: 16}}";
  std::mt19937_64 rng(9);
  auto a = engine_with(config);
  feeder fa(*a);
  for (auto& [g, env] : gaussian_recursion(rng, 60, 8, 0.0, 6, {})) fa.send_envelope("r", g, env);
  const auto saved = a->snapshot_monitors();
  REQUIRE(saved.size() == 1);
  const std::string good = saved[0].state;

  auto b = engine_with(config);
  auto attempt = [&](std::string state) {
    core::monitor_state s = saved[0];
    s.state = std::move(state);
    return b->restore_monitor(s);
  };
  // Truncated anywhere: always refused, never a crash.
  for (std::size_t cut : {std::size_t{0}, std::size_t{5}, std::size_t{30}, good.size() / 3,
                          good.size() / 2, good.size() - 1}) {
    INFO("cut at " << cut);
    CHECK_FALSE(attempt(good.substr(0, cut)).ok());
  }
  CHECK_FALSE(attempt(good + "x").ok());  // trailing bytes
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  CHECK_FALSE(attempt(bad_magic).ok());
  // Another plugin's snapshot.
  sdk::state_writer other("goal_drift", 1);
  other.write_u64(0);
  CHECK_FALSE(attempt(other.finish()).ok());
  // A newer format.
  sdk::state_writer newer("variance_collapse", 2);
  CHECK_FALSE(attempt(newer.finish()).ok());
  // More runs than this configuration tracks.
  auto small = engine_with(
      "{statistic: x, max_runs: 1, scalar_streams: {names: [sample/x]}, embeddings: "
      "{max_dimension: 16}}");
  std::mt19937_64 rng2(10);
  auto two = engine_with(config);
  feeder ft(*two);
  for (auto& [g, env] : gaussian_recursion(rng2, 60, 4, 0.0, 2, {})) {
    ft.send_envelope("one", g, env);
    ft.send_envelope("two", g, env);
  }
  const auto two_runs = two->snapshot_monitors();
  REQUIRE(two_runs.size() == 1);
  const auto refused = small->restore_monitor(two_runs[0]);
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.message(), Catch::Contains("above its limit"));
  // Embeddings wider than this configuration's max_dimension.
  auto narrow = engine_with(
      "{statistic: x, scalar_streams: {names: [sample/x]}, embeddings: {max_dimension: 4}}");
  CHECK_FALSE(narrow->restore_monitor(saved[0]).ok());
  // After all that, b still works from scratch and the good snapshot still restores.
  CHECK(attempt(good).ok());
  CHECK(b->snapshot_monitors().at(0).state == good);
}

// ---------------------------------------------------------------------------------------------
// configuration

TEST_CASE("variance_collapse refuses bad embeddings and scalar_streams config naming the field",
          "[plugins][variance_collapse]") {
  struct row {
    std::string config;
    std::string error;
  };
  const std::vector<row> rows = {
      {"{embeddings: [a]}", "monitors[0].config.embeddings: expected a map, got a sequence"},
      {"{embeddings: {windw: 3}}",
       "monitors[0].config.embeddings.windw: unknown key (allowed: streams, reference_stream, "
       "window, max_dimension, baseline_reservoir, max_runs, dispersion_floor, tail_quantile, "
       "vendi_floor, spectrum_max_dimension)"},
      {"{embeddings: {window: 1}}",
       "monitors[0].config.embeddings.window: expected an integer in [2, 16777216], got \"1\""},
      {"{embeddings: {max_dimension: 0}}",
       "monitors[0].config.embeddings.max_dimension: expected an integer in [1, 8192], got \"0\""},
      {"{embeddings: {vendi_floor: 1}}",
       "monitors[0].config.embeddings.vendi_floor: expected a number in (0, 1), got \"1\""},
      {"{embeddings: {streams: [a, b], reference_stream: b}}",
       "monitors[0].config.embeddings.reference_stream: is also listed in streams"},
      {"{scalar_streams: {group_by: epoch}}",
       "monitors[0].config.scalar_streams.group_by: expected step or window, got \"epoch\""},
      {"{scalar_streams: {bins: 1}}",
       "monitors[0].config.scalar_streams.bins: expected an integer in [2, 1000], got \"1\""},
      {"{scalar_streams: {low_quantile: 0.6, high_quantile: 0.4}}",
       "monitors[0].config.scalar_streams.high_quantile: must be above low_quantile (0.6)"},
      {"{scalar_streams: {psi_floor: -1}}",
       "monitors[0].config.scalar_streams.psi_floor: expected a number >= 0, got \"-1\""},
      {"{ewma: {lambda: 0}}",
       "monitors[0].config.ewma.lambda: expected a number in (0, 1], got \"0\""},
      {"{alpha: 0.5x}", "monitors[0].config.alpha: expected a number, got \"0.5x\""},
  };
  for (const auto& r : rows) {
    INFO(r.config);
    auto cfg = core::parse_config(yaml_for(r.config), "vc.yaml");
    REQUIRE(cfg.ok());
    core::engine_options opts;
    opts.search_bundled_plugins = false;
    auto e = core::engine::create(*cfg, opts);
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().message() == "monitor 'vc': " + r.error + " (vc.yaml:6)");
  }
}
