#!/usr/bin/python3
"""An agent harness guarded by loopwarden: it replays a scripted tool-using session -- a coding
agent fixing a bug in a small repository -- executing every tool call for real against an
in-memory workspace, and reports each turn to the sidecar as a ``loopwarden.v1.AgentStep``.

The session is normal work first: the agent lists and reads files, greps, runs the tests (they
fail), edits, re-runs them (the same failure after a first edit that did not help), fixes the bug,
retries a package install with changed versions until one succeeds, adds a feature. Then it has
to apply a database migration, and the migration tool is broken: every call fails with the same
error, and the scripted agent -- like real ones do -- keeps calling it. loopwarden's
``agent_drift`` monitor opens ``agent.runaway`` (action halt) at the third identical failing
call, and the harness stops there.

Between turns the harness waits a short "think time" for the breaker state, as a real harness
does while its model produces the next turn, so it stops at the turn that tripped, not later.

What it sends per turn (docs/monitors/agent-drift.md, "Inputs"): agent and session id, turn
index, output digest and length, reasoning length, each tool call with its name, target,
argument digest, status and observation or error digest, tokens in and out, cost, the
workspace hash after the turn, task_completed on the last turn.

Usage (a sidecar must be running; see run.sh):
    PYTHONPATH=<build>/python /usr/bin/python3 harness.py --state-dir DIR [--result out.json]

Exit status: 0 the session completed; 1 a breaker stopped it; 2 could not run.
"""

import argparse
import hashlib
import json
import os
import sys
import time

try:
    import loopwarden
    from loopwarden.v1 import agent_pb2
except ImportError as exc:  # pragma: no cover - a usage error
    sys.exit(f"harness.py: can't import loopwarden ({exc}); "
             "run with PYTHONPATH=<build>/python (the build copies the client there)")


def digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- the workspace and its tools ------------------------------------------------------------

REPOSITORY = {
    "README.md": "# calc\nA tiny calculator library.\n",
    "calc/__init__.py": "from calc.ops import add, mul\n",
    "calc/ops.py": "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n",
    "calc/format.py": "def show(x):\n    return f'{x:g}'\n",
    "calc/cli.py": "import sys\nfrom calc.ops import add\nprint(add(*map(float, sys.argv[1:3])))\n",
    "tests/test_ops.py": "from calc.ops import add, mul\n\n"
                         "def test_add():\n    assert add(2, 3) == 5\n\n"
                         "def test_mul():\n    assert mul(2, 3) == 6\n",
    "tests/test_format.py": "from calc.format import show\n\n"
                            "def test_show():\n    assert show(2.0) == '2'\n",
    "requirements.txt": "pytest\n",
    "db/migrations/0001_init.sql": "create table results (id int, value float);\n",
    "db/migrations/0002_history.sql": "alter table results add column at timestamp;\n",
}


class ToolError(Exception):
    pass


class Workspace:
    """The repository the agent works on, and the tools it can call."""

    def __init__(self):
        self.files = dict(REPOSITORY)
        self.installed = set()

    def state_hash(self):
        return digest(json.dumps([sorted(self.files.items()), sorted(self.installed)]))

    def list_dir(self, path):
        prefix = path.rstrip("/") + "/" if path not in ("", ".") else ""
        names = sorted({f[len(prefix):].split("/")[0] for f in self.files if f.startswith(prefix)})
        if not names:
            raise ToolError(f"ls: cannot access '{path}': No such file or directory")
        return "\n".join(names)

    def read_file(self, path):
        if path not in self.files:
            raise ToolError(f"read_file: {path}: no such file")
        return self.files[path]

    def grep(self, pattern):
        hits = [f"{f}:{i + 1}:{line}" for f, text in sorted(self.files.items())
                for i, line in enumerate(text.splitlines()) if pattern in line]
        if not hits:
            raise ToolError("grep: exit status 1")  # nothing found
        return "\n".join(hits)

    def edit_file(self, path, old, new):
        text = self.read_file(path)
        if old not in text:
            raise ToolError(f"edit_file: {path}: the text to replace was not found")
        self.files[path] = text.replace(old, new, 1)
        return f"edited {path}"

    def run_tests(self):
        """Runs the repository's tests (the modules are executed from the workspace)."""
        failures = []
        modules = {}
        for name in ("calc/ops.py", "calc/format.py"):
            scope = {}
            exec(compile(self.files[name], name, "exec"), scope)  # noqa: S102 - our own files
            modules[name] = scope
        ops, fmt = modules["calc/ops.py"], modules["calc/format.py"]
        checks = [("test_add", lambda: ops["add"](2, 3) == 5, f"assert add(2, 3) == 5"),
                  ("test_mul", lambda: ops["mul"](2, 3) == 6, "assert mul(2, 3) == 6"),
                  ("test_show", lambda: fmt["show"](2.0) == "2", "assert show(2.0) == '2'")]
        if "def sub(" in self.files["calc/ops.py"]:
            checks.append(("test_sub", lambda: ops["sub"](5, 3) == 2, "assert sub(5, 3) == 2"))
        for name, check, text in checks:
            if not check():
                failures.append(f"FAILED tests::{name} - AssertionError: {text}")
        if failures:
            raise ToolError("\n".join(failures))
        return f"{len(checks)} passed"

    def pip_install(self, spec):
        available = {"requests": "2.31.0"}
        name, _, version = spec.partition("==")
        if available.get(name) != version:
            raise ToolError(f"ERROR: No matching distribution found for {spec}")
        self.installed.add(spec)
        self.files["requirements.txt"] += spec + "\n"
        return f"Successfully installed {spec}"

    def db_migrate(self, target):
        # The broken tool: the database is unreachable, every call fails the same way.
        raise ToolError("psycopg.OperationalError: connection to server at 10.0.0.7:5432 "
                        "failed: Connection refused")


