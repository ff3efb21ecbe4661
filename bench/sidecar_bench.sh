#!/usr/bin/env bash
# The Sidecar issue's benchmark: the real `loopwarden serve` fed by the real clients, on this
# machine, in one run. Prints each measurement as it goes and a summary table with the targets.
# docs/benchmarks.md explains every figure.
#
#   bench/sidecar_bench.sh BUILD_DIR [--quick]
#
# BUILD_DIR is a configured and built tree (bin/loopwarden, bench/sidecar_load,
# tests/fixtures/plugins/fixture_monitor.so, python/). --quick shrinks the counts (1 M events
# for the memory run instead of 10 M, fewer messages elsewhere) for a fast check.
# Figures, not a pass/fail test: the exit status is 0 unless a measurement could not be made.
# The machine is shared and noisy: compare ratios within one run.
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR [--quick]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
BUILD=$(cd "$1" && pwd) || usage
QUICK=0
if [[ $# -eq 2 ]]; then [[ "$2" == "--quick" ]] || usage; QUICK=1; fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# SIDECAR_BENCH_LOOPWARDEN: measure another daemon binary (e.g. a patched build) with the same
# bench programs and configs, for an A/B comparison.
LW=${SIDECAR_BENCH_LOOPWARDEN:-$BUILD/bin/loopwarden}
LOAD=$BUILD/bench/sidecar_load
FIXTURE=$BUILD/tests/fixtures/plugins/fixture_monitor.so
PY=/usr/bin/python3
for f in "$LW" "$LOAD"; do
  [[ -x "$f" ]] || { echo "missing $f: build it first (cmake --build $BUILD)" >&2; exit 2; }
done
[[ -f "$FIXTURE" ]] || { echo "missing $FIXTURE (build with LOOPWARDEN_BUILD_TESTS=ON)" >&2; exit 2; }

if [[ $QUICK -eq 1 ]]; then
  CEIL_MSGS=500000 INGEST_EVENTS=500000 RSS_EVENTS=1000000 RSS_AT=100000,1000000
  SAT_EVENTS=500000 LAT_SAMPLES=200 GATE_SAMPLES=10000 PY_SAMPLES=50000 PY_ROUNDS=3
else
  CEIL_MSGS=2000000 INGEST_EVENTS=2000000 RSS_EVENTS=10000000 RSS_AT=1000000,10000000
  SAT_EVENTS=1000000 LAT_SAMPLES=500 GATE_SAMPLES=20000 PY_SAMPLES=200000 PY_ROUNDS=5
fi
WINDOW=20000      # envelopes in flight (sent, not yet evaluated) during (b) and (f)
SAT_WINDOW=150000 # enough to fill the daemon's queues (ingest rcvhwm 4096 + event queue 16384 by default)
BACKGROUND=10000  # events/s of normal metrics (8 samples each) behind (c)

WORK=$(mktemp -d /tmp/lw-sidecar-bench-XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# Configs. overflow: block (the default, written out) so the daemon applies back-pressure
# instead of dropping: every event sent is evaluated.
{ "$LW" config default; printf 'transport:\n  overflow: block\n'; } >"$WORK/default.yaml"
{ cat "$ROOT/examples/replay_demo/loopwarden.yaml"; printf 'transport:\n  overflow: block\n'; } \
  >"$WORK/demo.yaml"
# (c) and (d): the default's threshold monitor plus the fixture gating monitor; probation 0 so a
# reset closes the breaker at once and the next latency sample trips a fresh transition.
cat >"$WORK/latency.yaml" <<EOF
version: 1
log_level: info
probation: 0
monitors:
  - name: nonfinite_loss
    plugin: threshold
    config: {metric: "*loss", non_finite: true, breaker: training.nonfinite_loss, action: halt}
  - name: fixture
    path: $FIXTURE
transport:
  overflow: block
EOF
# (c') the same with state_sync: normal (a trip survives the daemon's crash, not the machine's;
# no fsync before the transition is published).
{ cat "$WORK/latency.yaml"; printf 'state_sync: normal\n'; } >"$WORK/latency-normal.yaml"
for c in default demo latency latency-normal; do
  "$LW" config check "$WORK/$c.yaml" >/dev/null || { echo "config $c.yaml is invalid" >&2; exit 2; }
done

declare -A R
FAILED=0
# run PREFIX CMD...: runs a measurement, shows its lines indented, keeps its RESULT lines.
run() {
  local prefix=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  grep -v '^RESULT ' <<<"$out" | sed 's/^/    /' || true
  if [[ $rc -ne 0 ]]; then
    echo "    !! exit status $rc: $*"
    FAILED=1
  fi
  while read -r _ k v; do R["$prefix.$k"]=$v; done < <(grep '^RESULT ' <<<"$out" || true)
}
get() { echo "${R[$1]:-nan}"; }
# fmt VALUE PRINTF-FORMAT: formats a number, "n/a" when it is missing.
fmt() { if [[ "$1" == nan ]]; then echo "n/a"; else LC_ALL=C printf "$2" "$1"; fi; }
# met VALUE OP LIMIT: yes/NO/n/a.
met() {
  [[ "$1" == nan ]] && { echo "n/a"; return; }
  if awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { exit !((op == "<=") ? v <= l : v >= l) }'; then
    echo "yes"
  else echo "NO"; fi
}

echo "== loopwarden sidecar benchmark ($( [[ $QUICK -eq 1 ]] && echo quick || echo full ))"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "host:    $(uname -srm), nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "         $(grep -m1 -o 'hypervisor' /proc/cpuinfo >/dev/null && echo 'virtual machine' || echo 'bare metal'),"\
" load average $(cut -d' ' -f1-3 /proc/loadavg), MemTotal $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "build:   $BUILD ($(grep -m1 CMAKE_BUILD_TYPE: "$BUILD/CMakeCache.txt" 2>/dev/null | cut -d= -f2 || echo '?'))"
echo "libzmq:  $("$PY" -c 'import zmq; print(zmq.zmq_version())' 2>/dev/null || echo '?'),"\
" $("$LW" --version 2>/dev/null | head -1 || echo 'loopwarden ?')"
echo

echo "== (a) raw ZeroMQ ceiling: PUSH -> PULL over ipc, [topic][envelope], blocking sends, no parsing"
for b in 8 64; do
  run "a$b" "$LOAD" ceiling --batch $b --messages $CEIL_MSGS
done
echo "   for reference, a 230-byte payload (engine_dispatch_bench's 8-sample envelope, no sample times):"
run "a230" "$LOAD" ceiling --bytes 230 --messages $CEIL_MSGS
echo "   (a') the same transport fed by the real C++ publisher (metric() batching, serialization,"
echo "        non-blocking sends) into a raw PULL: (b)'s host side without the daemon:"
for b in 8 64; do
  run "ap$b" "$LOAD" ceiling --batch $b --messages $((b == 8 ? CEIL_MSGS : CEIL_MSGS / 4)) \
    --sender publisher
done
echo "   for reference, the same with the receiver parsing each envelope into a fresh message:"
run "a8p" "$LOAD" ceiling --batch 8 --messages $CEIL_MSGS --parse fresh
echo

echo "== (b) daemon ingest throughput: loopwarden serve + C++ publisher (PUSH), end to end"
for cfg in default demo; do
  for b in 8 64; do
    run "b.$cfg.$b" "$LOAD" ingest --loopwarden "$LW" --config "$WORK/$cfg.yaml" --batch $b \
      --events $INGEST_EVENTS --window $WINDOW --label "config $cfg, $b samples/envelope"
  done
done
echo

echo "== (c) event -> breaker latency at the host, background $BACKGROUND events/s"
echo "   (state_sync: full, the default: the transition is fsynced before it is published)"
run c "$LOAD" latency --loopwarden "$LW" --config "$WORK/latency.yaml" --samples $LAT_SAMPLES \
  --background $BACKGROUND
echo "   the same with state_sync: normal (no fsync between the trip and its publication):"
run cn "$LOAD" latency --loopwarden "$LW" --config "$WORK/latency-normal.yaml" \
  --samples $LAT_SAMPLES --background $BACKGROUND
echo

echo "== (d) gate round trip: gate_client -> daemon (fixture gating monitor) -> reply"
echo "   the floor: a raw DEALER -> ROUTER echo over ipc (no protobuf, no engine):"
run rtt "$LOAD" rtt --samples $GATE_SAMPLES
run d "$LOAD" gate --loopwarden "$LW" --config "$WORK/latency.yaml" --samples $GATE_SAMPLES
echo "   for reference, the same with $BACKGROUND events/s of background load:"
run dbg "$LOAD" gate --loopwarden "$LW" --config "$WORK/latency.yaml" --samples $GATE_SAMPLES \
  --background $BACKGROUND
echo

echo "== (e) Python publish cost (bench/python_publish_bench.py)"
pyout=$(PYTHONPATH="$BUILD/python" "$PY" "$ROOT/bench/python_publish_bench.py" \
  --samples $PY_SAMPLES --rounds $PY_ROUNDS 2>&1) || { echo "$pyout"; FAILED=1; }
sed 's/^/    /' <<<"$pyout"
R[e.us]=$(awk '/^metric\(\) amortised/ { for (i = 1; i <= NF; i++) if ($(i+1) == "us/sample") { print $i; exit } }' <<<"$pyout")
[[ -n "${R[e.us]}" ]] || R[e.us]=nan
echo

echo "== (f) daemon memory over $RSS_EVENTS events (default config, 8 samples/envelope, window $WINDOW)"
run f "$LOAD" ingest --loopwarden "$LW" --config "$WORK/default.yaml" --batch 8 \
  --events $RSS_EVENTS --window $WINDOW --rss-at $RSS_AT --label "memory run"
echo "   the same with the daemon's queues full (window $SAT_WINDOW: a host that outruns the daemon):"
run fsat "$LOAD" ingest --loopwarden "$LW" --config "$WORK/default.yaml" --batch 8 \
  --events $SAT_EVENTS --window $SAT_WINDOW --rss-at $((SAT_EVENTS / 2)),$SAT_EVENTS \
  --label "memory run, queues full"
echo

# ---- summary ---------------------------------------------------------------------------------
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "nan"; else print 100 * a / b }'; }
line() { printf '%-46s %-34s %-12s %s\n' "$1" "$2" "$3" "$4"; }
echo "== summary ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
line "figure" "measured" "target" "met"
line "------" "--------" "------" "---"
for b in 8 64; do
  line "(a) ZeroMQ ceiling, $(fmt "$(get a$b.payload_bytes)" %.0f)-byte envelope" \
    "$(fmt "$(get a$b.msgs_per_s)" %.0f) msg/s" "-" "-"
done
line "    (230-byte payload, reference)" "$(fmt "$(get a230.msgs_per_s)" %.0f) msg/s" "-" "-"
for b in 8 64; do
  line "(a') publisher-fed ceiling, $b samples/env" "$(fmt "$(get ap$b.msgs_per_s)" %.0f) msg/s" "-" "-"
done
for cfg in default demo; do
  for b in 8 64; do
    ev=$(get "b.$cfg.$b.events_per_s")
    p=$(pct "$ev" "$(get a$b.msgs_per_s)")
    line "(b) ingest, $cfg config, $b samples/env" \
      "$(fmt "$ev" %.0f) ev/s, $(fmt "$(get b.$cfg.$b.samples_per_s)" %.0f) samples/s" \
      "" ""
    line "      as % of the ceiling (same size)" "$(fmt "$p" %.1f) %" ">= 50 %" "$(met "$p" '>=' 50)"
    line "      as % of the publisher-fed ceiling (a')" "$(fmt "$(pct "$ev" "$(get ap$b.msgs_per_s)")" %.1f) %" "-" "-"
  done
done
line "(c) event -> breaker, p50 / p99" \
  "$(fmt "$(get c.p50_us)" %.0f) / $(fmt "$(get c.p99_us)" %.0f) us ($(fmt "$(get c.samples)" %.0f) samples)" \
  "p99 <= 1000 us" "$(met "$(get c.p99_us)" '<=' 1000)"
line "    (state_sync: normal)" \
  "$(fmt "$(get cn.p50_us)" %.0f) / $(fmt "$(get cn.p99_us)" %.0f) us ($(fmt "$(get cn.samples)" %.0f) samples)" \
  "p99 <= 1000 us" "$(met "$(get cn.p99_us)" '<=' 1000)"
line "(d) gate round trip, p50 / p99" \
  "$(fmt "$(get d.p50_us)" %.0f) / $(fmt "$(get d.p99_us)" %.0f) us ($(fmt "$(get d.samples)" %.0f) samples)" \
  "p99 <= 200 us" "$(met "$(get d.p99_us)" '<=' 200)"
line "    (with $BACKGROUND ev/s background)" \
  "$(fmt "$(get dbg.p50_us)" %.0f) / $(fmt "$(get dbg.p99_us)" %.0f) us" "-" "-"
line "    (floor: raw ZeroMQ echo)" \
  "$(fmt "$(get rtt.p50_us)" %.0f) / $(fmt "$(get rtt.p99_us)" %.0f) us" "-" "-"
line "(e) Python metric() per sample" "$(fmt "$(get e.us)" %.2f) us" "<= 5 us" "$(met "$(get e.us)" '<=' 5)"
IFS=, read -r -a points <<<"$RSS_AT"
rss="start $(fmt "$(get f.rss_start_mib)" %.1f)"
for n in "${points[@]}"; do rss+=", $(awk -v n="$n" 'BEGIN { printf (n >= 1e6 ? "%gM" : "%gk"), (n >= 1e6 ? n / 1e6 : n / 1e3) }') $(fmt "$(get "f.rss_at_${n}_mib")" %.1f)"; done
line "(f) daemon VmRSS (MiB)" "$rss" "" ""
hwm=$(get f.hwm_end_mib)
line "      VmHWM after the run" "$(fmt "$hwm" %.1f) MiB" "<= 64 MiB" "$(met "$hwm" '<=' 64)"
line "      queues full: VmRSS / VmHWM" \
  "$(fmt "$(get fsat.rss_end_mib)" %.1f) / $(fmt "$(get fsat.hwm_end_mib)" %.1f) MiB" "<= 64 MiB" \
  "$(met "$(get fsat.hwm_end_mib)" '<=' 64)"
[[ $FAILED -eq 0 ]] || { echo "some measurements failed (see above)"; exit 1; }
