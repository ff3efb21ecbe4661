#include <catch2/catch.hpp>

#include <loopwarden/core/config.hpp>

using namespace loopwarden;

namespace {

core::config parse_ok(const std::string& yaml) {
  auto cfg = core::parse_config(yaml, "t.yaml", "/etc/lw");
  INFO(yaml);
  INFO((cfg.ok() ? std::string() : cfg.error().message()));
  REQUIRE(cfg.ok());
  return *cfg;
}

}  // namespace

TEST_CASE("transport defaults put every socket under the state directory", "[config][transport]") {
  auto cfg = parse_ok("version: 1\nstate_dir: /var/lib/lw\n");
  const auto& t = cfg.transport;
  REQUIRE(t.ingest.size() == 1);
  CHECK(t.ingest[0].socket == core::ingest_socket::pull);
  CHECK(t.ingest[0].bind);
  CHECK(t.ingest[0].endpoint == "ipc:///var/lib/lw/run/ingest.sock");
  CHECK(t.breakers == "ipc:///var/lib/lw/run/breakers.sock");
  CHECK(t.gate == "ipc:///var/lib/lw/run/gate.sock");
  CHECK(t.control == "ipc:///var/lib/lw/control/control.sock");
  CHECK(t.heartbeat_interval == std::chrono::milliseconds(250));
  CHECK(t.overflow == core::overflow_policy::block);
  CHECK(cfg.telemetry.silence_timeout == std::chrono::seconds(30));
  CHECK(cfg.telemetry.silence_breaker);
  CHECK(cfg.telemetry.loss_threshold == 0);
}

TEST_CASE("transport settings are read and relative ipc paths resolved", "[config][transport]") {
  auto cfg = parse_ok(R"(version: 1
transport:
  ingest:
    - {socket: pull, bind: "ipc://sock/in"}
    - {socket: sub, connect: "tcp://10.0.0.5:5557", topics: [metrics, generation]}
  breakers: "tcp://0.0.0.0:5558"
  heartbeat_interval: 100ms
  queue_capacity: 1024
  overflow: drop
  drain_timeout: 2s
telemetry:
  silence_timeout: 5s
  silence_breaker: false
  loss_threshold: 10
  max_sources: 50
)");
  const auto& t = cfg.transport;
  REQUIRE(t.ingest.size() == 2);
  CHECK(t.ingest[0].endpoint == "ipc:///etc/lw/sock/in");
  CHECK(t.ingest[1].socket == core::ingest_socket::sub);
  CHECK_FALSE(t.ingest[1].bind);
  CHECK(t.ingest[1].topics == std::vector<std::string>{"metrics", "generation"});
  CHECK(t.breakers == "tcp://0.0.0.0:5558");
  CHECK(t.heartbeat_interval == std::chrono::milliseconds(100));
  CHECK(t.queue_capacity == 1024);
  CHECK(t.overflow == core::overflow_policy::drop);
  CHECK(t.drain_timeout == std::chrono::seconds(2));
  CHECK(cfg.telemetry.silence_timeout == std::chrono::seconds(5));
  CHECK_FALSE(cfg.telemetry.silence_breaker);
  CHECK(cfg.telemetry.loss_threshold == 10);
  CHECK(cfg.telemetry.max_sources == 50);
}

TEST_CASE("bad transport and telemetry settings are refused with path and line",
          "[config][transport]") {
  struct row {
    std::string yaml;
    std::string error;
  };
  const std::string long_path(120, 'x');
  const std::vector<row> rows = {
      {"transport:\n  ingest: []\n",
       "transport.ingest: expected a non-empty sequence of ingest sockets, got a sequence (t.yaml:3)"},
      {"transport:\n  ingest:\n    - {socket: push, bind: \"ipc://a\"}\n",
       "transport.ingest[0].socket: expected one of pull, sub, got \"push\" (t.yaml:4)"},
      {"transport:\n  ingest:\n    - {socket: pull, connect: \"tcp://a:1\"}\n",
       "transport.ingest[0].connect: a pull socket binds; use socket: sub to connect to a "
       "publisher (t.yaml:4)"},
      {"transport:\n  ingest:\n    - {socket: sub, bind: \"ipc://a\", connect: \"tcp://a:1\"}\n",
       "transport.ingest[0]: needs exactly one of bind or connect (t.yaml:4)"},
      {"transport:\n  ingest:\n    - {socket: pull, bind: \"ipc://a\", topics: [x]}\n",
       "transport.ingest[0].topics: topics apply to sub sockets only (t.yaml:4)"},
      {"transport:\n  gate: \"udp://1.2.3.4:5\"\n",
       "transport.gate: expected an endpoint such as ipc:///run/loopwarden/ingest.sock or "
       "tcp://127.0.0.1:5556, got \"udp://1.2.3.4:5\" (t.yaml:3)"},
      {"transport:\n  gate: \"ipc:///" + long_path + "\"\n",
       "transport.gate: ipc path is 121 bytes once made absolute, longer than the 107 the "
       "operating system allows (t.yaml:3)"},
      {"transport:\n  control: \"tcp://0.0.0.0:5560\"\n",
       "transport.control: a tcp control socket needs control_curve (CURVE keys), so that only "
       "operators can connect; use ipc:// for a local operator (t.yaml:3)"},
      {"transport:\n  control_curve: {secret_key_file: k, operator_keys: [short]}\n",
       "transport.control_curve.operator_keys[0]: expected a 40-character Z85 CURVE public key, "
       "got \"short\" (t.yaml:3)"},
      {"transport:\n  overflow: spill\n",
       "transport.overflow: expected one of block, drop, got \"spill\" (t.yaml:3)"},
      {"transport:\n  heartbeat_interval: 0s\n",
       "transport.heartbeat_interval: expected a positive duration (t.yaml:3)"},
      {"transport:\n  queue_capacity: 0\n",
       "transport.queue_capacity: expected a positive integer, got \"0\" (t.yaml:3)"},
      {"telemetry:\n  loss_threshold: -1\n",
       "telemetry.loss_threshold: expected 0 (off) or a positive count (t.yaml:3)"},
      {"telemetry:\n  silence: 5s\n",
       "telemetry.silence: unknown key (allowed: silence_timeout, silence_breaker, "
       "loss_threshold, max_sources) (t.yaml:3)"},
  };
  for (const auto& r : rows) {
    const std::string yaml = "version: 1\n" + r.yaml;
    INFO(yaml);
    auto cfg = core::parse_config(yaml, "t.yaml", "/etc/lw");
    REQUIRE_FALSE(cfg.ok());
    CHECK(cfg.error().message() == r.error);
  }
}

TEST_CASE("transport ipc_mode is read as a quoted octal mode and refused otherwise",
          "[config][transport][security]") {
  CHECK(parse_ok("version: 1\n").transport.ipc_mode == 0660);
  CHECK(parse_ok("version: 1\ntransport:\n  ipc_mode: \"0600\"\n").transport.ipc_mode == 0600);
  CHECK(parse_ok("version: 1\ntransport:\n  ipc_mode: \"660\"\n").transport.ipc_mode == 0660);
  for (const std::string bad : {"\"0999\"", "\"rw\"", "\"07777\"", "\"\""}) {
    INFO(bad);
    auto cfg = core::parse_config("version: 1\ntransport:\n  ipc_mode: " + bad + "\n", "t.yaml");
    REQUIRE_FALSE(cfg.ok());
    CHECK_THAT(cfg.error().message(),
               Catch::StartsWith("transport.ipc_mode: expected an octal file mode") &&
                   Catch::EndsWith("(t.yaml:3)"));
  }
}
