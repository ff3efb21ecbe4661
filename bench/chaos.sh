#!/usr/bin/env bash
# A long crash-consistency campaign (issue 10, item 4; docs/reliability.md): the chaos test of
# tests/sidecar/chaos_integration_test.cpp with many more kills than CI runs. Each kill is a
# SIGKILL at a random moment of a daemon that is being driven with trips, acks, resets, gate
# requests and approvals; after each restart the test checks that nothing the daemon acknowledged
# was lost, that the audit chain verifies, and at the end that every committed alert reached the
# test's HTTP receiver at least once and can be deduplicated by its fingerprint. Not part of CI.
#
#   bench/chaos.sh BUILD_DIR [KILLS] [SEED]
#
# KILLS defaults to 500 (about 15 minutes on 2 shared cores: 200 took 326 s). SEED defaults to
# a random one; the test prints it first, and the same seed replays the same schedule of
# operations and kills (the machine's timing still varies).
# Extra knobs, passed through from the environment:
#   LOOPWARDEN_CHAOS_MAX_RUN_MS   the longest a daemon lives before its kill (default 1200)
#   LOOPWARDEN_CHAOS_PACE_MS      the longest random pause before each operation (default 5; 0:
#                                 as fast as the daemon answers)
# Exit status: the test's (0: no invariant violated).
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR [KILLS] [SEED]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 3 ]] || usage
BUILD=$(cd "$1" && pwd) || usage
KILLS=${2:-500}
[[ "$KILLS" =~ ^[0-9]+$ && "$KILLS" -gt 0 ]] || usage
TESTS=$BUILD/tests/sidecar_tests
[[ -x "$TESTS" ]] || { echo "missing $TESTS: build it first (cmake --build $BUILD)" >&2; exit 2; }

echo "== loopwarden chaos campaign"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "host:    $(uname -srm), nproc $(nproc), load average $(cut -d' ' -f1-3 /proc/loadavg)"
export LOOPWARDEN_CHAOS_ITERATIONS=$KILLS
if [[ $# -ge 3 ]]; then export LOOPWARDEN_CHAOS_SEED=$3; fi
# Only the campaign, not the table tests that check the checks.
exec "$TESTS" "chaos: SIGKILL at random points loses nothing the daemon acknowledged"
