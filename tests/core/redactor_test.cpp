// The configuration's secrets never leave the process (core/include/loopwarden/core/redactor.hpp,
// docs/security.md#secrets): the URL helper, the secret set of each alert sink type, text and
// protobuf redaction, the engine's log, and an HTTP sink whose receiver echoes the request.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <httplib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <loopwarden/v1/control.pb.h>
#include <loopwarden/core/alert_config.hpp>
#include <loopwarden/core/alert_router.hpp>
#include <loopwarden/core/logging.hpp>
#include <loopwarden/core/redactor.hpp>

using namespace loopwarden;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using core::alert_sink_type;

namespace {

// Secrets of the shapes the alert sinks carry, each long enough to be a credential.
const std::string path_token = "T0AB12CD3/B0EF45GH6/xyzXYZ0123456789abcd";
const std::string webhook_path_token = "3f9c1d0e5a7b4c2d9e8f";
const std::string query_token = "q-tok-5e6f7a8b9c0d";
const std::string bearer_token = "b-tok-0a1b2c3d4e5f6a7b";
const std::string routing_key = "R0UT1NGKEY0123456789abcdef012345";

core::alert_sink_config sink(alert_sink_type type, std::string url) {
  core::alert_sink_config s;
  s.name = "s";
  s.type = type;
  s.url = std::move(url);
  return s;
}

core::redactor all_sinks() {
  core::alerts_config a;
  a.sinks.push_back(sink(alert_sink_type::slack, "https://hooks.slack.com/services/" + path_token));
  auto hook =
      sink(alert_sink_type::webhook, "https://hooks.example.com/hooks/" + webhook_path_token +
                                         "?token=" + query_token + "&channel=ops");
  hook.headers = {{"Authorization", "Bearer " + bearer_token}, {"X-Team", "ops"}};
  a.sinks.push_back(hook);
  auto pd = sink(alert_sink_type::pagerduty, "https://events.pagerduty.com/v2/enqueue");
  pd.routing_key = routing_key;
  a.sinks.push_back(pd);
  core::redactor r;
  r.add_alert_secrets(a);
  return r;
}

}  // namespace

TEST_CASE("redact_url hides user-info and everything after the host", "[core][security]") {
  struct row {
    std::string url;
    std::string shown;
  };
  const std::vector<row> rows = {
      {"https://hooks.slack.com/services/T0/B0/xyz", "https://hooks.slack.com/<redacted>"},
      {"http://user:pw@am:9093/", "http://<redacted>@am:9093/"},
      {"http://user:pw@am:9093/api?x=1", "http://<redacted>@am:9093/<redacted>"},
      {"http://am:9093", "http://am:9093"},
      {"http://am:9093/", "http://am:9093/"},
      {"https://h/?token=abc", "https://h/<redacted>"},
      {"https://h#frag", "https://h/<redacted>"},
      {"am:9093/path", "am:9093/<redacted>"},
      {"", ""},
  };
  for (const auto& r : rows) {
    INFO(r.url);
    CHECK(core::redact_url(r.url) == r.shown);
  }
}

TEST_CASE("every secret an alert sink holds is redacted and ordinary words are not",
          "[core][security]") {
  const core::redactor r = all_sinks();
  struct row {
    std::string what;
    std::string text;
    std::string expected;
  };
  const std::vector<row> rows = {
      // A Slack URL's whole path is the credential.
      {"slack path", "posting to /services/" + path_token + " failed",
       "posting to <redacted> failed"},
      {"slack url", "url https://hooks.slack.com/services/" + path_token, "url <redacted>"},
      {"slack token alone", "token " + path_token.substr(20), "token <redacted>"},
      {"webhook path token", "no hook " + webhook_path_token, "no hook <redacted>"},
      {"query value alone", "token '" + query_token + "' is not valid",
       "token '<redacted>' is not valid"},
      {"whole query", "GET /x?token=" + query_token + "&channel=ops", "GET /x?<redacted>"},
      {"bearer header", "Authorization: Bearer " + bearer_token, "Authorization: <redacted>"},
      {"bearer token alone", "bad token " + bearer_token, "bad token <redacted>"},
      {"routing key", "{\"routing_key\":\"" + routing_key + "\"}",
       "{\"routing_key\":\"<redacted>\"}"},
      {"twice", routing_key + routing_key, "<redacted><redacted>"},
      // Short values are names, not credentials: redacting them would garble text.
      {"short values stay", "channel=ops team ops host events.pagerduty.com",
       "channel=ops team ops host events.pagerduty.com"},
      {"nothing secret", "breaker training.collapse tripped", "breaker training.collapse tripped"},
  };
  for (const auto& row : rows) {
    INFO(row.what << ": " << row.text);
    CHECK(r.apply(row.text) == row.expected);
  }
}

TEST_CASE("url user-info and its password are secrets on their own", "[core][security]") {
  core::redactor r;
  r.add_sink_secrets(sink(alert_sink_type::alertmanager, "http://alice:pa55w0rd-xyz@am:9093/"));
  CHECK(r.apply("login alice:pa55w0rd-xyz") == "login <redacted>");
  CHECK(r.apply("password pa55w0rd-xyz rejected") == "password <redacted> rejected");
  CHECK(r.apply("user alice") == "user alice");  // a name shorter than any credential
}

