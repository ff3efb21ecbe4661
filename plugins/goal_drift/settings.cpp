#include "settings.hpp"

#include <cmath>
#include <sstream>
#include <utility>

namespace loopwarden::goal_drift {

namespace {

using sdk::config_node;
using sdk::status;

std::string format_number(double v) {
  std::ostringstream out;
  out.precision(6);
  out << v;
  return out.str();
}

// Reads an optional number that must satisfy `ok`, else "expected <what>, got ...".
template <typename Predicate>
status read_number(const config_node& node, std::string_view key, double& out, Predicate ok,
                   std::string_view what) {
  if (!node.contains(key) || node[key].is_null()) return status::success();
  auto v = node[key].as_double();
  if (!v.ok()) return v.error();
  if (!ok(*v)) {
    return node[key].error("expected " + std::string(what) + ", got " + node[key].describe());
  }
  out = *v;
  return status::success();
}

// Reads an optional integer in [lo, hi].
status read_count(const config_node& node, std::string_view key, std::int64_t lo, std::int64_t hi,
                  std::size_t& out) {
  if (!node.contains(key) || node[key].is_null()) return status::success();
  auto v = node[key].as_int();
  if (!v.ok()) return v.error();
  if (*v < lo || *v > hi) {
    return node[key].error("expected an integer in [" + std::to_string(lo) + ", " +
                           std::to_string(hi) + "], got " + node[key].describe());
  }
  out = static_cast<std::size_t>(*v);
  return status::success();
}

status read_weights(const config_node& node, settings& s) {
  if (node.is_missing() || node.is_null()) return status::success();
  if (!node.is_map()) {
    return node.error("expected a map of component names to weights, got " + node.describe());
  }
  if (auto st = node.check_keys({"semantic", "lexical", "structural", "distributional"});
      !st.ok()) {
    return st;
  }
  // A component the map does not name weighs 0: naming some components says which to use.
  std::array<double, component_count> w = {0.0, 0.0, 0.0, 0.0};
  double sum = 0.0;
  for (std::size_t i = 0; i < component_count; ++i) {
    const std::string_view key = component_names[i];
    if (!node.contains(key) || node[key].is_null()) continue;
    auto v = node[key].as_probability();
    if (!v.ok()) return v.error();
    w[i] = *v;
    sum += *v;
  }
  if (!(std::abs(sum - 1.0) <= weight_sum_tolerance)) {
    return node.error("weights sum to " + format_number(sum) + ", expected 1 (within " +
                      format_number(weight_sum_tolerance) + ")");
  }
  for (double& x : w) x /= sum;  // exactly 1 from here on
  s.weights = w;
  return status::success();
}

status read_threshold(const config_node& node, settings& s) {
  if (node.is_missing() || node.is_null()) return status::success();
  if (auto st = node.check_keys({"prior", "calibration_cycles", "k", "floor", "min_sd"});
      !st.ok()) {
    return st;
  }
  auto in_open_unit = [](double v) { return v > 0.0 && v < 1.0; };
  if (auto st = read_number(node, "prior", s.prior, in_open_unit, "a number in (0, 1)"); !st.ok()) {
    return st;
  }
  if (auto st = read_count(node, "calibration_cycles", 0, 1000, s.calibration_cycles); !st.ok()) {
    return st;
  }
  // A sample standard deviation needs two values.
  if (s.calibration_cycles == 1) {
    return node["calibration_cycles"].error(
        "expected 0 (keep the prior) or at least 2 cycles, got 1");
  }
  if (auto st = read_number(
          node, "k", s.k, [](double v) { return v >= 0.0; }, "a number >= 0");
      !st.ok()) {
    return st;
  }
  if (auto st = read_number(
          node, "floor", s.floor, [](double v) { return v >= 0.0 && v < 1.0; },
          "a number in [0, 1)");
      !st.ok()) {
    return st;
  }
  if (auto st = read_number(
          node, "min_sd", s.min_sd, [](double v) { return v > 0.0 && v < 1.0; },
          "a number in (0, 1)");
      !st.ok()) {
    return st;
  }
  if (s.floor > s.prior) {
    return node["floor"].error("floor (" + format_number(s.floor) + ") is above prior (" +
                               format_number(s.prior) + ")");
  }
  return status::success();
}

status read_cusum(const config_node& node, settings& s) {
  if (node.is_missing() || node.is_null()) return status::success();
  if (auto st = node.check_keys({"enabled", "k", "h"}); !st.ok()) return st;
  auto enabled = node.get_bool("enabled", s.cusum_enabled);
  if (!enabled.ok()) return enabled.error();
  s.cusum_enabled = *enabled;
  if (auto st = read_number(
          node, "k", s.cusum_k, [](double v) { return v >= 0.0; }, "a number >= 0");
      !st.ok()) {
    return st;
  }
  return read_number(
      node, "h", s.cusum_h, [](double v) { return v > 0.0; }, "a number > 0");
}

status read_regression(const config_node& node, settings& s) {
  if (node.is_missing() || node.is_null()) return status::success();
  if (auto st = node.check_keys({"margin", "margins"}); !st.ok()) return st;
  auto non_negative = [](double v) { return v >= 0.0; };
  if (auto st = read_number(node, "margin", s.regression_margin, non_negative, "a number >= 0");
      !st.ok()) {
    return st;
  }
  const config_node margins = node["margins"];
  if (margins.is_missing() || margins.is_null()) return status::success();
  if (!margins.is_map()) {
    return margins.error("expected a map of metric names to margins, got " + margins.describe());
  }
  for (const auto& name : margins.keys()) {
    double m = 0.0;
    if (auto st = read_number(margins, name, m, non_negative, "a number >= 0"); !st.ok()) {
      return st;
    }
    s.regression_margins[name] = m;
  }
  return status::success();
}

status read_knee(const config_node& node, settings& s) {
  if (node.is_missing() || node.is_null()) return status::success();
  if (auto st = node.check_keys({"window", "ratio_limit", "consecutive"}); !st.ok()) return st;
  if (auto st = read_count(node, "window", 1, 1000, s.knee_window); !st.ok()) return st;
  if (auto st = read_number(
          node, "ratio_limit", s.knee_ratio_limit, [](double v) { return v >= 0.0; },
          "a number >= 0 (0: gauge only)");
      !st.ok()) {
    return st;
  }
  return read_count(node, "consecutive", 1, 1000, s.knee_consecutive);
}

}  // namespace

sdk::status parse_settings(const sdk::config_node& config, settings& out) {
  if (auto st = config.check_keys({"weights", "semantic_method", "lexical_method", "ngram",
                                   "histogram_smoothing", "threshold", "cusum", "regression",
                                   "knee", "max_cycles", "max_runs", "max_metrics", "drift_breaker",
                                   "constraint_breaker", "cycle_cap_breaker"});
      !st.ok()) {
    return st;
  }
  settings s;
  if (auto st = read_weights(config["weights"], s); !st.ok()) return st;

  auto semantic = config.get_string("semantic_method", "mean");
  if (!semantic.ok()) return semantic.error();
  if (*semantic == "mean") {
    s.semantic = semantic_method::mean;
  } else if (*semantic == "pairwise") {
    s.semantic = semantic_method::pairwise;
  } else {
    return config["semantic_method"].error("expected mean or pairwise, got " +
                                           config["semantic_method"].describe());
  }
  auto lexical = config.get_string("lexical_method", "set");
  if (!lexical.ok()) return lexical.error();
  if (*lexical == "set") {
    s.lexical = lexical_method::set;
  } else if (*lexical == "multiset") {
    s.lexical = lexical_method::multiset;
  } else {
    return config["lexical_method"].error("expected set or multiset, got " +
                                          config["lexical_method"].describe());
  }
  if (auto st = read_count(config, "ngram", 1, 16, s.ngram); !st.ok()) return st;
  if (auto st = read_number(
          config, "histogram_smoothing", s.histogram_smoothing, [](double v) { return v >= 0.0; },
          "a number >= 0");
      !st.ok()) {
    return st;
  }
  if (auto st = read_threshold(config["threshold"], s); !st.ok()) return st;
  if (auto st = read_cusum(config["cusum"], s); !st.ok()) return st;
  if (auto st = read_regression(config["regression"], s); !st.ok()) return st;
  if (auto st = read_knee(config["knee"], s); !st.ok()) return st;

  auto max_cycles = config.get_positive_int("max_cycles", static_cast<std::int64_t>(s.max_cycles));
  if (!max_cycles.ok()) return max_cycles.error();
  s.max_cycles = static_cast<std::uint64_t>(*max_cycles);
  if (auto st = read_count(config, "max_runs", 1, 1'000'000, s.max_runs); !st.ok()) return st;
  if (auto st = read_count(config, "max_metrics", 1, 10'000, s.max_metrics); !st.ok()) return st;

  for (auto [key, field] : {std::pair{"drift_breaker", &s.drift_breaker},
                            std::pair{"constraint_breaker", &s.constraint_breaker},
                            std::pair{"cycle_cap_breaker", &s.cycle_cap_breaker}}) {
    auto name = config.get_string(key, *field);
    if (!name.ok()) return name.error();
    if (name->empty()) return config[key].error("expected a breaker name");
    *field = *name;
  }
  if (s.constraint_breaker == s.drift_breaker) {
    return config["constraint_breaker"].error("must differ from drift_breaker (\"" +
                                              s.drift_breaker + "\")");
  }
  if (s.cycle_cap_breaker == s.drift_breaker || s.cycle_cap_breaker == s.constraint_breaker) {
    return config["cycle_cap_breaker"].error(
        "must differ from drift_breaker and constraint_breaker (\"" + s.cycle_cap_breaker + "\")");
  }
  out = std::move(s);
  return status::success();
}

}  // namespace loopwarden::goal_drift
