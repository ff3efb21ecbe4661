#!/usr/bin/python3
"""A small recursive-training loop that learns from its own outputs, guarded by loopwarden.

The "model" is a 1-D Gaussian mixture (3 components) fitted by EM. Generation 0 is fitted to
real data. Every later generation samples a corpus from the previous model -- with the usual
decoding knobs, temperature < 1 and top-p, which favour likely outputs -- mixes in a share of
the real data (``--real-share``), refits on that corpus (warm-started, like fine-tuning) and
repeats. With no real data the model collapses: tails disappear, minority modes die out, the
fitted spread shrinks generation after generation while the training loss keeps *improving*.
With enough real data mixed in, the spread settles instead.

What it tells loopwarden, through the Python client:
- ``train/loss`` (negative log-likelihood per sample) at every EM step;
- per generation, as metrics with ``step = generation``: ``generation/std`` and
  ``generation/variance`` (the fitted mixture's), ``generation/std_ratio`` (fitted std / the
  generation-0 fitted std), ``generation/distinct_outputs`` and ``generation/distinct_ratio``
  (distinct outputs at 0.1 resolution), ``generation/entropy`` (nats, over those outputs),
  ``generation/tail_mass`` (share of outputs beyond the real data's 2.5 % / 97.5 % quantiles),
  ``generation/real_share``;
- per generation, a ``loopwarden.v1.GenerationSummary`` (generation 0 describes the real
  reference data; later ones the samples the generation's model produced).

It keeps a checkpoint per generation (``<checkpoint-dir>/gen-NNN.npz``). When a breaker opens:
``rollback`` restores the last healthy checkpoint -- the one the evidence names
(``checkpoint``), else the generation before the one where the crossing began (the threshold
monitor's ``first_step``), else the generation before the trip -- and stops; ``halt`` and
anything else stops where it is.

Usage (a sidecar must be running; see run.sh):
    PYTHONPATH=<build>/python /usr/bin/python3 trainer.py --state-dir DIR --real-share 0.3

Exit status: 0 all generations ran; 1 a breaker stopped the run; 2 could not run.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

try:
    import loopwarden
    from loopwarden.v1 import common_pb2, generation_pb2
except ImportError as exc:  # pragma: no cover - a usage error
    sys.exit(f"trainer.py: can't import loopwarden ({exc}); "
             "run with PYTHONPATH=<build>/python (the build copies the client there)")

# The real data: three overlapping modes, the smallest one in the right tail.
REAL_WEIGHTS = np.array([0.5, 0.3, 0.2])
REAL_MEANS = np.array([-2.0, 0.5, 3.0])
REAL_STDS = np.array([1.0, 0.9, 1.3])

OUTPUT_RESOLUTION = 0.1  # outputs are compared at this resolution ("distinct outputs")
MIN_STD = 0.05  # a component never gets narrower than this (EM degeneracy guard)
LOG_2PI = float(np.log(2.0 * np.pi))


# --- the model ------------------------------------------------------------------------------

class Mixture:
    """A 1-D Gaussian mixture: weights, means, standard deviations."""

    def __init__(self, weights, means, stds):
        self.weights = np.asarray(weights, dtype=float)
        self.means = np.asarray(means, dtype=float)
        self.stds = np.asarray(stds, dtype=float)

    def component_logpdf(self, x):
        z = (x[:, None] - self.means) / self.stds
        return np.log(self.weights) - 0.5 * z * z - np.log(self.stds) - 0.5 * LOG_2PI

    def logpdf(self, x):
        parts = self.component_logpdf(x)
        top = parts.max(axis=1, keepdims=True)
        return (top + np.log(np.exp(parts - top).sum(axis=1, keepdims=True)))[:, 0], parts

    def std(self):
        mean = float((self.weights * self.means).sum())
        second = float((self.weights * (self.stds ** 2 + self.means ** 2)).sum())
        return float(np.sqrt(max(second - mean * mean, 0.0)))

    def draw(self, rng, n):
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        return rng.normal(self.means[k], self.stds[k])

    def generate(self, rng, n, temperature, top_p):
        """Samples as a language model decodes: drop the least likely (1 - top_p) of the
        candidates, then resample the rest with probability ~ p(x)^(1/temperature)."""
        candidates = self.draw(rng, 4 * n)
        loglik, _ = self.logpdf(candidates)
        if top_p < 1.0:
            keep = loglik >= np.quantile(loglik, 1.0 - top_p)
            candidates, loglik = candidates[keep], loglik[keep]
        logw = (1.0 / temperature - 1.0) * loglik
        p = np.exp(logw - logw.max())
        return candidates[rng.choice(len(candidates), size=n, replace=True, p=p / p.sum())]

    def save(self, path, **extra):
        np.savez(path, weights=self.weights, means=self.means, stds=self.stds, **extra)

    @classmethod
    def load(cls, path):
        with np.load(path) as f:
            return cls(f["weights"], f["means"], f["stds"])


def em_steps(model, x, steps):
    """Runs EM on ``x`` from ``model``; yields (model, negative log-likelihood per sample)."""
    for _ in range(steps):
        loglik, parts = model.logpdf(x)
        nll = float(-loglik.mean())
        resp = np.exp(parts - loglik[:, None])
        nk = resp.sum(axis=0) + 1e-12
        weights = np.maximum(nk / nk.sum(), 1e-6)
        means = (resp * x[:, None]).sum(axis=0) / nk
        stds = np.sqrt((resp * (x[:, None] - means) ** 2).sum(axis=0) / nk)
        model = Mixture(weights / weights.sum(), means, np.maximum(stds, MIN_STD))
        yield model, nll


# --- what a generation is measured by -------------------------------------------------------

def describe(x, reference_tails):
    """Diversity and tail figures of a corpus of outputs."""
    keys = np.round(x / OUTPUT_RESOLUTION).astype(np.int64)
    uniq, counts = np.unique(keys, return_counts=True)
    p = counts / counts.sum()
    low, high = reference_tails
    return {
        "distinct": int(len(uniq)),
        "entropy": float(-(p * np.log(p)).sum()),
        "gini_simpson": float(1.0 - (p * p).sum()),
        "tail_mass": float(((x < low) | (x > high)).mean()),
        "keys": uniq,
        "counts": counts,
    }


def summary_message(generation, x, figures, model, baseline_std, real_share, n_real,
                    checkpoint_id, nll):
    """The loopwarden.v1.GenerationSummary of one generation."""
    s = generation_pb2.GenerationSummary(
        generation=generation,
        sample_count=len(x),
        checkpoint_id=checkpoint_id,
        token_entropy=figures["entropy"],
        tail_mass=figures["tail_mass"],
        synthetic_share=1.0 - real_share,
        real_share=real_share,
    )
    quantiles = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
    edges = np.arange(-8.0, 10.0 + 1e-9, 0.5)
    hist, _ = np.histogram(x, bins=edges)
    s.statistics.append(common_pb2.ScalarSummary(
        name="value", count=len(x), mean=float(x.mean()), variance=float(x.var()), ddof=0,
        min=float(x.min()), max=float(x.max()),
        quantiles=[common_pb2.Quantile(q=q, value=float(v))
                   for q, v in zip(quantiles, np.quantile(x, quantiles))],
        histogram=common_pb2.Histogram(edges=edges.tolist(), counts=hist.astype(float).tolist()),
    ))
    s.diversity.append(generation_pb2.NgramDiversity(
        n=1, distinct=figures["distinct"], total=len(x), entropy=figures["entropy"],
        gini_simpson=figures["gini_simpson"]))
    # Outputs at 0.1 resolution as "tokens": key = round(x / 0.1) + 100000 (non-negative).
    s.token_histogram.keys.extend((figures["keys"] + 100000).tolist())
    s.token_histogram.counts.extend(figures["counts"].astype(float).tolist())
    s.provenance_counts.extend([common_pb2.NamedValue(name="human", value=n_real),
                                common_pb2.NamedValue(name="model", value=len(x) - n_real)])
    s.metrics.extend([common_pb2.NamedValue(name="fitted_std", value=model.std()),
                      common_pb2.NamedValue(name="std_ratio", value=model.std() / baseline_std),
                      common_pb2.NamedValue(name="train_loss", value=nll)])
    return s


# --- the loop -------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="A recursive-training loop (a Gaussian mixture refitted on its own samples) "
                    "that obeys loopwarden's breakers.")
    p.add_argument("--generations", type=int, default=12, help="generations to run (default 12)")
    p.add_argument("--real-share", type=float, default=0.0,
                   help="share of each generation's training data that is real, 0.0..1.0 "
                        "(default 0: synthetic only)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--samples", type=int, default=2000, help="corpus size per generation")
    p.add_argument("--em-steps", type=int, default=15, help="EM steps per generation")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling share")
    p.add_argument("--run-id", help="the run's id (default: recursive-s<seed>-real<pct>)")
    p.add_argument("--state-dir", help="the sidecar's state directory (its sockets are under "
                                       "<dir>/run); default: LOOPWARDEN_* environment variables")
    p.add_argument("--checkpoint-dir", help="where checkpoints go (default: a new temp dir)")
    p.add_argument("--pace", type=float, default=0.3,
                   help="minimum seconds per generation, spent waiting on the breakers "
                        "(a real generation takes hours; default 0.3)")
    p.add_argument("--timeout", type=float, default=1.0,
                   help="sidecar silence (s) after which the guard fails closed")
    p.add_argument("--result", help="write the outcome as JSON to this file")
    a = p.parse_args(argv)
    if not 0.0 <= a.real_share <= 1.0:
        p.error(f"--real-share must be within 0.0..1.0, got {a.real_share}")
    if a.generations < 1 or a.samples < 100 or a.em_steps < 1:
        p.error("--generations and --em-steps must be >= 1, --samples >= 100")
    if not 0.0 < a.temperature <= 1.0 or not 0.0 < a.top_p <= 1.0:
        p.error("--temperature and --top-p must be within (0, 1]")
    if a.run_id is None:
        a.run_id = f"recursive-s{a.seed}-real{round(a.real_share * 100)}"
    return a


def rollback_target(event, current, generations_done):
    """The generation to restore for a rollback, and why."""
    named = event.evidence.get("checkpoint") or event.evidence.get("checkpoint_id")
    if named:
        for g, ckpt in generations_done.items():
            if ckpt == named or os.path.basename(ckpt) in (named, named + ".npz"):
                return g, f"the evidence names checkpoint {named}"
    first = event.evidence.get("first_step")
    if first is not None and event.evidence.get("metric", "").startswith("generation/"):
        try:
            first_bad = int(first)
        except ValueError:
            first_bad = None
        if first_bad is not None:
            g = max(0, min(first_bad - 1, current))
            return g, (f"the crossing began at generation {first_bad} "
                       f"(evidence first_step={first_bad})")
    return max(0, current - 1), f"generation {current} tripped the breaker"


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    rng = np.random.default_rng(a.seed)
    ckpt_dir = a.checkpoint_dir or tempfile.mkdtemp(prefix=f"{a.run_id}-ckpt-")
    os.makedirs(ckpt_dir, exist_ok=True)
    endpoints = (loopwarden.Endpoints.from_dir(a.state_dir) if a.state_dir
                 else loopwarden.Endpoints.from_env())

    real = Mixture(REAL_WEIGHTS, REAL_MEANS, REAL_STDS).draw(rng, a.samples)
    tails = tuple(np.quantile(real, [0.025, 0.975]))
    n_real = int(round(a.real_share * a.samples))
    print(f"recursive trainer: run {a.run_id}: {a.generations} generations of {a.samples} "
          f"samples, real data {a.real_share:.0%} of each, seed {a.seed}")
    print(f"  model: 3-component Gaussian mixture (EM, {a.em_steps} steps per generation); "
          f"sampling: temperature {a.temperature:g}, top-p {a.top_p:g}")
    print(f"  loopwarden: events to {endpoints.ingest}; checkpoints in {ckpt_dir}")

    # Attaching loopwarden: one guard, check() every step, metrics as they come.
    guard = loopwarden.TrainingGuard(run_id=a.run_id, endpoints=endpoints,
                                     source=f"trainer/{a.run_id}", timeout=a.timeout)

    model = Mixture([1 / 3] * 3, np.quantile(real, [0.2, 0.5, 0.8]), [real.std() / 2] * 3)
    corpus = real
    checkpoints = {}  # generation -> checkpoint file
    fitted = {}  # generation -> (fitted std, std ratio, distinct)
    baseline_std = None
    step = 0
    generation = -1
    outcome = {"run_id": a.run_id, "real_share": a.real_share, "seed": a.seed,
               "generations": a.generations, "outcome": "completed", "breaker": None,
               "action": None, "restored_generation": None, "restored_checkpoint": None}
    try:
        for generation in range(a.generations):
            started = time.monotonic()
            real_share = 1.0 if generation == 0 else a.real_share
            nll = float("nan")
            for model, nll in em_steps(model, corpus, a.em_steps if generation else 3 * a.em_steps):
                guard.check()
                guard.metric("train/loss", nll, step)
                step += 1
            fitted_std = model.std()
            baseline_std = baseline_std or fitted_std
            ratio = fitted_std / baseline_std
            # The model's outputs: next generation's synthetic data.
            outputs = model.generate(rng, a.samples, a.temperature, a.top_p)
            # Generation 0 is described by the real (reference) data, later ones by their outputs.
            described = real if generation == 0 else outputs
            fig = describe(described, tails)
            ckpt_id = f"gen-{generation:03d}"
            ckpt = os.path.join(ckpt_dir, ckpt_id + ".npz")
            model.save(ckpt, generation=generation, fitted_std=fitted_std)
            checkpoints[generation] = ckpt
            fitted[generation] = (fitted_std, ratio, fig["distinct"])

            for name, value in (("generation/std", fitted_std),
                                ("generation/variance", fitted_std ** 2),
                                ("generation/std_ratio", ratio),
                                ("generation/distinct_outputs", fig["distinct"]),
                                ("generation/distinct_ratio", fig["distinct"] / fitted[0][2]),
                                ("generation/entropy", fig["entropy"]),
                                ("generation/tail_mass", fig["tail_mass"]),
                                ("generation/real_share", real_share)):
                guard.metric(name, value, generation)
            guard.publish(summary_message(generation, described, fig, model, baseline_std,
                                          real_share, n_real if generation else a.samples,
                                          ckpt_id, nll))
            guard.flush()
            print(f"gen {generation:2d}  data {real_share:4.0%} real  "
                  f"fitted std {fitted_std:5.2f} (ratio {ratio:4.2f})  "
                  f"distinct outputs {fig['distinct']:3d}  entropy {fig['entropy']:4.2f}  "
                  f"loss {nll:5.2f}  -> {ckpt_id}", flush=True)

            # The next corpus: a share of real data, the rest from this model.
            corpus = np.concatenate([rng.choice(real, n_real, replace=False),
                                     outputs[:a.samples - n_real]])
            # A real generation takes hours; here, give the sidecar a moment, and stop waiting
            # as soon as a breaker says so.
            guard.watch.wait_until(lambda w: w.should_stop(),
                                   max(0.0, a.pace - (time.monotonic() - started)))
            guard.check()
    except loopwarden.BreakerOpen as event:
        outcome.update(outcome="halted", breaker=event.name, action=event.action,
                       reason=event.reason, evidence=event.evidence,
                       stopped_at_generation=generation)
        print(f"!! {event}")
        if event.evidence:
            print("   evidence: " + ", ".join(f"{k}={v}" for k, v in event.evidence.items()))
        if event.action == "rollback" and checkpoints and not event.sidecar_silent:
            target, why = rollback_target(event, max(checkpoints), checkpoints)
            model = Mixture.load(checkpoints[target])
            with open(os.path.join(ckpt_dir, "CURRENT"), "w") as f:
                f.write(os.path.basename(checkpoints[target]) + "\n")
            std, ratio, distinct = fitted[target]
            print(f"   rollback: {why}; restored checkpoint gen-{target:03d} "
                  f"(fitted std {model.std():.2f}, ratio {ratio:.2f}, distinct outputs "
                  f"{distinct}) and stopping")
            outcome.update(outcome="rolled_back", restored_generation=target,
                           restored_checkpoint=checkpoints[target])
        else:
            what = "sidecar silent" if event.sidecar_silent else f"action {event.action}"
            if event.action == "rollback" and not checkpoints:
                what += " but no checkpoint of this run yet"
            print(f"   {what}: stopping at generation {generation}, keeping the model as it is")
    finally:
        sent, dropped = guard.publisher.sent, guard.publisher.dropped
        guard.close()  # flushes, and tells the sidecar this source is done

    print(f"\naccount of run {a.run_id}:")
    last = max(checkpoints) if checkpoints else -1
    if outcome["outcome"] == "completed":
        std, ratio, distinct = fitted[last]
        print(f"  all {a.generations} generations ran; no breaker opened. Final model "
              f"gen-{last:03d}: fitted std {std:.2f} (ratio {ratio:.2f}), distinct outputs {distinct}")
    elif last < 0:
        print(f"  stopped before generation 0 finished: {outcome['breaker']} "
              f"(action {outcome['action']}) was already in force; nothing to roll back")
    else:
        print(f"  generations 0-{last} trained; {outcome['breaker']} stopped the run "
              f"(action {outcome['action']}) after generation {last}")
        if outcome["outcome"] == "rolled_back":
            g = outcome["restored_generation"]
            std, ratio, distinct = fitted[g]
            print(f"  model now: checkpoint gen-{g:03d} (fitted std {std:.2f}, ratio {ratio:.2f}, "
                  f"distinct outputs {distinct}); {os.path.join(ckpt_dir, 'CURRENT')} names it")
    print(f"  events sent {sent}, dropped {dropped}; checkpoints in {ckpt_dir}")
    if outcome["breaker"] and outcome["breaker"] != loopwarden.SILENCE_BREAKER:
        print(f"  inspect: loopwarden explain {outcome['breaker']} --run {a.run_id}"
              + (f" --state-dir {a.state_dir}" if a.state_dir else ""))
    if a.result:
        outcome["generations_trained"] = last + 1
        outcome["fitted"] = {str(g): {"std": v[0], "std_ratio": v[1], "distinct": v[2]}
                             for g, v in fitted.items()}
        with open(a.result, "w") as f:
            json.dump(outcome, f, indent=2)
    return 0 if outcome["outcome"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
