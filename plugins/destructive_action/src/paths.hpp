#pragma once
// Lexical path resolution: where a path named by a command lies, relative to the working
// directory and the declared workspace, without touching the filesystem (the gate runs before
// the action, possibly on another machine, and must answer in microseconds).
//
// Paths arrive as the shell normaliser left them: '\x01' marks a part only known at run time
// (an unset variable, a command substitution), '~' at the start is the home directory, and
// glob characters (* ? [) may appear. A path with an unknown or glob part is judged by the
// directory its known prefix names: "build/$X" lies in build/, "/*" covers the root.

#include <string>
#include <string_view>
#include <vector>

namespace loopwarden::destructive_action {

// The marker the shell normaliser puts where a value is only known at run time.
inline constexpr char unknown_marker = '\x01';

// Where a path lies. Ordered roughly from harmless to critical; see classify().
enum class path_class {
  inside,          // strictly inside the workspace
  scratch,         // strictly inside a scratch directory (/tmp, /var/tmp by default)
  workspace_root,  // the workspace itself, or all of its contents
  outside,         // anywhere else on this machine
  home,            // a home directory itself (~, /home/NAME, /Users/NAME, /root)
  system,          // /, a top-level system directory (/etc, /usr, ...) or anything in one
  device,          // a block or character device (/dev/sda), not /dev/null and friends
  remote,          // on another machine (through ssh, kubectl exec, docker exec)
  unknown,         // only known at run time
};

std::string_view to_string(path_class c);

// What a path is resolved against. Thread-safety: a value type.
struct path_context {
  std::string cwd;        // absolute working directory; "" = unknown (relative paths are then
                          // taken as workspace-relative); a string with unknown_marker = unknown
  std::string workspace;  // absolute workspace root; "" = none declared (cwd is used)
  std::string home;       // absolute home directory; "" = unknown ('~' is then "home")
  bool remote = false;    // the command runs on another machine
  std::vector<std::string> scratch;  // absolute scratch roots, normalised
};

// The result of resolving one path.
struct resolved_path {
  std::string path;  // absolute and normalised when known; else the text as given
  path_class where = path_class::unknown;
  bool selective = false;  // a glob that filters names (*.pyc), not "everything under"
};

// Collapses "//", "." and ".." lexically. `p` must be absolute; ".." above "/" stays at "/".
std::string normalize_absolute(std::string_view p);

// Resolves `p` (as the normaliser left it) against `ctx` and classifies it.
resolved_path resolve(std::string_view p, const path_context& ctx);

// Joins a cd target onto a working directory: the new cwd, or a string holding unknown_marker
// when it cannot be known ("cd $X", "cd -").
std::string change_directory(std::string_view cwd, std::string_view target,
                             const path_context& ctx);

// Glob match with fnmatch-like rules plus "**" (any number of path components, including
// none). Used for protected paths and shared resources.
bool glob_match(std::string_view pattern, std::string_view text);

// True for the pseudo-files that are harmless to write (/dev/null, /dev/stdout, ...).
bool harmless_device(std::string_view absolute_path);

}  // namespace loopwarden::destructive_action
