#!/usr/bin/env bash
# tests/e2e/run.sh - the Docker end-to-end test (make e2e).
#
# When no Docker engine answers it says so and exits 0 as SKIPPED: nothing is
# tested then, and it never claims otherwise. Otherwise it installs the
# "docker" group of scripts/deps.sh, makes sure the base image exists
# (building it with debootstrap on machines without a registry), and runs
# tests/e2e/e2e.py against Dockerfile.dev, .simple and .prod in a compose
# project of its own, which is taken down (with its volumes) on any exit.
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
echo "e2e: using $COMPOSE ($($COMPOSE version --short 2>/dev/null || true)), project $E2E_PROJECT"

cleanup() {
  $COMPOSE -p "$E2E_PROJECT" -f docker-compose.yml down -v --remove-orphans \
    >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sh tests/e2e/base-image.sh debian:bookworm-slim
/usr/bin/python3 tests/e2e/e2e.py
