"""The Python host client: publish events, watch breakers, ask the gate (docs/wire-protocol.md).

Three classes, one per sidecar socket::

    with Publisher("ipc:///var/lib/loopwarden/run/ingest.sock", "trainer/rank0", "run-7") as pub:
        pub.metric("train/loss", loss, step)          # batched; never blocks

    watch = BreakerWatch("ipc:///var/lib/loopwarden/run/breakers.sock", "run-7")
    if watch.should_stop(): ...                       # open breaker, or the sidecar went silent

    gate = GateClient("ipc:///var/lib/loopwarden/run/gate.sock")
    decision = gate.ask(action)                       # Decision(verdict="deny", reason=..., ...)

Trainers usually want ``loopwarden.TrainingGuard`` (guard.py), which owns a Publisher and a
BreakerWatch. Failure behaviour, in one place:

- Publisher: sends are non-blocking; a message ZeroMQ will not take (PUSH queue at its high-water
  mark) is dropped and counted, never waited for. Its sequence number is spent, so the sidecar
  sees the loss as a gap.
- BreakerWatch: fails closed. No breaker message for ``timeout`` seconds means "stop".
- GateClient: no answer within ``timeout`` means "deny" (or "allow" if so configured).

Each object may own a ZeroMQ context (when none is given); ``close()`` (or leaving the ``with``
block) releases it, and anything still open is closed when the interpreter exits.
"""

import atexit
import itertools
import logging
import operator
import os
import struct
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import zmq
from google.protobuf.message import DecodeError

from loopwarden.v1 import agent_pb2, breaker_pb2, common_pb2, envelope_pb2, gate_pb2

__all__ = [
    "Breaker",
    "BreakerWatch",
    "Decision",
    "GateClient",
    "Publisher",
    "SCHEMA_MAJOR",
    "SCHEMA_MINOR",
    "SILENCE_BREAKER",
    "Transition",
]

SCHEMA_MAJOR = 1
SCHEMA_MINOR = 0

# The name of the synthetic breaker a BreakerWatch reports while the sidecar is silent.
SILENCE_BREAKER = "loopwarden.sidecar_silent"

_log = logging.getLogger("loopwarden.client")

_monotonic = time.monotonic
_monotonic_ns = time.monotonic_ns
_index = operator.index
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MASK = (1 << 64) - 1


# --- objects that must be closed before the interpreter exits -------------------------------

_exit_lock = threading.Lock()
_exit_registry: List[Tuple[int, int, int, "weakref.ref"]] = []
_exit_order = itertools.count()


def _close_on_exit(obj, priority: int) -> None:
    """Closes ``obj`` at interpreter exit if it is still open: lower priority first (a guard
    before its watch and publisher), so a shared context is never terminated under an open
    socket. The registry holds weak references only; a forked child that exits normally does
    not touch the sockets it inherited (ZeroMQ contexts do not survive a fork)."""
    with _exit_lock:
        _exit_registry[:] = [entry for entry in _exit_registry if entry[3]() is not None]
        _exit_registry.append((priority, next(_exit_order), os.getpid(), weakref.ref(obj)))


@atexit.register
def _close_all_at_exit() -> None:
    with _exit_lock:
        entries = sorted(_exit_registry, key=lambda entry: (entry[0], entry[1]))
        _exit_registry.clear()
    pid = os.getpid()
    for _, _, owner, ref in entries:
        obj = ref()
        if obj is not None and owner == pid:
            try:
                obj.close()
            except Exception:  # pragma: no cover - best effort at exit
                _log.debug("closing %r at exit failed", obj, exc_info=True)


# --- hand-made protobuf encoding for the hot path --------------------------------------------
#
# A MetricsBatch is encoded by hand: with python3-protobuf 3.21 (C++ backend) building
# MetricSample objects costs about 3 us per sample, this encoder about 1.3 us
# (bench/python_publish_bench.py prints both). The bytes are ordinary protobuf wire format and
# parse as the schema says (tests/python/test_client.py checks that against the generated code).

_SMALL_VARINTS = tuple(bytes((i,)) for i in range(128))
_pack_double = struct.Struct("<d").pack

# Field tags (field_number << 3 | wire_type) of the fields encoded by hand.
_TAG_ENVELOPE_SEQ = b"\x20"  # Envelope.seq = 4, varint
_TAG_ENVELOPE_TIME = b"\x28"  # Envelope.time_unix_nano = 5, varint
_TAG_SAMPLE_NAME = b"\x0a"  # MetricSample.name = 1, length-delimited
_TAG_SAMPLE_VALUE = b"\x11"  # MetricSample.value = 2, 64-bit
_TAG_SAMPLE_STEP = b"\x18"  # MetricSample.step = 3, varint
_TAG_SAMPLE_TIME = b"\x20"  # MetricSample.time_unix_nano = 4, varint
_SAMPLE_IN_BATCH = 10  # MetricsBatch.samples = 1, length-delimited: tag byte 0x0a


