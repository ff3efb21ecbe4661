#pragma once
// A fact is one thing an action would do, found by the parsers and analyzers ("deletes
// /etc recursively", "runs `kubectl delete ns prod`", "DROP TABLE users"). Rules (rules.hpp)
// judge facts; they never see raw text. The attribute vocabulary is documented in
// docs/monitors/destructive-action.md and checked when rules load (fact_attributes below).

#include <array>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace loopwarden::destructive_action {

// Every attribute a rule may test (`when: {target: system}`), and so every key a fact may
// carry. Rules naming anything else are refused at load.
inline constexpr std::array<std::string_view, 34> fact_attributes = {
    "kind",          // the request's action kind: shell, sql, file, git, http, other
    "target",        // a path's class: inside, workspace_root, scratch, outside, home, system,
                     // device, remote, unknown
    "path",          // the resolved path (lexically normalised), or the text when unknown
    "protected",     // "true" when the path matches a protected glob
    "recursive",     // "true" for recursive deletes / chmods
    "force",         // "true" for forced operations (git push --force, rm -f)
    "operation",     // file effects: overwrite, append, truncate, move, create, extract, shred,
                     // chmod, delete, rsync_delete
    "remote",        // "true" when it runs on another machine (ssh, kubectl exec, docker exec)
    "selective",     // "true" when a delete is filtered (find -name, a glob like *.pyc)
    "method",        // HTTP method, upper case
    "host",          // HTTP host (lower case), "" when it cannot be known
    "host_allowed",  // "true" when the host is on the allowlist
    "host_known",    // "false" when the URL is assembled from variables, files, substitutions
    "url",           // the URL as far as it is known
    "statement",     // SQL: select, insert, update, delete, truncate, drop, drop_database,
                     // alter, alter_drop, grant, revoke, create, copy_program, do, other, unknown
    "object",        // SQL: table, schema, database, view, index, column, role, ... / redis key
    "where",         // SQL: "false" when UPDATE/DELETE has no WHERE (or a WHERE that is always
                     // true, like 1=1)
    "table",         // SQL: the first table named
    "database",      // SQL: the database / DSN name, when known
    "branch",        // git: the destination branch ("" = the current branch, unknown)
    "branch_protected",  // git: "true", "false", or "unknown"
    "delete",            // git: "true" when a push deletes a remote ref
    "mirror",            // git: "true" for push --mirror / --all with --force
    "language",          // inline code: python, node, perl, ruby, php, mongo, awk
    "reason",       // inline code / shell: why it cannot be judged (dynamic, spawn, network...)
    "source",       // what a shell reads its program from: network, decoded, file, literal,
                    // unknown
    "environment",  // the environment acted on (declared, or inferred from flags/variables)
    "environment_protected",  // "true" when it is a protected environment (prod by default)
    "preview",   // exec: "true" when the command only previews or prints help (--dry-run,
                 // --dryrun, --what-if, --help, -help): it changes nothing
    "in_scope",  // scope facts: "false" when outside the session's declared scope
    "shared",    // scope facts: "true" when the resource is configured as shared
    "resource",  // scope facts: the resource concerned
    "program",   // the program of the command the fact came from
    "via",       // the wrappers it was found through: "sudo > sh -c > python -c"
};

// A fact. `effect` says what kind of thing happens; attributes qualify it.
//   exec             a command runs (program, args, flags, positional words)
//   file.delete      a path is deleted      file.write   written (operation says how)
//   file.truncate    emptied                file.move    moved away (its old place is gone)
//   file.chmod       permissions / owner    disk.write   a block device or filesystem is written
//   git.push         a push (one fact per destination ref)
//   sql              one SQL statement (or a NoSQL / Redis command treated alike)
//   http             one HTTP request
//   code             inline interpreter code that cannot be judged (reason says why)
//   shell.pipe       a shell or interpreter runs code read from a pipe (source says from where)
//   shell.dynamic    a command whose name or code is only known at run time (eval $x, $cmd)
//   shell.unparseable  the input is not valid shell (or exceeds the parse limits)
//   shell.fork_bomb  a function that spawns itself in the background
//   net.raw          a raw socket / reverse shell (/dev/tcp, nc -e)
//   scope.environment  the action changes a protected or undeclared environment
//   scope.resource   the action changes a shared resource, or one outside the declared scope
// Thread-safety: a value type.
struct fact {
  std::string effect;
  std::map<std::string, std::string, std::less<>> attrs;
  // exec facts: the normalised command line.
  std::string program;                  // basename, lower case as written ("rm", "kubectl")
  std::vector<std::string> args;        // every argument after the program, normalised
  std::vector<std::string> positional;  // arguments that are not options
  std::vector<std::string> flags;       // options, short bundles split ("-rf" -> "-r", "-f"),
                                        // "--opt=value" reduced to "--opt"
  std::string argv_text;                // exec: "program arg1 arg2 ..." (for argv_regex)
  std::string positional_text;          // exec: positional words, lower case, space-separated
  std::string snippet;                  // the command text, for explanations
  std::vector<std::string> resources;   // what it changes (paths, tables, hosts, refs)
  bool mutating = false;                // changes state (for scope and environment checks)

  const std::string& attr(std::string_view key) const {
    static const std::string empty;
    auto it = attrs.find(key);
    return it == attrs.end() ? empty : it->second;
  }
};

}  // namespace loopwarden::destructive_action
