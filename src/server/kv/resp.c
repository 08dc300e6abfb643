/*
 * resp.c - the RESP2 parser and connection (resp.h); the commands are in
 * resp_cmd.c.
 */
#include "resp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parser states. A multibulk command walks MB_NUM .. BULK_END_LF once per
 * argument; any first byte but '*' starts an inline command. */
enum {
  S_START = 0, /* between commands */
  S_MB_NUM,    /* the argument count after '*' */
  S_MB_LF,     /* its '\n' */
  S_DOLLAR,    /* the '$' of the next argument */
  S_BULK_NUM,  /* the argument's length */
  S_BULK_LF,   /* its '\n' */
  S_BULK_DATA, /* the argument's bytes */
  S_BULK_CR,   /* the '\r' after them */
  S_BULK_LF2,  /* and the '\n' */
  S_INLINE     /* an inline command, up to '\n' */
};

/* ---------------------------------------------------------------- output */

/* proto_error answers a malformed command and closes the connection: the
 * rest of the stream cannot be trusted to line up with commands. */
static void proto_error(sf_resp_conn *c, const char *what) {
  char msg[160];
  snprintf(msg, sizeof msg, "ERR Protocol error: %s", what);
  sf__resp_err(c, msg);
  c->closing = 1;
}

/* ------------------------------------------------------------- arguments */

/* release gives heap argument storage back once a command is answered. */
static void release(sf_resp_conn *c) {
  if (c->argv != c->argv_inline) {
    free(c->argv);
    c->argv = c->argv_inline;
    c->argv_cap = SF_RESP_ARGS_INLINE;
  }
  if (c->abuf != c->abuf_inline) {
    free(c->abuf);
    c->abuf = c->abuf_inline;
    c->acap = SF_RESP_ABUF_INLINE;
  }
  c->nargs = c->want = 0;
  c->alen = 0;
  c->line_len = 0;
  c->in_arg = 0;
}

/* room makes space for n more argument bytes (the limits are checked by
 * the caller): 0, or -1 after answering "out of memory". Bytes that outgrow
 * the inline buffer move to the heap at the limit of a command at once. */
static int room(sf_resp_conn *c, size_t n) {
  char *b;
  if (c->alen + n <= c->acap)
    return 0;
  b = malloc(SF_RESP_CMD_MAX);
  if (!b) {
    sf__resp_err(c, "ERR out of memory");
    c->closing = 1;
    return -1;
  }
  memcpy(b, c->abuf, c->alen);
  c->abuf = b;
  c->acap = SF_RESP_CMD_MAX;
  return 0;
}

/* arg_begin starts argument nargs with room for len bytes: 0 or -1. */
static int arg_begin(sf_resp_conn *c, size_t len) {
  if (c->nargs == c->argv_cap) {
    sf_resp_arg *a = malloc(sizeof *a * SF_RESP_ARGS_MAX);
    if (!a) {
      sf__resp_err(c, "ERR out of memory");
      c->closing = 1;
      return -1;
    }
    memcpy(a, c->argv, sizeof *a * c->nargs);
    c->argv = a;
    c->argv_cap = SF_RESP_ARGS_MAX;
  }
  if (room(c, len))
    return -1;
  c->argv[c->nargs].off = c->alen;
  c->argv[c->nargs].len = 0;
  c->nargs++;
  return 0;
}

static void arg_add(sf_resp_conn *c, const char *p, size_t n) {
  memcpy(c->abuf + c->alen, p, n);
  c->alen += (uint32_t)n;
  c->argv[c->nargs - 1].len += (uint32_t)n;
}

static void command_done(sf_resp_conn *c) {
  if (c->nargs > 0)
    sf__resp_dispatch(c);
  release(c);
  c->state = S_START;
}

/* --------------------------------------------------------------- parsing */

/* number takes one byte of a "*<n>\r\n" or "$<n>\r\n" line: 1 while digits
 * come, 0 at the '\r' (the number complete), -1 on anything else. */
static int number(sf_resp_conn *c, char ch, int may_be_negative) {
  if (ch >= '0' && ch <= '9' && c->ndig < 10) {
    c->num = c->num * 10 + (uint64_t)(ch - '0');
    c->ndig++;
    return 1;
  }
  if (ch == '-' && may_be_negative && c->ndig == 0 && !c->neg) {
    c->neg = 1;
    return 1;
  }
  if (ch == '\r' && c->ndig > 0)
    return 0;
  return -1;
}

