#include "shell_parser.hpp"

#include <tree_sitter/api.h>

#include <cctype>
#include <climits>
#include <cstdint>
#include <cstring>
#include <utility>

extern "C" const TSLanguage* tree_sitter_bash(void);

namespace loopwarden::destructive_action {
namespace {

using fields = std::vector<shell_word>;

bool is(TSNode n, const char* type) { return std::strcmp(ts_node_type(n), type) == 0; }

// Children with their field names, through a cursor: ts_node_field_name_for_child is unreliable
// in the 0.20 runtime (it misnames children after the first few).
std::vector<std::pair<TSNode, const char*>> children(TSNode n) {
  std::vector<std::pair<TSNode, const char*>> out;
  TSTreeCursor c = ts_tree_cursor_new(n);
  if (ts_tree_cursor_goto_first_child(&c)) {
    do {
      out.emplace_back(ts_tree_cursor_current_node(&c), ts_tree_cursor_current_field_name(&c));
    } while (ts_tree_cursor_goto_next_sibling(&c));
  }
  ts_tree_cursor_delete(&c);
  return out;
}

bool is_statement(TSNode n) {
  static constexpr const char* kinds[] = {"command",
                                          "pipeline",
                                          "list",
                                          "redirected_statement",
                                          "subshell",
                                          "compound_statement",
                                          "if_statement",
                                          "while_statement",
                                          "for_statement",
                                          "c_style_for_statement",
                                          "case_statement",
                                          "function_definition",
                                          "negated_command",
                                          "variable_assignment",
                                          "variable_assignments",
                                          "declaration_command",
                                          "unset_command",
                                          "test_command",
                                          "do_group",
                                          "else_clause",
                                          "elif_clause",
                                          "case_item",
                                          "ERROR",
                                          "program"};
  const char* t = ts_node_type(n);
  for (const char* k : kinds) {
    if (std::strcmp(t, k) == 0) return true;
  }
  return false;
}

void append_utf8(std::string& out, unsigned long cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | ((cp >> 18) & 0x07));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// $'...' with bash's escapes.
std::string decode_ansi_c(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 >= s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    switch (c) {
      case 'a':
        out += '\a';
        break;
      case 'b':
        out += '\b';
        break;
      case 'e':
      case 'E':
        out += '\x1b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'v':
        out += '\v';
        break;
      case '\\':
        out += '\\';
        break;
      case '\'':
        out += '\'';
        break;
      case '"':
        out += '"';
        break;
      case '?':
        out += '?';
        break;
      case 'c':
        if (i + 1 < s.size()) out += static_cast<char>(s[++i] & 0x1F);
        break;
      case 'x':
      case 'u':
      case 'U': {
        const std::size_t max = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        unsigned long v = 0;
        std::size_t n = 0;
        while (n < max && i + 1 < s.size() && hex_value(s[i + 1]) >= 0) {
          v = v * 16 + static_cast<unsigned long>(hex_value(s[++i]));
          ++n;
        }
        if (n == 0) {
          out += '\\';
          out += c;
        } else if (c == 'x') {
          out += static_cast<char>(v);
        } else {
          append_utf8(out, v);
        }
        break;
      }
      default:
        if (c >= '0' && c <= '7') {
          unsigned v = static_cast<unsigned>(c - '0');
          std::size_t n = 1;
          while (n < 3 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7') {
            v = v * 8 + static_cast<unsigned>(s[++i] - '0');
            ++n;
          }
          out += static_cast<char>(v & 0xFF);
        } else {
          out += '\\';
          out += c;
        }
    }
  }
  return out;
}

// Backslash removal in an unquoted word.
std::string unescape_unquoted(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      if (s[i + 1] == '\n') {
        ++i;
        continue;
      }
      out += s[++i];
    } else {
      out += s[i];
    }
  }
  return out;
}

