#include <loopwarden/core/audit.hpp>

#include <array>
#include <limits>
#include <mutex>

#include <sodium.h>
#include <nlohmann/json.hpp>

// verify_audit and export_audit read the database, so they live in sqlite_store.cpp beside the
// rest of the SQLite code (one place converts SQLite's errors); this file is the chain itself.

namespace loopwarden::core {
namespace {

// How far from a record's stored seq to look for the seq it was written at, to tell a moved
// record (reordered) from an edited one. Only the diagnosis depends on it, not the detection.
constexpr std::uint64_t reorder_search_window = 1024;

void ensure_sodium() {
  // sodium_init picks the fastest implementations and seeds the RNG. SHA-256 is a pure function
  // in every implementation, so a failed init (no entropy source) cannot change a hash; it
  // would only matter to the random functions, which this file does not use.
  static std::once_flag once;
  std::call_once(once, [] { [[maybe_unused]] const int ignored = sodium_init(); });
}

bool is_hash_hex(std::string_view s) {
  if (s.size() != 2 * crypto_hash_sha256_BYTES) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

void put_u64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((v >> shift) & 0xffU));
  }
}

void put_string(std::string& out, std::string_view s) {
  put_u64(out, s.size());
  out.append(s);
}

std::string seq_range(std::uint64_t first, std::uint64_t last) {
  if (first == last) return "record " + std::to_string(first) + " is";
  return "records " + std::to_string(first) + ".." + std::to_string(last) + " are";
}

// The seq, other than the stored one, under which the record's content matches its hash;
// nearest first.
std::optional<std::uint64_t> written_seq(const audit_record& r) {
  constexpr std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  audit_record probe = r;
  for (std::uint64_t d = 1; d <= reorder_search_window; ++d) {
    if (r.seq > d) {
      probe.seq = r.seq - d;
      if (audit_hash(probe) == r.hash) return probe.seq;
    }
    if (r.seq <= max - d) {
      probe.seq = r.seq + d;
      if (audit_hash(probe) == r.hash) return probe.seq;
    }
  }
  return std::nullopt;
}

}  // namespace

std::string_view to_string(audit_fault_kind kind) {
  switch (kind) {
    case audit_fault_kind::edited:
      return "edited";
    case audit_fault_kind::reordered:
      return "reordered";
    case audit_fault_kind::deleted:
      return "deleted";
    case audit_fault_kind::broken_link:
      return "broken_link";
    case audit_fault_kind::truncated:
      return "truncated";
    case audit_fault_kind::anchor_mismatch:
      return "anchor_mismatch";
  }
  return "unknown";
}

std::string sha256_hex(std::string_view bytes) {
  ensure_sodium();
  std::array<unsigned char, crypto_hash_sha256_BYTES> digest{};
  crypto_hash_sha256(digest.data(), reinterpret_cast<const unsigned char*>(bytes.data()),
                     bytes.size());
  std::array<char, 2 * crypto_hash_sha256_BYTES + 1> hex{};
  sodium_bin2hex(hex.data(), hex.size(), digest.data(), digest.size());
  return std::string(hex.data(), 2 * crypto_hash_sha256_BYTES);
}

std::string audit_hash_input(const audit_record& r) {
  if (!is_hash_hex(r.prev_hash)) return {};
  ensure_sodium();
  std::array<unsigned char, crypto_hash_sha256_BYTES> prev{};
  std::size_t decoded = 0;
  if (sodium_hex2bin(prev.data(), prev.size(), r.prev_hash.data(), r.prev_hash.size(), nullptr,
                     &decoded, nullptr) != 0 ||
      decoded != prev.size()) {
    return {};
  }
  std::string out;
  out.reserve(prev.size() + 16 + 32 + r.kind.size() + r.actor.size() + r.subject.size() +
              r.payload_json.size());
  out.append(reinterpret_cast<const char*>(prev.data()), prev.size());
  put_u64(out, r.seq);
  put_u64(out, static_cast<std::uint64_t>(r.time_unix_nano));  // two's complement, big-endian
  put_string(out, r.kind);
  put_string(out, r.actor);
  put_string(out, r.subject);
  put_string(out, r.payload_json);
  return out;
}

std::string audit_hash(const audit_record& record) {
  std::string input = audit_hash_input(record);
  if (input.empty()) return {};
  return sha256_hex(input);
}

