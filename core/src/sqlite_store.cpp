#include <loopwarden/core/sqlite_store.hpp>

#include <algorithm>
#include <concepts>
#include <cstdio>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <ostream>
#include <system_error>
#include <unordered_map>
#include <utility>

#include <sqlite3.h>
#include <nlohmann/json.hpp>

#include <loopwarden/types.hpp>

// The only file that talks to SQLite: the state store, and the read-only audit verification and
// export declared in audit.hpp. SQLite's errors become statuses in sqlite_error(), here only.

namespace loopwarden::core {
namespace {

using json = nlohmann::ordered_json;

// PRAGMA application_id of a loopwarden state store: "LWST".
constexpr std::int32_t loopwarden_application_id = 0x4C575354;

// ---------------------------------------------------------------------------------------------
// Schema. Each step migrates from the previous version; open() runs the missing ones in one
// transaction and sets PRAGMA user_version. Never edit a released step: add a new one.

constexpr const char* schema_v1 = R"sql(
CREATE TABLE breakers (
  name TEXT NOT NULL,
  run_id TEXT NOT NULL,
  state TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  action TEXT NOT NULL,
  severity TEXT NOT NULL,
  scope TEXT NOT NULL,
  monitor TEXT NOT NULL,
  reason TEXT NOT NULL,
  evidence TEXT NOT NULL,
  shadow INTEGER NOT NULL,
  acknowledged INTEGER NOT NULL,
  acknowledged_by TEXT NOT NULL,
  trips INTEGER NOT NULL,
  changed_unix_nano INTEGER NOT NULL,
  probation_until_unix_nano INTEGER NOT NULL,
  status BLOB NOT NULL,
  PRIMARY KEY (name, run_id)
);
CREATE TABLE transitions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  run_id TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  previous TEXT NOT NULL,
  state TEXT NOT NULL,
  cause TEXT NOT NULL,
  operator_id TEXT NOT NULL,
  note TEXT NOT NULL,
  trigger_source TEXT NOT NULL,
  trigger_seq INTEGER NOT NULL,
  time_unix_nano INTEGER NOT NULL,
  transition BLOB NOT NULL,
  FOREIGN KEY (name, run_id) REFERENCES breakers (name, run_id)
);
CREATE INDEX transitions_by_breaker ON transitions (name, run_id, seq);
CREATE TABLE operator_actions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  time_unix_nano INTEGER NOT NULL,
  operator_id TEXT NOT NULL,
  action TEXT NOT NULL CHECK (action IN ('ack', 'reset', 'force_open')),
  name TEXT NOT NULL,
  run_id TEXT NOT NULL,
  reason TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  transition_seq INTEGER NOT NULL REFERENCES transitions (seq)
);
CREATE TABLE approvals (
  n INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  created_unix_nano INTEGER NOT NULL,
  expires_unix_nano INTEGER NOT NULL,
  monitor TEXT NOT NULL,
  breaker TEXT NOT NULL,
  run_id TEXT NOT NULL,
  summary TEXT NOT NULL,
  detail_json TEXT NOT NULL,
  requested_by TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'used')),
  decided_by TEXT NOT NULL,
  reason TEXT NOT NULL,
  decided_unix_nano INTEGER NOT NULL
);
CREATE INDEX approvals_by_state ON approvals (state, n);
CREATE TABLE outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  sink TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  kind TEXT NOT NULL,
  payload_json TEXT NOT NULL,
  created_unix_nano INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  next_attempt_unix_nano INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
  delivered_via TEXT NOT NULL,
  finished_unix_nano INTEGER NOT NULL,
  transition_seq INTEGER REFERENCES transitions (seq)
);
CREATE INDEX outbox_by_state ON outbox (state, id);
CREATE TABLE audit (
  seq INTEGER PRIMARY KEY,
  time_unix_nano INTEGER NOT NULL,
  kind TEXT NOT NULL,
  actor TEXT NOT NULL,
  subject TEXT NOT NULL,
  payload_json TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
)sql";

// v2: the monitors' learned state (engine::snapshot_monitors), so a restart keeps baselines.
constexpr const char* schema_v2 = R"sql(
CREATE TABLE monitor_states (
  monitor TEXT PRIMARY KEY,
  plugin TEXT NOT NULL,
  version TEXT NOT NULL,
  state BLOB NOT NULL,
  saved_unix_nano INTEGER NOT NULL
);
)sql";

struct migration_step {
  int version;      // the schema version after this step
  const char* sql;  // from version - 1
};

constexpr migration_step migrations[] = {
    {1, schema_v1},
    {2, schema_v2},
};
static_assert(std::size(migrations) == sqlite_state_store::schema_version,
              "one migration step per schema version");

// ---------------------------------------------------------------------------------------------
// Statements.

constexpr const char* sql_begin = "BEGIN IMMEDIATE";
constexpr const char* sql_begin_read = "BEGIN";
constexpr const char* sql_commit = "COMMIT";
constexpr const char* sql_rollback = "ROLLBACK";

constexpr const char* sql_upsert_breaker = R"sql(
INSERT INTO breakers (name, run_id, state, epoch, action, severity, scope, monitor, reason,
                      evidence, shadow, acknowledged, acknowledged_by, trips, changed_unix_nano,
                      probation_until_unix_nano, status)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (name, run_id) DO UPDATE SET
  state = excluded.state, epoch = excluded.epoch, action = excluded.action,
  severity = excluded.severity, scope = excluded.scope, monitor = excluded.monitor,
  reason = excluded.reason, evidence = excluded.evidence, shadow = excluded.shadow,
  acknowledged = excluded.acknowledged, acknowledged_by = excluded.acknowledged_by,
  trips = excluded.trips, changed_unix_nano = excluded.changed_unix_nano,
  probation_until_unix_nano = excluded.probation_until_unix_nano, status = excluded.status)sql";

constexpr const char* sql_insert_transition = R"sql(
INSERT INTO transitions (name, run_id, epoch, previous, state, cause, operator_id, note,
                         trigger_source, trigger_seq, time_unix_nano, transition)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?))sql";

constexpr const char* sql_insert_operator_action = R"sql(
INSERT INTO operator_actions (time_unix_nano, operator_id, action, name, run_id, reason, epoch,
                              transition_seq)
VALUES (?, ?, ?, ?, ?, ?, ?, ?))sql";

constexpr const char* sql_load_breakers =
    "SELECT name, run_id, status FROM breakers ORDER BY name, run_id";

constexpr const char* sql_history = R"sql(
SELECT transition FROM transitions WHERE name = ? AND run_id = ? ORDER BY seq DESC LIMIT ?)sql";

constexpr const char* sql_insert_outbox = R"sql(
INSERT INTO outbox (sink, fingerprint, kind, payload_json, created_unix_nano, attempts,
                    next_attempt_unix_nano, last_error, state, delivered_via, finished_unix_nano,
                    transition_seq)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', '', 0, ?))sql";

constexpr const char* sql_pending_outbox = R"sql(
SELECT id, sink, fingerprint, kind, payload_json, created_unix_nano, attempts,
       next_attempt_unix_nano, last_error
FROM outbox WHERE state = 'pending' ORDER BY id LIMIT ?)sql";

constexpr const char* sql_outbox_exists = "SELECT 1 FROM outbox WHERE id = ?";

constexpr const char* sql_outbox_delivered = R"sql(
UPDATE outbox SET state = 'delivered', delivered_via = ?, finished_unix_nano = ?
WHERE id = ? AND state = 'pending')sql";

