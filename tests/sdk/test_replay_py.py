"""The Python side of the replay file format (loopwarden.replay).

Run with Debian's interpreter and the build's generated modules:

    PYTHONPATH=<build>/python /usr/bin/python3 -m unittest discover -s tests/sdk -p 'test_*.py' -v

The golden bytes below are also asserted by tests/core/replay_file_test.cpp, so the C++ and
Python writers agree with each other and with docs/replay-format.md byte for byte.
"""

import os
import random
import struct
import tempfile
import unittest
import zlib

from google.protobuf.message import DecodeError

from loopwarden import replay
from loopwarden.v1 import agent_pb2, envelope_pb2, replay_pb2

GOLDEN_HEX = (
    "4c575245504c4159"  # "LWREPLAY"
    "01000000"  # format version 1
    "0c000000"  # header length 12
    "0a0208011a06676f6c64656e"  # ReplayHeader{schema{major: 1}, producer: "golden"}
    "0b000000"  # record 0: payload length 11
    "459ef86e"  # crc-32 0x6ef89e45
    "12017320018a010318e807"  # Envelope{source: "s", seq: 1, heartbeat{interval_ms: 1000}}
)


def make_envelope(i):
    """Envelope number i: cycles through every body kind, plus one with no body."""
    e = envelope_pb2.Envelope()
    e.schema.major = 1
    e.source = "trainer/rank0" if i % 2 == 0 else "agent/alpha"
    e.run_id = "run-42"
    e.seq = i + 1
    e.time_unix_nano = 1_700_000_000_000_000_000 + i * 1000
    e.labels["host"] = f"node-{i % 3}"
    e.labels["model"] = "m7"
    kind = i % 9
    if kind == 0:
        sample = e.metrics.samples.add()
        sample.name = "train/loss"
        sample.value = 2.5 / (i + 1)
        sample.step = i
    elif kind == 1:
        e.generation.generation = i // 9
        e.generation.sample_count = 1000 + i
        e.generation.token_entropy = 5.25
    elif kind == 2:
        e.embeddings.stream = "generated"
        e.embeddings.vectors.dim = 3
        e.embeddings.vectors.values.extend(0.5 * k for k in range(6))
    elif kind == 3:
        e.agent_step.agent_id = "alpha"
        e.agent_step.turn = i
        e.agent_step.tool_calls.add().name = "bash"
    elif kind == 4:
        e.action.kind = agent_pb2.ACTION_KIND_SHELL
        e.action.command = "rm -rf build/"
    elif kind == 5:
        e.stage_timing.item_id = f"pr-{i}"
        e.stage_timing.stage = "review"
    elif kind == 6:
        e.cycle_report.cycle = i
        metric = e.cycle_report.capability_metrics.add()
        metric.name = "pass_at_1"
        metric.value = 0.61
    elif kind == 7:
        e.heartbeat.events_sent = i
    return e


def make_header():
    h = replay_pb2.ReplayHeader()
    h.schema.major = 1
    h.schema.minor = 3
    h.created_unix_nano = 1_700_000_123_456_789_000
    h.producer = "loopwarden record 0.1.0"
    h.description = "nightly run, rank 0"
    return h


def record_offset(header, envelopes, index):
    """Byte offset of record ``index``, from the format alone."""
    return 16 + header.ByteSize() + sum(8 + e.ByteSize() for e in envelopes[:index])


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


