#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <loopwarden/core/replay_file.hpp>
#include <loopwarden/sidecar/cli.hpp>
#include <random>
#include <sstream>

using namespace loopwarden;
namespace fs = std::filesystem;

namespace {

struct run_result {
  int code = -1;
  std::string out;
  std::string err;
};

// Runs the command line in-process, as main() does.
run_result run(std::vector<std::string> args) {
  args.insert(args.begin(), "loopwarden");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  std::ostringstream out;
  std::ostringstream err;
  run_result r;
  r.code = sidecar::run_cli(static_cast<int>(argv.size()), argv.data(), out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

// Runs the real executable; returns its exit status and standard output.
run_result run_binary(const std::string& args) {
  const std::string cmd = std::string(LOOPWARDEN_BINARY_DIR) + "/bin/loopwarden " + args;
  run_result r;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// A fresh directory per test case, removed afterwards.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("loopwarden-cli-test-" + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name, const std::string& content = "") const {
    auto p = (path / name).string();
    if (!content.empty()) std::ofstream(p) << content;
    return p;
  }
};

std::string plugin_dir() { return std::string(LOOPWARDEN_BINARY_DIR) + "/lib/loopwarden/plugins"; }

std::string threshold_config(const temp_dir& dir) {
  return dir.file("loopwarden.yaml",
                  "version: 1\n"
                  "monitors:\n"
                  "  - name: loss_guard\n"
                  "    plugin: threshold\n"
                  "    config: {metric: loss, above: 3, consecutive: 3, "
                  "breaker: training.loss}\n");
}

v1::Envelope loss_event(std::uint64_t seq, double value) {
  v1::Envelope e;
  e.set_source("trainer");
  e.set_run_id("run-1");
  e.set_seq(seq);
  e.set_time_unix_nano(1'700'000'000'000'000'000 + static_cast<std::int64_t>(seq) * 1'000'000);
  auto* s = e.mutable_metrics()->add_samples();
  s->set_name("loss");
  s->set_value(value);
  s->set_step(static_cast<std::int64_t>(seq));
  return e;
}

// 20 events; the loss is 5 at events 10, 11 and 12 (0-based) and 1 elsewhere.
std::vector<v1::Envelope> crossing_at_10_to_12() {
  std::vector<v1::Envelope> events;
  for (std::uint64_t i = 0; i < 20; ++i) {
    events.push_back(loss_event(i + 1, (i >= 10 && i <= 12) ? 5.0 : 1.0));
  }
  return events;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

}  // namespace

TEST_CASE("--help and --version work on the real binary", "[sidecar][cli]") {
  auto help = run_binary("--help");
  CHECK(help.code == 0);
  CHECK_THAT(help.out, Catch::Contains("Usage: loopwarden") && Catch::Contains("replay") &&
                           Catch::Contains("config"));
  auto version = run_binary("--version");
  CHECK(version.code == 0);
  CHECK_THAT(version.out, Catch::StartsWith("loopwarden 0.1.0 (sdk 1.0.0, schema loopwarden.v1."));
  auto sub = run_binary("replay --help");
  CHECK(sub.code == 0);
  CHECK_THAT(sub.out, Catch::Contains("--json"));
}

TEST_CASE("bad usage exits 2 with a hint", "[sidecar][cli]") {
  auto r = run({"frobnicate"});
  CHECK(r.code == sidecar::exit_error);
  CHECK_THAT(r.err, Catch::Contains("run `loopwarden --help` for usage"));
  auto missing = run({"replay", "/nonexistent/file.lwreplay"});
  CHECK(missing.code == sidecar::exit_error);
  CHECK_THAT(missing.err, Catch::Contains("/nonexistent/file.lwreplay"));
}

TEST_CASE("replay trips exactly once at the expected event and exits 1", "[sidecar][replay]") {
  temp_dir dir;
  const auto file = dir.file("crossing.lwreplay");
  REQUIRE(core::write_replay_file(file, crossing_at_10_to_12()).ok());
  auto r = run(
      {"replay", "--json", "--config", threshold_config(dir), "--plugin-path", plugin_dir(), file});
  INFO(r.err);
  CHECK(r.code == sidecar::exit_found);
  auto out = lines(r.out);
  REQUIRE(out.size() == 2);  // one transition, one summary
  CHECK_THAT(out[0], Catch::StartsWith("{\"type\":\"transition\",\"event_index\":12,"
                                       "\"breaker\":\"training.loss\",\"run_id\":\"run-1\","
                                       "\"from\":\"closed\",\"to\":\"open\",\"cause\":\"trip\""));
  CHECK_THAT(out[0], Catch::Contains("\"trigger_seq\":13"));
  CHECK(out[1] ==
        "{\"type\":\"summary\",\"events\":20,\"malformed\":0,\"damaged_records\":0,"
        "\"transitions\":1,\"opened\":[\"training.loss (run run-1)\"]}");
}

TEST_CASE("replay with no crossing exits 0", "[sidecar][replay]") {
  temp_dir dir;
  const auto file = dir.file("calm.lwreplay");
  std::vector<v1::Envelope> events;
  for (std::uint64_t i = 1; i <= 50; ++i) events.push_back(loss_event(i, 2.9));
  REQUIRE(core::write_replay_file(file, events).ok());
  auto r = run({"replay", "--config", threshold_config(dir), "--plugin-path", plugin_dir(), file});
  CHECK(r.code == sidecar::exit_ok);
  CHECK_THAT(r.out, Catch::Contains("summary: 50 events replayed (0 malformed, 0 damaged records "
                                    "skipped), 0 breaker transitions, 0 opened"));
}

TEST_CASE("replaying the same file twice gives byte-identical JSON", "[sidecar][replay]") {
  temp_dir dir;
  const auto file = dir.file("mixed.lwreplay");
  // Several runs and sources, crossings, NaNs: enough to exercise ordering.
  std::vector<v1::Envelope> events;
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> u(0.0, 6.0);
  for (std::uint64_t i = 1; i <= 2000; ++i) {
    auto e = loss_event(i, u(rng));
    e.set_run_id("run-" + std::to_string(i % 7));
    e.set_source("rank" + std::to_string(i % 3));
    (*e.mutable_labels())["b"] = "2";
    (*e.mutable_labels())["a"] = "1";
    events.push_back(std::move(e));
  }
  REQUIRE(core::write_replay_file(file, events).ok());
  const auto cfg = threshold_config(dir);
  auto first = run({"replay", "--json", "--config", cfg, "--plugin-path", plugin_dir(), file});
  auto second = run({"replay", "--json", "--config", cfg, "--plugin-path", plugin_dir(), file});
  CHECK(first.code == sidecar::exit_found);
  CHECK(lines(first.out).size() > 3);
  CHECK(first.out == second.out);
}

TEST_CASE("a malformed record in the middle is reported with its offset and skipped",
          "[sidecar][replay]") {
  temp_dir dir;
  const auto file = dir.file("damaged.lwreplay");
  auto events = crossing_at_10_to_12();
  std::uint64_t bad_offset = 0;
  {
    auto w = core::replay_writer::create(file, {});
    REQUIRE(w.ok());
    for (std::size_t i = 0; i < 5; ++i) REQUIRE(w->append(events[i]).ok());
    bad_offset = w->offset();
    REQUIRE(w->test_append_raw(std::string("\xff\xff\xff\xff not an envelope", 20)).ok());
    v1::Envelope no_body;  // parses, but carries no body: counted as malformed by the engine
    no_body.set_source("trainer");
    REQUIRE(w->append(no_body).ok());
    for (std::size_t i = 5; i < events.size(); ++i) REQUIRE(w->append(events[i]).ok());
    REQUIRE(w->close().ok());
  }
  auto r = run(
      {"replay", "--json", "--config", threshold_config(dir), "--plugin-path", plugin_dir(), file});
  CHECK(r.code == sidecar::exit_found);
  auto out = lines(r.out);
  REQUIRE(out.size() == 3);
  CHECK_THAT(out[0], Catch::StartsWith("{\"type\":\"problem\",\"record_index\":5,\"offset\":" +
                                       std::to_string(bad_offset) + ","));
  CHECK_THAT(out[0], Catch::Contains("at offset " + std::to_string(bad_offset)));
  // The crossing is still found, two records later than in the clean file.
  CHECK_THAT(out[1], Catch::StartsWith("{\"type\":\"transition\",\"event_index\":14,"));
  CHECK(out[2] ==
        "{\"type\":\"summary\",\"events\":21,\"malformed\":1,\"damaged_records\":1,"
        "\"transitions\":1,\"opened\":[\"training.loss (run run-1)\"]}");

  // In text mode the problem goes to stderr, naming the file and the offset.
  auto text =
      run({"replay", "--config", threshold_config(dir), "--plugin-path", plugin_dir(), file});
  CHECK_THAT(text.err,
             Catch::Contains(file + ": record 5 at offset " + std::to_string(bad_offset)));
}

TEST_CASE("replay refuses a file that is not a recording", "[sidecar][replay]") {
  temp_dir dir;
  const auto file = dir.file("not-a-recording.txt", "hello\n");
  auto r = run({"replay", file});
  CHECK(r.code == sidecar::exit_error);
  CHECK_THAT(r.err, Catch::Contains("not a loopwarden replay file (bad magic)"));
}

TEST_CASE("config check accepts a good file and names the field and line of a bad one",
          "[sidecar][config]") {
  temp_dir dir;
  auto good = run({"config", "check", threshold_config(dir), "--plugin-path", plugin_dir()});
  CHECK(good.code == sidecar::exit_ok);
  CHECK(good.out == "ok: " + (dir.path / "loopwarden.yaml").string() +
                        ": 1 monitor (loss_guard: threshold 1.0.0)\n");

  const auto bad_monitor = dir.file("bad.yaml",
                                    "version: 1\n"
                                    "monitors:\n"
                                    "  - name: loss_guard\n"
                                    "    plugin: threshold\n"
                                    "    config:\n"
                                    "      metric: loss\n"
                                    "      consecutive: abc\n"
                                    "      above: 3\n");
  auto bad = run({"config", "check", bad_monitor, "--plugin-path", plugin_dir()});
  CHECK(bad.code == sidecar::exit_found);
  CHECK(bad.err ==
        "loopwarden config check: monitor 'loss_guard': "
        "monitors[0].config.consecutive: expected a positive integer, got \"abc\" (" +
            bad_monitor + ":7)\n");

  const auto bad_top = dir.file("bad2.yaml", "version: 1\nmonitor: []\n");
  auto top = run({"config", "check", bad_top});
  CHECK(top.code == sidecar::exit_found);
  CHECK_THAT(top.err, Catch::Contains("monitor: unknown key") && Catch::Contains(bad_top + ":2)"));
}

TEST_CASE("the printed default config passes config check", "[sidecar][config]") {
  temp_dir dir;
  auto printed = run({"config", "default"});
  REQUIRE(printed.code == sidecar::exit_ok);
  const auto file = dir.file("default.yaml", printed.out);
  auto check = run({"config", "check", file, "--plugin-path", plugin_dir()});
  CHECK(check.code == sidecar::exit_ok);
  CHECK_THAT(check.out, Catch::Contains("nonfinite_loss: threshold"));
}

TEST_CASE("the bundled demo recording trips the divergence guard at event 308",
          "[sidecar][replay][demo]") {
  const std::string demo = std::string(LOOPWARDEN_SOURCE_DIR) + "/examples/replay_demo";
  auto r = run({"replay", "--json", "--config", demo + "/loopwarden.yaml", "--plugin-path",
                plugin_dir(), demo + "/loss-divergence.lwreplay"});
  CHECK(r.code == sidecar::exit_found);
  auto out = lines(r.out);
  REQUIRE(out.size() == 3);
  CHECK_THAT(out[0], Catch::StartsWith("{\"type\":\"transition\",\"event_index\":308,"
                                       "\"breaker\":\"training.loss_divergence\""));
  CHECK_THAT(out[0], Catch::Contains("\"action\":\"rollback\""));
  CHECK_THAT(out[1], Catch::StartsWith("{\"type\":\"transition\",\"event_index\":320,"
                                       "\"breaker\":\"training.nonfinite_loss\""));
}
