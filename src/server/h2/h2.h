/*
 * h2.h - HTTP/2 with prior knowledge (h2c) as an sf_proto: bytes in, bytes
 * out, driven through nghttp2's memory interface (mem_recv / mem_send), no
 * sockets. gRPC calls (content-type application/grpc) go to grpc.c; every
 * other request to the same routes as HTTP/1.x (route.h).
 *
 * Bounds: SF_H2_MAX_STREAMS concurrent streams, SF_H2_HEADER_MAX bytes of
 * header fields per request and SF_HTTP_URL_MAX of :path, as on HTTP/1.x
 * (more: 431 and 414, or RESOURCE_EXHAUSTED for gRPC), SF_H2_BODY_MAX bytes of
 * a request body kept, at most about SF_H2_OUT_PAUSE bytes of output waiting
 * before input is left unread, and PING/SETTINGS/PRIORITY frames rate
 * limited (SF_H2_CTRL_BURST, SF_H2_CTRL_RATE per second; more: GOAWAY
 * ENHANCE_YOUR_CALM). nghttp2 limits stream resets (CVE-2023-44487),
 * CONTINUATION frames and queued control-frame answers.
 */
#ifndef SF_SRV_H2_H
#define SF_SRV_H2_H

#include "grpc.h"
#include "http.h"
#include "proto.h"

#define SF_H2_MAX_STREAMS 100
#define SF_H2_HEADER_MAX                                                       \
  SF_HTTP_HEADER_MAX /* RFC 9113's size: each field's                          \
                        name, value and 32 bytes */
#define SF_H2_BODY_MAX (SF_GRPC_MSG_MAX + 5)
#define SF_H2_OUT_PAUSE 65536
#define SF_H2_CTRL_BURST 500
#define SF_H2_CTRL_RATE 100

#endif /* SF_SRV_H2_H */
