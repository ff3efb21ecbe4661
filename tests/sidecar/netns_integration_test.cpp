// Several hosts, made of Linux network namespaces that this test creates and removes itself
// (iproute2): hosts 1-3 each run a publisher and a breaker watch (tests/fixtures/netns_peer.cpp),
// host 4 runs the sidecar. They talk over veth links into a bridge on host 4, to those hosts'
// own addresses (10.250.0.0/24) only; nothing here touches the machine's own interfaces.
//
//   h1 eth0 10.250.0.1 --veth-- p1 --+
//   h2 eth0 10.250.0.2 --veth-- p2 --+-- br0 10.250.0.4 (h4: loopwarden serve)
//   h3 eth0 10.250.0.3 --veth-- p3 --+
//
// Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN). Without it, or where `ip netns add` is not
// permitted (an unprivileged container), the test prints LOOPWARDEN_TEST_SKIPPED and the reason,
// and ctest counts it as skipped.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "daemon.hpp"

using namespace loopwarden;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using loopwarden::test::daemon_options;
using loopwarden::test::daemon_process;
using loopwarden::test::wait_until;

namespace {

struct command_result {
  int code = -1;
  std::string output;  // stdout and stderr
};

// Runs `ip <args>` (no shell), capturing its output.
command_result ip(const std::vector<std::string>& args) {
  std::string cmd = "ip";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>&1";
  command_result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[512];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

void must(const std::vector<std::string>& args) {
  const auto r = ip(args);
  std::string cmd = "ip";
  for (const auto& a : args) cmd += " " + a;
  INFO(cmd << " -> " << r.code << ": " << r.output);
  REQUIRE(r.code == 0);
}

// The namespaces and links of one test. The destructor deletes the namespaces, which takes
// their veth ends and the bridge with them, whether the test passed, failed or threw.
class netns_lab {
 public:
  // Creates host 1; nullopt and the reason when this machine does not allow it.
  static std::unique_ptr<netns_lab> create(std::string& why_not) {
    if (::geteuid() != 0) {
      why_not = "network namespaces need root (running as uid " + std::to_string(::geteuid()) + ")";
      return nullptr;
    }
    remove_stale();
    auto lab = std::unique_ptr<netns_lab>(new netns_lab);
    const auto r = ip({"netns", "add", lab->host(1)});
    if (r.code != 0) {
      why_not =
          "`ip netns add` is not permitted here (exit " + std::to_string(r.code) + "): " + r.output;
      return nullptr;
    }
    lab->created_.push_back(lab->host(1));
    return lab;
  }

  ~netns_lab() {
    for (const auto& name : created_) (void)ip({"netns", "del", name});
  }
  netns_lab(const netns_lab&) = delete;
  netns_lab& operator=(const netns_lab&) = delete;

  // Namespaces of an earlier run that was killed before its destructor ran (a ctest timeout):
  // "lw<pid>h<i>" whose process is gone.
  static void remove_stale() {
    static const std::regex name(R"(^(lw(\d+)h[1-4])\b)");
    const std::string list = ip({"netns", "list"}).output;
    std::istringstream lines(list);
    for (std::string line; std::getline(lines, line);) {
      std::smatch m;
      if (!std::regex_search(line, m, name)) continue;
      const pid_t pid = static_cast<pid_t>(std::stol(m[2]));
      if (::kill(pid, 0) != 0 && errno == ESRCH) (void)ip({"netns", "del", m[1]});
    }
  }

  // Names unique to this process, so parallel runs never meet.
  std::string host(int i) const {
    return "lw" + std::to_string(::getpid()) + "h" + std::to_string(i);
  }
  static std::string address(int i) { return "10.250.0." + std::to_string(i); }

  // Hosts 2-4, the bridge on host 4, and one veth link from each of hosts 1-3 into it.
  void build() {
    for (int i = 2; i <= 4; ++i) {
      must({"netns", "add", host(i)});
      created_.push_back(host(i));
    }
    for (int i = 1; i <= 4; ++i) must({"-n", host(i), "link", "set", "lo", "up"});
    must({"-n", host(4), "link", "add", "br0", "type", "bridge"});
    must({"-n", host(4), "addr", "add", address(4) + "/24", "dev", "br0"});
    must({"-n", host(4), "link", "set", "br0", "up"});
    for (int i = 1; i <= 3; ++i) {
      const std::string port = "p" + std::to_string(i);
      must({"-n", host(4), "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns",
            host(i)});
      must({"-n", host(4), "link", "set", port, "master", "br0"});
      must({"-n", host(4), "link", "set", port, "up"});
      must({"-n", host(i), "addr", "add", address(i) + "/24", "dev", "eth0"});
      must({"-n", host(i), "link", "set", "eth0", "up"});
    }
  }

  // Takes host i's link down (as a pulled cable would).
  void cut(int i) { must({"-n", host(i), "link", "set", "eth0", "down"}); }

 private:
  netns_lab() = default;
  std::vector<std::string> created_;
};

// netns_peer in host `ns`, with its stdin on a pipe and its stdout in a file. The destructor
// closes stdin (the peer exits), then kills and reaps it.
class peer_process {
 public:
  peer_process(const std::string& ns, const std::string& source, const std::string& run,
               const fs::path& out_file)
      : out_file_(out_file) {
    std::vector<std::string> args = {"ip",
                                     "netns",
                                     "exec",
                                     ns,
                                     LOOPWARDEN_NETNS_PEER,
                                     "--ingest",
                                     "tcp://" + netns_lab::address(4) + ":7001",
                                     "--breakers",
                                     "tcp://" + netns_lab::address(4) + ":7002",
                                     "--source",
                                     source,
                                     "--run",
                                     run};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      // Only async-signal-safe calls until exec: the parent has threads.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      const int out = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (out < 0) ::_exit(127);
      ::dup2(pipe_fds[0], 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(pipe_fds[0]);
    stdin_ = pipe_fds[1];
  }
  ~peer_process() {
    if (stdin_ >= 0) ::close(stdin_);
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  peer_process(const peer_process&) = delete;
  peer_process& operator=(const peer_process&) = delete;

  void send(const std::string& line) const {
    const std::string text = line + "\n";
    REQUIRE(::write(stdin_, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  }

  std::string output() const {
    std::ifstream in(out_file_);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  struct watch_state {
    bool seen = false;
    long snapshots = 0;
    bool silent = true;
    bool stop = true;
  };
  // The last "state" line the peer printed.
  watch_state state() const {
    static const std::regex line(R"(state snapshots=(\d+) silent=([01]) stop=([01]))");
    const std::string text = output();
    watch_state s;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), line);
         it != std::sregex_iterator(); ++it) {
      s.seen = true;
      s.snapshots = std::stol((*it)[1]);
      s.silent = (*it)[2] == "1";
      s.stop = (*it)[3] == "1";
    }
    return s;
  }

 private:
  fs::path out_file_;
  pid_t pid_ = -1;
  int stdin_ = -1;
};

const v1::SourceStatus* source_of(const v1::ControlResponse& r, const std::string& source) {
  return test::find_source(r, source);
}

}  // namespace

TEST_CASE("several hosts: a trip reaches every host's watcher and a cut link trips only its host",
          "[integration][sidecar][netns]") {
  std::string why_not;
  auto lab = netns_lab::create(why_not);
  if (!lab) {
    WARN("LOOPWARDEN_TEST_SKIPPED: " << why_not);
    return;
  }
  lab->build();

  daemon_options o;
  o.launcher = {"ip", "netns", "exec", lab->host(4)};
  o.http = "";  // not needed here
  o.config = test::daemon_config(test::fixture_monitor_yaml, "1s");
  const std::string sidecar = netns_lab::address(4);
  o.config.replace(o.config.find("transport:\n"), std::strlen("transport:\n"),
                   "transport:\n  ingest: [{socket: pull, bind: \"tcp://" + sidecar +
                       ":7001\"}]\n  breakers: \"tcp://" + sidecar + ":7002\"\n");
  daemon_process d(o);  // the control socket is a file: the test reaches it from outside

  std::vector<std::unique_ptr<peer_process>> peers;
  for (int i = 1; i <= 3; ++i) {
    peers.push_back(std::make_unique<peer_process>(
        lab->host(i), "host" + std::to_string(i), "run-h" + std::to_string(i),
        d.dir() / ("peer" + std::to_string(i) + ".out")));
  }
  auto all_peers = [&] {
    std::string text;
    for (std::size_t i = 0; i < peers.size(); ++i) {
      text += "--- host" + std::to_string(i + 1) + ":\n" + peers[i]->output();
    }
    return text;
  };
  INFO("daemon log:\n" << d.log());

  // Every host is heard by the sidecar, and every watcher hears the sidecar.
  REQUIRE(d.wait_status(
      [](const v1::ControlResponse& r) {
        for (const std::string s : {"host1", "host2", "host3"}) {
          if (source_of(r, s) == nullptr || source_of(r, s)->received() == 0) return false;
        }
        return true;
      },
      20s));
  {
    INFO(all_peers());
    REQUIRE(wait_until(
        [&] {
          for (const auto& p : peers) {
            const auto s = p->state();
            if (!s.seen || s.snapshots == 0 || s.silent || s.stop) return false;
          }
          return true;
        },
        20s, 50ms));
  }

  // A trip caused by host 1 reaches every host's watcher; only host 1's run must stop.
  peers[0]->send("trip");
  const std::string transition = "transition fixture.trip run-h1 BREAKER_STATE_OPEN";
  {
    INFO(all_peers());
    REQUIRE(wait_until(
        [&] {
          for (const auto& p : peers) {
            if (p->output().find(transition) == std::string::npos) return false;
          }
          return true;
        },
        10s, 50ms));
    REQUIRE(wait_until([&] { return peers[0]->state().stop; }, 5s, 50ms));
    CHECK_FALSE(peers[1]->state().stop);
    CHECK_FALSE(peers[2]->state().stop);
  }

  // Cut host 2's link: its silence breaker trips, the others carry on.
  const auto before = d.status();
  const std::uint64_t received1 = source_of(before, "host1")->received();
  const std::uint64_t received3 = source_of(before, "host3")->received();
  const long snapshots1 = peers[0]->state().snapshots;
  const long snapshots3 = peers[2]->state().snapshots;
  lab->cut(2);
  v1::ControlResponse after;
  REQUIRE(d.wait_status(
      [](const v1::ControlResponse& r) {
        return test::breaker_open(r, "telemetry.silence", "run-h2");
      },
      15s, &after));
  const auto* silence = test::find_breaker(after, "telemetry.silence", "run-h2");
  REQUIRE(silence != nullptr);
  bool names_host2 = false;
  for (const auto& kv : silence->evidence()) {
    if (kv.key() == "source") names_host2 = kv.value() == "host2";
  }
  CHECK(names_host2);
  // Hosts 1 and 3 were never silent, and are still heard.
  CHECK_FALSE(test::breaker_open(after, "telemetry.silence", "run-h1"));
  CHECK_FALSE(test::breaker_open(after, "telemetry.silence", "run-h3"));
  CHECK(d.wait_status(
      [&](const v1::ControlResponse& r) {
        return source_of(r, "host1")->received() > received1 &&
               source_of(r, "host3")->received() > received3;
      },
      5s));
  // Their watchers still hear the sidecar; host 2's went silent, and fails closed.
  INFO(all_peers());
  CHECK(wait_until(
      [&] {
        const auto s1 = peers[0]->state();
        const auto s3 = peers[2]->state();
        return s1.snapshots > snapshots1 && !s1.silent && s3.snapshots > snapshots3 && !s3.silent &&
               !s3.stop;
      },
      5s, 50ms));
  CHECK(wait_until(
      [&] {
        const auto s2 = peers[1]->state();
        return s2.silent && s2.stop;
      },
      5s, 50ms));
  // Still nothing silent but host 2, a moment later.
  const auto last = d.status();
  CHECK_FALSE(test::breaker_open(last, "telemetry.silence", "run-h1"));
  CHECK_FALSE(test::breaker_open(last, "telemetry.silence", "run-h3"));
}
