"""The Python host client (sdk/python/loopwarden/client.py, guard.py) against real ZeroMQ sockets.

The test plays the sidecar: it binds PULL (ingest), PUB (breakers) and ROUTER (gate) sockets,
on ipc in a temporary directory (laid out as a sidecar state dir) and on tcp 127.0.0.1 with a
random port, and checks what the client sends and how it reacts (docs/wire-protocol.md).

    PYTHONPATH=build/<preset>/python /usr/bin/python3 -m unittest discover -s tests/python -v
"""

import logging
import math
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import zmq

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
from loopwarden.v1 import (
    agent_pb2,
    breaker_pb2,
    common_pb2,
    cycle_pb2,
    envelope_pb2,
    gate_pb2,
    generation_pb2,
    metrics_pb2,
    pipeline_pb2,
)

B = breaker_pb2


def setUpModule():
    # The client logs breaker openings and silence as warnings; keep the test output readable.
    logging.getLogger("loopwarden").setLevel(logging.CRITICAL)


def tearDownModule():
    logging.getLogger("loopwarden").setLevel(logging.NOTSET)


def breaker_status(name, run_id="run-7", *, state=B.BREAKER_STATE_OPEN,
                   action=B.BREAKER_ACTION_HALT, scope=None, epoch=1, reason="",
                   evidence=(), severity=B.SEVERITY_CRITICAL, monitor="test_monitor"):
    if scope is None:
        scope = B.BREAKER_SCOPE_GLOBAL if not run_id else B.BREAKER_SCOPE_RUN
    status = B.BreakerStatus(name=name, run_id=run_id, state=state, action=action, scope=scope,
                             epoch=epoch, reason=reason, severity=severity, monitor=monitor)
    for key, value in evidence:
        status.evidence.add(key=key, value=value)
    return status


def wait_for(predicate, timeout=2.0, interval=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class FakeSidecar:
    """The sidecar's side of the three host-facing sockets, bound on ipc or tcp."""

    def __init__(self, transport, state_dir=None):
        self.context = zmq.Context()
        self.pull = self.context.socket(zmq.PULL)
        self.pub = self.context.socket(zmq.PUB)
        self.router = self.context.socket(zmq.ROUTER)
        for socket in (self.pull, self.pub, self.router):
            socket.setsockopt(zmq.LINGER, 0)
        if transport == "ipc":
            os.makedirs(os.path.join(state_dir, "run"), exist_ok=True)
            wanted = Endpoints.from_dir(state_dir)
            self.pull.bind(wanted.ingest)
            self.pub.bind(wanted.breakers)
            self.router.bind(wanted.gate)
            self.endpoints = wanted
        else:
            endpoints = []
            for socket in (self.pull, self.pub, self.router):
                socket.bind("tcp://127.0.0.1:*")
                endpoints.append(socket.getsockopt(zmq.LAST_ENDPOINT).decode())
            self.endpoints = Endpoints(*endpoints)
        self.breakers = {}  # (name, run_id) -> BreakerStatus, what snapshots carry
        self.snapshot_sequence = 0
        self._pub_lock = threading.Lock()
        self._snapshots = None
        self._gate = None

    # -- breakers ---------------------------------------------------------------------------

    def _publish(self, topic, message):
        with self._pub_lock:
            self.pub.send_multipart([topic, message.SerializeToString()])

    def send_snapshot(self):
        with self._pub_lock:
            self.snapshot_sequence += 1
            snapshot = B.BreakerSnapshot(
                breakers=list(self.breakers.values()), time_unix_nano=time.time_ns(),
                sequence=self.snapshot_sequence, heartbeat_interval_ms=50, sidecar_id="fake")
            message = B.BreakerMessage(snapshot=snapshot)
            self.pub.send_multipart([b"snapshot", message.SerializeToString()])

    def send_transition(self, status, previous=B.BREAKER_STATE_CLOSED, cause="trip"):
        with self._pub_lock:
            self.breakers[(status.name, status.run_id)] = status
        transition = B.BreakerTransition(breaker=status, previous=previous, cause=cause,
                                         trigger_source="trainer/rank0", trigger_seq=42)
        self._publish(b"transition", B.BreakerMessage(transition=transition))

    def start_snapshots(self, period=0.05):
        stop = threading.Event()

        def loop():
            while not stop.is_set():
                self.send_snapshot()
                stop.wait(period)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        self._snapshots = (stop, thread)

    def stop_snapshots(self):
        if self._snapshots is not None:
            stop, thread = self._snapshots
            stop.set()
            thread.join()
            self._snapshots = None

    # -- ingest -----------------------------------------------------------------------------

    def receive(self, count, timeout=2.0):
        """``count`` messages as (topic, Envelope), failing if they do not come in time."""
        received = []
        deadline = time.monotonic() + timeout
        while len(received) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.pull.poll(int(remaining * 1000) + 1):
                raise AssertionError(f"received {len(received)} of {count} messages")
            frames = self.pull.recv_multipart()
            assert len(frames) == 2, frames
            received.append((frames[0].decode(), envelope_pb2.Envelope.FromString(frames[1])))
        return received

    def receive_all(self, quiet=0.2):
        """Every message until none arrives for ``quiet`` seconds."""
        received = []
        while self.pull.poll(int(quiet * 1000)):
            frames = self.pull.recv_multipart()
            received.append((frames[0].decode(), envelope_pb2.Envelope.FromString(frames[1])))
        return received

    # -- gate -------------------------------------------------------------------------------

    def serve_gate(self, handler):
        """Answers gate requests on a thread: ``handler(request)`` returns a list of
        GateDecision replies to send at once (or [] to stay silent); received requests are
        recorded in ``self.gate_requests`` as (frames, GateRequest)."""
        stop = threading.Event()
        self.gate_requests = []

        def loop():
            while not stop.is_set():
                if not self.router.poll(20):
                    continue
                frames = self.router.recv_multipart()
                request = gate_pb2.GateRequest.FromString(frames[-1])
                self.gate_requests.append((frames, request))
                for reply in handler(request):
                    self.router.send_multipart([frames[0], b"", reply.SerializeToString()])

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        self._gate = (stop, thread)

    def close(self):
        self.stop_snapshots()
        if self._gate is not None:
            self._gate[0].set()
            self._gate[1].join()
        for socket in (self.pull, self.pub, self.router):
            socket.close(linger=0)
        self.context.term()


class SidecarCase(unittest.TestCase):
    transport = "ipc"

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="lw-py-")
        self.sidecar = FakeSidecar(self.transport, self.dir)
        self.endpoints = self.sidecar.endpoints
        self._to_close = []

    def tearDown(self):
        for obj in reversed(self._to_close):
            obj.close()
        self.sidecar.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def closing(self, obj):
        self._to_close.append(obj)
        return obj

    def publisher(self, **kwargs):
        kwargs.setdefault("labels", {"host": "gpu-3"})
        return self.closing(Publisher(self.endpoints.ingest, "trainer/rank0", "run-7", **kwargs))

    def watch(self, **kwargs):
        return self.closing(BreakerWatch(self.endpoints.breakers, "run-7", **kwargs))

    def unused_endpoint(self):
        """An endpoint of this transport where nothing listens."""
        if self.transport == "ipc":
            return f"ipc://{self.dir}/nobody.sock"
        context = zmq.Context()
        socket = context.socket(zmq.PULL)
        socket.bind("tcp://127.0.0.1:*")
        endpoint = socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        socket.close(linger=0)
        context.term()
        return endpoint


