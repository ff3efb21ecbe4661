"""TrainingGuard: what a trainer attaches to obey loopwarden in about three lines.

::

    guard = loopwarden.TrainingGuard(run_id="run-7", endpoints=loopwarden.Endpoints.from_dir(state_dir))
    for step in range(steps):
        guard.check()                         # raises BreakerOpen if a breaker for this run opened
        ...
        guard.metric("train/loss", loss, step)

or, to handle a breaker instead of stopping on an exception::

    def restore(event):                       # event is a BreakerOpen
        load_checkpoint(event.evidence.get("checkpoint", last_trusted))

    guard = loopwarden.TrainingGuard(run_id="run-7", on_open=restore)

The guard owns a Publisher (events to the sidecar's ingest socket) and a BreakerWatch (breaker
state from its breaker socket), on one ZeroMQ context of its own; ``close()`` releases them (it
is also done at interpreter exit). docs/client-python.md describes every option.
"""

import os
import socket as _socket
from dataclasses import dataclass
from typing import Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import zmq

from loopwarden.client import (
    SILENCE_BREAKER,
    Breaker,
    BreakerWatch,
    Publisher,
    _close_on_exit,
)

__all__ = ["BreakerOpen", "Endpoints", "TrainingGuard"]


@dataclass(frozen=True)
class Endpoints:
    """The sidecar's three host-facing ZeroMQ endpoints.

    - explicit: ``Endpoints(ingest="tcp://10.0.0.5:7001", breakers="tcp://...", gate="tcp://...")``
    - from a sidecar's state directory: ``Endpoints.from_dir("/var/lib/loopwarden")`` gives
      ``ipc:///var/lib/loopwarden/run/ingest.sock``, ``.../run/breakers.sock``,
      ``.../run/gate.sock`` (the sidecar's defaults; a relative directory is made absolute)
    - from the environment: ``Endpoints.from_env()`` takes ``LOOPWARDEN_INGEST``,
      ``LOOPWARDEN_BREAKERS`` and ``LOOPWARDEN_GATE``, each falling back to the state-dir
      default of ``state_dir`` (or ``LOOPWARDEN_STATE_DIR``, or ``./loopwarden-state``, the
      sidecar's default state directory).
    """

    ingest: str
    breakers: str
    gate: str

    DEFAULT_STATE_DIR: ClassVar[str] = "./loopwarden-state"
    ENV_INGEST: ClassVar[str] = "LOOPWARDEN_INGEST"
    ENV_BREAKERS: ClassVar[str] = "LOOPWARDEN_BREAKERS"
    ENV_GATE: ClassVar[str] = "LOOPWARDEN_GATE"
    ENV_STATE_DIR: ClassVar[str] = "LOOPWARDEN_STATE_DIR"

    @classmethod
    def from_dir(cls, state_dir: Union[str, "os.PathLike[str]"]) -> "Endpoints":
        """The default ipc endpoints of a sidecar whose state directory is ``state_dir``."""
        run = os.path.join(os.path.abspath(os.fspath(state_dir)), "run")
        return cls(
            ingest=f"ipc://{os.path.join(run, 'ingest.sock')}",
            breakers=f"ipc://{os.path.join(run, 'breakers.sock')}",
            gate=f"ipc://{os.path.join(run, 'gate.sock')}",
        )

    @classmethod
    def from_env(
        cls,
        state_dir: Union[str, "os.PathLike[str]", None] = None,
        environ: Optional[Mapping[str, str]] = None,
    ) -> "Endpoints":
        """Endpoints from ``LOOPWARDEN_INGEST`` / ``_BREAKERS`` / ``_GATE`` (empty = unset); the
        ones not set come from ``from_dir(state_dir)`` (default: ``LOOPWARDEN_STATE_DIR``, then
        ``./loopwarden-state``)."""
        env = os.environ if environ is None else environ
        if state_dir is None:
            state_dir = env.get(cls.ENV_STATE_DIR) or cls.DEFAULT_STATE_DIR
        base = cls.from_dir(state_dir)
        return cls(
            ingest=env.get(cls.ENV_INGEST) or base.ingest,
            breakers=env.get(cls.ENV_BREAKERS) or base.breakers,
            gate=env.get(cls.ENV_GATE) or base.gate,
        )


