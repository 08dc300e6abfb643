/*
 * test_srv_resp.c - the RESP2 connection (resp.c, resp_cmd.c): command bytes
 * in, reply bytes out, no sockets, on a node with a fake clock.
 */
#include "proto_fx.h"

#include <stdio.h>

#include "resp.h"

/* ids_in collects every "$<n>\r\n<digits>\r\n" reply in out (at most max)
 * and checks each holds exactly n digits; returns how many. */
static size_t ids_in(const char *out, uint64_t *ids, size_t max) {
  size_t k = 0;
  for (const char *p = strchr(out, '$'); p && k < max; p = strchr(p, '$')) {
    char *end;
    unsigned long n = strtoul(p + 1, &end, 10);
    assert_memory_equal(end, "\r\n", 2);
    ids[k++] = strtoull(end + 2, &end, 10);
    assert_int_equal((unsigned long)(end - (strstr(p, "\r\n") + 2)), n);
    assert_memory_equal(end, "\r\n", 2);
    p = end;
  }
  return k;
}

static void test_get_id(void **state) {
  proto_fx *f = fx_new(&sf__proto_redis, 10000);
  uint64_t ids[4];
  char *out = fx_str(f, "*2\r\n$3\r\nGET\r\n$2\r\nid\r\n");
  (void)state;
  assert_int_equal(out[0], '$');
  assert_int_equal(ids_in(out, ids, 4), 1);
  assert_increasing_machine7(f, ids, 1);
  free(out);
  /* Inline, any key, any case of the command name. */
  out = fx_str(f, "get anything\r\n");
  assert_int_equal(ids_in(out, ids + 1, 3), 1);
  assert_increasing_machine7(f, ids, 2);
  assert_int_equal(f->n.stats->proto_requests[SF_PROTO_REDIS], 2);
  assert_int_equal(f->n.stats->ids_issued, 2);
  assert_false(f->proto->closing(f->c));
  free(out);
  fx_free(f);
}

static void test_batches(void **state) {
  proto_fx *f = fx_new(&sf__proto_redis, 10000);
  uint64_t ids[16];
  char *out = fx_str(f, "MGET id id id\r\n*2\r\n$3\r\nGET\r\n$5\r\nids:5\r\n");
  (void)state;
  assert_memory_equal(out, "*3\r\n", 4);
  assert_non_null(strstr(out, "*5\r\n"));
  assert_int_equal(ids_in(out, ids, 16), 8);
  assert_increasing_machine7(f, ids, 8);
  free(out);
  out = fx_str(f, "GET ids:10000\r\n");
  assert_memory_equal(out, "*10000\r\n", 8);
  assert_int_equal(fx_count(out, "$"), 10000);
  free(out);
  fx_free(f);
}

static void test_batch_errors(void **state) {
  static const char *const bad[] = {"GET ids:0\r\n", "GET ids:\r\n",
                                    "GET ids:10001\r\n", "GET ids:5x\r\n",
                                    "GET ids:99999999999999999999999\r\n"};
  proto_fx *f = fx_new(&sf__proto_redis, 10000);
  char *out;
  (void)state;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    out = fx_str(f, bad[i]);
    assert_non_null(strstr(out, "-ERR GET ids:<n> takes a count n in 1..10000 "
                                "(MAX_BATCH), got '"));
    assert_int_equal(fx_count(out, "\r\n"), 1);
    free(out);
  }
  fx_reconnect(f);
  out = fx_str(f, "*3\r\n$4\r\nMGET\r\n$2\r\nid\r\n$2\r\nid\r\n");
  assert_memory_equal(out, "*2\r\n", 4);
  free(out);
  f->n.cfg.max_batch = 2;
  out = fx_str(f, "MGET a b c\r\n");
  assert_string_equal(out, "-ERR MGET of 3 keys, at most 2 (MAX_BATCH)\r\n");
  free(out);
  assert_int_equal(f->n.stats->ids_issued, 2);
  fx_free(f);
}

/* The same pipelined bytes in one read and one byte at a time give the
 * same number of answers, in order. */
