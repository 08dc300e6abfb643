#!/bin/sh
# bench_views.sh - /ids?count=10000 in each view against decimal, through
# the real snowflaked on loopback.
#
#   One node, THREADS=1, pinned to SERVER_CPU; wrk -t1 -c$CONNS on
#   CLIENT_CPU, alternating rounds of decimal (format=number) and each view.
#   A request mints 10,000 IDs, which the layout's 4,096 IDs/ms makes last
#   at least 2.44 ms, so req/s is bound by the generator for every format.
#   The cost of a format is therefore shown as the server's CPU time per
#   request (utime + stime from /proc/PID/stat over the round, divided by
#   the requests wrk counted), and as its ratio to decimal (target <= 1.2).
#   Prints tables; never fails on a number.
#
#   ROUNDS=3 DURATION=5 sh bench/bench_views.sh     (make bench-views)
#   SNOWFLAKED=path  SERVER_CPU=0  CLIENT_CPU=1  CONNS=8
set -eu

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-8}
FORMATS=${FORMATS:-"number base32 hex base62 uuid string"}
BENCH=bench_views NEED="wrk taskset"
. "$(dirname "$0")/preamble.sh"
TCK=$(getconf CLK_TCK)

PORT=$(free_port)
MACHINE_ID=1 PORT=$PORT BIND=127.0.0.1 THREADS=1 MAX_BATCH=10000 \
  taskset -c "$SERVER_CPU" "$SNOWFLAKED" 2>"$DIR/sf.log" &
SF_PID=$!; PIDS="$SF_PID"
$PY - "$PORT" <<'PYEOF'
import sys, time, urllib.request
for _ in range(500):
    try:
        urllib.request.urlopen("http://127.0.0.1:%s/health" % sys.argv[1], timeout=1).read()
        sys.exit(0)
    except Exception:
        time.sleep(0.01)
sys.exit("bench_views.sh: snowflaked does not answer")
PYEOF

echo "== GET /ids?count=10000&format=F: snowflaked THREADS=1 (cpu $SERVER_CPU)," \
  "wrk -t1 -c$CONNS ${DURATION}s (cpu $CLIENT_CPU) x $ROUNDS rounds"
printf '%-6s %-8s %10s %12s %14s %8s\n' round format "req/s" "IDs/s" "cpu ms/req" non2xx
: > "$DIR/rounds"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  for f in $FORMATS; do
    url="http://127.0.0.1:$PORT/ids?count=10000&format=$f"
    c0=$(cpu_ticks "$SF_PID")
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url" \
      > "$DIR/wrk.out" 2>&1 || true
    c1=$(cpu_ticks "$SF_PID")
    awk -v f="$f" -v r="$r" -v dt="$((c1 - c0))" -v tck="$TCK" '
      /requests in/        { n = $1 }
      $1 == "Requests/sec:" { rps = $2 }
      /Non-2xx/            { bad = $NF }
      END {
        cpu = n > 0 ? dt * 1000 / tck / n : 0
        printf "%-6s %-8s %10.1f %12.0f %14.4f %8s\n", r, f, rps, rps * 10000, cpu, (bad == "" ? 0 : bad)
        printf "%s %s %s\n", f, rps, cpu > "/dev/stderr"
      }' "$DIR/wrk.out" 2>>"$DIR/rounds"
  done
  r=$((r + 1))
done
awk '
  { n[$1]++; rps[$1] += $2; cpu[$1] += $3; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
  END {
    base = cpu["number"] / n["number"]; brps = rps["number"] / n["number"]
    printf "\n%-8s %12s %14s %18s %16s\n", "format", "mean req/s", "cpu ms/req", "cpu ratio to dec", "req/s ratio"
    for (i = 1; i <= k; i++) {
      f = order[i]; c = cpu[f] / n[f]; q = rps[f] / n[f]
      printf "%-8s %12.1f %14.4f %18.3f %16.3f\n", f, q, c, c / base, brps / q
    }
    printf "base32 costs %.3fx decimal in server CPU per request (target <= 1.2)\n", cpu["base32"] / n["base32"] / base
  }' "$DIR/rounds"