class BreakerOpen(RuntimeError):
    """A breaker that applies to this run is open: the training loop must stop (or do what
    ``action`` says). Raised by TrainingGuard.check(), or passed to its ``on_open`` callback.

    Attributes: ``name`` (e.g. "training.collapse"), ``action`` ("halt", "pause", "rollback",
    "throttle", "require_approval"), ``reason`` (one line from the monitor), ``evidence`` (a
    dict of what the monitor saw; for rollback, e.g. the checkpoint to return to), ``run_id``
    (the guarded run), ``scope`` ("run" or "global"), ``state`` ("open" or "forced_open"),
    ``monitor``, ``severity``, ``epoch``, ``breaker`` (the Breaker), ``breakers`` (every
    breaker stopping this run, this one first), and ``sidecar_silent`` — True when no breaker
    opened but the sidecar went silent and the guard fails closed (``name`` is then
    "loopwarden.sidecar_silent").
    """

    def __init__(self, breaker: Breaker, run_id: str, others: Sequence[Breaker] = ()):
        self.breaker = breaker
        self.breakers: Tuple[Breaker, ...] = (breaker, *others)
        self.name = breaker.name
        self.action = breaker.action
        self.reason = breaker.reason
        self.evidence: Dict[str, str] = dict(breaker.evidence)
        self.run_id = run_id
        self.scope = breaker.scope
        self.state = breaker.state
        self.monitor = breaker.monitor
        self.severity = breaker.severity
        self.epoch = breaker.epoch
        self.sidecar_silent = breaker.synthetic and breaker.name == SILENCE_BREAKER
        super().__init__(self._message(others))

    def _message(self, others: Sequence[Breaker]) -> str:
        b = self.breaker
        if self.sidecar_silent:
            text = (f"loopwarden stopped run {self.run_id}: {b.reason} — check the sidecar: "
                    "loopwarden status")
        else:
            whom = f"run {b.run_id}" if b.scope != "global" else "all runs (global breaker)"
            opened = ("an operator forced open" if b.state == "forced_open"
                      else "loopwarden opened")
            reason = b.reason or "no reason given"
            run_flag = f" --run {b.run_id}" if b.scope != "global" and b.run_id else ""
            text = (f"{opened} {b.name} for {whom} (action {b.action}): {reason} — "
                    f"inspect with: loopwarden explain {b.name}{run_flag}")
        if others:
            names = ", ".join(o.name for o in others[:5])
            more = f", +{len(others) - 5}" if len(others) > 5 else ""
            text += f" (also open: {names}{more})"
        return text

    def __reduce__(self):  # keep it picklable (multiprocessing, ray)
        return (_rebuild_breaker_open, (self.breaker, self.run_id, self.breakers[1:]))


def _rebuild_breaker_open(breaker, run_id, others):
    return BreakerOpen(breaker, run_id, others)


def _default_source() -> str:
    return f"trainer/{_socket.gethostname()}/{os.getpid()}"


