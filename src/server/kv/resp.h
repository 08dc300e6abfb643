/*
 * resp.h - one RESP2 (Redis protocol) connection as a pure function:
 * command bytes in, reply bytes out, no sockets (proto.h's contract).
 *
 * The parser is a byte-at-a-time state machine over multibulk commands
 * ("*2\r\n$3\r\nGET\r\n$2\r\nid\r\n") and inline ones ("GET id\n"), so a
 * command may arrive cut anywhere and nothing is buffered but its
 * arguments: a few bytes inside the connection, the heap (at most
 * SF_RESP_CMD_MAX) only for a large command and only until it is answered.
 * A small multibulk command that arrived whole (the usual case) is taken in
 * one pass instead, with the same outcome.
 * A protocol error is answered with -ERR and closes the connection, as
 * redis-server does.
 */
#ifndef SF_SRV_RESP_H
#define SF_SRV_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"
#include "proto.h"
#include "text.h"
#include "wire.h"

#define SF_RESP_ARGS_MAX 1024              /* arguments in one command */
#define SF_RESP_CMD_MAX SF_HTTP_HEADER_MAX /* argument bytes in one command */
#define SF_RESP_OUT_PAUSE SF_HTTP_OUT_PAUSE
#define SF_RESP_ARGS_INLINE 4 /* argument slots inside the connection */
#define SF_RESP_ABUF_INLINE 64
#define SF_RESP_OUT_INLINE 1024

typedef struct sf_resp_arg {
  uint32_t off, len; /* in abuf */
} sf_resp_arg;

typedef struct sf_resp_conn {
  sf_worker *w;
  sf_obuf out;
  int state;       /* the parser's; see resp.c */
  int closing;     /* close once out is written; further input ignored */
  uint64_t num;    /* the number being read after '*' or '$' */
  unsigned ndig;   /* its digits so far */
  int neg;         /* it began with '-' */
  uint32_t nargs;  /* arguments begun */
  uint32_t want;   /* arguments the multibulk header announced */
  size_t left;     /* bytes of the current bulk argument still to come */
  size_t line_len; /* bytes of the current inline command */
  int in_arg;      /* inline: inside an argument */
  sf_resp_arg *argv;
  char *abuf;
  uint32_t argv_cap;
  uint32_t alen, acap;
  sf_resp_arg argv_inline[SF_RESP_ARGS_INLINE];
  char abuf_inline[SF_RESP_ABUF_INLINE];
  char out_inline[SF_RESP_OUT_INLINE];
} sf_resp_conn;

/* The RESP2 protocol (resp.c); its connections are sf_resp_conn. */
extern const sf_proto sf__proto_redis;

/* ---- between resp.c (parser) and resp_cmd.c (commands) ---- */

/* sf__resp_dispatch answers the complete command c->argv[0..nargs). */
void sf__resp_dispatch(sf_resp_conn *c);
/* sf__resp_arg returns argument i of the current command and its length. */
static inline const char *sf__resp_arg(const sf_resp_conn *c, uint32_t i,
                                       size_t *len) {
  *len = c->argv[i].len;
  return c->abuf + c->argv[i].off;
}
/* sf__resp_put appends n raw bytes to the output; on out of memory the
 * connection closes. */
static inline void sf__resp_put(sf_resp_conn *c, const void *p, size_t n) {
  if (sf__obuf_put(&c->out, p, n))
    c->closing = 1;
}
/* sf__resp_err appends "-<text>\r\n", text with any byte outside printable
 * ASCII written as '?', so a reply stays one line. */
void sf__resp_err(sf_resp_conn *c, const char *text);

#endif /* SF_SRV_RESP_H */
