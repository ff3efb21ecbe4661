// threshold: trips a breaker when a named metric crosses a bound for N consecutive samples.
//
//   config:
//     metric: "train/loss"     # stream name; '*' and '?' glob patterns allowed ("*loss")
//     above: 3.0               # crossing: value > above     (at least one of above, below,
//     below: 0.01              # crossing: value < below      non_finite is required)
//     non_finite: true         # crossing: NaN or infinity
//     consecutive: 3           # crossings in a row of one stream before it trips
//     breaker: metric.threshold
//     action: halt             # halt | pause | rollback | throttle | require_approval | alert
//     severity: critical       # info | warning | critical
//     scope: run               # run | global
//     max_streams: 10000       # memory bound: streams tracked at once
//
// A stream is one metric name from one source in one run: two ranks reporting train/loss are two
// streams, so their interleaved samples never add up to a false "consecutive" run.
// A NaN sample is a crossing only with non_finite: true; otherwise it breaks a run of crossings
// (it is neither above nor below anything).

#include <fnmatch.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <unordered_map>

#include <loopwarden/plugin.hpp>

namespace {

using loopwarden::sdk::breaker_action;
using loopwarden::sdk::breaker_scope;
using loopwarden::sdk::config_node;
using loopwarden::sdk::context;
using loopwarden::sdk::event_kind;
using loopwarden::sdk::monitor_info;
using loopwarden::sdk::severity;
using loopwarden::sdk::status;

std::string format_number(double v) {
  std::ostringstream out;
  out.precision(6);
  out << v;
  return out.str();
}

class threshold_monitor final : public loopwarden::sdk::monitor {
 public:
  monitor_info info() const override {
    monitor_info i;
    i.name = "threshold";
    i.version = "1.0.0";
    i.description = "trips when a metric crosses a bound for N consecutive samples";
    i.kinds = {event_kind::metrics};
    loopwarden::sdk::breaker_spec b;
    b.name = breaker_;
    b.action = action_;
    b.severity = severity_;
    b.scope = scope_;
    b.description = "metric '" + metric_ + "' crossed its bound";
    i.breakers.push_back(b);
    return i;
  }

  status configure(const config_node& config) override {
    if (auto s = config.check_keys({"metric", "above", "below", "non_finite", "consecutive",
                                    "breaker", "action", "severity", "scope", "max_streams"});
        !s.ok()) {
      return s;
    }
    status missing;
    auto metric = config.require("metric", missing).as_string();
    if (!missing.ok()) return missing;
    if (!metric.ok()) return metric.error();
    if (metric->empty()) return config["metric"].error("expected a metric name or pattern");
    metric_ = *metric;
    is_pattern_ = metric_.find_first_of("*?[") != std::string::npos;
    suffix_only_ = metric_.size() > 1 && metric_[0] == '*' &&
                   metric_.find_first_of("*?[", 1) == std::string::npos;

    if (config.contains("above")) {
      auto v = config["above"].as_double();
      if (!v.ok()) return v.error();
      above_ = *v;
    }
    if (config.contains("below")) {
      auto v = config["below"].as_double();
      if (!v.ok()) return v.error();
      below_ = *v;
    }
    auto nf = config.get_bool("non_finite", false);
    if (!nf.ok()) return nf.error();
    non_finite_ = *nf;
    if (!above_ && !below_ && !non_finite_) {
      return config.error("needs at least one of above, below or non_finite");
    }
    if (above_ && below_ && *below_ > *above_) {
      return config["below"].error("below (" + format_number(*below_) +
                                   ") is greater than above (" + format_number(*above_) +
                                   "): no value is inside the band");
    }
    auto n = config.get_positive_int("consecutive", 1);
    if (!n.ok()) return n.error();
    consecutive_ = static_cast<std::uint64_t>(*n);
    auto b = config.get_string("breaker", "metric.threshold");
    if (!b.ok()) return b.error();
    breaker_ = *b;

    auto a = config.get_string("action", "halt");
    if (!a.ok()) return a.error();
    auto action = loopwarden::sdk::parse_breaker_action(*a);
    if (!action) {
      return config["action"].error(
          "expected one of halt, pause, rollback, throttle, require_approval, alert, got \"" + *a +
          "\"");
    }
    action_ = *action;
    auto sv = config.get_string("severity", "critical");
    if (!sv.ok()) return sv.error();
    auto sev = loopwarden::sdk::parse_severity(*sv);
    if (!sev) {
      return config["severity"].error("expected one of info, warning, critical, got \"" + *sv +
                                      "\"");
    }
    severity_ = *sev;
    auto sc = config.get_string("scope", "run");
    if (!sc.ok()) return sc.error();
    auto scope = loopwarden::sdk::parse_breaker_scope(*sc);
    if (!scope) return config["scope"].error("expected run or global, got \"" + *sc + "\"");
    scope_ = *scope;
    auto ms = config.get_positive_int("max_streams", 10000);
    if (!ms.ok()) return ms.error();
    max_streams_ = static_cast<std::size_t>(*ms);
    return status::success();
  }

