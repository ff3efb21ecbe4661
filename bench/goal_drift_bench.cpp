// goal_drift cost per cycle report: the engine with the goal_drift monitor processing cycle
// reports whose drift arrives precomputed (four numbers) or as raw material the monitor measures
// itself (64×256 candidate and reference embeddings, 4096 candidate and reference tokens, token
// histograms), against the floor of parsing the same envelopes. Prints figures; asserts nothing.
//
//   build/ci/bench/goal_drift_bench [reports]
//
// The machine is shared: compare the rows of one run rather than absolute times across runs.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>

using namespace loopwarden;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr int runs = 256;     // distinct runs, so per-run state lookups are part of the cost
constexpr int cycles = 8;     // the default cap: every report is a normal cycle
constexpr int rows = 64;      // embeddings per side
constexpr int dim = 256;      // embedding dimension
constexpr int tokens = 4096;  // tokens per side
constexpr int vocab = 2000;   // token ids drawn from [0, vocab)

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

// Pre-serialised envelopes, one per (run, cycle), as they would arrive on a socket.
std::vector<std::string> make_wire(bool raw, std::mt19937_64& rng) {
  std::normal_distribution<double> noise(0.0, 0.03);
  std::normal_distribution<float> embedding(0.0F, 1.0F);
  std::uniform_int_distribution<std::uint64_t> token(0, vocab - 1);
  // The reference is the same for every report; the candidate's material is fresh per report
  // for the first runs and then reused (building it dominates the set-up otherwise).
  v1::DriftMaterial reference;
  reference.mutable_reference_embeddings()->set_dim(dim);
  for (int i = 0; i < rows * dim; ++i)
    reference.mutable_reference_embeddings()->add_values(embedding(rng));
  std::vector<double> counts(vocab, 0.0);
  for (int i = 0; i < tokens; ++i) {
    const std::uint64_t t = token(rng);
    reference.add_reference_tokens(t);
    counts[t] += 1.0;
  }
  for (int k = 0; k < vocab; ++k) {
    if (counts[static_cast<std::size_t>(k)] == 0.0) continue;
    reference.mutable_reference_histogram()->add_keys(static_cast<std::uint64_t>(k));
    reference.mutable_reference_histogram()->add_counts(counts[static_cast<std::size_t>(k)]);
  }
  std::vector<v1::DriftMaterial> candidates(16);
  for (auto& m : candidates) {
    m = reference;
    m.mutable_candidate_embeddings()->set_dim(dim);
    for (int i = 0; i < rows * dim; ++i)
      m.mutable_candidate_embeddings()->add_values(embedding(rng));
    std::vector<double> c(vocab, 0.0);
    for (int i = 0; i < tokens; ++i) {
      const std::uint64_t t = token(rng);
      m.add_candidate_tokens(t);
      c[t] += 1.0;
    }
    for (int k = 0; k < vocab; ++k) {
      if (c[static_cast<std::size_t>(k)] == 0.0) continue;
      m.mutable_candidate_histogram()->add_keys(static_cast<std::uint64_t>(k));
      m.mutable_candidate_histogram()->add_counts(c[static_cast<std::size_t>(k)]);
    }
  }
  std::vector<std::string> wire;
  std::uint64_t seq = 0;
  for (int cycle = 1; cycle <= cycles; ++cycle) {
    for (int run = 0; run < runs; ++run) {
      v1::Envelope e;
      e.set_source("improver/" + std::to_string(run));
      e.set_run_id("run-" + std::to_string(run));
      e.set_seq(++seq);
      e.set_time_unix_nano(1'700'000'000'000'000'000 + static_cast<std::int64_t>(seq) * 1000);
      v1::CycleReport* r = e.mutable_cycle_report();
      r->set_cycle(static_cast<std::uint64_t>(cycle));
      r->set_candidate_id("c" + std::to_string(cycle));
      r->set_parent_id("c" + std::to_string(cycle - 1));
      auto* m = r->add_capability_metrics();
      m->set_name("pass_rate");
      m->set_value(0.5 + 0.01 * cycle);
      auto* a = r->add_alignment_metrics();
      a->set_name("truthfulness");
      a->set_value(0.9);
      auto* c = r->add_constraints();
      c->set_name("sandbox");
      c->set_passed(true);
      c->set_critical(true);
      if (raw) {
        *r->mutable_material() = candidates[static_cast<std::size_t>(seq % candidates.size())];
      } else {
        r->mutable_drift()->set_semantic(0.3 + noise(rng));
        r->mutable_drift()->set_lexical(0.3 + noise(rng));
        r->mutable_drift()->set_structural(0.3 + noise(rng));
        r->mutable_drift()->set_distributional(0.3 + noise(rng));
      }
      wire.push_back(e.SerializeAsString());
    }
  }
  return wire;
}

