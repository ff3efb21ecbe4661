#include <google/protobuf/util/message_differencer.h>

#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <loopwarden/core/replay_file.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace core = loopwarden::core;
namespace sdk = loopwarden::sdk;
namespace v1 = loopwarden::v1;
using google::protobuf::util::MessageDifferencer;

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class temp_dir {
 public:
  temp_dir() {
    static std::atomic<int> counter{0};
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    path_ = fs::temp_directory_path() /
            ("loopwarden-replay-test-" + std::to_string(stamp) + "-" + std::to_string(++counter));
    fs::create_directories(path_);
  }
  ~temp_dir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::string read_bytes(const std::string& path) {
  std::string bytes(fs::file_size(path), '\0');
  std::ifstream in(path, std::ios::binary);
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return bytes;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::uint32_t u32le_at(const std::string& bytes, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) {
    v |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes.at(at + i))) << (8 * i);
  }
  return v;
}

std::string u32le(std::uint32_t v) {
  std::string out(4, '\0');
  for (std::size_t i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xffu);
  return out;
}

// Oracle for the record checksum: bitwise reflected CRC-32 (zlib's), independent of the reader.
std::uint32_t oracle_crc32(std::string_view bytes) {
  std::uint32_t crc = 0xffffffffu;
  for (char c : bytes) {
    crc ^= static_cast<unsigned char>(c);
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return crc ^ 0xffffffffu;
}

std::string hex32(std::uint32_t v) {
  std::ostringstream out;
  out << "0x" << std::hex;
  out.width(8);
  out.fill('0');
  out << v;
  return out.str();
}

// Envelope number i: cycles through every body kind, plus one envelope with no body.
v1::Envelope make_envelope(std::uint64_t i) {
  v1::Envelope e;
  e.mutable_schema()->set_major(1);
  e.set_source(i % 2 == 0 ? "trainer/rank0" : "agent/alpha");
  e.set_run_id("run-42");
  e.set_seq(i + 1);
  e.set_time_unix_nano(1'700'000'000'000'000'000 + static_cast<std::int64_t>(i) * 1000);
  (*e.mutable_labels())["host"] = "node-" + std::to_string(i % 3);
  (*e.mutable_labels())["model"] = "m7";
  switch (i % 9) {
    case 0: {
      auto* s = e.mutable_metrics()->add_samples();
      s->set_name("train/loss");
      s->set_value(2.5 / static_cast<double>(i + 1));
      s->set_step(static_cast<std::int64_t>(i));
      break;
    }
    case 1: {
      auto* g = e.mutable_generation();
      g->set_generation(static_cast<std::int64_t>(i / 9));
      g->set_sample_count(1000 + i);
      g->set_token_entropy(5.25);
      break;
    }
    case 2: {
      auto* b = e.mutable_embeddings();
      b->set_stream("generated");
      b->mutable_vectors()->set_dim(3);
      for (int k = 0; k < 6; ++k) b->mutable_vectors()->add_values(0.5f * static_cast<float>(k));
      break;
    }
    case 3: {
      auto* a = e.mutable_agent_step();
      a->set_agent_id("alpha");
      a->set_turn(i);
      a->add_tool_calls()->set_name("bash");
      break;
    }
    case 4: {
      auto* a = e.mutable_action();
      a->set_kind(v1::ACTION_KIND_SHELL);
      a->set_command("rm -rf build/");
      break;
    }
    case 5: {
      auto* t = e.mutable_stage_timing();
      t->set_item_id("pr-" + std::to_string(i));
      t->set_stage("review");
      break;
    }
    case 6: {
      auto* c = e.mutable_cycle_report();
      c->set_cycle(i);
      auto* m = c->add_capability_metrics();
      m->set_name("pass_at_1");
      m->set_value(0.61);
      break;
    }
    case 7:
      e.mutable_heartbeat()->set_events_sent(i);
      break;
    default:
      break;  // no body: still a record; the engine judges it
  }
  return e;
}

std::vector<v1::Envelope> make_envelopes(std::uint64_t n) {
  std::vector<v1::Envelope> out;
  for (std::uint64_t i = 0; i < n; ++i) out.push_back(make_envelope(i));
  return out;
}

struct read_outcome {
  std::vector<core::replay_record> records;
  std::vector<core::replay_problem> problems;
};

// Reads the whole file, failing the test on an open or I/O error.
read_outcome read_all(const std::string& path) {
  sdk::result<core::replay_reader> reader = core::replay_reader::open(path);
  INFO(reader.error().message());
  REQUIRE(reader.ok());
  read_outcome out;
  for (;;) {
    auto next = reader->next();
    INFO(next.error().message());
    REQUIRE(next.ok());
    if (!next->has_value()) break;
    out.records.push_back(std::move(**next));
  }
  REQUIRE(reader->records_read() == out.records.size());
  out.problems = reader->problems();
  REQUIRE(reader->problem_count() == out.problems.size());
  return out;
}

// Byte offset of record `index` in a file of `envelopes` with `header`, from the format alone.
std::uint64_t record_offset(const v1::ReplayHeader& header,
                            const std::vector<v1::Envelope>& envelopes, std::size_t index) {
  std::uint64_t offset = 16 + header.ByteSizeLong();
  for (std::size_t i = 0; i < index; ++i) offset += 8 + envelopes[i].ByteSizeLong();
  return offset;
}

v1::ReplayHeader make_header() {
  v1::ReplayHeader h;
  h.mutable_schema()->set_major(1);
  h.mutable_schema()->set_minor(3);
  h.set_created_unix_nano(1'700'000'123'456'789'000);
  h.set_producer("loopwarden record 0.1.0");
  h.set_description("nightly run, rank 0");
  return h;
}

}  // namespace

