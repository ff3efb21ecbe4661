#pragma once
// `loopwarden status | explain | ack | reset | halt | reload | approvals | approve | deny |
// alerts test`: the operator's commands, sent to the
// control socket and printed for people (or as JSON with --json).

#include <iosfwd>
#include <string>

#include <loopwarden/v1/control.pb.h>

namespace loopwarden::sidecar::detail {

struct operator_options {
  std::string control;          // explicit control endpoint; else derived from the config
  std::string config_file;      // to find the control endpoint (default: the embedded default)
  std::string state_dir;        // override of the config's state_dir
  std::string server_key;       // tcp control: the sidecar's public key (Z85), or a file holding it
  std::string secret_key_file;  // tcp control: this operator's secret key file
  bool json = false;
  bool color = false;  // ANSI colours (the CLI sets it for a terminal unless NO_COLOR is set)
  int timeout_ms = 5000;
};

// Sends `request` and prints the answer. Returns the exit code: 0 ok, 1 the sidecar refused
// (the reason is printed), 2 it could not be reached.
int run_operator_command(const operator_options& options, v1::ControlRequest request,
                         std::ostream& out, std::ostream& err);

}  // namespace loopwarden::sidecar::detail