// Backslash removal inside double quotes: only before $ ` " \ and newline.
std::string unescape_double(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char c = s[i + 1];
      if (c == '$' || c == '`' || c == '"' || c == '\\') {
        out += c;
        ++i;
        continue;
      }
      if (c == '\n') {
        ++i;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

// Splits an unquoted expansion's value on IFS white space. " a b " -> "", "a", "b", "": the empty
// ends are boundaries that concatenation uses and that are dropped from argv afterwards.
fields split_value(const shell_word& v) {
  fields out(1);
  out.back().dynamic = false;
  for (char c : v.text) {
    if (c == ' ' || c == '\t' || c == '\n') {
      if (!out.back().text.empty() || out.size() == 1) out.emplace_back();
    } else {
      out.back().text += c;
      if (c == unknown_marker) out.back().dynamic = true;
    }
  }
  for (auto& f : out) {
    f.dynamic = f.dynamic || (v.dynamic && f.text.find(unknown_marker) != std::string::npos);
    f.from_command = v.from_command;
    f.from_file = v.from_file;
  }
  return out;
}

void concat_into(fields& acc, fields next) {
  if (next.empty()) return;
  if (acc.empty()) {
    acc = std::move(next);
    return;
  }
  acc.back().text += next.front().text;
  acc.back().dynamic = acc.back().dynamic || next.front().dynamic;
  for (std::size_t i = 1; i < next.size(); ++i) acc.push_back(std::move(next[i]));
}

shell_word join_fields(const fields& f) {
  shell_word w;
  if (f.size() == 1) {
    w.from_command = f[0].from_command;
    w.from_file = f[0].from_file;
  }
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (i) w.text += ' ';
    w.text += f[i].text;
    w.dynamic = w.dynamic || f[i].dynamic;
  }
  return w;
}

// Brace expansion of one word: "a{b,c}d" -> abd, acd. Nested braces expand recursively; at
// most `limit` results (a bound on what one word can turn into).
void expand_braces(const std::string& w, std::vector<std::string>& out, std::size_t limit) {
  if (out.size() >= limit) return;
  std::size_t open = std::string::npos;
  int depth = 0;
  std::vector<std::size_t> commas;
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (w[i] == '{') {
      if (depth == 0) {
        open = i;
        commas.clear();
      }
      ++depth;
    } else if (w[i] == '}' && depth > 0) {
      if (--depth == 0 && !commas.empty()) {
        const std::string prefix = w.substr(0, open);
        const std::string suffix = w.substr(i + 1);
        std::size_t start = open + 1;
        commas.push_back(i);
        for (std::size_t c : commas) {
          expand_braces(prefix + w.substr(start, c - start) + suffix, out, limit);
          start = c + 1;
        }
        return;
      }
    } else if (w[i] == ',' && depth == 1) {
      commas.push_back(i);
    }
  }
  out.push_back(w);
}

shell_word unknown_word() { return {std::string(1, unknown_marker), true}; }

class walker {
 public:
  walker(std::string_view src, const shell_parse_options& o, shell_script& out)
      : src_(src), options_(o), out_(out), vars_(o.vars), cwd_(o.paths.cwd) {}

  void run(TSNode root) { statement(root, -1, 0); }

 private:
  std::string text(TSNode n) const {
    const std::uint32_t a = ts_node_start_byte(n);
    const std::uint32_t b = ts_node_end_byte(n);
    if (a >= src_.size() || b <= a) return {};
    return std::string(src_.substr(a, std::min<std::size_t>(b, src_.size()) - a));
  }

  bool limit(int depth) {
    if (depth > options_.max_nesting || out_.commands.size() >= options_.max_commands) {
      out_.truncated = true;
      return true;
    }
    return false;
  }

  int push(shell_command c) {
    if (out_.commands.size() >= options_.max_commands) {
      out_.truncated = true;
      return -1;
    }
    c.cwd = cwd_;
    out_.commands.push_back(std::move(c));
    return static_cast<int>(out_.commands.size()) - 1;
  }

