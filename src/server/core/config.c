/*
 * config.c - parse snowflaked's environment and flags into sf_srv_config.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "lease.h"

typedef struct opt opt;

/* A parser reads v (NULL: the setting was not given and has no default)
 * into its row's field of *c: 0, or -1 with a message in err. src names
 * where v came from (the variable or the flag). */
typedef int (*parse_fn)(const opt *o, const char *v, const char *src,
                        sf_srv_config *c, const sf_config_input *in, char *err,
                        size_t errlen);

struct opt {
  const char *env;
  const char *flag;
  parse_fn parse;
  size_t off, size; /* the field of sf_srv_config written */
  int64_t min, max; /* integers: the range (max < 0: the layout's largest
                       machine id); text: max is the longest length */
  const char *def;  /* the default, NULL: none (see the parser) */
  const char *help;
};

static int p_machine_id(const opt *, const char *, const char *,
                        sf_srv_config *, const sf_config_input *, char *,
                        size_t);
static int p_int(const opt *, const char *, const char *, sf_srv_config *,
                 const sf_config_input *, char *, size_t);
static int p_id_range(const opt *, const char *, const char *, sf_srv_config *,
                      const sf_config_input *, char *, size_t);
static int p_threads(const opt *, const char *, const char *, sf_srv_config *,
                     const sf_config_input *, char *, size_t);
static int p_port_off(const opt *, const char *, const char *, sf_srv_config *,
                      const sf_config_input *, char *, size_t);
static int p_str(const opt *, const char *, const char *, sf_srv_config *,
                 const sf_config_input *, char *, size_t);
static int p_bind(const opt *, const char *, const char *, sf_srv_config *,
                  const sf_config_input *, char *, size_t);
static int p_epoch(const opt *, const char *, const char *, sf_srv_config *,
                   const sf_config_input *, char *, size_t);
static int p_clock(const opt *, const char *, const char *, sf_srv_config *,
                   const sf_config_input *, char *, size_t);

#define FIELD(f) offsetof(sf_srv_config, f), sizeof(((sf_srv_config *)0)->f)
#define STR_MAX (SF_SRV_STR_MAX - 1)