class TrainingGuard:
    """Publishes a trainer's metrics and stops it, at a step boundary, when loopwarden says so.

    - ``run_id``: the run this trainer belongs to (run-scoped breakers match on it).
    - ``endpoints``: an Endpoints, or a sidecar state directory (for Endpoints.from_dir);
      default Endpoints.from_env().
    - ``source``: the producer id of the events (default ``trainer/<host>/<pid>``, unique per
      process, since sequence numbers restart from 1 with every guard); ``labels``: envelope
      labels.
    - ``on_open(event)``: called with a BreakerOpen, from check() on the caller's thread, once
      per opening of each breaker (a breaker that re-trips calls it again), instead of raising.
      It may raise itself to stop the loop.
    - ``timeout`` / ``fail_open``: see BreakerWatch — with no breaker message for ``timeout``
      seconds check() acts as if a breaker ("loopwarden.sidecar_silent", action halt) were open,
      unless ``fail_open``.
    - ``wait_ready``: at construction, wait up to ``timeout`` for the sidecar's first breaker
      message, so the first check() already knows the state (a late joiner learns open breakers
      from the next snapshot). If none comes, the guard is still made; check() then fails closed.
    - ``socket``, ``max_batch``, ``flush_interval``, ``sndhwm``, ``heartbeat_interval``,
      ``linger``: passed to the Publisher (heartbeats, and the flush of samples left buffered,
      run on a daemon thread; ``heartbeat_interval=None`` turns both off; close() waits up to
      ``linger`` seconds for queued events to leave).
    """

    def __init__(
        self,
        run_id: str,
        endpoints: Union[Endpoints, str, "os.PathLike[str]", None] = None,
        *,
        source: Optional[str] = None,
        labels: Optional[Dict[str, str]] = None,
        on_open: Optional[Callable[[BreakerOpen], None]] = None,
        timeout: float = 1.0,
        fail_open: bool = False,
        wait_ready: bool = True,
        socket: str = "push",
        max_batch: int = 256,
        flush_interval: float = 0.05,
        sndhwm: int = 10000,
        heartbeat_interval: Optional[float] = 5.0,
        linger: float = 1.0,
    ):
        if endpoints is None:
            endpoints = Endpoints.from_env()
        elif not isinstance(endpoints, Endpoints):
            endpoints = Endpoints.from_dir(endpoints)
        self.run_id = run_id
        self.endpoints = endpoints
        self.on_open = on_open
        self._notified: set = set()
        self._context = zmq.Context()
        self.watch: Optional[BreakerWatch] = None
        self.publisher: Optional[Publisher] = None
        try:
            self.watch = BreakerWatch(endpoints.breakers, run_id, timeout=timeout,
                                      fail_open=fail_open, context=self._context)
            self.publisher = Publisher(
                endpoints.ingest, source or _default_source(), run_id, socket=socket,
                labels=labels, max_batch=max_batch, flush_interval=flush_interval,
                sndhwm=sndhwm, heartbeat_interval=heartbeat_interval, linger=linger,
                context=self._context,
            )
        except BaseException:
            self.close()
            raise
        _close_on_exit(self, 0)
        if wait_ready:
            self.watch.wait_ready()

    def check(self) -> None:
        """At a step boundary: raises BreakerOpen if a breaker that stops this run is open (or
        the sidecar is silent and the guard fails closed); with ``on_open``, calls it instead
        for each opening not yet reported and returns. Cheap: no I/O, well under a
        microsecond when nothing is open."""
        if self.watch.should_stop():
            self._stop()

    def _stop(self) -> None:
        breakers = self.watch.stopping_breakers()
        if not breakers:  # closed again in the meantime
            return
        if self.on_open is None:
            raise BreakerOpen(breakers[0], self.run_id, breakers[1:])
        for breaker in breakers:
            key = (breaker.name, breaker.run_id, breaker.epoch, breaker.synthetic)
            if key in self._notified:
                continue
            self._notified.add(key)
            others = [other for other in breakers if other is not breaker]
            self.on_open(BreakerOpen(breaker, self.run_id, others))

    def should_stop(self) -> bool:
        """True if check() would raise (or call on_open), without doing either."""
        return self.watch.should_stop()

    def open_breakers(self) -> List[Breaker]:
        """Every breaker open for this run, "alert" ones included (see BreakerWatch)."""
        return self.watch.open_breakers()

    def metric(self, name: str, value: float, step: int = 0) -> None:
        """Records one metric sample (batched, never blocks): Publisher.metric()."""
        self.publisher.metric(name, value, step)

    def publish(self, body) -> bool:
        """Sends any other event body (GenerationSummary, EmbeddingBatch, ...):
        Publisher.publish()."""
        return self.publisher.publish(body)

    def flush(self) -> None:
        self.publisher.flush()

    def close(self) -> None:
        """Stops watching, flushes and closes the publisher (waiting up to ``linger`` seconds for
        queued events to leave), and releases the context. Closing twice is fine."""
        if self.watch is not None:
            self.watch.close()
        if self.publisher is not None:
            self.publisher.close()
        context, self._context = self._context, None
        if context is not None and not (self.watch is not None and self.watch.running):
            context.term()  # (a watch thread that would not stop keeps the context alive)

    def __enter__(self) -> "TrainingGuard":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<loopwarden.TrainingGuard run {self.run_id}: {self.endpoints}>"
