# tests/e2e/systemd.Dockerfile - a Debian machine with systemd as PID 1, for
# tests/e2e/systemd.py (make test-systemd-live): systemd, etcd and the
# run-time libraries of a snowflaked built on the host; the node itself is
# copied in by the test from `make install DESTDIR=...`, so this image is
# rebuilt only when this file changes. Built without a context (stdin).
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      systemd etcd-server etcd-client curl \
      libuv1 libjansson4 libssl3 libnghttp2-14 libprotobuf-c1 \
 && rm -rf /var/lib/apt/lists/* \
 && systemctl mask etcd.service console-getty.service getty.target \
      systemd-firstboot.service \
 && mkdir -p /etc/snowflaked

# systemd halts on SIGRTMIN+3 (docker stop).
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
