#pragma once
// The durable state store: breakers, their transition history, operator actions, approvals, the
// alert outbox and the hash-chained audit log (audit.hpp), in one SQLite database.
//
// Durability point: a transition is committed and fsynced before record() returns (WAL journal,
// synchronous=FULL, one transaction per transition). The registry calls record() before any
// listener publishes it, so a trip is durable BEFORE it is published: after a crash, even a
// kill -9 right after record() returned, the breaker is still open on restart with the same
// epoch and evidence, its audit record is in the chain, and its alerts are still pending in the
// outbox. What a crash can lose is a transition whose record() had not returned; no listener has
// heard of it either.
//
// Schema, durability and backup: docs/state-store.md.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <loopwarden/v1/breaker.pb.h>
#include <loopwarden/core/alert_outbox.hpp>
#include <loopwarden/core/audit.hpp>
#include <loopwarden/core/breaker_store.hpp>
#include <loopwarden/core/monitor_state.hpp>
#include <loopwarden/core/status.hpp>
#include <loopwarden/status.hpp>

namespace loopwarden::core {

// used: an approved action the gate has let through once (an approval allows one action).
enum class approval_state { pending, approved, denied, expired, used };

// "pending", "approved", "denied", "expired", "used".
std::string_view to_string(approval_state state);

// A human decision a gate is waiting for (a require_approval verdict).
struct approval {
  std::string id;  // assigned by create_approval when empty ("ap-000017")
  std::int64_t created_unix_nano = 0;
  std::int64_t expires_unix_nano = 0;  // 0: never
  std::string monitor;                 // the monitor that asked
  std::string breaker;
  std::string run_id;
  std::string summary;      // one line, for humans
  std::string detail_json;  // a JSON document ("" for none)
  std::string requested_by;
  approval_state state = approval_state::pending;
  std::string decided_by;  // the operator, for approved / denied
  std::string reason;
  std::int64_t decided_unix_nano = 0;  // when decided or expired
};

// One SQLite database (WAL, synchronous=FULL, foreign keys on) holding everything that must
// survive a restart. Schema version in PRAGMA user_version; older schemas are migrated on open,
// newer ones refused.
// Thread-safety: every method is safe from any thread; calls are serialised by one mutex around
// one connection. Other processes may read the database at the same time (verify_audit,
// `sqlite3 .backup`); two stores writing one database keep it consistent but are not supported.
class sqlite_state_store final : public breaker_store, public alert_outbox {
 public:
  // full: a commit is fsynced before it returns (a transition survives a power loss before any
  // host hears of it). normal: a commit survives the daemon's crash or kill -9 but not a crash
  // of the machine, and costs no fsync (the trip-to-host latency drops by the disk's fsync time).
  enum class sync_mode { full, normal };

  struct open_options {
    // How long a statement waits for a lock another connection holds before failing (timeout).
    std::chrono::milliseconds busy_timeout{5000};
    // Create the file (and its parent directories) when missing; else not_found.
    bool create_if_missing = true;
    sync_mode sync = sync_mode::full;
  };

  // The schema version this build writes; open() migrates older files to it.
  static constexpr int schema_version = 2;

  // Opens (creating when allowed) the database at `db_path` and migrates it to schema_version.
  // Errors: not_found (missing and !create_if_missing), io_error (can't create or open it),
  // parse_error (not an SQLite database), refused (a newer schema version, or a database of
  // another application). Every message names the file.
  static result<std::unique_ptr<sqlite_state_store>> open(const std::filesystem::path& db_path);
  static result<std::unique_ptr<sqlite_state_store>> open(const std::filesystem::path& db_path,
                                                          const open_options& options);

  ~sqlite_state_store() override;
  sqlite_state_store(const sqlite_state_store&) = delete;
  sqlite_state_store& operator=(const sqlite_state_store&) = delete;

  const std::filesystem::path& path() const;

  // Plans the alerts of each later transition; record() writes them to the outbox in the same
  // transaction. Unset (the default): transitions make no outbox rows. A planner that throws is
  // counted (planner_errors) and audited as "alert_planner_error"; the transition is still
  // recorded, without alerts.
  void set_alert_planner(alert_planner planner);
  // Counts both planners' failures (transitions' and approvals').
  std::uint64_t planner_errors() const;

  // Plans the alerts of each later approval change (make_approval_alert_planner): the page of a
  // new approval, the resolve of a decided or expired one. create_approval, decide_approval
  // (also the expiry it discovers), use_approval and expire_approvals insert the planned rows
  // into the outbox inside their own transaction, so the change and its alerts commit together
  // or not at all. Why in the store and not by the caller afterwards: committed apart, a kill
  // between the two commits leaves a pending approval nobody was paged about, or a decision
  // whose page never resolves, and nothing after a restart knows to send them. The caller only
  // wakes the alert router. Unset (the default): approvals make no outbox rows. A planner that
  // throws is handled as for transitions: counted in planner_errors, audited as
  // "alert_planner_error", and the change is still made, without alerts (an operator's decision
  // is not refused because of an alert bug). An outbox row SQLite refuses fails the whole call.
  void set_approval_alert_planner(approval_alert_planner planner);

