"""loopwarden host client for Python.

Hosts (trainers, agent harnesses, CI bots) use this package to send ``loopwarden.v1`` events to
the loopwarden sidecar and to obey its circuit breakers. The generated schema lives in
``loopwarden.v1`` (``envelope_pb2``, ``breaker_pb2``, ...); recorded event files are read and
written with ``loopwarden.replay``.

Runs under Debian's ``/usr/bin/python3`` with ``python3-protobuf`` (3.21) and ``python3-zmq``.
"""

__version__ = "0.1.0"
