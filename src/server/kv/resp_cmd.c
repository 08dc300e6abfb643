/*
 * resp_cmd.c - the RESP commands: a static table from name to handler.
 *
 * IDs come only from sf__mint(). GET <key> answers one ID for any key but
 * one starting "ids:": GET ids:<n> answers an array of n increasing IDs
 * (1 <= n <= MAX_BATCH), minted in one call. MGET answers one ID per key,
 * increasing, also in one call. The rest is what clients send on connect
 * (HELLO, CLIENT SETNAME/SETINFO, SELECT 0, COMMAND DOCS, CONFIG GET) and
 * the server commands PING, ECHO, INFO and QUIT.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "mint.h"
#include "resp.h"
#include "snowflake.h"

#define REPLY(c, lit) sf__resp_put((c), (lit), sizeof(lit) - 1)

typedef void (*cmd_fn)(sf_resp_conn *c);

typedef struct cmd {
  const char *name;
  uint32_t min_args, max_args; /* the name included; 0: no maximum */
  cmd_fn fn;
} cmd;

/* eq is true when argument i is word, ignoring case. */
static int eq(const sf_resp_conn *c, uint32_t i, const char *word) {
  size_t n;
  const char *a = sf__resp_arg(c, i, &n);
  return n == strlen(word) && strncasecmp(a, word, n) == 0;
}

/* quote writes at most max bytes of a as 'a', a byte outside printable
 * ASCII as '?', for error messages that name what the client sent. */
static size_t quote(char *dst, const char *a, size_t n, size_t max) {
  char *p = dst;
  *p++ = '\'';
  for (size_t i = 0; i < n && i < max; i++)
    *p++ = a[i] >= 0x20 && a[i] < 0x7f && a[i] != '\'' ? a[i] : '?';
  if (n > max)
    SF_PUT(p, "...");
  *p++ = '\'';
  *p = '\0';
  return (size_t)(p - dst);
}

static void bulk(sf_resp_conn *c, const char *s, size_t n) {
  char hdr[24], *p = hdr;
  *p++ = '$';
  p += sf__u64_dec(p, n);
  SF_PUT(p, "\r\n");
  sf__resp_put(c, hdr, (size_t)(p - hdr));
  sf__resp_put(c, s, n);
  REPLY(c, "\r\n");
}

/* ------------------------------------------------------------ replies */

void sf__resp_err(sf_resp_conn *c, const char *text) {
  size_t n = strlen(text);
  char *d = sf__obuf_reserve(&c->out, n + 3), *p = d;
  if (!d) {
    c->closing = 1;
    return;
  }
  *p++ = '-';
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)text[i];
    *p++ = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
  }
  *p++ = '\r';
  *p++ = '\n';
  c->out.len += (size_t)(p - d);
}

/* ------------------------------------------------------------ minting */

/* ids mints n IDs and answers them as one bulk string (array == 0, n == 1)
 * or an array of bulk strings; a node that cannot issue answers -ERR and
 * the reason. */
static void ids(sf_resp_conn *c, size_t n, int array) {
  sf_mint_error e;
  char msg[sizeof e.msg + 8], *d, *p;
  if (sf__mint(c->w, c->w->ids, n, &e) != 0) {
    snprintf(msg, sizeof msg, "ERR %s", e.msg);
    sf__resp_err(c, msg);
    return;
  }
  d = p = sf__obuf_reserve(&c->out, 16 + n * (SF_ID_BUFSIZE + 8));
  if (!d) {
    c->closing = 1;
    return;
  }
  if (array) {
    *p++ = '*';
    p += sf__u64_dec(p, n);
    SF_PUT(p, "\r\n");
  }
  for (size_t i = 0; i < n; i++) {
    /* The digits first, then their count in front of them. */
    char digits[SF_ID_BUFSIZE];
    size_t dl = sf__u64_dec(digits, c->w->ids[i]); /* 1..20 */
    *p++ = '$';
    if (dl >= 10)
      *p++ = (char)('0' + dl / 10);
    *p++ = (char)('0' + dl % 10);
    SF_PUT(p, "\r\n");
    memcpy(p, digits, dl);
    p += dl;
    SF_PUT(p, "\r\n");
  }
  c->out.len += (size_t)(p - d);
}

