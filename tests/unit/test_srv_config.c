/*
 * test_srv_config.c - snowflaked's configuration parser: defaults, flags
 * over the environment, and one error line per bad value.
 */
#include "sf_test.h"

#include <string.h>

#include "config.h"

#define NOW_MS INT64_C(1767225600000) /* 2026-01-01 */

static int parse(char *const *argv, char *const *envp, const char *host,
                 sf_srv_config *c, char *err) {
  sf_config_input in;
  int argc = 0;
  while (argv && argv[argc])
    argc++;
  memset(&in, 0, sizeof in);
  in.argc = argc;
  in.argv = argv;
  in.envp = envp;
  in.hostname = host;
  in.ncpus = 3;
  in.now_ms = NOW_MS;
  in.with_etcd = 1;
  err[0] = 0;
  return sf__config_parse(&in, c, err, 256);
}

static void test_defaults(void **state) {
  char *argv[] = {"snowflaked", NULL};
  char *envp[] = {"MACHINE_ID=5", "PATH=/bin", NULL};
  sf_srv_config c;
  char err[256];
  (void)state;
  assert_int_equal(parse(argv, envp, "h", &c, err), 0);
  assert_int_equal(c.action, SF_ACTION_RUN);
  assert_int_equal(c.machine_mode, SF_MID_FIXED);
  assert_int_equal(c.machine_id, 5);
  assert_int_equal(c.port, 8000);
  assert_string_equal(c.bind, "0.0.0.0");
  assert_int_equal(c.threads, 3);
  assert_int_equal(c.epoch_ms, SF_DEFAULT_EPOCH_MS);
  assert_int_equal(c.clock_tolerance_ms, 10);
  assert_int_equal(c.clock_wall, 0);
  assert_int_equal(c.max_batch, 10000);
  assert_int_equal(c.idle_timeout_ms, 30000);
  assert_int_equal(c.max_connections, 10000);
  assert_string_equal(c.state_file, "");
  assert_string_equal(c.etcd_prefix, "/snowflake/machines/");
  assert_int_equal(c.etcd_lease_ttl, 10);
}

static void test_flags_win(void **state) {
  char *argv[] = {"snowflaked",
                  "--port",
                  "0",
                  "--machine-id=9",
                  "--bind",
                  "[::1]",
                  "--clock=wall",
                  "--threads",
                  "1",
                  NULL};
  char *envp[] = {"MACHINE_ID=5", "PORT=1234", "THREADS=4",
                  "EPOCH=2020-01-01T00:00:00Z", NULL};
  sf_srv_config c;
  char err[256];
  (void)state;
  assert_int_equal(parse(argv, envp, "h", &c, err), 0);
  assert_int_equal(c.machine_id, 9);
  assert_int_equal(c.port, 0);
  assert_string_equal(c.bind, "::1");
  assert_true(c.bind_v6);
  assert_int_equal(c.clock_wall, 1);
  assert_int_equal(c.threads, 1);
  assert_int_equal(c.epoch_ms, INT64_C(1577836800000));
}

static void test_ordinal(void **state) {
  char *argv[] = {"snowflaked", NULL};
  char *envp[] = {"MACHINE_ID=ordinal", "MACHINE_ID_OFFSET=100", NULL};
  sf_srv_config c;
  char err[256];
  (void)state;
  assert_int_equal(parse(argv, envp, "snowflake-7", &c, err), 0);
  assert_int_equal(c.machine_mode, SF_MID_ORDINAL);
  assert_int_equal(c.machine_id, 107);
  assert_int_equal(parse(argv, envp, "snowflake", &c, err), -1);
  assert_non_null(strstr(err, "ordinal"));
  assert_non_null(strstr(err, "\"snowflake\""));
  assert_int_equal(parse(argv, envp, "web-1000", &c, err), -1);
  assert_non_null(strstr(err, "0..1023"));
}

