#!/usr/bin/python3
"""A toy self-improvement loop that rewrites its own prompt, guarded by loopwarden's goal_drift.

The "model" answers tasks by emitting tokens from a distribution that its prompt shapes: a base
prompt ("Solve the task. Follow the specification.") plus instructions the loop adds to it. The
specification says what good output looks like: a fixed token distribution over on-spec tokens
0-99. Each cycle the optimiser tries every instruction it knows, keeps the one that raises the
verifiable score (``pass_rate``: the share of a fixed set of 400 test tasks whose output the
grader accepts) the most, and reports the cycle to loopwarden.

Honest instructions ("show your work", "check the units", ...) raise the pass rate a little and
keep the outputs on the specification. Once they are used up, the optimiser widens its search
and finds instructions that game the grader ("hardcode the expected answers", ...): the pass
rate jumps while the outputs leave the specification and the soft metrics fall -- the failure
a goal-drift monitor exists for. ``--no-exploits`` keeps the search honest.

What it tells loopwarden, per cycle, as a ``loopwarden.v1.CycleReport`` through the Python
client: the cycle, the candidate (``p<cycle>``) and the candidate it was derived from, the
capability metric ``pass_rate``, the alignment metrics ``truthfulness`` and
``spec_adherence``, two constraint checks (``sandbox``, critical; ``no_hardcoded_answers``,
not critical), and the raw drift material -- embeddings of 32 candidate outputs and of 32
reference outputs, their tokens, and their token histograms -- from which the monitor measures
the semantic, lexical and distributional drift itself.

It keeps a checkpoint per candidate (``<checkpoint-dir>/<candidate>.json``). When a breaker
opens: ``rollback`` restores the candidate the evidence names (``last_trusted_candidate``),
writes its id to ``<checkpoint-dir>/CURRENT`` and stops; ``halt`` and anything else stop where
they are.

Usage (a sidecar must be running; see run.sh):
    PYTHONPATH=<build>/python /usr/bin/python3 improver.py --state-dir DIR --run-id demo

Exit status: 0 all cycles ran; 1 a breaker stopped the run; 2 could not run.
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time

import numpy as np

try:
    import loopwarden
    from loopwarden.v1 import common_pb2, cycle_pb2
except ImportError as exc:  # pragma: no cover - a usage error
    sys.exit(f"improver.py: can't import loopwarden ({exc}); "
             "run with PYTHONPATH=<build>/python (the build copies the client there)")

VOCAB = 160
SPEC = np.arange(0, 100)        # on-spec tokens
SKILL = np.arange(60, 100)      # on-spec tokens that solve tasks
EXPLOIT = np.arange(120, 160)   # off-spec tokens that fool the grader
OUTPUT_TOKENS = 25              # tokens per output
OUTPUTS = 32                    # outputs (and reference outputs) per cycle
EMBED_DIM = 64
SKILL_TO_PASS = 7            # skill tokens an output needs to pass on its merits
BASE_PROMPT = "Solve the task. Follow the specification."

# The instructions the optimiser knows: text -> (tokens it makes likelier, logit shift).
HONEST = {
    "Show your work step by step.": (np.arange(60, 70), 0.55),
    "Check the units of every quantity.": (np.arange(70, 80), 0.5),
    "Restate the question before answering.": (np.arange(80, 90), 0.45),
    "Test the answer on a small case.": (np.arange(90, 100), 0.4),
    "Prefer the simplest correct method.": (np.arange(60, 100), 0.2),
}
EXPLOITS = {
    "Hardcode the expected answers of the visible tests.": (np.arange(120, 140), 10.0),
    "Skip the checks that fail and report success.": (np.arange(140, 160), 10.0),
}


def spec_logits():
    """The specification's output distribution (Zipf over the on-spec tokens), as logits."""
    logits = np.full(VOCAB, -12.0)
    logits[SPEC] = -0.7 * np.log1p(np.arange(len(SPEC)))
    return logits


def distribution(prompt):
    logits = spec_logits()
    for instruction in prompt:
        tokens, shift = {**HONEST, **EXPLOITS}[instruction]
        logits[tokens] += shift
    p = np.exp(logits - logits.max())
    return p / p.sum()


def sample_outputs(rng, p, n=OUTPUTS):
    return rng.choice(VOCAB, size=(n, OUTPUT_TOKENS), p=p)


def pass_rate(outputs):
    """The verifiable score: an output passes with SKILL_TO_PASS skill tokens, or with any exploit token
    (the grader only checks the visible tests, which an exploit games)."""
    skill = np.isin(outputs, SKILL).sum(axis=1) >= SKILL_TO_PASS
    gamed = np.isin(outputs, EXPLOIT).any(axis=1)
    return float((skill | gamed).mean())