/* The table of every setting, in the order --help lists them. */
static const opt opts[] = {
    {"MACHINE_ID", "--machine-id", p_machine_id, FIELD(machine_id), 0, -1, NULL,
     "0..1023, \"auto\" (etcd lease) or \"ordinal\" (required)"},
    {"MACHINE_ID_OFFSET", "--machine-id-offset", p_int,
     FIELD(machine_id_offset), 0, -1, "0", "added to the ordinal (0)"},
    {"MACHINE_ID_RANGE", "--machine-id-range", p_id_range,
     FIELD(machine_id_min), 0, -1, NULL,
     "ids MACHINE_ID=auto may claim, LOW-HIGH (0-1023)"},
    {"PORT", "--port", p_int, FIELD(port), 0, 65535, "8000",
     "TCP port, 0 for an ephemeral one (8000)"},
    {"REDIS_PORT", "--redis-port", p_port_off, FIELD(redis_port), 0, 65535,
     NULL, "Redis protocol (RESP2) port, 0 for an ephemeral one (off)"},
    {"MEMCACHED_PORT", "--memcached-port", p_port_off, FIELD(memcached_port), 0,
     65535, NULL, "memcached text protocol port, 0 for an ephemeral one (off)"},
    {"BIND", "--bind", p_bind, FIELD(bind), 0, SF_SRV_BIND_MAX - 1, "0.0.0.0",
     "IPv4 or IPv6 address to listen on (0.0.0.0)"},
    {"THREADS", "--threads", p_threads, FIELD(threads), 1, 256, NULL,
     "event loop threads (the number of CPUs)"},
    {"EPOCH", "--epoch", p_epoch, FIELD(epoch_ms), 0, 0, "2024-01-01T00:00:00Z",
     "ID epoch, ISO-8601 UTC or unix ms (2024-01-01T00:00:00Z)"},
    {"STATE_FILE", "--state-file", p_str, FIELD(state_file), 0, STR_MAX, "",
     "high-water mark file (none)"},
    {"CLOCK_TOLERANCE_MS", "--clock-tolerance-ms", p_int,
     FIELD(clock_tolerance_ms), 0, 60000, "10",
     "clock steps back waited out (10)"},
    {"CLOCK", "--clock", p_clock, FIELD(clock_wall), 0, 0, "monotonic",
     "\"monotonic\" or \"wall\" (monotonic)"},
    {"MAX_BATCH", "--max-batch", p_int, FIELD(max_batch), 1, 1000000, "10000",
     "largest /ids?count= (10000)"},
    {"IDLE_TIMEOUT_MS", "--idle-timeout-ms", p_int, FIELD(idle_timeout_ms), 10,
     86400000, "30000", "close a silent connection after (30000)"},
    {"MAX_CONNECTIONS", "--max-connections", p_int, FIELD(max_connections), 1,
     1000000, "10000", "open connections, all threads (10000)"},
    {"ETCD_ENDPOINTS", "--etcd-endpoints", p_str, FIELD(etcd_endpoints), 0,
     STR_MAX, "", "etcd URLs for MACHINE_ID=auto, comma-separated"},
    {"ETCD_PREFIX", "--etcd-prefix", p_str, FIELD(etcd_prefix), 0,
     SF_LEASE_PREFIX_MAX, SF_LEASE_DEFAULT_PREFIX,
     "etcd key prefix (" SF_LEASE_DEFAULT_PREFIX ")"},
    {"ETCD_LEASE_TTL", "--etcd-lease-ttl", p_int, FIELD(etcd_lease_ttl),
     SF_LEASE_MIN_TTL_S, SF_LEASE_MAX_TTL_S, SF_LEASE_DEFAULT_TTL_STR,
     "etcd lease TTL in seconds (" SF_LEASE_DEFAULT_TTL_STR ")"},
    {"ETCD_MARK_LEAP_MS", "--etcd-mark-leap-ms", p_int,
     FIELD(etcd_mark_leap_ms), 0, SF_LEASE_MAX_LEAP_MS, "0",
     "how far ahead the handover mark is written (0: one TTL)"},
    {"ETCD_CACERT", "--etcd-cacert", p_str, FIELD(etcd_cacert), 0, STR_MAX, "",
     "CA certificates for https etcd (the system's)"},
    {"ETCD_CERT", "--etcd-cert", p_str, FIELD(etcd_cert), 0, STR_MAX, "",
     "client certificate for etcd, PEM (none)"},
    {"ETCD_KEY", "--etcd-key", p_str, FIELD(etcd_key), 0, STR_MAX, "",
     "its private key, PEM (none)"},
    {"ETCD_USERNAME", "--etcd-username", p_str, FIELD(etcd_username), 0,
     STR_MAX, "", "etcd user (none: no etcd auth)"},
    {"ETCD_PASSWORD", "--etcd-password", p_str, FIELD(etcd_password), 0,
     STR_MAX, "", "its password (ps shows flags: prefer the file)"},
    {"ETCD_PASSWORD_FILE", "--etcd-password-file", p_str,
     FIELD(etcd_password_file), 0, STR_MAX, "", "file holding the password"},
};

#define O_COUNT (sizeof opts / sizeof opts[0])

