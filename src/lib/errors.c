/* errors.c - messages and names of the SF_E* codes, from one X-macro table. */
#include "sf_internal.h"

const char *sf_strerror(int err) {
  switch (err) {
  case SF_OK:
    return "success";
#define SF__ERRNO_MSG(name, msg)                                               \
  case SF_##name:                                                              \
    return msg;
    SF_ERRNO_MAP(SF__ERRNO_MSG)
#undef SF__ERRNO_MSG
  default:
    return "unknown error";
  }
}

const char *sf_err_name(int err) {
  switch (err) {
  case SF_OK:
    return "SF_OK";
#define SF__ERRNO_NAME(name, msg)                                              \
  case SF_##name:                                                              \
    return "SF_" #name;
    SF_ERRNO_MAP(SF__ERRNO_NAME)
#undef SF__ERRNO_NAME
  default:
    return "SF_UNKNOWN";
  }
}