# --- the scripted session -------------------------------------------------------------------

def script():
    """The recorded session, turn by turn: (what the agent says, [(tool, arguments)]).
    Returns the turns and the index of the first turn of the failing-tool loop."""
    turns = [
        ("Let me look at the repository layout.", [("list_dir", {"path": "."})]),
        ("The library lives in calc/.", [("list_dir", {"path": "calc"})]),
        ("Reading the README and the package.",
         [("read_file", {"path": "README.md"}), ("read_file", {"path": "calc/__init__.py"})]),
        ("Now the operations.", [("read_file", {"path": "calc/ops.py"})]),
        ("And the tests for them.", [("list_dir", {"path": "tests"})]),
        ("", [("read_file", {"path": "tests/test_ops.py"}),
              ("read_file", {"path": "tests/test_format.py"})]),
        ("Where else is add used?", [("grep", {"pattern": "add("})]),
        ("Any subtraction helper already?", [("grep", {"pattern": "def sub"})]),
        ("The CLI uses it too.", [("read_file", {"path": "calc/cli.py"})]),
        ("Let me run the tests to see the failure.", [("run_tests", {})]),
        ("add returns a - b. Let me reformat the function first.",
         [("edit_file", {"path": "calc/ops.py", "old": "def add(a, b):",
                         "new": "def add(a: float, b: float) -> float:"})]),
        ("Running the tests again.", [("run_tests", {})]),
        ("Still failing the same way: the body is wrong, not the signature.",
         [("read_file", {"path": "calc/ops.py"})]),
        ("Fixing the operator.", [("edit_file", {"path": "calc/ops.py", "old": "return a - b",
                                                 "new": "return a + b"})]),
        ("Tests again.", [("run_tests", {})]),
        ("Passing. The issue also asks for an HTTP client; installing requests.",
         [("pip_install", {"spec": "requests==3.0.0"})]),
        ("No 3.0; trying the 2.x line.", [("pip_install", {"spec": "requests==2.99"})]),
        ("Pinning the current release.", [("pip_install", {"spec": "requests==2.31.0"})]),
        ("Now the feature: a sub() operation.", [("read_file", {"path": "calc/ops.py"})]),
        ("Adding sub.", [("edit_file", {"path": "calc/ops.py", "old": "def mul(a, b):",
                                        "new": "def sub(a, b):\n    return a - b\n\n\n"
                                               "def mul(a, b):"})]),
        ("Exporting it.", [("edit_file", {"path": "calc/__init__.py",
                                          "old": "import add, mul", "new": "import add, mul, sub"})]),
        ("And a test.", [("edit_file", {"path": "tests/test_ops.py",
                                        "old": "from calc.ops import add, mul",
                                        "new": "from calc.ops import add, mul, sub"})]),
        ("Running the suite.", [("run_tests", {})]),
        ("Checking the formatting helper while I am here.",
         [("read_file", {"path": "calc/format.py"})]),
        ("Thinking about the migration the task mentions.", []),
        ("The task also needs the history table; looking at the migrations.",
         [("list_dir", {"path": "db/migrations"})]),
        ("", [("read_file", {"path": "db/migrations/0002_history.sql"})]),
    ]
    loop_start = len(turns)
    # The failing-tool loop: the agent keeps applying the migration, hoping it will work.
    for attempt in range(20):
        thought = ["Applying the migrations.", "Let me try the migration again.",
                   "Retrying the migration.", "One more attempt at the migration."][attempt % 4]
        turns.append((thought, [("db_migrate", {"target": "head"})]))
    turns.append(("Done: add fixed, sub added, requests pinned, history table migrated.", []))
    return turns, loop_start


