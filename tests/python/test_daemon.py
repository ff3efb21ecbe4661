"""The Python host client against the real daemon: `loopwarden serve` as a child process, over
real ipc sockets in a temporary state directory (docs/wire-protocol.md).

The daemon runs the fixture monitor (tests/fixtures/plugins/fixture_monitor.cpp): a metric sample
named "trip" opens the run-scoped breaker fixture.trip (action pause), and gate requests whose
command contains "deny" are denied.

ctest sets LOOPWARDEN_BIN (the loopwarden executable) and LOOPWARDEN_FIXTURE_PLUGINS (the built
test plugins). By hand:

    LOOPWARDEN_BIN=build/dev/bin/loopwarden \
    LOOPWARDEN_FIXTURE_PLUGINS=build/dev/tests/fixtures/plugins \
    PYTHONPATH=build/dev/python /usr/bin/python3 -m unittest -v tests/python/test_daemon.py

Without them, the build directory is taken from the PYTHONPATH entry that ends in /python.
Every wait is bounded; a daemon that does not start fails the test (these tests never skip).
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import loopwarden
from loopwarden import (
    SILENCE_BREAKER,
    BreakerOpen,
    BreakerWatch,
    Endpoints,
    GateClient,
    Publisher,
    TrainingGuard,
)
from loopwarden.v1 import agent_pb2


def _build_dir_from_pythonpath():
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        entry = entry.rstrip("/")
        if entry.endswith("/python") and os.path.isdir(entry):
            return os.path.dirname(entry)
    return None


def _find(env_name, relative):
    value = os.environ.get(env_name)
    if value:
        return os.path.abspath(value)
    build = _build_dir_from_pythonpath()
    if build is None:
        raise RuntimeError(f"set {env_name} (or PYTHONPATH=<build>/python) to run these tests")
    return os.path.abspath(os.path.join(build, relative))


LOOPWARDEN_BIN = _find("LOOPWARDEN_BIN", "bin/loopwarden")
FIXTURE_PLUGINS = _find("LOOPWARDEN_FIXTURE_PLUGINS", "tests/fixtures/plugins")

CONFIG = """\
version: 1
log_level: info
state_dir: {state}
plugin_paths: [{plugins}]
probation: 0
transport:
  heartbeat_interval: 50ms
telemetry:
  silence_timeout: 30s
monitors:
  - name: fixture
    plugin: fixture_monitor
