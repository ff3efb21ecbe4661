#!/usr/bin/python3
"""Recursive training of a word n-gram language model on real human text, guarded by loopwarden.

The model is a word trigram model (counts, with backoff to bigrams and unigrams) trained on a
text that ships with every Debian system: the GNU GPL version 3 from base-files
(/usr/share/common-licenses/GPL-3; another licence text there if it is missing). Generation 0
is trained on the human text. Every later generation samples a corpus from the previous model
and is trained on it -- with ``--real-share 0`` on those samples alone, otherwise on the whole
human text plus enough samples that the human tokens are that share of the training data. Rare
n-grams that a generation happens not to sample are gone for good: distinct n-grams fall, the
token distribution drifts away from the baseline, the model narrows onto its most likely
paths. Real text kept in every generation holds them up.

Per generation the trainer publishes, through the loopwarden Python client, one
``loopwarden.v1.GenerationSummary`` of the corpus that generation's model samples:
sample_count (samples of --sample-length tokens), distinct-n / entropy / Gini-Simpson for
n = 1..4 (the SDK's definitions: distinct/total, -sum p ln p, 1 - sum p^2 over the n-grams
inside each sample), the unigram token histogram, the real and synthetic share of the data the
model was trained on with provenance counts (tokens by source), per-sample statistics (mean log
probability per token under the generation-0 model, type-token ratio), and the checkpoint id.
Generation 0's summary describes the samples of the model trained on human text: a model's
samples already differ from its training text (a trigram model of 6 500 tokens repeats its
frequent paths), so the baseline is what the model does before recursion, and later
generations are compared with it like for like.

It keeps a checkpoint per generation (``<checkpoint-dir>/gen-NNN.json``). When a breaker opens:
``rollback`` (training.collapse) restores the checkpoint the evidence names
(``last_healthy_checkpoint``) and stops; ``pause`` (training.provenance: too little real
data) waits for an operator to reset the breaker, then carries on (or stops after
--pause-timeout); anything else stops where it is.

Usage (a sidecar must be running; see run.sh):
    PYTHONPATH=<build>/python /usr/bin/python3 trainer.py --state-dir DIR --real-share 0.3

Standard library and the loopwarden client only. Exit status: 0 all generations ran; 1 a
breaker stopped the run; 2 could not run.
"""

import argparse
import bisect
import json
import math
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict

try:
    import loopwarden
    from loopwarden.v1 import common_pb2, generation_pb2
except ImportError as exc:  # pragma: no cover - a usage error
    sys.exit(f"trainer.py: can't import loopwarden ({exc}); "
             "run with PYTHONPATH=<build>/python (the build copies the client there)")

# base-files ships these on every Debian system; the first that exists is the human text.
TEXTS = ("/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/GPL-2",
         "/usr/share/common-licenses/Apache-2.0", "/usr/share/common-licenses/GFDL-1.3")
TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[.,;:()\"!?-]")
ORDERS = (1, 2, 3, 4)


# --- the model -------------------------------------------------------------------------------

class Distribution:
    """Counts of next tokens, with cumulative sums for sampling in O(log k)."""

    __slots__ = ("tokens", "cumulative", "total")

    def __init__(self, counts):
        self.tokens = sorted(counts)  # sorted: the same counts sample the same way everywhere
        self.cumulative = []
        running = 0
        for t in self.tokens:
            running += counts[t]
            self.cumulative.append(running)
        self.total = running

    def draw(self, rng):
        return self.tokens[bisect.bisect_right(self.cumulative, rng.random() * self.total)]


