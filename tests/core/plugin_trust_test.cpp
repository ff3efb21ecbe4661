// Plugins load only from places nobody else can write, and, when pinned, only with the digest the
// config names (core/include/loopwarden/core/plugin_trust.hpp, docs/security.md#plugins).
//
// Each case builds its own directory tree under a fresh temporary directory (mkdtemp: 0700, under
// the sticky /tmp) with a copy of a fixture plugin, then breaks one thing. Rows that need another
// owner (chown to `nobody`) run only as root, which CI is; elsewhere they are skipped with a
// message.
#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include <loopwarden/core/config.hpp>
#include <loopwarden/core/engine.hpp>
#include <loopwarden/core/plugin_host.hpp>
#include <loopwarden/core/plugin_trust.hpp>

#include "test_paths.hpp"

using namespace loopwarden;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// A fresh directory, removed (after making it writable again) at the end of the test.
struct scratch_dir {
  fs::path path;
  scratch_dir() {
    std::string pattern = (fs::temp_directory_path() / "lw-trust-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~scratch_dir() {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(path, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory(ec)) ::chmod(it->path().c_str(), 0700);
    }
    fs::remove_all(path, ec);
  }
};

void set_mode(const fs::path& p, mode_t mode) { REQUIRE(::chmod(p.c_str(), mode) == 0); }

// Copies a fixture plugin to `dir/<as>.so` (mode 0644) and returns the copy's path.
fs::path copy_plugin(const fs::path& dir, const std::string& fixture, const std::string& as) {
  fs::create_directories(dir);
  const fs::path to = dir / (as + ".so");
  fs::copy_file(test::fixture_plugin(fixture), to, fs::copy_options::overwrite_existing);
  set_mode(to, 0644);
  return to;
}

std::optional<uid_t> nobody_uid() {
  const passwd* pw = ::getpwnam("nobody");
  if (pw == nullptr) return std::nullopt;
  return pw->pw_uid;
}

std::string write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
  REQUIRE(out.good());
  return p.string();
}

// sha256sum's answer for `p`, an oracle independent of libsodium.
std::string sha256sum(const fs::path& p) {
  const std::string cmd = "sha256sum '" + p.string() + "'";
  FILE* f = ::popen(cmd.c_str(), "r");
  REQUIRE(f != nullptr);
  char buf[65] = {};
  const std::size_t n = std::fread(buf, 1, 64, f);
  ::pclose(f);
  REQUIRE(n == 64);
  return std::string(buf, 64);
}

core::result<std::unique_ptr<core::engine>> engine_for(const std::string& yaml) {
  auto cfg = core::parse_config(yaml, "trust.yaml");
  if (!cfg.ok()) return cfg.error();
  core::engine_options o;
  o.search_bundled_plugins = false;
  o.monitor_host_command = {std::string(LOOPWARDEN_BINARY_DIR) + "/bin/loopwarden", "monitor-host"};
  return core::engine::create(*cfg, o);
}

}  // namespace

