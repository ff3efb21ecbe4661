// Fuzz target: the replay file reader (core/replay_file.cpp) on arbitrary file contents.
//
// The input is the whole file. The reader opens it (preamble and header) and reads every record;
// the target checks what the reader promises (replay_file.hpp) and that every record it returns
// survives a round trip: written again with replay_writer and read back, it gives the same bytes
// and no problem. The file lives in memory (a memfd), so the fuzz run touches no disk.

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <loopwarden/v1/envelope.pb.h>
#include <loopwarden/core/replay_file.hpp>

#include "fuzz_support.hpp"

using namespace loopwarden;

namespace {

// One in-memory file, rewritten for each input and opened by path like a real one.
struct memory_file {
  explicit memory_file(const char* name) : fd(::memfd_create(name, 0)) {
    if (fd < 0) fuzz::die("memfd_create failed");
    path = "/proc/self/fd/" + std::to_string(fd);
  }
  void assign(const void* data, std::size_t size) const {
    if (::ftruncate(fd, 0) != 0) fuzz::die("ftruncate failed");
    const char* p = static_cast<const char*>(data);
    std::size_t done = 0;
    while (done < size) {
      const ssize_t n = ::pwrite(fd, p + done, size - done, static_cast<off_t>(done));
      if (n <= 0) fuzz::die("pwrite failed");
      done += static_cast<std::size_t>(n);
    }
  }
  int fd;
  std::string path;
};

memory_file* input_file = nullptr;  // never freed
memory_file* copy_file = nullptr;

std::string deterministic_bytes(const v1::Envelope& e) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  e.SerializeToCodedStream(&coded);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quiet_logs();
  input_file = new memory_file("lwreplay-input");
  copy_file = new memory_file("lwreplay-copy");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  input_file->assign(data, size);
  auto reader = core::replay_reader::open(input_file->path);
  if (!reader.ok()) return 0;  // refused with a message: nothing more to read

  std::uint64_t reported = 0;
  reader->set_problem_handler([&](const core::replay_problem& p) {
    ++reported;
    if (p.offset >= size)
      fuzz::die("a problem at offset " + std::to_string(p.offset) + " of a " +
                std::to_string(size) + "-byte file");
  });
  std::vector<std::string> records;  // deterministic bytes of each good record
  std::uint64_t last_index = 0;
  while (true) {
    auto next = reader->next();
    if (!next.ok()) fuzz::die("reading a memfd failed: " + next.error().message());
    if (!next->has_value()) break;
    const core::replay_record& r = **next;
    if (r.offset >= size)
      fuzz::die("a record at offset " + std::to_string(r.offset) + " of a " + std::to_string(size) +
                "-byte file");
    if (!records.empty() && r.index <= last_index) fuzz::die("record indexes went backwards");
    last_index = r.index;
    records.push_back(deterministic_bytes(r.envelope));
  }
  // After the end, next() keeps answering "no more".
  auto after = reader->next();
  if (!after.ok() || after->has_value()) fuzz::die("next() after the end returned a record");
  if (reader->records_read() != records.size()) fuzz::die("records_read() miscounts");
  if (reader->problem_count() != reported) fuzz::die("problem_count() differs from the handler");
  if (reader->problems().size() > core::replay_reader::max_kept_problems ||
      reader->problems().size() !=
          std::min<std::uint64_t>(reported, core::replay_reader::max_kept_problems)) {
    fuzz::die("problems() keeps the wrong number of problems");
  }

  // Round trip: what the reader returned, written again, reads back the same.
  auto writer = core::replay_writer::create(copy_file->path, reader->header());
  if (!writer.ok()) fuzz::die("can't rewrite the header read: " + writer.error().message());
  for (const auto& bytes : records) {
    v1::Envelope e;
    if (!e.ParseFromString(bytes)) fuzz::die("a record's own bytes do not parse again");
    if (auto s = writer->append(e); !s.ok()) fuzz::die("can't rewrite a record: " + s.message());
  }
  if (auto s = writer->close(); !s.ok()) fuzz::die("can't close the copy: " + s.message());
  auto again = core::replay_reader::open(copy_file->path);
  if (!again.ok()) fuzz::die("the rewritten file does not open: " + again.error().message());
  std::size_t i = 0;
  while (true) {
    auto next = again->next();
    if (!next.ok()) fuzz::die("reading the copy failed: " + next.error().message());
    if (!next->has_value()) break;
    if (i >= records.size() || deterministic_bytes((*next)->envelope) != records[i]) {
      fuzz::die("record " + std::to_string(i) + " changed in the round trip");
    }
    ++i;
  }
  if (i != records.size() || again->problem_count() != 0) {
    fuzz::die("the rewritten file reads back differently");
  }
  return 0;
}
