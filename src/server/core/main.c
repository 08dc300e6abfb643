/*
 * main.c - snowflaked: configuration, the generator, the etcd lease, the
 * server, signals, and the --healthcheck client.
 */
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <uv.h>

#include "config.h"
#include "etcd.h"
#include "lease.h"
#include "memcache.h"
#include "node.h"
#include "notify.h"
#include "resp.h"
#include "server.h"
#include "snowflake.h"
#include "sockaddr.h"

extern char **environ;

static sf_server *server;

__attribute__((format(printf, 2, 3), noreturn)) static void
die(int status, const char *fmt, ...);
static void die(int status, const char *fmt, ...) {
  va_list ap;
  fputs("snowflaked: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(status);
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned cpu_count(void) {
  cpu_set_t set;
  long n;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
    return (unsigned)CPU_COUNT(&set);
  n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (unsigned)n : 1;
}

/* healthcheck sends GET /health to the configured port on this host and
 * returns 0 when the answer is 200, else 1. */
static int healthcheck(const sf_srv_config *c) {
  struct sockaddr_storage ss;
  socklen_t sl;
  struct timeval tv = {2, 0};
  static const char req[] =
      "GET /health HTTP/1.0\r\nHost: localhost\r\nUser-Agent: "
      "snowflaked-healthcheck\r\n\r\n";
  char buf[64];
  size_t got = 0;
  int fd;
  sl = sf__sockaddr(c->bind, c->bind_v6, c->port, 1, &ss);
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 1;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&ss, sl) != 0 ||
      send(fd, req, sizeof req - 1, MSG_NOSIGNAL) !=
          (ssize_t)(sizeof req - 1)) {
    fprintf(stderr, "snowflaked: healthcheck: %s\n", strerror(errno));
    close(fd);
    return 1;
  }
  while (got < 12) {
    ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  close(fd);
  buf[got] = 0;
  if (got >= 12 && !memcmp(buf, "HTTP/1.", 7) && !memcmp(buf + 8, " 200", 4))
    return 0;
  fprintf(stderr, "snowflaked: healthcheck: unhealthy: %.12s\n", buf);
  return 1;
}

/* raise_nofile lifts the soft limit on open files to the hard one, so
 * MAX_CONNECTIONS (not a 1024 default) bounds the connections served. */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* The main thread's loop, which only waits for SIGTERM and SIGINT and,
 * under systemd with an etcd lease, keeps STATUS= up to date. */
static uv_loop_t loop;
static uv_signal_t sigterm, sigint;
static uv_timer_t status_timer;

static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  sf__notify("STOPPING=1\nSTATUS=stopping: finishing the requests in flight");
  if (uv_is_active((uv_handle_t *)&status_timer))
    uv_close((uv_handle_t *)&status_timer, NULL);
  if (server) {
    sf__server_stop(server);
    server = NULL;
  }
  uv_close((uv_handle_t *)h, NULL);
  uv_stop(h->loop);
}

/* ------------------------------------------------------ start-up steps */

/* The process's pieces, torn down in reverse by shutdown(). */
typedef struct snowflaked {
  sf_srv_config cfg;
  sf_config gc;
  sf_node node;
  sf_statefile *sfile;
  sf_gen *gen;
  sf_lease *lease;
  int64_t mark; /* the state file's mark at start, 0: none */
} snowflaked;

static int snap(void *ctx, sf_lease_snap *s) {
  return sf__lease_snapshot(ctx, s);
}
static void kick(void *ctx) {
  sf__lease_kick(ctx);
}
static void stats(void *ctx, sf_lease_stats *out) {
  sf__lease_stats_get(ctx, out);
}
static void why(void *ctx, char *buf, size_t len) {
  sf__lease_why(ctx, buf, len);
}
static const sf_lease_ops lease_ops = {snap, kick, stats, why};

/* configure reads the flags and the environment; returns -1 to go on
 * serving, or the exit status of an action that is done (--help...). */
