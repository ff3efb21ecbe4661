#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <algorithm>
#include <array>
#include <boost/crc.hpp>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <loopwarden/core/replay_file.hpp>
#include <loopwarden/version.hpp>
#include <utility>

namespace loopwarden::core {
namespace detail {

void file_closer::operator()(std::FILE* f) const {
  // Only reached for a writer that was never closed, or for a reader: nobody is left to hear
  // about an error here.
  if (f != nullptr) std::fclose(f);
}

}  // namespace detail

namespace {

using file_ptr = std::unique_ptr<std::FILE, detail::file_closer>;

constexpr std::size_t preamble_bytes = 16;      // magic, version, header length
constexpr std::size_t record_prefix_bytes = 8;  // payload length, crc

std::uint32_t crc32_of(std::string_view bytes) {
  // Reflected CRC-32, polynomial 0x04C11DB7 (zlib's crc32, Python's zlib.crc32).
  boost::crc_32_type crc;
  crc.process_bytes(bytes.data(), bytes.size());
  return crc.checksum();
}

void put_u32le(unsigned char* out, std::uint32_t v) {
  out[0] = static_cast<unsigned char>(v & 0xffu);
  out[1] = static_cast<unsigned char>((v >> 8) & 0xffu);
  out[2] = static_cast<unsigned char>((v >> 16) & 0xffu);
  out[3] = static_cast<unsigned char>((v >> 24) & 0xffu);
}

std::uint32_t get_u32le(const unsigned char* in) {
  return static_cast<std::uint32_t>(in[0]) | (static_cast<std::uint32_t>(in[1]) << 8) |
         (static_cast<std::uint32_t>(in[2]) << 16) | (static_cast<std::uint32_t>(in[3]) << 24);
}

std::string quoted(const std::string& path) { return "'" + path + "'"; }

std::string hex32(std::uint32_t v) {
  std::array<char, 11> buf{};
  std::snprintf(buf.data(), buf.size(), "0x%08x", v);
  return buf.data();
}

// Converts errno after a failed stdio call into a status naming the file (the one place the
// C library's errors become ours).
sdk::status os_error(std::string_view what, const std::string& path, int err) {
  std::string message(what);
  message += " ";
  message += quoted(path);
  message += ": ";
  std::string reason = err != 0 ? std::strerror(err) : "unknown error";
  // strerror capitalises ("No such file or directory"); our messages are lowercase.
  if (!reason.empty()) {
    reason[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(reason[0])));
  }
  message += reason;
  return sdk::make_error(err == ENOENT ? sdk::status_code::not_found : sdk::status_code::io_error,
                         std::move(message));
}

// Serializes with sorted map keys, so equal envelopes always give equal bytes (and files).
bool serialize_deterministic(const google::protobuf::MessageLite& message, std::string& out) {
  out.clear();
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  const bool ok = message.SerializeToCodedStream(&coded);
  coded.Trim();
  return ok && !coded.HadError();
}

}  // namespace

// --- replay_writer ---------------------------------------------------------------------------

replay_writer::replay_writer(std::string path, file_ptr file)
    : path_(std::move(path)), file_(std::move(file)) {}

sdk::result<replay_writer> replay_writer::create(const std::string& path,
                                                 const v1::ReplayHeader& header) {
  std::string header_bytes;
  if (!serialize_deterministic(header, header_bytes)) {
    return sdk::make_error(
        sdk::status_code::invalid_argument,
        "can't write replay file " + quoted(path) + ": the header does not serialize");
  }
  if (header_bytes.size() > replay_max_payload_bytes) {
    return sdk::make_error(
        sdk::status_code::invalid_argument,
        "can't write replay file " + quoted(path) + ": the header is larger than 64 MiB");
  }

  errno = 0;
  file_ptr file(std::fopen(path.c_str(), "wb"));
  if (file == nullptr) return os_error("can't create replay file", path, errno);

  replay_writer writer(path, std::move(file));
  std::array<unsigned char, preamble_bytes> preamble{};
  std::memcpy(preamble.data(), replay_magic.data(), replay_magic.size());
  put_u32le(preamble.data() + 8, replay_format_version);
  put_u32le(preamble.data() + 12, static_cast<std::uint32_t>(header_bytes.size()));
  if (sdk::status s = writer.write(preamble.data(), preamble.size()); !s.ok()) return s;
  if (sdk::status s = writer.write(header_bytes.data(), header_bytes.size()); !s.ok()) return s;
  return writer;
}

