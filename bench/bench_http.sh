#!/bin/sh
# bench_http.sh - snowflaked against nginx on loopback, side by side.
#
#   GET /id, THREADS=1, vs nginx (one worker) answering a constant JSON body
#   of the same size with `return 200`: wrk -t1 -c64 --latency, alternating
#   rounds. Then /ids?count=1000 with the default threads in IDs/s against
#   the layout's 4,096,000/s, the idle RSS, and the time to the first
#   /health answer. Prints tables; never fails on a number.
#
#   ROUNDS=3 DURATION=10 sh bench/bench_http.sh     (make bench-http)
#   SNOWFLAKED=path  SERVER_CPU=0  CLIENT_CPU=1     (taskset pinning)
#   sf-tls: a MACHINE_ID=auto node whose etcd speaks only TLS and wants a
#   client certificate (openssl makes them), when openssl is installed.
#   BASELINE=path  another snowflaked (an earlier commit's) as one more
#                  MACHINE_ID=auto row, sf-base, on the same etcd, in the same
#                  alternating rounds: the ratio sf-auto/sf-base
set -eu

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
BENCH=bench_http NEED="wrk nginx taskset"
. "$(dirname "$0")/preamble.sh"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

wait_port() { # wait_port PORT PATH
  $PY - "$1" "$2" <<'PYEOF'
import sys, time, urllib.request
port, path = sys.argv[1], sys.argv[2]
for _ in range(500):
    try:
        urllib.request.urlopen("http://127.0.0.1:%s%s" % (port, path), timeout=1).read()
        sys.exit(0)
    except Exception:
        time.sleep(0.01)
sys.exit("bench_http.sh: nothing answers on port %s" % port)
PYEOF
}

# run_wrk URL -> "req_per_s p99_ms"
run_wrk() {
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$1" \
    > "$DIR/wrk.out" 2>&1 || true
  awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v
    }
    $1 == "99%"          { p99 = ms($2) }
    $1 == "Requests/sec:" { rps = $2 }
    /Non-2xx/            { bad = $NF }
    END { printf "%.0f %.3f %s\n", rps, p99, (bad == "" ? 0 : bad) }
  ' "$DIR/wrk.out"
}

# ---------------------------------------------------------------- /id
SF_PORT=$(free_port)
MACHINE_ID=1 PORT=$SF_PORT BIND=127.0.0.1 THREADS=1 \
  taskset -c "$SERVER_CPU" "$SNOWFLAKED" 2>"$DIR/sf.log" &
SF_PID=$!; PIDS="$PIDS $SF_PID"
wait_port "$SF_PORT" /health

BODY=$($PY -c 'import sys,urllib.request; print(urllib.request.urlopen("http://127.0.0.1:%s/id" % sys.argv[1]).read().decode())' "$SF_PORT")
NG_PORT=$(free_port)
mkdir -p "$DIR/body"
sed -e "s|@PORT@|$NG_PORT|" -e "s|@DIR@|$DIR|g" -e "s|@BODY@|$BODY|" \
  "$HERE/nginx_const.conf.in" > "$DIR/nginx.conf"
taskset -c "$SERVER_CPU" "$NGINX" -p "$DIR" -c "$DIR/nginx.conf" \
  2>"$DIR/nginx.log" &
NG_PID=$!; PIDS="$PIDS $NG_PID"
wait_port "$NG_PORT" /

