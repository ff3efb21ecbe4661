// The loopwarden.v1 schema: every message round-trips with every field set, unknown fields
// survive a parse and re-serialize (forward compatibility inside v1), and the SDK's event kinds
// cover every body of the envelope.

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/message.h>
#include <google/protobuf/unknown_field_set.h>
#include <google/protobuf/util/message_differencer.h>
#include <loopwarden/v1/breaker.pb.h>
#include <loopwarden/v1/control.pb.h>
#include <loopwarden/v1/envelope.pb.h>
#include <loopwarden/v1/gate.pb.h>
#include <loopwarden/v1/replay.pb.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <functional>
#include <loopwarden/event_kind.hpp>
#include <set>
#include <string>
#include <vector>

namespace {

namespace v1 = loopwarden::v1;
namespace sdk = loopwarden::sdk;
namespace pb = google::protobuf;
using pb::util::MessageDifferencer;

// Appends to `missing` the path of every field of `message` (recursively) that holds its default
// value: an unset or zero scalar, an empty repeated field, an unset sub-message. For a oneof,
// only the member that is set is inspected, and an unset oneof is reported by its name.
// A test built on this fails when a field is added to the schema but not to the test.
void find_unset_fields(const pb::Message& message, const std::string& path,
                       std::vector<std::string>& missing) {
  const pb::Descriptor* descriptor = message.GetDescriptor();
  const pb::Reflection* reflection = message.GetReflection();
  for (int i = 0; i < descriptor->oneof_decl_count(); ++i) {
    const pb::OneofDescriptor* oneof = descriptor->oneof_decl(i);
    if (!reflection->HasOneof(message, oneof)) missing.push_back(path + "." + oneof->name());
  }
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const pb::FieldDescriptor* field = descriptor->field(i);
    const std::string field_path = path + "." + field->name();
    if (field->is_repeated()) {
      const int size = reflection->FieldSize(message, field);
      if (size == 0) {
        missing.push_back(field_path);
        continue;
      }
      if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        for (int k = 0; k < size; ++k) {
          find_unset_fields(reflection->GetRepeatedMessage(message, field, k),
                            field_path + "[" + std::to_string(k) + "]", missing);
        }
      }
      continue;
    }
    if (field->real_containing_oneof() != nullptr) {
      // Only the set member of a oneof is expected; an unset oneof was reported above.
      if (reflection->HasField(message, field)) {
        find_unset_fields(reflection->GetMessage(message, field), field_path, missing);
      }
      continue;
    }
    // proto3 singular fields: HasField is false exactly when the value is the default.
    if (!reflection->HasField(message, field)) {
      missing.push_back(field_path);
      continue;
    }
    if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      find_unset_fields(reflection->GetMessage(message, field), field_path, missing);
    }
  }
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += item + "\n";
  return out;
}

// Checks that every field of `message` is set, then that it survives serialize -> parse.
template <typename M>
void check_complete_round_trip(const M& message, const std::string& what) {
  INFO(what);
  std::vector<std::string> missing;
  find_unset_fields(message, M::descriptor()->name(), missing);
  INFO("fields left at their default:\n" << join(missing));
  CHECK(missing.empty());

  std::string bytes;
  REQUIRE(message.SerializeToString(&bytes));
  M parsed;
  REQUIRE(parsed.ParseFromString(bytes));
  std::string diff;
  MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  INFO("differences:\n" << diff);
  CHECK(differencer.Compare(message, parsed));
}

// --- complete values of every message ---------------------------------------------------------

v1::SchemaVersion schema_version() {
  v1::SchemaVersion s;
  s.set_major(1);
  s.set_minor(2);
  return s;
}

void fill(v1::KeyValue* kv, const std::string& key, const std::string& value) {
  kv->set_key(key);
  kv->set_value(value);
}

void fill(v1::NamedValue* nv, const std::string& name, double value) {
  nv->set_name(name);
  nv->set_value(value);
}

v1::FloatMatrix float_matrix(std::uint32_t dim, std::uint32_t rows, float base) {
  v1::FloatMatrix m;
  m.set_dim(dim);
  for (std::uint32_t i = 0; i < dim * rows; ++i) m.add_values(base + 0.25f * static_cast<float>(i));
  return m;
}

v1::SparseHistogram sparse_histogram(std::uint64_t first_key) {
  v1::SparseHistogram h;
  for (std::uint64_t k = 0; k < 4; ++k) {
    h.add_keys(first_key + k * 17);
    h.add_counts(3.0 + static_cast<double>(k));
  }
  return h;
}

