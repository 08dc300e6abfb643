/*
 * grpc_reflect.c - gRPC server reflection: grpc.reflection.v1 and
 * v1alpha/ServerReflectionInfo (one bidirectional stream, one response per
 * request). v1alpha is v1 on the wire, so both are served with v1's
 * generated code.
 *
 * What it serves is the FileDescriptorSet protoc-c made of proto/ at build
 * time (sf__grpc_descriptors, see the Makefile): the services, each file
 * by name and the file defining a symbol (a service, method, message or
 * enum), with the files it imports. The set is indexed once, on the first
 * request, with protobuf-c and proto/snowflake/internal/descriptor.proto
 * (the fields of descriptor.proto that say which file defines what); each
 * file is sent as the bytes protoc-c wrote.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc_int.h"
#include "snowflake/internal/descriptor.pb-c.h"

#define MAX_FILES 64 /* the files a response may carry: a bit each */

typedef struct symbol {
  char *name; /* fully qualified: "snowflake.v1.Snowflake.Next" */
  unsigned file;
  int message; /* a message type (it may have extension numbers) */
} symbol;

static struct index {
  Snowflake__Internal__FileSet *set;
  Snowflake__Internal__File **files; /* set->n_file of them */
  symbol *syms;
  size_t nsyms, cap;
  char **services;
  size_t nservices;
  int ok;
} ix;

static pthread_once_t ix_once = PTHREAD_ONCE_INIT;

/* add names prefix.name: 0, or -1 when out of memory. */
static int add(const char *prefix, const char *name, unsigned file,
               int message) {
  size_t pl = strlen(prefix), nl = strlen(name);
  char *s = malloc(pl + nl + 2);
  if (!s)
    return -1;
  if (ix.nsyms == ix.cap) {
    size_t cap = ix.cap ? 2 * ix.cap : 64;
    symbol *p = realloc(ix.syms, cap * sizeof *p);
    if (!p) {
      free(s);
      return -1;
    }
    ix.syms = p;
    ix.cap = cap;
  }
  memcpy(s, prefix, pl);
  s[pl] = pl ? '.' : '\0';
  memcpy(s + pl + (pl != 0), name, nl + 1);
  ix.syms[ix.nsyms].name = s;
  ix.syms[ix.nsyms].file = file;
  ix.syms[ix.nsyms].message = message;
  ix.nsyms++;
  return 0;
}

/* add_message adds a message, its nested messages and enums. */
static int add_message(const char *prefix,
                       const Snowflake__Internal__Message *m, unsigned file) {
  const char *full;
  if (add(prefix, m->name, file, 1))
    return -1;
  full = ix.syms[ix.nsyms - 1].name;
  for (size_t i = 0; i < m->n_enum_type; i++)
    if (add(full, m->enum_type[i]->name, file, 0))
      return -1;
  for (size_t i = 0; i < m->n_nested_type; i++)
    if (add_message(full, m->nested_type[i], file)) /* full: its own heap */
      return -1;
  return 0;
}

static int index_file(const Snowflake__Internal__File *f, unsigned k) {
  for (size_t i = 0; i < f->n_service; i++) {
    const Snowflake__Internal__Service *s = f->service[i];
    char *name;
    if (add(f->package, s->name, k, 0))
      return -1;
    name = ix.syms[ix.nsyms - 1].name;
    ix.services[ix.nservices++] = name;
    for (size_t j = 0; j < s->n_method; j++)
      if (add(name, s->method[j]->name, k, 0))
        return -1;
  }
  for (size_t i = 0; i < f->n_enum_type; i++)
    if (add(f->package, f->enum_type[i]->name, k, 0))
      return -1;
  for (size_t i = 0; i < f->n_message_type; i++)
    if (add_message(f->package, f->message_type[i], k))
      return -1;
  return 0;
}

/* build indexes the embedded set; ix.ok stays 0 if it cannot. Kept for
 * the life of the process. */
static void build(void) {
  size_t nsvc = 0;
  ix.set = snowflake__internal__file_set__unpack(NULL, sf__grpc_descriptors_len,
                                                 sf__grpc_descriptors);
  if (!ix.set || ix.set->n_file > MAX_FILES)
    return;
  ix.files = calloc(ix.set->n_file, sizeof *ix.files);
  if (!ix.files)
    return;
  for (size_t k = 0; k < ix.set->n_file; k++) {
    ix.files[k] = snowflake__internal__file__unpack(NULL, ix.set->file[k].len,
                                                    ix.set->file[k].data);
    if (!ix.files[k])
      return;
    nsvc += ix.files[k]->n_service;
  }
  ix.services = calloc(nsvc ? nsvc : 1, sizeof *ix.services);
  if (!ix.services)
    return;
  for (size_t k = 0; k < ix.set->n_file; k++)
    if (index_file(ix.files[k], (unsigned)k))
      return;
  ix.ok = 1;
}

static const symbol *find_symbol(const char *name) {
  for (size_t i = 0; i < ix.nsyms; i++)
    if (strcmp(ix.syms[i].name, name) == 0)
      return &ix.syms[i];
  return NULL;
}

static int find_file(const char *name) {
  for (size_t k = 0; k < ix.set->n_file; k++)
    if (strcmp(ix.files[k]->name, name) == 0)
      return (int)k;
  return -1;
}

