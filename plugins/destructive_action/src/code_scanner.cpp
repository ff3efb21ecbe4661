#include "code_scanner.hpp"

#include <re2/re2.h>

#include <cctype>
#include <memory>
#include <utility>

#include "paths.hpp"

namespace loopwarden::destructive_action {
namespace {

struct literal {
  std::size_t begin = 0;  // offset of the opening quote
  std::size_t end = 0;    // one past the closing quote
  std::string value;      // interpolations replaced by unknown_marker
  bool backtick = false;  // a command literal in perl, ruby, php
};

struct lexed {
  std::string blank;  // the code with string contents and comments replaced by spaces
  std::vector<literal> literals;
};

bool hash_comments(std::string_view lang) {
  return lang == "python" || lang == "perl" || lang == "ruby" || lang == "php" || lang == "awk";
}
bool slash_comments(std::string_view lang) {
  return lang == "node" || lang == "php" || lang == "mongo";
}

lexed lex(std::string_view lang, std::string_view code) {
  lexed out;
  out.blank.assign(code.size(), ' ');
  std::size_t i = 0;
  const std::size_t n = code.size();
  while (i < n) {
    const char c = code[i];
    if (hash_comments(lang) && c == '#' && !(lang == "perl" && i > 0 && code[i - 1] == '$')) {
      while (i < n && code[i] != '\n') ++i;
      continue;
    }
    if (slash_comments(lang) && c == '/' && i + 1 < n && code[i + 1] == '/') {
      while (i < n && code[i] != '\n') ++i;
      continue;
    }
    if (slash_comments(lang) && c == '/' && i + 1 < n && code[i + 1] == '*') {
      const auto close = code.find("*/", i + 2);
      i = close == std::string_view::npos ? n : close + 2;
      continue;
    }
    const bool backtick_lang =
        lang == "node" || lang == "perl" || lang == "ruby" || lang == "php" || lang == "mongo";
    if (c == '\'' || c == '"' || (c == '`' && backtick_lang)) {
      // Python prefixes (f, r, b, rb, ...) sit just before the quote.
      bool raw = false;
      bool fstring = false;
      if (lang == "python") {
        std::size_t p = i;
        while (p > 0 && std::isalpha(static_cast<unsigned char>(code[p - 1])) && i - p < 2) --p;
        for (std::size_t q = p; q < i; ++q) {
          const char pc = static_cast<char>(std::tolower(static_cast<unsigned char>(code[q])));
          raw = raw || pc == 'r';
          fstring = fstring || pc == 'f';
        }
      }
      literal lit;
      lit.begin = i;
      lit.backtick = c == '`' && lang != "node" && lang != "mongo";
      const bool triple = lang == "python" && i + 2 < n && code[i + 1] == c && code[i + 2] == c;
      const std::size_t qlen = triple ? 3 : 1;
      std::size_t j = i + qlen;
      const bool interpolates = (c == '"' && (lang == "perl" || lang == "ruby" || lang == "php")) ||
                                (c == '`' && lang == "node") || fstring;
      while (j < n) {
        if (code[j] == '\\' && !raw && j + 1 < n) {
          const char e = code[j + 1];
          lit.value += e == 'n' ? '\n' : e == 't' ? '\t' : e;
          j += 2;
          continue;
        }
        if (triple ? code.substr(j, 3) == code.substr(i, 3) : code[j] == c) break;
        if (interpolates) {
          if (fstring && code[j] == '{' && j + 1 < n && code[j + 1] != '{') {
            const auto close = code.find('}', j);
            lit.value += unknown_marker;
            j = close == std::string_view::npos ? n : close + 1;
            continue;
          }
          if ((lang == "node" && code[j] == '$' && j + 1 < n && code[j + 1] == '{') ||
              (lang == "ruby" && code[j] == '#' && j + 1 < n && code[j + 1] == '{')) {
            const auto close = code.find('}', j);
            lit.value += unknown_marker;
            j = close == std::string_view::npos ? n : close + 1;
            continue;
          }
          if ((lang == "perl" || lang == "php") && (code[j] == '$' || code[j] == '@') &&
              j + 1 < n &&
              (std::isalpha(static_cast<unsigned char>(code[j + 1])) || code[j + 1] == '_' ||
               code[j + 1] == '{')) {
            ++j;
            while (j < n && (std::isalnum(static_cast<unsigned char>(code[j])) || code[j] == '_' ||
                             code[j] == '{' || code[j] == '}')) {
              ++j;
            }
            lit.value += unknown_marker;
            continue;
          }
        }
        lit.value += code[j];
        ++j;
      }
      const std::size_t close_end = std::min(n, j + qlen);
      for (std::size_t q = i; q < i + qlen && q < n; ++q) out.blank[q] = c;
      for (std::size_t q = j; q < close_end; ++q) out.blank[q] = c;
      lit.end = close_end;
      out.literals.push_back(std::move(lit));
      i = close_end;
      continue;
    }
    out.blank[i] = c;
    ++i;
  }
  return out;
}

struct pattern {
  code_finding::what kind;
  std::unique_ptr<RE2> re;
  bool recursive = false;
};

std::unique_ptr<RE2> compile(std::string_view p) {
  RE2::Options o;
  o.set_log_errors(false);
  return std::make_unique<RE2>(p, o);
}

struct language_patterns {
  std::vector<pattern> list;
  void add(code_finding::what k, std::string_view re, bool recursive = false) {
    list.push_back({k, compile(re), recursive});
  }
};

using W = code_finding::what;

const language_patterns& patterns_for(std::string_view lang) {
  static const language_patterns python = [] {
    language_patterns p;
    p.add(W::delete_file, R"(\b(?:shutil\s*\.\s*)?rmtree\s*\()", true);
    p.add(W::delete_file, R"(\bos\s*\.\s*(?:remove|unlink|rmdir|removedirs)\s*\()");
    p.add(W::delete_file, R"(\.\s*(?:unlink|rmdir)\s*\()");
    p.add(W::delete_file, R"(\bsend2trash\s*\()");
    p.add(
        W::spawn,
        R"(\b(?:os\s*\.\s*(?:system|popen|exec[lv]p?e?|spawn[lv]p?e?|posix_spawnp?)|subprocess\s*\.\s*(?:run|call|check_call|check_output|Popen|getoutput|getstatusoutput)|check_output|check_call|Popen|getoutput|getstatusoutput|pty\s*\.\s*spawn|commands\s*\.\s*getoutput)\s*\()");
    p.add(W::spawn, R"(\)\s*\.\s*(?:system|popen|check_output|check_call|Popen)\s*\()");
    p.add(W::http, R"(\b(?:requests|httpx|session|client|s)\s*\.\s*(post|put|patch|delete)\s*\()");
    p.add(W::http, R"(\b(?:requests|httpx)\s*\.\s*(request)\s*\()");
    p.add(W::http, R"(\burllib\s*\.\s*request\s*\.\s*(Request)\s*\()");
    p.add(
        W::raw_network,
        R"(\b(?:socket\s*\.\s*(?:socket|create_connection)|paramiko|ftplib|smtplib|telnetlib|pexpect)\b)");
    p.add(
        W::dynamic,
        R"((?:^|[^.\w])(?:exec|eval|compile|__import__)\s*\(|\bimportlib\s*\.\s*import_module\s*\(|\b(?:marshal|pickle)\s*\.\s*loads?\s*\()");
    p.add(W::write_file, R"((?:^|[^.\w])open\s*\()");
    // Django ORM: Model.objects.all().delete(), .objects.delete() on a whole queryset.
    p.add(W::nosql_delete_all, R"(\.\s*objects\s*(?:\.\s*all\s*\(\s*\))?\s*\.\s*delete\s*\()");
    return p;
  }();
  static const language_patterns node = [] {
    language_patterns p;
    p.add(
        W::delete_file,
        R"(\bfs(?:\s*\.\s*promises)?\s*\.\s*(?:rm|rmdir|unlink|rmSync|rmdirSync|unlinkSync)\s*\()");
    p.add(W::delete_file, R"((?:^|[^.\w$])(?:rmSync|rmdirSync|unlinkSync)\s*\()");
    p.add(W::delete_file,
          R"(\.\s*(?:rmSync|rmdirSync|unlinkSync)\s*\(|\)\s*\.\s*(?:rm|rmdir|unlink)\s*\()");
    p.add(
        W::delete_file,
        R"(\b(?:rimraf(?:\s*\.\s*sync)?|rimrafSync|removeSync|emptyDirSync|fse?\s*\.\s*(?:remove|emptyDir))\s*\()",
        true);
    p.add(
        W::spawn,
        R"((?:^|[^.\w$])(?:execSync|execFileSync|spawnSync|exec|execFile|spawn|fork)\s*\(|\bchild_process\s*\.\s*\w+\s*\()");
    p.add(
        W::spawn,
        R"((?:\)|\b(?:cp|childProcess|child|proc))\s*\.\s*(?:execSync|execFileSync|spawnSync|exec|execFile|spawn|fork)\s*\()");
    p.add(W::http, R"(\b(?:fetch)\s*\()");
    p.add(W::http, R"(\b(?:axios|got|superagent|request|ky)\s*\.\s*(post|put|patch|delete)\s*\()");
    p.add(W::http, R"(\bhttps?\s*\.\s*(request)\s*\()");
    p.add(W::raw_network,
          R"(\b(?:net\s*\.\s*(?:connect|createConnection|Socket)|dgram|tls\s*\.\s*connect)\b)");
    p.add(
        W::dynamic,
        R"((?:^|[^.\w$])eval\s*\(|\bnew\s+Function\b|(?:^|[^.\w$])Function\s*\(|\brequire\s*\(\s*[^'"`\s)]|\bvm\s*\.\s*run\w*\s*\()");
    p.add(W::write_file,
          R"(\b(?:writeFileSync|writeFile|appendFileSync|appendFile|createWriteStream)\s*\()");
    return p;
  }();
  static const language_patterns perl = [] {
    language_patterns p;
    p.add(W::delete_file, R"(\b(?:rmtree|remove_tree)\b)", true);
    p.add(W::delete_file, R"((?:^|[^\w$>:])(?:unlink|rmdir)\b)");
    p.add(W::spawn, R"((?:^|[^\w$>:])(?:system|exec)\b|\bqx\b)");
    p.add(W::http, R"(->\s*(post|put|delete|patch)\s*\()");
    p.add(W::raw_network, R"(\b(?:IO::Socket|Net::(?:SSH\w*|FTP|SMTP|Telnet))\b|\bsocket\s*\()");
    p.add(W::dynamic, R"(\beval\s*(?:\(|\$|["'`]|q))");
    return p;
  }();
  static const language_patterns ruby = [] {
    language_patterns p;
    p.add(
        W::delete_file,
        R"(\bFileUtils\s*\.\s*(?:rm_rf|rm_r|remove_dir|remove_entry(?:_secure)?|rmtree)\b|\.\s*rmtree\b)",
        true);
    p.add(
        W::delete_file,
        R"(\bFileUtils\s*\.\s*(?:rm_f|rm|rmdir|remove|remove_file)\b|\bFile\s*\.\s*(?:delete|unlink)\b|\bDir\s*\.\s*(?:delete|rmdir|unlink)\b)");
    p.add(
        W::spawn,
        R"((?:^|[^\w.])(?:system|exec|spawn)\b|\bIO\s*\.\s*popen\b|\bOpen3\s*\.\s*\w+|\bProcess\s*\.\s*spawn\b|\bPTY\s*\.\s*spawn\b|%x)");
    p.add(
        W::http,
        R"(\bNet::HTTP\s*\.\s*(post|put|delete|patch)\w*|\bNet::HTTP::(Post|Put|Delete|Patch)\b|\b(?:RestClient|HTTParty|Faraday)\s*\.\s*(post|put|delete|patch)\b)");
    p.add(W::raw_network, R"(\b(?:TCPSocket|UDPSocket|Socket\s*\.\s*new|Net::SSH|Net::FTP)\b)");
    p.add(W::dynamic, R"(\b(?:eval|instance_eval|class_eval|module_eval)\b|\.\s*send\s*\()");
    // ActiveRecord: every row of a model.
    p.add(W::nosql_delete_all, R"(\.\s*(?:delete_all|destroy_all)\b)");
    p.add(W::write_file, R"(\bFile\s*\.\s*write\s*\()");
    return p;
  }();
  static const language_patterns php = [] {
    language_patterns p;
    p.add(W::delete_file, R"(\b(?:unlink|rmdir)\s*\()");
    p.add(W::spawn, R"(\b(?:system|exec|shell_exec|passthru|popen|proc_open|pcntl_exec)\s*\()");
    p.add(W::raw_network, R"(\b(?:fsockopen|socket_create|curl_exec|mail)\s*\()");
    p.add(W::dynamic, R"(\b(?:eval|assert|create_function)\s*\()");
    p.add(W::write_file, R"(\bfile_put_contents\s*\()");
    return p;
  }();
  static const language_patterns awk = [] {
    language_patterns p;
    p.add(W::spawn, R"(\bsystem\s*\()");
    p.add(W::spawn, R"(\|\s*["$]|"\s*\|\s*getline)");
    return p;
  }();
  static const language_patterns mongo = [] {
    language_patterns p;
    p.add(W::nosql_drop, R"(\.\s*(?:dropDatabase|drop|dropCollection|dropIndexes)\s*\()");
    p.add(W::nosql_delete_all,
          R"(\.\s*(?:deleteMany|remove|updateMany)\s*\(\s*(?:\{\s*\}\s*)?(?:\)|,))");
    p.add(W::dynamic, R"((?:^|[^.\w$])eval\s*\(|\bload\s*\()");
    return p;
  }();
  static const language_patterns none;
  if (lang == "python") return python;
  if (lang == "node") return node;
  if (lang == "perl") return perl;
  if (lang == "ruby") return ruby;
  if (lang == "php") return php;
  if (lang == "awk") return awk;
  if (lang == "mongo") return mongo;
  return none;
}