v1::ScalarSummary scalar_summary(const std::string& name) {
  v1::ScalarSummary s;
  s.set_name(name);
  s.set_count(4096);
  s.set_mean(-1.75);
  s.set_variance(0.3125);
  s.set_ddof(1);
  s.set_min(-4.5);
  s.set_max(0.5);
  for (double q : {0.05, 0.5, 0.95}) {
    auto* quantile = s.add_quantiles();
    quantile->set_q(q);
    quantile->set_value(-1.75 + q);
  }
  auto* histogram = s.mutable_histogram();
  for (double edge : {-5.0, -3.0, -1.0, 1.0}) histogram->add_edges(edge);
  for (double count : {100.0, 2900.0, 1096.0}) histogram->add_counts(count);
  return s;
}

v1::MetricsBatch metrics_batch() {
  v1::MetricsBatch batch;
  for (int i = 0; i < 3; ++i) {
    auto* s = batch.add_samples();
    s->set_name(i == 2 ? "val/loss" : "train/loss");
    s->set_value(2.0 - 0.125 * i);
    s->set_step(1000 + i);
    s->set_time_unix_nano(1'700'000'000'000'000'000 + i);
    fill(s->add_labels(), "split", i == 2 ? "val" : "train");
  }
  return batch;
}

v1::GenerationSummary generation_summary() {
  v1::GenerationSummary g;
  g.set_generation(4);
  g.set_sample_count(4096);
  g.set_checkpoint_id("ckpt-gen4");
  *g.add_statistics() = scalar_summary("loglik");
  *g.add_statistics() = scalar_summary("length");
  for (std::uint32_t n = 1; n <= 2; ++n) {
    auto* d = g.add_diversity();
    d->set_n(n);
    d->set_distinct(900 * n);
    d->set_total(5000);
    d->set_entropy(6.5 - n);
    d->set_gini_simpson(0.98);
  }
  g.set_token_entropy(7.25);
  g.set_tail_mass(0.0125);
  g.set_synthetic_share(0.75);
  g.set_real_share(0.25);
  fill(g.add_provenance_counts(), "human", 1000);
  fill(g.add_provenance_counts(), "gen3", 3000);
  *g.mutable_token_histogram() = sparse_histogram(11);
  fill(g.add_metrics(), "rare_token_ppl", 25.9);
  g.set_kl_from_baseline(0.42);
  return g;
}

v1::EmbeddingBatch embedding_batch() {
  v1::EmbeddingBatch b;
  b.set_stream("generated");
  b.set_generation(4);
  *b.mutable_vectors() = float_matrix(4, 3, 0.5f);
  return b;
}

v1::ToolCall tool_call(const std::string& name) {
  v1::ToolCall t;
  t.set_name(name);
  t.set_args_digest("sha256:args-" + name);
  t.set_status(v1::TOOL_STATUS_ERROR);
  t.set_error_digest("sha256:err");
  t.set_observation_digest("sha256:obs");
  t.set_duration_ns(1'250'000);
  t.set_target("/work/repo/src/main.cpp");
  return t;
}

v1::AgentStep agent_step() {
  v1::AgentStep a;
  a.set_agent_id("alpha");
  a.set_session_id("task-17/attempt-2");
  a.set_turn(12);
  for (float v : {0.125f, -0.5f, 0.75f}) a.add_output_embedding(v);
  a.set_output_digest("sha256:out");
  a.set_output_length(512);
  a.set_reasoning_length(2048);
  *a.add_tool_calls() = tool_call("bash");
  *a.add_tool_calls() = tool_call("edit_file");
  a.set_tokens_in(8000);
  a.set_tokens_out(600);
  a.set_cost(0.0375);
  a.set_workspace_hash("git:abc123");
  a.set_task_completed(true);
  a.set_human_intervention(true);
  a.set_vote("B");
  a.set_agreement(0.66);
  return a;
}