static void number_reset(sf_resp_conn *c) {
  c->num = 0;
  c->ndig = 0;
  c->neg = 0;
}

/* mb_count checks the argument count once its line is read. */
static void mb_count(sf_resp_conn *c) {
  char msg[96];
  if (c->neg || c->num == 0) { /* "*-1" or "*0": nothing, as redis does */
    c->state = S_START;
    return;
  }
  if (c->num > SF_RESP_ARGS_MAX) {
    snprintf(msg, sizeof msg, "%llu arguments in one command, at most %d",
             (unsigned long long)c->num, SF_RESP_ARGS_MAX);
    proto_error(c, msg);
    return;
  }
  c->want = (uint32_t)c->num;
  c->state = S_DOLLAR;
}

/* bulk_len checks an argument's length once its line is read. */
static void bulk_len(sf_resp_conn *c) {
  char msg[112];
  if (c->num > SF_RESP_CMD_MAX - c->alen) {
    snprintf(msg, sizeof msg,
             "bulk length %llu over the %d-byte limit of a command",
             (unsigned long long)c->num, SF_RESP_CMD_MAX);
    proto_error(c, msg);
    return;
  }
  if (arg_begin(c, (size_t)c->num))
    return;
  c->left = (size_t)c->num;
  c->state = c->left ? S_BULK_DATA : S_BULK_CR;
}

/* inline_byte takes one byte of an inline command: arguments are separated
 * by spaces or tabs, '\r' is dropped, '\n' ends the command. */
static void inline_byte(sf_resp_conn *c, char ch) {
  if (ch == '\n') {
    command_done(c);
    return;
  }
  if (++c->line_len > SF_RESP_CMD_MAX) {
    proto_error(c, "too big inline request (over 8192 bytes)");
    return;
  }
  if (ch == ' ' || ch == '\t' || ch == '\r') {
    c->in_arg = 0;
    return;
  }
  if (!c->in_arg) {
    if (c->nargs == SF_RESP_ARGS_MAX) {
      proto_error(c, "more than 1024 arguments in an inline request");
      return;
    }
    if (arg_begin(c, 1))
      return;
    c->in_arg = 1;
  } else if (room(c, 1)) {
    return;
  }
  arg_add(c, &ch, 1);
}

/* step takes the bytes at p (n > 0) in state c->state and returns how many
 * it used (at least 1). */
static size_t step(sf_resp_conn *c, const char *p, size_t n) {
  char ch = *p;
  int r;
  switch (c->state) {
  case S_START:
    if (ch == '*') {
      number_reset(c);
      c->state = S_MB_NUM;
      return 1;
    }
    c->state = S_INLINE;
    inline_byte(c, ch);
    return 1;
  case S_MB_NUM:
  case S_BULK_NUM:
    r = number(c, ch, c->state == S_MB_NUM);
    if (r < 0)
      proto_error(c, c->state == S_MB_NUM ? "invalid multibulk length"
                                          : "invalid bulk length");
    else if (r == 0)
      c->state++; /* S_MB_LF or S_BULK_LF */
    return 1;
  case S_MB_LF:
  case S_BULK_LF:
    if (ch != '\n')
      proto_error(c, "'\\r' not followed by '\\n'");
    else if (c->state == S_MB_LF)
      mb_count(c);
    else
      bulk_len(c);
    return 1;
  case S_DOLLAR:
    if (ch != '$') {
      char msg[48];
      snprintf(msg, sizeof msg, "expected '$', got '%c'",
               ch >= 0x20 && ch < 0x7f ? ch : '?');
      proto_error(c, msg);
      return 1;
    }
    number_reset(c);
    c->state = S_BULK_NUM;
    return 1;
  case S_BULK_DATA: {
    size_t k = n < c->left ? n : c->left;
    arg_add(c, p, k);
    c->left -= k;
    if (c->left == 0)
      c->state = S_BULK_CR;
    return k;
  }
  case S_BULK_CR:
    if (ch != '\r')
      proto_error(c, "bulk argument longer than its length");
    else
      c->state = S_BULK_LF2;
    return 1;
  case S_BULK_LF2:
    if (ch != '\n')
      proto_error(c, "bulk argument not followed by \\r\\n");
    else if (c->nargs == c->want)
      command_done(c);
    else
      c->state = S_DOLLAR;
    return 1;
  default: /* S_INLINE */
    inline_byte(c, ch);
    return 1;
  }
}

