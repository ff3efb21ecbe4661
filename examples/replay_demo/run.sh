#!/usr/bin/env bash
# The replay demo: records a training run whose loss diverges, replays it through the engine
# with two threshold monitors, and shows the breakers that trip. Usage: run.sh BUILD_DIR
set -euo pipefail
build=${1:-build/ci}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="$root/$build/bin/loopwarden"
out="$root/$build/demo"
mkdir -p "$out"

bold=$(tput bold 2>/dev/null || true); plain=$(tput sgr0 2>/dev/null || true)
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }

say "1. A recorded training run: 2 ranks, 170 steps; a bad learning-rate change at step 140"
# The bundled recording is made by make_recording.py; regenerating it gives the same bytes.
PYTHONPATH="$root/$build/python" /usr/bin/python3 "$here/make_recording.py" "$out/loss-divergence.lwreplay"
cmp -s "$out/loss-divergence.lwreplay" "$here/loss-divergence.lwreplay" \
  && echo "   examples/replay_demo/loss-divergence.lwreplay ($(wc -c <"$here/loss-divergence.lwreplay") bytes; regenerated identically)" \
  || echo "   note: the regenerated recording differs from the bundled one"

say "2. The configuration: a divergence guard (loss > 3 for 3 samples) and a NaN guard"
"$bin" config check "$here/loopwarden.yaml"

say "3. Replay it through the engine (loopwarden replay)"
set +e
"$bin" replay --config "$here/loopwarden.yaml" "$here/loss-divergence.lwreplay"
status=$?
set -e
echo "   exit status $status (1 = a breaker opened; a CI pipeline can stop on it)"

say "4. The same, as JSON lines for machines (first transition)"
"$bin" replay --config "$here/loopwarden.yaml" --json "$here/loss-divergence.lwreplay" | head -1 || true

cat <<TXT

What happened: the loss guard saw train/loss above 3.0 on three consecutive steps of one rank
and opened training.loss_divergence for run demo-run-7 with action rollback (the operator's
config overrides the monitor's default halt); when the loss became NaN, training.nonfinite_loss
opened too. Open breakers stay open until an operator resets them with a reason.
Try: $bin replay --help
TXT
[ "$status" -eq 1 ]
