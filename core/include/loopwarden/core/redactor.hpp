#pragma once
// Keeps the configuration's secrets out of everything loopwarden shows (docs/security.md#secrets):
// the daemon's log, the command line's output, the control socket's answers (status, explain,
// alert tests), the HTTP endpoint's pages and metrics, the audit log and alert delivery errors.
//
// Two tools, used together:
//   - redact_url() for messages written while a config is being read, before its secrets are
//     known as a set (a malformed webhook URL is shown without its path);
//   - a redactor: the set of secret strings of a loaded config, and apply(), the one function
//     that removes them from text (or from every string field of a protobuf message) just
//     before it leaves the process.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace loopwarden::core {

struct alerts_config;
struct alert_sink_config;

// What a secret is replaced with.
inline constexpr std::string_view redacted_text = "<redacted>";

// `url` with the parts that may carry a secret replaced: the user-info before '@', and everything
// after the host and port (path, query, fragment). A bare "/" path is kept.
//   "https://hooks.slack.com/services/T0/B0/xyz" -> "https://hooks.slack.com/<redacted>"
//   "http://user:pw@am:9093/"                     -> "http://<redacted>@am:9093/"
// Text without "://" is read as starting with the host.
std::string redact_url(std::string_view url);

// A set of secrets and the function that removes them from text.
// Thread-safety: add*() must not run concurrently with anything else on the same object; apply()
// is const and safe from any number of threads.
class redactor {
 public:
  // Shorter strings are ignored: replacing every "abc" would garble output, and no real
  // credential is that short.
  static constexpr std::size_t min_secret_length = 8;

  // Adds one secret (ignored when shorter than min_secret_length or already known).
  void add(std::string_view secret);

  // Adds what one alert sink holds: its URL whole, its user-info and password, its query and
  // each query value, every path segment of at least 16 characters (tokens, keys), a Slack
  // URL's whole path; every header value, and its last word ("Bearer <token>", "Basic
  // <base64>"); a PagerDuty routing key. (Values shorter than min_secret_length are skipped.)
  void add_sink_secrets(const alert_sink_config& sink);

  // add_sink_secrets() for every sink.
  void add_alert_secrets(const alerts_config& alerts);

  // Adds everything `other` knows.
  void merge(const redactor& other);

  // `text` with every occurrence of every secret replaced by redacted_text. Longer secrets are
  // replaced first, so one that contains another disappears whole.
  std::string apply(std::string_view text) const;

  // apply() on every string field of `message` and of the messages inside it (bytes fields are
  // left alone).
  void apply(google::protobuf::Message& message) const;

  bool empty() const { return secrets_.empty(); }
  std::size_t size() const { return secrets_.size(); }

 private:
  std::vector<std::string> secrets_;  // longest first, no duplicates
};

}  // namespace loopwarden::core
