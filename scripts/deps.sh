#!/bin/sh
# deps.sh [--check] GROUP... - the one list of the Debian packages each make
# goal needs, and the step that installs them.
#
#   deps.sh GROUP...          as root: apt-get installs what is missing (make
#                             deps, make run, make test, .ci/run); otherwise
#                             prints the exact command to run and exits 1
#   deps.sh --check GROUP...  never installs: prints what is missing and the
#                             exact command, exits 1 (every other make goal)
#
# Groups: build test lint bench fuzz docker etcd ops conformance all (all: all
# but docker and etcd). The Makefile maps goals to groups (DEPS_<goal>); a library found
# with pkg-config needs its -dev package here, in the group of the goals
# using it.
set -eu

pkgs_build="gcc libc6-dev make pkg-config libuv1-dev node-llhttp libjansson-dev libssl-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler"
pkgs_test="libcmocka-dev python3 python3-pytest faketime libfaketime curl openssl etcd-server etcd-client redis-tools python3-pymemcache python3-redis python3-grpcio python3-protobuf python3-h2 nghttp2-client libmemcached-tools"
pkgs_lint="cppcheck clang-format clang-tidy"
pkgs_bench="wrk nginx-light procps redis-tools redis-server nghttp2-client valgrind"
pkgs_fuzz="clang libclang-rt-14-dev"
pkgs_docker="debootstrap docker-compose git openssl python3"
pkgs_etcd="etcd-server etcd-client"
# make test-ops: systemd-analyze, mandoc, man (Documentation= links), promtool,
# procps (ps(1), which snowflaked(8) names: mandoc -T lint wants it found)
pkgs_ops="systemd mandoc man-db prometheus python3-yaml procps"
# make test-conformance, beyond test: the Java memcached client spymemcached
# and a JDK to compile the test's client against it (the Go tools come from
# the Go module proxy, not from here)
pkgs_conformance="default-jdk-headless libspymemcached-java"

check=0
if [ "${1:-}" = --check ]; then
  check=1
  shift
fi

want=""
for g in "$@"; do
  case "$g" in
  all) want="$want $pkgs_build $pkgs_test $pkgs_lint $pkgs_bench $pkgs_fuzz $pkgs_ops $pkgs_conformance" ;;
  build | test | lint | bench | fuzz | docker | etcd | ops | conformance)
    eval "want=\"\$want \$pkgs_$g\"" ;;
  *) echo "deps.sh: unknown group \"$g\" (build test lint bench fuzz docker etcd ops conformance all)" >&2; exit 2 ;;
  esac
done
[ -n "$want" ] || exit 0

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps.sh: no dpkg-query (not Debian): not checking the packages of $*;" \
    "the build needs their equivalents" >&2
  exit 0
fi

# One dpkg-query for all; a package dpkg has never heard of prints nothing.
installed=" $(dpkg-query -W -f='${Package} ${Status}\n' $want 2>/dev/null |
  awk '$2 == "install" && $3 == "ok" && $4 == "installed" { print $1 }' |
  tr '\n' ' ')"
missing=""
for p in $want; do
  case " $missing $installed " in *" $p "*) continue ;; esac
  missing="$missing $p"
done
[ -z "$missing" ] && exit 0

root=0
[ "$(id -u)" = 0 ] && root=1
if [ "$check" = 0 ] && [ "$root" = 1 ] && command -v apt-get >/dev/null 2>&1; then
  echo "deps.sh: installing$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine has no package lists yet; refresh them once if needed.
  if ! apt-get install -y --no-install-recommends $missing >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y --no-install-recommends $missing >/dev/null
  fi
  exit 0
fi

# The exact command: sudo when not root; apt-get update first when this
# machine has no package lists yet (a fresh container).
sudo=""
[ "$root" = 1 ] || sudo="sudo "
update=""
ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || update="${sudo}apt-get update && "
echo "deps.sh: missing Debian packages:$missing" >&2
echo "deps.sh: install them with: $update${sudo}apt-get install -y --no-install-recommends$missing" >&2
exit 1
