#pragma once
// Recorded event files ("replay files"): a header, then one framed, CRC-checked record per
// envelope. `loopwarden record` writes them and `loopwarden replay FILE` feeds them through the
// engine; docs/replay-format.md specifies the bytes.
//
//   file   := "LWREPLAY" u32le(version = 1) u32le(header_len) ReplayHeader[header_len] record*
//   record := u32le(payload_len) u32le(crc32(payload)) Envelope[payload_len]

#include <loopwarden/v1/envelope.pb.h>
#include <loopwarden/v1/replay.pb.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <loopwarden/status.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace loopwarden::core {

// The eight bytes every replay file starts with.
inline constexpr std::string_view replay_magic = "LWREPLAY";
// The only format version this library reads and writes.
inline constexpr std::uint32_t replay_format_version = 1;
// Largest header or record payload accepted; a longer length is treated as corruption.
inline constexpr std::uint32_t replay_max_payload_bytes = 64u * 1024u * 1024u;

namespace detail {
struct file_closer {
  void operator()(std::FILE* f) const;
};
}  // namespace detail

// Writes a replay file from scratch. Records go through a stdio buffer; call close() to flush
// and learn whether everything reached the file.
// Thread-safety: none; use one writer from one thread at a time (it is movable, not copyable).
class replay_writer {
 public:
  // Creates (or truncates) `path` and writes the file header for `header`.
  // Errors: io_error (not_found for a missing directory) naming the file and the OS reason;
  // invalid_argument when the header does not serialize.
  static sdk::result<replay_writer> create(const std::string& path, const v1::ReplayHeader& header);

  replay_writer(replay_writer&&) noexcept = default;
  replay_writer& operator=(replay_writer&&) noexcept = default;
  // Closes the file if close() was not called; an error at that point is lost, so call close().
  ~replay_writer() = default;

  // Appends one envelope as a record. Serialization is deterministic (labels sorted by key), so
  // the same envelopes give the same bytes. Errors: io_error naming the file;
  // invalid_argument for an envelope larger than replay_max_payload_bytes;
  // failed_precondition after close().
  sdk::status append(const v1::Envelope& envelope);

  // Test hook: appends `payload` as a record with a correct length and CRC, whatever its bytes
  // (to build files with records that do not parse). Errors as append().
  sdk::status test_append_raw(std::string_view payload);

  // Flushes and closes the file. Errors: io_error naming the file (a failed flush or close,
  // e.g. a full disk). Closing twice is ok.
  sdk::status close();

  // The file being written.
  const std::string& path() const { return path_; }
  // Records appended so far.
  std::uint64_t records_written() const { return records_written_; }
  // Bytes written so far (header included): the offset at which the next record starts.
  std::uint64_t offset() const { return offset_; }

 private:
  replay_writer(std::string path, std::unique_ptr<std::FILE, detail::file_closer> file);
  sdk::status write(const void* data, std::size_t size);

  std::string path_;
  std::unique_ptr<std::FILE, detail::file_closer> file_;  // null once closed
  std::uint64_t records_written_ = 0;
  std::uint64_t offset_ = 0;
};

// One record read back: its position in the file and its envelope.
struct replay_record {
  std::uint64_t index = 0;   // position among all records of the file, good or bad, from 0
  std::uint64_t offset = 0;  // byte offset of the record's length prefix
  v1::Envelope envelope;     // may have no body set; judging that is the engine's job
};

// Why a record was skipped or the read ended early.
enum class replay_problem_kind {
  crc_mismatch,  // the payload's CRC differs from the stored one: skipped
  bad_payload,   // the CRC matches but the payload is not an Envelope: skipped
  truncated,     // the file ends inside a record: the read ends
  oversized,     // a length above replay_max_payload_bytes: cannot frame further, the read ends
};

// A record the reader could not return. The message is lowercase and names the record's index
// and offset, e.g. "record 3 at offset 1234: crc mismatch (stored 0x1a2b3c4d, computed
// 0x0badf00d) — skipped".
struct replay_problem {
  std::uint64_t offset = 0;  // byte offset of the record's length prefix
  std::uint64_t index = 0;   // the record's index, as in replay_record
  replay_problem_kind kind = replay_problem_kind::crc_mismatch;
  std::string message;
};

// Reads a replay file record by record. Damaged records do not end the read: a record whose CRC
// does not match, or whose payload is not an Envelope, is reported as a replay_problem and
// skipped; a file that ends inside a record is reported and ends the read cleanly.
// Thread-safety: none; use one reader from one thread at a time (movable, not copyable).
class replay_reader {
 public:
  // Called with each problem as next() finds it, before next() returns.
  using problem_handler = std::function<void(const replay_problem&)>;
  // problems() keeps at most this many; problem_count() counts them all.
  static constexpr std::size_t max_kept_problems = 1000;

  // Opens `path` and validates its preamble and header. Errors, each naming the file:
  // not_found / io_error when it cannot be opened or read; parse_error for an empty file, bad
  // magic ("not a loopwarden replay file (bad magic)"), a truncated or unparsable header;
  // refused for another format version or a header whose schema major is not 1.
  static sdk::result<replay_reader> open(const std::string& path);

  replay_reader(replay_reader&&) noexcept = default;
  replay_reader& operator=(replay_reader&&) noexcept = default;
  ~replay_reader() = default;

  // The file's header, as recorded.
  const v1::ReplayHeader& header() const { return header_; }
  // The file being read.
  const std::string& path() const { return path_; }

  // Installs a handler for problems found from now on (empty: none). Problems are also kept.
  void set_problem_handler(problem_handler handler) { on_problem_ = std::move(handler); }

  // The next good record, skipping (and reporting) damaged ones; nullopt at the end of the file
  // or after a truncated or oversized record, and on every later call.
  // Errors: io_error naming the file when reading fails; the read then ends.
  sdk::result<std::optional<replay_record>> next();

  // Good records returned by next() so far.
  std::uint64_t records_read() const { return records_read_; }
  // The first max_kept_problems problems found so far, in file order.
  const std::vector<replay_problem>& problems() const { return problems_; }
  // Every problem found so far, kept or not.
  std::uint64_t problem_count() const { return problem_count_; }

 private:
  replay_reader(std::string path, std::unique_ptr<std::FILE, detail::file_closer> file);
  sdk::status read_header();
  // Reads up to `size` bytes; returns how many were read (short only at end of file).
  sdk::result<std::size_t> read(void* data, std::size_t size);
  void report(replay_problem_kind kind, std::uint64_t offset, std::uint64_t index,
              std::string message);

  std::string path_;
  std::unique_ptr<std::FILE, detail::file_closer> file_;
  v1::ReplayHeader header_;
  problem_handler on_problem_;
  std::uint64_t offset_ = 0;      // bytes consumed so far
  std::uint64_t next_index_ = 0;  // index of the next record in the file
  std::uint64_t records_read_ = 0;
  std::uint64_t problem_count_ = 0;
  std::vector<replay_problem> problems_;
  std::string payload_;  // reused between records
  bool done_ = false;
};

// Writes `envelopes` to a new replay file at `path` with `header` (test and tool convenience).
// Errors: those of replay_writer, naming the file.
sdk::status write_replay_file(const std::string& path, const std::vector<v1::Envelope>& envelopes,
                              const v1::ReplayHeader& header = {});

}  // namespace loopwarden::core
