#!/usr/bin/env bash
# Model collapse in real recursive training, caught by the bundled variance_collapse monitor at its
# default settings (the daemon runs its embedded default configuration: no config file).
#
#   1. start `loopwarden serve` (embedded default config, temporary state directory)
#   2. train a word trigram model recursively with the human text kept in every generation
#      (30 % of the training tokens): the distribution holds, no breaker opens
#   3. train on its own samples only: training.provenance opens at generation 1 (pause: too
#      little real data); on-call reads it and resets it, because this run is a deliberate
#      experiment; the trainer carries on until training.collapse opens (rollback): it restores
#      the last healthy generation named in the evidence and stops
#   4. what on-call sees: loopwarden explain training.collapse
#
# Usage: run.sh BUILD_DIR [GENERATIONS [counts|torch]]   (a build tree with bin/loopwarden and
#        python/; "torch" trains the PyTorch model of torch_trainer.py instead of counts, and
#        needs Debian's python3-torch: make example-pytorch)
# Exit status: 0 when both outcomes happened, 1 when they did not, 2 when it could not run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build/ci}
generations=${2:-12}
model=${3:-counts}
case $model in
  counts) script="$here/trainer.py"; limit=300; silence=2 ;;
  torch) script="$here/torch_trainer.py"; limit=3600; silence=10 ;;
  *) echo "run.sh: the model is counts or torch, not '$model'" >&2; exit 2 ;;
esac
[[ $build = /* ]] || build="$root/$build"

demo="ngram demo"
source "$here/../lib/demo.sh"
require_build python

out="$build/demo-ngram-$model"
rm -rf "$out"
mkdir -p "$out"
state=$(mktemp -d /tmp/loopwarden-ngram.XXXXXX)

trainer_pid=""
on_exit() {
  [[ -z $trainer_pid ]] || kill "$trainer_pid" 2>/dev/null || true
}

say "1. Start the sidecar with its embedded default configuration (state in $state)"
"$bin" config default | sed -n '/variance_collapse/,$p' | sed 's/^/   /'
start_daemon --http 127.0.0.1:0

trainer() {  # run-id real-share [more trainer options]
  local run=$1 share=$2
  shift 2
  timeout "$limit" "$py" "$script" --state-dir "$state" --run-id "$run" --real-share "$share" \
    --generations "$generations" --settle 1 --timeout "$silence" --checkpoint-dir "$out/checkpoints/$run" \
    --result "$out/$run.json" "$@"
}
field() {  # run-id python-expression-over-the-result: prints it ("missing" without a result)
  "$py" -c "import json, sys; r = json.load(open(sys.argv[1])); print($2)" "$out/$1.json" \
    2>/dev/null || echo missing
}
breaker_state() {  # breaker run: the breaker's state from the control plane ("none" if unknown)
  lw status --json 2>/dev/null | "$py" -c "
import json, sys
snap = json.load(sys.stdin).get('snapshot', {}).get('breakers', [])
print(next((b.get('state', '') for b in snap
            if b.get('name') == sys.argv[1] and b.get('run_id') == sys.argv[2]), 'none'))" "$1" "$2" \
    || echo unknown
}

say "2. Recursive training with the human text kept: 30 % of every generation's training tokens"
mixed_status=0
trainer ngram-real30 0.3 || mixed_status=$?

say "3. Recursive training on its own samples only"
trainer ngram-synthetic 0.0 --pause-timeout 120 &
trainer_pid=$!
# On-call: the provenance breaker opens first (generation 1 trained on 0 % real data).
provenance=none
for _ in $(seq $((limit * 5))); do
  provenance=$(breaker_state training.provenance ngram-synthetic)
  [[ $provenance = BREAKER_STATE_OPEN ]] && break
  kill -0 "$trainer_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ $provenance = BREAKER_STATE_OPEN ]]; then
  say "   on-call: training.provenance is open; explain it, then reset it (a deliberate experiment)"
  lw explain training.provenance --run ngram-synthetic | sed 's/^/   /' || true
  lw reset training.provenance --run ngram-synthetic \
    --reason "deliberate synthetic-only run: demonstrating model collapse" | sed 's/^/   /' || true
fi
synthetic_status=0
wait "$trainer_pid" || synthetic_status=$?
trainer_pid=""

say "4. What on-call sees: loopwarden explain training.collapse --run ngram-synthetic"
lw explain training.collapse --run ngram-synthetic | sed 's/^/   /' || true
collapse_state=$(breaker_state training.collapse ngram-synthetic)
mixed_collapse=$(breaker_state training.collapse ngram-real30)
mixed_provenance=$(breaker_state training.provenance ngram-real30)
stop_daemon

problems=()
[[ $mixed_status = 0 && $(field ngram-real30 "r['outcome']") = completed ]] \
  || problems+=("the mixed run did not complete (exit $mixed_status)")
[[ $mixed_collapse = none && $mixed_provenance = none ]] \
  || problems+=("a breaker opened for the mixed run ($mixed_collapse, $mixed_provenance)")
[[ $provenance = BREAKER_STATE_OPEN ]] \
  || problems+=("training.provenance did not open for the synthetic run ($provenance)")
[[ $synthetic_status = 1 && $(field ngram-synthetic "r['outcome']") = rolled_back ]] \
  || problems+=("the synthetic run was not rolled back (exit $synthetic_status)")
[[ $collapse_state = BREAKER_STATE_OPEN ]] \
  || problems+=("training.collapse for the synthetic run is '$collapse_state', expected open")
restored=$(field ngram-synthetic "r['restored_generation']")
named=$(field ngram-synthetic "r['evidence']['last_healthy_generation']")
[[ $restored != missing && $restored = "$named" ]] \
  || problems+=("restored generation $restored is not the evidence's last healthy one ($named)")

# Distinct 2-grams per 2-gram, relative to generation 0 (what the monitor compares).
cat <<TXT

${bold}What happened${plain} ($model model)
- ngram-real30: $(field ngram-real30 "len(r['generations'])") generations with the human text 30 % of each one's training
  tokens; distinct 2-grams per 2-gram never fell below $(field ngram-real30 "round(min(x['distinct_2_ratio'] for x in r['generations'].values()) / r['generations']['0']['distinct_2_ratio'], 2)") of generation 0's; no breaker opened.
- ngram-synthetic: trained on its own samples, training.collapse opened at generation $(field ngram-synthetic "r['evidence']['generation']")
  ($(field ngram-synthetic "r['evidence']['crossed']")); distinct 2-grams per 2-gram were then $(field ngram-synthetic "round(r['generations'][r['evidence']['generation']]['distinct_2_ratio'] / r['generations']['0']['distinct_2_ratio'], 2)") of generation 0's.
  The trainer restored checkpoint $(field ngram-synthetic "r['evidence']['last_healthy_checkpoint']"), the last healthy generation in the evidence, and stopped.
- Files: $out (serve.log, <run>.json, checkpoints/<run>/, CURRENT)
TXT

if [[ ${#problems[@]} -gt 0 ]]; then
  for p in "${problems[@]}"; do echo "ngram demo failed: $p" >&2; done
  exit 1
fi
echo "${bold}ngram collapse demo ok${plain}"
