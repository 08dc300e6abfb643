/*
 * memcache.h - one memcached text-protocol connection as a pure function:
 * command lines in, answers out, no sockets (proto.h's contract).
 *
 * "get <key>..." and "gets <key>..." answer one ID per key (any key),
 * minted in one call; version, stats (and the stats groups clients ask
 * for) and quit as memcached does. A line is
 * read in place when it arrived whole, else gathered inside the connection
 * (the heap, at most SF_MC_LINE_MAX, only for a long partial line).
 */
#ifndef SF_SRV_MEMCACHE_H
#define SF_SRV_MEMCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"
#include "proto.h"
#include "text.h"
#include "wire.h"

#define SF_MC_LINE_MAX SF_HTTP_HEADER_MAX /* a command line, with its CRLF */
#define SF_MC_KEY_MAX 250                 /* memcached's key limit */
#define SF_MC_VALUE_MAX (1024 * 1024)     /* a storage command's data block */
#define SF_MC_OUT_PAUSE SF_HTTP_OUT_PAUSE
#define SF_MC_LINE_INLINE 64
/* What "version" answers: a memcached version first, because clients parse
 * it (libmemcached, so memcstat and pylibmc, fails on a major version of
 * 0: "strtol() failed to parse major version"). 1.4, not 1.6: what this
 * server speaks is the classic text protocol, without 1.6's meta commands,
 * so a client choosing features by version picks none it lacks. Then
 * snowflaked and its version as semver build metadata, which version
 * parsers stop at ('+'). "stats" says the same; the real version is also
 * STAT snowflaked_version. */
#define SF_MC_VERSION "1.4.0+snowflaked." SF_VERSION_STRING
#define SF_MC_OUT_INLINE 1024

typedef struct sf_mc_conn {
  sf_worker *w;
  sf_obuf out;
  char *line; /* line_inline, or the heap for a long partial line */
  size_t line_len, line_cap;
  uint64_t skip;   /* data-block bytes of a refused storage command to drop */
  int skip_answer; /* answer CLIENT_ERROR once they are dropped */
  int closing;     /* close once out is written; further input ignored */
  char line_inline[SF_MC_LINE_INLINE];
  char out_inline[SF_MC_OUT_INLINE];
} sf_mc_conn;

/* The memcached text protocol (memcache.c); connections are sf_mc_conn. */
extern const sf_proto sf__proto_memcached;

#endif /* SF_SRV_MEMCACHE_H */
