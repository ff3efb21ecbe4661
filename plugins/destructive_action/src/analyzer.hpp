#pragma once
// ActionRequest -> facts. The shell goes through shell_parser and then through the command
// semantics here: wrappers are unwrapped (sudo, env, nice, timeout, xargs, find -exec, sh -c,
// eval, ssh, docker/kubectl exec, npx, ...) recursively up to a depth limit; each real command
// becomes an `exec` fact plus what it does to files, git, databases and the network; inline
// code goes through code_scanner, SQL through sql_analyzer. Scope facts (protected
// environments, shared resources, resources outside the declared scope) come last.

#include <cstddef>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <loopwarden/v1/agent.pb.h>

#include "fact.hpp"
#include "shell_parser.hpp"

namespace loopwarden::destructive_action {

// Everything the analyzer needs besides the request. Defaults as documented in
// docs/monitors/destructive-action.md. Thread-safety: a value type.
struct analyzer_settings {
  std::vector<std::string> protected_branches = {"main",    "master",    "trunk",      "develop",
                                                 "release", "release/*", "releases/*", "production",
                                                 "prod",    "stable"};
  std::vector<std::string> protected_paths = {
      ".git",         ".git/**",    "**/.git",       "**/.git/**", "**/.env",     "**/backup",
      "**/backup/**", "**/backups", "**/backups/**", "**/*.bak",   "**/*.backup", "**/*.dump"};
  std::vector<std::string> allowed_hosts = {"localhost", "127.0.0.1", "::1", "0.0.0.0",
                                            "*.localhost"};
  // Disposable directories: temporary files and package caches (deleting them costs a download).
  std::vector<std::string> scratch_paths = {"/tmp",
                                            "/var/tmp",
                                            "~/.cache",
                                            "~/.npm",
                                            "~/.m2/repository",
                                            "~/.gradle/caches",
                                            "~/.cargo/registry",
                                            "~/.cargo/git",
                                            "~/go/pkg/mod",
                                            "~/.pnpm-store",
                                            "~/.yarn/cache",
                                            "~/.nuget/packages",
                                            "~/.ivy2/cache",
                                            "~/Library/Caches",
                                            "~/.bun/install/cache",
                                            "~/.pub-cache"};
  std::vector<std::string> protected_environments = {"prod", "production", "prd", "live"};
  std::vector<std::string> shared_resources;  // globs over fact resources
  // program -> options that take a separate value (so positional words are found correctly).
  std::map<std::string, std::set<std::string>, std::less<>> option_values;
  // "program" or "program subcommand": commands that change nothing (for scope checks).
  std::vector<std::vector<std::string>> read_only;
  // Programs whose printed output `eval "$(...)"` may run: shell-setup tools.
  std::vector<std::string> trusted_eval_sources = {"ssh-agent",
                                                   "pyenv",
                                                   "rbenv",
                                                   "nodenv",
                                                   "goenv",
                                                   "jenv",
                                                   "plenv",
                                                   "direnv",
                                                   "brew",
                                                   "starship",
                                                   "zoxide",
                                                   "fnm",
                                                   "mise",
                                                   "rtx",
                                                   "asdf",
                                                   "conda",
                                                   "mamba",
                                                   "micromamba",
                                                   "opam",
                                                   "luarocks",
                                                   "minikube",
                                                   "docker-machine",
                                                   "thefuck",
                                                   "kubectl",
                                                   "helm",
                                                   "gh",
                                                   "register-python-argcomplete",
                                                   "dircolors",
                                                   "keychain",
                                                   "gpg-agent",
                                                   "rustup",
                                                   "pdm",
                                                   "uv",
                                                   "poetry",
                                                   "pip",
                                                   "npm",
                                                   "atuin",
                                                   "mcfly",
                                                   "oh-my-posh",
                                                   "fzf",
                                                   "navi",
                                                   "pixi",
                                                   "hub",
                                                   "nodeenv",
                                                   "pipenv",
                                                   "jump",
                                                   "autojump",
                                                   "broot",
                                                   "lesspipe",
                                                   "lesspipe.sh",
                                                   "ng",
                                                   "chef",
                                                   "rvm",
                                                   "sdk",
                                                   "aws-vault",
                                                   "gcloud",
                                                   "tmuxifier",
                                                   "zellij",
                                                   "vfox"};
  std::string default_workspace;  // used when the request declares none
  int max_depth = 8;              // nested shells, wrappers and interpreters
  std::size_t max_command_bytes = 64 * 1024;
  std::size_t max_facts = 2000;
};

// Thread-safety: not thread-safe (owns a parser); one per monitor instance.
class analyzer {
 public:
  explicit analyzer(analyzer_settings settings);
  ~analyzer();
  analyzer(const analyzer&) = delete;
  analyzer& operator=(const analyzer&) = delete;

  // The facts of one action, in the order found. Never fails: input that cannot be read gives a
  // shell.unparseable fact.
  std::vector<fact> analyze(const v1::ActionRequest& action);

  const analyzer_settings& settings() const { return settings_; }

 private:
  struct run;
  analyzer_settings settings_;
  shell_parser parser_;
};

// True when `value` names a protected environment: one of `names`, or a word of it does
// ("prod-eu-1", "db.production.internal"), or a glob in `names` matches it.
bool environment_protected(std::string_view value, const std::vector<std::string>& names);

}  // namespace loopwarden::destructive_action
