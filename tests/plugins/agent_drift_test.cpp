// agent_drift through the real engine and the real plugin .so: for each runaway guard a table of
// step sequences that must trip (at the step given) and twins that must not; the stability
// index's components on hand-computed cases; a seeded simulated agent whose tool mix shifts at
// step 500 and its stationary twin; a realistic long coding session that must not trip; bad
// config and bad input; bounded memory; snapshot and restore across two engines.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <numbers>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <loopwarden/core/breaker_store.hpp>
#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>

using namespace loopwarden;

namespace {

constexpr const char* runaway = "agent.runaway";
constexpr const char* drift = "agent.drift";

std::string yaml_for(const std::string& monitor_config) {
  return "version: 1\nplugin_paths: [\"" + std::string(LOOPWARDEN_BINARY_DIR) +
         "/lib/loopwarden/plugins\"]\nmonitors:\n  - name: ad\n    plugin: agent_drift\n"
         "    config: " +
         monitor_config + "\n";
}

std::unique_ptr<core::engine> engine_with(const std::string& monitor_config) {
  const std::string yaml = yaml_for(monitor_config);
  auto cfg = core::parse_config(yaml, "ad.yaml");
  INFO(yaml);
  REQUIRE(cfg.ok());
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  auto e = core::engine::create(*cfg, opts);
  INFO((e.ok() ? std::string() : e.error().message()));
  REQUIRE(e.ok());
  return std::move(*e);
}

// --- building steps ---------------------------------------------------------------------------

v1::ToolCall call(const std::string& tool, const std::string& args, v1::ToolStatus status,
                  const std::string& digest, const std::string& target = "") {
  v1::ToolCall c;
  c.set_name(tool);
  c.set_args_digest(args);
  c.set_status(status);
  if (status == v1::TOOL_STATUS_OK) {
    c.set_observation_digest(digest);
  } else {
    c.set_error_digest(digest);
  }
  c.set_target(target);
  return c;
}
v1::ToolCall ok(const std::string& tool, const std::string& args, const std::string& observation,
                const std::string& target = "") {
  return call(tool, args, v1::TOOL_STATUS_OK, observation, target);
}
v1::ToolCall fail(const std::string& tool, const std::string& args, const std::string& error,
                  const std::string& target = "") {
  return call(tool, args, v1::TOOL_STATUS_ERROR, error, target);
}

// One step as a test writes it: its calls, the workspace hash after it, and how long after the
// previous step it came.
struct timed_step {
  v1::AgentStep step;
  double gap_seconds = 10.0;
};

timed_step step(std::vector<v1::ToolCall> calls, const std::string& workspace = "ws-0",
                std::uint64_t tokens = 2000) {
  timed_step t;
  for (auto& c : calls) *t.step.add_tool_calls() = std::move(c);
  t.step.set_workspace_hash(workspace);
  t.step.set_tokens_in(tokens * 3 / 4);
  t.step.set_tokens_out(tokens - tokens * 3 / 4);
  t.step.set_output_length(200);
  return t;
}

using steps = std::vector<timed_step>;

steps repeat(const steps& block, int times) {
  steps out;
  for (int i = 0; i < times; ++i) out.insert(out.end(), block.begin(), block.end());
  return out;
}
steps operator+(steps a, const steps& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
steps with_gap(steps s, double gap) {
  for (auto& t : s) t.gap_seconds = gap;
  return s;
}
steps without_hashes(steps s) {
  for (auto& t : s) t.step.clear_workspace_hash();
  return s;
}
steps with_tokens(steps s, std::uint64_t tokens) {
  for (auto& t : s) {
    t.step.set_tokens_in(tokens * 3 / 4);
    t.step.set_tokens_out(tokens - tokens * 3 / 4);
  }
  return s;
}
// n steps, each made by make(i) for i = 0..n-1.
steps generate(int n, const std::function<timed_step(int)>& make) {
  steps out;
  for (int i = 0; i < n; ++i) out.push_back(make(i));
  return out;
}
std::string n(const std::string& prefix, int i) { return prefix + std::to_string(i); }
std::string n_str(int i) { return "patch-" + std::to_string(i); }

// Sends steps for one run/agent/session and records, per breaker, the 1-based step that first
// opened it.
class feeder {
 public:
  explicit feeder(core::engine& e) : engine_(e) {
    e.breakers().add_listener([this](const v1::BreakerTransition& t) {
      if (t.breaker().state() != v1::BREAKER_STATE_OPEN) return;
      opened_.emplace(t.breaker().name(), sent_);
    });
  }

  void send(timed_step t, const std::string& session = "s1", const std::string& agent = "a1",
            const std::string& run = "r1") {
    time_ns_ += static_cast<std::int64_t>(t.gap_seconds * 1e9);
    v1::Envelope e;
    e.set_source("harness/1");
    e.set_run_id(run);
    e.set_seq(++seq_);
    e.set_time_unix_nano(time_ns_);
    t.step.set_agent_id(agent);
    t.step.set_session_id(session);
    t.step.set_turn(turns_[agent + "/" + session]++);
    *e.mutable_agent_step() = std::move(t.step);
    ++sent_;
    engine_.process(e);
  }
  void send_all(const steps& s, const std::string& session = "s1") {
    for (const auto& t : s) send(t, session);
  }

  // The 1-based step that first opened `breaker`, or 0.
  std::size_t opened_at(const std::string& breaker) const {
    auto it = opened_.find(breaker);
    return it == opened_.end() ? 0 : it->second;
  }
  std::size_t sent() const { return sent_; }

 private:
  core::engine& engine_;
  std::uint64_t seq_ = 0;
  std::int64_t time_ns_ = 1'700'000'000'000'000'000;
  std::size_t sent_ = 0;
  std::map<std::string, std::size_t> opened_;
  std::map<std::string, std::uint64_t> turns_;
};

std::map<std::string, std::string> evidence_of(core::engine& e, const std::string& breaker,
                                               const std::string& run = "r1") {
  std::map<std::string, std::string> out;
  auto b = e.breakers().find({breaker, run});
  if (!b) return out;
  for (const auto& kv : b->evidence()) out[kv.key()] = kv.value();
  return out;
}

double gauge(core::engine& e, const std::string& name) {
  for (const auto& m : e.monitors()) {
    for (const auto& [g, v] : m.gauges) {
      if (g == name) return v;
    }
  }
  return std::numeric_limits<double>::quiet_NaN();
}

// --- guard tables -----------------------------------------------------------------------------

struct guard_row {
  std::string name;
  std::string config;  // the monitor's config; "{}" for the defaults
  steps sequence;
  std::size_t trips_at;  // the 1-based step that opens agent.runaway; 0 = it must not open
  std::string guard;     // the guard named in the evidence at the trip
};

void run_rows(const std::vector<guard_row>& rows) {
  for (const auto& r : rows) {
    INFO(r.name << " (config " << r.config << ", " << r.sequence.size() << " steps)");
    auto e = engine_with(r.config);
    feeder f(*e);
    f.send_all(r.sequence);
    const auto ev = evidence_of(*e, runaway);
    INFO("tripped by " << (ev.count("guard") ? ev.at("guard") : std::string("nothing")) << ": "
                       << (ev.count("pattern") ? ev.at("pattern") : std::string()));
    CHECK(f.opened_at(runaway) == r.trips_at);
    if (r.trips_at > 0) {
      CHECK(ev.at("guard") == r.guard);
      CHECK(ev.count("pattern") == 1);
      CHECK(ev.at("agent_id") == "a1");
      CHECK(ev.at("session_id") == "s1");
      CHECK(ev.at("session_step") == std::to_string(r.trips_at));
      auto b = e->breakers().find({runaway, "r1"});
      REQUIRE(b);
      CHECK(b->action() == v1::BREAKER_ACTION_HALT);
    }
  }
}

// A coding agent's usual calls.
v1::ToolCall read_file(const std::string& path, const std::string& content = "") {
  return ok("read_file", "args:" + path, content.empty() ? "content:" + path : content, path);
}
v1::ToolCall run_tests(const std::string& result = "E-assert-12") {
  return result == "pass" ? ok("bash", "pytest -q", "passed", "tests/")
                          : fail("bash", "pytest -q", result, "tests/");
}
v1::ToolCall edit(const std::string& path, const std::string& patch) {
  return ok("edit_file", "patch:" + patch, "edited:" + path, path);
}

}  // namespace

TEST_CASE(
    "agent_drift repeated_failure trips at the Nth identical failing call, not on reruns "
    "after edits",
    "[plugins][agent_drift][guards]") {
  const auto migrate = fail("run_migrations", "m1", "E-lock-timeout", "db/main");
  std::vector<guard_row> rows = {
      {"three identical failing calls", "{}", repeat({step({migrate})}, 3), 3, "repeated_failure"},
      {"85 identical failing calls trip at the third", "{}", repeat({step({migrate})}, 85), 3,
       "repeated_failure"},
      {"interleaved with reads of new files",
       "{}",
       {step({migrate}), step({read_file("a.py")}), step({migrate}), step({read_file("b.py")}),
        step({migrate})},
       5,
       "repeated_failure"},
      // Without hashes a successful call never seen before may have been an edit, so only calls
      // seen before (the read and the listing) leave the count running.
      {"without hashes, between calls seen before", "{}",
       without_hashes({step({read_file("a.py")}), step({ok("ls", "src", "listing", "src")}),
                       step({migrate}), step({read_file("a.py")}), step({migrate}),
                       step({ok("ls", "src", "listing", "src")}), step({migrate})}),
       7, "repeated_failure"},
      {"twin: without hashes, a new successful call between failures", "{}",
       without_hashes({step({migrate}), step({read_file("a.py")}), step({migrate}),
                       step({read_file("b.py")}), step({migrate})}),
       0, ""},
      {"a configured limit of 5", "{guards: {same_error: 5}}", repeat({step({migrate})}, 6), 5,
       "repeated_failure"},
      {"twin: re-running the tests after each edit", "{}",
       generate(8,
                [](int i) {
                  return step({edit("src/x.py", n("p", i)), run_tests()}, n("ws-", i + 1));
                }),
       0, ""},
      {"twin: re-running the tests after each edit, without hashes", "{}",
       without_hashes(generate(8,
                               [](int i) {
                                 return i % 2 == 0 ? step({run_tests()})
                                                   : step({edit("src/x.py", n("p", i))});
                               })),
       0, ""},
      {"twin: two identical failures, then a fix",
       "{}",
       {step({migrate}), step({migrate}), step({edit("db/lock.py", "fix")}, "ws-1"),
        step({ok("run_migrations", "m1", "applied", "db/main")}, "ws-2")},
       0,
       ""},
      {"twin: failing calls that name neither arguments nor target", "{}",
       repeat({step({fail("bash", "", "")})}, 6), 0, ""},
      {"twin: the same failing call with the guard off", "{guards: {same_error: 0}}",
       repeat({step({migrate})}, 4), 0, ""},
  };
  run_rows(rows);
}

TEST_CASE(
    "agent_drift lets failing retries that back off exponentially go on to backoff_retries, not "
    "retries at a steady pace",
    "[plugins][agent_drift][guards]") {
  // The holdout fixture's rate-limited API: the same call fails with 429, the agent waits 1, 2,
  // 4, ... s (capped at 120 s) and it then succeeds. The first gap is the wait before the first
  // attempt.
  const auto post = fail("http_post", "series-7", "E-429", "https://api.example");
  auto spaced = [](const v1::ToolCall& c, const std::vector<double>& gaps) {
    steps out;
    for (double g : gaps) {
      out.push_back(step({c}));
      out.back().gap_seconds = g;
    }
    return out;
  };
  const std::vector<double> doubling = {1, 2, 4, 8, 16, 32, 64, 120, 120};
  const std::vector<double> endless = {1, 2, 4, 8, 16, 32, 64, 120, 120, 120, 120, 120, 120};
  auto varying = [&](const std::vector<double>& gaps) {
    steps out;
    for (std::size_t i = 0; i < gaps.size(); ++i) {
      out.push_back(
          step({fail("http_post", n("attempt-", static_cast<int>(i)), "E-429", "https://api")}));
      out.back().gap_seconds = gaps[i];
    }
    return out;
  };
  std::vector<guard_row> rows = {
      {"a backoff that never succeeds trips at backoff_retries", "{}", spaced(post, endless), 10,
       "repeated_failure"},
      {"a backoff that stops backing off trips at once", "{}", spaced(post, {1, 2, 4, 8, 3, 3}), 5,
       "repeated_failure"},
      {"retries at a steady 30 s trip at the plain limit", "{}", spaced(post, {30, 30, 30}), 3,
       "repeated_failure"},
      {"retries a little slower each time (by less than the factor) trip at the plain limit", "{}",
       spaced(post, {10, 11, 12, 13}), 3, "repeated_failure"},
      {"fast retries whose millisecond intervals happen to grow are not a backoff", "{}",
       spaced(post, {0.05, 0.05, 0.08, 0.13}), 3, "repeated_failure"},
      {"a configured minimum interval of 10 s", "{guards: {backoff_min_interval: 10s}}",
       spaced(post, {1, 2, 4, 8, 16}), 3, "repeated_failure"},
      {"the backoff allowance turned off", "{guards: {backoff_retries: 0}}", spaced(post, doubling),
       3, "repeated_failure"},
      {"a backoff with varying arguments that never succeeds trips same_error at backoff_retries",
       "{}", varying(endless), 10, "same_error"},
      {"varying arguments at a steady pace trip same_error at its plain limit", "{}",
       varying({5, 5, 5, 5, 5, 5, 5}), 6, "same_error"},
      {"twin: nine retries backing off, then a success", "{}",
       spaced(post, doubling) +
           steps{step({ok("http_post", "series-7", "200", "https://api.example")})},
       0, ""},
      {"twin: nine retries with varying arguments backing off, then a success", "{}",
       varying(doubling) + steps{step({ok("http_post", "attempt-ok", "200", "https://api")})}, 0,
       ""},
  };
  run_rows(rows);
}

TEST_CASE(
    "agent_drift repeated_action trips at the Nth identical call with the same result, not "
    "on the same tool over many files",
    "[plugins][agent_drift][guards]") {
  std::vector<guard_row> rows = {
      {"the same read with the same result four times", "{}",
       repeat({step({read_file("a.py")})}, 4), 4, "repeated_action"},
      {"four times with nothing new in between",
       "{}",
       {step({read_file("a.py")}), step({read_file("b.py")}), step({read_file("a.py")}),
        step({read_file("a.py")}), step({read_file("a.py")}), step({read_file("a.py")})},
       6,
       "repeated_action"},
      {"twin: re-reading a file between reads of new ones",
       "{}",
       {step({read_file("a.py")}), step({read_file("b.py")}), step({read_file("a.py")}),
        step({read_file("c.py")}), step({read_file("a.py")}), step({read_file("d.py")}),
        step({read_file("a.py")}), step({read_file("e.py")}), step({read_file("a.py")})},
       0,
       ""},
      {"without hashes, a known observation", "{}",
       without_hashes(repeat({step({read_file("a.py")})}, 5)), 4, "repeated_action"},
      {"twin: three identical reads", "{}", repeat({step({read_file("a.py")})}, 3), 0, ""},
      {"a polling tool polled twelve times", "{}",
       repeat({step({ok("wait_for_ci", "run-7", "pending", "ci")})}, 12), 4, "repeated_action"},
      {"twin: the polling tool in ignore_tools", "{guards: {ignore_tools: [wait_for_ci]}}",
       repeat({step({ok("wait_for_ci", "run-7", "pending", "ci")})}, 12), 0, ""},
      {"twin: the same file read while it changes", "{}",
       generate(8, [](int i) { return step({read_file("log.txt", n("content-", i))}); }), 0, ""},
      {"twin: the same tool on 300 different files", "{}",
       generate(300, [](int i) { return step({read_file(n("src/f", i) + ".py")}); }), 0, ""},
      {"twin: unknown results without hashes", "{}",
       without_hashes(repeat({step({ok("list_dir", "src/", "", "src/")})}, 6)), 0, ""},
      {"twin: reading a file again after editing it", "{}",
       generate(10,
                [](int i) {
                  return i % 2 == 0 ? step({read_file("a.py")}, n("ws-", i))
                                    : step({edit("a.py", n("p", i))}, n("ws-", i + 1));
                }),
       0, ""},
  };
  run_rows(rows);
}

TEST_CASE(
    "agent_drift same_error trips when varied arguments keep failing the same way, not on "
    "retries that succeed",
    "[plugins][agent_drift][guards]") {
  auto pip = [](int i) {
    return step({fail("bash", n("pip install foo==1.", i), "E-network-unreachable")});
  };
  std::vector<guard_row> rows = {
      {"six installs with different arguments, one error", "{}", generate(6, pip), 6, "same_error"},
      {"a configured limit of 4", "{guards: {same_error_varying_args: 4}}", generate(6, pip), 4,
       "same_error"},
      {"the read that evades exact repeats by varying the path", "{}",
       generate(7,
                [](int i) {
                  return step({fail("read_file", n("p", i), "E-no-such-file", n("./foo", i))});
                }),
       6, "same_error"},
      {"twin: retries with changed arguments that then succeed", "{}",
       generate(12,
                [](int i) {
                  const std::string pkg = n("pkg", i / 3) + "==" + std::to_string(i % 3);
                  return i % 3 < 2 ? step({fail("bash", "pip install " + pkg, "E-no-version")})
                                   : step({ok("bash", "pip install " + pkg, n("installed-", i))},
                                          n("ws-", i));
                }),
       0, ""},
      {"twin: four failures then a success, twice", "{}",
       generate(4, pip) + steps{step({ok("bash", "pip download foo", "saved")})} +
           generate(4, pip) + steps{step({ok("bash", "pip install ./foo.whl", "installed")})},
       0, ""},
      {"twin: an edit between failures", "{}",
       generate(3, pip) + steps{step({edit("requirements.txt", "pin")}, "ws-1")} +
           generate(3,
                    [&](int i) {
                      timed_step t = pip(i + 3);
                      t.step.set_workspace_hash("ws-1");
                      return t;
                    }),
       0, ""},
      {"twin: five failures with five different errors", "{}",
       generate(5, [](int i) { return step({fail("bash", n("cmd", i), n("E-", i))}); }), 0, ""},
  };
  run_rows(rows);
}

TEST_CASE(
    "agent_drift failure_despite_edits trips when edit after edit the same test fails the "
    "same way",
    "[plugins][agent_drift][guards]") {
  // One failing run, then rounds of "edit (the workspace moves on), run the tests again".
  auto rounds = [](int n, const std::function<std::string(int)>& result) {
    steps out = {step({run_tests(result(0))}, "ws-0")};
    for (int i = 1; i <= n; ++i) {
      out.push_back(step({edit("src/x.py", n_str(i))}, "ws-" + std::to_string(i)));
      out.push_back(step({run_tests(result(i))}, "ws-" + std::to_string(i)));
    }
    return out;
  };
  auto same = [](int) { return std::string("E-assert-12"); };
  std::vector<guard_row> rows = {
      {"the same failure after nine different edits", "{}", rounds(12, same), 19,
       "failure_despite_edits"},
      {"without hashes", "{}", without_hashes(rounds(12, same)), 19, "failure_despite_edits"},
      {"a configured limit of 4", "{guards: {failure_despite_edits: 4}}", rounds(12, same), 7,
       "failure_despite_edits"},
      {"twin: eight fix attempts, then the tests pass", "{}",
       rounds(9, [](int i) { return i < 9 ? std::string("E-assert-12") : std::string("pass"); }), 0,
       ""},
      {"twin: the failure changes along the way", "{}",
       rounds(
           12,
           [](int i) { return i < 5 ? std::string("E-assert-12") : std::string("E-assert-40"); }),
       0, ""},
      {"twin: the guard off", "{guards: {failure_despite_edits: 0}}", rounds(12, same), 0, ""},
      {"twin: the same first attempt fails each round, then other arguments work", "{}",
       generate(36,
                [](int i) {
                  const std::string ws = "ws-" + std::to_string(i / 3);
                  if (i % 3 == 0)
                    return step({fail("bash", "gen --out build", "E-no-dir", "scripts")}, ws);
                  if (i % 3 == 1)
                    return step({ok("bash", "gen --out ./build", n("built-", i), "scripts")}, ws);
                  return step({edit("src/x.py", n_str(i))}, "ws-" + std::to_string(i / 3 + 1));
                }),
       0, ""},
  };
  run_rows(rows);
}

TEST_CASE(
    "agent_drift cycle trips on A-B-A-B-A-B and short cycles, not when the workspace moves on",
    "[plugins][agent_drift][guards]") {
  const timed_step a = step({read_file("a.py")});
  const timed_step b = step({read_file("b.py")});
  const timed_step c = step({ok("grep", "deprecated_call", "3 matches", "src/")});
  std::vector<guard_row> rows = {
      {"A-B-A-B-A-B over 6 steps", "{}", repeat({a, b}, 3), 6, "cycle"},
      {"A-B-C three times", "{}", repeat({a, b, c}, 3), 9, "cycle"},
      {"edit and revert flip-flopping the workspace", "{}",
       repeat({step({edit("a.py", "p")}, "ws-p"), step({edit("a.py", "q")}, "ws-q")}, 3), 6,
       "cycle"},
      {"the same two calls in every step", "{}",
       repeat({step({read_file("a.py"), read_file("b.py")})}, 3), 3, "cycle"},
      {"twin: A-B-A-B-A", "{}", repeat({a, b}, 2) + steps{a}, 0, ""},
      {"twin: edit then test, the workspace moving on", "{}",
       generate(12,
                [](int i) {
                  return i % 2 == 0 ? step({edit("x.py", n("p", i))}, n("ws-", i))
                                    : step({run_tests()}, n("ws-", i - 1));
                }),
       0, ""},
      {"twin: alternating reads of files that change", "{}",
       generate(8, [](int i) { return step({read_file(i % 2 ? "a.py" : "b.py", n("v", i))}); }), 0,
       ""},
      {"twin: cycles off", "{guards: {cycle: {max_period: 0}}}", repeat({a, b}, 3), 0, ""},
  };
  run_rows(rows);
}

TEST_CASE(
    "agent_drift tool_storm and failing_tool_storm trip on bursts within the window, not on "
    "the same counts spread out",
    "[plugins][agent_drift][guards]") {
  auto four_reads = [](int i) {
    timed_step t = step({read_file(n("f", 4 * i)), read_file(n("f", 4 * i + 1)),
                         read_file(n("f", 4 * i + 2)), read_file(n("f", 4 * i + 3))});
    return t;
  };
  // A broken tool: every call fails, with varied arguments and error texts (request ids), so
  // no repeat guard sees it; only the storm does.
  auto broken = [](int i) {
    return step({fail("fetch", n("url-", i), n("E-503-request-", i), "api.example.com")});
  };
  std::vector<guard_row> rows = {
      {"four reads a step, a step every 1.1 s: call 1001 within 5 minutes", "{}",
       with_gap(generate(260, four_reads), 1.1), 251, "tool_storm"},
      {"400 calls of a broken tool in five minutes", "{}", with_gap(generate(400, broken), 0.75),
       51, "failing_tool_storm"},
      {"twin: four reads a step, a step every 4 s", "{}", with_gap(generate(400, four_reads), 4.0),
       0, ""},
      {"twin: 400 failures over two hours", "{}", with_gap(generate(400, broken), 18.0), 0, ""},
      {"twin: exactly 50 failures in a minute", "{}", with_gap(generate(50, broken), 1.0), 0, ""},
      {"twin: 60 failures among 100 calls in five minutes", "{}",
       with_gap(generate(100,
                         [&](int i) {
                           return i % 5 < 3 ? broken(i)
                                            : step({ok("fetch", n("url-", i), n("page-", i),
                                                       "api.example.com")});
                         }),
                2.9),
       0, ""},
  };
  run_rows(rows);
}

TEST_CASE(
    "agent_drift no_progress and tokens_without_progress trip when nothing new happens, not "
    "while exploring",
    "[plugins][agent_drift][guards]") {
  // Ten reads, then the same ten twice more in irregular orders (no short cycle, no call more
  // than three times): the workspace never changes and nothing new comes back after step 10.
  const std::string order =
      "abcdefghij"
      "cagiebjdhf"
      "hadjfbiceg";
  auto loop = [&](std::uint64_t tokens) {
    steps out;
    for (char ch : order)
      out.push_back(step({read_file(std::string(1, ch) + ".py")}, "ws-0", tokens));
    return out;
  };
  std::vector<guard_row> rows = {
      {"ten reads repeated irregularly, workspace unchanged", "{}", loop(2000), 30, "no_progress"},
      {"a configured limit of 5", "{guards: {no_progress_steps: 5}}", loop(2000), 15,
       "no_progress"},
      {"a loop burning 500k tokens a step", "{}", loop(500'000), 21, "tokens_without_progress"},
      {"a loop burning 500k tokens a step, without hashes", "{}", without_hashes(loop(500'000)), 21,
       "tokens_without_progress"},
      // Without hashes the results vouch for "nothing new" when every call has one.
      {"the same loop at 2k tokens without hashes", "{}", without_hashes(loop(2000)), 30,
       "no_progress"},
      {"twin: the same loop without hashes or observation digests (results unknown)", "{}",
       without_hashes(generate(30,
                               [&](int i) {
                                 return step(
                                     {ok("read_file", "args:" + std::string(1, order[i]) + ".py",
                                         "", std::string(1, order[i]) + ".py")});
                               })),
       0, ""},
      {"twin: exploring 150 new files with the workspace unchanged", "{}",
       generate(150, [](int i) { return step({read_file(n("src/m", i) + ".py")}); }), 0, ""},
      {"twin: 60 new files at 500k tokens a step", "{}",
       with_tokens(generate(60, [](int i) { return step({read_file(n("src/m", i) + ".py")}); }),
                   500'000),
       0, ""},
      // A new call is not progress when its result is one already seen (the holdout fixture's
      // pagination, scrolling and jittered-click loops): the page number changes, the page does
      // not.
      {"the next page of a search, the same results every time", "{}",
       generate(40, [](int i) { return step({ok("web_search", n("page=", i), "same-10", "q")}); }),
       21, "no_progress"},
      {"scrolling further, the same rows, without hashes, 500k tokens a step", "{}",
       without_hashes(with_tokens(
           generate(40, [](int i) { return step({ok("scroll", n("y=", i), "rows-1-40", "u")}); }),
           500'000)),
       12, "tokens_without_progress"},
      {"a file re-opened at other lines, the same content", "{}",
       generate(40, [](int i) { return step({ok("open", n("line=", i), "a-v0", "a.py")}); }), 21,
       "no_progress"},
      {"twin: the next page of a search, new results every time", "{}",
       generate(40, [](int i) { return step({ok("web_search", n("page=", i), n("r", i), "q")}); }),
       0, ""},
      {"twin: the same result from many places (a crawler), without hashes, 500k a step", "{}",
       without_hashes(with_tokens(
           generate(40, [](int i) { return step({ok("fetch", "get", "200-ok", n("url", i))}); }),
           500'000)),
       0, ""},
      {"twin: new calls without observation digests (the result unknown)", "{}",
       generate(40, [](int i) { return step({ok("click", n("x=", i), "", "u")}, n("ws", i)); }), 0,
       ""},
      {"twin: a review rereading ten files with an edit every ten steps", "{}",
       generate(
           60,
           [&](int i) {
             return i % 10 == 9
                        ? step({edit("a.py", n("p", i))}, n("ws-", i / 10 + 1))
                        : step({read_file(
                                   std::string(1, order[static_cast<std::size_t>(i % 30)]) + ".py",
                                   n("v", i / 10))},
                               n("ws-", i / 10));
           }),
       0, ""},
  };
  run_rows(rows);
}

TEST_CASE("agent_drift deferral trips after N idle turns, not in a conversation with a human",
          "[plugins][agent_drift][guards]") {
  const timed_step idle = step({});
  timed_step talk = step({});
  talk.step.set_human_intervention(true);
  std::vector<guard_row> rows = {
      {"eight turns without a tool call", "{}", repeat({idle}, 10), 8, "deferral"},
      {"a configured limit of 3", "{guards: {deferral_steps: 3}}", repeat({idle}, 3), 3,
       "deferral"},
      {"twin: seven idle turns then an action, three times", "{}",
       repeat(repeat({idle}, 7) + steps{step({read_file("a.py")})}, 3), 0, ""},
      {"twin: a conversation with a human", "{}", repeat({talk, idle}, 10), 0, ""},
  };
  run_rows(rows);
}

TEST_CASE("agent_drift iteration cap and budgets trip once crossed, not at the limit",
          "[plugins][agent_drift][guards]") {
  auto novel = [](int i) { return step({read_file(n("f", i))}); };
  auto costly = [&](int i) {
    timed_step t = novel(i);
    t.step.set_cost(1.0);
    return t;
  };
  std::vector<guard_row> rows = {
      {"the default cap: step 1000", "{}", generate(1000, novel), 1000, "iteration_cap"},
      {"a configured cap of 50", "{guards: {max_steps: 50}}", generate(60, novel), 50,
       "iteration_cap"},
      {"2M tokens a step against the 100M session budget", "{}",
       with_tokens(generate(60, novel), 2'000'000), 51, "session_tokens"},
      {"a configured session budget of 1M at 30k tokens a step",
       "{guards: {session_tokens: 1000000}}", with_tokens(generate(40, novel), 30'000), 34,
       "session_tokens"},
      {"a session cost budget of 10", "{guards: {session_cost: 10}}", generate(20, costly), 11,
       "session_cost"},
      {"twin: 999 steps", "{}", generate(999, novel), 0, ""},
      {"twin: exactly 100M tokens", "{}", with_tokens(generate(50, novel), 2'000'000), 0, ""},
      {"twin: cost is not budgeted by default", "{}", generate(20, costly), 0, ""},
  };
  run_rows(rows);
}

TEST_CASE("agent_drift run budgets add up the sessions of a run",
          "[plugins][agent_drift][guards]") {
  struct row {
    std::string name;
    std::string config;
    std::size_t trips_at;  // 0 = must not trip
    std::string guard, count, limit;
  };
  // Twelve steps of 9000 tokens and a cost of 5, alternating between two sessions of one run.
  const std::vector<row> rows = {
      // 11 steps are 99 000 tokens, the 12th makes 108 000 > 100 000.
      {"run tokens", "{guards: {run_tokens: 100000}}", 12, "run_tokens", "108000", "100000"},
      // 10 steps cost 50, the 11th makes 55 > 50.
      {"run cost", "{guards: {run_cost: 50}}", 11, "run_cost", "55", "50"},
      {"both: the cost first", "{guards: {run_tokens: 100000, run_cost: 50}}", 11, "run_cost", "55",
       "50"},
      {"twin: no run budget by default", "{}", 0, "", "", ""},
      {"twin: each session alone stays under the session budgets",
       "{guards: {session_tokens: 60000, session_cost: 30}}", 0, "", "", ""},
  };
  for (const auto& r : rows) {
    INFO(r.name << " (config " << r.config << ")");
    auto e = engine_with(r.config);
    feeder f(*e);
    for (int i = 0; i < 12; ++i) {
      timed_step t = step({read_file(n("f", i))}, "ws-0", 9000);
      t.step.set_cost(5.0);
      f.send(t, i % 2 == 0 ? "s1" : "s2");
    }
    CHECK(f.opened_at(runaway) == r.trips_at);
    if (r.trips_at == 0) continue;
    const auto ev = evidence_of(*e, runaway);
    CHECK(ev.at("guard") == r.guard);
    CHECK(ev.at("count") == r.count);
    CHECK(ev.at("limit") == r.limit);
  }
}

TEST_CASE(
    "agent_drift opens agent.runaway again at the next step when an operator resets it while a "
    "session or run is still over its cap or budget",
    "[plugins][agent_drift][guards]") {
  // The operator resets agent.runaway right after each opening, as if they misjudged it. The
  // session keeps stepping past its cap or budget: every next step opens the breaker again, from
  // probation (escalated). A new session of the agent starts with its own counts and stays under
  // the session guards; the run budgets add up every session of the run, so those trip on.
  struct row {
    std::string name;
    std::string config;
    std::string guard;
    std::uint64_t tokens;  // per step
    double cost;           // per step
    int first_session_steps, second_session_steps;
    std::vector<std::size_t> opens_at;  // 1-based steps, over both sessions
  };
  const std::vector<row> rows = {
      {"iteration cap of 5",
       "{guards: {max_steps: 5}}",
       "iteration_cap",
       2000,
       0.0,
       10,
       4,
       {5, 6, 7, 8, 9, 10}},
      // 4 steps are 12 000 tokens > 10 000.
      {"session tokens",
       "{guards: {session_tokens: 10000}}",
       "session_tokens",
       3000,
       0.0,
       8,
       3,
       {4, 5, 6, 7, 8}},
      // 4 steps cost 12 > 10.
      {"session cost",
       "{guards: {session_cost: 10}}",
       "session_cost",
       2000,
       3.0,
       8,
       3,
       {4, 5, 6, 7, 8}},
      // 7 steps are 21 000 tokens > 20 000; the second session adds to the run.
      {"run tokens",
       "{guards: {run_tokens: 20000}}",
       "run_tokens",
       3000,
       0.0,
       8,
       3,
       {7, 8, 9, 10, 11}},
      {"run cost", "{guards: {run_cost: 20}}", "run_cost", 2000, 3.0, 8, 3, {7, 8, 9, 10, 11}},
  };
  for (const auto& r : rows) {
    INFO(r.name << " (config " << r.config << ")");
    auto e = engine_with(r.config);
    feeder f(*e);
    std::vector<std::size_t> opened;
    std::vector<bool> from_probation;
    std::vector<std::string> guards;
    e->breakers().add_listener([&](const v1::BreakerTransition& t) {
      if (t.breaker().name() != runaway || t.breaker().state() != v1::BREAKER_STATE_OPEN) return;
      opened.push_back(f.sent());
      from_probation.push_back(t.previous() == v1::BREAKER_STATE_HALF_OPEN);
      for (const auto& kv : t.breaker().evidence()) {
        if (kv.key() == "guard") guards.push_back(kv.value());
      }
    });
    const auto reset_if_open = [&] {
      auto b = e->breakers().find({runaway, "r1"});
      if (!b || b->state() != v1::BREAKER_STATE_OPEN) return;
      REQUIRE(e->breakers()
                  .reset({runaway, "r1"}, "alice", "looked fine to me", b->changed_unix_nano())
                  .ok());
    };
    int i = 0;
    for (const auto& [session, count] :
         {std::pair{"s1", r.first_session_steps}, std::pair{"s2", r.second_session_steps}}) {
      for (int k = 0; k < count; ++k, ++i) {
        timed_step t = step({read_file(n("f", i))}, "ws-0", r.tokens);
        t.step.set_cost(r.cost);
        f.send(t, session);
        reset_if_open();
      }
    }
    CHECK(opened == r.opens_at);
    CHECK(guards == std::vector<std::string>(r.opens_at.size(), r.guard));
    REQUIRE(!from_probation.empty());
    CHECK_FALSE(from_probation.front());
    CHECK(std::all_of(from_probation.begin() + 1, from_probation.end(), [](bool p) { return p; }));
    auto b = e->breakers().find({runaway, "r1"});
    REQUIRE(b);
    CHECK(b->state() != v1::BREAKER_STATE_OPEN);
  }
}

TEST_CASE("agent_drift runaway evidence names the pattern, the count, the limit and what to do",
          "[plugins][agent_drift][guards]") {
  auto e = engine_with("{}");
  feeder f(*e);
  for (int i = 0; i < 3; ++i) {
    f.send(step({fail("run_migrations", "9f2c41aa0b3e55d1", "3e1b77c0ffee", "db/main")}));
  }
  const auto ev = evidence_of(*e, runaway);
  CHECK(ev.at("guard") == "repeated_failure");
  CHECK(ev.at("pattern") ==
        "run_migrations(target=db/main, args=9f2c41aa0b3e...) -> error 3e1b77c0ffee");
  CHECK(ev.at("count") == "3");
  CHECK(ev.at("limit") == "3");
  CHECK(ev.at("turn") == "2");
  CHECK(ev.at("workspace_hash") == "ws-0");
  CHECK(ev.count("what_to_do") == 1);
  auto b = e->breakers().find({runaway, "r1"});
  REQUIRE(b);
  CHECK(b->reason().find("agent a1 session s1 turn 2: the same call run_migrations") == 0);
}

TEST_CASE("agent_drift lists the other guards that fired on the same step under also",
          "[plugins][agent_drift][guards]") {
  // A-B-A-B-A-B where B is the same failing call: at the 6th step B fails for the third time
  // and the cycle completes.
  auto e = engine_with("{}");
  feeder f(*e);
  for (int i = 0; i < 3; ++i) {
    f.send(step({read_file("a.py")}));
    f.send(step({fail("deploy", "prod", "E-quota", "svc")}));
  }
  CHECK(f.opened_at(runaway) == 6);
  const auto ev = evidence_of(*e, runaway);
  CHECK(ev.at("guard") == "repeated_failure");
  CHECK(ev.at("also") == "cycle");
  CHECK(ev.at("cycle").find("repeat a cycle of 2 calls") != std::string::npos);
}

TEST_CASE("agent_drift ends a session on task_completed and keeps sessions apart",
          "[plugins][agent_drift][guards]") {
  const timed_step broken = step({fail("deploy", "prod", "E-denied", "svc")});
  SECTION("completion forgets the session's counts") {
    auto e = engine_with("{}");
    feeder f(*e);
    f.send(broken);
    timed_step done = broken;
    done.step.set_task_completed(true);
    f.send(done);
    f.send(broken);  // a new session under the same id: its first failure
    f.send(broken);
    CHECK(f.opened_at(runaway) == 0);
    CHECK(gauge(*e, "sessions") == 1);
    f.send(broken);
    CHECK(f.opened_at(runaway) == 5);
  }
  SECTION("two sessions interleaved count separately") {
    auto e = engine_with("{}");
    feeder f(*e);
    for (int i = 0; i < 2; ++i) {
      f.send(broken, "s1");
      f.send(broken, "s2");
    }
    CHECK(f.opened_at(runaway) == 0);
    f.send(broken, "s2");
    CHECK(f.opened_at(runaway) == 5);
    CHECK(evidence_of(*e, runaway).at("session_id") == "s2");
  }
}

TEST_CASE("agent_drift bounds its sessions, agents and runs and counts evictions",
          "[plugins][agent_drift]") {
  auto e = engine_with("{limits: {max_sessions: 2, max_agents: 2, max_runs: 2}}");
  feeder f(*e);
  const timed_step broken = step({fail("deploy", "prod", "E-denied", "svc")});
  f.send(broken, "s1", "a1", "r1");
  f.send(broken, "s1", "a1", "r1");  // two failures of s1
  f.send(broken, "s2", "a2", "r2");
  f.send(broken, "s3", "a3", "r3");  // evicts s1, a1, r1: the least recently used
  CHECK(gauge(*e, "sessions") == 2);
  CHECK(gauge(*e, "agents") == 2);
  CHECK(gauge(*e, "runs") == 2);
  CHECK(gauge(*e, "evicted_sessions") == 1);
  CHECK(gauge(*e, "evicted_agents") == 1);
  CHECK(gauge(*e, "evicted_runs") == 1);
  // s1 starts afresh: its third failure overall is the first of a new count.
  f.send(broken, "s1", "a1", "r1");
  CHECK(f.opened_at(runaway) == 0);
  for (int i = 0; i < 1000; ++i) f.send(step({read_file("x")}), n("t", i), n("b", i), "r9");
  CHECK(gauge(*e, "sessions") == 2);
  CHECK(gauge(*e, "agents") == 2);
  CHECK(gauge(*e, "evicted_sessions") == 1002);
  CHECK(gauge(*e, "evicted_agents") == 1002);
  CHECK(gauge(*e, "evicted_runs") == 3);
}

namespace {

// --- a simulated agent ------------------------------------------------------------------------

// A seeded agent: each step makes 1 to 3 tool calls drawn from a tool mix, sends a 32-d output
// embedding (a fixed topic direction plus noise), log-normal output and reasoning lengths, an
// agreement score and, rarely, a human intervention. Every call has fresh arguments and results
// and the workspace moves on every few steps, so the loop guards have nothing to say: only the
// stability index is exercised. `phased` makes it work in phases (explore, edit, test) of 10 to
// 60 steps, each with its own tool mix, as real sessions do: stationary in the long run but far
// from independent step to step.
class simulated_agent {
 public:
  static constexpr std::array<const char*, 6> tool_names = {"read_file", "edit_file",  "bash",
                                                            "grep",      "write_file", "web_fetch"};
  using mix = std::array<double, 6>;
  static constexpr mix usual = {0.35, 0.20, 0.20, 0.15, 0.05, 0.05};
  // After the shift: the agent has taken to browsing and shelling out instead of coding.
  static constexpr mix shifted = {0.10, 0.05, 0.30, 0.05, 0.00, 0.50};

  simulated_agent(std::uint64_t seed, bool phased) : rng_(seed), phased_(phased) {
    std::normal_distribution<double> normal(0.0, 1.0);
    for (double& x : topic_) x = normal(rng_);
  }

  void shift_tools(const mix& m) { mix_ = m; }
  // Semantic drift: the outputs are about something else (a new topic direction).
  void shift_topic() {
    std::normal_distribution<double> normal(0.0, 1.0);
    for (double& x : topic_) x = normal(rng_);
  }
  void scale_lengths(double factor) { log_length_shift_ = std::log(factor); }
  void set_agreement(double lo, double hi) {
    agreement_lo_ = lo;
    agreement_hi_ = hi;
  }
  void set_human_rate(double rate) { human_rate_ = rate; }

  timed_step next() {
    ++step_;
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    std::normal_distribution<double> normal(0.0, 1.0);
    const mix& m = phased_ ? phase_mix() : mix_;
    std::discrete_distribution<int> tool(m.begin(), m.end());
    const int calls = 1 + (unit(rng_) < 0.3 ? 1 : 0) + (unit(rng_) < 0.1 ? 1 : 0);
    std::vector<v1::ToolCall> cs;
    for (int c = 0; c < calls; ++c) {
      const std::string id = std::to_string(step_) + "." + std::to_string(c);
      cs.push_back(
          ok(tool_names[static_cast<std::size_t>(tool(rng_))], "args-" + id, "result-" + id));
    }
    if (unit(rng_) < 0.3) ++workspace_;
    timed_step t = step(std::move(cs), "ws-" + std::to_string(workspace_), 3000);
    for (double x : topic_) t.step.add_output_embedding(static_cast<float>(x + 1.2 * normal(rng_)));
    t.step.set_output_length(
        static_cast<std::uint64_t>(std::exp(5.0 + log_length_shift_ + 0.8 * normal(rng_))));
    t.step.set_reasoning_length(
        static_cast<std::uint64_t>(std::exp(6.0 + log_length_shift_ + 0.7 * normal(rng_))));
    t.step.set_agreement(agreement_lo_ + (agreement_hi_ - agreement_lo_) * unit(rng_));
    t.step.set_human_intervention(unit(rng_) < human_rate_);
    t.gap_seconds = 5.0;
    return t;
  }

 private:
  const mix& phase_mix() {
    static constexpr std::array<mix, 3> phases = {mix{0.60, 0.00, 0.05, 0.30, 0.00, 0.05},
                                                  mix{0.20, 0.50, 0.15, 0.05, 0.10, 0.00},
                                                  mix{0.15, 0.15, 0.65, 0.05, 0.00, 0.00}};
    if (phase_left_ == 0) {
      std::uniform_int_distribution<int> length(10, 60);
      phase_left_ = length(rng_);
      phase_ = (phase_ + 1) % phases.size();
    }
    --phase_left_;
    return phases[phase_];
  }

  std::mt19937_64 rng_;
  bool phased_;
  mix mix_ = usual;
  std::array<double, 32> topic_{};
  std::uint64_t step_ = 0;
  std::uint64_t workspace_ = 0;
  int phase_left_ = 0;
  std::size_t phase_ = 0;
  double log_length_shift_ = 0.0;
  double agreement_lo_ = 0.6;
  double agreement_hi_ = 1.0;
  double human_rate_ = 0.02;
};

// Runs `a` for `count` steps, sessions of 50 steps (task attempts), calling change(step) first
// at each step; returns the 1-based step that opened agent.drift, or 0.
std::size_t run_agent(core::engine& e, simulated_agent& a, int count,
                      const std::function<void(int)>& change = {}) {
  feeder f(e);
  for (int i = 1; i <= count; ++i) {
    if (change) change(i);
    f.send(a.next(), n("task-", (i - 1) / 50));
    if (f.opened_at(drift) != 0) return f.opened_at(drift);
  }
  return 0;
}

}  // namespace

// --- the stability index ----------------------------------------------------------------------

TEST_CASE("agent_drift index components match a hand-computed embedding case",
          "[plugins][agent_drift][index]") {
  // A 12-step baseline alternating read_file/edit_file, output lengths 10/1000, embedding (1, 0),
  // agreement 0.8, no human: every 2-step window looks like the rest, so every component scores
  // 1 in calibration (mean 1, sd 0; the sd floor 0.02 applies). Then two steps:
  //   13: read_file, embedding (0, 1), length 1000, agreement 0.4, a human stepped in
  //   14: bash,      embedding (1, 0), length 1000, agreement 0.4
  auto e = engine_with("{drift: {baseline_steps: 12, window: 2, baseline_sessions: 1}}");
  feeder f(*e);
  auto make = [](const std::string& tool, float x, float y, std::uint64_t length, double agree,
                 bool human) {
    timed_step t = step({ok(tool, "args", "result")});
    t.step.add_output_embedding(x);
    t.step.add_output_embedding(y);
    t.step.set_output_length(length);
    t.step.set_agreement(agree);
    t.step.set_human_intervention(human);
    return t;
  };
  for (int i = 1; i <= 12; ++i) {
    f.send(i % 2 ? make("read_file", 1, 0, 10, 0.8, false)
                 : make("edit_file", 1, 0, 1000, 0.8, false));
  }
  CHECK(gauge(*e, "stability_baseline_mean") == Approx(1.0));
  CHECK(gauge(*e, "stability_baseline_sd") == Approx(0.0).margin(1e-12));
  f.send(make("read_file", 0, 1, 1000, 0.4, true));
  CHECK(f.opened_at(drift) == 0);
  f.send(make("bash", 1, 0, 1000, 0.4, false));

  // tool_usage: window {read 1, bash 1} against {read 6, edit 6}: JS = ½ ln 2, score ½.
  CHECK(gauge(*e, "stability_tool_usage") == Approx(0.5));
  // response_consistency: cosines 0 and 1 to the centroid (1, 0) against the baseline's 1: ½.
  CHECK(gauge(*e, "stability_response_consistency") == Approx(0.5));
  // reasoning_stability: output lengths in the baseline's equal-mass bins (ln 11 and ln 1001 are
  // the cuts): the window (0, 0, 2) against (0, 6, 6); JS = ½ ln 4/3 + ¼ ln 2 + ¼ ln 2/3.
  // Reasoning lengths are all 0 and carry nothing, so only the output lengths count.
  const double js_len =
      0.5 * std::log(4.0 / 3.0) + 0.25 * std::log(2.0) + 0.25 * std::log(2.0 / 3.0);
  const double reasoning = 1.0 - js_len / std::numbers::ln2;
  CHECK(gauge(*e, "stability_reasoning_stability") == Approx(reasoning));
  // agreement: mean 0.4 against 0.8: ½. human_intervention: rate ½ against 0: 1 − ½ / 1 = ½.
  CHECK(gauge(*e, "stability_agreement") == Approx(0.5));
  CHECK(gauge(*e, "stability_human_intervention") == Approx(0.5));
  // The index with the default weights 0.25, 0.25, 0.25, 0.15, 0.10.
  const double index = 0.25 * 0.5 + 0.25 * 0.5 + 0.25 * reasoning + 0.15 * 0.5 + 0.10 * 0.5;
  CHECK(gauge(*e, "stability_index") == Approx(index));
  // z = (index − 1) / 0.02 = −22.6: the lower CUSUM (k 1) jumps to 21.6 > h 6 at once.
  CHECK(gauge(*e, "stability_z") == Approx((index - 1.0) / 0.02));
  CHECK(f.opened_at(drift) == 14);
  const auto ev = evidence_of(*e, drift);
  CHECK(ev.at("moved") ==
        "response_consistency,tool_usage,reasoning_stability,agreement,human_intervention");
  CHECK(ev.at("tool_usage") == "0.5");
  CHECK(ev.at("tool_usage_baseline") == "1");
  CHECK(ev.at("response_mode") == "embedding");
  CHECK(ev.at("agent_id") == "a1");
  auto b = e->breakers().find({drift, "r1"});
  REQUIRE(b);
  CHECK(b->action() == v1::BREAKER_ACTION_PAUSE);
  CHECK(b->reason().find("agent a1: stability index 0.547 against its baseline 1") == 0);
}

TEST_CASE(
    "agent_drift measures response consistency by verbatim repetition when only digests "
    "are sent",
    "[plugins][agent_drift][index]") {
  // Digests d1 d2 d1 d3 d4 d2 d5 d6 d7 d3 d8 d9: steps 3, 6 and 10 repeat an earlier output, a
  // baseline rate of 3/12. Everything else repeats the alternating pattern of the case above.
  auto e = engine_with("{drift: {baseline_steps: 12, window: 2, baseline_sessions: 1}}");
  feeder f(*e);
  const std::vector<std::string> digests = {"d1", "d2", "d1", "d3", "d4", "d2",  "d5",
                                            "d6", "d7", "d3", "d8", "d9", "d10", "d1"};
  for (std::size_t i = 0; i < digests.size(); ++i) {
    timed_step t = step({ok(i % 2 == 0 ? "read_file" : "edit_file", "args", "result")});
    t.step.set_output_length(i % 2 == 0 ? 10 : 1000);
    t.step.set_output_digest(digests[i]);
    t.step.set_agreement(0.8);
    f.send(t);
  }
  // The live window (d10 new, d1 repeated) has a rate of ½: 1 − (½ − ¼) / (1 − ¼) = 2/3.
  CHECK(gauge(*e, "stability_response_consistency") == Approx(2.0 / 3.0));
  CHECK(gauge(*e, "stability_index") == Approx(0.75 + 0.25 * 2.0 / 3.0));
  // Calibration: of the 11 baseline windows, the 6 that hold a repeat have rate ½ against the
  // rest's 2/10 (score 1 − 0.3/0.8 = 0.625), the other 5 score 1; every other component is 1.
  const std::vector<double> scores = {0.625, 0.625, 0.625, 0.625, 0.625, 0.625, 1, 1, 1, 1, 1};
  double mean = 0.0;
  for (double v : scores) mean += v / 11.0;
  double ss = 0.0;
  for (double v : scores) ss += (v - mean) * (v - mean);
  CHECK(gauge(*e, "stability_baseline_mean") == Approx(0.75 + 0.25 * mean));
  CHECK(gauge(*e, "stability_baseline_sd") == Approx(0.25 * std::sqrt(ss / 10.0)));
  CHECK(f.opened_at(drift) == 0);  // z = −0.66: within the allowance k = 1
}

TEST_CASE("agent_drift trips within 250 steps of a tool-mix shift at step 500, never before",
          "[plugins][agent_drift][index]") {
  // Defaults: a 300-step baseline over 6 sessions, detector observations every 50 steps (350,
  // 400, ..., 500, 550, ...). The first window that is entirely shifted ends at step 550; the
  // stated bound is 5 windows after the shift, step 750. Measured over these 20 seeds: 600 to
  // 700, most at 650.
  std::vector<std::size_t> trips;
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    INFO("seed " << seed);
    auto e = engine_with("{}");
    simulated_agent a(5000 + seed, false);
    const std::size_t at = run_agent(*e, a, 1000, [&](int i) {
      if (i == 501) a.shift_tools(simulated_agent::shifted);
    });
    trips.push_back(at);
    CHECK(at > 500);
    CHECK(at <= 750);
    if (at > 0) {
      const auto ev = evidence_of(*e, drift);
      CHECK(ev.at("moved").find("tool_usage") != std::string::npos);
    }
  }
  std::ostringstream list;
  for (auto t : trips) list << t << ' ';
  INFO("tripped at: " << list.str());
  SUCCEED();
}

TEST_CASE(
    "agent_drift stationary agents, independent or working in phases, do not trip in "
    "10 000 steps",
    "[plugins][agent_drift][index]") {
  int tripped = 0;
  for (const bool phased : {false, true}) {
    for (std::uint64_t seed = 0; seed < 10; ++seed) {
      INFO((phased ? "phased" : "independent") << " seed " << seed);
      auto e = engine_with("{}");
      simulated_agent a(7000 + seed, phased);
      const std::size_t at = run_agent(*e, a, 10'000);
      CHECK(at == 0);
      if (at != 0) ++tripped;
      CHECK(gauge(*e, "stability_baseline_sd") > 0.0);  // it did calibrate and watch
    }
  }
  CHECK(tripped == 0);
}

TEST_CASE("agent_drift names the dimension that moved", "[plugins][agent_drift][index]") {
  struct row {
    std::string name;
    std::function<void(simulated_agent&)> change;
    std::string moved;  // must be among the moved dimensions
  };
  const std::vector<row> rows = {
      {"the tool mix", [](auto& a) { a.shift_tools(simulated_agent::shifted); }, "tool_usage"},
      {"the topic of the outputs", [](auto& a) { a.shift_topic(); }, "response_consistency"},
      {"outputs and reasoning five times longer", [](auto& a) { a.scale_lengths(5.0); },
       "reasoning_stability"},
      {"agreement with the other agents falling to 0.1-0.4",
       [](auto& a) { a.set_agreement(0.1, 0.4); }, "agreement"},
      {"humans stepping in at 40 % of turns", [](auto& a) { a.set_human_rate(0.4); },
       "human_intervention"},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto e = engine_with("{}");
    simulated_agent a(11, false);
    const std::size_t at = run_agent(*e, a, 1500, [&](int i) {
      if (i == 501) r.change(a);
    });
    CHECK(at > 500);
    CHECK(at <= 1000);
    const auto ev = evidence_of(*e, drift);
    INFO("moved: " << (ev.count("moved") ? ev.at("moved") : "nothing"));
    CHECK(ev.count("moved") == 1);
    if (ev.count("moved")) CHECK(ev.at("moved").find(r.moved) != std::string::npos);
  }
}

TEST_CASE("agent_drift re-learns the agent's baseline after a trip and accepts the new behaviour",
          "[plugins][agent_drift][index]") {
  auto e = engine_with("{}");
  feeder f(*e);
  simulated_agent a(21, false);
  double mean_before = std::numeric_limits<double>::quiet_NaN();
  for (int i = 1; i <= 2500; ++i) {
    if (i == 501) a.shift_tools(simulated_agent::shifted);
    f.send(a.next(), n("task-", (i - 1) / 50));
    if (i == 500) mean_before = gauge(*e, "stability_baseline_mean");
    if (f.opened_at(drift) != 0 && f.opened_at(drift) + 1 == static_cast<std::size_t>(i)) {
      // The step after the trip starts a new baseline: nothing is calibrated until it closes.
      CHECK(std::isnan(gauge(*e, "stability_index")));
    }
  }
  CHECK(f.opened_at(drift) > 500);
  CHECK(gauge(*e, "drift_trips") == 1);  // the shifted agent, re-learned, is stable
  CHECK(gauge(*e, "stability_baseline_mean") > 0.0);
  CHECK(gauge(*e, "stability_baseline_mean") != mean_before);
}

TEST_CASE("agent_drift waits for a baseline that spans several sessions",
          "[plugins][agent_drift][index]") {
  // One long session: its own arc (explore, edit, test) is not drift, so the baseline does not
  // close until three sessions were seen, or at max_baseline_steps (1000) whatever happens.
  auto e = engine_with("{}");
  feeder f(*e);
  simulated_agent a(3, true);
  for (int i = 0; i < 999; ++i) f.send(a.next(), "one-long-session");
  CHECK(std::isnan(gauge(*e, "stability_baseline_mean")));
  f.send(a.next(), "one-long-session");
  CHECK(gauge(*e, "stability_baseline_mean") > 0.0);
  // With three sessions, 300 steps are enough.
  auto e2 = engine_with("{}");
  feeder f2(*e2);
  for (int i = 0; i < 300; ++i) f2.send(a.next(), n("task-", i / 100));
  CHECK(gauge(*e2, "stability_baseline_mean") > 0.0);
}

// --- configuration and bad input --------------------------------------------------------------

TEST_CASE("agent_drift refuses bad config naming the field and line", "[plugins][agent_drift]") {
  struct row {
    std::string config;
    std::string error;
  };
  const std::string at = " (ad.yaml:6)";
  const std::vector<row> rows = {
      {"{drift: {windw: 5}}",
       "monitors[0].config.drift.windw: unknown key (allowed: enabled, baseline_steps, "
       "baseline_sessions, max_baseline_steps, window, length_bins, weights, cusum, sigma_floor, "
       "moved_z, breaker)"},
      {"{guard: {}}", "monitors[0].config.guard: unknown key (allowed: drift, guards, limits)"},
      {"{drift: {window: 1}}",
       "monitors[0].config.drift.window: expected an integer in [2, 10000], got \"1\""},
      {"{drift: {baseline_steps: 60}}",
       "monitors[0].config.drift.baseline_steps: baseline_steps (60) must be at least twice the "
       "window (50)"},
      {"{drift: {max_baseline_steps: 100}}",
       "monitors[0].config.drift.max_baseline_steps: max_baseline_steps (100) is below "
       "baseline_steps (300)"},
      {"{drift: {weights: {tools: -1}}}",
       "monitors[0].config.drift.weights.tools: expected a number >= 0, got \"-1\""},
      {"{drift: {weights: {response: 0, tools: 0, reasoning: 0, agreement: 0, human: 0}}}",
       "monitors[0].config.drift.weights: at least one weight must be > 0"},
      {"{drift: {weights: {tool: 1}}}",
       "monitors[0].config.drift.weights.tool: unknown key (allowed: response, tools, reasoning, "
       "agreement, human)"},
      {"{drift: {cusum: {h: 0}}}",
       "monitors[0].config.drift.cusum.h: expected a number > 0, got \"0\""},
      {"{drift: {sigma_floor: 0}}",
       "monitors[0].config.drift.sigma_floor: expected a number > 0, got \"0\""},
      {"{guards: {same_error: 1}}",
       "monitors[0].config.guards.same_error: expected 0 (off) or an integer in [2, 1000000], got "
       "\"1\""},
      {"{guards: {backoff_factor: 1}}",
       "monitors[0].config.guards.backoff_factor: expected a number > 1, got \"1\""},
      {"{guards: {backoff_retries: 1}}",
       "monitors[0].config.guards.backoff_retries: expected 0 (off) or an integer in [2, "
       "1000000], got \"1\""},
      {"{guards: {max_steps: -5}}",
       "monitors[0].config.guards.max_steps: expected 0 (off) or an integer in [1, "
       "1000000000000000000], got \"-5\""},
      {"{guards: {cycle: {max_period: 1}}}",
       "monitors[0].config.guards.cycle.max_period: expected 0 (off) or an integer in [2, 64], "
       "got \"1\""},
      {"{guards: {storm: {window: 0s}}}",
       "monitors[0].config.guards.storm.window: expected a duration from 1s to 24h, got \"0s\""},
      {"{guards: {storm: {failed_share: 1.5}}}",
       "monitors[0].config.guards.storm.failed_share: expected a number in [0, 1], got \"1.5\""},
      {"{guards: {session_cost: -1}}",
       "monitors[0].config.guards.session_cost: expected a number >= 0, got \"-1\""},
      {"{guards: {deferral_steps: abc}}",
       "monitors[0].config.guards.deferral_steps: expected an integer, got \"abc\""},
      {"{guards: {breaker: agent.drift}}",
       "monitors[0].config.guards.breaker: must differ from drift.breaker (\"agent.drift\")"},
      {"{limits: {max_sessions: 0}}",
       "monitors[0].config.limits.max_sessions: expected an integer in [1, 1000000], got \"0\""},
  };
  for (const auto& r : rows) {
    INFO(r.config);
    auto cfg = core::parse_config(yaml_for(r.config), "ad.yaml");
    REQUIRE(cfg.ok());
    core::engine_options opts;
    opts.search_bundled_plugins = false;
    auto e = core::engine::create(*cfg, opts);
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().message() == "monitor 'ad': " + r.error + at);
  }
}

TEST_CASE("agent_drift counts and ignores absurd fields and keeps guarding the step",
          "[plugins][agent_drift]") {
  auto e = engine_with("{drift: {baseline_steps: 12, window: 2, baseline_sessions: 1}}");
  feeder f(*e);
  const auto broken = fail("deploy", "prod", "E-denied", "svc");
  struct row {
    std::string name;
    std::function<void(v1::AgentStep&)> spoil;
    int ignored;  // fields counted as ignored
  };
  const std::vector<row> rows = {
      {"NaN cost", [](auto& s) { s.set_cost(std::nan("")); }, 1},
      {"negative cost", [](auto& s) { s.set_cost(-3.0); }, 1},
      {"infinite cost", [](auto& s) { s.set_cost(HUGE_VAL); }, 1},
      {"2^62 tokens in", [](auto& s) { s.set_tokens_in(1ull << 62); }, 1},
      {"2^62 tokens in and out",
       [](auto& s) {
         s.set_tokens_in(1ull << 62);
         s.set_tokens_out(1ull << 62);
       },
       2},
      {"a NaN in the embedding",
       [](auto& s) {
         s.add_output_embedding(1.0f);
         s.add_output_embedding(std::nanf(""));
       },
       1},
      {"a 10 000-d embedding",
       [](auto& s) {
         for (int i = 0; i < 10'000; ++i) s.add_output_embedding(1.0f);
       },
       1},
      {"agreement 1.5", [](auto& s) { s.set_agreement(1.5); }, 1},
      {"an output length of 2^60", [](auto& s) { s.set_output_length(1ull << 60); }, 1},
      {"300 tool calls",
       [&](auto& s) {
         for (int i = 0; i < 299; ++i) *s.add_tool_calls() = read_file(n("f", i));
       },
       1},
      {"nothing wrong", [](auto&) {}, 0},
  };
  double ignored = 0.0;
  for (const auto& r : rows) {
    INFO(r.name);
    timed_step t = step({broken});
    r.spoil(t.step);
    f.send(t);
    ignored += r.ignored;
    CHECK(gauge(*e, "ignored_fields") == ignored);
  }
  // Every step still counted for the guards: the identical failure tripped at the third step.
  CHECK(f.opened_at(runaway) == 3);
  // The first valid embedding fixes the dimension; another size is ignored afterwards.
  timed_step two = step({read_file("a")});
  two.step.add_output_embedding(1.0f);
  two.step.add_output_embedding(0.0f);
  f.send(two);
  timed_step three = step({read_file("b")});
  for (int i = 0; i < 3; ++i) three.step.add_output_embedding(1.0f);
  f.send(three);
  CHECK(gauge(*e, "ignored_fields") == ignored + 1);
  // An id longer than 256 characters: the whole step is ignored.
  f.send(step({broken}), std::string(300, 's'));
  CHECK(gauge(*e, "ignored_steps") == 1);
}

// --- snapshot and restore ---------------------------------------------------------------------

namespace {

// A mixed stream over three runs: an agent whose tool mix shifts at its step 501 (agent.drift),
// an agent whose sessions fall into a failing loop now and then (agent.runaway), and two agents
// voting on every turn (agreement from votes), interleaved.
std::vector<v1::Envelope> mixed_stream() {
  std::vector<v1::Envelope> out;
  std::uint64_t seq = 0;
  std::int64_t time = 1'700'000'000'000'000'000;
  auto push = [&](timed_step t, const std::string& run, const std::string& agent,
                  const std::string& session, std::uint64_t turn) {
    time += static_cast<std::int64_t>(t.gap_seconds * 1e8);
    v1::Envelope e;
    e.set_source("harness/1");
    e.set_run_id(run);
    e.set_seq(++seq);
    e.set_time_unix_nano(time);
    t.step.set_agent_id(agent);
    t.step.set_session_id(session);
    t.step.set_turn(turn);
    *e.mutable_agent_step() = std::move(t.step);
    out.push_back(std::move(e));
  };
  simulated_agent drifting(42, false);
  simulated_agent voter_a(43, true);
  simulated_agent voter_b(44, false);
  for (int i = 1; i <= 900; ++i) {
    if (i == 501) drifting.shift_tools(simulated_agent::shifted);
    push(drifting.next(), "r-drift", "coder", n("task-", (i - 1) / 50), (i - 1) % 50);
    if (i % 3 == 0) {
      // A worker that loops on a failing deploy in every fourth session of 20 steps.
      const int k = i / 3;
      const int session = k / 20;
      const bool looping = session % 4 == 3 && k % 20 >= 14;
      timed_step t = looping ? step({fail("deploy", "prod", "E-quota", "svc")})
                             : step({read_file(n("doc", k))}, n("ws-", k / 5));
      push(t, "r-loop", "worker", n("job-", session), static_cast<std::uint64_t>(k % 20));
    }
    if (i % 2 == 0) {
      const int turn = i / 2;
      timed_step a = voter_a.next();
      timed_step b = voter_b.next();
      a.step.clear_agreement();
      b.step.clear_agreement();
      a.step.set_vote(turn % 7 == 0 ? "no" : "yes");
      b.step.set_vote(turn > 300 && turn % 2 == 0 ? "no" : "yes");
      push(a, "r-vote", "judge-a", n("debate-", turn / 50), static_cast<std::uint64_t>(turn));
      push(b, "r-vote", "judge-b", n("debate-", turn / 50), static_cast<std::uint64_t>(turn));
    }
  }
  return out;
}

struct opening {
  std::string breaker;
  std::string run;
  std::size_t event;
  std::string reason;
  bool operator==(const opening&) const = default;
};

// Feeds events [0, split) to one engine, restores a second from its snapshot and feeds it the
// rest; both share one breaker registry, as the daemon's engines do across a restart's state.
// split = events.size() runs one engine throughout. Returns the openings and the final snapshot.
std::pair<std::vector<opening>, std::string> run_split(const std::vector<v1::Envelope>& events,
                                                       std::size_t split) {
  core::memory_breaker_store store;
  core::breaker_registry registry(store, std::chrono::minutes(5));
  std::vector<opening> opened;
  std::size_t at = 0;
  registry.add_listener([&](const v1::BreakerTransition& t) {
    if (t.breaker().state() == v1::BREAKER_STATE_OPEN) {
      opened.push_back({t.breaker().name(), t.breaker().run_id(), at, t.breaker().reason()});
    }
  });
  auto cfg = core::parse_config(yaml_for("{}"), "ad.yaml");
  REQUIRE(cfg.ok());
  core::engine_options opts;
  opts.search_bundled_plugins = false;
  opts.registry = &registry;
  auto first = core::engine::create(*cfg, opts);
  REQUIRE(first.ok());
  for (; at < split; ++at) (*first)->process(events[at]);
  auto saved = (*first)->snapshot_monitors();
  if (split == events.size()) {
    REQUIRE(saved.size() == 1);
    return {opened, saved[0].state};
  }
  first->reset();
  auto second = core::engine::create(*cfg, opts);
  REQUIRE(second.ok());
  for (const auto& s : saved) REQUIRE((*second)->restore_monitor(s).ok());
  for (; at < events.size(); ++at) (*second)->process(events[at]);
  auto final_state = (*second)->snapshot_monitors();
  REQUIRE(final_state.size() == 1);
  return {opened, final_state[0].state};
}

}  // namespace

namespace {

// `state` (a snapshot in the current format, 3) with its header's format version replaced.
std::string with_format(std::string state, std::uint8_t version) {
  // LWSTATE1, the plugin name as a u64 length and its bytes, then the version as a u64 (LE).
  state[8 + 8 + std::string("agent_drift").size()] = static_cast<char>(version);
  return state;
}

// The first occurrence of `key` written as a snapshot string (a u64 length, then the bytes).
std::size_t find_key(const std::string& state, const std::string& key) {
  std::string encoded(8, '\0');
  encoded[0] = static_cast<char>(key.size());
  encoded += key;
  const std::size_t at = state.find(encoded);
  REQUIRE(at != std::string::npos);
  return at + encoded.size();
}

}  // namespace

TEST_CASE("agent_drift restores a format 1 snapshot and trips at the next step over budget",
          "[plugins][agent_drift][snapshot]") {
  // Format 1 kept "already tripped" flags for the cap and the budgets (two per run, three per
  // session) that silenced them for the rest of the session; format 2 has none. A format 1
  // snapshot with every flag set restores to the same state (byte for byte once written again),
  // and the next step over budget trips.
  // same_observation off keeps the session's repeat table empty, so the format 3 snapshot taken
  // here has the byte layout of format 2 (format 3 added the spacing of each repeat entry).
  const std::string config =
      "{guards: {session_tokens: 10000, run_tokens: 20000, same_observation: 0}}";
  auto a = engine_with(config);
  feeder fa(*a);
  for (int i = 0; i < 8; ++i) fa.send(step({read_file(n("f", i))}, "ws-0", 3000));
  REQUIRE(fa.opened_at(runaway) == 4);
  const auto saved = a->snapshot_monitors();
  REQUIRE(saved.size() == 1);
  std::string v1_state = with_format(saved[0].state, 1);
  // The session first (it comes after the run): steps, tokens, cost, then the three flags.
  v1_state.insert(find_key(v1_state, "2:r12:a12:s1") + 3 * 8, std::string(3, '\1'));
  // The run (keyed by its id): tokens, cost, then the two flags.
  v1_state.insert(find_key(v1_state, "r1") + 2 * 8, std::string(2, '\1'));
  core::monitor_state old = saved[0];
  old.state = v1_state;

  auto b = engine_with(config);
  const auto restored = b->restore_monitor(old);
  INFO(restored.message());
  REQUIRE(restored.ok());
  CHECK(b->snapshot_monitors()[0].state == saved[0].state);
  feeder fb(*b);
  fb.send(step({read_file("g.py")}, "ws-0", 3000));
  CHECK(fb.opened_at(runaway) == 1);
  const auto ev = evidence_of(*b, runaway);
  CHECK(ev.at("guard") == "session_tokens");
  CHECK(ev.at("also") == "run_tokens");
  CHECK(ev.at("session_step") == "9");
}

TEST_CASE("agent_drift restored half way through trips exactly as one uninterrupted engine",
          "[plugins][agent_drift][snapshot]") {
  const auto events = mixed_stream();
  const auto [whole, whole_state] = run_split(events, events.size());
  // The stream does trip both breakers, so the comparison covers trips.
  std::set<std::string> breakers;
  for (const auto& o : whole) breakers.insert(o.breaker);
  CHECK(breakers.count(drift) == 1);
  CHECK(breakers.count(runaway) == 1);
  // Splits: in the first baseline, just after calibration, inside the loop's repeats, while the
  // CUSUM climbs, after the trips.
  for (const std::size_t split : {1ul, 333ul, 600ul, 700ul, 990ul, 1150ul, 1400ul, 1700ul}) {
    INFO("split at event " << split << " of " << events.size());
    const auto [parts, parts_state] = run_split(events, split);
    CHECK(parts == whole);
    CHECK(parts_state == whole_state);  // the same learned state, byte for byte
  }
}

TEST_CASE("agent_drift refuses a truncated, foreign or mismatched snapshot and starts fresh",
          "[plugins][agent_drift][snapshot]") {
  const auto events = mixed_stream();
  auto e = engine_with("{}");
  for (std::size_t i = 0; i < 700; ++i) e->process(events[i]);
  const auto saved = e->snapshot_monitors();
  REQUIRE(saved.size() == 1);
  struct row {
    std::string name;
    std::string config;
    std::string state;
    std::string says;
  };
  const std::string& good = saved[0].state;
  const std::vector<row> rows = {
      {"truncated", "{}", good.substr(0, good.size() / 2), "truncated"},
      {"trailing bytes", "{}", good + "x", "unread bytes"},
      {"a newer format", "{}", with_format(good, 4),
       "snapshot format version 4, this build reads 1 to 3"},
      {"another plugin's", "{}", "LWSTATE1" + std::string("\x0b\0\0\0\0\0\0\0", 8) + "goal_drifts",
       "truncated"},
      {"other drift settings", "{drift: {window: 40}}", good, "other drift"},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto fresh = engine_with(r.config);
    core::monitor_state st = saved[0];
    st.state = r.state;
    const auto status = fresh->restore_monitor(st);
    REQUIRE_FALSE(status.ok());
    CHECK_THAT(status.message(), Catch::Contains(r.says));
    // It starts fresh: nothing learned, nothing counted.
    const auto again = fresh->snapshot_monitors();
    REQUIRE(again.size() == 1);
    auto clean = engine_with(r.config);
    CHECK(again[0].state == clean->snapshot_monitors()[0].state);
  }
  // Random corruption never crashes: each restore is refused or accepted, and events still flow.
  std::mt19937_64 rng(9);
  for (int i = 0; i < 200; ++i) {
    std::string bad = good;
    std::uniform_int_distribution<std::size_t> pos(0, bad.size() - 1);
    for (int k = 0; k < 4; ++k) bad[pos(rng)] = static_cast<char>(rng());
    auto fresh = engine_with("{}");
    core::monitor_state st = saved[0];
    st.state = bad;
    (void)fresh->restore_monitor(st);
    for (std::size_t j = 700; j < 760; ++j) fresh->process(events[j]);
  }
  SUCCEED("200 corrupted snapshots restored or refused without a crash");
}

// --- a realistic long session -----------------------------------------------------------------

namespace {

// One line of an agent_sessions fixture (realistic_sessions.jsonl, holdout_sessions.jsonl) as an
// envelope with its own timestamp.
v1::Envelope session_envelope(const nlohmann::json& j, std::uint64_t seq) {
  v1::Envelope e;
  e.set_source("fixture/coder");
  e.set_run_id(j.at("run").get<std::string>());
  e.set_seq(seq);
  e.set_time_unix_nano(1'700'000'000'000'000'000 +
                       static_cast<std::int64_t>(j.at("t").get<double>() * 1e9));
  v1::AgentStep& s = *e.mutable_agent_step();
  s.set_agent_id(j.at("agent").get<std::string>());
  s.set_session_id(j.at("session").get<std::string>());
  s.set_turn(j.at("turn").get<std::uint64_t>());
  s.set_workspace_hash(j.at("workspace").get<std::string>());
  s.set_tokens_in(j.at("tokens_in").get<std::uint64_t>());
  s.set_tokens_out(j.at("tokens_out").get<std::uint64_t>());
  s.set_cost(j.at("cost").get<double>());
  s.set_output_length(j.at("output_length").get<std::uint64_t>());
  s.set_reasoning_length(j.at("reasoning_length").get<std::uint64_t>());
  s.set_output_digest(j.at("output_digest").get<std::string>());
  s.set_task_completed(j.at("completed").get<bool>());
  s.set_human_intervention(j.at("human").get<bool>());
  for (const auto& c : j.at("tool_calls")) {
    const std::string status = c.at("status").get<std::string>();
    *s.add_tool_calls() = call(
        c.at("name").get<std::string>(), c.at("args").get<std::string>(),
        status == "ok"        ? v1::TOOL_STATUS_OK
        : status == "timeout" ? v1::TOOL_STATUS_TIMEOUT
                              : v1::TOOL_STATUS_ERROR,
        status == "ok" ? c.at("observation").get<std::string>() : c.at("error").get<std::string>(),
        c.at("target").get<std::string>());
  }
  return e;
}

// The steps of tests/fixtures/agent_sessions/realistic_sessions.jsonl (see make_sessions.py).
std::vector<v1::Envelope> realistic_sessions() {
  std::ifstream in(std::string(LOOPWARDEN_FIXTURES_DIR) +
                   "/agent_sessions/realistic_sessions.jsonl");
  REQUIRE(in.good());
  std::vector<v1::Envelope> out;
  std::string line;
  std::uint64_t seq = 0;
  while (std::getline(in, line))
    out.push_back(session_envelope(nlohmann::json::parse(line), ++seq));
  return out;
}

}  // namespace

TEST_CASE("agent_drift does not trip on realistic long coding sessions with its defaults",
          "[plugins][agent_drift][realistic]") {
  const auto events = realistic_sessions();
  REQUIRE(events.size() > 2000);
  // What the fixture holds, so that "nothing tripped" means something: sessions of hundreds of
  // steps, the same test failing the same way after successive edits, retries that end in a
  // success, many files read, grep searches that find nothing.
  std::map<std::string, int> steps_per_session;
  std::map<std::string, int> same_failure;  // test error digest -> failures in a row
  int longest_same_failure = 0;
  int failed_then_ok = 0;
  for (const auto& e : events) {
    const auto& s = e.agent_step();
    ++steps_per_session[s.session_id()];
    for (const auto& c : s.tool_calls()) {
      if (c.args_digest().empty()) continue;
      if (c.status() == v1::TOOL_STATUS_ERROR && c.target() == "tests") {
        longest_same_failure = std::max(longest_same_failure, ++same_failure[c.error_digest()]);
      } else if (c.status() == v1::TOOL_STATUS_OK && c.target() == "tests") {
        same_failure.clear();
      }
      if (c.status() == v1::TOOL_STATUS_OK &&
          (c.target() == "scripts" || c.target() == "requirements.txt")) {
        ++failed_then_ok;
      }
    }
  }
  CHECK(steps_per_session.size() == 6);
  for (const auto& [name, count] : steps_per_session) {
    INFO(name);
    CHECK(count >= 250);
  }
  CHECK(longest_same_failure >= 3);
  CHECK(failed_then_ok >= 5);

  SECTION("all sessions, one agent, one engine") {
    auto e = engine_with("{}");
    for (const auto& ev : events) e->process(ev);
    CHECK_FALSE(e->breakers().any_open());
    CHECK(gauge(*e, "stability_baseline_sd") > 0.0);  // the drift index did calibrate and watch
  }
  SECTION("each session alone") {
    for (const auto& [name, count] : steps_per_session) {
      INFO(name);
      auto e = engine_with("{}");
      for (const auto& ev : events) {
        if (ev.agent_step().session_id() == name) e->process(ev);
      }
      for (const auto* b : {runaway, drift}) {
        const auto ev = evidence_of(*e, b, "realistic");
        std::string all;
        for (const auto& [k, v] : ev) all += k + "=" + v + "; ";
        INFO(b << ": " << all);
        CHECK(ev.empty());
      }
    }
  }
  SECTION("the same work with a failing-tool loop spliced in trips at its third call") {
    auto e = engine_with("{}");
    feeder f(*e);
    std::size_t i = 0;
    for (; i < 1000; ++i) e->process(events[i]);
    CHECK_FALSE(e->breakers().any_open());
    v1::Envelope loop = events[i];
    loop.mutable_agent_step()->clear_tool_calls();
    *loop.mutable_agent_step()->add_tool_calls() =
        fail("bash", "alembic upgrade head", "E-relation-exists", "db");
    for (int k = 1; k <= 3; ++k) {
      loop.set_seq(events.back().seq() + static_cast<std::uint64_t>(k));
      loop.set_time_unix_nano(loop.time_unix_nano() + 5'000'000'000);
      e->process(loop);
      CHECK(e->breakers().any_open() == (k == 3));
    }
    CHECK(evidence_of(*e, runaway, "realistic").at("guard") == "repeated_failure");
  }
}

// --- the detector-setting comparison in docs/monitors/agent-drift.md
// ------------------------------ Hidden (run it with plugin_tests "[.measure]"): it is the sweep
// behind the doc's table of six drift settings, 60 seeds each, 22 000 simulated steps per seed and
// setting (about 8 M steps, minutes of CPU). It is not needed to keep the default honest: the suite
// asserts the default setting's behaviour on its own, with fewer seeds ("... tool-mix shift at step
// 500, never before" and "... stationary agents ... do not trip ..." above). Run it when a default
// changes; it checks the default's row of the table, and prints every row.

TEST_CASE("agent_drift measure: false alarms and detection delays per detector setting",
          "[.measure]") {
  struct setting {
    std::string config;
    int seeds;
  };
  const std::vector<setting> settings = {
      {"{drift: {baseline_steps: 200, window: 25, cusum: {k: 0.5, h: 4}}}", 60},
      {"{drift: {baseline_steps: 200, window: 25, cusum: {k: 1, h: 6}}}", 60},
      {"{drift: {baseline_steps: 300, window: 25, cusum: {k: 1, h: 6}}}", 60},
      {"{}", 60},
      {"{drift: {cusum: {k: 1, h: 5}}}", 60},
      {"{drift: {cusum: {k: 0.5, h: 6}}}", 60},
  };
  const simulated_agent::mix mild = {0.25, 0.15, 0.25, 0.15, 0.05, 0.15};
  for (const auto& s : settings) {
    int iid = 0;
    int phased = 0;
    int mild_found = 0;
    std::map<std::size_t, int> delays;
    for (int seed = 0; seed < s.seeds; ++seed) {
      for (const bool ph : {false, true}) {
        auto e = engine_with(s.config);
        simulated_agent a(9000 + static_cast<std::uint64_t>(seed), ph);
        if (run_agent(*e, a, 10'000) != 0) ++(ph ? phased : iid);
      }
      auto e = engine_with(s.config);
      simulated_agent a(9500 + static_cast<std::uint64_t>(seed), false);
      ++delays[run_agent(*e, a, 1000, [&](int i) {
        if (i == 501) a.shift_tools(simulated_agent::shifted);
      })];
      auto e2 = engine_with(s.config);
      simulated_agent b(9700 + static_cast<std::uint64_t>(seed), false);
      if (run_agent(*e2, b, 1000, [&](int i) {
            if (i == 501) b.shift_tools(mild);
          }) > 500) {
        ++mild_found;
      }
    }
    std::ostringstream d;
    for (const auto& [at, count] : delays) d << at << " x" << count << "  ";
    if (s.config == "{}") {  // the default: the table's bold row
      INFO("default: strong shift tripped at " << d.str());
      CHECK(iid == 0);
      CHECK(phased == 0);
      CHECK(delays.count(0) == 0);         // every strong shift found by step 1000
      CHECK(delays.begin()->first > 500);  // never before the shift
    }
    WARN(s.config << ": i.i.d. " << iid << "/" << s.seeds << ", phased " << phased << "/" << s.seeds
                  << " false alarms in 10 000 steps; strong shift tripped at " << d.str()
                  << "; mild shift found by step 1000 in " << mild_found << "/" << s.seeds);
  }
}

TEST_CASE(
    "agent_drift defaults leave headroom on the realistic fixture: each guard first trips at two "
    "thirds of its default or less, and the drift CUSUM peaks below its limit",
    "[plugins][agent_drift][headroom]") {
  // The healthy realistic sessions must not merely pass at the defaults: a default that sits
  // just above what healthy agents do would trip on the next healthy agent. For each setting,
  // the largest value from its default down at which some session trips must be at most 2/3 of
  // the default (the figures are in docs/monitors/agent-drift.md, "Safety margins").
  const auto events = realistic_sessions();
  std::set<std::string> sessions;
  for (const auto& e : events) sessions.insert(e.agent_step().session_id());
  // The largest value of each setting, from its default down, at which some session trips.
  struct knob {
    std::string name;
    std::function<std::string(std::int64_t)> config;
    std::int64_t from;
  };
  const std::vector<knob> knobs = {
      {"no_progress_steps",
       [](auto v) { return "{guards: {no_progress_steps: " + std::to_string(v) + "}}"; }, 20},
      {"same_observation",
       [](auto v) { return "{guards: {same_observation: " + std::to_string(v) + "}}"; }, 4},
      {"same_error", [](auto v) { return "{guards: {same_error: " + std::to_string(v) + "}}"; }, 3},
      {"same_error_varying_args",
       [](auto v) { return "{guards: {same_error_varying_args: " + std::to_string(v) + "}}"; }, 6},
      {"failure_despite_edits",
       [](auto v) { return "{guards: {failure_despite_edits: " + std::to_string(v) + "}}"; }, 10},
      {"cycle.repeats",
       [](auto v) { return "{guards: {cycle: {repeats: " + std::to_string(v) + "}}}"; }, 3},
      {"deferral_steps",
       [](auto v) { return "{guards: {deferral_steps: " + std::to_string(v) + "}}"; }, 8},
      {"tokens_without_progress (k)",
       [](auto v) {
         return "{guards: {tokens_without_progress: " + std::to_string(v * 1000) + "}}";
       },
       5000},
      {"storm.max_calls",
       [](auto v) { return "{guards: {storm: {max_calls: " + std::to_string(v) + "}}}"; }, 1000},
      {"storm.max_failed_calls",
       [](auto v) { return "{guards: {storm: {max_failed_calls: " + std::to_string(v) + "}}}"; },
       50},
  };
  for (const auto& k : knobs) {
    std::int64_t trips_at = 0;
    for (std::int64_t v = k.from; v >= 1 && trips_at == 0; v = v > 100 ? v * 9 / 10 : v - 1) {
      if ((k.name == "same_observation" || k.name == "same_error" ||
           k.name == "failure_despite_edits" || k.name == "same_error_varying_args" ||
           k.name == "cycle.repeats") &&
          v < 2) {
        break;
      }
      for (const auto& name : sessions) {
        auto e = engine_with(k.config(v));
        for (const auto& ev : events) {
          if (ev.agent_step().session_id() == name) e->process(ev);
        }
        if (e->breakers().any_open()) trips_at = v;
      }
    }
    INFO(k.name << " (default " << k.from << "): the fixture first trips at "
                << (trips_at ? std::to_string(trips_at) : std::string("none down to the minimum")));
    CHECK(trips_at * 3 <= k.from * 2);
  }
  auto e = engine_with("{}");
  double peak = 0.0;
  for (const auto& ev : events) {
    e->process(ev);
    const double c = gauge(*e, "stability_cusum");
    if (c > peak) peak = c;
  }
  INFO("drift CUSUM peak over all sessions: " << peak << " (h 6)");
  CHECK(peak < 6.0);
}

// --- the holdout trajectories -----------------------------------------------------------------

namespace {

// One labelled case of tests/fixtures/agent_sessions/holdout_sessions.jsonl (see
// make_holdout_sessions.py): its run, the breaker on-call would want ("" = none), its class.
struct holdout_case {
  std::string run;
  std::string expect;
  std::string klass;
  std::vector<v1::Envelope> events;
};

std::vector<holdout_case> holdout_cases() {
  std::ifstream in(std::string(LOOPWARDEN_FIXTURES_DIR) + "/agent_sessions/holdout_sessions.jsonl");
  REQUIRE(in.good());
  std::vector<holdout_case> out;
  std::string line;
  std::uint64_t seq = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    const auto run = j.at("run").get<std::string>();
    if (out.empty() || out.back().run != run) {
      out.push_back({run, j.at("expect").get<std::string>(), j.at("class").get<std::string>(), {}});
    }
    out.back().events.push_back(session_envelope(j, ++seq));
  }
  return out;
}

// What one case did to a fresh engine with the default config: the first step (1-based) at which
// each breaker opened on the case's run (0 = never) and the guard named by agent.runaway.
struct holdout_result {
  std::size_t runaway_at = 0;
  std::size_t drift_at = 0;
  std::string guard;
};

holdout_result run_holdout(const holdout_case& c) {
  auto e = engine_with("{}");
  holdout_result r;
  for (std::size_t i = 0; i < c.events.size(); ++i) {
    e->process(c.events[i]);
    if (r.runaway_at == 0 && e->breakers().find({runaway, c.run})) {
      r.runaway_at = i + 1;
      r.guard = evidence_of(*e, runaway, c.run)["guard"];
    }
    if (r.drift_at == 0 && e->breakers().find({drift, c.run})) r.drift_at = i + 1;
  }
  return r;
}

}  // namespace

TEST_CASE("agent_drift detects the holdout failure modes and leaves the healthy holdout sessions",
          "[plugins][agent_drift][holdout]") {
  const auto cases = holdout_cases();
  REQUIRE(cases.size() == 21);
  // The two healthy cases the defaults still halt, by design (docs/monitors/agent-drift.md,
  // "Held-out trajectories"): a 1529-step batch passes the iteration cap, and polling a CI
  // pipeline is the same call with the same answer (put polling tools in ignore_tools).
  const std::map<std::string, std::string> accepted_false_trips = {
      {"holdout-batch-500-files", "iteration_cap"}, {"holdout-ci-polling", "repeated_action"}};
  int failures = 0;
  int detected = 0;
  int healthy = 0;
  int false_trips = 0;
  for (const auto& c : cases) {
    const auto r = run_holdout(c);
    const bool tripped_expected =
        (c.expect == runaway && r.runaway_at != 0) || (c.expect == drift && r.drift_at != 0);
    const bool tripped_any = r.runaway_at != 0 || r.drift_at != 0;
    if (c.expect.empty()) {
      ++healthy;
      if (tripped_any) ++false_trips;
      INFO(c.run << " tripped " << (r.drift_at ? "agent.drift" : r.guard));
      const auto accepted = accepted_false_trips.find(c.run);
      if (accepted == accepted_false_trips.end()) {
        CHECK_FALSE(tripped_any);
      } else {
        CHECK(r.drift_at == 0);
        CHECK((r.runaway_at == 0 || r.guard == accepted->second));
      }
    } else {
      ++failures;
      if (tripped_expected) ++detected;
      INFO(c.run << " [" << c.klass << "] expected " << c.expect);
      CHECK(tripped_expected);
    }
    WARN(c.run << " [" << c.klass << "] expect=" << (c.expect.empty() ? "none" : c.expect)
               << " steps=" << c.events.size() << " runaway_at=" << r.runaway_at << " (" << r.guard
               << ") drift_at=" << r.drift_at
               << (c.expect.empty() ? (tripped_any ? "  FALSE TRIP" : "  ok")
                                    : (tripped_expected ? "  detected" : "  MISSED")));
  }
  WARN("holdout: detected " << detected << "/" << failures << ", false trips " << false_trips << "/"
                            << healthy);
  CHECK(failures == 11);
  CHECK(healthy == 10);
  // Targets: every failure mode caught; at most the two accepted false trips. (The untouched
  // monitor scored 7/11 and 3/10.)
  CHECK(detected == 11);
  CHECK(false_trips <= 2);
}
