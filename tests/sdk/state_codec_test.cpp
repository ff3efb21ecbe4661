#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <loopwarden/state_codec.hpp>

using namespace loopwarden;

namespace {

std::string sample_snapshot() {
  sdk::state_writer w("demo", 3);
  w.write_u64(std::numeric_limits<std::uint64_t>::max());
  w.write_i64(-42);
  w.write_f64(std::numeric_limits<double>::quiet_NaN());
  w.write_f64(-std::numeric_limits<double>::infinity());
  w.write_f64(0.1);
  w.write_bool(true);
  w.write_string(std::string("a\0b", 3));
  const std::vector<double> xs = {1.5, -2.25};
  w.write_f64s(xs);
  const std::vector<std::uint64_t> ks = {7, 0};
  w.write_u64s(ks);
  return w.finish();
}

}  // namespace

TEST_CASE("state codec round-trips every type exactly, NaN and infinities included", "[sdk]") {
  const std::string bytes = sample_snapshot();
  sdk::state_reader r(bytes);
  auto v = r.read_header("demo", 3);
  REQUIRE(v.ok());
  CHECK(*v == 3);
  CHECK(r.read_u64() == std::numeric_limits<std::uint64_t>::max());
  CHECK(r.read_i64() == -42);
  CHECK(std::isnan(r.read_f64()));
  CHECK(r.read_f64() == -std::numeric_limits<double>::infinity());
  CHECK(r.read_f64() == 0.1);  // bit for bit, not to a tolerance
  CHECK(r.read_bool());
  CHECK(r.read_string() == std::string("a\0b", 3));
  CHECK(r.read_f64s(10) == std::vector<double>{1.5, -2.25});
  CHECK(r.read_u64s(10) == std::vector<std::uint64_t>{7, 0});
  CHECK(r.finish().ok());
}

TEST_CASE("state codec encodes integers as 8 little-endian bytes", "[sdk]") {
  sdk::state_writer w("x", 1);
  const std::size_t header = w.finish().size();
  sdk::state_writer w2("x", 1);
  w2.write_u64(0x0102030405060708ULL);
  const std::string bytes = w2.finish();
  REQUIRE(bytes.size() == header + 8);
  CHECK(bytes.substr(header) == std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8));
}

TEST_CASE("state reader refuses every truncation of a snapshot without reading past it", "[sdk]") {
  const std::string bytes = sample_snapshot();
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    INFO("cut at " << cut);
    const std::string prefix = bytes.substr(0, cut);
    sdk::state_reader r(prefix);
    (void)r.read_header("demo", 3);
    (void)r.read_u64();
    (void)r.read_i64();
    (void)r.read_f64();
    (void)r.read_f64();
    (void)r.read_f64();
    (void)r.read_bool();
    (void)r.read_string();
    (void)r.read_f64s(10);
    (void)r.read_u64s(10);
    const sdk::status s = r.finish();
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == sdk::status_code::parse_error);
    CHECK_THAT(s.message(), Catch::StartsWith("bad state snapshot at byte "));
  }
}

TEST_CASE("state reader refuses wrong headers, trailing bytes, bad booleans and huge counts",
          "[sdk]") {
  struct row {
    std::string name;
    std::string bytes;
    std::string plugin;
    std::uint32_t max_version;
    std::string says;
  };
  sdk::state_writer good("demo", 2);
  good.write_u64(5);
  const std::string five = good.finish();
  const std::vector<row> header_rows = {
      {"not a snapshot", "hello world, no magic here", "demo", 2, "bad magic"},
      {"another plugin", five, "other", 2, "a snapshot of 'demo', not of 'other'"},
      {"a newer format", five, "demo", 1, "format version 2, this build reads 1 to 1"},
  };
  for (const auto& r : header_rows) {
    INFO(r.name);
    sdk::state_reader reader(r.bytes);
    auto v = reader.read_header(r.plugin, r.max_version);
    REQUIRE_FALSE(v.ok());
    CHECK_THAT(v.error().message(), Catch::Contains(r.says));
  }

  SECTION("trailing bytes") {
    sdk::state_reader reader(five);
    REQUIRE(reader.read_header("demo", 2).ok());
    const sdk::status s = reader.finish();  // the 5 was never read
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.message(), Catch::Contains("8 unread bytes at the end"));
  }
  SECTION("a count above its limit is refused before anything is allocated") {
    sdk::state_reader reader(five);
    REQUIRE(reader.read_header("demo", 2).ok());
    CHECK(reader.read_count(4) == 0);
    CHECK_THAT(reader.finish().message(), Catch::Contains("a count of 5 above its limit of 4"));
  }
  SECTION("a vector claiming more entries than bytes") {
    sdk::state_reader reader(five);
    REQUIRE(reader.read_header("demo", 2).ok());
    CHECK(reader.read_f64s(1000).empty());
    CHECK_THAT(reader.finish().message(), Catch::Contains("longer than the bytes left"));
  }
  SECTION("a boolean byte that is neither 0 nor 1") {
    sdk::state_writer w("demo", 1);
    w.write_u64(2);  // read back as a bool: first byte 0x02
    const std::string bytes = w.finish();
    sdk::state_reader reader(bytes);
    REQUIRE(reader.read_header("demo", 1).ok());
    (void)reader.read_bool();
    CHECK_THAT(reader.finish().message(), Catch::Contains("neither 0 nor 1"));
  }
  SECTION("a failure the caller finds is reported with its offset, and sticks") {
    sdk::state_reader reader(five);
    REQUIRE(reader.read_header("demo", 2).ok());
    reader.fail("a window of 0 generations");
    CHECK(reader.read_u64() == 0);  // later reads return zero values
    CHECK_THAT(reader.finish().message(),
               Catch::Contains("at byte") && Catch::Contains("a window of 0 generations"));
  }
}