TEST_CASE("replay file round-trips many envelopes of every kind in order", "[replay]") {
  temp_dir dir;
  const std::string path = dir.file("many.lwreplay");
  const auto envelopes = make_envelopes(200);
  const v1::ReplayHeader header = make_header();

  std::vector<std::uint64_t> offsets;
  {
    auto writer = core::replay_writer::create(path, header);
    REQUIRE(writer.ok());
    for (const auto& e : envelopes) {
      offsets.push_back(writer->offset());
      REQUIRE(writer->append(e).ok());
    }
    REQUIRE(writer->records_written() == envelopes.size());
    REQUIRE(writer->close().ok());
  }

  const read_outcome got = read_all(path);
  CHECK(got.problems.empty());
  REQUIRE(got.records.size() == envelopes.size());
  for (std::size_t i = 0; i < envelopes.size(); ++i) {
    INFO("record " << i);
    CHECK(got.records[i].index == i);
    CHECK(got.records[i].offset == offsets[i]);
    CHECK(got.records[i].offset == record_offset(header, envelopes, i));
    CHECK(MessageDifferencer::Equals(got.records[i].envelope, envelopes[i]));
  }
  CHECK(fs::file_size(path) == record_offset(header, envelopes, envelopes.size()));
}

TEST_CASE("replay file keeps every header field", "[replay]") {
  temp_dir dir;
  const std::string path = dir.file("header.lwreplay");
  const v1::ReplayHeader header = make_header();
  REQUIRE(core::write_replay_file(path, make_envelopes(3), header).ok());

  auto reader = core::replay_reader::open(path);
  REQUIRE(reader.ok());
  CHECK(MessageDifferencer::Equals(reader->header(), header));
  CHECK(reader->header().producer() == "loopwarden record 0.1.0");
  CHECK(reader->header().schema().minor() == 3);
  CHECK(reader->path() == path);
}