# The same /id with MACHINE_ID=auto (sf-auto), its id leased from an etcd
# started here, when etcd is installed: the mint's lease snapshots and the
# handover mark on the hot path.
ETCD=$(command -v etcd || echo /usr/bin/etcd)
AUTO=""
if [ -x "$ETCD" ]; then
  EC_PORT=$(free_port); EP_PORT=$(free_port)
  taskset -c "$CLIENT_CPU" "$ETCD" --name b --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$EC_PORT" \
    --advertise-client-urls "http://127.0.0.1:$EC_PORT" \
    --listen-peer-urls "http://127.0.0.1:$EP_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$EP_PORT" \
    --initial-cluster "b=http://127.0.0.1:$EP_PORT" >"$DIR/etcd.log" 2>&1 &
  ETCD_PID=$!; PIDS="$PIDS $ETCD_PID"
  wait_port "$EC_PORT" /health
  SFA_PORT=$(free_port)
  MACHINE_ID=auto ETCD_ENDPOINTS="http://127.0.0.1:$EC_PORT" PORT=$SFA_PORT \
    BIND=127.0.0.1 THREADS=1 taskset -c "$SERVER_CPU" "$SNOWFLAKED" \
    2>"$DIR/sfa.log" &
  SFA_PID=$!; PIDS="$PIDS $SFA_PID"
  wait_port "$SFA_PORT" /health
  AUTO=sf-auto
  if [ -n "${BASELINE:-}" ]; then
    SFB_PORT=$(free_port)
    MACHINE_ID=auto ETCD_ENDPOINTS="http://127.0.0.1:$EC_PORT" PORT=$SFB_PORT \
      BIND=127.0.0.1 THREADS=1 taskset -c "$SERVER_CPU" "$BASELINE" \
      2>"$DIR/sfb.log" &
    SFB_PID=$!; PIDS="$PIDS $SFB_PID"
    wait_port "$SFB_PORT" /health
    AUTO="$AUTO sf-base"
  fi
  # sf-tls: the same on a second etcd that speaks only TLS and wants a
  # client certificate (certificates made here with openssl).
  if command -v openssl >/dev/null 2>&1; then
    mkcert() { # mkcert NAME SUBJECT EXT: a key and a certificate the CA signs
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$DIR/$1.key" -out "$DIR/$1.csr" -subj "$2" 2>/dev/null
      printf '%b\n' "$3" > "$DIR/$1.ext"
      openssl x509 -req -in "$DIR/$1.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" \
        -CAcreateserial -days 2 -extfile "$DIR/$1.ext" -out "$DIR/$1.pem" 2>/dev/null
    }
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$DIR/ca.key" -out "$DIR/ca.pem" -days 2 -subj /CN=bench-ca \
      2>/dev/null
    mkcert server /CN=etcd "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth"
    mkcert client /O=snowflaked "extendedKeyUsage=clientAuth"
    ET_PORT=$(free_port); ETP_PORT=$(free_port)
    taskset -c "$CLIENT_CPU" "$ETCD" --name t --data-dir "$DIR/etcd-tls" \
      --listen-client-urls "https://127.0.0.1:$ET_PORT" \
      --advertise-client-urls "https://127.0.0.1:$ET_PORT" \
      --listen-peer-urls "http://127.0.0.1:$ETP_PORT" \
      --initial-advertise-peer-urls "http://127.0.0.1:$ETP_PORT" \
      --initial-cluster "t=http://127.0.0.1:$ETP_PORT" \
      --cert-file "$DIR/server.pem" --key-file "$DIR/server.key" \
      --client-cert-auth --trusted-ca-file "$DIR/ca.pem" >"$DIR/etcd-tls.log" 2>&1 &
    PIDS="$PIDS $!"
    SFT_PORT=$(free_port)
    MACHINE_ID=auto ETCD_ENDPOINTS="https://127.0.0.1:$ET_PORT" \
      ETCD_CACERT="$DIR/ca.pem" ETCD_CERT="$DIR/client.pem" \
      ETCD_KEY="$DIR/client.key" PORT=$SFT_PORT BIND=127.0.0.1 THREADS=1 \
      taskset -c "$SERVER_CPU" "$SNOWFLAKED" 2>"$DIR/sft.log" &
    PIDS="$PIDS $!"
    wait_port "$SFT_PORT" /id
    AUTO="$AUTO sf-tls"
  fi
else
  echo "(etcd not installed: no MACHINE_ID=auto row; sh scripts/deps.sh test)"
fi

echo "== GET /id: snowflaked THREADS=1 (fixed id; sf-auto: MACHINE_ID=auto)" \
  "vs nginx return 200 (one worker)"
echo "   body ${#BODY} bytes; wrk -t1 -c$CONNS ${DURATION}s x $ROUNDS rounds;" \
  "server on cpu $SERVER_CPU, wrk on cpu $CLIENT_CPU"
printf '%-6s %-11s %12s %10s %8s\n' round server "req/s" "p99 ms" non2xx
: > "$DIR/rounds"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  for who in snowflaked $AUTO nginx; do
    case $who in
      snowflaked) url="http://127.0.0.1:$SF_PORT/id" ;;
      sf-auto) url="http://127.0.0.1:$SFA_PORT/id" ;;
      sf-base) url="http://127.0.0.1:$SFB_PORT/id" ;;
      sf-tls) url="http://127.0.0.1:$SFT_PORT/id" ;;
      *) url="http://127.0.0.1:$NG_PORT/id" ;;
    esac
    set -- $(run_wrk "$url")
    printf '%-6s %-11s %12s %10s %8s\n' "$r" $who "$1" "$2" "$3"
    echo "$who $1 $2" >> "$DIR/rounds"
  done
  r=$((r + 1))