"""


def setUpModule():
    # The client logs breaker openings and silence as warnings; keep the test output readable.
    logging.getLogger("loopwarden").setLevel(logging.CRITICAL)
    if not os.access(LOOPWARDEN_BIN, os.X_OK):
        raise RuntimeError(f"no loopwarden executable at {LOOPWARDEN_BIN}")
    if not os.path.exists(os.path.join(FIXTURE_PLUGINS, "fixture_monitor.so")):
        raise RuntimeError(f"no fixture_monitor.so in {FIXTURE_PLUGINS}")


def tearDownModule():
    logging.getLogger("loopwarden").setLevel(logging.NOTSET)


# How many times slower this build may run: LOOPWARDEN_TEST_TIME_SCALE, set by the sanitizer test
# presets (tests/time_scale.hpp says the same for the C++ tests). Only "must happen within" limits
# are scaled, never a lower bound or a client's own timeout.
TIME_SCALE = float(os.environ.get("LOOPWARDEN_TEST_TIME_SCALE") or "1")
if not 1.0 <= TIME_SCALE <= 100.0:
    raise ValueError(f"LOOPWARDEN_TEST_TIME_SCALE={TIME_SCALE}: expected a number from 1 to 100")


def scaled(seconds):
    return seconds * TIME_SCALE


def wait_for(predicate, timeout, interval=0.01):
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def shell(command):
    return agent_pb2.ActionRequest(kind=agent_pb2.ACTION_KIND_SHELL, tool="bash", command=command)


def sanitizer_report(text):
    """The first sanitizer report in `text` (each ends "SUMMARY: <Name>Sanitizer: ..."), or ""."""
    at = 0
    while True:
        at = text.find("SUMMARY: ", at)
        if at < 0:
            return ""
        end = text.find("\n", at)
        end = len(text) if end < 0 else end
        if "Sanitizer" in text[at:end]:
            start = max(text.rfind("==ERROR:", 0, at), text.rfind("WARNING: ThreadSanitizer", 0, at))
            return text[start if start >= 0 else max(0, at - 4000):end]
        at = end


class Daemon:
    """`loopwarden serve` in a fresh temporary directory; stop() (SIGTERM, then SIGKILL) and
    remove it with close()."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="lw-pyinteg-")
        self.state_dir = os.path.join(self.dir, "state")
        self.config = os.path.join(self.dir, "loopwarden.yaml")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(state=self.state_dir, plugins=FIXTURE_PLUGINS))
        self.endpoints = Endpoints.from_dir(self.state_dir)
        # Without LOOPWARDEN_*: only the config decides where the daemon listens.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPWARDEN_")}
        self._stdout = open(os.path.join(self.dir, "stdout.txt"), "wb")
        self._stderr = open(os.path.join(self.dir, "stderr.txt"), "wb")
        self.proc = subprocess.Popen(
            [LOOPWARDEN_BIN, "serve", "--config", self.config, "--http", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=self._stdout, stderr=self._stderr, env=self.env)
        try:
            ready = wait_for(lambda: self.proc.poll() is not None or self.try_status() is not None,
                             timeout=20.0, interval=0.02)
            if self.proc.poll() is not None:
                raise AssertionError(f"loopwarden serve exited with {self.proc.returncode} "
                                     f"while starting:\n{self.log()}")
            if not ready:
                raise AssertionError(f"loopwarden serve did not answer within 20 s:\n{self.log()}")
        except BaseException:
            self.close()
            raise

    def log(self):
        text = []
        for name in ("stdout.txt", "stderr.txt"):
            try:
                with open(os.path.join(self.dir, name), "rb") as f:
                    text.append(f.read().decode(errors="replace"))
            except OSError:
                pass
        return "".join(text)

    def cli(self, *args, timeout=15.0):
        return subprocess.run(
            [LOOPWARDEN_BIN, *args, "--state-dir", self.state_dir], env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(timeout), text=True)

    def try_status(self):
        """`loopwarden status --json` as a dict, or None when the daemon does not answer."""
        r = self.cli("status", "--json", "--timeout-ms", "1000")
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def breaker(self, name, run_id=""):
        status = self.try_status() or {}
        for b in status.get("snapshot", {}).get("breakers", []):
            if b.get("name") == name and b.get("run_id", "") == run_id:
                return b
        return None

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=scaled(10))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=scaled(15))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=scaled(10))
        return self.proc.returncode

    def close(self):
        report = ""
        try:
            self.stop()
            report = sanitizer_report(self.log())
        finally:
            self._stdout.close()
            self._stderr.close()
            shutil.rmtree(self.dir, ignore_errors=True)
        # Sanitizer builds (docs/sanitizers.md): a finding the daemon made while stopping, or a
        # leak found at its exit, is only in its log; it fails the test here.
        if report:
            raise AssertionError(f"the daemon's sanitizer report:\n{report}")