static void test_pipelined_and_cut_anywhere(void **state) {
  const char cmd[] = "*2\r\n$3\r\nGET\r\n$2\r\nid\r\nPING\r\n";
  char *in = malloc(64 * (sizeof cmd - 1) + 1), *out;
  uint64_t ids[200];
  size_t n;
  (void)state;
  for (size_t chunk = 0; chunk <= 7; chunk += 1) {
    proto_fx *f = fx_new(&sf__proto_redis, 10000);
    in[0] = 0;
    for (int i = 0; i < 64; i++)
      strcat(in, cmd);
    out = fx_feed(f, in, strlen(in), chunk, NULL);
    n = ids_in(out, ids, 200);
    assert_int_equal(n, 64);
    assert_increasing_machine7(f, ids, n);
    assert_int_equal(fx_count(out, "+PONG\r\n"), 64);
    free(out);
    fx_free(f);
  }
  free(in);
}

/* digits_to_hash replaces each run of digits in s by one '#', so that
 * answers holding different IDs compare equal. */
static void digits_to_hash(char *s) {
  char *d = s;
  for (const char *p = s; *p;) {
    if (*p >= '0' && *p <= '9') {
      while (*p >= '0' && *p <= '9')
        p++;
      *d++ = '#';
    } else {
      *d++ = *p++;
    }
  }
  *d = 0;
}

/* A whole command in one read takes resp.c's one-pass path; one byte at a
 * time takes the state machine. Both must answer every input alike: the
 * edges of the one-pass path (4 and 5 arguments, 64 and 65 argument
 * bytes, 9- and 10-digit lengths, empty arguments, leading zeros) and
 * every way a command can be broken. */
static void test_one_pass_agrees_with_state_machine(void **state) {
  static char big[200];
  static const char *const cases[] = {
      "*2\r\n$3\r\nGET\r\n$2\r\nid\r\n",
      "*2\r\n$03\r\nGET\r\n$000000002\r\nid\r\n",
      "*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
      "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nping\r\n",
      "*2\r\n$4\r\nECHO\r\n$60\r\n"
      "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij\r\n",
      "*2\r\n$4\r\nECHO\r\n$61\r\n"
      "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijk\r\n",
      "*4\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n",
      "*5\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n",
      "*2\r\n$4\r\nECHO\r\n$0000000001\r\nx\r\n",
      "*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n",
      "*2\r\n$3\r\nGET\r\n$2\r\nidX\r\n",
      "*2\r\n$3\r\nGET\r\n$2\r\nid\rX",
      "*2\r\n$3\r\nGET\r\n$-1\r\n",
      "*2\r\n$3\r\nGET\r\nX2\r\nid\r\n",
      "*2\r\n$3\r\nGET\r\n$2\rXid\r\n",
      "*2\rX$3\r\nGET\r\n",
      "*02\r\n$3\r\nGET\r\n$2\r\nid\r\n",
      "*1\r\n$3\r\nGET\r\n",
      "*3\r\n$3\r\nGET\r\n$2\r\nid\r\n$2\r\nid\r\n",
      "*1\r\n$7\r\nNOTACMD\r\n",
      "*2\r\n$3\r\nGET\r\n$999999999\r\n",
      "*1025\r\n",
      "*x\r\n",
      "GET id\r\n*2\r\n$3\r\nGET\r\n$2\r\nid\r\nPING\r\n",
      big,
  };
  (void)state;
  /* 65 bytes of one argument, right after an ECHO of 64. */
  snprintf(big, sizeof big,
           "*2\r\n$4\r\nECHO\r\n$64\r\n%064d\r\n"
           "*2\r\n$4\r\nECHO\r\n$65\r\n%065d\r\n",
           7, 8);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    proto_fx *whole = fx_new(&sf__proto_redis, 10000);
    proto_fx *bytes = fx_new(&sf__proto_redis, 10000);
    char *a = fx_feed(whole, cases[i], strlen(cases[i]), 0, NULL);
    char *b = fx_feed(bytes, cases[i], strlen(cases[i]), 1, NULL);
    assert_true(a[0] != 0);
    digits_to_hash(a);
    digits_to_hash(b);
    if (strcmp(a, b) != 0)
      fail_msg("case %zu: in one read -> %s, a byte at a time -> %s", i, a, b);
    assert_int_equal(whole->proto->closing(whole->c),
                     bytes->proto->closing(bytes->c));
    assert_int_equal(whole->n.stats->ids_issued, bytes->n.stats->ids_issued);
    free(a);
    free(b);
    fx_free(whole);
    fx_free(bytes);
  }
}

