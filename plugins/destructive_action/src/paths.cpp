#include "paths.hpp"

#include <algorithm>
#include <array>

namespace loopwarden::destructive_action {
namespace {

// Top-level directories whose contents belong to the system: deleting or overwriting anything in
// them is never a workspace task. (/home, /Users, /mnt, /media are handled apart: their children
// are people's homes and mounted data.)
constexpr std::array<std::string_view, 22> system_roots = {
    "/bin", "/boot", "/dev",    "/etc",     "/lib",          "/lib32",  "/lib64", "/libx32",
    "/opt", "/proc", "/root",   "/run",     "/sbin",         "/srv",    "/sys",   "/usr",
    "/var", "/snap", "/System", "/Library", "/Applications", "/private"};

bool under(std::string_view path, std::string_view root) {
  if (root.empty()) return false;
  if (root == "/") return true;
  return path.size() > root.size() && path.starts_with(root) && path[root.size()] == '/';
}

bool is_glob_char(char c) { return c == '*' || c == '?' || c == '['; }

// Class of one known absolute normalised path.
path_class classify_known(const std::string& p, const path_context& ctx, bool contents) {
  if (ctx.remote) {
    if (p == "/") return path_class::system;
    for (const auto& s : ctx.scratch) {
      if (under(p, s)) return path_class::scratch;
    }
    for (auto r : system_roots) {
      if (p == r || under(p, r)) return path_class::system;
    }
    return path_class::remote;
  }
  if (p.starts_with("/dev/")) {
    return harmless_device(p) ? path_class::scratch : path_class::device;
  }
  const std::string& ws = !ctx.workspace.empty() ? ctx.workspace : ctx.cwd;
  const bool ws_known = !ws.empty() && ws.find(unknown_marker) == std::string::npos;
  if (ws_known && ws != "/") {
    if (p == ws) return contents ? path_class::workspace_root : path_class::workspace_root;
    if (under(p, ws)) return path_class::inside;
  }
  for (const auto& s : ctx.scratch) {
    if (under(p, s)) return path_class::scratch;
    if (p == s && contents) return path_class::outside;  // everything in /tmp: not ours alone
  }
  if (p == "/") return path_class::system;
  if (!ctx.home.empty() && p == ctx.home) return path_class::home;
  for (std::string_view homes : {"/home", "/Users"}) {
    if (p == homes) return path_class::system;
    if (under(p, homes) && p.find('/', homes.size() + 1) == std::string::npos) {
      return path_class::home;
    }
  }
  if (p == "/root") return path_class::home;
  for (auto r : system_roots) {
    if (p == r || under(p, r)) return path_class::system;
  }
  if (p == "/mnt" || p == "/media" || p == "/tmp" || p == "/var/tmp") return path_class::system;
  return path_class::outside;
}

}  // namespace

std::string_view to_string(path_class c) {
  switch (c) {
    case path_class::inside:
      return "inside";
    case path_class::scratch:
      return "scratch";
    case path_class::workspace_root:
      return "workspace_root";
    case path_class::outside:
      return "outside";
    case path_class::home:
      return "home";
    case path_class::system:
      return "system";
    case path_class::device:
      return "device";
    case path_class::remote:
      return "remote";
    case path_class::unknown:
      return "unknown";
  }
  return "unknown";
}

bool harmless_device(std::string_view p) {
  static constexpr std::array<std::string_view, 9> ok = {
      "/dev/null",   "/dev/stdout",  "/dev/stderr", "/dev/tty", "/dev/zero",
      "/dev/random", "/dev/urandom", "/dev/stdin",  "/dev/ptmx"};
  if (std::find(ok.begin(), ok.end(), p) != ok.end()) return true;
  return p.starts_with("/dev/fd/") || p.starts_with("/dev/pts/") || p.starts_with("/dev/shm/");
}

std::string normalize_absolute(std::string_view p) {
  std::vector<std::string_view> parts;
  std::size_t i = 0;
  while (i < p.size()) {
    while (i < p.size() && p[i] == '/') ++i;
    std::size_t j = i;
    while (j < p.size() && p[j] != '/') ++j;
    std::string_view part = p.substr(i, j - i);
    if (part.empty() || part == ".") {
    } else if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else {
      parts.push_back(part);
    }
    i = j;
  }
  std::string out;
  for (auto part : parts) {
    out += '/';
    out += part;
  }
  return out.empty() ? "/" : out;
}

resolved_path resolve(std::string_view raw, const path_context& ctx) {
  resolved_path r;
  std::string p(raw);
  if (p.empty()) {
    r.path = "";
    r.where = path_class::unknown;
    return r;
  }
  // Home: "~" and "~/x"; "~user" is someone else's home (outside, or their home itself).
  std::string base;
  bool from_home = false;
  if (p[0] == '~') {
    const std::size_t slash = p.find('/');
    const std::string user = p.substr(1, slash == std::string::npos ? p.size() - 1 : slash - 1);
    if (user.empty() && !ctx.home.empty() && !ctx.remote) {
      p = ctx.home + (slash == std::string::npos ? "" : p.substr(slash));
    } else {
      from_home = true;
      base = user.empty() ? "/~home" : "/home/" + user;
      p = base + (slash == std::string::npos ? "" : p.substr(slash));
    }
  }
  if (p[0] != '/') {
    std::string cwd = ctx.cwd;
    if (cwd.empty()) cwd = ctx.workspace;
    if (cwd.find(unknown_marker) != std::string::npos) {
      r.path = std::string(raw);
      r.where = ctx.remote ? path_class::remote : path_class::unknown;
      return r;
    }
    if (cwd.empty()) {
      // Neither cwd nor workspace: relative paths are taken as the workspace's own.
      cwd = "/~workspace";
    }
    p = cwd + "/" + p;
  }
  // The known prefix: up to the first unknown or glob character.
  std::size_t cut = std::string::npos;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == unknown_marker || is_glob_char(p[i])) {
      cut = i;
      break;
    }
  }
  path_context local = ctx;
  const bool implicit_ws = ctx.cwd.empty() && ctx.workspace.empty();
  if (implicit_ws) local.workspace = "/~workspace";
  if (from_home && base == "/~home") local.home = "/~home";
  if (cut == std::string::npos) {
    r.path = normalize_absolute(p);
    r.where = classify_known(r.path, local, false);
  } else {
    // Everything under the directory the known prefix names (or that directory itself, when an
    // unknown part may be empty: "build/$X" may be "build/").
    const std::string prefix = p.substr(0, cut);
    const std::size_t slash = prefix.rfind('/');
    const std::string dir = normalize_absolute(prefix.substr(0, slash + 1));
    const std::string rest = p.substr(slash + 1);
    r.path = dir == "/" ? "/" + rest : dir + "/" + rest;
    // A filter (*.pyc, log-*) selects some names; "*", "$X", ".*" could be anything.
    const bool whole = rest.find('/') == std::string::npos &&
                       (rest == "*" || rest == ".*" || rest == "*.*" || rest == "{*,.*}" ||
                        rest.find(unknown_marker) != std::string::npos);
    r.selective = !whole && rest.find(unknown_marker) == std::string::npos;
    path_class c = classify_known(dir, local, true);
    if (c == path_class::workspace_root && r.selective) c = path_class::inside;
    // Filtered names directly in a scratch root (find /tmp -name 'pytest-*'): scratch files.
    if (r.selective &&
        std::find(local.scratch.begin(), local.scratch.end(), dir) != local.scratch.end()) {
      c = path_class::scratch;
    }
    r.where = c;
    if (rest.find(unknown_marker) != std::string::npos && c == path_class::inside) {
      r.where = path_class::inside;
    }
  }
  if (implicit_ws && r.path.starts_with("/~workspace")) r.path.replace(0, 11, ".");
  if (from_home && r.path.starts_with("/~home")) r.path.replace(0, 6, "~");
  return r;
}

