#!/usr/bin/python3
"""Writes loss-divergence.lwreplay: a recorded training run whose loss diverges.

Two ranks of one run publish a metrics batch per step (train/loss, grad_norm, lr) and a
heartbeat every 20 steps. The loss falls smoothly until step 140, when the learning rate is
raised ten-fold by a bad schedule; the loss then climbs past 6 within a few steps and becomes
NaN at step 152. Everything is seeded, so the file is the same on every run.

Usage: PYTHONPATH=<build>/python /usr/bin/python3 make_recording.py OUT.lwreplay
"""

import math
import random
import sys

from loopwarden.replay import ReplayWriter
from loopwarden.v1 import envelope_pb2, replay_pb2

RUN_ID = "demo-run-7"
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z, in nanoseconds
STEP_NS = 500_000_000  # one step every 0.5 s
STEPS = 170
BAD_LR_STEP = 140


def loss_at(step: int, rng: random.Random) -> float:
    if step < BAD_LR_STEP:
        return 2.0 * math.exp(-step / 60.0) + 0.35 + rng.gauss(0.0, 0.02)
    # Divergence: the loss grows geometrically, then overflows to NaN.
    if step >= 152:
        return float("nan")
    base = 2.0 * math.exp(-BAD_LR_STEP / 60.0) + 0.35
    return base * (1.45 ** (step - BAD_LR_STEP + 1))


def main() -> None:
    out = sys.argv[1]
    rng = random.Random(7)
    header = replay_pb2.ReplayHeader(
        producer="examples/replay_demo/make_recording.py",
        description="a run whose loss diverges after a bad learning-rate change at step 140",
        created_unix_nano=T0,
    )
    header.schema.major = 1
    seq = {"trainer/rank0": 0, "trainer/rank1": 0}
    with ReplayWriter(out, header) as writer:
        for step in range(STEPS):
            for rank, source in enumerate(seq):
                seq[source] += 1
                env = envelope_pb2.Envelope(
                    source=source,
                    run_id=RUN_ID,
                    seq=seq[source],
                    time_unix_nano=T0 + step * STEP_NS + rank * 1_000_000,
                )
                env.schema.major = 1
                env.labels["model"] = "tiny-lm"
                loss = loss_at(step, rng) + (rng.gauss(0.0, 0.01) if step < BAD_LR_STEP else 0.0)
                lr = 3e-4 if step < BAD_LR_STEP else 3e-3
                for name, value in (("train/loss", loss), ("grad_norm", 1.0 + abs(loss)), ("lr", lr)):
                    sample = env.metrics.samples.add()
                    sample.name = name
                    sample.value = value
                    sample.step = step
                writer.append(env)
            if step % 20 == 0:
                for source in seq:
                    seq[source] += 1
                    hb = envelope_pb2.Envelope(
                        source=source, run_id=RUN_ID, seq=seq[source],
                        time_unix_nano=T0 + step * STEP_NS + 2_000_000,
                    )
                    hb.schema.major = 1
                    hb.heartbeat.events_sent = seq[source] - 1
                    hb.heartbeat.interval_ms = 10_000
                    writer.append(hb)


if __name__ == "__main__":
    main()
