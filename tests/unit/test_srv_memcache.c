/*
 * test_srv_memcache.c - the memcached text protocol (memcache.c): command
 * lines in, answers out, no sockets, on a node with a fake clock.
 */
#include "proto_fx.h"

#include <stdio.h>

#include "memcache.h"

/* values collects the IDs of "VALUE <key> 0 <len>[ <cas>]\r\n<id>\r\n"
 * blocks in out (at most max), checking len and that cas, when there, is
 * the ID; returns how many. */
static size_t values(const char *out, uint64_t *ids, size_t max) {
  size_t k = 0;
  for (const char *p = strstr(out, "VALUE "); p && k < max;
       p = strstr(p, "VALUE ")) {
    const char *sp = strchr(p + 6, ' '), *eol = strstr(p, "\r\n");
    char *end;
    unsigned long len;
    assert_non_null(sp);
    assert_memory_equal(sp, " 0 ", 3);
    len = strtoul(sp + 3, &end, 10);
    ids[k] = strtoull(eol + 2, NULL, 10);
    assert_int_equal(strspn(eol + 2, "0123456789"), len);
    if (*end == ' ')
      assert_int_equal(strtoull(end + 1, NULL, 10), ids[k]);
    k++;
    p = eol + 2;
  }
  return k;
}

static void test_get(void **state) {
  proto_fx *f = fx_new(&sf__proto_memcached, 10000);
  uint64_t ids[8];
  char *out = fx_str(f, "get id\r\n");
  char want[64];
  (void)state;
  assert_int_equal(values(out, ids, 8), 1);
  snprintf(want, sizeof want, "VALUE id 0 %zu\r\n%llu\r\nEND\r\n",
           strlen(strchr(out, '\n') + 1) - 7, (unsigned long long)ids[0]);
  assert_string_equal(out, want);
  free(out);
  out = fx_str(f, "get id id2  k3\ngets id\r\n");
  assert_int_equal(values(out, ids + 1, 7), 4);
  assert_non_null(strstr(out, "VALUE id2 0 "));
  assert_non_null(strstr(out, "VALUE k3 0 "));
  assert_int_equal(fx_count(out, "END\r\n"), 2);
  assert_increasing_machine7(f, ids, 5);
  assert_int_equal(f->n.stats->ids_issued, 5);
  assert_int_equal(f->n.stats->proto_requests[SF_PROTO_MEMCACHED], 3);
  free(out);
  fx_free(f);
}

static void test_pipelined_and_cut_anywhere(void **state) {
  const char cmd[] = "get id\r\nversion\r\n";
  char in[50 * (sizeof cmd - 1) + 1], *out;
  uint64_t ids[64];
  (void)state;
  in[0] = 0;
  for (int i = 0; i < 50; i++)
    strcat(in, cmd);
  for (size_t chunk = 0; chunk <= 9; chunk++) {
    proto_fx *f = fx_new(&sf__proto_memcached, 10000);
    out = fx_feed(f, in, strlen(in), chunk, NULL);
    assert_int_equal(values(out, ids, 64), 50);
    assert_increasing_machine7(f, ids, 50);
    assert_int_equal(fx_count(out, "VERSION " SF_MC_VERSION "\r\n"), 50);
    free(out);
    fx_free(f);
  }
}

typedef struct exchange {
  const char *in, *out;
} exchange;

static void test_other_commands(void **state) {
  static const exchange cases[] = {
      {"version\r\n", "VERSION " SF_MC_VERSION "\r\n"},
      {"\r\n", "ERROR\r\n"},
      {"get\r\n", "ERROR\r\n"},
      {"frobnicate x\r\n", "ERROR\r\n"},
      {"GET id\r\n", "ERROR\r\n"},
      {"incr id 1\r\n", "CLIENT_ERROR incr is not supported: this server "
                        "only issues IDs (get, gets)\r\n"},
      {"set id 0 0 5\r\nhello\r\nversion\r\n",
       "CLIENT_ERROR storing is not supported: this server only issues IDs "
       "(get, gets)\r\nVERSION " SF_MC_VERSION "\r\n"},
      {"set id 0 0 5 noreply\r\nhello\r\nversion\r\n",
       "VERSION " SF_MC_VERSION "\r\n"},
      {"cas id 0 0 1 9\r\nx\r\n", "CLIENT_ERROR storing is not supported: "
                                  "this server only issues IDs (get, gets)"
                                  "\r\n"},
      {"set id 0 0\r\n", "CLIENT_ERROR bad command line format\r\n"},
      {"set id 0 0 x\r\n", "CLIENT_ERROR bad command line format\r\n"},
      {"stats items\r\n", "END\r\n"},
      {"stats sizes\r\n", "END\r\n"},
      {"stats conns\r\n", "END\r\n"},
      {"stats detail dump\r\n", "END\r\n"},
      {"stats slabs\r\n", "STAT active_slabs 0\r\nSTAT total_malloced 0\r\n"
                          "END\r\n"},
      {"stats reset\r\n", "CLIENT_ERROR the counters are not reset: they "
                          "only grow (Prometheus)\r\n"},
      {"stats frob\r\n", "CLIENT_ERROR stats groups: settings, items, "
                         "slabs, sizes, conns, extstore, detail dump\r\n"},
      {"get a\x01z\r\n", "CLIENT_ERROR bad key: over 250 bytes or a control "
                         "character\r\n"},
  };
  proto_fx *f = fx_new(&sf__proto_memcached, 10000);
  char *out;
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    out = fx_str(f, cases[i].in);
    if (strcmp(out, cases[i].out) != 0)
      fail_msg("case %zu: %s -> %s, want %s", i, cases[i].in, out,
               cases[i].out);
    free(out);
  }
  assert_false(f->proto->closing(f->c));
  out = fx_str(f, "version\r\n");
  assert_string_equal(out,
                      "VERSION 1.4.0+snowflaked." SF_VERSION_STRING "\r\n");
  free(out);
  out = fx_str(f, "stats settings\r\n");
  assert_memory_equal(out, "STAT maxconns ", 14);
  assert_string_equal(out + strlen(out) - 5, "END\r\n");
  free(out);
  out = fx_str(f, "stats \r\n"); /* as libmemcached sends it */
  assert_memory_equal(out, "STAT pid ", 9);
  assert_non_null(strstr(out, "\r\nSTAT version " SF_MC_VERSION "\r\n"));
  assert_non_null(
      strstr(out, "\r\nSTAT snowflaked_version " SF_VERSION_STRING "\r\n"));
  assert_non_null(strstr(out, "\r\nSTAT machine_id 7\r\n"));
  assert_non_null(strstr(out, "\r\nSTAT ids_issued 0\r\n"));
  assert_string_equal(out + strlen(out) - 5, "END\r\n");
  free(out);
  out = fx_str(f, "quit\r\nversion\r\n");
  assert_string_equal(out, "");
  assert_true(f->proto->closing(f->c));
  free(out);
  fx_free(f);
}

