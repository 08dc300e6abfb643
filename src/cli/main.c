/*
 * main.c - the snowflake command: gen, decode, bounds, bench.
 *
 * Exit status: 0 on success, 1 on a runtime error (the generator or the
 * output failed), 2 on a bad argument or environment value, with one line
 * on stderr naming it, what is accepted and what was given.
 */
#include "snowflake.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG "snowflake"
#define MAX_COUNT UINT64_C(1000000000000)
#define MAX_THREADS 256
#define OUT_BUFSIZE (1u << 20)
#define BATCH 4096

static const char usage_text[] =
    "usage: snowflake gen [-n COUNT] [--machine-id N] [--epoch E] [--format "
    "F]\n"
    "       snowflake decode [--epoch E] [--format F] ID...\n"
    "       snowflake bounds [--epoch E] TIME...\n"
    "       snowflake bench [--seconds S] [--threads T] [--machine-id N]\n"
    "       snowflake --help | --version\n"
    "\n"
    "64-bit time-ordered unique IDs: 41 bits of ms since the epoch, 10 bits\n"
    "of machine id, 12 bits of sequence (at most 4,096,000 IDs/s a machine).\n"
    "\n"
    "  gen      print COUNT (default 1) new IDs, one per line\n"
    "  decode   print each ID taken apart, as one JSON object per line; with\n"
    "           no --format, a UUID is recognised by its shape, else decimal\n"
    "  bounds   print the smallest and largest ID of each millisecond TIME\n"
    "           (YYYY-MM-DDTHH:MM:SS[.mmm]Z or unix ms), one JSON per line\n"
    "  bench    issue IDs from T threads (default 1) for S seconds (default\n"
    "           1) and print the rate and its ratio to the layout's limit\n"
    "\n"
    "  -n, --count COUNT   1..1000000000000\n"
    "  --machine-id N      0..1023; gen reads MACHINE_ID when not given\n"
    "  --epoch E           YYYY-MM-DDTHH:MM:SS[.mmm]Z or unix ms, not in the\n"
    "                      future (default 2024-01-01T00:00:00Z)\n"
    "  --format F          dec (default), hex (16 digits), base62 (11), "
    "base32\n"
    "                      (13, Crockford) or uuid (RFC 9562 version 7);\n"
    "                      all but dec are zero-padded so they sort as text\n"
    "  --seconds S         0.01..3600\n"
    "  --threads T         1..256\n"
    "\n"
    "Exit status: 0 ok, 1 runtime error, 2 bad argument or environment.\n";