static int configure(snowflaked *d, int argc, char **argv) {
  sf_config_input in;
  char err[512], host[256];
  memset(&in, 0, sizeof in);
  in.argc = argc;
  in.argv = argv;
  in.envp = environ;
  host[0] = 0;
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = 0;
  in.hostname = host;
  in.ncpus = cpu_count();
  in.now_ms = wall_ms();
  in.with_etcd = SF_WITH_ETCD;
  if (sf__config_parse(&in, &d->cfg, err, sizeof err))
    die(2, "%s", err);
  switch (d->cfg.action) {
  case SF_ACTION_HELP:
    fputs(sf__config_usage(), stdout);
    return 0;
  case SF_ACTION_VERSION:
    printf("snowflaked %s\n", SF_VERSION_STRING);
    return 0;
  case SF_ACTION_HEALTHCHECK:
    return healthcheck(&d->cfg);
  case SF_ACTION_RUN:
    break;
  }
  return -1;
}

/* open_state reads STATE_FILE's mark and has the generator persist to it. */
static void open_state(snowflaked *d) {
  const sf_srv_config *cfg = &d->cfg;
  sf_config_init(&d->gc);
  d->gc.layout.epoch_ms = cfg->epoch_ms;
  d->gc.machine_id = cfg->machine_id;
  d->gc.tolerance_ms = cfg->clock_tolerance_ms;
  d->gc.clock = cfg->clock_wall ? sf_clock_wall : sf_clock_monotonic;
  if (!cfg->state_file[0])
    return;
  int rc = sf_statefile_open(cfg->state_file, &d->sfile, &d->mark);
  if (rc != 0)
    die(2,
        "STATE_FILE must be a readable state file in a writable directory "
        "(got \"%s\": %s)",
        cfg->state_file, sf_strerror(rc));
  d->gc.persist = sf_statefile_persist;
  d->gc.persist_ctx = d->sfile;
  d->gc.floor_unix_ms = d->mark;
}

/* take_lease starts the etcd lease for MACHINE_ID=auto: it claims a machine
 * id, waiting for etcd as long as it takes; only bad settings exit. */
static void take_lease(snowflaked *d) {
  const sf_srv_config *cfg = &d->cfg;
  sf_lease_config lc;
  char err[512];
  if (cfg->machine_mode != SF_MID_AUTO)
    return;
  memset(&lc, 0, sizeof lc);
  lc.clock = d->gc.clock; /* marks are in the time IDs carry */
  lc.clock_ctx = d->gc.clock_ctx;
  lc.leap_ms = cfg->etcd_mark_leap_ms;
  lc.endpoints = cfg->etcd_endpoints;
  lc.prefix = cfg->etcd_prefix;
  lc.ttl_s = cfg->etcd_lease_ttl;
  lc.min_id = cfg->machine_id_min;
  lc.max_id = cfg->machine_id_max;
  sf_etcd_security sec = {cfg->etcd_cacert,   cfg->etcd_cert,
                          cfg->etcd_key,      cfg->etcd_username,
                          cfg->etcd_password, cfg->etcd_password_file};
  if (sf__etcd_security_setup(&sec, cfg->etcd_endpoints, err, sizeof err))
    die(2, "%s", err);
  if (sf__lease_start(&lc, &d->lease, err, sizeof err) != 0)
    die(2, "%s%s", strncmp(err, "ETCD_", 5) ? "MACHINE_ID=auto: " : "", err);
  d->node.lease = &lease_ops;
  d->node.lease_ctx = d->lease;
  /* The mint hands the generator the leased id (and its floor) before the
   * first ID; until then it carries 0. */
  d->gc.machine_id = 0;
}

