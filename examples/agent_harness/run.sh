#!/usr/bin/env bash
# The agent demo: a scripted coding agent, guarded by a running loopwarden sidecar, falls into a
# failing-tool loop and is stopped at the loop, not before.
#
#   1. start `loopwarden serve` in the background (temporary state directory, recording on)
#   2. run the harness: normal work (read, grep, edit, re-run tests, retry an install with other
#      versions), then a broken migration tool called again and again; agent.runaway opens
#      (halt) at the third identical failing call and the harness stops
#   3. what on-call sees: loopwarden status / explain agent.runaway, then ack and reset
#   4. stop the daemon; replay the recording offline: the same trip at the same event
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

# Artifacts (log, recording, outcome) stay in the build tree for a look afterwards; the sockets
# live in a short temporary state directory (ipc paths are limited to ~100 bytes).
out="$build/demo-agent"
rm -rf "$out"
mkdir -p "$out"
state=$(mktemp -d /tmp/loopwarden-agent.XXXXXX)

say "1. Start the sidecar: loopwarden serve (state in $state, recording every event)"
"$bin" config check "$config"
# --http on any free port: another daemon (a parallel test, a demo) may hold the default 9464.
start_daemon --record "$out/live.lwreplay" --http 127.0.0.1:0

say "2. The agent works, then loops on a broken migration tool"
harness_status=0
timeout 60 "$py" "$here/harness.py" --state-dir "$state" --run-id agent-demo \
  --result "$out/outcome.json" || harness_status=$?
kill -0 "$daemon" 2>/dev/null || { cat "$out/serve.log" >&2; fail "loopwarden serve died during the run"; }
field() {  # a field of the harness's outcome ("missing" if there is none)
  "$py" -c "import json, sys; v = json.load(open(sys.argv[1])).get(sys.argv[2]); print('missing' if v is None else v)" \
    "$out/outcome.json" "$1" 2>/dev/null || echo missing
}

say "3. What on-call sees: loopwarden status"
lw status || fail "loopwarden status failed"
say "   loopwarden explain agent.runaway --run agent-demo"
lw explain agent.runaway --run agent-demo || true
lw status --json >"$out/status.json" || fail "loopwarden status --json failed"
runaway_state=$("$py" - "$out/status.json" <<'PY' || echo unreadable
import json, sys
snap = json.load(open(sys.argv[1])).get("snapshot", {}).get("breakers", [])
print(next((b.get("state", "") for b in snap
            if b.get("name") == "agent.runaway" and b.get("run_id") == "agent-demo"), "none"))
PY
)
say "   Acknowledge it, then reset it once the migration tool is fixed"
lw ack agent.runaway --run agent-demo --note "db unreachable; the agent kept retrying" || true
reset_ok=1
lw reset agent.runaway --run agent-demo \
  --reason "database back up; the harness now stops retrying a tool after one failure" \
  || reset_ok=0

say "4. Stop the daemon; replay its recording offline, as a CI job would"
stop_daemon
replay_status=0
"$bin" replay --config "$config" "$out/live.lwreplay" || replay_status=$?
echo "   exit status $replay_status (1 = a breaker opened)"

# The verdict, by machine: stopped by agent.runaway at the loop -- the third identical failing
# call -- and not before; at most one more turn went out while the breaker message travelled.
loop_start=$(field loop_starts_at_turn)
tripped=$(field tripped_turn)
stopped=$(field stopped_at_turn)
problems=()
[[ $harness_status = 1 && $(field outcome) = stopped ]] \
  || problems+=("the harness was not stopped (exit $harness_status, outcome $(field outcome))")
[[ $(field breaker) = agent.runaway && $(field guard) = repeated_failure ]] \
  || problems+=("stopped by $(field breaker)/$(field guard), expected agent.runaway/repeated_failure")
if [[ $loop_start =~ ^[0-9]+$ && $tripped =~ ^[0-9]+$ && $stopped =~ ^[0-9]+$ ]]; then
  ((tripped == loop_start + 2)) \
    || problems+=("tripped at turn $tripped, expected the loop's third call (turn $((loop_start + 2)))")
  ((stopped >= tripped && stopped <= tripped + 1)) \
    || problems+=("stopped after turn $stopped, expected $tripped (or one more in flight)")
else
  problems+=("the outcome lacks turns (loop $loop_start, tripped $tripped, stopped $stopped)")
fi
[[ $runaway_state = BREAKER_STATE_OPEN ]] \
  || problems+=("agent.runaway for agent-demo is '$runaway_state', expected open")
[[ $reset_ok = 1 ]] || problems+=("the reset was refused")
[[ $replay_status = 1 ]] || problems+=("the offline replay did not trip (exit $replay_status)")

cat <<TXT

${bold}What happened${plain}
- The agent did ordinary work first: read and grepped the code, ran the tests, re-ran them after
  an edit that did not help (the same failure, but the workspace had changed: not a loop), fixed
  the bug, retried an install with other versions until one worked.
- From turn $loop_start it called the broken migration tool again and again. agent_drift opened
  agent.runaway (halt) at turn $tripped, the third identical failing call with nothing changed,
  and the harness stopped after turn $stopped instead of burning the next $((20 - 3)) calls.
- Look for yourself: $out/outcome.json (the evidence), $out/serve.log,
  $bin replay --config $config $out/live.lwreplay
TXT

if [[ ${#problems[@]} -gt 0 ]]; then
  for p in "${problems[@]}"; do echo "demo failed: $p" >&2; done
  exit 1
fi
echo "${bold}agent demo ok${plain}"
