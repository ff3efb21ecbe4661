#include "approval_gate.hpp"

#include <fmt/format.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include <loopwarden/core/audit.hpp>

namespace loopwarden::sidecar::detail {

namespace {

std::string to_json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out.empty() ? "{}" : out;
}

v1::GateDecision deny(v1::GateDecision d, std::string reason, std::string rule) {
  d.set_verdict(v1::GATE_VERDICT_DENY);
  d.set_reason(std::move(reason));
  d.set_rule_id(std::move(rule));
  return d;
}

std::string describe(const v1::GateRequest& r) {
  const auto& a = r.action();
  std::string what = !a.command().empty() ? a.command()
                     : !a.url().empty()   ? a.http_method() + " " + a.url()
                     : !a.target().empty() ? a.target()
                                           : a.tool();
  if (what.size() > 200) what = what.substr(0, 197) + "...";
  return what;
}

}  // namespace

std::string action_digest(const v1::GateRequest& request) {
  v1::ActionRequest action = request.action();
  action.clear_action_id();
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream raw(&bytes);
    google::protobuf::io::CodedOutputStream coded(&raw);
    coded.SetSerializationDeterministic(true);
    action.SerializeToCodedStream(&coded);
  }
  // Length-prefixed, so no two (run, source, action) triples share an input.
  std::string input;
  for (const std::string* part :
       std::initializer_list<const std::string*>{&request.run_id(), &request.source(), &bytes}) {
    input += std::to_string(part->size());
    input += ':';
    input += *part;
  }
  return core::sha256_hex(input);
}

v1::GateDecision settle_approval(core::sqlite_state_store& store, const v1::GateRequest& request,
                                 v1::GateDecision decided, std::int64_t now,
                                 const approval_policy& policy) {
  if (decided.verdict() == v1::GATE_VERDICT_DENY) return decided;  // an outright no wins
  if (request.approval_id().empty() && decided.verdict() != v1::GATE_VERDICT_REQUIRE_APPROVAL) {
    return decided;  // the common case: nothing to do with approvals
  }
  const std::string digest = action_digest(request);

  if (!request.approval_id().empty()) {
    const std::string& id = request.approval_id();
    decided.set_approval_id(id);
    if (decided.verdict() == v1::GATE_VERDICT_ALLOW) return decided;  // no longer needs one
    auto a = store.get_approval(id);
    if (!a.ok()) {
      return deny(std::move(decided),
                  a.error().code() == core::status_code::not_found
                      ? "no approval '" + id + "': ask again without approval_id for a new one"
                      : "can't read approval '" + id + "': " + a.error().message(),
                  "loopwarden.approval_unknown");
    }
    std::string stored_digest;
    try {
      stored_digest = nlohmann::json::parse(a->detail_json).value("action_digest", "");
    } catch (const nlohmann::json::exception&) {
    }
    if (stored_digest != digest) {
      return deny(std::move(decided),
                  "approval '" + id + "' was given for a different action; ask again without "
                  "approval_id",
                  "loopwarden.approval_mismatch");
    }
    if (a->state == core::approval_state::pending && a->expires_unix_nano != 0 &&
        a->expires_unix_nano <= now) {
      (void)store.expire_approvals(now);
      a->state = core::approval_state::expired;
    }
    switch (a->state) {
      case core::approval_state::pending:
        decided.set_reason("waiting for a human: " + a->summary);
        return decided;
      case core::approval_state::approved: {
        auto used = store.use_approval(id, request.source(), now);
        if (!used.ok()) {
          return deny(std::move(decided),
                      used.error().code() == core::status_code::failed_precondition
                          ? "approval '" + id + "' was already used: ask again for a new one"
                          : "can't use approval '" + id + "': " + used.error().message(),
                      "loopwarden.approval_used");
        }
        decided.set_verdict(v1::GATE_VERDICT_ALLOW);
        decided.set_reason("approved by " + a->decided_by +
                           (a->reason.empty() ? std::string() : ": " + a->reason));
        decided.set_rule_id("loopwarden.approved");
        return decided;
      }
      case core::approval_state::denied:
        return deny(std::move(decided),
                    "denied by " + a->decided_by +
                        (a->reason.empty() ? std::string() : ": " + a->reason),
                    "loopwarden.approval_denied");
      case core::approval_state::expired:
        return deny(std::move(decided),
                    "approval '" + id + "' expired before anyone decided; ask again",
                    "loopwarden.approval_expired");
      case core::approval_state::used:
        return deny(std::move(decided),
                    "approval '" + id + "' was already used: ask again for a new one",
                    "loopwarden.approval_used");
    }
    return deny(std::move(decided), "approval '" + id + "' is in an unknown state",
                "loopwarden.approval_unknown");
  }

  if (decided.verdict() != v1::GATE_VERDICT_REQUIRE_APPROVAL) return decided;
  core::approval a;
  a.created_unix_nano = now;
  a.expires_unix_nano =
      policy.ttl.count() > 0 ? now + static_cast<std::int64_t>(policy.ttl.count()) : 0;
  a.monitor = decided.monitor();
  a.run_id = request.run_id();
  a.requested_by = request.source();
  a.summary = describe(request) + " — " + decided.reason();
  nlohmann::json detail = {{"action_digest", digest},
                           {"request", nlohmann::json::parse(to_json(request))},
                           {"decision", nlohmann::json::parse(to_json(decided))}};
  a.detail_json = detail.dump();
  auto id = store.create_approval(std::move(a));
  if (!id.ok()) {
    return deny(std::move(decided),
                "this action needs a human's approval, but it could not be recorded (" +
                    id.error().message() + ")",
                "loopwarden.approval_unavailable");
  }
  decided.set_approval_id(*id);
  return decided;
}

}  // namespace loopwarden::sidecar::detail
