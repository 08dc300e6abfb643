#!/bin/sh
# bench_etcd_load.sh - what one MACHINE_ID=auto node asks of etcd, per
# second, by request kind, read off etcd's own counters.
#
#   One etcd started here; each binary runs alone for DURATION seconds at
#   the default TTL and leap under a light /id load, and the difference of
#   etcd's grpc_server_msg_received_total (the JSON gateway forwards every
#   request to the gRPC server) is printed per method and per second.
#   Prints a table; never fails on a number.
#
#   DURATION=30 sh bench/bench_etcd_load.sh          (make bench-etcd-load)
#   SNOWFLAKED=path  BASELINE=path (an earlier build, measured the same way)
#   ETCD_LEASE_TTL, ETCD_MARK_LEAP_MS as for snowflaked
set -eu

DURATION=${DURATION:-30}
BENCH=bench_etcd_load
. "$(dirname "$0")/preamble.sh"
ETCD=$(command -v etcd || echo /usr/bin/etcd)
[ -x "$ETCD" ] || { echo "bench_etcd_load.sh: no etcd (sh scripts/deps.sh etcd)" >&2; exit 1; }

# counters URL -> "method count" lines of grpc_server_msg_received_total
counters() {
  $PY - "$1" <<'PYEOF'
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=5).read().decode()
for line in text.splitlines():
    m = re.match(r'grpc_server_msg_received_total\{.*grpc_method="(\w+)".*\} (\S+)', line)
    if m:
        print(m.group(1), int(float(m.group(2))))
PYEOF
}

# load PORT SECONDS: light /id traffic, so the mark keeps moving
load() {
  $PY - "$1" "$2" <<'PYEOF'
import sys, time, urllib.request
port, secs = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + secs
while time.monotonic() < end:
    try:
        urllib.request.urlopen("http://127.0.0.1:%s/ids?count=100" % port, timeout=2).read()
    except Exception:
        pass
    time.sleep(0.02)
PYEOF
}

EC_PORT=$(free_port); EP_PORT=$(free_port)
EURL="http://127.0.0.1:$EC_PORT"
"$ETCD" --name b --data-dir "$DIR/etcd" --listen-client-urls "$EURL" \
  --advertise-client-urls "$EURL" \
  --listen-peer-urls "http://127.0.0.1:$EP_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$EP_PORT" \
  --initial-cluster "b=http://127.0.0.1:$EP_PORT" >"$DIR/etcd.log" 2>&1 &
PIDS="$!"
for _ in $(seq 100); do counters "$EURL" >/dev/null 2>&1 && break; sleep 0.1; done

echo "== etcd requests per second of one MACHINE_ID=auto node, ${DURATION} s each," \
  "TTL ${ETCD_LEASE_TTL:-10} s, leap ${ETCD_MARK_LEAP_MS:-0} ms (0: one TTL)"
printf '%-10s %10s %10s %10s %10s %10s %10s\n' build Range Txn LeaseGrant \
  LeaseKeepAlive LeaseRevoke total
for who in current baseline; do
  bin=$SNOWFLAKED
  if [ $who = baseline ]; then
    [ -n "${BASELINE:-}" ] || continue
    bin=$BASELINE
  fi
  counters "$EURL" > "$DIR/before"
  port=$(free_port)
  MACHINE_ID=auto ETCD_ENDPOINTS="$EURL" ETCD_PREFIX="/bench/$who/" PORT=$port \
    BIND=127.0.0.1 THREADS=1 "$bin" 2>"$DIR/$who.log" &
  pid=$!
  load "$port" "$DURATION"
  kill "$pid"; wait "$pid" || true
  counters "$EURL" > "$DIR/after"
  awk -v who=$who -v secs="$DURATION" '
    FNR == NR { b[$1] = $2; next }
    { d[$1] = $2 - b[$1] }
    END {
      t = 0
      for (m in d) t += d[m]
      printf "%-10s %10.2f %10.2f %10.2f %10.2f %10.2f %10.2f\n", who,
        d["Range"] / secs, d["Txn"] / secs, d["LeaseGrant"] / secs,
        d["LeaseKeepAlive"] / secs, d["LeaseRevoke"] / secs, t / secs
    }' "$DIR/before" "$DIR/after"
done
echo "(one claim at start: a grant, a range, a txn per id tried, the first mark;"
echo " a revoke at stop; then keepalives every TTL/3 and a mark every leap/2)"
