#include <catch2/catch.hpp>

#include <loopwarden/v1/gate.pb.h>
#include <chrono>
#include <functional>
#include <future>
#include <loopwarden/client/gate_client.hpp>
#include <mutex>
#include <thread>

#include "sidecar_side.hpp"

using namespace loopwarden;
using namespace std::chrono_literals;
using client::gate_client;
using client::gate_client_options;
using client::gate_decision;

namespace {

// What the fake gate does with one request: the replies to send, in order (serialized
// GateDecision payloads), after an optional delay.
struct gate_reply_plan {
  std::chrono::milliseconds delay{0};
  std::vector<std::string> payloads;
};
using gate_handler = std::function<gate_reply_plan(const v1::GateRequest&)>;

// The sidecar's gate: a ROUTER on its own thread (where its socket is made), answering with
// `handler`, and keeping the requests it saw.
class fake_gate {
 public:
  fake_gate(const std::string& transport, gate_handler handler) : handler_(std::move(handler)) {
    std::promise<std::string> bound;
    auto endpoint = bound.get_future();
    thread_ = std::jthread([this, transport, &bound](const std::stop_token& stop) {
      auto router = test::sidecar_socket(zmq::socket_type::router);
      bound.set_value(test::bind_fresh(router, transport, dir_, "gate"));
      serve(router, stop);
    });
    endpoint_ = endpoint.get();
  }

  const std::string& endpoint() const { return endpoint_; }

  std::vector<v1::GateRequest> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  void serve(zmq::socket_t& router, const std::stop_token& stop) {
    while (!stop.stop_requested()) {
      auto parts = test::receive(router, 10ms);
      if (!parts) continue;
      // [routing id][empty][GateRequest]. Catch's assertions are not for other threads, so a
      // bad request is only left out of requests(), which the tests check.
      v1::GateRequest request;
      if (parts->size() != 3 || (*parts)[1].size() != 0 ||
          !request.ParseFromArray((*parts)[2].data(), static_cast<int>((*parts)[2].size()))) {
        continue;
      }
      {
        std::lock_guard lock(mu_);
        requests_.push_back(request);
      }
      const gate_reply_plan plan = handler_(request);
      std::this_thread::sleep_for(plan.delay);
      for (const auto& payload : plan.payloads) {
        router.send(zmq::buffer((*parts)[0].to_string_view()), zmq::send_flags::sndmore);
        router.send(zmq::const_buffer(), zmq::send_flags::sndmore);
        router.send(zmq::buffer(payload));
      }
    }
  }

  test::temp_dir dir_;
  gate_handler handler_;
  std::string endpoint_;
  mutable std::mutex mu_;
  std::vector<v1::GateRequest> requests_;  // guarded by mu_
  std::jthread thread_;                    // last: joined before the rest goes
};

std::string decision(const std::string& request_id, v1::GateVerdict verdict,
                     std::string reason = "") {
  v1::GateDecision d;
  d.set_request_id(request_id);
  d.set_verdict(verdict);
  d.set_reason(std::move(reason));
  return d.SerializeAsString();
}

v1::ActionRequest rm_rf() {
  v1::ActionRequest a;
  a.set_action_id("a-1");
  a.set_kind(v1::ACTION_KIND_SHELL);
  a.set_command("rm -rf /srv/data");
  a.set_working_directory("/home/agent/task");
  return a;
}

std::unique_ptr<gate_client> make_client(gate_client_options options) {
  auto g = gate_client::create(std::move(options));
  INFO(g.error().message());
  REQUIRE(g);
  return std::move(g).value();
}

double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since)
      .count();
}

}  // namespace

