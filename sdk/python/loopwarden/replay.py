"""Recorded event files ("replay files"), the same format as the C++ engine's.

A replay file is a header followed by one framed, CRC-checked record per envelope
(docs/replay-format.md has the byte layout)::

    file   := b"LWREPLAY" u32le(version=1) u32le(header_len) ReplayHeader[header_len] record*
    record := u32le(payload_len) u32le(zlib.crc32(payload)) Envelope[payload_len]

Writing::

    with ReplayWriter("run.lwreplay", header) as writer:
        writer.append(envelope)

Reading, skipping damaged records (each one is reported in ``problems``)::

    problems = []
    for envelope in read_replay("run.lwreplay", problems):
        ...

Neither class is thread-safe; use one object from one thread at a time.
"""

import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator, List, Optional

from google.protobuf.message import DecodeError

from loopwarden.v1 import envelope_pb2, replay_pb2

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_PAYLOAD_BYTES",
    "ReplayFormatError",
    "ReplayProblem",
    "ReplayReader",
    "ReplayRecord",
    "ReplayWriter",
    "read_replay",
    "write_replay",
]

MAGIC = b"LWREPLAY"
FORMAT_VERSION = 1
# A header or record length above this is treated as corruption.
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
SCHEMA_MAJOR = 1

_PREAMBLE = struct.Struct("<8sII")  # magic, format version, header length
_RECORD_PREFIX = struct.Struct("<II")  # payload length, crc-32 of the payload

# Problem kinds, as in the C++ replay_problem_kind.
CRC_MISMATCH = "crc_mismatch"  # the payload's CRC differs from the stored one: skipped
BAD_PAYLOAD = "bad_payload"  # CRC matches, but the payload is not an Envelope: skipped
TRUNCATED = "truncated"  # the file ends inside a record: the read ends
OVERSIZED = "oversized"  # a length above MAX_PAYLOAD_BYTES: the read ends


class ReplayFormatError(ValueError):
    """The file is not a readable replay file (bad magic, other version, broken header).

    The message names the file, e.g. ``'run.lwreplay': not a loopwarden replay file (bad magic)``.
    """


@dataclass(frozen=True)
class ReplayProblem:
    """A record the reader could not return.

    ``offset`` is the byte offset of the record's length prefix, ``index`` its position among
    all records of the file (good or bad) from 0, ``kind`` one of CRC_MISMATCH, BAD_PAYLOAD,
    TRUNCATED, OVERSIZED, and ``message`` a lowercase line naming both, e.g.
    ``record 3 at offset 1234: crc mismatch (stored 0x1a2b3c4d, computed 0x0badf00d) — skipped``.
    """

    offset: int
    index: int
    kind: str
    message: str


@dataclass
class ReplayRecord:
    """One good record: its index and offset (as in ReplayProblem) and its envelope."""

    index: int
    offset: int
    envelope: envelope_pb2.Envelope


