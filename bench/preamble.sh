# preamble.sh - what every bench script starts with. Sourced after the
# script's own settings (POSIX sh's "." takes no arguments):
#
#   BENCH=bench_http NEED="wrk nginx taskset"
#   . "$(dirname "$0")/preamble.sh"
#
# BENCH names the script in messages; each command in NEED must be found
# (on PATH or in /usr/sbin). Sets PY, NCPU, SERVER_CPU and CLIENT_CPU
# (taskset pinning, overridable), HERE (bench/), SNOWFLAKED (checked to
# exist), DIR (a temporary folder) and PIDS (processes to kill); at exit, or
# on INT and TERM, kills PIDS and removes DIR. Defines free_port.
SNOWFLAKED=${SNOWFLAKED:-build/snowflaked}
PY=${PYTHON:-/usr/bin/python3}
NCPU=$(nproc)
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-$((NCPU > 1 ? 1 : 0))}
HERE=$(cd "$(dirname "$0")" && pwd)

for t in ${NEED:-}; do
  command -v "$t" >/dev/null 2>&1 || [ -x "/usr/sbin/$t" ] || {
    echo "$BENCH: $t not found (sh scripts/deps.sh bench)" >&2; exit 1; }
done
[ -x "$SNOWFLAKED" ] || { echo "$BENCH: build $SNOWFLAKED first" >&2; exit 1; }

DIR=$(mktemp -d "/tmp/$BENCH.XXXXXX")
PIDS=""
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
