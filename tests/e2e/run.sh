#!/usr/bin/env bash
# tests/e2e/run.sh - the Docker end-to-end test (make e2e).
#
# When no Docker engine answers it says so and exits 0 as SKIPPED: nothing is
# tested then, and it never claims otherwise. Otherwise it installs the
# "docker" group of scripts/deps.sh, makes sure the base image exists
# (building it with debootstrap on machines without a registry), and runs
# tests/e2e/e2e.py against Dockerfile.dev, .simple and .prod in a compose
# project of its own, then tests/e2e/etcd.py against docker-compose.etcd.yml
# (etcd + three nodes with MACHINE_ID=auto; as shipped, then with TLS,
# client certificates and auth: tests/e2e/compose.etcd.tls.yml) in another,
# then
# tests/e2e/fresh.py: the README's `make test` and `make run` in a clean
# clone of HEAD on a bare container of the base image with only make
# installed. Each project and the container are taken down (with their
# volumes) on any exit. Ends with one summary line; the exit status is 0 only
# when every phase that ran passed.
#
# Environment: E2E_PHASES (default "dockerfiles etcd fresh") picks the
# phases; the rest is passed on to e2e.py, etcd.py and fresh.py (see their
# headers).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v docker >/dev/null 2>&1; then
  echo "e2e: SKIPPED: no docker command on this machine; nothing was tested"
  exit 0
fi
if ! timeout 30 docker info >/dev/null 2>&1; then
  echo "e2e: SKIPPED: no Docker engine answers (docker info failed); nothing was tested"
  exit 0
fi

sh scripts/deps.sh docker
if docker compose version >/dev/null 2>&1; then
  COMPOSE="docker compose"
else
  COMPOSE="docker-compose"
fi
export COMPOSE
export E2E_PROJECT="sfe2e$$"
export E2E_ETCD_PROJECT="sfe2eetcd$$"
export E2E_FRESH_NAME="sfe2efresh$$"
phases=${E2E_PHASES:-dockerfiles etcd fresh}
echo "e2e: using $COMPOSE ($($COMPOSE version --short 2>/dev/null || true)), projects $E2E_PROJECT and $E2E_ETCD_PROJECT, container $E2E_FRESH_NAME; phases: $phases"

cleanup() {
  $COMPOSE -p "$E2E_PROJECT" -f docker-compose.yml down -v --remove-orphans \
    >/dev/null 2>&1 || true
  $COMPOSE -p "$E2E_ETCD_PROJECT" -f docker-compose.etcd.yml down -v \
    --remove-orphans >/dev/null 2>&1 || true
  docker rm -f "$E2E_FRESH_NAME" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sh tests/e2e/base-image.sh debian:bookworm-slim

summary="" failed=0
for phase in $phases; do
  case $phase in
    dockerfiles) script=tests/e2e/e2e.py ;;
    etcd) script=tests/e2e/etcd.py ;;
    fresh) script=tests/e2e/fresh.py ;;
    *) echo "e2e: E2E_PHASES: unknown phase '$phase' (dockerfiles, etcd, fresh)" >&2
       exit 2 ;;
  esac
  start=$SECONDS
  if /usr/bin/python3 "$script"; then result=PASS; else result=FAIL; failed=1; fi
  summary="$summary $phase $result ($((SECONDS - start)) s);"
done
echo "e2e: summary:${summary%;}"
if [ "$failed" -ne 0 ]; then
  echo "e2e: FAIL"
  exit 1
fi
echo "e2e: PASS"
