# Shared by the examples' run.sh scripts (sourced, not run): the build checks, the messages, and a
# `loopwarden serve` in the background that is stopped however the script ends.
#
# Set before sourcing:
#   build    the build tree, an absolute path (bin/loopwarden, python/)
#   config   the demo's config file, or "" for the daemon's embedded default configuration
#   demo     optional: the name in "<demo> failed: ..." (default "demo")
# Then, in the script:
#   require_build [python]      exit 2 unless the build has the binary (and the Python client)
#   state=$(mktemp -d ...)      the state directory: short, since ipc paths are limited to ~100 bytes
#   out=...                     where serve.log goes
#   start_daemon [serve options...]   start it and wait until its control socket answers
#   stop_daemon                 SIGTERM, 5 s, then SIGKILL; also run on exit
#   on_exit() { ... }           optional: the script's own cleanup, run on exit before the daemon
#                               stops and the state directory is removed

bin="$build/bin/loopwarden"
py=/usr/bin/python3
export PYTHONPATH="$build/python${PYTHONPATH:+:$PYTHONPATH}"
config_args=()
[[ -z ${config:-} ]] || config_args=(--config "$config")

bold=$(tput bold 2>/dev/null || true); plain=$(tput sgr0 2>/dev/null || true)
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
fail() { printf '\n%s%s failed: %s%s\n' "$bold" "${demo:-demo}" "$*" "$plain" >&2; exit 1; }

# loopwarden COMMAND... against this demo's daemon (control commands wait up to 2 s for an answer).
lw() { "$bin" "$@" "${config_args[@]}" --state-dir "$state" --timeout-ms 2000; }

require_build() {
  [[ -x $bin ]] || { echo "run.sh: no $bin; build first (make build)" >&2; exit 2; }
  if [[ ${1:-} = python ]] && [[ ! -f $build/python/loopwarden/__init__.py ]]; then
    echo "run.sh: no $build/python/loopwarden; build first (make build)" >&2
    exit 2
  fi
}

# How long the daemon may take to answer at start. Generous: CI machines can be loaded, and a
# slow start is not what the demos are about.
ready_seconds=${LOOPWARDEN_DEMO_READY_SECONDS:-20}

daemon=""
start_daemon() {
  "$bin" serve "${config_args[@]}" --state-dir "$state" "$@" >"$out/serve.log" 2>&1 &
  daemon=$!
  local deadline=$((SECONDS + ready_seconds))
  while ((SECONDS < deadline)); do
    kill -0 "$daemon" 2>/dev/null || { cat "$out/serve.log" >&2; fail "loopwarden serve exited at start"; }
    if "$bin" status "${config_args[@]}" --state-dir "$state" --timeout-ms 300 >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  cat "$out/serve.log" >&2
  fail "loopwarden serve did not answer within $ready_seconds s"
}

stop_daemon() {
  [[ -n $daemon ]] || return 0
  if kill -0 "$daemon" 2>/dev/null; then
    kill -TERM "$daemon" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$daemon" 2>/dev/null; then
      echo "   the daemon did not stop within 5 s; killing it" >&2
      kill -KILL "$daemon" 2>/dev/null || true
    fi
  fi
  wait "$daemon" 2>/dev/null || true
  daemon=""
}

demo_cleanup() {
  if declare -F on_exit >/dev/null; then on_exit || true; fi
  stop_daemon
  [[ -z ${state:-} ]] || rm -rf "$state"
}
trap demo_cleanup EXIT
trap 'exit 130' INT TERM
