#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>

using namespace loopwarden;

namespace {

std::unique_ptr<core::engine> engine_with(const std::string& threshold_config) {
  const std::string yaml = "version: 1\nplugin_paths: [\"" + std::string(LOOPWARDEN_BINARY_DIR) +
                           "/lib/loopwarden/plugins\"]\nmonitors:\n  - name: t\n    plugin: "
                           "threshold\n    config: " +
                           threshold_config + "\n";
  auto cfg = core::parse_config(yaml, "threshold.yaml");
  INFO(yaml);
  REQUIRE(cfg.ok());
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  auto e = core::engine::create(*cfg, opts);
  INFO((e.ok() ? std::string() : e.error().message()));
  REQUIRE(e.ok());
  return std::move(*e);
}

v1::Envelope sample(std::uint64_t seq, const std::string& name, double value,
                    const std::string& source = "trainer/rank0", const std::string& run = "r") {
  v1::Envelope e;
  e.set_source(source);
  e.set_run_id(run);
  e.set_seq(seq);
  e.set_time_unix_nano(static_cast<std::int64_t>(seq) * 1000);
  auto* s = e.mutable_metrics()->add_samples();
  s->set_name(name);
  s->set_value(value);
  s->set_step(static_cast<std::int64_t>(seq));
  return e;
}

// Feeds `values` of "loss" one per event; returns the 0-based index of the event that opened the
// breaker, or -1.
int first_trip(core::engine& e, const std::vector<double>& values) {
  int opened_at = -1;
  int index = 0;
  e.breakers().add_listener([&](const v1::BreakerTransition& t) {
    if (opened_at < 0 && t.breaker().state() == v1::BREAKER_STATE_OPEN) opened_at = index;
  });
  for (double v : values) {
    e.process(sample(static_cast<std::uint64_t>(index + 1), "loss", v));
    ++index;
  }
  return opened_at;
}

constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();
constexpr double infinity = std::numeric_limits<double>::infinity();

}  // namespace

TEST_CASE("threshold trips at the Nth consecutive crossing and not before",
          "[plugins][threshold]") {
  struct row {
    std::string config;
    std::vector<double> values;
    int expected;  // event index of the trip, -1 for none
  };
  const std::vector<row> rows = {
      {"{metric: loss, above: 3}", {1, 2, 3, 3.5}, 3},
      {"{metric: loss, above: 3}", {1, 2, 3, 2.9}, -1},  // 3 is not above 3
      {"{metric: loss, above: 3, consecutive: 3}", {4, 4, 1, 4, 4, 4}, 5},
      {"{metric: loss, above: 3, consecutive: 3}", {4, 4, 1, 4, 4, 1}, -1},
      {"{metric: loss, below: 0.1, consecutive: 2}", {1, 0.05, 0.5, 0.05, 0.01}, 4},
      {"{metric: loss, above: 5, below: 1, consecutive: 2}", {6, 0.5, 3}, 1},  // either side
      {"{metric: loss, non_finite: true}", {1, 2, infinity}, 2},
      {"{metric: loss, non_finite: true}", {1, 2, not_a_number}, 2},
      {"{metric: loss, non_finite: true}", {1, 1e300, -1e300}, -1},
      // A NaN is neither above nor below: without non_finite it breaks the run.
      {"{metric: loss, above: 3, consecutive: 2}", {4, not_a_number, 4, 1}, -1},
      {"{metric: loss, above: 3, non_finite: true, consecutive: 2}", {4, not_a_number}, 1},
      {"{metric: \"lo*\", above: 3}", {1, 10}, 1},
      {"{metric: \"*acc\", above: 3}", {1, 10}, -1},  // pattern does not match "loss"
  };
  for (const auto& r : rows) {
    INFO(r.config);
    auto e = engine_with(r.config);
    CHECK(first_trip(*e, r.values) == r.expected);
  }
}