TEST_CASE("replay reader reports a corrupted record with its offset and reads on", "[replay]") {
  temp_dir dir;
  const std::string path = dir.file("corrupt.lwreplay");
  const auto envelopes = make_envelopes(5);
  const v1::ReplayHeader header = make_header();
  REQUIRE(core::write_replay_file(path, envelopes, header).ok());

  // Flip one byte in the middle of record 2's payload.
  const std::uint64_t offset = record_offset(header, envelopes, 2);
  std::string bytes = read_bytes(path);
  const std::size_t payload_size = envelopes[2].ByteSizeLong();
  REQUIRE(u32le_at(bytes, offset) == payload_size);
  const std::uint32_t stored = u32le_at(bytes, offset + 4);
  bytes[offset + 8 + payload_size / 2] ^= 0x5a;
  const std::uint32_t computed =
      oracle_crc32(std::string_view(bytes).substr(offset + 8, payload_size));
  REQUIRE(stored != computed);
  write_bytes(path, bytes);

  const read_outcome got = read_all(path);
  REQUIRE(got.problems.size() == 1);
  CHECK(got.problems[0].offset == offset);
  CHECK(got.problems[0].index == 2);
  CHECK(got.problems[0].kind == core::replay_problem_kind::crc_mismatch);
  CHECK(got.problems[0].message == "record 2 at offset " + std::to_string(offset) +
                                       ": crc mismatch (stored " + hex32(stored) + ", computed " +
                                       hex32(computed) + ") — skipped");
  REQUIRE(got.records.size() == 4);
  const std::array<std::uint64_t, 4> expected_indexes{0, 1, 3, 4};
  for (std::size_t i = 0; i < got.records.size(); ++i) {
    INFO("returned record " << i);
    CHECK(got.records[i].index == expected_indexes[i]);
    CHECK(MessageDifferencer::Equals(got.records[i].envelope, envelopes[expected_indexes[i]]));
  }
}

TEST_CASE("replay reader skips a record whose payload is not an envelope", "[replay]") {
  temp_dir dir;
  const std::string path = dir.file("garbage.lwreplay");
  // Seeded noise, led by a tag with field number 0 so it can never parse as a message.
  std::mt19937 rng(20240517);
  std::string noise(257, '\0');
  for (char& c : noise) c = static_cast<char>(rng() & 0xffu);
  noise[0] = '\x07';
  REQUIRE_FALSE(v1::Envelope().ParseFromString(noise));

  const v1::ReplayHeader header;
  const auto envelopes = make_envelopes(2);
  std::uint64_t bad_offset = 0;
  {
    auto writer = core::replay_writer::create(path, header);
    REQUIRE(writer.ok());
    REQUIRE(writer->append(envelopes[0]).ok());
    bad_offset = writer->offset();
    REQUIRE(writer->test_append_raw(noise).ok());
    REQUIRE(writer->append(envelopes[1]).ok());
    REQUIRE(writer->close().ok());
  }
  CHECK(bad_offset == 16 + 8 + envelopes[0].ByteSizeLong());

  const read_outcome got = read_all(path);
  REQUIRE(got.problems.size() == 1);
  CHECK(got.problems[0].kind == core::replay_problem_kind::bad_payload);
  CHECK(got.problems[0].offset == bad_offset);
  CHECK(got.problems[0].message == "record 1 at offset " + std::to_string(bad_offset) +
                                       ": payload does not parse as an envelope — skipped");
  REQUIRE(got.records.size() == 2);
  CHECK(got.records[1].index == 2);
  CHECK(MessageDifferencer::Equals(got.records[1].envelope, envelopes[1]));
}

TEST_CASE("replay reader reports a truncated final record and ends cleanly", "[replay]") {
  temp_dir dir;
  const std::string path = dir.file("truncated.lwreplay");
  const auto envelopes = make_envelopes(4);
  const v1::ReplayHeader header = make_header();
  REQUIRE(core::write_replay_file(path, envelopes, header).ok());
  const std::string full = read_bytes(path);
  const std::uint64_t last = record_offset(header, envelopes, 3);
  const std::uint64_t last_payload = envelopes[3].ByteSizeLong();

  struct row {
    std::string what;
    std::uint64_t keep;  // bytes of the last record kept
    std::string message;
  };
  const std::vector<row> rows = {
      {"one byte of the length", 1,
       "truncated record: the file ends 1 bytes into its 8-byte length and crc — end of read"},
      {"length without crc", 4,
       "truncated record: the file ends 4 bytes into its 8-byte length and crc — end of read"},
      {"length and crc only", 8,
       "truncated record: its length says " + std::to_string(last_payload) +
           " bytes but only 0 remain — end of read"},
      {"all but one payload byte", 8 + last_payload - 1,
       "truncated record: its length says " + std::to_string(last_payload) + " bytes but only " +
           std::to_string(last_payload - 1) + " remain — end of read"},
  };
  for (const row& r : rows) {
    INFO(r.what);
    write_bytes(path, full.substr(0, last + r.keep));
    auto reader = core::replay_reader::open(path);
    REQUIRE(reader.ok());
    std::uint64_t returned = 0;
    for (;;) {
      auto next = reader->next();
      REQUIRE(next.ok());
      if (!next->has_value()) break;
      ++returned;
    }
    CHECK(returned == 3);
    REQUIRE(reader->problems().size() == 1);
    CHECK(reader->problems()[0].kind == core::replay_problem_kind::truncated);
    CHECK(reader->problems()[0].offset == last);
    CHECK(reader->problems()[0].index == 3);
    CHECK(reader->problems()[0].message ==
          "record 3 at offset " + std::to_string(last) + ": " + r.message);
    // The end is sticky: no second report, no record.
    auto again = reader->next();
    REQUIRE(again.ok());
    CHECK_FALSE(again->has_value());
    CHECK(reader->problem_count() == 1);
  }
}

