#include "url.hpp"

#include <algorithm>
#include <cctype>

#include "paths.hpp"

namespace loopwarden::destructive_action {

parsed_url parse_url(std::string_view url) {
  parsed_url out;
  out.text = std::string(url);
  std::string_view rest = url;
  if (const auto scheme = rest.find("://"); scheme != std::string_view::npos) {
    rest.remove_prefix(scheme + 3);
  } else if (rest.starts_with("//")) {
    rest.remove_prefix(2);
  }
  // The authority ends at the first '/', '?' or '#'.
  const std::size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    authority.remove_prefix(at + 1);
  }
  std::string host;
  if (authority.starts_with("[")) {
    const auto close = authority.find(']');
    host = std::string(
        authority.substr(1, close == std::string_view::npos ? authority.size() - 1 : close - 1));
  } else {
    host = std::string(authority.substr(0, authority.find(':')));
  }
  for (auto& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!host.empty() && host.back() == '.') host.pop_back();
  const bool dynamic = host.empty() || host.find(unknown_marker) != std::string::npos ||
                       host.find('$') != std::string::npos ||
                       host.find("{{") != std::string::npos || host.find('`') != std::string::npos;
  out.known = !dynamic;
  out.host = dynamic ? std::string() : host;
  return out;
}

bool host_allowed(std::string_view host, const std::vector<std::string>& allowlist) {
  if (host.empty()) return false;
  for (const auto& entry : allowlist) {
    if (entry == "*") return true;
    if (entry.starts_with("*.")) {
      const std::string_view base = std::string_view(entry).substr(2);
      if (host == base) return true;
      if (host.size() > base.size() && host.ends_with(base) &&
          host[host.size() - base.size() - 1] == '.') {
        return true;
      }
    } else if (host == entry) {
      return true;
    }
  }
  return false;
}

}  // namespace loopwarden::destructive_action