v1::ActionRequest action_request() {
  v1::ActionRequest a;
  a.set_action_id("act-9");
  a.set_agent_id("alpha");
  a.set_session_id("task-17/attempt-2");
  a.set_kind(v1::ACTION_KIND_FILE);
  a.set_tool("bash");
  a.set_command("rm -rf build/");
  a.add_argv("rm");
  a.add_argv("-rf");
  a.add_argv("build/");
  a.set_target("/work/repo/build");
  a.set_working_directory("/work/repo");
  auto* scope = a.mutable_scope();
  scope->set_workspace_root("/work/repo");
  scope->add_resources("/work/repo");
  scope->add_resources("table:staging.events");
  scope->add_environments("dev");
  scope->add_allowed_hosts("api.internal");
  scope->set_description("fix the flaky build");
  a.set_environment("dev");
  a.set_file_operation(v1::FILE_OPERATION_DELETE);
  a.set_http_method("DELETE");
  a.set_url("https://api.internal/v1/items/3");
  a.set_database("staging");
  fill(a.add_attributes(), "ticket", "OPS-12");
  a.set_executed(true);
  a.set_status(v1::TOOL_STATUS_OK);
  return a;
}

v1::StageTiming stage_timing() {
  v1::StageTiming t;
  t.set_item_id("pr-1234");
  t.set_stage("review");
  t.set_enter_unix_nano(1'700'000'000'000'000'000);
  t.set_exit_unix_nano(1'700'000'360'000'000'000);
  t.set_start_unix_nano(1'700'000'120'000'000'000);
  t.set_actor(v1::ACTOR_KIND_HUMAN);
  t.set_size(420);
  t.set_reviewer("carol");
  t.set_outcome(v1::STAGE_OUTCOME_CHANGES_REQUESTED);
  t.set_human_reviewed(true);
  fill(t.add_attributes(), "repo", "loopwarden");
  return t;
}

v1::CycleReport cycle_report() {
  v1::CycleReport c;
  c.set_cycle(7);
  c.set_candidate_id("cand-7");
  c.set_parent_id("cand-6");
  fill(c.add_capability_metrics(), "pass_at_1", 0.61);
  fill(c.add_capability_metrics(), "latency_score", 0.8);
  fill(c.add_alignment_metrics(), "truthfulness", 0.92);
  auto* check = c.add_constraints();
  check->set_name("no_network_in_tests");
  check->set_passed(true);
  check->set_critical(true);
  check->set_detail("0 outbound connections");
  auto* drift = c.mutable_drift();
  drift->set_semantic(0.125);
  drift->set_lexical(0.25);
  drift->set_structural(0.0625);
  drift->set_distributional(0.5);
  auto* material = c.mutable_material();
  *material->mutable_candidate_embeddings() = float_matrix(3, 2, 1.0f);
  *material->mutable_reference_embeddings() = float_matrix(3, 4, -1.0f);
  for (std::uint64_t t : {5u, 9u, 5u, 42u}) material->add_candidate_tokens(t);
  for (std::uint64_t t : {5u, 7u, 11u}) material->add_reference_tokens(t);
  *material->mutable_candidate_histogram() = sparse_histogram(5);
  *material->mutable_reference_histogram() = sparse_histogram(7);
  return c;
}