TEST_CASE("replay reader stops at a length above the 64 MiB limit", "[replay]") {
  temp_dir dir;
  const std::string path = dir.file("oversized.lwreplay");
  const auto envelopes = make_envelopes(2);
  REQUIRE(core::write_replay_file(path, envelopes).ok());
  const std::uint64_t second = record_offset(v1::ReplayHeader(), envelopes, 1);
  std::string bytes = read_bytes(path);
  bytes.replace(second, 4, u32le(64u * 1024u * 1024u + 1u));
  write_bytes(path, bytes);

  const read_outcome got = read_all(path);
  CHECK(got.records.size() == 1);
  REQUIRE(got.problems.size() == 1);
  CHECK(got.problems[0].kind == core::replay_problem_kind::oversized);
  CHECK(got.problems[0].message == "record 1 at offset " + std::to_string(second) +
                                       ": length 67108865 is above the 64 MiB limit (corrupt "
                                       "length) — end of read");
}

TEST_CASE("replay reader refuses files that are not replay files", "[replay]") {
  temp_dir dir;
  const std::string valid_header = make_header().SerializeAsString();
  const std::string preamble = "LWREPLAY" + u32le(1);

  struct row {
    std::string what;
    std::string bytes;
    sdk::status_code code;
    std::string message;  // after "'<path>': "
  };
  const std::vector<row> rows = {
      {"empty file", "", sdk::status_code::parse_error, "empty file, not a loopwarden replay file"},
      {"bad magic", "LWREPLAZ" + u32le(1) + u32le(0), sdk::status_code::parse_error,
       "not a loopwarden replay file (bad magic)"},
      {"text file", "hello, world\n", sdk::status_code::parse_error,
       "not a loopwarden replay file (bad magic)"},
      {"short text file", "PK", sdk::status_code::parse_error,
       "not a loopwarden replay file (bad magic)"},
      {"magic cut short", "LWREP", sdk::status_code::parse_error,
       "truncated header: the file ends at byte 5, inside the 16-byte preamble"},
      {"wrong version", "LWREPLAY" + u32le(7) + u32le(0), sdk::status_code::refused,
       "unsupported replay format version 7 (this reader supports 1)"},
      {"version 0", "LWREPLAY" + u32le(0) + u32le(0), sdk::status_code::refused,
       "unsupported replay format version 0 (this reader supports 1)"},
      {"no header length", preamble, sdk::status_code::parse_error,
       "truncated header: the file ends at byte 12, inside the 16-byte preamble"},
      {"header cut short", preamble + u32le(40) + "abc", sdk::status_code::parse_error,
       "truncated header: its length says 40 bytes but only 3 follow"},
      {"header length above the limit", preamble + u32le(0xffffffffu),
       sdk::status_code::parse_error,
       "header length 4294967295 is above the 64 MiB limit (corrupt file)"},
      {"header is not a ReplayHeader", preamble + u32le(2) + "\x07\x01",
       sdk::status_code::parse_error, "header does not parse as a loopwarden.v1.ReplayHeader"},
      {"header from a newer schema major", preamble + u32le(4) + std::string("\x0a\x02\x08\x02", 4),
       sdk::status_code::refused, "recorded with event schema 2.0, this reader understands 1.x"},
  };
  for (const row& r : rows) {
    INFO(r.what);
    const std::string path = dir.file("bad.lwreplay");
    write_bytes(path, r.bytes);
    auto reader = core::replay_reader::open(path);
    REQUIRE_FALSE(reader.ok());
    CHECK(reader.error().code() == r.code);
    CHECK(reader.error().message() == "'" + path + "': " + r.message);
  }
  // Sanity: the same preamble with a good header opens.
  const std::string path = dir.file("good.lwreplay");
  write_bytes(path,
              preamble + u32le(static_cast<std::uint32_t>(valid_header.size())) + valid_header);
  CHECK(core::replay_reader::open(path).ok());
}