// Parses every envelope, then parses and processes every envelope with a fresh engine; returns
// {parse seconds, parse + process seconds}.
std::pair<double, double> measure(const std::vector<std::string>& wire, const std::string& config,
                                  long reports) {
  const std::string yaml = "version: 1\nplugin_paths: [\"" + std::string(LOOPWARDEN_BINARY_DIR) +
                           "/lib/loopwarden/plugins\"]\nmonitors:\n"
                           "  - {name: gd, plugin: goal_drift, config: " +
                           config + "}\n";
  auto cfg = core::parse_config(yaml, "bench.yaml");
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", cfg.error().message().c_str());
    std::exit(2);
  }
  v1::Envelope env;
  auto start = clock_type::now();
  for (long i = 0; i < reports; ++i)
    env.ParseFromString(wire[static_cast<std::size_t>(i) % wire.size()]);
  const double parse_s = seconds_since(start);

  double total_s = 0.0;
  long done = 0;
  while (done < reports) {
    // A fresh engine per pass over the stream, so cycles move forward in every run.
    auto engine = core::engine::create(*cfg);
    if (!engine.ok()) {
      std::fprintf(stderr, "%s\n", engine.error().message().c_str());
      std::exit(2);
    }
    start = clock_type::now();
    for (std::size_t i = 0; i < wire.size() && done < reports; ++i, ++done) {
      env.ParseFromString(wire[i]);
      (*engine)->process(env);
    }
    total_s += seconds_since(start);
  }
  return {parse_s, total_s};
}

}  // namespace

int main(int argc, char** argv) {
  const long reports = argc > 1 ? std::atol(argv[1]) : 20'000;
  std::mt19937_64 rng(2026);
  const std::vector<std::string> precomputed = make_wire(false, rng);
  const std::vector<std::string> raw = make_wire(true, rng);

  std::printf("goal_drift: %ld cycle reports over %d runs of %d cycles\n", reports, runs, cycles);
  std::printf(
      "raw material per report: %dx%d float embeddings and %d tokens per side, "
      "token histograms over %d ids (%zu bytes on the wire)\n",
      rows, dim, tokens, vocab, raw.front().size());
  std::printf("%-44s %12s %12s %12s\n", "case", "parse us", "total us", "monitor us");
  struct row {
    const char* name;
    const std::vector<std::string>* wire;
    std::string config;
    long reports;
  };
  const std::vector<row> table = {
      {"precomputed components", &precomputed, "{}", reports},
      {"raw material, semantic mean", &raw, "{}", reports / 10},
      {"raw material, semantic pairwise", &raw, "{semantic_method: pairwise}", reports / 10},
      {"raw material, bigram multiset lexical", &raw, "{ngram: 2, lexical_method: multiset}",
       reports / 10},
  };
  for (const auto& r : table) {
    const auto [parse_s, total_s] = measure(*r.wire, r.config, r.reports);
    const double n = static_cast<double>(r.reports);
    std::printf("%-44s %12.2f %12.2f %12.2f\n", r.name, 1e6 * parse_s / n, 1e6 * total_s / n,
                1e6 * (total_s - parse_s) / n);
  }
  std::printf(
      "(per report: parse = protobuf parse alone; total = parse + engine.process with the "
      "monitor; monitor = the difference)\n");
  return 0;
}
