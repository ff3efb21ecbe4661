#!/usr/bin/env bash
# The delivery-pipeline demo: AI makes code generation eight times faster, human review does not,
# and loopwarden's review_bottleneck monitor pushes back.
#
#   1. start `loopwarden serve` in the background (temporary state directory, recording on)
#   2. run the simulated pipeline (60 hours in a few seconds): generation ramps up over hours
#      12-24, the review queue grows, pipeline.review_bottleneck opens with action throttle, and
#      the pipeline slows generation to the recommended rate in the breaker's evidence
#   3. what on-call sees: loopwarden status / explain, then ack and reset with a reason
#   4. stop the daemon; replay its recording offline, as a CI job would
#
# Usage: run.sh BUILD_DIR   (a build tree with bin/loopwarden and python/; default build/ci)
# Exit status: 0 when the story happened as expected, 1 when it did not, 2 when it could not run.
# The pipeline's account of what happened is in BUILD_DIR/demo-delivery/result.json.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build/ci}
[[ $build = /* ]] || build="$root/$build"
config="$here/loopwarden.yaml"
run_id=delivery-pipeline

source "$here/../lib/demo.sh"
require_build python

# Artifacts stay in the build tree; the sockets live in a short temporary state directory (ipc
# paths are limited to ~100 bytes).
out="$build/demo-delivery"
rm -rf "$out"
mkdir -p "$out"
state=$(mktemp -d /tmp/loopwarden-delivery.XXXXXX)

say "1. Start the sidecar: loopwarden serve (state in $state, recording every event)"
"$bin" config check "$config"
start_daemon --record "$out/live.lwreplay"

say "2. The pipeline: generation speeds up eightfold over hours 12-24; review capacity stays fixed"
pipeline_status=0
timeout 120 "$py" "$here/pipeline.py" --state-dir "$state" --run-id "$run_id" \
  --result "$out/result.json" || pipeline_status=$?

say "3. What on-call sees: loopwarden status"
lw status || fail "loopwarden status failed"
say "   loopwarden explain pipeline.review_bottleneck --run $run_id"
lw explain pipeline.review_bottleneck --run "$run_id" || true
lw status --json >"$out/status.json" || fail "loopwarden status --json failed"
breaker_state=$("$py" - "$out/status.json" "$run_id" <<'PY' || echo unreadable
import json, sys
snap = json.load(open(sys.argv[1])).get("snapshot", {}).get("breakers", [])
print(next((b.get("state", "") for b in snap if b.get("name") == "pipeline.review_bottleneck"
            and b.get("run_id") == sys.argv[2]), "none"))
PY
)
say "   Acknowledge it, then reset it once review capacity is back in line with generation"
lw ack pipeline.review_bottleneck --run "$run_id" --note "generation throttled; adding a reviewer" || true
reset_ok=1
lw reset pipeline.review_bottleneck --run "$run_id" \
  --reason "generation throttled to what review absorbs; a fourth reviewer joins tomorrow" || reset_ok=0

say "4. Stop the daemon; replay its recording offline, as a CI job would"
stop_daemon
replay_status=0
"$bin" replay --config "$config" --quiet "$out/live.lwreplay" || replay_status=$?
echo "   exit status $replay_status (1 = a breaker opened: a CI pipeline stops here)"

# The verdict, from the pipeline's own account (result.json): the throttle opened, the pipeline
# obeyed it, and the backlog stopped growing.
verdict=$("$py" - "$out/result.json" <<'PY' || echo "unreadable"
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except (OSError, ValueError) as e:
    print(f"no result ({e})")
    sys.exit(0)
problems = []
if not r.get("tripped"):
    problems.append("pipeline.review_bottleneck never opened")
else:
    if r.get("action") != "throttle":
        problems.append(f"the breaker's action is {r.get('action')}, not throttle")
    rec = r.get("recommended_rate_per_hour") or 0
    if not rec > 0:
        problems.append("no recommended generation rate in the evidence")
    elif r["generation_rate_after"] > 1.1 * rec:
        problems.append(f"generation stayed at {r['generation_rate_after']:.1f}/h, above the "
                        f"recommended {rec:.1f}/h")
    if r["evidence"].get("stage") != "review":
        problems.append(f"the breaker names stage {r['evidence'].get('stage')}, not review")
slope = r.get("backlog_slope_last_24h")
if slope is None or slope > 0.25:
    problems.append(f"the backlog did not stabilise (trend over the last 24 h: {slope})")
if r.get("backlog_final", 0) > r.get("backlog_peak", 0) / 2 and r.get("backlog_peak", 0) > 10:
    problems.append(f"the backlog ended at {r.get('backlog_final')}, not below half its peak "
                    f"{r.get('backlog_peak')}")
print("; ".join(problems) if problems else "ok")
PY
)
problems=()
[[ $pipeline_status = 0 ]] || problems+=("the pipeline exited with status $pipeline_status")
[[ $verdict = ok ]] || problems+=("$verdict")
[[ $breaker_state = BREAKER_STATE_OPEN ]] \
  || problems+=("pipeline.review_bottleneck for $run_id is '$breaker_state', expected open")
[[ $reset_ok = 1 ]] || problems+=("the reset was refused")
[[ $replay_status = 1 ]] || problems+=("the offline replay did not trip (exit $replay_status)")

cat <<TXT

${bold}Look for yourself${plain}
- the pipeline:        $here/pipeline.py (StageTiming records; BreakerWatch for the throttle)
- the configuration:   $config
- what happened:       $out/result.json (timeline: hour, generation/h, backlog, throttled)
- the daemon's log:    $out/serve.log
- every event it saw:  $bin replay --config $config $out/live.lwreplay
TXT
if [[ ${#problems[@]} -gt 0 ]]; then
  for p in "${problems[@]}"; do echo "demo failed: $p" >&2; done
  exit 1
fi
echo "${bold}delivery pipeline demo ok${plain}"