/* fail prints "snowflake: <message>" and exits with status. */
__attribute__((format(printf, 2, 3), noreturn)) static void
fail(int status, const char *fmt, ...) {
  va_list ap;
  fputs(PROG ": ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(status);
}
/* Exit 2: a bad argument or environment value. */
#define usage_error(...) fail(2, __VA_ARGS__)
/* Exit 1: a failure at run time. */
#define runtime_error(...) fail(1, __VA_ARGS__)

/* ------------------------------------------------------------- options */

/* The options a command accepts, and where their values go. */
typedef struct opts {
  const char *count;
  const char *machine_id;
  const char *epoch;
  const char *format;
  const char *seconds;
  const char *threads;
  const char *args[64]; /* positional arguments */
  size_t nargs;
  char **more; /* positional arguments past args[] */
} opts;

typedef struct opt_def {
  const char *lng;
  const char *shrt;
  size_t offset; /* of the const char * in opts */
  const char *accepts;
} opt_def;

#define OPT(l, s, field, acc)                                                  \
  { l, s, offsetof(opts, field), acc }
static const opt_def gen_opts[] = {
    OPT("--count", "-n", count, "an integer in 1..1000000000000"),
    OPT("--machine-id", NULL, machine_id, "an integer in 0..1023"),
    OPT("--epoch", NULL, epoch, "a time like 2024-01-01T00:00:00Z or unix ms"),
    OPT("--format", NULL, format, "dec, hex, base62, base32 or uuid"),
    {NULL, NULL, 0, NULL},
};
static const opt_def decode_opts[] = {
    OPT("--epoch", NULL, epoch, "a time like 2024-01-01T00:00:00Z or unix ms"),
    OPT("--format", NULL, format, "dec, hex, base62, base32 or uuid"),
    {NULL, NULL, 0, NULL},
};
static const opt_def bounds_opts[] = {
    OPT("--epoch", NULL, epoch, "a time like 2024-01-01T00:00:00Z or unix ms"),
    {NULL, NULL, 0, NULL},
};
static const opt_def bench_opts[] = {
    OPT("--seconds", NULL, seconds, "a number in 0.01..3600"),
    OPT("--threads", NULL, threads, "an integer in 1..256"),
    OPT("--machine-id", NULL, machine_id, "an integer in 0..1023"),
    {NULL, NULL, 0, NULL},
};

/* Parses argv[0..argc-1] (after the command name) into *o. Takes "--opt V",
 * "--opt=V" and "-n V"; "--" ends the options. */
static void parse_opts(const char *cmd, const opt_def *defs, int argc,
                       char **argv, opts *o) {
  int only_args = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (only_args || a[0] != '-' || a[1] == '\0') {
      if (o->nargs >= sizeof o->args / sizeof o->args[0])
        usage_error("%s takes at most %zu arguments", cmd,
                    sizeof o->args / sizeof o->args[0]);
      o->args[o->nargs++] = a;
      continue;
    }
    if (strcmp(a, "--") == 0) {
      only_args = 1;
      continue;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage_text, stdout);
      exit(0);
    }
    const opt_def *d = NULL;
    const char *val = NULL;
    for (const opt_def *p = defs; p->lng != NULL; p++) {
      size_t n = strlen(p->lng);
      if (strcmp(a, p->lng) == 0 || (p->shrt && strcmp(a, p->shrt) == 0)) {
        d = p;
        break;
      }
      if (strncmp(a, p->lng, n) == 0 && a[n] == '=') {
        d = p;
        val = a + n + 1;
        break;
      }
    }
    if (d == NULL)
      usage_error("unknown option \"%s\" for %s (see snowflake --help)", a,
                  cmd);
    if (val == NULL) {
      if (i + 1 >= argc)
        usage_error("%s needs a value: %s", d->lng, d->accepts);
      val = argv[++i];
    }
    *(const char **)((char *)o + d->offset) = val;
  }
}

static uint64_t parse_machine(const char *name, const char *v) {
  uint64_t m;
  if (sf_parse_uint(v, 1023, &m) != SF_OK)
    usage_error("%s must be an integer in 0..1023 (got \"%s\")", name, v);
  return m;
}

static void parse_layout(const opts *o, sf_layout *l) {
  sf_layout_default(l);
  if (o->epoch == NULL)
    return;
  int64_t e;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
  if (sf_parse_time(o->epoch, &e) != SF_OK || e > now_ms ||
      (l->epoch_ms = e, sf_layout_check(l, now_ms) != SF_OK))
    usage_error("--epoch must be a UTC time YYYY-MM-DDTHH:MM:SS[.mmm]Z or unix "
                "ms, not in the future (got \"%s\")",
                o->epoch);
}

static sf_format parse_format(const opts *o) {
  sf_format f = SF_FORMAT_DEC;
  if (o->format != NULL && sf_format_from_name(o->format, &f) != SF_OK)
    usage_error("--format must be one of dec, hex, base62, base32, uuid (got "
                "\"%s\")",
                o->format);
  return f;
}

/* -------------------------------------------------------------- output */

typedef struct outbuf {
  char *buf;
  size_t len;
} outbuf;

static void out_flush(outbuf *o) {
  size_t off = 0;
  while (off < o->len) {
    ssize_t w = write(STDOUT_FILENO, o->buf + off, o->len - off);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      runtime_error("writing the output: %s", strerror(errno));
    }
    off += (size_t)w;
  }
  o->len = 0;
}

/* Room for n more bytes. */
static inline char *out_reserve(outbuf *o, size_t n) {
  if (o->len + n > OUT_BUFSIZE)
    out_flush(o);
  return o->buf + o->len;
}

