#include <catch2/catch.hpp>

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <vector>

#include <google/protobuf/util/message_differencer.h>
#include <sqlite3.h>
#include <nlohmann/json.hpp>

#include <loopwarden/core/alert_router.hpp>
#include <loopwarden/core/breaker_registry.hpp>
#include <loopwarden/core/config.hpp>
#include <loopwarden/core/sqlite_store.hpp>

using namespace loopwarden;
namespace fs = std::filesystem;
using core::approval;
using core::approval_state;
using core::breaker_key;
using core::outbox_alert;
using core::sqlite_state_store;
using google::protobuf::util::MessageDifferencer;

namespace {

class temp_dir {
 public:
  temp_dir() {
    std::string pattern = (fs::temp_directory_path() / "lw-store-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

std::unique_ptr<sqlite_state_store> open_store(const fs::path& db) {
  auto opened = sqlite_state_store::open(db);
  INFO(opened.error().message());
  REQUIRE(opened.ok());
  return std::move(opened).value();
}

// Rows of a query run on the database directly, each column as text ("" for NULL).
std::vector<std::vector<std::string>> query_sql(const fs::path& db, const std::string& sql) {
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  std::vector<std::vector<std::string>> rows;
  char* error = nullptr;
  const int rc = sqlite3_exec(
      raw, sql.c_str(),
      [](void* out, int n, char** values, char**) {
        auto& r = *static_cast<std::vector<std::vector<std::string>>*>(out);
        r.emplace_back();
        for (int i = 0; i < n; ++i) r.back().emplace_back(values[i] != nullptr ? values[i] : "");
        return 0;
      },
      &rows, &error);
  const std::string message = error != nullptr ? error : "";
  sqlite3_free(error);
  sqlite3_close(raw);
  INFO(sql << ": " << message);
  REQUIRE(rc == SQLITE_OK);
  return rows;
}

void exec_sql(const fs::path& db, const std::string& sql) {
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) ==
          SQLITE_OK);
  char* error = nullptr;
  const int rc = sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, &error);
  const std::string message = error != nullptr ? error : "";
  sqlite3_free(error);
  sqlite3_close(raw);
  INFO(sql << ": " << message);
  REQUIRE(rc == SQLITE_OK);
}

// The kinds of every audit record, in order, from an export.
std::vector<std::string> audit_kinds(const fs::path& db) {
  std::ostringstream out;
  auto st = core::export_audit(db, out);
  INFO(st.message());
  REQUIRE(st.ok());
  std::vector<std::string> kinds;
  std::istringstream lines(out.str());
  std::string line;
  while (std::getline(lines, line)) {
    kinds.push_back(nlohmann::json::parse(line).at("kind").get<std::string>());
  }
  return kinds;
}

core::trip_input make_trip(std::string name, std::string run, std::int64_t t) {
  core::trip_input in;
  in.breaker = std::move(name);
  in.run_id = std::move(run);
  in.monitor = "variance_collapse";
  in.reason = "variance fell below 0.1 of its baseline";
  in.evidence = {{"variance", "0.004"}, {"baseline", "0.31"}, {"generation", "12"}};
  in.action = sdk::breaker_action::rollback;
  in.severity = sdk::severity::warning;
  in.time_unix_nano = t;
  in.trigger_source = "trainer/rank0";
  in.trigger_seq = 77;
  return in;
}

// A hand-made transition, for fields the registry does not set (shadow).
v1::BreakerTransition shadow_trip() {
  v1::BreakerTransition t;
  auto* b = t.mutable_breaker();
  b->set_name("agent.drift");
  b->set_scope(v1::BREAKER_SCOPE_RUN);
  b->set_run_id("run-9");
  b->set_state(v1::BREAKER_STATE_OPEN);
  b->set_action(v1::BREAKER_ACTION_ALERT);
  b->set_severity(v1::SEVERITY_INFO);
  b->set_epoch(1);
  b->set_monitor("agent_drift_trial");
  b->set_reason("cosine distance 0.41 over 20 turns");
  auto* e = b->add_evidence();
  e->set_key("distance");
  e->set_value("0.41");
  b->set_changed_unix_nano(4242);
  b->set_trips(1);
  b->set_shadow(true);
  t.set_previous(v1::BREAKER_STATE_CLOSED);
  t.set_cause("trip");
  return t;
}

outbox_alert make_alert(std::string sink, std::string fingerprint) {
  outbox_alert a;
  a.sink = std::move(sink);
  a.fingerprint = std::move(fingerprint);
  a.kind = "trigger";
  a.payload_json = "{\"summary\":\"" + a.fingerprint + "\"}";
  a.created_unix_nano = 10;
  return a;
}

// Plans one alert per sink for trips, none for anything else.
std::vector<outbox_alert> plan_trips(const v1::BreakerTransition& t) {
  if (t.cause() != "trip") return {};
  const std::string fp =
      t.breaker().name() + "/" + t.breaker().run_id() + "/" + std::to_string(t.breaker().epoch());
  return {make_alert("slack", fp), make_alert("pagerduty", fp)};
}

void require_equal(const v1::BreakerStatus& want, const v1::BreakerStatus& got) {
  std::string diff;
  MessageDifferencer differ;
  differ.ReportDifferencesToString(&diff);
  INFO(want.name() << " " << want.run_id() << ": " << diff);
  CHECK(differ.Compare(want, got));
}

constexpr std::chrono::nanoseconds probation{std::chrono::seconds(60)};

}  // namespace

