#!/usr/bin/python3
"""Checks that an out-of-tree plugin author can do what docs/plugin-guide.md says.

Registered with ctest by tests/plugin_guide.cmake, one step per test, in fixture order:

  install          cmake --install the build into a fresh prefix, check the installed tree and
                   that a consumer's find_package(loopwarden) sees what it should
  build            configure and build a project against the installed package only (the
                   guide's example, extracted from its `<!-- file: NAME -->` blocks, or the
                   template), with -Wall -Wextra -Werror
  run-guide        the built example plugin through the real `loopwarden`: config check on the
                   guide's YAML, replay of the guide's own recording, and recordings made here
  run-template     the same for examples/plugin_template

Every step writes only under its --work directory and the --prefix (both inside the build
tree), never into the source tree. Run with Debian's
/usr/bin/python3; the recordings need PYTHONPATH=<build>/python (the generated protobuf
modules and loopwarden.replay).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# A block of the guide that belongs to the example project.
MARKER = re.compile(r"^<!--\s*file:\s*(?P<name>[^\s>]+)\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>.*)$")

# What an out-of-tree build must pass; the compiler is the one the SDK was built with.
WARNING_FLAGS = "-Wall -Wextra -Werror"


class Failure(Exception):
    """A check failed; the message says what was expected and what happened."""


def fail(message):
    raise Failure(message)


def run(cmd, *, cwd=None, env=None, expect=None, what=None):
    """Runs cmd, returns (exit status, stdout, stderr); fails unless the status is `expect`."""
    shown = " ".join(str(c) for c in cmd)
    print(f"$ {shown}", flush=True)
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.stdout:
        print(proc.stdout, end="" if proc.stdout.endswith("\n") else "\n")
    if proc.stderr:
        print(proc.stderr, end="" if proc.stderr.endswith("\n") else "\n", file=sys.stderr)
    if expect is not None and proc.returncode != expect:
        fail(
            f"{what or shown}: expected exit status {expect}, got {proc.returncode}\n"
            f"  command: {shown}\n  stdout: {proc.stdout.strip()}\n  stderr: {proc.stderr.strip()}"
        )
    return proc.returncode, proc.stdout, proc.stderr


def fresh_dir(path):
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# ---------------------------------------------------------------------------------------------
# install

INSTALLED_FILES = [
    "include/loopwarden/monitor.hpp",
    "include/loopwarden/context.hpp",
    "include/loopwarden/plugin.hpp",
    "include/loopwarden/config_node.hpp",
    "include/loopwarden/status.hpp",
    "include/loopwarden/types.hpp",
    "include/loopwarden/event_kind.hpp",
    "include/loopwarden/abi.hpp",
    "include/loopwarden/version.hpp",
    "include/loopwarden/stats.hpp",
    "include/loopwarden/stats/welford.hpp",
    "include/loopwarden/v1/envelope.pb.h",
    "include/loopwarden/v1/metrics.pb.h",
    "include/loopwarden/v1/gate.pb.h",
    "share/loopwarden/proto/loopwarden/v1/envelope.proto",
    "{libdir}/cmake/loopwarden/loopwardenConfig.cmake",
    "{libdir}/cmake/loopwarden/loopwardenConfigVersion.cmake",
    "{libdir}/cmake/loopwarden/loopwardenTargets.cmake",
    "{libdir}/loopwarden/plugins/threshold.so",
    "bin/loopwarden",
]


def step_install(args):
    prefix = Path(args.prefix)
    work = fresh_dir(args.work)
    if prefix.exists():
        shutil.rmtree(prefix)
    run([args.cmake, "--install", args.build_dir, "--prefix", prefix], expect=0,
        what="cmake --install of the build (these tests need a complete build: run "
        "`cmake --build` first)")

    libdir = args.libdir
    expected = [f.format(libdir=libdir) for f in INSTALLED_FILES]
    missing = [f for f in expected if not (prefix / f).exists()]
    if not list((prefix / libdir).glob("libloopwarden_sdk.so*")):
        missing.append(f"{libdir}/libloopwarden_sdk.so*")
    if missing:
        fail(f"the installed tree under {prefix} lacks: {', '.join(missing)}")

    # The installed headers include only other installed headers: every #include <loopwarden/…>
    # must resolve inside the prefix (a header that reaches into core/ or the build tree would
    # only fail later, in some plugin author's build).
    include_root = prefix / "include"
    for header in sorted(include_root.rglob("*.h*")):
        for line in header.read_text(errors="replace").splitlines():
            m = re.match(r'\s*#\s*include\s*[<"](loopwarden/[^>"]+)[>"]', line)
            if m and not (include_root / m.group(1)).exists():
                fail(f"installed header {header.relative_to(prefix)} includes <{m.group(1)}>, "
                     "which is not installed")

    # Nothing in the package may point back into the source or build tree: the prefix must be
    # usable after the build is deleted, and relocatable.
    for f in sorted((prefix / libdir / "cmake/loopwarden").glob("*.cmake")):
        text = f.read_text()
        for tree in (args.source_dir, args.build_dir):
            if os.path.realpath(tree) in text or str(tree) in text:
                fail(f"{f.relative_to(prefix)} refers to {tree}; the installed package must only "
                     "use paths relative to its prefix")

    run([prefix / "bin/loopwarden", "--version"], expect=0,
        what="the installed loopwarden (its RPATH must find the installed libloopwarden_sdk)")

    # What a consumer's find_package sees: paths, version rules, the target, the helper.
    probe_build = work / "probe-build"
    run([args.cmake, "-S", args.probe_dir, "-B", probe_build, "-G", args.generator,
         f"-DCMAKE_PREFIX_PATH={prefix}", f"-DEXPECTED_PREFIX={prefix.resolve()}",
         f"-DEXPECTED_LIBDIR={libdir}",
         f"-DCMAKE_CXX_COMPILER={args.cxx_compiler}"],
        expect=0, what="a consumer project's find_package(loopwarden) (see the probe's messages)")
    print(f"ok: sdk installed to {prefix}")


# ---------------------------------------------------------------------------------------------
# build

def closes_fence(line, fence):
    """True if `line` closes a block opened by `fence` (CommonMark: the same character, at least
    as many, nothing else on the line)."""
    s = line.strip()
    return len(s) >= len(fence) and set(s) == {fence[0]}


def extract_guide(guide, out_dir):
    """Writes every `<!-- file: NAME -->` block of the guide into out_dir; returns the names."""
    lines = Path(guide).read_text().splitlines(keepends=True)
    files = {}
    i = 0
    while i < len(lines):
        m = MARKER.match(lines[i].rstrip("\n"))
        if not m:
            i += 1
            continue
        name = m.group("name")
        where = f"{guide}:{i + 1}"
        if name.startswith("/") or ".." in Path(name).parts:
            fail(f"{where}: file marker '{name}' must be a relative path inside the project")
        if name in files:
            fail(f"{where}: a second block for '{name}'")
        if i + 1 >= len(lines) or not FENCE.match(lines[i + 1].rstrip("\n")):
            fail(f"{where}: the file marker for '{name}' must be followed at once by a fenced "
                 "code block (``` on the next line)")
        fence = FENCE.match(lines[i + 1].rstrip("\n")).group("fence")
        body = []
        j = i + 2
        while j < len(lines):
            if closes_fence(lines[j], fence):
                break
            body.append(lines[j])
            j += 1
        else:
            fail(f"{where}: the code block for '{name}' is never closed")
        files[name] = "".join(body)
        i = j + 1

    required = ["CMakeLists.txt", "loopwarden.yaml"]
    absent = [r for r in required if r not in files]
    if not any(n.endswith(".cpp") for n in files):
        absent.append("a .cpp file")
    if absent:
        fail(f"{guide}: the example project has no marked block for {', '.join(absent)} "
             f"(found: {', '.join(files) or 'none'})")
    for name, text in files.items():
        path = Path(out_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"extracted from {guide}: {', '.join(files)}")
    return list(files)


def step_build(args):
    work = fresh_dir(args.work)
    if args.guide:
        source = work / "src"
        source.mkdir()
        extract_guide(args.guide, source)
    else:
        source = Path(args.source)
    build = work / "build"
    run([args.cmake, "-S", source, "-B", build, "-G", args.generator,
         f"-DCMAKE_PREFIX_PATH={args.prefix}", f"-DCMAKE_CXX_COMPILER={args.cxx_compiler}",
         f"-DCMAKE_CXX_FLAGS={WARNING_FLAGS}", "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
        expect=0, what=f"configuring {source} against the installed sdk")

    # It must have found the package in the prefix, not some other installation.
    cache = (build / "CMakeCache.txt").read_text()
    m = re.search(r"^loopwarden_DIR:PATH=(.*)$", cache, re.M)
    want = (Path(args.prefix) / args.libdir / "cmake/loopwarden").resolve()
    if not m or Path(m.group(1)).resolve() != want:
        fail(f"{source} found loopwarden in {m.group(1) if m else 'nowhere'}, expected {want}")

    run([args.cmake, "--build", build, "-j2"], expect=0,
        what=f"building {source} with {WARNING_FLAGS} against the installed sdk")
    plugin = build / f"{args.plugin}.so"
    if not plugin.is_file():
        fail(f"building {source} did not produce {plugin}")
    print(f"ok: built {plugin}")


# ---------------------------------------------------------------------------------------------
# run

def python_env(args):
    env = dict(os.environ)
    env["PYTHONPATH"] = args.python_dir
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def write_recording(args, path, envelopes):
    """Writes envelopes (a list of dicts for envelope_pb2.Envelope) with the Python writer."""
    script = (
        "import json, sys\n"
        "from google.protobuf import json_format\n"
        "from loopwarden.replay import ReplayWriter\n"
        "from loopwarden.v1 import envelope_pb2, replay_pb2\n"
        "header = replay_pb2.ReplayHeader(producer='tests/sdk/plugin_guide')\n"
        "header.schema.major = 1\n"
        "with ReplayWriter(sys.argv[1], header) as w:\n"
        "    for e in json.load(sys.stdin):\n"
        "        w.append(json_format.ParseDict(e, envelope_pb2.Envelope()))\n"
    )
    proc = subprocess.run([args.python, "-c", script, str(path)], input=json.dumps(envelopes),
                          env=python_env(args), capture_output=True, text=True)
    if proc.returncode != 0:
        fail(f"can't write the recording {path} with the Python writer "
             f"(PYTHONPATH={args.python_dir}): {proc.stderr.strip()}")


def replay(args, recording, config, plugin_dir, expect):
    status, out, _ = run([args.loopwarden, "replay", recording, "--config", config,
                          "--plugin-path", plugin_dir, "--json"],
                         expect=expect, what=f"loopwarden replay {Path(recording).name}")
    lines = []
    for n, line in enumerate(out.splitlines(), 1):
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError as e:
            fail(f"replay --json printed a line that is not JSON (line {n}: {e}): {line!r}")
    summary = [l for l in lines if l.get("type") == "summary"]
    if len(summary) != 1:
        fail(f"replay --json printed {len(summary)} summary lines, expected 1")
    transitions = [l for l in lines if l.get("type") == "transition"]
    return transitions, summary[0]


def expect_trip(transitions, summary, *, breaker, monitor, event_index=None, run_id=None):
    opened = [t for t in transitions if t.get("to") == "open"]
    if [t.get("breaker") for t in opened] != [breaker]:
        fail(f"expected exactly one trip, of breaker '{breaker}', got "
             f"{[t.get('breaker') for t in opened]} (transitions: {transitions})")
    t = opened[0]
    if t.get("monitor") != monitor:
        fail(f"breaker '{breaker}' was tripped by monitor '{t.get('monitor')}', expected "
             f"'{monitor}'")
    if event_index is not None and t.get("event_index") != event_index:
        fail(f"breaker '{breaker}' tripped at event {t.get('event_index')}, expected event "
             f"{event_index}: {t}")
    if run_id is not None and t.get("run_id") != run_id:
        fail(f"breaker '{breaker}' tripped for run '{t.get('run_id')}', expected '{run_id}'")
    if not any(o.startswith(breaker) for o in summary.get("opened", [])):
        fail(f"the summary does not list '{breaker}' as opened: {summary}")
    return t


def metric_envelopes(run_id, losses, *, t0=1_767_225_600_000_000_000):
    return [{
        "source": "trainer/rank0",
        "runId": run_id,
        "seq": str(i + 1),
        "timeUnixNano": str(t0 + (i + 1) * 1_000_000_000),
        "metrics": {"samples": [{"name": "train/loss", "value": v, "step": str(i + 1)},
                                {"name": "lr", "value": 3e-4, "step": str(i + 1)}]},
    } for i, v in enumerate(losses)]


def step_run_guide(args):
    work = fresh_dir(args.work)
    src = Path(args.example_dir)
    yaml_file = src / "loopwarden.yaml"

    # 1. The guide's config, as written, with the plugin as built.
    _, out, _ = run([args.loopwarden, "config", "check", yaml_file, "--plugin-path",
                     args.plugin_dir], expect=0, what="config check of the guide's loopwarden.yaml")
    if "stuck_metric" not in out:
        fail(f"config check did not report the stuck_metric plugin: {out.strip()}")

    # 2. A misspelt key is refused with its path and line, as the guide promises.
    text = yaml_file.read_text()
    if "samples:" not in text:
        fail("the guide's loopwarden.yaml has no 'samples:' key to misspell")
    bad = work / "misspelt.yaml"
    bad.write_text(text.replace("samples:", "sampels:", 1))
    line = next(n for n, l in enumerate(bad.read_text().splitlines(), 1) if "sampels:" in l)
    _, _, err = run([args.loopwarden, "config", "check", bad, "--plugin-path", args.plugin_dir],
                    expect=1, what="config check of a config with a misspelt key")
    want = re.compile(r"monitors\[\d+\]\.config\.sampels: unknown key "
                      r"\(allowed: [^)]*samples[^)]*\) "
                      rf"\(.*misspelt\.yaml:{line}\)")
    if not want.search(err):
        fail(f"config check should name the misspelt key with its path and line "
             f"(misspelt.yaml:{line}); it said: {err.strip()}")

    # 3. The guide's own recording script, as written, and the replay the guide shows.
    if (src / "make_events.py").exists():
        recording = work / "events.lwreplay"
        run([args.python, src / "make_events.py", recording], cwd=work, env=python_env(args),
            expect=0, what="the guide's make_events.py")
        transitions, summary = replay(args, recording, yaml_file, args.plugin_dir, expect=1)
        expect_trip(transitions, summary, breaker="training.stuck_metric", monitor="loss_stuck")

    # 4. Recordings made here, with a config of our own, pin the behaviour the guide describes:
    #    trips on the `samples`-th flat sample within epsilon, not before, and not while moving.
    config = work / "stuck.yaml"
    config.write_text(
        "version: 1\n"
        "monitors:\n"
        "  - name: stuck\n"
        "    plugin: stuck_metric\n"
        "    config:\n"
        "      metric: train/loss\n"
        "      samples: 4\n"
        "      epsilon: 0.001\n")
    # Falls for 6 samples, then wobbles within epsilon: the 4th flat sample (index 8) trips.
    stuck = work / "stuck.lwreplay"
    write_recording(args, stuck, metric_envelopes(
        "run-stuck", [3.0, 2.5, 2.0, 1.6, 1.3, 1.1, 1.1004, 1.0998, 1.1001, 1.1, 1.1]))
    transitions, summary = replay(args, stuck, config, args.plugin_dir, expect=1)
    t = expect_trip(transitions, summary, breaker="training.stuck_metric", monitor="stuck",
                    event_index=8, run_id="run-stuck")
    evidence = dict(tuple(kv) for kv in t.get("evidence", []))
    if evidence.get("metric") != "train/loss" or evidence.get("samples") != "4":
        fail(f"unexpected evidence for the stuck run: {t.get('evidence')}")

    # A loss that keeps falling (while the constant lr is ignored) never trips.
    moving = work / "moving.lwreplay"
    falling = [3.0 - 0.01 * i for i in range(40)]
    write_recording(args, moving, metric_envelopes("run-moving", falling))
    transitions, summary = replay(args, moving, config, args.plugin_dir, expect=0)
    if transitions or summary.get("opened"):
        fail(f"a steadily falling loss must not trip anything, got {transitions}")
    print("ok: the guide's example monitor checks, trips and stays quiet as documented")


def step_run_template(args):
    work = fresh_dir(args.work)
    src = Path(args.example_dir)
    yaml_file = src / "loopwarden.yaml"
    _, out, _ = run([args.loopwarden, "config", "check", yaml_file, "--plugin-path",
                     args.plugin_dir],
                    expect=0, what="config check of the template's loopwarden.yaml")
    if "session_budget" not in out:
        fail(f"config check did not report the session_budget plugin: {out.strip()}")

    # The template's own ctest (config check with the installed loopwarden).
    run([args.ctest, "--test-dir", args.plugin_dir, "--output-on-failure"], expect=0,
        what="the template project's own ctest")

    # Session a/s1 spends 0.75 per turn against the example's budget of 2.5: the 4th turn
    # (3.0 spent, event index 6 after interleaving) trips; session a/s2 stays under budget.
    t0 = 1_767_225_600_000_000_000
    envelopes = []
    for turn in range(4):
        for n, (session, cost) in enumerate((("s1", 0.75), ("s2", 0.25))):
            envelopes.append({
                "source": "agent/a", "runId": "run-agents", "seq": str(len(envelopes) + 1),
                "timeUnixNano": str(t0 + (2 * turn + n) * 1_000_000_000),
                "agentStep": {"agentId": "a", "sessionId": session, "turn": str(turn),
                              "cost": cost},
            })
    recording = work / "budget.lwreplay"
    write_recording(args, recording, envelopes)
    transitions, summary = replay(args, recording, yaml_file, args.plugin_dir, expect=1)
    t = expect_trip(transitions, summary, breaker="agent.budget", monitor="agent_budget",
                    event_index=6, run_id="run-agents")
    if t.get("action") != "require_approval":
        fail(f"the example config sets action require_approval for agent.budget, got {t}")
    print("ok: the template's monitor checks and trips as documented")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=["install", "build", "run-guide", "run-template"])
    p.add_argument("--work", required=True, help="scratch directory for this step (recreated)")
    p.add_argument("--build-dir", help="the loopwarden build to install")
    p.add_argument("--source-dir", help="the loopwarden source tree")
    p.add_argument("--prefix", help="the install prefix")
    p.add_argument("--libdir", default="lib", help="CMAKE_INSTALL_LIBDIR of the build")
    p.add_argument("--probe-dir", help="the find_package probe project")
    p.add_argument("--guide", help="build: extract the example project from this markdown file")
    p.add_argument("--source", help="build: the project to build (when not --guide)")
    p.add_argument("--plugin", help="build: the plugin name the project must produce")
    p.add_argument("--cmake", default="cmake", help="the cmake of the loopwarden build")
    p.add_argument("--ctest", default="ctest", help="the ctest of the loopwarden build")
    p.add_argument("--generator", default="Ninja")
    p.add_argument("--cxx-compiler", default="c++")
    p.add_argument("--loopwarden", help="run: the loopwarden executable")
    p.add_argument("--plugin-dir", help="run: the directory holding the built plugin")
    p.add_argument("--example-dir", help="run: the example project's sources")
    p.add_argument("--python", default="/usr/bin/python3", help="python with protobuf")
    p.add_argument("--python-dir", help="run: <build>/python, for the replay writer")
    args = p.parse_args()
    steps = {"install": step_install, "build": step_build, "run-guide": step_run_guide,
             "run-template": step_run_template}
    try:
        steps[args.step](args)
    except Failure as e:
        print(f"FAILED ({args.step}): {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
