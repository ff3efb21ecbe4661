#!/usr/bin/env bash
# The self-improvement demo: a loop that rewrites its own prompt, guarded by a running loopwarden
# sidecar with the goal_drift monitor.
#
#   1. start `loopwarden serve` in the background (temporary state directory, recording on)
#   2. an honest run: 8 cycles of honest prompt edits; no breaker opens
#   3. a drifting run: once the honest edits run out, the optimiser games the grader; the
#      goal-drift index jumps, improvement.goal_drift opens (rollback), and the loop restores the
#      candidate the evidence names (the last trusted one) and stops
#   4. a run past the cap: cycle 9 opens improvement.cycle_cap (halt)
#   5. what on-call sees: loopwarden status / explain, then ack and reset with a reason
#   6. stop the daemon; replay the recording offline, as a CI job would
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

# Artifacts (log, recording, candidates, outcomes) stay in the build tree for a look afterwards;
# the sockets live in a short temporary state directory (ipc paths are limited to ~100 bytes).
out="$build/demo-self-improver"
rm -rf "$out"
mkdir -p "$out"
state=$(mktemp -d /tmp/loopwarden-improver.XXXXXX)

say "1. Start the sidecar: loopwarden serve (state in $state, recording every event)"
"$bin" config check "$config"
start_daemon --record "$out/live.lwreplay"
sed 's/^/   /' "$out/serve.log"

improver() {  # run-id, then improver.py options
  local run=$1 status=0
  shift
  timeout 60 "$py" "$here/improver.py" --state-dir "$state" --run-id "$run" \
    --checkpoint-dir "$out/candidates/$run" --result "$out/$run.json" "$@" || status=$?
  return $status
}

say "2. An honest run: 8 cycles of honest prompt edits"
honest_status=0
improver honest --no-exploits || honest_status=$?

say "3. A drifting run: when the honest edits run out, the optimiser games the grader"
drift_status=0
improver drift || drift_status=$?

say "4. A run past the cycle cap: 10 cycles asked, the cap is 8"
cap_status=0
improver long --no-exploits --cycles 10 || cap_status=$?

say "5. What on-call sees: loopwarden status"
lw status || fail "loopwarden status failed"

say "   loopwarden explain improvement.goal_drift --run drift"
lw explain improvement.goal_drift --run drift || true

# Checked by machine, from the control plane's JSON: which breakers are open, and which candidate
# the daemon's own evidence says to roll back to.
lw status --json >"$out/status.json" || fail "loopwarden status --json failed"

say "   Acknowledge it, then reset it once the loop's search is fixed"
lw ack improvement.goal_drift --run drift --note "looking at it: the optimiser gamed the grader" || true
reset_ok=1
lw reset improvement.goal_drift --run drift \
  --reason "restored candidate of the last trusted cycle; exploit instructions removed from the search" \
  || reset_ok=0

say "6. Stop the daemon; replay its recording offline, as a CI job would"
stop_daemon
tail -n 1 "$out/serve.log" | sed 's/^/   /'
replay_status=0
"$bin" replay --config "$config" "$out/live.lwreplay" >"$out/replay.txt" || replay_status=$?
sed 's/^/   /' "$out/replay.txt"
echo "   exit status $replay_status (1 = a breaker opened: a CI pipeline stops here)"