TEST_CASE("a reopened store restores every breaker exactly", "[sqlite_store]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  v1::BreakerSnapshot before;
  {
    auto store = open_store(db);
    core::breaker_registry registry(*store, probation);
    REQUIRE(registry.restore().ok());
    // open, with evidence
    REQUIRE(registry.trip(make_trip("training.collapse", "run-1", 100)));
    // open and acknowledged
    REQUIRE(registry.trip(make_trip("training.collapse", "run-2", 110)));
    REQUIRE(registry.acknowledge({"training.collapse", "run-2"}, "alice", "looking", 120).ok());
    // half-open, on probation
    auto global = make_trip("review.bottleneck", "", 130);
    global.scope = sdk::breaker_scope::global;
    REQUIRE(registry.trip(global));
    REQUIRE(registry.reset({"review.bottleneck", ""}, "bob", "queue drained", 140).ok());
    // forced open by an operator
    REQUIRE(registry
                .force_open({"ops.freeze", ""}, "carol", "change freeze",
                            sdk::breaker_action::pause, 150)
                .ok());
    before = registry.snapshot();
    // a shadow breaker
    REQUIRE(store->record(shadow_trip()).ok());
    *before.add_breakers() = shadow_trip().breaker();
    REQUIRE(registry.store_errors() == 0);
  }
  std::sort(before.mutable_breakers()->begin(), before.mutable_breakers()->end(),
            [](const auto& a, const auto& b) {
              return std::tie(a.name(), a.run_id()) < std::tie(b.name(), b.run_id());
            });

  auto store = open_store(db);
  auto loaded = store->load();
  REQUIRE(loaded.ok());
  REQUIRE(loaded->size() == 5);
  for (int i = 0; i < before.breakers_size(); ++i) require_equal(before.breakers(i), (*loaded)[i]);

  // Spot checks that the oracle itself holds what the test means.
  const auto& half_open = (*loaded)[2];
  CHECK(half_open.name() == "review.bottleneck");
  CHECK(half_open.state() == v1::BREAKER_STATE_HALF_OPEN);
  CHECK(half_open.probation_until_unix_nano() == 140 + probation.count());
  CHECK((*loaded)[1].name() == "ops.freeze");
  CHECK((*loaded)[1].state() == v1::BREAKER_STATE_FORCED_OPEN);
  CHECK((*loaded)[4].run_id() == "run-2");
  CHECK((*loaded)[4].acknowledged_by() == "alice");
  CHECK((*loaded)[0].shadow());

  // A registry restored from it has the same snapshot.
  core::breaker_registry restored(*store, probation);
  REQUIRE(restored.restore().ok());
  auto after = restored.snapshot();
  REQUIRE(after.breakers_size() == 5);
  for (int i = 0; i < 5; ++i) require_equal(before.breakers(i), after.breakers(i));
  // An open breaker stays latched after the restart.
  CHECK_FALSE(restored.trip(make_trip("training.collapse", "run-1", 200)));
}

TEST_CASE("the breakers table holds readable columns beside the exact blob", "[sqlite_store]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  {
    auto store = open_store(db);
    core::breaker_registry registry(*store, probation);
    REQUIRE(registry.trip(make_trip("training.collapse", "run-1", 100)));
    REQUIRE(registry.acknowledge({"training.collapse", "run-1"}, "alice", "on it", 120).ok());
  }
  auto rows = query_sql(db,
                        "SELECT state, epoch, action, severity, scope, monitor, reason, "
                        "json_extract(evidence, '$[0].key'), json_extract(evidence, '$[0].value'),"
                        " shadow, acknowledged, acknowledged_by, trips, changed_unix_nano "
                        "FROM breakers");
  REQUIRE(rows.size() == 1);
  CHECK(rows[0] == std::vector<std::string>{"open", "2", "rollback", "warning", "run",
                                            "variance_collapse",
                                            "variance fell below 0.1 of its baseline", "variance",
                                            "0.004", "0", "1", "alice", "1", "120"});
  CHECK(query_sql(db, "PRAGMA journal_mode")[0][0] == "wal");
  CHECK(query_sql(db, "PRAGMA user_version")[0][0] ==
        std::to_string(sqlite_state_store::schema_version));
}

TEST_CASE("record writes the transition, the operator action and the audit record together",
          "[sqlite_store]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  {
    auto store = open_store(db);
    core::breaker_registry registry(*store, probation);
    REQUIRE(registry.trip(make_trip("training.collapse", "run-1", 100)));
    REQUIRE(registry.acknowledge({"training.collapse", "run-1"}, "alice", "looking", 110).ok());
    REQUIRE(registry.reset({"training.collapse", "run-1"}, "alice", "rolled back", 120).ok());
    REQUIRE(registry
                .force_open({"training.collapse", "run-1"}, "bob", "hold",
                            sdk::breaker_action::halt, 130)
                .ok());
    REQUIRE(registry.store_errors() == 0);
  }
  CHECK(query_sql(db,
                  "SELECT action, operator_id, reason, epoch, name, run_id, time_unix_nano "
                  "FROM operator_actions ORDER BY id") ==
        std::vector<std::vector<std::string>>{
            {"ack", "alice", "looking", "2", "training.collapse", "run-1", "110"},
            {"reset", "alice", "rolled back", "3", "training.collapse", "run-1", "120"},
            {"force_open", "bob", "hold", "4", "training.collapse", "run-1", "130"}});
  CHECK(query_sql(db,
                  "SELECT cause, previous, state, trigger_source, trigger_seq FROM "
                  "transitions ORDER BY seq") ==
        std::vector<std::vector<std::string>>{{"trip", "closed", "open", "trainer/rank0", "77"},
                                              {"ack", "open", "open", "", "0"},
                                              {"reset", "open", "half_open", "", "0"},
                                              {"force_open", "half_open", "forced_open", "", "0"}});
  CHECK(audit_kinds(db) == std::vector<std::string>{"trip", "ack", "reset", "force_open"});
  auto audit = query_sql(db,
                         "SELECT actor, subject, json_extract(payload_json, '$.epoch'), "
                         "json_extract(payload_json, '$.evidence[1].value') FROM audit "
                         "ORDER BY seq");
  CHECK(audit[0] ==
        std::vector<std::string>{"variance_collapse", "training.collapse@run-1", "1", "0.31"});
  CHECK(audit[1][0] == "alice");
  CHECK(audit[3][0] == "bob");
  auto report = core::verify_audit(db);
  REQUIRE(report.ok());
  CHECK(report->intact());
  CHECK(report->count == 4);
}

