#include <catch2/catch.hpp>

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <sqlite3.h>
#include <nlohmann/json.hpp>

#include <loopwarden/core/audit.hpp>
#include <loopwarden/core/sqlite_store.hpp>

using namespace loopwarden;
namespace fs = std::filesystem;
using core::audit_fault_kind;
using core::audit_record;

namespace {

class temp_dir {
 public:
  temp_dir() {
    std::string pattern = (fs::temp_directory_path() / "lw-audit-XXXXXX").string();
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

std::unique_ptr<core::sqlite_state_store> open_store(const fs::path& db) {
  auto opened = core::sqlite_state_store::open(db);
  INFO(opened.error().message());
  REQUIRE(opened.ok());
  return std::move(opened).value();
}

// Runs SQL on a database behind the store's back, the way someone tampering with it would.
void exec_sql(const fs::path& db, const std::string& sql) {
  sqlite3* raw = nullptr;
  const int open_rc =
      sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  char* error = nullptr;
  const int rc =
      open_rc == SQLITE_OK ? sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, &error) : open_rc;
  const std::string message = error != nullptr ? error : sqlite3_errmsg(raw);
  sqlite3_free(error);
  sqlite3_close(raw);
  INFO(sql << ": " << message);
  REQUIRE(rc == SQLITE_OK);
}

// The canonical encoding, written out independently of audit.cpp.
std::string be64(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}
std::string length_prefixed(const std::string& s) { return be64(s.size()) + s; }
std::string unhex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}
std::string hand_hash(const std::string& prev_hex, std::uint64_t seq, std::int64_t time,
                      const std::string& kind, const std::string& actor, const std::string& subject,
                      const std::string& payload) {
  return core::sha256_hex(unhex(prev_hex) + be64(seq) + be64(static_cast<std::uint64_t>(time)) +
                          length_prefixed(kind) + length_prefixed(actor) +
                          length_prefixed(subject) + length_prefixed(payload));
}

// A store with six audit records, closed; returns them as appended.
std::vector<audit_record> make_log(const fs::path& db) {
  auto store = open_store(db);
  std::vector<audit_record> out;
  for (int i = 1; i <= 6; ++i) {
    auto r = store->append_audit("daemon_start", "loopwarden", "node-" + std::to_string(i),
                                 "{\"n\":" + std::to_string(i) + "}", 1000 * i);
    INFO(r.error().message());
    REQUIRE(r.ok());
    out.push_back(*r);
  }
  return out;
}

core::audit_report verify(const fs::path& db,
                          std::optional<core::audit_anchor> anchor = std::nullopt) {
  auto report = core::verify_audit(db, std::move(anchor));
  INFO(report.error().message());
  REQUIRE(report.ok());
  return *report;
}

const std::string drop_guards =
    "DROP TRIGGER audit_is_append_only_update; DROP TRIGGER audit_is_append_only_delete; ";

}  // namespace

