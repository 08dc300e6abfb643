/*
 * server.c - sockets and event loops: accept, read, feed the connection's
 * protocol (proto.h: HTTP/1.x, HTTP/2, ...), write, time out, shut down.
 *
 * Each connection has at most one write in flight; while it is, reading
 * stops, so a client that does not read its answers only ever holds its own
 * buffers. Reads go into one buffer per loop: the bytes are parsed before
 * the next read, and only what parsing left over (rare) is copied aside.
 */
#include "server.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "sockaddr.h"

#define READ_BUF 65536
#define DRAIN_MS 2000 /* after answering "close", wait this long for EOF */
#define STOP_MS 500   /* in-flight work gets this long at shutdown */

/* The HTTP/2 client preface: a connection on an HTTP/1 listener that opens
 * with it speaks HTTP/2 (prior knowledge). */
#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN (sizeof H2_PREFACE - 1)

typedef struct worker worker;

typedef struct listener {
  uv_tcp_t tcp;
  worker *wk;
  const sf_listen_spec *spec;
  int fd; /* until the handle owns it, -1 after */
} listener;

typedef struct conn {
  uv_tcp_t tcp;
  uv_write_t wreq;
  uv_shutdown_t sreq;
  worker *wk;
  struct conn *prev, *next;
  const sf_proto *proto; /* NULL while the first bytes decide (h2c) */
  void *pc;              /* the protocol's state */
  const sf_listen_spec *spec;
  uint64_t last_active; /* uv_now() of the last progress */
  int writing, closed, draining, eof;
  char *pending; /* input parsing left over while output waited */
  size_t pending_off, pending_len;
  size_t sniffed;     /* bytes of the HTTP/2 preface seen so far */
  struct conn *qnext; /* in the worker's flush queue while queued */
  int queued;
} conn;

struct worker {
  uv_loop_t loop;
  listener listeners[SF_SRV_MAX_LISTENERS];
  unsigned nlisteners;
  uv_async_t stop_async;
  uv_timer_t tick, stop_timer;
  uv_check_t flush_check; /* sends the answers of one pass over the reads */
  conn *flushq;
  uv_thread_t thread;
  int stopping, finished, started;
  uint64_t tick_ms;
  sf_server *srv;
  conn *conns; /* every open connection, for the idle sweep */
  sf_worker w;
  char rbuf[READ_BUF];
};

struct sf_server {
  sf_node *node;
  unsigned nworkers;
  unsigned nspecs;
  sf_listen_spec specs[SF_SRV_MAX_LISTENERS]; /* ports filled in for 0 */
  worker **workers;
};

static void process(conn *c, const char *data, size_t len);

/* ----------------------------------------------------------- connections */

static void maybe_finish(worker *wk);

static void on_close(uv_handle_t *h) {
  conn *c = h->data;
  worker *wk = c->wk;
  if (c->prev)
    c->prev->next = c->next;
  else
    wk->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  if (c->pc)
    c->proto->conn_free(c->pc);
  free(c->pending);
  free(c);
  atomic_fetch_sub_explicit(&wk->srv->node->open_conns, 1,
                            memory_order_relaxed);
  maybe_finish(wk);
}

static void close_conn(conn *c) {
  if (c->closed)
    return;
  c->closed = 1;
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn *c = h->data;
  (void)hint;
  *buf = uv_buf_init(c->wk->rbuf, sizeof c->wk->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn *c = req->data;
  if (status < 0)
    close_conn(c);
}

/* finish answers "close": send FIN, then read and drop until the peer
 * closes too, so unread request bytes cannot turn into a reset that
 * destroys the answer in flight. */
static void finish(conn *c) {
  if (c->draining || c->closed)
    return;
  c->draining = 1;
  c->last_active = uv_now(&c->wk->loop);
  c->sreq.data = c;
  if (c->eof || uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown)) {
    close_conn(c);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_write(uv_write_t *req, int status);

/* flush sends c's output: 0 when all is written, 1 when a write is in
 * flight, -1 when the connection is closing. */
static int flush(conn *c) {
  const char *out;
  size_t len = c->pc ? c->proto->output(c->pc, &out) : 0;
  if (len > 0) {
    uv_buf_t b = uv_buf_init((char *)out, (unsigned)len);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r == (int)len) {
      c->proto->sent(c->pc);
    } else if (r >= 0 || r == UV_EAGAIN) {
      size_t off = r > 0 ? (size_t)r : 0;
      b = uv_buf_init((char *)out + off, (unsigned)(len - off));
      c->wreq.data = c;
      if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write)) {
        close_conn(c);
        return -1;
      }
      c->writing = 1;
      uv_read_stop((uv_stream_t *)&c->tcp);
      return 1;
    } else {
      close_conn(c);
      return -1;
    }
  }
  if ((c->pc && c->proto->closing(c->pc)) || c->wk->stopping) {
    if (c->wk->stopping)
      close_conn(c);
    else
      finish(c);
    return -1;
  }
  return 0;
}