TEST_CASE("gate client gets the sidecar's decision for its request", "[client][gate]") {
  const std::string transport = GENERATE("ipc", "tcp");
  INFO("transport " << transport);
  fake_gate gate(transport, [](const v1::GateRequest& r) {
    v1::GateDecision d;
    d.set_request_id(r.request_id());
    d.set_verdict(v1::GATE_VERDICT_DENY);
    d.set_reason("recursive delete outside the workspace");
    d.set_rule_id("shell.rm_recursive_outside_workspace");
    d.set_monitor("destructive_action");
    d.set_alternative("rm -rf /home/agent/task/data");
    return gate_reply_plan{.payloads = {d.SerializeAsString()}};
  });
  auto client = make_client({.endpoint = gate.endpoint(),
                             .source = "agent/alpha",
                             .run_id = "session-9",
                             .timeout = 2000ms});
  const gate_decision d = client->ask(rm_rf());
  CHECK(d.verdict == sdk::gate_verdict::deny);
  CHECK_FALSE(d.allowed());
  CHECK_FALSE(d.timed_out);
  CHECK(d.reason == "recursive delete outside the workspace");
  CHECK(d.rule_id == "shell.rm_recursive_outside_workspace");
  CHECK(d.monitor == "destructive_action");
  CHECK(d.alternative == "rm -rf /home/agent/task/data");

  const auto requests = gate.requests();
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].request_id() == d.request_id);
  CHECK(requests[0].source() == "agent/alpha");
  CHECK(requests[0].run_id() == "session-9");
  CHECK(requests[0].timeout_ms() == 2000);
  CHECK(requests[0].time_unix_nano() > 0);
  CHECK(requests[0].action().command() == "rm -rf /srv/data");
  CHECK(client->stats().answered == 1);
}

TEST_CASE("gate client gives every request its own id and passes approval ids on",
          "[client][gate]") {
  fake_gate gate("ipc", [](const v1::GateRequest& r) {
    v1::GateDecision d;
    d.set_request_id(r.request_id());
    d.set_verdict(v1::GATE_VERDICT_REQUIRE_APPROVAL);
    d.set_approval_id("approval-" + r.request_id());
    return gate_reply_plan{.payloads = {d.SerializeAsString()}};
  });
  auto client = make_client({.endpoint = gate.endpoint()});
  const gate_decision first = client->ask(rm_rf());
  const gate_decision second = client->ask(rm_rf());
  CHECK(first.verdict == sdk::gate_verdict::require_approval);
  CHECK(first.approval_id == "approval-" + first.request_id);
  CHECK(second.approval_id == "approval-" + second.request_id);
  CHECK(first.request_id != second.request_id);
}

TEST_CASE("gate client discards replies to other requests and waits for its own",
          "[client][gate]") {
  fake_gate gate("tcp", [](const v1::GateRequest& r) {
    return gate_reply_plan{.payloads = {decision("given-up-1", v1::GATE_VERDICT_ALLOW),
                                        "not a decision at all",
                                        decision(r.request_id(), v1::GATE_VERDICT_DENY, "no")}};
  });
  auto client = make_client({.endpoint = gate.endpoint()});
  const gate_decision d = client->ask(rm_rf());
  CHECK(d.verdict == sdk::gate_verdict::deny);
  CHECK(d.reason == "no");
  CHECK(client->stats().stale_replies == 1);
  CHECK(client->stats().malformed == 1);
}

TEST_CASE("gate client denies when the sidecar does not answer within the timeout",
          "[client][gate]") {
  const std::string transport = GENERATE("ipc", "tcp");
  INFO("transport " << transport);
  fake_gate gate(transport, [](const v1::GateRequest&) { return gate_reply_plan{}; });
  auto client = make_client({.endpoint = gate.endpoint()});
  const auto start = std::chrono::steady_clock::now();
  const gate_decision d = client->ask(rm_rf(), 100ms);
  const double ms = elapsed_ms(start);
  CHECK(ms >= 99);
  CHECK(ms < 100 + test::scaled(150ms).count());  // the timeout, and slack
  CHECK(d.verdict == sdk::gate_verdict::deny);
  CHECK(d.timed_out);
  CHECK(d.reason == "sidecar did not answer within 100 ms");
  CHECK(d.rule_id == "client.timeout");
  CHECK(client->stats().timed_out == 1);
  CHECK(client->stats().reconnects == 1);
}

