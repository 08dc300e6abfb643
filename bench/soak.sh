#!/bin/sh
# soak.sh - snowflaked under sustained load: wrk for DURATION (60) seconds at
# CONNS (256) connections on GET /id, with the server's RSS sampled every
# SAMPLE (5) seconds. Prints the error counts (non-2xx, socket errors), the
# server's own counters, and the RSS table with its drift. Never fails on a
# number; exits 1 only when something could not run.
#
#   sh bench/soak.sh                      (make soak)
#   DURATION=60 CONNS=256 WRK_THREADS=2 THREADS=2 SNOWFLAKED=path sh bench/soak.sh
set -eu

DURATION=${DURATION:-60}
CONNS=${CONNS:-256}
SAMPLE=${SAMPLE:-5}
WRK_THREADS=${WRK_THREADS:-2}
THREADS=${THREADS:-$(nproc)}
BENCH=soak NEED="wrk"
. "$(dirname "$0")/preamble.sh"
SPID=""

MACHINE_ID=1 PORT=0 BIND=127.0.0.1 THREADS=$THREADS \
  "$SNOWFLAKED" >"$DIR/server.log" 2>&1 &
SPID=$!; PIDS="$SPID"
PORT=""
i=0
while [ -z "$PORT" ] && [ $i -lt 500 ]; do
  PORT=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\),.*/\1/p' "$DIR/server.log")
  [ -n "$PORT" ] || { kill -0 "$SPID" 2>/dev/null || break; sleep 0.02; }
  i=$((i + 1))
done
[ -n "$PORT" ] || { echo "soak.sh: snowflaked did not start:" >&2;
  cat "$DIR/server.log" >&2; exit 1; }

rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$SPID/status"; }

metrics() { # metrics FILE: scrape /metrics into FILE
  $PY - "$PORT" "$1" <<'PYEOF'
import sys, urllib.request
port, out = sys.argv[1], sys.argv[2]
body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port,
                              timeout=10).read()
open(out, "wb").write(body)
PYEOF
}

metric() { # metric FILE NAME-PREFIX: sum of the matching samples
  awk -v p="$2" 'index($0, p) == 1 { s += $NF } END { printf "%d\n", s }' "$1"
}

metrics "$DIR/m0"
echo "0 $(rss_kb)" >"$DIR/rss"
echo "soak: snowflaked THREADS=$THREADS on 127.0.0.1:$PORT; wrk -t$WRK_THREADS" \
  "-c$CONNS -d${DURATION}s GET /id; RSS every ${SAMPLE}s"

wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency \
  "http://127.0.0.1:$PORT/id" >"$DIR/wrk" 2>&1 &
WPID=$!
t=0
while kill -0 "$WPID" 2>/dev/null; do
  sleep "$SAMPLE"
  t=$((t + SAMPLE))
  kill -0 "$WPID" 2>/dev/null || break
  echo "$t $(rss_kb)" >>"$DIR/rss"
done
wait "$WPID" || { echo "soak.sh: wrk failed:" >&2; cat "$DIR/wrk" >&2; exit 1; }
echo "end $(rss_kb)" >>"$DIR/rss"
metrics "$DIR/m1"
kill -0 "$SPID" 2>/dev/null || { echo "soak.sh: snowflaked died" >&2; exit 1; }

reqs=$(sed -n 's/^ *\([0-9][0-9]*\) requests in.*/\1/p' "$DIR/wrk")
rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$DIR/wrk")
non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$DIR/wrk")
sock=$(sed -n 's/^ *Socket errors: *\(.*\)/\1/p' "$DIR/wrk")
p50=$(awk '$1 == "50%" { print $2 }' "$DIR/wrk")
p99=$(awk '$1 == "99%" { print $2 }' "$DIR/wrk")
ids0=$(metric "$DIR/m0" "snowflake_ids_issued_total")
ids1=$(metric "$DIR/m1" "snowflake_ids_issued_total")
e0=$(metric "$DIR/m0" 'snowflake_requests_total{endpoint="id",status="5')
e1=$(metric "$DIR/m1" 'snowflake_requests_total{endpoint="id",status="5')
refused=$(metric "$DIR/m1" "snowflake_connections_refused_total")
cb=$(metric "$DIR/m1" "snowflake_clock_backwards_total")

echo
echo "wrk: requests and errors"
printf '  %-34s %s\n' "requests" "${reqs:-?}" \
  "requests/s" "${rps:-?}" \
  "latency p50 / p99" "${p50:-?} / ${p99:-?}" \
  "non-2xx responses" "${non2xx:-0}" \
  "socket errors" "${sock:-none}" \
  "server: IDs issued during the run" "$((ids1 - ids0))" \
  "server: /id answered 5xx" "$((e1 - e0))" \
  "server: connections refused" "$refused" \
  "server: clock steps back seen" "$cb"
if [ -n "$reqs" ] && [ "$reqs" -gt 0 ]; then
  # Slightly above 1: requests in flight when wrk stopped got IDs too.
  printf '  %-34s %s\n' "IDs issued / wrk responses" \
    "$(awk -v a="$((ids1 - ids0))" -v b="$reqs" 'BEGIN { printf "%.4f", a / b }')"
fi

echo
echo "snowflaked VmRSS (MB) over the run"
awk 'NR == 1 { base = $2 }
     { printf "  t=%-5s %8.1f MB  x%.3f of the idle start\n", \
         ($1 == "end" ? "end" : $1 "s"), $2 / 1024, $2 / base }' "$DIR/rss"
# Flat: after the first loaded sample (connections and buffers settle), the
# RSS moves by how much until the end?
# The "end" row (after wrk closed its connections) is left out.
awk '$1 == "end" { next }
     NR == 2 { first = $2; lo = $2; hi = $2; last = $2 }
     NR > 2 { if ($2 < lo) lo = $2; if ($2 > hi) hi = $2; last = $2 }
     END { if (first > 0)
             printf "  loaded: first %.1f MB, min %.1f, max %.1f, last %.1f: drift %+.1f MB (x%.3f)\n", \
               first / 1024, lo / 1024, hi / 1024, last / 1024, \
               (last - first) / 1024, last / first }' "$DIR/rss"
