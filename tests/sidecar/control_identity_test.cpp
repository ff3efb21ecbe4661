// Operator identity on the ipc control socket comes from the peer's credentials (SO_PEERCRED as
// libzmq reports them), never from the request.
#include <catch2/catch.hpp>

#include <pwd.h>
#include <unistd.h>

#include <string>

#include "../../sidecar/src/control_service.hpp"

using loopwarden::sidecar::detail::ipc_peer_operator;

namespace {
std::string name_of(uid_t uid) {
  const passwd* pw = ::getpwuid(uid);
  return pw != nullptr ? pw->pw_name : "";
}
}  // namespace

TEST_CASE("the ipc operator is the peer's OS user", "[sidecar][control]") {
  // libzmq's Peer-Address for an ipc peer: "<address>:<uid>:<gid>:<pid>".
  CHECK(ipc_peer_operator("localhost:0:0:4242", "fallback") == "unix:" + name_of(0));
  const std::string nobody = name_of(65534);
  if (!nobody.empty()) {
    CHECK(ipc_peer_operator("localhost:65534:65534:7", "fallback") == "unix:" + nobody);
  }
  // A uid with no passwd entry is still named, by number.
  CHECK(ipc_peer_operator("localhost:4000000:1:7", "fallback") ==
        (name_of(4000000).empty() ? "unix:uid4000000" : "unix:" + name_of(4000000)));
  // Anything else falls back (the daemon's own user), never a made-up identity.
  CHECK(ipc_peer_operator(nullptr, "fallback") == "fallback");
  CHECK(ipc_peer_operator("", "fallback") == "fallback");
  CHECK(ipc_peer_operator("localhost", "fallback") == "fallback");
  CHECK(ipc_peer_operator("localhost:x:0:1", "fallback") == "fallback");
}
