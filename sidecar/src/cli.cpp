#include <loopwarden/sidecar/cli.hpp>

#include <CLI/CLI.hpp>
#include <ostream>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>
#include <loopwarden/core/logging.hpp>
#include <loopwarden/sidecar/replay_command.hpp>
#include <loopwarden/version.hpp>

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
  // Load every plugin and let each monitor validate its own section: that is where most
  // mistakes are, and they carry the field path and line too.
  core::engine_options eo;
  eo.extra_plugin_paths = plugin_paths;
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

}  // namespace

int run_cli(int argc, char** argv, std::ostream& out, std::ostream& err) {
  core::log_to_stderr();
  CLI::App app{
      "loopwarden watches self-improving training loops and autonomous agents, and trips circuit\n"
      "breakers that the host pipeline obeys.\n\n"
      "Exit status: 0 ok; 1 found (a breaker opened, a config is invalid); 2 could not run.\n"
      "Docs: docs/ in the source tree (plugin guide, configuration, replay format).",
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

  if (*replay) return run_replay(ro, out, err);
  if (*check) return run_config_check(check_file, check_paths, out, err);
  if (*print_default) {
    out << core::default_config_yaml();
    return exit_ok;
  }
  return exit_error;
}

}  // namespace loopwarden::sidecar
