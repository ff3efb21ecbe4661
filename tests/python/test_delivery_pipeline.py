"""The delivery-pipeline example end to end (examples/delivery_pipeline/run.sh): a real
`loopwarden serve` with the review_bottleneck plugin, the simulated pipeline publishing stage
timings through the Python client, and the pipeline obeying the throttle.

What it asserts, from the pipeline's own account (result.json) and the script's exit status:
- pipeline.review_bottleneck opened, with action throttle, naming review, and a recommended
  generation rate that is the review service rate in the evidence times 0.8;
- it opened after generation had outgrown review (not before the ramp began);
- after the trip, generation ran at no more than the recommended rate (+10 %), where it had run
  at more than twice that rate before;
- the backlog stabilised: its least-squares trend over the last 24 simulated hours is at most
  +0.25 changes an hour (before the throttle it grew by several an hour), and it ended below
  the level it had when the breaker opened.

ctest sets LOOPWARDEN_BUILD_DIR. By hand:

    LOOPWARDEN_BUILD_DIR=build/dev /usr/bin/python3 -m unittest -v tests/python/test_delivery_pipeline.py
"""

import json
import os
import subprocess
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


class DeliveryPipelineExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.build = os.path.abspath(os.environ.get("LOOPWARDEN_BUILD_DIR", "build/dev"))
        script = os.path.join(ROOT, "examples", "delivery_pipeline", "run.sh")
        cls.proc = subprocess.run(["bash", script, cls.build], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=240)
        path = os.path.join(cls.build, "demo-delivery", "result.json")
        with open(path) as f:
            cls.result = json.load(f)

    def test_run_sh_reports_the_story_happened(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stdout[-4000:])

    def test_the_throttle_tripped_naming_review(self):
        r = self.result
        self.assertTrue(r["tripped"], "pipeline.review_bottleneck never opened")
        self.assertEqual(r["breaker"], "pipeline.review_bottleneck")
        self.assertEqual(r["action"], "throttle")
        ev = r["evidence"]
        self.assertEqual(ev["stage"], "review")
        self.assertEqual(ev["bottleneck_stage"], "review")
        self.assertGreater(float(ev["utilisation"]), 1.0)
        rate = float(ev["recommended_generation_rate_per_hour"])
        self.assertAlmostEqual(rate, 0.8 * float(ev["review_service_rate_per_hour"]),
                               delta=0.01 * rate)
        self.assertAlmostEqual(r["recommended_rate_per_hour"], rate, delta=1e-9)
        # Review capacity is fixed at 3 reviewers x ~8 s a line x ~160 lines: about 8 an hour.
        self.assertGreater(float(ev["review_service_rate_per_hour"]), 5.0)
        self.assertLess(float(ev["review_service_rate_per_hour"]), 12.0)
        # Generation outgrows review during the ramp (hours 12-24), never before it.
        self.assertGreater(r["trip_hours"], 14.0)
        self.assertLess(r["trip_hours"], 36.0)

    def test_the_pipeline_obeyed_the_throttle(self):
        r = self.result
        rec = r["recommended_rate_per_hour"]
        self.assertGreater(r["generation_rate_before"], 2 * rec)
        self.assertLessEqual(r["generation_rate_after"], 1.1 * rec)

    def test_the_backlog_stabilised(self):
        r = self.result
        self.assertLessEqual(r["backlog_slope_last_24h"], 0.25)
        self.assertLess(r["backlog_final"], r["backlog_at_trip"])
        # Before the throttle the backlog was growing: the last hours before the trip rose.
        before = [b for h, _, b, _ in r["timeline"] if r["trip_hours"] - 4 <= h < r["trip_hours"]]
        self.assertGreater(before[-1] - before[0], 5)


if __name__ == "__main__":
    unittest.main()