constexpr const char* sql_outbox_attempt = R"sql(
UPDATE outbox SET attempts = ?, next_attempt_unix_nano = ?, last_error = ?
WHERE id = ? AND state = 'pending')sql";

constexpr const char* sql_outbox_failed = R"sql(
UPDATE outbox SET state = 'failed', last_error = ?, finished_unix_nano = ?
WHERE id = ? AND state = 'pending')sql";

constexpr const char* sql_next_approval_number = "SELECT COALESCE(MAX(n), 0) + 1 FROM approvals";
constexpr const char* sql_approval_exists = "SELECT 1 FROM approvals WHERE id = ?";

constexpr const char* sql_insert_approval = R"sql(
INSERT INTO approvals (n, id, created_unix_nano, expires_unix_nano, monitor, breaker, run_id,
                       summary, detail_json, requested_by, state, decided_by, reason,
                       decided_unix_nano)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', '', '', 0))sql";

constexpr const char* sql_get_approval = R"sql(
SELECT id, created_unix_nano, expires_unix_nano, monitor, breaker, run_id, summary, detail_json,
       requested_by, state, decided_by, reason, decided_unix_nano
FROM approvals WHERE id = ?)sql";

constexpr const char* sql_list_approvals = R"sql(
SELECT id, created_unix_nano, expires_unix_nano, monitor, breaker, run_id, summary, detail_json,
       requested_by, state, decided_by, reason, decided_unix_nano
FROM approvals WHERE (? = 0 OR state = 'pending') ORDER BY n)sql";

constexpr const char* sql_overdue_approvals = R"sql(
SELECT id, created_unix_nano, expires_unix_nano, monitor, breaker, run_id, summary, detail_json,
       requested_by, state, decided_by, reason, decided_unix_nano
FROM approvals
WHERE state = 'pending' AND expires_unix_nano != 0 AND expires_unix_nano <= ? ORDER BY n)sql";

constexpr const char* sql_decide_approval = R"sql(
UPDATE approvals SET state = ?, decided_by = ?, reason = ?, decided_unix_nano = ?
WHERE id = ? AND state = 'pending')sql";

constexpr const char* sql_use_approval =
    "UPDATE approvals SET state = 'used' WHERE id = ? AND state = 'approved'";

constexpr const char* sql_clear_monitor_states = "DELETE FROM monitor_states";
constexpr const char* sql_insert_monitor_state = R"sql(
INSERT INTO monitor_states (monitor, plugin, version, state, saved_unix_nano) VALUES (?, ?, ?, ?, ?)
)sql";
constexpr const char* sql_read_monitor_states =
    "SELECT monitor, plugin, version, state, saved_unix_nano FROM monitor_states ORDER BY monitor";
constexpr const char* sql_audit_head = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";

constexpr const char* sql_insert_audit = R"sql(
INSERT INTO audit (seq, time_unix_nano, kind, actor, subject, payload_json, prev_hash, hash)
VALUES (?, ?, ?, ?, ?, ?, ?, ?))sql";

constexpr const char* sql_read_audit = R"sql(
SELECT seq, time_unix_nano, kind, actor, subject, payload_json, prev_hash, hash
FROM audit ORDER BY seq)sql";

// ---------------------------------------------------------------------------------------------
// SQLite plumbing.

status_code code_for(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return status_code::timeout;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_FORMAT:
      return status_code::parse_error;
    case SQLITE_CONSTRAINT:
      return status_code::failed_precondition;
    case SQLITE_TOOBIG:
      return status_code::invalid_argument;
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
    case SQLITE_INTERNAL:
      return status_code::internal;
    default:  // IOERR, FULL, CANTOPEN, READONLY, PERM, NOMEM, ...
      return status_code::io_error;
  }
}

// The one conversion of an SQLite result code into a status: "<doing>: <file>: <sqlite error>".
status sqlite_error(sqlite3* db, int rc, const std::filesystem::path& file,
                    std::string_view doing) {
  std::string detail = sqlite3_errstr(rc);
  if (db != nullptr && sqlite3_errcode(db) != SQLITE_OK) detail = sqlite3_errmsg(db);
  std::string message(doing);
  message += ": ";
  message += file.string();
  message += ": ";
  message += detail;
  return make_error(code_for(rc), std::move(message));
}

struct connection_closer {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using connection = std::unique_ptr<sqlite3, connection_closer>;

struct statement_finalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using statement_ptr = std::unique_ptr<sqlite3_stmt, statement_finalizer>;

// A BLOB parameter (a plain string binds as TEXT).
struct blob {
  std::string_view bytes;
};

// One use of a prepared statement: binds parameters in order, steps, reads columns, and resets
// the statement when it goes away. Bound text and blobs are not copied: they must outlive it.
class query {
 public:
  explicit query(sqlite3_stmt* s) : s_(s) {}
  ~query() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  query(const query&) = delete;
  query& operator=(const query&) = delete;

  void bind(std::string_view v) {
    // A null pointer would bind SQL NULL; an empty string must stay an empty string.
    note(sqlite3_bind_text64(s_, ++index_, v.empty() ? "" : v.data(), v.size(), nullptr,
                             SQLITE_UTF8));
  }
  void bind(const std::string& v) { bind(std::string_view(v)); }
  void bind(const char* v) { bind(std::string_view(v)); }
  void bind(blob v) {
    note(sqlite3_bind_blob64(s_, ++index_, v.bytes.empty() ? "" : v.bytes.data(), v.bytes.size(),
                             nullptr));
  }
  template <std::integral T>
  void bind(T v) {
    note(sqlite3_bind_int64(s_, ++index_, static_cast<sqlite3_int64>(v)));
  }
  void bind(std::optional<std::int64_t> v) {
    if (v) {
      bind(*v);
    } else {
      note(sqlite3_bind_null(s_, ++index_));
    }
  }

  // SQLITE_ROW, SQLITE_DONE, or the error (also a failed bind).
  int step() { return bind_rc_ != SQLITE_OK ? bind_rc_ : sqlite3_step(s_); }

  std::int64_t integer(int column) const { return sqlite3_column_int64(s_, column); }
  std::string text(int column) const {
    const auto* p = sqlite3_column_text(s_, column);
    if (p == nullptr) return {};
    return std::string(reinterpret_cast<const char*>(p),
                       static_cast<std::size_t>(sqlite3_column_bytes(s_, column)));
  }
  std::string bytes(int column) const {
    const void* p = sqlite3_column_blob(s_, column);
    if (p == nullptr) return {};
    return std::string(static_cast<const char*>(p),
                       static_cast<std::size_t>(sqlite3_column_bytes(s_, column)));
  }

