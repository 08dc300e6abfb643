#!/bin/sh
# bench_h2_instr.sh - instructions per gRPC Next call (count 1), this build
# and BASELINE side by side, counted by valgrind --tool=callgrind: the same
# figure however busy the machine is, where CPU time drifts with the load.
#
# For each build and each STREAMS (h2load -m) the server (THREADS=1) runs
# under callgrind twice, once for N1 calls and once for N2 (h2load -t1
# -cCONNS -nN), and is stopped by SIGTERM; instructions per call are
# (total(N2) - total(N1)) / (N2 - N1), so start-up, the CONNS connections'
# set-up and the shutdown cancel out. Counted: the server's user-space
# instructions only (its code, nghttp2, protobuf-c, libc). The system calls'
# kernel time, most of the CPU time at one stream per connection, is not;
# bench_h2.sh's CPU time per call from /proc (BASELINE=) counts both. How
# many requests one read brings still depends on timing (at STREAMS=10 a
# figure moves by up to 0.8% between runs), so each figure is the median of
# REPEAT runs. Prints a table and the ratio this/baseline; never fails on a
# number.
#
#   BASELINE=path/to/an/older/snowflaked make bench-h2-instr
#   N1=2000 N2=12000 CONNS=64 STREAMS_LIST="1 10" REPEAT=3 SNOWFLAKED=path
#   CG_KEEP=dir: keep the callgrind files there (callgrind_annotate FILE)
set -eu

N1=${N1:-2000}
N2=${N2:-12000}
CONNS=${CONNS:-64}
STREAMS_LIST=${STREAMS_LIST:-"1 10"}
REPEAT=${REPEAT:-3}
NEED="h2load valgrind"
BENCH=bench_h2_instr
. "$(dirname "$0")/preamble.sh"

[ "$N2" -gt "$N1" ] || { echo "$BENCH: N2 ($N2) must exceed N1 ($N1)" >&2; exit 1; }
printf '\000\000\000\000\002\010\001' > "$DIR/next.bin" # NextRequest{count: 1}
NEXT=/snowflake.v1.Snowflake/Next

# instr BINARY N STREAMS NAME -> the server's instructions, start to exit,
# serving N calls
instr() {
  port=$(free_port) out="$DIR/callgrind.$4.m$3.n$2"
  MACHINE_ID=1 PORT=$port BIND=127.0.0.1 THREADS=1 \
    valgrind --tool=callgrind --callgrind-out-file="$out" "$1" \
    2>>"$DIR/valgrind.log" &
  pid=$! # in $(...): PIDS would not reach cleanup, so killed here
  wait_tcp "$port" 60 # valgrind starts slowly
  h2load -t1 -c"$CONNS" -m"$3" -n"$2" -d "$DIR/next.bin" \
    -H "content-type: application/grpc" -H "te: trailers" \
    "http://127.0.0.1:$port$NEXT" > "$DIR/h2load.out" 2>&1 || true
  ok=$(awk '/^status codes:/ { print $3 }' "$DIR/h2load.out")
  [ "$ok" = "$2" ] || { echo "$BENCH: $1: $ok of $2 calls answered 2xx" >&2
    cat "$DIR/h2load.out" >&2; kill "$pid"; exit 1; }
  kill "$pid"; wait "$pid" || true
  [ -z "${CG_KEEP:-}" ] || { mkdir -p "$CG_KEEP"; cp "$out" "$CG_KEEP/"; }
  awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

# per_call BINARY STREAMS NAME -> instructions per call, the median of
# REPEAT runs
per_call() {
  : > "$DIR/runs"
  k=1
  while [ "$k" -le "$REPEAT" ]; do
    t1=$(instr "$1" "$N1" "$2" "$3")
    t2=$(instr "$1" "$N2" "$2" "$3")
    echo $(((t2 - t1) / (N2 - N1))) >> "$DIR/runs"
    k=$((k + 1))
  done
  awk "$AWK_MEDIAN"'{ v[NR] = $1 } END { printf "%d", median(v, NR) }' "$DIR/runs"
}

echo "== gRPC $NEXT count=1: user-space instructions per call (valgrind --tool=callgrind)"
echo "   h2load -t1 -c$CONNS -n$N1 and -n$N2, per call = difference / $((N2 - N1)), median of $REPEAT runs"
echo "   user-space instructions only: the kernel's work (system calls) is not counted"
printf '%-8s %14s %14s %10s\n' streams "this" baseline "this/base"
for m in $STREAMS_LIST; do
  a=$(per_call "$SNOWFLAKED" "$m" this)
  if [ -n "${BASELINE:-}" ]; then
    b=$(per_call "$BASELINE" "$m" baseline)
    printf '%-8s %14s %14s %10s\n' "$m" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", a / b }')"
  else
    printf '%-8s %14s %14s %10s\n' "$m" "$a" - -
  fi
done
[ -z "${BASELINE:-}" ] || echo "   baseline: $BASELINE"
