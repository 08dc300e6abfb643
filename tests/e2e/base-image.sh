#!/bin/sh
# base-image.sh [IMAGE] - make sure the Docker base image the Dockerfiles
# start FROM exists. With a registry, docker pulls it by itself; on a machine
# without one (like our CI), this builds it from the Debian mirror with
# debootstrap and imports it under the same name. Does nothing when the image
# is already there.
#
# Environment: DEBIAN_MIRROR (default: the first deb.debian.org-style URI apt
# uses here, else http://deb.debian.org/debian), DEBIAN_SUITE (bookworm).
set -eu

image=${1:-debian:bookworm-slim}
suite=${DEBIAN_SUITE:-bookworm}

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base-image: $image is present"
  exit 0
fi
# A registry may be reachable after all: try a pull first, quietly.
if timeout 60 docker pull "$image" >/dev/null 2>&1; then
  echo "base-image: pulled $image"
  exit 0
fi

if [ -z "${DEBIAN_MIRROR:-}" ]; then
  DEBIAN_MIRROR=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/*$/\1/p; s/^deb  *\(http[^ ]*\/debian\)\/* .*/\1/p' \
    /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
    /etc/apt/sources.list 2>/dev/null | head -n1)
  DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
fi

sh "$(dirname "$0")/../../scripts/deps.sh" docker
dir=$(mktemp -d /tmp/snowflake-base.XXXXXX)
trap 'rm -rf "$dir"' EXIT INT TERM
echo "base-image: $image is missing and cannot be pulled;" \
  "building it with debootstrap $suite from $DEBIAN_MIRROR (a minute or two)"
debootstrap --variant=minbase "$suite" "$dir" "$DEBIAN_MIRROR" >"$dir.log" 2>&1 || {
  tail -n 20 "$dir.log" >&2
  rm -f "$dir.log"
  exit 1
}
rm -f "$dir.log"
# Trim what the official -slim image does not carry either.
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* \
  "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/locale/*
tar -C "$dir" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' - "$image" >/dev/null
echo "base-image: imported $image ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