static void c_get(sf_resp_conn *c) {
  size_t kl, n = 0;
  const char *k = sf__resp_arg(c, 1, &kl);
  unsigned max = c->w->node->cfg->max_batch;
  char msg[160], q[48];
  if (kl < 4 || strncmp(k, "ids:", 4) != 0) {
    ids(c, 1, 0);
    return;
  }
  for (size_t i = 4; i < kl && n <= max; i++) {
    if (k[i] < '0' || k[i] > '9') {
      n = 0;
      break;
    }
    n = n * 10 + (size_t)(k[i] - '0');
  }
  if (n < 1 || n > max) {
    quote(q, k + 4, kl - 4, 24);
    snprintf(msg, sizeof msg,
             "ERR GET ids:<n> takes a count n in 1..%u (MAX_BATCH), got %s",
             max, q);
    sf__resp_err(c, msg);
    return;
  }
  ids(c, n, 1);
}

static void c_mget(sf_resp_conn *c) {
  unsigned max = c->w->node->cfg->max_batch;
  char msg[96];
  if (c->nargs - 1 > max) {
    snprintf(msg, sizeof msg, "ERR MGET of %u keys, at most %u (MAX_BATCH)",
             c->nargs - 1, max);
    sf__resp_err(c, msg);
    return;
  }
  ids(c, c->nargs - 1, 1);
}

/* ------------------------------------------------------ server commands */

static void c_ping(sf_resp_conn *c) {
  size_t n;
  const char *a;
  if (c->nargs == 1) {
    REPLY(c, "+PONG\r\n");
    return;
  }
  a = sf__resp_arg(c, 1, &n);
  bulk(c, a, n);
}

static void c_echo(sf_resp_conn *c) {
  size_t n;
  const char *a = sf__resp_arg(c, 1, &n);
  bulk(c, a, n);
}

static void c_quit(sf_resp_conn *c) {
  REPLY(c, "+OK\r\n");
  c->closing = 1;
}

static void c_info(sf_resp_conn *c) {
  const sf_node *n = c->w->node;
  char b[1024];
  int64_t up = (int64_t)time(NULL) - n->start_unix_ms / 1000;
  int len = snprintf(
      b, sizeof b,
      "# Server\r\nserver:snowflaked\r\nsnowflaked_version:%s\r\n"
      "resp_version:2\r\nprocess_id:%ld\r\nuptime_in_seconds:%lld\r\n"
      "threads:%u\r\n\r\n# Node\r\nmachine_id:%llu\r\n"
      "max_batch:%u\r\n\r\n# Clients\r\nconnected_clients:%lld\r\n\r\n"
      "# Stats\r\nids_issued:%llu\r\nredis_commands:%llu\r\n"
      "memcached_commands:%llu\r\nconnections_accepted:%llu\r\n",
      SF_VERSION_STRING, (long)getpid(), (long long)(up > 0 ? up : 0),
      n->cfg->threads, (unsigned long long)sf_gen_machine_id(n->gen),
      n->cfg->max_batch,
      (long long)atomic_load_explicit(&n->open_conns, memory_order_relaxed),
      (unsigned long long)SF_STATS_TOTAL(n, ids_issued),
      (unsigned long long)SF_STATS_TOTAL(n, proto_requests[SF_PROTO_REDIS]),
      (unsigned long long)SF_STATS_TOTAL(n, proto_requests[SF_PROTO_MEMCACHED]),
      (unsigned long long)SF_STATS_TOTAL(n, conns_accepted));
  bulk(c, b, (size_t)len < sizeof b ? (size_t)len : sizeof b - 1);
}

/* ------------------------------------------- what clients send on connect */

/* c_hello answers HELLO [2 [AUTH user pass] [SETNAME name]] with the RESP2
 * form of redis's map; any other version gets NOPROTO, on which RESP3
 * clients (Lettuce, redis-py with protocol=3) fall back to RESP2. */
static void c_hello(sf_resp_conn *c) {
  char b[256], *p = b, q[48];
  size_t n;
  const char *a;
  uint32_t i = 2;
  if (c->nargs > 1) {
    size_t d = 0;
    a = sf__resp_arg(c, 1, &n);
    while (d < n && a[d] >= '0' && a[d] <= '9')
      d++;
    if (n == 0 || d < n || n > 18) {
      sf__resp_err(c, "ERR Protocol version is not an integer or out of "
                      "range");
      return;
    }
    if (!(n == 1 && a[0] == '2')) {
      sf__resp_err(c, "NOPROTO this server speaks RESP2 only: use HELLO 2 "
                      "or no HELLO");
      return;
    }
  }
  while (i < c->nargs) {
    uint32_t take = eq(c, i, "AUTH") ? 3 : eq(c, i, "SETNAME") ? 2 : 0;
    if (take == 0 || i + take > c->nargs) {
      char msg[96];
      a = sf__resp_arg(c, i, &n);
      quote(q, a, n, 32);
      snprintf(msg, sizeof msg, "ERR Syntax error in HELLO option %s", q);
      sf__resp_err(c, msg);
      return;
    }
    i += take; /* no password is needed and names are not kept */
  }
  SF_PUT(p, "*14\r\n$6\r\nserver\r\n$10\r\nsnowflaked\r\n$7\r\nversion\r\n");
  n = strlen(SF_VERSION_STRING);
  *p++ = '$';
  p += sf__u64_dec(p, n);
  SF_PUT(p, "\r\n");
  memcpy(p, SF_VERSION_STRING, n);
  p += n;
  SF_PUT(p, "\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:0\r\n$4\r\nmode\r\n"
            "$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
            "$7\r\nmodules\r\n*0\r\n");
  sf__resp_put(c, b, (size_t)(p - b));
}

