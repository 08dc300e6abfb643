/*
 * h2.c - HTTP/2 connections over nghttp2's memory interface.
 *
 * feed() hands the bytes read to nghttp2_session_mem_recv(); its callbacks
 * collect each request (pseudo-headers, content type, body) in a stream and
 * answer it as soon as the request ends (h2_answer.c). The
 * frames nghttp2 then has to send are copied into the connection's output
 * buffer by pump() (nghttp2_session_mem_send()), which stops at
 * SF_H2_OUT_PAUSE bytes; feed() consumes nothing while that much waits, so
 * a peer that does not read holds at most that, its streams and nghttp2's
 * own bounded queues.
 */
#include "h2.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nghttp2/nghttp2.h>

#include "h2_int.h"

/* ---------------------------------------------------------------- output */

static int out_append(h2c *c, const uint8_t *d, size_t n) {
  if (c->out_len + n > c->out_cap) {
    size_t cap = c->out_cap * 2;
    char *p;
    while (cap < c->out_len + n)
      cap *= 2;
    p = c->out == c->out_inline ? malloc(cap) : realloc(c->out, cap);
    if (!p)
      return -1;
    if (c->out == c->out_inline)
      memcpy(p, c->out, c->out_len);
    c->out = p;
    c->out_cap = cap;
  }
  memcpy(c->out + c->out_len, d, n);
  c->out_len += n;
  return 0;
}

/* pump moves what nghttp2 would send into c->out, up to SF_H2_OUT_PAUSE
 * (give or take a frame). */
static void pump(h2c *c) {
  while (!c->dead && c->out_len < SF_H2_OUT_PAUSE) {
    const uint8_t *d;
    ssize_t n = nghttp2_session_mem_send(c->s, &d);
    if (n == 0 && c->deferred && c->pending < SF_H2_OUT_PAUSE &&
        sf__h2_answer_deferred(c))
      continue;
    if (n <= 0) {
      if (n < 0)
        c->dead = 1;
      return;
    }
    if (out_append(c, d, (size_t)n))
      c->dead = 1;
  }
}

/* ---------------------------------------------------------------- streams */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f,
                            void *ud) {
  h2c *c = ud;
  stream *st;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  st = calloc(1, sizeof *st);
  if (!st)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM */
  st->id = f->hd.stream_id;
  st->method = SF_M_OTHER;
  st->path = st->path_inline;
  st->body = st->body_inline;
  st->next = c->streams;
  if (c->streams)
    c->streams->prev = st;
  c->streams = st;
  nghttp2_session_set_stream_user_data(s, st->id, st);
  return 0;
}

#define IS(name, namelen, lit)                                                 \
  ((namelen) == sizeof(lit) - 1 && !memcmp((name), (lit), sizeof(lit) - 1))

