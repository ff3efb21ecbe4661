#include <loopwarden/core/redactor.hpp>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <algorithm>

#include <loopwarden/core/alert_config.hpp>

namespace loopwarden::core {

namespace {

// Where the authority (host and port, maybe user-info) of `url` starts and ends.
struct url_parts {
  std::size_t authority_begin = 0;
  std::size_t authority_end = 0;  // npos-free: url.size() when nothing follows
};

url_parts split_url(std::string_view url) {
  url_parts p;
  const auto scheme = url.find("://");
  p.authority_begin = scheme == std::string_view::npos ? 0 : scheme + 3;
  const auto end = url.find_first_of("/?#", p.authority_begin);
  p.authority_end = end == std::string_view::npos ? url.size() : end;
  return p;
}

}  // namespace

std::string redact_url(std::string_view url) {
  const url_parts p = split_url(url);
  std::string out(url.substr(0, p.authority_begin));
  const std::string_view authority =
      url.substr(p.authority_begin, p.authority_end - p.authority_begin);
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    out += redacted_text;
    out += authority.substr(at);
  } else {
    out += authority;
  }
  const std::string_view rest = url.substr(p.authority_end);
  if (rest.empty() || rest == "/") {
    out += rest;
  } else {
    out += "/";
    out += redacted_text;
  }
  return out;
}

void redactor::add(std::string_view secret) {
  if (secret.size() < min_secret_length) return;
  if (std::find(secrets_.begin(), secrets_.end(), secret) != secrets_.end()) return;
  // Longest first: a secret that contains a shorter one must be matched before it.
  auto at = std::find_if(secrets_.begin(), secrets_.end(),
                         [&](const std::string& s) { return s.size() < secret.size(); });
  secrets_.insert(at, std::string(secret));
}

void redactor::add_sink_secrets(const alert_sink_config& sink) {
  if (!sink.url.empty()) {
    const std::string_view url = sink.url;
    add(url);
    const url_parts p = split_url(url);
    if (const auto at = url.substr(0, p.authority_end).rfind('@');
        at != std::string_view::npos && at > p.authority_begin) {
      const std::string_view userinfo = url.substr(p.authority_begin, at - p.authority_begin);
      add(userinfo);
      // The password alone ("user:<password>"): a receiver or a library may print just that.
      if (const auto colon = userinfo.find(':'); colon != std::string_view::npos) {
        add(userinfo.substr(colon + 1));
      }
    }
    const std::string_view rest = url.substr(p.authority_end);
    // Slack's incoming-webhook URL is a credential in its own right, path and all.
    if (sink.type == alert_sink_type::slack) add(rest);
    const auto query = rest.find('?');
    if (query != std::string_view::npos) {
      // The whole query, and each value on its own ("?token=<value>&channel=ops"): a receiver
      // that refuses a token tends to quote the value alone.
      std::string_view q = rest.substr(query + 1);
      q = q.substr(0, q.find('#'));
      add(q);
      std::size_t begin = 0;
      while (begin <= q.size()) {
        auto end = q.find('&', begin);
        if (end == std::string_view::npos) end = q.size();
        const std::string_view pair = q.substr(begin, end - begin);
        if (const auto eq = pair.find('='); eq != std::string_view::npos) add(pair.substr(eq + 1));
        begin = end + 1;
      }
    }
    // Tokens in a path are long segments ("/hooks/3f9c1d0e5a7b4c2d9e8f"); short ones ("/alerts")
    // are names, and redacting them would garble unrelated text.
    const std::string_view path = rest.substr(0, query);
    std::size_t begin = 0;
    while (begin < path.size()) {
      auto end = path.find('/', begin);
      if (end == std::string_view::npos) end = path.size();
      if (end - begin >= 16) add(path.substr(begin, end - begin));
      begin = end + 1;
    }
  }
  for (const auto& [name, value] : sink.headers) {
    add(value);
    // "Bearer <token>": a receiver may echo the token alone.
    if (const auto space = value.find_last_of(' '); space != std::string::npos) {
      add(std::string_view(value).substr(space + 1));
    }
  }
  add(sink.routing_key);
}

void redactor::add_alert_secrets(const alerts_config& alerts) {
  for (const auto& sink : alerts.sinks) add_sink_secrets(sink);
}

void redactor::merge(const redactor& other) {
  for (const auto& s : other.secrets_) add(s);
}

std::string redactor::apply(std::string_view text) const {
  std::string out(text);
  for (const auto& secret : secrets_) {
    for (auto at = out.find(secret); at != std::string::npos;
         at = out.find(secret, at + redacted_text.size())) {
      out.replace(at, secret.size(), redacted_text);
    }
  }
  return out;
}

void redactor::apply(google::protobuf::Message& message) const {
  using google::protobuf::FieldDescriptor;
  if (secrets_.empty()) return;
  const auto* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->type() == FieldDescriptor::TYPE_STRING) {
      if (f->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(message, f); ++i) {
          std::string scratch;
          const std::string& before =
              reflection->GetRepeatedStringReference(message, f, i, &scratch);
          std::string after = apply(before);
          if (after != before) reflection->SetRepeatedString(&message, f, i, std::move(after));
        }
      } else {
        std::string scratch;
        const std::string& before = reflection->GetStringReference(message, f, &scratch);
        std::string after = apply(before);
        if (after != before) reflection->SetString(&message, f, std::move(after));
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(message, f); ++i) {
          apply(*reflection->MutableRepeatedMessage(&message, f, i));
        }
      } else {
        apply(*reflection->MutableMessage(&message, f));
      }
    }
  }
}

}  // namespace loopwarden::core
