#pragma once
// `loopwarden replay FILE`: runs the engine over a recorded event file and prints every breaker
// transition. Deterministic: the same file and config give byte-identical output.

#include <iosfwd>
#include <string>
#include <vector>

namespace loopwarden::sidecar {

struct replay_options {
  std::string file;                       // the recorded event file
  std::string config_file;                // empty: the embedded default config
  std::vector<std::string> plugin_paths;  // searched after the config's
  bool json = false;                      // JSON lines instead of text
  bool quiet = false;                     // text mode: only the summary
};

// Returns exit_ok when no breaker opened, exit_found when one did, exit_error when the file or
// config could not be used. Damaged records are reported (text: to err; JSON: as "problem"
// lines) and skipped.
int run_replay(const replay_options& options, std::ostream& out, std::ostream& err);

}  // namespace loopwarden::sidecar