  // Walks a statement; every simple command inside that has no upstream of its own reads
  // `upstream`. Returns the index of the last command it produced (its output), or -1.
  int statement(TSNode n, int upstream, int depth) {
    if (ts_node_is_null(n) || limit(depth)) return -1;
    const char* t = ts_node_type(n);
    if (std::strcmp(t, "ERROR") == 0 || ts_node_is_missing(n)) out_.has_error = true;
    if (std::strcmp(t, "command") == 0) return command(n, upstream, depth);
    if (std::strcmp(t, "pipeline") == 0) {
      int prev = upstream;
      const std::uint32_t count = ts_node_named_child_count(n);
      for (std::uint32_t i = 0; i < count; ++i) {
        const int last = statement(ts_node_named_child(n, i), prev, depth + 1);
        if (last >= 0) prev = last;
      }
      return prev;
    }
    if (std::strcmp(t, "redirected_statement") == 0) return redirected(n, upstream, depth);
    if (std::strcmp(t, "variable_assignment") == 0) {
      assign(n, depth);
      return -1;
    }
    if (std::strcmp(t, "declaration_command") == 0 || std::strcmp(t, "variable_assignments") == 0) {
      const std::uint32_t count = ts_node_named_child_count(n);
      for (std::uint32_t i = 0; i < count; ++i) {
        TSNode c = ts_node_named_child(n, i);
        if (is(c, "variable_assignment")) {
          assign(c, depth + 1);
        } else {
          walk_substitutions(c, depth + 1);
        }
      }
      return -1;
    }
    if (std::strcmp(t, "unset_command") == 0) {
      const std::uint32_t count = ts_node_named_child_count(n);
      for (std::uint32_t i = 0; i < count; ++i) vars_.erase(text(ts_node_named_child(n, i)));
      return -1;
    }
    if (std::strcmp(t, "function_definition") == 0) {
      TSNode name = ts_node_child_by_field_name(n, "name", 4);
      TSNode body = ts_node_child_by_field_name(n, "body", 4);
      const std::size_t first = out_.commands.size();
      statement(body, -1, depth + 1);
      // A function that calls itself in a pipeline or in the background multiplies.
      const std::string fname = text(name);
      const std::string btext = text(body);
      for (std::size_t i = first; i < out_.commands.size(); ++i) {
        const auto& w = out_.commands[i].words;
        if (!w.empty() && w[0].text == fname &&
            (btext.find('&') != std::string::npos || btext.find('|') != std::string::npos)) {
          out_.fork_bomb = true;
        }
      }
      return -1;
    }
    if (std::strcmp(t, "for_statement") == 0) return for_loop(n, upstream, depth);
    if (std::strcmp(t, "comment") == 0) return -1;
    // Everything else (lists, subshells, if/while/case, test commands, error nodes): descend.
    int last = -1;
    const std::uint32_t count = ts_node_named_child_count(n);
    for (std::uint32_t i = 0; i < count; ++i) {
      TSNode c = ts_node_named_child(n, i);
      if (is_statement(c)) {
        const int l = statement(c, upstream, depth + 1);
        if (l >= 0) last = l;
      } else {
        walk_substitutions(c, depth + 1);
      }
    }
    return last;
  }

  int for_loop(TSNode n, int upstream, int depth) {
    TSNode var = ts_node_child_by_field_name(n, "variable", 8);
    TSNode body = ts_node_child_by_field_name(n, "body", 4);
    fields values;
    bool any_value = false;
    for (const auto& [child, field] : children(n)) {
      if (field != nullptr && std::strcmp(field, "value") == 0) {
        any_value = true;
        for (auto& f : eval(child, false, depth + 1)) {
          if (!f.text.empty()) values.push_back(std::move(f));
        }
      }
    }
    const std::string name = text(var);
    int last = -1;
    // Walk the body once per value (a handful), so `for d in build /etc; do rm -rf $d` sees both.
    if (any_value && !values.empty() && values.size() <= 8) {
      for (const auto& v : values) {
        vars_[name] = v;
        last = statement(body, upstream, depth + 1);
      }
    } else {
      vars_[name] = unknown_word();
      last = statement(body, upstream, depth + 1);
    }
    return last;
  }

  void assign(TSNode n, int depth) {
    TSNode name = ts_node_child_by_field_name(n, "name", 4);
    TSNode value = ts_node_child_by_field_name(n, "value", 5);
    shell_word v;
    if (!ts_node_is_null(value)) v = join_fields(eval(value, true, depth + 1));
    vars_[text(name)] = std::move(v);
  }