TEST_CASE("history returns the newest transitions of one breaker, oldest first, after reopen",
          "[sqlite_store]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  {
    auto store = open_store(db);
    core::breaker_registry registry(*store, std::chrono::nanoseconds(0));
    for (int i = 0; i < 3; ++i) {
      REQUIRE(registry.trip(make_trip("a", "run-1", 100 + i)));
      // b is latched open after its first trip.
      CHECK(registry.trip(make_trip("b", "run-1", 100 + i)).has_value() == (i == 0));
      REQUIRE(registry.reset({"a", "run-1"}, "op", "again", 100 + i).ok());
    }
  }
  auto store = open_store(db);
  auto h = store->history("a", "run-1", 4);
  REQUIRE(h.ok());
  REQUIRE(h->size() == 4);
  std::vector<std::uint64_t> epochs;
  std::vector<std::string> causes;
  for (const auto& t : *h) {
    epochs.push_back(t.breaker().epoch());
    causes.push_back(t.cause());
  }
  CHECK(epochs == std::vector<std::uint64_t>{3, 4, 5, 6});
  CHECK(causes == std::vector<std::string>{"trip", "reset", "trip", "reset"});
  CHECK(store->history("b", "run-1", 100)->size() == 1);  // latched after its first trip
  CHECK(store->history("a", "run-1", 0)->empty());
  CHECK(store->history("a", "run-2", 10)->empty());
}

TEST_CASE("a trip recorded before kill -9 is open after restart with its alerts pending once",
          "[sqlite_store]") {
  // Both sync modes survive the daemon's death (normal gives up only a machine crash).
  const auto sync =
      GENERATE(sqlite_state_store::sync_mode::full, sqlite_state_store::sync_mode::normal);
  INFO("sync mode " << (sync == sqlite_state_store::sync_mode::full ? "full" : "normal"));
  temp_dir dir;
  const auto db = dir / "state.db";
  v1::BreakerTransition trip;
  {
    // The transition the child will record, made by the real registry over a throwaway store.
    core::memory_breaker_store scratch;
    core::breaker_registry registry(scratch, probation);
    auto t = registry.trip(make_trip("training.collapse", "run-1", 100));
    REQUIRE(t);
    trip = *t;
  }
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    sqlite_state_store::open_options options;
    options.sync = sync;
    auto opened = sqlite_state_store::open(db, options);
    if (!opened.ok()) ::_exit(2);
    auto& store = **opened;
    store.set_alert_planner(plan_trips);
    if (!store.record(trip).ok()) ::_exit(3);
    const char byte = 'r';
    if (::write(fds[1], &byte, 1) != 1) ::_exit(4);
    for (;;) ::pause();
  }
  ::close(fds[1]);
  char byte = 0;
  const auto got = ::read(fds[0], &byte, 1);
  ::kill(child, SIGKILL);
  int wstatus = 0;
  REQUIRE(::waitpid(child, &wstatus, 0) == child);
  ::close(fds[0]);
  REQUIRE(got == 1);
  REQUIRE(WIFSIGNALED(wstatus));
  CHECK(WTERMSIG(wstatus) == SIGKILL);
  // Killed, not closed: the transition is only in the write-ahead log.
  CHECK(fs::exists(db.string() + "-wal"));

  for (int reopen = 0; reopen < 2; ++reopen) {
    INFO("reopen " << reopen);
    auto store = open_store(db);
    auto loaded = store->load();
    REQUIRE(loaded.ok());
    REQUIRE(loaded->size() == 1);
    const auto& b = (*loaded)[0];
    CHECK(b.state() == v1::BREAKER_STATE_OPEN);
    CHECK(b.epoch() == trip.breaker().epoch());
    require_equal(trip.breaker(), b);
    auto pending = store->pending(10);
    REQUIRE(pending.ok());
    REQUIRE(pending->size() == 2);
    CHECK((*pending)[0].sink == "slack");
    CHECK((*pending)[1].sink == "pagerduty");
    CHECK((*pending)[0].fingerprint == "training.collapse/run-1/1");
    CHECK((*pending)[0].created_unix_nano == 10);
    CHECK((*pending)[0].attempts == 0);
    auto history = store->history("training.collapse", "run-1", 10);
    REQUIRE(history.ok());
    REQUIRE(history->size() == 1);
    CHECK(MessageDifferencer::Equals((*history)[0], trip));
  }
  auto report = core::verify_audit(db);
  REQUIRE(report.ok());
  CHECK(report->intact());
  CHECK(report->count == 1);
}

