#include <loopwarden/sidecar/cli.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <ostream>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>
#include <loopwarden/core/logging.hpp>
#include <loopwarden/core/monitor_host.hpp>
#include <loopwarden/sidecar/control_client.hpp>
#include <loopwarden/sidecar/replay_command.hpp>
#include <loopwarden/sidecar/server.hpp>
#include <loopwarden/version.hpp>

#include "audit_command.hpp"
#include "gate_commands.hpp"
#include "operator_commands.hpp"

namespace loopwarden::sidecar {
namespace {

std::string version_text() {
  return std::string("loopwarden ") + LOOPWARDEN_VERSION + " (sdk " + sdk::runtime_version() +
         ", schema loopwarden.v" + std::to_string(sdk::schema_version_major) + "." +
         std::to_string(sdk::schema_version_minor) + ")";
}

int run_config_check(const std::string& file, const std::vector<std::string>& plugin_paths,
                     std::ostream& out, std::ostream& err) {
  auto cfg = core::load_config_file(file);
  if (!cfg.ok()) {
    err << "loopwarden config check: " << cfg.error().message() << "\n";
    return exit_found;
  }
  if (!cfg->transport.control_secret_key_file.empty()) {
    if (auto key = read_key_file(cfg->transport.control_secret_key_file); !key.ok()) {
      err << "loopwarden config check: transport.control_curve.secret_key_file: "
          << key.error().message() << "\n";
      return exit_found;
    }
  }
  if (auto s = validate_sidecar_sections(*cfg); !s.ok()) {
    err << "loopwarden config check: " << s.message() << "\n";
    return exit_found;
  }
  // Load every plugin and let each monitor validate its own section: that is where most
  // mistakes are, and they carry the field path and line too.
  core::engine_options eo;
  eo.extra_plugin_paths = plugin_paths;
  eo.monitor_host_command = monitor_host_command();
  auto engine = core::engine::create(*cfg, eo);
  if (!engine.ok()) {
    err << "loopwarden config check: " << engine.error().message() << "\n";
    return exit_found;
  }
  for (const auto& w : (*engine)->warnings())
    err << "loopwarden config check: warning: " << w << "\n";
  const auto monitors = (*engine)->monitors();
  out << "ok: " << file << ": " << monitors.size() << " monitor"
      << (monitors.size() == 1 ? "" : "s");
  for (std::size_t i = 0; i < monitors.size(); ++i) {
    out << (i == 0 ? " (" : ", ") << monitors[i].name << ": " << monitors[i].plugin << " "
        << monitors[i].version;
  }
  out << (monitors.empty() ? "" : ")") << "\n";
  return exit_ok;
}

int run_keygen(const std::string& file, std::ostream& out, std::ostream& err) {
  auto keys = make_curve_keypair();
  if (!keys.ok()) {
    err << "loopwarden keygen: " << keys.error().message() << "\n";
    return exit_error;
  }
  if (file.empty()) {
    out << "public: " << keys->public_key << "\nsecret: " << keys->secret_key << "\n";
    return exit_ok;
  }
  // The secret never exists on disk with looser permissions than 0600.
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    err << "loopwarden keygen: can't create '" << file << "': " << std::strerror(errno)
        << " (it must not exist yet)\n";
    return exit_error;
  }
  const std::string secret =
      keys->secret_key + "\n# CURVE secret key; public key: " + keys->public_key + "\n";
  const bool written =
      ::write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size());
  ::close(fd);
  std::ofstream pub(file + ".pub");
  pub << keys->public_key << "\n";
  if (!written || !pub) {
    err << "loopwarden keygen: can't write the key files\n";
    return exit_error;
  }
  out << "secret key: " << file << " (mode 0600)\npublic key: " << file
      << ".pub: " << keys->public_key << "\n";
  return exit_ok;
}

}  // namespace

std::vector<std::string> monitor_host_command() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  return {exe.string(), "monitor-host"};
}