static void c_client(sf_resp_conn *c) {
  char msg[112], q[48];
  size_t n;
  const char *a;
  if ((eq(c, 1, "SETNAME") && c->nargs == 3) ||
      (eq(c, 1, "SETINFO") && c->nargs == 4)) {
    REPLY(c, "+OK\r\n"); /* accepted, not kept: it would cost every conn */
    return;
  }
  if (eq(c, 1, "GETNAME") && c->nargs == 2) {
    REPLY(c, "$-1\r\n");
    return;
  }
  a = sf__resp_arg(c, 1, &n);
  quote(q, a, n, 32);
  snprintf(msg, sizeof msg,
           "ERR unknown subcommand or wrong number of arguments for %s", q);
  sf__resp_err(c, msg);
}

static void c_select(sf_resp_conn *c) {
  if (eq(c, 1, "0"))
    REPLY(c, "+OK\r\n");
  else
    sf__resp_err(c, "ERR DB index is out of range (only 0)");
}

static void c_auth(sf_resp_conn *c) {
  sf__resp_err(c, "ERR AUTH <password> called without any password "
                  "configured for the default user. Are you sure your "
                  "configuration is correct?");
}

/* COMMAND, COMMAND DOCS ...: an empty array, which redis-cli takes as "no
 * hints"; CONFIG GET: no parameter matches. */
static void c_empty(sf_resp_conn *c) {
  if (c->nargs >= 2 && eq(c, 0, "CONFIG") && !eq(c, 1, "GET")) {
    sf__resp_err(c, "ERR only CONFIG GET is supported (and it matches "
                    "nothing)");
    return;
  }
  REPLY(c, "*0\r\n");
}

static const cmd cmds[] = {
    {"GET", 2, 2, c_get},       {"MGET", 2, 0, c_mget},
    {"PING", 1, 2, c_ping},     {"ECHO", 2, 2, c_echo},
    {"INFO", 1, 0, c_info},     {"QUIT", 1, 0, c_quit},
    {"HELLO", 1, 0, c_hello},   {"CLIENT", 2, 0, c_client},
    {"SELECT", 2, 2, c_select}, {"AUTH", 2, 3, c_auth},
    {"COMMAND", 1, 0, c_empty}, {"CONFIG", 3, 3, c_empty},
};

/* unknown answers redis's message, naming the command and its first
 * arguments. */
static void unknown(sf_resp_conn *c) {
  char msg[256], *p = msg;
  size_t n;
  const char *a = sf__resp_arg(c, 0, &n);
  SF_PUT(p, "ERR unknown command ");
  p += quote(p, a, n, 48);
  SF_PUT(p, ", with args beginning with: ");
  for (uint32_t i = 1; i < c->nargs && i < 4; i++) {
    a = sf__resp_arg(c, i, &n);
    p += quote(p, a, n, 24);
    *p++ = ' ';
  }
  *p = '\0';
  sf__resp_err(c, msg);
}

void sf__resp_dispatch(sf_resp_conn *c) {
  size_t n;
  const char *name = sf__resp_arg(c, 0, &n);
  sf__ctr_add(&c->w->stats->proto_requests[SF_PROTO_REDIS], 1);
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    const cmd *k = &cmds[i];
    if (strlen(k->name) != n || strncasecmp(k->name, name, n) != 0)
      continue;
    if (c->nargs < k->min_args || (k->max_args && c->nargs > k->max_args)) {
      char msg[112], q[32];
      quote(q, name, n, 16);
      snprintf(msg, sizeof msg, "ERR wrong number of arguments for %s command",
               q);
      sf__resp_err(c, msg);
      return;
    }
    k->fn(c);
    return;
  }
  unknown(c);
}