class TrigramModel:
    """A word trigram model: next-token counts after two tokens, backing off to one, then none.
    Sampling follows the counts (temperature 1); log_probability() interpolates the three orders
    with add-one smoothing over the vocabulary, so any token sequence has a finite log
    probability.

    The interface the training loop needs (torch_trainer.py has a second implementation):
    ``train(documents, vocabulary, seed)``, ``sample_many(rng, count, length)``,
    ``save(path, **extra)``, ``load(path, vocabulary)`` and the checkpoint ``suffix``."""

    name = "word trigram model (counts, backoff)"
    suffix = ".json"

    def __init__(self, trigram, bigram, unigram, vocabulary_size):
        self.trigram = trigram
        self.bigram = bigram
        self.unigram = unigram
        self.vocabulary_size = vocabulary_size
        self._sampling = {}
        self._unigram_total = sum(unigram.values())

    @classmethod
    def train(cls, documents, vocabulary, seed=0):
        del seed  # counting is deterministic
        vocabulary_size = len(vocabulary)
        trigram, bigram, unigram = defaultdict(Counter), defaultdict(Counter), Counter()
        for d in documents:
            for i, w in enumerate(d):
                unigram[w] += 1
                if i >= 1:
                    bigram[d[i - 1]][w] += 1
                if i >= 2:
                    trigram[(d[i - 2], d[i - 1])][w] += 1
        return cls(trigram, bigram, unigram, vocabulary_size)

    def _distribution(self, key, counts):
        d = self._sampling.get(key)
        if d is None:
            d = self._sampling[key] = Distribution(counts)
        return d

    def sample(self, rng, length):
        out = [self._distribution(("u",), self.unigram).draw(rng)]
        while len(out) < length:
            context = (out[-2], out[-1]) if len(out) >= 2 else None
            if context in self.trigram:
                out.append(self._distribution(("t",) + context, self.trigram[context]).draw(rng))
            elif out[-1] in self.bigram:
                out.append(self._distribution(("b", out[-1]), self.bigram[out[-1]]).draw(rng))
            else:
                out.append(self._distribution(("u",), self.unigram).draw(rng))
        return out

    def sample_many(self, rng, count, length):
        return [self.sample(rng, length) for _ in range(count)]

    def log_probability(self, tokens):
        """Mean natural-log probability per token (interpolated 0.6 / 0.3 / 0.1, add-one)."""
        v = self.vocabulary_size
        total = 0.0
        for i, w in enumerate(tokens):
            p1 = (self.unigram.get(w, 0) + 1) / (self._unigram_total + v)
            p = p1
            if i >= 1:
                b = self.bigram.get(tokens[i - 1])
                p2 = ((b.get(w, 0) if b else 0) + 1) / ((sum(b.values()) if b else 0) + v)
                p = 0.75 * p2 + 0.25 * p1
                if i >= 2:
                    t = self.trigram.get((tokens[i - 2], tokens[i - 1]))
                    p3 = ((t.get(w, 0) if t else 0) + 1) / ((sum(t.values()) if t else 0) + v)
                    p = 0.6 * p3 + 0.3 * p2 + 0.1 * p1
            total += math.log(p)
        return total / len(tokens)

    def save(self, path, **extra):
        data = {"trigram": [[a, b, dict(c)] for (a, b), c in sorted(self.trigram.items())],
                "bigram": [[a, dict(c)] for a, c in sorted(self.bigram.items())],
                "unigram": dict(self.unigram), "vocabulary_size": self.vocabulary_size}
        data.update(extra)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)

    @classmethod
    def load(cls, path, vocabulary=None):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        trigram = defaultdict(Counter, {(a, b): Counter(c) for a, b, c in data["trigram"]})
        bigram = defaultdict(Counter, {a: Counter(c) for a, c in data["bigram"]})
        return cls(trigram, bigram, Counter(data["unigram"]), data["vocabulary_size"])


# --- what a generation is measured by --------------------------------------------------------

def ngram_diversity(samples, n):
    """distinct, total, entropy (nats) and Gini-Simpson of the n-grams inside the samples."""
    counts = Counter(tuple(s[i:i + n]) for s in samples for i in range(len(s) - n + 1))
    total = sum(counts.values())
    entropy = -sum(c / total * math.log(c / total) for c in counts.values())
    simpson = sum((c / total) ** 2 for c in counts.values())
    return len(counts), total, entropy, 1.0 - simpson


