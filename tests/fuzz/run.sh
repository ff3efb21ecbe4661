#!/usr/bin/env bash
# Runs each libFuzzer target for a bounded time and prints what it did (`make fuzz`).
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]      default targets: every tests/fuzz/*_fuzz.cpp
#
# Each target starts from its committed seeds (tests/fuzz/corpus/<target>) plus what earlier runs
# found (BUILD_DIR/fuzz-corpus/<target>, which grows; the committed corpus is never written).
# Crashes, leaks, timeouts and out-of-memory inputs go to BUILD_DIR/fuzz-artifacts/<target>/ and
# make the script fail. Environment: FUZZ_JOBS (parallel workers per target, default 1),
# FUZZ_ARGS (extra libFuzzer flags), FUZZ_TIMEOUT (seconds one input may take, default 25; it is
# wall-clock time, so raise it on a loaded machine or the load reports timeouts).
set -uo pipefail

build=${1:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in "$here"/*_fuzz.cpp; do
    n=$(basename "$f" _fuzz.cpp)
    targets+=("$n")
  done
fi

# Per target: the largest input (bytes) and the dictionary, if any.
max_len_of() {
  case "$1" in
    envelope) echo 16384 ;;
    replay) echo 65536 ;;
    config) echo 8192 ;;
    control) echo 4096 ;;
    shell) echo 2048 ;;
    sql) echo 2048 ;;
    *) echo 4096 ;;
  esac
}

# Symbolized stack traces in sanitizer reports.
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
  export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi

failed=0
summary=()
for t in "${targets[@]}"; do
  bin="$build/bin/${t}_fuzz"
  if [ ! -x "$bin" ]; then
    echo "run.sh: $bin is not built (cmake --build --preset fuzz)" >&2
    exit 2
  fi
  corpus="$build/fuzz-corpus/$t"
  artifacts="$build/fuzz-artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  touch "$artifacts/.run-start"  # findings are the artifacts newer than this
  log="$build/fuzz-logs/$t.log"
  mkdir -p "$(dirname "$log")"
  args=(-max_total_time="$seconds" -max_len="$(max_len_of "$t")" -rss_limit_mb=2048 -timeout="${FUZZ_TIMEOUT:-25}"
        -print_final_stats=1 -artifact_prefix="$artifacts/")
  [ -f "$here/$t.dict" ] && args+=(-dict="$here/$t.dict")
  if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
    args+=(-fork="${FUZZ_JOBS}" -ignore_crashes=0)
  fi
  # shellcheck disable=SC2206
  extra=(${FUZZ_ARGS:-})
  echo "== $t: ${seconds}s, max_len $(max_len_of "$t"), log $log"
  start=$(date +%s)
  # libFuzzer stops itself at -max_total_time; the outer timeout only ends a run whose timeout
  # report itself hung (it symbolizes from a signal handler, which can deadlock on a lock the
  # hung input holds). The log then ends with the hung input, printed before the report.
  # Bash's `time` also gives the CPU seconds the target had: on a shared machine exec/s measures
  # the load as much as the target, executions per CPU second less so.
  TIMEFORMAT='%U %S'
  { time timeout --signal=KILL $((seconds + 600)) "$bin" "${args[@]}" "${extra[@]}" "$corpus" \
      "$here/corpus/$t" >"$log" 2>&1; } 2>"$log.cpu"
  rc=$?
  cpu=$(awk '{printf "%d", $1 + $2}' "$log.cpu" 2>/dev/null)
  if [ "$rc" -eq 0 ] && grep -q '^ALARM: working on the last Unit' "$log"; then rc=1; fi
  elapsed=$(( $(date +%s) - start ))
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | tail -1 | awk '{print $2}')
  rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | tail -1 | awk '{print $2}')
  rss=$(grep -oE 'stat::peak_rss_mb: *[0-9]+' "$log" | tail -1 | awk '{print $2}')
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | awk '{print $2}')
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | awk '{print $2}')
  corp=$(echo "$last" | grep -o 'corp: [0-9]*' | awk '{print $2}')
  line=$(printf '%-10s %6ss %6ss cpu %12s execs %8s exec/s  cov %6s  ft %7s  corpus %6s  rss %5s MB  exit %s' \
    "$t" "$elapsed" "${cpu:-?}" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${rss:-?}" \
    "$rc")
  echo "$line"
  summary+=("$line")
  if [ "$rc" -ne 0 ] || [ -n "$(find "$artifacts" -newer "$artifacts/.run-start" \
      \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \))" ]; then
    echo "run.sh: $t found a problem; see $log and $artifacts" >&2
    grep -E 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|runtime error|SUMMARY|^fuzz: ' "$log" |
      head -5 >&2
    failed=1
  fi
done

echo
echo "fuzz summary (target, wall seconds, CPU seconds, executions, exec/s, edge coverage, features,"
echo "corpus, rss):"
printf '%s\n' "${summary[@]}"
exit "$failed"
