#!/bin/sh
# bench_h2.sh - HTTP/2 and gRPC on loopback, side by side, alternating
# rounds, with h2load (nghttp2-client) as the one client:
#
#   1. gRPC snowflake.v1.Snowflake/Next, count 1 (h2load posting the framed
#      NextRequest): snowflaked THREADS=1 vs a grpc-go service doing the same
#      work (bench/grpc-go: grpc-go, the default layout and a mutex,
#      GOMAXPROCS=1), both pinned to one CPU.
#   2. GET /id over h2c (prior knowledge): snowflaked THREADS=1 vs nginx
#      (one worker, http2) answering a constant body of the same size.
#   3. Idle RSS of snowflaked (default THREADS) with no connection.
#
# h2load -t1 -cCONNS (64) -mSTREAMS (1) for DURATION s a round. Besides
# req/s, each round reports the server's CPU time per request (user + system,
# from /proc/PID/stat), which a busy shared machine disturbs far less than
# req/s, though a slow round still moves it by 10-40%: the ratio of CPU
# time is also given as the median of the rounds' ratios. Instructions per
# call, the same however busy the machine: bench_h2_instr.sh. Prints
# tables and ratios; never fails on a number.
#
#   ROUNDS=3 DURATION=10 sh bench/bench_h2.sh     (make bench-h2)
#   SNOWFLAKED=path  SERVER_CPU=0  CLIENT_CPU=1  STREAMS=1
#   BASELINE=path/to/an/older/snowflaked: only gRPC Next, this build against
#   that one, side by side (CPU per call before and after a change)
set -eu

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
STREAMS=${STREAMS:-1}
NEED="h2load taskset"
[ -n "${BASELINE:-}" ] || NEED="$NEED nginx go" # Go builds the grpc-go peer
BENCH=bench_h2
. "$(dirname "$0")/preamble.sh"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# run_h2load PID URL [h2load args] -> "req_per_s errors cpu_us_per_request"
run_h2load() {
  pid=$1 url=$2; shift 2
  t0=$(cpu_ticks "$pid")
  taskset -c "$CLIENT_CPU" h2load -t1 -c"$CONNS" -m"$STREAMS" \
    -D "$DURATION" "$@" "$url" > "$DIR/h2load.out" 2>&1 || true
  t1=$(cpu_ticks "$pid")
  awk -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '
    /^finished in/   { rps = $4 }
    /^requests:/     { done = $6; failed = $10 + $12 }
    /^status codes:/ { ok = $3; bad = $5 + $7 + $9 }
    END { printf "%.0f %d %.2f\n", rps, bad + failed + (ok == "" ? 1 : 0),
                 done ? ticks * 1e6 / hz / done : 0 }
  ' "$DIR/h2load.out"
}

# rounds A_NAME A_PID A_URL B_NAME B_PID B_URL [h2load args]: alternating
# rounds; the means and the ratios of A to B.
rounds() {
  a=$1 ap=$2 au=$3 b=$4 bp=$5 bu=$6; shift 6
  printf '%-6s %-11s %12s %8s %16s\n' round server "req/s" errors "CPU us/request"
  : > "$DIR/rounds"
  r=1
  while [ "$r" -le "$ROUNDS" ]; do
    for who in "$a" "$b"; do
      if [ "$who" = "$a" ]; then u=$au p=$ap; else u=$bu p=$bp; fi
      set -- $(run_h2load "$p" "$u" "$@") "$@"
      printf '%-6s %-11s %12s %8s %16s\n' "$r" "$who" "$1" "$2" "$3"
      echo "$who $1 $3 $r" >> "$DIR/rounds"
      shift 3
    done
    r=$((r + 1))
  done
  awk -v a="$a" -v b="$b" "$AWK_MEDIAN"'
    { n[$1]++; rps[$1] += $2; cpu[$1] += $3; c[$1, $4] = $3 }
    END {
      x = rps[a] / n[a]; y = rps[b] / n[b]
      cx = cpu[a] / n[a]; cy = cpu[b] / n[b]
      printf "mean req/s: %s %.0f, %s %.0f; ratio %s/%s: %.2f\n", a, x, b, y, a, b, x / y
      printf "mean CPU us/request: %s %.2f, %s %.2f; requests per CPU second, %s/%s: %.2f\n",
        a, cx, b, cy, a, b, cy / cx
      # CPU a request, a/b, in each round: one slow round moves the means,
      # not the median of these
      for (r = 1; r <= n[a]; r++)
        v[r] = c[b, r] > 0 ? c[a, r] / c[b, r] : 0
      m = median(v, n[a])
      printf "CPU us/request %s/%s: %.3f of the means, %.3f the median of %d rounds\n",
        a, b, cx / cy, m, n[a]
    }' "$DIR/rounds"
}

printf '\000\000\000\000\002\010\001' > "$DIR/next.bin" # NextRequest{count: 1}
NEXT=/snowflake.v1.Snowflake/Next

