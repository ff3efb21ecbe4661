#!/usr/bin/env bash
# The live demo: a real (small) recursive-training loop guarded by a running loopwarden sidecar.
#
#   1. start `loopwarden serve` in the background (temporary state directory, recording on)
#   2. train with 30 % real data mixed into every generation: healthy, no breaker opens
#   3. train on synthetic data only: the model collapses, training.collapse opens (rollback),
#      the trainer restores its last healthy checkpoint and stops
#   4. what on-call sees: loopwarden status / explain, then ack and reset with a reason
#   5. stop the daemon; replay the recording offline, as a CI job would
#
# Usage: run.sh BUILD_DIR   (a build tree with bin/loopwarden and python/; default build/ci)
# Exit status: 0 when the story happened as expected, 1 when it did not, 2 when it could not run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build/ci}
[[ $build = /* ]] || build="$root/$build"
config="$here/loopwarden.yaml"

source "$here/../lib/demo.sh"
require_build python

# Artifacts (log, recording, checkpoints, outcomes) stay in the build tree for a look afterwards;
# the sockets live in a short temporary state directory (ipc paths are limited to ~100 bytes).
out="$build/demo-live"
rm -rf "$out"
mkdir -p "$out"
state=$(mktemp -d /tmp/loopwarden-demo.XXXXXX)

started=$(date +%s.%N)
elapsed() { "$py" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$started" "$(date +%s.%N)"; }

say "1. Start the sidecar: loopwarden serve (state in $state, recording every event)"
"$bin" config check "$config"
start_daemon --record "$out/live.lwreplay" --http 127.0.0.1:0
sed 's/^/   /' "$out/serve.log"
http_port=$(sed -n 's/.*http endpoint on port \([0-9]*\).*/\1/p' "$out/serve.log" | head -n 1)
echo "   status page for on-call: http://127.0.0.1:${http_port:-?}/  (metrics: /metrics)"

trainer() {  # run-id real-share
  local status=0
  timeout 15 "$py" "$here/trainer.py" --state-dir "$state" --run-id "$1" --real-share "$2" \
    --checkpoint-dir "$out/checkpoints/$1" --result "$out/$1.json" || status=$?
  return $status
}
outcome() {  # run-id key: a field of the trainer's --result file ("missing" if there is none)
  "$py" -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" \
    "$out/$1.json" "$2" 2>/dev/null || echo missing
}

say "2. A healthy run: every generation trains on 30 % real data and 70 % of its own samples"
healthy_status=0
trainer healthy-real30 0.3 || healthy_status=$?

say "3. A collapsing run: synthetic data only (the model learns from its own outputs alone)"
collapse_status=0
trainer collapse-synthetic 0.0 || collapse_status=$?

say "4. What on-call sees: loopwarden status"
lw status || fail "loopwarden status failed"

say "   loopwarden explain training.collapse --run collapse-synthetic"
lw explain training.collapse --run collapse-synthetic || true

# Checked by machine, from the control plane's JSON: the collapse run's breaker is open, and the
# healthy run has none.
lw status --json >"$out/status.json" || fail "loopwarden status --json failed"
snapshot=$("$py" - "$out/status.json" <<'PY' || echo "unreadable 0"
import json, sys
snap = json.load(open(sys.argv[1])).get("snapshot", {}).get("breakers", [])
state = next((b.get("state", "") for b in snap
              if b.get("name") == "training.collapse" and b.get("run_id") == "collapse-synthetic"), "none")
healthy = sum(1 for b in snap if b.get("run_id") == "healthy-real30"
              and b.get("state") in ("BREAKER_STATE_OPEN", "BREAKER_STATE_FORCED_OPEN"))
print(state, healthy)
PY
)
read -r collapse_state healthy_open <<<"$snapshot"

say "   Acknowledge it (on-call is on it), then reset it once the cause is fixed"
lw ack training.collapse --run collapse-synthetic --note "looking at it: synthetic-only run" || true
reset_ok=1
lw reset training.collapse --run collapse-synthetic \
  --reason "rolled back to the last healthy checkpoint; the next run mixes in 30% real data" \
  || reset_ok=0
echo "   (half-open = probation: a new trip within 10 minutes re-opens it at once)"

say "   Everything on-call did is in the hash-chained audit log: loopwarden audit verify"
audit_ok=1
"$bin" audit verify --config "$config" --state-dir "$state" | sed 's/^/   /' || audit_ok=0

say "5. Stop the daemon; replay its recording offline, as a CI job would"
stop_daemon
tail -n 1 "$out/serve.log" | sed 's/^/   /'
replay_status=0
"$bin" replay --config "$config" "$out/live.lwreplay" || replay_status=$?
echo "   exit status $replay_status (1 = a breaker opened: a CI pipeline stops here)"

# The verdict.
problems=()
[[ $healthy_status = 0 && $(outcome healthy-real30 outcome) = completed ]] \
  || problems+=("the healthy run did not complete (exit $healthy_status)")
[[ $healthy_open = 0 ]] || problems+=("a breaker opened for the healthy run")
[[ $collapse_status = 1 && $(outcome collapse-synthetic outcome) = rolled_back ]] \
  || problems+=("the collapsing run was not rolled back (exit $collapse_status)")
[[ $collapse_state = BREAKER_STATE_OPEN ]] \
  || problems+=("training.collapse for collapse-synthetic is '$collapse_state', expected open")
[[ $reset_ok = 1 ]] || problems+=("the reset was refused")
[[ $audit_ok = 1 ]] || problems+=("the audit log did not verify")
[[ $replay_status = 1 ]] || problems+=("the offline replay did not trip (exit $replay_status)")

cat <<TXT

${bold}What happened${plain} ($(elapsed) s)
TXT
"$py" - "$out/healthy-real30.json" "$out/collapse-synthetic.json" <<'PY' || true
import json, sys
def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None
healthy, collapse = load(sys.argv[1]), load(sys.argv[2])
if healthy:
    ratios = [v["std_ratio"] for v in healthy["fitted"].values()]
    opened = ("no breaker opened" if healthy["outcome"] == "completed"
              else f"{healthy['breaker']} opened (unexpected)")
    print(f"- healthy-real30: {healthy['generations_trained']} generations with 30 % real data; the "
          f"fitted spread never fell\n  below {min(ratios):.2f} of generation 0's (the floor is "
          f"0.6; it ended at {ratios[-1]:.2f}), and {opened}.")
if collapse:
    f = collapse["fitted"]
    last = collapse["generations_trained"] - 1
    line = (f"- collapse-synthetic: trained on its own samples only, the model narrowed every "
            f"generation\n  (std ratio {f['1']['std_ratio']:.2f} at generation 1, "
            f"{f[str(last)]['std_ratio']:.2f} at generation {last}) while its training loss kept "
            f"improving.")
    print(line)
    if collapse["outcome"] == "rolled_back":
        g = collapse["restored_generation"]
        print(f"  After generation {last} the ratio had been below 0.6 twice in a row: collapse_guard "
              f"opened\n  {collapse['breaker']} (action {collapse['action']}), and the trainer "
              f"restored checkpoint gen-{g:03d}\n  (ratio {f[str(g)]['std_ratio']:.2f}, the last "
              f"generation above the floor) and stopped.")
    else:
        print(f"  It ended as '{collapse['outcome']}' (expected: rolled_back).")
PY
cat <<TXT
- On-call saw it in \`loopwarden status\`, read the evidence with \`loopwarden explain\`,
  acknowledged it and reset it with a reason: it is half-open now (probation). The pipeline
  cannot reset a breaker itself; the control socket is the operator's.
- The daemon recorded every event (serve --record); replaying the file offline trips the same
  breaker at the same event, which is how a CI job can stop a bad run.

${bold}Look for yourself${plain}
- the trainer:         $here/trainer.py (TrainingGuard: 3 lines)
- the configuration:   $config
- the daemon's log:    $out/serve.log
- checkpoints:         $out/checkpoints/<run>/gen-NNN.npz (CURRENT names the restored one)
- every event it saw:  $bin replay --config $config $out/live.lwreplay
- with a live daemon:  loopwarden status | explain training.collapse --run <run> |
                       ack ... | reset training.collapse --run <run> --reason "..."
TXT

if [[ ${#problems[@]} -gt 0 ]]; then
  for p in "${problems[@]}"; do echo "demo failed: $p" >&2; done
  exit 1
fi
echo "${bold}live demo ok${plain}"