/* ----------------------------------------------------------------- gen */

static int cmd_gen(int argc, char **argv) {
  opts o = {0};
  parse_opts("gen", gen_opts, argc, argv, &o);
  if (o.nargs > 0)
    usage_error("gen takes no arguments (got \"%s\")", o.args[0]);
  uint64_t count = 1;
  if (o.count != NULL &&
      (sf_parse_uint(o.count, MAX_COUNT, &count) != SF_OK || count == 0))
    usage_error("-n must be an integer in 1..1000000000000 (got \"%s\")",
                o.count);
  sf_config c;
  sf_config_init(&c);
  if (o.machine_id != NULL) {
    c.machine_id = parse_machine("--machine-id", o.machine_id);
  } else {
    const char *env = getenv("MACHINE_ID");
    if (env == NULL)
      usage_error("gen needs --machine-id N or MACHINE_ID in the environment "
                  "(an integer in 0..1023)");
    c.machine_id = parse_machine("MACHINE_ID", env);
  }
  parse_layout(&o, &c.layout);
  sf_format f = parse_format(&o);

  sf_gen *g;
  int rc = sf_gen_new(&c, &g);
  if (rc != SF_OK)
    runtime_error("gen: %s", sf_strerror(rc));
  outbuf ob = {malloc(OUT_BUFSIZE), 0};
  uint64_t *ids = malloc(BATCH * sizeof *ids);
  if (ob.buf == NULL || ids == NULL)
    runtime_error("gen: out of memory");
  while (count > 0) {
    size_t n = count < BATCH ? (size_t)count : BATCH;
    int64_t wait_ms = 0;
    rc = sf_gen_next_n(g, ids, n, &wait_ms);
    if (rc == SF_ECLOCKBACK)
      runtime_error("gen: %s (%lld ms)", sf_strerror(rc), (long long)wait_ms);
    if (rc != SF_OK)
      runtime_error("gen: %s", sf_strerror(rc));
    for (size_t i = 0; i < n; i++) {
      char *p = out_reserve(&ob, SF_UUID_BUFSIZE + 1);
      int len = sf_view_encode(&c.layout, ids[i], f, p, SF_UUID_BUFSIZE);
      p[len] = '\n';
      ob.len += (size_t)len + 1;
    }
    count -= n;
  }
  out_flush(&ob);
  free(ids);
  free(ob.buf);
  sf_gen_free(g);
  return 0;
}

/* -------------------------------------------------------------- decode */

static const char *format_digits(sf_format f) {
  switch (f) {
  case SF_FORMAT_DEC:
    return "digits 0-9";
  case SF_FORMAT_HEX:
    return "digits 0-9a-f";
  case SF_FORMAT_BASE62:
    return "digits 0-9A-Za-z";
  case SF_FORMAT_BASE32:
    return "Crockford base32 digits";
  case SF_FORMAT_UUID:
    break;
  }
  return "digits";
}

/* Exits 2 naming why s is not an ID in format f (rc from sf_view_parse). */
__attribute__((noreturn)) static void bad_id(const char *s, sf_format f,
                                             int rc) {
  if (f != SF_FORMAT_UUID)
    usage_error("ID must be a %s ID (%s, at most 9223372036854775807) "
                "(got \"%s\")",
                sf_format_name(f), format_digits(f), s);
  if (rc == SF_EPARSE)
    usage_error("ID must be a UUID xxxxxxxx-xxxx-7xxx-xxxx-xxxxxxxxxxxx "
                "(hex digits) (got \"%s\")",
                s);
  if (rc == SF_ERANGE)
    usage_error("UUID's time is outside the epoch's range (got \"%s\")", s);
  usage_error("UUID is not the view of an ID: %s (got \"%s\")", sf_strerror(rc),
              s);
}