TEST_CASE("a secret that contains another disappears whole", "[core][security]") {
  core::redactor r;
  r.add("abcdefgh");
  r.add("xxabcdefghyy");
  r.add("abcdefgh");  // a duplicate changes nothing
  r.add("short");     // below min_secret_length: ignored
  CHECK(r.size() == 2);
  CHECK(r.apply("1 xxabcdefghyy 2 abcdefgh 3 short") == "1 <redacted> 2 <redacted> 3 short");
  core::redactor merged;
  merged.merge(r);
  CHECK(merged.apply("xxabcdefghyy") == "<redacted>");
  CHECK(core::redactor().apply("abcdefgh") == "abcdefgh");
}

TEST_CASE("redacting a protobuf message reaches nested, repeated and map fields",
          "[core][security]") {
  const core::redactor r = all_sinks();
  v1::ControlResponse response;
  response.set_error("delivery failed: http 400: token " + query_token);
  auto* b = response.mutable_snapshot()->add_breakers();
  b->set_name("fixture.trip");
  b->set_reason("saw " + routing_key);
  auto* kv = b->add_evidence();
  kv->set_key("label");
  kv->set_value("Bearer " + bearer_token);
  auto* m = response.mutable_sidecar()->add_monitors();
  m->set_name("fixture");
  m->set_last_error("posting to " + webhook_path_token);

  r.apply(response);
  const std::string text = response.DebugString();
  for (const auto& secret : {query_token, routing_key, bearer_token, webhook_path_token}) {
    INFO(secret);
    CHECK(text.find(secret) == std::string::npos);
  }
  CHECK(response.error() == "delivery failed: http 400: token <redacted>");
  CHECK(response.snapshot().breakers(0).name() == "fixture.trip");
  CHECK(response.snapshot().breakers(0).reason() == "saw <redacted>");
  CHECK(response.snapshot().breakers(0).evidence(0).key() == "label");
  CHECK(response.snapshot().breakers(0).evidence(0).value() == "<redacted>");
  CHECK(response.sidecar().monitors(0).last_error() == "posting to <redacted>");
}

TEST_CASE("every line of the engine's log passes through the redactor", "[core][security]") {
  // The log goes to stderr: send fd 2 to a file while these lines are written.
  const fs::path file = fs::temp_directory_path() / ("lw-redact-log-" + std::to_string(::getpid()));
  std::fflush(stderr);
  const int saved = ::dup(2);
  REQUIRE(saved >= 0);
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(fd >= 0);
  ::dup2(fd, 2);
  ::close(fd);

  auto r = std::make_shared<core::redactor>(all_sinks());
  core::log_message(sdk::log_level::warn, "before: " + routing_key);
  core::set_log_redactor(r);
  core::log_message(sdk::log_level::warn, "after: " + routing_key + " and Bearer " + bearer_token);
  core::set_log_redactor(nullptr);
  core::flush_log();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);

  std::ifstream in(file);
  const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  fs::remove(file);
  INFO(log);
  CHECK(log.find("before: " + routing_key) != std::string::npos);  // no redactor: as written
  CHECK(log.find("after: <redacted> and <redacted>") != std::string::npos);
  CHECK(log.find(bearer_token) == std::string::npos);
}

TEST_CASE("an http sink's delivery error never carries its secrets, even when echoed",
          "[core][security][alerts]") {
  // A receiver that refuses the request and quotes it back, as some do.
  httplib::Server server;
  server.Post(R"(.*)", [](const httplib::Request& req, httplib::Response& res) {
    res.status = 400;
    std::string echo = "refused " + req.path + "?token=" + req.get_param_value("token") + " " +
                       req.get_header_value("Authorization") + " " + req.body.substr(0, 80);
    res.set_content(echo, "text/plain");
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  REQUIRE(port > 0);
  std::thread t([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(1ms);

  core::alerts_config a;
  auto hook =
      sink(alert_sink_type::webhook, "http://127.0.0.1:" + std::to_string(port) + "/hooks/" +
                                         webhook_path_token + "?token=" + query_token);
  hook.name = "hook";
  hook.headers = {{"Authorization", "Bearer " + bearer_token}};
  a.sinks.push_back(hook);
  auto pd =
      sink(alert_sink_type::pagerduty, "http://127.0.0.1:" + std::to_string(port) + "/v2/enqueue");
  pd.name = "pd";
  pd.routing_key = routing_key;
  a.sinks.push_back(pd);
  core::memory_alert_outbox outbox;
  core::alert_router router(a, outbox, {});
  for (const std::string name : {"hook", "pd"}) {
    INFO(name);
    auto report = router.send_test(name);
    REQUIRE(report.ok());
    CHECK_FALSE(report->delivered);
    CHECK(report->http_status == 400);
    INFO(report->error);
    CHECK_THAT(report->error, Catch::StartsWith("http 400 from http://127.0.0.1:") &&
                                  Catch::Contains("refused") && Catch::Contains("<redacted>"));
    for (const auto& secret : {query_token, bearer_token, routing_key, webhook_path_token}) {
      CHECK(report->error.find(secret) == std::string::npos);
    }
  }
  server.stop();
  t.join();
}