 private:
  void note(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3_stmt* s_;
  int index_ = 0;
  int bind_rc_ = SQLITE_OK;
};

// Runs `st` with `args`; calls on_row for each row. Returns SQLITE_OK or the error.
template <typename... Args>
int run(sqlite3_stmt* st, const std::function<void(const query&)>& on_row, const Args&... args) {
  query q(st);
  (q.bind(args), ...);
  for (;;) {
    const int rc = q.step();
    if (rc == SQLITE_DONE) return SQLITE_OK;
    if (rc != SQLITE_ROW) return rc;
    if (on_row) on_row(q);
  }
}

// Runs a script of statements without parameters (schema, pragmas).
int exec_script(sqlite3* db, const char* sql) {
  return sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
}

std::int64_t now_unix_nano() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------------------------------------
// Values.

std::string describe_breaker(const std::string& name, const std::string& run_id) {
  std::string out = "breaker '" + name + "'";
  if (!run_id.empty()) out += " (run '" + run_id + "')";
  return out;
}

// The audit subject of a breaker: "name", or "name@run_id" for a run-scoped one.
std::string breaker_subject(const std::string& name, const std::string& run_id) {
  return run_id.empty() ? name : name + "@" + run_id;
}

std::string dump(const json& j) {
  // Strings from plugins and operators are not guaranteed UTF-8; the audit log must be (it is
  // exported as JSON), so invalid bytes become U+FFFD before anything is hashed.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string valid_utf8(std::string_view s) {
  return json::parse(dump(json(std::string(s)))).get<std::string>();
}

std::string name_of(v1::BreakerAction a) {
  auto v = sdk::from_proto(a);
  return v ? std::string(sdk::to_string(*v)) : "unspecified";
}
std::string name_of(v1::Severity s) {
  auto v = sdk::from_proto(s);
  return v ? std::string(sdk::to_string(*v)) : "unspecified";
}
std::string name_of(v1::BreakerScope s) {
  auto v = sdk::from_proto(s);
  return v ? std::string(sdk::to_string(*v)) : "unspecified";
}
std::string name_of(v1::BreakerState s) { return std::string(sdk::to_string(s)); }

json evidence_json(const v1::BreakerStatus& b) {
  json out = json::array();
  for (const auto& kv : b.evidence()) out.push_back({{"key", kv.key()}, {"value", kv.value()}});
  return out;
}

json transition_json(const v1::BreakerTransition& t, std::int64_t transition_seq) {
  const auto& b = t.breaker();
  json j;
  j["name"] = b.name();
  j["run_id"] = b.run_id();
  j["epoch"] = b.epoch();
  j["cause"] = t.cause();
  j["previous"] = name_of(t.previous());
  j["state"] = name_of(b.state());
  j["operator"] = t.operator_id();
  j["note"] = t.note();
  j["monitor"] = b.monitor();
  j["reason"] = b.reason();
  j["action"] = name_of(b.action());
  j["severity"] = name_of(b.severity());
  j["scope"] = name_of(b.scope());
  j["shadow"] = b.shadow();
  j["acknowledged"] = b.acknowledged();
  j["acknowledged_by"] = b.acknowledged_by();
  j["trips"] = b.trips();
  j["probation_until_unix_nano"] = b.probation_until_unix_nano();
  j["evidence"] = evidence_json(b);
  j["trigger_source"] = t.trigger_source();
  j["trigger_seq"] = t.trigger_seq();
  j["transition_seq"] = transition_seq;
  return j;
}

bool is_operator_cause(const std::string& cause) {
  return cause == "ack" || cause == "reset" || cause == "force_open";
}

std::optional<approval_state> parse_approval_state(std::string_view s) {
  for (auto st : {approval_state::pending, approval_state::approved, approval_state::denied,
                  approval_state::expired, approval_state::used}) {
    if (to_string(st) == s) return st;
  }
  return std::nullopt;
}

approval read_approval(const query& q) {
  approval a;
  a.id = q.text(0);
  a.created_unix_nano = q.integer(1);
  a.expires_unix_nano = q.integer(2);
  a.monitor = q.text(3);
  a.breaker = q.text(4);
  a.run_id = q.text(5);
  a.summary = q.text(6);
  a.detail_json = q.text(7);
  a.requested_by = q.text(8);
  // The CHECK constraint admits only the four names.
  a.state = parse_approval_state(q.text(9)).value_or(approval_state::pending);
  a.decided_by = q.text(10);
  a.reason = q.text(11);
  a.decided_unix_nano = q.integer(12);
  return a;
}

json approval_json(const approval& a) {
  json j;
  j["id"] = a.id;
  j["state"] = std::string(to_string(a.state));
  j["created_unix_nano"] = a.created_unix_nano;
  j["expires_unix_nano"] = a.expires_unix_nano;
  j["monitor"] = a.monitor;
  j["breaker"] = a.breaker;
  j["run_id"] = a.run_id;
  j["summary"] = a.summary;
  j["detail_json"] = a.detail_json;
  j["requested_by"] = a.requested_by;
  j["decided_by"] = a.decided_by;
  j["reason"] = a.reason;
  j["decided_unix_nano"] = a.decided_unix_nano;
  return j;
}

outbox_alert read_outbox_alert(const query& q) {
  outbox_alert a;
  a.id = q.integer(0);
  a.sink = q.text(1);
  a.fingerprint = q.text(2);
  a.kind = q.text(3);
  a.payload_json = q.text(4);
  a.created_unix_nano = q.integer(5);
  a.attempts = static_cast<std::uint32_t>(q.integer(6));
  a.next_attempt_unix_nano = q.integer(7);
  a.last_error = q.text(8);
  return a;
}

audit_record read_audit_record(const query& q) {
  audit_record r;
  r.seq = static_cast<std::uint64_t>(q.integer(0));
  r.time_unix_nano = q.integer(1);
  r.kind = q.text(2);
  r.actor = q.text(3);
  r.subject = q.text(4);
  r.payload_json = q.text(5);
  r.prev_hash = q.text(6);
  r.hash = q.text(7);
  return r;
}

std::int64_t clamp_limit(std::size_t limit) {
  return static_cast<std::int64_t>(std::min<std::size_t>(
      limit, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())));
}

// ---------------------------------------------------------------------------------------------
// Read-only access for verify_audit and export_audit.

struct reader {
  connection db;
  std::filesystem::path path;
};

result<reader> open_read_only(const std::filesystem::path& path, std::string_view doing) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return make_error(status_code::not_found,
                      std::string(doing) + ": " + path.string() + ": no such file");
  }
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
  connection db(raw);
  if (rc != SQLITE_OK) return sqlite_error(db.get(), rc, path, doing);
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), 5000);

  std::int64_t version = 0;
  std::int64_t tables = 0;
  sqlite3_stmt* raw_st = nullptr;
  if (int r = sqlite3_prepare_v2(db.get(), "PRAGMA user_version", -1, &raw_st, nullptr);
      r != SQLITE_OK) {
    return sqlite_error(db.get(), r, path, doing);
  }
  statement_ptr version_st(raw_st);
  if (int r = run(version_st.get(), [&](const query& q) { version = q.integer(0); });
      r != SQLITE_OK) {
    return sqlite_error(db.get(), r, path, doing);
  }
  if (version > sqlite_state_store::schema_version) {
    return make_error(status_code::refused,
                      std::string(doing) + ": " + path.string() + ": its schema version is " +
                          std::to_string(version) + ", this loopwarden understands up to " +
                          std::to_string(sqlite_state_store::schema_version) +
                          " (written by a newer loopwarden)");
  }
  if (int r = sqlite3_prepare_v2(db.get(),
                                 "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND "
                                 "name = 'audit'",
                                 -1, &raw_st, nullptr);
      r != SQLITE_OK) {
    return sqlite_error(db.get(), r, path, doing);
  }
  statement_ptr tables_st(raw_st);
  if (int r = run(tables_st.get(), [&](const query& q) { tables = q.integer(0); });
      r != SQLITE_OK) {
    return sqlite_error(db.get(), r, path, doing);
  }
  if (tables == 0) {
    return make_error(status_code::parse_error, std::string(doing) + ": " + path.string() +
                                                    ": not a loopwarden state store (no audit "
                                                    "table)");
  }
  return reader{std::move(db), path};
}

