#pragma once
// Shared by the variance_collapse tests: an engine running the real plugin with a YAML config,
// a feeder that sends envelopes of any body and records which generation opened each breaker,
// and a seeded Gaussian recursion that can publish itself through every input of the monitor.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>

namespace vc_test {

using namespace loopwarden;

inline std::string yaml_for(const std::string& monitor_config) {
  return "version: 1\nplugin_paths: [\"" + std::string(LOOPWARDEN_BINARY_DIR) +
         "/lib/loopwarden/plugins\"]\nmonitors:\n  - name: vc\n    plugin: "
         "variance_collapse\n    config: " +
         monitor_config + "\n";
}

inline std::unique_ptr<core::engine> engine_with(const std::string& monitor_config) {
  const std::string yaml = yaml_for(monitor_config);
  auto cfg = core::parse_config(yaml, "vc.yaml");
  INFO(yaml);
  REQUIRE(cfg.ok());
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  auto e = core::engine::create(*cfg, opts);
  INFO((e.ok() ? std::string() : e.error().message()));
  REQUIRE(e.ok());
  return std::move(*e);
}

// Sends envelopes to one engine (one source, a strictly increasing seq) and records, per breaker
// and run, the generation the caller said was being sent when the breaker first opened.
class feeder {
 public:
  explicit feeder(core::engine& e, std::uint64_t first_seq = 0) : engine_(e), seq_(first_seq) {
    e.breakers().add_listener([this](const v1::BreakerTransition& t) {
      if (t.breaker().state() != v1::BREAKER_STATE_OPEN) return;
      auto& first = opened_[t.breaker().name()];
      if (first.count(t.breaker().run_id()) == 0) first[t.breaker().run_id()] = generation_;
    });
  }

  // Sends `e` as it is, apart from source, run, seq and time; `generation` labels it for opened_at.
  void send_envelope(const std::string& run, std::int64_t generation, v1::Envelope e) {
    generation_ = generation;
    e.set_source("trainer/rank0");
    e.set_run_id(run);
    e.set_seq(++seq_);
    e.set_time_unix_nano(static_cast<std::int64_t>(seq_) * 1'000'000);
    engine_.process(e);
  }

  void send(const std::string& run, v1::GenerationSummary summary) {
    const std::int64_t g = summary.generation();
    v1::Envelope e;
    *e.mutable_generation() = std::move(summary);
    send_envelope(run, g, std::move(e));
  }

  // The generation whose event opened `breaker` for `run`, or -1.
  std::int64_t opened_at(const std::string& breaker, const std::string& run) const {
    auto b = opened_.find(breaker);
    if (b == opened_.end()) return -1;
    auto r = b->second.find(run);
    return r == b->second.end() ? -1 : r->second;
  }

  std::uint64_t seq() const { return seq_; }

