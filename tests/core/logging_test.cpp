#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include <loopwarden/v1/envelope.pb.h>
#include <loopwarden/core/logging.hpp>

using namespace loopwarden;

namespace {

// Runs `body` with the process's stderr (fd 2) sent to a file, and returns what was written.
template <typename F>
std::string capture_stderr(F body) {
  char path[] = "/tmp/loopwarden-stderr-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  std::fflush(stderr);
  const int saved = ::dup(2);
  ::dup2(fd, 2);
  body();
  core::flush_log();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  ::close(fd);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  ::unlink(path);
  return text.str();
}

std::size_t count_lines_with(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
  return n;
}

}  // namespace

// Found by the envelope fuzz target (docs/fuzzing.md): protobuf logs a string field with invalid
// UTF-8 itself, to stderr, once per message parsed, so a producer sending such envelopes wrote one
// line per message past the ingest's rate-limited log.
TEST_CASE("protobuf parse complaints reach the log rate-limited and not once per message",
          "[core][logging][fuzz]") {
  core::log_to_stderr();
  core::set_log_level(sdk::log_level::info);
  // tests/fixtures/fuzz-regressions/envelope/invalid-utf8-source: an envelope whose source
  // (field 2) is the single byte 0xff.
  std::ifstream in(
      std::string(LOOPWARDEN_FIXTURES_DIR) + "/fuzz-regressions/envelope/invalid-utf8-source",
      std::ios::binary);
  REQUIRE(in);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(bytes == std::string("\x12\x01\xff", 3));

  const std::string log = capture_stderr([&] {
    for (int i = 0; i < 20'000; ++i) {
      v1::Envelope e;
      (void)e.ParseFromString(bytes);
    }
  });
  INFO(log.substr(0, 2000));
  const std::size_t lines = count_lines_with(log, "invalid UTF-8");
  // The first 10 of the process (fewer when earlier tests used some), then one in every 10 000:
  // 20 000 parses include one or two of those.
  CHECK(lines >= 1);
  CHECK(lines <= 12);
  CHECK(count_lines_with(log, "[libprotobuf") == 0);  // none went around the engine's logger
  CHECK(log.find("protobuf log lines so far") != std::string::npos);
}