static void test_limits(void **state) {
  static char long_line[9000], long_key[300], many[64];
  proto_fx *f = fx_new(&sf__proto_memcached, 3);
  char *out;
  (void)state;
  memcpy(long_key, "get ", 4);
  memset(long_key + 4, 'k', 251);
  strcat(long_key, "\r\n");
  out = fx_str(f, long_key);
  assert_string_equal(out, "CLIENT_ERROR bad key: over 250 bytes or a "
                           "control character\r\n");
  free(out);
  snprintf(many, sizeof many, "gets a b c d\r\n");
  out = fx_str(f, many);
  assert_string_equal(out, "CLIENT_ERROR 4 keys in one get, at most 3 "
                           "(MAX_BATCH)\r\n");
  free(out);
  assert_int_equal(f->n.stats->ids_issued, 0);
  /* A line over the limit, whole or in pieces: an error, then close. */
  for (size_t chunk = 0; chunk <= 1000; chunk += 1000) {
    fx_reconnect(f);
    memcpy(long_line, "get ", 4);
    memset(long_line + 4, 'a', sizeof long_line - 5);
    out = fx_feed(f, long_line, strlen(long_line), chunk, NULL);
    assert_string_equal(out, "CLIENT_ERROR line over 8192 bytes\r\n");
    assert_true(f->proto->closing(f->c));
    free(out);
  }
  fx_reconnect(f);
  out = fx_str(f, "set k 0 0 2000000\r\n");
  assert_string_equal(out, "SERVER_ERROR object too large for cache\r\n");
  assert_true(f->proto->closing(f->c));
  free(out);
  fx_reconnect(f);
  out = fx_feed(f, "\x80\x00\x00\x02", 4, 0, NULL);
  assert_string_equal(out, "CLIENT_ERROR the binary protocol is not "
                           "supported; use the text one\r\n");
  assert_true(f->proto->closing(f->c));
  free(out);
  fx_free(f);
}

static void test_cannot_issue(void **state) {
  proto_fx *f = fx_new(&sf__proto_memcached, 10000);
  char *out;
  (void)state;
  fx_lose_lease(f);
  out = fx_str(f, "get id\r\ngets a b\r\n");
  assert_int_equal(fx_count(out, "SERVER_ERROR "), 2);
  assert_int_equal(fx_count(out, "lease"), 2);
  assert_int_equal(fx_count(out, "\r\n"), 2);
  assert_null(strstr(out, "VALUE"));
  assert_int_equal(f->n.stats->ids_issued, 0);
  free(out);
  fx_free(f);
}

static void test_output_pauses(void **state) {
  proto_fx *f = fx_new(&sf__proto_memcached, 10000);
  static char in[200000];
  size_t used, len, n = 0;
  const char *o;
  (void)state;
  while (n + 20 < sizeof in) {
    memcpy(in + n, "get a b c d e f g\r\n", 19);
    n += 19;
  }
  used = f->proto->feed(f->c, in, n);
  len = f->proto->output(f->c, &o);
  assert_true(used < n);
  assert_true(len >= SF_MC_OUT_PAUSE && len < SF_MC_OUT_PAUSE + 4096);
  assert_int_equal(f->proto->feed(f->c, in + used, n - used), 0);
  f->proto->sent(f->c);
  assert_true(f->proto->feed(f->c, in + used, n - used) > 0);
  fx_free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get),
      cmocka_unit_test(test_pipelined_and_cut_anywhere),
      cmocka_unit_test(test_other_commands),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_cannot_issue),
      cmocka_unit_test(test_output_pauses),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
