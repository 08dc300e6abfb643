/*
 * memcache.c - the memcached text protocol (memcache.h).
 *
 * Storage commands (set, add, replace, append, prepend, cas) are refused
 * with CLIENT_ERROR after their data block is dropped unread, so the next
 * command lines up; with "noreply" nothing is answered, as memcached does.
 * Other commands memcached knows get CLIENT_ERROR naming them; the rest
 * ERROR. A line over SF_MC_LINE_MAX, a data block over SF_MC_VALUE_MAX or
 * the binary protocol's magic byte is answered and the connection closes.
 */
#include "memcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "mint.h"
#include "snowflake.h"

#define REPLY(c, lit) put((c), (lit), sizeof(lit) - 1)
#define MAX_TOKENS 24 /* the command and the first keys looked at */

typedef struct tok {
  const char *p;
  size_t len;
} tok;

static void put(sf_mc_conn *c, const void *p, size_t n) {
  if (sf__obuf_put(&c->out, p, n))
    c->closing = 1;
}

/* line_error answers kind ("CLIENT_ERROR", "SERVER_ERROR") and msg, with
 * any byte outside printable ASCII written as '?'. */
static void line_error(sf_mc_conn *c, const char *kind, const char *msg) {
  char b[256];
  int n = snprintf(b, sizeof b, "%s %s", kind, msg);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof b)
    n = sizeof b - 1;
  for (int i = 0; i < n; i++)
    if (b[i] < 0x20 || b[i] >= 0x7f)
      b[i] = '?';
  put(c, b, (size_t)n);
  REPLY(c, "\r\n");
}

static int is_word(const tok *t, const char *w) {
  return t->len == strlen(w) && memcmp(t->p, w, t->len) == 0;
}

/* ------------------------------------------------------------------ get */

static int key_ok(const tok *t) {
  if (t->len > SF_MC_KEY_MAX)
    return 0;
  for (size_t i = 0; i < t->len; i++)
    if ((unsigned char)t->p[i] <= 0x20 || t->p[i] == 0x7f)
      return 0;
  return 1;
}

/* get answers "get|gets <key>..." (keys: the line after the command): one
 * VALUE per key, gets with the ID as its cas unique, then END. */
static void get(sf_mc_conn *c, const char *keys, size_t len, int cas) {
  sf_worker *w = c->w;
  unsigned max = w->node->cfg->max_batch;
  size_t n = 0, i = 0, j = 0;
  sf_mint_error e;
  char msg[96], *d, *p;
  tok t;
  /* Count and check the keys first: all are answered or none. */
  for (i = 0; i < len;) {
    while (i < len && keys[i] == ' ')
      i++;
    for (t.p = keys + i; i < len && keys[i] != ' '; i++)
      ;
    t.len = (size_t)(keys + i - t.p);
    if (t.len == 0)
      continue;
    if (!key_ok(&t)) {
      line_error(c, "CLIENT_ERROR",
                 "bad key: over 250 bytes or a control "
                 "character");
      return;
    }
    n++;
  }
  if (n == 0) {
    REPLY(c, "ERROR\r\n");
    return;
  }
  if (n > max) {
    snprintf(msg, sizeof msg, "%zu keys in one get, at most %u (MAX_BATCH)", n,
             max);
    line_error(c, "CLIENT_ERROR", msg);
    return;
  }
  if (sf__mint(w, w->ids, n, &e) != 0) {
    line_error(c, "SERVER_ERROR", e.msg);
    return;
  }
  /* Each VALUE line holds its key once: len bounds the keys' bytes. */
  d = p = sf__obuf_reserve(&c->out, len + n * (2 * SF_ID_BUFSIZE + 40) + 8);
  if (!d) {
    c->closing = 1;
    return;
  }
  for (i = 0; i < len;) {
    char digits[SF_ID_BUFSIZE];
    size_t dl;
    while (i < len && keys[i] == ' ')
      i++;
    for (t.p = keys + i; i < len && keys[i] != ' '; i++)
      ;
    t.len = (size_t)(keys + i - t.p);
    if (t.len == 0)
      continue;
    dl = sf__u64_dec(digits, w->ids[j]);
    SF_PUT(p, "VALUE ");
    memcpy(p, t.p, t.len);
    p += t.len;
    SF_PUT(p, " 0 ");
    p += sf__u64_dec(p, dl);
    if (cas) {
      *p++ = ' ';
      memcpy(p, digits, dl);
      p += dl;
    }
    SF_PUT(p, "\r\n");
    memcpy(p, digits, dl);
    p += dl;
    SF_PUT(p, "\r\n");
    j++;
  }
  SF_PUT(p, "END\r\n");
  c->out.len += (size_t)(p - d);
}

