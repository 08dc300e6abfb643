/*
 * config.c - parse snowflaked's environment and flags into sf_srv_config.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

typedef enum kind {
  K_MID,   /* MACHINE_ID: integer, "auto" or "ordinal" */
  K_INT,   /* integer in [min, max]; max < 0: the layout's largest id */
  K_STR,   /* free text, at most SF_SRV_STR_MAX - 1 bytes */
  K_BIND,  /* numeric IPv4 or IPv6 address */
  K_EPOCH, /* sf_parse_time */
  K_CLOCK  /* "monotonic" or "wall" */
} kind;

typedef struct opt {
  const char *env;
  const char *flag;
  kind k;
  int64_t min, max;
  const char *def;
  const char *help;
} opt;

enum {
  O_MACHINE_ID,
  O_MACHINE_ID_OFFSET,
  O_PORT,
  O_BIND,
  O_THREADS,
  O_EPOCH,
  O_STATE_FILE,
  O_CLOCK_TOLERANCE_MS,
  O_CLOCK,
  O_MAX_BATCH,
  O_IDLE_TIMEOUT_MS,
  O_MAX_CONNECTIONS,
  O_ETCD_ENDPOINTS,
  O_ETCD_PREFIX,
  O_ETCD_LEASE_TTL,
  O_COUNT
};

/* The table of every setting, in the order --help lists them. */
static const opt opts[O_COUNT] = {
    [O_MACHINE_ID] = {"MACHINE_ID", "--machine-id", K_MID, 0, -1, NULL,
                      "0..1023, \"auto\" (etcd lease) or \"ordinal\" "
                      "(required)"},
    [O_MACHINE_ID_OFFSET] = {"MACHINE_ID_OFFSET", "--machine-id-offset", K_INT,
                             0, -1, "0", "added to the ordinal (0)"},
    [O_PORT] = {"PORT", "--port", K_INT, 0, 65535, "8000",
                "TCP port, 0 for an ephemeral one (8000)"},
    [O_BIND] = {"BIND", "--bind", K_BIND, 0, 0, "0.0.0.0",
                "IPv4 or IPv6 address to listen on (0.0.0.0)"},
    [O_THREADS] = {"THREADS", "--threads", K_INT, 1, 256, NULL,
                   "event loop threads (the number of CPUs)"},
    [O_EPOCH] = {"EPOCH", "--epoch", K_EPOCH, 0, 0, "2024-01-01T00:00:00Z",
                 "ID epoch, ISO-8601 UTC or unix ms (2024-01-01T00:00:00Z)"},
    [O_STATE_FILE] = {"STATE_FILE", "--state-file", K_STR, 0, 0, "",
                      "high-water mark file (none)"},
    [O_CLOCK_TOLERANCE_MS] = {"CLOCK_TOLERANCE_MS", "--clock-tolerance-ms",
                              K_INT, 0, 60000, "10",
                              "clock steps back waited out (10)"},
    [O_CLOCK] = {"CLOCK", "--clock", K_CLOCK, 0, 0, "monotonic",
                 "\"monotonic\" or \"wall\" (monotonic)"},
    [O_MAX_BATCH] = {"MAX_BATCH", "--max-batch", K_INT, 1, 1000000, "10000",
                     "largest /ids?count= (10000)"},
    [O_IDLE_TIMEOUT_MS] = {"IDLE_TIMEOUT_MS", "--idle-timeout-ms", K_INT, 10,
                           86400000, "30000",
                           "close a silent connection after (30000)"},
    [O_MAX_CONNECTIONS] = {"MAX_CONNECTIONS", "--max-connections", K_INT, 1,
                           1000000, "10000",
                           "open connections, all threads (10000)"},
    [O_ETCD_ENDPOINTS] = {"ETCD_ENDPOINTS", "--etcd-endpoints", K_STR, 0, 0, "",
                          "etcd URLs for MACHINE_ID=auto, comma-separated"},
    [O_ETCD_PREFIX] = {"ETCD_PREFIX", "--etcd-prefix", K_STR, 0, 0,
                       "/snowflake/machines/",
                       "etcd key prefix (/snowflake/machines/)"},
    [O_ETCD_LEASE_TTL] = {"ETCD_LEASE_TTL", "--etcd-lease-ttl", K_INT, 1, 3600,
                          "10", "etcd lease TTL in seconds (10)"},
};

