/*
 * lease_none.c - the lease API of a build without etcd support
 * (WITH_ETCD=0, chosen by the Makefile instead of lease.c and the etcd
 * client): MACHINE_ID=auto is refused at start with a message saying so.
 * The etcd client's settings, which main.c hands over in auto mode only,
 * are taken and ignored.
 */
#include <stdio.h>
#include <string.h>

#include "etcd.h"
#include "lease.h"

struct sf_lease {
  int unused;
};

int sf__lease_start(const sf_lease_config *c, sf_lease **out, char *err,
                    size_t errlen) {
  (void)c;
  *out = NULL;
  snprintf(err, errlen,
           "MACHINE_ID=auto: this build has no etcd support (built with "
           "WITH_ETCD=0; use MACHINE_ID=N or MACHINE_ID=ordinal)");
  return -1;
}

int sf__lease_snapshot(sf_lease *l, sf_lease_snap *s) {
  (void)l;
  memset(s, 0, sizeof *s);
  s->id = -1;
  return -1;
}

void sf__lease_why(sf_lease *l, char *buf, size_t len) {
  (void)l;
  if (len)
    buf[0] = '\0';
}

void sf__lease_kick(sf_lease *l) {
  (void)l;
}

void sf__lease_stats_get(sf_lease *l, sf_lease_stats *o) {
  (void)l;
  memset(o, 0, sizeof *o);
  o->machine_id = -1;
  o->state = SF_LEASE_STOPPED;
}

void sf__lease_stop(sf_lease *l) {
  (void)l;
}

int sf__etcd_security_setup(const sf_etcd_security *s, const char *endpoints,
                            char *err, size_t errlen) {
  (void)s, (void)endpoints, (void)err, (void)errlen;
  return 0;
}

void sf__etcd_security_teardown(void) {}