v1::Heartbeat heartbeat() {
  v1::Heartbeat h;
  h.set_events_sent(100'000);
  h.set_events_dropped(3);
  h.set_interval_ms(1000);
  h.set_closing(true);
  return h;
}

// An envelope with every field outside the body set, and no body.
v1::Envelope envelope_header() {
  v1::Envelope e;
  *e.mutable_schema() = schema_version();
  e.set_source("trainer/rank0");
  e.set_run_id("run-42");
  e.set_seq(17);
  e.set_time_unix_nano(1'700'000'000'123'456'789);
  (*e.mutable_labels())["host"] = "gpu-07";
  (*e.mutable_labels())["model"] = "m7b";
  return e;
}

v1::BreakerStatus breaker_status(const std::string& name) {
  v1::BreakerStatus b;
  b.set_name(name);
  b.set_scope(v1::BREAKER_SCOPE_RUN);
  b.set_run_id("run-42");
  b.set_state(v1::BREAKER_STATE_HALF_OPEN);
  b.set_action(v1::BREAKER_ACTION_ROLLBACK);
  b.set_severity(v1::SEVERITY_CRITICAL);
  b.set_epoch(5);
  b.set_monitor("variance_collapse");
  b.set_reason("loglik variance fell 80% below baseline");
  fill(b.add_evidence(), "variance_ratio", "0.19");
  fill(b.add_evidence(), "generation", "4");
  b.set_changed_unix_nano(1'700'000'000'000'000'001);
  b.set_acknowledged(true);
  b.set_acknowledged_by("oncall-alice");
  b.set_probation_until_unix_nano(1'700'000'300'000'000'000);
  b.set_trips(2);
  b.set_shadow(true);
  return b;
}

v1::BreakerTransition breaker_transition() {
  v1::BreakerTransition t;
  *t.mutable_breaker() = breaker_status("training.collapse");
  t.set_previous(v1::BREAKER_STATE_OPEN);
  t.set_cause("reset");
  t.set_operator_id("alice");
  t.set_note("rolled back to gen3");
  t.set_trigger_source("trainer/rank0");
  t.set_trigger_seq(17);
  return t;
}

v1::BreakerSnapshot breaker_snapshot() {
  v1::BreakerSnapshot s;
  *s.add_breakers() = breaker_status("training.collapse");
  *s.add_breakers() = breaker_status("agent.destructive");
  s.set_time_unix_nano(1'700'000'000'000'000'002);
  s.set_sequence(99);
  s.set_heartbeat_interval_ms(2000);
  s.set_sidecar_id("sidecar-a");
  return s;
}

v1::BreakerRef breaker_ref() {
  v1::BreakerRef r;
  r.set_name("training.collapse");
  r.set_run_id("run-42");
  return r;
}

// One message per member of the oneof `oneof_name` of M, each made by `set_member(message,
// member name)`; a member the callback does not know stays unset and fails the completeness check.
template <typename M>
std::vector<M> one_per_oneof_member(const std::string& oneof_name,
                                    const std::function<void(M&, const std::string&)>& set_member) {
  std::vector<M> out;
  const pb::OneofDescriptor* oneof = M::descriptor()->FindOneofByName(oneof_name);
  REQUIRE(oneof != nullptr);
  for (int i = 0; i < oneof->field_count(); ++i) {
    M message;
    set_member(message, oneof->field(i)->name());
    out.push_back(std::move(message));
  }
  return out;
}

// The bytes of one unknown field: a tag and a payload, written with protobuf's own encoder.
std::string encode_unknown(const pb::UnknownFieldSet& fields) {
  std::string out;
  REQUIRE(fields.SerializeToString(&out));
  return out;
}

}  // namespace

TEST_CASE("schema finds the fields a message leaves at their default", "[schema]") {
  // The completeness helper itself: it must notice a missing scalar, a missing repeated field,
  // a missing field inside a repeated message, and an unset oneof.
  v1::Envelope envelope = envelope_header();
  *envelope.mutable_heartbeat() = heartbeat();
  envelope.mutable_heartbeat()->clear_events_dropped();
  envelope.clear_run_id();
  std::vector<std::string> missing;
  find_unset_fields(envelope, "Envelope", missing);
  CHECK(missing ==
        std::vector<std::string>{"Envelope.run_id", "Envelope.heartbeat.events_dropped"});

  v1::MetricsBatch batch = metrics_batch();
  batch.mutable_samples(1)->clear_labels();
  missing.clear();
  find_unset_fields(batch, "MetricsBatch", missing);
  CHECK(missing == std::vector<std::string>{"MetricsBatch.samples[1].labels"});

  missing.clear();
  find_unset_fields(v1::BreakerMessage(), "BreakerMessage", missing);
  CHECK(missing == std::vector<std::string>{"BreakerMessage.body"});
}

TEST_CASE("schema round-trips an envelope of every body kind with every field set", "[schema]") {
  struct row {
    std::string body;  // the oneof member's field name
    std::function<void(v1::Envelope&)> set_body;
  };
  const std::vector<row> rows = {
      {"metrics", [](v1::Envelope& e) { *e.mutable_metrics() = metrics_batch(); }},
      {"generation", [](v1::Envelope& e) { *e.mutable_generation() = generation_summary(); }},
      {"embeddings", [](v1::Envelope& e) { *e.mutable_embeddings() = embedding_batch(); }},
      {"agent_step", [](v1::Envelope& e) { *e.mutable_agent_step() = agent_step(); }},
      {"action", [](v1::Envelope& e) { *e.mutable_action() = action_request(); }},
      {"stage_timing", [](v1::Envelope& e) { *e.mutable_stage_timing() = stage_timing(); }},
      {"cycle_report", [](v1::Envelope& e) { *e.mutable_cycle_report() = cycle_report(); }},
      {"heartbeat", [](v1::Envelope& e) { *e.mutable_heartbeat() = heartbeat(); }},
  };

  std::set<std::string> covered;
  for (const row& r : rows) {
    INFO("body " << r.body);
    v1::Envelope envelope = envelope_header();
    r.set_body(envelope);
    const pb::FieldDescriptor* set =
        v1::Envelope::descriptor()->FindFieldByNumber(static_cast<int>(envelope.body_case()));
    REQUIRE(set != nullptr);
    CHECK(set->name() == r.body);
    covered.insert(r.body);
    check_complete_round_trip(envelope, "envelope with " + r.body);
  }

  // A body added to the schema must be added to the table above.
  const pb::OneofDescriptor* body = v1::Envelope::descriptor()->FindOneofByName("body");
  REQUIRE(body != nullptr);
  for (int i = 0; i < body->field_count(); ++i) {
    INFO("oneof member " << body->field(i)->name());
    CHECK(covered.count(body->field(i)->name()) == 1);
  }
  CHECK(covered.size() == static_cast<std::size_t>(body->field_count()));
}

