"""loopwarden host client for Python.

Hosts (trainers, agent harnesses, CI bots) use this package to send ``loopwarden.v1`` events to
the loopwarden sidecar and to obey its circuit breakers::

    guard = loopwarden.TrainingGuard(run_id="run-7", endpoints=loopwarden.Endpoints.from_dir(state_dir))
    for step in range(steps):
        guard.check()                      # raises loopwarden.BreakerOpen at a step boundary
        ...
        guard.metric("train/loss", loss, step)

The building blocks are in ``loopwarden.client`` (Publisher, BreakerWatch, GateClient) and
``loopwarden.guard`` (TrainingGuard, BreakerOpen, Endpoints); their names are exported here and
imported on first use, so ``import loopwarden`` (and ``loopwarden.replay``) works without
ZeroMQ installed. The generated schema lives in ``loopwarden.v1`` (``envelope_pb2``,
``breaker_pb2``, ...); recorded event files are read and written with ``loopwarden.replay``.
docs/client-python.md is the guide.

Runs under Debian's ``/usr/bin/python3`` with ``python3-protobuf`` (3.21) and ``python3-zmq``.
"""

import importlib

__version__ = "0.1.0"

# Public name -> the submodule that defines it (imported lazily, PEP 562).
_EXPORTS = {
    "Breaker": "client",
    "BreakerWatch": "client",
    "Decision": "client",
    "GateClient": "client",
    "Publisher": "client",
    "SILENCE_BREAKER": "client",
    "shell_action": "client",
    "Transition": "client",
    "BreakerOpen": "guard",
    "Endpoints": "guard",
    "TrainingGuard": "guard",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'loopwarden' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