/* ----------------------------------------------------- the other commands */

/* libmemcached copies STAT version into 24 bytes, its NUL included. */
_Static_assert(sizeof(SF_MC_VERSION) <= 24, "SF_MC_VERSION too long");

/* stats_general answers "stats": memcached's general statistics that mean
 * something here (no items are kept: curr_items 0), then the node's own. */
static void stats_general(sf_mc_conn *c) {
  const sf_node *n = c->w->node;
  char b[1024];
  struct rusage ru;
  int64_t now = (int64_t)time(NULL), up = now - n->start_unix_ms / 1000;
  int len;
  getrusage(RUSAGE_SELF, &ru);
  len = snprintf(
      b, sizeof b,
      "STAT pid %ld\r\nSTAT uptime %lld\r\nSTAT time %lld\r\n"
      "STAT version %s\r\nSTAT pointer_size %d\r\n"
      "STAT rusage_user %ld.%06ld\r\nSTAT rusage_system %ld.%06ld\r\n"
      "STAT max_connections %u\r\nSTAT curr_connections %lld\r\n"
      "STAT total_connections %llu\r\nSTAT cmd_get %llu\r\n"
      "STAT curr_items 0\r\nSTAT total_items 0\r\nSTAT bytes 0\r\n"
      "STAT threads %u\r\nSTAT snowflaked_version %s\r\n"
      "STAT machine_id %llu\r\nSTAT ids_issued %llu\r\n"
      "STAT max_batch %u\r\nEND\r\n",
      (long)getpid(), (long long)(up > 0 ? up : 0), (long long)now,
      SF_MC_VERSION, (int)(8 * sizeof(void *)), (long)ru.ru_utime.tv_sec,
      (long)ru.ru_utime.tv_usec, (long)ru.ru_stime.tv_sec,
      (long)ru.ru_stime.tv_usec, n->cfg->max_connections,
      (long long)atomic_load_explicit(&n->open_conns, memory_order_relaxed),
      (unsigned long long)SF_STATS_TOTAL(n, conns_accepted),
      (unsigned long long)SF_STATS_TOTAL(n, proto_requests[SF_PROTO_MEMCACHED]),
      n->cfg->threads, SF_VERSION_STRING,
      (unsigned long long)sf_gen_machine_id(n->gen),
      (unsigned long long)SF_STATS_TOTAL(n, ids_issued), n->cfg->max_batch);
  put(c, b, (size_t)len < sizeof b ? (size_t)len : sizeof b - 1);
}

/* stats_settings answers "stats settings": the settings memcached names
 * that have a meaning here. */
static void stats_settings(sf_mc_conn *c) {
  const sf_srv_config *cfg = c->w->node->cfg;
  char b[512];
  int len = snprintf(b, sizeof b,
                     "STAT maxconns %u\r\nSTAT num_threads %u\r\n"
                     "STAT idle_timeout %lld\r\nSTAT binding_protocol ascii\r\n"
                     "STAT cas_enabled yes\r\nSTAT max_batch %u\r\nEND\r\n",
                     cfg->max_connections, cfg->threads,
                     (long long)(cfg->idle_timeout_ms / 1000), cfg->max_batch);
  put(c, b, (size_t)len < sizeof b ? (size_t)len : sizeof b - 1);
}

/* stats_empty answers a group of what this server keeps none of (items,
 * slabs, sizes, connections): memcached's answer with nothing in it. */
static void stats_empty(sf_mc_conn *c) {
  REPLY(c, "END\r\n");
}

static void stats_slabs(sf_mc_conn *c) {
  REPLY(c, "STAT active_slabs 0\r\nSTAT total_malloced 0\r\nEND\r\n");
}

/* The stats groups clients send ("stats <group>"), as memcached 1.4-1.6
 * answers them. */