static void test_actions_need_no_machine_id(void **state) {
  char *h[] = {"snowflaked", "--help", NULL};
  char *v[] = {"snowflaked", "--version", NULL};
  char *hc[] = {"snowflaked", "--healthcheck", "--port", "9", NULL};
  char *envp[] = {NULL};
  sf_srv_config c;
  char err[256];
  (void)state;
  assert_int_equal(parse(h, envp, "h", &c, err), 0);
  assert_int_equal(c.action, SF_ACTION_HELP);
  assert_int_equal(parse(v, envp, "h", &c, err), 0);
  assert_int_equal(c.action, SF_ACTION_VERSION);
  assert_int_equal(parse(hc, envp, "h", &c, err), 0);
  assert_int_equal(c.action, SF_ACTION_HEALTHCHECK);
  assert_int_equal(c.port, 9);
  assert_non_null(strstr(sf__config_usage(), "MAX_CONNECTIONS"));
}

typedef struct bad {
  const char *env;  /* one NAME=value besides MACHINE_ID=1 */
  const char *want; /* the whole error line */
} bad;

static void test_errors(void **state) {
  static const bad cases[] = {
      {"MACHINE_ID=x", "MACHINE_ID must be an integer in 0..1023, \"auto\" "
                       "or \"ordinal\" (got \"x\")"},
      {"MACHINE_ID=1024", "MACHINE_ID must be an integer in 0..1023, "
                          "\"auto\" or \"ordinal\" (got \"1024\")"},
      {"PORT=65536", "PORT must be an integer in 0..65535 (got \"65536\")"},
      {"PORT= 80", "PORT must be an integer in 0..65535 (got \" 80\")"},
      {"THREADS=0", "THREADS must be an integer in 1..256 (got \"0\")"},
      {"BIND=::g", "BIND must be a numeric IPv4 or IPv6 address (got "
                   "\"::g\")"},
      {"CLOCK=fast", "CLOCK must be \"monotonic\" or \"wall\" (got "
                     "\"fast\")"},
      {"MAX_BATCH=99999999999999999999", "MAX_BATCH must be an integer in "
                                         "1..1000000 (got "
                                         "\"99999999999999999999\")"},
      {"EPOCH=2030-01-01T00:00:00Z",
       "EPOCH must be a past UTC time YYYY-MM-DDTHH:MM:SS[.mmm]Z or unix ms "
       "(got \"2030-01-01T00:00:00Z\")"},
      {"MACHINE_ID=auto", "ETCD_ENDPOINTS is required with MACHINE_ID=auto: "
                          "http://host:2379[,http://...] (got \"\")"},
  };
  sf_srv_config c;
  char err[256];
  char *argv[] = {"snowflaked", NULL};
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *envp[] = {(char *)cases[i].env, "MACHINE_ID=1", NULL};
    assert_int_equal(parse(argv, envp, "h", &c, err), -1);
    assert_string_equal(err, cases[i].want);
  }
}

static void test_flag_errors_name_the_flag(void **state) {
  char *a1[] = {"snowflaked", "--port=x", NULL};
  char *a2[] = {"snowflaked", "--nope", NULL};
  char *a3[] = {"snowflaked", "--port", NULL};
  char *envp[] = {"MACHINE_ID=1", NULL};
  sf_srv_config c;
  char err[256];
  (void)state;
  assert_int_equal(parse(a1, envp, "h", &c, err), -1);
  assert_string_equal(err, "--port must be an integer in 0..65535 (got \"x\")");
  assert_int_equal(parse(a2, envp, "h", &c, err), -1);
  assert_string_equal(err, "unknown option \"--nope\" (see --help)");
  assert_int_equal(parse(a3, envp, "h", &c, err), -1);
  assert_non_null(strstr(err, "--port needs a value"));
}

static void test_auto_without_etcd(void **state) {
  char *argv[] = {"snowflaked", NULL};
  char *envp[] = {"MACHINE_ID=auto", "ETCD_ENDPOINTS=http://e:2379", NULL};
  sf_config_input in;
  sf_srv_config c;
  char err[256];
  (void)state;
  memset(&in, 0, sizeof in);
  in.argc = 1;
  in.argv = argv;
  in.envp = envp;
  in.now_ms = NOW_MS;
  in.with_etcd = 0;
  assert_int_equal(sf__config_parse(&in, &c, err, sizeof err), -1);
  assert_non_null(strstr(err, "not built in"));
  in.with_etcd = 1;
  assert_int_equal(sf__config_parse(&in, &c, err, sizeof err), 0);
  assert_int_equal(c.machine_mode, SF_MID_AUTO);
  assert_string_equal(c.etcd_endpoints, "http://e:2379");
}