TEST_CASE("schema round-trips breaker messages with every field set", "[schema]") {
  v1::BreakerMessage transition;
  *transition.mutable_transition() = breaker_transition();
  check_complete_round_trip(transition, "breaker transition");

  v1::BreakerMessage snapshot;
  *snapshot.mutable_snapshot() = breaker_snapshot();
  check_complete_round_trip(snapshot, "breaker snapshot");

  const pb::OneofDescriptor* body = v1::BreakerMessage::descriptor()->FindOneofByName("body");
  REQUIRE(body != nullptr);
  CHECK(body->field_count() == 2);  // a new member needs a row above
}

TEST_CASE("schema round-trips gate requests and decisions with every field set", "[schema]") {
  v1::GateRequest request;
  request.set_request_id("gate-1");
  request.set_source("agent/alpha");
  request.set_run_id("run-42");
  *request.mutable_action() = action_request();
  request.set_timeout_ms(250);
  request.set_time_unix_nano(1'700'000'000'000'000'003);
  request.set_approval_id("ap-000003");
  check_complete_round_trip(request, "gate request");

  v1::GateDecision decision;
  decision.set_request_id("gate-1");
  decision.set_verdict(v1::GATE_VERDICT_REQUIRE_APPROVAL);
  decision.set_reason("deletes outside the declared workspace");
  decision.set_rule_id("shell.rm_recursive_outside_workspace");
  decision.set_monitor("destructive_action");
  decision.set_alternative("rm -rf /work/repo/build");
  decision.set_approval_id("appr-3");
  check_complete_round_trip(decision, "gate decision");
}

