#!/usr/bin/python3
"""A simulated AI-assisted delivery pipeline whose generation speeds up eightfold while its
review capacity stays fixed, guarded by loopwarden's review_bottleneck monitor.

The pipeline: four engineers each generate changes with a model (stage ``generate``,
accelerated), three human reviewers review them first in, first out (``review``), CI tests them
(``test``, parallel runners) and a bot merges them (``merge``). Over hours 12 to 24 the model makes
generation eight times faster (80 minutes a change down to 10), so changes arrive at up to 24 an
hour while review can do about 7.5. The review queue starts to grow without bound.

What it tells loopwarden, through the Python client (one ``loopwarden.v1.StageTiming`` per
record): an enter record when a change enters generation and review, and a completed record
when it leaves each stage (with the reviewer, the changed lines, when the review started, the
verdict, and whether the merge had a human review). Test and merge send completed records only:
the monitor infers when a change entered them.

What it obeys: when ``pipeline.review_bottleneck`` opens for this run with action ``throttle``,
generation slows to the ``recommended_generation_rate_per_hour`` in the breaker's evidence (the
review service rate times the target utilisation, 0.8), and the backlog stops growing and drains.

Time is simulated and runs fast (``--pace`` wall seconds per simulated 10 minutes): the records
carry simulated times, and the monitor measures the pipeline on those times, not on the clock of
the machine. The simulated clock starts at the wall clock's current hour.

Usage (a sidecar must be running; see run.sh):
    PYTHONPATH=<build>/python /usr/bin/python3 pipeline.py --state-dir DIR --result out.json

Exit status: 0 the simulation ran to its end; 1 a breaker other than the throttle stopped it, or
the sidecar went silent; 2 could not run.
"""

import argparse
import collections
import heapq
import json
import math
import random
import sys
import time

try:
    import loopwarden
    from loopwarden.v1 import pipeline_pb2
except ImportError as exc:  # pragma: no cover - a usage error
    sys.exit(f"pipeline.py: can't import loopwarden ({exc}); "
             "run with PYTHONPATH=<build>/python (the build copies the client there)")

NS = 1_000_000_000
MINUTE = 60 * NS
HOUR = 60 * MINUTE
THROTTLE_BREAKER = "pipeline.review_bottleneck"


def parse_args(argv):
    p = argparse.ArgumentParser(description="A simulated AI-assisted delivery pipeline that "
                                            "obeys loopwarden's review-bottleneck throttle.")
    p.add_argument("--hours", type=float, default=60.0, help="simulated hours (default 60)")
    p.add_argument("--engineers", type=int, default=4, help="parallel generators (default 4)")
    p.add_argument("--reviewers", type=int, default=3, help="human reviewers (default 3)")
    p.add_argument("--baseline-minutes", type=float, default=80.0,
                   help="minutes to generate a change before the speed-up (default 80)")
    p.add_argument("--speedup", type=float, default=8.0, help="generation speed-up (default 8)")
    p.add_argument("--ramp", type=float, nargs=2, default=(12.0, 24.0), metavar=("FROM", "TO"),
                   help="simulated hours over which generation speeds up (default 12 24)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--run-id", default="delivery-pipeline", help="the pipeline's run id")
    p.add_argument("--state-dir", help="the sidecar's state directory (its sockets are under "
                                       "<dir>/run); default: LOOPWARDEN_* environment variables")
    p.add_argument("--pace", type=float, default=0.02,
                   help="wall seconds per simulated 10 minutes (default 0.02: an hour in 0.12 s)")
    p.add_argument("--ignore-throttle", action="store_true",
                   help="do not obey the throttle (to see what happens without it)")
    p.add_argument("--timeout", type=float, default=2.0,
                   help="sidecar silence (s) after which the pipeline stops (fails closed)")
    p.add_argument("--result", help="write what happened as JSON to this file")
    a = p.parse_args(argv)
    if a.hours <= 0 or a.engineers < 1 or a.reviewers < 1 or a.speedup < 1:
        p.error("--hours must be > 0, --engineers and --reviewers >= 1, --speedup >= 1")
    if not 0 <= a.ramp[0] <= a.ramp[1]:
        p.error("--ramp FROM TO needs 0 <= FROM <= TO")
    return a