class ReplayFormatTest(unittest.TestCase):
    def setUp(self):
        self._dir = tempfile.TemporaryDirectory(prefix="loopwarden-replay-py-")
        self.addCleanup(self._dir.cleanup)

    def path(self, name):
        return os.path.join(self._dir.name, name)

    def read_all(self, path):
        with replay.ReplayReader(path) as reader:
            records = list(reader.records())
            self.assertEqual(reader.records_read, len(records))
            return reader.header, records, reader.problems

    def test_writer_produces_the_documented_bytes_for_a_known_file(self):
        header = replay_pb2.ReplayHeader()
        header.schema.major = 1
        header.producer = "golden"
        envelope = envelope_pb2.Envelope(source="s", seq=1)
        envelope.heartbeat.interval_ms = 1000
        path = self.path("golden.lwreplay")
        replay.write_replay(path, [envelope], header)
        self.assertEqual(read_bytes(path).hex(), GOLDEN_HEX)

    def test_round_trips_many_envelopes_of_every_kind_in_order(self):
        path = self.path("many.lwreplay")
        envelopes = [make_envelope(i) for i in range(200)]
        header = make_header()
        offsets = []
        with replay.ReplayWriter(path, header) as writer:
            for e in envelopes:
                offsets.append(writer.offset)
                writer.append(e)
            self.assertEqual(writer.records_written, 200)

        got_header, records, problems = self.read_all(path)
        self.assertEqual(got_header, header)
        self.assertEqual(problems, [])
        self.assertEqual(len(records), len(envelopes))
        for i, record in enumerate(records):
            with self.subTest(record=i):
                self.assertEqual(record.index, i)
                self.assertEqual(record.offset, offsets[i])
                self.assertEqual(record.offset, record_offset(header, envelopes, i))
                self.assertEqual(record.envelope, envelopes[i])
        self.assertEqual(os.path.getsize(path), record_offset(header, envelopes, 200))
        self.assertEqual(list(replay.read_replay(path)), envelopes)

    def test_file_framing_follows_the_spec(self):
        # An oracle that parses the bytes with struct and zlib alone, as docs/replay-format.md says.
        path = self.path("framing.lwreplay")
        envelopes = [make_envelope(i) for i in range(12)]
        replay.write_replay(path, envelopes, make_header())
        data = read_bytes(path)
        magic, version, header_len = struct.unpack_from("<8sII", data, 0)
        self.assertEqual((magic, version), (b"LWREPLAY", 1))
        header = replay_pb2.ReplayHeader.FromString(data[16 : 16 + header_len])
        self.assertEqual(header, make_header())
        at, decoded = 16 + header_len, []
        while at < len(data):
            length, crc = struct.unpack_from("<II", data, at)
            payload = data[at + 8 : at + 8 + length]
            self.assertEqual(zlib.crc32(payload), crc)
            decoded.append(envelope_pb2.Envelope.FromString(payload))
            at += 8 + length
        self.assertEqual(at, len(data))
        self.assertEqual(decoded, envelopes)

    def test_reports_a_corrupted_record_with_its_offset_and_reads_on(self):
        path = self.path("corrupt.lwreplay")
        envelopes = [make_envelope(i) for i in range(5)]
        header = make_header()
        replay.write_replay(path, envelopes, header)
        offset = record_offset(header, envelopes, 2)
        size = envelopes[2].ByteSize()
        data = bytearray(read_bytes(path))
        self.assertEqual(struct.unpack_from("<I", data, offset)[0], size)
        stored = struct.unpack_from("<I", data, offset + 4)[0]
        data[offset + 8 + size // 2] ^= 0x5A
        computed = zlib.crc32(bytes(data[offset + 8 : offset + 8 + size]))
        write_bytes(path, bytes(data))

        problems = []
        got = list(replay.read_replay(path, problems))
        self.assertEqual(got, [envelopes[i] for i in (0, 1, 3, 4)])
        self.assertEqual(len(problems), 1)
        self.assertEqual((problems[0].offset, problems[0].index), (offset, 2))
        self.assertEqual(problems[0].kind, replay.CRC_MISMATCH)
        self.assertEqual(
            problems[0].message,
            f"record 2 at offset {offset}: crc mismatch (stored 0x{stored:08x}, "
            f"computed 0x{computed:08x}) — skipped",
        )

    def test_skips_a_record_whose_payload_is_not_an_envelope(self):
        rng = random.Random(20240517)
        noise = bytes([0x07]) + bytes(rng.randrange(256) for _ in range(256))
        with self.assertRaises(DecodeError):
            envelope_pb2.Envelope.FromString(noise)
        path = self.path("garbage.lwreplay")
        envelopes = [make_envelope(0), make_envelope(1)]
        with replay.ReplayWriter(path) as writer:
            writer.append(envelopes[0])
            bad_offset = writer.offset
            writer.test_append_raw(noise)
            writer.append(envelopes[1])
        self.assertEqual(bad_offset, 16 + 8 + envelopes[0].ByteSize())

        _, records, problems = self.read_all(path)
        self.assertEqual([r.envelope for r in records], envelopes)
        self.assertEqual([r.index for r in records], [0, 2])
        self.assertEqual(
            problems,
            [
                replay.ReplayProblem(
                    bad_offset,
                    1,
                    replay.BAD_PAYLOAD,
                    f"record 1 at offset {bad_offset}: "
                    "payload does not parse as an envelope — skipped",
                )
            ],
        )

    def test_reports_a_truncated_final_record_and_ends_cleanly(self):
        path = self.path("truncated.lwreplay")
        envelopes = [make_envelope(i) for i in range(4)]
        header = make_header()
        replay.write_replay(path, envelopes, header)
        full = read_bytes(path)
        last = record_offset(header, envelopes, 3)
        size = envelopes[3].ByteSize()
        in_prefix = "truncated record: the file ends {} bytes into its 8-byte length and crc"
        rows = [
            ("one byte of the length", 1, in_prefix.format(1) + " — end of read"),
            ("length without crc", 4, in_prefix.format(4) + " — end of read"),
            ("length and crc only", 8,
             f"truncated record: its length says {size} bytes but only 0 remain — end of read"),
            ("all but one payload byte", 8 + size - 1,
             f"truncated record: its length says {size} bytes but only {size - 1} remain"
             " — end of read"),
        ]
        for what, keep, message in rows:
            with self.subTest(what):
                write_bytes(path, full[: last + keep])
                with replay.ReplayReader(path) as reader:
                    self.assertEqual(list(reader), envelopes[:3])
                    self.assertIsNone(reader.next_record())
                    self.assertEqual(
                        reader.problems,
                        [replay.ReplayProblem(last, 3, replay.TRUNCATED,
                                              f"record 3 at offset {last}: {message}")],
                    )

    def test_stops_at_a_length_above_the_limit(self):
        path = self.path("oversized.lwreplay")
        envelopes = [make_envelope(0), make_envelope(1)]
        replay.write_replay(path, envelopes)
        second = record_offset(replay_pb2.ReplayHeader(), envelopes, 1)
        data = bytearray(read_bytes(path))
        struct.pack_into("<I", data, second, 64 * 1024 * 1024 + 1)
        write_bytes(path, bytes(data))
        _, records, problems = self.read_all(path)
        self.assertEqual(len(records), 1)
        self.assertEqual([p.kind for p in problems], [replay.OVERSIZED])
        self.assertEqual(
            problems[0].message,
            f"record 1 at offset {second}: length 67108865 is above the 64 MiB limit "
            "(corrupt length) — end of read",
        )

    def test_refuses_files_that_are_not_replay_files(self):
        preamble = b"LWREPLAY" + struct.pack("<I", 1)
        rows = [
            ("empty file", b"", "empty file, not a loopwarden replay file"),
            ("bad magic", b"LWREPLAZ" + struct.pack("<II", 1, 0),
             "not a loopwarden replay file (bad magic)"),
            ("text file", b"hello, world\n", "not a loopwarden replay file (bad magic)"),
            ("short text file", b"PK", "not a loopwarden replay file (bad magic)"),
            ("magic cut short", b"LWREP",
             "truncated header: the file ends at byte 5, inside the 16-byte preamble"),
            ("wrong version", b"LWREPLAY" + struct.pack("<II", 7, 0),
             "unsupported replay format version 7 (this reader supports 1)"),
            ("no header length", preamble,
             "truncated header: the file ends at byte 12, inside the 16-byte preamble"),
            ("header cut short", preamble + struct.pack("<I", 40) + b"abc",
             "truncated header: its length says 40 bytes but only 3 follow"),
            ("header length above the limit", preamble + struct.pack("<I", 0xFFFFFFFF),
             "header length 4294967295 is above the 64 MiB limit (corrupt file)"),
            ("header is not a ReplayHeader", preamble + struct.pack("<I", 2) + b"\x07\x01",
             "header does not parse as a loopwarden.v1.ReplayHeader"),
            ("header from a newer schema major",
             preamble + struct.pack("<I", 4) + b"\x0a\x02\x08\x02",
             "recorded with event schema 2.0, this reader understands 1.x"),
        ]
        path = self.path("bad.lwreplay")
        for what, data, message in rows:
            with self.subTest(what):
                write_bytes(path, data)
                with self.assertRaises(replay.ReplayFormatError) as caught:
                    replay.ReplayReader(path)
                self.assertEqual(str(caught.exception), f"'{path}': {message}")
                with self.assertRaises(replay.ReplayFormatError):
                    next(replay.read_replay(path))

    def test_missing_file_raises_the_os_error(self):
        with self.assertRaises(FileNotFoundError):
            replay.ReplayReader(self.path("missing.lwreplay"))

    def test_file_with_only_a_header_has_zero_records(self):
        path = self.path("empty.lwreplay")
        replay.write_replay(path, [], make_header())
        header, records, problems = self.read_all(path)
        self.assertEqual(header, make_header())
        self.assertEqual((records, problems), ([], []))

    def test_envelope_with_no_body_is_returned_as_a_record(self):
        path = self.path("nobody.lwreplay")
        bodiless = envelope_pb2.Envelope(source="trainer/rank0", seq=7)
        replay.write_replay(path, [bodiless, envelope_pb2.Envelope()])
        got = list(replay.read_replay(path))
        self.assertEqual(got, [bodiless, envelope_pb2.Envelope()])
        self.assertIsNone(got[0].WhichOneof("body"))

    def test_writing_is_deterministic(self):
        envelopes = [make_envelope(i) for i in range(60)]
        a, b = self.path("a.lwreplay"), self.path("b.lwreplay")
        replay.write_replay(a, envelopes, make_header())
        # The same envelopes with their labels inserted in the opposite order.
        relabelled = []
        for e in envelopes:
            copy = envelope_pb2.Envelope()
            copy.CopyFrom(e)
            copy.ClearField("labels")
            for key in sorted(e.labels, reverse=True):
                copy.labels[key] = e.labels[key]
            relabelled.append(copy)
        replay.write_replay(b, relabelled, make_header())
        self.assertEqual(read_bytes(a), read_bytes(b))

    def test_append_after_close_is_refused(self):
        path = self.path("closed.lwreplay")
        writer = replay.ReplayWriter(path)
        writer.close()
        writer.close()
        with self.assertRaisesRegex(ValueError, "it is closed"):
            writer.append(make_envelope(0))


if __name__ == "__main__":
    unittest.main()
