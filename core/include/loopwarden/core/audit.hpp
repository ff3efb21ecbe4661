#pragma once
// The audit log: an append-only, hash-chained record of everything that changed a breaker or an
// approval (trips, acks, resets, forced opens, probation ends, approval requests and decisions)
// and of the daemon's own life (start, stop, config reload).
//
// Each record carries the SHA-256 of its predecessor, so editing, deleting or reordering any
// record breaks the chain at that record, and verify_audit names it. The chain cannot prove that
// nothing was cut off its END: a log truncated after record N is itself a valid chain. Keep the
// head (seq and hash, audit_anchor) somewhere else (the daemon logs it) and pass it to
// verify_audit to detect that too. Anyone who can write the database can also rewrite the whole
// chain from some record onwards; only an anchor kept elsewhere catches that.
//
// The exact hash encoding is in docs/state-store.md, with a script that re-verifies an export.
// The records live in the `audit` table of the state store (sqlite_store.hpp), which appends them.

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

#include <loopwarden/core/status.hpp>
#include <loopwarden/status.hpp>

namespace loopwarden::core {

// The prev_hash of the first record: 64 zeros.
inline constexpr std::string_view audit_genesis_hash =
    "0000000000000000000000000000000000000000000000000000000000000000";

// One record of the chain. Hashes are 64 lowercase hex digits.
struct audit_record {
  std::uint64_t seq = 0;  // 1, 2, 3, ... without gaps
  std::int64_t time_unix_nano = 0;
  std::string kind;     // trip, ack, reset, force_open, probation_end, restore, approval_requested,
                        // approval_approved, approval_denied, approval_expired, daemon_start, ...
  std::string actor;    // who: an operator, a monitor instance, or "loopwarden" for the daemon
  std::string subject;  // what: a breaker key ("name" or "name@run_id") or an approval id
  std::string payload_json;  // the details, a JSON document, exactly as hashed
  std::string prev_hash;     // the previous record's hash (audit_genesis_hash for seq 1)
  std::string hash;          // audit_hash(*this)
};

// A chain head remembered outside the database: the record `seq` must exist with `hash`.
struct audit_anchor {
  std::uint64_t seq = 0;  // 0: the empty chain
  std::string hash;       // audit_genesis_hash for the empty chain
};

// What is wrong with the first bad record, and so what most likely happened to the log.
enum class audit_fault_kind {
  edited,           // its content does not match its hash: changed after it was written
  reordered,        // intact, but written at another seq: moved or renumbered
  deleted,          // a gap in seq before it: the records in the gap were deleted
  broken_link,      // its prev_hash is not its predecessor's hash: the predecessor was replaced
  truncated,        // the log ends before the anchor's seq: records were deleted from the tail
  anchor_mismatch,  // the record at the anchor's seq has another hash: the log was rewritten
};

// "edited", "reordered", "deleted", "broken_link", "truncated", "anchor_mismatch".
std::string_view to_string(audit_fault_kind kind);

// The first bad record.
struct audit_fault {
  audit_fault_kind kind = audit_fault_kind::edited;
  std::uint64_t seq = 0;       // the seq stored in the bad record (for truncated: the first
                               // missing seq)
  std::uint64_t position = 0;  // its 1-based position in seq order
  std::string message;         // lowercase, for humans: what is wrong and what probably happened
};

// The outcome of a verification.
struct audit_report {
  std::uint64_t count = 0;                    // records read (all of them, also after a fault)
  std::uint64_t head_seq = 0;                 // the last record's seq; 0 when the log is empty
  std::string head_hash{audit_genesis_hash};  // the last record's hash
  std::optional<audit_fault> fault;           // the first bad record; none when intact

  bool intact() const { return !fault.has_value(); }
};

// The lowercase hex SHA-256 of `bytes` (libsodium).
std::string sha256_hex(std::string_view bytes);

// The canonical bytes that are hashed for a record: prev_hash as 32 raw bytes, seq as 8 bytes
// big-endian, time_unix_nano as 8 bytes big-endian two's complement, then kind, actor, subject
// and payload_json, each as an 8-byte big-endian byte length followed by the bytes. The stored
// `hash` field is not part of it. Returns "" when prev_hash is not 64 hex digits.
std::string audit_hash_input(const audit_record& record);

// sha256_hex(audit_hash_input(record)); "" when prev_hash is not 64 hex digits.
std::string audit_hash(const audit_record& record);

// The record that follows `head` in a chain: seq head.seq + 1, prev_hash head.hash (the genesis
// hash when head.seq is 0), and its hash.
audit_record next_audit_record(const audit_anchor& head, std::int64_t time_unix_nano,
                               std::string kind, std::string actor, std::string subject,
                               std::string payload_json);

// One record as a line of JSON (no newline): every field of audit_record under its own name,
// payload_json as a string holding the exact hashed bytes. export_audit writes these.
std::string to_json_line(const audit_record& record);

// Checks a chain fed one record at a time in seq order, and names the first bad record.
// Thread-safety: none; one verification per object.
class audit_chain_verifier {
 public:
  // With an `expected_head`, the chain must contain that record (seq and hash).
  explicit audit_chain_verifier(std::optional<audit_anchor> expected_head = std::nullopt);

  // Checks the next record. Returns false once a fault has been found (later records are only
  // counted).
  bool add(const audit_record& record);

  // The report: counts, head, and the first fault, including a tail cut off before the anchor.
  audit_report finish() const;

 private:
  std::optional<audit_anchor> expected_head_;
  audit_report report_;
  std::uint64_t last_seq_ = 0;
  std::string last_hash_{audit_genesis_hash};
};

// Verifies the audit chain of the state store at `db`, opened READ-ONLY (safe while the daemon
// has it open in WAL mode; reads one consistent snapshot). Returns the report, whose `fault`
// names the first bad record; with `expected_head`, also detects a truncated or rewritten tail.
// Errors: not_found (no such file), invalid_argument (malformed anchor hash), parse_error (not a
// loopwarden state store), refused (a newer schema), io_error (SQLite could not read it).
result<audit_report> verify_audit(const std::filesystem::path& db,
                                  std::optional<audit_anchor> expected_head = std::nullopt);

// Writes every audit record of the state store at `db` (opened read-only) to `out` as JSON
// lines (to_json_line), in seq order. Errors: as verify_audit, and io_error when `out` fails.
status export_audit(const std::filesystem::path& db, std::ostream& out);

}  // namespace loopwarden::core
