#include "control_handler.hpp"

#include <fmt/format.h>

#include <chrono>
#include <utility>
#include <vector>

#include <loopwarden/types.hpp>

namespace loopwarden::sidecar::detail {

namespace {
void fill_approval(const core::approval& a, v1::Approval& o) {
  o.set_id(a.id);
  o.set_created_unix_nano(a.created_unix_nano);
  o.set_expires_unix_nano(a.expires_unix_nano);
  o.set_monitor(a.monitor);
  o.set_breaker(a.breaker);
  o.set_run_id(a.run_id);
  o.set_summary(a.summary);
  o.set_detail_json(a.detail_json);
  o.set_requested_by(a.requested_by);
  o.set_state(std::string(core::to_string(a.state)));
  o.set_decided_by(a.decided_by);
  o.set_reason(a.reason);
  o.set_decided_unix_nano(a.decided_unix_nano);
}
}  // namespace

control_handler::control_handler(core::breaker_registry& registry, core::sqlite_state_store& store,
                                 core::alert_router& router, std::string config_source,
                                 control_hooks hooks)
    : registry_(registry),
      store_(store),
      router_(router),
      config_source_(std::move(config_source)),
      hooks_(std::move(hooks)) {}

v1::ControlResponse control_handler::handle(const v1::ControlRequest& request,
                                            const std::string& who) {
  v1::ControlResponse r;
  auto fail = [&](const core::status& s) {
    r.set_ok(false);
    r.set_error(s.message());
    return r;
  };
  auto key_of = [](const v1::BreakerRef& ref) {
    return core::breaker_key{ref.name(), ref.run_id()};
  };
  const std::int64_t now = hooks_.now_unix_nano();
  switch (request.command_case()) {
    case v1::ControlRequest::kStatus:
      break;  // the snapshot and figures are added below
    case v1::ControlRequest::kExplain: {
      auto key = key_of(request.explain().breaker());
      auto b = registry_.find(key);
      if (!b && key.run_id.empty()) {
        // A run-scoped breaker named without its run: explain it if only one run has it.
        std::vector<std::string> runs;
        // Named, not iterated in place: in C++20 a range-for over snapshot().breakers() would
        // walk a temporary destroyed before the loop body runs.
        const v1::BreakerSnapshot all = registry_.snapshot();
        for (const auto& x : all.breakers()) {
          if (x.name() == key.name) runs.push_back(x.run_id());
        }
        if (runs.size() == 1) {
          key.run_id = runs.front();
          b = registry_.find(key);
        } else if (runs.size() > 1) {
          std::string list;
          for (const auto& run : runs) list += (list.empty() ? "" : ", ") + run;
          return fail(core::make_error(core::status_code::invalid_argument,
                                       "breaker '" + key.name + "' exists for several runs (" +
                                           list + "): name one with --run"));
        }
      }
      if (!b) {
        return fail(
            core::make_error(core::status_code::not_found,
                             "no breaker '" + key.name + "'" +
                                 (key.run_id.empty() ? "" : " (run '" + key.run_id + "')")));
      }
      auto h = registry_.history(key, 100);
      if (h.ok()) {
        for (auto& t : *h) *r.add_history() = std::move(t);
      }
      *r.mutable_snapshot()->add_breakers() = *b;
      r.set_ok(true);
      *r.mutable_sidecar() = hooks_.status();
      return r;
    }
    case v1::ControlRequest::kAck: {
      auto t =
          registry_.acknowledge(key_of(request.ack().breaker()), who, request.ack().note(), now);
      if (!t.ok()) return fail(t.error());
      r.set_message("acknowledged " + t->breaker().name() + " as " + who);
      *r.add_history() = *t;
      break;
    }
    case v1::ControlRequest::kReset: {
      auto t =
          registry_.reset(key_of(request.reset().breaker()), who, request.reset().reason(), now);
      if (!t.ok()) return fail(t.error());
      r.set_message("reset " + t->breaker().name() + " as " + who + ": now " +
                    std::string(sdk::to_string(t->breaker().state())));
      *r.add_history() = *t;
      break;
    }
    case v1::ControlRequest::kForceOpen: {
      const auto& f = request.force_open();
      auto action = sdk::from_proto(f.action()).value_or(sdk::breaker_action::halt);
      auto t = registry_.force_open(key_of(f.breaker()), who, f.reason(), action, now);
      if (!t.ok()) return fail(t.error());
      r.set_message("forced " + t->breaker().name() + " open as " + who);
      *r.add_history() = *t;
      break;
    }
    case v1::ControlRequest::kReload: {
      if (auto s = hooks_.reload(); !s.ok()) return fail(s);
      r.set_message("reloaded " + config_source_);
      break;
    }
    case v1::ControlRequest::kApproval: {
      const auto& a = request.approval();
      auto decided = store_.decide_approval(a.approval_id(), a.approve(), who, a.note(), now);
      if (!decided.ok()) return fail(decided.error());
      hooks_.approval_settled(decided->id);  // its page's resolve is committed: send it now
      fill_approval(*decided, *r.add_approvals());
      r.set_message(std::string(a.approve() ? "approved " : "denied ") + decided->id + " as " +
                    who + ": the host learns it when it asks the gate again");
      r.set_ok(true);
      return r;
    }
    case v1::ControlRequest::kApprovals: {
      if (auto expired = store_.expire_approvals(now); expired.ok()) {
        for (const auto& e : *expired) hooks_.approval_settled(e.id);
      }
      auto list = store_.list_approvals(!request.approvals().all());
      if (!list.ok()) return fail(list.error());
      for (const auto& a : *list) fill_approval(a, *r.add_approvals());
      r.set_ok(true);
      return r;
    }
    case v1::ControlRequest::kAlertTest: {
      auto report = router_.send_test(request.alert_test().sink());
      if (!report.ok()) return fail(report.error());
      if (!report->delivered) {
        return fail(core::make_error(
            core::status_code::io_error,
            fmt::format(
                "test alert through '{}' failed after {} ms: {}{}", report->sink,
                std::chrono::duration_cast<std::chrono::milliseconds>(report->elapsed).count(),
                report->error,
                report->http_status != 0 ? fmt::format(" (HTTP {})", report->http_status) : "")));
      }
      r.set_ok(true);
      r.set_message(fmt::format(
          "test alert delivered through '{}' in {} ms{}", report->sink,
          std::chrono::duration_cast<std::chrono::milliseconds>(report->elapsed).count(),
          report->http_status != 0 ? fmt::format(" (HTTP {})", report->http_status) : ""));
      return r;
    }
    case v1::ControlRequest::COMMAND_NOT_SET:
      return fail(
          core::make_error(core::status_code::invalid_argument, "the request names no command"));
  }
  r.set_ok(true);
  *r.mutable_snapshot() = registry_.snapshot();
  *r.mutable_sidecar() = hooks_.status();
  return r;
}

}  // namespace loopwarden::sidecar::detail