TEST_CASE("the plugin permission rule accepts safe trees and names what makes others unsafe",
          "[core][security][plugins]") {
  const bool root = ::geteuid() == 0;
  const auto nobody = nobody_uid();
  struct row {
    std::string what;
    // Breaks something in the tree of a plugin at <dir>/a/b/p.so; returns false to skip the row.
    std::function<bool(const fs::path& dir, const fs::path& plugin)> arrange;
    bool ok;
    std::string says;  // with <dir> for the scratch directory
  };
  const std::vector<row> rows = {
      {"a private tree under the sticky /tmp", [](auto&, auto&) { return true; }, true, ""},
      {"a group-writable plugin file",
       [](auto&, auto& p) {
         set_mode(p, 0664);
         return true;
       },
       false, "file <dir>/a/b/p.so is writable by group (mode 0664)"},
      {"a world-writable plugin file",
       [](auto&, auto& p) {
         set_mode(p, 0646);
         return true;
       },
       false, "file <dir>/a/b/p.so is writable by everyone (mode 0646)"},
      {"a group-writable plugin directory",
       [](auto& d, auto&) {
         set_mode(d / "a" / "b", 0775);
         return true;
       },
       false, "directory <dir>/a/b is writable by group (mode 0775)"},
      {"a world-writable directory two levels up",
       [](auto& d, auto&) {
         set_mode(d / "a", 0757);
         return true;
       },
       false, "directory <dir>/a is writable by everyone (mode 0757)"},
      {"a world-writable directory with the sticky bit, like /tmp",
       [](auto& d, auto&) {
         set_mode(d / "a", 01777);
         return true;
       },
       true, ""},
      {"a read-only tree (0555 directories, 0444 file)",
       [](auto& d, auto& p) {
         set_mode(p, 0444);
         set_mode(d / "a" / "b", 0555);
         set_mode(d / "a", 0555);
         return true;
       },
       true, ""},
      {"a plugin file owned by another user",
       [&](auto&, auto& p) {
         if (!root || !nobody) return false;
         REQUIRE(::chown(p.c_str(), *nobody, static_cast<gid_t>(-1)) == 0);
         return true;
       },
       false, "file <dir>/a/b/p.so is owned by user 'nobody'"},
      {"a directory owned by another user",
       [&](auto& d, auto&) {
         if (!root || !nobody) return false;
         REQUIRE(::chown((d / "a").c_str(), *nobody, static_cast<gid_t>(-1)) == 0);
         return true;
       },
       false, "directory <dir>/a is owned by user 'nobody'"},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    scratch_dir s;
    const fs::path plugin = copy_plugin(s.path / "a" / "b", "fixture_monitor", "p");
    if (!r.arrange(s.path, plugin)) {
      WARN("skipped (needs root and a 'nobody' user): " << r.what);
      continue;
    }
    auto checked = core::check_plugin_permissions(plugin.string(), ::geteuid());
    INFO((checked.ok() ? "ok: " + *checked : checked.error().message()));
    REQUIRE(checked.ok() == r.ok);
    if (r.ok) {
      CHECK(*checked == fs::canonical(plugin).string());
      continue;
    }
    CHECK(checked.error().code() == sdk::status_code::refused);
    std::string says = r.says;
    says.replace(says.find("<dir>"), 5, fs::canonical(s.path).string());
    CHECK_THAT(checked.error().message(), Catch::Contains(says));
  }
}

TEST_CASE("a plugin owned by the daemon's own user passes, and the bundled and build dirs pass",
          "[core][security][plugins]") {
  for (const auto& dir : {test::bundled_plugin_dir(), test::fixture_plugin_dir()}) {
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.path().extension() != ".so" || !entry.is_regular_file()) continue;
      INFO(entry.path());
      auto checked = core::check_plugin_permissions(entry.path().string(), ::geteuid());
      INFO((checked.ok() ? std::string() : checked.error().message()));
      CHECK(checked.ok());
    }
  }
  const auto nobody = nobody_uid();
  if (::geteuid() != 0 || !nobody) {
    WARN("skipped the other-owner half: needs root and a 'nobody' user");
    return;
  }
  scratch_dir s;
  const fs::path plugin = copy_plugin(s.path / "mine", "fixture_monitor", "p");
  REQUIRE(::chown(plugin.c_str(), *nobody, static_cast<gid_t>(-1)) == 0);
  // For a daemon running as nobody, nobody's file is its own; for root's daemon it is not.
  CHECK(core::check_plugin_permissions(plugin.string(), *nobody).ok());
  CHECK_FALSE(core::check_plugin_permissions(plugin.string(), 0).ok());
}

TEST_CASE("a symlink is judged by where it leads, and that is the path returned",
          "[core][security][plugins]") {
  scratch_dir s;
  const fs::path safe = copy_plugin(s.path / "safe", "fixture_monitor", "p");
  const fs::path unsafe = copy_plugin(s.path / "unsafe", "fixture_monitor", "p");
  set_mode(s.path / "unsafe", 0777);
  fs::create_directories(s.path / "links");
  fs::create_symlink(unsafe, s.path / "links" / "to_unsafe.so");
  fs::create_symlink(safe, s.path / "unsafe" / "to_safe.so");

  auto bad =
      core::check_plugin_permissions((s.path / "links" / "to_unsafe.so").string(), ::geteuid());
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message(),
             Catch::Contains("directory " + fs::canonical(s.path / "unsafe").string() +
                             " is writable by everyone"));
  // A link kept in an unsafe place to a safe file: what is checked and loaded is the target, so
  // swapping the link later cannot change what this load maps.
  auto good =
      core::check_plugin_permissions((s.path / "unsafe" / "to_safe.so").string(), ::geteuid());
  INFO((good.ok() ? std::string() : good.error().message()));
  REQUIRE(good.ok());
  CHECK(*good == fs::canonical(safe).string());

  auto missing = core::check_plugin_permissions((s.path / "nope.so").string(), ::geteuid());
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code() == sdk::status_code::not_found);
  fs::create_directories(s.path / "dir.so");
  auto dir = core::check_plugin_permissions((s.path / "dir.so").string(), ::geteuid());
  REQUIRE_FALSE(dir.ok());
  CHECK_THAT(dir.error().message(), Catch::Contains("is not a regular file"));
}