static int set_path(stream *st, const uint8_t *v, size_t len) {
  if (len > sizeof st->path_inline) {
    st->path = malloc(len);
    if (!st->path) {
      st->path = st->path_inline;
      return -1;
    }
  }
  memcpy(st->path, v, len);
  st->path_len = len;
  return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *ud) {
  stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
  (void)flags;
  (void)ud;
  if (!st || f->hd.type != NGHTTP2_HEADERS)
    return 0; /* trailers of a request: ignored */
  /* Header limits as on HTTP/1.1: :path is the request target (414 over
   * SF_HTTP_URL_MAX); every other field counts its name, value and 4 bytes
   * (": " and CRLF there) toward SF_H2_HEADER_MAX (431). A client within
   * our SETTINGS_MAX_HEADER_LIST_SIZE (32 bytes a field) always is. Counted
   * decoded, so a small block that decompresses huge is bounded; past a
   * limit nothing is kept and the rest of the block is only counted. */
  if (!IS(name, namelen, ":path"))
    st->header_bytes += namelen + valuelen + 4;
  if (st->header_bytes > SF_H2_HEADER_MAX && !st->over)
    st->over = SF_ST_431;
  if (IS(name, namelen, ":path")) {
    if (valuelen > SF_HTTP_URL_MAX && !st->over)
      st->over = SF_ST_414;
    if (st->over)
      return 0;
    if (st->path_len || set_path(st, value, valuelen))
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  } else if (IS(name, namelen, ":method")) {
    st->method = IS(value, valuelen, "GET")    ? SF_M_GET
                 : IS(value, valuelen, "HEAD") ? SF_M_HEAD
                                               : SF_M_OTHER;
    st->post = IS(value, valuelen, "POST");
  } else if (IS(name, namelen, "content-type")) {
    st->grpc = sf__grpc_content_type(value, valuelen);
  } else if (IS(name, namelen, "grpc-encoding")) {
    st->enc_bad = !IS(value, valuelen, "identity");
  }
  return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id,
                   const uint8_t *data, size_t len, void *ud) {
  stream *st = nghttp2_session_get_stream_user_data(s, id);
  (void)flags;
  if (st && st->call) {
    sf__grpc_input(st->call, data, len);
    sf__h2_resume(ud, st);
    return 0;
  }
  if (!st || len == 0 || st->ready)
    return 0; /* ready: answered without it */
  st->has_body = 1;
  if (!st->grpc || st->body_over || len > SF_H2_BODY_MAX - st->body_len) {
    st->body_over = st->grpc; /* HTTP routes refuse any body anyway */
    return 0;
  }
  if (st->body == st->body_inline && st->body_len + len > BODY_INLINE) {
    uint8_t *b = malloc(SF_H2_BODY_MAX);
    if (!b)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    memcpy(b, st->body, st->body_len);
    st->body = b;
  }
  memcpy(st->body + st->body_len, data, len);
  st->body_len += len;
  return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud) {
  h2c *c = ud;
  stream *st = nghttp2_session_get_stream_user_data(s, id);
  (void)code;
  if (st) {
    nghttp2_session_set_stream_user_data(s, id, NULL);
    c->calls -= st->call != NULL;
    c->early -= (unsigned)st->early;
    if (st->answered)
      c->pending -= st->data_len - st->data_off;
    else if (st->ready)
      c->deferred--;
    if (st->prev)
      st->prev->next = st->next;
    else
      c->streams = st->next;
    if (st->next)
      st->next->prev = st->prev;
    sf__h2_stream_free(st);
  }
  return 0;
}

/* ---------------------------------------------------------------- session */

/* ctrl_allowed charges one PING, SETTINGS or PRIORITY frame to the
 * connection's token bucket: 1, or 0 once the peer sends them faster than
 * SF_H2_CTRL_RATE a second beyond a burst of SF_H2_CTRL_BURST. */
static int ctrl_allowed(h2c *c) {
  struct timespec now;
  double dt;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
  dt = (double)(now.tv_sec - c->ctrl_at.tv_sec) +
       (double)(now.tv_nsec - c->ctrl_at.tv_nsec) / 1e9;
  c->ctrl_at = now;
  c->ctrl_tokens += dt * SF_H2_CTRL_RATE;
  if (c->ctrl_tokens > SF_H2_CTRL_BURST)
    c->ctrl_tokens = SF_H2_CTRL_BURST;
  c->ctrl_tokens -= 1;
  return c->ctrl_tokens >= 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  h2c *c = ud;
  stream *st;
  switch (f->hd.type) {
  case NGHTTP2_PING:
  case NGHTTP2_SETTINGS:
  case NGHTTP2_PRIORITY:
    if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && !ctrl_allowed(c))
      nghttp2_session_terminate_session(s, NGHTTP2_ENHANCE_YOUR_CALM);
    return 0;
  case NGHTTP2_HEADERS:
  case NGHTTP2_DATA:
    st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (st && st->call && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      st->done = 1;
      sf__grpc_half_close(st->call);
      sf__h2_resume(c, st);
    }
    if (!st || st->ready)
      return 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
      st->gm = sf__grpc_find(st->path, st->path_len);
    /* A request is answered at its end, or at the end of its headers when
     * the body cannot change the answer (an unknown gRPC method...). */
    st->done = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (!st->done && (f->hd.type != NGHTTP2_HEADERS || !sf__h2_early(st)))
      return 0;
    st->ready = 1;
    /* Answers wait while SF_H2_OUT_PAUSE bytes of others do (a peer that
     * holds its flow-control windows shut): pump() answers them later. A
     * streaming call opens now: its replies wait in it. */
    if (c->pending < SF_H2_OUT_PAUSE || sf__h2_streaming(st))
      sf__h2_answer(c, st);
    else
      c->deferred++;
    return 0;
  default:
    return 0;
  }
}