# --- Publisher ----------------------------------------------------------------------------------


class PublisherTests:
    def test_frames_seq_and_envelope_fields(self):
        pub = self.publisher(max_batch=2)
        before = time.time_ns()
        pub.metric("train/loss", 2.5, 1)
        pub.metric("train/loss", 2.25, 2)  # a full batch: sent now
        bodies = [
            generation_pb2.GenerationSummary(generation=3, sample_count=100),
            generation_pb2.EmbeddingBatch(stream="generated",
                                          vectors=common_pb2.FloatMatrix(dim=2, values=[1, 2])),
            agent_pb2.AgentStep(agent_id="a", turn=4),
            agent_pb2.ActionRequest(action_id="x", kind=agent_pb2.ACTION_KIND_SHELL,
                                    command="ls"),
            pipeline_pb2.StageTiming(item_id="pr-1", stage="review"),
            cycle_pb2.CycleReport(cycle=2, candidate_id="c2"),
            metrics_pb2.MetricsBatch(samples=[metrics_pb2.MetricSample(name="m", value=1)]),
        ]
        for body in bodies:
            self.assertTrue(pub.publish(body))
        self.assertTrue(pub.heartbeat())
        received = self.sidecar.receive(1 + len(bodies) + 1)
        after = time.time_ns()

        topics = [topic for topic, _ in received]
        self.assertEqual(topics, ["metrics", "generation", "embeddings", "agent_step", "action",
                                  "stage_timing", "cycle_report", "metrics", "heartbeat"])
        for topic, envelope in received:
            self.assertEqual(envelope.WhichOneof("body"), topic)
            self.assertEqual(envelope.source, "trainer/rank0")
            self.assertEqual(envelope.run_id, "run-7")
            self.assertEqual(dict(envelope.labels), {"host": "gpu-3"})
            self.assertEqual((envelope.schema.major, envelope.schema.minor), (1, 0))
            self.assertTrue(before <= envelope.time_unix_nano <= after)
        self.assertEqual([envelope.seq for _, envelope in received], list(range(1, 10)))
        for body, (_, envelope) in zip(bodies, received[1:]):
            self.assertEqual(getattr(envelope, envelope.WhichOneof("body")), body)
        heartbeat = received[-1][1].heartbeat
        self.assertEqual(heartbeat.events_sent, 8)  # heartbeats excluded
        self.assertEqual(heartbeat.events_dropped, 0)
        self.assertEqual((pub.sent, pub.dropped, pub.samples, pub.seq), (9, 0, 2, 9))

    def test_batching_counts_and_order(self):
        pub = self.publisher(max_batch=100, flush_interval=3600)
        before = time.time_ns()
        for i in range(250):
            pub.metric(f"m{i % 3}", i * 0.5, i)
        after = time.time_ns()
        sent_early = self.sidecar.receive(2)  # two full batches, sent by the 100th and 200th call
        self.assertEqual([len(e.metrics.samples) for _, e in sent_early], [100, 100])
        self.assertEqual(self.sidecar.receive_all(0.1), [])  # the other 50 wait
        self.assertEqual(pub.samples, 200)
        pub.close()
        (_, last), = self.sidecar.receive(1)
        self.assertEqual(len(last.metrics.samples), 50)
        samples = [s for _, e in sent_early + [(None, last)] for s in e.metrics.samples]
        self.assertEqual([(s.name, s.value, s.step) for s in samples],
                         [(f"m{i % 3}", i * 0.5, i) for i in range(250)])
        times = [s.time_unix_nano for s in samples]
        self.assertEqual(times, sorted(times))
        # (sample times come from the monotonic clock, converted at flush: allow 1 ms of slew)
        self.assertTrue(before - 10**6 <= times[0] and times[-1] <= after + 10**6)
        # close() says goodbye after the last batch, so the sidecar expects no more from it.
        (topic, goodbye), = self.sidecar.receive(1)
        self.assertEqual(topic, "heartbeat")
        self.assertTrue(goodbye.heartbeat.closing)
        self.assertEqual(goodbye.seq, 4)
        self.assertEqual((pub.sent, pub.samples, pub.seq), (4, 250, 4))

    def test_flush_interval_elapsed_at_next_call(self):
        pub = self.publisher(flush_interval=0.3)
        pub.flush()  # (nothing buffered: nothing sent)
        flushed = time.monotonic()
        pub.metric("a", 1.0)
        pub.metric("b", 2.0)
        self.assertEqual(self.sidecar.receive_all(0.05), [])
        time.sleep(max(0.0, flushed + 0.35 - time.monotonic()))
        self.assertEqual(self.sidecar.receive_all(0.01), [])  # no thread: waits for a call
        pub.metric("c", 3.0)
        (_, envelope), = self.sidecar.receive(1)
        self.assertEqual([s.name for s in envelope.metrics.samples], ["a", "b", "c"])
        pub.metric("d", 4.0)
        pub.flush()
        (_, envelope), = self.sidecar.receive(1)
        self.assertEqual([s.name for s in envelope.metrics.samples], ["d"])

    def test_close_and_context_manager_flush(self):
        with Publisher(self.endpoints.ingest, "trainer/rank0", "run-7") as pub:
            pub.metric("train/loss", 1.0, 1)
            self.assertEqual(pub.sent, 0)
        (_, envelope), = self.sidecar.receive(1)
        self.assertEqual(envelope.metrics.samples[0].name, "train/loss")
        pub.close()  # twice is fine
        with self.assertRaisesRegex(ValueError, "closed"):
            pub.metric("train/loss", 1.0)
        with self.assertRaisesRegex(ValueError, "closed"):
            pub.publish(generation_pb2.GenerationSummary())

    def test_publish_keeps_call_order(self):
        pub = self.publisher(flush_interval=3600)
        pub.metric("train/loss", 1.0, 7)
        pub.publish(generation_pb2.GenerationSummary(generation=1))
        received = self.sidecar.receive(2)
        self.assertEqual([(t, e.seq) for t, e in received], [("metrics", 1), ("generation", 2)])

    def test_publish_rejects_other_messages(self):
        pub = self.publisher()
        for bad in (envelope_pb2.Envelope(), gate_pb2.GateRequest(), "text", 3):
            with self.assertRaisesRegex(TypeError, "GenerationSummary"):
                pub.publish(bad)
        self.assertEqual(pub.seq, 0)

    def test_hand_encoding_matches_the_schema(self):
        rng = random.Random(7)
        names = ["train/loss", "ü/λ/名前", "", "x" * 300, "eval/acc"]
        values = [0.0, -0.0, 1e308, -1e-308, math.inf, -math.inf, math.nan, 0.1, 5e-324]
        steps = [0, 1, 127, 128, -1, -(2**63), 2**63 - 1, 2**35]
        expected = [(rng.choice(names), rng.choice(values), rng.choice(steps))
                    for _ in range(500)]
        pub = self.publisher(max_batch=1000, flush_interval=3600)
        before = time.time_ns()
        for name, value, step in expected:
            pub.metric(name, value, step)
        pub.flush()
        after = time.time_ns()
        (_, envelope), = self.sidecar.receive(1)
        got = envelope.metrics.samples
        self.assertEqual(len(got), len(expected))
        for sample, (name, value, step) in zip(got, expected):
            self.assertEqual(sample.name, name)
            self.assertEqual(sample.step, step)
            if math.isnan(value):
                self.assertTrue(math.isnan(sample.value))
            else:
                self.assertEqual(sample.value, value)
                self.assertEqual(math.copysign(1, sample.value), math.copysign(1, value))
            self.assertTrue(before - 10**6 <= sample.time_unix_nano <= after + 10**6)
            self.assertEqual(len(sample.labels), 0)
        # The bytes re-serialize to the same message through the generated code.
        again = envelope_pb2.Envelope.FromString(envelope.SerializeToString())
        self.assertEqual(len(again.metrics.samples), 500)

    def test_bad_samples(self):
        pub = self.publisher(flush_interval=3600)
        with self.assertRaises(TypeError):
            pub.metric(b"bytes-name", 1.0)
        with self.assertRaises(TypeError):
            pub.metric("x", 1.0, 1.5)  # steps are integers
        with self.assertRaises((TypeError, ValueError)):
            pub.metric("x", "not a number")
        pub.metric("x", True, True)  # bool is an int, fine
        pub.metric("bad\ud800name", 1.0)  # not encodable as UTF-8: skipped at flush
        pub.metric("x", 2.0, 2**63)  # outside int64: skipped at flush
        pub.metric("y", 3.0, 3)
        pub.flush()
        (_, envelope), = self.sidecar.receive(1)
        self.assertEqual([(s.name, s.value, s.step) for s in envelope.metrics.samples],
                         [("x", 1.0, 1), ("y", 3.0, 3)])
        self.assertEqual((pub.invalid, pub.samples), (2, 2))

    def test_numpy_values(self):
        try:
            import numpy
        except ImportError:  # pragma: no cover
            self.skipTest("numpy is not installed")
        pub = self.publisher(flush_interval=3600)
        pub.metric("a", numpy.float32(0.5), numpy.int64(3))
        pub.metric("b", numpy.array(2.0), numpy.int32(4))
        pub.flush()
        (_, envelope), = self.sidecar.receive(1)
        self.assertEqual([(s.value, s.step) for s in envelope.metrics.samples],
                         [(0.5, 3), (2.0, 4)])

    def test_drops_counted_without_a_peer_and_metric_never_blocks(self):
        pub = self.closing(Publisher(self.unused_endpoint(), "trainer/rank0", "run-7",
                                     sndhwm=10, flush_interval=3600, linger=0.2))
        t0 = time.perf_counter()
        for i in range(100_000):
            pub.metric("train/loss", 0.1, i)
        elapsed = time.perf_counter() - t0
        pub.flush()
        self.assertLess(elapsed, 3.0)  # about 0.15 s here; blocking would hang
        batches = -(-100_000 // 256)
        self.assertEqual(pub.sent + pub.dropped, batches)
        self.assertEqual(pub.seq, batches)
        self.assertLessEqual(pub.sent, 11)  # what the queue took
        self.assertGreater(pub.dropped, batches - 20)
        self.assertEqual(pub.samples + pub.samples_dropped, 100_000)
        t0 = time.perf_counter()
        pub.close()  # its linger (0.2 s) is all close() may wait for the queued messages
        self.assertLess(time.perf_counter() - t0, 1.0)

    def test_drops_leave_gaps_the_sidecar_can_count(self):
        self.sidecar.pull.close(linger=0)  # a slow sidecar: a PULL that does not read yet
        slow = self.sidecar.context.socket(zmq.PULL)
        slow.setsockopt(zmq.RCVHWM, 1)
        slow.setsockopt(zmq.LINGER, 0)
        self.sidecar.pull = slow
        endpoint = self.unused_endpoint()
        slow.bind(endpoint)
        pub = self.closing(Publisher(endpoint, "trainer/rank0", "run-7", sndhwm=1, max_batch=1))
        time.sleep(0.05)  # connected
        for i in range(2000):
            pub.metric("x", float(i), i)
        sent, dropped = pub.sent, pub.dropped
        self.assertGreater(dropped, 0)
        self.assertEqual(sent + dropped, 2000)
        received = self.sidecar.receive(sent, timeout=5)
        seqs = [envelope.seq for _, envelope in received]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(seqs[-1] - len(seqs), dropped - (2000 - seqs[-1]))  # gaps = drops
        self.assertTrue(wait_for(pub.heartbeat))  # (a heartbeat may be dropped too)
        (_, heartbeat), = self.sidecar.receive(1)
        self.assertEqual(heartbeat.seq, pub.seq)
        self.assertEqual(heartbeat.heartbeat.events_dropped, dropped)  # heartbeats excluded
        self.assertEqual(heartbeat.heartbeat.events_sent, sent)

    def test_heartbeat_thread_and_background_flush(self):
        pub = self.publisher(heartbeat_interval=0.05, flush_interval=0.05)
        pub.metric("train/loss", 1.0, 1)  # nothing else calls: the thread sends it
        received = self.sidecar.receive(3, timeout=2)
        kinds = [topic for topic, _ in received]
        self.assertIn("metrics", kinds)
        self.assertGreaterEqual(kinds.count("heartbeat"), 2 if kinds[0] == "metrics" else 1)
        heartbeat = next(e for t, e in received if t == "heartbeat").heartbeat
        self.assertEqual(heartbeat.interval_ms, 50)
        self.assertEqual([e.seq for _, e in received], [1, 2, 3])

    def test_unclosed_publisher_and_guard_flush_at_exit(self):
        script = (
            "import sys, loopwarden\n"
            "guard = loopwarden.TrainingGuard('run-7', loopwarden.Endpoints(*sys.argv[1:4]),\n"
            "                                 source='trainer/exit', wait_ready=False)\n"
            "pub = loopwarden.Publisher(sys.argv[1], 'trainer/exit2', 'run-7')\n"
            "guard.metric('train/loss', 0.25, 9)\n"
            "pub.metric('train/loss', 0.5, 10)\n"
            "# no close(): the interpreter's exit flushes both\n"
        )
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", script, self.endpoints.ingest,
                        self.endpoints.breakers, self.endpoints.gate],
                       env=env, check=True, timeout=20)
        self.assertLess(time.monotonic() - t0, 5.0)
        received = self.sidecar.receive(2)
        self.assertEqual(sorted((e.source, e.metrics.samples[0].step) for _, e in received),
                         [("trainer/exit", 9), ("trainer/exit2", 10)])

    def test_pub_socket(self):
        sub = self.sidecar.context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        endpoint = self.unused_endpoint()
        sub.bind(endpoint)
        try:
            pub = self.closing(Publisher(endpoint, "trainer/rank0", "run-7", socket="pub"))
            # PUB drops until the subscription arrives: heartbeat until one gets through.
            self.assertTrue(wait_for(lambda: pub.heartbeat() and sub.poll(10)))
            while sub.poll(50):
                sub.recv_multipart()
            pub.metric("train/loss", 3.0, 3)
            pub.flush()
            self.assertTrue(sub.poll(2000))
            topic, payload = sub.recv_multipart()
            envelope = envelope_pb2.Envelope.FromString(payload)
            self.assertEqual((topic, envelope.metrics.samples[0].value), (b"metrics", 3.0))
            self.assertEqual(pub.dropped, 0)  # PUB never reports drops
        finally:
            sub.close(linger=0)

    def test_bind_mode(self):
        self.sidecar.pull.close(linger=0)
        endpoint = self.unused_endpoint()
        pub = self.closing(Publisher(endpoint, "trainer/rank0", "run-7", bind=True))
        pull = self.sidecar.context.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        pull.connect(endpoint)
        self.sidecar.pull = pull
        time.sleep(0.05)
        pub.publish(generation_pb2.GenerationSummary(generation=2))
        (topic, envelope), = self.sidecar.receive(1)
        self.assertEqual((topic, envelope.generation.generation), ("generation", 2))


