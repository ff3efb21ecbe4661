#pragma once
// Shell text -> the simple commands it would run, each with its words normalised the way the
// shell would see them: quotes removed and pieces concatenated (r''m -> rm), ANSI-C strings
// decoded ($'\x72\x6d' -> rm), variables substituted when the script assigned them (X=rm; $X),
// unquoted expansions split into words ($IFS tricks), `cd` followed, command and process
// substitutions walked as commands of their own, heredoc and herestring bodies attached as the
// command's standard input, and pipelines linked (each command knows which one feeds it).
//
// Parsing is tree-sitter's (the bash grammar); this file turns its concrete syntax tree into
// the list above. Every construct the walker does not understand is still descended into, so a
// command hidden inside an if, a loop, a function or an error node is found all the same.

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "paths.hpp"

namespace loopwarden::destructive_action {

// One word after normalisation. Parts only known at run time are unknown_marker characters.
struct shell_word {
  shell_word() = default;
  // NOLINTNEXTLINE(google-explicit-constructor): words are built as {text, dynamic}.
  shell_word(std::string t, bool d = false, std::string from = {})
      : text(std::move(t)), dynamic(d), from_command(std::move(from)) {}

  std::string text;
  bool dynamic = false;      // contains an unknown part
  std::string from_command;  // for a word that is one command substitution ("$(pyenv init -)"):
                             // the program whose output it is
  std::string from_file;     // for "$(cat FILE)" or "$(< FILE)": FILE, as written (literal)
};

struct shell_redirect {
  std::string op;  // ">", ">>", ">|", "&>", "&>>", "<", "<>", ">&", "<&"
  std::string fd;  // the descriptor written before the operator ("2" in 2>), "" for none
  shell_word target;
};

struct shell_command {
  std::vector<std::pair<std::string, shell_word>> assignments;  // FOO=1 prefixes
  std::vector<shell_word> words;                                // argv; may be empty (> file)
  std::vector<shell_redirect> redirects;
  bool has_stdin_text = false;  // a heredoc or herestring feeds it
  std::string stdin_text;
  bool stdin_dynamic = false;  // the heredoc expands variables or substitutions
  int upstream = -1;           // index of the command whose output it reads (pipeline)
  std::string cwd;             // working directory when it runs (see path_context::cwd)
  std::string text;            // its source text
};

struct shell_script {
  std::vector<shell_command> commands;
  bool has_error = false;  // the parser found a syntax error
  bool truncated = false;  // a limit (commands, nesting) was reached
  bool fork_bomb = false;  // a function that runs itself in a pipeline or in the background
};

struct shell_parse_options {
  path_context paths;                                   // cwd, workspace, home (for cd)
  std::map<std::string, shell_word, std::less<>> vars;  // variables known beforehand
  std::size_t max_commands = 1000;
  int max_nesting = 200;  // syntax-tree depth the walker descends
};

// Owns one tree-sitter parser. Thread-safety: not thread-safe (one per monitor instance).
class shell_parser {
 public:
  shell_parser();
  ~shell_parser();
  shell_parser(const shell_parser&) = delete;
  shell_parser& operator=(const shell_parser&) = delete;

  // Parses and normalises `text`. Never fails: syntax errors set has_error and whatever could
  // be read is still returned.
  shell_script parse(std::string_view text, const shell_parse_options& options);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace loopwarden::destructive_action