class DaemonTest(unittest.TestCase):
    def setUp(self):
        self.daemon = Daemon()
        self.addCleanup(self.daemon.close)
        self.ep = self.daemon.endpoints

    def test_publisher_trip_reaches_the_breaker_watch(self):
        watch = BreakerWatch(self.ep.breakers, "run-py", timeout=2.0)
        self.addCleanup(watch.close)
        self.assertTrue(watch.wait_ready(scaled(10.0)), "no breaker message from the daemon")
        self.assertFalse(watch.should_stop())

        publisher = Publisher(self.ep.ingest, "py/trainer", "run-py", linger=0.5)
        self.addCleanup(publisher.close)
        publisher.metric("train/loss", 0.5, 1)
        publisher.metric("trip", 1.0, 2)
        started = time.monotonic()
        publisher.flush()
        seen = watch.wait_until(
            lambda w: w.get("fixture.trip") is not None and w.get("fixture.trip").is_open,
            scaled(10.0))
        latency = time.monotonic() - started
        self.assertTrue(seen, f"fixture.trip did not open:\n{self.daemon.log()}")
        self.assertLess(latency, scaled(5.0))

        breaker = watch.get("fixture.trip")
        self.assertEqual(breaker.run_id, "run-py")
        self.assertEqual(breaker.scope, "run")
        self.assertEqual(breaker.action, "pause")
        self.assertEqual(breaker.monitor, "fixture")
        self.assertEqual(breaker.reason, "saw a trip sample")
        self.assertTrue(watch.should_stop())
        self.assertEqual([b.name for b in watch.stopping_breakers()], ["fixture.trip"])
        # The daemon agrees, and knows the source.
        status = self.daemon.try_status()
        sources = {s["source"]: s for s in status["sidecar"].get("sources", [])}
        self.assertIn("py/trainer", sources)
        self.assertEqual(int(sources["py/trainer"].get("lost", 0)), 0)

    def test_training_guard_raises_breaker_open_at_the_next_check(self):
        guard = TrainingGuard("run-guard", self.ep, source="py/guarded", timeout=2.0,
                              heartbeat_interval=None, linger=0.5)
        self.addCleanup(guard.close)
        self.assertFalse(guard.should_stop())

        raised = None
        steps = 0
        trip_step = 5
        deadline = time.monotonic() + scaled(10.0)
        try:
            while time.monotonic() < deadline:  # a simulated training loop
                guard.check()
                steps += 1
                guard.metric("train/loss", 1.0 / steps, steps)
                if steps == trip_step:
                    guard.metric("trip", 1.0, steps)
                    guard.flush()
                time.sleep(0.005)
        except BreakerOpen as e:
            raised = e
        self.assertIsNotNone(raised, f"check() never raised in {steps} steps:\n{self.daemon.log()}")
        self.assertGreaterEqual(steps, trip_step)  # it ran normally up to the trip
        self.assertEqual(raised.name, "fixture.trip")
        self.assertEqual(raised.run_id, "run-guard")
        self.assertEqual(raised.action, "pause")
        self.assertEqual(raised.state, "open")
        self.assertFalse(raised.sidecar_silent)
        self.assertIn("fixture.trip", str(raised))
        # Once the guard knows, the very next check raises again (the breaker is latched).
        with self.assertRaises(BreakerOpen):
            guard.check()

    def test_training_guard_calls_on_open_once_and_keeps_going(self):
        opened = []
        guard = TrainingGuard("run-cb", self.ep, source="py/callback", on_open=opened.append,
                              timeout=2.0, heartbeat_interval=None, linger=0.5)
        self.addCleanup(guard.close)
        steps = 0
        deadline = time.monotonic() + scaled(10.0)
        while not opened and time.monotonic() < deadline:
            guard.check()  # never raises with on_open
            steps += 1
            guard.metric("train/loss", 1.0, steps)
            if steps == 3:
                guard.metric("trip", 1.0, steps)
                guard.flush()
            time.sleep(0.005)
        self.assertEqual(len(opened), 1, f"on_open not called:\n{self.daemon.log()}")
        self.assertIsInstance(opened[0], BreakerOpen)
        self.assertEqual(opened[0].name, "fixture.trip")
        self.assertEqual(opened[0].run_id, "run-cb")
        for _ in range(20):  # the same opening is reported once
            guard.check()
        self.assertEqual(len(opened), 1)
        self.assertTrue(guard.should_stop())

    def test_gate_client_gets_the_fixture_monitors_deny(self):
        gate = GateClient(self.ep.gate, timeout=5.0, source="py/agent", run_id="run-gate")
        self.addCleanup(gate.close)
        allowed = gate.ask(shell("ls -la"))
        self.assertFalse(allowed.timed_out)
        self.assertEqual(allowed.verdict, "allow")

        denied = gate.ask(shell("rm -rf /srv/data # deny"))
        self.assertFalse(denied.timed_out)
        self.assertTrue(denied.denied)
        self.assertEqual(denied.reason, "fixture denies")
        self.assertEqual(denied.rule_id, "fixture.deny")
        self.assertEqual(denied.monitor, "fixture")
        self.assertEqual(denied.alternative, "don't")

    def test_gate_client_waits_for_a_human_approval(self):
        gate = GateClient(self.ep.gate, timeout=5.0, source="py/agent", run_id="run-ap")
        self.addCleanup(gate.close)
        action = shell("please approve rm -rf build/")
        first = gate.ask(action)
        self.assertEqual(first.verdict, "require_approval")
        self.assertTrue(first.approval_id.startswith("ap-"))
        self.assertEqual(gate.ask(action, approval_id=first.approval_id).verdict,
                         "require_approval")  # nobody decided yet
        r = self.daemon.cli("approve", first.approval_id, "--reason", "build dir only")
        self.assertEqual(r.returncode, 0, r.stderr)
        approved = gate.ask(action, approval_id=first.approval_id)
        self.assertEqual(approved.verdict, "allow")
        self.assertIn("build dir only", approved.reason)
        self.assertEqual(gate.ask(action, approval_id=first.approval_id).verdict, "deny")

    def test_gate_client_wait_for_approval_returns_the_operators_decision(self):
        gate = GateClient(self.ep.gate, timeout=5.0, source="py/agent", run_id="run-wait")
        self.addCleanup(gate.close)
        action = shell("please approve rm -rf dist/")
        first = gate.ask(action)
        self.assertEqual(first.verdict, "require_approval")
        decisions = []
        waiter = threading.Thread(target=lambda: decisions.append(
            gate.wait_for_approval(action, first.approval_id, timeout=20.0, poll=0.05)))
        waiter.start()
        r = self.daemon.cli("deny", first.approval_id, "--reason", "dist is shared")
        self.assertEqual(r.returncode, 0, r.stderr)
        waiter.join(timeout=30)
        self.assertEqual(len(decisions), 1)
        self.assertEqual(decisions[0].verdict, "deny")
        self.assertFalse(decisions[0].timed_out)
        self.assertIn("dist is shared", decisions[0].reason)

    def test_gate_client_ask_and_wait_fails_closed_when_nobody_decides(self):
        gate = GateClient(self.ep.gate, timeout=5.0, source="py/agent", run_id="run-nobody")
        self.addCleanup(gate.close)
        started = time.monotonic()
        d = gate.ask_and_wait(shell("please approve rm -rf out/"), timeout=0.5, poll=0.05)
        self.assertLess(time.monotonic() - started, scaled(5.0))
        self.assertEqual(d.verdict, "deny")
        self.assertTrue(d.timed_out)
        self.assertEqual(d.rule_id, "client.approval_timeout")
        self.assertTrue(d.approval_id.startswith("ap-"))
        # The helper for a command line: allowed commands come back at once.
        self.assertEqual(gate.check("ls -la", cwd="/work", wait=1.0).verdict, "allow")

    def test_breaker_watch_fails_closed_after_the_daemon_is_killed(self):
        watch = BreakerWatch(self.ep.breakers, "run-kill", timeout=0.5)
        self.addCleanup(watch.close)
        gate = GateClient(self.ep.gate, timeout=5.0)
        self.addCleanup(gate.close)
        self.assertTrue(watch.wait_ready(scaled(10.0)))
        self.assertFalse(watch.should_stop())
        self.assertFalse(gate.ask(shell("ls")).timed_out)

        self.daemon.kill()
        killed = time.monotonic()
        self.assertTrue(watch.wait_until(lambda w: w.should_stop(), scaled(5.0)))
        self.assertLess(time.monotonic() - killed, 0.5 + scaled(3.0))
        self.assertTrue(watch.silent)
        stopping = watch.stopping_breakers()
        self.assertEqual(stopping[0].name, SILENCE_BREAKER)
        self.assertTrue(stopping[0].synthetic)

        started = time.monotonic()
        decision = gate.ask(shell("ls"), timeout=0.3)
        self.assertTrue(decision.timed_out)
        self.assertEqual(decision.verdict, "deny")
        self.assertLess(time.monotonic() - started, 0.3 + scaled(2.0))


if __name__ == "__main__":
    unittest.main()
