#pragma once
// SQL -> one summary per statement, from PostgreSQL's own grammar (libpg_query). Text the
// PostgreSQL grammar refuses (MySQL or SQLite dialect, fragments) is summarised from its leading
// keywords instead, and marked as such, so a `DROP TABLE \`x\`` is still a drop.

#include <string>
#include <string_view>
#include <vector>

namespace loopwarden::destructive_action {

struct sql_statement {
  // select, insert, update, delete, truncate, drop, drop_database, alter, alter_drop, grant,
  // revoke, create, copy_program, do, transaction, other, unknown (not even the keywords tell)
  std::string statement;
  std::string object;     // table, schema, database, view, index, column, role, function, ...
  std::string table;      // the first relation named, when any
  bool has_where = true;  // false for UPDATE / DELETE without a WHERE, or with an always-true one
  bool parsed = true;     // false when only the keywords were read
  std::string program;    // COPY ... PROGRAM 'cmd': the shell command it runs
};

// Summarises every statement of `sql` (one or many, ';'-separated). Empty input: no statements.
// Thread-safety: safe from any thread (libpg_query keeps per-thread state).
std::vector<sql_statement> analyze_sql(std::string_view sql);

// True when a read-only statement (select, show, explain, set, transaction control).
bool sql_read_only(const sql_statement& s);

}  // namespace loopwarden::destructive_action
