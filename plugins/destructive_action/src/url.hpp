#pragma once
// URL host extraction for the HTTP rules, done the way a client would resolve it (userinfo,
// ports, IPv6 brackets, case, a trailing dot), so "https://allowed.example@evil.example/" is
// judged by evil.example, not by the name that appears first.

#include <string>
#include <string_view>
#include <vector>

namespace loopwarden::destructive_action {

struct parsed_url {
  std::string host;    // lower case, no port, no brackets; "" when unknown
  bool known = false;  // false when the host is built at run time (variables, substitutions)
  std::string text;    // the URL as given
};

// Parses a URL or a bare "host/path" (curl accepts both). A host containing unknown_marker,
// "${", "{{" or '$' is unknown.
parsed_url parse_url(std::string_view url);

// True when `host` matches an allowlist entry: exact, or "*.example.com" for any subdomain (and
// example.com itself), or "*" for everything.
bool host_allowed(std::string_view host, const std::vector<std::string>& allowlist);

}  // namespace loopwarden::destructive_action