TEST_CASE("gate client allows on timeout when configured to", "[client][gate]") {
  test::temp_dir dir;
  // Nobody listens at all.
  auto client = make_client({.endpoint = "ipc://" + (dir.path() / "nobody.sock").string(),
                             .timeout = 60ms,
                             .on_timeout = client::gate_timeout_policy::allow});
  const auto start = std::chrono::steady_clock::now();
  const gate_decision d = client->ask(rm_rf());
  CHECK(elapsed_ms(start) < 60 + test::scaled(140ms).count());  // the timeout, and slack
  CHECK(d.allowed());
  CHECK(d.timed_out);
  CHECK(d.reason == "sidecar did not answer within 60 ms");
}

TEST_CASE("gate client does not take a late reply for the answer to its next request",
          "[client][gate]") {
  std::atomic<int> seen{0};
  fake_gate gate("ipc", [&](const v1::GateRequest& r) {
    // The first answer comes after the client gave up; the second in time.
    if (seen++ == 0) {
      return gate_reply_plan{.delay = 150ms,
                             .payloads = {decision(r.request_id(), v1::GATE_VERDICT_ALLOW)}};
    }
    return gate_reply_plan{.payloads = {decision(r.request_id(), v1::GATE_VERDICT_DENY)}};
  });
  auto client = make_client({.endpoint = gate.endpoint()});
  const gate_decision first = client->ask(rm_rf(), 50ms);
  CHECK(first.timed_out);
  CHECK(first.verdict == sdk::gate_verdict::deny);
  const gate_decision second = client->ask(rm_rf(), test::scaled(2000ms));
  CHECK_FALSE(second.timed_out);
  CHECK(second.verdict == sdk::gate_verdict::deny);
  CHECK(second.request_id != first.request_id);
  // The late reply went to the closed socket and was lost; it never reached the new one.
  CHECK(client->stats().stale_replies == 0);
}

TEST_CASE("gate client treats a reply without a verdict as deny", "[client][gate]") {
  fake_gate gate("ipc", [](const v1::GateRequest& r) {
    return gate_reply_plan{
        .payloads = {decision(r.request_id(), v1::GATE_VERDICT_UNSPECIFIED, "hmm")}};
  });
  auto client = make_client({.endpoint = gate.endpoint(), .timeout = 2000ms});
  const gate_decision d = client->ask(rm_rf());
  CHECK(d.verdict == sdk::gate_verdict::deny);
  CHECK_FALSE(d.timed_out);
  CHECK(d.reason == "sidecar answered without a verdict: hmm");
}

TEST_CASE("gate client create rejects a bad endpoint or timeout, naming the endpoint",
          "[client][gate]") {
  struct row {
    gate_client_options options;
    std::string expected;
  };
  const std::vector<row> rows = {
      {{.endpoint = ""}, "no endpoint given"},
      {{.endpoint = "gate.sock"}, "invalid endpoint 'gate.sock'"},
      {{.endpoint = "tcp://127.0.0.1:notaport"}, "can't connect"},
      {{.endpoint = "ipc:///tmp/g.sock", .timeout = 0ms}, "timeout must be positive"},
  };
  for (const auto& r : rows) {
    INFO("endpoint '" << r.options.endpoint << "', expecting: " << r.expected);
    auto g = gate_client::create(r.options);
    REQUIRE_FALSE(g);
    CHECK(g.error().code() == sdk::status_code::invalid_argument);
    CHECK_THAT(g.error().message(),
               Catch::Contains("can't create gate client for '" + r.options.endpoint + "'") &&
                   Catch::Contains(r.expected));
  }
}