TEST_CASE("the plugin host refuses an unsafe plugin before the dynamic loader maps it",
          "[core][security][plugins]") {
  scratch_dir s;
  // A name of its own: a copy of an already-loaded fixture would be the same inode as nothing
  // here, but a unique file makes the RTLD_NOLOAD check below unambiguous.
  const fs::path plugin = copy_plugin(s.path / "p", "fixture_monitor", "never_mapped");
  set_mode(s.path / "p", 0770);
  core::plugin_host host({(s.path / "p").string()});
  auto found = host.find("never_mapped");
  REQUIRE(found.ok());
  auto loaded = host.load(*found, "never_mapped");
  REQUIRE_FALSE(loaded.ok());
  CHECK(loaded.error().code() == sdk::status_code::refused);
  CHECK_THAT(loaded.error().message(),
             Catch::StartsWith("can't load plugin 'never_mapped' (" + plugin.string() + "): ") &&
                 Catch::Contains("is writable by group (mode 0770)"));
  // Not even mapped (its constructors never ran): RTLD_NOLOAD finds nothing.
  void* handle = ::dlopen(fs::canonical(plugin).c_str(), RTLD_NOW | RTLD_NOLOAD);
  CHECK(handle == nullptr);
  if (handle != nullptr) ::dlclose(handle);

  // Fixed, it loads.
  set_mode(s.path / "p", 0755);
  auto again = host.load(*found, "never_mapped");
  INFO((again.ok() ? std::string() : again.error().message()));
  CHECK(again.ok());
}