static const struct {
  const char *group;
  void (*fn)(sf_mc_conn *c);
} stats_groups[] = {
    {"settings", stats_settings}, {"items", stats_empty},
    {"slabs", stats_slabs},       {"sizes", stats_empty},
    {"conns", stats_empty},       {"extstore", stats_empty},
};

/* stats answers "stats [group [args]]" (t: its tokens, nt of them). */
static void stats(sf_mc_conn *c, const tok *t, size_t nt) {
  if (nt == 1) {
    stats_general(c);
    return;
  }
  for (size_t i = 0; i < sizeof stats_groups / sizeof stats_groups[0]; i++)
    if (is_word(&t[1], stats_groups[i].group)) {
      stats_groups[i].fn(c);
      return;
    }
  if (is_word(&t[1], "detail") && nt == 3 && is_word(&t[2], "dump")) {
    stats_empty(c);
    return;
  }
  line_error(c, "CLIENT_ERROR",
             is_word(&t[1], "reset")
                 ? "the counters are not reset: they only grow (Prometheus)"
                 : "stats groups: settings, items, slabs, sizes, conns, "
                   "extstore, detail dump");
}

/* storage drops the data block of set/add/replace/append/prepend/cas
 * ("<cmd> <key> <flags> <exptime> <bytes> [cas] [noreply]") and refuses it
 * once dropped. */
static void storage(sf_mc_conn *c, const tok *t, size_t nt) {
  size_t want = is_word(&t[0], "cas") ? 6 : 5;
  uint64_t bytes = 0;
  if (nt < want || nt > want + 1 || t[4].len == 0 || t[4].len > 10) {
    line_error(c, "CLIENT_ERROR", "bad command line format");
    return;
  }
  for (size_t i = 0; i < t[4].len; i++) {
    if (t[4].p[i] < '0' || t[4].p[i] > '9') {
      line_error(c, "CLIENT_ERROR", "bad command line format");
      return;
    }
    bytes = bytes * 10 + (uint64_t)(t[4].p[i] - '0');
  }
  if (bytes > SF_MC_VALUE_MAX) {
    line_error(c, "SERVER_ERROR", "object too large for cache");
    c->closing = 1;
    return;
  }
  c->skip = bytes + 2;
  c->skip_answer = !(nt == want + 1 && is_word(&t[nt - 1], "noreply"));
}

/* Commands memcached knows that an ID server does not serve. */
static const char *const refused[] = {
    "incr",           "decr", "delete",    "touch",       "gat",   "gats",
    "flush_all",      "mg",   "ms",        "md",          "ma",    "me",
    "cache_memlimit", "lru",  "verbosity", "lru_crawler", "slabs", "watch"};

static void command(sf_mc_conn *c, const char *line, size_t len) {
  tok t[MAX_TOKENS];
  size_t nt = 0, i = 0;
  char msg[96];
  sf__ctr_add(&c->w->stats->proto_requests[SF_PROTO_MEMCACHED], 1);
  while (i < len && nt < MAX_TOKENS) {
    while (i < len && line[i] == ' ')
      i++;
    if (i == len)
      break;
    t[nt].p = line + i;
    while (i < len && line[i] != ' ')
      i++;
    t[nt].len = (size_t)(line + i - t[nt].p);
    nt++;
  }
  if (nt == 0) {
    REPLY(c, "ERROR\r\n");
    return;
  }
  if (is_word(&t[0], "get") || is_word(&t[0], "gets")) {
    const char *keys = t[0].p + t[0].len;
    get(c, keys, (size_t)(line + len - keys), t[0].len == 4);
  } else if (is_word(&t[0], "version") && nt == 1) {
    REPLY(c, "VERSION " SF_MC_VERSION "\r\n");
  } else if (is_word(&t[0], "stats")) {
    stats(c, t, nt);
  } else if (is_word(&t[0], "quit")) {
    c->closing = 1;
  } else if (is_word(&t[0], "set") || is_word(&t[0], "add") ||
             is_word(&t[0], "replace") || is_word(&t[0], "append") ||
             is_word(&t[0], "prepend") || is_word(&t[0], "cas")) {
    storage(c, t, nt);
  } else {
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++)
      if (is_word(&t[0], refused[k])) {
        snprintf(msg, sizeof msg,
                 "%s is not supported: this server only issues IDs (get, "
                 "gets)",
                 refused[k]);
        line_error(c, "CLIENT_ERROR", msg);
        return;
      }
    REPLY(c, "ERROR\r\n");
  }
}