typedef struct exchange {
  const char *in, *out;
} exchange;

/* What redis-cli, redis-py, Jedis and redis-benchmark send besides GET. */
static void test_server_commands(void **state) {
  static const exchange cases[] = {
      {"PING\r\n", "+PONG\r\n"},
      {"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n", "$2\r\nhi\r\n"},
      {"*2\r\n$4\r\nECHO\r\n$5\r\na\r\nb!\r\n", "$5\r\na\r\nb!\r\n"},
      {"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", "$0\r\n\r\n"},
      {"HELLO 3\r\n", "-NOPROTO this server speaks RESP2 only: use HELLO 2 "
                      "or no HELLO\r\n"},
      {"HELLO x\r\n", "-ERR Protocol version is not an integer or out of "
                      "range\r\n"},
      {"HELLO 2 FOO\r\n", "-ERR Syntax error in HELLO option 'FOO'\r\n"},
      {"CLIENT SETNAME app\r\n", "+OK\r\n"},
      {"CLIENT SETINFO LIB-NAME jedis\r\n", "+OK\r\n"},
      {"CLIENT GETNAME\r\n", "$-1\r\n"},
      {"CLIENT KILL x\r\n", "-ERR unknown subcommand or wrong number of "
                            "arguments for 'KILL'\r\n"},
      {"SELECT 0\r\n", "+OK\r\n"},
      {"SELECT 1\r\n", "-ERR DB index is out of range (only 0)\r\n"},
      {"COMMAND DOCS\r\n", "*0\r\n"},
      {"CONFIG GET save\r\n", "*0\r\n"},
      {"CONFIG SET a b\r\n", "-ERR wrong number of arguments for 'CONFIG' "
                             "command\r\n"},
      {"GET\r\n", "-ERR wrong number of arguments for 'GET' command\r\n"},
      {"GET a b\r\n", "-ERR wrong number of arguments for 'GET' command\r\n"},
      {"SET id 1\r\n", "-ERR unknown command 'SET', with args beginning "
                       "with: 'id' '1' \r\n"},
      /* No way to smuggle a line break into an error reply. */
      {"*2\r\n$4\r\nX\r\nY\r\n$3\r\n\r\n+\r\n",
       "-ERR unknown command 'X??Y', with args beginning with: '??+' \r\n"},
      {"\r\n\n", ""},
      {"*0\r\n*-1\r\n", ""},
  };
  proto_fx *f = fx_new(&sf__proto_redis, 10000);
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *out = fx_str(f, cases[i].in);
    if (strcmp(out, cases[i].out) != 0)
      fail_msg("case %zu: %s -> %s, want %s", i, cases[i].in, out,
               cases[i].out);
    free(out);
  }
  assert_false(f->proto->closing(f->c));
  fx_free(f);
}

static void test_hello_info_quit(void **state) {
  proto_fx *f = fx_new(&sf__proto_redis, 10000);
  char *out = fx_str(f, "HELLO 2 AUTH default pw SETNAME app\r\n");
  (void)state;
  assert_memory_equal(out, "*14\r\n$6\r\nserver\r\n$10\r\nsnowflaked\r\n", 34);
  assert_non_null(strstr(out, "$5\r\nproto\r\n:2\r\n"));
  free(out);
  out = fx_str(f, "INFO\r\n");
  assert_int_equal(out[0], '$');
  assert_non_null(strstr(out, "\r\nmachine_id:7\r\n"));
  assert_non_null(strstr(out, "\r\nredis_commands:2\r\n"));
  free(out);
  out = fx_str(f, "QUIT\r\nPING\r\n");
  assert_string_equal(out, "+OK\r\n");
  assert_true(f->proto->closing(f->c));
  free(out);
  fx_free(f);
}

