// Fuzz target: destructive_action's shell classifier on arbitrary command text.
//
// The input is one shell command line (or script), as an agent would propose it. It goes through
// the plugin's shell parser (tree-sitter's bash grammar, then the normalisation that follows
// quotes, variables, `cd`, substitutions and pipelines) and through the whole analyzer as a shell
// ActionRequest, the way the monitor judges a gate request. The plugin's sources are compiled
// into this target (tests/fuzz/CMakeLists.txt): the plugin is a MODULE that exports only its
// factory. The parser promises never to fail and to stop at its limits; both are checked.

#include <cstdint>
#include <string>
#include <string_view>

#include <loopwarden/v1/agent.pb.h>

#include "analyzer.hpp"
#include "fuzz_support.hpp"
#include "shell_parser.hpp"

using namespace loopwarden;
namespace da = loopwarden::destructive_action;

namespace {

da::shell_parser* parser = nullptr;  // one for the run, like one per monitor instance
da::analyzer* judge = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quiet_logs();
  parser = new da::shell_parser();
  judge = new da::analyzer(da::analyzer_settings{});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  da::shell_parse_options options;
  options.paths.cwd = "/home/dev/project";
  options.paths.workspace = "/home/dev/project";
  options.paths.home = "/home/dev";
  options.max_commands = 200;
  const da::shell_script script = parser->parse(text, options);
  if (script.commands.size() > options.max_commands) {
    fuzz::die("the shell parser returned " + std::to_string(script.commands.size()) +
              " commands, above its limit of " + std::to_string(options.max_commands));
  }
  for (const auto& c : script.commands) {
    if (c.upstream >= static_cast<int>(script.commands.size())) {
      fuzz::die("a command reads from a pipeline command that does not exist");
    }
  }

  v1::ActionRequest action;
  action.set_kind(v1::ACTION_KIND_SHELL);
  action.set_tool("bash");
  action.set_command(std::string(text));
  action.set_working_directory("/home/dev/project");
  action.mutable_scope()->set_workspace_root("/home/dev/project");
  (void)judge->analyze(action);
  return 0;
}
