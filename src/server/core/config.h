/*
 * config.h - snowflaked's configuration: environment variables and flags.
 *
 * Pure: the caller hands in argv, the environment, the host name, the CPU
 * count and the time; sf__config_parse never exits, prints or allocates, so
 * it can be unit tested and fuzzed. Every variable is also a flag of the same
 * meaning (MAX_BATCH is --max-batch); the flag wins.
 */
#ifndef SF_SRV_CONFIG_H
#define SF_SRV_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "snowflake.h"

typedef enum sf_action {
  SF_ACTION_RUN = 0,
  SF_ACTION_HELP,
  SF_ACTION_VERSION,
  SF_ACTION_HEALTHCHECK
} sf_action;

typedef enum sf_mid_mode {
  SF_MID_FIXED = 0, /* MACHINE_ID=<n> */
  SF_MID_AUTO,      /* MACHINE_ID=auto: leased from etcd */
  SF_MID_ORDINAL    /* MACHINE_ID=ordinal: host name's trailing number */
} sf_mid_mode;

#define SF_SRV_BIND_MAX 64
#define SF_SRV_STR_MAX 1024

typedef struct sf_srv_config {
  sf_action action;
  sf_mid_mode machine_mode;
  int machine_id_set;              /* MACHINE_ID was given at all */
  uint64_t machine_id;             /* fixed or ordinal: the id to use */
  uint64_t machine_id_offset;      /* added to the ordinal */
  uint64_t max_machine_id;         /* of the layout */
  uint64_t machine_id_min;         /* MACHINE_ID=auto claims only ids in */
  uint64_t machine_id_max;         /* machine_id_min..machine_id_max */
  int machine_id_range_set;        /* MACHINE_ID_RANGE was given */
  unsigned port;                   /* 0: an ephemeral port */
  int redis_port;                  /* RESP listener: -1 off, 0 ephemeral */
  int memcached_port;              /* memcached listener: the same */
  char bind[SF_SRV_BIND_MAX];      /* numeric IPv4 or IPv6, no brackets */
  int bind_v6;                     /* bind is an IPv6 literal */
  unsigned threads;                /* event loops */
  int64_t epoch_ms;                /* unix ms */
  char state_file[SF_SRV_STR_MAX]; /* "": none */
  int64_t clock_tolerance_ms;
  int clock_wall; /* 0: sf_clock_monotonic, 1: sf_clock_wall */
  unsigned max_batch;
  int64_t idle_timeout_ms;
  unsigned max_connections; /* across all threads */
  char etcd_endpoints[SF_SRV_STR_MAX];
  char etcd_prefix[SF_SRV_STR_MAX];
  int etcd_lease_ttl;
  int64_t etcd_mark_leap_ms; /* 0: one TTL */
  /* TLS and auth to etcd; "": unset */
  char etcd_cacert[SF_SRV_STR_MAX]; /* "": the system's trust store */
  char etcd_cert[SF_SRV_STR_MAX];
  char etcd_key[SF_SRV_STR_MAX];
  char etcd_username[SF_SRV_STR_MAX];
  char etcd_password[SF_SRV_STR_MAX];
  char etcd_password_file[SF_SRV_STR_MAX];
} sf_srv_config;

typedef struct sf_config_input {
  int argc;
  char *const *argv;    /* argv[0] is skipped */
  char *const *envp;    /* NULL-terminated "NAME=value" strings, or NULL */
  const char *hostname; /* for MACHINE_ID=ordinal; NULL: unknown */
  unsigned ncpus;       /* the default THREADS */
  int64_t now_ms;       /* unix ms, to refuse an epoch in the future */
  int with_etcd;        /* etcd support was built in */
} sf_config_input;

/* sf__config_parse fills *c from in: 0, or -1 with one line (no newline, no
 * program name) in err naming the variable or flag, the accepted values and
 * the value given. */
int sf__config_parse(const sf_config_input *in, sf_srv_config *c, char *err,
                     size_t errlen);

/* sf__config_usage returns the --help text. */
const char *sf__config_usage(void);

#endif /* SF_SRV_CONFIG_H */
