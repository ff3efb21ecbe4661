#!/usr/bin/env bash
# The soak run (issue 10, item 8; docs/reliability.md): the real `loopwarden serve` at a steady
# load for a long time, printing over time the daemon's RSS, its queue depths (the engine queue
# and every monitor's queue, the deepest of each interval's 1 s samples) and the event -> breaker
# latency, and saying at the end whether RSS stayed flat after warm-up: the lowest RSS of each
# interval after the first N (its floor) within a stated tolerance of the lowest floor. It also
# prints what the daemon logged about slow engine-thread steps and memory it returned.
# Not part of CI.
#
#   bench/soak.sh BUILD_DIR [--minutes M] [--rate EV_PER_S] [--interval S]
#                 [--warmup-intervals N] [--rss-tolerance-pct P] [--rss-tolerance-mib M]
#                 [--max-slope KIB_PER_MIN] [--stall-ms MS --stall-every-s S]
#                 [any other `sidecar_load soak` option]
#
# Defaults: 10 minutes, 2000 metrics envelopes/s (8 samples each) from 2 publishers, a trip (and
# an operator reset) every 500 ms, 20 gate requests/s, a row every 10 s; warm-up: the first fifth
# of the rows; flat when the floors after it are within max(10 % of the lowest, 2 MiB); the
# fitted slope is printed, and checked only with --max-slope KIB_PER_MIN. The daemon runs the
# default configuration (every bundled monitor) plus the fixture gating monitor, probation 0 (a
# reset closes at once), and saves the monitors' state every 10 s. --stall-ms MS --stall-every-s S
# adds a monitor that holds the engine thread MS ms per "hang" gate request and sends three of
# them every S s: an injected stall, to see that a backlog's memory comes back.
# Exit status 0 when RSS was flat and nothing failed, 1 otherwise.
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR [--minutes M] [sidecar_load soak options]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
BUILD=$(cd "$1" && pwd) || usage
shift

LW=${SOAK_LOOPWARDEN:-$BUILD/bin/loopwarden}
LOAD=$BUILD/bench/sidecar_load
FIXTURE=$BUILD/tests/fixtures/plugins/fixture_monitor.so
for f in "$LW" "$LOAD"; do
  [[ -x "$f" ]] || { echo "missing $f: build it first (cmake --build $BUILD)" >&2; exit 2; }
done
[[ -f "$FIXTURE" ]] || { echo "missing $FIXTURE (build with LOOPWARDEN_BUILD_TESTS=ON)" >&2; exit 2; }

# --stall-ms MS: add the hanging fixture monitor (each gate request naming "hang" holds the engine
# thread MS ms) so that sidecar_load's --stall-every-s can inject stalls; not passed on.
STALL_MS=0
ARGS=()
while [[ $# -gt 0 ]]; do
  if [[ $1 == --stall-ms && $# -ge 2 ]]; then
    STALL_MS=$2
    shift 2
  else
    ARGS+=("$1")
    shift
  fi
done
HANGING=$BUILD/tests/fixtures/plugins/hanging_monitor.so
if [[ $STALL_MS != 0 && ! -f $HANGING ]]; then
  echo "missing $HANGING (needed by --stall-ms)" >&2
  exit 2
fi

WORK=$(mktemp -d /tmp/lw-soak-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# The fixture monitor goes first in `monitors:` (wherever that section is in the default).
{
  STALLER=()
  [[ $STALL_MS == 0 ]] ||
    STALLER=(-e "/^monitors:/a\\  - {name: staller, path: \"$HANGING\", config: {hang_ms: $STALL_MS}}")
  "$LW" config default | sed -e 's/^probation: .*/probation: 0/' \
    -e "/^monitors:/a\\  - {name: fixture, path: \"$FIXTURE\"}" ${STALLER[@]+"${STALLER[@]}"}
  printf 'monitor_state_interval: 10s\n'
  printf 'transport:\n  overflow: block\n'
} >"$WORK/soak.yaml"
"$LW" config check "$WORK/soak.yaml" >/dev/null || { echo "soak.yaml is invalid" >&2; exit 2; }

echo "== loopwarden soak"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "host:    $(uname -srm), nproc $(nproc), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "daemon:  $("$LW" --version 2>/dev/null | head -1 || echo 'loopwarden ?'), monitors:" \
  "$(grep -cE '^  - (\{)?name:' "$WORK/soak.yaml")"
"$LOAD" soak --loopwarden "$LW" --config "$WORK/soak.yaml" ${ARGS[@]+"${ARGS[@]}"}