  int redirected(TSNode n, int upstream, int depth) {
    TSNode body = ts_node_child_by_field_name(n, "body", 4);
    int idx = -1;
    if (!ts_node_is_null(body)) idx = statement(body, upstream, depth + 1);
    if (idx < 0) {
      shell_command empty;
      empty.text = text(n);
      empty.upstream = upstream;
      idx = push(std::move(empty));
      if (idx < 0) return -1;
    }
    int last = idx;
    for (const auto& [child, field] : children(n)) {
      if (field == nullptr || std::strcmp(field, "redirect") != 0) continue;
      const int l = redirect(child, idx, depth + 1);
      if (l >= 0) last = l;
    }
    return last;
  }

  // Applies one redirect node to command `idx`; returns the last command of a pipeline that
  // continues after a heredoc (`cat <<EOF | sh`), or -1.
  int redirect(TSNode r, int idx, int depth) {
    if (idx < 0) return -1;
    int last = -1;
    if (is(r, "file_redirect")) {
      shell_redirect red;
      TSNode dest = ts_node_child_by_field_name(r, "destination", 11);
      const std::uint32_t count = ts_node_child_count(r);
      for (std::uint32_t i = 0; i < count; ++i) {
        TSNode c = ts_node_child(r, i);
        if (is(c, "file_descriptor")) {
          red.fd = text(c);
        } else if (!ts_node_is_named(c)) {
          red.op = ts_node_type(c);
        }
      }
      if (!ts_node_is_null(dest)) red.target = join_fields(eval(dest, false, depth + 1));
      out_.commands[static_cast<std::size_t>(idx)].redirects.push_back(std::move(red));
    } else if (is(r, "herestring_redirect")) {
      const std::uint32_t count = ts_node_named_child_count(r);
      std::string body;
      bool dynamic = false;
      for (std::uint32_t i = 0; i < count; ++i) {
        shell_word w = join_fields(eval(ts_node_named_child(r, i), false, depth + 1));
        body += w.text;
        dynamic = dynamic || w.dynamic;
      }
      auto& c = out_.commands[static_cast<std::size_t>(idx)];
      c.has_stdin_text = true;
      c.stdin_text = body + "\n";
      c.stdin_dynamic = dynamic;
    } else if (is(r, "heredoc_redirect")) {
      bool quoted = false;
      bool strip_tabs = false;
      for (const auto& [c, field] : children(r)) {
        if (is(c, "heredoc_start")) {
          const std::string s = text(c);
          quoted = s.find_first_of("'\"\\") != std::string::npos;
        } else if (!ts_node_is_named(c)) {
          if (std::strcmp(ts_node_type(c), "<<-") == 0) strip_tabs = true;
        } else if (is(c, "heredoc_body")) {
          std::string body = text(c);
          if (strip_tabs) {
            std::string stripped;
            bool bol = true;
            for (char ch : body) {
              if (bol && ch == '\t') continue;
              bol = ch == '\n';
              stripped += ch;
            }
            body = std::move(stripped);
          }
          auto& cmd = out_.commands[static_cast<std::size_t>(idx)];
          cmd.has_stdin_text = true;
          cmd.stdin_text = body;
          cmd.stdin_dynamic = false;
          if (!quoted) {
            // Substitutions in an unquoted heredoc run when the shell reads it.
            const std::size_t before = out_.commands.size();
            walk_substitutions(c, depth + 1);
            out_.commands[static_cast<std::size_t>(idx)].stdin_dynamic =
                out_.commands.size() != before || body.find('$') != std::string::npos;
          }
        } else if (is(c, "file_redirect") || is(c, "herestring_redirect")) {
          redirect(c, idx, depth + 1);
        } else if (field != nullptr && std::strcmp(field, "right") == 0) {
          statement(c, -1, depth + 1);
        } else if (is(c, "pipeline")) {
          // The rest of a pipeline written after the heredoc operator: it reads this command.
          int prev = idx;
          const std::uint32_t stages = ts_node_named_child_count(c);
          for (std::uint32_t s = 0; s < stages; ++s) {
            const int l = statement(ts_node_named_child(c, s), prev, depth + 1);
            if (l >= 0) prev = l;
          }
          last = prev;
        } else if (is_statement(c)) {
          const int l = statement(c, idx, depth + 1);
          if (l >= 0) last = l;
        }
      }
    } else {
      walk_substitutions(r, depth + 1);
    }
    return last;
  }