class Pipeline:
    """The discrete-event simulation. Times are integers, ns since the epoch."""

    def __init__(self, a, publisher, watch, start_ns):
        self.a = a
        self.pub = publisher
        self.watch = watch
        self.rng = random.Random(a.seed)
        self.t0 = start_ns
        self.now = start_ns
        self.events = []  # heap of (time, seq, kind, payload)
        self.seq = 0
        self.queue = collections.deque()  # changes waiting for a reviewer
        self.free_reviewers = [f"reviewer-{i + 1}" for i in range(a.reviewers)]
        self.in_review = 0
        self.items = {}  # id -> dict of what happened to it
        self.next_id = 0
        self.throttle_rate = None  # changes per hour allowed, once throttled
        self.next_start = start_ns  # the earliest start the throttle allows
        self.breaker = None  # the throttle breaker as it opened
        self.opened_at = None
        self.stopped = None  # why the simulation stopped early
        self.generated = []  # generation start times
        self.timeline = []  # (hour, generation rate over the last hour, backlog, throttled)
        self.sent = 0

    # -- helpers ----------------------------------------------------------------------------

    def hours(self, t=None):
        return ((self.now if t is None else t) - self.t0) / HOUR

    def schedule(self, at, kind, payload=None):
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, kind, payload))

    def record(self, item, stage, enter, exit_=0, **fields):
        t = pipeline_pb2.StageTiming(item_id=item, stage=stage, enter_unix_nano=enter,
                                     exit_unix_nano=exit_, **fields)
        self.pub.publish(t)
        self.sent += 1

    def speed_factor(self):
        """How many times faster than at the start the model generates now: 1 until the ramp,
        then geometrically faster until `speedup`."""
        h = self.hours()
        lo, hi = self.a.ramp
        if h <= lo:
            return 1.0
        if h >= hi or hi == lo:
            return self.a.speedup
        return self.a.speedup ** ((h - lo) / (hi - lo))

    def generation_minutes(self):
        """Minutes the model takes for one change now, with some noise."""
        return self.a.baseline_minutes / self.speed_factor() * math.exp(self.rng.gauss(0.0, 0.2))

    # -- the stages -------------------------------------------------------------------------

    def start_generation(self, engineer):
        start = max(self.now, self.next_start)
        if start > self.now:  # the throttle holds this engineer back
            self.schedule(start, "generate", engineer)
            return
        if self.throttle_rate:
            self.next_start = start + int(HOUR / self.throttle_rate)
        self.next_id += 1
        item = f"change-{self.next_id:05d}"
        size = int(min(2000, max(5, self.rng.lognormvariate(math.log(150), 0.5))))
        self.items[item] = {"size": size, "engineer": engineer, "generate_enter": start}
        self.generated.append(start)
        self.record(item, "generate", start, actor=pipeline_pb2.ACTOR_KIND_MODEL, size=size)
        done = start + int(self.generation_minutes() * MINUTE)
        self.schedule(done, "generated", (item, engineer))

    def generated_(self, item, engineer):
        it = self.items[item]
        self.record(item, "generate", it["generate_enter"], self.now,
                    start_unix_nano=it["generate_enter"], actor=pipeline_pb2.ACTOR_KIND_MODEL,
                    size=it["size"], outcome=pipeline_pb2.STAGE_OUTCOME_DONE)
        it["review_enter"] = self.now
        self.record(item, "review", self.now, size=it["size"])
        self.queue.append(item)
        self.assign_reviewers()
        self.start_generation(engineer)

    def assign_reviewers(self):
        while self.queue and self.free_reviewers:
            item = self.queue.popleft()
            reviewer = self.free_reviewers.pop(0)
            it = self.items[item]
            it["review_start"] = self.now
            # Reviewers read about 8 s a changed line (and do not speed up under pressure).
            depth = self.rng.lognormvariate(math.log(8.0), 0.3)
            self.in_review += 1
            self.schedule(self.now + int(it["size"] * depth * NS), "reviewed", (item, reviewer))

    def reviewed(self, item, reviewer):
        it = self.items[item]
        self.record(item, "review", it["review_enter"], self.now,
                    start_unix_nano=it["review_start"], reviewer=reviewer,
                    actor=pipeline_pb2.ACTOR_KIND_HUMAN, size=it["size"],
                    outcome=pipeline_pb2.STAGE_OUTCOME_APPROVED)
        self.in_review -= 1
        self.free_reviewers.append(reviewer)
        it["test_enter"] = self.now
        self.schedule(self.now + int(self.rng.uniform(8, 12) * MINUTE), "tested", item)
        self.assign_reviewers()

    def tested(self, item):
        it = self.items[item]
        self.record(item, "test", it["test_enter"], self.now,
                    start_unix_nano=it["test_enter"], actor=pipeline_pb2.ACTOR_KIND_AUTOMATION,
                    outcome=pipeline_pb2.STAGE_OUTCOME_PASSED)
        self.record(item, "merge", self.now, self.now + MINUTE, start_unix_nano=self.now,
                    actor=pipeline_pb2.ACTOR_KIND_AUTOMATION, human_reviewed=True,
                    outcome=pipeline_pb2.STAGE_OUTCOME_MERGED)
        del self.items[item]

    # -- loopwarden -------------------------------------------------------------------------

    def check_breakers(self):
        """Obeys what applies to this run: throttle slows generation; anything else stops."""
        for b in self.watch.open_breakers():
            if b.name == THROTTLE_BREAKER and b.action == "throttle":
                if self.breaker is None:
                    self.breaker = b
                    self.opened_at = self.now
                    rate = float(b.evidence.get("recommended_generation_rate_per_hour", "nan"))
                    print(f"\n!! {self.hours():5.1f} h  {b.name} opened (action throttle): "
                          f"{b.reason}")
                    for key in ("utilisation", "arrival_rate_per_hour",
                                "review_service_rate_per_hour", "reviewers", "backlog",
                                "backlog_growth_per_hour", "growth_z", "hours_to_max_backlog",
                                "amdahl_accelerated_fraction", "amdahl_stage_speedup",
                                "amdahl_predicted_speedup", "amdahl_achieved_speedup",
                                "amdahl_ceiling", "bottleneck_share_of_lead_time"):
                        if key in b.evidence:
                            print(f"     {key:32s} {b.evidence[key]}")
                    if self.a.ignore_throttle:
                        print("   --ignore-throttle: carrying on at full speed\n")
                    elif math.isfinite(rate) and rate > 0:
                        self.throttle_rate = rate
                        print(f"   throttle: generation limited to {rate:.2f} changes an hour "
                              f"(recommended_generation_rate_per_hour)\n")
                    else:
                        print("   no usable recommended rate in the evidence: generation stops\n")
                        self.throttle_rate = 1e-9
                continue
            if b.stops:
                self.stopped = f"{b.name} (action {b.action}): {b.reason}"
                return False
        return True

    def sample(self):
        hour_ago = self.now - HOUR
        rate = sum(1 for s in self.generated if s > hour_ago)
        backlog = len(self.queue) + self.in_review
        self.timeline.append((round(self.hours(), 3), rate, backlog, self.throttle_rate is not None))
        if abs(self.hours() - round(self.hours())) < 1e-9 and round(self.hours()) % 2 == 0:
            gen = self.a.baseline_minutes / self.speed_factor()
            print(f"{self.hours():5.1f} h  generation {rate:3d}/h ({gen:5.1f} min a change)  "
                  f"review backlog {backlog:4d}  "
                  f"{'throttled to %.1f/h' % self.throttle_rate if self.throttle_rate else ''}",
                  flush=True)

    # -- the loop ---------------------------------------------------------------------------

    def run(self):
        end = self.t0 + int(self.a.hours * HOUR)
        for e in range(self.a.engineers):
            self.schedule(self.t0 + e * int(self.a.baseline_minutes / self.a.engineers * MINUTE),
                          "generate", f"engineer-{e + 1}")
        self.schedule(self.t0 + 10 * MINUTE, "sample")
        while self.events:
            at, _, kind, payload = heapq.heappop(self.events)
            if at > end:
                break
            self.now = at
            if kind == "generate":
                self.start_generation(payload)
            elif kind == "generated":
                self.generated_(*payload)
            elif kind == "reviewed":
                self.reviewed(*payload)
            elif kind == "tested":
                self.tested(payload)
            elif kind == "sample":
                self.sample()
                # A simulated 10 minutes takes `pace` wall seconds: time for the sidecar to read
                # the records and answer, as it would between real records.
                self.pub.flush()
                time.sleep(self.a.pace)
                if not self.check_breakers():
                    break
                self.schedule(self.now + 10 * MINUTE, "sample")
        self.pub.flush()

    def result(self):
        def rate_between(lo, hi):
            n = sum(1 for s in self.generated if lo <= s < hi)
            return n / max(1e-9, (hi - lo) / HOUR)

        out = {"run_id": self.a.run_id, "seed": self.a.seed, "hours": self.a.hours,
               "records_sent": self.sent, "stopped": self.stopped,
               "tripped": self.breaker is not None, "timeline": self.timeline}
        backlogs = [b for _, _, b, _ in self.timeline]
        out["backlog_peak"] = max(backlogs) if backlogs else 0
        out["backlog_final"] = backlogs[-1] if backlogs else 0
        if self.breaker is not None:
            trip_h = self.hours(self.opened_at)
            out.update(
                trip_hours=round(trip_h, 3),
                breaker=self.breaker.name, action=self.breaker.action,
                reason=self.breaker.reason, evidence=self.breaker.evidence,
                recommended_rate_per_hour=self.throttle_rate,
                generation_rate_before=rate_between(self.opened_at - 4 * HOUR, self.opened_at),
                generation_rate_after=rate_between(self.opened_at + 2 * HOUR, self.now),
                backlog_at_trip=next((b for h, _, b, _ in self.timeline if h >= trip_h - 1e-9),
                                     None))
        # The backlog's trend over the last 24 simulated hours (least squares, items an hour).
        tail = [(h, b) for h, _, b, _ in self.timeline if h >= self.a.hours - 24]
        if len(tail) >= 3:
            mh = sum(h for h, _ in tail) / len(tail)
            mb = sum(b for _, b in tail) / len(tail)
            sxx = sum((h - mh) ** 2 for h, _ in tail)
            out["backlog_slope_last_24h"] = (
                sum((h - mh) * (b - mb) for h, b in tail) / sxx if sxx > 0 else 0.0)
            out["backlog_max_last_24h"] = max(b for _, b in tail)
        return out


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    endpoints = (loopwarden.Endpoints.from_dir(a.state_dir) if a.state_dir
                 else loopwarden.Endpoints.from_env())
    start = (time.time_ns() // HOUR) * HOUR
    print(f"delivery pipeline: run {a.run_id}: {a.engineers} engineers generating with a model "
          f"({a.baseline_minutes:g} min a change, {a.speedup:g}x faster over hours "
          f"{a.ramp[0]:g}-{a.ramp[1]:g}), {a.reviewers} reviewers; {a.hours:g} simulated hours")
    print(f"  loopwarden: records to {endpoints.ingest}, breakers from {endpoints.breakers}")
    publisher = loopwarden.Publisher(endpoints.ingest, f"pipeline/{a.run_id}", a.run_id)
    watch = loopwarden.BreakerWatch(endpoints.breakers, a.run_id, timeout=a.timeout)
    if not watch.wait_ready(a.timeout + 3.0):
        print("pipeline.py: the sidecar does not answer on its breaker socket", file=sys.stderr)
        publisher.close()
        watch.close()
        return 2
    sim = Pipeline(a, publisher, watch, start)
    try:
        sim.run()
    finally:
        publisher.close()
        watch.close()
    out = sim.result()
    print(f"\naccount of run {a.run_id}:")
    if out["tripped"]:
        print(f"  {out['breaker']} opened at {out['trip_hours']:.1f} simulated hours with the "
              f"review backlog at {out['backlog_at_trip']}; generation went from "
              f"{out['generation_rate_before']:.1f} to {out['generation_rate_after']:.1f} changes "
              f"an hour (recommended {out['recommended_rate_per_hour']:.2f})")
    else:
        print("  no throttle: the review_bottleneck breaker never opened")
    if "backlog_slope_last_24h" in out:
        print(f"  backlog: peak {out['backlog_peak']}, final {out['backlog_final']}, trend over "
              f"the last 24 h {out['backlog_slope_last_24h']:+.2f} changes an hour")
    if sim.stopped:
        print(f"  stopped early: {sim.stopped}")
    print(f"  records sent: {sim.sent}")
    if a.result:
        with open(a.result, "w") as f:
            json.dump(out, f, indent=2)
    return 1 if sim.stopped else 0


if __name__ == "__main__":
    sys.exit(main())