 private:
  core::engine& engine_;
  std::uint64_t seq_ = 0;
  std::int64_t generation_ = -1;
  std::map<std::string, std::map<std::string, std::int64_t>> opened_;
};

inline std::map<std::string, std::string> evidence_of(core::engine& e, const std::string& breaker,
                                                      const std::string& run) {
  std::map<std::string, std::string> out;
  auto b = e.breakers().find({breaker, run});
  if (!b) return out;
  for (const auto& kv : b->evidence()) out[kv.key()] = kv.value();
  return out;
}

inline std::map<std::string, double> gauges_of(core::engine& e) {
  std::map<std::string, double> out;
  const auto monitors = e.monitors();  // held: the gauges belong to this copy
  for (const auto& [name, value] : monitors.at(0).gauges) out[name] = value;
  return out;
}

inline v1::GenerationSummary gaussian_summary(std::int64_t generation, std::uint64_t n, double mean,
                                              double variance, double real_share) {
  v1::GenerationSummary g;
  g.set_generation(generation);
  g.set_sample_count(n);
  g.set_checkpoint_id("ckpt-" + std::to_string(generation));
  auto* s = g.add_statistics();
  s->set_name("x");
  s->set_count(n);
  s->set_mean(mean);
  s->set_variance(variance);
  s->set_ddof(0);
  g.set_real_share(real_share);
  g.set_synthetic_share(1.0 - real_share);
  return g;
}

// An embedding batch of `rows` (each of equal length) for `generation` (< 0: none, windowed).
inline v1::Envelope embedding_batch(const std::vector<std::vector<double>>& rows,
                                    std::int64_t generation,
                                    const std::string& stream = "generated") {
  v1::Envelope e;
  auto* b = e.mutable_embeddings();
  b->set_stream(stream);
  if (generation >= 0) b->set_generation(generation);
  b->mutable_vectors()->set_dim(rows.empty() ? 0 : static_cast<std::uint32_t>(rows[0].size()));
  for (const auto& row : rows) {
    for (double v : row) b->mutable_vectors()->add_values(static_cast<float>(v));
  }
  return e;
}

// A metrics batch of `values` of metric `name`, all with step `step`.
inline v1::Envelope scalar_batch(const std::string& name, const std::vector<double>& values,
                                 std::int64_t step) {
  v1::Envelope e;
  for (double v : values) {
    auto* s = e.mutable_metrics()->add_samples();
    s->set_name(name);
    s->set_value(v);
    s->set_step(step);
  }
  return e;
}

// Which inputs a recursion publishes itself through.
struct recursion_inputs {
  bool summaries = true;
  bool embeddings = true;
  bool scalars = true;
};

// A d-dimensional Gaussian recursion: model 0 is N(0, I); model g produces N samples (published
// as generation g: an embedding batch of the vectors, the first coordinates as metric
// "sample/x" with step g, then a summary of model g's first coordinate with its real share);
// model g + 1 is the per-coordinate mean and ddof-0 variance fitted to round(real_share·N) fresh
// N(0, I) vectors and the first N − that many of model g's samples. Every coordinate follows the
// scalar recursion of the oracle: E[σ²_g] = ((N − 1)/N)^g with no real data.
// Returns the envelopes of generations 0..generations, each labelled with its generation.
inline std::vector<std::pair<std::int64_t, v1::Envelope>> gaussian_recursion(
    std::mt19937_64& rng, int n, int dim, double real_share, int generations,
    const recursion_inputs& inputs) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> mu(static_cast<std::size_t>(dim), 0.0);
  std::vector<double> var(static_cast<std::size_t>(dim), 1.0);
  const int real = static_cast<int>(std::lround(real_share * n));
  std::vector<std::pair<std::int64_t, v1::Envelope>> out;
  for (int g = 0; g <= generations; ++g) {
    std::vector<std::vector<double>> x(static_cast<std::size_t>(n),
                                       std::vector<double>(static_cast<std::size_t>(dim)));
    for (auto& row : x) {
      for (std::size_t j = 0; j < row.size(); ++j) row[j] = mu[j] + std::sqrt(var[j]) * normal(rng);
    }
    if (inputs.embeddings) out.emplace_back(g, embedding_batch(x, g));
    if (inputs.scalars) {
      std::vector<double> first;
      for (const auto& row : x) first.push_back(row[0]);
      out.emplace_back(g, scalar_batch("sample/x", first, g));
    }
    if (inputs.summaries) {
      v1::Envelope e;
      *e.mutable_generation() = gaussian_summary(g, static_cast<std::uint64_t>(n), mu[0], var[0],
                                                 g == 0 ? 1.0 : static_cast<double>(real) / n);
      out.emplace_back(g, std::move(e));
    }
    std::vector<std::vector<double>> corpus;
    for (int i = 0; i < real; ++i) {
      std::vector<double> r(static_cast<std::size_t>(dim));
      for (double& v : r) v = normal(rng);
      corpus.push_back(std::move(r));
    }
    for (int i = 0; i < n - real; ++i) corpus.push_back(x[static_cast<std::size_t>(i)]);
    for (std::size_t j = 0; j < mu.size(); ++j) {
      double m = 0.0;
      for (const auto& r : corpus) m += r[j];
      m /= n;
      double v = 0.0;
      for (const auto& r : corpus) v += (r[j] - m) * (r[j] - m);
      mu[j] = m;
      var[j] = v / n;
    }
  }
  return out;
}

}  // namespace vc_test
