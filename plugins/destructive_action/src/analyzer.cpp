#include "analyzer.hpp"

#include <algorithm>
#include <cctype>
#include <optional>
#include <utility>

#include "code_scanner.hpp"
#include "paths.hpp"
#include "sql_analyzer.hpp"
#include "url.hpp"

namespace loopwarden::destructive_action {
namespace {

using words = std::vector<shell_word>;

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string basename_of(std::string_view p) {
  while (p.size() > 1 && p.back() == '/') p.remove_suffix(1);
  const auto slash = p.rfind('/');
  return std::string(slash == std::string_view::npos ? p : p.substr(slash + 1));
}

bool in(std::string_view s, std::initializer_list<std::string_view> list) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

std::string join(const words& w, std::size_t from = 0) {
  std::string out;
  for (std::size_t i = from; i < w.size(); ++i) {
    if (i > from) out += ' ';
    out += w[i].text;
  }
  return out;
}

// Words in the order an environment name is read: "prod-eu-1" -> prod, eu, 1.
std::vector<std::string> components(std::string_view v) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : v) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      cur += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!cur.empty()) {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

bool looks_like_environment(std::string_view v) {
  for (const auto& c : components(v)) {
    if (in(c, {"prod", "production", "prd", "live", "staging", "stage", "stg", "dev", "development",
               "test", "qa", "uat", "preprod", "sandbox"})) {
      return true;
    }
  }
  return false;
}

// Options of one command line: flags (short bundles also split), positional words, values.
struct parsed_args {
  std::vector<std::string> flags;
  words positional;
  std::vector<std::pair<std::string, shell_word>> values;  // option -> value, in order
  std::size_t rest = 0;  // with stop_at_positional: index of the first positional (the command)

  bool has(std::string_view f) const {
    return std::find(flags.begin(), flags.end(), f) != flags.end();
  }
  bool has_any(std::initializer_list<std::string_view> fs) const {
    return std::any_of(fs.begin(), fs.end(), [&](std::string_view f) { return has(f); });
  }
  const shell_word* value(std::initializer_list<std::string_view> names) const {
    const shell_word* found = nullptr;
    for (const auto& [k, v] : values) {
      if (in(k, names)) found = &v;
    }
    return found;
  }
};

parsed_args parse_args(const words& args, std::size_t from, const std::set<std::string>* value_opts,
                       bool stop_at_positional) {
  parsed_args out;
  out.rest = args.size();
  auto takes_value = [&](const std::string& o) {
    return value_opts != nullptr && value_opts->count(o) > 0;
  };
  bool options_done = false;
  for (std::size_t i = from; i < args.size(); ++i) {
    const std::string& t = args[i].text;
    if (options_done || t.size() < 2 || t[0] != '-' || args[i].dynamic) {
      if (stop_at_positional) {
        out.rest = i;
        for (std::size_t j = i; j < args.size(); ++j) out.positional.push_back(args[j]);
        return out;
      }
      out.positional.push_back(args[i]);
      continue;
    }
    if (t == "--") {
      options_done = true;
      if (stop_at_positional) {
        out.rest = i + 1;
        for (std::size_t j = i + 1; j < args.size(); ++j) out.positional.push_back(args[j]);
        return out;
      }
      continue;
    }
    if (t.starts_with("--")) {
      const auto eq = t.find('=');
      if (eq != std::string::npos) {
        out.flags.push_back(t.substr(0, eq));
        out.values.emplace_back(t.substr(0, eq), shell_word{t.substr(eq + 1), args[i].dynamic});
      } else {
        out.flags.push_back(t);
        if (takes_value(t) && i + 1 < args.size()) {
          out.values.emplace_back(t, args[i + 1]);
          ++i;
        }
      }
      continue;
    }
    // Short options: "-n" with a value, "-nVALUE", or a bundle "-rf".
    if (takes_value(t)) {
      out.flags.push_back(t);
      if (i + 1 < args.size()) {
        out.values.emplace_back(t, args[i + 1]);
        ++i;
      }
      continue;
    }
    const std::string head = t.substr(0, 2);
    if (t.size() > 2 && takes_value(head)) {
      out.flags.push_back(head);
      out.values.emplace_back(head, shell_word{t.substr(2), args[i].dynamic});
      continue;
    }
    out.flags.push_back(t);
    if (t.size() > 2) {
      for (std::size_t k = 1; k < t.size(); ++k) {
        if (std::isalnum(static_cast<unsigned char>(t[k])))
          out.flags.push_back(std::string("-") + t[k]);
      }
    }
  }
  return out;
}

// What a command reads on standard input.
struct stdin_source {
  enum class kind { none, literal, network, decoded, file, unknown };
  kind from = kind::none;
  std::string text;
  std::string how;  // "base64 -d", "rev", ... when a literal was transformed on the way
};

std::string_view to_string(stdin_source::kind k) {
  switch (k) {
    case stdin_source::kind::none:
      return "none";
    case stdin_source::kind::literal:
      return "literal";
    case stdin_source::kind::network:
      return "network";
    case stdin_source::kind::decoded:
      return "decoded";
    case stdin_source::kind::file:
      return "file";
    case stdin_source::kind::unknown:
      return "unknown";
  }
  return "unknown";
}

std::optional<std::string> base64_decode(std::string_view in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=' || c == '\n' || c == '\r' || c == ' ') continue;
    const int v = val(c);
    if (v < 0) return std::nullopt;
    buffer = (buffer << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xFF);
    }
  }
  return out;
}

// Environment variables that name the environment a command acts on.
bool environment_variable(std::string_view name) {
  return in(name, {"RAILS_ENV", "RACK_ENV", "APP_ENV", "ENV", "ENVIRONMENT", "STAGE", "DEPLOY_ENV",
                   "AWS_PROFILE", "TF_WORKSPACE", "KUBECONTEXT", "TARGET_ENV",
                   "DJANGO_SETTINGS_MODULE", "SPRING_PROFILES_ACTIVE"});
}

}  // namespace

bool environment_protected(std::string_view value, const std::vector<std::string>& names) {
  if (value.empty()) return false;
  const std::string v = lower(value);
  const auto parts = components(v);
  for (const auto& n : names) {
    const std::string ln = lower(n);
    if (v == ln || glob_match(ln, v)) return true;
    if (std::find(parts.begin(), parts.end(), ln) != parts.end()) return true;
  }
  return false;
}

// One analysis: the request's context and the facts found so far.
struct analyzer::run {
  struct frame {
    path_context paths;
    std::string via;
    int depth = 0;
    std::string environment;
    std::map<std::string, shell_word, std::less<>> vars;
  };

  run(const analyzer_settings& s, shell_parser& p, const v1::ActionRequest& a)
      : settings(s), parser(p), action(a) {}

  const analyzer_settings& settings;
  shell_parser& parser;
  const v1::ActionRequest& action;
  std::vector<fact> facts;
  std::string kind;
  std::vector<std::string> allowed_hosts;
  bool full = false;
  // Files this action writes with known content (echo ... > f, cat > f <<EOF): path -> text.
  std::map<std::string, std::string> written;

  // ---------------------------------------------------------------------------------------
  // fact helpers

  fact& add(fact f, const frame& fr) {
    if (facts.size() >= settings.max_facts) {
      if (!full) {
        full = true;
        fact lim;
        lim.effect = "shell.unparseable";
        lim.attrs["reason"] = "limit";
        lim.snippet = "more than " + std::to_string(settings.max_facts) + " findings";
        facts.push_back(std::move(lim));
      }
      static fact sink;
      sink = fact();
      return sink;
    }
    f.attrs["kind"] = kind;
    if (!fr.via.empty()) f.attrs["via"] = fr.via;
    if (fr.paths.remote) f.attrs["remote"] = "true";
    if (!fr.environment.empty() && f.attrs.count("environment") == 0) {
      f.attrs["environment"] = fr.environment;
    }
    facts.push_back(std::move(f));
    return facts.back();
  }

  void unparseable(const std::string& reason, const std::string& snippet, const frame& fr) {
    fact f;
    f.effect = "shell.unparseable";
    f.attrs["reason"] = reason;
    f.snippet = snippet;
    add(std::move(f), fr);
  }

  bool is_protected_path(const resolved_path& rp, const frame& fr) const {
    std::string rel;
    const std::string& ws = !fr.paths.workspace.empty() ? fr.paths.workspace : fr.paths.cwd;
    if (!ws.empty() && rp.path.starts_with(ws + "/")) rel = rp.path.substr(ws.size() + 1);
    if (rp.path.starts_with("./")) rel = rp.path.substr(2);
    for (const auto& p : settings.protected_paths) {
      if (glob_match(p, rp.path) || (!rel.empty() && glob_match(p, rel))) return true;
    }
    return false;
  }

  // Adds a file fact for `target` (a "host:path" remote target is judged on that host).
  // Returns the fact, or nullptr when there is nothing to record (/dev/null) or no room.
  fact* file_fact(std::string effect, const shell_word& target, const std::string& operation,
                  bool recursive, const std::string& program, const std::string& snippet,
                  const frame& fr_in) {
    frame remote_frame;
    const frame* frp = &fr_in;
    shell_word t = target;
    if (auto rest = remote_part(target.text)) {
      remote_frame = fr_in;
      remote_frame.paths.remote = true;
      remote_frame.paths.cwd = std::string(1, unknown_marker);
      remote_frame.paths.workspace.clear();
      t.text = *rest;
      frp = &remote_frame;
    }
    const frame& fr = *frp;
    resolved_path rp = resolve(t.text, fr.paths);
    if (rp.where == path_class::scratch && harmless_device(rp.path)) return nullptr;
    if ((effect == "file.write" || effect == "file.chmod") &&
        std::find(fr.paths.scratch.begin(), fr.paths.scratch.end(), rp.path) !=
            fr.paths.scratch.end()) {
      rp.where = path_class::scratch;  // extracting or copying into /tmp itself
    }
    if (rp.where == path_class::device && effect != "file.chmod") effect = "disk.write";
    fact f;
    f.effect = std::move(effect);
    f.attrs["target"] = std::string(to_string(rp.where));
    f.attrs["path"] = rp.path;
    f.attrs["operation"] = operation;
    f.attrs["recursive"] = recursive ? "true" : "false";
    f.attrs["selective"] = rp.selective ? "true" : "false";
    f.attrs["protected"] = is_protected_path(rp, fr) ? "true" : "false";
    f.attrs["program"] = program;
    f.program = program;
    f.snippet = snippet;
    f.resources.push_back(rp.path);
    f.mutating = true;
    add(std::move(f), fr);
    return full ? nullptr : &facts.back();
  }

  fact* http_fact(const std::string& method, const std::string& url, bool url_known,
                  const std::string& program, const std::string& snippet, const frame& fr) {
    const parsed_url u = parse_url(url);
    fact f;
    f.effect = "http";
    f.attrs["method"] = upper(method);
    const bool known = url_known && u.known;
    f.attrs["host"] = known ? u.host : "";
    f.attrs["host_known"] = known ? "true" : "false";
    f.attrs["host_allowed"] = known && host_allowed(u.host, allowed_hosts) ? "true" : "false";
    f.attrs["url"] = url;
    f.attrs["program"] = program;
    f.program = program;
    f.snippet = snippet;
    f.mutating = !in(f.attrs["method"], {"GET", "HEAD", "OPTIONS", "TRACE"});
    if (known) f.resources.push_back(u.host);
    add(std::move(f), fr);
    return full ? nullptr : &facts.back();
  }

  void sql_facts(std::string_view sql, const std::string& database, const std::string& program,
                 const std::string& snippet, const frame& fr) {
    frame local = fr;
    if (local.environment.empty() &&
        environment_protected(database, settings.protected_environments)) {
      local.environment = database;
    }
    for (const auto& s : analyze_sql(sql)) {
      fact f;
      f.effect = "sql";
      f.attrs["statement"] = s.statement;
      f.attrs["object"] = s.object;
      f.attrs["where"] = s.has_where ? "true" : "false";
      f.attrs["table"] = s.table;
      f.attrs["database"] = database;
      f.attrs["program"] = program;
      if (!s.parsed) f.attrs["reason"] = "keywords";
      f.program = program;
      f.snippet = snippet;
      f.mutating = !sql_read_only(s);
      if (!database.empty()) f.resources.push_back("db:" + database);
      if (!s.table.empty()) f.resources.push_back("table:" + s.table);
      add(std::move(f), local);
      if (s.statement == "copy_program" && !s.program.empty()) {
        frame inner = local;
        inner.depth = fr.depth + 1;
        inner.via = via_of(fr, "COPY PROGRAM");
        inner.paths.remote = true;  // it runs on the database server
        inner.paths.cwd = std::string(1, unknown_marker);
        script(s.program, inner);
      }
    }
  }

