#!/bin/sh
# sizes.sh FILE... - the size rules of src/: no C file over 600 lines, no
# function over 100 lines (the lines between the one that opens its body
# and the closing brace). Prints each breach and exits 1; silent and 0 when
# there is none. Braces are counted outside strings, characters and
# comments; a body opened at depth 0 on a line with a ')' is a function's.
set -eu
status=0
for f in "$@"; do
  n=$(wc -l <"$f")
  if [ "$n" -gt 600 ]; then
    echo "$f: $n lines (at most 600)"
    status=1
  fi
  awk -v f="$f" '
    {
      line = $0
      if (incomment) { if (sub(/.*\*\//, "", line)) incomment = 0; else next }
      gsub(/\\./, "", line)                 # escapes
      gsub(/"[^"]*"/, "\"\"", line)         # strings
      gsub(/\047[^\047]*\047/, "0", line)   # characters
      gsub(/\/\*.*\*\//, "", line)          # one-line comments
      sub(/\/\/.*/, "", line)
      if (sub(/\/\*.*/, "", line)) incomment = 1
      if (line ~ /^#/) next
      if (line ~ /\)/) lastparen = NR
      for (i = 1; i <= length(line); i++) {
        c = substr(line, i, 1)
        if (c == "{") {
          if (depth == 0 && lastparen >= NR - 3 && line !~ /=/) { start = NR; fn = $0 ~ /^[A-Za-z_]/ ? $0 : prev }
          depth++
        } else if (c == "}") {
          depth--
          if (depth == 0 && start) {
            if (NR - start - 1 > 100) {
              printf "%s:%d: function is %d lines (at most 100): %s\n", f, start, NR - start - 1, fn
              bad = 1
            }
            start = 0
          }
        }
      }
      if ($0 ~ /^[A-Za-z_]/) prev = $0
    }
    END { exit bad }' "$f" || status=1
done
exit $status
