#!/bin/sh
# layers.sh OBJ... - the server's layers, checked on the built objects of
# src/server/<layer>/: which object uses a symbol that another defines.
# Prints each breach and exits 1; silent and 0 when there is none.
#
#   - no circle: no two objects use each other, directly or around a loop
#     (tsort finds it);
#   - each layer uses only the layers below it (docs/development.md):
#
#       core/main.o  any (it puts the node together)
#       h2           http (the same routes), net, core
#       http, kv     net, core
#       net          core
#       core, fleet  nothing outside their own folder
#
# Header-only pieces (text.h, proto.h's limits) define no symbol, so only
# calls and data count, which is what a circle is made of.
set -eu
[ $# -gt 0 ] || { echo "usage: layers.sh OBJ..." >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for o in "$@"; do
  m=${o#*src/server/}
  m=${m%.o}
  nm -P --defined-only "$o" | awk -v m="$m" '$2 ~ /^[TDBR]$/ { print $1, m }' >>"$tmp/defs"
  nm -P --undefined-only "$o" | awk -v m="$m" '{ print $1, m }' >>"$tmp/uses"
done

# "user used" pairs between two different objects
awk 'FNR == NR { def[$1] = $2; next }
     ($1 in def) && def[$1] != $2 { print $2, def[$1] }' \
  "$tmp/defs" "$tmp/uses" | sort -u >"$tmp/edges"

status=0
if ! tsort "$tmp/edges" >/dev/null 2>"$tmp/loop"; then
  echo "layers: a circle between the server's objects:"
  sed -e 's/^tsort: //' -e 's/^.*: input contains/input contains/' \
    -e 's/^/  /' "$tmp/loop"
  status=1
fi

awk '
  function layer(m) { sub(/\/.*/, "", m); return m }
  BEGIN {
    ok["h2 http"] = ok["h2 net"] = ok["h2 core"] = 1
    ok["http net"] = ok["http core"] = 1
    ok["kv net"] = ok["kv core"] = 1
    ok["net core"] = 1
  }
  {
    a = layer($1); b = layer($2)
    if (a == b || $1 == "core/main" || ok[a " " b]) next
    printf "layers: %s uses %s: %s must not use %s\n", $1, $2, a, b
    bad = 1
  }
  END { exit bad }' "$tmp/edges" || status=1
exit $status