class PublisherIpcTest(PublisherTests, SidecarCase):
    transport = "ipc"


class PublisherTcpTest(PublisherTests, SidecarCase):
    transport = "tcp"


# --- BreakerWatch -------------------------------------------------------------------------------


class BreakerWatchTests:
    def test_late_joiner_learns_open_breaker_from_snapshot(self):
        self.sidecar.breakers[("training.collapse", "run-7")] = breaker_status(
            "training.collapse", action=B.BREAKER_ACTION_ROLLBACK, epoch=3,
            reason="variance below floor", evidence=[("checkpoint", "ckpt-41")])
        self.sidecar.start_snapshots()
        transitions = []
        watch = self.watch(on_transition=transitions.append)
        self.assertTrue(watch.wait_until(lambda w: w.should_stop(), 2.0))
        (breaker,) = watch.open_breakers()
        self.assertEqual((breaker.name, breaker.run_id, breaker.action, breaker.state,
                          breaker.scope, breaker.epoch, breaker.reason),
                         ("training.collapse", "run-7", "rollback", "open", "run", 3,
                          "variance below floor"))
        self.assertEqual(breaker.evidence, {"checkpoint": "ckpt-41"})
        self.assertEqual(transitions, [])  # snapshots do not call on_transition
        self.assertEqual(watch.sidecar_id, "fake")
        self.assertGreater(watch.last_snapshot_sequence, 0)

    def test_transition_opens_and_reset_closes(self):
        self.sidecar.start_snapshots()
        seen = []
        watch = self.watch(on_transition=lambda t: seen.append((t, threading.current_thread())))
        self.assertTrue(watch.wait_ready(2.0))
        self.assertFalse(watch.should_stop())
        status = breaker_status("training.nonfinite_loss", reason="loss is nan")
        self.sidecar.send_transition(status)
        self.assertTrue(watch.wait_until(lambda w: w.should_stop(), 2.0))
        self.assertEqual([b.name for b in watch.open_breakers()], ["training.nonfinite_loss"])
        self.assertTrue(wait_for(lambda: seen))  # called right after the state is updated
        transition, thread = seen[0]
        self.assertIsNot(thread, threading.main_thread())  # callbacks run on the watcher
        self.assertEqual((transition.cause, transition.previous, transition.breaker.state,
                          transition.trigger_source, transition.trigger_seq),
                         ("trip", "closed", "open", "trainer/rank0", 42))
        reset = breaker_status("training.nonfinite_loss", state=B.BREAKER_STATE_HALF_OPEN,
                               epoch=2)
        self.sidecar.send_transition(reset, previous=B.BREAKER_STATE_OPEN, cause="reset")
        self.assertTrue(watch.wait_until(lambda w: not w.should_stop(), 2.0))
        self.assertEqual(watch.open_breakers(), [])
        self.assertEqual(watch.get("training.nonfinite_loss").state, "half_open")

    def test_other_runs_ignored_global_applies(self):
        self.sidecar.start_snapshots()
        watch = self.watch()
        self.assertTrue(watch.wait_ready(2.0))
        self.sidecar.send_transition(breaker_status("training.collapse", run_id="run-8"))
        self.assertTrue(watch.wait_until(lambda w: ("training.collapse", "run-8") in
                                         w.breakers(), 2.0))
        self.assertFalse(watch.should_stop())
        self.assertEqual(watch.open_breakers(), [])
        self.sidecar.send_transition(breaker_status(
            "agent.destructive", run_id="", scope=B.BREAKER_SCOPE_GLOBAL,
            action=B.BREAKER_ACTION_PAUSE))
        self.assertTrue(watch.wait_until(lambda w: w.should_stop(), 2.0))
        (breaker,) = watch.open_breakers()
        self.assertEqual((breaker.name, breaker.scope, breaker.action),
                         ("agent.destructive", "global", "pause"))

    def test_forced_open_applies_alert_and_half_open_do_not_stop(self):
        self.sidecar.start_snapshots()
        watch = self.watch()
        self.assertTrue(watch.wait_ready(2.0))
        self.sidecar.send_transition(breaker_status("cost.alert", action=B.BREAKER_ACTION_ALERT))
        self.sidecar.send_transition(breaker_status("x.probation",
                                                    state=B.BREAKER_STATE_HALF_OPEN))
        self.assertTrue(watch.wait_until(lambda w: len(w.breakers()) == 2, 2.0))
        self.assertFalse(watch.should_stop())
        self.assertEqual([b.name for b in watch.open_breakers()], ["cost.alert"])
        self.assertEqual(watch.stopping_breakers(), [])
        self.sidecar.send_transition(breaker_status(
            "manual.halt", state=B.BREAKER_STATE_FORCED_OPEN, monitor="operator"))
        self.assertTrue(watch.wait_until(lambda w: w.should_stop(), 2.0))
        self.assertEqual([b.name for b in watch.open_breakers()], ["manual.halt", "cost.alert"])

    def test_snapshot_replaces_state(self):
        self.sidecar.breakers[("training.collapse", "run-7")] = breaker_status(
            "training.collapse")
        self.sidecar.start_snapshots()
        watch = self.watch()
        self.assertTrue(watch.wait_until(lambda w: w.should_stop(), 2.0))
        with self.sidecar._pub_lock:
            self.sidecar.breakers.clear()  # e.g. reset and forgotten
        self.assertTrue(watch.wait_until(lambda w: not w.should_stop(), 2.0))
        self.assertEqual(watch.breakers(), {})

    def test_fails_closed_when_sidecar_goes_quiet_and_recovers(self):
        self.sidecar.start_snapshots()
        watch = self.watch(timeout=0.3)
        self.assertTrue(watch.wait_ready(2.0))
        self.assertFalse(watch.should_stop())
        self.sidecar.stop_snapshots()
        t0 = time.monotonic()
        self.assertTrue(watch.wait_until(lambda w: w.should_stop(), 2.0))
        self.assertGreaterEqual(time.monotonic() - t0, 0.2)
        (breaker,) = watch.open_breakers()
        self.assertEqual((breaker.name, breaker.action, breaker.synthetic),
                         (SILENCE_BREAKER, "halt", True))
        self.assertRegex(breaker.reason, r"^sidecar silent for \d+\.\d s")
        self.assertTrue(watch.silent)
        self.sidecar.start_snapshots()
        self.assertTrue(watch.wait_until(lambda w: not w.should_stop(), 2.0))
        self.assertEqual(watch.open_breakers(), [])

    def test_fails_closed_at_start_without_sidecar(self):
        watch = self.closing(BreakerWatch(self.unused_endpoint(), "run-7", timeout=0.4))
        self.assertFalse(watch.should_stop())  # not yet: the timeout runs from the start
        self.assertFalse(watch.wait_ready(0.05))
        self.assertTrue(watch.wait_until(lambda w: w.should_stop(), 2.0))
        (breaker,) = watch.open_breakers()
        self.assertIn("since the watch started", breaker.reason)

    def test_fail_open(self):
        watch = self.watch(timeout=0.2, fail_open=True)
        time.sleep(0.3)
        self.assertTrue(watch.silent)
        self.assertFalse(watch.should_stop())
        self.assertEqual(watch.open_breakers(), [])
        self.sidecar.start_snapshots()  # open breakers still stop a fail-open host
        self.assertTrue(watch.wait_ready(2.0))
        self.sidecar.send_transition(breaker_status("training.collapse"))
        self.assertTrue(watch.wait_until(lambda w: w.should_stop(), 2.0))

    def test_malformed_messages_are_ignored(self):
        watch = self.watch(timeout=0.4)
        self.sidecar.start_snapshots()
        self.assertTrue(watch.wait_ready(2.0))
        self.sidecar.stop_snapshots()
        snapshot = B.BreakerMessage(snapshot=B.BreakerSnapshot()).SerializeToString()
        bad = [[b"transition"], [b"other", snapshot], [b"transition", snapshot],
               [b"snapshot", b"\xff\xff\xff"], [b"snapshot", snapshot, b"extra"]]
        for _ in range(6):  # for 0.6 s only garbage: that is silence, not liveness
            for frames in bad:
                with self.sidecar._pub_lock:
                    self.sidecar.pub.send_multipart(frames)
            time.sleep(0.1)
        self.assertTrue(watch.should_stop())
        self.assertGreaterEqual(watch.malformed, len(bad))

    def test_close(self):
        watch = self.watch()
        watch.close()
        watch.close()
        self.assertFalse(watch.running)