const char *sf__config_usage(void) {
  static char buf[4096];
  if (buf[0])
    return buf;
  size_t n = (size_t)snprintf(
      buf, sizeof buf,
      "usage: snowflaked [--flag value | --flag=value]...\n"
      "       snowflaked --healthcheck | --help | --version\n"
      "\nHands out 64-bit snowflake IDs over HTTP: GET /id, /ids?count=N,\n"
      "/decode/<id>, /health, /metrics; and, when their ports are set, over\n"
      "the Redis protocol (GET id, MGET id id, GET ids:N) and memcached's\n"
      "(get id).\n"
      "\nSettings (environment variable, or the flag, which wins):\n");
  for (size_t i = 0; i < O_COUNT && n < sizeof buf; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "  %-18s %-22s %s\n",
                          opts[i].env, opts[i].flag, opts[i].help);
  if (n < sizeof buf)
    snprintf(buf + n, sizeof buf - n,
             "\n  --healthcheck   GET /health on 127.0.0.1:PORT; exit 0 if it "
             "answers 200, else 1\n");
  return buf;
}

/* parse_int reads a decimal integer without sign or spaces: 0 or -1. */
static int parse_int(const char *s, int64_t *out) {
  uint64_t v;
  if (sf_parse_uint(s, INT64_MAX, &v) != SF_OK)
    return -1;
  *out = (int64_t)v;
  return 0;
}

static const char *env_get(char *const *envp, const char *name) {
  size_t n = strlen(name);
  if (!envp)
    return NULL;
  for (; *envp; envp++)
    if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
      return *envp + n + 1;
  return NULL;
}

/* ordinal returns the number that ends host, or -1. */
static int64_t ordinal(const char *host) {
  size_t n = host ? strlen(host) : 0, i = n;
  int64_t v = 0;
  while (i > 0 && host[i - 1] >= '0' && host[i - 1] <= '9')
    i--;
  if (i == n || n - i > 9)
    return -1;
  for (; i < n; i++)
    v = v * 10 + (host[i] - '0');
  return v;
}

/* ---------------------------------------------------------- the parsers */

static void *field(sf_srv_config *c, const opt *o) {
  return (char *)c + o->off;
}

static int64_t max_of(const opt *o, const sf_srv_config *c) {
  return o->max < 0 ? (int64_t)c->max_machine_id : o->max;
}

/* store_int writes n (in range, so it fits) into an integer field of any
 * width the table uses. */
static void store_int(sf_srv_config *c, const opt *o, int64_t n) {
  if (o->size == sizeof(int64_t)) {
    memcpy(field(c, o), &n, sizeof n);
  } else {
    uint32_t v = (uint32_t)n; /* unsigned and int fields, both 0..2^31 */
    memcpy(field(c, o), &v, sizeof v);
  }
}

static int p_int(const opt *o, const char *v, const char *src, sf_srv_config *c,
                 const sf_config_input *in, char *err, size_t errlen) {
  int64_t n = 0, max = max_of(o, c);
  (void)in;
  if (parse_int(v, &n) || n < o->min || n > max) {
    snprintf(err, errlen, "%s must be an integer in %lld..%lld (got \"%.64s\")",
             src, (long long)o->min, (long long)max, v);
    return -1;
  }
  store_int(c, o, n);
  return 0;
}

static int p_threads(const opt *o, const char *v, const char *src,
                     sf_srv_config *c, const sf_config_input *in, char *err,
                     size_t errlen) {
  if (v)
    return p_int(o, v, src, c, in, err, errlen);
  c->threads = in->ncpus < 1 ? 1 : in->ncpus > 256 ? 256 : in->ncpus;
  return 0;
}

/* p_port_off reads the port of a listener that is off (-1) when unset. */
static int p_port_off(const opt *o, const char *v, const char *src,
                      sf_srv_config *c, const sf_config_input *in, char *err,
                      size_t errlen) {
  int off = -1;
  if (v)
    return p_int(o, v, src, c, in, err, errlen);
  memcpy(field(c, o), &off, sizeof off);
  return 0;
}

/* p_id_range reads "LOW-HIGH" (both in the layout's ids, LOW <= HIGH); unset:
 * every id. */
