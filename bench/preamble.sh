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
# on INT and TERM, kills PIDS and removes DIR. Defines free_port,
# cpu_ticks, wait_tcp, wait_ping and AWK_MEDIAN.
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

# cpu_ticks PID: user + system time of PID so far, in clock ticks (CLK_TCK).
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# wait_tcp PORT [SECONDS]: until 127.0.0.1:PORT accepts (10 s by default;
# more for a server under valgrind), else fail naming the port.
wait_tcp() {
  $PY - "$1" "${2:-10}" "$BENCH" <<'PYEOF'
import socket, sys, time
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.01)
sys.exit("%s: nothing answers on port %s" % (sys.argv[3], sys.argv[1]))
PYEOF
}

# wait_ping PORT [SECONDS]: until a RESP server on PORT answers PING (5 s by
# default), else return 1 naming the port.
wait_ping() {
  end=$(($(date +%s) + ${2:-5}))
  until [ "$(redis-cli -p "$1" PING 2>/dev/null)" = PONG ]; do
    [ "$(date +%s)" -lt "$end" ] || { echo "$BENCH: nothing answers on $1" >&2; return 1; }
    sleep 0.01
  done
}

# AWK_MEDIAN: an awk function to put in front of a program (awk
# "$AWK_MEDIAN"'...'): median(x, k) sorts x[1..k] in place (so x[1] and
# x[k] are then the lowest and highest) and returns its median.
AWK_MEDIAN='function median(x, k,   i, j, t) {
  for (i = 2; i <= k; i++)
    for (j = i; j > 1 && x[j - 1] > x[j]; j--) { t = x[j]; x[j] = x[j - 1]; x[j - 1] = t }
  return k % 2 ? x[(k + 1) / 2] : (x[k / 2] + x[k / 2 + 1]) / 2
}'