TEST_CASE("threshold counts streams per source and run, not across them", "[plugins][threshold]") {
  auto e = engine_with("{metric: loss, above: 3, consecutive: 2}");
  // Two ranks alternate; each crosses only once in a row, so nothing trips...
  e->process(sample(1, "loss", 4, "rank0"));
  e->process(sample(1, "loss", 4, "rank1"));
  e->process(sample(2, "loss", 1, "rank0"));
  e->process(sample(2, "loss", 1, "rank1"));
  CHECK_FALSE(e->breakers().any_open());
  // ... and another run's crossing does not add to this run's.
  e->process(sample(3, "loss", 4, "rank0", "r"));
  e->process(sample(1, "loss", 4, "rank0", "other"));
  CHECK_FALSE(e->breakers().any_open());
  e->process(sample(4, "loss", 4, "rank0", "r"));
  auto b = e->breakers().find({"metric.threshold", "r"});
  REQUIRE(b);
  CHECK(b->state() == v1::BREAKER_STATE_OPEN);
  CHECK(b->reason() == "loss > 3 for 2 consecutive samples (last 4)");
  CHECK_FALSE(e->breakers().find({"metric.threshold", "other"}));
}

TEST_CASE("threshold puts what it saw in the evidence and uses its configured breaker",
          "[plugins][threshold]") {
  auto e = engine_with(
      "{metric: loss, above: 3, consecutive: 2, breaker: training.diverged, action: rollback, "
      "severity: warning, scope: global}");
  e->process(sample(7, "loss", 3.5));
  e->process(sample(8, "loss", 4.25));
  auto b = e->breakers().find({"training.diverged", ""});
  REQUIRE(b);
  CHECK(b->action() == v1::BREAKER_ACTION_ROLLBACK);
  CHECK(b->severity() == v1::SEVERITY_WARNING);
  std::vector<std::pair<std::string, std::string>> ev;
  for (const auto& kv : b->evidence()) ev.emplace_back(kv.key(), kv.value());
  CHECK(ev == std::vector<std::pair<std::string, std::string>>{{"metric", "loss"},
                                                               {"source", "trainer/rank0"},
                                                               {"value", "4.25"},
                                                               {"consecutive", "2"},
                                                               {"first_step", "7"},
                                                               {"last_step", "8"},
                                                               {"above", "3"}});
}

TEST_CASE("threshold refuses bad config naming the field and line", "[plugins][threshold]") {
  struct row {
    std::string config;
    std::string error;
  };
  const std::vector<row> rows = {
      {"{above: 3}", "monitors[0].config.metric: required (threshold.yaml:6)"},
      {"{metric: loss}",
       "monitors[0].config: needs at least one of above, below or non_finite (threshold.yaml:6)"},
      {"{metric: loss, above: abc}",
       "monitors[0].config.above: expected a number, got \"abc\" (threshold.yaml:6)"},
      {"{metric: loss, above: 3, consecutive: 0}",
       "monitors[0].config.consecutive: expected a positive integer, got \"0\" (threshold.yaml:6)"},
      {"{metric: loss, above: 3, action: stop}",
       "monitors[0].config.action: expected one of halt, pause, rollback, throttle, "
       "require_approval, alert, got \"stop\" (threshold.yaml:6)"},
      {"{metric: loss, above: 1, below: 2}",
       "monitors[0].config.below: below (2) is greater than above (1): no value is inside the "
       "band (threshold.yaml:6)"},
      {"{metric: loss, above: 3, windw: 2}",
       "monitors[0].config.windw: unknown key (allowed: metric, above, below, non_finite, "
       "consecutive, breaker, action, severity, scope, max_streams) (threshold.yaml:6)"},
  };
  for (const auto& r : rows) {
    INFO(r.config);
    const std::string yaml = "version: 1\nplugin_paths: [\"" + std::string(LOOPWARDEN_BINARY_DIR) +
                             "/lib/loopwarden/plugins\"]\nmonitors:\n  - name: t\n    plugin: "
                             "threshold\n    config: " +
                             r.config + "\n";
    auto cfg = core::parse_config(yaml, "threshold.yaml");
    REQUIRE(cfg.ok());
    core::engine_options opts;
    opts.search_bundled_plugins = false;
    auto e = core::engine::create(*cfg, opts);
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().message() == "monitor 't': " + r.error);
  }
}