# ------------------------------------------------ gRPC Next against BASELINE
if [ -n "${BASELINE:-}" ]; then
  start_sf() { # start_sf BINARY PORT -> pid in SF_STARTED
    MACHINE_ID=1 PORT=$2 BIND=127.0.0.1 THREADS=1 \
      taskset -c "$SERVER_CPU" "$1" 2>>"$DIR/sf.log" &
    SF_STARTED=$!; PIDS="$PIDS $SF_STARTED"
  }
  A_PORT=$(free_port); start_sf "$SNOWFLAKED" "$A_PORT"; A_PID=$SF_STARTED
  B_PORT=$(free_port); start_sf "$BASELINE" "$B_PORT"; B_PID=$SF_STARTED
  wait_tcp "$A_PORT"; wait_tcp "$B_PORT"
  echo "== gRPC $NEXT count=1: this build vs BASELINE ($BASELINE), THREADS=1 each"
  echo "   h2load -t1 -c$CONNS -m$STREAMS ${DURATION}s x $ROUNDS rounds; servers on cpu $SERVER_CPU, h2load on cpu $CLIENT_CPU"
  rounds this "$A_PID" "http://127.0.0.1:$A_PORT$NEXT" \
    baseline "$B_PID" "http://127.0.0.1:$B_PORT$NEXT" \
    -d "$DIR/next.bin" -H "content-type: application/grpc" -H "te: trailers"
  exit 0
fi

# ------------------------------------------------------------- gRPC Next
( cd "$HERE/grpc-go" && go build -o "$DIR/grpc-go" . ) || {
  echo "bench_h2.sh: go build of bench/grpc-go failed" >&2; exit 1; }
SF_PORT=$(free_port)
MACHINE_ID=1 PORT=$SF_PORT BIND=127.0.0.1 THREADS=1 \
  taskset -c "$SERVER_CPU" "$SNOWFLAKED" 2>"$DIR/sf.log" &
SF_PID=$!; PIDS="$PIDS $SF_PID"
GO_PORT=$(free_port)
GOMAXPROCS=1 taskset -c "$SERVER_CPU" "$DIR/grpc-go" -addr "127.0.0.1:$GO_PORT" \
  > "$DIR/go.log" 2>&1 &
GO_PID=$!; PIDS="$PIDS $GO_PID"
wait_tcp "$SF_PORT"; wait_tcp "$GO_PORT"

echo "== gRPC $NEXT count=1: snowflaked THREADS=1 vs grpc-go (GOMAXPROCS=1)"
echo "   h2load -t1 -c$CONNS -m$STREAMS ${DURATION}s x $ROUNDS rounds; servers on cpu $SERVER_CPU, h2load on cpu $CLIENT_CPU"
rounds snowflaked "$SF_PID" "http://127.0.0.1:$SF_PORT$NEXT" \
  grpc-go "$GO_PID" "http://127.0.0.1:$GO_PORT$NEXT" \
  -d "$DIR/next.bin" -H "content-type: application/grpc" -H "te: trailers"
ISSUED=$($PY -c 'import sys,urllib.request
for l in urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1]).read().decode().splitlines():
    if l.startswith("snowflake_ids_issued_total "): print(l.split()[1])' "$SF_PORT")
echo "(snowflaked issued $ISSUED IDs in all: one per call)"
kill "$SF_PID" "$GO_PID" 2>/dev/null || true
wait "$SF_PID" "$GO_PID" 2>/dev/null || true
PIDS=""

# ------------------------------------------------------------ /id over h2c
SF_PORT=$(free_port)
MACHINE_ID=1 PORT=$SF_PORT BIND=127.0.0.1 THREADS=1 \
  taskset -c "$SERVER_CPU" "$SNOWFLAKED" 2>"$DIR/sf.log" &
SF_PID=$!; PIDS="$SF_PID"
wait_tcp "$SF_PORT"
BODY=$($PY -c 'import sys,urllib.request; print(urllib.request.urlopen("http://127.0.0.1:%s/id" % sys.argv[1]).read().decode())' "$SF_PORT")
NG_PORT=$(free_port)
mkdir -p "$DIR/body"
sed -e "s|listen 127.0.0.1:@PORT@;|listen 127.0.0.1:@PORT@ http2;|" \
  -e "s|@PORT@|$NG_PORT|" -e "s|@DIR@|$DIR|g" -e "s|@BODY@|$BODY|" \
  "$HERE/nginx_const.conf.in" > "$DIR/nginx.conf"
taskset -c "$SERVER_CPU" "$NGINX" -p "$DIR" -c "$DIR/nginx.conf" 2>"$DIR/nginx.log" &
NG_PID=$!; PIDS="$PIDS $NG_PID"
wait_tcp "$NG_PORT"

echo
echo "== GET /id over h2c: snowflaked THREADS=1 vs nginx http2 return 200 (one worker)"
echo "   body ${#BODY} bytes; h2load -t1 -c$CONNS -m$STREAMS ${DURATION}s x $ROUNDS rounds"
rounds snowflaked "$SF_PID" "http://127.0.0.1:$SF_PORT/id" \
  nginx "$NG_PID" "http://127.0.0.1:$NG_PORT/id"
kill "$SF_PID" "$NG_PID" 2>/dev/null || true
wait "$SF_PID" "$NG_PID" 2>/dev/null || true
PIDS=""

# ---------------------------------------------------------------- idle RSS
SF_PORT=$(free_port)
MACHINE_ID=1 PORT=$SF_PORT BIND=127.0.0.1 "$SNOWFLAKED" 2>"$DIR/sf2.log" &
SF_PID=$!; PIDS="$SF_PID"
wait_tcp "$SF_PORT"
sleep 0.5
RSS_KB=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SF_PID/status")
echo
echo "== footprint: RSS idle $((RSS_KB / 1024)).$(( (RSS_KB % 1024) * 10 / 1024 )) MB ($RSS_KB kB, default THREADS)  (target < 4 MB)"