/* Malformed input: a clear protocol error, then the connection closes. */
static void test_protocol_errors(void **state) {
  static char long_inline[9000];
  static const exchange cases[] = {
      {"*2\r\n$3\r\nGET\r\n$999999999\r\n",
       "-ERR Protocol error: bulk length 999999999 over the 8192-byte limit "
       "of a command\r\n"},
      {"*1\r\n$8190\r\n", ""}, /* a half command: no answer yet */
      {"*1025\r\n", "-ERR Protocol error: 1025 arguments in one command, "
                    "at most 1024\r\n"},
      {"*99999999999\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
      {"*x\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
      {"*1\r\n$-1\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
      {"*1\r\nGET\r\n", "-ERR Protocol error: expected '$', got 'G'\r\n"},
      {"*1\r\n$3\r\nGETX\r\n",
       "-ERR Protocol error: bulk argument longer than its length\r\n"},
      {"*1\r\n$3\r\nGET\rX",
       "-ERR Protocol error: bulk argument not followed by \\r\\n\r\n"},
      {"*\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
      {"*1\r", ""},
      {"*1\rX", "-ERR Protocol error: '\\r' not followed by '\\n'\r\n"},
      {long_inline,
       "-ERR Protocol error: too big inline request (over 8192 bytes)\r\n"},
  };
  (void)state;
  memset(long_inline, 'a', sizeof long_inline - 1);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    proto_fx *f = fx_new(&sf__proto_redis, 10000);
    char *out = fx_str(f, cases[i].in);
    if (strcmp(out, cases[i].out) != 0)
      fail_msg("case %zu: -> %s, want %s", i, out, cases[i].out);
    assert_int_equal(f->proto->closing(f->c), cases[i].out[0] != 0);
    free(out);
    fx_free(f);
  }
}

static void test_cannot_issue(void **state) {
  proto_fx *f = fx_new(&sf__proto_redis, 10000);
  char *out;
  (void)state;
  fx_lose_lease(f);
  out = fx_str(f, "GET id\r\nMGET a b\r\nGET ids:3\r\n");
  assert_int_equal(fx_count(out, "-ERR "), 3);
  assert_int_equal(fx_count(out, "lease"), 3);
  assert_int_equal(fx_count(out, "\r\n"), 3);
  assert_int_equal(f->n.stats->ids_issued, 0);
  assert_false(f->proto->closing(f->c));
  free(out);
  fx_free(f);
}

/* A client that sends without reading: parsing stops while about
 * SF_RESP_OUT_PAUSE bytes wait, so the output stays bounded. */
static void test_output_pauses(void **state) {
  proto_fx *f = fx_new(&sf__proto_redis, 10000);
  const char cmd[] = "GET ids:10000\r\n";
  char in[100 * (sizeof cmd - 1) + 1];
  size_t used, len;
  const char *o;
  (void)state;
  in[0] = 0;
  for (int i = 0; i < 100; i++)
    strcat(in, cmd);
  used = f->proto->feed(f->c, in, strlen(in));
  len = f->proto->output(f->c, &o);
  assert_true(used < strlen(in));
  assert_true(len >= SF_RESP_OUT_PAUSE);
  assert_true(len < SF_RESP_OUT_PAUSE + 300000);
  /* Nothing more is taken until the output is sent. */
  assert_int_equal(f->proto->feed(f->c, in + used, strlen(in) - used), 0);
  f->proto->sent(f->c);
  assert_true(f->proto->feed(f->c, in + used, strlen(in) - used) > 0);
  fx_free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_id),
      cmocka_unit_test(test_batches),
      cmocka_unit_test(test_batch_errors),
      cmocka_unit_test(test_pipelined_and_cut_anywhere),
      cmocka_unit_test(test_one_pass_agrees_with_state_machine),
      cmocka_unit_test(test_server_commands),
      cmocka_unit_test(test_hello_info_quit),
      cmocka_unit_test(test_protocol_errors),
      cmocka_unit_test(test_cannot_issue),
      cmocka_unit_test(test_output_pauses),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