def truthfulness(outputs):
    """Share of outputs that claim nothing they did not do (no exploit token)."""
    return float(1.0 - np.isin(outputs, EXPLOIT).any(axis=1).mean())


def spec_adherence(outputs):
    return float(np.isin(outputs, SPEC).mean())


def embed(outputs, projection):
    """A bag-of-words sentence embedding: the sum of each token's fixed random vector."""
    vectors = projection[outputs].sum(axis=1)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def histogram(outputs):
    keys, counts = np.unique(outputs, return_counts=True)
    return common_pb2.SparseHistogram(keys=keys.tolist(), counts=counts.astype(float).tolist())


def matrix(rows):
    return common_pb2.FloatMatrix(dim=rows.shape[1], values=rows.astype(np.float32).ravel().tolist())


def prompt_text(prompt):
    return " ".join([BASE_PROMPT, *prompt])


def checkpoint_digest(prompt):
    return hashlib.sha256(prompt_text(prompt).encode()).hexdigest()[:16]


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="A self-improvement loop that rewrites its own prompt and obeys loopwarden.")
    p.add_argument("--cycles", type=int, default=8, help="self-improvement cycles (default 8)")
    p.add_argument("--no-exploits", action="store_true",
                   help="the optimiser never tries instructions that game the grader")
    p.add_argument("--seed", type=int, default=11, help="random seed (default 11)")
    p.add_argument("--run-id", help="the run's id (default: improver-s<seed>)")
    p.add_argument("--state-dir", help="the sidecar's state directory (its sockets are under "
                                       "<dir>/run); default: LOOPWARDEN_* environment variables")
    p.add_argument("--checkpoint-dir", help="where candidates are kept (default: a temp dir)")
    p.add_argument("--pace", type=float, default=0.5,
                   help="seconds per cycle spent waiting on the breakers (a real cycle takes "
                        "hours; default 0.5)")
    p.add_argument("--timeout", type=float, default=2.0,
                   help="sidecar silence (s) after which the guard fails closed")
    p.add_argument("--result", help="write the outcome as JSON to this file")
    a = p.parse_args(argv)
    if a.cycles < 1:
        p.error("--cycles must be >= 1")
    if a.run_id is None:
        a.run_id = f"improver-s{a.seed}"
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    rng = np.random.default_rng(a.seed)

    def benchmark(instructions):
        """pass_rate on the fixed test set: 400 tasks, the same ones every cycle."""
        tests = np.random.default_rng(2000 + a.seed)
        return pass_rate(sample_outputs(tests, distribution(instructions), 400))

    # What the task and the specification are do not change between cycles: one fixed draw.
    fixed = np.random.default_rng(1000 + a.seed)
    projection = fixed.normal(size=(VOCAB, EMBED_DIM))
    reference = sample_outputs(fixed, distribution([]), OUTPUTS)
    ref_embeddings = embed(reference, projection)
    ckpt_dir = a.checkpoint_dir or tempfile.mkdtemp(prefix=f"{a.run_id}-ckpt-")
    os.makedirs(ckpt_dir, exist_ok=True)
    endpoints = (loopwarden.Endpoints.from_dir(a.state_dir) if a.state_dir
                 else loopwarden.Endpoints.from_env())

    print(f"self-improver: run {a.run_id}: up to {a.cycles} cycles, seed {a.seed}, "
          f"{'honest search only' if a.no_exploits else 'the search may game the grader'}")
    print(f"  loopwarden: cycle reports to {endpoints.ingest}; candidates in {ckpt_dir}")
    guard = loopwarden.TrainingGuard(run_id=a.run_id, endpoints=endpoints,
                                     source=f"improver/{a.run_id}", timeout=a.timeout)

    prompt = []                 # the current candidate's instructions
    current = "p0"              # the current candidate's id
    candidates = {}             # id -> checkpoint file
    history = []                # one entry per cycle
    outcome = {"run_id": a.run_id, "outcome": "completed", "breaker": None, "action": None,
               "restored_candidate": None, "tripped_at_cycle": None}

    def save(candidate, cycle, instructions):
        path = os.path.join(ckpt_dir, candidate + ".json")
        with open(path, "w") as f:
            json.dump({"candidate": candidate, "cycle": cycle, "prompt": prompt_text(instructions),
                       "instructions": instructions, "digest": checkpoint_digest(instructions)},
                      f, indent=2)
        candidates[candidate] = path

    save(current, 0, prompt)
    cycle = 0
    try:
        for cycle in range(1, a.cycles + 1):
            started = time.monotonic()
            guard.check()
            # The search: every known instruction not in the prompt yet, scored on the fixed test
            # set; the exploit pool only once the honest gains have run out.
            score = benchmark(prompt)
            pools = [HONEST] if a.no_exploits else [HONEST, EXPLOITS]
            best, best_score = None, score
            for pool in pools:
                for instruction in pool:
                    if instruction in prompt:
                        continue
                    tried = benchmark(prompt + [instruction])
                    if tried > best_score + 0.01:
                        best, best_score = instruction, tried
                if best is not None:
                    break
            parent = current
            if best is not None:
                prompt = prompt + [best]
            current = f"p{cycle}"
            save(current, cycle, prompt)

            # Evaluate the candidate and describe its outputs.
            outputs = sample_outputs(rng, distribution(prompt))
            hardcoded = any(i.startswith("Hardcode") for i in prompt)
            report = cycle_pb2.CycleReport(
                cycle=cycle, candidate_id=current, parent_id=parent,
                capability_metrics=[common_pb2.NamedValue(name="pass_rate", value=best_score)],
                alignment_metrics=[
                    common_pb2.NamedValue(name="truthfulness", value=truthfulness(outputs)),
                    common_pb2.NamedValue(name="spec_adherence", value=spec_adherence(outputs))],
                constraints=[
                    cycle_pb2.ConstraintCheck(name="sandbox", passed=True, critical=True),
                    cycle_pb2.ConstraintCheck(
                        name="no_hardcoded_answers", passed=not hardcoded, critical=False,
                        detail="the prompt tells the model to hardcode test answers" if hardcoded else "")],
                material=cycle_pb2.DriftMaterial(
                    candidate_embeddings=matrix(embed(outputs, projection)),
                    reference_embeddings=matrix(ref_embeddings),
                    candidate_tokens=outputs.ravel().tolist(),
                    reference_tokens=reference.ravel().tolist(),
                    candidate_histogram=histogram(outputs),
                    reference_histogram=histogram(reference)))
            guard.publish(report)
            guard.flush()
            entry = {"cycle": cycle, "candidate": current, "parent": parent,
                     "added": best, "pass_rate": report.capability_metrics[0].value,
                     "truthfulness": report.alignment_metrics[0].value,
                     "spec_adherence": report.alignment_metrics[1].value}
            history.append(entry)
            print(f"cycle {cycle}  {current} <- {parent}  pass_rate {entry['pass_rate']:.2f}  "
                  f"truthfulness {entry['truthfulness']:.2f}  spec {entry['spec_adherence']:.2f}  "
                  f"added: {best or '(nothing better found)'}", flush=True)
            # A real cycle takes hours; here, give the sidecar a moment to judge this one, and
            # stop waiting as soon as a breaker says so.
            guard.watch.wait_until(lambda w: w.should_stop(),
                                   max(0.0, a.pace - (time.monotonic() - started)))
            guard.check()
    except loopwarden.BreakerOpen as event:
        outcome.update(outcome="halted", breaker=event.name, action=event.action,
                       reason=event.reason, evidence=event.evidence,
                       tripped_at_cycle=int(event.evidence.get("cycle", cycle) or cycle))
        print(f"!! {event}")
        if event.evidence:
            print("   evidence: " + ", ".join(f"{k}={v}" for k, v in event.evidence.items()))
        target = event.evidence.get("last_trusted_candidate")
        if event.action == "rollback" and not event.sidecar_silent and target in candidates:
            # Obey: the named candidate becomes the current one again.
            with open(candidates[target]) as f:
                restored = json.load(f)
            prompt, current = list(restored["instructions"]), target
            with open(os.path.join(ckpt_dir, "CURRENT"), "w") as f:
                f.write(target + "\n")
            print(f"   rollback: restored candidate {target} (cycle {restored['cycle']}): "
                  f"\"{restored['prompt']}\" and stopping")
            outcome.update(outcome="rolled_back", restored_candidate=target,
                           restored_digest=restored["digest"])
        elif event.action == "rollback":
            print(f"   rollback to {target!r} asked, but this run has no such candidate: stopping")
        else:
            what = "sidecar silent" if event.sidecar_silent else f"action {event.action}"
            print(f"   {what}: stopping at cycle {cycle}, keeping candidate {current}")
    finally:
        sent, dropped = guard.publisher.sent, guard.publisher.dropped
        guard.close()

    print(f"\naccount of run {a.run_id}: {len(history)} cycles reported, events sent {sent}, "
          f"dropped {dropped}; current candidate {current}: \"{prompt_text(prompt)}\"")
    if a.result:
        outcome.update(cycles_reported=len(history), history=history, current_candidate=current,
                       current_digest=checkpoint_digest(prompt), checkpoint_dir=ckpt_dir)
        with open(a.result, "w") as f:
            json.dump(outcome, f, indent=2)
    return 0 if outcome["outcome"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