def _varint(value: int) -> bytes:
    """Base-128 varint of a non-negative integer below 2**64 (a negative int64 must be masked
    to its two's complement first: ``value & _UINT64_MASK``)."""
    if value < 0x80:
        return _SMALL_VARINTS[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _body_fields() -> Dict[str, Tuple[bytes, bytes]]:
    """Message full name -> (topic = the envelope body field's name, that field's tag bytes)."""
    fields = {}
    for fd in envelope_pb2.Envelope.DESCRIPTOR.oneofs_by_name["body"].fields:
        fields[fd.message_type.full_name] = (fd.name.encode("ascii"), _varint(fd.number << 3 | 2))
    return fields


_BODY_FIELDS = _body_fields()
_METRICS_TOPIC, _METRICS_TAG = _BODY_FIELDS["loopwarden.v1.MetricsBatch"]
_HEARTBEAT_TOPIC, _HEARTBEAT_TAG = _BODY_FIELDS["loopwarden.v1.Heartbeat"]


class _ClosedBuffer(list):
    """Replaces a closed publisher's sample buffer, so metric() needs no "closed" check."""

    def append(self, item) -> None:
        raise ValueError("can't record a metric: the loopwarden publisher is closed")


class Publisher:
    """Sends events to the sidecar's ingest socket without ever blocking the caller.

    ``endpoint`` is a ZeroMQ address (``ipc://...``, ``tcp://host:port``); the socket connects to
    it, or binds it when ``bind=True`` (for a sidecar whose SUB socket connects to the pipeline).
    ``socket`` is ``"push"`` (to the sidecar's PULL; lossless up to the high-water mark) or
    ``"pub"`` (to a SUB; ZeroMQ drops silently at the high-water mark, so ``dropped`` stays 0).

    Every envelope carries ``source``, ``run_id``, ``labels``, schema 1.0, the time it was made,
    and ``seq``: 1 for the first envelope of this publisher, then one more per envelope,
    heartbeats included. An envelope goes out as two frames, ``[topic, envelope]``, the topic
    being the body's field name (``metrics``, ``generation``, ...).

    ``metric()`` only appends to a list: samples go out together in one ``metrics`` envelope when
    ``max_batch`` are buffered, when ``flush_interval`` seconds have passed since the last flush
    (checked at the next call), on ``flush()``, on ``publish()`` (so events keep their call
    order), and on ``close()``. With ``heartbeat_interval`` (seconds) a daemon thread sends a
    heartbeat that often and also flushes samples left buffered longer than ``flush_interval``,
    so a trainer stuck in a long step still reports its last samples.

    Counters (read them any time): ``sent`` and ``dropped`` count envelopes of every kind,
    ``samples`` and ``samples_dropped`` the metric samples in them, ``invalid`` samples that
    could not be encoded (a name that is not valid UTF-8, a step outside int64; logged).

    metric(), publish(), heartbeat() and flush() may be called from several threads (sends are
    serialized by a lock); the usual use is one publisher per producing thread or process.
    """

    def __init__(
        self,
        endpoint: str,
        source: str,
        run_id: str,
        *,
        socket: str = "push",
        labels: Optional[Dict[str, str]] = None,
        max_batch: int = 256,
        flush_interval: float = 0.05,
        sndhwm: int = 10000,
        heartbeat_interval: Optional[float] = None,
        context: Optional[zmq.Context] = None,
        bind: bool = False,
        linger: float = 1.0,
    ):
        if socket not in ("push", "pub"):
            raise ValueError(f"socket must be 'push' or 'pub', not {socket!r}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        if flush_interval < 0:
            raise ValueError(f"flush_interval must be >= 0 seconds, not {flush_interval}")
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval must be > 0 seconds, not {heartbeat_interval}")
        self.endpoint = endpoint
        self.source = source
        self.run_id = run_id
        self.labels = dict(labels or {})
        self.max_batch = int(max_batch)
        self.flush_interval = float(flush_interval)
        self.heartbeat_interval = heartbeat_interval
        self.linger = linger

        self.sent = 0
        self.dropped = 0
        self.samples = 0
        self.samples_dropped = 0
        self.invalid = 0
        self.seq = 0  # the last sequence number used
        self._heartbeats_sent = 0
        self._heartbeats_dropped = 0

        # The fields every envelope shares, serialized once. An envelope is this prefix followed
        # by its seq, time and body: protobuf fields may come in any order.
        self._prefix = envelope_pb2.Envelope(
            schema=common_pb2.SchemaVersion(major=SCHEMA_MAJOR, minor=SCHEMA_MINOR),
            source=source,
            run_id=run_id,
            labels=self.labels,
        ).SerializeToString(deterministic=True)
        self._name_cache: Dict[str, bytes] = {}

        self._lock = threading.Lock()
        self._buf: list = []
        self._flush_interval_ns = int(self.flush_interval * 1e9)
        self._flush_at = _monotonic_ns() + self._flush_interval_ns
        self._send_errors_logged = 0

        self._owns_context = context is None
        self._context = zmq.Context() if context is None else context
        try:
            self._socket = self._context.socket(zmq.PUSH if socket == "push" else zmq.PUB)
            self._socket.setsockopt(zmq.SNDHWM, int(sndhwm))
            self._socket.setsockopt(zmq.LINGER, int(linger * 1000))
            if bind:
                self._socket.bind(endpoint)
            else:
                self._socket.connect(endpoint)
        except BaseException:
            self._release_context()
            raise
        self._closed = False

        self._stop = threading.Event()
        self._thread = None
        if heartbeat_interval is not None:
            self._thread = threading.Thread(
                target=self._background, name="loopwarden-publisher", daemon=True
            )
            self._thread.start()
        _close_on_exit(self, 2)

    # -- the hot path ---------------------------------------------------------------------

    def metric(self, name: str, value: float, step: int = 0) -> None:
        """Records one sample of the metric stream ``name``; ``value`` is anything ``float()``
        takes (NaN and infinities are sent as they are), ``step`` an integer (the host's step
        counter). Costs about a microsecond; sends, without blocking, only when a batch is due.
        Raises TypeError/ValueError for a bad argument, ValueError after close()."""
        if name.__class__ is not str and not isinstance(name, str):
            raise TypeError(f"metric name must be a str, not {type(name).__name__}")
        now = _monotonic_ns()
        buf = self._buf
        buf.append((name, float(value), _index(step), now))
        if now >= self._flush_at or len(buf) >= self.max_batch:
            self._flush(now)

    def flush(self) -> None:
        """Sends the buffered samples now (without blocking)."""
        self._flush(_monotonic_ns())

    def publish(self, body) -> bool:
        """Sends one event whose body is ``body``: a GenerationSummary, EmbeddingBatch,
        AgentStep, ActionRequest, StageTiming, CycleReport, MetricsBatch or Heartbeat message
        (the envelope field and topic follow from its type). Buffered samples are flushed
        first. Returns True if ZeroMQ took the message, False if it was dropped."""
        if self._closed:
            raise ValueError("can't publish: the loopwarden publisher is closed")
        try:
            topic, tag = _BODY_FIELDS[body.DESCRIPTOR.full_name]
        except (AttributeError, KeyError):
            kinds = ", ".join(sorted(name.rsplit(".", 1)[-1] for name in _BODY_FIELDS))
            raise TypeError(
                f"can't publish a {type(body).__name__}: the body must be one of {kinds}"
            ) from None
        payload = body.SerializeToString()
        with self._lock:
            self._flush_locked(_monotonic_ns())
            return self._send_locked(topic, tag, payload)

    def heartbeat(self) -> bool:
        """Sends a heartbeat (with this publisher's sent/dropped counters, heartbeats excluded).
        Returns True if ZeroMQ took it."""
        if self._closed:
            raise ValueError("can't send a heartbeat: the loopwarden publisher is closed")
        with self._lock:
            return self._heartbeat_locked()

    # -- internals ------------------------------------------------------------------------

    def _flush(self, now: int) -> None:
        with self._lock:
            if self._closed:
                raise ValueError("can't flush: the loopwarden publisher is closed")
            self._flush_locked(now)

    def _flush_locked(self, now: int) -> None:
        self._flush_at = now + self._flush_interval_ns
        buf = self._buf
        while buf:
            # Drain with slices (each one atomic under the GIL), so a sample appended by
            # another thread meanwhile stays in the buffer instead of being lost.
            count = min(len(buf), self.max_batch)
            items = buf[:count]
            del buf[:count]
            body, good = self._encode_samples(items)
            if not good:
                continue
            if self._send_locked(_METRICS_TOPIC, _METRICS_TAG, body):
                self.samples += good
            else:
                self.samples_dropped += good

    def _encode_samples(self, items) -> Tuple[bytes, int]:
        """The serialized MetricsBatch of ``items`` ((name, value, step, monotonic ns) tuples),
        and how many samples it holds (bad ones are skipped and counted)."""
        # Sample times were taken on the monotonic clock; convert with the offset as of now.
        offset = time.time_ns() - _monotonic_ns()
        names = self._name_cache
        steps: Dict[int, bytes] = {}
        highs: Dict[int, bytes] = {}
        parts: List[bytes] = []
        append = parts.append
        pack_double = _pack_double
        for name, value, step, t in items:
            prefix = names.get(name)
            if prefix is None:
                prefix = self._name_prefix(name)
                if prefix is None:
                    continue
            step_bytes = steps.get(step)
            if step_bytes is None:
                if not _INT64_MIN <= step <= _INT64_MAX:
                    self._invalid(f"step {step} of {name!r} is outside int64")
                    continue
                step_bytes = _TAG_SAMPLE_STEP + _varint(step & _UINT64_MASK) if step else b""
                steps[step] = step_bytes = step_bytes + _TAG_SAMPLE_TIME
            t += offset
            # varint(t) = its low 21 bits as three continuation bytes + varint(t >> 21), for
            # any t >= 2**21 (every real clock); the high part changes once per ~2 ms.
            high = t >> 21
            high_bytes = highs.get(high)
            if high_bytes is None:
                high_bytes = highs[high] = _varint(high)
            sample = (
                prefix
                + pack_double(value)
                + step_bytes
                + bytes(((t & 0x7F) | 0x80, ((t >> 7) & 0x7F) | 0x80, ((t >> 14) & 0x7F) | 0x80))
                + high_bytes
            )
            size = len(sample)
            append(bytes((_SAMPLE_IN_BATCH, size)) if size < 0x80 else b"\x0a" + _varint(size))
            append(sample)
        return b"".join(parts), len(parts) // 2

    def _name_prefix(self, name: str) -> Optional[bytes]:
        try:
            encoded = name.encode("utf-8")
        except UnicodeEncodeError:
            self._invalid(f"metric name {name!r} is not valid UTF-8")
            return None
        if len(self._name_cache) >= 4096:
            self._name_cache.clear()
        prefix = _length_delimited(_TAG_SAMPLE_NAME, encoded) + _TAG_SAMPLE_VALUE
        self._name_cache[name] = prefix
        return prefix

    def _invalid(self, why: str) -> None:
        self.invalid += 1
        if self.invalid <= 10 or self.invalid % 1000 == 0:
            _log.warning("loopwarden publisher %s: sample skipped (%d so far): %s",
                         self.source, self.invalid, why)

    def _send_locked(self, topic: bytes, tag: bytes, body: bytes) -> bool:
        self.seq += 1
        envelope = b"".join((
            self._prefix,
            _TAG_ENVELOPE_SEQ, _varint(self.seq),
            _TAG_ENVELOPE_TIME, _varint(time.time_ns() & _UINT64_MASK),
            tag, _varint(len(body)), body,
        ))
        socket = self._socket
        try:
            # A multipart message is atomic: once its first frame is taken, the rest is too.
            socket.send(topic, zmq.NOBLOCK | zmq.SNDMORE)
            socket.send(envelope, zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        except zmq.ZMQError as error:  # closed context and the like: count, never raise
            self.dropped += 1
            self._send_errors_logged += 1
            if self._send_errors_logged <= 5:
                _log.warning("loopwarden publisher %s: send to %s failed: %s",
                             self.source, self.endpoint, error)
            return False
        self.sent += 1
        return True

    def _heartbeat_locked(self, closing: bool = False) -> bool:
        interval = self.heartbeat_interval
        body = envelope_pb2.Heartbeat(
            events_sent=self.sent - self._heartbeats_sent,
            events_dropped=self.dropped - self._heartbeats_dropped,
            interval_ms=int(interval * 1000) if interval else 0,
            closing=closing,
        ).SerializeToString()
        ok = self._send_locked(_HEARTBEAT_TOPIC, _HEARTBEAT_TAG, body)
        if ok:
            self._heartbeats_sent += 1
        else:
            self._heartbeats_dropped += 1
        return ok

    def _background(self) -> None:
        interval = self.heartbeat_interval
        tick = min(interval, self.flush_interval) if self.flush_interval > 0 else interval
        next_heartbeat = _monotonic()
        while not self._stop.wait(max(tick, 0.001)):
            try:
                with self._lock:
                    if self._closed:
                        return
                    now = _monotonic_ns()
                    if self._buf and now >= self._flush_at:
                        self._flush_locked(now)
                    if _monotonic() >= next_heartbeat:
                        self._heartbeat_locked()
                        next_heartbeat = _monotonic() + interval
            except Exception:  # never let the thread die silently
                _log.exception("loopwarden publisher %s: background flush failed", self.source)

    def close(self) -> None:
        """Flushes the buffered samples, says goodbye (a heartbeat with ``closing`` set, so the
        sidecar does not take the silence that follows for a dead producer) and closes the
        socket. Messages ZeroMQ still holds are given up to ``linger`` seconds to leave (when the
        publisher owns its context, close() waits for that). Closing twice is fine; metric()
        afterwards raises ValueError."""
        if self._thread is not None:
            self._stop.set()
            if self._thread is not threading.current_thread():
                self._thread.join()
        with self._lock:
            if self._closed:
                return
            try:
                self._flush_locked(_monotonic_ns())
                self._heartbeat_locked(closing=True)
            finally:
                self._closed = True
                self._buf = _ClosedBuffer()
                self._socket.close(linger=int(self.linger * 1000))
        self._release_context()

    def _release_context(self) -> None:
        if self._owns_context:
            self._owns_context = False
            self._context.term()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<loopwarden.Publisher {self.source} run {self.run_id} -> {self.endpoint}: "
                f"sent {self.sent}, dropped {self.dropped}>")


# --- breakers ---------------------------------------------------------------------------------


def _enum_name(enum, value: int, prefix: str) -> str:
    try:
        return enum.Name(value)[len(prefix):].lower()
    except ValueError:  # a value from a newer schema minor
        return f"unknown_{value}"


# How strongly each action stops a host: the strongest open breaker is reported first.
_ACTION_RANK = {
    "halt": 0, "unspecified": 0, "pause": 1, "rollback": 2, "require_approval": 3,
    "throttle": 4, "alert": 9,
}
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True, eq=False)
class Breaker:
    """One breaker as the sidecar last described it (a ``BreakerStatus``, in plain Python).

    Enum fields are lower-case words: ``scope`` "run" | "global", ``state`` "closed" | "open" |
    "half_open" | "forced_open", ``action`` "halt" | "pause" | "rollback" | "throttle" |
    "require_approval" | "alert", ``severity`` "info" | "warning" | "critical" (each may also be
    "unspecified"). ``synthetic`` marks the breaker a BreakerWatch makes up while the sidecar is
    silent (named SILENCE_BREAKER); ``status`` is the message itself (None when synthetic).
    """

    name: str
    run_id: str
    scope: str
    state: str
    action: str
    severity: str
    reason: str
    evidence: Dict[str, str]
    monitor: str = ""
    epoch: int = 0
    changed_unix_nano: int = 0
    acknowledged: bool = False
    trips: int = 0
    synthetic: bool = False
    status: Optional[breaker_pb2.BreakerStatus] = field(default=None, repr=False)

    @property
    def is_open(self) -> bool:
        """OPEN or FORCED_OPEN."""
        return self.state in ("open", "forced_open")

    @property
    def stops(self) -> bool:
        """Open with an action that stops the host (anything but "alert")."""
        return self.is_open and self.action != "alert"

    @property
    def key(self) -> Tuple[str, str]:
        return (self.name, self.run_id)

    @classmethod
    def from_status(cls, status: breaker_pb2.BreakerStatus) -> "Breaker":
        evidence = {}
        for item in status.evidence:
            evidence[item.key] = item.value
        return cls(
            name=status.name,
            run_id=status.run_id,
            scope=_enum_name(breaker_pb2.BreakerScope, status.scope, "BREAKER_SCOPE_"),
            state=_enum_name(breaker_pb2.BreakerState, status.state, "BREAKER_STATE_"),
            action=_enum_name(breaker_pb2.BreakerAction, status.action, "BREAKER_ACTION_"),
            severity=_enum_name(breaker_pb2.Severity, status.severity, "SEVERITY_"),
            reason=status.reason,
            evidence=evidence,
            monitor=status.monitor,
            epoch=status.epoch,
            changed_unix_nano=status.changed_unix_nano,
            acknowledged=status.acknowledged,
            trips=status.trips,
            status=status,
        )


def _rank(breaker: Breaker):
    return (_ACTION_RANK.get(breaker.action, 0), _SEVERITY_RANK.get(breaker.severity, 0),
            breaker.name, breaker.run_id)


@dataclass(frozen=True, eq=False)
class Transition:
    """One breaker change, as passed to ``BreakerWatch(on_transition=...)``: the breaker after
    the change, the state before it, the cause ("trip", "ack", "reset", "force_open",
    "probation_end", "restore"), the operator and note for operator causes, the event that
    caused a trip, and the message itself."""

    breaker: Breaker
    previous: str
    cause: str
    operator_id: str
    note: str
    trigger_source: str
    trigger_seq: int
    message: breaker_pb2.BreakerTransition = field(repr=False)


class BreakerWatch:
    """Follows the sidecar's breaker socket on a daemon thread and answers "must I stop?".

    The thread connects a SUB socket to ``endpoint``, takes every ``transition`` and
    ``snapshot`` message, and keeps the latest state of every breaker by (name, run_id): a
    snapshot replaces everything known, a transition updates one breaker. A breaker *applies*
    to this host when it is OPEN or FORCED_OPEN and global or scoped to ``run_id``.

    should_stop() is True when an applying breaker's action is anything but "alert", or — fail
    closed — when no valid message has arrived for ``timeout`` seconds (from the start, too: a
    watch that hears nothing within ``timeout`` of starting stops the host). The sidecar sends a
    snapshot every 250 ms by default, so the default 1 s is four missed periods. With
    ``fail_open=True`` silence is reported (``silent``) but does not stop the host.

    ``on_transition(transition)`` is called with a Transition for every transition message, on
    the watcher thread: keep it short and thread-safe; an exception it raises is logged and
    ignored. A breaker learned from a snapshot (a late join) does not call it.
    """

    def __init__(
        self,
        endpoint: str,
        run_id: str,
        *,
        timeout: float = 1.0,
        fail_open: bool = False,
        on_transition: Optional[Callable[[Transition], None]] = None,
        context: Optional[zmq.Context] = None,
    ):
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, not {timeout}")
        self.endpoint = endpoint
        self.run_id = run_id
        self.timeout = float(timeout)
        self.fail_open = fail_open
        self.on_transition = on_transition

        self.messages = 0  # valid messages received
        self.malformed = 0  # messages ignored as malformed
        self.snapshots = 0
        self.transitions = 0
        self.last_snapshot_sequence = 0
        self.heartbeat_interval_ms = 0
        self.sidecar_id = ""

        self._states: Dict[Tuple[str, str], Breaker] = {}
        self._applying: Tuple[Breaker, ...] = ()
        self._stopping = False
        self._started = _monotonic()
        self._last_message = self._started
        self._deadline = self._started + self.timeout  # silent from this moment on
        self._changed = threading.Condition()
        self._close_lock = threading.Lock()
        self._closed = False

        self._owns_context = context is None
        self._context = zmq.Context() if context is None else context
        wake_address = f"inproc://loopwarden-watch-{uuid.uuid4().hex}"
        sockets = []
        try:
            self._sub = self._context.socket(zmq.SUB)
            sockets.append(self._sub)
            self._sub.setsockopt(zmq.LINGER, 0)
            self._sub.setsockopt(zmq.SUBSCRIBE, b"")
            self._sub.connect(endpoint)
            self._wake_rx = self._context.socket(zmq.PAIR)
            sockets.append(self._wake_rx)
            self._wake_rx.setsockopt(zmq.LINGER, 0)
            self._wake_rx.bind(wake_address)
            self._wake_tx = self._context.socket(zmq.PAIR)
            sockets.append(self._wake_tx)
            self._wake_tx.setsockopt(zmq.LINGER, 0)
            self._wake_tx.connect(wake_address)
        except BaseException:
            for socket in sockets:
                socket.close(linger=0)
            if self._owns_context:
                self._context.term()
            raise
        self._thread = threading.Thread(
            target=self._run, name="loopwarden-breaker-watch", daemon=True
        )
        self._thread.start()
        _close_on_exit(self, 1)

    # -- what hosts call ------------------------------------------------------------------

    def should_stop(self) -> bool:
        """True if the host must stop now (see the class docs). Costs well under a
        microsecond: it reads attributes the watcher thread keeps up to date, plus one clock
        read for the silence check, so it works even if that thread is starved."""
        return self._stopping or (not self.fail_open and _monotonic() >= self._deadline)

    @property
    def running(self) -> bool:
        """The watcher thread is alive."""
        return self._thread.is_alive()

    @property
    def silent(self) -> bool:
        """No valid message for ``timeout`` seconds (whatever ``fail_open`` says)."""
        return _monotonic() >= self._deadline

    @property
    def silent_for(self) -> float:
        """Seconds since the last valid message (or since the watch started)."""
        return _monotonic() - self._last_message

    def open_breakers(self) -> List[Breaker]:
        """The breakers that apply to this run (OPEN or FORCED_OPEN; global or this run_id),
        strongest action first, including "alert" ones. While the sidecar is silent and the
        watch fails closed, a synthetic SILENCE_BREAKER (action "halt") comes first."""
        applying = list(self._applying)
        if not self.fail_open and self.silent:
            applying.insert(0, self._silence_breaker())
        return applying

    def stopping_breakers(self) -> List[Breaker]:
        """open_breakers() without the "alert" ones: what makes should_stop() True."""
        return [breaker for breaker in self.open_breakers() if breaker.stops]

    def breakers(self) -> Dict[Tuple[str, str], Breaker]:
        """Every breaker last heard of, by (name, run_id), whatever its state or run."""
        return dict(self._states)

    def get(self, name: str, run_id: Optional[str] = None) -> Optional[Breaker]:
        """The breaker ``name`` of ``run_id`` (default: this run, then global), or None."""
        states = self._states
        if run_id is not None:
            return states.get((name, run_id))
        return states.get((name, self.run_id)) or states.get((name, ""))

    def wait_until(self, predicate: Callable[["BreakerWatch"], bool], timeout: float) -> bool:
        """Waits until ``predicate(watch)`` is true (re-checked after every message and at
        least every 50 ms) or ``timeout`` seconds pass. Returns the last result, e.g.
        ``watch.wait_until(lambda w: w.should_stop(), 5.0)``."""
        deadline = _monotonic() + timeout
        with self._changed:
            while True:
                if predicate(self):
                    return True
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return bool(predicate(self))
                self._changed.wait(min(remaining, 0.05))

    def wait_ready(self, timeout: Optional[float] = None) -> bool:
        """Waits until the first valid message has arrived (the state is known); ``timeout``
        defaults to the watch's own. Returns False if none came in time."""
        return self.wait_until(lambda watch: watch.messages > 0,
                               self.timeout if timeout is None else timeout)

    def close(self) -> None:
        """Stops the thread and closes the sockets; closing twice is fine. After close()
        should_stop() fails closed (no more messages arrive), unless fail_open."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._wake_tx.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
        if self._thread is not threading.current_thread():
            self._thread.join(5.0)
        self._wake_tx.close(linger=0)
        if self._owns_context and not self._thread.is_alive():
            self._owns_context = False
            self._context.term()

    def __enter__(self) -> "BreakerWatch":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<loopwarden.BreakerWatch run {self.run_id} <- {self.endpoint}: "
                f"{len(self._applying)} open, should_stop={self.should_stop()}>")

    # -- the watcher thread ---------------------------------------------------------------

    def _silence_breaker(self) -> Breaker:
        silent_for = self.silent_for
        if self.messages:
            reason = (f"sidecar silent for {silent_for:.1f} s: no breaker message from "
                      f"{self.endpoint} within the {self.timeout:g} s timeout (failing closed)")
        else:
            reason = (f"sidecar silent for {silent_for:.1f} s: no breaker message from "
                      f"{self.endpoint} since the watch started (timeout {self.timeout:g} s; "
                      "failing closed) — is the sidecar running?")
        return Breaker(
            name=SILENCE_BREAKER,
            run_id=self.run_id,
            scope="global",
            state="open",
            action="halt",
            severity="critical",
            reason=reason,
            evidence={"endpoint": self.endpoint, "timeout_s": f"{self.timeout:g}",
                      "silent_s": f"{silent_for:.3f}", "messages": str(self.messages)},
            monitor="client",
            epoch=self.messages,  # one silent episode per run of messages
            synthetic=True,
        )

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sub, zmq.POLLIN)
        poller.register(self._wake_rx, zmq.POLLIN)
        was_silent = False
        try:
            while True:
                wait = self._deadline - _monotonic()
                if wait <= 0:
                    if not was_silent:
                        was_silent = True
                        self._silence_began()
                    wait = 0.25
                events = dict(poller.poll(int(min(wait, 0.25) * 1000) + 1))
                if self._wake_rx in events:
                    return
                if self._sub in events and self._drain():
                    if was_silent:
                        was_silent = False
                        _log.info("loopwarden: breaker messages from %s again", self.endpoint)
        except Exception:  # the watch then fails closed by silence
            _log.exception("loopwarden breaker watch on %s stopped", self.endpoint)
        finally:
            self._sub.close(linger=0)
            self._wake_rx.close(linger=0)
            with self._changed:
                self._changed.notify_all()

    def _silence_began(self) -> None:
        _log.warning(
            "loopwarden: no breaker message from %s for %.1f s%s",
            self.endpoint, self.silent_for,
            " (fail_open: carrying on)" if self.fail_open else "; failing closed: stop",
        )
        with self._changed:
            self._changed.notify_all()

    def _drain(self) -> bool:
        """Takes every waiting message; True if at least one was valid."""
        got = False
        while True:
            try:
                frames = self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            message = self._parse(frames)
            if message is None:
                continue
            got = True
            self._apply(message)
        return got

    def _parse(self, frames) -> Optional[breaker_pb2.BreakerMessage]:
        if len(frames) == 2 and frames[0] in (b"transition", b"snapshot"):
            message = breaker_pb2.BreakerMessage()
            try:
                message.ParseFromString(frames[1])
            except DecodeError:
                message = None
            if message is not None and message.WhichOneof("body") == frames[0].decode():
                return message
        self.malformed += 1
        if self.malformed <= 5 or self.malformed % 1000 == 0:
            _log.warning("loopwarden: ignored a malformed breaker message from %s "
                         "(%d so far: %d frames, topic %r)", self.endpoint, self.malformed,
                         len(frames), frames[0][:32] if frames else b"")
        return None

    def _apply(self, message: breaker_pb2.BreakerMessage) -> None:
        transition = None
        if message.HasField("snapshot"):
            snapshot = message.snapshot
            states = {}
            for status in snapshot.breakers:
                breaker = Breaker.from_status(status)
                states[breaker.key] = breaker
            self.snapshots += 1
            self.last_snapshot_sequence = snapshot.sequence
            self.heartbeat_interval_ms = snapshot.heartbeat_interval_ms
            self.sidecar_id = snapshot.sidecar_id
        else:
            message_transition = message.transition
            breaker = Breaker.from_status(message_transition.breaker)
            states = dict(self._states)
            states[breaker.key] = breaker
            self.transitions += 1
            transition = Transition(
                breaker=breaker,
                previous=_enum_name(breaker_pb2.BreakerState, message_transition.previous,
                                    "BREAKER_STATE_"),
                cause=message_transition.cause,
                operator_id=message_transition.operator_id,
                note=message_transition.note,
                trigger_source=message_transition.trigger_source,
                trigger_seq=message_transition.trigger_seq,
                message=message_transition,
            )
        run_id = self.run_id
        applying = tuple(sorted(
            (b for b in states.values()
             if b.is_open and (b.scope == "global" or b.run_id == run_id)),
            key=_rank,
        ))
        newly_open = [b for b in applying if b.stops and self._is_new(b)]
        with self._changed:
            self._states = states
            self._applying = applying
            self._stopping = any(b.stops for b in applying)
            now = _monotonic()
            self._last_message = now
            self._deadline = now + self.timeout
            self.messages += 1
            self._changed.notify_all()
        for b in newly_open:
            _log.warning("loopwarden: breaker %s is %s for %s (action %s): %s", b.name,
                         b.state.replace("_", " "), f"run {b.run_id}" if b.run_id else "all runs",
                         b.action, b.reason)
        if transition is not None and self.on_transition is not None:
            try:
                self.on_transition(transition)
            except Exception:
                _log.exception("loopwarden: on_transition callback failed")

    def _is_new(self, breaker: Breaker) -> bool:
        old = self._states.get(breaker.key)
        return old is None or not old.stops or old.epoch != breaker.epoch


# --- gate -------------------------------------------------------------------------------------

_VERDICTS = {
    gate_pb2.GATE_VERDICT_ALLOW: "allow",
    gate_pb2.GATE_VERDICT_REQUIRE_APPROVAL: "require_approval",
    gate_pb2.GATE_VERDICT_DENY: "deny",
}


@dataclass(frozen=True)
class Decision:
    """The gate's answer to one action.

    ``verdict`` is "allow", "require_approval" (wait for a human; ``approval_id`` names the
    pending approval) or "deny"; ``reason``, ``rule_id``, ``monitor`` and ``alternative`` (a
    safer way to do the same thing) come from the deciding monitor. ``timed_out`` is True when
    the sidecar did not answer in time and the verdict is the client's ``on_timeout`` policy.
    """

    verdict: str
    reason: str = ""
    rule_id: str = ""
    monitor: str = ""
    alternative: str = ""
    approval_id: str = ""
    timed_out: bool = False
    request_id: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"

    @property
    def denied(self) -> bool:
        return self.verdict == "deny"


def shell_action(command: str, *, cwd: Optional[str] = None, workspace: Optional[str] = None,
                 session_id: str = "", agent_id: str = "", environment: str = "",
                 allowed_hosts=(), resources=(), environments=(), description: str = "",
                 tool: str = "bash"):
    """A loopwarden.v1.ActionRequest for a shell command line, ready for GateClient.ask().

    ``cwd`` defaults to the current directory and ``workspace`` (the task's declared root) to
    ``cwd``; paths in the command are judged against them. The scope fields (``allowed_hosts``,
    ``resources``, ``environments``, ``description``) declare what the session may touch;
    ``environment`` names the environment acted on (e.g. "prod"). $HOME is sent so "~" is
    resolved like the shell would."""
    cwd = os.getcwd() if cwd is None else cwd
    action = agent_pb2.ActionRequest(
        kind=agent_pb2.ACTION_KIND_SHELL, tool=tool, command=command, working_directory=cwd,
        session_id=session_id, agent_id=agent_id, environment=environment)
    action.scope.workspace_root = cwd if workspace is None else workspace
    action.scope.allowed_hosts.extend(allowed_hosts)
    action.scope.resources.extend(resources)
    action.scope.environments.extend(environments)
    action.scope.description = description
    home = os.environ.get("HOME", "")
    if home.startswith("/"):
        action.attributes.add(key="home", value=home)
    return action


class GateClient:
    """Asks the sidecar's gate whether an action may run ("may I?"), over a DEALER socket.

    ``ask(action)`` sends ``[b"", GateRequest]`` with a fresh ``request_id`` and waits up to
    ``timeout`` seconds for the ``[b"", GateDecision]`` that echoes it; replies to other ids
    (late answers to requests already given up on) are discarded. No answer in time gives
    Decision(verdict=on_timeout, timed_out=True) — "deny" by default, as the protocol asks — and
    the socket is replaced, so a late reply can never be taken for a later request.

    ``source`` and ``run_id`` are put into every request. Thread-safe: concurrent ask() calls
    are serialized.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 0.2,
        on_timeout: str = "deny",
        context: Optional[zmq.Context] = None,
        source: str = "",
        run_id: str = "",
    ):
        if on_timeout not in ("deny", "allow"):
            raise ValueError(f"on_timeout must be 'deny' or 'allow', not {on_timeout!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, not {timeout}")
        self.endpoint = endpoint
        self.timeout = float(timeout)
        self.on_timeout = on_timeout
        self.source = source
        self.run_id = run_id
        self.asked = 0
        self.timeouts = 0
        self.stale_replies = 0  # replies discarded because they answered another request
        self.malformed = 0
        self._prefix = f"{os.getpid():x}-{uuid.uuid4().hex[:8]}-"
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._owns_context = context is None
        self._context = zmq.Context() if context is None else context
        self._socket = None
        try:
            self._socket = self._new_socket()
        except BaseException:
            self._release_context()
            raise
        _close_on_exit(self, 2)

    def _new_socket(self):
        socket = self._context.socket(zmq.DEALER)
        try:
            socket.setsockopt(zmq.LINGER, 0)
            socket.connect(self.endpoint)
        except BaseException:
            socket.close(linger=0)
            raise
        return socket

    def ask(self, action, *, timeout: Optional[float] = None, approval_id: str = "") -> Decision:
        """Asks about ``action`` (a loopwarden.v1.ActionRequest) and returns the Decision;
        waits at most ``timeout`` seconds (default: the client's).

        After a "require_approval" answer, ask again with its ``approval_id`` to learn the
        human's decision: "allow" once they approved this same action (one approval, one
        action), "deny" when they denied or it expired, "require_approval" while undecided."""
        timeout = self.timeout if timeout is None else float(timeout)
        with self._lock:
            if self._socket is None:
                raise ValueError("can't ask: the loopwarden gate client is closed")
            self.asked += 1
            request_id = self._prefix + str(next(self._ids))
            request = gate_pb2.GateRequest(
                request_id=request_id,
                source=self.source,
                run_id=self.run_id,
                timeout_ms=int(timeout * 1000),
                time_unix_nano=time.time_ns(),
                approval_id=approval_id,
            )
            request.action.CopyFrom(action)
            deadline = _monotonic() + timeout
            try:
                self._socket.send_multipart([b"", request.SerializeToString()], zmq.NOBLOCK)
            except zmq.Again:
                return self._gave_up(request_id, timeout, "its queue is full")
            socket = self._socket
            while True:
                remaining = deadline - _monotonic()
                if remaining <= 0 or not socket.poll(max(1, int(remaining * 1000)), zmq.POLLIN):
                    return self._gave_up(request_id, timeout, "no answer")
                decision = self._read(socket.recv_multipart(), request_id)
                if decision is not None:
                    return decision

    def wait_for_approval(self, action, approval_id: str, *, timeout: float,
                          poll: float = 1.0) -> Decision:
        """Waits up to ``timeout`` seconds for a human's decision on an action that got
        "require_approval": asks again with ``approval_id`` every ``poll`` seconds until the
        answer is "allow" (approved, for this same action, once) or "deny" (denied, expired, or
        a monitor now refuses). Past the timeout the answer is Decision("deny",
        rule_id="client.approval_timeout", timed_out=True): fail closed; the approval stays
        pending, so asking again later with the same id still gets the human's decision.
        Unanswered polls (sidecar down) are retried, never taken for a decision."""
        deadline = _monotonic() + float(timeout)
        poll = max(0.001, float(poll))
        last = None
        while True:
            left = deadline - _monotonic()
            last = self.ask(action, timeout=max(0.001, min(self.timeout, left)),
                            approval_id=approval_id)
            if not last.timed_out and last.verdict != "require_approval":
                return last
            left = deadline - _monotonic()
            if left <= 0:
                break
            time.sleep(min(poll, left))
            if _monotonic() >= deadline:
                break
        reason = f"no decision on approval {approval_id!r} within {timeout:g} s"
        if last is not None and last.reason:
            reason += f" (last answer: {last.reason})"
        return Decision(verdict="deny", reason=reason, rule_id="client.approval_timeout",
                        monitor=last.monitor if last else "", approval_id=approval_id,
                        timed_out=True, request_id=last.request_id if last else "")

    def check(self, command: str, *, wait: float = 0.0, poll: float = 1.0, **action_fields
              ) -> Decision:
        """Asks about a shell command line (see shell_action() for ``action_fields``: cwd,
        workspace, session_id, environment, allowed_hosts, ...). With ``wait`` > 0, a
        "require_approval" answer is waited on for up to ``wait`` seconds (wait_for_approval)::

            d = gate.check("git reset --hard", session_id="s-7", wait=300)
            if not d.allowed:
                raise RuntimeError(f"{d.rule_id}: {d.reason} (instead: {d.alternative})")
        """
        action = shell_action(command, **action_fields)
        if wait > 0:
            return self.ask_and_wait(action, timeout=wait, poll=poll)
        return self.ask(action)

    def ask_and_wait(self, action, *, timeout: float, poll: float = 1.0) -> Decision:
        """ask(action), then wait_for_approval() when the answer is "require_approval"; the
        whole call takes at most about ``timeout`` seconds (plus one ask)."""
        start = _monotonic()
        first = self.ask(action)
        if first.verdict != "require_approval" or not first.approval_id:
            return first
        left = max(0.0, float(timeout) - (_monotonic() - start))
        return self.wait_for_approval(action, first.approval_id, timeout=left, poll=poll)

    def _read(self, frames, request_id: str) -> Optional[Decision]:
        if len(frames) == 2 and frames[0] == b"":
            reply = gate_pb2.GateDecision()
            try:
                reply.ParseFromString(frames[1])
            except DecodeError:
                reply = None
            if reply is not None:
                if reply.request_id != request_id:
                    self.stale_replies += 1
                    return None
                verdict = _VERDICTS.get(reply.verdict)
                reason = reply.reason
                if verdict is None:  # fail safe: a decision without a verdict denies
                    verdict = "deny"
                    reason = reason or f"the gate answered with verdict {reply.verdict}"
                return Decision(verdict=verdict, reason=reason, rule_id=reply.rule_id,
                                monitor=reply.monitor, alternative=reply.alternative,
                                approval_id=reply.approval_id, request_id=request_id)
        self.malformed += 1
        _log.warning("loopwarden: ignored a malformed gate reply from %s (%d frames)",
                     self.endpoint, len(frames))
        return None

    def _gave_up(self, request_id: str, timeout: float, what: str) -> Decision:
        self.timeouts += 1
        # A late reply must never be read as the answer to a later request: start afresh.
        self._socket.close(linger=0)
        self._socket = self._new_socket()
        policy = "denied" if self.on_timeout == "deny" else "allowed"
        return Decision(
            verdict=self.on_timeout,
            reason=(f"loopwarden gate at {self.endpoint} gave {what} within "
                    f"{timeout * 1000:.0f} ms; {policy} by the client's on_timeout policy"),
            rule_id="client.timeout",
            monitor="client",
            timed_out=True,
            request_id=request_id,
        )

    def close(self) -> None:
        """Closes the socket (closing twice is fine)."""
        with self._lock:
            if self._socket is not None:
                self._socket.close(linger=0)
                self._socket = None
        self._release_context()

    def _release_context(self) -> None:
        if self._owns_context:
            self._owns_context = False
            self._context.term()

    def __enter__(self) -> "GateClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<loopwarden.GateClient -> {self.endpoint}: asked {self.asked}>"