  static std::string via_of(const frame& fr, std::string_view step) {
    return fr.via.empty() ? std::string(step) : fr.via + " > " + std::string(step);
  }

  // ---------------------------------------------------------------------------------------
  // shell

  void script(std::string_view text, const frame& fr) {
    if (fr.depth > settings.max_depth) {
      unparseable("depth", std::string(text.substr(0, 200)), fr);
      return;
    }
    if (text.size() > settings.max_command_bytes) {
      unparseable("too_large", std::string(text.substr(0, 200)), fr);
      return;
    }
    shell_parse_options o;
    o.paths = fr.paths;
    o.vars = fr.vars;
    const shell_script s = parser.parse(text, o);
    if (s.has_error || s.truncated) {
      unparseable(s.truncated ? "limit" : "syntax", std::string(text.substr(0, 200)), fr);
    }
    if (s.fork_bomb) {
      fact f;
      f.effect = "shell.fork_bomb";
      f.snippet = std::string(text.substr(0, 200));
      f.mutating = true;
      add(std::move(f), fr);
    }
    for (std::size_t i = 0; i < s.commands.size() && !full; ++i) command(s, i, fr);
  }

  void command(const shell_script& s, std::size_t i, const frame& fr) {
    const shell_command& c = s.commands[i];
    frame f = fr;
    f.paths.cwd = c.cwd;
    for (const auto& [name, value] : c.assignments) {
      if (environment_variable(name) && !value.text.empty() &&
          (looks_like_environment(value.text) ||
           environment_protected(value.text, settings.protected_environments))) {
        f.environment = value.text;
      }
    }
    const bool truncating =
        c.words.empty() || in(c.words[0].text, {":", "true"}) ||
        (c.words.size() == 2 && c.words[0].text == "cat" && c.words[1].text == "/dev/null");
    const std::string prog = c.words.empty() ? std::string() : basename_of(c.words[0].text);
    for (const auto& r : c.redirects) {
      const std::string& t = r.target.text;
      if (t.starts_with("/dev/tcp/") || t.starts_with("/dev/udp/")) {
        fact n;
        n.effect = "net.raw";
        n.attrs["path"] = t;
        n.snippet = c.text;
        n.mutating = true;
        add(std::move(n), f);
        continue;
      }
      if (r.op.empty() || r.op[0] == '<' || r.fd == "0") continue;
      if (t.empty() || t == "-" || std::all_of(t.begin(), t.end(), [](char ch) {
            return std::isdigit(static_cast<unsigned char>(ch));
          })) {
        continue;
      }
      const bool append = r.op == ">>" || r.op == "&>>";
      file_fact(truncating && !append ? "file.truncate" : "file.write", r.target,
                append       ? "append"
                : truncating ? "truncate"
                             : "overwrite",
                false, prog.empty() ? std::string("redirect") : prog, c.text, f);
    }
    remember_written(s, i, f);
    if (c.words.empty()) return;
    const stdin_source in_src = stdin_of(s, i, f, 0);
    argv(c.words, in_src, f, c.text, &s);
  }

  // echo TEXT > FILE, printf ... > FILE, cat > FILE <<EOF: remember what FILE will hold, so a
  // later `bash FILE` or `python FILE` in the same action is judged on its content.
  void remember_written(const shell_script& s, std::size_t i, const frame& f) {
    const shell_command& c = s.commands[i];
    for (const auto& r : c.redirects) {
      if (r.op != ">" && r.op != ">>" && r.op != ">|") continue;
      if (r.fd != "" && r.fd != "1") continue;
      stdin_source out = c.words.empty() ? stdin_source{} : output_of(s, i, f, 0);
      if (out.from != stdin_source::kind::literal) continue;
      const resolved_path rp = resolve(r.target.text, f.paths);
      if (written.size() < 64) {
        std::string& text = written[rp.path];
        text = r.op == ">>" ? text + out.text : out.text;
      }
    }
  }

  // What command `i` reads on its standard input.
  stdin_source stdin_of(const shell_script& s, std::size_t i, const frame& fr, int hops) {
    const shell_command& c = s.commands[i];
    stdin_source out;
    if (c.has_stdin_text) {
      out.from = stdin_source::kind::literal;
      out.text = c.stdin_text;
      return out;
    }
    for (const auto& r : c.redirects) {
      if (r.op == "<" || r.fd == "0") {
        out.from = stdin_source::kind::file;
        return out;
      }
    }
    if (c.upstream < 0 || hops > 16) return out;
    return output_of(s, static_cast<std::size_t>(c.upstream), fr, hops + 1);
  }

  // What command `i` writes on its standard output, as far as it can be known.
  stdin_source output_of(const shell_script& s, std::size_t i, const frame& fr, int hops) {
    const shell_command& c = s.commands[i];
    stdin_source out;
    out.from = stdin_source::kind::unknown;
    if (c.words.empty() || hops > 16) return out;
    std::size_t k = 0;
    while (k < c.words.size() && in(basename_of(c.words[k].text), {"sudo", "command", "exec"})) ++k;
    if (k >= c.words.size()) return out;
    const std::string p = basename_of(c.words[k].text);
    const words args(c.words.begin() + static_cast<long>(k) + 1, c.words.end());
    if (p == "echo" || p == "printf") {
      std::size_t from = 0;
      while (p == "echo" && from < args.size() &&
             in(args[from].text, {"-n", "-e", "-E", "-ne", "-en"})) {
        ++from;
      }
      std::string text;
      if (p == "printf" && from < args.size()) {
        std::string fmt = args[from].text;
        std::size_t next = from + 1;
        std::string expanded;
        for (std::size_t q = 0; q < fmt.size(); ++q) {
          if (fmt[q] == '\\' && q + 1 < fmt.size() && fmt[q + 1] == 'n') {
            expanded += '\n';
            ++q;
          } else if (fmt[q] == '%' && q + 1 < fmt.size() &&
                     (fmt[q + 1] == 's' || fmt[q + 1] == 'b')) {
            if (next < args.size()) expanded += args[next++].text;
            ++q;
          } else {
            expanded += fmt[q];
          }
        }
        text = expanded;
      } else {
        text = join(args, from);
      }
      out.from = stdin_source::kind::literal;
      out.text = text + "\n";
      return out;
    }
    if (p == "cat" || p == "tac" || p == "grep" || p == "head" || p == "tail" || p == "sort" ||
        p == "uniq" || p == "tee" || p == "cut" || p == "dos2unix") {
      bool file_args = false;
      for (const auto& a : args) {
        if (!a.text.empty() && a.text[0] != '-' && p != "tee" && p != "grep") file_args = true;
      }
      if (p == "grep") {
        std::size_t positional = 0;
        for (const auto& a : args) positional += (!a.text.empty() && a.text[0] != '-') ? 1 : 0;
        file_args = positional > 1;
      }
      if (file_args) {
        out.from = stdin_source::kind::file;
        return out;
      }
      return stdin_of(s, i, fr, hops);
    }
    if (in(p, {"curl", "wget", "fetch", "http", "https", "xh", "aria2c", "nc", "ncat", "socat",
               "lynx", "links"})) {
      out.from = stdin_source::kind::network;
      return out;
    }
    const bool decode_flag = std::any_of(args.begin(), args.end(), [](const shell_word& a) {
      return a.text == "-d" || a.text == "--decode" || a.text == "-D" || a.text == "-di";
    });
    if ((p == "base64" || p == "base32" || p == "basenc") && decode_flag) {
      stdin_source src = stdin_of(s, i, fr, hops);
      if (p == "base64" && src.from == stdin_source::kind::literal) {
        if (auto d = base64_decode(src.text)) {
          out.from = stdin_source::kind::literal;
          out.text = *d;
          out.how = "base64 -d";
          return out;
        }
      }
      out.from = stdin_source::kind::decoded;
      return out;
    }
    if (p == "rev") {
      stdin_source src = stdin_of(s, i, fr, hops);
      if (src.from == stdin_source::kind::literal) {
        std::string rev;
        std::size_t start = 0;
        while (start <= src.text.size()) {
          auto nl = src.text.find('\n', start);
          if (nl == std::string::npos) nl = src.text.size();
          std::string line = src.text.substr(start, nl - start);
          std::reverse(line.begin(), line.end());
          rev += line;
          if (nl < src.text.size()) rev += '\n';
          start = nl + 1;
        }
        out.from = stdin_source::kind::literal;
        out.text = rev;
        out.how = "rev";
        return out;
      }
      out.from = stdin_source::kind::decoded;
      return out;
    }
    if (in(p, {"xxd",   "gunzip", "zcat",     "gzip",    "bzip2",  "bzcat", "xz",
               "xzcat", "unxz",   "uudecode", "openssl", "gpg",    "tr",    "sed",
               "awk",   "perl",   "python",   "python3", "ruby",   "node",  "printf",
               "od",    "iconv",  "zstd",     "lz4",     "base58", "rot13"})) {
      out.from = stdin_source::kind::decoded;
      return out;
    }
    return out;
  }

  // Code read from standard input by a shell or interpreter: analysed when known, else a
  // shell.pipe fact saying where it comes from.
  void stdin_code(const stdin_source& in_src, const std::string& language, const std::string& step,
                  const std::string& snippet, const frame& fr) {
    if (in_src.from == stdin_source::kind::none) return;
    frame inner = fr;
    inner.depth = fr.depth + 1;
    inner.via = via_of(fr, in_src.how.empty() ? step : in_src.how + " | " + step);
    if (in_src.from == stdin_source::kind::literal) {
      if (language.empty()) {
        script(in_src.text, inner);
      } else {
        code(language, in_src.text, snippet, inner);
      }
      return;
    }
    if (in_src.from == stdin_source::kind::file && language.empty()) {
      // `sh < script.sh`, `cat setup.sh | bash`: running a file, as `bash setup.sh` would.
      return;
    }
    fact f;
    f.effect = "shell.pipe";
    f.attrs["source"] = std::string(to_string(in_src.from));
    f.attrs["language"] = language.empty() ? "shell" : language;
    f.attrs["program"] = step;
    f.snippet = snippet;
    f.mutating = true;
    add(std::move(f), fr);
  }

  // ---------------------------------------------------------------------------------------
  // inline code