class BreakerWatchIpcTest(BreakerWatchTests, SidecarCase):
    transport = "ipc"


class BreakerWatchTcpTest(BreakerWatchTests, SidecarCase):
    transport = "tcp"


# --- GateClient ---------------------------------------------------------------------------------


def decide(request):
    command = request.action.command
    decision = gate_pb2.GateDecision(request_id=request.request_id)
    if command.startswith("rm -rf"):
        decision.verdict = gate_pb2.GATE_VERDICT_DENY
        decision.reason = "recursive delete outside the workspace"
        decision.rule_id = "shell.rm_recursive_outside_workspace"
        decision.monitor = "destructive_action"
        decision.alternative = "rm -rf ./build"
    elif command.startswith("git push"):
        decision.verdict = gate_pb2.GATE_VERDICT_REQUIRE_APPROVAL
        decision.approval_id = "appr-1"
    elif command == "weird":
        decision.verdict = gate_pb2.GATE_VERDICT_UNSPECIFIED
    else:
        decision.verdict = gate_pb2.GATE_VERDICT_ALLOW
    return [decision]


def shell(command):
    return agent_pb2.ActionRequest(action_id="a1", kind=agent_pb2.ACTION_KIND_SHELL,
                                   command=command, working_directory="/work")


class GateClientTests:
    def gate(self, **kwargs):
        return self.closing(GateClient(self.endpoints.gate, source="agent/1", run_id="run-7",
                                       **kwargs))

    def test_decisions(self):
        self.sidecar.serve_gate(decide)
        gate = self.gate(timeout=2.0)
        denied = gate.ask(shell("rm -rf /"))
        self.assertEqual((denied.verdict, denied.rule_id, denied.monitor, denied.alternative,
                          denied.timed_out, denied.denied),
                         ("deny", "shell.rm_recursive_outside_workspace", "destructive_action",
                          "rm -rf ./build", False, True))
        self.assertEqual(gate.ask(shell("ls")).verdict, "allow")
        self.assertTrue(gate.ask(shell("ls")).allowed)
        pending = gate.ask(shell("git push origin main"))
        self.assertEqual((pending.verdict, pending.approval_id), ("require_approval", "appr-1"))
        self.assertEqual(gate.ask(shell("weird")).verdict, "deny")  # no verdict: fail safe
        frames, request = self.sidecar.gate_requests[0]
        self.assertEqual(len(frames), 3)  # identity, empty delimiter, request
        self.assertEqual(frames[1], b"")
        self.assertEqual((request.source, request.run_id, request.timeout_ms),
                         ("agent/1", "run-7", 2000))
        self.assertEqual(request.action, shell("rm -rf /"))
        ids = [request.request_id for _, request in self.sidecar.gate_requests]
        self.assertEqual(len(set(ids)), len(ids))
        self.assertEqual(denied.request_id, ids[0])

    def test_reply_to_another_request_is_discarded(self):
        def stale_first(request):
            stale = gate_pb2.GateDecision(request_id="someone-else",
                                          verdict=gate_pb2.GATE_VERDICT_ALLOW)
            return [stale] + decide(request)

        self.sidecar.serve_gate(stale_first)
        gate = self.gate(timeout=2.0)
        self.assertEqual(gate.ask(shell("rm -rf /")).verdict, "deny")
        self.assertEqual(gate.stale_replies, 1)

    def test_timeout_denies_and_late_reply_is_never_taken(self):
        held = []

        def slow(request):
            if request.action.command == "first":
                held.append(request)  # answered late, with the second request
                return []
            late = gate_pb2.GateDecision(request_id=held[0].request_id,
                                         verdict=gate_pb2.GATE_VERDICT_ALLOW)
            return [late] + decide(request)

        self.sidecar.serve_gate(slow)
        gate = self.gate(timeout=0.1)
        t0 = time.monotonic()
        decision = gate.ask(shell("first"))
        elapsed = time.monotonic() - t0
        self.assertTrue(0.09 <= elapsed < 1.0, elapsed)
        self.assertEqual((decision.verdict, decision.timed_out, decision.rule_id),
                         ("deny", True, "client.timeout"))
        self.assertIn("denied by the client's on_timeout policy", decision.reason)
        second = gate.ask(shell("rm -rf /"), timeout=2.0)
        self.assertEqual((second.verdict, second.timed_out), ("deny", False))
        self.assertEqual(second.rule_id, "shell.rm_recursive_outside_workspace")
        self.assertEqual(gate.timeouts, 1)

    def test_timeout_allow_policy_and_no_sidecar(self):
        gate = self.closing(GateClient(self.unused_endpoint(), timeout=0.05, on_timeout="allow"))
        decision = gate.ask(shell("ls"))
        self.assertEqual((decision.verdict, decision.timed_out), ("allow", True))
        deny = self.closing(GateClient(self.unused_endpoint(), timeout=0.05))
        self.assertEqual(deny.ask(shell("ls")).verdict, "deny")
        with self.assertRaises(ValueError):
            GateClient(self.unused_endpoint(), on_timeout="maybe")