TEST_CASE("schema round-trips every control command and the response", "[schema]") {
  const auto requests = one_per_oneof_member<v1::ControlRequest>(
      "command", [](v1::ControlRequest& r, const std::string& command) {
        r.set_request_id("ctl-" + command);
        if (command == "status") {
          r.mutable_status();
        } else if (command == "explain") {
          *r.mutable_explain()->mutable_breaker() = breaker_ref();
        } else if (command == "ack") {
          *r.mutable_ack()->mutable_breaker() = breaker_ref();
          r.mutable_ack()->set_note("looking");
        } else if (command == "reset") {
          *r.mutable_reset()->mutable_breaker() = breaker_ref();
          r.mutable_reset()->set_reason("rolled back to gen3");
        } else if (command == "force_open") {
          *r.mutable_force_open()->mutable_breaker() = breaker_ref();
          r.mutable_force_open()->set_reason("manual halt for the migration");
          r.mutable_force_open()->set_action(v1::BREAKER_ACTION_PAUSE);
        } else if (command == "reload") {
          r.mutable_reload();
        } else if (command == "approval") {
          r.mutable_approval()->set_approval_id("appr-3");
          r.mutable_approval()->set_approve(true);
          r.mutable_approval()->set_note("ok for staging");
        } else if (command == "approvals") {
          r.mutable_approvals()->set_all(true);
        } else if (command == "alert_test") {
          r.mutable_alert_test()->set_sink("pagerduty");
        }
        // An unknown command leaves the oneof unset, which the completeness check reports.
      });
  REQUIRE(requests.size() == 9);
  for (const auto& request : requests) check_complete_round_trip(request, request.request_id());

  v1::ControlResponse response;
  response.set_request_id("ctl-explain");
  response.set_ok(true);
  response.set_error("no breaker 'x' for run 'y'");
  *response.mutable_snapshot() = breaker_snapshot();
  *response.add_history() = breaker_transition();
  *response.add_history() = breaker_transition();
  response.set_message("training.collapse: half-open since 12:00");
  v1::SidecarStatus& st = *response.mutable_sidecar();
  st.set_version("0.1.0");
  st.set_started_unix_nano(1'767'225'600'000'000'000);
  st.set_config_source("/etc/loopwarden/loopwarden.yaml");
  st.set_events(1000);
  st.set_malformed(3);
  st.set_dropped(2);
  st.set_duplicates(1);
  st.set_queue_depth(17);
  st.set_reloads(4);
  st.set_last_reload_error("monitors[0].config.window: expected a positive integer");
  st.set_gate_requests(12);
  st.set_state_store("/var/lib/loopwarden/loopwarden.db");
  st.set_store_errors(1);
  st.set_audit_head_seq(42);
  st.set_audit_head_hash(std::string(64, 'a'));
  st.set_approvals_pending(2);
  auto* sink = st.add_alert_sinks();
  sink->set_name("pagerduty");
  sink->set_type("pagerduty");
  sink->set_queue_depth(1);
  sink->set_sent(9);
  sink->set_failed(1);
  sink->set_retried(3);
  sink->set_fell_back(1);
  sink->set_deferred(2);
  auto* ap = response.add_approvals();
  ap->set_id("ap-000003");
  ap->set_created_unix_nano(1'767'225'600'000'000'000);
  ap->set_expires_unix_nano(1'767'229'200'000'000'000);
  ap->set_monitor("destructive_action");
  ap->set_breaker("agent.destructive");
  ap->set_run_id("run-7");
  ap->set_summary("rm -rf build/ — outside the workspace");
  ap->set_detail_json("{}");
  ap->set_requested_by("agent/1");
  ap->set_state("approved");
  ap->set_decided_by("unix:alice");
  ap->set_reason("build dir only");
  ap->set_decided_unix_nano(1'767'225'700'000'000'000);
  auto* in = st.add_ingest();
  in->set_endpoint("ipc:///run/lw/ingest.sock");
  in->set_socket("pull");
  in->set_received(1003);
  in->set_malformed(3);
  auto* src = st.add_sources();
  src->set_source("trainer/rank0");
  src->set_run_id("run-7");
  src->set_received(999);
  src->set_lost(5);
  src->set_duplicates(1);
  src->set_late(2);
  src->set_restarts(1);
  src->set_heartbeats(30);
  src->set_last_seen_unix_nano(1'767'225'600'500'000'000);
  src->set_silent(true);
  src->set_closing(true);
  src->set_malformed(2);
  src->set_dropped(7);
  src->set_monitor_dropped(5);
  auto* mon = st.add_monitors();
  mon->set_name("loss_guard");
  mon->set_plugin("threshold");
  mon->set_version("1.0.0");
  mon->set_state("active");
  mon->set_events(990);
  mon->set_gates(12);
  mon->set_ticks(40);
  mon->set_errors(1);
  mon->set_last_error("on_event: std::runtime_error: boom");
  mon->set_total_call_ns(123456);
  mon->set_max_call_ns(9999);
  mon->add_call_ns_buckets(990);
  mon->add_call_ns_buckets(52);
  mon->set_hangs(1);
  mon->set_dropped(12);
  mon->set_queue_depth(3);
  auto* g = mon->add_gauges();
  g->set_name("samples");
  g->set_value(990);
  check_complete_round_trip(response, "control response");
}

TEST_CASE("schema round-trips the replay header with every field set", "[schema]") {
  v1::ReplayHeader header;
  *header.mutable_schema() = schema_version();
  header.set_created_unix_nano(1'700'000'000'000'000'004);
  header.set_producer("loopwarden record 0.1.0");
  header.set_description("nightly run");
  check_complete_round_trip(header, "replay header");
}

