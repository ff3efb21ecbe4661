#pragma once
// A read-only view of one node of a YAML configuration document, with the path and line it came
// from, so every error can name them: `monitors[2].config.window: expected a positive integer,
// got "abc" (loopwarden.yaml:14)`.
//
// The host builds these trees from YAML; monitors receive the subtree of their `config:` key.
// The SDK does not depend on a YAML library: this type is the whole interface.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <loopwarden/status.hpp>

namespace loopwarden::sdk {

// A cheap handle: copies share one immutable tree (a reference count), so lookups return nodes
// by value. Thread-safety: immutable once built; copies may be read from any thread. The
// builders (push_back, insert) are for the single thread that builds the tree.
class config_node {
 public:
  enum class node_type { missing, null, scalar, sequence, map };

  // A missing node: what lookups of absent keys return. `path` is what it would have been.
  config_node() = default;

  // Builders, used by the host and by tests. `file` is shown in errors (a file name or
  // "<embedded default>"); `line` is 1-based, 0 when unknown.
  static config_node make_null(std::string path, std::string file, int line);
  static config_node make_scalar(std::string path, std::string file, int line, std::string value,
                                 bool quoted = false);
  static config_node make_sequence(std::string path, std::string file, int line);
  static config_node make_map(std::string path, std::string file, int line);
  // Appends to a sequence (child path should be "<path>[i]").
  void push_back(config_node child);
  // Adds a map entry (child path should be "<path>.<key>"); keys keep insertion order.
  void insert(std::string key, config_node child);

  node_type type() const { return d_->type; }
  bool is_missing() const { return d_->type == node_type::missing; }
  bool is_null() const { return d_->type == node_type::null; }
  bool is_scalar() const { return d_->type == node_type::scalar; }
  bool is_sequence() const { return d_->type == node_type::sequence; }
  bool is_map() const { return d_->type == node_type::map; }

  // Where the node is: "monitors[2].config.window" (empty for the document root).
  const std::string& path() const { return d_->path; }
  const std::string& file() const { return d_->file; }
  int line() const { return d_->line; }

  // Map lookup. A missing key (or a lookup on a non-map) returns a missing node whose path names
  // the key and whose line is this node's, so "required" errors still point somewhere useful.
  config_node operator[](std::string_view key) const;
  bool contains(std::string_view key) const;
  // Map keys in document order (empty for non-maps).
  std::vector<std::string> keys() const;
  // Sequence elements (empty for non-sequences).
  std::size_t size() const;
  // Out of range: a missing node with path "<path>[index]".
  config_node at(std::size_t index) const;

  // The raw text of a scalar ("" otherwise).
  const std::string& scalar() const { return d_->scalar; }
  // The scalar was quoted in the document (so "yes" stays a string, not a boolean).
  bool quoted() const { return d_->quoted; }

  // Typed reads. Each fails with invalid_argument and a message naming path and line:
  //   as_string:        a scalar                    "expected a string, got a map"
  //   as_bool:          true/false/yes/no/on/off    "expected true or false, got \"maybe\""
  //   as_int:           a decimal integer           "expected an integer, got \"abc\""
  //   as_positive_int:  an integer >= 1             "expected a positive integer, got \"abc\""
  //   as_double:        a finite number             "expected a number, got \"abc\""
  //   as_probability:   a number in [0, 1]          "expected a number in [0, 1], got \"1.5\""
  //   as_duration:      "250ms", "5s", "10m", "1h", "2d" or plain seconds
  //   as_string_list:   a string or a sequence of strings
  result<std::string> as_string() const;
  result<bool> as_bool() const;
  result<std::int64_t> as_int() const;
  result<std::int64_t> as_positive_int() const;
  result<double> as_double() const;
  result<double> as_probability() const;
  result<std::chrono::nanoseconds> as_duration() const;
  result<std::vector<std::string>> as_string_list() const;

  // Reads of an optional key: the fallback when the key is missing or null, else the typed read.
  result<std::string> get_string(std::string_view key, std::string fallback) const;
  result<bool> get_bool(std::string_view key, bool fallback) const;
  result<std::int64_t> get_int(std::string_view key, std::int64_t fallback) const;
  result<std::int64_t> get_positive_int(std::string_view key, std::int64_t fallback) const;
  result<double> get_double(std::string_view key, double fallback) const;
  result<std::chrono::nanoseconds> get_duration(std::string_view key,
                                                std::chrono::nanoseconds fallback) const;

  // A required key: invalid_argument "<path>.<key>: required (file:line)" when missing.
  // On success `error` is left untouched, so several requires can share one status.
  config_node require(std::string_view key, status& error) const;

  // Refuses keys not in `allowed` (typos must not be silently ignored):
  // "monitors[0].config.windw: unknown key (allowed: window, floor) (loopwarden.yaml:9)".
  // ok for a missing or null node; an error for a non-map.
  status check_keys(std::initializer_list<std::string_view> allowed) const;

  // An invalid_argument status "<path>: <what> (<file>:<line>)" for errors a monitor finds
  // itself (a value out of range, two fields that contradict each other).
  status error(std::string_view what) const;

  // A short description of the node for messages: "\"abc\"", "a map", "a sequence", "null".
  std::string describe() const;

 private:
  struct data {
    node_type type = node_type::missing;
    bool quoted = false;  // the scalar was quoted in the document (so "yes" stays a string)
    std::string path;
    std::string file;
    int line = 0;
    std::string scalar;
    std::vector<std::string> keys;      // map keys in order, parallel to children
    std::vector<config_node> children;  // map values or sequence elements
  };
  explicit config_node(std::shared_ptr<data> d) : d_(std::move(d)) {}

  std::shared_ptr<data> d_ = std::make_shared<data>();  // never null
};

}  // namespace loopwarden::sdk