audit_record next_audit_record(const audit_anchor& head, std::int64_t time_unix_nano,
                               std::string kind, std::string actor, std::string subject,
                               std::string payload_json) {
  audit_record r;
  r.seq = head.seq + 1;
  r.time_unix_nano = time_unix_nano;
  r.kind = std::move(kind);
  r.actor = std::move(actor);
  r.subject = std::move(subject);
  r.payload_json = std::move(payload_json);
  r.prev_hash = head.seq == 0 ? std::string(audit_genesis_hash) : head.hash;
  r.hash = audit_hash(r);
  return r;
}

std::string to_json_line(const audit_record& r) {
  nlohmann::ordered_json j;
  j["seq"] = r.seq;
  j["time_unix_nano"] = r.time_unix_nano;
  j["kind"] = r.kind;
  j["actor"] = r.actor;
  j["subject"] = r.subject;
  j["payload_json"] = r.payload_json;
  j["prev_hash"] = r.prev_hash;
  j["hash"] = r.hash;
  // The store writes valid UTF-8 only; a tampered record may not be, and an export must still
  // be written (its hash will not match, which is the point).
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

audit_chain_verifier::audit_chain_verifier(std::optional<audit_anchor> expected_head)
    : expected_head_(std::move(expected_head)) {}

bool audit_chain_verifier::add(const audit_record& r) {
  ++report_.count;
  report_.head_seq = r.seq;
  report_.head_hash = r.hash;
  if (report_.fault) return false;

  const std::uint64_t position = report_.count;
  const std::string where =
      "audit record " + std::to_string(r.seq) + " (position " + std::to_string(position) + ")";
  auto fail = [&](audit_fault_kind kind, std::string message) {
    report_.fault = audit_fault{kind, r.seq, position, where + ": " + std::move(message)};
    return false;
  };

  // Content first: a record whose content matches its hash was written exactly like this, so
  // any later inconsistency is about its place in the chain, not its content.
  if (!is_hash_hex(r.hash) || !is_hash_hex(r.prev_hash)) {
    return fail(audit_fault_kind::edited,
                "its hash or prev_hash is not 64 lowercase hex digits: it was edited");
  }
  if (audit_hash(r) != r.hash) {
    if (auto written = written_seq(r)) {
      return fail(audit_fault_kind::reordered, "its content is intact but was written as record " +
                                                   std::to_string(*written) +
                                                   ": records were reordered or renumbered");
    }
    return fail(audit_fault_kind::edited,
                "its content does not match its hash: it was edited after it was written");
  }
  const std::uint64_t expected_seq = last_seq_ + 1;
  if (r.seq > expected_seq) {
    return fail(audit_fault_kind::deleted,
                seq_range(expected_seq, r.seq - 1) + " missing before it: they were deleted");
  }
  if (r.seq < expected_seq) {
    return fail(audit_fault_kind::reordered,
                "it comes after record " + std::to_string(last_seq_) + ": records were reordered");
  }
  if (r.prev_hash != last_hash_) {
    return fail(audit_fault_kind::broken_link,
                r.seq == 1
                    ? "the first record does not start from the genesis hash: the log "
                      "was replaced by another chain"
                    : "its prev_hash is not the hash of record " + std::to_string(last_seq_) +
                          ": record " + std::to_string(last_seq_) +
                          " was replaced, or records were spliced in from another chain");
  }
  if (expected_head_ && r.seq == expected_head_->seq && r.hash != expected_head_->hash) {
    return fail(audit_fault_kind::anchor_mismatch,
                "its hash " + r.hash + " is not the anchored " + expected_head_->hash +
                    ": the log was rewritten up to here (or the anchor is from another database)");
  }
  last_seq_ = r.seq;
  last_hash_ = r.hash;
  return true;
}

audit_report audit_chain_verifier::finish() const {
  audit_report out = report_;
  if (!out.fault && expected_head_ && expected_head_->seq > last_seq_) {
    const std::uint64_t first_missing = last_seq_ + 1;
    out.fault =
        audit_fault{audit_fault_kind::truncated, first_missing, out.count + 1,
                    "the audit log ends at record " + std::to_string(last_seq_) +
                        " but the anchor says " + "record " + std::to_string(expected_head_->seq) +
                        " was written: " + seq_range(first_missing, expected_head_->seq) +
                        " missing (deleted from the tail)"};
  }
  return out;
}

}  // namespace loopwarden::core
