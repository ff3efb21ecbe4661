// destructive_action decision latency: p50/p99/max of one gate decision, in process (the engine
// and the real plugin .so, as the daemon runs them) and over the real gate socket (`loopwarden
// serve` as a child process, a gate_client round trip), on the mixed corpus of
// tests/fixtures/destructive_action (destructive commands, their benign twins, everyday
// commands). Also prints the catch rate and false-positive rate on each corpus file. Prints
// figures; asserts nothing. Target (issue 9): p99 <= 200 us in process.
//
//   build/dev/bench/destructive_action_bench [passes] [socket_requests]
//
// The machine is shared: compare figures within one run, and read p99 as "on a busy box".

#include <signal.h>
#include <spawn.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <loopwarden/client/gate_client.hpp>
#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>

extern char** environ;

using namespace loopwarden;
using clock_type = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

struct row {
  std::string expect;
  std::string command;
};

std::vector<row> load(const std::string& name) {
  std::ifstream in(std::string(LOOPWARDEN_SOURCE_DIR) + "/tests/fixtures/destructive_action/" + name);
  std::vector<row> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto t1 = line.find('\t');
    const auto t2 = line.find('\t', t1 + 1);
    if (t1 == std::string::npos || t2 == std::string::npos) continue;
    row r{line.substr(0, t1), line.substr(t2 + 1)};
    for (std::size_t p; (p = r.command.find("\u21b5")) != std::string::npos;) {
      r.command.replace(p, std::string("\u21b5").size(), "\n");
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

v1::ActionRequest action_for(const std::string& command) {
  v1::ActionRequest a;
  a.set_kind(v1::ACTION_KIND_SHELL);
  a.set_command(command);
  a.set_working_directory("/home/dev/project");
  a.mutable_scope()->set_workspace_root("/home/dev/project");
  a.set_agent_id("bench");
  auto* kv = a.add_attributes();
  kv->set_key("home");
  kv->set_value("/home/dev");
  return a;
}

struct percentiles {
  double p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;
  std::size_t n = 0;
};

percentiles summarise(std::vector<double> us) {
  percentiles p;
  if (us.empty()) return p;
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[std::min(us.size() - 1, static_cast<std::size_t>(q * us.size()))]; };
  p.p50 = at(0.50);
  p.p90 = at(0.90);
  p.p99 = at(0.99);
  p.max = us.back();
  double sum = 0;
  for (double v : us) sum += v;
  p.mean = sum / static_cast<double>(us.size());
  p.n = us.size();
  return p;
}

void print(const char* what, const percentiles& p) {
  std::printf("  %-34s n=%-7zu p50 %8.1f us  p90 %8.1f us  p99 %8.1f us  max %9.1f us  mean %7.1f us\n",
              what, p.n, p.p50, p.p90, p.p99, p.max, p.mean);
}

std::string config_yaml(const std::string& state_dir) {
  return "version: 1\nlog_level: warn\nstate_dir: \"" + state_dir + "\"\nplugin_paths: [\"" +
         std::string(LOOPWARDEN_BINARY_DIR) +
         "/lib/loopwarden/plugins\"]\nmonitors:\n  - name: destructive_action\n"
         "    plugin: destructive_action\n";
}

}  // namespace