  int command(TSNode n, int upstream, int depth) {
    shell_command c;
    c.text = text(n);
    c.upstream = upstream;
    std::vector<TSNode> redirects;
    std::uint32_t prev_end = UINT32_MAX;
    for (const auto& [ch, field] : children(n)) {
      if (is(ch, "variable_assignment")) {
        TSNode name = ts_node_child_by_field_name(ch, "name", 4);
        TSNode value = ts_node_child_by_field_name(ch, "value", 5);
        shell_word v;
        if (!ts_node_is_null(value)) v = join_fields(eval(value, true, depth + 1));
        c.assignments.emplace_back(text(name), std::move(v));
      } else if (field != nullptr && std::strcmp(field, "redirect") == 0) {
        redirects.push_back(ch);
      } else if (field != nullptr &&
                 (std::strcmp(field, "name") == 0 || std::strcmp(field, "argument") == 0)) {
        TSNode w = is(ch, "command_name") && ts_node_named_child_count(ch) > 0
                       ? ts_node_named_child(ch, 0)
                       : ch;
        const bool quoted = is(w, "string") || is(w, "raw_string") || is(w, "ansi_c_string");
        const std::string raw = text(w);
        // The grammar sometimes splits one word in two (`rm$IFS-rf$IFS/` gives "-rf$" and
        // "IFS/"): nodes with no space between them are one word, and a '$NAME' left on the
        // seam is an expansion.
        if (ts_node_start_byte(w) == prev_end && !c.words.empty() && !quoted) {
          fields merged{c.words.back()};
          c.words.pop_back();
          concat_into(merged, eval(w, false, depth + 1));
          for (auto& m : merged) {
            for (auto& f : resolve_dollars(m)) {
              if (!f.text.empty() || f.dynamic) c.words.push_back(std::move(f));
            }
          }
          prev_end = ts_node_end_byte(w);
          continue;
        }
        prev_end = ts_node_end_byte(w);
        const bool braces = !quoted && raw.find('{') != std::string::npos &&
                            raw.find(',') != std::string::npos &&
                            raw.find('}') != std::string::npos;
        for (auto& f : eval(w, false, depth + 1)) {
          if (f.text.empty() && !quoted && !f.dynamic) continue;  // unquoted empty: no word
          if (braces) {
            std::vector<std::string> expanded;
            expand_braces(f.text, expanded, 64);
            for (auto& e : expanded) c.words.push_back({std::move(e), f.dynamic, {}});
            continue;
          }
          c.words.push_back(std::move(f));
        }
      } else if (ts_node_is_named(ch) && !is(ch, "comment")) {
        walk_substitutions(ch, depth + 1);
      }
    }
    const int idx = push(std::move(c));
    if (idx < 0) return -1;
    int last = idx;
    for (TSNode r : redirects) {
      const int l = redirect(r, idx, depth + 1);
      if (l >= 0) last = l;
    }
    // cd / pushd change where later commands run.
    const auto& words = out_.commands[static_cast<std::size_t>(idx)].words;
    if (!words.empty() && (words[0].text == "cd" || words[0].text == "pushd")) {
      std::string target;
      bool have = false;
      for (std::size_t i = 1; i < words.size(); ++i) {
        if (words[i].text == "--") continue;
        if (!words[i].text.empty() && words[i].text[0] == '-' && words[i].text != "-") continue;
        target = words[i].text;
        have = true;
        break;
      }
      cwd_ = change_directory(cwd_, have ? std::string_view(target) : std::string_view(),
                              options_.paths);
    }
    return last;
  }

  // Runs the command and process substitutions found anywhere under `n`.
  void walk_substitutions(TSNode n, int depth) {
    if (ts_node_is_null(n) || limit(depth)) return;
    if (is(n, "command_substitution") || is(n, "process_substitution")) {
      substitution(n, depth);
      return;
    }
    const std::uint32_t count = ts_node_named_child_count(n);
    for (std::uint32_t i = 0; i < count; ++i)
      walk_substitutions(ts_node_named_child(n, i), depth + 1);
  }

