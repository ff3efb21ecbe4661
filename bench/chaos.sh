#!/usr/bin/env bash
# The long crash-consistency campaign (issue 10, item 4; docs/reliability.md): the chaos test of
# the CI suite with many more kills. Each kill SIGKILLs the real daemon at a seeded random moment
# while a host and an operator drive it, restarts it, and checks that nothing it acknowledged was
# lost, that the audit chain verifies, and at the end that every alert was delivered.
#
#   bench/chaos.sh BUILD_DIR [ITERATIONS] [SEED]
#
# ITERATIONS defaults to 500 (roughly 15-25 minutes on a 2-core machine); SEED to a random one
# (printed, so that a failure reruns with the same schedule). Exit status 0 when no invariant
# was violated.
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR [ITERATIONS] [SEED]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 3 ]] || usage
BUILD=$(cd "$1" && pwd) || usage
TESTS=$BUILD/tests/sidecar_tests
[[ -x "$TESTS" ]] || { echo "missing $TESTS: build it first (cmake --build $BUILD)" >&2; exit 2; }

export LOOPWARDEN_CHAOS_ITERATIONS=${2:-500}
if [[ $# -ge 3 ]]; then export LOOPWARDEN_CHAOS_SEED=$3; fi
echo "== loopwarden chaos: $LOOPWARDEN_CHAOS_ITERATIONS kills, $(date -u +%Y-%m-%dT%H:%M:%SZ)," \
  "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$TESTS" "chaos: SIGKILL at random points loses nothing the daemon acknowledged"