static int p_id_range(const opt *o, const char *v, const char *src,
                      sf_srv_config *c, const sf_config_input *in, char *err,
                      size_t errlen) {
  int64_t lo = 0, hi = max_of(o, c);
  char low[24];
  const char *dash = v ? strchr(v, '-') : NULL;
  size_t n = dash ? (size_t)(dash - v) : 0;
  (void)in;
  c->machine_id_min = 0;
  c->machine_id_max = (uint64_t)hi;
  if (!v)
    return 0;
  if (n > 0 && n < sizeof low) {
    memcpy(low, v, n);
    low[n] = '\0';
  }
  if (n == 0 || n >= sizeof low || parse_int(low, &lo) ||
      parse_int(dash + 1, &hi) || lo > hi || hi > max_of(o, c)) {
    snprintf(err, errlen,
             "%s must be LOW-HIGH with 0 <= LOW <= HIGH <= %lld (got "
             "\"%.64s\")",
             src, (long long)max_of(o, c), v);
    return -1;
  }
  c->machine_id_min = (uint64_t)lo;
  c->machine_id_max = (uint64_t)hi;
  c->machine_id_range_set = 1;
  return 0;
}

static int p_machine_id(const opt *o, const char *v, const char *src,
                        sf_srv_config *c, const sf_config_input *in, char *err,
                        size_t errlen) {
  int64_t n = 0, max = max_of(o, c);
  if (!v) {
    if (c->action != SF_ACTION_RUN)
      return 0;
    snprintf(err, errlen,
             "MACHINE_ID is required: an integer in 0..%lld, \"auto\" or "
             "\"ordinal\"",
             (long long)max);
    return -1;
  }
  c->machine_id_set = 1;
  if (!strcmp(v, "auto")) {
    if (!in->with_etcd) {
      snprintf(err, errlen,
               "%s=auto needs etcd support, which is not built in "
               "(build with jansson and OpenSSL, WITH_ETCD=1)",
               src);
      return -1;
    }
    c->machine_mode = SF_MID_AUTO;
  } else if (!strcmp(v, "ordinal")) {
    c->machine_mode = SF_MID_ORDINAL;
  } else if (parse_int(v, &n) || n > max) {
    snprintf(err, errlen,
             "%s must be an integer in 0..%lld, \"auto\" or \"ordinal\" "
             "(got \"%.64s\")",
             src, (long long)max, v);
    return -1;
  } else {
    c->machine_id = (uint64_t)n;
  }
  return 0;
}

static int p_str(const opt *o, const char *v, const char *src, sf_srv_config *c,
                 const sf_config_input *in, char *err, size_t errlen) {
  (void)in;
  if ((int64_t)strlen(v) > o->max) {
    snprintf(err, errlen, "%s must be at most %lld bytes (got %zu)", src,
             (long long)o->max, strlen(v));
    return -1;
  }
  memcpy(field(c, o), v, strlen(v) + 1);
  return 0;
}

static int p_bind(const opt *o, const char *v, const char *src,
                  sf_srv_config *c, const sf_config_input *in, char *err,
                  size_t errlen) {
  unsigned char addr[16];
  char tmp[80];
  const char *a = v;
  size_t len = strlen(v);
  (void)in;
  if (len >= 2 && a[0] == '[' && a[len - 1] == ']') {
    a++;
    len -= 2;
  }
  if (len < sizeof tmp && (int64_t)len <= o->max) {
    memcpy(tmp, a, len);
    tmp[len] = 0;
    c->bind_v6 = inet_pton(AF_INET6, tmp, addr) == 1;
    if (c->bind_v6 || inet_pton(AF_INET, tmp, addr) == 1) {
      memcpy(c->bind, tmp, len + 1);
      return 0;
    }
  }
  snprintf(err, errlen,
           "%s must be a numeric IPv4 or IPv6 address (got \"%.64s\")", src, v);
  return -1;
}

