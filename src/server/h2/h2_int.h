/*
 * h2_int.h - what h2.c (the session and its callbacks) and h2_answer.c
 * (the answers) share: a connection and its streams. Not for other files.
 */
#ifndef SF_SRV_H2_INT_H
#define SF_SRV_H2_INT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <nghttp2/nghttp2.h>

#include "h2.h"
#include "route.h"

#define OUT_INLINE 2048   /* output kept inside the connection */
#define PATH_INLINE 64    /* :path bytes kept inside the stream */
#define BODY_INLINE 32    /* request body bytes kept inside the stream */
#define ANSWER_INLINE 160 /* answer body bytes kept inside the stream */

typedef struct stream {
  struct stream *prev, *next; /* the connection's open streams */
  int32_t id;
  sf_method method;
  int grpc;      /* sf__grpc_content_type(): 1 gRPC, -1 another codec */
  int enc_bad;   /* grpc-encoding other than identity */
  sf_st over;    /* SF_ST_431 or SF_ST_414: a header limit; 0: none */
  int post;      /* :method POST */
  int has_body;  /* DATA bytes arrived */
  int body_over; /* more than SF_H2_BODY_MAX of them */
  int done;      /* the request ended (END_STREAM) */
  int ready;     /* its answer is known (done, or early_answer()) */
  int answered;  /* its answer is submitted */
  int early;     /* ... before the request ended (h2c.early counts them) */
  const sf_grpc_method *gm; /* the gRPC method :path names, or NULL */
  size_t header_bytes;
  char *path; /* path_inline or the heap */
  size_t path_len;
  uint8_t *body; /* body_inline or the heap (SF_H2_BODY_MAX) */
  size_t body_len;
  const uint8_t *data; /* the answer's DATA, sent by read_data() */
  size_t data_len, data_off;
  char *answer_heap; /* an HTTP answer body longer than answer_inline */
  sf_grpc_reply g;
  sf_grpc_call *call; /* a streaming call, or NULL */
  char path_inline[PATH_INLINE];
  uint8_t body_inline[BODY_INLINE];
  char answer_inline[ANSWER_INLINE];
} stream;

/* The client's last SF_H2_LEDGER stream ids (h2_ledger.c). */
#define SF_H2_LEDGER 256
#define SF_H2_PREFACE_LEN 24 /* the client's, before its first frame */
typedef struct sf_h2_ledger {
  int32_t hi; /* the highest client stream id a HEADERS frame used */
  uint64_t opened[SF_H2_LEDGER / 64], reset[SF_H2_LEDGER / 64];
  /* sf__h2_ledger_scan()'s, in the order of the bytes: */
  uint32_t scan_skip; /* bytes of a frame's payload (the preface) to pass */
  uint8_t scan_hd[9]; /* a frame header split between two reads */
  uint8_t scan_hd_len;
  uint8_t scan_block; /* in a header block (CONTINUATION follows) */
  /* the last stream of each slot the client ended (END_STREAM) or reset */
  int32_t ended[SF_H2_LEDGER];
} sf_h2_ledger;

/* What a DATA or HEADERS frame on a client stream nghttp2 does not hold
 * deserves. */
typedef enum sf_h2_verdict {
  SF_H2_IGNORE,       /* the server reset it (frames were in flight), an id
                         too old to know, or not closed: nghttp2 decides */
  SF_H2_CLOSED,       /* opened, then closed: STREAM_CLOSED */
  SF_H2_NEVER_OPENED, /* skipped by a higher id: closed, never opened */
} sf_h2_verdict;

/* sf__h2_ledger_open records a HEADERS frame on id (a new stream when id
 * is above every earlier one). */
void sf__h2_ledger_open(sf_h2_ledger *l, int32_t id);
/* sf__h2_ledger_reset records that the server reset id. */
void sf__h2_ledger_reset(sf_h2_ledger *l, int32_t id);
/* sf__h2_ledger_scan reads the frame headers in the next len client
 * bytes (scan_skip set to SF_H2_PREFACE_LEN first): how many of them come
 * before a DATA frame on a stream the client had ended (END_STREAM) or
 * reset and the server had not reset; len when none does. */
size_t sf__h2_ledger_scan(sf_h2_ledger *l, const uint8_t *d, size_t len);
/* sf__h2_ledger_verdict judges a frame on client stream id, which nghttp2
 * no longer holds. */
sf_h2_verdict sf__h2_ledger_verdict(const sf_h2_ledger *l, int32_t id);

typedef struct h2c {
  nghttp2_session *s;
  sf_worker *w;
  int dead;          /* a fatal nghttp2 error: close without more output */
  int scan_stopped;  /* the ledger's scan ended the session: input dropped */
  stream *streams;   /* nghttp2_session_del() calls no on_close */
  size_t pending;    /* answer bytes not yet framed */
  unsigned deferred; /* requests done but not answered: pending was high */
  unsigned calls;    /* streaming calls open */
  unsigned early;    /* streams answered before their request ended */
  sf_h2_ledger ledger;
  double ctrl_tokens;
  struct timespec ctrl_at;
  char *out; /* out_inline, or the heap until sent */
  size_t out_len, out_cap;
  char out_inline[OUT_INLINE];
} h2c;

/* sf__h2_early is true when st's answer is known at the end of its
 * request headers, without its body: a gRPC call that cannot succeed
 * (unknown method, codec or encoding), a gRPC method asked for without a
 * gRPC content-type (415), header fields over a limit (431, 414). */
int sf__h2_early(const stream *st);
/* sf__h2_streaming is true when st is a streaming gRPC call: opened at
 * the end of its headers, whatever output waits. */
int sf__h2_streaming(const stream *st);
/* sf__h2_resume has nghttp2 ask st's streaming call for output again. */
void sf__h2_resume(h2c *c, stream *st);
/* sf__h2_answer answers the request of st (st->ready). */
void sf__h2_answer(h2c *c, stream *st);
/* sf__h2_answer_deferred answers requests that waited, while pending
 * allows; returns how many. */
int sf__h2_answer_deferred(h2c *c);
/* sf__h2_stream_free releases st and what it holds. */
void sf__h2_stream_free(stream *st);

#endif /* SF_SRV_H2_INT_H */
