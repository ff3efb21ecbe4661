#include "settings.hpp"

#include <algorithm>
#include <cmath>
#include <set>

namespace loopwarden::plugins::review_bottleneck {

namespace {

bool valid_stage_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::size_t index_of(const std::vector<stage_settings>& stages, const std::string& name) {
  for (std::size_t i = 0; i < stages.size(); ++i) {
    if (stages[i].name == name) return i;
  }
  return settings::npos;
}

// An optional number with a range check; `what` describes the range for the message.
template <typename Ok>
sdk::status read_number(const sdk::config_node& config, std::string_view key, double& out, Ok ok,
                        std::string_view what) {
  if (!config.contains(key) || config[key].is_null()) return sdk::status::success();
  auto v = config[key].as_double();
  if (!v.ok()) return v.error();
  if (!ok(*v)) {
    return config[key].error("expected " + std::string(what) + ", got " + config[key].describe());
  }
  out = *v;
  return sdk::status::success();
}

sdk::status read_count(const sdk::config_node& config, std::string_view key, std::uint64_t& out,
                       std::int64_t max) {
  if (!config.contains(key) || config[key].is_null()) return sdk::status::success();
  auto v = config[key].as_positive_int();
  if (!v.ok()) return v.error();
  if (*v > max) {
    return config[key].error("expected a positive integer up to " + std::to_string(max) + ", got " +
                             config[key].describe());
  }
  out = static_cast<std::uint64_t>(*v);
  return sdk::status::success();
}

sdk::status read_duration(const sdk::config_node& config, std::string_view key, std::int64_t& out,
                          bool allow_zero) {
  if (!config.contains(key) || config[key].is_null()) return sdk::status::success();
  auto v = config[key].as_duration();
  if (!v.ok()) return v.error();
  if (v->count() < 0 || (!allow_zero && v->count() == 0)) {
    return config[key].error(std::string("expected a duration ") + (allow_zero ? ">= 0" : "> 0") +
                             ", got " + config[key].describe());
  }
  out = v->count();
  return sdk::status::success();
}

sdk::status read_stages(const sdk::config_node& config, settings& s) {
  if (!config.contains("stages") || config["stages"].is_null()) return sdk::status::success();
  const sdk::config_node node = config["stages"];
  auto names = node.as_string_list();
  if (!names.ok()) return names.error();
  if (names->size() < 2 || names->size() > max_stages) {
    return node.error("expected 2 to " + std::to_string(max_stages) + " stage names, got " +
                      std::to_string(names->size()));
  }
  std::vector<stage_settings> stages;
  std::set<std::string> seen;
  for (std::size_t i = 0; i < names->size(); ++i) {
    const std::string& name = (*names)[i];
    const sdk::config_node at = node.is_sequence() ? node.at(i) : node;
    if (!valid_stage_name(name)) {
      return at.error("expected a stage name of lowercase letters, digits and '_', got \"" + name +
                      "\"");
    }
    if (!seen.insert(name).second) return at.error("stage \"" + name + "\" is listed twice");
    stages.push_back(stage_settings{name});
  }
  s.stages = std::move(stages);
  // Defaults that named stages of the default list no longer apply.
  s.review = index_of(s.stages, "review");
  s.merge = index_of(s.stages, "merge");
  return sdk::status::success();
}

sdk::status read_stage_reference(const sdk::config_node& config, std::string_view key,
                                 const settings& s, bool optional, std::size_t& out) {
  if (!config.contains(key) || config[key].is_null()) {
    if (out == settings::npos && !optional) {
      return config[key].error("required: name the stage (none of the stages is called \"" +
                               std::string(key == "review_stage" ? "review" : "merge") + "\")");
    }
    return sdk::status::success();
  }
  auto name = config[key].as_string();
  if (!name.ok()) return name.error();
  if (name->empty() && optional) {
    out = settings::npos;
    return sdk::status::success();
  }
  const std::size_t i = index_of(s.stages, *name);
  if (i == settings::npos) {
    return config[key].error("\"" + *name + "\" is not one of the stages");
  }
  out = i;
  return sdk::status::success();
}

sdk::status read_servers(const sdk::config_node& config, settings& s) {
  const sdk::config_node node = config["servers"];
  if (node.is_missing() || node.is_null()) return sdk::status::success();
  if (!node.is_map()) return node.error("expected a map of stage names to servers");
  for (const auto& key : node.keys()) {
    const std::size_t i = index_of(s.stages, key);
    if (i == settings::npos) return node[key].error("\"" + key + "\" is not one of the stages");
    const sdk::config_node v = node[key];
    if (v.is_scalar() && (v.scalar() == "auto" || v.scalar() == "unlimited")) {
      s.stages[i].mode = v.scalar() == "auto" ? server_mode::automatic : server_mode::unlimited;
      continue;
    }
    auto n = v.as_positive_int();
    if (!n.ok() || *n > 100'000) {
      return v.error("expected auto, unlimited or a positive integer up to 100000, got " +
                     v.describe());
    }
    s.stages[i].mode = server_mode::fixed;
    s.stages[i].servers = *n;
  }
  return sdk::status::success();
}

sdk::status read_baseline(const sdk::config_node& config, settings& s) {
  const sdk::config_node node = config["baseline"];
  if (node.is_missing() || node.is_null()) return sdk::status::success();
  if (auto st = node.check_keys({"work_seconds", "review_seconds_per_line"}); !st.ok()) return st;
  if (auto st = read_number(
          node, "review_seconds_per_line", s.baseline_depth,
          [](double v) { return v > 0.0 && std::isfinite(v); }, "a number > 0");
      !st.ok()) {
    return st;
  }
  const sdk::config_node work = node["work_seconds"];
  if (work.is_missing() || work.is_null()) return sdk::status::success();
  if (!work.is_map()) return work.error("expected a map of stage names to seconds");
  for (const auto& key : work.keys()) {
    const std::size_t i = index_of(s.stages, key);
    if (i == settings::npos) return work[key].error("\"" + key + "\" is not one of the stages");
    auto v = work[key].as_double();
    if (!v.ok()) return v.error();
    if (!(*v > 0.0)) return work[key].error("expected a number > 0, got " + work[key].describe());
    s.stages[i].baseline_work_seconds = *v;
  }
  return sdk::status::success();
}

}  // namespace

std::string settings::fingerprint() const {
  std::string f = "stages=";
  for (const auto& st : stages) f += st.name + ",";
  f += ";window=" + std::to_string(window_ns) + ";buckets=" + std::to_string(buckets);
  return f;
}

settings default_settings() {
  settings s;
  s.stages = {stage_settings{"generate"}, stage_settings{"review"}, stage_settings{"test"},
              stage_settings{"merge"}};
  s.stages[0].accelerated = true;
  s.review = 1;
  s.merge = 3;
  return s;
}

sdk::status parse_settings(const sdk::config_node& config, settings& out) {
  if (auto st = config.check_keys({"stages",
                                   "accelerated",
                                   "review_stage",
                                   "merge_stage",
                                   "servers",
                                   "window",
                                   "buckets",
                                   "sustain",
                                   "target_utilisation",
                                   "growth_z",
                                   "min_flow",
                                   "max_backlog",
                                   "require_review",
                                   "coverage_floor",
                                   "min_merges",
                                   "rubber_stamp_floor",
                                   "depth_floor",
                                   "depth_z",
                                   "stamp_share_ceiling",
                                   "min_reviews",
                                   "baseline_items",
                                   "baseline",
                                   "max_items",
                                   "max_reviewers",
                                   "max_runs",
                                   "item_timeout",
                                   "max_clock_jump",
                                   "bottleneck_breaker",
                                   "unreviewed_breaker",
                                   "rubber_stamp_breaker"});
      !st.ok()) {
    return st;
  }
  settings s = default_settings();
  const bool custom_stages = config.contains("stages") && !config["stages"].is_null();
  if (auto st = read_stages(config, s); !st.ok()) return st;

  if (config.contains("accelerated") && !config["accelerated"].is_null()) {
    auto names = config["accelerated"].as_string_list();
    if (!names.ok()) return names.error();
    for (auto& st : s.stages) st.accelerated = false;
    for (const auto& name : *names) {
      const std::size_t i = index_of(s.stages, name);
      if (i == settings::npos) {
        return config["accelerated"].error("\"" + name + "\" is not one of the stages");
      }
      s.stages[i].accelerated = true;
    }
  } else if (custom_stages) {
    // Custom stages keep the default's intent only where the name matches.
    const std::size_t g = index_of(s.stages, "generate");
    if (g != settings::npos) s.stages[g].accelerated = true;
  }
  if (auto st = read_stage_reference(config, "review_stage", s, false, s.review); !st.ok()) {
    return st;
  }
  if (auto st = read_stage_reference(config, "merge_stage", s, true, s.merge); !st.ok()) return st;
  if (s.stages[s.review].accelerated) {
    return config["accelerated"].error("the review stage \"" + s.stages[s.review].name +
                                       "\" can't be accelerated: it is the stage this monitor "
                                       "protects");
  }
  if (auto st = read_servers(config, s); !st.ok()) return st;
  if (auto st = read_baseline(config, s); !st.ok()) return st;

  if (auto st = read_duration(config, "window", s.window_ns, false); !st.ok()) return st;
  std::uint64_t buckets = s.buckets;
  if (auto st = read_count(config, "buckets", buckets, 1000); !st.ok()) return st;
  if (buckets < 2) return config["buckets"].error("expected an integer >= 2, got 1");
  s.buckets = static_cast<std::size_t>(buckets);
  if (s.window_ns / static_cast<std::int64_t>(s.buckets) < ns_per_second / 1000) {
    return config["window"].error("window / buckets must be at least 1ms");
  }
  if (s.window_ns % static_cast<std::int64_t>(s.buckets) != 0) {
    return config["buckets"].error("must divide the window (" + std::to_string(s.window_ns) +
                                   " ns) into equal buckets");
  }
  // Unless set, overload must last an eighth of the window (3 h of the default 24 h).
  s.sustain_ns = s.window_ns / 8;
  if (auto st = read_duration(config, "sustain", s.sustain_ns, true); !st.ok()) return st;
  if (s.sustain_ns > s.window_ns) {
    return config["sustain"].error("must not be longer than the window");
  }
  const auto open_unit = [](double v) { return v > 0.0 && v < 1.0; };
  const auto unit = [](double v) { return v >= 0.0 && v <= 1.0; };
  const auto positive = [](double v) { return v > 0.0 && std::isfinite(v); };
  if (auto st = read_number(config, "target_utilisation", s.target_utilisation, open_unit,
                            "a number in (0, 1)");
      !st.ok()) {
    return st;
  }
  if (auto st = read_number(config, "growth_z", s.growth_z, positive, "a number > 0"); !st.ok()) {
    return st;
  }
  if (auto st = read_count(config, "min_flow", s.min_flow, 1'000'000'000); !st.ok()) return st;
  if (auto st = read_number(config, "max_backlog", s.max_backlog, positive, "a number > 0");
      !st.ok()) {
    return st;
  }
  if (config.contains("require_review")) {
    auto v = config.get_bool("require_review", s.require_review);
    if (!v.ok()) return v.error();
    s.require_review = *v;
  }
  if (auto st = read_number(config, "coverage_floor", s.coverage_floor, unit, "a number in [0, 1]");
      !st.ok()) {
    return st;
  }
  if (auto st = read_count(config, "min_merges", s.min_merges, 1'000'000'000); !st.ok()) return st;
  if (auto st = read_number(
          config, "rubber_stamp_floor", s.rubber_stamp_floor,
          [](double v) { return v >= 0.0 && std::isfinite(v); },
          "a number >= 0 (seconds per changed line)");
      !st.ok()) {
    return st;
  }
  if (auto st = read_number(config, "depth_floor", s.depth_floor, open_unit, "a number in (0, 1)");
      !st.ok()) {
    return st;
  }
  if (auto st = read_number(config, "depth_z", s.depth_z, positive, "a number > 0"); !st.ok()) {
    return st;
  }
  if (auto st = read_number(config, "stamp_share_ceiling", s.stamp_share_ceiling, open_unit,
                            "a number in (0, 1)");
      !st.ok()) {
    return st;
  }
  if (auto st = read_count(config, "min_reviews", s.min_reviews, 1'000'000'000); !st.ok()) {
    return st;
  }
  if (auto st = read_count(config, "baseline_items", s.baseline_items, 1'000'000); !st.ok()) {
    return st;
  }
  std::uint64_t max_items = s.max_items;
  std::uint64_t max_reviewers = s.max_reviewers;
  std::uint64_t max_runs = s.max_runs;
  if (auto st = read_count(config, "max_items", max_items, 10'000'000); !st.ok()) return st;
  if (auto st = read_count(config, "max_reviewers", max_reviewers, 1'000'000); !st.ok()) return st;
  if (auto st = read_count(config, "max_runs", max_runs, 10'000); !st.ok()) return st;
  s.max_items = static_cast<std::size_t>(max_items);
  s.max_reviewers = static_cast<std::size_t>(max_reviewers);
  s.max_runs = static_cast<std::size_t>(max_runs);
  if (auto st = read_duration(config, "item_timeout", s.item_timeout_ns, false); !st.ok()) {
    return st;
  }
  if (auto st = read_duration(config, "max_clock_jump", s.max_clock_jump_ns, false); !st.ok()) {
    return st;
  }
  for (auto [key, field] : {std::pair{"bottleneck_breaker", &s.bottleneck_breaker},
                            std::pair{"unreviewed_breaker", &s.unreviewed_breaker},
                            std::pair{"rubber_stamp_breaker", &s.rubber_stamp_breaker}}) {
    auto name = config.get_string(key, *field);
    if (!name.ok()) return name.error();
    if (name->empty()) return config[key].error("expected a breaker name");
    *field = *name;
  }
  if (s.bottleneck_breaker == s.unreviewed_breaker ||
      s.bottleneck_breaker == s.rubber_stamp_breaker ||
      s.unreviewed_breaker == s.rubber_stamp_breaker) {
    return config.error(
        "bottleneck_breaker, unreviewed_breaker and rubber_stamp_breaker must "
        "be three different names");
  }
  out = std::move(s);
  return sdk::status::success();
}

}  // namespace loopwarden::plugins::review_bottleneck