/* ------------------------------------------------------------ connection */

/* line_done answers the line at p (its '\n' excluded). */
static void line_done(sf_mc_conn *c, const char *p, size_t n) {
  if (n > 0 && p[n - 1] == '\r')
    n--;
  command(c, p, n);
}

static void line_release(sf_mc_conn *c) {
  c->line_len = 0;
  if (c->line != c->line_inline) {
    free(c->line);
    c->line = c->line_inline;
    c->line_cap = sizeof c->line_inline;
  }
}

/* gather adds a partial line to c->line: 0, or -1 when it is too long. */
static int gather(sf_mc_conn *c, const char *p, size_t n) {
  if (c->line_len + n > SF_MC_LINE_MAX) {
    line_error(c, "CLIENT_ERROR", "line over 8192 bytes");
    c->closing = 1;
    return -1;
  }
  if (c->line_len + n > c->line_cap) {
    char *b = malloc(SF_MC_LINE_MAX);
    if (!b) {
      line_error(c, "SERVER_ERROR", "out of memory");
      c->closing = 1;
      return -1;
    }
    memcpy(b, c->line, c->line_len);
    c->line = b;
    c->line_cap = SF_MC_LINE_MAX;
  }
  memcpy(c->line + c->line_len, p, n);
  c->line_len += n;
  return 0;
}

/* drop skips a refused data block: the bytes used. */
static size_t drop(sf_mc_conn *c, size_t n) {
  size_t k = n < c->skip ? n : (size_t)c->skip;
  c->skip -= k;
  if (c->skip == 0 && c->skip_answer)
    line_error(c, "CLIENT_ERROR",
               "storing is not supported: this server only issues IDs "
               "(get, gets)");
  return k;
}

static size_t mc_feed(void *pc, const char *data, size_t len) {
  sf_mc_conn *c = pc;
  size_t i = 0;
  while (i < len && !c->closing) {
    const char *p = data + i, *nl;
    size_t n = len - i, take;
    if (c->skip) {
      i += drop(c, n);
      continue;
    }
    if (c->out.len >= SF_MC_OUT_PAUSE)
      return i;
    if (c->line_len == 0 && (unsigned char)*p == 0x80) {
      line_error(c, "CLIENT_ERROR",
                 "the binary protocol is not supported; use the text one");
      c->closing = 1;
      break;
    }
    nl = memchr(p, '\n', n);
    take = nl ? (size_t)(nl - p) + 1 : n;
    if (c->line_len == 0 && nl && take <= SF_MC_LINE_MAX) {
      line_done(c, p, take - 1); /* whole: read in place */
    } else if (gather(c, p, take) == 0 && nl) {
      line_done(c, c->line, c->line_len - 1);
      line_release(c);
    }
    i += take;
  }
  return len;
}

static void *mc_conn_new(sf_worker *w) {
  /* Only the head is written: the inline buffers need no zeroing. */
  sf_mc_conn *c = malloc(sizeof *c);
  if (!c)
    return NULL;
  memset(c, 0, offsetof(sf_mc_conn, line_inline));
  c->w = w;
  sf__obuf_init(&c->out, c->out_inline, sizeof c->out_inline);
  c->line = c->line_inline;
  c->line_cap = sizeof c->line_inline;
  return c;
}

static size_t mc_output(void *pc, const char **buf) {
  sf_mc_conn *c = pc;
  *buf = c->out.p;
  return c->out.len;
}

static void mc_sent(void *pc) {
  sf_mc_conn *c = pc;
  sf__obuf_sent(&c->out);
}

static int mc_closing(const void *pc) {
  const sf_mc_conn *c = pc;
  return c->closing;
}

static void mc_conn_free(void *pc) {
  sf_mc_conn *c = pc;
  if (!c)
    return;
  line_release(c);
  sf__obuf_sent(&c->out);
  free(c);
}

const sf_proto sf__proto_memcached = {
    .name = "memcached",
    .conn_new = mc_conn_new,
    .feed = mc_feed,
    .output = mc_output,
    .sent = mc_sent,
    .closing = mc_closing,
    .conn_free = mc_conn_free,
};