done
awk '
  { n[$1]++; rps[$1] += $2; if ($3 > p99[$1]) p99[$1] = $3 }
  END {
    s = rps["snowflaked"] / n["snowflaked"]; g = rps["nginx"] / n["nginx"]
    printf "\n%-11s %12s %14s\n", "server", "mean req/s", "worst p99 ms"
    printf "%-11s %12.0f %14.3f\n", "snowflaked", s, p99["snowflaked"]
    if (n["sf-auto"]) {
      a = rps["sf-auto"] / n["sf-auto"]
      printf "%-11s %12.0f %14.3f\n", "sf-auto", a, p99["sf-auto"]
    }
    if (n["sf-base"]) {
      b = rps["sf-base"] / n["sf-base"]
      printf "%-11s %12.0f %14.3f\n", "sf-base", b, p99["sf-base"]
    }
    if (n["sf-tls"]) {
      t = rps["sf-tls"] / n["sf-tls"]
      printf "%-11s %12.0f %14.3f\n", "sf-tls", t, p99["sf-tls"]
    }
    printf "%-11s %12.0f %14.3f\n", "nginx", g, p99["nginx"]
    printf "ratio snowflaked/nginx: %.3f  (target >= 0.95)\n", s / g
    if (n["sf-auto"])
      printf "ratio sf-auto/nginx: %.3f  (MACHINE_ID=auto)\n", a / g
    if (n["sf-tls"])
      printf "ratio sf-tls/sf-auto: %.3f  (etcd over TLS with a client certificate)\n", t / a
    if (n["sf-base"])
      printf "ratio sf-auto/sf-base: %.3f  (BASELINE=%s)\n", a / b, base
    printf "p99 at %d conns: %.3f ms  (target <= 1 ms)\n", conns, p99["snowflaked"]
  }' conns="$CONNS" base="${BASELINE:-}" "$DIR/rounds"
for p in $PIDS; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
PIDS=""

# ------------------------------------------- RSS idle, first /health
SF_PORT=$(free_port)
MACHINE_ID=1 PORT=$SF_PORT BIND=127.0.0.1 "$SNOWFLAKED" 2>"$DIR/sf2.log" &
SF_PID=$!; PIDS="$SF_PID"
wait_port "$SF_PORT" /health
sleep 0.5
RSS_KB=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SF_PID/status")
THREADS_DEFAULT=$(sed -n 's/.*threads=\([0-9]*\).*/\1/p' "$DIR/sf2.log")

# ------------------------------------------------ /ids?count=1000
set -- $(run_wrk "http://127.0.0.1:$SF_PORT/ids?count=1000")
IDS_RPS=$1
echo
echo "== GET /ids?count=1000, default THREADS=$THREADS_DEFAULT, wrk -t1 -c$CONNS ${DURATION}s"
awk -v r="$IDS_RPS" -v p="$2" 'BEGIN {
  ids = r * 1000
  printf "%.0f req/s = %.0f IDs/s = %.1f%% of 4,096,000  (target >= 90%%), p99 %.3f ms\n",
    r, ids, ids / 40960, p }'
kill "$SF_PID" 2>/dev/null || true
wait "$SF_PID" 2>/dev/null || true
PIDS=""

FIRST=$($PY - "$SNOWFLAKED" <<'PYEOF'
import os, socket, subprocess, sys, time
times = []
for _ in range(5):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    env = dict(os.environ, MACHINE_ID="1", PORT=str(port), BIND="127.0.0.1")
    t0 = time.monotonic()
    p = subprocess.Popen([sys.argv[1]], env=env, stderr=subprocess.DEVNULL)
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=1)
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            if c.recv(64).startswith(b"HTTP/1.1 200"):
                times.append((time.monotonic() - t0) * 1000)
                c.close()
                break
            c.close()
        except OSError:
            time.sleep(0.0005)
    p.terminate(); p.wait()
times.sort()
print("%.1f" % times[len(times) // 2])
PYEOF
)
echo
echo "== footprint"
echo "RSS idle: $((RSS_KB / 1024)).$(( (RSS_KB % 1024) * 10 / 1024 )) MB ($RSS_KB kB, THREADS=$THREADS_DEFAULT)  (target <= 8 MB)"
echo "first /health after exec: $FIRST ms (median of 5)  (target <= 50 ms)"