  // Walks a substitution's commands; returns what it prints when that is knowable (echo/printf
  // of literal words), else an unknown word.
  shell_word substitution(TSNode n, int depth) {
    const std::size_t first = out_.commands.size();
    const std::string saved_cwd = cwd_;
    const std::uint32_t count = ts_node_named_child_count(n);
    for (std::uint32_t i = 0; i < count; ++i) statement(ts_node_named_child(n, i), -1, depth + 1);
    cwd_ = saved_cwd;  // a subshell's cd does not leak
    if (is(n, "process_substitution")) {
      std::string from;
      if (out_.commands.size() == first + 1 && !out_.commands[first].words.empty() &&
          !out_.commands[first].words[0].dynamic) {
        const std::string& p = out_.commands[first].words[0].text;
        from = p.substr(p.rfind('/') == std::string::npos ? 0 : p.rfind('/') + 1);
      }
      return {"/dev/fd/63", false, from};
    }
    if (out_.commands.size() == first + 1) {
      const auto& c = out_.commands[first];
      if (!c.words.empty() && (c.words[0].text == "echo" || c.words[0].text == "printf") &&
          c.redirects.empty()) {
        shell_word w;
        std::size_t start = 1;
        while (start < c.words.size() && c.words[0].text == "echo" &&
               (c.words[start].text == "-n" || c.words[start].text == "-e")) {
          ++start;
        }
        for (std::size_t i = start; i < c.words.size(); ++i) {
          if (i > start) w.text += ' ';
          w.text += c.words[i].text;
          w.dynamic = w.dynamic || c.words[i].dynamic;
        }
        return w;
      }
    }
    shell_word w = unknown_word();
    if (out_.commands.size() == first + 1 && !out_.commands[first].words.empty() &&
        !out_.commands[first].words[0].dynamic) {
      const std::string& p = out_.commands[first].words[0].text;
      w.from_command = p.substr(p.rfind('/') == std::string::npos ? 0 : p.rfind('/') + 1);
    }
    // "$(cat FILE)" / "$(< FILE)": the output is that file's text; say which file.
    if (out_.commands.size() == first + 1) {
      const auto& c = out_.commands[first];
      if (c.words.size() == 2 && w.from_command == "cat" && c.redirects.empty() &&
          !c.has_stdin_text && !c.words[1].dynamic && !c.words[1].text.empty() &&
          c.words[1].text[0] != '-') {
        w.from_file = c.words[1].text;
      } else if (c.words.empty() && c.redirects.size() == 1 && c.redirects[0].op == "<" &&
                 !c.redirects[0].target.dynamic && !c.redirects[0].target.text.empty()) {
        w.from_command = "cat";
        w.from_file = c.redirects[0].target.text;
      }
    }
    return w;
  }

  // "$NAME" and "${NAME}" left literally in a word (see command()) -> their values.
  fields resolve_dollars(const shell_word& w) {
    fields acc{{std::string(), w.dynamic}};
    const std::string& t = w.text;
    std::size_t i = 0;
    while (i < t.size()) {
      if (t[i] == '$' && i + 1 < t.size() &&
          (std::isalpha(static_cast<unsigned char>(t[i + 1])) || t[i + 1] == '_' ||
           t[i + 1] == '{')) {
        std::size_t j = i + 1;
        const bool braced = t[j] == '{';
        if (braced) ++j;
        const std::size_t name_start = j;
        while (j < t.size() && (std::isalnum(static_cast<unsigned char>(t[j])) || t[j] == '_')) ++j;
        const std::string name = t.substr(name_start, j - name_start);
        if (braced && j < t.size() && t[j] == '}') ++j;
        concat_into(acc, lookup(name, false));
        i = j;
        continue;
      }
      concat_into(acc, {{std::string(1, t[i]), false}});
      ++i;
    }
    return acc;
  }

