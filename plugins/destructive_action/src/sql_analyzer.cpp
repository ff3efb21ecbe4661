#include "sql_analyzer.hpp"

extern "C" {
#include <pg_query.h>
}

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

namespace loopwarden::destructive_action {
namespace {

using json = nlohmann::json;

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "OBJECT_TABLE" -> "table".
std::string object_name(const json& v) {
  if (!v.is_string()) return {};
  std::string s = v.get<std::string>();
  if (s.starts_with("OBJECT_")) s = s.substr(7);
  return lower(s);
}

void strip_locations(json& j) {
  if (j.is_object()) {
    j.erase("location");
    for (auto& [k, v] : j.items()) strip_locations(v);
  } else if (j.is_array()) {
    for (auto& v : j) strip_locations(v);
  }
}

bool is_const(const json& j) { return j.is_object() && j.contains("A_Const"); }

// A WHERE that holds for every row: TRUE, 1=1, 'a'='a', x=x, anything OR-ed with one of them.
bool always_true(const json& j) {
  if (!j.is_object()) return false;
  if (j.contains("A_Const")) {
    const json& c = j["A_Const"];
    if (c.contains("boolval")) {
      const json& b = c["boolval"];
      return b.is_object() && b.value("boolval", false);
    }
    if (c.contains("ival")) {
      const json& i = c["ival"];
      return i.is_object() && i.value("ival", 0) != 0;
    }
    return false;
  }
  if (j.contains("BoolExpr")) {
    const json& b = j["BoolExpr"];
    const std::string op = b.value("boolop", "");
    const json& args = b.contains("args") ? b["args"] : json::array();
    if (op == "OR_EXPR") {
      return std::any_of(args.begin(), args.end(), [](const json& a) { return always_true(a); });
    }
    if (op == "AND_EXPR") {
      return !args.empty() &&
             std::all_of(args.begin(), args.end(), [](const json& a) { return always_true(a); });
    }
    return false;
  }
  if (j.contains("A_Expr")) {
    const json& e = j["A_Expr"];
    if (e.value("kind", "") != "AEXPR_OP" || !e.contains("lexpr") || !e.contains("rexpr")) {
      return false;
    }
    std::string op;
    if (e.contains("name") && e["name"].is_array() && !e["name"].empty()) {
      op = e["name"].back().value("String", json::object()).value("sval", "");
    }
    json l = e["lexpr"];
    json r = e["rexpr"];
    strip_locations(l);
    strip_locations(r);
    const bool same = l == r;
    const bool consts = is_const(l) && is_const(r);
    const bool columns = l.contains("ColumnRef") && r.contains("ColumnRef");
    if ((op == "=" || op == ">=" || op == "<=") && same && (consts || columns)) return true;
    if ((op == "<>" || op == "!=") && consts && !same) return true;
    return false;
  }
  if (j.contains("NullTest")) {
    // x IS NOT NULL on a constant
    const json& n = j["NullTest"];
    return n.value("nulltesttype", "") == "IS_NOT_NULL" && n.contains("arg") && is_const(n["arg"]);
  }
  return false;
}

std::string relname(const json& rv) {
  if (!rv.is_object()) return {};
  const json& r = rv.contains("RangeVar") ? rv["RangeVar"] : rv;
  std::string name = r.value("relname", "");
  const std::string schema = r.value("schemaname", "");
  return schema.empty() ? name : schema + "." + name;
}

std::string first_drop_object(const json& objects) {
  if (!objects.is_array() || objects.empty()) return {};
  const json& o = objects.front();
  std::string out;
  if (o.contains("List")) {
    for (const auto& item : o["List"].value("items", json::array())) {
      if (!out.empty()) out += '.';
      out += item.value("String", json::object()).value("sval", "");
    }
  } else if (o.contains("String")) {
    out = o["String"].value("sval", "");
  }
  return out;
}

sql_statement summarise(const std::string& kind, const json& s) {
  sql_statement out;
  if (kind == "SelectStmt") {
    out.statement = s.contains("intoClause") ? "create" : "select";
  } else if (kind == "InsertStmt") {
    out.statement = "insert";
    out.table = relname(s.value("relation", json::object()));
  } else if (kind == "UpdateStmt" || kind == "DeleteStmt") {
    out.statement = kind == "UpdateStmt" ? "update" : "delete";
    out.object = "table";
    out.table = relname(s.value("relation", json::object()));
    out.has_where = s.contains("whereClause") && !always_true(s["whereClause"]);
  } else if (kind == "TruncateStmt") {
    out.statement = "truncate";
    out.object = "table";
    const json rels = s.value("relations", json::array());
    if (!rels.empty()) out.table = relname(rels.front());
  } else if (kind == "DropStmt") {
    out.statement = "drop";
    out.object = object_name(s.value("removeType", json()));
    out.table = first_drop_object(s.value("objects", json::array()));
    if (out.object == "schema") out.statement = "drop";
  } else if (kind == "DropdbStmt") {
    out.statement = "drop_database";
    out.object = "database";
    out.table = s.value("dbname", "");
  } else if (kind == "DropRoleStmt" || kind == "DropOwnedStmt" || kind == "DropTableSpaceStmt" ||
             kind == "DropSubscriptionStmt" || kind == "DropUserMappingStmt") {
    out.statement = "drop";
    out.object = kind == "DropTableSpaceStmt" ? "tablespace" : "role";
  } else if (kind == "AlterTableStmt") {
    out.statement = "alter";
    out.object = object_name(s.value("objtype", json()));
    out.table = relname(s.value("relation", json::object()));
    for (const auto& c : s.value("cmds", json::array())) {
      const std::string sub = c.value("AlterTableCmd", json::object()).value("subtype", "");
      if (sub.starts_with("AT_Drop")) {
        out.statement = "alter_drop";
        out.object = sub == "AT_DropColumn" ? "column" : "constraint";
      }
    }
  } else if (kind == "GrantStmt") {
    out.statement = s.value("is_grant", false) ? "grant" : "revoke";
    out.object = object_name(s.value("objtype", json()));
  } else if (kind == "GrantRoleStmt") {
    out.statement = s.value("is_grant", false) ? "grant" : "revoke";
    out.object = "role";
  } else if (kind == "CopyStmt") {
    if (s.value("is_program", false)) {
      out.statement = "copy_program";
      out.program = s.value("filename", "");
    } else {
      out.statement = s.value("is_from", false) ? "insert" : "select";
    }
    out.table = relname(s.value("relation", json::object()));
  } else if (kind == "DoStmt" || kind == "CreateFunctionStmt") {
    out.statement = "do";
  } else if (kind == "TransactionStmt") {
    out.statement = "transaction";
  } else if (kind == "VariableSetStmt" || kind == "VariableShowStmt" || kind == "ExplainStmt") {
    out.statement = "select";
  } else if (kind.starts_with("Create") || kind == "IndexStmt" || kind == "ViewStmt") {
    out.statement = "create";
  } else if (kind == "RenameStmt" || kind.starts_with("Alter")) {
    out.statement = "alter";
  } else {
    out.statement = "other";
  }
  return out;
}

// Splits on ';' outside quotes and comments.
std::vector<std::string> split_statements(std::string_view sql) {
  std::vector<std::string> out;
  std::string cur;
  char quote = 0;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (quote != 0) {
      cur += c;
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      while (i < sql.size() && sql[i] != '\n') ++i;
      cur += ' ';
      continue;
    }
    if (c == '\'' || c == '"' || c == '`') quote = c;
    if (c == ';') {
      out.push_back(cur);
      cur.clear();
      continue;
    }
    cur += c;
  }
  out.push_back(cur);
  std::vector<std::string> kept;
  for (auto& s : out) {
    if (s.find_first_not_of(" \t\r\n") != std::string::npos) kept.push_back(std::move(s));
  }
  return kept;
}

std::vector<std::string> words_of(std::string_view s, std::size_t max) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '`' ||
        c == '"') {
      if (c != '`' && c != '"')
        cur += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!cur.empty()) {
      out.push_back(cur);
      cur.clear();
      if (out.size() >= max) return out;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// Keyword reading of a statement the PostgreSQL grammar refused.
sql_statement by_keywords(std::string_view text) {
  sql_statement out;
  out.parsed = false;
  const auto w = words_of(text, 4096);
  if (w.empty()) {
    out.statement = "unknown";
    return out;
  }
  const std::string& k = w[0];
  auto has = [&](std::string_view word) { return std::find(w.begin(), w.end(), word) != w.end(); };
  static const char* reads[] = {"select",   "show",   "describe", "desc",   "explain",
                                "use",      "set",    "begin",    "commit", "start",
                                "rollback", "pragma", "values",   "table"};
  for (const char* r : reads) {
    if (k == r) {
      out.statement = k == "begin" || k == "commit" || k == "start" || k == "rollback"
                          ? "transaction"
                          : "select";
      return out;
    }
  }
  if (k == "with") {
    out.statement = has("delete") ? "delete" : has("update") ? "update" : "select";
    out.has_where = !(out.statement != "select") || has("where");
    return out;
  }
  if (k == "drop") {
    out.object = w.size() > 1 ? w[1] : "";
    if (out.object == "temporary" || out.object == "temp") out.object = w.size() > 2 ? w[2] : "";
    out.statement = out.object == "database" ? "drop_database" : "drop";
    std::size_t name_at = 2;
    while (name_at < w.size() &&
           (w[name_at] == "if" || w[name_at] == "exists" || w[name_at] == "table")) {
      ++name_at;
    }
    if (name_at < w.size()) out.table = w[name_at];
    return out;
  }
  if (k == "truncate") {
    out.statement = "truncate";
    out.object = "table";
    std::size_t at = w.size() > 1 && w[1] == "table" ? 2 : 1;
    if (at < w.size()) out.table = w[at];
    return out;
  }
  if (k == "delete" || k == "update") {
    out.statement = k;
    out.object = "table";
    out.has_where = has("where");
    // An always-true filter read from the words: WHERE 1 = 1, WHERE true.
    const auto where = std::find(w.begin(), w.end(), "where");
    if (where != w.end()) {
      const auto next = where + 1;
      if (next != w.end() && (*next == "true" || *next == "1")) {
        const bool eq = next + 1 != w.end() && *(next + 1) == "1";
        if (*next == "true" || eq || next + 1 == w.end()) out.has_where = false;
      }
    }
    if (k == "delete") {
      const auto from = std::find(w.begin(), w.end(), "from");
      if (from != w.end() && from + 1 != w.end()) out.table = *(from + 1);
    } else if (w.size() > 1) {
      out.table = w[1];
    }
    return out;
  }
  if (k == "alter") {
    out.statement = has("drop") ? "alter_drop" : "alter";
    out.object = w.size() > 1 ? w[1] : "";
    if (w.size() > 2) out.table = w[2];
    return out;
  }
  if (k == "grant" || k == "revoke") {
    out.statement = k;
    return out;
  }
  if (k == "insert" || k == "replace" || k == "merge" || k == "upsert") {
    out.statement = "insert";
    return out;
  }
  if (k == "create") {
    out.statement = "create";
    return out;
  }
  if (k == "flush" || k == "purge" || k == "reset" || k == "kill" || k == "shutdown") {
    out.statement = "other";
    return out;
  }
  out.statement = "unknown";
  return out;
}

}  // namespace