TEST_CASE("schema keeps unknown fields through parse and re-serialize", "[schema]") {
  // A newer producer's envelope: two fields this schema does not know at the top level, one
  // inside the heartbeat, and a body kind from the future (field 49, inside the body range).
  v1::Envelope known;
  known.set_source("trainer/rank0");
  known.set_seq(3);
  known.mutable_heartbeat()->set_interval_ms(1000);

  pb::UnknownFieldSet top;
  top.AddVarint(999, 123456789);
  top.AddLengthDelimited(1000, "future payload");
  pb::UnknownFieldSet inner;
  inner.AddFixed32(50, 0xdeadbeefu);
  const std::string top_bytes = encode_unknown(top);
  const std::string inner_bytes = encode_unknown(inner);

  // The heartbeat's own bytes plus its unknown field, as a length-delimited field 17.
  const std::string heartbeat_bytes = known.heartbeat().SerializeAsString() + inner_bytes;
  v1::Envelope without_body = known;
  without_body.clear_heartbeat();
  pb::UnknownFieldSet body;
  body.AddLengthDelimited(17, heartbeat_bytes);
  const std::string wire = without_body.SerializeAsString() + encode_unknown(body) + top_bytes;

  v1::Envelope parsed;
  REQUIRE(parsed.ParseFromString(wire));
  CHECK(parsed.source() == "trainer/rank0");
  CHECK(parsed.heartbeat().interval_ms() == 1000);
  const pb::UnknownFieldSet& unknown = parsed.GetReflection()->GetUnknownFields(parsed);
  REQUIRE(unknown.field_count() == 2);
  CHECK(unknown.field(0).number() == 999);
  CHECK(unknown.field(0).varint() == 123456789u);
  CHECK(unknown.field(1).number() == 1000);
  CHECK(unknown.field(1).length_delimited() == "future payload");
  const auto& hb = parsed.heartbeat();
  REQUIRE(hb.GetReflection()->GetUnknownFields(hb).field_count() == 1);

  // Known fields serialize in field order, unknown ones after them: the bytes come back as sent.
  const std::string reserialized = parsed.SerializeAsString();
  CHECK(reserialized == wire);
  v1::Envelope again;
  REQUIRE(again.ParseFromString(reserialized));
  CHECK(MessageDifferencer::Equals(again, parsed));
  CHECK(again.GetReflection()->GetUnknownFields(again).field_count() == 2);

  // A body kind this schema does not know: the body reads as unset (kind_of gives nullopt, the
  // engine counts it), and the bytes still survive a re-serialize.
  pb::UnknownFieldSet future;
  future.AddLengthDelimited(49, "a body from v1.9");
  const std::string future_wire = without_body.SerializeAsString() + encode_unknown(future);
  v1::Envelope future_envelope;
  REQUIRE(future_envelope.ParseFromString(future_wire));
  CHECK(future_envelope.body_case() == v1::Envelope::BODY_NOT_SET);
  CHECK_FALSE(sdk::kind_of(future_envelope).has_value());
  CHECK(future_envelope.SerializeAsString() == future_wire);
}

TEST_CASE("event kinds map every envelope body to its topic and back", "[schema]") {
  const pb::OneofDescriptor* body = v1::Envelope::descriptor()->FindOneofByName("body");
  REQUIRE(body != nullptr);
  CHECK(static_cast<std::size_t>(body->field_count()) == sdk::event_kind_count);

  std::set<sdk::event_kind> seen;
  for (int i = 0; i < body->field_count(); ++i) {
    const pb::FieldDescriptor* field = body->field(i);
    INFO("body " << field->name() << " = " << field->number());
    v1::Envelope envelope;
    envelope.GetReflection()->MutableMessage(&envelope, field);
    REQUIRE(envelope.body_case() == field->number());

    const std::optional<sdk::event_kind> kind = sdk::kind_of(envelope);
    REQUIRE(kind.has_value());
    CHECK(seen.insert(*kind).second);  // no two bodies share a kind
    // Topic names are the oneof member names, so a topic reads the same as the schema.
    CHECK(sdk::topic_name(*kind) == field->name());
    CHECK(sdk::parse_event_kind(field->name()) == kind);
  }
  CHECK(seen.size() == sdk::event_kind_count);

  for (std::size_t k = 0; k < sdk::event_kind_count; ++k) {
    const auto kind = static_cast<sdk::event_kind>(k);
    INFO("kind " << k << " topic " << sdk::topic_name(kind));
    CHECK(sdk::parse_event_kind(sdk::topic_name(kind)) == kind);
  }

  CHECK_FALSE(sdk::kind_of(v1::Envelope()).has_value());
}

TEST_CASE("event kinds refuse topic names that are not exact", "[schema]") {
  for (const char* topic : {"", "Metrics", "metric", "heartbeat ", " action", "agent-step",
                            "agentstep", "body", "unknown"}) {
    INFO("topic '" << topic << "'");
    CHECK_FALSE(sdk::parse_event_kind(topic).has_value());
  }
}