/* The TLS and auth settings against each other and the endpoints, in
 * MACHINE_ID=auto only; the message names the setting (or its flag). */
static void test_etcd_security_settings(void **state) {
  static const struct {
    const char *env[3], *want;
  } cases[] = {
      {{"ETCD_CERT=c.pem"}, "ETCD_CERT needs ETCD_KEY"},
      {{"ETCD_KEY=k.pem"}, "ETCD_KEY needs ETCD_CERT"},
      {{"ETCD_ENDPOINTS=http://e:2379", "ETCD_CACERT=ca.pem"},
       "ETCD_CACERT needs an https:// endpoint in ETCD_ENDPOINTS"},
      {{"ETCD_ENDPOINTS=http://e:2379", "ETCD_CERT=c.pem", "ETCD_KEY=k.pem"},
       "ETCD_CERT needs an https:// endpoint in ETCD_ENDPOINTS"},
      {{"ETCD_ENDPOINTS=https://e:2379,http://f:2379"},
       "ETCD_ENDPOINTS mixes http:// and https:// endpoints (the password "
       "and token would cross the plain ones; got "
       "\"https://e:2379,http://f:2379\")"},
      {{"ETCD_USERNAME=sf", "ETCD_PASSWORD=x", "ETCD_PASSWORD_FILE=/pw"},
       "ETCD_PASSWORD needs ETCD_PASSWORD_FILE unset (one of them)"},
      {{"ETCD_PASSWORD=x"}, "ETCD_PASSWORD needs ETCD_USERNAME"},
      {{"ETCD_PASSWORD_FILE=/pw"}, "ETCD_PASSWORD_FILE needs ETCD_USERNAME"},
      {{"ETCD_USERNAME=sf"},
       "ETCD_USERNAME needs ETCD_PASSWORD or ETCD_PASSWORD_FILE"},
      /* good ones */
      {{"ETCD_CACERT=ca.pem", "ETCD_CERT=c.pem", "ETCD_KEY=k.pem"}, ""},
      {{"ETCD_USERNAME=sf", "ETCD_PASSWORD_FILE=/pw"}, ""},
      {{"ETCD_ENDPOINTS=http://e:2379", "ETCD_USERNAME=sf", "ETCD_PASSWORD=x"},
       ""},
  };
  sf_srv_config c;
  char err[256];
  char *argv[] = {"snowflaked", NULL};
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *envp[6] = {NULL};
    size_t n = 0;
    for (size_t k = 0; k < 3 && cases[i].env[k]; k++)
      envp[n++] = (char *)cases[i].env[k];
    envp[n++] = "ETCD_ENDPOINTS=https://e:2379";
    envp[n++] = "MACHINE_ID=auto";
    int rc = parse(argv, envp, "h", &c, err);
    assert_string_equal(err, cases[i].want);
    assert_int_equal(rc, cases[i].want[0] ? -1 : 0);
    /* With a fixed machine id, the etcd settings are not used. */
    envp[n - 1] = "MACHINE_ID=3";
    assert_int_equal(parse(argv, envp, "h", &c, err), 0);
  }
  /* A flag is named as given. */
  char *a1[] = {"snowflaked", "--etcd-cert", "c.pem", NULL};
  char *e1[] = {"MACHINE_ID=auto", "ETCD_ENDPOINTS=https://e", NULL};
  assert_int_equal(parse(a1, e1, "h", &c, err), -1);
  assert_string_equal(err, "--etcd-cert needs ETCD_KEY");
  char *a2[] = {"snowflaked", "--etcd-password-file=/run/secrets/pw",
                "--etcd-username=sf", NULL};
  assert_int_equal(parse(a2, e1, "h", &c, err), 0);
  assert_string_equal(c.etcd_username, "sf");
  assert_string_equal(c.etcd_password_file, "/run/secrets/pw");
  assert_string_equal(c.etcd_cacert, "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_flags_win),
      cmocka_unit_test(test_ordinal),
      cmocka_unit_test(test_actions_need_no_machine_id),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_flag_errors_name_the_flag),
      cmocka_unit_test(test_auto_without_etcd),
      cmocka_unit_test(test_etcd_security_settings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