TEST_CASE("the outbox returns pending alerts oldest first and forgets settled ones",
          "[sqlite_store]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  std::int64_t a = 0, b = 0, c = 0;
  {
    auto store = open_store(db);
    REQUIRE(
        store->enqueue({make_alert("slack", "a"), make_alert("slack", "b"), make_alert("log", "c")})
            .ok());
    auto all = store->pending(10);
    REQUIRE(all.ok());
    REQUIRE(all->size() == 3);
    a = (*all)[0].id;
    b = (*all)[1].id;
    c = (*all)[2].id;
    CHECK((*all)[0].fingerprint == "a");
    CHECK((*all)[2].fingerprint == "c");
    CHECK(a < b);
    CHECK(b < c);
    CHECK(store->pending(2)->size() == 2);
    CHECK(store->pending(0)->empty());

    REQUIRE(store->mark_attempt(b, 2, 12345, "http 503").ok());
    REQUIRE(store->mark_delivered(a, "slack", 500).ok());
    REQUIRE(store->mark_failed(c, "gave up after 5 attempts", 600).ok());

    auto left = store->pending(10);
    REQUIRE(left.ok());
    REQUIRE(left->size() == 1);
    CHECK((*left)[0].id == b);
    CHECK((*left)[0].attempts == 2);
    CHECK((*left)[0].next_attempt_unix_nano == 12345);
    CHECK((*left)[0].last_error == "http 503");

    auto unknown = store->mark_delivered(9999, "slack", 700);
    CHECK(unknown.code() == sdk::status_code::not_found);
    CHECK_THAT(unknown.message(), Catch::Contains(db.string()));
    CHECK(store->mark_attempt(9999, 1, 0, "x").code() == sdk::status_code::not_found);
    CHECK(store->mark_failed(9999, "x", 0).code() == sdk::status_code::not_found);
    // Settling twice changes nothing.
    CHECK(store->mark_delivered(a, "slack", 800).ok());
    CHECK(store->mark_attempt(a, 9, 0, "late").ok());
    CHECK(store->pending(10)->size() == 1);
  }
  auto store = open_store(db);
  auto left = store->pending(10);
  REQUIRE(left.ok());
  REQUIRE(left->size() == 1);
  CHECK((*left)[0].id == b);
  CHECK((*left)[0].attempts == 2);
  CHECK(query_sql(db,
                  "SELECT id, state, delivered_via, finished_unix_nano FROM outbox ORDER BY "
                  "id") ==
        std::vector<std::vector<std::string>>{{std::to_string(a), "delivered", "slack", "500"},
                                              {std::to_string(b), "pending", "", "0"},
                                              {std::to_string(c), "failed", "", "600"}});
  // Ids are never reused, even for the last row.
  REQUIRE(store->enqueue({make_alert("slack", "d")}).ok());
  CHECK(store->pending(10)->back().id > c);
}

TEST_CASE("record writes the planner's alerts in the same transaction, none without a planner",
          "[sqlite_store]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  auto store = open_store(db);
  core::breaker_registry registry(*store, probation);
  REQUIRE(registry.trip(make_trip("no.planner", "run-1", 100)));
  CHECK(store->pending(10)->empty());

  store->set_alert_planner(plan_trips);
  REQUIRE(registry.trip(make_trip("training.collapse", "run-1", 100)));
  REQUIRE(registry.acknowledge({"training.collapse", "run-1"}, "alice", "", 110).ok());
  auto pending = store->pending(10);
  REQUIRE(pending.ok());
  REQUIRE(pending->size() == 2);  // the ack planned nothing
  auto linked = query_sql(db,
                          "SELECT t.cause, t.name FROM outbox o JOIN transitions t ON "
                          "o.transition_seq = t.seq ORDER BY o.id");
  CHECK(linked == std::vector<std::vector<std::string>>{{"trip", "training.collapse"},
                                                        {"trip", "training.collapse"}});
}

TEST_CASE("a throwing planner is counted and audited and the transition is still recorded",
          "[sqlite_store]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  auto store = open_store(db);
  store->set_alert_planner([](const v1::BreakerTransition&) -> std::vector<outbox_alert> {
    throw std::runtime_error("no sink named 'pager'");
  });
  core::breaker_registry registry(*store, probation);
  REQUIRE(registry.trip(make_trip("training.collapse", "run-1", 100)));
  CHECK(registry.store_errors() == 0);
  CHECK(store->planner_errors() == 1);
  CHECK(store->pending(10)->empty());
  CHECK(store->load()->size() == 1);
  CHECK(audit_kinds(db) == std::vector<std::string>{"trip", "alert_planner_error"});
  CHECK(query_sql(db,
                  "SELECT json_extract(payload_json, '$.error') FROM audit WHERE seq = 2")[0][0] ==
        "no sink named 'pager'");
}