  void on_event(const loopwarden::v1::Envelope& envelope, context& ctx) override {
    for (const auto& sample : envelope.metrics().samples()) {
      if (!matches(sample.name())) continue;
      const double v = sample.value();
      const bool crossing =
          (non_finite_ && !std::isfinite(v)) || (above_ && v > *above_) || (below_ && v < *below_);
      // The common case, a normal value with no run of crossings in progress, costs no key.
      if (!crossing && streams_.empty()) continue;
      std::string key = envelope.run_id();
      key += '\0';
      key += envelope.source();
      key += '\0';
      key += sample.name();
      if (!crossing) {
        streams_.erase(key);
        continue;
      }
      if (streams_.size() >= max_streams_ && streams_.count(key) == 0) {
        ++dropped_streams_;
        ctx.set_gauge("dropped_streams", static_cast<double>(dropped_streams_));
        continue;
      }
      stream& s = streams_[key];
      if (s.count == 0) s.first_step = sample.step();
      ++s.count;
      if (s.count < consecutive_) continue;
      trip(ctx, envelope.source(), sample, s);
      streams_.erase(key);
    }
  }

 private:
  struct stream {
    std::uint64_t count = 0;
    std::int64_t first_step = 0;
  };

  bool matches(const std::string& name) const {
    if (!is_pattern_) return name == metric_;
    if (suffix_only_) {  // "*loss": a suffix test, not fnmatch
      const std::string_view suffix = std::string_view(metric_).substr(1);
      return name.size() >= suffix.size() &&
             name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    }
    return fnmatch(metric_.c_str(), name.c_str(), 0) == 0;
  }

  std::string describe_bound(double v) const {
    if (!std::isfinite(v)) return "is not finite";
    if (above_ && v > *above_) return "> " + format_number(*above_);
    return "< " + format_number(*below_);
  }

  void trip(context& ctx, const std::string& source, const loopwarden::v1::MetricSample& sample,
            const stream& s) {
    loopwarden::sdk::trip_request req;
    req.breaker = breaker_;
    const double v = sample.value();
    req.reason = sample.name() + " " + describe_bound(v);
    if (consecutive_ > 1)
      req.reason += " for " + std::to_string(consecutive_) + " consecutive samples";
    req.reason += " (last " + format_number(v) + ")";
    req.evidence = {{"metric", sample.name()},
                    {"source", source},
                    {"value", format_number(v)},
                    {"consecutive", std::to_string(s.count)},
                    {"first_step", std::to_string(s.first_step)},
                    {"last_step", std::to_string(sample.step())}};
    if (above_) req.evidence.push_back({"above", format_number(*above_)});
    if (below_) req.evidence.push_back({"below", format_number(*below_)});
    if (non_finite_) req.evidence.push_back({"non_finite", "true"});
    ctx.trip(std::move(req));
  }

  std::string metric_;
  bool suffix_only_ = false;  // "*suffix" with no other wildcard
  bool is_pattern_ = false;
  std::optional<double> above_;
  std::optional<double> below_;
  bool non_finite_ = false;
  std::uint64_t consecutive_ = 1;
  std::string breaker_ = "metric.threshold";
  breaker_action action_ = breaker_action::halt;
  severity severity_ = severity::critical;
  breaker_scope scope_ = breaker_scope::run;
  std::size_t max_streams_ = 10000;
  std::uint64_t dropped_streams_ = 0;
  std::unordered_map<std::string, stream> streams_;  // (run, source, metric) -> crossings in a row
};

}  // namespace

LOOPWARDEN_PLUGIN(threshold_monitor);