def scalar_summary(name, values):
    n = len(values)
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / n  # ddof 0
    ordered = sorted(values)
    quantiles = [common_pb2.Quantile(q=q, value=ordered[min(n - 1, int(q * n))])
                 for q in (0.05, 0.5, 0.95)]
    return common_pb2.ScalarSummary(name=name, count=n, mean=mean, variance=variance, ddof=0,
                                    min=ordered[0], max=ordered[-1], quantiles=quantiles)


def summary_message(generation, samples, vocabulary, reference_model, real_tokens,
                    synthetic_tokens, checkpoint_id):
    real_share = real_tokens / (real_tokens + synthetic_tokens)
    s = generation_pb2.GenerationSummary(
        generation=generation, sample_count=len(samples), checkpoint_id=checkpoint_id,
        real_share=real_share, synthetic_share=1.0 - real_share)
    for n in ORDERS:
        distinct, total, entropy, gini = ngram_diversity(samples, n)
        s.diversity.append(generation_pb2.NgramDiversity(
            n=n, distinct=distinct, total=total, entropy=entropy, gini_simpson=gini))
        if n == 1:
            s.token_entropy = entropy
    # Per-sample statistics: the first is the one the monitor's variance ratio watches.
    s.statistics.append(scalar_summary(
        "loglik", [reference_model.log_probability(x) for x in samples]))
    s.statistics.append(scalar_summary("type_token_ratio", [len(set(x)) / len(x) for x in samples]))
    counts = Counter(w for x in samples for w in x)
    for token in sorted(counts):
        s.token_histogram.keys.append(vocabulary[token])
        s.token_histogram.counts.append(float(counts[token]))
    s.provenance_counts.extend([common_pb2.NamedValue(name="human", value=real_tokens),
                                common_pb2.NamedValue(name="model", value=synthetic_tokens)])
    return s


# --- the loop --------------------------------------------------------------------------------

def read_human_text(path=None):
    for candidate in ([path] if path else TEXTS):
        try:
            with open(candidate, encoding="utf-8") as f:
                tokens = TOKEN.findall(f.read().lower())
        except OSError:
            continue
        if len(tokens) >= 1000:
            return candidate, tokens
    sys.exit("trainer.py: no human text found (looked for " + ", ".join(TEXTS) + ")")


def parse_args(argv, run_prefix="ngram"):
    p = argparse.ArgumentParser(
        description="Recursive training of a word-level language model on its own samples, "
                    "obeying loopwarden's breakers.")
    p.add_argument("--generations", type=int, default=12, help="generations after 0 (default 12)")
    p.add_argument("--real-share", type=float, default=0.0,
                   help="share of each later generation's training tokens that is the human "
                        "text, 0 or within (0, 1) (default 0: synthetic only)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--sample-length", type=int, default=50, help="tokens per sample")
    p.add_argument("--text", help="the human text (default: a licence text from base-files)")
    p.add_argument("--run-id", help="the run's id (default: ngram-s<seed>-real<pct>)")
    p.add_argument("--state-dir", help="the sidecar's state directory (its sockets are under "
                                       "<dir>/run); default: LOOPWARDEN_* environment variables")
    p.add_argument("--checkpoint-dir", help="where checkpoints go (default: a new temp dir)")
    p.add_argument("--settle", type=float, default=2.0,
                   help="seconds to wait after each summary for a breaker before training the "
                        "next generation; ends early when one opens (default 2)")
    p.add_argument("--pause-timeout", type=float, default=60.0,
                   help="seconds to wait for an operator to reset a pause breaker (default 60)")
    p.add_argument("--timeout", type=float, default=2.0,
                   help="sidecar silence (s) after which the guard fails closed")
    p.add_argument("--result", help="write the outcome as JSON to this file")
    a = p.parse_args(argv)
    if not 0.0 <= a.real_share < 1.0:
        p.error(f"--real-share must be within [0, 1), got {a.real_share}")
    if a.generations < 1 or a.sample_length < 8:
        p.error("--generations must be >= 1 and --sample-length >= 8")
    if a.run_id is None:
        a.run_id = f"{run_prefix}-s{a.seed}-real{round(a.real_share * 100)}"
    return a