TEST_CASE("approvals are created, decided once, expired, audited and kept", "[sqlite_store]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  {
    auto store = open_store(db);
    approval first;
    first.created_unix_nano = 100;
    first.monitor = "destructive_action";
    first.breaker = "agent.destructive";
    first.run_id = "run-1";
    first.summary = "rm -rf build/ outside the task scope";
    first.detail_json = "{\"command\":\"rm -rf build/\"}";
    first.requested_by = "agent/session-4";
    auto id1 = store->create_approval(first);
    REQUIRE(id1.ok());
    CHECK(*id1 == "ap-000001");

    approval second = first;
    second.expires_unix_nano = 1000;
    CHECK(*store->create_approval(second) == "ap-000002");
    approval named = first;
    named.id = "gate-7";
    CHECK(*store->create_approval(named) == "gate-7");
    auto dup = store->create_approval(named);
    REQUIRE_FALSE(dup.ok());
    CHECK(dup.error().code() == sdk::status_code::failed_precondition);
    approval bad = first;
    bad.detail_json = "{not json";
    CHECK(store->create_approval(bad).error().code() == sdk::status_code::invalid_argument);
    approval decided = first;
    decided.state = approval_state::approved;
    CHECK(store->create_approval(decided).error().code() == sdk::status_code::invalid_argument);

    CHECK(store->list_approvals(true)->size() == 3);

    auto approved = store->decide_approval("ap-000001", true, "alice", "build dir only", 500);
    REQUIRE(approved.ok());
    CHECK(approved->state == approval_state::approved);
    CHECK(approved->decided_by == "alice");
    CHECK(approved->reason == "build dir only");
    CHECK(approved->decided_unix_nano == 500);

    auto again = store->decide_approval("ap-000001", false, "bob", "no", 600);
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().code() == sdk::status_code::failed_precondition);
    CHECK_THAT(again.error().message(), Catch::Contains("already approved by alice"));
    CHECK(store->decide_approval("gate-7", false, "", "", 600).error().code() ==
          sdk::status_code::refused);
    CHECK(store->decide_approval("ap-999999", true, "bob", "", 600).error().code() ==
          sdk::status_code::not_found);
    auto denied = store->decide_approval("gate-7", false, "bob", "", 600);
    REQUIRE(denied.ok());
    CHECK(denied->state == approval_state::denied);

    // Past its expiry a decision is refused, and the approval is marked expired.
    auto late = store->decide_approval("ap-000002", true, "carol", "ok", 2000);
    REQUIRE_FALSE(late.ok());
    CHECK(late.error().code() == sdk::status_code::failed_precondition);
    CHECK_THAT(late.error().message(), Catch::Contains("expired"));
    CHECK(store->get_approval("ap-000002")->state == approval_state::expired);

    approval fourth = first;
    fourth.expires_unix_nano = 3000;
    CHECK(*store->create_approval(fourth) == "ap-000004");
    CHECK(store->expire_approvals(2999)->empty());
    auto expired = store->expire_approvals(3000);
    REQUIRE(expired.ok());
    REQUIRE(expired->size() == 1);
    CHECK((*expired)[0].id == "ap-000004");
    CHECK((*expired)[0].state == approval_state::expired);
    CHECK(store->list_approvals(true)->empty());
    CHECK(store->get_approval("nope").error().code() == sdk::status_code::not_found);
  }
  auto store = open_store(db);
  auto all = store->list_approvals(false);
  REQUIRE(all.ok());
  REQUIRE(all->size() == 4);
  std::vector<std::string> ids;
  std::vector<approval_state> states;
  for (const auto& a : *all) {
    ids.push_back(a.id);
    states.push_back(a.state);
  }
  CHECK(ids == std::vector<std::string>{"ap-000001", "ap-000002", "gate-7", "ap-000004"});
  CHECK(states == std::vector<approval_state>{approval_state::approved, approval_state::expired,
                                              approval_state::denied, approval_state::expired});
  const auto first = store->get_approval("ap-000001");
  REQUIRE(first.ok());
  CHECK(first->summary == "rm -rf build/ outside the task scope");
  CHECK(first->detail_json == "{\"command\":\"rm -rf build/\"}");
  CHECK(first->requested_by == "agent/session-4");
  CHECK(first->created_unix_nano == 100);
  CHECK(audit_kinds(db) == std::vector<std::string>{"approval_requested", "approval_requested",
                                                    "approval_requested", "approval_approved",
                                                    "approval_denied", "approval_expired",
                                                    "approval_requested", "approval_expired"});
  CHECK(core::verify_audit(db)->intact());

  // An approval lets one action through: using it twice is refused.
  auto used = store->use_approval("ap-000001", "agent/session-4", 4000);
  REQUIRE(used.ok());
  CHECK(used->state == approval_state::used);
  CHECK(used->decided_by == "alice");  // the decision is kept
  auto twice = store->use_approval("ap-000001", "agent/session-4", 4001);
  REQUIRE_FALSE(twice.ok());
  CHECK(twice.error().code() == sdk::status_code::failed_precondition);
  CHECK_THAT(twice.error().message(), Catch::Contains("it is used, not approved"));
  CHECK(store->use_approval("gate-7", "x", 4002).error().code() ==
        sdk::status_code::failed_precondition);  // denied
  CHECK(store->use_approval("nope", "x", 4002).error().code() == sdk::status_code::not_found);
  CHECK(store->get_approval("ap-000001")->state == approval_state::used);
  CHECK(audit_kinds(db).back() == "approval_used");
  CHECK(core::verify_audit(db)->intact());
}

TEST_CASE("append_audit records daemon events and rejects what is not JSON", "[sqlite_store]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  auto store = open_store(db);
  auto start = store->append_audit("daemon_start", "loopwarden", "", "{\"version\":\"0.1.0\"}", 0);
  REQUIRE(start.ok());
  CHECK(start->seq == 1);
  CHECK(start->time_unix_nano > 0);  // 0 means now
  CHECK(store->append_audit("daemon_stop", "loopwarden", "", "not json", 5).error().code() ==
        sdk::status_code::invalid_argument);
  CHECK(store->append_audit("", "loopwarden", "", "{}", 5).error().code() ==
        sdk::status_code::invalid_argument);
  auto head = store->audit_head();
  REQUIRE(head.ok());
  CHECK(head->seq == 1);
  CHECK(head->hash == start->hash);
}

TEST_CASE("concurrent writers keep every transition and an intact chain", "[sqlite_store]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  auto store = open_store(db);
  core::breaker_registry registry(*store, probation);
  constexpr int threads = 4;
  constexpr int per_thread = 10;
  {
    std::vector<std::jthread> workers;
    for (int w = 0; w < threads; ++w) {
      workers.emplace_back([&, w] {
        for (int i = 0; i < per_thread; ++i) {
          const std::string name = "b" + std::to_string(w) + "." + std::to_string(i);
          registry.trip(make_trip(name, "run", 100));
          static_cast<void>(store->append_audit("tick", "t", name, "{}", 1));
        }
      });
    }
  }
  CHECK(registry.store_errors() == 0);
  CHECK(store->load()->size() == threads * per_thread);
  auto report = core::verify_audit(db);
  REQUIRE(report.ok());
  CHECK(report->intact());
  CHECK(report->count == 2 * threads * per_thread);
}

TEST_CASE("a newer schema version is refused with the file's name", "[sqlite_store]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  open_store(db);
  const int newer = sqlite_state_store::schema_version + 1;
  exec_sql(db, "PRAGMA user_version = " + std::to_string(newer));
  auto opened = sqlite_state_store::open(db);
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.error().code() == sdk::status_code::refused);
  CHECK_THAT(opened.error().message(),
             Catch::Contains(db.string()) &&
                 Catch::Contains("schema version is " + std::to_string(newer)) &&
                 Catch::Contains("up to " + std::to_string(sqlite_state_store::schema_version)));
  auto verified = core::verify_audit(db);
  REQUIRE_FALSE(verified.ok());
  CHECK(verified.error().code() == sdk::status_code::refused);
}

