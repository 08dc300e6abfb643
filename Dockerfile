# Dockerfile - the production image, byte for byte Dockerfile.prod below this
# header (the default when DOCKERFILE is unset); tests/e2e checks they agree.
# Dockerfile.prod - multi-stage. The build stage links snowflaked statically
# (glibc, libuv, jansson, OpenSSL, nghttp2, protobuf-c), etcd mode included
# (MACHINE_ID=auto, http:// and https:// etcd): its etcd client needs only
# sockets and libssl.a/libcrypto.a, and the static glibc resolves etcd's
# name from /etc/hosts and /etc/resolv.conf, which Docker provides even FROM
# scratch (glibc builds its files and dns lookups into libc). The runtime
# stage is FROM scratch and holds that one binary and an empty /data for
# STATE_FILE, running as nobody. It has no CA store: for https:// etcd,
# mount the CA and point ETCD_CACERT at it.
FROM debian:bookworm-slim AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      gcc libc6-dev make pkg-config libuv1-dev node-llhttp \
      libjansson-dev libssl-dev libnghttp2-dev libprotobuf-c-dev \
      protobuf-c-compiler \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
RUN make STATIC=1 BUILD=build-static build-static/snowflaked \
 && strip build-static/snowflaked \
 && mkdir -p /rootfs/data

FROM scratch
COPY --from=build /src/build-static/snowflaked /usr/local/bin/snowflaked
COPY --from=build --chown=65534:65534 /rootfs/data /data
# scratch has no user database: a numeric uid:gid (nobody:nogroup).
USER 65534:65534
ENV PATH=/usr/local/bin PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=2s --start-period=5s --retries=3 \
  CMD ["snowflaked", "--healthcheck"]
ENTRYPOINT ["snowflaked"]