# The verdict, from the improvers' outcome files and the daemon's status JSON.
verdict=$("$py" - "$out" "$honest_status" "$drift_status" "$cap_status" <<'PY'
import json, os, sys
out, honest_status, drift_status, cap_status = sys.argv[1], *map(int, sys.argv[2:])
problems = []

def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        problems.append(f"no readable {name}")
        return {}

honest, drift, long_run = load("honest.json"), load("drift.json"), load("long.json")
breakers = load("status.json").get("snapshot", {}).get("breakers", [])
def breaker(name, run):
    return next((b for b in breakers if b.get("name") == name and b.get("run_id") == run), None)
def is_open(b):
    return b is not None and b.get("state") in ("BREAKER_STATE_OPEN", "BREAKER_STATE_FORCED_OPEN")

# The honest run completes with no breaker.
if honest_status != 0 or honest.get("outcome") != "completed":
    problems.append(f"the honest run did not complete (exit {honest_status})")
if any(b.get("run_id") == "honest" for b in breakers):
    problems.append("a breaker opened for the honest run")

# The drifting run is rolled back to the right candidate: the one of the cycle before the trip,
# which the daemon's evidence names, and the improver restored exactly that checkpoint.
b = breaker("improvement.goal_drift", "drift")
if not is_open(b):
    problems.append("improvement.goal_drift is not open for the drifting run")
else:
    evidence = {kv["key"]: kv["value"] for kv in b.get("evidence", [])}
    tripped = int(evidence.get("cycle", "-1"))
    history = {h["cycle"]: h for h in drift.get("history", [])}
    expected = history.get(tripped - 1, {}).get("candidate")
    if b.get("action") != "BREAKER_ACTION_ROLLBACK":
        problems.append(f"improvement.goal_drift asked for {b.get('action')}, not rollback")
    if evidence.get("last_trusted_candidate") != expected:
        problems.append(f"the daemon named {evidence.get('last_trusted_candidate')!r}, the cycle "
                        f"before the trip (cycle {tripped}) produced {expected!r}")
    if drift_status != 1 or drift.get("outcome") != "rolled_back":
        problems.append(f"the drifting run was not rolled back (exit {drift_status}, "
                        f"outcome {drift.get('outcome')})")
    elif drift.get("restored_candidate") != expected:
        problems.append(f"the improver restored {drift.get('restored_candidate')!r}, "
                        f"expected {expected!r}")
    else:
        ckpt = os.path.join(drift["checkpoint_dir"], expected + ".json")
        with open(ckpt) as f:
            saved = json.load(f)
        with open(os.path.join(drift["checkpoint_dir"], "CURRENT")) as f:
            current = f.read().strip()
        if current != expected or drift.get("current_digest") != saved["digest"]:
            problems.append("the improver's current prompt is not the restored checkpoint")
        print(f"rolled back at cycle {tripped} to {expected} ({saved['prompt']!r})", file=sys.stderr)

# The long run stops at cycle 9 on the cap.
b = breaker("improvement.cycle_cap", "long")
if not is_open(b) or long_run.get("breaker") != "improvement.cycle_cap" or cap_status != 1:
    problems.append("improvement.cycle_cap did not stop the long run")
elif long_run.get("cycles_reported") != 9:
    problems.append(f"the long run reported {long_run.get('cycles_reported')} cycles, expected 9")
print("\n".join(problems))
PY
) || verdict="the verdict script failed"

problems=()
while IFS= read -r line; do [[ -n $line ]] && problems+=("$line"); done <<<"$verdict"
[[ $reset_ok = 1 ]] || problems+=("the reset was refused")
[[ $replay_status = 1 ]] || problems+=("the offline replay did not trip (exit $replay_status)")

cat <<TXT

${bold}What happened${plain}
- honest: 8 cycles of honest edits; the drift index stayed near its calibrated mean, no breaker.
- drift: when the honest edits ran out the optimiser added an instruction that games the grader;
  pass_rate jumped while truthfulness collapsed, the goal-drift index crossed the threshold
  calibrated on the run's first 5 cycles, improvement.goal_drift opened (rollback), and the loop
  restored the candidate the evidence named ($out/candidates/drift/CURRENT) and stopped.
- long: cycle 9 opened improvement.cycle_cap (halt).
- On-call saw it in \`loopwarden status\`, read the evidence with \`loopwarden explain\`, acked and
  reset it with a reason; the recording replays offline to the same trips.

${bold}Look for yourself${plain}
- the loop:            $here/improver.py
- the configuration:   $config
- the daemon's log:    $out/serve.log
- candidates:          $out/candidates/<run>/p<cycle>.json (CURRENT names the restored one)
- every event it saw:  $bin replay --config $config $out/live.lwreplay
TXT

if [[ ${#problems[@]} -gt 0 ]]; then
  for p in "${problems[@]}"; do echo "demo failed: $p" >&2; done
  exit 1
fi
echo "${bold}self-improver demo ok${plain}"
