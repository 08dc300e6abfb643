/*
 * bench_gen.c - how fast libsnowflake issues IDs, against the layout's limit.
 *
 *   bench_gen [--seconds S] [--cli PATH]
 *
 * Rows: the default layout (4,096,000 IDs/s a machine) with 1 and 2 threads
 * sharing one generator; a wide-sequence layout (0-bit machine, 22-bit
 * sequence) where the limit is 4.2 billion IDs/s, so the numbers show the
 * generator's own cost per ID; the cost of one clock read for reference.
 * With --cli it also times `PATH gen -n 4096000 --machine-id 9 > /dev/null`,
 * which the limit lets finish in no less than about 1 s. Prints numbers,
 * never passes or fails on them.
 */
#include "snowflake.h"

#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum { MAX_THREADS = 8, BATCH = 256 };

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct worker {
  sf_gen *g;
  atomic_int *stop;
  int batched;
  uint64_t ids;
  int rc;
} worker;

static void *work(void *arg) {
  worker *w = arg;
  uint64_t n = 0, sink = 0;
  uint64_t ids[BATCH];
  while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
    if (w->batched) {
      for (int i = 0; i < 16; i++) {
        w->rc = sf_gen_next_n(w->g, ids, BATCH, NULL);
        if (w->rc != SF_OK)
          goto out;
        sink ^= ids[BATCH - 1];
        n += BATCH;
      }
    } else {
      for (int i = 0; i < 4096; i++) {
        uint64_t id;
        w->rc = sf_gen_next(w->g, &id, NULL);
        if (w->rc != SF_OK)
          goto out;
        sink ^= id;
        n++;
      }
    }
  }
out:
  w->ids = n + (sink & 0); /* keep the IDs live */
  return NULL;
}

/* Runs threads on a new generator for the layout; returns IDs/s. */
/* A clock that costs next to nothing: a counter that moves 1 ns a read from
 * the wall time at start. Only for one thread; it shows the generator's own
 * cost with the clock read taken out. */
static int64_t counter_ns;
static int64_t counter_clock(void *ctx) {
  (void)ctx;
  return counter_ns++;
}

static double run_clock(const sf_layout *l, int threads, int batched,
                        double seconds, sf_clock_fn clock) {
  sf_config c;
  sf_config_init(&c);
  c.layout = *l;
  c.clock = clock;
  sf_gen *g;
  int rc = sf_gen_new(&c, &g);
  if (rc != SF_OK) {
    fprintf(stderr, "bench_gen: sf_gen_new: %s\n", sf_strerror(rc));
    exit(1);
  }
  atomic_int stop = 0;
  worker w[MAX_THREADS];
  pthread_t th[MAX_THREADS];
  double t0 = now_s();
  for (int i = 0; i < threads; i++) {
    w[i] = (worker){g, &stop, batched, 0, SF_OK};
    pthread_create(&th[i], NULL, work, &w[i]);
  }
  struct timespec nap = {(time_t)seconds,
                         (long)((seconds - (double)(time_t)seconds) * 1e9)};
  nanosleep(&nap, NULL);
  atomic_store(&stop, 1);
  uint64_t total = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(th[i], NULL);
    if (w[i].rc != SF_OK) {
      fprintf(stderr, "bench_gen: %s\n", sf_strerror(w[i].rc));
      exit(1);
    }
    total += w[i].ids;
  }
  double rate = (double)total / (now_s() - t0);
  sf_gen_free(g);
  return rate;
}

static void row_clock(const char *name, const sf_layout *l, int threads,
                      int batched, double seconds, sf_clock_fn clock) {
  double rate = run_clock(l, threads, batched, seconds, clock);
  double limit = (double)sf_layout_max_rate(l);
  printf("%-44s %7d %14.0f %14.0f %8.4f %8.2f\n", name, threads, rate, limit,
         rate / limit, 1e9 / rate);
  fflush(stdout);
}

static void row(const char *name, const sf_layout *l, int threads, int batched,
                double seconds) {
  row_clock(name, l, threads, batched, seconds, NULL);
}

static void clock_row(void) {
  int64_t sink = 0;
  const int n = 5000000;
  double t0 = now_s();
  for (int i = 0; i < n; i++)
    sink += sf_clock_monotonic(NULL);
  double ns = (now_s() - t0) * 1e9 / n;
  printf("%-44s %7d %14s %14s %8s %8.2f\n",
         "reference: one sf_clock_monotonic()", 1, "-", "-", "-",
         ns + (double)(sink & 0));
}

/* Times `cli gen -n 4096000 --machine-id 9 > /dev/null`. */
static void cli_row(const char *cli) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY,
                                   0);
  char *argv[] = {(char *)cli,    "gen", "-n", "4096000",
                  "--machine-id", "9",   NULL};
  pid_t pid;
  double t0 = now_s();
  if (posix_spawn(&pid, cli, &fa, NULL, argv, environ) != 0) {
    perror("bench_gen: spawn");
    exit(1);
  }
  int st;
  waitpid(pid, &st, 0);
  double s = now_s() - t0;
  posix_spawn_file_actions_destroy(&fa);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "bench_gen: %s failed\n", cli);
    exit(1);
  }
  printf("\nsnowflake gen -n 4096000 --machine-id 9 > /dev/null: %.3f s "
         "(limit allows >= ~1.000 s; target <= 1.020 s; %.1f%% of the limit)\n",
         s, 100.0 / s);
}

int main(int argc, char **argv) {
  double seconds = 1.0;
  const char *cli = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      seconds = atof(argv[++i]);
    } else if (strcmp(argv[i], "--cli") == 0 && i + 1 < argc) {
      cli = argv[++i];
    } else {
      fprintf(stderr, "usage: bench_gen [--seconds S] [--cli PATH]\n");
      return 2;
    }
  }
  if (seconds < 0.05 || seconds > 60) {
    fprintf(stderr, "bench_gen: --seconds must be in 0.05..60\n");
    return 2;
  }
  sf_layout def, wide;
  sf_layout_default(&def);
  sf_layout_default(&wide);
  wide.machine_bits = 0;
  wide.sequence_bits = 22;

  printf("libsnowflake %s, %.2f s per row, %ld CPUs online\n",
         SF_VERSION_STRING, seconds, sysconf(_SC_NPROCESSORS_ONLN));
  printf("%-44s %7s %14s %14s %8s %8s\n", "case", "threads", "IDs/s", "limit/s",
         "ratio", "ns/ID");
  row("default 10/12 bits, sf_gen_next", &def, 1, 0, seconds);
  row("default 10/12 bits, sf_gen_next", &def, 2, 0, seconds);
  row("wide 0/22 bits, sf_gen_next", &wide, 1, 0, seconds);
  row("wide 0/22 bits, sf_gen_next", &wide, 2, 0, seconds);
  row("wide 0/22 bits, sf_gen_next_n (256/call)", &wide, 1, 1, seconds);
  row("wide 0/22 bits, sf_gen_next_n (256/call)", &wide, 2, 1, seconds);
  counter_ns = sf_clock_wall(NULL);
  row_clock("wide 0/22 bits, sf_gen_next, 1 ns/read clock", &wide, 1, 0,
            seconds, counter_clock);
  clock_row();
  printf("(ns/ID = 1e9 / IDs/s, all threads together; ratio = IDs/s / "
         "limit/s;\n a run of S seconds touches up to S*1000+1 ms, so a "
         "ratio can read up to 1/(S*1000) above 1)\n");
  if (cli != NULL)
    cli_row(cli);
  return 0;
}