  void code(const std::string& language, std::string_view text, const std::string& snippet,
            const frame& fr) {
    if (fr.depth > settings.max_depth) {
      unparseable("depth", snippet, fr);
      return;
    }
    for (const auto& finding : scan_code(language, text)) {
      if (full) return;
      frame inner = fr;
      inner.via = via_of(fr, language + " " + finding.api);
      auto code_fact = [&](const std::string& reason) {
        fact f;
        f.effect = "code";
        f.attrs["language"] = language;
        f.attrs["reason"] = reason;
        f.attrs["program"] = finding.api;
        f.program = language;
        f.snippet = snippet;
        f.mutating = true;
        add(std::move(f), inner);
      };
      using W = code_finding::what;
      switch (finding.kind) {
        case W::delete_file:
        case W::write_file: {
          shell_word target = finding.literal ? shell_word{finding.argument, false}
                                              : shell_word{std::string(1, unknown_marker), true};
          if (fact* f = file_fact(finding.kind == W::delete_file ? "file.delete" : "file.write",
                                  target, finding.kind == W::delete_file ? "delete" : "overwrite",
                                  finding.recursive, finding.api, snippet, inner)) {
            f->attrs["language"] = language;
          }
          break;
        }
        case W::spawn:
          if (finding.literal && !finding.argument.empty()) {
            frame sub = inner;
            sub.depth = fr.depth + 1;
            script(finding.argument, sub);
          } else {
            code_fact("spawn");
          }
          break;
        case W::http:
          if (!in(finding.method, {"GET", "HEAD", "OPTIONS"})) {
            if (fact* f =
                    http_fact(finding.method, finding.literal ? finding.argument : std::string(),
                              finding.literal, finding.api, snippet, inner)) {
              f->attrs["language"] = language;
            }
          }
          break;
        case W::raw_network:
          code_fact("network");
          break;
        case W::dynamic:
          code_fact("dynamic");
          break;
        case W::sql:
          sql_facts(finding.argument, "", language, snippet, inner);
          break;
        case W::nosql_drop:
        case W::nosql_delete_all: {
          fact f;
          f.effect = "sql";
          f.attrs["statement"] = finding.kind == W::nosql_drop ? "drop" : "delete";
          f.attrs["object"] = "collection";
          f.attrs["where"] = finding.kind == W::nosql_drop ? "true" : "false";
          f.attrs["language"] = language;
          f.attrs["program"] = finding.api;
          f.program = language;
          f.snippet = snippet;
          f.mutating = true;
          add(std::move(f), inner);
          break;
        }
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // one command line

  const std::set<std::string>* option_values(std::string_view program) const {
    auto it = settings.option_values.find(program);
    return it == settings.option_values.end() ? nullptr : &it->second;
  }

  // Emits the exec fact of the command that really runs.
  void exec_fact(const std::string& program, const words& args, const frame& fr,
                 const std::string& snippet) {
    const parsed_args pa = parse_args(args, 0, option_values(program), false);
    fact f;
    f.effect = "exec";
    f.program = program;
    for (const auto& a : args) f.args.push_back(a.text);
    f.flags = pa.flags;
    for (const auto& p : pa.positional) f.positional.push_back(p.text);
    f.snippet = snippet;
    f.argv_text = program;
    for (const auto& a : f.args) {
      f.argv_text += ' ';
      f.argv_text += a;
    }
    for (const auto& p : f.positional) {
      if (!f.positional_text.empty()) f.positional_text += ' ';
      f.positional_text += lower(p);
    }
    f.attrs["program"] = program;
    const bool preview = previews(args);
    if (preview) f.attrs["preview"] = "true";
    f.mutating = !preview && !read_only(program, f.positional);
    for (const auto& p : f.positional) f.resources.push_back(p);
    frame local = fr;
    const std::string env = environment_of(program, args);
    if (!env.empty()) local.environment = env;
    add(std::move(f), local);
  }

  // The shell commands a fleet tool runs on its targets, when they are written out: salt TARGET
  // cmd.run 'CMD', ansible HOSTS [-m shell|command|raw] -a 'CMD', pssh/pdsh/clush ... 'CMD', aws
  // ssm send-command --parameters commands=... Empty when the tool runs no written-out command.
  static std::vector<std::string> fleet_commands(const std::string& prog, const words& args) {
    std::vector<std::string> out;
    auto option = [&](std::initializer_list<std::string_view> names) -> const shell_word* {
      const shell_word* found = nullptr;
      for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& t = args[i].text;
        for (const auto n : names) {
          if (t == n && i + 1 < args.size()) found = &args[i + 1];
        }
      }
      return found;
    };
    auto option_text = [&](std::initializer_list<std::string_view> names) -> std::string {
      for (const auto& a : args) {
        for (const auto n : names) {
          const std::string eq = std::string(n) + "=";
          if (n.starts_with("--") && a.text.starts_with(eq)) return a.text.substr(eq.size());
        }
      }
      const shell_word* w = option(names);
      return w == nullptr ? std::string() : w->text;
    };
    if (prog == "salt" || prog == "salt-ssh") {
      for (std::size_t i = 0; i + 1 < args.size(); ++i) {
        if (in(args[i].text, {"cmd.run", "cmd.shell", "cmd.run_all", "cmd.run_stdout", "cmd.run_bg",
                              "cmd.exec_code"})) {
          out.push_back(args[i + 1].text);
        }
      }
    } else if (prog == "ansible") {
      const std::string module = option_text({"-m", "--module-name"});
      const std::string a = option_text({"-a", "--args"});
      if (!a.empty() && in(module, {"", "command", "shell", "raw", "ansible.builtin.command",
                                    "ansible.builtin.shell", "ansible.builtin.raw"})) {
        out.push_back(a);
      }
    } else if (in(prog, {"pssh", "parallel-ssh", "pdsh", "clush", "mussh"})) {
      static const std::set<std::string> fleet_opts = {
          "-h",        "-H",       "-l",           "-p",      "-o",    "-e",       "-t",
          "-O",        "-x",       "-X",           "-w",      "-g",    "-u",       "-f",
          "-R",        "--hosts",  "--host",       "--user",  "--par", "--outdir", "--errdir",
          "--timeout", "--option", "--extra-args", "--group", "-c",    "--command"};
      const parsed_args pa = parse_args(args, 0, &fleet_opts, true);
      if (const shell_word* c = pa.value({"-c", "--command"}); c != nullptr) {
        out.push_back(c->text);
      } else if (pa.rest < args.size()) {
        out.push_back(join(args, pa.rest));
      }
    } else if (prog == "aws" && std::adjacent_find(args.begin(), args.end(),
                                                   [](const shell_word& a, const shell_word& b) {
                                                     return a.text == "ssm" &&
                                                            b.text == "send-command";
                                                   }) != args.end()) {
      std::string p = option_text({"--parameters"});
      if (p.starts_with("commands=")) {
        p = p.substr(9);
        if (p.starts_with("[") && p.ends_with("]")) p = p.substr(1, p.size() - 2);
        out.push_back(p);
      } else if (const auto k = p.find("\"commands\""); k != std::string::npos) {
        // JSON: {"commands":["cmd one","cmd two"]}
        const auto open = p.find('[', k);
        const auto close = p.find(']', open == std::string::npos ? k : open);
        if (open != std::string::npos && close != std::string::npos) {
          std::string list = p.substr(open + 1, close - open - 1);
          std::size_t at = 0;
          while (at < list.size()) {
            const auto q1 = list.find('"', at);
            if (q1 == std::string::npos) break;
            const auto q2 = list.find('"', q1 + 1);
            if (q2 == std::string::npos) break;
            out.push_back(list.substr(q1 + 1, q2 - q1 - 1));
            at = q2 + 1;
          }
        }
      }
    }
    return out;
  }

  // A command line that only previews or prints help: --dry-run (kubectl's =client/=server, not
  // =none), --dryrun (aws s3), --what-if (az), --help, or Go-style -help. Only words before a
  // "--" count: after it they belong to another command.
  static bool previews(const words& args) {
    for (const auto& a : args) {
      const std::string& t = a.text;
      if (a.dynamic) continue;
      if (t == "--") return false;
      if (t == "--help" || t == "-help" || t == "--dryrun" || t == "--what-if" ||
          t == "--dry-run" || t == "--dry-run=client" || t == "--dry-run=server" ||
          t == "--dry-run=true") {
        return true;
      }
    }
    return false;
  }

  bool read_only(const std::string& program, const std::vector<std::string>& positional) const {
    for (const auto& entry : settings.read_only) {
      if (entry.empty() || entry[0] != program) continue;
      if (entry.size() == 1) return true;
      if (positional.size() + 1 >= entry.size() &&
          std::equal(entry.begin() + 1, entry.end(), positional.begin(),
                     [](const std::string& pattern, const std::string& word) {
                       return pattern == word || glob_match(pattern, word);
                     })) {
        return true;
      }
    }
    return false;
  }

  // The environment a command line names through its flags or arguments, if any.
  std::string environment_of(const std::string& program, const words& args) const {
    static const std::initializer_list<std::string_view> env_flags = {
        "--context", "--kube-context", "--cluster", "--env",        "--environment", "--stage",
        "--profile", "--project",      "--app",     "--target-env", "--namespace",   "--workspace",
        "--host",    "--hostname",     "--dbname",  "--database"};
    const bool k8s = in(program, {"kubectl", "helm", "oc", "kubens", "k9s"});
    const bool db = in(program, {"psql", "mysql", "mariadb", "pg_dump", "pg_restore", "redis-cli",
                                 "mongo", "mongosh", "heroku"});
    std::string found;
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& t = args[i].text;
      std::string flag = t;
      std::string value;
      if (const auto eq = t.find('='); t.starts_with("--") && eq != std::string::npos) {
        flag = t.substr(0, eq);
        value = t.substr(eq + 1);
      } else if (i + 1 < args.size()) {
        value = args[i + 1].text;
      }
      const bool env_flag = in(flag, env_flags) || (k8s && flag == "-n") ||
                            (db && (flag == "-h" || flag == "-a" || flag == "-d"));
      if (!env_flag || value.empty()) continue;
      if (environment_protected(value, settings.protected_environments)) return value;
      if (found.empty() && looks_like_environment(value)) found = value;
    }
    return found;
  }

  // The heart of it: unwraps wrappers and interprets one argv. `in_src` is what it reads.
  void argv(words w, stdin_source in_src, frame fr, const std::string& snippet,
            const shell_script* s) {
    for (int guard = 0; guard < 64 && !full; ++guard) {
      // Leading NAME=VALUE words (from env, or text re-parsed by eval).
      while (!w.empty() && !w[0].dynamic && w[0].text.find('=') != std::string::npos &&
             w[0].text[0] != '-' && w[0].text[0] != '=' &&
             std::all_of(
                 w[0].text.begin(), w[0].text.begin() + static_cast<long>(w[0].text.find('=')),
                 [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; })) {
        const std::string name = w[0].text.substr(0, w[0].text.find('='));
        const std::string value = w[0].text.substr(w[0].text.find('=') + 1);
        if (environment_variable(name) &&
            (looks_like_environment(value) ||
             environment_protected(value, settings.protected_environments))) {
          fr.environment = value;
        }
        w.erase(w.begin());
      }
      if (w.empty()) return;
      if (fr.depth > settings.max_depth) {
        unparseable("depth", snippet, fr);
        return;
      }
      if (w[0].dynamic) {
        fact f;
        f.effect = "shell.dynamic";
        f.attrs["reason"] = "command";
        f.snippet = snippet;
        f.mutating = true;
        add(std::move(f), fr);
        return;
      }
      const std::string prog = basename_of(w[0].text);
      const words args(w.begin() + 1, w.end());
      auto next = [&](std::size_t from) {
        w = words(args.begin() + static_cast<long>(from), args.end());
      };
      auto deeper = [&](std::string_view step) {
        fr.depth += 1;
        fr.via = via_of(fr, step);
      };

      // --- wrappers that just run the rest ---------------------------------------------
      static const std::map<std::string_view, std::set<std::string>> simple_wrappers = {
          {"sudo", {"-u",      "-g",      "-h",     "-p",           "-C",
                    "-D",      "-r",      "-t",     "-U",           "-T",
                    "--user",  "--group", "--host", "--prompt",     "--close-from",
                    "--chdir", "--role",  "--type", "--other-user", "--command-timeout"}},
          {"doas", {"-u", "-C"}},
          {"nice", {"-n", "--adjustment"}},
          {"ionice", {"-c", "-n", "--class", "--classdata"}},
          {"nohup", {}},
          {"time", {"-f", "-o", "--format", "--output"}},
          {"stdbuf", {"-i", "-o", "-e", "--input", "--output", "--error"}},
          {"setsid", {}},
          {"unbuffer", {}},
          {"caffeinate", {"-t", "-w"}},
          {"firejail", {}},
          {"proxychains", {"-f"}},
          {"proxychains4", {"-f"}},
          {"torsocks", {"-u", "-p", "-a", "-P"}},
          {"tsocks", {}},
          {"catchsegv", {}},
          {"xvfb-run", {"-n", "-s", "-f", "-e", "-p", "--server-num", "--server-args"}},
          {"dbus-run-session", {}},
          {"strace",
           {"-o", "-e", "-p", "-s", "-u", "-a", "-b", "-E", "-I", "-O", "-P", "-S", "-X"}},
          {"ltrace", {"-o", "-e", "-p", "-s", "-u", "-a", "-n", "-E"}},
          {"valgrind", {}},
          {"exec", {"-a"}},
          {"builtin", {}},
          {"noglob", {}},
          {"nocorrect", {}},
          {"sshpass", {"-p", "-f", "-d", "-P", "-e"}},
          {"chronic", {}},
          {"ts", {}},
          {"busybox", {}},
          {"rlwrap", {}},
          {"faketime", {}},
          {"ccache", {}},
          {"sg", {}},
      };
      if (auto it = simple_wrappers.find(prog); it != simple_wrappers.end()) {
        const parsed_args pa = parse_args(args, 0, &it->second, true);
        if (pa.rest >= args.size()) {
          if (prog == "sudo" && pa.has_any({"-e", "--edit"})) {
            for (const auto& p : pa.positional)
              file_fact("file.write", p, "overwrite", false, "sudoedit", snippet, fr);
          }
          exec_fact(prog, args, fr, snippet);
          return;
        }
        if (prog == "ionice" && pa.has("-p")) return exec_fact(prog, args, fr, snippet);
        // Privilege wrappers are recorded: what runs as root reaches every user's files and
        // processes, and rules may say so (via_regex).
        if (prog == "sudo" || prog == "doas") fr.via = via_of(fr, prog);
        next(pa.rest);
        continue;
      }
      if (prog == "command") {
        const parsed_args pa = parse_args(args, 0, nullptr, true);
        if (pa.has_any({"-v", "-V"}) || pa.rest >= args.size()) return;
        next(pa.rest);
        continue;
      }
      if (prog == "timeout" || prog == "chrt" || prog == "taskset" || prog == "flock" ||
          prog == "aws-vault" || prog == "direnv" || prog == "chamber" || prog == "chroot") {
        static const std::set<std::string> timeout_opts = {"-s", "-k", "--signal", "--kill-after"};
        static const std::set<std::string> flock_opts = {"-w", "-E", "--timeout",
                                                         "--conflict-exit-code"};
        const std::set<std::string>* opts = prog == "timeout" ? &timeout_opts
                                            : prog == "flock" ? &flock_opts
                                                              : nullptr;
        const parsed_args pa = parse_args(args, 0, opts, true);
        if ((prog == "chrt" || prog == "taskset") && pa.has("-p"))
          return exec_fact(prog, args, fr, snippet);
        std::size_t skip = 1;  // duration, priority, mask, lock file, root directory
        std::size_t from = pa.rest;
        if (prog == "aws-vault" || prog == "direnv" || prog == "chamber") {
          // aws-vault exec PROFILE [--] cmd; direnv exec DIR cmd; chamber exec SVC -- cmd
          if (from < args.size() && args[from].text == "exec") ++from;
          if (prog == "aws-vault" && from < args.size()) {
            if (environment_protected(args[from].text, settings.protected_environments) ||
                looks_like_environment(args[from].text)) {
              fr.environment = args[from].text;
            }
          }
        }
        if (prog == "flock") {
          static const std::set<std::string> flock_all = {
              "-w", "-E", "--timeout", "--conflict-exit-code", "-c", "--command"};
          const parsed_args all = parse_args(args, 0, &flock_all, false);
          if (const shell_word* c = all.value({"-c", "--command"})) {
            deeper("flock -c");
            script(c->text, fr);
            return;
          }
        }
        from += skip;
        while (from < args.size() && args[from].text == "--") ++from;
        if (from >= args.size()) return exec_fact(prog, args, fr, snippet);
        next(from);
        continue;
      }
      if (prog == "env") {
        std::size_t i = 0;
        for (; i < args.size(); ++i) {
          const std::string& t = args[i].text;
          if (t == "--") {
            ++i;
            break;
          }
          if (t == "-u" || t == "--unset" || t == "-C" || t == "--chdir") {
            if (t == "-C" || t == "--chdir") {
              if (i + 1 < args.size())
                fr.paths.cwd = change_directory(fr.paths.cwd, args[i + 1].text, fr.paths);
            }
            ++i;
            continue;
          }
          if (t == "-S" || t == "--split-string") {
            if (i + 1 < args.size()) {
              deeper("env -S");
              std::string text = args[i + 1].text;
              text += ' ';
              text += join(args, i + 2);
              script(text, fr);
            }
            return;
          }
          if (!t.empty() && t[0] == '-') continue;
          if (t.find('=') != std::string::npos) {
            const std::string name = t.substr(0, t.find('='));
            const std::string value = t.substr(t.find('=') + 1);
            if (environment_variable(name) &&
                (looks_like_environment(value) ||
                 environment_protected(value, settings.protected_environments))) {
              fr.environment = value;
            }
            continue;
          }
          break;
        }
        if (i >= args.size()) return;
        next(i);
        continue;
      }
      // npx / bunx / uvx and "run" launchers: the program is the package or the next word.
      if (in(prog, {"npx", "bunx", "pnpx", "uvx"}) ||
          (in(prog, {"npm", "pnpm", "yarn", "bun"}) && !args.empty() &&
           in(args[0].text, {"exec", "dlx", "x"})) ||
          (prog == "uv" && args.size() > 1 && args[0].text == "tool" && args[1].text == "run")) {
        std::size_t from = prog == "uv" ? 2 : in(prog, {"npx", "bunx", "pnpx", "uvx"}) ? 0 : 1;
        static const std::set<std::string> npx_opts = {"-p",     "--package", "-c",      "--call",
                                                       "--from", "--with",    "--python"};
        const parsed_args pa = parse_args(args, from, &npx_opts, true);
        if (const shell_word* c = pa.value({"-c", "--call"})) {
          deeper(prog + " -c");
          script(c->text, fr);
          return;
        }
        if (pa.rest >= args.size()) return exec_fact(prog, args, fr, snippet);
        // "@scope/name@1.2" -> name; "name@1.2" -> name
        std::string pkg = args[pa.rest].text;
        if (pkg.starts_with("@")) {
          const auto slash = pkg.find('/');
          pkg = slash == std::string::npos ? pkg : pkg.substr(slash + 1);
        }
        pkg = pkg.substr(0, pkg.find('@'));
        w = words(args.begin() + static_cast<long>(pa.rest), args.end());
        w[0].text = pkg;
        continue;
      }
      if ((in(prog, {"uv", "poetry", "pipenv", "pdm", "rye", "hatch", "bundle", "bundler", "conda",
                     "mamba", "micromamba", "doppler", "infisical", "op", "dotenv", "pixi", "mise",
                     "rtx", "asdf"}) &&
           !args.empty() && in(args[0].text, {"run", "exec", "--"})) ||
          prog == "dotenv") {
        static const std::set<std::string> run_opts = {
            "-n",        "--name",    "-p",          "--prefix",   "--with",
            "--python",  "--project", "--directory", "--env-file", "--extra",
            "--group",   "-e",        "--env",       "--config",   "--environment",
            "--package", "-c",        "--cwd"};
        const std::size_t from = prog == "dotenv" ? 0 : 1;
        const parsed_args pa = parse_args(args, from, &run_opts, true);
        if (pa.rest >= args.size()) return exec_fact(prog, args, fr, snippet);
        next(pa.rest);
        continue;
      }
      // --- shells ----------------------------------------------------------------------------
      if (in(prog, {"sh", "bash", "zsh", "dash", "ksh", "ash", "mksh", "fish", "tcsh", "csh",
                    "rbash", "yash", "at", "batch"})) {
        std::optional<std::string> code_text;
        bool reads_stdin = false;
        std::size_t i = 0;
        for (; i < args.size(); ++i) {
          const std::string& t = args[i].text;
          if (t == "--") {
            ++i;
            break;
          }
          if (t == "-o" || t == "+o" || t == "--rcfile" || t == "--init-file" || t == "-O") {
            ++i;
            continue;
          }
          if (t.size() > 1 && (t[0] == '-' || t[0] == '+') && t[1] != '-') {
            if (t.find('c') != std::string::npos) code_text.emplace();
            if (t.find('s') != std::string::npos) reads_stdin = true;
            continue;
          }
          if (t.starts_with("--")) continue;
          break;
        }
        if (prog == "at" || prog == "batch") {
          stdin_code(in_src, "", prog, snippet, fr);
          exec_fact(prog, args, fr, snippet);
          return;
        }
        if (code_text) {
          if (i < args.size()) {
            deeper(prog + " -c");
            if (args[i].dynamic &&
                args[i].text.find_first_not_of(unknown_marker) == std::string::npos) {
              if (!args[i].from_file.empty()) return script_from_file(args[i], prog, snippet, fr);
              if (!trusted_eval(args[i].from_command))
                substituted_code(args[i], snippet, fr, "code");
              return;
            }
            script(args[i].text, fr);
          }
          return;
        }
        if (reads_stdin || i >= args.size() || args[i].text == "-" ||
            args[i].text == "/dev/stdin") {
          stdin_code(in_src, "", prog, snippet, fr);
          return;
        }
        if (run_script_file(args[i], "", snippet, fr, prog)) return;
        // `bash script.sh`: a file the gate cannot see; judged like running it directly.
        exec_fact(prog, args, fr, snippet);
        return;
      }
      if ((prog == "source" || prog == ".") && !args.empty()) {
        if (run_script_file(args[0], "", snippet, fr, prog)) return;
        exec_fact(prog, args, fr, snippet);
        return;
      }
      // ./cleanup.sh: a script this same command line wrote a moment ago.
      if (w[0].text.find('/') != std::string::npos) {
        const resolved_path self = resolve(w[0].text, fr.paths);
        if (auto it = written.find(self.path); it != written.end()) {
          deeper(prog);
          script(it->second, fr);
          return;
        }
      }
      if (prog == "eval") {
        deeper("eval");
        words known;
        for (const auto& a : args) {
          if (!a.dynamic) {
            known.push_back(a);
            continue;
          }
          // eval "$(pyenv init -)": the output of a shell-setup tool is the usual, known case.
          if (trusted_eval(a.from_command)) continue;
          if (!a.from_file.empty() &&
              a.text.find_first_not_of(unknown_marker) == std::string::npos) {
            script_from_file(a, prog, snippet, fr);
            continue;
          }
          substituted_code(a, snippet, fr, "eval");
          if (a.text.find_first_not_of(unknown_marker) != std::string::npos) known.push_back(a);
        }
        if (!known.empty()) script(join(known), fr);
        return;
      }
      if (prog == "su") {
        static const std::set<std::string> su_opts = {"-c", "--command", "-s", "--shell",
                                                      "-g", "--group",   "-G", "-w"};
        const parsed_args pa = parse_args(args, 0, &su_opts, false);
        if (const shell_word* c = pa.value({"-c", "--command"})) {
          deeper("su -c");
          script(c->text, fr);
          return;
        }
        return exec_fact(prog, args, fr, snippet);
      }
      if (prog == "watch") {
        static const std::set<std::string> watch_opts = {"-n", "--interval", "-q", "--equexit",
                                                         "-g"};
        const parsed_args pa = parse_args(args, 0, &watch_opts, true);
        if (pa.rest >= args.size()) return;
        if (pa.has_any({"-x", "--exec"})) {
          next(pa.rest);
          continue;
        }
        deeper("watch");
        script(join(args, pa.rest), fr);
        return;
      }
      // --- remote execution --------------------------------------------------------------------
      // Fleet tools whose command is an argument: each command runs, through a shell, on every
      // machine they target, and is judged like `ssh host 'command'`.
      if (const std::vector<std::string> cmds = fleet_commands(prog, args); !cmds.empty()) {
        exec_fact(prog, args, fr, snippet);
        frame remote = fr;
        remote.paths.remote = true;
        remote.paths.cwd = std::string(1, unknown_marker);
        remote.paths.workspace.clear();
        remote.depth += 1;
        remote.via = via_of(fr, prog);
        for (const auto& c : cmds) script(c, remote);
        return;
      }
      if (prog == "ssh" || prog == "autossh" || prog == "mosh") {
        static const std::set<std::string> ssh_opts = {
            "-b", "-c", "-D", "-E", "-e", "-F", "-I", "-i", "-J", "-L", "-l",
            "-m", "-O", "-o", "-p", "-Q", "-R", "-S", "-W", "-w", "-B", "-M"};
        const parsed_args pa = parse_args(args, 0, &ssh_opts, true);
        if (pa.rest >= args.size()) return exec_fact(prog, args, fr, snippet);
        const std::string host = args[pa.rest].text;
        frame remote = fr;
        remote.paths.remote = true;
        remote.paths.cwd = std::string(1, unknown_marker);
        remote.paths.workspace.clear();
        remote.depth += 1;
        remote.via = via_of(fr, "ssh " + host);
        if (environment_protected(host, settings.protected_environments) ||
            looks_like_environment(host)) {
          remote.environment = host;
        }
        if (pa.rest + 1 >= args.size()) {
          // Interactive ssh, or a script on stdin (ssh host < script / ssh host 'bash -s').
          stdin_code(in_src, "", "ssh", snippet, remote);
          exec_fact(prog, args, fr, snippet);
          return;
        }
        script(join(args, pa.rest + 1), remote);
        return;
      }
      if ((in(prog, {"docker", "podman", "nerdctl"}) && !args.empty() &&
           in(args[0].text, {"exec", "run", "compose", "container"})) ||
          (in(prog, {"kubectl", "oc"}) && !args.empty() &&
           std::any_of(args.begin(), args.end(),
                       [](const shell_word& a) { return a.text == "exec"; }))) {
        // docker exec CONTAINER cmd / docker run IMAGE cmd / kubectl exec POD -- cmd
        const bool k8s = prog == "kubectl" || prog == "oc";
        std::size_t from = 0;
        if (k8s) {
          while (from < args.size() && args[from].text != "exec") ++from;
          ++from;
        } else {
          if (args[0].text == "compose" || args[0].text == "container") from = 1;
          if (from < args.size() && in(args[from].text, {"exec", "run"})) ++from;
        }
        exec_fact(prog, args, fr, snippet);
        static const std::set<std::string> exec_opts = {"-e",           "--env",
                                                        "--env-file",   "-u",
                                                        "--user",       "-w",
                                                        "--workdir",    "--detach-keys",
                                                        "-v",           "--volume",
                                                        "-p",           "--publish",
                                                        "--name",       "--network",
                                                        "--entrypoint", "--mount",
                                                        "-l",           "--label",
                                                        "-m",           "--memory",
                                                        "--cpus",       "--platform",
                                                        "--restart",    "-h",
                                                        "--hostname",   "--add-host",
                                                        "--device",     "--gpus",
                                                        "--ulimit",     "--log-driver",
                                                        "--shm-size",   "--cap-add",
                                                        "--cap-drop",   "--security-opt",
                                                        "--tmpfs",      "--pull",
                                                        "--runtime",    "--volumes-from",
                                                        "-n",           "--namespace",
                                                        "-c",           "--container",
                                                        "--context",    "--kubeconfig",
                                                        "--cluster",    "-f",
                                                        "--filename",   "--pod-running-timeout"};
        std::size_t cmd_at = args.size();
        for (std::size_t i = from; i < args.size(); ++i) {
          if (args[i].text == "--") {
            cmd_at = i + 1;
            break;
          }
        }
        if (cmd_at == args.size()) {
          const parsed_args pa = parse_args(args, from, &exec_opts, true);
          cmd_at = pa.rest + 1;  // after the container / image / pod
        }
        if (cmd_at >= args.size()) return;
        frame remote = fr;
        remote.paths.remote = true;
        remote.paths.cwd = std::string(1, unknown_marker);
        remote.paths.workspace.clear();
        remote.depth += 1;
        remote.via = via_of(fr, prog + " exec");
        w = words(args.begin() + static_cast<long>(cmd_at), args.end());
        fr = remote;
        in_src = stdin_source{};
        continue;
      }
      // --- fan-out ------------------------------------------------------------------------------
      if (prog == "xargs" || prog == "parallel") {
        xargs(prog, args, in_src, fr, snippet, s);
        return;
      }
      if (prog == "find" || prog == "fd" || prog == "fdfind") {
        find(prog, args, fr, snippet);
        return;
      }
      // --- interpreters ------------------------------------------------------------------------
      if (const std::string lang = interpreter_language(prog); !lang.empty()) {
        if (interpreter(prog, lang, args, in_src, fr, snippet, w)) continue;
        return;
      }
      // --- SQL typed at the shell prompt (DROP TABLE users;): no such program, clearly SQL --
      // (upper case, or followed by an SQL object word, so `truncate -s 0 f` stays a program).
      if (!args.empty() &&
          in(upper(prog), {"DROP", "TRUNCATE", "DELETE", "UPDATE", "ALTER", "GRANT", "REVOKE",
                           "INSERT", "SELECT", "CREATE"}) &&
          (upper(prog) == prog ||
           in(upper(args[0].text), {"TABLE", "DATABASE", "SCHEMA", "FROM", "INTO", "INDEX", "VIEW",
                                    "ROLE", "USER", "ALL", "ON"}))) {
        std::string sql = prog;
        for (const auto& a : args) sql += " " + a.text;
        sql_facts(sql, "", "sql", snippet, fr);
        return;
      }
      // --- crontab FILE / crontab -: replaces the whole crontab; its lines are commands -----
      if (prog == "crontab") {
        const parsed_args pa = parse_args(args, 0, option_values(prog), false);
        const bool installs = !pa.has_any({"-l", "-e", "-r", "-i"}) && !pa.positional.empty();
        if (installs && in_src.from == stdin_source::kind::literal) {
          frame inner = fr;
          inner.depth += 1;
          inner.via = via_of(fr, "crontab");
          std::size_t start = 0;
          while (start < in_src.text.size()) {
            auto nl = in_src.text.find('\n', start);
            if (nl == std::string::npos) nl = in_src.text.size();
            std::string line = in_src.text.substr(start, nl - start);
            start = nl + 1;
            // Five time fields (or @reboot, @daily ...), then the command.
            std::size_t pos = 0;
            const int fields = !line.empty() && line[0] == '@' ? 1 : 5;
            for (int k = 0; k < fields && pos != std::string::npos; ++k) {
              pos = line.find_first_not_of(" \t", pos);
              if (pos != std::string::npos) pos = line.find_first_of(" \t", pos);
            }
            if (pos != std::string::npos && line.find_first_not_of(" \t") != std::string::npos &&
                line[line.find_first_not_of(" \t")] != '#') {
              script(line.substr(pos), inner);
            }
          }
        }
        exec_fact(prog, args, fr, snippet);
        return;
      }
      // --- framework consoles that take code: rails runner CODE, manage.py shell -c CODE ----
      if ((prog == "rails" || prog == "rails.rb") && !args.empty() &&
          in(args[0].text, {"runner", "r"}) && args.size() > 1) {
        code("ruby", args[1].text, snippet, fr);
      }
      // --- everything else: what the program itself does ------------------------------------
      effects(prog, args, in_src, fr, snippet);
      exec_fact(prog, args, fr, snippet);
      return;
    }
  }

  // A script file run by a shell or interpreter (bash FILE, source FILE, python FILE): code
  // read from a process substitution (bash <(curl ...)) or a file written earlier in the same
  // command line (echo 'rm -rf ~' > x.sh && bash x.sh). Returns true when judged here.
  bool run_script_file(const shell_word& file, const std::string& language,
                       const std::string& snippet, const frame& fr, const std::string& step) {
    if (file.text.starts_with("/dev/fd/") && !file.from_command.empty()) {
      if (!trusted_eval(file.from_command)) substituted_code(file, snippet, fr, "code");
      return true;
    }
    const resolved_path rp = resolve(file.text, fr.paths);
    auto it = written.find(rp.path);
    if (it == written.end()) return false;
    frame inner = fr;
    inner.depth += 1;
    inner.via = via_of(fr, step + " " + file.text);
    if (language.empty()) {
      script(it->second, inner);
    } else {
      code(language, it->second, snippet, inner);
    }
    return true;
  }

  // sh -c "$(cat FILE)" and eval "$(cat FILE)" run FILE's text: judged like `sh FILE` / `source
  // FILE` (read when this command line wrote it, otherwise a script run by path).
  void script_from_file(const shell_word& w, const std::string& prog, const std::string& snippet,
                        const frame& fr) {
    const shell_word file{w.from_file};
    if (run_script_file(file, "", snippet, fr, prog)) return;
    exec_fact(prog, words{file}, fr, snippet);
  }

  bool trusted_eval(const std::string& program) const {
    return !program.empty() &&
           std::find(settings.trusted_eval_sources.begin(), settings.trusted_eval_sources.end(),
                     program) != settings.trusted_eval_sources.end();
  }

  // Shell code that is the output of a command substitution: downloaded (sh -c "$(curl ..)"),
  // decoded, or simply unknown.
  void substituted_code(const shell_word& w, const std::string& snippet, const frame& fr,
                        const std::string& reason) {
    const std::string& p = w.from_command;
    if (in(p, {"curl", "wget", "fetch", "http", "https", "xh"})) {
      fact f;
      f.effect = "shell.pipe";
      f.attrs["source"] = "network";
      f.attrs["language"] = "shell";
      f.attrs["program"] = p;
      f.snippet = snippet;
      f.mutating = true;
      add(std::move(f), fr);
      return;
    }
    if (in(p, {"base64", "base32", "xxd", "openssl", "gunzip", "zcat", "rev", "tr", "printf",
               "uudecode"})) {
      fact f;
      f.effect = "shell.pipe";
      f.attrs["source"] = "decoded";
      f.attrs["language"] = "shell";
      f.attrs["program"] = p;
      f.snippet = snippet;
      f.mutating = true;
      add(std::move(f), fr);
      return;
    }
    fact f;
    f.effect = "shell.dynamic";
    f.attrs["reason"] = reason;
    f.snippet = snippet;
    f.mutating = true;
    add(std::move(f), fr);
  }

  // Returns true when `w` was replaced by a command to interpret next (python -m module ...).
  bool interpreter(const std::string& prog, const std::string& lang, const words& args,
                   const stdin_source& in_src, frame& fr, const std::string& snippet, words& w) {
    std::optional<std::string> code_text;
    bool script_file = false;
    bool stdin_dash = false;
    bool inplace = false;
    std::vector<shell_word> files;
    std::size_t i = 0;
    auto take_code = [&](std::size_t at) {
      if (at < args.size()) {
        if (code_text) {
          *code_text += "\n" + args[at].text;
        } else {
          code_text = args[at].text;
        }
      }
    };
    if (lang == "awk") {
      static const std::set<std::string> awk_opts = {
          "-F", "-v", "-f", "--file", "-i", "--include", "--field-separator", "--assign"};
      const parsed_args pa = parse_args(args, 0, &awk_opts, false);
      const bool program_file = pa.value({"-f", "--file"}) != nullptr;
      const shell_word* include = pa.value({"-i", "--include"});
      inplace = include != nullptr && include->text == "inplace";
      std::size_t first_file = 0;
      if (!program_file && !pa.positional.empty()) {
        code_text = pa.positional[0].text;
        first_file = 1;
      }
      for (std::size_t k = first_file; k < pa.positional.size(); ++k)
        files.push_back(pa.positional[k]);
      if (inplace) {
        for (const auto& f : files)
          file_fact("file.write", f, "overwrite", false, prog, snippet, fr);
      }
      if (code_text) code(lang, *code_text, snippet, fr);
      exec_fact(prog, args, fr, snippet);
      return false;
    }
    if (lang == "mongo") {
      static const std::set<std::string> mongo_opts = {
          "--eval",     "--host", "--port",     "-u",
          "--username", "-p",     "--password", "--authenticationDatabase",
          "-f",         "--file"};
      const parsed_args pa = parse_args(args, 0, &mongo_opts, false);
      frame local = fr;
      for (const auto& p : pa.positional) {
        if (environment_protected(p.text, settings.protected_environments))
          local.environment = p.text;
      }
      if (const shell_word* h = pa.value({"--host"})) {
        if (environment_protected(h->text, settings.protected_environments))
          local.environment = h->text;
      }
      for (const auto& [k, v] : pa.values) {
        if (k == "--eval") code("mongo", v.text, snippet, local);
      }
      if (pa.value({"--eval"}) == nullptr && pa.value({"-f", "--file"}) == nullptr) {
        stdin_code(in_src, "mongo", prog, snippet, local);
      }
      exec_fact(prog, args, local, snippet);
      return false;
    }
    for (; i < args.size(); ++i) {
      const std::string& t = args[i].text;
      if (script_file) {
        files.push_back(args[i]);
        continue;
      }
      if (t == "--") {
        ++i;
        if (i < args.size() && !code_text) script_file = true;
        if (i < args.size()) files.push_back(args[i]);
        continue;
      }
      if (t == "-") {
        stdin_dash = true;
        script_file = true;
        continue;
      }
      if (t.size() < 2 || t[0] != '-') {
        if (code_text) {
          files.push_back(args[i]);
          continue;
        }
        script_file = true;
        files.push_back(args[i]);
        continue;
      }
      if (lang == "python") {
        if (t == "-c") {
          take_code(++i);
          script_file = true;  // what follows are the program's own arguments
          continue;
        }
        if (t.starts_with("-c")) {
          code_text = t.substr(2);
          script_file = true;
          continue;
        }
        if (t == "-m" || t.starts_with("-m")) {
          std::string module =
              t == "-m" ? (i + 1 < args.size() ? args[++i].text : "") : t.substr(2);
          // python -m pip ..., python -m twine upload ...: the module is the program.
          const std::string mod = module.substr(0, module.find('.'));
          words rest;
          rest.push_back({module == "http.server" ? "http.server" : mod, false});
          for (std::size_t k = i + 1; k < args.size(); ++k) rest.push_back(args[k]);
          w = std::move(rest);
          return true;
        }
        if (t == "-W" || t == "-X") ++i;
        continue;
      }
      if (lang == "node") {
        if (in(t, {"-e", "--eval", "-p", "--print"})) {
          take_code(++i);
          script_file = true;
          continue;
        }
        if (in(t,
               {"-r", "--require", "--input-type", "--import", "--loader", "-C", "--conditions"})) {
          ++i;
        }
        continue;
      }
      if (lang == "perl" || lang == "ruby" || lang == "php") {
        const char code_flag = lang == "php" ? 'r' : 'e';
        if (t.starts_with("--")) continue;
        // A bundle like -pi.bak -e, -lne, -pie: 'e' (or php's 'r') takes the next word.
        bool takes_next = false;
        for (std::size_t k = 1; k < t.size(); ++k) {
          const char ch = t[k];
          if (ch == 'i' && lang != "php") {
            inplace = true;
            break;  // the rest of the token is the backup suffix
          }
          if (ch == code_flag || (lang == "perl" && ch == 'E')) {
            if (k + 1 < t.size()) {
              const std::string inline_code = t.substr(k + 1);
              code_text = code_text ? *code_text + "\n" + inline_code : inline_code;
            } else {
              takes_next = true;
            }
            break;
          }
          if (ch == 'I' || ch == 'M' || ch == 'm' || ch == 'd' || ch == 'r' || ch == 'f' ||
              ch == 'C' || ch == 'x') {
            if (k + 1 == t.size() && lang != "perl") ++i;  // -r lib, -I dir
            break;
          }
        }
        if (takes_next) take_code(++i);
        continue;
      }
    }
    if (inplace) {
      for (const auto& f : files) file_fact("file.write", f, "overwrite", false, prog, snippet, fr);
    }
    // python manage.py shell -c CODE: Django runs CODE.
    if (lang == "python" && files.size() >= 3 && basename_of(files[0].text) == "manage.py" &&
        files[1].text == "shell") {
      for (std::size_t j = 2; j + 1 < files.size(); ++j) {
        if (files[j].text == "-c" || files[j].text == "--command") {
          code("python", files[j + 1].text, snippet, fr);
        }
      }
    }
    if (code_text) {
      frame inner = fr;
      inner.via = via_of(fr, prog + (lang == "php" ? " -r" : lang == "python" ? " -c" : " -e"));
      code(lang, *code_text, snippet, inner);
    } else if (script_file && !stdin_dash && !files.empty()) {
      (void)run_script_file(files[0], lang, snippet, fr, prog);
    } else if (stdin_dash || !script_file) {
      stdin_code(in_src, lang, prog, snippet, fr);
    }
    exec_fact(prog, args, fr, snippet);
    return false;
  }

  // ---------------------------------------------------------------------------------------
  // xargs / parallel and find

  // The words xargs would append, as far as its input says.
  static words items_from(const stdin_source& in_src) {
    words items;
    const std::string unknown(1, unknown_marker);
    if (in_src.from == stdin_source::kind::literal) {
      std::string cur;
      for (char c : in_src.text) {
        if (c == ' ' || c == '\n' || c == '\t') {
          if (!cur.empty()) items.push_back({cur, false});
          cur.clear();
        } else {
          cur += c;
        }
      }
      if (!cur.empty()) items.push_back({cur, false});
      return items;
    }
    items.push_back({unknown, true});
    return items;
  }

  void xargs(const std::string& prog, const words& args, const stdin_source& in_src,
             const frame& fr, const std::string& snippet, const shell_script* s) {
    static const std::set<std::string> xargs_opts = {
        "-I",          "-L",          "-l",          "-n",        "-P",         "-s",
        "-d",          "-E",          "-e",          "-a",        "--arg-file", "--max-args",
        "--max-procs", "--delimiter", "--max-lines", "--replace", "-j",         "--jobs",
        "-S",          "--sshlogin",  "--joblog",    "--results", "--delay",    "--timeout"};
    parsed_args pa = parse_args(args, 0, &xargs_opts, true);
    std::string repl;
    if (const shell_word* r = pa.value({"-I", "--replace"})) repl = r->text;
    for (const auto& f : pa.flags) {
      if (f.starts_with("-i") && f.size() > 2) repl = f.substr(2);
      if (f == "-i") repl = "{}";
    }
    words cmd(args.begin() + static_cast<long>(std::min(pa.rest, args.size())), args.end());
    words items;
    if (prog == "parallel") {
      // parallel CMD ::: a b c
      const auto sep = std::find_if(cmd.begin(), cmd.end(), [](const shell_word& x) {
        return x.text == ":::" || x.text == "::::";
      });
      if (sep != cmd.end()) {
        for (auto it = sep + 1; it != cmd.end(); ++it) {
          if (it->text != ":::") items.push_back(*it);
        }
        if (sep->text == "::::") items = {{std::string(1, unknown_marker), true}};
        cmd.erase(sep, cmd.end());
      } else {
        items = items_from(in_src);
      }
      if (repl.empty()) repl = "{}";
    } else if (pa.value({"-a", "--arg-file"}) != nullptr) {
      items = {{std::string(1, unknown_marker), true}};
    } else {
      items = items_from(in_src);
    }
    // What feeds xargs, when it is a listing: find ROOTS gives paths under ROOTS.
    if (in_src.from == stdin_source::kind::unknown && s != nullptr) {
      items = listing_items(*s, snippet, items);
    }
    if (cmd.empty()) cmd.push_back({"echo", false});
    if (items.size() > 64) items.resize(64);
    words full_cmd;
    bool replaced = false;
    for (const auto& a : cmd) {
      if (!repl.empty() && a.text.find(repl) != std::string::npos) {
        for (const auto& it : items) {
          shell_word x = a;
          std::string t = x.text;
          for (std::size_t pos = 0; (pos = t.find(repl, pos)) != std::string::npos;
               pos += it.text.size()) {
            t.replace(pos, repl.size(), it.text);
          }
          x.text = t;
          x.dynamic = x.dynamic || it.dynamic;
          full_cmd.push_back(x);
        }
        replaced = true;
      } else {
        full_cmd.push_back(a);
      }
    }
    if (!replaced) full_cmd.insert(full_cmd.end(), items.begin(), items.end());
    frame inner = fr;
    inner.depth += 1;
    inner.via = via_of(fr, prog);
    argv(full_cmd, stdin_source{}, inner, snippet, nullptr);
  }

  // For `find ROOT ... | xargs rm`: the items are paths under ROOT. Reads the pipeline's first
  // command from the snippet's script (the xargs command's upstream chain).
  static words listing_items(const shell_script& s, const std::string& snippet, words fallback) {
    // Find the xargs command in the script by its text, then walk its upstream chain.
    for (std::size_t i = 0; i < s.commands.size(); ++i) {
      if (s.commands[i].text != snippet) continue;
      int up = s.commands[i].upstream;
      int hops = 0;
      while (up >= 0 && hops++ < 16) {
        const shell_command& u = s.commands[static_cast<std::size_t>(up)];
        if (u.words.empty()) break;
        const std::string p = basename_of(u.words[0].text);
        if (p == "find") {
          words out;
          const bool filtered = find_filtered(u.words, 1);
          for (std::size_t k = 1; k < u.words.size(); ++k) {
            const std::string& t = u.words[k].text;
            if (!t.empty() && (t[0] == '-' || t == "(" || t == "!")) break;
            out.push_back({t + (filtered ? "/?*" : "/*"), u.words[k].dynamic});
          }
          if (out.empty()) out.push_back({filtered ? "./?*" : "./*", false});
          return out;
        }
        if (p == "ls") {
          words out;
          for (std::size_t k = 1; k < u.words.size(); ++k) {
            const std::string& t = u.words[k].text;
            if (!t.empty() && t[0] != '-') out.push_back({t + "/*", u.words[k].dynamic});
          }
          if (out.empty()) out.push_back({"./*", false});
          return out;
        }
        if (p == "git" || p == "grep" || p == "rg" || p == "ag" || p == "fd" || p == "fdfind" ||
            p == "locate" || p == "mlocate") {
          if (p == "locate" || p == "mlocate") return {{"/?*", false}};
          return {{"./?*", false}};
        }
        if (!in(p, {"grep", "head", "tail", "sort", "uniq", "tee", "cat", "sed", "awk", "cut", "tr",
                    "egrep", "fgrep"})) {
          break;
        }
        up = u.upstream;
      }
    }
    return fallback;
  }

  static bool find_filtered(const words& w, std::size_t from) {
    for (std::size_t k = from; k < w.size(); ++k) {
      if (in(w[k].text,
             {"-name",   "-iname",    "-path",   "-ipath",  "-wholename", "-iwholename", "-regex",
              "-iregex", "-newer",    "-mtime",  "-mmin",   "-atime",     "-amin",       "-ctime",
              "-cmin",   "-size",     "-empty",  "-user",   "-group",     "-perm",       "-links",
              "-inum",   "-samefile", "-lname",  "-ilname", "-newermt",   "-used",       "-uid",
              "-gid",    "-nouser",   "-nogroup"})) {
        return true;
      }
    }
    return false;
  }

  void find(const std::string& prog, const words& args, const frame& fr,
            const std::string& snippet) {
    if (prog != "find") {
      // fd PATTERN [PATH] -x/--exec CMD | -X/--exec-batch CMD
      std::size_t x = 0;
      for (; x < args.size(); ++x) {
        if (in(args[x].text, {"-x", "--exec", "-X", "--exec-batch"})) break;
      }
      if (x < args.size()) {
        words cmd(args.begin() + static_cast<long>(x) + 1, args.end());
        const auto semi =
            std::find_if(cmd.begin(), cmd.end(), [](const shell_word& a) { return a.text == ";"; });
        cmd.erase(semi, cmd.end());
        bool has_placeholder = false;
        for (auto& a : cmd) {
          if (a.text.find("{") != std::string::npos) {
            a.text = "./?*";
            has_placeholder = true;
          }
        }
        if (!has_placeholder) cmd.push_back({"./?*", false});
        frame inner = fr;
        inner.depth += 1;
        inner.via = via_of(fr, prog + " --exec");
        argv(cmd, stdin_source{}, inner, snippet, nullptr);
      }
      exec_fact(prog, args, fr, snippet);
      return;
    }
    words roots;
    std::size_t k = 0;
    // Leading -H -L -P -O3 -D debugopts are options before the roots.
    while (k < args.size() && in(args[k].text, {"-H", "-L", "-P"})) ++k;
    for (; k < args.size(); ++k) {
      const std::string& t = args[k].text;
      if (!t.empty() && (t[0] == '-' || t == "(" || t == "!" || t == "\\(")) break;
      roots.push_back(args[k]);
    }
    if (roots.empty()) roots.push_back({".", false});
    const bool filtered = find_filtered(args, k);
    for (std::size_t j = k; j < args.size(); ++j) {
      const std::string& t = args[j].text;
      if (t == "-delete") {
        for (const auto& r : roots) {
          shell_word target{r.text + (filtered ? "/?*" : "/*"), r.dynamic};
          file_fact("file.delete", target, "delete", true, "find", snippet, fr);
          if (!filtered) file_fact("file.delete", r, "delete", true, "find", snippet, fr);
        }
      } else if (in(t, {"-exec", "-execdir", "-ok", "-okdir"})) {
        words cmd;
        std::size_t e = j + 1;
        for (; e < args.size(); ++e) {
          if (args[e].text == ";" || args[e].text == "+") break;
          cmd.push_back(args[e]);
        }
        for (const auto& r : roots) {
          words sub;
          for (const auto& a : cmd) {
            if (a.text.find("{}") != std::string::npos) {
              shell_word x = a;
              const std::string path = r.text + (filtered ? "/?*" : "/*");
              std::string text = x.text;
              text.replace(text.find("{}"), 2, path);
              x.text = text;
              x.dynamic = x.dynamic || r.dynamic;
              sub.push_back(x);
            } else {
              sub.push_back(a);
            }
          }
          frame inner = fr;
          inner.depth += 1;
          inner.via = via_of(fr, "find " + t);
          argv(sub, stdin_source{}, inner, snippet, nullptr);
        }
        j = e;
      } else if (in(t, {"-fprint", "-fprint0", "-fprintf", "-fls"}) && j + 1 < args.size()) {
        file_fact("file.write", args[j + 1], "overwrite", false, "find", snippet, fr);
      }
    }
    exec_fact(prog, args, fr, snippet);
  }

  // ---------------------------------------------------------------------------------------
  // what ordinary programs do to files, git, databases and the network

  void effects(const std::string& prog, const words& args, const stdin_source& in_src,
               const frame& fr, const std::string& snippet) {
    const auto* opts = option_values(prog);
    const parsed_args pa = parse_args(args, 0, opts, false);
    if (in(prog, {"rm", "unlink", "shred", "srm", "wipe", "rmdir", "trash", "trash-put", "gio"})) {
      if (prog == "gio" &&
          (pa.positional.empty() || !in(pa.positional[0].text, {"remove", "trash"})))
        return;
      const bool recursive = pa.has_any({"-r", "-R", "--recursive"}) || prog == "wipe";
      const bool force = pa.has_any({"-f", "--force"});
      const std::string op =
          prog == "shred" || prog == "srm" || prog == "wipe" ? "shred" : "delete";
      if (prog == "rmdir") return;  // only empty directories
      std::size_t start = prog == "gio" ? 1 : 0;
      for (std::size_t i = start; i < pa.positional.size(); ++i) {
        if (fact* f =
                file_fact("file.delete", pa.positional[i], op, recursive, prog, snippet, fr)) {
          if (force) f->attrs["force"] = "true";
          if (pa.has("--no-preserve-root")) f->attrs["target"] = "system";
        }
      }
      return;
    }
    if (in(prog, {"mv", "cp", "install", "ln", "rsync", "scp", "ditto", "rclone"})) {
      if (prog == "rclone") {
        if (pa.positional.empty()) return;
        const std::string sub = pa.positional[0].text;
        if (in(sub, {"delete", "purge", "deletefile", "rmdir", "rmdirs", "cleanup"})) {
          for (std::size_t i = 1; i < pa.positional.size(); ++i) {
            file_fact("file.delete", pa.positional[i], "delete", sub != "deletefile", prog, snippet,
                      fr);
          }
        } else if (sub == "sync" && pa.positional.size() >= 3) {
          file_fact("file.delete", pa.positional.back(), "rsync_delete", true, prog, snippet, fr);
        }
        return;
      }
      words srcs = pa.positional;
      shell_word dest;
      if (const shell_word* t = pa.value({"-t", "--target-directory"})) {
        dest = *t;
      } else if (!srcs.empty()) {
        dest = srcs.back();
        srcs.pop_back();
      } else {
        return;
      }
      if (prog == "ln" && srcs.empty()) return;  // ln -s TARGET: a link in the cwd
      // rsync -n / --dry-run lists what it would do and changes nothing.
      if (prog == "rsync" && pa.has_any({"-n", "--dry-run"})) return;
      const shell_word& dest_path = dest;
      const resolved_path rd = resolve(dest_path.text, fr.paths);
      if (prog == "mv" && (rd.path == "/dev/null" || rd.path == "/dev/zero")) {
        for (const auto& src : srcs)
          file_fact("file.delete", src, "discard", true, prog, snippet, fr);
        return;
      }
      if (prog == "mv") {
        for (const auto& src : srcs) file_fact("file.move", src, "move", true, prog, snippet, fr);
      }
      // ln -s without -f makes a new link and never replaces a file.
      const bool creates = prog == "ln" && !pa.has_any({"-f", "--force"});
      file_fact("file.write", dest_path, creates ? "create" : "overwrite", false, prog, snippet,
                fr);
      if (prog == "rsync") {
        bool del = false;
        for (const auto& f : pa.flags) del = del || f.starts_with("--delete") || f == "--del";
        if (del) file_fact("file.delete", dest_path, "rsync_delete", true, prog, snippet, fr);
        if (pa.has("--remove-source-files")) {
          for (const auto& src : srcs)
            file_fact("file.delete", src, "delete", false, prog, snippet, fr);
        }
      }
      return;
    }
    if (prog == "dd") {
      for (const auto& a : args) {
        if (a.text.starts_with("of=")) {
          file_fact("file.write", {a.text.substr(3), a.dynamic}, "overwrite", false, prog, snippet,
                    fr);
        }
      }
      return;
    }
    if (prog.starts_with("mkfs") ||
        in(prog,
           {"mke2fs", "mkswap", "fdisk", "sfdisk", "gdisk", "sgdisk", "parted", "cfdisk", "wipefs",
            "blkdiscard", "mkdosfs", "newfs", "zpool", "cryptsetup", "badblocks"})) {
      // wipefs without -a / -o only lists the signatures it finds; with -n it erases nothing.
      if (prog == "wipefs" &&
          (!pa.has_any({"-a", "--all", "-o", "--offset"}) || pa.has_any({"-n", "--no-act"}))) {
        return;
      }
      for (const auto& p : pa.positional) {
        if (p.text.starts_with("/dev/")) {
          file_fact("disk.write", p, "format", true, prog, snippet, fr);
        }
      }
      return;
    }
    if (prog == "truncate") {
      for (const auto& p : pa.positional)
        file_fact("file.truncate", p, "truncate", false, prog, snippet, fr);
      return;
    }
    if (prog == "tee") {
      const bool append = pa.has_any({"-a", "--append"});
      for (const auto& p : pa.positional) {
        file_fact("file.write", p, append ? "append" : "overwrite", false, prog, snippet, fr);
      }
      return;
    }
    if (prog == "sed" || prog == "gsed") {
      bool inplace = false;
      for (const auto& a : args) {
        inplace = inplace || a.text.starts_with("-i") || a.text.starts_with("--in-place") ||
                  (a.text.size() > 1 && a.text[0] == '-' && a.text[1] != '-' &&
                   a.text.find('i') != std::string::npos && a.text.size() <= 4);
      }
      if (!inplace) return;
      const bool script_given = pa.value({"-e", "--expression", "-f", "--file"}) != nullptr;
      for (std::size_t i = script_given ? 0 : 1; i < pa.positional.size(); ++i) {
        file_fact("file.write", pa.positional[i], "overwrite", false, prog, snippet, fr);
      }
      return;
    }
    if (in(prog, {"chmod", "chown", "chgrp", "chattr", "setfacl", "chcon"})) {
      const bool recursive = pa.has_any({"-R", "--recursive"});
      std::size_t start = 0;
      const bool reference = std::any_of(pa.flags.begin(), pa.flags.end(),
                                         [](const std::string& f) { return f == "--reference"; });
      bool mode_as_flag = false;
      for (const auto& a : args) {
        if (a.text.size() > 1 && a.text[0] == '-' &&
            a.text.find_first_not_of("rwxXstugo", 1) == std::string::npos && a.text != "-R") {
          mode_as_flag = true;
        }
      }
      if (!reference && !mode_as_flag && prog != "chattr") start = 1;
      if (prog == "chattr" || prog == "setfacl") start = 0;
      for (std::size_t i = start; i < pa.positional.size(); ++i) {
        if (prog == "chattr" &&
            (pa.positional[i].text.starts_with("+") || pa.positional[i].text.starts_with("-")))
          continue;
        file_fact("file.chmod", pa.positional[i], "chmod", recursive, prog, snippet, fr);
      }
      return;
    }
    if (in(prog, {"touch", "mkdir", "mktemp", "mkfifo"})) {
      for (const auto& p : pa.positional) {
        if (prog == "mktemp") break;
        file_fact("file.write", p, "create", false, prog, snippet, fr);
      }
      return;
    }
    if (prog == "tar" || prog == "bsdtar" || prog == "gtar") {
      bool extract = pa.has_any({"-x", "--extract", "--get"});
      if (!args.empty() && !args[0].text.starts_with("-") &&
          args[0].text.find('x') != std::string::npos) {
        extract = true;
      }
      if (extract) {
        const shell_word* dir = pa.value({"-C", "--directory"});
        file_fact("file.write", dir != nullptr ? *dir : shell_word{".", false}, "extract", true,
                  prog, snippet, fr);
      }
      if (pa.has("--remove-files")) {
        for (const auto& p : pa.positional)
          file_fact("file.delete", p, "delete", true, prog, snippet, fr);
      }
      return;
    }
    if (prog == "unzip") {
      const shell_word* dir = pa.value({"-d"});
      if (dir != nullptr) file_fact("file.write", *dir, "extract", true, prog, snippet, fr);
      return;
    }
    if (prog == "git") return git(args, fr, snippet);
    if (in(prog, {"curl", "wget", "http", "https", "xh", "xhs", "httpie"})) {
      return http_client(prog, pa, fr, snippet);
    }
    if (prog == "gh" && !pa.positional.empty() && pa.positional[0].text == "api") {
      std::string method = "GET";
      if (const shell_word* m = pa.value({"-X", "--method"}))
        method = m->text;
      else if (pa.has_any({"-f", "-F", "--field", "--raw-field", "--input"}))
        method = "POST";
      http_fact(method, "https://api.github.com/", true, prog, snippet, fr);
      return;
    }
    // SQL clients.
    if (in(prog,
           {"psql",       "mysql",     "mariadb", "sqlite3",      "sqlite", "clickhouse-client",
            "clickhouse", "cockroach", "duckdb",  "snowsql",      "bq",     "sqlcmd",
            "mycli",      "pgcli",     "usql",    "trino",        "presto", "sqlplus",
            "vsql",       "spark-sql", "beeline", "impala-shell", "cqlsh"})) {
      return sql_client(prog, pa, in_src, fr, snippet);
    }
  }

  // "host:path" (scp, rsync, rclone remotes): the path part, on another machine.
  static std::optional<std::string> remote_part(const std::string& p) {
    const auto colon = p.find(':');
    const auto slash = p.find('/');
    if (colon == std::string::npos || colon == 0 || (slash != std::string::npos && slash < colon) ||
        p.starts_with("./") || p.find(unknown_marker) < colon) {
      return std::nullopt;
    }
    std::string rest = p.substr(colon + 1);
    if (rest.starts_with("//")) return std::nullopt;  // a URL, not host:path
    if (rest.empty()) rest = ".";
    return rest;
  }

  void git(const words& args, frame fr, const std::string& snippet) {
    // Global options before the subcommand.
    std::size_t i = 0;
    while (i < args.size()) {
      const std::string& t = args[i].text;
      if (t == "-C" && i + 1 < args.size()) {
        fr.paths.cwd = change_directory(fr.paths.cwd, args[i + 1].text, fr.paths);
        i += 2;
      } else if ((t == "-c" || t == "--git-dir" || t == "--work-tree" || t == "--namespace" ||
                  t == "--exec-path" || t == "--config-env") &&
                 i + 1 < args.size()) {
        i += 2;
      } else if (t.starts_with("-")) {
        ++i;
      } else {
        break;
      }
    }
    if (i >= args.size()) return;
    const std::string sub = args[i].text;
    const words rest(args.begin() + static_cast<long>(i) + 1, args.end());
    if (sub == "push") return git_push(rest, fr, snippet);
    if (sub == "submodule" && !rest.empty() && rest[0].text == "foreach") {
      // git submodule foreach [--recursive] CMD: CMD runs (through a shell) in each submodule.
      std::size_t k = 1;
      while (k < rest.size() && rest[k].text.starts_with("-")) ++k;
      if (k < rest.size()) {
        frame inner = fr;
        inner.depth += 1;
        inner.via = via_of(fr, "git submodule foreach");
        script(join(rest, k), inner);
      }
      return;
    }
    if (sub == "clean") {
      const parsed_args pa = parse_args(rest, 0, nullptr, false);
      const bool force = pa.has_any({"-f", "--force"});
      const bool dry = pa.has_any({"-n", "--dry-run"});
      if (force && !dry) {
        // What it removes: untracked files under the pathspecs (default: the cwd).
        words targets = pa.positional;
        if (targets.empty()) targets.push_back({".", false});
        for (const auto& t : targets) {
          shell_word p{t.text + "/?*", t.dynamic};
          file_fact("file.delete", p, "git_clean", pa.has("-d") || pa.has("-x"), "git", snippet,
                    fr);
        }
      }
    }
  }

  void git_push(const words& args, const frame& fr, const std::string& snippet) {
    static const std::set<std::string> push_opts = {"-o", "--push-option", "--repo",
                                                    "--receive-pack", "--exec"};
    const parsed_args pa = parse_args(args, 0, &push_opts, false);
    if (pa.has_any({"-n", "--dry-run"})) return;  // reports what it would push, pushes nothing
    // "lease": --force-with-lease, which refuses to overwrite work it has not seen.
    const bool hard_force = pa.has_any({"-f", "--force"});
    const bool lease = pa.has_any({"--force-with-lease", "--force-if-includes"});
    bool force = hard_force || lease;
    const bool mirror = pa.has("--mirror") || (pa.has("--all") && force);
    const bool delete_all = pa.has_any({"-d", "--delete"});
    const bool prune = pa.has("--prune");
    std::vector<std::pair<std::string, std::pair<bool, bool>>> dests;  // branch, (force, delete)
    for (std::size_t k = 1; k < pa.positional.size(); ++k) {
      std::string ref = pa.positional[k].text;
      bool ref_force = force;
      bool ref_delete = delete_all;
      if (ref.starts_with("+")) {
        ref_force = true;
        ref = ref.substr(1);
      }
      std::string dst = ref;
      if (const auto colon = ref.find(':'); colon != std::string::npos) {
        dst = ref.substr(colon + 1);
        if (colon == 0) ref_delete = true;
      }
      if (dst.starts_with("refs/heads/")) dst = dst.substr(11);
      if (dst == "HEAD" || dst == "@") dst.clear();
      dests.push_back({dst, {ref_force, ref_delete}});
    }
    if (dests.empty()) dests.push_back({"", {force, delete_all}});
    for (const auto& [branch, how] : dests) {
      fact f;
      f.effect = "git.push";
      f.program = "git";
      f.snippet = snippet;
      f.attrs["program"] = "git";
      f.attrs["branch"] = branch;
      std::string prot = "unknown";
      if (!branch.empty()) {
        prot = "false";
        for (const auto& p : settings.protected_branches) {
          if (glob_match(p, branch)) prot = "true";
        }
      }
      if (mirror) prot = "true";
      f.attrs["branch_protected"] = prot;
      f.attrs["force"] = !how.first                                     ? "false"
                         : (lease && !hard_force && how.first == force) ? "lease"
                                                                        : "true";
      f.attrs["delete"] = how.second || prune ? "true" : "false";
      f.attrs["mirror"] = mirror ? "true" : "false";
      f.resources.push_back("branch:" + branch);
      f.mutating = true;
      add(std::move(f), fr);
    }
  }

  void http_client(const std::string& prog, const parsed_args& pa, const frame& fr,
                   const std::string& snippet) {
    std::string method;
    std::vector<shell_word> urls;
    bool url_known = true;
    if (prog == "curl") {
      if (const shell_word* m = pa.value({"-X", "--request"})) method = m->text;
      if (method.empty()) {
        if (pa.has_any({"-T", "--upload-file"}))
          method = "PUT";
        else if (pa.has_any({"-d", "--data", "--data-raw", "--data-binary", "--data-urlencode",
                             "--data-ascii", "-F", "--form", "--form-string", "--json"}) &&
                 !pa.has_any({"-G", "--get"})) {
          method = "POST";
        } else if (pa.has_any({"-I", "--head"})) {
          method = "HEAD";
        } else {
          method = "GET";
        }
      }
      for (const auto& [k, v] : pa.values) {
        if (k == "--url") urls.push_back(v);
        if (k == "-o" || k == "--output") {
          file_fact("file.write", v, "overwrite", false, prog, snippet, fr);
        }
      }
      if (pa.has_any({"-K", "--config", "--resolve", "--connect-to"})) url_known = false;
      for (const auto& p : pa.positional) urls.push_back(p);
    } else if (prog == "wget") {
      method = "GET";
      if (const shell_word* m = pa.value({"--method"}))
        method = m->text;
      else if (pa.has_any({"--post-data", "--post-file", "--body-data", "--body-file"}))
        method = "POST";
      if (pa.has_any({"-i", "--input-file"})) url_known = false;
      if (const shell_word* o = pa.value({"-O", "--output-document"})) {
        if (o->text != "-") file_fact("file.write", *o, "overwrite", false, prog, snippet, fr);
      }
      for (const auto& p : pa.positional) urls.push_back(p);
    } else {
      // httpie / xh: [METHOD] URL [items]
      std::size_t k = 0;
      if (k < pa.positional.size()) {
        const std::string& first = pa.positional[k].text;
        if (!first.empty() && std::all_of(first.begin(), first.end(), [](char c) {
              return std::isupper(static_cast<unsigned char>(c));
            })) {
          method = first;
          ++k;
        }
      }
      if (k < pa.positional.size()) urls.push_back(pa.positional[k++]);
      bool items = false;
      for (; k < pa.positional.size(); ++k) {
        const std::string& t = pa.positional[k].text;
        if (t.find('=') != std::string::npos || t.find('@') != std::string::npos) items = true;
      }
      if (method.empty()) method = items || pa.has_any({"-f", "--form"}) ? "POST" : "GET";
      for (auto& u : urls) {
        if (u.text.starts_with(":")) u.text = "localhost" + u.text;
      }
    }
    if (urls.empty()) {
      if (!in(upper(method), {"GET", "HEAD"})) http_fact(method, "", false, prog, snippet, fr);
      return;
    }
    for (const auto& u : urls) {
      http_fact(method, u.text, url_known && !u.dynamic, prog, snippet, fr);
    }
  }

  void sql_client(const std::string& prog, const parsed_args& pa, const stdin_source& in_src,
                  const frame& fr, const std::string& snippet) {
    std::vector<std::string> statements;
    std::string database;
    bool from_file = false;
    if (const shell_word* d = pa.value({"-d", "--dbname", "-D", "--database"})) database = d->text;
    for (const auto& [k, v] : pa.values) {
      if (in(k, {"-c", "--command", "-e", "--execute", "-q", "--query", "-Q", "--sql"})) {
        statements.push_back(v.text);
      }
      if (in(k, {"-f", "--file", "-i", "--input"})) from_file = true;
      if (in(k, {"-h", "--host"}) && database.empty()) database = v.text;
    }
    if (prog == "sqlite3" || prog == "sqlite" || prog == "duckdb") {
      if (!pa.positional.empty()) database = pa.positional[0].text;
      for (std::size_t i = 1; i < pa.positional.size(); ++i)
        statements.push_back(pa.positional[i].text);
    } else if (prog == "bq") {
      if (!pa.positional.empty() && pa.positional[0].text == "query") {
        for (std::size_t i = 1; i < pa.positional.size(); ++i)
          statements.push_back(pa.positional[i].text);
      }
    } else if (prog != "cockroach" && database.empty() && !pa.positional.empty()) {
      database = pa.positional[0].text;
    }
    const std::string step = prog;
    if (statements.empty() && !from_file) {
      if (in_src.from == stdin_source::kind::literal) {
        statements.push_back(in_src.text);
      }
    }
    for (const auto& sql : statements) {
      if (sql.starts_with("\\") || sql.starts_with(".")) continue;  // psql / sqlite meta-commands
      frame inner = fr;
      inner.via = via_of(fr, step);
      sql_facts(sql, database, prog, snippet, inner);
    }
  }

  // ---------------------------------------------------------------------------------------
  // scope

  void scope_facts(const frame& fr) {
    const auto& scope = action.scope();
    std::string environment = action.environment();
    bool mutating = false;
    for (const auto& f : facts) {
      if (!f.mutating) continue;
      mutating = true;
      if (environment.empty() && !f.attr("environment").empty())
        environment = f.attr("environment");
    }
    if (!mutating) return;
    if (!environment.empty()) {
      const bool prot = environment_protected(environment, settings.protected_environments);
      bool declared = scope.environments_size() == 0;
      for (const auto& e : scope.environments())
        declared = declared || lower(e) == lower(environment);
      if (prot || !declared) {
        fact f;
        f.effect = "scope.environment";
        f.attrs["environment"] = environment;
        f.attrs["environment_protected"] = prot ? "true" : "false";
        f.attrs["in_scope"] = declared ? "true" : "false";
        f.snippet = action.command().substr(0, 200);
        f.mutating = true;
        add(std::move(f), fr);
      }
    }
    // The scope facts are added after the loop: add() appends to `facts`, which may move every
    // fact the loop still reads (a use-after-free the fuzzer found).
    std::vector<fact> found;
    std::set<std::string> seen;
    for (const fact& f : facts) {
      if (!f.mutating || f.effect == "exec" || f.effect.starts_with("scope.")) continue;
      for (const auto& r : f.resources) {
        if (r.empty() || seen.count(r)) continue;
        bool shared = false;
        for (const auto& g : settings.shared_resources) shared = shared || glob_match(g, r);
        bool in_scope = true;
        if (!shared && scope.resources_size() > 0 && f.effect != "http") {
          const std::string target = f.attr("target");
          const bool local = target == "inside" || target == "scratch";
          if (!local) {
            in_scope = false;
            for (const auto& g : scope.resources())
              in_scope = in_scope || glob_match(g, r) || r == g;
          }
        }
        if (!shared && in_scope) continue;
        seen.insert(r);
        fact s;
        s.effect = "scope.resource";
        s.attrs["resource"] = r;
        s.attrs["shared"] = shared ? "true" : "false";
        s.attrs["in_scope"] = in_scope ? "true" : "false";
        s.snippet = f.snippet;
        s.mutating = true;
        found.push_back(std::move(s));
      }
    }
    for (auto& s : found) add(std::move(s), fr);
  }
};

analyzer::analyzer(analyzer_settings settings) : settings_(std::move(settings)) {
  for (auto& s : settings_.scratch_paths) {
    if (!s.starts_with("~/")) s = normalize_absolute(s);
  }
}

analyzer::~analyzer() = default;

std::vector<fact> analyzer::analyze(const v1::ActionRequest& action) {
  run r(settings_, parser_, action);
  run::frame fr;
  std::string ws = action.scope().workspace_root();
  if (ws.empty()) ws = settings_.default_workspace;
  if (!ws.empty() && ws[0] == '/') fr.paths.workspace = normalize_absolute(ws);
  const std::string& cwd = action.working_directory();
  if (!cwd.empty() && cwd[0] == '/') fr.paths.cwd = normalize_absolute(cwd);
  for (const auto& kv : action.attributes()) {
    if (kv.key() == "home" && !kv.value().empty() && kv.value()[0] == '/') {
      fr.paths.home = normalize_absolute(kv.value());
    }
  }
  // Scratch roots under the home directory ("~/.cache") follow the request's home.
  for (const auto& sp : settings_.scratch_paths) {
    if (sp.starts_with("~/")) {
      fr.paths.scratch.push_back(normalize_absolute(
          (fr.paths.home.empty() ? std::string("/~home") : fr.paths.home) + sp.substr(1)));
    } else {
      fr.paths.scratch.push_back(sp);
    }
  }
  r.allowed_hosts = settings_.allowed_hosts;
  for (const auto& h : action.scope().allowed_hosts()) r.allowed_hosts.push_back(lower(h));
  switch (action.kind()) {
    case v1::ACTION_KIND_SHELL:
      r.kind = "shell";
      break;
    case v1::ACTION_KIND_SQL:
      r.kind = "sql";
      break;
    case v1::ACTION_KIND_FILE:
      r.kind = "file";
      break;
    case v1::ACTION_KIND_GIT:
      r.kind = "git";
      break;
    case v1::ACTION_KIND_HTTP:
      r.kind = "http";
      break;
    default:
      r.kind = "other";
      break;
  }
  // Shell text: the command, or argv quoted back into one line.
  auto shell_text = [&]() {
    if (!action.command().empty() || action.argv_size() == 0) return action.command();
    std::string line;
    for (const auto& a : action.argv()) {
      if (!line.empty()) line += ' ';
      std::string q = "'";
      for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
      q += '\'';
      line += q;
    }
    return line;
  };
  if (action.environment().size() > 0) fr.environment = action.environment();
  switch (action.kind()) {
    case v1::ACTION_KIND_SQL:
      r.sql_facts(action.command(), action.database(), "sql", action.command().substr(0, 200), fr);
      break;
    case v1::ACTION_KIND_GIT: {
      std::string text = shell_text();
      std::string trimmed = text.substr(std::min(text.size(), text.find_first_not_of(" \t")));
      if (!trimmed.starts_with("git ") && trimmed != "git") text = "git " + text;
      r.script(text, fr);
      break;
    }
    case v1::ACTION_KIND_FILE: {
      if (action.target().empty()) break;
      std::string effect;
      std::string op;
      switch (action.file_operation()) {
        case v1::FILE_OPERATION_DELETE:
          effect = "file.delete";
          op = "delete";
          break;
        case v1::FILE_OPERATION_WRITE:
          effect = "file.write";
          op = "overwrite";
          break;
        case v1::FILE_OPERATION_MOVE:
          effect = "file.move";
          op = "move";
          break;
        case v1::FILE_OPERATION_TRUNCATE:
          effect = "file.truncate";
          op = "truncate";
          break;
        case v1::FILE_OPERATION_CHMOD:
          effect = "file.chmod";
          op = "chmod";
          break;
        default:
          break;
      }
      if (effect.empty()) break;
      bool recursive = false;
      for (const auto& kv : action.attributes()) {
        if (kv.key() == "recursive" && (kv.value() == "true" || kv.value() == "1"))
          recursive = true;
      }
      r.file_fact(effect, {action.target(), false}, op, recursive,
                  action.tool().empty() ? "file" : action.tool(), action.target(), fr);
      break;
    }
    case v1::ACTION_KIND_HTTP:
      if (!action.url().empty() || !action.http_method().empty()) {
        r.http_fact(action.http_method().empty() ? "GET" : action.http_method(), action.url(), true,
                    action.tool().empty() ? "http" : action.tool(),
                    action.http_method() + " " + action.url(), fr);
      } else if (!action.command().empty()) {
        r.script(action.command(), fr);
      }
      break;
    default: {
      const std::string text = shell_text();
      if (!text.empty()) r.script(text, fr);
      if (!action.url().empty()) {
        r.http_fact(action.http_method().empty() ? "GET" : action.http_method(), action.url(), true,
                    action.tool(), action.url(), fr);
      }
      break;
    }
  }
  r.scope_facts(fr);
  return std::move(r.facts);
}

}  // namespace loopwarden::destructive_action