TEST_CASE("open names the file it refuses", "[sqlite_store]") {
  temp_dir dir;
  struct row {
    const char* what;
    std::string file;
    sdk::status_code code;
    const char* says;
  };
  const auto text = dir / "notes.txt";
  std::ofstream(text) << "this is not an sqlite database, it is a text file of some length\n";
  const auto foreign = dir / "foreign.db";
  exec_sql(foreign, "CREATE TABLE users (name TEXT)");
  const auto missing = dir / "missing.db";
  const std::vector<row> rows = {
      {"a text file", text.string(), sdk::status_code::parse_error, "not a database"},
      {"another application's database", foreign.string(), sdk::status_code::refused,
       "something else"},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    auto opened = sqlite_state_store::open(r.file);
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.error().code() == r.code);
    CHECK_THAT(opened.error().message(), Catch::Contains(r.file) && Catch::Contains(r.says));
  }
  sqlite_state_store::open_options no_create;
  no_create.create_if_missing = false;
  auto opened = sqlite_state_store::open(missing, no_create);
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.error().code() == sdk::status_code::not_found);
  CHECK_THAT(opened.error().message(), Catch::Contains(missing.string()));
  CHECK_FALSE(fs::exists(missing));

  // Parent directories are created when creating.
  const auto nested = dir / "state/dir/state.db";
  auto created = sqlite_state_store::open(nested);
  INFO(created.error().message());
  CHECK(created.ok());
}

TEST_CASE("a migrated database opens again without changes", "[sqlite_store]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  open_store(db);
  const auto schema = query_sql(db, "SELECT sql FROM sqlite_master ORDER BY name");
  open_store(db);
  CHECK(query_sql(db, "SELECT sql FROM sqlite_master ORDER BY name") == schema);
  CHECK(query_sql(db, "PRAGMA application_id")[0][0] == std::to_string(0x4C575354));
}

TEST_CASE("a locked database fails with timeout, the file and SQLite's reason, and recovers",
          "[sqlite_store]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  sqlite_state_store::open_options quick;
  quick.busy_timeout = std::chrono::milliseconds(50);
  auto opened = sqlite_state_store::open(db, quick);
  REQUIRE(opened.ok());
  auto& store = **opened;
  core::breaker_registry registry(store, probation);

  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &other, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  auto t = registry.trip(make_trip("training.collapse", "run-1", 100));
  CHECK(t.has_value());  // still published: a trip fails safe
  CHECK(registry.store_errors() == 1);
  auto st = store.record(*t);
  CHECK(st.code() == sdk::status_code::timeout);
  CHECK_THAT(st.message(), Catch::Contains("can't record trip of breaker 'training.collapse'") &&
                               Catch::Contains(db.string()) &&
                               Catch::Contains("database is locked"));
  auto ack = registry.acknowledge({"training.collapse", "run-1"}, "alice", "", 110);
  REQUIRE_FALSE(ack.ok());  // an operator action that is not recorded does not happen
  REQUIRE(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(other);

  // Nothing half-written, and the store works again.
  CHECK(store.load()->empty());
  REQUIRE(store.record(*t).ok());
  CHECK(store.load()->size() == 1);
  CHECK(core::verify_audit(db)->count == 1);
}

TEST_CASE("monitor states are saved as one set and read back byte for byte", "[sqlite_store]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  const std::string binary("\0\x01\xff state", 9);
  {
    auto store = open_store(db);
    REQUIRE(store
                ->save_monitor_states({{"vc", "variance_collapse", "0.2.0", binary, 7},
                                       {"drift", "goal_drift", "1.0.0", "x", 8}})
                .ok());
  }
  {
    auto store = open_store(db);  // a restart reads what the last run saved
    auto loaded = store->load_monitor_states();
    REQUIRE(loaded.ok());
    REQUIRE(loaded->size() == 2);
    CHECK((*loaded)[0].monitor == "drift");  // by instance name
    CHECK((*loaded)[1].monitor == "vc");
    CHECK((*loaded)[1].plugin == "variance_collapse");
    CHECK((*loaded)[1].version == "0.2.0");
    CHECK((*loaded)[1].state == binary);
    CHECK((*loaded)[1].saved_unix_nano == 7);
    // A new set replaces the old one entirely: a monitor with nothing to keep loses its row.
    REQUIRE(store->save_monitor_states({{"vc", "variance_collapse", "0.2.0", "newer", 9}}).ok());
    loaded = store->load_monitor_states();
    REQUIRE(loaded.ok());
    REQUIRE(loaded->size() == 1);
    CHECK((*loaded)[0].state == "newer");
  }
}

TEST_CASE("a schema 1 state store migrates and keeps its breakers", "[sqlite_store]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  {
    auto store = open_store(db);
    core::breaker_registry registry(*store, probation);
    REQUIRE(registry.restore().ok());
    core::trip_input in;
    in.breaker = "training.collapse";
    in.monitor = "vc";
    in.reason = "collapsing";
    in.run_id = "run-1";
    in.time_unix_nano = 100;
    registry.trip(in);
  }
  // What a version-1 daemon left behind: no monitor_states table, user_version 1.
  exec_sql(db, "DROP TABLE monitor_states; PRAGMA user_version = 1");
  auto store = open_store(db);
  CHECK(query_sql(db, "PRAGMA user_version")[0][0] ==
        std::to_string(sqlite_state_store::schema_version));
  auto loaded = store->load_monitor_states();
  REQUIRE(loaded.ok());
  CHECK(loaded->empty());
  auto breakers = store->load();
  REQUIRE(breakers.ok());
  REQUIRE(breakers->size() == 1);
  CHECK((*breakers)[0].state() == v1::BREAKER_STATE_OPEN);
}

