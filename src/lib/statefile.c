/*
 * statefile.c - the high-water mark file: one line, a unix ms.
 *
 * Each persist writes "<path>.tmp", fsyncs it, renames it over <path> and
 * fsyncs the directory, so after a crash the file holds either the old or
 * the new mark, never a torn one. The generator calls it from its slow path
 * (about twice per persist lead), never per ID.
 */
#include "sf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sf_statefile {
  char *path;
  char *tmp;
  char *dir;
};

void sf_statefile_close(sf_statefile *f) {
  if (f == NULL)
    return;
  free(f->path);
  free(f->tmp);
  free(f->dir);
  free(f);
}

/* Reads the mark from an open file: 0 or SF_ESTATE. Accepts one decimal
 * number with an optional trailing newline, nothing else. */
static int read_mark(int fd, int64_t *mark) {
  char buf[64];
  size_t n = 0;
  for (;;) {
    ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return SF_ESTATE;
    }
    if (r == 0)
      break;
    n += (size_t)r;
    if (n == sizeof buf - 1)
      return SF_ESTATE; /* far too long for a number */
  }
  buf[n] = '\0';
  if (n > 0 && buf[n - 1] == '\n')
    buf[--n] = '\0';
  uint64_t v;
  if (sf_parse_uint(buf, (uint64_t)INT64_MAX, &v) != SF_OK)
    return SF_ESTATE;
  *mark = (int64_t)v;
  return SF_OK;
}

int sf_statefile_open(const char *path, sf_statefile **out,
                      int64_t *mark_unix_ms) {
  if (path == NULL || *path == '\0' || out == NULL || mark_unix_ms == NULL)
    return SF_EINVAL;
  sf_statefile *f = calloc(1, sizeof *f);
  if (f == NULL)
    return SF_ENOMEM;
  size_t len = strlen(path);
  f->path = strdup(path);
  f->tmp = malloc(len + 5);
  f->dir = strdup(path);
  if (f->path == NULL || f->tmp == NULL || f->dir == NULL) {
    sf_statefile_close(f);
    return SF_ENOMEM;
  }
  memcpy(f->tmp, path, len);
  memcpy(f->tmp + len, ".tmp", 5);
  char *slash = strrchr(f->dir, '/');
  if (slash == NULL)
    strcpy(f->dir, ".");
  else if (slash == f->dir)
    slash[1] = '\0'; /* "/file": the root */
  else
    *slash = '\0';

  int rc = SF_OK;
  int64_t mark = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    rc = read_mark(fd, &mark);
    close(fd);
  } else if (errno != ENOENT) {
    rc = SF_ESTATE;
  }
  if (rc == SF_OK && access(f->dir, W_OK | X_OK) != 0)
    rc = SF_ESTATE;
  if (rc != SF_OK) {
    sf_statefile_close(f);
    return rc;
  }
  *mark_unix_ms = mark;
  *out = f;
  return SF_OK;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int sf_statefile_persist(void *ctx, int64_t mark_unix_ms) {
  sf_statefile *f = ctx;
  if (f == NULL || mark_unix_ms < 0)
    return SF_EINVAL;
  char line[32];
  int n = snprintf(line, sizeof line, "%lld\n", (long long)mark_unix_ms);
  int fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return SF_ESTATE;
  if (write_all(fd, line, (size_t)n) != 0 || fsync(fd) != 0) {
    close(fd);
    unlink(f->tmp);
    return SF_ESTATE;
  }
  if (close(fd) != 0 || rename(f->tmp, f->path) != 0) {
    unlink(f->tmp);
    return SF_ESTATE;
  }
  int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return SF_ESTATE;
  int rc = fsync(dfd) == 0 ? SF_OK : SF_ESTATE;
  close(dfd);
  return rc;
}