  fields lookup(const std::string& name, bool quoted) {
    auto it = vars_.find(name);
    if (it == vars_.end()) {
      if (name == "IFS") {
        shell_word sp{" ", false};
        return quoted ? fields{sp} : split_value(sp);
      }
      if (name == "HOME") return {{"~", false}};
      if (name == "PWD" && !cwd_.empty())
        return {{cwd_, cwd_.find(unknown_marker) != std::string::npos}};
      return {unknown_word()};
    }
    if (quoted) return {it->second};
    return split_value(it->second);
  }

  fields expansion(TSNode n, bool quoted, int depth) {
    // ${NAME}, ${NAME:-word}, ${NAME-word}, ${#NAME}, ${NAME//a/b}, ${IFS%?} ...
    const std::string all = text(n);
    std::string name;
    TSNode default_value{};
    bool has_default = false;
    bool other_op = false;
    const std::uint32_t count = ts_node_child_count(n);
    for (std::uint32_t i = 0; i < count; ++i) {
      TSNode c = ts_node_child(n, i);
      if (is(c, "variable_name") || is(c, "special_variable_name")) {
        if (name.empty()) name = text(c);
      } else if (!ts_node_is_named(c)) {
        const std::string op = ts_node_type(c);
        if (op == ":-" || op == "-" || op == ":=" || op == "=") {
          has_default = true;
        } else if (op != "${" && op != "}") {
          other_op = true;
        }
      } else if (has_default && ts_node_is_null(default_value)) {
        default_value = c;
      } else {
        other_op = true;
      }
    }
    if (name == "IFS") {
      shell_word sp{" ", false};
      return quoted ? fields{sp} : split_value(sp);
    }
    if (all.size() > 2 && all[2] == '#') return {unknown_word()};
    auto it = vars_.find(name);
    if (!other_op && it != vars_.end() && !(has_default && it->second.text.empty())) {
      return lookup(name, quoted);
    }
    if (has_default && it == vars_.end() && !ts_node_is_null(default_value)) {
      // The variable is not set by the script: the default is what most runs will see.
      return eval(default_value, quoted, depth + 1);
    }
    if (!other_op && !name.empty() && !has_default) return lookup(name, quoted);
    return {unknown_word()};
  }

  // Evaluates a word-like node into the fields the shell would make of it.
  fields eval(TSNode n, bool quoted, int depth) {
    if (ts_node_is_null(n) || limit(depth)) return {unknown_word()};
    const char* t = ts_node_type(n);
    if (std::strcmp(t, "word") == 0 || std::strcmp(t, "number") == 0 ||
        std::strcmp(t, "variable_name") == 0 || std::strcmp(t, "extglob_pattern") == 0) {
      return {{quoted ? text(n) : unescape_unquoted(text(n)), false}};
    }
    if (std::strcmp(t, "raw_string") == 0) {
      std::string s = text(n);
      if (s.size() >= 2) s = s.substr(1, s.size() - 2);
      return {{s, false}};
    }
    if (std::strcmp(t, "ansi_c_string") == 0) {
      std::string s = text(n);
      if (s.size() >= 3) s = s.substr(2, s.size() - 3);
      return {{decode_ansi_c(s), false}};
    }
    if (std::strcmp(t, "string") == 0 || std::strcmp(t, "translated_string") == 0) {
      // Text between the named children is literal; children are expansions or content.
      shell_word w;
      const std::uint32_t a = ts_node_start_byte(n) + (t[0] == 't' ? 2 : 1);
      const std::uint32_t b = ts_node_end_byte(n) > a ? ts_node_end_byte(n) - 1 : a;
      std::uint32_t pos = a;
      std::string single_source;
      std::string single_file;
      const std::uint32_t count = ts_node_named_child_count(n);
      for (std::uint32_t i = 0; i < count; ++i) {
        TSNode c = ts_node_named_child(n, i);
        const std::uint32_t cs = ts_node_start_byte(c);
        if (cs > pos && cs <= src_.size()) w.text += unescape_double(src_.substr(pos, cs - pos));
        if (is(c, "string_content")) {
          w.text += unescape_double(text(c));
        } else {
          shell_word part = join_fields(eval(c, true, depth + 1));
          w.text += part.text;
          w.dynamic = w.dynamic || part.dynamic;
          single_source = part.from_command;
          single_file = part.from_file;
        }
        pos = ts_node_end_byte(c);
      }
      if (b > pos && b <= src_.size()) w.text += unescape_double(src_.substr(pos, b - pos));
      if (count == 1 && is(ts_node_named_child(n, 0), "command_substitution")) {
        w.from_command = single_source;
        w.from_file = single_file;
      }
      return {w};
    }
    if (std::strcmp(t, "concatenation") == 0) {
      fields acc;
      const std::uint32_t count = ts_node_named_child_count(n);
      std::uint32_t pos = ts_node_start_byte(n);
      for (std::uint32_t i = 0; i < count; ++i) {
        TSNode c = ts_node_named_child(n, i);
        const std::uint32_t cs = ts_node_start_byte(c);
        if (cs > pos) concat_into(acc, {{unescape_unquoted(src_.substr(pos, cs - pos)), false}});
        concat_into(acc, eval(c, quoted, depth + 1));
        pos = ts_node_end_byte(c);
      }
      const std::uint32_t end = ts_node_end_byte(n);
      if (end > pos) concat_into(acc, {{unescape_unquoted(src_.substr(pos, end - pos)), false}});
      return acc;
    }
    if (std::strcmp(t, "simple_expansion") == 0) {
      std::string name = text(n).substr(1);
      return lookup(name, quoted);
    }
    if (std::strcmp(t, "expansion") == 0) return expansion(n, quoted, depth);
    if (std::strcmp(t, "command_substitution") == 0) {
      shell_word w = substitution(n, depth);
      return quoted ? fields{w} : split_value(w);
    }
    if (std::strcmp(t, "process_substitution") == 0) return {substitution(n, depth)};
    if (std::strcmp(t, "arithmetic_expansion") == 0) {
      walk_substitutions(n, depth + 1);
      return {unknown_word()};
    }
    if (std::strcmp(t, "brace_expression") == 0) return {{text(n), false}};
    walk_substitutions(n, depth + 1);
    std::string s = text(n);
    const bool dyn = s.find('$') != std::string::npos || s.find('`') != std::string::npos;
    return {{s, dyn}};
  }