TEST_CASE("sha256 matches the published test vectors", "[audit]") {
  // FIPS 180-2, appendix B, and the empty message.
  CHECK(core::sha256_hex("abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(core::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(core::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST_CASE("the hash input is the documented length-prefixed encoding", "[audit]") {
  audit_record r;
  r.seq = 258;
  r.time_unix_nano = -1;
  r.kind = "ab";
  r.actor = "";
  r.subject = "s";
  r.payload_json = "{}";
  r.prev_hash = std::string(62, '0') + "ff";
  // Written out byte by byte: prev (32), seq, time, then each string with an 8-byte length.
  const std::string expected = std::string(31, '\0') + "\xff" +               // prev_hash
                               std::string("\0\0\0\0\0\0\x01\x02", 8) +       // seq 258
                               std::string(8, '\xff') +                       // time -1
                               std::string("\0\0\0\0\0\0\0\x02", 8) + "ab" +  // kind
                               std::string(8, '\0') +                         // actor ""
                               std::string("\0\0\0\0\0\0\0\x01", 8) + "s" +   // subject
                               std::string("\0\0\0\0\0\0\0\x02", 8) + "{}";   // payload
  CHECK(core::audit_hash_input(r) == expected);
  CHECK(core::audit_hash(r) == core::sha256_hex(expected));

  r.prev_hash = "not hex";
  CHECK(core::audit_hash_input(r).empty());
  CHECK(core::audit_hash(r).empty());
}

TEST_CASE("every field and every field boundary changes the hash", "[audit]") {
  const audit_record base =
      core::next_audit_record({}, 5, "trip", "monitor-a", "subject", "{\"k\":1}");
  struct row {
    const char* what;
    audit_record record;
  };
  std::vector<row> rows;
  auto with = [&](const char* what, auto change) {
    audit_record r = base;
    change(r);
    rows.push_back({what, r});
  };
  with("seq", [](audit_record& r) { r.seq = 2; });
  with("time", [](audit_record& r) { r.time_unix_nano = 6; });
  with("kind", [](audit_record& r) { r.kind = "ack"; });
  with("actor", [](audit_record& r) { r.actor = "monitor-b"; });
  with("subject", [](audit_record& r) { r.subject = "other"; });
  with("payload", [](audit_record& r) { r.payload_json = "{\"k\":2}"; });
  with("prev_hash", [](audit_record& r) { r.prev_hash = std::string(63, '0') + "1"; });
  // The same bytes split differently between fields must not collide.
  with("actor/subject boundary", [](audit_record& r) {
    r.actor = "monitor-as";
    r.subject = "ubject";
  });
  with("kind/actor boundary", [](audit_record& r) {
    r.kind = "tri";
    r.actor = "pmonitor-a";
  });
  CHECK(base.hash == core::audit_hash(base));
  for (const auto& [what, record] : rows) {
    INFO(what);
    CHECK(core::audit_hash(record) != base.hash);
  }
}

TEST_CASE("a two-record chain is the hand-computed one", "[audit]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  auto store = open_store(db);
  auto first = store->append_audit("daemon_start", "loopwarden", "", "{}", 1000);
  REQUIRE(first.ok());
  auto second = store->append_audit("config_reload", "alice", "config.yaml", "{\"ok\":true}", 2000);
  REQUIRE(second.ok());

  const std::string genesis(64, '0');
  const std::string h1 = hand_hash(genesis, 1, 1000, "daemon_start", "loopwarden", "", "{}");
  const std::string h2 =
      hand_hash(h1, 2, 2000, "config_reload", "alice", "config.yaml", "{\"ok\":true}");
  CHECK(first->seq == 1);
  CHECK(first->prev_hash == genesis);
  CHECK(first->hash == h1);
  CHECK(second->seq == 2);
  CHECK(second->prev_hash == h1);
  CHECK(second->hash == h2);

  auto head = store->audit_head();
  REQUIRE(head.ok());
  CHECK(head->seq == 2);
  CHECK(head->hash == h2);

  // What is on disk is what was returned.
  std::ostringstream out;
  REQUIRE(core::export_audit(db, out).ok());
  std::istringstream lines(out.str());
  std::string line;
  std::vector<std::string> hashes;
  while (std::getline(lines, line)) hashes.push_back(nlohmann::json::parse(line).at("hash"));
  CHECK(hashes == std::vector<std::string>{h1, h2});
}

TEST_CASE("verify reports an intact log with its head, also with a matching anchor", "[audit]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  const auto records = make_log(db);
  auto report = verify(db);
  CHECK(report.intact());
  CHECK(report.count == 6);
  CHECK(report.head_seq == 6);
  CHECK(report.head_hash == records.back().hash);
  CHECK(verify(db, core::audit_anchor{6, records[5].hash}).intact());
  // An older anchor is fine too: the log grew after it was taken.
  CHECK(verify(db, core::audit_anchor{3, records[2].hash}).intact());
}

TEST_CASE("an edited payload is named by its seq", "[audit]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  make_log(db);
  exec_sql(db, drop_guards + "UPDATE audit SET payload_json = '{\"n\":33}' WHERE seq = 3");
  auto report = verify(db);
  REQUIRE(report.fault);
  CHECK(report.fault->kind == audit_fault_kind::edited);
  CHECK(report.fault->seq == 3);
  CHECK(report.fault->position == 3);
  CHECK_THAT(report.fault->message, Catch::Contains("audit record 3") && Catch::Contains("edited"));
  CHECK(report.count == 6);
}

TEST_CASE("a deleted middle record is named by the record after the gap", "[audit]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  make_log(db);
  exec_sql(db, drop_guards + "DELETE FROM audit WHERE seq = 3");
  auto report = verify(db);
  REQUIRE(report.fault);
  CHECK(report.fault->kind == audit_fault_kind::deleted);
  CHECK(report.fault->seq == 4);
  CHECK(report.fault->position == 3);
  CHECK_THAT(report.fault->message, Catch::Contains("record 3 is missing"));
}

TEST_CASE("two swapped records are named by the first of them as reordered", "[audit]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  make_log(db);
  exec_sql(db, drop_guards +
                   "UPDATE audit SET seq = -3 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = "
                   "4; UPDATE audit SET seq = 4 WHERE seq = -3;");
  auto report = verify(db);
  REQUIRE(report.fault);
  CHECK(report.fault->kind == audit_fault_kind::reordered);
  CHECK(report.fault->seq == 3);
  CHECK(report.fault->position == 3);
  CHECK_THAT(report.fault->message, Catch::Contains("written as record 4"));
}

TEST_CASE("a replaced record with a recomputed hash breaks the link of the next one", "[audit]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  auto records = make_log(db);
  audit_record forged = records[2];
  forged.payload_json = "{\"n\":999}";
  forged.hash = core::audit_hash(forged);
  exec_sql(db, drop_guards + "UPDATE audit SET payload_json = '" + forged.payload_json +
                   "', hash = '" + forged.hash + "' WHERE seq = 3");
  auto report = verify(db);
  REQUIRE(report.fault);
  CHECK(report.fault->kind == audit_fault_kind::broken_link);
  CHECK(report.fault->seq == 4);
  CHECK(report.fault->position == 4);
}

TEST_CASE("a deleted tail record is detected only against an anchor", "[audit]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  auto records = make_log(db);
  exec_sql(db, drop_guards + "DELETE FROM audit WHERE seq = 6");

  // The honest limit: a shortened chain is a valid chain.
  auto unanchored = verify(db);
  CHECK(unanchored.intact());
  CHECK(unanchored.count == 5);
  CHECK(unanchored.head_seq == 5);

  auto anchored = verify(db, core::audit_anchor{6, records[5].hash});
  REQUIRE(anchored.fault);
  CHECK(anchored.fault->kind == audit_fault_kind::truncated);
  CHECK(anchored.fault->seq == 6);
  CHECK(anchored.fault->position == 6);
  CHECK_THAT(anchored.fault->message, Catch::Contains("ends at record 5"));
}

TEST_CASE("a tail rewritten with valid hashes is detected only against an anchor", "[audit]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  auto records = make_log(db);
  audit_record forged = records[5];
  forged.payload_json = "{\"n\":0}";
  forged.hash = core::audit_hash(forged);
  exec_sql(db, drop_guards + "UPDATE audit SET payload_json = '" + forged.payload_json +
                   "', hash = '" + forged.hash + "' WHERE seq = 6");
  CHECK(verify(db).intact());
  auto anchored = verify(db, core::audit_anchor{6, records[5].hash});
  REQUIRE(anchored.fault);
  CHECK(anchored.fault->kind == audit_fault_kind::anchor_mismatch);
  CHECK(anchored.fault->seq == 6);
}

TEST_CASE("the store refuses to update or delete audit records", "[audit]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  make_log(db);
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  CHECK(sqlite3_exec(raw, "UPDATE audit SET kind = 'x' WHERE seq = 1", nullptr, nullptr, nullptr) !=
        SQLITE_OK);
  CHECK_THAT(std::string(sqlite3_errmsg(raw)), Catch::Contains("append-only"));
  CHECK(sqlite3_exec(raw, "DELETE FROM audit", nullptr, nullptr, nullptr) != SQLITE_OK);
  sqlite3_close(raw);
  CHECK(verify(db).intact());
}

TEST_CASE("verify reads a log the store still has open in WAL mode", "[audit]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  auto store = open_store(db);
  for (int i = 0; i < 3; ++i) REQUIRE(store->append_audit("tick", "t", "", "{}", i + 1).ok());
  REQUIRE(fs::exists(db.string() + "-wal"));
  auto report = verify(db);
  CHECK(report.intact());
  CHECK(report.count == 3);
  // The reader held no lock: the writer carries on, and a second verification sees it.
  REQUIRE(store->append_audit("tick", "t", "", "{}", 4).ok());
  CHECK(verify(db).count == 4);
}

TEST_CASE("export writes one parseable JSON line per record with every field", "[audit]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  const auto records = make_log(db);
  std::ostringstream out;
  REQUIRE(core::export_audit(db, out).ok());
  std::istringstream lines(out.str());
  std::string line;
  std::size_t n = 0;
  core::audit_chain_verifier verifier;
  while (std::getline(lines, line)) {
    INFO(line);
    REQUIRE(n < records.size());
    const auto j = nlohmann::json::parse(line);
    audit_record r;
    r.seq = j.at("seq").get<std::uint64_t>();
    r.time_unix_nano = j.at("time_unix_nano").get<std::int64_t>();
    r.kind = j.at("kind").get<std::string>();
    r.actor = j.at("actor").get<std::string>();
    r.subject = j.at("subject").get<std::string>();
    r.payload_json = j.at("payload_json").get<std::string>();
    r.prev_hash = j.at("prev_hash").get<std::string>();
    r.hash = j.at("hash").get<std::string>();
    const auto& want = records[n];
    CHECK(r.seq == want.seq);
    CHECK(r.time_unix_nano == want.time_unix_nano);
    CHECK(r.kind == want.kind);
    CHECK(r.actor == want.actor);
    CHECK(r.subject == want.subject);
    CHECK(r.payload_json == want.payload_json);
    CHECK(r.prev_hash == want.prev_hash);
    CHECK(r.hash == want.hash);
    CHECK(j.size() == 8);
    // The exported fields alone are enough to re-verify the chain.
    verifier.add(r);
    ++n;
  }
  CHECK(n == records.size());
  CHECK(verifier.finish().intact());
}

TEST_CASE("strings that are not UTF-8 are stored so that the export still verifies", "[audit]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  {
    auto store = open_store(db);
    auto r = store->append_audit("ack", "op\xff\xfe", "breaker\xc3", "{}", 7);
    REQUIRE(r.ok());
    CHECK(r->actor == "op\xef\xbf\xbd\xef\xbf\xbd");  // U+FFFD twice
  }
  std::ostringstream out;
  REQUIRE(core::export_audit(db, out).ok());
  const auto j = nlohmann::json::parse(out.str());
  audit_record r;
  r.seq = j.at("seq");
  r.time_unix_nano = j.at("time_unix_nano");
  r.kind = j.at("kind");
  r.actor = j.at("actor");
  r.subject = j.at("subject");
  r.payload_json = j.at("payload_json");
  r.prev_hash = j.at("prev_hash");
  CHECK(core::audit_hash(r) == j.at("hash").get<std::string>());
  CHECK(verify(db).intact());
}

TEST_CASE("verify and export name the file they cannot read", "[audit]") {
  temp_dir dir;
  const auto missing = dir / "missing.db";
  auto report = core::verify_audit(missing);
  REQUIRE_FALSE(report.ok());
  CHECK(report.error().code() == sdk::status_code::not_found);
  CHECK_THAT(report.error().message(), Catch::Contains(missing.string()));

  std::ostringstream out;
  auto exported = core::export_audit(missing, out);
  CHECK(exported.code() == sdk::status_code::not_found);

  const auto other = dir / "other.db";
  exec_sql(other, "CREATE TABLE t (x)");
  auto not_ours = core::verify_audit(other);
  REQUIRE_FALSE(not_ours.ok());
  CHECK(not_ours.error().code() == sdk::status_code::parse_error);
  CHECK_THAT(not_ours.error().message(),
             Catch::Contains(other.string()) && Catch::Contains("no audit table"));
}

TEST_CASE("verify refuses a malformed anchor", "[audit]") {
  temp_dir dir;
  const auto db = dir / "state.db";
  make_log(db);
  for (const auto& anchor : {core::audit_anchor{3, "xyz"}, core::audit_anchor{3, ""},
                             core::audit_anchor{0, std::string(64, 'a')}}) {
    INFO(anchor.seq << " " << anchor.hash);
    auto report = core::verify_audit(db, anchor);
    REQUIRE_FALSE(report.ok());
    CHECK(report.error().code() == sdk::status_code::invalid_argument);
  }
}
