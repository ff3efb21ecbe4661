#pragma once
// `loopwarden audit verify | export`: read the state store's audit chain directly (read-only), so
// they work whether or not the daemon runs, and on a copy of the database taken for a postmortem.

#include <iosfwd>
#include <string>

namespace loopwarden::sidecar::detail {

struct audit_options {
  std::string db;           // explicit database file; else <state_dir>/loopwarden.db
  std::string config_file;  // to find the state dir (default: the embedded default)
  std::string state_dir;    // override of the config's state_dir
  std::string expect_head;  // "SEQ:HASH": the chain must contain this record (detects truncation)
  std::string out_file;     // export: write here instead of stdout
  bool json = false;        // verify: print the report as JSON
};

// Exit codes: 0 intact / exported, 1 the chain is broken (the first bad record is printed),
// 2 the database could not be read.
int run_audit_verify(const audit_options& options, std::ostream& out, std::ostream& err);
int run_audit_export(const audit_options& options, std::ostream& out, std::ostream& err);

}  // namespace loopwarden::sidecar::detail