namespace {

// The real approval planner over two sinks that both take approval.* (two rows per change).
core::approval_alert_planner approval_planner() {
  auto cfg = core::parse_config(R"(version: 1
alerts:
  sinks:
    - {name: log, type: log}
    - {name: pager, type: webhook, url: "http://127.0.0.1:9/hook"}
  routes:
    - {breakers: ["approval.*"], sinks: [log, pager]}
)",
                                "alerts.yaml");
  REQUIRE(cfg.ok());
  auto alerts = core::parse_alerts_config(cfg->root["alerts"]);
  INFO((alerts.ok() ? std::string() : alerts.error().message()));
  REQUIRE(alerts.ok());
  return core::make_approval_alert_planner(*alerts, "host:/state");
}

approval asked(std::int64_t created, std::int64_t expires) {
  approval a;
  a.created_unix_nano = created;
  a.expires_unix_nano = expires;
  a.monitor = "destructive_action";
  a.breaker = "agent.destructive";
  a.run_id = "run-1";
  a.summary = "rm -rf build/ outside the task scope";
  a.requested_by = "agent/session-4";
  return a;
}

// One outbox row as the router would see it, with what its payload says about the approval.
struct approval_row {
  std::string approval_id;  // the payload's evidence "approval_id"
  std::string kind;         // "approval" (the page) or "resolve"
  std::string state;        // the approval's state in the payload
  std::string sink;
  std::string fingerprint;
  std::string created;     // created_unix_nano
  std::string transition;  // transition_seq ("" when NULL: not a breaker's)
};

std::vector<approval_row> approval_rows(const fs::path& db) {
  std::vector<approval_row> out;
  for (const auto& r : query_sql(db,
                                 "SELECT kind, sink, fingerprint, payload_json, created_unix_nano, "
                                 "transition_seq FROM outbox ORDER BY id")) {
    const auto p = nlohmann::json::parse(r[3]);
    std::string id;
    for (const auto& e : p.at("evidence")) {
      if (e.at("key") == "approval_id") id = e.at("value").get<std::string>();
    }
    out.push_back({id, r[0], p.at("state").get<std::string>(), r[1], r[2], r[4], r[5]});
  }
  return out;
}

// (approval id, kind, state, sink) of each outbox row, in order.
std::vector<std::vector<std::string>> summarise(const std::vector<approval_row>& rows) {
  std::vector<std::vector<std::string>> out;
  for (const auto& r : rows) out.push_back({r.approval_id, r.kind, r.state, r.sink});
  return out;
}

template <typename T>
sdk::status status_of(const core::result<T>& r) {
  return r.ok() ? sdk::status::success() : r.error();
}

}  // namespace

TEST_CASE("each approval change commits its page or its resolve with it",
          "[sqlite_store][approvals]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  auto store = open_store(db);
  store->set_approval_alert_planner(approval_planner());

  REQUIRE(*store->create_approval(asked(100, 0)) == "ap-000001");
  REQUIRE(*store->create_approval(asked(110, 1000)) == "ap-000002");
  approval named = asked(120, 0);
  named.id = "gate-7";
  REQUIRE(*store->create_approval(named) == "gate-7");
  REQUIRE(*store->create_approval(asked(130, 3000)) == "ap-000004");
  // Every created approval has its page, one row per routed sink, and nothing else yet.
  CHECK(summarise(approval_rows(db)) == std::vector<std::vector<std::string>>{
                                            {"ap-000001", "approval", "pending", "log"},
                                            {"ap-000001", "approval", "pending", "pager"},
                                            {"ap-000002", "approval", "pending", "log"},
                                            {"ap-000002", "approval", "pending", "pager"},
                                            {"gate-7", "approval", "pending", "log"},
                                            {"gate-7", "approval", "pending", "pager"},
                                            {"ap-000004", "approval", "pending", "log"},
                                            {"ap-000004", "approval", "pending", "pager"},
                                        });

  REQUIRE(store->decide_approval("ap-000001", true, "alice", "build dir only", 500).ok());
  REQUIRE(store->decide_approval("gate-7", false, "bob", "", 600).ok());
  // A decision past the expiry is refused, but the expiry it found is committed, resolve and all.
  REQUIRE(store->decide_approval("ap-000002", true, "carol", "ok", 2000).error().code() ==
          sdk::status_code::failed_precondition);
  REQUIRE(store->expire_approvals(3000)->size() == 1);  // ap-000004
  // A used approval was resolved when it was approved: its use queues nothing.
  REQUIRE(store->use_approval("ap-000001", "agent/session-4", 4000).ok());

  const auto rows = approval_rows(db);
  CHECK(summarise({rows.begin() + 8, rows.end()}) ==
        std::vector<std::vector<std::string>>{
            {"ap-000001", "resolve", "approved", "log"},
            {"ap-000001", "resolve", "approved", "pager"},
            {"gate-7", "resolve", "denied", "log"},
            {"gate-7", "resolve", "denied", "pager"},
            {"ap-000002", "resolve", "expired", "log"},
            {"ap-000002", "resolve", "expired", "pager"},
            {"ap-000004", "resolve", "expired", "log"},
            {"ap-000004", "resolve", "expired", "pager"},
        });
  // Every approval in the store has its page and, once settled, its resolve, under one
  // fingerprint; the rows belong to no transition; the resolve is dated by the decision.
  const std::map<std::string, std::string> decided_at = {
      {"ap-000001", "500"}, {"gate-7", "600"}, {"ap-000002", "2000"}, {"ap-000004", "3000"}};
  const auto all = store->list_approvals(false);
  REQUIRE(all.ok());
  REQUIRE(all->size() == 4);
  for (const auto& a : *all) {
    INFO("approval " << a.id << " (" << core::to_string(a.state) << ")");
    std::set<std::string> fingerprints;
    int pages = 0;
    int resolves = 0;
    for (const auto& r : rows) {
      if (r.approval_id != a.id) continue;
      fingerprints.insert(r.fingerprint);
      CHECK(r.transition.empty());
      if (r.kind == "approval") {
        ++pages;
        CHECK(r.created == std::to_string(a.created_unix_nano));
      } else {
        ++resolves;
        CHECK(r.created == decided_at.at(a.id));
      }
    }
    CHECK(pages == 2);
    CHECK(resolves == (a.state == approval_state::pending ? 0 : 2));
    CHECK(fingerprints.size() == 1);
  }
  CHECK(store->planner_errors() == 0);
  CHECK(core::verify_audit(db)->intact());
}