class ReplayWriter:
    """Writes a replay file from scratch (creating or truncating ``path``).

    Use it as a context manager, or call ``close()``; errors are the ``OSError`` of the
    underlying file, which names it. Envelopes are serialized deterministically (labels sorted
    by key), so the same envelopes always give the same bytes.
    """

    def __init__(self, path: str, header: Optional[replay_pb2.ReplayHeader] = None):
        self.path = str(path)
        self.records_written = 0
        header_bytes = (header or replay_pb2.ReplayHeader()).SerializeToString(deterministic=True)
        if len(header_bytes) > MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"can't write replay file '{self.path}': the header is larger than 64 MiB"
            )
        self._file: Optional[BinaryIO] = open(self.path, "wb")
        try:
            self._file.write(_PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header_bytes)))
            self._file.write(header_bytes)
        except BaseException:
            self._file.close()
            raise
        self.offset = _PREAMBLE.size + len(header_bytes)

    def append(self, envelope: envelope_pb2.Envelope) -> None:
        """Appends one envelope as a record."""
        self.test_append_raw(envelope.SerializeToString(deterministic=True))

    def test_append_raw(self, payload: bytes) -> None:
        """Test hook: appends ``payload`` with a correct length and CRC, whatever its bytes."""
        if self._file is None:
            raise ValueError(f"can't append to replay file '{self.path}': it is closed")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"can't write replay file '{self.path}': record {self.records_written} is "
                f"{len(payload)} bytes, above the 64 MiB limit"
            )
        self._file.write(_RECORD_PREFIX.pack(len(payload), zlib.crc32(payload) & 0xFFFFFFFF))
        self._file.write(payload)
        self.offset += _RECORD_PREFIX.size + len(payload)
        self.records_written += 1

    def close(self) -> None:
        """Flushes and closes the file; closing twice is fine."""
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def __enter__(self) -> "ReplayWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class ReplayReader:
    """Reads a replay file record by record, skipping damaged records.

    Opening validates the preamble and header and raises ReplayFormatError (or the OSError of
    opening the file). A record whose CRC does not match, or whose payload is not an Envelope,
    is appended to ``problems`` and skipped; a file that ends inside a record, or a length above
    64 MiB, is reported and ends the read. ``on_problem``, when given, is called with each
    problem as it is found.
    """

    def __init__(self, path: str, on_problem=None):
        self.path = str(path)
        self.problems: List[ReplayProblem] = []
        self.records_read = 0
        self.on_problem = on_problem
        self._offset = 0
        self._next_index = 0
        self._done = False
        self._file: Optional[BinaryIO] = open(self.path, "rb")
        try:
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

    def _read(self, size: int) -> bytes:
        data = self._file.read(size)
        self._offset += len(data)
        return data

    def _format_error(self, message: str) -> ReplayFormatError:
        return ReplayFormatError(f"'{self.path}': {message}")

    def _truncated_preamble(self, size: int) -> ReplayFormatError:
        return self._format_error(
            f"truncated header: the file ends at byte {size}, inside the 16-byte preamble"
        )

    def _read_header(self) -> replay_pb2.ReplayHeader:
        preamble = self._read(_PREAMBLE.size)
        if not preamble:
            raise self._format_error("empty file, not a loopwarden replay file")
        if preamble[: len(MAGIC)] != MAGIC[: len(preamble)]:
            raise self._format_error("not a loopwarden replay file (bad magic)")
        if len(preamble) < len(MAGIC) + 4:
            raise self._truncated_preamble(len(preamble))
        (version,) = struct.unpack_from("<I", preamble, len(MAGIC))
        if version != FORMAT_VERSION:
            raise self._format_error(
                f"unsupported replay format version {version} "
                f"(this reader supports {FORMAT_VERSION})"
            )
        if len(preamble) < _PREAMBLE.size:
            raise self._truncated_preamble(len(preamble))
        (header_len,) = struct.unpack_from("<I", preamble, len(MAGIC) + 4)
        if header_len > MAX_PAYLOAD_BYTES:
            raise self._format_error(
                f"header length {header_len} is above the 64 MiB limit (corrupt file)"
            )
        header_bytes = self._read(header_len)
        if len(header_bytes) < header_len:
            raise self._format_error(
                f"truncated header: its length says {header_len} bytes but only "
                f"{len(header_bytes)} follow"
            )
        header = replay_pb2.ReplayHeader()
        try:
            header.ParseFromString(header_bytes)
        except DecodeError:
            raise self._format_error(
                "header does not parse as a loopwarden.v1.ReplayHeader"
            ) from None
        major = header.schema.major
        if major not in (0, SCHEMA_MAJOR):
            raise self._format_error(
                f"recorded with event schema {major}.{header.schema.minor}, "
                f"this reader understands {SCHEMA_MAJOR}.x"
            )
        return header

    def _report(self, kind: str, offset: int, index: int, message: str) -> None:
        message = f"record {index} at offset {offset}: {message}"
        problem = ReplayProblem(offset, index, kind, message)
        self.problems.append(problem)
        if self.on_problem is not None:
            self.on_problem(problem)

    def next_record(self) -> Optional[ReplayRecord]:
        """The next good record, or None at the end (and on every later call)."""
        while not self._done:
            offset, index = self._offset, self._next_index
            prefix = self._read(_RECORD_PREFIX.size)
            if not prefix:
                break  # a clean end between records
            self._next_index += 1
            if len(prefix) < _RECORD_PREFIX.size:
                self._report(
                    TRUNCATED, offset, index,
                    f"truncated record: the file ends {len(prefix)} bytes into its 8-byte "
                    "length and crc — end of read",
                )
                break
            length, stored_crc = _RECORD_PREFIX.unpack(prefix)
            if length > MAX_PAYLOAD_BYTES:
                self._report(
                    OVERSIZED, offset, index,
                    f"length {length} is above the 64 MiB limit (corrupt length) — end of read",
                )
                break
            payload = self._read(length)
            if len(payload) < length:
                self._report(
                    TRUNCATED, offset, index,
                    f"truncated record: its length says {length} bytes but only {len(payload)} "
                    "remain — end of read",
                )
                break
            computed_crc = zlib.crc32(payload) & 0xFFFFFFFF
            if computed_crc != stored_crc:
                self._report(
                    CRC_MISMATCH, offset, index,
                    f"crc mismatch (stored 0x{stored_crc:08x}, computed 0x{computed_crc:08x}) "
                    "— skipped",
                )
                continue
            envelope = envelope_pb2.Envelope()
            try:
                envelope.ParseFromString(payload)
            except DecodeError:
                self._report(
                    BAD_PAYLOAD, offset, index, "payload does not parse as an envelope — skipped"
                )
                continue
            self.records_read += 1
            return ReplayRecord(index, offset, envelope)
        self._done = True
        return None

    def records(self) -> Iterator[ReplayRecord]:
        """Every remaining good record, in file order."""
        while True:
            record = self.next_record()
            if record is None:
                return
            yield record

    def __iter__(self) -> Iterator[envelope_pb2.Envelope]:
        for record in self.records():
            yield record.envelope

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()
        self._done = True

    def __enter__(self) -> "ReplayReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_replay(path: str, problems: Optional[list] = None) -> Iterator[envelope_pb2.Envelope]:
    """Yields the envelopes of a replay file in order, skipping damaged records.

    Each problem found is appended to ``problems`` (when given) as it is found. Being a
    generator, it opens the file on the first ``next()``, which raises ReplayFormatError for a
    file that is not a readable replay file, or OSError if it can't be opened.
    """
    with ReplayReader(path, on_problem=None if problems is None else problems.append) as reader:
        yield from reader


def write_replay(path: str, envelopes, header: Optional[replay_pb2.ReplayHeader] = None) -> None:
    """Writes ``envelopes`` to a new replay file at ``path`` (a convenience for tools and tests)."""
    with ReplayWriter(path, header) as writer:
        for envelope in envelopes:
            writer.append(envelope)