/* fast_number reads "<digits>\r\n" at *pp (before end): at most 9 digits,
 * no sign. Returns the number and moves *pp past the '\n', or -1 (and *pp
 * unspecified) for anything else, incomplete lines included. */
static long fast_number(const char **pp, const char *end) {
  const char *p = *pp;
  long v = 0;
  int nd = 0;
  while (p < end && *p >= '0' && *p <= '9') {
    if (++nd > 9)
      return -1;
    v = v * 10 + (*p++ - '0');
  }
  if (nd == 0 || end - p < 2 || p[0] != '\r' || p[1] != '\n')
    return -1;
  *pp = p + 2;
  return v;
}

/* fast_command takes a whole, well-formed multibulk command at data (the
 * parser in S_START, nothing of it yet taken) whose arguments fit the
 * inline buffers, as step() would byte by byte, and returns its length; 0
 * for anything else (cut short, malformed, large, inline), which step()
 * then takes from the same first byte, errors and all; the buffers are
 * the inline ones here (release() put them back). One GET costs a
 * few dozen instructions here instead of one state change per byte. */
static size_t fast_command(sf_resp_conn *c, const char *data, size_t len) {
  const char *p = data + 1, *end = data + len;
  long nargs, n;
  uint32_t alen = 0;
  if (len < 4 || data[0] != '*')
    return 0;
  nargs = fast_number(&p, end);
  if (nargs < 1 || nargs > (long)c->argv_cap)
    return 0;
  for (long i = 0; i < nargs; i++) {
    if (p == end || *p++ != '$')
      return 0;
    n = fast_number(&p, end);
    if (n < 0 || (size_t)n > c->acap - alen || end - p < n + 2 ||
        p[n] != '\r' || p[n + 1] != '\n')
      return 0;
    memcpy(c->abuf + alen, p, (size_t)n);
    c->argv[i].off = alen;
    c->argv[i].len = (uint32_t)n;
    alen += (uint32_t)n;
    p += n + 2;
  }
  c->nargs = c->want = (uint32_t)nargs;
  c->alen = alen;
  command_done(c);
  return (size_t)(p - data);
}

/* ------------------------------------------------------------ connection */

static size_t resp_feed(void *pc, const char *data, size_t len) {
  sf_resp_conn *c = pc;
  size_t i = 0, k;
  while (i < len && !c->closing) {
    if (c->state == S_START) {
      /* Between commands with much output waiting: stop until it is sent. */
      if (c->out.len >= SF_RESP_OUT_PAUSE)
        return i;
      if ((k = fast_command(c, data + i, len - i)) > 0) {
        i += k;
        continue;
      }
    }
    i += step(c, data + i, len - i);
  }
  return len;
}

static void *resp_conn_new(sf_worker *w) {
  /* Only the head is written: the inline buffers need no zeroing. */
  sf_resp_conn *c = malloc(sizeof *c);
  if (!c)
    return NULL;
  memset(c, 0, offsetof(sf_resp_conn, argv_inline));
  c->w = w;
  sf__obuf_init(&c->out, c->out_inline, sizeof c->out_inline);
  c->argv = c->argv_inline;
  c->argv_cap = SF_RESP_ARGS_INLINE;
  c->abuf = c->abuf_inline;
  c->acap = SF_RESP_ABUF_INLINE;
  return c;
}

static size_t resp_output(void *pc, const char **buf) {
  sf_resp_conn *c = pc;
  *buf = c->out.p;
  return c->out.len;
}

static void resp_sent(void *pc) {
  sf_resp_conn *c = pc;
  sf__obuf_sent(&c->out);
}

static int resp_closing(const void *pc) {
  const sf_resp_conn *c = pc;
  return c->closing;
}

static void resp_conn_free(void *pc) {
  sf_resp_conn *c = pc;
  if (!c)
    return;
  release(c);
  sf__obuf_sent(&c->out);
  free(c);
}

const sf_proto sf__proto_redis = {
    .name = "redis",
    .conn_new = resp_conn_new,
    .feed = resp_feed,
    .output = resp_output,
    .sent = resp_sent,
    .closing = resp_closing,
    .conn_free = resp_conn_free,
};