sdk::status replay_writer::write(const void* data, std::size_t size) {
  if (size == 0) return {};
  errno = 0;
  if (std::fwrite(data, 1, size, file_.get()) != size) {
    return os_error("can't write replay file", path_, errno);
  }
  offset_ += size;
  return {};
}

sdk::status replay_writer::append(const v1::Envelope& envelope) {
  std::string payload;
  if (!serialize_deterministic(envelope, payload)) {
    return sdk::make_error(sdk::status_code::invalid_argument,
                           "can't write replay file " + quoted(path_) + ": record " +
                               std::to_string(records_written_) + " does not serialize");
  }
  return test_append_raw(payload);
}

sdk::status replay_writer::test_append_raw(std::string_view payload) {
  if (file_ == nullptr) {
    return sdk::make_error(sdk::status_code::failed_precondition,
                           "can't append to replay file " + quoted(path_) + ": it is closed");
  }
  if (payload.size() > replay_max_payload_bytes) {
    return sdk::make_error(sdk::status_code::invalid_argument,
                           "can't write replay file " + quoted(path_) + ": record " +
                               std::to_string(records_written_) + " is " +
                               std::to_string(payload.size()) + " bytes, above the 64 MiB limit");
  }
  std::array<unsigned char, record_prefix_bytes> prefix{};
  put_u32le(prefix.data(), static_cast<std::uint32_t>(payload.size()));
  put_u32le(prefix.data() + 4, crc32_of(payload));
  if (sdk::status s = write(prefix.data(), prefix.size()); !s.ok()) return s;
  if (sdk::status s = write(payload.data(), payload.size()); !s.ok()) return s;
  ++records_written_;
  return {};
}

sdk::status replay_writer::close() {
  if (file_ == nullptr) return {};
  std::FILE* f = file_.release();
  errno = 0;
  // fclose flushes; check the flush on its own so a full disk is not hidden behind fclose.
  const bool flushed = std::fflush(f) == 0;
  const int flush_errno = errno;
  const bool closed = std::fclose(f) == 0;
  if (!flushed) return os_error("can't write replay file", path_, flush_errno);
  if (!closed) return os_error("can't close replay file", path_, errno);
  return {};
}

// --- replay_reader ---------------------------------------------------------------------------

replay_reader::replay_reader(std::string path, file_ptr file)
    : path_(std::move(path)), file_(std::move(file)) {}

sdk::result<replay_reader> replay_reader::open(const std::string& path) {
  errno = 0;
  file_ptr file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) return os_error("can't open replay file", path, errno);
  replay_reader reader(path, std::move(file));
  if (sdk::status s = reader.read_header(); !s.ok()) return s;
  return reader;
}

sdk::result<std::size_t> replay_reader::read(void* data, std::size_t size) {
  const std::size_t n = std::fread(data, 1, size, file_.get());
  offset_ += n;
  if (n < size && std::ferror(file_.get()) != 0) {
    return os_error("can't read replay file", path_, errno);
  }
  return n;
}

sdk::status replay_reader::read_header() {
  const std::string where = quoted(path_) + ": ";
  auto format_error = [&](std::string message) {
    return sdk::make_error(sdk::status_code::parse_error, where + message);
  };

  std::array<unsigned char, preamble_bytes> preamble{};
  sdk::result<std::size_t> got = read(preamble.data(), preamble.size());
  if (!got) return got.error();
  const std::size_t n = *got;
  if (n == 0) return format_error("empty file, not a loopwarden replay file");

  // Judge the magic on the bytes there are, so a short file of something else is "bad magic".
  const std::size_t magic_seen = std::min(n, replay_magic.size());
  if (std::memcmp(preamble.data(), replay_magic.data(), magic_seen) != 0) {
    return format_error("not a loopwarden replay file (bad magic)");
  }
  if (n < replay_magic.size() + 4) {
    return format_error("truncated header: the file ends at byte " + std::to_string(n) +
                        ", inside the 16-byte preamble");
  }
  const std::uint32_t version = get_u32le(preamble.data() + 8);
  if (version != replay_format_version) {
    return sdk::make_error(sdk::status_code::refused,
                           where + "unsupported replay format version " + std::to_string(version) +
                               " (this reader supports " + std::to_string(replay_format_version) +
                               ")");
  }
  if (n < preamble.size()) {
    return format_error("truncated header: the file ends at byte " + std::to_string(n) +
                        ", inside the 16-byte preamble");
  }
  const std::uint32_t header_len = get_u32le(preamble.data() + 12);
  if (header_len > replay_max_payload_bytes) {
    return format_error("header length " + std::to_string(header_len) +
                        " is above the 64 MiB limit (corrupt file)");
  }
  std::string header_bytes(header_len, '\0');
  got = read(header_bytes.data(), header_bytes.size());
  if (!got) return got.error();
  if (*got < header_len) {
    return format_error("truncated header: its length says " + std::to_string(header_len) +
                        " bytes but only " + std::to_string(*got) + " follow");
  }
  if (!header_.ParseFromString(header_bytes)) {
    return format_error("header does not parse as a loopwarden.v1.ReplayHeader");
  }
  // Envelopes of another schema major are another package (loopwarden.v2); reading them as v1
  // would silently misinterpret them. An unset schema means 1.0, as in an envelope.
  const std::uint32_t major = header_.schema().major();
  if (major != 0 && major != sdk::schema_version_major) {
    return sdk::make_error(sdk::status_code::refused,
                           where + "recorded with event schema " + std::to_string(major) + "." +
                               std::to_string(header_.schema().minor()) +
                               ", this reader understands " +
                               std::to_string(sdk::schema_version_major) + ".x");
  }
  return {};
}