class GateClientIpcTest(GateClientTests, SidecarCase):
    transport = "ipc"


class GateClientTcpTest(GateClientTests, SidecarCase):
    transport = "tcp"


# --- TrainingGuard ------------------------------------------------------------------------------


class TrainingGuardTest(SidecarCase):
    transport = "ipc"  # the guard finds the sockets from the state dir, as in production

    def guard(self, **kwargs):
        kwargs.setdefault("heartbeat_interval", None)
        return self.closing(TrainingGuard(run_id="run-7", endpoints=Endpoints.from_dir(self.dir),
                                          **kwargs))

    def test_raises_breaker_open_at_next_check(self):
        self.sidecar.start_snapshots()
        guard = self.guard(source="trainer/rank0")
        for step in range(3):
            guard.check()
            guard.metric("train/loss", 1.0 / (step + 1), step)
        self.sidecar.send_transition(breaker_status(
            "training.collapse", action=B.BREAKER_ACTION_ROLLBACK, severity=B.SEVERITY_WARNING,
            reason="variance below floor (0.002 < 0.01 for 5 generations)",
            evidence=[("checkpoint", "ckpt-41"), ("variance", "0.002")]))
        self.assertTrue(wait_for(guard.should_stop))
        with self.assertRaises(BreakerOpen) as raised:
            guard.check()
        error = raised.exception
        self.assertEqual((error.name, error.action, error.run_id, error.scope, error.state),
                         ("training.collapse", "rollback", "run-7", "run", "open"))
        self.assertEqual(error.evidence, {"checkpoint": "ckpt-41", "variance": "0.002"})
        self.assertFalse(error.sidecar_silent)
        self.assertEqual(
            str(error),
            "loopwarden opened training.collapse for run run-7 (action rollback): variance below "
            "floor (0.002 < 0.01 for 5 generations) — inspect with: loopwarden explain "
            "training.collapse --run run-7")
        copy = pickle.loads(pickle.dumps(error))
        self.assertEqual((copy.name, str(copy)), (error.name, str(error)))
        with self.assertRaises(BreakerOpen):  # still open: every check stops
            guard.check()
        guard.close()
        received = self.sidecar.receive_all(0.1)
        samples = [s for _, e in received for s in e.metrics.samples]
        self.assertEqual([(s.name, s.step) for s in samples], [("train/loss", i) for i in range(3)])
        self.assertTrue(all(e.run_id == "run-7" and e.source == "trainer/rank0"
                            for _, e in received))

    def test_on_open_called_once_per_opening_instead_of_raising(self):
        self.sidecar.start_snapshots()
        events = []
        guard = self.guard(on_open=events.append)
        guard.check()
        self.sidecar.send_transition(breaker_status(
            "training.collapse", action=B.BREAKER_ACTION_ROLLBACK, epoch=1,
            evidence=[("checkpoint", "ckpt-41")]))
        self.assertTrue(wait_for(guard.should_stop))
        for _ in range(3):
            guard.check()  # no exception; the callback runs once
        self.assertEqual([(e.name, e.epoch, e.evidence["checkpoint"]) for e in events],
                         [("training.collapse", 1, "ckpt-41")])
        self.sidecar.send_transition(breaker_status(  # reset, then a new trip
            "training.collapse", state=B.BREAKER_STATE_HALF_OPEN, epoch=2), cause="reset")
        self.assertTrue(wait_for(lambda: not guard.should_stop()))
        guard.check()
        self.sidecar.send_transition(breaker_status(
            "training.collapse", action=B.BREAKER_ACTION_ROLLBACK, epoch=3,
            evidence=[("checkpoint", "ckpt-44")]))
        self.assertTrue(wait_for(guard.should_stop))
        guard.check()
        guard.check()
        self.assertEqual([(e.epoch, e.evidence["checkpoint"]) for e in events],
                         [(1, "ckpt-41"), (3, "ckpt-44")])

    def test_global_breaker_message_and_several_open(self):
        self.sidecar.breakers[("agent.destructive", "")] = breaker_status(
            "agent.destructive", run_id="", action=B.BREAKER_ACTION_HALT, reason="rm -rf /")
        self.sidecar.breakers[("training.collapse", "run-7")] = breaker_status(
            "training.collapse", action=B.BREAKER_ACTION_ROLLBACK, reason="low variance")
        self.sidecar.start_snapshots()
        guard = self.guard()
        with self.assertRaises(BreakerOpen) as raised:
            guard.check()
        error = raised.exception
        self.assertEqual(error.name, "agent.destructive")  # halt before rollback
        self.assertEqual([b.name for b in error.breakers],
                         ["agent.destructive", "training.collapse"])
        self.assertEqual(
            str(error),
            "loopwarden opened agent.destructive for all runs (global breaker) (action halt): "
            "rm -rf / — inspect with: loopwarden explain agent.destructive "
            "(also open: training.collapse)")

    def test_fails_closed_without_sidecar(self):
        self.sidecar.close()  # nobody home
        self.sidecar = FakeSidecar("tcp")  # (for tearDown)
        t0 = time.monotonic()
        guard = self.guard(timeout=0.2, linger=0.1)  # waits up to 0.2 s for a first message
        self.assertLess(time.monotonic() - t0, 1.0)
        guard.metric("train/loss", 1.0, 0)  # publishing never blocks, sidecar or not
        self.assertTrue(wait_for(guard.should_stop, 1.0))
        with self.assertRaises(BreakerOpen) as raised:
            guard.check()
        self.assertTrue(raised.exception.sidecar_silent)
        self.assertEqual(raised.exception.name, SILENCE_BREAKER)
        self.assertRegex(str(raised.exception),
                         r"^loopwarden stopped run run-7: sidecar silent for \d+\.\d s: .* — "
                         r"check the sidecar: loopwarden status$")

    def test_fail_open_guard_carries_on(self):
        self.sidecar.close()
        self.sidecar = FakeSidecar("tcp")
        guard = self.guard(timeout=0.1, fail_open=True, wait_ready=False)
        time.sleep(0.2)
        guard.check()
        self.assertTrue(guard.watch.silent)

    def test_check_is_cheap(self):
        self.sidecar.start_snapshots()
        guard = self.guard()
        t0 = time.perf_counter()
        for _ in range(100_000):
            guard.check()
        self.assertLess((time.perf_counter() - t0) / 100_000, 20e-6)

    def test_endpoints(self):
        from_dir = Endpoints.from_dir("state")
        root = os.path.abspath("state")
        self.assertEqual(from_dir, Endpoints(f"ipc://{root}/run/ingest.sock",
                                             f"ipc://{root}/run/breakers.sock",
                                             f"ipc://{root}/run/gate.sock"))
        env = {"LOOPWARDEN_INGEST": "tcp://10.0.0.5:7001", "LOOPWARDEN_GATE": "",
               "LOOPWARDEN_STATE_DIR": "/srv/lw"}
        self.assertEqual(Endpoints.from_env(environ=env),
                         Endpoints("tcp://10.0.0.5:7001", "ipc:///srv/lw/run/breakers.sock",
                                   "ipc:///srv/lw/run/gate.sock"))
        self.assertEqual(Endpoints.from_env(environ={}).ingest,
                         f"ipc://{os.path.abspath('loopwarden-state')}/run/ingest.sock")
        self.assertEqual(Endpoints.from_env("/x", environ={}).breakers,
                         "ipc:///x/run/breakers.sock")

    def test_guard_from_environment_and_state_dir_path(self):
        self.sidecar.start_snapshots()
        guard = self.closing(TrainingGuard("run-7", self.dir, heartbeat_interval=None))
        self.assertTrue(guard.watch.messages > 0)
        self.assertEqual(guard.endpoints, Endpoints.from_dir(self.dir))
        saved = dict(os.environ)
        try:
            os.environ["LOOPWARDEN_STATE_DIR"] = self.dir
            guard2 = self.closing(TrainingGuard("run-7", heartbeat_interval=None))
            self.assertEqual(guard2.endpoints, Endpoints.from_dir(self.dir))
            self.assertFalse(guard2.should_stop())
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def test_exports(self):
        for name in ("Publisher", "BreakerWatch", "GateClient", "Decision", "TrainingGuard",
                     "BreakerOpen", "Endpoints", "Breaker", "Transition"):
            self.assertTrue(hasattr(loopwarden, name), name)
        import importlib
        replay = importlib.import_module("loopwarden.replay")  # still there next to the client
        self.assertTrue(hasattr(replay, "ReplayWriter"))


if __name__ == "__main__":
    unittest.main()