std::string change_directory(std::string_view cwd, std::string_view target,
                             const path_context& ctx) {
  const std::string unknown(1, unknown_marker);
  if (target.empty()) return ctx.home.empty() ? unknown : ctx.home;
  if (target == "-" || target.find(unknown_marker) != std::string_view::npos) return unknown;
  std::string t(target);
  if (t[0] == '~') {
    if (ctx.home.empty() || (t.size() > 1 && t[1] != '/')) return unknown;
    t = ctx.home + t.substr(1);
  }
  if (t[0] == '/') return normalize_absolute(t);
  std::string base(cwd);
  if (base.empty()) base = ctx.workspace;
  if (base.empty() || base.find(unknown_marker) != std::string::npos) return unknown;
  return normalize_absolute(base + "/" + t);
}

namespace {

bool class_match(std::string_view pat, std::size_t& p, char c) {
  // pat[p] == '['; on return p is past the closing ']'. A malformed class matches '[' itself.
  std::size_t q = p + 1;
  const bool neg = q < pat.size() && (pat[q] == '!' || pat[q] == '^');
  if (neg) ++q;
  const std::size_t start = q;
  bool hit = false;
  while (q < pat.size() && (pat[q] != ']' || q == start)) {
    if (q + 2 < pat.size() && pat[q + 1] == '-' && pat[q + 2] != ']') {
      hit = hit || (c >= pat[q] && c <= pat[q + 2]);
      q += 3;
    } else {
      hit = hit || c == pat[q];
      ++q;
    }
  }
  if (q >= pat.size()) {
    ++p;
    return c == '[';
  }
  p = q + 1;
  return hit != neg;
}

bool glob_rec(std::string_view pat, std::string_view s, int& budget) {
  if (--budget <= 0) return false;
  while (!pat.empty()) {
    if (pat.starts_with("/**") && pat.size() == 3) return s.empty() || s[0] == '/';
    if (pat.starts_with("**")) {
      std::string_view rest = pat.substr(2);
      if (rest.starts_with("/") && glob_rec(rest.substr(1), s, budget)) return true;
      for (std::size_t i = 0; i <= s.size(); ++i) {
        if (glob_rec(rest, s.substr(i), budget)) return true;
      }
      return false;
    }
    if (pat[0] == '*') {
      for (std::size_t i = 0; i <= s.size(); ++i) {
        if (glob_rec(pat.substr(1), s.substr(i), budget)) return true;
        if (i < s.size() && s[i] == '/') break;
      }
      return false;
    }
    if (s.empty()) return false;
    if (pat[0] == '?') {
      if (s[0] == '/') return false;
      pat.remove_prefix(1);
    } else if (pat[0] == '[') {
      std::size_t p = 0;
      if (!class_match(pat, p, s[0])) return false;
      pat.remove_prefix(p);
    } else {
      if (pat[0] != s[0]) return false;
      pat.remove_prefix(1);
    }
    s.remove_prefix(1);
  }
  return s.empty();
}

}  // namespace

bool glob_match(std::string_view pat, std::string_view s) {
  // Paths longer than this are not matched against patterns (bounded work per request).
  if (s.size() > 4096) return false;
  int budget = 100000;
  return glob_rec(pat, s, budget);
}

}  // namespace loopwarden::destructive_action