int run_cli(int argc, char** argv, std::ostream& out, std::ostream& err) {
  core::log_to_stderr();
  CLI::App app{
      "loopwarden watches self-improving training loops and autonomous agents, and trips circuit\n"
      "breakers that the host pipeline obeys.\n\n"
      "Exit status: 0 ok; 1 found (a breaker opened, a config is invalid); 2 could not run.\n"
      "Docs: docs/ in the source tree: runbook.md for on-call, configuration.md, plugin-guide.md,\n"
      "integration-guide.md, alerts.md, http-endpoint.md.",
      "loopwarden"};
  app.set_version_flag("--version", version_text());
  app.require_subcommand(1);
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "engine log level: debug, info, warn, error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));

  // replay
  replay_options ro;
  auto* replay = app.add_subcommand(
      "replay",
      "run the engine over a recorded event file and print every breaker transition\n"
      "(exit 1 if any breaker opened, so it can gate a CI pipeline)");
  replay->add_option("file", ro.file, "recorded event file (see docs/replay-format.md)")
      ->required()
      ->check(CLI::ExistingFile);
  replay
      ->add_option("-c,--config", ro.config_file,
                   "configuration file (default: the embedded default, see `config default`)")
      ->check(CLI::ExistingFile);
  replay->add_option("--plugin-path", ro.plugin_paths,
                     "extra directory to search for plugins (repeatable)");
  replay->add_flag("--json", ro.json, "print JSON lines (transitions, problems, a summary)");
  replay->add_flag("-q,--quiet", ro.quiet, "print only the summary");

  // config
  auto* config = app.add_subcommand("config", "check or print configuration");
  config->require_subcommand(1);
  std::string check_file;
  std::vector<std::string> check_paths;
  auto* check = config->add_subcommand(
      "check", "validate a configuration file, loading every plugin it names (exit 1 if invalid)");
  check->add_option("file", check_file, "configuration file")->required();
  check->add_option("--plugin-path", check_paths, "extra directory to search for plugins");
  auto* print_default =
      config->add_subcommand("default", "print the embedded default configuration");

  // serve
  serve_options so;
  std::string serve_log_level;
  auto* serve = app.add_subcommand(
      "serve",
      "run the sidecar: ingest events over ZeroMQ, run the monitors, publish breakers, answer\n"
      "gate requests and operator commands (SIGINT/SIGTERM stop, SIGHUP reloads the config)");
  serve
      ->add_option("-c,--config", so.config_file,
                   "configuration file (default: the embedded default)")
      ->envname("LOOPWARDEN_CONFIG")
      ->check(CLI::ExistingFile);
  serve
      ->add_option("--state-dir", so.state_dir,
                   "state directory (overrides the config's state_dir)")
      ->envname("LOOPWARDEN_STATE_DIR");
  serve->add_option("--ingest", so.ingest,
                    "bind a PULL ingest socket here instead of the config's (repeatable)");
  serve->add_option("--breakers", so.breakers_endpoint, "bind the breaker PUB socket here");
  serve->add_option("--gate", so.gate_endpoint, "bind the gate ROUTER socket here");
  serve->add_option("--control", so.control_endpoint, "bind the control socket here (ipc)");
  serve
      ->add_option("--http", so.http_listen,
                   "serve /metrics, /healthz, /readyz and the status page here (host:port; "
                   "port 0: any free port; \"\": off). Default 127.0.0.1:9464")
      ->envname("LOOPWARDEN_HTTP");
  serve->add_option("--plugin-path", so.plugin_paths, "extra directory to search for plugins");
  serve->add_option("--record", so.record_file,
                    "also write every ingested event to this file (replay format)");
  serve
      ->add_option("--log-level", serve_log_level,
                   "debug, info, warn, error (overrides the config)")
      ->envname("LOOPWARDEN_LOG_LEVEL")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));

  // operator commands
  detail::operator_options oo;
  auto add_operator_options = [&](CLI::App* cmd) {
    cmd->add_option("--control", oo.control, "the control endpoint (default: from the config)")
        ->envname("LOOPWARDEN_CONTROL");
    cmd->add_option("-c,--config", oo.config_file, "the sidecar's configuration file")
        ->envname("LOOPWARDEN_CONFIG");
    cmd->add_option("--state-dir", oo.state_dir, "the sidecar's state directory")
        ->envname("LOOPWARDEN_STATE_DIR");
    cmd->add_flag("--json", oo.json, "print the reply as JSON");
    cmd->add_option("--server-key", oo.server_key,
                    "tcp control: the sidecar's CURVE public key (Z85, or a file holding it)")
        ->envname("LOOPWARDEN_SERVER_KEY");
    cmd->add_option("--key-file", oo.secret_key_file,
                    "tcp control: your CURVE secret key file (see `loopwarden keygen`)")
        ->envname("LOOPWARDEN_KEY_FILE");
    cmd->add_option("--timeout-ms", oo.timeout_ms, "how long to wait for the sidecar");
  };
  std::string breaker_name;
  std::string run_id;
  std::string reason;
  std::string halt_action = "halt";
  auto add_breaker_ref = [&](CLI::App* cmd) {
    cmd->add_option("breaker", breaker_name, "breaker name, e.g. training.collapse")->required();
    cmd->add_option("--run", run_id, "the run, for run-scoped breakers");
  };
  auto* status_cmd = app.add_subcommand("status", "every breaker, source and monitor at a glance");
  add_operator_options(status_cmd);
  auto* explain_cmd =
      app.add_subcommand("explain", "why a breaker tripped: reason, evidence, timeline");
  add_operator_options(explain_cmd);
  add_breaker_ref(explain_cmd);
  auto* ack_cmd = app.add_subcommand("ack", "acknowledge an open breaker (you are on it)");
  add_operator_options(ack_cmd);
  add_breaker_ref(ack_cmd);
  ack_cmd->add_option("--note", reason, "a note for the timeline");
  auto* reset_cmd = app.add_subcommand(
      "reset", "reset an open breaker once the cause is fixed (it enters probation)");
  add_operator_options(reset_cmd);
  add_breaker_ref(reset_cmd);
  reset_cmd->add_option("--reason", reason, "why it is safe to resume (required)")->required();
  auto* halt_cmd = app.add_subcommand("halt", "force a breaker open (a manual stop)");
  add_operator_options(halt_cmd);
  add_breaker_ref(halt_cmd);
  halt_cmd->add_option("--reason", reason, "why (required)")->required();
  halt_cmd->add_option("--action", halt_action, "what hosts must do (default halt)")
      ->check(
          CLI::IsMember({"halt", "pause", "rollback", "throttle", "require_approval", "alert"}));
  auto* reload_cmd = app.add_subcommand("reload", "re-read the sidecar's configuration file");
  add_operator_options(reload_cmd);

  // approvals
  bool all_approvals = false;
  std::string approval_id;
  auto* approvals_cmd =
      app.add_subcommand("approvals", "actions waiting for a human's approval (pending ones)");
  add_operator_options(approvals_cmd);
  approvals_cmd->add_flag("--all", all_approvals, "also decided and expired approvals");
  auto* approve_cmd =
      app.add_subcommand("approve", "approve a pending action (the host may then run it, once)");
  add_operator_options(approve_cmd);
  approve_cmd->add_option("id", approval_id, "the approval's id, e.g. ap-000017")->required();
  approve_cmd->add_option("--reason", reason, "why it is safe (required; audited)")->required();
  auto* deny_cmd = app.add_subcommand("deny", "deny a pending action (the host is told no)");
  add_operator_options(deny_cmd);
  deny_cmd->add_option("id", approval_id, "the approval's id, e.g. ap-000017")->required();
  deny_cmd->add_option("--reason", reason, "why not (required; audited)")->required();

  // alerts test SINK
  std::string sink_name;
  auto* alerts_cmd = app.add_subcommand("alerts", "the alert sinks");
  alerts_cmd->require_subcommand(1);
  auto* alerts_test_cmd = alerts_cmd->add_subcommand(
      "test", "send a test alert through one sink now and print the receiver's answer");
  add_operator_options(alerts_test_cmd);
  alerts_test_cmd->add_option("sink", sink_name, "the sink's name in alerts.sinks")->required();

  // audit verify | export
  detail::audit_options ao;
  auto* audit_cmd = app.add_subcommand(
      "audit", "the hash-chained audit log of every trip, ack, reset and approval");
  audit_cmd->require_subcommand(1);
  auto add_audit_options = [&](CLI::App* cmd) {
    cmd->add_option("--db", ao.db, "the state database (default: <state_dir>/loopwarden.db)");
    cmd->add_option("-c,--config", ao.config_file, "the sidecar's configuration file")
        ->envname("LOOPWARDEN_CONFIG");
    cmd->add_option("--state-dir", ao.state_dir, "the sidecar's state directory")
        ->envname("LOOPWARDEN_STATE_DIR");
  };
  auto* audit_verify_cmd = audit_cmd->add_subcommand(
      "verify",
      "check the chain: names the first edited, deleted or reordered record (exit 1 if any)");
  add_audit_options(audit_verify_cmd);
  audit_verify_cmd->add_option(
      "--expect-head", ao.expect_head,
      "SEQ:HASH of a head recorded earlier (the daemon logs it): also detects records cut off "
      "the end");
  audit_verify_cmd->add_flag("--json", ao.json, "print the report as JSON");
  auto* audit_export_cmd =
      audit_cmd->add_subcommand("export", "write every audit record as JSON lines");
  add_audit_options(audit_export_cmd);
  audit_export_cmd->add_option("-o,--out", ao.out_file, "write to this file instead of stdout");

  // check / hook: the gate from scripts and from Claude Code
  detail::gate_command_options go;
  auto add_gate_options = [&](CLI::App* cmd) {
    cmd->add_option("--gate", go.gate, "the gate endpoint (default: from the config)")
        ->envname("LOOPWARDEN_GATE");
    cmd->add_option("-c,--config", go.config_file, "the sidecar's configuration file")
        ->envname("LOOPWARDEN_CONFIG");
    cmd->add_option("--state-dir", go.state_dir, "the sidecar's state directory")
        ->envname("LOOPWARDEN_STATE_DIR");
    cmd->add_option("--timeout-ms", go.timeout_ms, "how long one gate request may take")
        ->envname("LOOPWARDEN_GATE_TIMEOUT_MS");
    cmd->add_option("--wait", go.wait_seconds,
                    "on require_approval, wait up to this many seconds for an operator's\n"
                    "`loopwarden approve/deny` (default 0: do not wait)")
        ->envname("LOOPWARDEN_APPROVAL_WAIT");
    cmd->add_option("--workspace", go.workspace,
                    "the task's workspace root (default: the working directory)");
    cmd->add_option("--environment", go.environment, "the environment acted on, e.g. prod");
    cmd->add_option("--session", go.session, "the session id sent with the action");
  };
  std::string check_kind = "shell";
  std::vector<std::string> check_words;
  bool check_json = false;
  auto* gate_check_cmd = app.add_subcommand(
      "check",
      "ask the gate whether a command may run: loopwarden check -- rm -rf build\n"
      "(one word: a whole shell line; several: an argv). Exit status: 0 allow, 1 deny,\n"
      "3 waiting for approval, 2 the gate could not be asked");
  add_gate_options(gate_check_cmd);
  gate_check_cmd->add_option("--kind", check_kind, "what the command is: shell, sql or git")
      ->check(CLI::IsMember({"shell", "sql", "git"}));
  gate_check_cmd->add_option("--on-unreachable", go.on_unreachable,
                             "when the sidecar does not answer: deny (exit 2) or allow (exit 0)")
      ->check(CLI::IsMember({"deny", "allow"}));
  gate_check_cmd->add_flag("--json", check_json, "print the decision as JSON");
  gate_check_cmd->add_option("command", check_words, "the command (after --)")->required();
  auto* hook_cmd = app.add_subcommand("hook", "hooks for agent harnesses");
  hook_cmd->require_subcommand(1);
  bool hook_grant = false;
  auto* claude_hook_cmd = hook_cmd->add_subcommand(
      "claude-code",
      "a Claude Code PreToolUse hook: reads the tool call JSON on stdin, asks the gate about\n"
      "Bash commands and file writes, prints the hook decision (deny / ask) on stdout.\n"
      "Fails closed: an unreachable sidecar denies unless --on-unreachable says otherwise.\n"
      "In .claude/settings.json: {\"hooks\": {\"PreToolUse\": [{\"matcher\": \"Bash|Write|Edit|MultiEdit\",\n"
      "  \"hooks\": [{\"type\": \"command\", \"command\": \"loopwarden hook claude-code\"}]}]}}");
  add_gate_options(claude_hook_cmd);
  claude_hook_cmd
      ->add_option("--on-unreachable", go.on_unreachable,
                   "when the sidecar does not answer: deny (default), ask (the user decides)\n"
                   "or allow")
      ->check(CLI::IsMember({"deny", "ask", "allow"}));
  claude_hook_cmd->add_flag("--grant", hook_grant,
                            "answer permissionDecision allow for allowed calls (skipping Claude\n"
                            "Code's own prompt); default: say nothing, so its rules still apply");

  std::string keygen_out;
  auto* keygen_cmd =
      app.add_subcommand("keygen",
                         "make a CURVE key pair for a tcp control socket: the sidecar's "
                         "(control_curve.secret_key_file)\n"
                         "or an operator's (its public key goes in control_curve.operator_keys)");
  keygen_cmd->add_option("--out", keygen_out,
                         "write the secret key to this file (mode 0600) and the public key to "
                         "FILE.pub; default: print both");

  // The child side of `isolation: process`, started by the engine, not by people: hidden.
  int host_fd = -1;
  auto* monitor_host_cmd = app.add_subcommand("monitor-host", "");
  monitor_host_cmd->group("");
  monitor_host_cmd->add_option("--fd", host_fd, "the engine's end of the socket pair")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    out << app.help();
    return exit_ok;
  } catch (const CLI::CallForAllHelp& e) {
    out << app.help("", CLI::AppFormatMode::All);
    return exit_ok;
  } catch (const CLI::CallForVersion& e) {
    out << version_text() << "\n";
    return exit_ok;
  } catch (const CLI::ParseError& e) {
    // Subcommand help (`loopwarden replay --help`) also arrives here, as a success.
    if (e.get_exit_code() == 0) {
      std::ostringstream help_out;
      std::ostringstream help_err;
      app.exit(e, help_out, help_err);
      out << help_out.str();
      return exit_ok;
    }
    err << "loopwarden: " << e.what() << "\nrun `loopwarden --help` for usage\n";
    return exit_error;
  }

  core::set_log_level(*sdk::parse_log_level(log_level));

  if (*monitor_host_cmd) return core::run_monitor_host(host_fd);
  if (*replay) return run_replay(ro, out, err);
  if (*audit_verify_cmd) return detail::run_audit_verify(ao, out, err);
  if (*audit_export_cmd) return detail::run_audit_export(ao, out, err);
  if (*keygen_cmd) return run_keygen(keygen_out, out, err);
  if (*gate_check_cmd) return detail::run_check(go, check_kind, check_words, check_json, out, err);
  if (*claude_hook_cmd) return detail::run_claude_code_hook(go, hook_grant, std::cin, out, err);
  if (*serve) {
    if (!serve_log_level.empty()) so.log_level = sdk::parse_log_level(serve_log_level);
    core::set_log_level(so.log_level.value_or(sdk::log_level::info));
    return run_serve(so, out, err);
  }
  auto ref = [&](v1::BreakerRef* r) {
    r->set_name(breaker_name);
    r->set_run_id(run_id);
  };
  v1::ControlRequest request;
  if (*status_cmd) {
    request.mutable_status();
  } else if (*explain_cmd) {
    ref(request.mutable_explain()->mutable_breaker());
  } else if (*ack_cmd) {
    ref(request.mutable_ack()->mutable_breaker());
    request.mutable_ack()->set_note(reason);
  } else if (*reset_cmd) {
    ref(request.mutable_reset()->mutable_breaker());
    request.mutable_reset()->set_reason(reason);
  } else if (*halt_cmd) {
    ref(request.mutable_force_open()->mutable_breaker());
    request.mutable_force_open()->set_reason(reason);
    request.mutable_force_open()->set_action(
        sdk::to_proto(*sdk::parse_breaker_action(halt_action)));
  } else if (*reload_cmd) {
    request.mutable_reload();
  } else if (*approvals_cmd) {
    request.mutable_approvals()->set_all(all_approvals);
  } else if (*approve_cmd || *deny_cmd) {
    auto* a = request.mutable_approval();
    a->set_approval_id(approval_id);
    a->set_approve(approve_cmd->parsed());
    a->set_note(reason);
  } else if (*alerts_test_cmd) {
    request.mutable_alert_test()->set_sink(sink_name);
  }
  if (request.command_case() != v1::ControlRequest::COMMAND_NOT_SET) {
    // Colours only for a person at a terminal (https://no-color.org opts out).
    oo.color = !oo.json && &out == &std::cout && ::isatty(STDOUT_FILENO) == 1 &&
               std::getenv("NO_COLOR") == nullptr;
    return detail::run_operator_command(oo, std::move(request), out, err);
  }
  if (*check) return run_config_check(check_file, check_paths, out, err);
  if (*print_default) {
    out << core::default_config_yaml();
    return exit_ok;
  }
  return exit_error;
}

}  // namespace loopwarden::sidecar
