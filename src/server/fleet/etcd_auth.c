/*
 * etcd_auth.c - who the node is to etcd: the TLS and auth settings, read
 * and checked at start; the body of /v3/auth/authenticate and the reading
 * of its reply; when a token must be fetched again; and what to add to
 * etcd's words when it refuses us. No I/O but the settings' files: the
 * transport (etcd_http.c) sends the requests.
 *
 * The password is never written anywhere but into the authenticate
 * request's body (wiped after use); the token only into the Authorization
 * header. Neither appears in a message: etcd's refusals do not echo them.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd.h"
#include "etcd_tls.h"

#define PASSWORD_MAX 1023               /* bytes, as ETCD_PASSWORD */
#define PASSWORD_BUF (PASSWORD_MAX + 3) /* and "\r\n\0" */

/* The credentials every client uses; user NULL: no auth. Written by
 * sf__etcd_security_setup at start only. */
static struct { char *user, *password, *password_file; } creds;

/* What etcd says when a token must be fetched (again). */
static const char *const token_gone[] = {
    "invalid auth token",            /* expired, or etcd restarted */
    "revision of auth store is old", /* users or roles changed */
    "user name is empty",            /* auth turned on since we looked */
};

/* What the node adds to etcd's words when etcd refuses a request. */
static const struct {
  const char *says, *hint;
} hints[] = {
    {"permission denied",
     " (ETCD_USERNAME's role needs readwrite on ETCD_PREFIX: etcdctl role "
     "grant-permission ROLE --prefix=true readwrite PREFIX)"},
    {"user name is empty",
     " (etcd has auth enabled: set ETCD_USERNAME and ETCD_PASSWORD)"},
    {"authentication failed",
     " (check ETCD_USERNAME and ETCD_PASSWORD or ETCD_PASSWORD_FILE)"},
    {"CommonName of client",
     " (with auth enabled, etcd's JSON gateway refuses a client certificate "
     "with a CommonName: issue ETCD_CERT without CN)"},
    {"HTTP request to an HTTPS server", " (use https:// in ETCD_ENDPOINTS)"},
};

const char *sf__etcd_hint(const char *said) {
  for (size_t i = 0; said && i < sizeof hints / sizeof *hints; i++)
    if (strstr(said, hints[i].says))
      return hints[i].hint;
  return "";
}

bool sf__etcd_auth_on(void) {
  return creds.user != NULL;
}

bool sf__etcd_auth_token_gone(int status, const char *body) {
  for (size_t i = 0; body && i < sizeof token_gone / sizeof *token_gone; i++)
    if (strstr(body, token_gone[i]))
      return true;
  return status == 401;
}

/* read_secret reads a password file into buf (PASSWORD_BUF bytes; the
 * line end at its end dropped): 0, or -1 with err. */
static int read_secret(const char *path, char *buf, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, PASSWORD_BUF - 1, f) : 0;
  if (!f || ferror(f)) {
    snprintf(err, errlen, "ETCD_PASSWORD_FILE: cannot read \"%s\": %s", path,
             strerror(errno));
    if (f)
      fclose(f);
    return -1;
  }
  bool longer = fgetc(f) != EOF;
  fclose(f);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    n--;
  buf[n] = '\0';
  if (n == 0 || n > PASSWORD_MAX || longer || strlen(buf) != n) {
    snprintf(err, errlen,
             "ETCD_PASSWORD_FILE: \"%s\" must hold one password of 1 to %d "
             "bytes",
             path, PASSWORD_MAX);
    return -1;
  }
  return 0;
}

int sf__etcd_auth_body(char **body, char *err, size_t errlen) {
  char pw[PASSWORD_BUF];
  *body = NULL;
  if (creds.password_file &&
      read_secret(creds.password_file, pw, err, errlen) != 0)
    return -1;
  json_t *j = json_pack("{s:s,s:s}", "name", creds.user, "password",
                        creds.password_file ? pw : creds.password);
  *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  explicit_bzero(pw, sizeof pw);
  if (!*body) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  return 0;
}

int sf__etcd_auth_reply(int status, const char *text, char **token, char *err,
                        size_t errlen) {
  json_t *reply = json_loads(text ? text : "", 0, NULL);
  const char *tok = json_string_value(json_object_get(reply, "token"));
  const char *said = json_string_value(json_object_get(reply, "message"));
  int rc = SF_ETCD_OK;
  *token = NULL;
  if (!said && !reply) /* not JSON: the gateway's own plain-text refusals */
    said = text && *text ? text : "no answer";
  if (status == 200 && tok && *tok) {
    *token = strdup(tok);
  } else if (said && strstr(said, "authentication is not enabled")) {
    *token = strdup(""); /* requests go without a token */
  } else {
    snprintf(err, errlen, "etcd refused user \"%s\": HTTP %d: %.200s%s",
             creds.user, status, said ? said : "no token in the answer",
             sf__etcd_hint(said));
    rc = status >= 400 && status < 500 ? SF_ETCD_REFUSED : SF_ETCD_UNREACHABLE;
  }
  json_decref(reply);
  if (rc == SF_ETCD_OK && !*token) {
    snprintf(err, errlen, "out of memory");
    rc = SF_ETCD_UNREACHABLE;
  }
  return rc;
}

int sf__etcd_security_setup(const sf_etcd_security *s, const char *endpoints,
                            char *err, size_t errlen) {
  char pw[PASSWORD_BUF];
  sf__etcd_security_teardown();
  if (endpoints && strstr(endpoints, "https://") &&
      sf__etcd_tls_setup(s->cacert, s->cert, s->key, err, errlen) != 0)
    return -1;
  if (!s->username || !*s->username)
    return 0;
  bool file = s->password_file && *s->password_file;
  if (file && read_secret(s->password_file, pw, err, errlen) != 0)
    return -1;
  explicit_bzero(pw, sizeof pw);
  if (!file && (!s->password || !*s->password)) {
    snprintf(err, errlen,
             "ETCD_USERNAME needs ETCD_PASSWORD or ETCD_PASSWORD_FILE");
    return -1;
  }
  creds.user = strdup(s->username);
  creds.password = strdup(file ? "" : s->password);
  creds.password_file = file ? strdup(s->password_file) : NULL;
  if (!creds.user || !creds.password || (file && !creds.password_file)) {
    sf__etcd_security_teardown();
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  return 0;
}

void sf__etcd_security_teardown(void) {
  if (creds.password)
    explicit_bzero(creds.password, strlen(creds.password));
  free(creds.user);
  free(creds.password);
  free(creds.password_file);
  memset(&creds, 0, sizeof creds);
  sf__etcd_tls_teardown();
}