/* on_sent ends a stream whose answer went out before its request ended
 * (an early answer): RST_STREAM NO_ERROR tells the client to stop
 * sending (RFC 9113 section 8.1) and frees the stream now. A reset stream
 * goes in the ledger: what the client still sends on it is ignored. */
static int on_sent(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  h2c *c = ud;
  if (f->hd.type == NGHTTP2_RST_STREAM)
    sf__h2_ledger_reset(&c->ledger, f->hd.stream_id);
  else if (c->early && /* else no stream lookup */
           (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
           (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
           !nghttp2_session_get_stream_remote_close(s, f->hd.stream_id))
    nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id,
                              NGHTTP2_NO_ERROR);
  return 0;
}

/* on_invalid: nghttp2 refuses a frame; a stream error resets the stream
 * (often one it never opened: beyond MAX_CONCURRENT_STREAMS). */
static int on_invalid(nghttp2_session *s, const nghttp2_frame *f, int err,
                      void *ud) {
  (void)s;
  (void)err;
  sf__h2_ledger_reset(&((h2c *)ud)->ledger, f->hd.stream_id);
  return 0;
}

/* on_begin looks at each HEADERS frame before nghttp2 takes it: one on a
 * new client stream goes in the ledger; one on a client stream nghttp2 no
 * longer holds is a connection error unless the server reset that stream
 * (h2_ledger.c). DATA after the client ended its stream h2_feed() finds:
 * nghttp2 keeps no closed stream, and ignores such DATA without a
 * callback. */
static int on_begin(nghttp2_session *s, const nghttp2_frame_hd *hd, void *ud) {
  h2c *c = ud;
  sf_h2_verdict v;
  if (hd->type != NGHTTP2_HEADERS)
    return 0;
  if (hd->stream_id > c->ledger.hi) {
    sf__h2_ledger_open(&c->ledger, hd->stream_id);
    return 0;
  }
  if (nghttp2_session_find_stream(s, hd->stream_id))
    return 0; /* trailers */
  v = sf__h2_ledger_verdict(&c->ledger, hd->stream_id);
  if (v != SF_H2_IGNORE)
    nghttp2_session_terminate_session(
        s, v == SF_H2_NEVER_OPENED
               ? NGHTTP2_PROTOCOL_ERROR  /* a lower id reused (5.1.1) */
               : NGHTTP2_STREAM_CLOSED); /* after END_STREAM or reset */
  return 0;
}

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
static int setup_failed;
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

static void setup(void) {
  if (nghttp2_session_callbacks_new(&callbacks) ||
      nghttp2_option_new(&options)) {
    setup_failed = 1;
    return;
  }
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks,
                                                          on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_sent);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(callbacks,
                                                               on_invalid);
  nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, on_begin);
  /* nghttp2's defaults, written out: a peer resetting more than 1000
   * streams in a burst, beyond 33 a second, is sent GOAWAY (rapid reset,
   * CVE-2023-44487); at most 8 CONTINUATION frames per header block; at
   * most 1000 control-frame answers queued. */
  nghttp2_option_set_stream_reset_rate_limit(options, 1000, 33);
  nghttp2_option_set_max_continuations(options, 8);
  nghttp2_option_set_max_outbound_ack(options, 1000);
  nghttp2_option_set_max_settings(options, 32);
  /* No closed streams kept: the ledger answers frames on them as RFC 9113
   * section 5.1 says (on_begin; h2_feed for DATA). Keeping up to
   * SF_H2_MAX_STREAMS of them cost 1.3-1.5% of the user-space instructions
   * of a gRPC call (the ledger's scan gives back 0.45%), more in CPU time,
   * and 18 kB a busy connection (bench_h2_instr.sh, bench_h2.sh).
   * SETTINGS_NO_RFC7540_PRIORITIES is still not sent, though the RFC 7540
   * priority tree costs about 1% more: without it nghttp2 skips PRIORITY
   * frames unchecked (stream 0, a stream depending on itself: h2spec 6.3/1,
   * 5.3.1/2) and unlimited (on_frame's rate limit). */
  nghttp2_option_set_no_closed_streams(options, 1);
}

