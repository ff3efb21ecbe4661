#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <zmq.hpp>

#include <loopwarden/sidecar/control_client.hpp>
#include <loopwarden/sidecar/server.hpp>

#include "daemon.hpp"

using namespace loopwarden;
using loopwarden::test::free_tcp_port;
namespace fs = std::filesystem;

TEST_CASE("a tcp control socket answers allowlisted CURVE keys and refuses every other client",
          "[sidecar][control][integration]") {
  std::random_device rd;
  const fs::path dir = fs::temp_directory_path() / ("lw-curve-" + std::to_string(rd()));
  fs::create_directories(dir);
  auto server_keys = sidecar::make_curve_keypair();
  auto operator_keys = sidecar::make_curve_keypair();
  auto stranger_keys = sidecar::make_curve_keypair();
  REQUIRE(server_keys.ok());
  REQUIRE(operator_keys.ok());
  REQUIRE(stranger_keys.ok());
  std::ofstream((dir / "server.key").string()) << server_keys->secret_key << "\n";
  const int port = free_tcp_port();
  const std::string control = "tcp://127.0.0.1:" + std::to_string(port);
  std::ofstream((dir / "loopwarden.yaml").string())
      << "version: 1\nstate_dir: " << (dir / "state").string() << "\nmonitors: []\n"
      << "transport:\n  control: \"" << control << "\"\n"
      << "  control_curve:\n    secret_key_file: server.key\n    operator_keys: [\""
      << operator_keys->public_key << "\"]\n";

  sidecar::serve_options options;
  options.http_listen = "127.0.0.1:0";  // tests run in parallel: any free port
  options.config_file = (dir / "loopwarden.yaml").string();
  auto srv = sidecar::server::start(options);
  INFO((srv.ok() ? std::string() : srv.error().message()));
  REQUIRE(srv.ok());

  v1::ControlRequest status;
  status.mutable_status();

  SECTION("the operator's key is answered, and the operator is named by key") {
    sidecar::curve_credentials creds{server_keys->public_key, operator_keys->secret_key};
    auto r = sidecar::send_control(control, status, std::chrono::seconds(5), &creds);
    INFO((r.ok() ? std::string() : r.error().message()));
    REQUIRE(r.ok());
    CHECK(r->ok());
    v1::ControlRequest halt;
    halt.mutable_force_open()->mutable_breaker()->set_name("ops.manual");
    halt.mutable_force_open()->set_reason("maintenance");
    auto h = sidecar::send_control(control, halt, std::chrono::seconds(5), &creds);
    REQUIRE(h.ok());
    REQUIRE(h->history_size() == 1);
    CHECK(h->history(0).operator_id() == "key:" + operator_keys->public_key);
  }
  SECTION("a key not on the allowlist gets no answer") {
    sidecar::curve_credentials creds{server_keys->public_key, stranger_keys->secret_key};
    auto r = sidecar::send_control(control, status, std::chrono::milliseconds(500), &creds);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == sdk::status_code::timeout);
  }
  SECTION("a client without CURVE gets no answer") {
    auto r = sidecar::send_control(control, status, std::chrono::milliseconds(500));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code() == sdk::status_code::timeout);
  }
  (*srv)->stop();
  std::error_code ec;
  fs::remove_all(dir, ec);
}