TEST_CASE("replay reader names a missing file", "[replay]") {
  temp_dir dir;
  const std::string path = dir.file("missing.lwreplay");
  auto reader = core::replay_reader::open(path);
  REQUIRE_FALSE(reader.ok());
  CHECK(reader.error().code() == sdk::status_code::not_found);
  CHECK(reader.error().message() ==
        "can't open replay file '" + path + "': no such file or directory");
}

TEST_CASE("replay file with only a header has zero records", "[replay]") {
  temp_dir dir;
  const std::string path = dir.file("empty.lwreplay");
  REQUIRE(core::write_replay_file(path, {}, make_header()).ok());
  auto reader = core::replay_reader::open(path);
  REQUIRE(reader.ok());
  for (int call = 0; call < 3; ++call) {
    INFO("call " << call);
    auto next = reader->next();
    REQUIRE(next.ok());
    CHECK_FALSE(next->has_value());
  }
  CHECK(reader->records_read() == 0);
  CHECK(reader->problems().empty());
}

TEST_CASE("replay reader returns an envelope with no body as a record", "[replay]") {
  temp_dir dir;
  const std::string path = dir.file("nobody.lwreplay");
  v1::Envelope bodiless;
  bodiless.set_source("trainer/rank0");
  bodiless.set_seq(7);
  v1::Envelope empty;  // serializes to zero bytes: a record with an empty payload
  REQUIRE(core::write_replay_file(path, {bodiless, empty}).ok());

  const read_outcome got = read_all(path);
  CHECK(got.problems.empty());
  REQUIRE(got.records.size() == 2);
  CHECK(got.records[0].envelope.body_case() == v1::Envelope::BODY_NOT_SET);
  CHECK(got.records[0].envelope.seq() == 7);
  CHECK(MessageDifferencer::Equals(got.records[1].envelope, empty));
}

TEST_CASE("replay reader hands each problem to the handler before the next record", "[replay]") {
  temp_dir dir;
  const std::string path = dir.file("handler.lwreplay");
  const auto envelopes = make_envelopes(3);
  {
    auto writer = core::replay_writer::create(path, {});
    REQUIRE(writer.ok());
    REQUIRE(writer->append(envelopes[0]).ok());
    REQUIRE(writer->test_append_raw(std::string("\x07\x07\x07", 3)).ok());
    REQUIRE(writer->test_append_raw(std::string("\x0f", 1)).ok());
    REQUIRE(writer->append(envelopes[1]).ok());
    REQUIRE(writer->close().ok());
  }
  auto reader = core::replay_reader::open(path);
  REQUIRE(reader.ok());
  std::vector<std::uint64_t> seen;
  reader->set_problem_handler([&](const core::replay_problem& p) { seen.push_back(p.index); });

  auto first = reader->next();
  REQUIRE(first.ok());
  REQUIRE(first->has_value());
  CHECK((*first)->index == 0);
  CHECK(seen.empty());

  auto second = reader->next();
  REQUIRE(second.ok());
  REQUIRE(second->has_value());
  CHECK((*second)->index == 3);
  CHECK(seen == std::vector<std::uint64_t>{1, 2});
  CHECK(reader->problems().size() == 2);
  CHECK(reader->records_read() == 2);
}

