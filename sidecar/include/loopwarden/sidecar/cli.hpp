#pragma once
// The `loopwarden` command line. main() is one call to run_cli; the tests call it too.

#include <iosfwd>
#include <string>
#include <vector>

namespace loopwarden::sidecar {

// Exit codes shared by every command.
enum exit_code : int {
  exit_ok = 0,
  exit_found = 1,  // the command ran and found what it reports: a breaker opened, a bad config
  exit_error = 2,  // the command could not run: bad usage, unreadable file, plugin refused
};

// Parses argv and runs the command. Output goes to `out`, diagnostics to `err`.
// Thread-safety: call from one thread (it sets up process-wide logging).
int run_cli(int argc, char** argv, std::ostream& out, std::ostream& err);

// The command that starts a monitor host for `isolation: process`: this executable (from
// /proc/self/exe) with the hidden `monitor-host` subcommand. Empty when the executable cannot be
// found. Thread-safety: safe from any thread.
std::vector<std::string> monitor_host_command();

}  // namespace loopwarden::sidecar