/* resume feeds input left over from before, then reads again. */
static void resume(conn *c) {
  while (c->pending_len > 0 && !c->closed) {
    size_t used =
        c->proto->feed(c->pc, c->pending + c->pending_off, c->pending_len);
    c->pending_off += used;
    c->pending_len -= used;
    if (flush(c) != 0)
      return;
  }
  if (c->closed || c->draining)
    return;
  if (c->eof) {
    close_conn(c);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_write(uv_write_t *req, int status) {
  conn *c = req->data;
  c->writing = 0;
  if (status < 0 || c->closed) {
    close_conn(c);
    return;
  }
  c->last_active = uv_now(&c->wk->loop);
  c->proto->sent(c->pc);
  if (flush(c) != 0)
    return;
  resume(c);
}

/* start gives c its protocol and feeds it the bytes held back while the
 * first bytes decided: 0, or -1 after closing c. */
static int start(conn *c, const sf_proto *proto) {
  size_t held = c->sniffed;
  c->proto = proto;
  c->pc = proto->conn_new(&c->wk->w);
  c->sniffed = 0;
  if (!c->pc) {
    close_conn(c);
    return -1;
  }
  /* Fewer than 24 bytes that began like the preface: for HTTP/1.x a
   * malformed request, answered without pausing on output. */
  if (held > 0)
    proto->feed(c->pc, H2_PREFACE, held);
  return 0;
}

/* sniff decides an HTTP/1 listener's connection from its first bytes: an
 * HTTP/2 client preface goes to the listener's h2 protocol. Bytes that
 * match the preface so far are held back (they are the preface's own); 0
 * with the protocol started and *data, *len what is left to feed, 1 when
 * more bytes are needed, or -1 after closing c. */
static int sniff(conn *c, const char **data, size_t *len) {
  size_t n = H2_PREFACE_LEN - c->sniffed;
  if (n > *len)
    n = *len;
  if (memcmp(*data, &H2_PREFACE[c->sniffed], n) != 0)
    return start(c, c->spec->proto);
  c->sniffed += n;
  *data += n;
  *len -= n;
  if (c->sniffed < H2_PREFACE_LEN)
    return 1;
  return start(c, c->spec->h2);
}

/* on_flush_check sends the answers of a pass over the ready sockets after
 * it, as redis-server's beforeSleep does (closed connections are skipped;
 * libuv frees them only after this phase). */
static void on_flush_check(uv_check_t *h) {
  worker *wk = h->data;
  conn *c = wk->flushq;
  wk->flushq = NULL;
  while (c) {
    conn *next = c->qnext;
    c->queued = 0;
    c->qnext = NULL;
    if (!c->closed && !c->writing)
      flush(c);
    c = next;
  }
}

static void process(conn *c, const char *data, size_t len) {
  if (!c->proto) {
    int r = sniff(c, &data, &len);
    if (r != 0)
      return;
  }
  while (len > 0) {
    size_t used = c->proto->feed(c->pc, data, len);
    int r;
    data += used;
    len -= used;
    if (len == 0) { /* all taken: answer with the others, this pass */
      if (!c->queued) {
        c->queued = 1;
        c->qnext = c->wk->flushq;
        c->wk->flushq = c;
      }
      return;
    }
    r = flush(c);
    if (r < 0)
      return;
    if (r > 0) {
      if (len > 0) { /* parsing paused on a full output buffer */
        char *p = realloc(c->pending, len);
        if (!p) {
          close_conn(c);
          return;
        }
        memcpy(p, data, len);
        c->pending = p;
        c->pending_off = 0;
        c->pending_len = len;
      }
      return;
    }
  }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn *c = s->data;
  if (c->closed)
    return;
  if (n > 0) {
    c->last_active = uv_now(&c->wk->loop);
    if (!c->draining)
      process(c, buf->base, (size_t)n);
  } else if (n < 0) {
    c->eof = 1;
    uv_read_stop(s);
    /* Answers queued in this pass go out first (a full read, then EOF). */
    if (c->queued && !c->writing && !c->draining && flush(c) != 0)
      return; /* closing, or on_write ends it (resume sees eof) */
    if (!c->writing)
      close_conn(c);
  }
}

static void on_refused_close(uv_handle_t *h) {
  free(h);
}

static void on_connection(uv_stream_t *server, int status) {
  listener *ls = server->data;
  worker *wk = ls->wk;
  const sf_listen_spec *spec = ls->spec;
  sf_node *node = wk->srv->node;
  conn *c;
  int64_t open;
  if (status < 0 || wk->stopping)
    return;
  open = atomic_fetch_add_explicit(&node->open_conns, 1, memory_order_relaxed);
  if (open >= (int64_t)node->cfg->max_connections) {
    uv_tcp_t *t = malloc(sizeof *t);
    atomic_fetch_sub_explicit(&node->open_conns, 1, memory_order_relaxed);
    if (!t)
      return;
    uv_tcp_init(&wk->loop, t);
    if (uv_accept(server, (uv_stream_t *)t) == 0) {
      if (spec->proto->busy) {
        uv_buf_t b = uv_buf_init((char *)spec->proto->busy,
                                 (unsigned)strlen(spec->proto->busy));
        uv_try_write((uv_stream_t *)t, &b, 1);
      }
      sf__ctr_add(&wk->w.stats->conns_refused, 1);
    }
    uv_close((uv_handle_t *)t, on_refused_close);
    return;
  }
  c = calloc(1, sizeof *c);
  if (!c) {
    atomic_fetch_sub_explicit(&node->open_conns, 1, memory_order_relaxed);
    return;
  }
  c->wk = wk;
  c->spec = spec;
  if (!spec->h2) {
    c->proto = spec->proto;
    c->pc = spec->proto->conn_new(&wk->w);
    if (!c->pc) {
      free(c);
      atomic_fetch_sub_explicit(&node->open_conns, 1, memory_order_relaxed);
      return;
    }
  }
  uv_tcp_init(&wk->loop, &c->tcp);
  c->tcp.data = c;
  c->next = wk->conns;
  if (wk->conns)
    wk->conns->prev = c;
  wk->conns = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    close_conn(c);
    return;
  }
  sf__ctr_add(&wk->w.stats->conns_accepted, 1);
  uv_tcp_nodelay(&c->tcp, 1);
  c->last_active = uv_now(&wk->loop);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---------------------------------------------------------------- workers */

static void on_tick(uv_timer_t *t) {
  worker *wk = t->data;
  uint64_t now = uv_now(&wk->loop);
  int64_t idle = wk->srv->node->cfg->idle_timeout_ms;
  sf__worker_set_date(&wk->w, (int64_t)time(NULL));
  for (conn *c = wk->conns, *next; c; c = next) {
    int64_t limit = c->draining && idle > DRAIN_MS ? DRAIN_MS : idle;
    next = c->next;
    /* A stream the server drives (a health Watch) may have news, and
     * keeps its connection from being idle. */
    if (!c->closed && !c->draining && c->pc && c->proto->tick &&
        c->proto->tick(c->pc)) {
      c->last_active = now;
      if (!c->writing)
        flush(c);
    }
    if (!c->closed && now - c->last_active >= (uint64_t)limit) {
      if (!c->draining)
        sf__ctr_add(&wk->w.stats->conns_idle_closed, 1);
      close_conn(c);
    }
  }
}

static void on_handle_closed(uv_handle_t *h) {
  (void)h;
}

static void maybe_finish(worker *wk) {
  if (!wk->stopping || wk->conns || wk->finished)
    return;
  wk->finished = 1;
  uv_close((uv_handle_t *)&wk->tick, on_handle_closed);
  uv_close((uv_handle_t *)&wk->stop_timer, on_handle_closed);
  uv_close((uv_handle_t *)&wk->stop_async, on_handle_closed);
  uv_close((uv_handle_t *)&wk->flush_check, on_handle_closed);
}

static void on_stop_timer(uv_timer_t *t) {
  worker *wk = t->data;
  for (conn *c = wk->conns; c; c = c->next)
    close_conn(c);
  maybe_finish(wk);
}

static void on_stop(uv_async_t *a) {
  worker *wk = a->data;
  if (wk->stopping)
    return;
  wk->stopping = 1;
  for (unsigned i = 0; i < wk->nlisteners; i++)
    uv_close((uv_handle_t *)&wk->listeners[i].tcp, on_handle_closed);
  /* Idle connections go now, after a goodbye where the protocol has one
   * (flush closes once it is out); the rest, queued ones too, once sent. */
  for (conn *c = wk->conns; c; c = c->next)
    if (c->pc && c->proto->goaway && !c->writing && !c->closed) {
      c->proto->goaway(c->pc);
      flush(c);
    } else if (!c->writing && c->pending_len == 0 && !c->queued)
      close_conn(c);
  uv_timer_start(&wk->stop_timer, on_stop_timer, STOP_MS, 0);
  maybe_finish(wk);
}

static void worker_main(void *arg) {
  worker *wk = arg;
  uv_run(&wk->loop, UV_RUN_DEFAULT);
}

static void worker_free(worker *wk) {
  if (!wk)
    return;
  if (wk->started) {
    uv_run(&wk->loop, UV_RUN_DEFAULT); /* run pending close callbacks */
    uv_loop_close(&wk->loop);
  }
  for (unsigned i = 0; i < wk->nlisteners; i++)
    if (wk->listeners[i].fd >= 0)
      close(wk->listeners[i].fd);
  sf__worker_free(&wk->w);
  free(wk);
}

static int worker_new(sf_server *s, unsigned i, char *err, size_t errlen) {
  const sf_srv_config *cfg = s->node->cfg;
  worker *wk = calloc(1, sizeof *wk);
  uint64_t tick;
  if (!wk) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  s->workers[i] = wk;
  wk->srv = s;
  if (sf__worker_init(&wk->w, s->node, &s->node->stats[i])) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  for (unsigned k = 0; k < s->nspecs; k++) {
    listener *ls = &wk->listeners[k];
    ls->wk = wk;
    ls->spec = &s->specs[k];
    ls->fd = sf__listen_socket(cfg->bind, cfg->bind_v6, ls->spec->port,
                               ls->spec->name, err, errlen);
    wk->nlisteners = k + 1;
    if (ls->fd < 0)
      return -1;
    if (s->specs[k].port == 0) /* port 0: the other threads share this one */
      s->specs[k].port = sf__sockaddr_port(ls->fd);
  }
  if (uv_loop_init(&wk->loop)) {
    snprintf(err, errlen, "cannot create an event loop");
    return -1;
  }
  wk->started = 1;
  for (unsigned k = 0; k < wk->nlisteners; k++) {
    listener *ls = &wk->listeners[k];
    uv_tcp_init(&wk->loop, &ls->tcp);
    ls->tcp.data = ls;
    if (uv_tcp_open(&ls->tcp, ls->fd)) {
      snprintf(err, errlen, "cannot use the listening socket");
      return -1;
    }
    ls->fd = -1; /* the handle owns it now */
    if (uv_listen((uv_stream_t *)&ls->tcp, 4096, on_connection)) {
      snprintf(err, errlen, "cannot listen");
      return -1;
    }
  }
  uv_async_init(&wk->loop, &wk->stop_async, on_stop);
  wk->stop_async.data = wk;
  uv_timer_init(&wk->loop, &wk->stop_timer);
  wk->stop_timer.data = wk;
  uv_timer_init(&wk->loop, &wk->tick);
  wk->tick.data = wk;
  tick = (uint64_t)cfg->idle_timeout_ms / 2;
  tick = tick < 5 ? 5 : tick > 250 ? 250 : tick;
  uv_timer_start(&wk->tick, on_tick, tick, tick);
  uv_check_init(&wk->loop, &wk->flush_check);
  wk->flush_check.data = wk;
  uv_check_start(&wk->flush_check, on_flush_check);
  return 0;
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

int sf__server_start(sf_node *node, const sf_listen_spec *specs,
                     unsigned nspecs, sf_server **out, char *err,
                     size_t errlen) {
  sf_server *s;
  unsigned n = node->cfg->threads;
  if (nspecs == 0 || nspecs > SF_SRV_MAX_LISTENERS) {
    snprintf(err, errlen, "between 1 and %d listeners, not %u",
             SF_SRV_MAX_LISTENERS, nspecs);
    return -1;
  }
  s = calloc(1, sizeof *s);
  if (!s || !(s->workers = calloc(n, sizeof *s->workers))) {
    free(s);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  s->node = node;
  s->nspecs = nspecs;
  memcpy(s->specs, specs, nspecs * sizeof *specs);
  for (unsigned i = 0; i < n; i++) {
    if (worker_new(s, i, err, errlen))
      goto fail;
    s->nworkers = i + 1;
  }
  for (unsigned i = 0; i < n; i++)
    if (uv_thread_create(&s->workers[i]->thread, worker_main, s->workers[i])) {
      snprintf(err, errlen, "cannot start thread %u", i);
      /* The running ones are stopped by sf__server_stop. */
      s->nworkers = i;
      sf__server_stop(s);
      return -1;
    }
  *out = s;
  return 0;
fail:
  for (unsigned i = 0; i < n; i++) {
    worker *wk = s->workers[i];
    if (wk && wk->started)
      uv_walk(&wk->loop, close_any, NULL);
    worker_free(wk);
  }
  free(s->workers);
  free(s);
  return -1;
}

unsigned sf__server_port(const sf_server *s, unsigned i) {
  return i < s->nspecs ? s->specs[i].port : 0;
}

void sf__server_stop(sf_server *s) {
  for (unsigned i = 0; i < s->nworkers; i++)
    uv_async_send(&s->workers[i]->stop_async);
  for (unsigned i = 0; i < s->nworkers; i++) {
    uv_thread_join(&s->workers[i]->thread);
    worker_free(s->workers[i]);
  }
  free(s->workers);
  free(s);
}