/* make_node creates the generator and the node every thread shares. */
static void make_node(snowflaked *d) {
  sf_node *n = &d->node;
  int rc = sf_gen_new(&d->gc, &d->gen);
  if (rc != 0)
    die(2, "cannot create the generator: %s", sf_strerror(rc));
  /* A clock a little behind the state file's mark is waited out before
   * serving; further behind, requests get 503 + Retry-After until then. */
  int64_t now = d->gc.clock(NULL) / 1000000;
  if (d->mark > now && d->mark - now <= 2000) {
    struct timespec ts = {(d->mark - now + 1) / 1000,
                          ((d->mark - now + 1) % 1000) * 1000000};
    nanosleep(&ts, NULL);
  }
  n->gen = d->gen;
  n->layout = sf_gen_layout(d->gen);
  n->cfg = &d->cfg;
  n->clock = d->gc.clock;
  n->clock_ctx = NULL;
  n->floor_unix_ms = d->mark;
  n->nstats = d->cfg.threads;
  n->stats = aligned_alloc(64, sizeof *n->stats * d->cfg.threads);
  n->start_unix_ms = wall_ms();
  if (!n->stats)
    die(1, "out of memory");
  memset(n->stats, 0, sizeof *n->stats * d->cfg.threads);
}

/* announce prints the one start-up line: where, which id, which settings. */
static void announce(const snowflaked *d) {
  const sf_srv_config *cfg = &d->cfg;
  char epoch[SF_TIME_BUFSIZE];
  sf_lease_snap ls = {.id = -1};
  uint64_t id = cfg->machine_id;
  char more[64] = "", mid[SF_LEASE_WHY_MAX + 40];
  unsigned i = 1;
  /* The other listeners, in the order main() made them. */
  if (cfg->redis_port >= 0)
    snprintf(more, sizeof more, ", :%u (Redis)", sf__server_port(server, i++));
  if (cfg->memcached_port >= 0)
    snprintf(more + strlen(more), sizeof more - strlen(more),
             ", :%u (memcached)", sf__server_port(server, i++));
  snprintf(mid, sizeof mid, "%llu%s", (unsigned long long)id,
           cfg->machine_mode == SF_MID_ORDINAL ? " (ordinal)" : "");
  if (d->lease && sf__lease_snapshot(d->lease, &ls) == 0) {
    snprintf(mid, sizeof mid, "%lld (etcd lease)", (long long)ls.id);
  } else if (d->lease) { /* still waiting: the lease logs the id it takes */
    char why[SF_LEASE_WHY_MAX];
    sf__lease_why(d->lease, why, sizeof why);
    snprintf(mid, sizeof mid, "pending (etcd lease: %s)", why);
  }
  sf_format_time(cfg->epoch_ms, epoch, sizeof epoch);
  fprintf(stderr,
          "snowflaked %s: listening on %s%s%s:%u%s, machine id %s, "
          "threads=%u epoch=%s clock=%s clock_tolerance_ms=%lld "
          "max_batch=%u idle_timeout_ms=%lld max_connections=%u "
          "state_file=%s\n",
          SF_VERSION_STRING, cfg->bind_v6 ? "[" : "", cfg->bind,
          cfg->bind_v6 ? "]" : "", sf__server_port(server, 0), more, mid,
          cfg->threads, epoch, cfg->clock_wall ? "wall" : "monotonic",
          (long long)cfg->clock_tolerance_ms, cfg->max_batch,
          (long long)cfg->idle_timeout_ms, cfg->max_connections,
          cfg->state_file[0] ? cfg->state_file : "-");
}

/* watch_signals catches SIGTERM and SIGINT from before the server starts:
 * a signal that comes before the loop runs waits in libuv until it does,
 * so a stop sent right after the "listening" line still stops cleanly. */
static void watch_signals(void) {
  uv_loop_init(&loop);
  uv_signal_init(&loop, &sigterm);
  uv_signal_init(&loop, &sigint);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_start(&sigint, on_signal, SIGINT);
}

#define LAPSED "the lease ran out: etcd answered no keepalive in time"

/* status says what `systemctl status` shows: the port and the machine id
 * IDs are issued under, or why none is. */