void replay_reader::report(replay_problem_kind kind, std::uint64_t offset, std::uint64_t index,
                           std::string message) {
  replay_problem problem{offset, index, kind,
                         "record " + std::to_string(index) + " at offset " +
                             std::to_string(offset) + ": " + std::move(message)};
  ++problem_count_;
  if (on_problem_) on_problem_(problem);
  if (problems_.size() < max_kept_problems) problems_.push_back(std::move(problem));
}

sdk::result<std::optional<replay_record>> replay_reader::next() {
  if (file_ == nullptr) {
    return sdk::make_error(
        sdk::status_code::failed_precondition,
        "can't read replay file " + quoted(path_) + ": the reader was moved from");
  }
  while (!done_) {
    const std::uint64_t offset = offset_;
    const std::uint64_t index = next_index_;

    std::array<unsigned char, record_prefix_bytes> prefix{};
    sdk::result<std::size_t> got = read(prefix.data(), prefix.size());
    if (!got) {
      done_ = true;
      return got.error();
    }
    if (*got == 0) break;  // a clean end: the file ends between records
    ++next_index_;
    if (*got < prefix.size()) {
      report(replay_problem_kind::truncated, offset, index,
             "truncated record: the file ends " + std::to_string(*got) +
                 " bytes into its 8-byte length and crc — end of read");
      break;
    }
    const std::uint32_t length = get_u32le(prefix.data());
    const std::uint32_t stored_crc = get_u32le(prefix.data() + 4);
    if (length > replay_max_payload_bytes) {
      // The length is not covered by the CRC, and without it the next record cannot be found.
      report(replay_problem_kind::oversized, offset, index,
             "length " + std::to_string(length) +
                 " is above the 64 MiB limit (corrupt length) — end of read");
      break;
    }
    payload_.resize(length);
    got = read(payload_.data(), payload_.size());
    if (!got) {
      done_ = true;
      return got.error();
    }
    if (*got < length) {
      report(replay_problem_kind::truncated, offset, index,
             "truncated record: its length says " + std::to_string(length) + " bytes but only " +
                 std::to_string(*got) + " remain — end of read");
      break;
    }
    const std::uint32_t computed_crc = crc32_of(payload_);
    if (computed_crc != stored_crc) {
      report(replay_problem_kind::crc_mismatch, offset, index,
             "crc mismatch (stored " + hex32(stored_crc) + ", computed " + hex32(computed_crc) +
                 ") — skipped");
      continue;
    }
    replay_record record{index, offset, v1::Envelope()};
    if (!record.envelope.ParseFromString(payload_)) {
      report(replay_problem_kind::bad_payload, offset, index,
             "payload does not parse as an envelope — skipped");
      continue;
    }
    ++records_read_;
    return std::optional<replay_record>(std::move(record));
  }
  done_ = true;
  return std::optional<replay_record>();
}

sdk::status write_replay_file(const std::string& path, const std::vector<v1::Envelope>& envelopes,
                              const v1::ReplayHeader& header) {
  sdk::result<replay_writer> writer = replay_writer::create(path, header);
  if (!writer) return writer.error();
  for (const v1::Envelope& envelope : envelopes) {
    if (sdk::status s = writer->append(envelope); !s.ok()) return s;
  }
  return writer->close();
}

}  // namespace loopwarden::core