// Calls on_record for every audit record in seq order, inside one read transaction (one
// consistent snapshot, also while a writer appends in WAL mode).
status read_audit(reader& r, std::string_view doing,
                  const std::function<void(const audit_record&)>& on_record) {
  sqlite3* db = r.db.get();
  if (int rc = exec_script(db, sql_begin_read); rc != SQLITE_OK) {
    return sqlite_error(db, rc, r.path, doing);
  }
  sqlite3_stmt* raw_st = nullptr;
  int rc = sqlite3_prepare_v2(db, sql_read_audit, -1, &raw_st, nullptr);
  statement_ptr st(raw_st);
  if (rc == SQLITE_OK) {
    rc = run(st.get(), [&](const query& q) { on_record(read_audit_record(q)); });
  }
  status out = rc == SQLITE_OK ? status::success() : sqlite_error(db, rc, r.path, doing);
  st.reset();
  static_cast<void>(exec_script(db, sql_commit));  // ends a read transaction; nothing to lose
  return out;
}

}  // namespace

std::string_view to_string(approval_state state) {
  switch (state) {
    case approval_state::pending:
      return "pending";
    case approval_state::approved:
      return "approved";
    case approval_state::denied:
      return "denied";
    case approval_state::expired:
      return "expired";
    case approval_state::used:
      return "used";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// The store.

struct sqlite_state_store::impl {
  explicit impl(std::filesystem::path p) : path(std::move(p)) {}

  const std::filesystem::path path;

  mutable std::mutex mu;
  connection db;                                                   // guarded by mu
  std::unordered_map<std::string_view, statement_ptr> statements;  // guarded by mu
  alert_planner planner;                                           // guarded by mu
  approval_alert_planner approval_planner;                         // guarded by mu
  std::uint64_t planner_errors = 0;                                // guarded by mu

  // A second, read-only connection for the alert router's outbox scans. In WAL mode a reader
  // never blocks the writer, so a scan over a large backlog (a slow receiver) does not hold `mu`
  // while a trip waits to be recorded. Opened on first use.
  std::mutex read_mu;
  connection read_db;          // guarded by read_mu
  statement_ptr read_pending;  // guarded by read_mu

  status error(int rc, std::string_view doing) const {
    return sqlite_error(db.get(), rc, path, doing);
  }

  // The cached statement for `sql` (one of the constants above), prepared on first use.
  int prepare(const char* sql, sqlite3_stmt** out) {
    auto it = statements.find(sql);
    if (it == statements.end()) {
      sqlite3_stmt* raw = nullptr;
      const int rc =
          sqlite3_prepare_v3(db.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
      if (rc != SQLITE_OK) return rc;
      it = statements.emplace(sql, statement_ptr(raw)).first;
    }
    *out = it->second.get();
    return SQLITE_OK;
  }

  // Runs a cached statement; on_row (may be empty) sees each row.
  template <typename... Args>
  int execute(const char* sql, const std::function<void(const query&)>& on_row,
              const Args&... args) {
    sqlite3_stmt* st = nullptr;
    if (int rc = prepare(sql, &st); rc != SQLITE_OK) return rc;
    return run(st, on_row, args...);
  }

  // Appends the next audit record. Caller holds mu and an open write transaction, so the head
  // read here is still the head when the insert commits.
  int append_audit(std::string_view kind, std::string_view actor, std::string_view subject,
                   std::string payload_json, std::int64_t time_unix_nano, audit_record* out) {
    audit_anchor head{0, std::string(audit_genesis_hash)};
    if (int rc = execute(sql_audit_head,
                         [&](const query& q) {
                           head.seq = static_cast<std::uint64_t>(q.integer(0));
                           head.hash = q.text(1);
                         });
        rc != SQLITE_OK) {
      return rc;
    }
    audit_record r = next_audit_record(head, time_unix_nano == 0 ? now_unix_nano() : time_unix_nano,
                                       valid_utf8(kind), valid_utf8(actor), valid_utf8(subject),
                                       std::move(payload_json));
    if (int rc = execute(sql_insert_audit, {}, r.seq, r.time_unix_nano, r.kind, r.actor, r.subject,
                         r.payload_json, r.prev_hash, r.hash);
        rc != SQLITE_OK) {
      return rc;
    }
    if (out != nullptr) *out = std::move(r);
    return SQLITE_OK;
  }

  result<std::optional<approval>> find_approval(const std::string& id, std::string_view doing) {
    std::optional<approval> found;
    if (int rc = execute(
            sql_get_approval, [&](const query& q) { found = read_approval(q); }, id);
        rc != SQLITE_OK) {
      return error(rc, doing);
    }
    return found;
  }

  // The approval `id`, or not_found naming the database. Caller holds mu.
  result<approval> require_approval(const std::string& id, const std::string& doing) {
    auto found = find_approval(id, doing);
    if (!found.ok()) return found.error();
    if (!found->has_value()) {
      return make_error(status_code::not_found,
                        doing + ": " + path.string() + ": no such approval");
    }
    return std::move(**found);
  }

  // Inserts the approval planner's rows for `a` (as it now stands) into the outbox. Caller holds
  // mu and an open write transaction, so the rows commit with the approval change or not at all
  // (why: sqlite_store.hpp, set_approval_alert_planner). A planner that throws is counted and
  // audited, and the change goes on without alerts, as record() does for a transition. On an
  // SQLite error, `*failed` says which row: "can't queue the alert of approval 'ap-1' for sink
  // 'pager'".
  int insert_approval_alerts(const approval& a, std::int64_t time, std::string* failed) {
    if (!approval_planner) return SQLITE_OK;
    std::vector<outbox_alert> alerts;
    std::string planner_failure;
    try {
      alerts = approval_planner(a);
    } catch (const std::exception& e) {
      planner_failure = e.what();
    } catch (...) {
      planner_failure = "unknown exception";
    }
    if (!planner_failure.empty()) {
      ++planner_errors;
      json payload;
      payload["error"] = planner_failure;
      payload["approval_id"] = a.id;
      payload["state"] = std::string(to_string(a.state));
      return append_audit("alert_planner_error", "loopwarden", a.id, dump(payload), time, nullptr);
    }
    for (const auto& row : alerts) {
      const int rc =
          execute(sql_insert_outbox, {}, row.sink, row.fingerprint, row.kind, row.payload_json,
                  row.created_unix_nano != 0 ? row.created_unix_nano : time, row.attempts,
                  row.next_attempt_unix_nano, row.last_error, std::optional<std::int64_t>());
      if (rc != SQLITE_OK) {
        if (failed != nullptr) {
          *failed = "can't queue the alert of approval '" + a.id + "' for sink '" + row.sink + "'";
        }
        return rc;
      }
    }
    return SQLITE_OK;
  }

  // Sets a pending approval's decision, audits it as "approval_<state>" and queues its alerts
  // (the resolve of its page). Caller holds mu and an open write transaction. `*failed` as for
  // insert_approval_alerts.
  int settle_approval(approval& a, approval_state state, std::string_view decided_by,
                      std::string_view reason, std::int64_t now, std::string_view actor,
                      std::string* failed) {
    a.state = state;
    a.decided_by = std::string(decided_by);
    a.reason = std::string(reason);
    a.decided_unix_nano = now;
    const std::string state_name(to_string(state));
    if (int rc = execute(sql_decide_approval, {}, state_name, a.decided_by, a.reason,
                         a.decided_unix_nano, a.id);
        rc != SQLITE_OK) {
      return rc;
    }
    if (int rc = append_audit("approval_" + state_name, actor, a.id, dump(approval_json(a)), now,
                              nullptr);
        rc != SQLITE_OK) {
      return rc;
    }
    return insert_approval_alerts(a, now, failed);
  }

  // The error of a failed approval change: `doing`, then the outbox row that failed if it was
  // one, then the file and SQLite's reason.
  status approval_error(int rc, const std::string& doing, const std::string& failed) const {
    return error(rc, failed.empty() ? doing : doing + ": " + failed);
  }

  // A write transaction (BEGIN IMMEDIATE: the write lock up front, so a busy database fails here
  // and not half-way). Rolls back unless committed.
  class transaction {
   public:
    explicit transaction(impl& s) : s_(s) {}
    ~transaction() {
      // An I/O error may already have rolled SQLite back (autocommit on again).
      if (open_ && sqlite3_get_autocommit(s_.db.get()) == 0) {
        static_cast<void>(s_.execute(sql_rollback, {}));
      }
    }
    transaction(const transaction&) = delete;
    transaction& operator=(const transaction&) = delete;

    int begin() {
      const int rc = s_.execute(sql_begin, {});
      open_ = rc == SQLITE_OK;
      return rc;
    }
    // The durability point: with synchronous=FULL, COMMIT returns after the WAL is fsynced.
    int commit() {
      const int rc = s_.execute(sql_commit, {});
      if (rc == SQLITE_OK) open_ = false;
      return rc;
    }

   private:
    impl& s_;
    bool open_ = false;
  };

  static status migrate(impl& s) {
    const std::string doing = "can't prepare state store schema";
    transaction tx(s);
    if (int rc = tx.begin(); rc != SQLITE_OK) return s.error(rc, doing);
    std::int64_t version = 0;
    std::int64_t app_id = 0;
    std::int64_t tables = 0;
    // Read inside the write transaction: a second process opening a new file at the same time
    // waits here and then sees the finished schema.
    int rc = s.execute("PRAGMA user_version", [&](const query& q) { version = q.integer(0); });
    if (rc == SQLITE_OK) {
      rc = s.execute("PRAGMA application_id", [&](const query& q) { app_id = q.integer(0); });
    }
    if (rc == SQLITE_OK) {
      rc = s.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
                     [&](const query& q) { tables = q.integer(0); });
    }
    if (rc != SQLITE_OK) return s.error(rc, doing);

    const std::string where = "can't open state store " + s.path.string();
    if (version > sqlite_state_store::schema_version) {
      return make_error(status_code::refused,
                        where + ": its schema version is " + std::to_string(version) +
                            ", this loopwarden understands up to " +
                            std::to_string(sqlite_state_store::schema_version) +
                            " (it was written by a newer loopwarden; run that, or use another "
                            "state file)");
    }
    if (app_id != 0 && app_id != loopwarden_application_id) {
      return make_error(status_code::refused,
                        where + ": it belongs to another application (application_id " +
                            std::to_string(app_id) + ")");
    }
    if (version == 0 && tables > 0) {
      return make_error(status_code::refused,
                        where +
                            ": it is an SQLite database of something else (it has tables but "
                            "no loopwarden schema version)");
    }
    if (version == sqlite_state_store::schema_version) return status::success();

    for (const auto& step : migrations) {
      if (step.version <= version) continue;
      if (rc = exec_script(s.db.get(), step.sql); rc != SQLITE_OK) {
        return s.error(
            rc, "can't migrate state store to schema version " + std::to_string(step.version));
      }
    }
    // PRAGMAs take no parameters; both values are integers formatted here.
    const std::string pragmas =
        "PRAGMA user_version = " + std::to_string(sqlite_state_store::schema_version) +
        "; PRAGMA application_id = " + std::to_string(loopwarden_application_id) + ";";
    if (rc = exec_script(s.db.get(), pragmas.c_str()); rc != SQLITE_OK) {
      return s.error(rc, doing);
    }
    if (rc = tx.commit(); rc != SQLITE_OK) return s.error(rc, doing);
    return status::success();
  }

  // Runs one outbox update; an id that changed nothing is fine when it exists (already settled).
  template <typename... Args>
  static status update_outbox(impl& s, const char* sql, std::int64_t id, const std::string& doing,
                              const Args&... args) {
    if (int rc = s.execute(sql, {}, args..., id); rc != SQLITE_OK) return s.error(rc, doing);
    if (sqlite3_changes(s.db.get()) > 0) return status::success();
    bool exists = false;
    if (int rc = s.execute(
            sql_outbox_exists, [&](const query&) { exists = true; }, id);
        rc != SQLITE_OK) {
      return s.error(rc, doing);
    }
    if (!exists) {
      return make_error(status_code::not_found,
                        doing + ": " + s.path.string() + ": no alert " + std::to_string(id));
    }
    return status::success();
  }
};

sqlite_state_store::sqlite_state_store(std::unique_ptr<impl> state) : impl_(std::move(state)) {}

sqlite_state_store::~sqlite_state_store() {
  if (!impl_) return;
  {
    std::lock_guard lock(impl_->read_mu);
    impl_->read_pending.reset();
    impl_->read_db.reset();
  }
  std::lock_guard lock(impl_->mu);
  // Statements before the connection: closing a connection with live statements leaves it a
  // zombie until they are finalized.
  impl_->statements.clear();
  impl_->db.reset();
}

result<std::unique_ptr<sqlite_state_store>> sqlite_state_store::open(
    const std::filesystem::path& db_path) {
  return open(db_path, open_options{});
}

result<std::unique_ptr<sqlite_state_store>> sqlite_state_store::open(
    const std::filesystem::path& db_path, const open_options& options) {
  const std::string doing = "can't open state store";
  std::error_code ec;
  const bool exists = std::filesystem::exists(db_path, ec);
  if (!exists) {
    if (!options.create_if_missing) {
      return make_error(status_code::not_found, doing + " " + db_path.string() + ": no such file");
    }
    if (db_path.has_parent_path()) {
      std::filesystem::create_directories(db_path.parent_path(), ec);
      if (ec) {
        return make_error(
            status_code::io_error,
            doing + " " + db_path.string() + ": can't create its directory: " + ec.message());
      }
    }
  }

  auto s = std::make_unique<impl>(db_path);
  std::lock_guard lock(s->mu);
  sqlite3* raw = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | (options.create_if_missing ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(db_path.c_str(), &raw, flags, nullptr);
  s->db.reset(raw);
  if (rc != SQLITE_OK) return s->error(rc, doing);
  sqlite3_extended_result_codes(s->db.get(), 1);
  sqlite3_busy_timeout(s->db.get(),
                       static_cast<int>(std::clamp<std::int64_t>(options.busy_timeout.count(), 0,
                                                                 std::numeric_limits<int>::max())));

  // journal_mode is the first read of the file, so "not a database" shows up here.
  std::string mode;
  rc = s->execute("PRAGMA journal_mode = WAL", [&](const query& q) { mode = q.text(0); });
  if (rc != SQLITE_OK) return s->error(rc, doing);
  if (mode != "wal") {
    return make_error(status_code::io_error, doing + " " + db_path.string() +
                                                 ": can't use write-ahead logging (journal "
                                                 "mode stays '" +
                                                 mode + "'; is it on a network file system?)");
  }
  // FULL: every commit fsyncs the WAL, so record() returning means the transition is on disk.
  // NORMAL (in WAL mode): a commit is in the OS's cache, so it survives the daemon's crash or
  // kill -9 but not a power loss of the machine; the WAL is fsynced at checkpoints.
  rc = exec_script(s->db.get(), options.sync == sync_mode::full
                                    ? "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
                                    : "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;");
  if (rc != SQLITE_OK) return s->error(rc, doing);

  if (auto m = impl::migrate(*s); !m.ok()) return m;
  return std::unique_ptr<sqlite_state_store>(new sqlite_state_store(std::move(s)));
}

const std::filesystem::path& sqlite_state_store::path() const { return impl_->path; }

void sqlite_state_store::set_alert_planner(alert_planner planner) {
  std::lock_guard lock(impl_->mu);
  impl_->planner = std::move(planner);
}

void sqlite_state_store::set_approval_alert_planner(approval_alert_planner planner) {
  std::lock_guard lock(impl_->mu);
  impl_->approval_planner = std::move(planner);
}

std::uint64_t sqlite_state_store::planner_errors() const {
  std::lock_guard lock(impl_->mu);
  return impl_->planner_errors;
}

result<std::vector<v1::BreakerStatus>> sqlite_state_store::load() {
  auto& s = *impl_;
  const std::string doing = "can't load breakers";
  std::lock_guard lock(s.mu);
  std::vector<v1::BreakerStatus> out;
  std::string bad;
  const int rc = s.execute(sql_load_breakers, [&](const query& q) {
    v1::BreakerStatus b;
    const std::string bytes = q.bytes(2);
    if (!b.ParseFromString(bytes)) {
      if (bad.empty()) bad = describe_breaker(q.text(0), q.text(1));
      return;
    }
    out.push_back(std::move(b));
  });
  if (rc != SQLITE_OK) return s.error(rc, doing);
  if (!bad.empty()) {
    return make_error(status_code::parse_error, doing + ": " + s.path.string() +
                                                    ": the stored status of " + bad +
                                                    " is not a valid BreakerStatus");
  }
  return out;
}

status sqlite_state_store::record(const v1::BreakerTransition& t) {
  auto& s = *impl_;
  const auto& b = t.breaker();
  const std::string cause = t.cause().empty() ? "transition" : t.cause();
  const std::string doing =
      "can't record " + cause + " of " + describe_breaker(b.name(), b.run_id());
  if (b.name().empty()) {
    return make_error(status_code::invalid_argument,
                      "can't record " + cause + ": the transition names no breaker");
  }
  std::string status_blob;
  std::string transition_blob;
  if (!b.SerializeToString(&status_blob) || !t.SerializeToString(&transition_blob)) {
    return make_error(status_code::internal, doing + ": can't serialize it");
  }
  const std::int64_t time = b.changed_unix_nano() != 0 ? b.changed_unix_nano() : now_unix_nano();
  const std::string subject = breaker_subject(b.name(), b.run_id());
  const std::string evidence = dump(evidence_json(b));

  std::lock_guard lock(s.mu);
  // Plan before the transaction: the planner is pure, and a write lock should not wait on it.
  std::vector<outbox_alert> alerts;
  std::string planner_failure;
  if (s.planner) {
    try {
      alerts = s.planner(t);
    } catch (const std::exception& e) {
      planner_failure = e.what();
    } catch (...) {
      planner_failure = "unknown exception";
    }
    if (!planner_failure.empty()) {
      ++s.planner_errors;
      alerts.clear();
    }
  }

  impl::transaction tx(s);
  int rc = tx.begin();
  if (rc == SQLITE_OK) {
    rc = s.execute(sql_upsert_breaker, {}, b.name(), b.run_id(), name_of(b.state()), b.epoch(),
                   name_of(b.action()), name_of(b.severity()), name_of(b.scope()), b.monitor(),
                   b.reason(), evidence, b.shadow(), b.acknowledged(), b.acknowledged_by(),
                   b.trips(), b.changed_unix_nano(), b.probation_until_unix_nano(),
                   blob{status_blob});
  }
  if (rc == SQLITE_OK) {
    rc = s.execute(sql_insert_transition, {}, b.name(), b.run_id(), b.epoch(),
                   name_of(t.previous()), name_of(b.state()), t.cause(), t.operator_id(), t.note(),
                   t.trigger_source(), t.trigger_seq(), time, blob{transition_blob});
  }
  const std::int64_t seq = sqlite3_last_insert_rowid(s.db.get());
  if (rc == SQLITE_OK && is_operator_cause(t.cause())) {
    rc = s.execute(sql_insert_operator_action, {}, time, t.operator_id(), t.cause(), b.name(),
                   b.run_id(), t.note(), b.epoch(), seq);
  }
  if (rc == SQLITE_OK) {
    // Operators act under their own name; a trip is the monitor's; the rest is the daemon's.
    std::string actor = t.operator_id();
    if (actor.empty()) actor = t.cause() == "trip" ? b.monitor() : "loopwarden";
    rc = s.append_audit(cause, actor, subject, dump(transition_json(t, seq)), time, nullptr);
  }
  for (const auto& a : alerts) {
    if (rc != SQLITE_OK) break;
    rc = s.execute(sql_insert_outbox, {}, a.sink, a.fingerprint, a.kind, a.payload_json,
                   a.created_unix_nano != 0 ? a.created_unix_nano : time, a.attempts,
                   a.next_attempt_unix_nano, a.last_error, std::optional<std::int64_t>(seq));
  }
  if (rc == SQLITE_OK && !planner_failure.empty()) {
    json payload;
    payload["error"] = planner_failure;
    payload["transition_seq"] = seq;
    rc = s.append_audit("alert_planner_error", "loopwarden", subject, dump(payload), time, nullptr);
  }
  if (rc == SQLITE_OK) rc = tx.commit();
  if (rc != SQLITE_OK) return s.error(rc, doing);
  return status::success();
}

result<std::vector<v1::BreakerTransition>> sqlite_state_store::history(const std::string& name,
                                                                       const std::string& run_id,
                                                                       std::size_t limit) {
  auto& s = *impl_;
  const std::string doing = "can't read the history of " + describe_breaker(name, run_id);
  std::lock_guard lock(s.mu);
  std::vector<v1::BreakerTransition> out;
  bool bad = false;
  const int rc = s.execute(
      sql_history,
      [&](const query& q) {
        v1::BreakerTransition t;
        if (!t.ParseFromString(q.bytes(0))) {
          bad = true;
          return;
        }
        out.push_back(std::move(t));
      },
      name, run_id, clamp_limit(limit));
  if (rc != SQLITE_OK) return s.error(rc, doing);
  if (bad) {
    return make_error(status_code::parse_error,
                      doing + ": " + s.path.string() + ": a stored transition does not parse");
  }
  std::reverse(out.begin(), out.end());
  return out;
}

status sqlite_state_store::enqueue(std::vector<outbox_alert> alerts) {
  auto& s = *impl_;
  const std::string doing = "can't enqueue alerts";
  std::lock_guard lock(s.mu);
  const std::int64_t now = now_unix_nano();
  impl::transaction tx(s);
  int rc = tx.begin();
  for (const auto& a : alerts) {
    if (rc != SQLITE_OK) break;
    rc = s.execute(sql_insert_outbox, {}, a.sink, a.fingerprint, a.kind, a.payload_json,
                   a.created_unix_nano != 0 ? a.created_unix_nano : now, a.attempts,
                   a.next_attempt_unix_nano, a.last_error, std::optional<std::int64_t>());
  }
  if (rc == SQLITE_OK) rc = tx.commit();
  if (rc != SQLITE_OK) return s.error(rc, doing);
  return status::success();
}

result<std::vector<outbox_alert>> sqlite_state_store::pending(std::size_t limit) {
  auto& s = *impl_;
  const std::string doing = "can't read pending alerts";
  // On the reader connection (see impl::read_db), not under `mu`. Each call is its own read
  // transaction, so it sees every update committed before it started.
  std::lock_guard lock(s.read_mu);
  if (!s.read_pending) {
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(s.path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
    connection db(raw);
    if (rc != SQLITE_OK) return sqlite_error(db.get(), rc, s.path, doing);
    sqlite3_extended_result_codes(db.get(), 1);
    sqlite3_busy_timeout(db.get(), 5000);
    sqlite3_stmt* st = nullptr;
    rc = sqlite3_prepare_v3(db.get(), sql_pending_outbox, -1, SQLITE_PREPARE_PERSISTENT, &st,
                            nullptr);
    if (rc != SQLITE_OK) return sqlite_error(db.get(), rc, s.path, doing);
    s.read_pending.reset(st);
    s.read_db = std::move(db);
  }
  std::vector<outbox_alert> out;
  const int rc = run(
      s.read_pending.get(), [&](const query& q) { out.push_back(read_outbox_alert(q)); },
      clamp_limit(limit));
  if (rc != SQLITE_OK) return sqlite_error(s.read_db.get(), rc, s.path, doing);
  return out;
}

status sqlite_state_store::mark_delivered(std::int64_t id, std::string_view via_sink,
                                          std::int64_t now_unix_nano) {
  std::lock_guard lock(impl_->mu);
  return impl::update_outbox(*impl_, sql_outbox_delivered, id,
                             "can't mark alert " + std::to_string(id) + " delivered", via_sink,
                             now_unix_nano);
}

status sqlite_state_store::mark_attempt(std::int64_t id, std::uint32_t attempts,
                                        std::int64_t next_attempt_unix_nano,
                                        std::string_view error) {
  std::lock_guard lock(impl_->mu);
  return impl::update_outbox(*impl_, sql_outbox_attempt, id,
                             "can't record a delivery attempt of alert " + std::to_string(id),
                             attempts, next_attempt_unix_nano, error);
}

status sqlite_state_store::mark_failed(std::int64_t id, std::string_view error,
                                       std::int64_t now_unix_nano) {
  std::lock_guard lock(impl_->mu);
  return impl::update_outbox(*impl_, sql_outbox_failed, id,
                             "can't mark alert " + std::to_string(id) + " failed", error,
                             now_unix_nano);
}

result<std::string> sqlite_state_store::create_approval(approval a) {
  auto& s = *impl_;
  const std::string doing = a.id.empty() ? std::string("can't create an approval")
                                         : "can't create approval '" + a.id + "'";
  if (a.state != approval_state::pending || !a.decided_by.empty() || a.decided_unix_nano != 0) {
    return make_error(status_code::invalid_argument,
                      doing + ": a new approval must be pending and undecided");
  }
  if (!a.detail_json.empty() && !json::accept(a.detail_json)) {
    return make_error(status_code::invalid_argument, doing + ": detail_json is not JSON");
  }
  if (a.created_unix_nano == 0) a.created_unix_nano = now_unix_nano();

  std::lock_guard lock(s.mu);
  impl::transaction tx(s);
  int rc = tx.begin();
  std::int64_t n = 0;
  if (rc == SQLITE_OK) {
    rc = s.execute(sql_next_approval_number, [&](const query& q) { n = q.integer(0); });
  }
  // Generated ids follow the row number; skip any a caller already took by name.
  const bool generated = a.id.empty();
  for (bool taken = true; rc == SQLITE_OK && taken;) {
    if (generated) {
      char buffer[32];
      std::snprintf(buffer, sizeof buffer, "ap-%06lld", static_cast<long long>(n));
      a.id = buffer;
    }
    taken = false;
    rc = s.execute(
        sql_approval_exists, [&](const query&) { taken = true; }, a.id);
    if (rc == SQLITE_OK && taken) {
      if (!generated) {
        return make_error(status_code::failed_precondition,
                          doing + ": " + s.path.string() + ": the id already exists");
      }
      ++n;
    }
  }
  if (rc == SQLITE_OK) {
    rc = s.execute(sql_insert_approval, {}, n, a.id, a.created_unix_nano, a.expires_unix_nano,
                   a.monitor, a.breaker, a.run_id, a.summary, a.detail_json, a.requested_by);
  }
  if (rc == SQLITE_OK) {
    std::string actor = !a.requested_by.empty() ? a.requested_by
                        : !a.monitor.empty()    ? a.monitor
                                                : std::string("loopwarden");
    rc = s.append_audit("approval_requested", actor, a.id, dump(approval_json(a)),
                        a.created_unix_nano, nullptr);
  }
  // The page, in this transaction: an approval the host is told about has its alert queued.
  std::string failed;
  if (rc == SQLITE_OK) rc = s.insert_approval_alerts(a, a.created_unix_nano, &failed);
  if (rc == SQLITE_OK) rc = tx.commit();
  if (rc != SQLITE_OK) return s.approval_error(rc, doing, failed);
  return a.id;
}

result<approval> sqlite_state_store::decide_approval(const std::string& id, bool approve,
                                                     std::string_view operator_id,
                                                     std::string_view reason,
                                                     std::int64_t now_unix_nano) {
  auto& s = *impl_;
  const std::string doing =
      std::string("can't ") + (approve ? "approve" : "deny") + " approval '" + id + "'";
  if (operator_id.empty()) {
    return make_error(status_code::refused, doing + ": a decision needs an operator");
  }
  std::lock_guard lock(s.mu);
  impl::transaction tx(s);
  if (int rc = tx.begin(); rc != SQLITE_OK) return s.error(rc, doing);
  auto found = s.require_approval(id, doing);
  if (!found.ok()) return found.error();
  approval a = std::move(*found);
  if (a.state != approval_state::pending) {
    std::string was = "it is already " + std::string(to_string(a.state));
    if (!a.decided_by.empty()) was += " by " + a.decided_by;
    return make_error(status_code::failed_precondition, doing + ": " + was);
  }
  std::string failed;
  if (a.expires_unix_nano != 0 && a.expires_unix_nano <= now_unix_nano) {
    // Record the expiry the decision discovered (and resolve its page), so the refusal and the
    // state agree.
    int rc = s.settle_approval(a, approval_state::expired, "", "expired", now_unix_nano,
                               "loopwarden", &failed);
    if (rc == SQLITE_OK) rc = tx.commit();
    if (rc != SQLITE_OK) return s.approval_error(rc, doing, failed);
    return make_error(status_code::failed_precondition,
                      doing + ": it expired at " + std::to_string(a.expires_unix_nano));
  }
  int rc = s.settle_approval(a, approve ? approval_state::approved : approval_state::denied,
                             operator_id, reason, now_unix_nano, operator_id, &failed);
  if (rc == SQLITE_OK) rc = tx.commit();
  if (rc != SQLITE_OK) return s.approval_error(rc, doing, failed);
  return a;
}

result<approval> sqlite_state_store::use_approval(const std::string& id, std::string_view used_by,
                                                  std::int64_t now_unix_nano) {
  auto& s = *impl_;
  const std::string doing = "can't use approval '" + id + "'";
  std::lock_guard lock(s.mu);
  impl::transaction tx(s);
  if (int rc = tx.begin(); rc != SQLITE_OK) return s.error(rc, doing);
  auto found = s.require_approval(id, doing);
  if (!found.ok()) return found.error();
  approval a = std::move(*found);
  if (a.state != approval_state::approved) {
    return make_error(status_code::failed_precondition,
                      doing + ": it is " + std::string(to_string(a.state)) + ", not approved");
  }
  int rc = s.execute(sql_use_approval, {}, a.id);
  a.state = approval_state::used;
  if (rc == SQLITE_OK) {
    rc = s.append_audit("approval_used", used_by, a.id, dump(approval_json(a)), now_unix_nano,
                        nullptr);
  }
  // The planner decides whether a use alerts (the bundled one: no, its page was resolved when
  // it was approved); whatever it plans commits with the use.
  std::string failed;
  if (rc == SQLITE_OK) rc = s.insert_approval_alerts(a, now_unix_nano, &failed);
  if (rc == SQLITE_OK) rc = tx.commit();
  if (rc != SQLITE_OK) return s.approval_error(rc, doing, failed);
  return a;
}

result<std::vector<approval>> sqlite_state_store::list_approvals(bool pending_only) {
  auto& s = *impl_;
  std::lock_guard lock(s.mu);
  std::vector<approval> out;
  const int rc = s.execute(
      sql_list_approvals, [&](const query& q) { out.push_back(read_approval(q)); },
      pending_only ? 1 : 0);
  if (rc != SQLITE_OK) return s.error(rc, "can't list approvals");
  return out;
}

result<approval> sqlite_state_store::get_approval(const std::string& id) {
  auto& s = *impl_;
  const std::string doing = "can't read approval '" + id + "'";
  std::lock_guard lock(s.mu);
  return s.require_approval(id, doing);
}

result<std::vector<approval>> sqlite_state_store::expire_approvals(std::int64_t now_unix_nano) {
  auto& s = *impl_;
  const std::string doing = "can't expire approvals";
  std::lock_guard lock(s.mu);
  impl::transaction tx(s);
  int rc = tx.begin();
  std::vector<approval> overdue;
  if (rc == SQLITE_OK) {
    rc = s.execute(
        sql_overdue_approvals, [&](const query& q) { overdue.push_back(read_approval(q)); },
        now_unix_nano);
  }
  // Nothing overdue (the usual case, on a timer): end without a commit, so no fsync.
  if (rc == SQLITE_OK && overdue.empty()) return overdue;
  std::string failed;
  for (auto& a : overdue) {
    if (rc != SQLITE_OK) break;
    rc = s.settle_approval(a, approval_state::expired, "", "expired", now_unix_nano, "loopwarden",
                           &failed);
  }
  if (rc == SQLITE_OK) rc = tx.commit();
  if (rc != SQLITE_OK) return s.approval_error(rc, doing, failed);
  return overdue;
}

result<audit_record> sqlite_state_store::append_audit(std::string_view kind, std::string_view actor,
                                                      std::string_view subject,
                                                      std::string_view payload_json,
                                                      std::int64_t time_unix_nano) {
  auto& s = *impl_;
  const std::string doing = "can't append '" + std::string(kind) + "' to the audit log";
  if (kind.empty()) {
    return make_error(status_code::invalid_argument, "can't append to the audit log: empty kind");
  }
  if (!json::accept(payload_json)) {
    return make_error(status_code::invalid_argument,
                      doing + ": the payload is not a JSON document (use {} for none)");
  }
  std::lock_guard lock(s.mu);
  impl::transaction tx(s);
  audit_record r;
  int rc = tx.begin();
  if (rc == SQLITE_OK) {
    rc = s.append_audit(kind, actor, subject, std::string(payload_json), time_unix_nano, &r);
  }
  if (rc == SQLITE_OK) rc = tx.commit();
  if (rc != SQLITE_OK) return s.error(rc, doing);
  return r;
}

result<audit_anchor> sqlite_state_store::audit_head() {
  auto& s = *impl_;
  std::lock_guard lock(s.mu);
  audit_anchor head{0, std::string(audit_genesis_hash)};
  const int rc = s.execute(sql_audit_head, [&](const query& q) {
    head.seq = static_cast<std::uint64_t>(q.integer(0));
    head.hash = q.text(1);
  });
  if (rc != SQLITE_OK) return s.error(rc, "can't read the audit log's head");
  return head;
}

status sqlite_state_store::save_monitor_states(const std::vector<monitor_state>& states) {
  auto& s = *impl_;
  const std::string doing = "can't save the monitors' state";
  std::lock_guard lock(s.mu);
  impl::transaction tx(s);
  int rc = tx.begin();
  if (rc == SQLITE_OK) rc = s.execute(sql_clear_monitor_states, {});
  for (const auto& m : states) {
    if (rc != SQLITE_OK) break;
    rc = s.execute(sql_insert_monitor_state, {}, m.monitor, m.plugin, m.version, blob{m.state},
                   m.saved_unix_nano);
  }
  if (rc == SQLITE_OK) rc = tx.commit();
  if (rc != SQLITE_OK) return s.error(rc, doing);
  return status::success();
}

result<std::vector<monitor_state>> sqlite_state_store::load_monitor_states() {
  auto& s = *impl_;
  std::lock_guard lock(s.mu);
  std::vector<monitor_state> out;
  const int rc = s.execute(sql_read_monitor_states, [&](const query& q) {
    out.push_back({q.text(0), q.text(1), q.text(2), q.bytes(3), q.integer(4)});
  });
  if (rc != SQLITE_OK) return s.error(rc, "can't read the monitors' saved state");
  return out;
}

// ---------------------------------------------------------------------------------------------
// audit.hpp: verification and export (read-only).

result<audit_report> verify_audit(const std::filesystem::path& db,
                                  std::optional<audit_anchor> expected_head) {
  const std::string doing = "can't verify the audit log";
  if (expected_head) {
    const std::string& h = expected_head->hash;
    const bool hex =
        h.size() == audit_genesis_hash.size() && std::all_of(h.begin(), h.end(), [](char c) {
          return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        });
    if (!hex || (expected_head->seq == 0 && h != audit_genesis_hash)) {
      return make_error(status_code::invalid_argument,
                        doing + " of " + db.string() + ": the anchor hash '" + h +
                            "' is not 64 lowercase hex digits (or seq 0 without the genesis hash)");
    }
  }
  auto r = open_read_only(db, doing);
  if (!r.ok()) return r.error();
  audit_chain_verifier verifier(std::move(expected_head));
  if (auto st = read_audit(*r, doing, [&](const audit_record& rec) { verifier.add(rec); });
      !st.ok()) {
    return st;
  }
  return verifier.finish();
}

status export_audit(const std::filesystem::path& db, std::ostream& out) {
  const std::string doing = "can't export the audit log";
  auto r = open_read_only(db, doing);
  if (!r.ok()) return r.error();
  if (auto st =
          read_audit(*r, doing, [&](const audit_record& rec) { out << to_json_line(rec) << '\n'; });
      !st.ok()) {
    return st;
  }
  out.flush();
  if (!out) {
    return make_error(status_code::io_error,
                      doing + " of " + db.string() + ": writing the output failed");
  }
  return status::success();
}

}  // namespace loopwarden::core