/* with_imports adds file k and, before it is sent, what it imports (each
 * file once) to *set. */
static void with_imports(unsigned k, uint64_t *set) {
  if (*set >> k & 1)
    return;
  *set |= UINT64_C(1) << k;
  for (size_t i = 0; i < ix.files[k]->n_dependency; i++) {
    int d = find_file(ix.files[k]->dependency[i]);
    if (d >= 0)
      with_imports((unsigned)d, set);
  }
}

typedef Grpc__Reflection__V1__ServerReflectionRequest request;
typedef Grpc__Reflection__V1__ServerReflectionResponse response;

/* answer starts the response to q: its host and q itself echoed. */
static response answer(request *q) {
  response r = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
  r.valid_host = q->host;
  r.original_request = q;
  return r;
}

/* send_files answers with file k and what it imports. */
static void send_files(sf_grpc_call *c, request *q, unsigned k) {
  response r = answer(q);
  Grpc__Reflection__V1__FileDescriptorResponse fd =
      GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
  ProtobufCBinaryData files[MAX_FILES];
  uint64_t set = 0;
  with_imports(k, &set);
  fd.file_descriptor_proto = files;
  files[fd.n_file_descriptor_proto++] = ix.set->file[k];
  for (unsigned i = 0; i < ix.set->n_file; i++)
    if ((set >> i & 1) && i != k)
      files[fd.n_file_descriptor_proto++] = ix.set->file[i];
  r.message_response_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
  r.file_descriptor_response = &fd;
  sf__grpc_send(c, &r.base);
}

/* send_error answers NOT_FOUND (the status code, in the response: the
 * stream goes on) with what was not found. */
static void send_error(sf_grpc_call *c, request *q, const char *what,
                       const char *name) {
  response r = answer(q);
  Grpc__Reflection__V1__ErrorResponse e =
      GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
  char msg[160];
  snprintf(msg, sizeof msg, "%s not found: %.100s", what, name);
  e.error_code = SF_GRPC_NOT_FOUND;
  e.error_message = msg;
  r.message_response_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
  r.error_response = &e;
  sf__grpc_send(c, &r.base);
}

static void send_services(sf_grpc_call *c, request *q) {
  response r = answer(q);
  Grpc__Reflection__V1__ListServiceResponse list =
      GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
  Grpc__Reflection__V1__ServiceResponse svc[MAX_FILES], *ptrs[MAX_FILES];
  for (size_t i = 0; i < ix.nservices && i < MAX_FILES; i++) {
    svc[i] = (Grpc__Reflection__V1__ServiceResponse)
        GRPC__REFLECTION__V1__SERVICE_RESPONSE__INIT;
    svc[i].name = ix.services[i];
    ptrs[i] = &svc[i];
    list.n_service = i + 1;
  }
  list.service = ptrs;
  r.message_response_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
  r.list_services_response = &list;
  sf__grpc_send(c, &r.base);
}

/* No file here defines an extension: a message type has none. */
static void send_extensions(sf_grpc_call *c, request *q, const char *type) {
  response r = answer(q);
  Grpc__Reflection__V1__ExtensionNumberResponse ext =
      GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
  const symbol *s = find_symbol(type);
  if (!s || !s->message) {
    send_error(c, q, "message type", type);
    return;
  }
  ext.base_type_name = s->name;
  r.message_response_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
  r.all_extension_numbers_response = &ext;
  sf__grpc_send(c, &r.base);
}

static void reflect_msg(sf_grpc_call *c, const uint8_t *m, size_t n) {
  sf_grpc_arena a;
  request *q;
  const symbol *s;
  int k;
  pthread_once(&ix_once, build);
  if (!ix.ok) {
    sf__grpc_end(c, SF_GRPC_INTERNAL, "the reflection data did not load");
    return;
  }
  sf__grpc_arena_init(&a);
  q = grpc__reflection__v1__server_reflection_request__unpack(&a.alloc, n, m);
  if (!q) {
    sf__grpc_end(c, SF_GRPC_INVALID_ARGUMENT,
                 "the request is not a ServerReflectionRequest");
    return;
  }
  switch (q->message_request_case) {
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
    k = find_file(q->file_by_filename);
    if (k >= 0)
      send_files(c, q, (unsigned)k);
    else
      send_error(c, q, "file", q->file_by_filename);
    return;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
    s = find_symbol(q->file_containing_symbol);
    if (s)
      send_files(c, q, s->file);
    else
      send_error(c, q, "symbol", q->file_containing_symbol);
    return;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
    send_error(c, q, "extension of",
               q->file_containing_extension->containing_type);
    return;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
    send_extensions(c, q, q->all_extension_numbers_of_type);
    return;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
    send_services(c, q);
    return;
  default:
    sf__grpc_end(c, SF_GRPC_INVALID_ARGUMENT,
                 "a ServerReflectionRequest names what it asks for");
  }
}

static void reflect_half_close(sf_grpc_call *c) {
  sf__grpc_end(c, SF_GRPC_OK, "%s", "");
}

static void reflect_shutdown(sf_grpc_call *c) {
  sf__grpc_end(c, SF_GRPC_UNAVAILABLE, "the server is shutting down");
}

const sf_grpc_streamer sf__grpc_reflection = {
    .msg = reflect_msg,
    .half_close = reflect_half_close,
    .poll = NULL,
    .shutdown = reflect_shutdown,
};
