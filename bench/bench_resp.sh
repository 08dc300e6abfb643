#!/bin/sh
# bench_resp.sh - snowflaked's Redis listener against a real redis-server
# holding a key "id", side by side on loopback.
#
#   redis-benchmark -c 64 -P 16 GET id, and the same without pipelining,
#   against snowflaked (THREADS=1, minting an ID per GET) and redis-server
#   (one thread, answering a stored 18-digit value), alternating rounds,
#   both servers pinned to the same CPU and the client to another. Prints a
#   table and the ratios snowflaked/redis; never fails on a number.
#
#   ROUNDS=3 sh bench/bench_resp.sh        (make bench-resp)
#   N_PIPE=4000000 N_PLAIN=400000          (requests per round: about 3 s
#                                          each on a quiet 2-core machine)
#   SNOWFLAKED=path  SERVER_CPU=0  CLIENT_CPU=1
set -eu

ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
N_PIPE=${N_PIPE:-4000000}
N_PLAIN=${N_PLAIN:-400000}
BENCH=bench_resp NEED="redis-benchmark redis-server redis-cli taskset"
. "$(dirname "$0")/preamble.sh"

wait_ping() { # wait_ping PORT
  i=0
  until [ "$(redis-cli -p "$1" PING 2>/dev/null)" = PONG ]; do
    i=$((i + 1))
    [ $i -lt 500 ] || { echo "bench_resp.sh: nothing answers on $1" >&2; exit 1; }
    sleep 0.01
  done
}

SF_PORT=$(free_port)
SF_RPORT=$(free_port)
MACHINE_ID=1 PORT=$SF_PORT REDIS_PORT=$SF_RPORT BIND=127.0.0.1 THREADS=1 \
  taskset -c "$SERVER_CPU" "$SNOWFLAKED" 2>"$DIR/sf.log" &
PIDS="$PIDS $!"
RD_PORT=$(free_port)
taskset -c "$SERVER_CPU" redis-server --port "$RD_PORT" --bind 127.0.0.1 \
  --save "" --appendonly no --dir "$DIR" >"$DIR/redis.log" 2>&1 &
PIDS="$PIDS $!"
wait_ping "$SF_RPORT"
wait_ping "$RD_PORT"
# redis holds a value as long as the IDs snowflaked answers.
redis-cli -p "$RD_PORT" SET id "$(redis-cli -p "$SF_RPORT" GET id)" >/dev/null

# bench PORT N PIPELINE -> requests/s
bench() {
  taskset -c "$CLIENT_CPU" redis-benchmark -p "$1" -c "$CONNS" -n "$2" \
    -P "$3" --csv GET id 2>/dev/null |
    awk -F'"' '$2 == "GET id" { print $4 + 0 }'
}

echo "== redis-benchmark -c $CONNS GET id: snowflaked (THREADS=1) vs redis-server"
echo "   $ROUNDS rounds, alternating; servers on cpu $SERVER_CPU, client on cpu $CLIENT_CPU"
printf '%-6s %-9s %-11s %14s\n' round mode server "GET/s"
: > "$DIR/rounds"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  for mode in P16 P1; do
    if [ $mode = P16 ]; then n=$N_PIPE; p=16; else n=$N_PLAIN; p=1; fi
    for who in snowflaked redis; do
      if [ $who = snowflaked ]; then port=$SF_RPORT; else port=$RD_PORT; fi
      rps=$(bench "$port" "$n" "$p")
      printf '%-6s %-9s %-11s %14.0f\n' "$r" "-P $p" $who "${rps:-0}"
      echo "$mode $who ${rps:-0}" >> "$DIR/rounds"
    done
  done
  r=$((r + 1))
done
awk '
  { s[$1 " " $2] += $3; n[$1 " " $2]++ }
  END {
    printf "\n%-9s %14s %14s %8s\n", "mode", "snowflaked/s", "redis/s", "ratio"
    split("P16 P1", modes, " ")
    for (i = 1; i <= 2; i++) {
      m = modes[i]
      a = s[m " snowflaked"] / n[m " snowflaked"]; b = s[m " redis"] / n[m " redis"]
      printf "%-9s %14.0f %14.0f %8.3f\n", (m == "P16" ? "-P 16" : "no -P"), a, b, (b > 0 ? a / b : 0)
    }
    print "(target: ratio >= 1.0 in both modes)"
  }' "$DIR/rounds"
# Every GET minted an ID: the node counted them.
echo "snowflaked issued $(redis-cli -p "$SF_RPORT" INFO | tr -d '\r' |
  awk -F: '$1 == "ids_issued" { print $2 }') IDs"
