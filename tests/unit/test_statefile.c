/* test_statefile.c - the high-water mark file, and a restart with the clock
 * behind: the new generator issues nothing at or below the old mark. */
#include "sf_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct tmpdir {
  char dir[64];
  char path[96];
} tmpdir;

static int setup(void **state) {
  tmpdir *t = calloc(1, sizeof *t);
  if (t == NULL)
    return -1;
  strcpy(t->dir, "/tmp/sf_statefile_XXXXXX");
  if (mkdtemp(t->dir) == NULL) {
    free(t);
    return -1;
  }
  snprintf(t->path, sizeof t->path, "%s/mark", t->dir);
  *state = t;
  return 0;
}

static int teardown(void **state) {
  tmpdir *t = *state;
  char p[128];
  unlink(t->path);
  snprintf(p, sizeof p, "%s.tmp", t->path);
  unlink(p);
  chmod(t->dir, 0700);
  rmdir(t->dir);
  free(t);
  return 0;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void read_file(const char *path, char *buf, size_t len) {
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  size_t n = fread(buf, 1, len - 1, f);
  buf[n] = '\0';
  fclose(f);
}

static void test_open_persist_reopen(void **state) {
  tmpdir *t = *state;
  sf_statefile *f = NULL;
  int64_t mark = -1;
  assert_int_equal(sf_statefile_open(t->path, &f, &mark), SF_OK);
  assert_int_equal(mark, 0); /* no file yet */
  assert_int_equal(access(t->path, F_OK), -1);
  assert_int_equal(sf_statefile_persist(f, INT64_C(1767323045678)), SF_OK);
  char buf[64];
  read_file(t->path, buf, sizeof buf);
  assert_string_equal(buf, "1767323045678\n");
  assert_int_equal(sf_statefile_persist(f, INT64_C(1767323046678)), SF_OK);
  sf_statefile_close(f);

  assert_int_equal(sf_statefile_open(t->path, &f, &mark), SF_OK);
  assert_int_equal(mark, INT64_C(1767323046678));
  sf_statefile_close(f);
  sf_statefile_close(NULL);
}

static void test_bad_files(void **state) {
  tmpdir *t = *state;
  static const char *const bad[] = {
      "",
      "\n",
      "abc\n",
      "-5\n",
      " 5\n",
      "5 \n",
      "5\n\n",
      "1.5\n",
      "0x10\n",
      "99999999999999999999\n",
      "123456789012345678901234567890123456789012345678901234567890123456\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    write_file(t->path, bad[i]);
    sf_statefile *f = NULL;
    int64_t mark = 7;
    if (sf_statefile_open(t->path, &f, &mark) != SF_ESTATE)
      fail_msg("accepted state file \"%s\"", bad[i]);
    assert_null(f);
    assert_int_equal(mark, 7);
  }
  write_file(t->path, "42"); /* no newline is fine */
  sf_statefile *f = NULL;
  int64_t mark = 0;
  assert_int_equal(sf_statefile_open(t->path, &f, &mark), SF_OK);
  assert_int_equal(mark, 42);
  sf_statefile_close(f);
  assert_int_equal(sf_statefile_open("", &f, &mark), SF_EINVAL);
}

static void test_unwritable(void **state) {
  tmpdir *t = *state;
  sf_statefile *f = NULL;
  int64_t mark;
  /* A directory where the file should be: exists but unreadable as one. */
  assert_int_equal(mkdir(t->path, 0700), 0);
  assert_int_equal(sf_statefile_open(t->path, &f, &mark), SF_ESTATE);
  rmdir(t->path);
  /* A directory that does not exist. */
  char p[160];
  snprintf(p, sizeof p, "%s/no/such/dir/mark", t->dir);
  assert_int_equal(sf_statefile_open(p, &f, &mark), SF_ESTATE);
  /* Opened, then the directory turns read-only: persist fails (root
   * ignores permissions, so only checked when not root). */
  assert_int_equal(sf_statefile_open(t->path, &f, &mark), SF_OK);
  if (geteuid() != 0) {
    chmod(t->dir, 0500);
    assert_int_equal(sf_statefile_persist(f, 1000), SF_ESTATE);
    chmod(t->dir, 0700);
  }
  assert_int_equal(sf_statefile_persist(f, 1000), SF_OK);
  assert_int_equal(sf_statefile_persist(f, -1), SF_EINVAL);
  sf_statefile_close(f);
}

/* A persist through a state file whose directory is gone: SF_ESTATE from
 * the generator, and no ID. */
static void test_generator_persist_failure(void **state) {
  tmpdir *t = *state;
  char sub[128], path[160];
  snprintf(sub, sizeof sub, "%s/sub", t->dir);
  snprintf(path, sizeof path, "%s/mark", sub);
  assert_int_equal(mkdir(sub, 0700), 0);
  sf_statefile *f;
  int64_t mark;
  assert_int_equal(sf_statefile_open(path, &f, &mark), SF_OK);
  assert_int_equal(rmdir(sub), 0);
  fake_clock clk = {at_ms(1000), 0, 0};
  sf_config c;
  fake_config(&c, &clk, 1);
  c.persist = sf_statefile_persist;
  c.persist_ctx = f;
  sf_gen *g;
  assert_int_equal(sf_gen_new(&c, &g), SF_OK);
  uint64_t id = 11;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_ESTATE);
  assert_int_equal(id, 11);
  sf_gen_free(g);
  sf_statefile_close(f);
}