static void *h2_conn_new(sf_worker *w) {
  static const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, SF_H2_MAX_STREAMS},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, SF_H2_HEADER_MAX},
  };
  h2c *c;
  pthread_once(&setup_once, setup);
  if (setup_failed)
    return NULL;
  c = malloc(sizeof *c);
  if (!c)
    return NULL;
  c->w = w;
  c->dead = c->scan_stopped = 0;
  c->streams = NULL;
  c->pending = 0;
  c->deferred = 0;
  c->calls = c->early = 0;
  memset(&c->ledger, 0, sizeof c->ledger);
  c->ledger.scan_skip = SF_H2_PREFACE_LEN;
  c->ctrl_tokens = SF_H2_CTRL_BURST;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &c->ctrl_at);
  c->out = c->out_inline;
  c->out_len = 0;
  c->out_cap = sizeof c->out_inline;
  if (nghttp2_session_server_new2(&c->s, callbacks, c, options) != 0) {
    free(c);
    return NULL;
  }
  if (nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, settings,
                              sizeof settings / sizeof settings[0]) != 0) {
    nghttp2_session_del(c->s);
    free(c);
    return NULL;
  }
  return c;
}

static size_t h2_feed(void *pc, const char *data, size_t len) {
  h2c *c = pc;
  size_t ok;
  ssize_t n;
  if (c->dead || c->scan_stopped || !nghttp2_session_want_read(c->s))
    return len; /* closing: input is dropped */
  if (c->out_len >= SF_H2_OUT_PAUSE)
    return 0;
  /* nghttp2 gets the frames before one it would ignore but RFC 9113 5.1
   * makes a STREAM_CLOSED error: DATA after the client ended its stream
   * (END_STREAM or RST_STREAM) and the server did not reset it. */
  ok = sf__h2_ledger_scan(&c->ledger, (const uint8_t *)data, len);
  n = nghttp2_session_mem_recv(c->s, (const uint8_t *)data, ok);
  if (n >= 0 && ok < len) { /* the scan stopped mid-read: nothing more */
    c->scan_stopped = 1;
    nghttp2_session_terminate_session(c->s, NGHTTP2_STREAM_CLOSED);
  }
  if (n < 0)
    c->dead = 1; /* bad preface, flood, out of memory: close now */
  else
    pump(c);
  return len;
}

static size_t h2_output(void *pc, const char **buf) {
  h2c *c = pc;
  if (c->out_len == 0)
    pump(c); /* what waited for the last write */
  *buf = c->out;
  return c->out_len;
}

static void h2_sent(void *pc) {
  h2c *c = pc;
  c->out_len = 0;
  if (c->out != c->out_inline) {
    free(c->out);
    c->out = c->out_inline;
    c->out_cap = sizeof c->out_inline;
  }
}

static int h2_closing(const void *pc) {
  const h2c *c = pc;
  return c->dead || (!nghttp2_session_want_read(c->s) &&
                     !nghttp2_session_want_write(c->s));
}

/* h2_tick lets streaming calls report changes (a Watch: the lease lost or
 * back); 1 while calls are open (the connection is not idle). */
static int h2_tick(void *pc) {
  h2c *c = pc;
  if (c->dead || c->calls == 0)
    return 0;
  for (stream *st = c->streams; st; st = st->next)
    if (st->call && sf__grpc_poll(st->call))
      sf__h2_resume(c, st);
  return 1;
}

static void h2_goaway(void *pc) {
  h2c *c = pc;
  for (stream *st = c->streams; st; st = st->next)
    if (st->call) {
      sf__grpc_shutdown(st->call);
      sf__h2_resume(c, st);
    }
  if (!c->dead &&
      nghttp2_submit_goaway(c->s, NGHTTP2_FLAG_NONE,
                            nghttp2_session_get_last_proc_stream_id(c->s),
                            NGHTTP2_NO_ERROR, NULL, 0) == 0)
    pump(c);
}

static void h2_conn_free(void *pc) {
  h2c *c = pc;
  nghttp2_session_del(c->s);
  while (c->streams) {
    stream *st = c->streams;
    c->streams = st->next;
    sf__h2_stream_free(st);
  }
  if (c->out != c->out_inline)
    free(c->out);
  free(c);
}

const sf_proto sf__proto_h2 = {
    .name = "h2",
    .conn_new = h2_conn_new,
    .feed = h2_feed,
    .output = h2_output,
    .sent = h2_sent,
    .closing = h2_closing,
    .conn_free = h2_conn_free,
    .goaway = h2_goaway,
    .tick = h2_tick,
};
