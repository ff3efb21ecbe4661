// The status page in a real browser: headless Chromium loads it from the running endpoint, the
// test reads the DOM it built and keeps a screenshot for people to look at
// (<build>/tests/artifacts/status-page.png). Chromium runs in its own process group under a hard
// deadline, so a wedged browser fails the test instead of hanging it.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../../sidecar/src/http_endpoint.hpp"

using namespace loopwarden;
using namespace loopwarden::sidecar::detail;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* chromium = "/usr/bin/chromium";
constexpr auto browser_deadline = 60s;

struct process_result {
  bool finished = false;  // false: killed at the deadline
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr (Chromium is chatty; shown only when something fails)
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs argv[0] with `argv` in a new process group; after `deadline` the whole group is killed.
// The group is killed after a normal exit too, so no browser helper process outlives the test.
process_result run_with_deadline(const std::vector<std::string>& argv, const fs::path& work,
                                 std::chrono::seconds deadline) {
  const std::string out_path = (work / "stdout.txt").string();
  const std::string err_path = (work / "stderr.txt").string();
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec: the parent has threads.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || err < 0) ::_exit(126);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here, so the group exists before we might signal it

  process_result r;
  const auto give_up = std::chrono::steady_clock::now() + deadline;
  int status = 0;
  while (true) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      r.finished = true;
      r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      break;
    }
    if (std::chrono::steady_clock::now() >= give_up) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  ::kill(-pid, SIGKILL);  // leftover helpers of the browser we started, if any
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  return r;
}

std::uint32_t big_endian_u32(const std::string& bytes, std::size_t at) {
  return (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at])) << 24) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + 1])) << 16) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + 2])) << 8) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + 3]));
}

v1::BreakerSnapshot one_open_breaker() {
  v1::BreakerSnapshot snap;
  auto* closed = snap.add_breakers();
  closed->set_name("agent.drift");
  closed->set_run_id("session-9");
  closed->set_scope(v1::BREAKER_SCOPE_RUN);
  closed->set_state(v1::BREAKER_STATE_CLOSED);
  closed->set_action(v1::BREAKER_ACTION_PAUSE);
  closed->set_severity(v1::SEVERITY_WARNING);
  auto* open = snap.add_breakers();
  open->set_name("training.collapse");
  open->set_run_id("r1");
  open->set_scope(v1::BREAKER_SCOPE_RUN);
  open->set_state(v1::BREAKER_STATE_OPEN);
  open->set_action(v1::BREAKER_ACTION_ROLLBACK);
  open->set_severity(v1::SEVERITY_CRITICAL);
  open->set_epoch(3);
  open->set_trips(1);
  open->set_monitor("variance_collapse");
  open->set_reason("sample variance below floor for 3 generations <script>x</script>");
  auto* ev = open->add_evidence();
  ev->set_key("variance");
  ev->set_value("0.0012");
  open->set_changed_unix_nano(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count() -
                              240'000'000'000);
  return snap;
}

}  // namespace

TEST_CASE("headless chromium renders the status page with the open breaker and its state",
          "[http][browser][integration]") {
  REQUIRE(fs::exists(chromium));
  std::atomic<int> status_calls{0};
  http_sources sources;
  sources.status = [&status_calls] {
    ++status_calls;
    v1::SidecarStatus s;
    s.set_version("0.9.0");
    s.set_started_unix_nano(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count() -
                            3'600'000'000'000);
    auto* m = s.add_monitors();
    m->set_name("variance_collapse");
    m->set_plugin("variance_collapse");
    m->set_state("active");
    m->set_events(420);
    m->set_total_call_ns(4'200'000);
    m->set_max_call_ns(90'000);
    return s;
  };
  sources.breakers = [] { return one_open_breaker(); };
  sources.recent_transitions = [](std::size_t) {
    v1::BreakerTransition t;
    *t.mutable_breaker() = one_open_breaker().breakers(1);
    t.set_previous(v1::BREAKER_STATE_CLOSED);
    t.set_cause("trip");
    t.set_trigger_source("trainer/rank0");
    t.set_trigger_seq(57);
    return std::vector<v1::BreakerTransition>{t};
  };
  sources.ready = [] { return readiness{true, true, true, ""}; };

  http_config cfg;
  cfg.listen = "127.0.0.1:0";
  auto ep = http_endpoint::start(cfg, sources);
  INFO((ep.ok() ? std::string() : ep.error().message()));
  REQUIRE(ep.ok());
  const std::string url = "http://127.0.0.1:" + std::to_string((*ep)->port()) + "/";

  std::random_device rd;
  const fs::path work = fs::temp_directory_path() / ("lw-browser-" + std::to_string(rd()));
  fs::create_directories(work / "profile");
  struct remove_on_exit {
    fs::path dir;
    ~remove_on_exit() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{work};
  const std::vector<std::string> common = {
      chromium,         "--headless=new",
      "--no-sandbox",  // we run as root here
      "--disable-gpu",  "--disable-dev-shm-usage",
      "--no-first-run", "--user-data-dir=" + (work / "profile").string()};

  SECTION("the DOM Chromium built holds the open breaker, its state and the banner") {
    auto argv = common;
    argv.push_back("--dump-dom");
    argv.push_back(url);
    const auto r = run_with_deadline(argv, work, browser_deadline);
    INFO("chromium stderr:\n" << r.err);
    REQUIRE(r.finished);
    CHECK(r.exit_code == 0);
    const std::string& dom = r.out;
    INFO("DOM:\n" << dom);
    CHECK(status_calls > 0);  // it really loaded our endpoint
    CHECK(dom.find("<title>1 OPEN - loopwarden</title>") != std::string::npos);
    CHECK(dom.find(">1 breaker OPEN</div>") != std::string::npos);
    CHECK(dom.find("<td><b>training.collapse</b><br>run r1</td>") != std::string::npos);
    CHECK(dom.find("<span class=\"state state-open\">open</span>") != std::string::npos);
    CHECK(dom.find("<span class=\"state state-closed\">closed</span>") != std::string::npos);
    // The open breaker's row comes before the closed one's.
    CHECK(dom.find("training.collapse") < dom.find("agent.drift"));
    // The hostile reason stayed text: the browser built no script element from it.
    CHECK(dom.find("&lt;script&gt;x&lt;/script&gt;") != std::string::npos);
    CHECK(dom.find("<script") == std::string::npos);
  }

  SECTION("a screenshot of the page is a real 1280x900 PNG") {
    const fs::path artifacts = fs::path(LOOPWARDEN_BINARY_DIR) / "tests" / "artifacts";
    fs::create_directories(artifacts);
    const fs::path png = artifacts / "status-page.png";
    fs::remove(png);
    auto argv = common;
    argv.push_back("--hide-scrollbars");
    argv.push_back("--window-size=1280,900");
    argv.push_back("--screenshot=" + png.string());
    argv.push_back(url);
    const auto r = run_with_deadline(argv, work, browser_deadline);
    INFO("chromium stderr:\n" << r.err);
    REQUIRE(r.finished);
    CHECK(r.exit_code == 0);
    REQUIRE(fs::exists(png));
    const std::string bytes = read_file(png);
    REQUIRE(bytes.size() > 33);
    CHECK(bytes.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
    CHECK(bytes.substr(12, 4) == "IHDR");
    CHECK(big_endian_u32(bytes, 16) == 1280);
    CHECK(big_endian_u32(bytes, 20) == 900);
    // A page with tables and coloured badges, not a blank image, and not absurdly large.
    CHECK(bytes.size() > 20'000);
    CHECK(bytes.size() < 10'000'000);
  }
}