/* Prints one JSON object: the ID taken apart under layout l. */
static void print_parts(const sf_layout *l, uint64_t id) {
  sf_parts p;
  sf_decode(l, id, &p);
  char t[SF_TIME_BUFSIZE + 2] = "null";
  char iso[SF_TIME_BUFSIZE];
  if (sf_format_time(p.unix_ms, iso, sizeof iso) > 0)
    snprintf(t, sizeof t, "\"%s\"", iso);
  printf("{\"id\":%llu,\"id_str\":\"%llu\",\"timestamp_ms\":%lld,"
         "\"time\":%s,\"machine_id\":%llu,\"sequence\":%llu}\n",
         (unsigned long long)id, (unsigned long long)id, (long long)p.unix_ms,
         t, (unsigned long long)p.machine_id, (unsigned long long)p.sequence);
}

static int cmd_decode(int argc, char **argv) {
  opts o = {0};
  parse_opts("decode", decode_opts, argc, argv, &o);
  sf_layout l;
  parse_layout(&o, &l);
  sf_format f = parse_format(&o);
  if (o.nargs == 0)
    usage_error("decode needs at least one ID");
  uint64_t ids[sizeof o.args / sizeof o.args[0]];
  for (size_t i = 0; i < o.nargs; i++) {
    size_t len = strlen(o.args[i]);
    sf_format fi = o.format ? f : sf_format_guess(o.args[i], len);
    int rc = sf_view_parse(&l, o.args[i], len, fi, &ids[i]);
    if (rc != SF_OK)
      bad_id(o.args[i], fi, rc);
  }
  for (size_t i = 0; i < o.nargs; i++)
    print_parts(&l, ids[i]);
  if (fflush(stdout) != 0)
    runtime_error("writing the output: %s", strerror(errno));
  return 0;
}

/* -------------------------------------------------------------- bounds */

static int cmd_bounds(int argc, char **argv) {
  opts o = {0};
  parse_opts("bounds", bounds_opts, argc, argv, &o);
  sf_layout l;
  parse_layout(&o, &l);
  if (o.nargs == 0)
    usage_error("bounds needs at least one TIME");
  uint64_t lo[sizeof o.args / sizeof o.args[0]];
  uint64_t hi[sizeof o.args / sizeof o.args[0]];
  int64_t ms[sizeof o.args / sizeof o.args[0]];
  for (size_t i = 0; i < o.nargs; i++) {
    if (sf_parse_time(o.args[i], &ms[i]) != SF_OK)
      usage_error("TIME must be a UTC time YYYY-MM-DDTHH:MM:SS[.mmm]Z or unix "
                  "ms (got \"%s\")",
                  o.args[i]);
    if (sf_bounds(&l, ms[i], &lo[i], &hi[i]) != SF_OK)
      usage_error("TIME must be within the epoch's range (got \"%s\")",
                  o.args[i]);
  }
  for (size_t i = 0; i < o.nargs; i++) {
    char iso[SF_TIME_BUFSIZE];
    sf_format_time(ms[i], iso, sizeof iso);
    printf("{\"time\":\"%s\",\"timestamp_ms\":%lld,\"min_id\":%llu,"
           "\"max_id\":%llu,\"min_id_str\":\"%llu\",\"max_id_str\":\"%llu\"}"
           "\n",
           iso, (long long)ms[i], (unsigned long long)lo[i],
           (unsigned long long)hi[i], (unsigned long long)lo[i],
           (unsigned long long)hi[i]);
  }
  if (fflush(stdout) != 0)
    runtime_error("writing the output: %s", strerror(errno));
  return 0;
}

/* --------------------------------------------------------------- bench */

typedef struct bench_worker {
  sf_gen *g;
  atomic_int *stop;
  uint64_t ids;
  int rc;
} bench_worker;

static void *bench_run(void *arg) {
  bench_worker *w = arg;
  uint64_t n = 0, id;
  while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
    for (int i = 0; i < 1024; i++) {
      int rc = sf_gen_next(w->g, &id, NULL);
      if (rc != SF_OK) {
        w->rc = rc;
        w->ids = n;
        return NULL;
      }
      n++;
    }
  }
  w->ids = n;
  return NULL;
}