def obey_breakers(guard, pause_timeout, pauses, generation):
    """At a generation boundary: returns if nothing stops the run. Raises BreakerOpen for the
    breaker to act on otherwise: a rollback first, whatever else is open too (the guard ranks
    pause above rollback, but a rollback is the one that names where to go back to). A run
    stopped only by pause breakers waits for an operator to reset them (or for a rollback to
    open), up to pause_timeout seconds, then looks again. A silent sidecar stops the run the
    same way (fail closed): it waits, at the boundary, for the sidecar to speak again."""
    while True:
        try:
            guard.check()
            return
        except loopwarden.BreakerOpen as event:
            if event.sidecar_silent:
                print(f"   {event.reason}: waiting up to {pause_timeout:.0f} s for it", flush=True)
                if not guard.watch.wait_until(lambda w: not w.silent, pause_timeout):
                    raise
                continue
            rollback = [b for b in event.breakers if b.action == "rollback"]
            if rollback:
                others = [b for b in event.breakers if b is not rollback[0]]
                raise loopwarden.BreakerOpen(rollback[0], guard.run_id, others) from None
            if any(b.action != "pause" for b in event.breakers):
                raise
            if event.name not in (p["breaker"] for p in pauses):
                pauses.append({"breaker": event.name, "generation": generation,
                               "evidence": event.evidence})
                print(f"   paused by {event.name} ({event.reason}): waiting up to "
                      f"{pause_timeout:.0f} s for an operator to reset it\n"
                      f"   (loopwarden explain {event.name} --run {guard.run_id}; then "
                      "loopwarden reset ... --reason ...)", flush=True)
            resumed = guard.watch.wait_until(
                lambda w: not w.should_stop()
                or any(b.action == "rollback" for b in w.stopping_breakers()), pause_timeout)
            if not resumed:
                raise
            if not guard.should_stop():
                print(f"   {event.name} was reset: carrying on", flush=True)