static void status(const snowflaked *d, char *buf, size_t n) {
  const sf_srv_config *cfg = &d->cfg;
  unsigned port = sf__server_port(server, 0);
  sf_lease_stats ls;
  if (!d->lease) {
    snprintf(buf, n, "serving on port %u, machine id %llu%s", port,
             (unsigned long long)cfg->machine_id,
             cfg->machine_mode == SF_MID_ORDINAL ? " (ordinal)" : "");
    return;
  }
  sf__lease_stats_get(d->lease, &ls);
  if (ls.machine_id >= 0)
    snprintf(buf, n, "serving on port %u, machine id %lld (etcd lease)", port,
             (long long)ls.machine_id);
  else {
    /* No cause recorded while the deadline passed with a keepalive still
     * pending (etcd frozen or slow): say that rather than a state name. */
    const char *why = ls.why[0] ? ls.why
                      : ls.state == SF_LEASE_LOST
                          ? LAPSED
                          : sf__lease_state_name(ls.state);
    snprintf(buf, n,
             "listening on port %u, issuing no IDs: waiting for etcd: %.180s",
             port, why);
  }
}

static void on_status_timer(uv_timer_t *t) {
  static char last[256];
  char now[256], msg[300];
  status(t->data, now, sizeof now);
  if (strcmp(now, last) == 0)
    return;
  snprintf(last, sizeof last, "%s", now);
  snprintf(msg, sizeof msg, "STATUS=%s", now);
  sf__notify(msg);
}

/* notify_ready tells systemd (Type=notify) that the node listens, and
 * keeps STATUS= current while an etcd lease can come and go. */
static void notify_ready(snowflaked *d) {
  char st[256], msg[300];
  status(d, st, sizeof st);
  snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", st);
  if (sf__notify(msg) < 0)
    fprintf(stderr, "snowflaked: sd_notify to NOTIFY_SOCKET=%s: %s\n",
            getenv("NOTIFY_SOCKET"), strerror(errno));
  else if (getenv("NOTIFY_SOCKET") && d->lease) {
    uv_timer_init(&loop, &status_timer);
    status_timer.data = d;
    uv_timer_start(&status_timer, on_status_timer, 1000, 1000);
  }
}

/* serve runs until SIGTERM or SIGINT has stopped the server. */
static void serve(void) {
  uv_run(&loop, UV_RUN_DEFAULT);
  if (!uv_is_closing((uv_handle_t *)&sigterm))
    uv_close((uv_handle_t *)&sigterm, NULL);
  if (!uv_is_closing((uv_handle_t *)&sigint))
    uv_close((uv_handle_t *)&sigint, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
}

static void shutdown_daemon(snowflaked *d) {
  sf__lease_stop(d->lease);
  sf__etcd_security_teardown();
  sf_gen_free(d->gen);
  sf_statefile_close(d->sfile);
  free(d->node.stats);
  fprintf(stderr, "snowflaked: stopped\n");
}

int main(int argc, char **argv) {
  static snowflaked d;
  char err[512];
  int rc;
  sf_listen_spec specs[SF_SRV_MAX_LISTENERS];
  unsigned nspecs = 0;

  signal(SIGPIPE, SIG_IGN);
  rc = configure(&d, argc, argv);
  if (rc >= 0)
    return rc;
  open_state(&d);
  raise_nofile();
  take_lease(&d);
  make_node(&d);
  specs[nspecs++] =
      (sf_listen_spec){"PORT", d.cfg.port, &sf__proto_http, &sf__proto_h2};
  if (d.cfg.redis_port >= 0)
    specs[nspecs++] = (sf_listen_spec){"REDIS_PORT", (unsigned)d.cfg.redis_port,
                                       &sf__proto_redis, NULL};
  if (d.cfg.memcached_port >= 0)
    specs[nspecs++] =
        (sf_listen_spec){"MEMCACHED_PORT", (unsigned)d.cfg.memcached_port,
                         &sf__proto_memcached, NULL};
  watch_signals();
  if (sf__server_start(&d.node, specs, nspecs, &server, err, sizeof err))
    die(1, "%s", err);
  announce(&d);
  notify_ready(&d);
  serve();
  shutdown_daemon(&d);
  return 0;
}
