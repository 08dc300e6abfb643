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
#include "lease.h"
#include "node.h"
#include "server.h"
#include "snowflake.h"

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
  memset(&ss, 0, sizeof ss);
  if (c->bind_v6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)c->port);
    if (inet_pton(AF_INET6, c->bind, &a->sin6_addr) != 1 ||
        IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr))
      a->sin6_addr = in6addr_loopback;
    sl = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)c->port);
    if (inet_pton(AF_INET, c->bind, &a->sin_addr) != 1 ||
        a->sin_addr.s_addr == htonl(INADDR_ANY))
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sl = sizeof *a;
  }
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

static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  if (server) {
    sf__server_stop(server);
    server = NULL;
  }
  uv_close((uv_handle_t *)h, NULL);
  uv_stop(h->loop);
}

#if SF_WITH_ETCD
static int64_t lease_id(void *ctx, uint64_t *gen) {
  return sf__lease_machine_id(ctx, gen);
}
static void lease_stats(void *ctx, sf_lease_stats *out) {
  sf__lease_stats_get(ctx, out);
}
#endif

int main(int argc, char **argv) {
  static sf_srv_config cfg;
  sf_config_input in;
  sf_config gc;
  sf_node node;
  sf_statefile *sfile = NULL;
  sf_gen *gen = NULL;
  void *lease = NULL;
  char err[512], host[256], epoch[SF_TIME_BUFSIZE];
  int64_t mark = 0, now;
  uv_loop_t loop;
  uv_signal_t sigterm, sigint;
  int rc;

  signal(SIGPIPE, SIG_IGN);
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
  if (sf__config_parse(&in, &cfg, err, sizeof err))
    die(2, "%s", err);
  switch (cfg.action) {
  case SF_ACTION_HELP:
    fputs(sf__config_usage(), stdout);
    return 0;
  case SF_ACTION_VERSION:
    printf("snowflaked %s\n", SF_VERSION_STRING);
    return 0;
  case SF_ACTION_HEALTHCHECK:
    return healthcheck(&cfg);
  case SF_ACTION_RUN:
    break;
  }

  sf_config_init(&gc);
  gc.layout.epoch_ms = cfg.epoch_ms;
  gc.machine_id = cfg.machine_id;
  gc.tolerance_ms = cfg.clock_tolerance_ms;
  gc.clock = cfg.clock_wall ? sf_clock_wall : sf_clock_monotonic;
  if (cfg.state_file[0]) {
    rc = sf_statefile_open(cfg.state_file, &sfile, &mark);
    if (rc != 0)
      die(2,
          "STATE_FILE must be a readable state file in a writable directory "
          "(got \"%s\": %s)",
          cfg.state_file, sf_strerror(rc));
    gc.persist = sf_statefile_persist;
    gc.persist_ctx = sfile;
    gc.floor_unix_ms = mark;
  }

  raise_nofile();
  memset(&node, 0, sizeof node);
#if SF_WITH_ETCD
  if (cfg.machine_mode == SF_MID_AUTO) {
    sf_lease_config lc;
    sf_lease *l = NULL;
    lc.endpoints = cfg.etcd_endpoints;
    lc.prefix = cfg.etcd_prefix;
    lc.ttl_s = cfg.etcd_lease_ttl;
    lc.max_id = cfg.max_machine_id;
    if (sf__lease_start(&lc, &l, err, sizeof err) != 0)
      die(2, "%s%s",
          strncmp(err, "ETCD_", 5) ? "MACHINE_ID=auto: no machine id "
                                     "from ETCD_ENDPOINTS: "
                                   : "",
          err);
    lease = l;
    node.lease_id = lease_id;
    node.lease_stats = lease_stats;
    node.lease_ctx = l;
    now = sf__lease_machine_id(l, NULL);
    gc.machine_id = now < 0 ? 0 : (uint64_t)now;
  }
#endif
  rc = sf_gen_new(&gc, &gen);
  if (rc != 0)
    die(2, "cannot create the generator: %s", sf_strerror(rc));

  /* A clock a little behind the state file's mark is waited out before
   * serving; further behind, requests get 503 + Retry-After until then. */
  now = gc.clock(NULL) / 1000000;
  if (mark > now && mark - now <= 2000) {
    struct timespec ts = {(mark - now + 1) / 1000,
                          ((mark - now + 1) % 1000) * 1000000};
    nanosleep(&ts, NULL);
  }

  node.gen = gen;
  node.layout = sf_gen_layout(gen);
  node.cfg = &cfg;
  node.clock = gc.clock;
  node.clock_ctx = NULL;
  node.floor_unix_ms = mark;
  node.nstats = cfg.threads;
  node.stats = aligned_alloc(64, sizeof *node.stats * cfg.threads);
  node.start_unix_ms = wall_ms();
  if (!node.stats)
    die(1, "out of memory");
  memset(node.stats, 0, sizeof *node.stats * cfg.threads);

  if (sf__server_start(&node, &server, err, sizeof err))
    die(1, "%s", err);
  sf_format_time(cfg.epoch_ms, epoch, sizeof epoch);
  fprintf(stderr,
          "snowflaked %s: listening on %s%s%s:%u, machine id %llu%s, "
          "threads=%u epoch=%s clock=%s clock_tolerance_ms=%lld "
          "max_batch=%u idle_timeout_ms=%lld max_connections=%u "
          "state_file=%s\n",
          SF_VERSION_STRING, cfg.bind_v6 ? "[" : "", cfg.bind,
          cfg.bind_v6 ? "]" : "", sf__server_port(server),
          (unsigned long long)sf_gen_machine_id(gen),
          cfg.machine_mode == SF_MID_AUTO      ? " (etcd lease)"
          : cfg.machine_mode == SF_MID_ORDINAL ? " (ordinal)"
                                               : "",
          cfg.threads, epoch, cfg.clock_wall ? "wall" : "monotonic",
          (long long)cfg.clock_tolerance_ms, cfg.max_batch,
          (long long)cfg.idle_timeout_ms, cfg.max_connections,
          cfg.state_file[0] ? cfg.state_file : "-");

  uv_loop_init(&loop);
  uv_signal_init(&loop, &sigterm);
  uv_signal_init(&loop, &sigint);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (!uv_is_closing((uv_handle_t *)&sigterm))
    uv_close((uv_handle_t *)&sigterm, NULL);
  if (!uv_is_closing((uv_handle_t *)&sigint))
    uv_close((uv_handle_t *)&sigint, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);

#if SF_WITH_ETCD
  sf__lease_stop(lease);
#else
  (void)lease;
#endif
  sf_gen_free(gen);
  sf_statefile_close(sfile);
  free(node.stats);
  fprintf(stderr, "snowflaked: stopped\n");
  return 0;
}
