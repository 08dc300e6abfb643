#!/bin/sh
# deps.sh GROUP... - make sure the Debian packages a make target needs are
# installed. As root it installs what is missing with apt-get; otherwise it
# prints the exact command to run and exits 1.
#
# Groups: build test lint bench fuzz docker etcd ops all
set -eu

pkgs_build="gcc libc6-dev make pkg-config libuv1-dev node-llhttp libcurl4-openssl-dev libjansson-dev"
pkgs_test="libcmocka-dev python3 python3-pytest faketime libfaketime curl etcd-server etcd-client"
pkgs_lint="cppcheck clang-format clang-tidy"
pkgs_bench="wrk nginx-light procps"
pkgs_fuzz="clang libclang-rt-14-dev"
pkgs_docker="debootstrap docker-compose"
pkgs_etcd="etcd-server etcd-client"
# make test-ops: systemd-analyze, mandoc, man (Documentation= links), promtool
pkgs_ops="systemd mandoc man-db prometheus python3-yaml"

want=""
for g in "$@"; do
  case "$g" in
  all) want="$want $pkgs_build $pkgs_test $pkgs_lint $pkgs_bench $pkgs_fuzz $pkgs_ops" ;;
  build | test | lint | bench | fuzz | docker | etcd | ops)
    eval "want=\"\$want \$pkgs_$g\"" ;;
  *) echo "deps.sh: unknown group \"$g\" (build test lint bench fuzz docker etcd ops all)" >&2; exit 2 ;;
  esac
done

missing=""
for p in $want; do
  case " $missing " in *" $p "*) continue ;; esac
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$st" = "install ok installed" ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "deps.sh: installing$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine has no package lists yet; refresh them once if needed.
  if ! apt-get install -y --no-install-recommends $missing >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y --no-install-recommends $missing >/dev/null
  fi
  exit 0
fi
echo "deps.sh: missing Debian packages:$missing" >&2
echo "deps.sh: run: sudo $cmd" >&2
exit 1