int main(int argc, char** argv) {
  const int passes = argc > 1 ? std::atoi(argv[1]) : 20;
  const int socket_requests = argc > 2 ? std::atoi(argv[2]) : 3000;

  const auto corpus = load("corpus.tsv");
  const auto holdout = load("holdout.tsv");
  const auto holdout2 = load("holdout2.tsv");
  if (corpus.empty()) {
    std::fprintf(stderr, "no corpus under %s/tests/fixtures/destructive_action\n",
                 LOOPWARDEN_SOURCE_DIR);
    return 2;
  }
  auto cfg = core::parse_config(config_yaml("/tmp/lw-bench-unused"), "bench.yaml");
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", cfg.error().message().c_str());
    return 2;
  }
  core::engine_options eo;
  eo.search_bundled_plugins = false;
  auto engine = core::engine::create(*cfg, eo);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.error().message().c_str());
    return 2;
  }

  // Detection on every corpus (each row its own session: no evasion breaker in the way).
  std::printf("destructive_action: detection\n");
  for (const auto* set : {&corpus, &holdout, &holdout2}) {
    std::size_t destructive = 0, caught = 0, benign = 0, flagged = 0;
    std::size_t i = 0;
    for (const auto& r : *set) {
      v1::GateRequest req;
      *req.mutable_action() = action_for(r.command);
      req.mutable_action()->set_session_id("detect-" + std::to_string(i++));
      const bool hit = (*engine)->gate(req).decision.verdict != sdk::gate_verdict::allow;
      if (r.expect == "allow") {
        ++benign;
        flagged += hit ? 1 : 0;
      } else {
        ++destructive;
        caught += hit ? 1 : 0;
      }
    }
    std::printf("  %-12s destructive caught %zu/%zu (%.2f %%), benign flagged %zu/%zu (%.2f %%)\n",
                set == &corpus    ? "corpus.tsv"
                : set == &holdout ? "holdout.tsv"
                                  : "holdout2.tsv",
                caught, destructive,
                100.0 * static_cast<double>(caught) / static_cast<double>(std::max<std::size_t>(1, destructive)),
                flagged, benign,
                100.0 * static_cast<double>(flagged) / static_cast<double>(std::max<std::size_t>(1, benign)));
  }

  // In process: every row, `passes` times, shuffled order per pass (a mixed stream).
  std::vector<row> mixed = corpus;
  mixed.insert(mixed.end(), holdout.begin(), holdout.end());
  std::vector<v1::GateRequest> requests;
  for (std::size_t i = 0; i < mixed.size(); ++i) {
    v1::GateRequest req;
    req.set_request_id("b" + std::to_string(i));
    *req.mutable_action() = action_for(mixed[i].command);
    req.mutable_action()->set_session_id("s" + std::to_string(i % 64));
    requests.push_back(std::move(req));
  }
  std::vector<double> all, destructive_us, benign_us, long_us;
  std::vector<std::vector<double>> per_command(requests.size());
  std::vector<std::size_t> order(requests.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (std::size_t i = 0; i < requests.size(); ++i) (void)(*engine)->gate(requests[i]);  // warm
  std::uint64_t seed = 88172645463325252ULL;
  for (int pass = 0; pass < passes; ++pass) {
    for (std::size_t i = order.size(); i > 1; --i) {
      seed ^= seed << 13;
      seed ^= seed >> 7;
      seed ^= seed << 17;
      std::swap(order[i - 1], order[seed % i]);
    }
    for (std::size_t k : order) {
      const auto t0 = clock_type::now();
      const auto out = (*engine)->gate(requests[k]);
      const double us = std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
      (void)out;
      all.push_back(us);
      (mixed[k].expect == "allow" ? benign_us : destructive_us).push_back(us);
      if (mixed[k].command.size() > 80) long_us.push_back(us);
      per_command[k].push_back(us);
    }
  }
  std::printf("destructive_action: decision latency in process (engine + plugin), %zu commands x %d passes\n",
              requests.size(), passes);
  print("all", summarise(all));
  print("destructive rows", summarise(destructive_us));
  print("benign rows", summarise(benign_us));
  print("commands longer than 80 bytes", summarise(long_us));
  // The commands that cost most (their median over the passes): where the time goes.
  std::vector<std::pair<double, std::size_t>> medians;
  for (std::size_t k = 0; k < per_command.size(); ++k) {
    if (!per_command[k].empty()) medians.push_back({summarise(per_command[k]).p50, k});
  }
  std::sort(medians.rbegin(), medians.rend());
  std::printf("  slowest commands (median of %d passes):\n", passes);
  for (std::size_t i = 0; i < std::min<std::size_t>(8, medians.size()); ++i) {
    std::string c = mixed[medians[i].second].command;
    for (auto& ch : c) ch = ch == '\n' ? ' ' : ch;
    if (c.size() > 90) c = c.substr(0, 87) + "...";
    std::printf("    %8.1f us  %s\n", medians[i].first, c.c_str());
  }

  // Over the gate socket: the real daemon, one gate_client, sequential round trips.
  if (socket_requests <= 0) return 0;
  char dir_template[] = "/tmp/lw-da-bench-XXXXXX";
  if (::mkdtemp(dir_template) == nullptr) return 2;
  const fs::path dir = dir_template;
  const fs::path state = dir / "state";
  const fs::path config = dir / "loopwarden.yaml";
  std::ofstream(config) << config_yaml(state.string());
  const std::string bin = std::string(LOOPWARDEN_BINARY_DIR) + "/bin/loopwarden";
  const std::string log = (dir / "serve.log").string();
  std::vector<std::string> args = {bin, "serve", "--config", config.string(), "--http", ""};
  std::vector<char*> argv_c;
  for (auto& a : args) argv_c.push_back(a.data());
  argv_c.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = 0;
  if (posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv_c.data(), environ) != 0) {
    std::fprintf(stderr, "can't start %s\n", bin.c_str());
    return 2;
  }
  posix_spawn_file_actions_destroy(&fa);
  const std::string endpoint = "ipc://" + (state / "run" / "gate.sock").string();
  auto gate = client::gate_client::create({.endpoint = endpoint, .source = "bench"});
  int rc = 0;
  if (!gate.ok()) {
    std::fprintf(stderr, "%s\n", gate.error().message().c_str());
    rc = 2;
  } else {
    // Wait until the daemon answers.
    const auto deadline = clock_type::now() + std::chrono::seconds(30);
    bool up = false;
    while (clock_type::now() < deadline) {
      if (!(*gate)->ask(action_for("ls"), std::chrono::milliseconds(200)).timed_out) {
        up = true;
        break;
      }
    }
    if (!up) {
      std::fprintf(stderr, "the daemon did not answer within 30 s (log: %s)\n", log.c_str());
      rc = 2;
    } else {
      std::vector<double> rt, rt_destructive, rt_benign, rt_no_store, rt_store;
      std::vector<v1::ActionRequest> actions;
      for (const auto& r : mixed) actions.push_back(action_for(r.command));
      for (int i = 0; i < socket_requests; ++i) {
        const std::size_t k = static_cast<std::size_t>(i) % actions.size();
        actions[k].set_session_id("sock-" + std::to_string(i % 64));
        const auto t0 = clock_type::now();
        const auto d = (*gate)->ask(actions[k], std::chrono::milliseconds(5000));
        const double us = std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
        if (d.timed_out) continue;
        rt.push_back(us);
        (mixed[k].expect == "allow" ? rt_benign : rt_destructive).push_back(us);
        (d.verdict == sdk::gate_verdict::require_approval ? rt_store : rt_no_store).push_back(us);
      }
      std::printf("destructive_action: decision latency over the gate socket (ipc, real daemon), "
                  "%d round trips\n", socket_requests);
      std::printf("  (require_approval answers include storing the approval: one SQLite commit)\n");
      print("all", summarise(rt));
      print("destructive rows", summarise(rt_destructive));
      print("benign rows", summarise(rt_benign));
      print("allow or deny (no store write)", summarise(rt_no_store));
      print("require_approval (stores it)", summarise(rt_store));
    }
  }
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::error_code ec;
  fs::remove_all(dir, ec);
  return rc;
}