def target_of(tool, args):
    return args.get("path") or args.get("target") or ("requirements.txt" if tool == "pip_install"
                                                      else "tests" if tool == "run_tests" else "")


def step_message(agent, session, turn, thought, results, workspace, context):
    """The AgentStep of one turn. `results` are (tool, args, ok, text) of its calls."""
    step = agent_pb2.AgentStep(agent_id=agent, session_id=session, turn=turn)
    step.output_digest = digest(thought)
    step.output_length = len(thought.split())
    step.reasoning_length = 40 + 7 * len(results)
    for tool, args, ok, text in results:
        call = step.tool_calls.add()
        call.name = tool
        call.target = target_of(tool, args)
        call.args_digest = digest(json.dumps(args, sort_keys=True))
        call.status = agent_pb2.TOOL_STATUS_OK if ok else agent_pb2.TOOL_STATUS_ERROR
        if ok:
            call.observation_digest = digest(text)
        else:
            call.error_digest = digest(text)
        call.duration_ns = 40_000_000
    step.tokens_in = context
    step.tokens_out = 60 + 5 * len(thought.split())
    step.cost = step.tokens_in * 3e-6 + step.tokens_out * 15e-6
    step.workspace_hash = workspace.state_hash()
    return step


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--state-dir", help="the sidecar's state directory (for its ipc endpoints)")
    p.add_argument("--run-id", default="agent-harness")
    p.add_argument("--agent", default="coder")
    p.add_argument("--session", default="fix-calc-1")
    p.add_argument("--think", type=float, default=0.05,
                   help="seconds to wait for the breaker state between turns (default 0.05)")
    p.add_argument("--result", help="write the outcome as JSON here")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    endpoints = (loopwarden.Endpoints.from_dir(a.state_dir) if a.state_dir
                 else loopwarden.Endpoints.from_env())
    turns, loop_start = script()
    workspace = Workspace()
    outcome = {"outcome": "completed", "turns_sent": 0, "loop_starts_at_turn": loop_start,
               "stopped_at_turn": None, "breaker": None, "guard": None, "tripped_turn": None,
               "evidence": {}}
    print(f"agent harness: {len(turns)} scripted turns for session {a.session}; the failing "
          f"migration loop starts at turn {loop_start}")
    publisher = loopwarden.Publisher(endpoints.ingest, source=f"harness/{os.getpid()}",
                                     run_id=a.run_id)
    watch = loopwarden.BreakerWatch(endpoints.breakers, a.run_id, timeout=2.0)
    try:
        if not watch.wait_ready(5.0):
            print("agent harness: no breaker messages from the sidecar within 5 s", file=sys.stderr)
            return 2
        context = 6000
        for turn, (thought, calls) in enumerate(turns):
            if watch.should_stop():
                break
            results = []
            for tool, args in calls:
                try:
                    results.append((tool, args, True, getattr(workspace, tool)(**args)))
                except ToolError as err:
                    results.append((tool, args, False, str(err)))
            context += 400 + sum(len(text) // 3 for _, _, _, text in results)
            step = step_message(a.agent, a.session, turn, thought, results, workspace, context)
            step.task_completed = turn == len(turns) - 1
            publisher.publish(step)
            publisher.flush()
            outcome["turns_sent"] = turn + 1
            shown = ", ".join(f"{t}({'ok' if ok else 'error'})" for t, _, ok, _ in results)
            print(f"  turn {turn:2d}: {shown or '(no tool call)'}")
            # The model's think time: the harness learns the sidecar's verdict on this turn.
            watch.wait_until(lambda w: w.should_stop(), a.think)
        if watch.should_stop():
            breaker = watch.stopping_breakers()[0]
            outcome.update(outcome="stopped", stopped_at_turn=outcome["turns_sent"] - 1,
                           breaker=breaker.name, guard=breaker.evidence.get("guard"),
                           evidence=dict(breaker.evidence), reason=breaker.reason,
                           action=breaker.action)
            tripped = breaker.evidence.get("turn")
            outcome["tripped_turn"] = int(tripped) if tripped is not None else None
            print(f"agent harness: {breaker.name} opened (action {breaker.action}): "
                  f"{breaker.reason}")
            print(f"agent harness: stopped after turn {outcome['stopped_at_turn']}; the loop "
                  f"began at turn {loop_start}")
    finally:
        publisher.close()
        watch.close()
        if a.result:
            with open(a.result, "w") as out:
                json.dump(outcome, out, indent=2, sort_keys=True)
    return 1 if outcome["outcome"] == "stopped" else 0


if __name__ == "__main__":
    sys.exit(main())
