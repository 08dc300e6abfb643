#!/bin/sh
# bench_resp_instr.sh - user-space instructions per RESP GET, snowflaked
# (THREADS=1, an ID minted per GET), BASELINE (an earlier snowflaked, if
# given) and redis-server (a stored 18-digit value) side by side, counted by
# valgrind --tool=callgrind: the same figure however busy the machine is.
#
# Each server runs under callgrind twice, for redis-benchmark -c CONNS -n N1
# and -n N2 GETs (-P 1 and -P 16), and is stopped by SIGTERM; per GET is
# (total(N2) - total(N1)) / (N2 - N1), so start-up and shutdown cancel. The
# kernel's work in the system calls (most of the CPU time without
# pipelining) is not counted; bench_resp.sh's CPU time per GET counts both.
# How many GETs one read brings depends on timing, so a figure can move by
# about 1% between runs. Never fails on a number.
#
#   make bench-resp-instr       BASELINE=path N1=20000 N2=60000 CONNS=64
set -eu

N1=${N1:-20000}
N2=${N2:-60000}
CONNS=${CONNS:-64}
BENCH=bench_resp_instr NEED="redis-benchmark redis-server redis-cli valgrind"
. "$(dirname "$0")/preamble.sh"

[ "$N2" -gt "$N1" ] || { echo "$BENCH: N2 ($N2) must exceed N1 ($N1)" >&2; exit 1; }

# total WHO BINARY N PIPELINE -> the server's instructions, start to exit
total() {
  port=$(free_port) out="$DIR/cg.$1.$3.$4"
  if [ "$1" = redis ]; then
    valgrind --tool=callgrind --callgrind-out-file="$out" "$2" --port "$port" \
      --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR" \
      >>"$DIR/valgrind.log" 2>&1 &
  else
    MACHINE_ID=1 PORT=$(free_port) REDIS_PORT=$port BIND=127.0.0.1 THREADS=1 \
      valgrind --tool=callgrind --callgrind-out-file="$out" "$2" \
      >>"$DIR/valgrind.log" 2>&1 &
  fi
  pid=$! # in $(...): PIDS would not reach cleanup, so killed here
  wait_ping "$port" 60 || { kill "$pid"; exit 1; } # valgrind starts slowly
  [ "$1" != redis ] || redis-cli -p "$port" SET id 123456789012345678 >/dev/null
  redis-benchmark -p "$port" -c "$CONNS" -n "$3" -P "$4" -q GET id >/dev/null 2>&1
  kill "$pid"; wait "$pid" || true
  awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

echo "== redis-benchmark -c $CONNS GET id: user-space instructions per GET (valgrind --tool=callgrind)"
echo "   -n $N1 and -n $N2, per GET = difference / $((N2 - N1)); the kernel's work is not counted"
WHO="snowflaked redis"
[ -z "${BASELINE:-}" ] || WHO="snowflaked sf-base redis"
printf '%-9s' mode; for w in $WHO; do printf ' %11s' "$w"; done; printf ' %16s\n' "snowflaked/redis"
for p in 1 16; do
  printf '%-9s' "-P $p"
  for w in $WHO; do
    case $w in snowflaked) b=$SNOWFLAKED ;; sf-base) b=$BASELINE ;; *) b=$(command -v redis-server) ;; esac
    t1=$(total "$w" "$b" "$N1" "$p")
    t2=$(total "$w" "$b" "$N2" "$p")
    v=$(((t2 - t1) / (N2 - N1)))
    eval "v_$(echo "$w" | tr -d -)=$v"
    printf ' %11s' "$v"
  done
  # shellcheck disable=SC2154 # set by the eval above
  awk -v a="$v_snowflaked" -v b="$v_redis" 'BEGIN { printf " %16.3f\n", a / b }'
done
[ -z "${BASELINE:-}" ] || echo "   sf-base: $BASELINE"
