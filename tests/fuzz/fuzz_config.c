/*
 * fuzz_config.c - libFuzzer target for snowflaked's configuration parser,
 * sf__config_parse(): flags and environment variables in, a config or one
 * error line out.
 *
 * Input: byte 0 bits 0-2 the number of flags, bit 3 etcd support built in;
 * byte 1 the CPU count; then NUL-separated strings: the host name, the
 * flags, and the rest as "NAME=value" environment entries.
 *
 * Checked beyond ASan/UBSan: the result is 0 or -1; an error is a non-empty
 * NUL-terminated line that fits the buffer and names a setting or option; a
 * config accepted for running has every value inside its documented range
 * and NUL-terminated strings; parsing is deterministic.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

#define MAX_STRINGS 64
/* 2026-01-01T00:00:00Z: a fixed "now" keeps runs reproducible. */
#define NOW_MS INT64_C(1767225600000)

/* What an error may name: every setting, as --help lists them (so the list
 * never drifts from the options table), or how the arguments were off. */
#define MAX_NAMES 64
static char names[MAX_NAMES][32];
static size_t nnames;

static void add_name(const char *n, size_t len) {
  CHECK(nnames < MAX_NAMES && len < sizeof names[0]);
  memcpy(names[nnames], n, len);
  names[nnames++][len] = 0;
}

/* load_names reads the settings off --help: each of their lines starts
 * with two spaces and the variable's name in capitals. */
static void load_names(void) {
  const char *u = sf__config_usage();
  add_name("unknown option", 14);
  add_name("needs a value", 13);
  add_name("--", 2);
  for (const char *l = u; l && *l;
       l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
    size_t n = 0;
    if (l[0] != ' ' || l[1] != ' ')
      continue;
    while (l[2 + n] >= 'A' && l[2 + n] <= 'Z') {
      n++;
      while (l[2 + n] == '_' || (l[2 + n] >= 'A' && l[2 + n] <= 'Z'))
        n++;
      break;
    }
    if (n > 0 && l[2 + n] == ' ')
      add_name(l + 2, n);
  }
  CHECK(nnames > 10);
}

static void check_ok(const sf_srv_config *c, const sf_config_input *in) {
  unsigned char addr[16];
  CHECK(c->action <= SF_ACTION_HEALTHCHECK);
  if (c->action != SF_ACTION_RUN)
    return;
  CHECK(c->machine_id_set);
  CHECK(c->max_machine_id == 1023);
  CHECK(c->machine_mode <= SF_MID_ORDINAL);
  if (c->machine_mode == SF_MID_AUTO) {
    CHECK(in->with_etcd);
    CHECK(c->etcd_endpoints[0] != '\0');
  } else {
    CHECK(c->machine_id <= c->max_machine_id);
  }
  CHECK(c->port <= 65535);
  CHECK(c->threads >= 1 && c->threads <= 256);
  CHECK(c->epoch_ms >= 0 && c->epoch_ms <= in->now_ms);
  CHECK(c->clock_tolerance_ms >= 0 && c->clock_tolerance_ms <= 60000);
  CHECK(c->clock_wall == 0 || c->clock_wall == 1);
  CHECK(c->max_batch >= 1 && c->max_batch <= 1000000);
  CHECK(c->idle_timeout_ms >= 10 && c->idle_timeout_ms <= 86400000);
  CHECK(c->max_connections >= 1 && c->max_connections <= 1000000);
  CHECK(c->etcd_lease_ttl >= 1 && c->etcd_lease_ttl <= 3600);
  CHECK(memchr(c->bind, 0, sizeof c->bind) != NULL);
  CHECK(memchr(c->state_file, 0, sizeof c->state_file) != NULL);
  CHECK(memchr(c->etcd_endpoints, 0, sizeof c->etcd_endpoints) != NULL);
  CHECK(memchr(c->etcd_prefix, 0, sizeof c->etcd_prefix) != NULL);
  CHECK(inet_pton(c->bind_v6 ? AF_INET6 : AF_INET, c->bind, addr) == 1);
}

static void check_err(const char *err, size_t cap) {
  const char *nul = memchr(err, 0, cap);
  int named = 0;
  CHECK(nul != NULL && nul > err);
  if (!nnames)
    load_names();
  for (size_t i = 0; i < nnames; i++)
    if (strstr(err, names[i]))
      named = 1;
  CHECK(named);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf, *strs[MAX_STRINGS + 1];
  char *argv[MAX_STRINGS + 2], *envp[MAX_STRINGS + 1];
  size_t nstr = 0, nflags;
  sf_config_input in;
  static sf_srv_config c1, c2;
  char err1[512], err2[512];
  int r1, r2;

  if (size < 2)
    return 0;
  /* Copy, NUL-terminated, and cut at every NUL. */
  buf = malloc(size - 1);
  CHECK(buf != NULL);
  memcpy(buf, data + 2, size - 2);
  buf[size - 2] = '\0';
  strs[nstr++] = buf;
  for (char *p = buf + strlen(buf) + 1;
       p < buf + size - 2 && nstr < MAX_STRINGS; p += strlen(p) + 1)
    strs[nstr++] = p;
  nflags = data[0] & 7u;
  if (nflags > nstr - 1)
    nflags = nstr - 1;

  argv[0] = "snowflaked";
  for (size_t i = 0; i < nflags; i++)
    argv[1 + i] = strs[1 + i];
  argv[1 + nflags] = NULL;
  size_t ne = 0;
  for (size_t i = 1 + nflags; i < nstr; i++)
    envp[ne++] = strs[i];
  envp[ne] = NULL;

  memset(&in, 0, sizeof in);
  in.argc = (int)(1 + nflags);
  in.argv = argv;
  in.envp = envp;
  in.hostname = strs[0];
  in.ncpus = data[1];
  in.now_ms = NOW_MS;
  in.with_etcd = (data[0] >> 3) & 1;

  memset(err1, 0x5a, sizeof err1);
  r1 = sf__config_parse(&in, &c1, err1, sizeof err1);
  CHECK(r1 == 0 || r1 == -1);
  if (r1 == 0)
    check_ok(&c1, &in);
  else
    check_err(err1, sizeof err1);

  r2 = sf__config_parse(&in, &c2, err2, sizeof err2);
  CHECK(r2 == r1);
  if (r1 == 0)
    CHECK(memcmp(&c1, &c2, sizeof c1) == 0);
  else
    CHECK(strcmp(err1, err2) == 0);
  free(buf);
  return 0;
}