std::vector<sql_statement> analyze_sql(std::string_view sql) {
  std::vector<sql_statement> out;
  if (sql.find_first_not_of(" \t\r\n;") == std::string_view::npos) return out;
  const std::string text(sql);
  PgQueryParseResult r = pg_query_parse(text.c_str());
  if (r.error == nullptr && r.parse_tree != nullptr) {
    try {
      const json tree = json::parse(r.parse_tree);
      for (const auto& s : tree.value("stmts", json::array())) {
        const json& stmt = s.value("stmt", json::object());
        if (!stmt.is_object() || stmt.empty()) continue;
        const auto it = stmt.begin();
        out.push_back(summarise(it.key(), it.value()));
      }
    } catch (const json::exception&) {
      out.clear();
    }
    pg_query_free_parse_result(r);
    if (!out.empty()) return out;
  } else {
    pg_query_free_parse_result(r);
  }
  // One bad statement spoils pg_query's whole parse: try each alone, keywords as the fallback.
  for (const auto& part : split_statements(sql)) {
    PgQueryParseResult one = pg_query_parse(part.c_str());
    bool done = false;
    if (one.error == nullptr && one.parse_tree != nullptr) {
      try {
        const json tree = json::parse(one.parse_tree);
        for (const auto& s : tree.value("stmts", json::array())) {
          const json& stmt = s.value("stmt", json::object());
          if (!stmt.is_object() || stmt.empty()) continue;
          out.push_back(summarise(stmt.begin().key(), stmt.begin().value()));
          done = true;
        }
      } catch (const json::exception&) {
      }
    }
    pg_query_free_parse_result(one);
    if (!done) out.push_back(by_keywords(part));
  }
  return out;
}

bool sql_read_only(const sql_statement& s) {
  return s.statement == "select" || s.statement == "transaction";
}

}  // namespace loopwarden::destructive_action