/* A node issues IDs, crashes, and restarts with its clock 500 ms behind the
 * last ID: the floor from the file makes it refuse (gap beyond the
 * tolerance), then wait (gap within), and everything it issues is above
 * every ID of the first run. */
static void test_restart_with_clock_behind(void **state) {
  tmpdir *t = *state;
  sf_statefile *f;
  int64_t mark;
  assert_int_equal(sf_statefile_open(t->path, &f, &mark), SF_OK);
  fake_clock clk = {at_ms(50000), 5000, 0}; /* 200 reads a ms */
  sf_config c;
  fake_config(&c, &clk, 9);
  c.persist = sf_statefile_persist;
  c.persist_ctx = f;
  c.floor_unix_ms = mark;
  sf_gen *g;
  assert_int_equal(sf_gen_new(&c, &g), SF_OK);
  uint64_t max_first = 0, id;
  for (int i = 0; i < 100000; i++) { /* 500 simulated ms */
    assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
    max_first = id;
  }
  sf_gen_stats st;
  sf_gen_stats_get(g, &st);
  sf_gen_free(g); /* the crash: nothing more is written */
  sf_statefile_close(f);

  assert_int_equal(sf_statefile_open(t->path, &f, &mark), SF_OK);
  assert_int_equal(mark, st.mark_unix_ms);
  sf_layout l;
  sf_layout_default(&l);
  sf_parts last;
  assert_int_equal(sf_decode(&l, max_first, &last), SF_OK);
  assert_true(mark > last.unix_ms);

  clk.now_ns = at_ms(50000); /* 500 ms behind the last ID */
  clk.step_ns = 0;
  fake_config(&c, &clk, 9);
  c.persist = sf_statefile_persist;
  c.persist_ctx = f;
  c.floor_unix_ms = mark;
  assert_int_equal(sf_gen_new(&c, &g), SF_OK);
  int64_t wait = 0;
  assert_int_equal(sf_gen_next(g, &id, &wait), SF_ECLOCKBACK);
  assert_int_equal(wait, mark - clk.now_ns / NS_PER_MS);
  /* The caller waits most of it out; the rest is within the tolerance. */
  clk.now_ns = (mark - 5) * NS_PER_MS;
  clk.step_ns = 300000;
  for (int i = 0; i < 10000; i++) {
    assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
    sf_parts p;
    assert_int_equal(sf_decode(&l, id, &p), SF_OK);
    assert_true(p.unix_ms > mark);
    assert_true(id > max_first);
  }
  sf_gen_stats_get(g, &st);
  assert_int_equal(st.clock_back_waits, 1);
  sf_gen_free(g);
  /* The mark only moved forward. */
  int64_t mark2;
  sf_statefile_close(f);
  assert_int_equal(sf_statefile_open(t->path, &f, &mark2), SF_OK);
  assert_true(mark2 > mark);
  sf_statefile_close(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_open_persist_reopen, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unwritable, setup, teardown),
      cmocka_unit_test_setup_teardown(test_generator_persist_failure, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_restart_with_clock_behind, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