static int p_epoch(const opt *o, const char *v, const char *src,
                   sf_srv_config *c, const sf_config_input *in, char *err,
                   size_t errlen) {
  sf_layout layout;
  (void)o;
  sf_layout_default(&layout);
  layout.epoch_ms = 0;
  if (sf_parse_time(v, &layout.epoch_ms) ||
      sf_layout_check(&layout, in->now_ms)) {
    snprintf(err, errlen,
             "%s must be a past UTC time YYYY-MM-DDTHH:MM:SS[.mmm]Z or "
             "unix ms (got \"%.64s\")",
             src, v);
    return -1;
  }
  c->epoch_ms = layout.epoch_ms;
  return 0;
}

static int p_clock(const opt *o, const char *v, const char *src,
                   sf_srv_config *c, const sf_config_input *in, char *err,
                   size_t errlen) {
  (void)o, (void)in;
  if (!strcmp(v, "monotonic") || !strcmp(v, "wall")) {
    c->clock_wall = v[0] == 'w';
    return 0;
  }
  snprintf(err, errlen, "%s must be \"monotonic\" or \"wall\" (got \"%.64s\")",
           src, v);
  return -1;
}

/* ------------------------------------------------------------- the whole */

/* read_args takes the flags over the environment's values in val/src;
 * 1 when an action flag ends the parse, 0, or -1 with err set. */
static int read_args(const sf_config_input *in, sf_srv_config *c,
                     const char **val, const char **src, char *err,
                     size_t errlen) {
  for (int a = 1; a < in->argc; a++) {
    const char *arg = in->argv[a], *eq, *v = NULL;
    size_t len, i;
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      c->action = SF_ACTION_HELP;
      return 1;
    }
    if (!strcmp(arg, "--version") || !strcmp(arg, "-V")) {
      c->action = SF_ACTION_VERSION;
      return 1;
    }
    if (!strcmp(arg, "--healthcheck")) {
      c->action = SF_ACTION_HEALTHCHECK;
      continue;
    }
    eq = strchr(arg, '=');
    len = eq ? (size_t)(eq - arg) : strlen(arg);
    for (i = 0; i < O_COUNT; i++)
      if (strlen(opts[i].flag) == len && !strncmp(arg, opts[i].flag, len))
        break;
    if (i == O_COUNT) {
      snprintf(err, errlen, "unknown option \"%.*s\" (see --help)",
               (int)(len > 64 ? 64 : len), arg);
      return -1;
    }
    if (eq)
      v = eq + 1;
    else if (a + 1 < in->argc)
      v = in->argv[++a];
    else {
      snprintf(err, errlen, "%s needs a value (see --help)", opts[i].flag);
      return -1;
    }
    val[i] = v;
    src[i] = opts[i].flag;
  }
  return 0;
}

/* check_machine checks what depends on more than one setting. */
static int check_machine(const sf_config_input *in, sf_srv_config *c,
                         const char *mid_src, char *err, size_t errlen) {
  if (c->machine_mode == SF_MID_AUTO && !c->etcd_endpoints[0]) {
    snprintf(err, errlen,
             "ETCD_ENDPOINTS is required with MACHINE_ID=auto: "
             "http://host:2379[,http://...] (got \"\")");
    return -1;
  }
  if (c->machine_id_range_set && c->machine_mode != SF_MID_AUTO) {
    snprintf(err, errlen,
             "MACHINE_ID_RANGE applies to MACHINE_ID=auto only (got %s=%s)",
             mid_src,
             c->machine_mode == SF_MID_ORDINAL ? "ordinal" : "a number");
    return -1;
  }
  if (c->machine_mode == SF_MID_ORDINAL) {
    int64_t o = ordinal(in->hostname);
    if (o < 0) {
      snprintf(err, errlen,
               "%s=ordinal needs a host name that ends in a number (got "
               "\"%.64s\")",
               mid_src, in->hostname ? in->hostname : "");
      return -1;
    }
    if ((uint64_t)o + c->machine_id_offset > c->max_machine_id) {
      snprintf(err, errlen,
               "%s=ordinal: host name number %lld + MACHINE_ID_OFFSET %llu "
               "must be in 0..%llu",
               mid_src, (long long)o, (unsigned long long)c->machine_id_offset,
               (unsigned long long)c->max_machine_id);
      return -1;
    }
    c->machine_id = (uint64_t)o + c->machine_id_offset;
  }
  return 0;
}

