#pragma once
// review_bottleneck's configuration: every key, its default, and the parser that refuses a bad
// value naming the field and the line. docs/monitors/review-bottleneck.md explains each default.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <loopwarden/config_node.hpp>
#include <loopwarden/status.hpp>

namespace loopwarden::plugins::review_bottleneck {

constexpr std::int64_t ns_per_second = 1'000'000'000;
constexpr std::int64_t ns_per_hour = 3600 * ns_per_second;
constexpr std::size_t max_stages = 16;

// How a stage's servers (the people or machines working on items in parallel) are counted.
enum class server_mode {
  automatic,  // distinct reviewers in the window; else the busiest bucket's concurrency (with
              // start times); else one
  fixed,      // `servers: N`
  unlimited,  // every item is worked on from the moment it enters (no queue), e.g. CI runners
};

struct stage_settings {
  std::string name;
  bool accelerated = false;
  server_mode mode = server_mode::automatic;
  std::int64_t servers = 1;                                                 // for fixed
  double baseline_work_seconds = std::numeric_limits<double>::quiet_NaN();  // declared
};

// Thread-safety: a plain value.
struct settings {
  std::vector<stage_settings> stages;  // pipeline order
  std::size_t review = 1;              // index into stages
  std::size_t merge = 3;               // index into stages, or npos: no merge stage
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  std::int64_t window_ns = 24 * ns_per_hour;
  std::size_t buckets = 24;
  std::int64_t sustain_ns = 3 * ns_per_hour;  // default: window / 8
  double target_utilisation = 0.8;
  double growth_z = 3.0;
  std::uint64_t min_flow = 20;
  double max_backlog = 100.0;

  bool require_review = true;
  double coverage_floor = 0.95;
  std::uint64_t min_merges = 10;

  double rubber_stamp_floor = 0.5;  // review seconds per changed line
  double depth_floor = 0.5;         // window median depth / baseline median depth
  double depth_z = 3.0;
  double stamp_share_ceiling = 0.3;
  std::uint64_t min_reviews = 20;

  std::uint64_t baseline_items = 30;
  double baseline_depth = std::numeric_limits<double>::quiet_NaN();  // declared, s per line

  std::size_t max_items = 10'000;
  std::size_t max_reviewers = 1'000;
  std::size_t max_runs = 32;
  std::int64_t item_timeout_ns = 30 * 24 * ns_per_hour;
  std::int64_t max_clock_jump_ns = 30 * 24 * ns_per_hour;

  std::string bottleneck_breaker = "pipeline.review_bottleneck";
  std::string unreviewed_breaker = "pipeline.unreviewed_merge";
  std::string rubber_stamp_breaker = "pipeline.rubber_stamp";

  std::int64_t bucket_ns() const { return window_ns / static_cast<std::int64_t>(buckets); }
  // What a snapshot must agree with to be restored: the stage list and the window's shape.
  std::string fingerprint() const;
};

// The defaults above with the stages generate (accelerated), review, test, merge.
settings default_settings();

// Parses a monitor's `config:` subtree. Errors name the field path and the line.
sdk::status parse_settings(const sdk::config_node& config, settings& out);

}  // namespace loopwarden::plugins::review_bottleneck
