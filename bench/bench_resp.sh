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
#   Besides GET/s, each round gives the server's CPU time per GET (user +
#   system from /proc/PID/stat, over the round): without pipelining one
#   redis-benchmark thread is the bottleneck (each server here sits near
#   half a CPU), so GET/s mostly measures the client and how the answers
#   pace it, while CPU per GET is what the server itself spends.
#
#   ROUNDS=3 sh bench/bench_resp.sh        (make bench-resp)
#   N_PIPE=4000000 N_PLAIN=400000          (requests per round: about 3 s
#                                          each on a quiet 2-core machine)
#   SNOWFLAKED=path  SERVER_CPU=0  CLIENT_CPU=1
#   BASELINE=path    an earlier snowflaked as one more server (sf-base) in
#                    the same rounds, with the ratio snowflaked/sf-base
set -eu

ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
N_PIPE=${N_PIPE:-4000000}
N_PLAIN=${N_PLAIN:-400000}
BENCH=bench_resp NEED="redis-benchmark redis-server redis-cli taskset"
. "$(dirname "$0")/preamble.sh"

SF_PORT=$(free_port)
SF_RPORT=$(free_port)
MACHINE_ID=1 PORT=$SF_PORT REDIS_PORT=$SF_RPORT BIND=127.0.0.1 THREADS=1 \
  taskset -c "$SERVER_CPU" "$SNOWFLAKED" 2>"$DIR/sf.log" &
PIDS="$PIDS $!"
SF_PID=$!
RD_PORT=$(free_port)
taskset -c "$SERVER_CPU" redis-server --port "$RD_PORT" --bind 127.0.0.1 \
  --save "" --appendonly no --dir "$DIR" >"$DIR/redis.log" 2>&1 &
PIDS="$PIDS $!"
RD_PID=$!
BASE_RPORT=
if [ -n "${BASELINE:-}" ]; then
  BASE_RPORT=$(free_port)
  MACHINE_ID=2 PORT=$(free_port) REDIS_PORT=$BASE_RPORT BIND=127.0.0.1 \
    THREADS=1 taskset -c "$SERVER_CPU" "$BASELINE" 2>"$DIR/base.log" &
  PIDS="$PIDS $!"
  BASE_PID=$!
  wait_ping "$BASE_RPORT"
fi
wait_ping "$SF_RPORT"
wait_ping "$RD_PORT"
# redis holds a value as long as the IDs snowflaked answers.
redis-cli -p "$RD_PORT" SET id "$(redis-cli -p "$SF_RPORT" GET id)" >/dev/null

HZ=$(getconf CLK_TCK)

# bench PORT N PIPELINE -> requests/s
bench() {
  taskset -c "$CLIENT_CPU" redis-benchmark -p "$1" -c "$CONNS" -n "$2" \
    -P "$3" --csv GET id 2>/dev/null |
    awk -F'"' '$2 == "GET id" { print $4 + 0 }'
}

echo "== redis-benchmark -c $CONNS GET id: snowflaked (THREADS=1) vs redis-server"
echo "   $ROUNDS rounds, alternating; servers on cpu $SERVER_CPU, client on cpu $CLIENT_CPU"
printf '%-6s %-9s %-11s %14s %14s\n' round mode server "GET/s" "server us/GET"
WHO="snowflaked redis"
[ -z "$BASE_RPORT" ] || WHO="snowflaked sf-base redis"
: > "$DIR/rounds"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  for mode in P16 P1; do
    if [ $mode = P16 ]; then n=$N_PIPE; p=16; else n=$N_PLAIN; p=1; fi
    for who in $WHO; do
      case $who in
      snowflaked) port=$SF_RPORT pid=$SF_PID ;;
      sf-base) port=$BASE_RPORT pid=$BASE_PID ;;
      *) port=$RD_PORT pid=$RD_PID ;;
      esac
      t0=$(cpu_ticks "$pid")
      rps=$(bench "$port" "$n" "$p")
      us=$(awk -v a="$t0" -v b="$(cpu_ticks "$pid")" -v n="$n" -v hz="$HZ" \
        'BEGIN { printf "%.3f", (b - a) * 1e6 / hz / n }')
      printf '%-6s %-9s %-11s %14.0f %14s\n' "$r" "-P $p" $who "${rps:-0}" "$us"
      echo "$mode $who ${rps:-0} $us" >> "$DIR/rounds"
    done
  done
  r=$((r + 1))
done
# Means over the rounds; the GET/s ratio also per round (its median, lowest
# and highest), since a round pairs the servers in time and one slow round
# moves the means.
awk -v base="${BASELINE:-}" "$AWK_MEDIAN"'
  { k = $1 " " $2; s[k] += $3; u[k] += $4; n[k]++
    r = $1 " " ++seen[k]; v[r " " $2] = $3; rounds[$1] = seen[k] }
  function m(a, k) { return n[k] ? a[k] / n[k] : 0 }
  # spread: the per-round GET/s ratios snowflaked/who, "median (lo-hi)".
  function spread(md, who,   i, k, x, med) {
    k = 0
    for (i = 1; i <= rounds[md]; i++)
      if (v[md " " i " " who]) x[++k] = v[md " " i " snowflaked"] / v[md " " i " " who]
    if (k == 0) return "-"
    med = median(x, k) # sorts x: lowest first
    return sprintf("%.3f (%.3f-%.3f)", med, x[1], x[k])
  }
  END {
    printf "\n%-7s %12s %12s %7s %26s %10s %12s\n", "mode", "snowflaked/s",
      "redis/s", "ratio", "per round: median (lo-hi)", "sf us/GET", "redis us/GET"
    split("P16 P1", modes, " ")
    for (i = 1; i <= 2; i++) {
      md = modes[i]; a = m(s, md " snowflaked"); b = m(s, md " redis")
      printf "%-7s %12.0f %12.0f %7.3f %26s %10.3f %12.3f\n",
        (md == "P16" ? "-P 16" : "no -P"), a, b, (b > 0 ? a / b : 0),
        spread(md, "redis"), m(u, md " snowflaked"), m(u, md " redis")
    }
    print "(target: GET/s ratio >= 1.0 in both modes; lower us/GET is better)"
    if (base == "") exit
    printf "\nagainst BASELINE=%s\n", base
    for (i = 1; i <= 2; i++) {
      md = modes[i]; a = m(s, md " snowflaked"); b = m(s, md " sf-base")
      printf "%-7s snowflaked/sf-base GET/s %.3f (per round %s), us/GET %.3f vs %.3f\n",
        (md == "P16" ? "-P 16" : "no -P"), (b > 0 ? a / b : 0),
        spread(md, "sf-base"), m(u, md " snowflaked"), m(u, md " sf-base")
    }
  }' "$DIR/rounds"
# Every GET minted an ID: the node counted them.
echo "snowflaked issued $(redis-cli -p "$SF_RPORT" INFO | tr -d '\r' |
  awk -F: '$1 == "ids_issued" { print $2 }') IDs"