  // breaker_store. load(): every breaker's last BreakerStatus, exactly as recorded, sorted by
  // (name, run_id). record(): ONE transaction that upserts the breaker, appends the transition,
  // an operator_actions row (for ack, reset, force_open), an audit record (kind = the cause) and
  // the planned outbox rows, committed and fsynced before it returns. history(): from the
  // durable transitions table, oldest first. Errors: invalid_argument (a transition without a
  // breaker name), io_error / timeout (SQLite), parse_error (a stored blob does not parse).
  result<std::vector<v1::BreakerStatus>> load() override;
  status record(const v1::BreakerTransition& transition) override;
  result<std::vector<v1::BreakerTransition>> history(const std::string& name,
                                                     const std::string& run_id,
                                                     std::size_t limit) override;

  // alert_outbox, as documented there; each call is one committed transaction. Ids increase
  // and are never reused. created_unix_nano 0 becomes the current time. pending() ignores
  // next_attempt_unix_nano (the router filters by time). mark_*: not_found for an unknown id;
  // marking an alert that is already delivered or failed changes nothing and succeeds.
  status enqueue(std::vector<outbox_alert> alerts) override;
  result<std::vector<outbox_alert>> pending(std::size_t limit) override;
  status mark_delivered(std::int64_t id, std::string_view via_sink,
                        std::int64_t now_unix_nano) override;
  status mark_attempt(std::int64_t id, std::uint32_t attempts, std::int64_t next_attempt_unix_nano,
                      std::string_view error) override;
  status mark_failed(std::int64_t id, std::string_view error, std::int64_t now_unix_nano) override;

  // Every approval change below is one transaction holding the approval row, its audit record
  // and the approval planner's outbox rows (set_approval_alert_planner). If any of them fails,
  // nothing of the change is committed and the error names what failed (an outbox row names its
  // approval and sink).

  // Stores a new pending approval and returns its id: `a.id`, or a fresh "ap-NNNNNN" when empty.
  // Audited as "approval_requested"; its page is queued with it. Errors: invalid_argument (not
  // pending, already decided, or detail_json not JSON), failed_precondition (the id exists, or
  // the database refused a row), io_error.
  result<std::string> create_approval(approval a);

  // Approves or denies a pending approval and returns it as decided. Audited as
  // "approval_approved" / "approval_denied"; the resolve of its page is queued with it. An empty
  // reason is fine. Errors: refused (empty operator), not_found, failed_precondition (already
  // decided, or expired: one past its expiry is marked expired, audited, its page resolved, and
  // the decision refused), io_error.
  result<approval> decide_approval(const std::string& id, bool approve,
                                   std::string_view operator_id, std::string_view reason,
                                   std::int64_t now_unix_nano);

  // Consumes an approved approval: the gate let its action through once. Audited as
  // "approval_used" with `used_by` (the asking source) as the actor. Errors: not_found,
  // failed_precondition (not approved: pending, denied, expired or already used), io_error.
  result<approval> use_approval(const std::string& id, std::string_view used_by,
                                std::int64_t now_unix_nano);

  // Every approval (or only those in state pending; an overdue one stays pending until
  // expire_approvals), oldest first.
  result<std::vector<approval>> list_approvals(bool pending_only);
  // Errors: not_found, io_error.
  result<approval> get_approval(const std::string& id);

  // Marks every pending approval whose expiry is at or before `now_unix_nano` expired (each
  // audited as "approval_expired" with its page resolved, all in one transaction) and returns
  // them. Errors: failed_precondition / io_error (then none of them is expired).
  result<std::vector<approval>> expire_approvals(std::int64_t now_unix_nano);

  // Appends one audit record for an event that is not a transition (daemon_start, daemon_stop,
  // config_reload, ...) and returns it (its seq and hash are the new head). time 0: now.
  // Errors: invalid_argument (empty kind, or payload_json not a JSON document: "{}" for none),
  // io_error.
  result<audit_record> append_audit(std::string_view kind, std::string_view actor,
                                    std::string_view subject, std::string_view payload_json,
                                    std::int64_t time_unix_nano);

  // Replaces the saved monitor states with `states`, in one transaction (a crash leaves the
  // previous set or the new one, never a mix). Errors: io_error.
  status save_monitor_states(const std::vector<monitor_state>& states);
  // The saved monitor states, by instance name. Errors: io_error.
  result<std::vector<monitor_state>> load_monitor_states();

  // The chain's head (seq 0 and the genesis hash when empty), to log as an anchor for
  // verify_audit. Errors: io_error.
  result<audit_anchor> audit_head();

 private:
  struct impl;
  explicit sqlite_state_store(std::unique_ptr<impl> state);

  std::unique_ptr<impl> impl_;  // the connection, its statements and the mutex guarding them
};

}  // namespace loopwarden::core