TEST_CASE("sha256 of a file matches the FIPS 180-2 vectors and sha256sum",
          "[core][security][plugins]") {
  scratch_dir s;
  struct row {
    std::string name;
    std::string bytes;
    std::string digest;  // FIPS 180-2, appendix B
  };
  const std::vector<row> rows = {
      {"empty", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"two blocks", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      // Larger than the 64 KiB read buffer: the streaming path.
      {"a million a", std::string(1'000'000, 'a'),
       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    const auto path = write_file(s.path / r.name, r.bytes);
    auto d = core::sha256_file(path);
    REQUIRE(d.ok());
    CHECK(*d == r.digest);
  }
  const std::string plugin = test::fixture_plugin("fixture_monitor");
  auto d = core::sha256_file(plugin);
  REQUIRE(d.ok());
  CHECK(*d == sha256sum(plugin));
  auto missing = core::sha256_file((s.path / "missing").string());
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code() == sdk::status_code::io_error);
  CHECK_THAT(missing.error().message(), Catch::Contains("missing"));
}

TEST_CASE("pinned digests must be 64 hex digits and are kept in lowercase",
          "[core][security][plugins]") {
  const std::string lower(64, 'a');
  struct row {
    std::string text;
    std::optional<std::string> parsed;
  };
  const std::vector<row> rows = {
      {lower, lower},
      {std::string(64, 'A'), lower},
      {"0123456789abcdefABCDEF" + std::string(42, '0'),
       "0123456789abcdefabcdef" + std::string(42, '0')},
      {std::string(63, 'a'), std::nullopt},
      {std::string(65, 'a'), std::nullopt},
      {std::string(63, 'a') + "g", std::nullopt},
      {"sha256:" + std::string(57, 'a'), std::nullopt},
      {" " + std::string(63, 'a'), std::nullopt},
      {"", std::nullopt},
  };
  for (const auto& r : rows) {
    INFO("'" << r.text << "'");
    CHECK(core::parse_sha256_hex(r.text) == r.parsed);
  }
}

TEST_CASE("a monitor's sha256 pin is checked before the plugin is loaded",
          "[core][security][plugins]") {
  scratch_dir s;
  const fs::path plugin = copy_plugin(s.path / "plugins", "fixture_monitor", "pinned");
  const std::string actual = sha256sum(plugin);
  std::string wrong = actual;
  wrong[0] = wrong[0] == '0' ? '1' : '0';
  auto yaml = [&](const std::string& extra) {
    return "version: 1\nmonitors:\n  - name: pinned\n    path: " + plugin.string() + "\n" + extra;
  };

  SECTION("the right digest loads, in either case") {
    auto lower = engine_for(yaml("    sha256: " + actual + "\n"));
    INFO((lower.ok() ? std::string() : lower.error().message()));
    CHECK(lower.ok());
    std::string upper = actual;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    auto e = engine_for(yaml("    sha256: \"" + upper + "\"\n"));
    INFO((e.ok() ? std::string() : e.error().message()));
    CHECK(e.ok());
  }
  SECTION("a wrong digest is refused with both digests, even for an optional monitor") {
    for (const std::string optional : {"false", "true"}) {
      for (const std::string isolation : {"thread", "process"}) {
        INFO("optional " << optional << ", isolation " << isolation);
        auto e = engine_for(yaml("    sha256: " + wrong + "\n    optional: " + optional +
                                 "\n    isolation: " + isolation + "\n"));
        REQUIRE_FALSE(e.ok());
        CHECK(e.error().code() == sdk::status_code::refused);
        CHECK_THAT(e.error().message(),
                   Catch::StartsWith("monitor 'pinned': can't load plugin") &&
                       Catch::Contains(plugin.string()) &&
                       Catch::Contains("its sha256 is " + actual + ", the config pins " + wrong));
      }
    }
  }
  SECTION("an unsafe directory is refused even for an optional monitor") {
    set_mode(s.path / "plugins", 0777);
    auto e = engine_for(yaml("    optional: true\n"));
    REQUIRE_FALSE(e.ok());
    CHECK_THAT(e.error().message(), Catch::Contains("is writable by everyone (mode 0777)"));
  }
  SECTION("a missing optional plugin is still skipped") {
    auto e = engine_for(
        "version: 1\nmonitors:\n  - {name: gone, path: " + (s.path / "gone.so").string() +
        ", optional: true, sha256: " + actual + "}\n");
    INFO((e.ok() ? std::string() : e.error().message()));
    REQUIRE(e.ok());
    CHECK((*e)->monitors().empty());
  }
  SECTION("a malformed pin is refused at config load with the field and the line") {
    for (const std::string& bad : {std::string(63, 'a'), std::string(64, 'z'), std::string("yes"),
                                  std::string("[" + actual + "]")}) {
      INFO(bad);
      auto cfg = core::parse_config(yaml("    sha256: " + bad + "\n"), "trust.yaml");
      REQUIRE_FALSE(cfg.ok());
      CHECK_THAT(cfg.error().message(),
                 Catch::StartsWith("monitors[0].sha256: expected 64 hexadecimal digits") &&
                     Catch::EndsWith("(trust.yaml:5)"));
    }
  }
}

TEST_CASE("an isolated monitor whose plugin changed is not restarted after a crash",
          "[core][security][plugins][isolation]") {
  scratch_dir s;
  const fs::path plugin = copy_plugin(s.path / "plugins", "crashing_monitor", "crashy");
  auto e = engine_for(
      "version: 1\nprobation: 0s\nmonitors:\n  - {name: crashy, path: " + plugin.string() +
      ", isolation: process, sha256: " + sha256sum(plugin) + "}\n");
  INFO((e.ok() ? std::string() : e.error().message()));
  REQUIRE(e.ok());
  auto event = [](std::uint64_t seq, const std::string& name) {
    v1::Envelope ev;
    ev.set_source("trainer/rank0");
    ev.set_run_id("run-1");
    ev.set_seq(seq);
    ev.set_time_unix_nano(static_cast<std::int64_t>(seq) * 1'000'000);
    ev.mutable_metrics()->add_samples()->set_name(name);
    return ev;
  };
  (*e)->process(event(1, "crash"));
  // Someone with write access to the file changes it while the child is down.
  {
    std::ofstream out(plugin, std::ios::binary | std::ios::app);
    out << "appended";
  }
  std::this_thread::sleep_for(1200ms);  // the 1 s restart backoff
  (*e)->process(event(2, "x"));
  const auto monitors = (*e)->monitors();
  REQUIRE(monitors.size() == 1);
  INFO(monitors[0].last_error);
  CHECK_THAT(monitors[0].last_error, Catch::Contains("could not be restarted") &&
                                         Catch::Contains("its sha256 is") &&
                                         Catch::Contains("the config pins"));
}
