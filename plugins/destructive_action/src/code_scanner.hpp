#pragma once
// Inline interpreter code (python -c, node -e, perl -e, ruby -e, php -r, awk programs, mongo
// --eval, and the same languages fed through a heredoc or a pipe): the calls that matter to the
// gate, found on the code with its strings and comments blanked out (so `print("os.remove")` is
// not a call), each with the literal arguments it was given when they are literals.
//
// This is not a parser for five languages; it is a lexer (strings, comments) plus RE2 patterns
// for the APIs that delete files, spawn processes, send state-changing requests, open raw
// sockets, or run code built at run time. Whatever such a call's arguments are not literals,
// the caller cannot judge it and asks a human.

#include <string>
#include <string_view>
#include <vector>

namespace loopwarden::destructive_action {

struct code_finding {
  enum class what {
    delete_file,
    spawn,
    http,
    raw_network,
    dynamic,
    write_file,
    sql,
    nosql_drop,
    nosql_delete_all
  };
  what kind = what::dynamic;
  std::string api;       // the call as written, e.g. "shutil.rmtree"
  std::string argument;  // the first literal argument (path, command, URL, SQL); unknown parts
                         // are unknown_marker; "" when there is no literal
  bool literal = false;  // argument holds a literal
  bool recursive = false;
  std::string method;  // http: the method, upper case
};

// `language`: python, node, perl, ruby, php, awk, mongo. Unknown languages give one dynamic
// finding (nothing can be judged). Thread-safety: safe from any thread.
std::vector<code_finding> scan_code(std::string_view language, std::string_view code);

// The language an interpreter program name runs ("python3.11" -> "python"), or "" when it is not
// one this scanner knows.
std::string interpreter_language(std::string_view program);

}  // namespace loopwarden::destructive_action