// The literal arguments of a call whose name ends at `pos`: inside the parentheses that follow,
// or (perl, ruby, awk without parentheses) up to the end of the statement.
struct call_args {
  std::vector<const literal*> literals;
  bool list_form = false;     // the first argument is a list ['rm', '-rf', x]
  bool concatenated = false;  // the first literal is joined with something else (+, ., %, f"")
  std::size_t begin = 0, end = 0;
};

call_args args_after(const lexed& lx, std::size_t pos) {
  call_args out;
  const std::string& b = lx.blank;
  std::size_t i = pos;
  while (i < b.size() && (b[i] == ' ' || b[i] == '\t')) ++i;
  std::size_t end;
  if (i > 0 && b[i - 1] == '(') i = i - 1;
  if (i < b.size() && b[i] == '(') {
    int depth = 0;
    end = i;
    for (; end < b.size(); ++end) {
      if (b[end] == '(') ++depth;
      if (b[end] == ')' && --depth == 0) break;
    }
  } else {
    end = b.find_first_of(";\n}", i);
    if (end == std::string::npos) end = b.size();
  }
  out.begin = i;
  out.end = end;
  for (const auto& l : lx.literals) {
    if (l.begin >= i && l.end <= end + 1) out.literals.push_back(&l);
  }
  if (!out.literals.empty()) {
    const literal* first = out.literals.front();
    // What comes right before the first literal: '[' or '(' + '[' means a list argument.
    std::size_t p = first->begin;
    while (p > i && (b[p - 1] == ' ' || b[p - 1] == '(')) --p;
    out.list_form = p > 0 && (b[p - 1] == '[' || (p == i && i < b.size() && b[i] == '['));
    std::size_t q = first->end;
    while (q < b.size() && b[q] == ' ') ++q;
    out.concatenated = q < b.size() && (b[q] == '+' || b[q] == '.' || b[q] == '%');
  }
  return out;
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::string interpreter_language(std::string_view p) {
  auto starts = [&](std::string_view s) { return p.starts_with(s); };
  if (starts("python") || p == "pypy" || p == "pypy3" || p == "ipython") return "python";
  if (p == "node" || p == "nodejs" || p == "deno" || p == "bun") return "node";
  if (starts("perl")) return "perl";
  if (starts("ruby") || p == "jruby") return "ruby";
  if (starts("php")) return "php";
  if (p == "awk" || p == "gawk" || p == "mawk" || p == "nawk") return "awk";
  if (p == "mongo" || p == "mongosh") return "mongo";
  return {};
}

std::vector<code_finding> scan_code(std::string_view language, std::string_view code) {
  std::vector<code_finding> out;
  const language_patterns& pats = patterns_for(language);
  if (pats.list.empty()) {
    code_finding f;
    f.kind = W::dynamic;
    f.api = std::string(language);
    out.push_back(std::move(f));
    return out;
  }
  const lexed lx = lex(language, code);
  for (const auto& p : pats.list) {
    re2::StringPiece input(lx.blank);
    re2::StringPiece match;
    std::size_t offset = 0;
    while (offset <= lx.blank.size() &&
           p.re->Match(input, offset, lx.blank.size(), RE2::UNANCHORED, &match, 1)) {
      const std::size_t mbeg = static_cast<std::size_t>(match.data() - lx.blank.data());
      const std::size_t mend = mbeg + match.size();
      offset = std::max(mend, mbeg + 1);
      code_finding f;
      f.kind = p.kind;
      f.recursive = p.recursive;
      f.api = std::string(match);
      while (!f.api.empty() && (f.api.back() == '(' || f.api.back() == ' ')) f.api.pop_back();
      while (!f.api.empty() && !std::isalnum(static_cast<unsigned char>(f.api.front())) &&
             f.api.front() != '_' && f.api.front() != '.' && f.api.front() != '%' &&
             f.api.front() != '|' && f.api.front() != '-') {
        f.api.erase(0, 1);
      }
      const call_args args = args_after(lx, mend);
      switch (p.kind) {
        case W::delete_file:
        case W::write_file: {
          if (f.api.starts_with(".") && args.literals.empty()) {
            // Path('x').unlink(): the path is the literal just before the call, on that line.
            const literal* before = nullptr;
            for (const auto& l : lx.literals) {
              if (l.end <= mbeg && lx.blank.find('\n', l.end) >= mbeg) before = &l;
            }
            if (before != nullptr) {
              f.argument = before->value;
              f.literal = true;
            }
          } else if (!args.literals.empty() && !args.list_form) {
            f.argument = args.literals.front()->value;
            if (args.concatenated) f.argument += unknown_marker;
            f.literal = true;
          }
          if (p.kind == W::write_file) {
            // open(path) reads unless a mode says write / append / create.
            std::string mode;
            if (args.literals.size() > 1) mode = args.literals[1]->value;
            const bool writes =
                language != "python" || mode.find_first_of("wax+") != std::string::npos;
            if (!writes) continue;
          }
          const std::string span = lx.blank.substr(args.begin, args.end - args.begin);
          if (span.find("recursive") != std::string::npos) f.recursive = true;
          break;
        }
        case W::spawn: {
          if (args.literals.empty()) break;
          if (args.list_form) {
            // subprocess.run(["rm", "-rf", path]): the literals of the list, in order.
            for (const literal* l : args.literals) {
              if (!f.argument.empty()) f.argument += ' ';
              f.argument += l->value;
            }
            // Non-literal list elements (variables) appear as text between literals.
            const std::string span = lx.blank.substr(args.begin, args.end - args.begin);
            std::size_t idents = 0;
            for (char c : span) idents += std::isalnum(static_cast<unsigned char>(c)) ? 1 : 0;
            if (idents > 0) f.argument += std::string(" ") + unknown_marker;
          } else {
            f.argument = args.literals.front()->value;
            if (args.concatenated) f.argument += unknown_marker;
          }
          f.literal = true;
          break;
        }
        case W::http: {
          std::string method;
          if (match.size() > 0) {
            // The method is the capture group when the pattern has one.
            std::string group;
            if (RE2::PartialMatch(match, *p.re, &group)) method = group;
          }
          if (method == "request" || method == "Request" || method.empty()) {
            // requests.request("DELETE", url), fetch(url, {method: "POST"}), http.request({...})
            method.clear();
            for (const literal* l : args.literals) {
              const std::string u = upper(l->value);
              if (u == "POST" || u == "PUT" || u == "PATCH" || u == "DELETE") method = u;
            }
            const std::string span = lx.blank.substr(args.begin, args.end - args.begin);
            if (method.empty() && language == "python" &&
                f.api.find("Request") != std::string::npos &&
                span.find("data") != std::string::npos) {
              method = "POST";
            }
            if (method.empty()) method = "GET";
          }
          f.method = upper(method);
          for (const literal* l : args.literals) {
            const std::string u = upper(l->value);
            if (u == "POST" || u == "PUT" || u == "PATCH" || u == "DELETE" || u == "GET") continue;
            f.argument = l->value;
            f.literal = true;
            break;
          }
          break;
        }
        default:
          break;
      }
      out.push_back(std::move(f));
    }
  }
  // Command literals: `...` in perl, ruby and php run a shell.
  for (const auto& l : lx.literals) {
    if (!l.backtick) continue;
    code_finding f;
    f.kind = W::spawn;
    f.api = "`...`";
    f.argument = l.value;
    f.literal = true;
    out.push_back(std::move(f));
  }
  // SQL handed to a driver: any literal that reads like a changing statement.
  static const RE2 sql_start(R"((?i)^\s*(?:drop|truncate|delete|update|alter|grant|revoke)\s+\w)");
  for (const auto& l : lx.literals) {
    if (RE2::PartialMatch(l.value, sql_start)) {
      code_finding f;
      f.kind = W::sql;
      f.api = "sql literal";
      f.argument = l.value;
      f.literal = true;
      out.push_back(std::move(f));
    }
  }
  return out;
}

}  // namespace loopwarden::destructive_action