TEST_CASE("replay files are deterministic to write and to read", "[replay]") {
  temp_dir dir;
  const auto envelopes = make_envelopes(60);
  const std::string a = dir.file("a.lwreplay");
  const std::string b = dir.file("b.lwreplay");
  REQUIRE(core::write_replay_file(a, envelopes, make_header()).ok());
  REQUIRE(core::write_replay_file(b, envelopes, make_header()).ok());
  // Labels are a map: without deterministic serialization the bytes could differ.
  CHECK(read_bytes(a) == read_bytes(b));

  // Damage one record so the problem list takes part in the comparison too.
  std::string bytes = read_bytes(a);
  bytes[record_offset(make_header(), envelopes, 30) + 9] ^= 0x01;
  write_bytes(a, bytes);
  const read_outcome first = read_all(a);
  const read_outcome second = read_all(a);
  REQUIRE(first.records.size() == 59);
  REQUIRE(first.records.size() == second.records.size());
  for (std::size_t i = 0; i < first.records.size(); ++i) {
    INFO("record " << i);
    CHECK(first.records[i].index == second.records[i].index);
    CHECK(first.records[i].offset == second.records[i].offset);
    CHECK(MessageDifferencer::Equals(first.records[i].envelope, second.records[i].envelope));
  }
  REQUIRE(first.problems.size() == 1);
  REQUIRE(second.problems.size() == 1);
  CHECK(first.problems[0].message == second.problems[0].message);
}

TEST_CASE("replay writer errors name the file", "[replay]") {
  temp_dir dir;
  const std::string missing_dir = dir.file("no/such/dir/out.lwreplay");
  auto writer = core::replay_writer::create(missing_dir, {});
  REQUIRE_FALSE(writer.ok());
  CHECK(writer.error().code() == sdk::status_code::not_found);
  CHECK(writer.error().message() ==
        "can't create replay file '" + missing_dir + "': no such file or directory");

  const std::string path = dir.file("closed.lwreplay");
  auto closed = core::replay_writer::create(path, {});
  REQUIRE(closed.ok());
  REQUIRE(closed->close().ok());
  CHECK(closed->close().ok());
  const sdk::status after = closed->append(make_envelope(0));
  CHECK(after.code() == sdk::status_code::failed_precondition);
  CHECK(after.message() == "can't append to replay file '" + path + "': it is closed");

  auto status = core::write_replay_file(missing_dir, make_envelopes(1));
  CHECK(status.code() == sdk::status_code::not_found);
  CHECK(status.message().find(missing_dir) != std::string::npos);
}

TEST_CASE("replay writer reports a full disk when it closes", "[replay]") {
  // /dev/full accepts opens and fails every write with ENOSPC; the small header stays in the
  // stdio buffer until close() flushes it.
  if (!fs::exists("/dev/full")) {
    WARN("no /dev/full here; not tested");
    return;
  }
  auto writer = core::replay_writer::create("/dev/full", {});
  REQUIRE(writer.ok());
  REQUIRE(writer->append(make_envelope(0)).ok());
  const sdk::status closed = writer->close();
  CHECK(closed.code() == sdk::status_code::io_error);
  CHECK(closed.message() == "can't write replay file '/dev/full': no space left on device");
}

// The same bytes are asserted by tests/sdk/test_replay_py.py, so the C++ and Python writers and
// docs/replay-format.md agree on one file, byte for byte.
TEST_CASE("replay writer produces the documented bytes for a known file", "[replay]") {
  temp_dir dir;
  const std::string path = dir.file("golden.lwreplay");
  v1::ReplayHeader header;
  header.mutable_schema()->set_major(1);
  header.set_producer("golden");
  v1::Envelope envelope;
  envelope.set_source("s");
  envelope.set_seq(1);
  envelope.mutable_heartbeat()->set_interval_ms(1000);
  REQUIRE(core::write_replay_file(path, {envelope}, header).ok());

  const std::string bytes = read_bytes(path);
  std::string hex;
  for (char c : bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    hex += digits[(static_cast<unsigned char>(c) >> 4) & 0xf];
    hex += digits[static_cast<unsigned char>(c) & 0xf];
  }
  // "LWREPLAY", version 1, header length 12, header; length 11, crc 0x6ef89e45, envelope.
  CHECK(hex ==
        "4c575245504c4159"
        "01000000"
        "0c000000"
        "0a0208011a06676f6c64656e"
        "0b000000"
        "459ef86e"
        "12017320018a010318e807");
}