/* Reads a decimal number "D[.D]" in [lo, hi]: 0 or -1. */
static int parse_seconds(const char *s, double lo, double hi, double *out) {
  size_t int_digits = strspn(s, "0123456789");
  const char *p = s + int_digits;
  size_t frac_digits = 0;
  if (*p == '.') {
    frac_digits = strspn(p + 1, "0123456789");
    p += 1 + frac_digits;
  }
  if (*p != '\0' || int_digits + frac_digits == 0 || int_digits > 6)
    return -1;
  double v = strtod(s, NULL);
  if (v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmd_bench(int argc, char **argv) {
  opts o = {0};
  parse_opts("bench", bench_opts, argc, argv, &o);
  if (o.nargs > 0)
    usage_error("bench takes no arguments (got \"%s\")", o.args[0]);
  double seconds = 1;
  if (o.seconds != NULL && parse_seconds(o.seconds, 0.01, 3600, &seconds) != 0)
    usage_error("--seconds must be a number in 0.01..3600 (got \"%s\")",
                o.seconds);
  uint64_t threads = 1;
  if (o.threads != NULL &&
      (sf_parse_uint(o.threads, MAX_THREADS, &threads) != SF_OK ||
       threads == 0))
    usage_error("--threads must be an integer in 1..256 (got \"%s\")",
                o.threads);
  sf_config c;
  sf_config_init(&c);
  c.machine_id = 1;
  if (o.machine_id != NULL)
    c.machine_id = parse_machine("--machine-id", o.machine_id);
  sf_gen *g;
  int rc = sf_gen_new(&c, &g);
  if (rc != SF_OK)
    runtime_error("bench: %s", sf_strerror(rc));

  atomic_int stop = 0;
  bench_worker w[MAX_THREADS];
  pthread_t th[MAX_THREADS];
  double t0 = mono_s();
  for (uint64_t i = 0; i < threads; i++) {
    w[i] = (bench_worker){g, &stop, 0, SF_OK};
    if (pthread_create(&th[i], NULL, bench_run, &w[i]) != 0)
      runtime_error("bench: cannot start thread %llu",
                    (unsigned long long)i + 1);
  }
  struct timespec nap = {(time_t)seconds,
                         (long)((seconds - (double)(time_t)seconds) * 1e9)};
  while (nanosleep(&nap, &nap) != 0 && errno == EINTR) {
  }
  atomic_store(&stop, 1);
  uint64_t total = 0;
  for (uint64_t i = 0; i < threads; i++) {
    pthread_join(th[i], NULL);
    if (w[i].rc != SF_OK)
      runtime_error("bench: %s", sf_strerror(w[i].rc));
    total += w[i].ids;
  }
  double elapsed = mono_s() - t0;
  uint64_t limit = sf_layout_max_rate(&c.layout);
  double rate = (double)total / elapsed;
  printf("layout: %u-bit ms | %u-bit machine | %u-bit sequence, limit %llu "
         "IDs/s\n",
         63u - c.layout.machine_bits - c.layout.sequence_bits,
         c.layout.machine_bits, c.layout.sequence_bits,
         (unsigned long long)limit);
  printf("%-8s %-9s %-12s %-12s %-12s %s\n", "threads", "seconds", "ids",
         "ids/s", "limit/s", "ratio");
  printf("%-8llu %-9.3f %-12llu %-12.0f %-12llu %.4f\n",
         (unsigned long long)threads, elapsed, (unsigned long long)total, rate,
         (unsigned long long)limit, rate / (double)limit);
  sf_gen_free(g);
  return 0;
}

/* ---------------------------------------------------------------- main */

typedef struct command {
  const char *name;
  int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
    {"gen", cmd_gen},
    {"decode", cmd_decode},
    {"bounds", cmd_bounds},
    {"bench", cmd_bench},
};

int main(int argc, char **argv) {
  if (argc < 2)
    usage_error("a command is required (gen, decode, bounds, bench, --help, "
                "--version)");
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
      strcmp(cmd, "help") == 0) {
    fputs(usage_text, stdout);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
    printf("snowflake %s\n", SF_VERSION_STRING);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(cmd, commands[i].name) == 0)
      return commands[i].run(argc - 2, argv + 2);
  usage_error("unknown command \"%s\" (gen, decode, bounds, bench, --help, "
              "--version)",
              cmd);
}