def main(argv=None, model_class=TrigramModel, run_prefix="ngram"):
    """The recursive loop for any model class with TrigramModel's interface."""
    a = parse_args(sys.argv[1:] if argv is None else argv, run_prefix)
    rng = random.Random(a.seed)
    source, tokens = read_human_text(a.text)
    length = a.sample_length
    human = [tokens[i:i + length] for i in range(0, len(tokens) - length + 1, length)]
    vocabulary = {w: i + 1 for i, w in enumerate(sorted(set(tokens)))}  # histogram keys
    ckpt_dir = a.checkpoint_dir or tempfile.mkdtemp(prefix=f"{a.run_id}-ckpt-")
    os.makedirs(ckpt_dir, exist_ok=True)
    endpoints = (loopwarden.Endpoints.from_dir(a.state_dir) if a.state_dir
                 else loopwarden.Endpoints.from_env())
    human_tokens = len(human) * length
    if a.real_share > 0:
        synthetic_per_generation = round(human_tokens * (1 - a.real_share) / a.real_share)
    else:
        synthetic_per_generation = human_tokens
    samples_per_generation = max(len(human), -(-synthetic_per_generation // length))
    print(f"{model_class.name}: run {a.run_id}: human text {source} ({human_tokens} tokens, "
          f"{len(vocabulary)} types), {a.generations} generations, "
          + (f"{a.real_share:.0%} of each later generation's training tokens human"
             if a.real_share > 0 else "synthetic data only after generation 0")
          + f", seed {a.seed}")
    print(f"  loopwarden: events to {endpoints.ingest}; checkpoints in {ckpt_dir}", flush=True)

    guard = loopwarden.TrainingGuard(run_id=a.run_id, endpoints=endpoints,
                                     source=f"trainer/{a.run_id}", timeout=a.timeout)
    outcome = {"run_id": a.run_id, "real_share": a.real_share, "seed": a.seed,
               "outcome": "completed", "breaker": None, "action": None,
               "restored_generation": None, "restored_checkpoint": None, "pauses": [],
               "generations": {}}
    checkpoints = {}
    generation = 0
    try:
        # Per-sample log probabilities are taken under one fixed yardstick: the count model of the
        # human text, whatever model is being trained.
        reference = TrigramModel.train(human, vocabulary)
        model = model_class.train(human, vocabulary, a.seed)
        real_tokens, synthetic_tokens = human_tokens, 0
        while True:
            started = time.monotonic()
            samples = model.sample_many(rng, samples_per_generation, length)
            ckpt_id = f"gen-{generation:03d}"
            checkpoints[generation] = os.path.join(ckpt_dir, ckpt_id + model_class.suffix)
            model.save(checkpoints[generation], generation=generation)
            summary = summary_message(generation, samples, vocabulary, reference, real_tokens,
                                      synthetic_tokens, ckpt_id)
            guard.publish(summary)
            guard.flush()
            d2 = summary.diversity[1]
            outcome["generations"][str(generation)] = {
                "distinct_2_ratio": d2.distinct / d2.total, "types": len(summary.token_histogram.keys),
                "real_share": summary.real_share}
            print(f"gen {generation:2d}  trained on {summary.real_share:4.0%} human  "
                  f"samples {len(samples):4d}  types {len(summary.token_histogram.keys):4d}  "
                  f"distinct-2 {d2.distinct / d2.total:.3f}  entropy {summary.token_entropy:.3f}  "
                  f"-> {ckpt_id}", flush=True)
            # The sidecar has the summary: give it a moment, stop waiting when a breaker opens.
            guard.watch.wait_until(lambda w: w.should_stop(),
                                   max(0.0, a.settle - (time.monotonic() - started)))
            obey_breakers(guard, a.pause_timeout, outcome["pauses"], generation)
            if generation == a.generations:
                break
            # The next generation's training data: its own samples, plus the human text.
            synthetic = [w for x in samples for w in x][:synthetic_per_generation]
            synthetic_docs = [synthetic[i:i + length] for i in range(0, len(synthetic), length)]
            generation += 1
            if a.real_share > 0:
                model = model_class.train(human + synthetic_docs, vocabulary, a.seed + generation)
                real_tokens, synthetic_tokens = human_tokens, len(synthetic)
            else:
                model = model_class.train(synthetic_docs, vocabulary, a.seed + generation)
                real_tokens, synthetic_tokens = 0, len(synthetic)
    except loopwarden.BreakerOpen as event:
        outcome.update(outcome="halted", breaker=event.name, action=event.action,
                       reason=event.reason, evidence=event.evidence,
                       stopped_at_generation=generation)
        print(f"!! {event}")
        if event.evidence:
            print("   evidence: " + ", ".join(f"{k}={v}" for k, v in event.evidence.items()))
        named = event.evidence.get("last_healthy_checkpoint", "")
        target = next((g for g, path in checkpoints.items()
                       if os.path.basename(path) == named + model_class.suffix), None)
        if event.action == "rollback" and target is not None and not event.sidecar_silent:
            model = model_class.load(checkpoints[target], vocabulary)
            with open(os.path.join(ckpt_dir, "CURRENT"), "w", encoding="utf-8") as f:
                f.write(os.path.basename(checkpoints[target]) + "\n")
            print(f"   rollback: restored checkpoint {named} (generation {target}, the last "
                  f"healthy one in the evidence) and stopping")
            outcome.update(outcome="rolled_back", restored_generation=target,
                           restored_checkpoint=checkpoints[target])
        elif event.action == "rollback":
            print(f"   rollback asked, but no checkpoint matches '{named}': stopping as it is")
        else:
            print(f"   action {event.action}: stopping at generation {generation}")
    finally:
        sent, dropped = guard.publisher.sent, guard.publisher.dropped
        guard.close()

    print(f"account of run {a.run_id}: {outcome['outcome']}"
          + (f" ({outcome['breaker']}, action {outcome['action']})" if outcome["breaker"] else "")
          + f"; events sent {sent}, dropped {dropped}")
    if a.result:
        outcome["generations_trained"] = len(checkpoints)
        with open(a.result, "w", encoding="utf-8") as f:
            json.dump(outcome, f, indent=2)
    return 0 if outcome["outcome"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