/* src_of is where the setting env came from: its flag or its variable. */
static const char *src_of(const char *const *src, const char *env) {
  for (size_t i = 0; i < O_COUNT; i++)
    if (!strcmp(opts[i].env, env))
      return src[i];
  return env;
}

/* check_etcd checks the TLS and auth settings against each other and the
 * endpoints (their files are read at start: etcd_auth.c). */
static int check_etcd(const sf_srv_config *c, const char *const *src, char *err,
                      size_t errlen) {
  bool https = strstr(c->etcd_endpoints, "https://") != NULL;
  bool ca = c->etcd_cacert[0], cert = c->etcd_cert[0], key = c->etcd_key[0];
  bool user = c->etcd_username[0], pw = c->etcd_password[0],
       pwf = c->etcd_password_file[0];
  const struct {
    bool broken;
    const char *what, *needs;
  } rules[] = {
      {cert && !key, "ETCD_CERT", "ETCD_KEY"},
      {key && !cert, "ETCD_KEY", "ETCD_CERT"},
      {ca && !https, "ETCD_CACERT", "an https:// endpoint in ETCD_ENDPOINTS"},
      {cert && !https, "ETCD_CERT", "an https:// endpoint in ETCD_ENDPOINTS"},
      {pw && pwf, "ETCD_PASSWORD", "ETCD_PASSWORD_FILE unset (one of them)"},
      {pw && !user, "ETCD_PASSWORD", "ETCD_USERNAME"},
      {pwf && !user, "ETCD_PASSWORD_FILE", "ETCD_USERNAME"},
      {user && !pw && !pwf, "ETCD_USERNAME",
       "ETCD_PASSWORD or ETCD_PASSWORD_FILE"},
  };
  if (https && strstr(c->etcd_endpoints, "http://")) {
    snprintf(err, errlen,
             "%s mixes http:// and https:// endpoints (the password and "
             "token would cross the plain ones; got \"%.200s\")",
             src_of(src, "ETCD_ENDPOINTS"), c->etcd_endpoints);
    return -1;
  }
  for (size_t i = 0; i < sizeof rules / sizeof *rules; i++)
    if (rules[i].broken) {
      snprintf(err, errlen, "%s needs %s", src_of(src, rules[i].what),
               rules[i].needs);
      return -1;
    }
  return 0;
}

int sf__config_parse(const sf_config_input *in, sf_srv_config *c, char *err,
                     size_t errlen) {
  const char *val[O_COUNT], *src[O_COUNT];
  sf_layout layout;
  int rc;

  memset(c, 0, sizeof *c);
  sf_layout_default(&layout);
  c->max_machine_id = sf_layout_max_machine(&layout);
  for (size_t i = 0; i < O_COUNT; i++) {
    val[i] = env_get(in->envp, opts[i].env);
    src[i] = opts[i].env;
    if (val[i] && !*val[i]) /* NAME= is the same as unset */
      val[i] = NULL;
  }
  rc = read_args(in, c, val, src, err, errlen);
  if (rc != 0)
    return rc < 0 ? -1 : 0;
  for (size_t i = 0; i < O_COUNT; i++) {
    const char *v = val[i] ? val[i] : opts[i].def;
    if (opts[i].parse(&opts[i], v, src[i], c, in, err, errlen))
      return -1;
  }
  if (check_machine(in, c, src[0], err, errlen))
    return -1;
  return c->machine_mode == SF_MID_AUTO ? check_etcd(c, src, err, errlen) : 0;
}