// The outbox refusing a row (a trigger the test adds to the real database) must undo the whole
// change: committed apart, the approval would stand with no page (or no resolve), which is the
// state a kill between two commits used to leave.
TEST_CASE("an approval change whose alert cannot be queued is not committed and says why",
          "[sqlite_store][approvals]") {
  struct row {
    const char* what;
    std::function<sdk::status(sqlite_state_store&)> change;
    std::string names;  // what the error must name
  };
  const std::vector<row> rows = {
      {"create", [](sqlite_state_store& s) { return status_of(s.create_approval(asked(200, 0))); },
       "can't create an approval: can't queue the alert of approval 'ap-000003' for sink 'log'"},
      {"create with an id",
       [](sqlite_state_store& s) {
         approval a = asked(200, 0);
         a.id = "gate-9";
         return status_of(s.create_approval(a));
       },
       "can't create approval 'gate-9': can't queue the alert of approval 'gate-9' for sink "
       "'log'"},
      {"approve",
       [](sqlite_state_store& s) {
         return status_of(s.decide_approval("ap-000001", true, "alice", "ok", 500));
       },
       "can't approve approval 'ap-000001': can't queue the alert of approval 'ap-000001' for "
       "sink 'log'"},
      {"deny",
       [](sqlite_state_store& s) {
         return status_of(s.decide_approval("ap-000001", false, "bob", "no", 500));
       },
       "can't deny approval 'ap-000001': can't queue the alert of approval 'ap-000001' for sink "
       "'log'"},
      {"a decision that finds the approval expired",
       [](sqlite_state_store& s) {
         return status_of(s.decide_approval("ap-000002", true, "alice", "ok", 2000));
       },
       "can't approve approval 'ap-000002': can't queue the alert of approval 'ap-000002' for "
       "sink 'log'"},
      {"expire", [](sqlite_state_store& s) { return status_of(s.expire_approvals(2000)); },
       "can't expire approvals: can't queue the alert of approval 'ap-000002' for sink 'log'"},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    temp_dir dir;
    const auto db = dir / "state.db";
    auto store = open_store(db);
    store->set_approval_alert_planner(approval_planner());
    REQUIRE(*store->create_approval(asked(100, 0)) == "ap-000001");
    REQUIRE(*store->create_approval(asked(110, 1000)) == "ap-000002");

    const auto approvals_before = query_sql(db, "SELECT * FROM approvals ORDER BY n");
    const auto audit_before = query_sql(db, "SELECT seq, hash FROM audit ORDER BY seq");
    const auto outbox_before = query_sql(db, "SELECT * FROM outbox ORDER BY id");
    REQUIRE(outbox_before.size() == 4);
    exec_sql(db,
             "CREATE TRIGGER outbox_refuses BEFORE INSERT ON outbox "
             "BEGIN SELECT RAISE(ABORT, 'outbox refused by the test'); END;");

    const sdk::status refused = r.change(*store);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.code() == sdk::status_code::failed_precondition);
    CHECK_THAT(refused.message(), Catch::Contains(r.names));
    CHECK_THAT(refused.message(), Catch::Contains(db.string()));
    CHECK_THAT(refused.message(), Catch::Contains("outbox refused by the test"));
    // Nothing of the change: no approval row created or changed, no audit record, no alert.
    CHECK(query_sql(db, "SELECT * FROM approvals ORDER BY n") == approvals_before);
    CHECK(query_sql(db, "SELECT seq, hash FROM audit ORDER BY seq") == audit_before);
    CHECK(query_sql(db, "SELECT * FROM outbox ORDER BY id") == outbox_before);
    CHECK(core::verify_audit(db)->intact());

    // The same change goes through, alerts and all, once the outbox takes rows again.
    exec_sql(db, "DROP TRIGGER outbox_refuses");
    const sdk::status again = r.change(*store);
    if (std::string(r.what) == "a decision that finds the approval expired") {
      CHECK(again.code() == sdk::status_code::failed_precondition);
      CHECK_THAT(again.message(), Catch::Contains("it expired at 1000"));
    } else {
      INFO(again.message());
      CHECK(again.ok());
    }
    CHECK(query_sql(db, "SELECT * FROM outbox").size() == 6);
    CHECK(query_sql(db, "SELECT * FROM approvals ORDER BY n") != approvals_before);
  }
}

TEST_CASE("an approval planner that throws is counted and audited and the approval is kept",
          "[sqlite_store][approvals]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  auto store = open_store(db);
  store->set_approval_alert_planner([](const approval&) -> std::vector<outbox_alert> {
    throw std::runtime_error("no sink named 'pager'");
  });
  REQUIRE(*store->create_approval(asked(100, 0)) == "ap-000001");
  REQUIRE(store->decide_approval("ap-000001", true, "alice", "ok", 500).ok());
  CHECK(store->planner_errors() == 2);
  CHECK(store->pending(10)->empty());
  CHECK(store->get_approval("ap-000001")->state == approval_state::approved);
  CHECK(audit_kinds(db) == std::vector<std::string>{"approval_requested", "alert_planner_error",
                                                    "approval_approved", "alert_planner_error"});
  CHECK(query_sql(
            db, "SELECT json_extract(payload_json, '$.error'), subject FROM audit WHERE seq = 4") ==
        std::vector<std::vector<std::string>>{{"no sink named 'pager'", "ap-000001"}});
  CHECK(core::verify_audit(db)->intact());
}