  std::string_view src_;
  const shell_parse_options& options_;
  shell_script& out_;
  std::map<std::string, shell_word, std::less<>> vars_;
  std::string cwd_;
};

}  // namespace

struct shell_parser::impl {
  TSParser* parser = nullptr;
};

shell_parser::shell_parser() : impl_(std::make_unique<impl>()) {
  impl_->parser = ts_parser_new();
  if (!ts_parser_set_language(impl_->parser, tree_sitter_bash())) {
    ts_parser_delete(impl_->parser);
    impl_->parser = nullptr;
    return;
  }
  // Bounds the work one request can cause; typical commands parse in microseconds.
  ts_parser_set_timeout_micros(impl_->parser, 50'000);
}

shell_parser::~shell_parser() {
  if (impl_->parser != nullptr) ts_parser_delete(impl_->parser);
}

shell_script shell_parser::parse(std::string_view text, const shell_parse_options& options) {
  shell_script out;
  if (impl_->parser == nullptr) {
    out.has_error = true;
    return out;
  }
  // A terminating newline: without one, the 0.20 runtime spends ~300 us at the end of input on
  // a pipeline of three or more commands (GLR stacks kept alive until EOF); with it, ~5 us. A
  // trailing newline changes nothing the shell would run.
  std::string terminated;
  if (text.empty() || text.back() != '\n') {
    terminated.reserve(text.size() + 1);
    terminated.append(text);
    terminated += '\n';
    text = terminated;
  }
  TSTree* tree = ts_parser_parse_string(impl_->parser, nullptr, text.data(),
                                        static_cast<std::uint32_t>(text.size()));
  if (tree == nullptr) {
    // The parse timed out (pathological input): nothing can be said about it.
    ts_parser_reset(impl_->parser);
    out.has_error = true;
    out.truncated = true;
    return out;
  }
  TSNode root = ts_tree_root_node(tree);
  if (ts_node_has_error(root)) out.has_error = true;
  walker(text, options, out).run(root);
  ts_tree_delete(tree);
  return out;
}

}  // namespace loopwarden::destructive_action