const char *sf__config_usage(void) {
  static char buf[4096];
  if (buf[0])
    return buf;
  size_t n = (size_t)snprintf(
      buf, sizeof buf,
      "usage: snowflaked [--flag value | --flag=value]...\n"
      "       snowflaked --healthcheck | --help | --version\n"
      "\nHands out 64-bit snowflake IDs over HTTP: GET /id, /ids?count=N,\n"
      "/decode/<id>, /health, /metrics.\n"
      "\nSettings (environment variable, or the flag, which wins):\n");
  for (int i = 0; i < O_COUNT && n < sizeof buf; i++)
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

static int copy_str(char *dst, size_t cap, const char *s) {
  size_t n = strlen(s);
  if (n >= cap)
    return -1;
  memcpy(dst, s, n + 1);
  return 0;
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

int sf__config_parse(const sf_config_input *in, sf_srv_config *c, char *err,
                     size_t errlen) {
  const char *val[O_COUNT], *src[O_COUNT];
  sf_layout layout;
  char tmp[80];

  memset(c, 0, sizeof *c);
  sf_layout_default(&layout);
  c->max_machine_id = sf_layout_max_machine(&layout);

  for (int i = 0; i < O_COUNT; i++) {
    val[i] = env_get(in->envp, opts[i].env);
    src[i] = opts[i].env;
    if (val[i] && !*val[i]) /* NAME= is the same as unset */
      val[i] = NULL;
  }
  for (int a = 1; a < in->argc; a++) {
    const char *arg = in->argv[a], *eq, *v = NULL;
    size_t len;
    int i;
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      c->action = SF_ACTION_HELP;
      return 0;
    }
    if (!strcmp(arg, "--version") || !strcmp(arg, "-V")) {
      c->action = SF_ACTION_VERSION;
      return 0;
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

  for (int i = 0; i < O_COUNT; i++) {
    const opt *o = &opts[i];
    const char *v = val[i] ? val[i] : o->def;
    int64_t n = 0, max = o->max < 0 ? (int64_t)c->max_machine_id : o->max;
    if (i == O_THREADS && !val[i]) {
      c->threads = in->ncpus < 1 ? 1 : in->ncpus > 256 ? 256 : in->ncpus;
      continue;
    }
    if (i == O_MACHINE_ID && !val[i]) {
      if (c->action == SF_ACTION_RUN) {
        snprintf(err, errlen,
                 "MACHINE_ID is required: an integer in 0..%llu, \"auto\" or "
                 "\"ordinal\"",
                 (unsigned long long)c->max_machine_id);
        return -1;
      }
      continue;
    }
    switch (o->k) {
    case K_MID:
      c->machine_id_set = 1;
      if (!strcmp(v, "auto")) {
        if (!in->with_etcd) {
          snprintf(err, errlen,
                   "%s=auto needs etcd support, which is not built in "
                   "(build with libcurl and jansson)",
                   src[i]);
          return -1;
        }
        c->machine_mode = SF_MID_AUTO;
      } else if (!strcmp(v, "ordinal")) {
        c->machine_mode = SF_MID_ORDINAL;
      } else if (parse_int(v, &n) || n > max) {
        snprintf(err, errlen,
                 "%s must be an integer in 0..%lld, \"auto\" or \"ordinal\" "
                 "(got \"%.64s\")",
                 src[i], (long long)max, v);
        return -1;
      } else {
        c->machine_id = (uint64_t)n;
      }
      break;
    case K_INT:
      if (parse_int(v, &n) || n < o->min || n > max) {
        snprintf(err, errlen,
                 "%s must be an integer in %lld..%lld (got \"%.64s\")", src[i],
                 (long long)o->min, (long long)max, v);
        return -1;
      }
      switch (i) {
      case O_MACHINE_ID_OFFSET:
        c->machine_id_offset = (uint64_t)n;
        break;
      case O_PORT:
        c->port = (unsigned)n;
        break;
      case O_THREADS:
        c->threads = (unsigned)n;
        break;
      case O_CLOCK_TOLERANCE_MS:
        c->clock_tolerance_ms = n;
        break;
      case O_MAX_BATCH:
        c->max_batch = (unsigned)n;
        break;
      case O_IDLE_TIMEOUT_MS:
        c->idle_timeout_ms = n;
        break;
      case O_MAX_CONNECTIONS:
        c->max_connections = (unsigned)n;
        break;
      case O_ETCD_LEASE_TTL:
        c->etcd_lease_ttl = (int)n;
        break;
      default:
        break;
      }
      break;
    case K_STR: {
      char *dst = i == O_STATE_FILE       ? c->state_file
                  : i == O_ETCD_ENDPOINTS ? c->etcd_endpoints
                                          : c->etcd_prefix;
      if (copy_str(dst, SF_SRV_STR_MAX, v)) {
        snprintf(err, errlen, "%s must be at most %d bytes (got %zu)", src[i],
                 SF_SRV_STR_MAX - 1, strlen(v));
        return -1;
      }
      break;
    }
    case K_BIND: {
      unsigned char addr[16];
      size_t len = strlen(v);
      if (len >= 2 && v[0] == '[' && v[len - 1] == ']') {
        v++;
        len -= 2;
      }
      if (len < sizeof tmp) {
        memcpy(tmp, v, len);
        tmp[len] = 0;
      }
      if (len >= sizeof tmp || len >= SF_SRV_BIND_MAX) {
        tmp[0] = 0;
      } else if (inet_pton(AF_INET, tmp, addr) == 1) {
        memcpy(c->bind, tmp, len + 1);
        break;
      } else if (inet_pton(AF_INET6, tmp, addr) == 1) {
        memcpy(c->bind, tmp, len + 1);
        c->bind_v6 = 1;
        break;
      }
      snprintf(err, errlen,
               "%s must be a numeric IPv4 or IPv6 address (got \"%.64s\")",
               src[i], val[i]);
      return -1;
    }
    case K_EPOCH:
      layout.epoch_ms = 0;
      if (sf_parse_time(v, &layout.epoch_ms) ||
          sf_layout_check(&layout, in->now_ms)) {
        snprintf(err, errlen,
                 "%s must be a past UTC time YYYY-MM-DDTHH:MM:SS[.mmm]Z or "
                 "unix ms (got \"%.64s\")",
                 src[i], v);
        return -1;
      }
      c->epoch_ms = layout.epoch_ms;
      break;
    case K_CLOCK:
      if (!strcmp(v, "monotonic") || !strcmp(v, "wall")) {
        c->clock_wall = v[0] == 'w';
        break;
      }
      snprintf(err, errlen,
               "%s must be \"monotonic\" or \"wall\" (got \"%.64s\")", src[i],
               v);
      return -1;
    }
  }

  if (c->machine_mode == SF_MID_AUTO && !c->etcd_endpoints[0]) {
    snprintf(err, errlen,
             "ETCD_ENDPOINTS is required with MACHINE_ID=auto: "
             "http://host:2379[,http://...] (got \"\")");
    return -1;
  }
  if (c->machine_mode == SF_MID_ORDINAL) {
    int64_t o = ordinal(in->hostname);
    if (o < 0) {
      snprintf(err, errlen,
               "%s=ordinal needs a host name that ends in a number (got "
               "\"%.64s\")",
               src[O_MACHINE_ID], in->hostname ? in->hostname : "");
      return -1;
    }
    if ((uint64_t)o + c->machine_id_offset > c->max_machine_id) {
      snprintf(err, errlen,
               "%s=ordinal: host name number %lld + MACHINE_ID_OFFSET %llu "
               "must be in 0..%llu",
               src[O_MACHINE_ID], (long long)o,
               (unsigned long long)c->machine_id_offset,
               (unsigned long long)c->max_machine_id);
      return -1;
    }
    c->machine_id = (uint64_t)o + c->machine_id_offset;
  }
  return 0;
}
