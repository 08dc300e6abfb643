/*
 * snowflake.h - 64-bit, time-ordered, coordination-free unique IDs.
 *
 * The public API of libsnowflake: the bit layout, the generator, decoding
 * and text encodings. The generator core does no I/O, never logs, never
 * exits and never allocates after sf_gen_new(). The one optional piece that
 * touches the file system (sf_statefile_*) is called from the generator's
 * slow path at most a few times a second, through a callback.
 *
 * Layout of an ID (default widths), most significant bit first:
 *
 *   0 | 41 bits: ms since epoch | 10 bits: machine id | 12 bits: sequence
 *
 * so id = (ms_since_epoch << 22) | (machine << 12) | sequence, exactly the
 * seed's number. The sign bit is always 0: every ID fits in an int64_t.
 *
 * Errors: every function that can fail returns 0 (SF_OK) or a negative SF_E*
 * code; sf_strerror() describes it. Results come out through pointers.
 */
#ifndef SNOWFLAKE_H
#define SNOWFLAKE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SF_VERSION_MAJOR 0
#define SF_VERSION_MINOR 1
#define SF_VERSION_PATCH 0
#define SF_VERSION_STRING "0.1.0"

/* 2024-01-01T00:00:00Z in unix milliseconds: the seed's epoch. */
#define SF_DEFAULT_EPOCH_MS INT64_C(1704067200000)
#define SF_DEFAULT_MACHINE_BITS 10
#define SF_DEFAULT_SEQUENCE_BITS 12
/* A wall clock that steps back by at most this much is waited out. */
#define SF_DEFAULT_TOLERANCE_MS 10
/* How far ahead of the newest ID the high-water mark is written. */
#define SF_DEFAULT_PERSIST_LEAD_MS 1000

/* Bytes needed for any encoded ID plus its NUL (decimal takes 19 digits). */
#define SF_ID_BUFSIZE 24
/* Bytes needed for a UUID "xxxxxxxx-xxxx-7xxx-xxxx-xxxxxxxxxxxx" plus its NUL,
 * and so for any view (sf_view_encode). */
#define SF_UUID_BUFSIZE 37
/* Bytes needed for "YYYY-MM-DDTHH:MM:SS.mmmZ" plus its NUL (years 0..9999). */
#define SF_TIME_BUFSIZE 25

/* X(name, message): the error table; SF_<name> = -(index + 1). */
#define SF_ERRNO_MAP(X)                                                        \
  X(EINVAL, "invalid argument")                                                \
  X(EMACHINE, "machine id out of range for the layout")                        \
  X(EEPOCH, "epoch is in the future or out of range")                          \
  X(EBITS, "bit widths do not fit in 63 bits")                                 \
  X(EOVERFLOW, "timestamp has run out of bits")                                \
  X(ECLOCKBACK, "clock is behind the last issued ID beyond the tolerance")     \
  X(ESTATE, "state file could not be read or written")                         \
  X(EPARSE, "not a valid ID or value")                                         \
  X(ERANGE, "value out of range")                                              \
  X(ENOSPC, "buffer too small")                                                \
  X(ENOMEM, "out of memory")                                                   \
  X(EUUIDVERSION, "not a version 7 UUID with variant 10 (RFC 9562)")           \
  X(EUUIDBITS, "UUID bits past the machine id are not zero: no ID's view")

typedef enum sf_errno {
  SF_OK = 0,
#define SF__ERRNO_ENUM(name, msg) SF__ERRNO_IDX_##name,
  SF_ERRNO_MAP(SF__ERRNO_ENUM)
#undef SF__ERRNO_ENUM
      SF__ERRNO_COUNT
} sf_errno;

/* The negative codes, as the functions return them. */
#define SF_EINVAL (-(SF__ERRNO_IDX_EINVAL))
#define SF_EMACHINE (-(SF__ERRNO_IDX_EMACHINE))
#define SF_EEPOCH (-(SF__ERRNO_IDX_EEPOCH))
#define SF_EBITS (-(SF__ERRNO_IDX_EBITS))
#define SF_EOVERFLOW (-(SF__ERRNO_IDX_EOVERFLOW))
#define SF_ECLOCKBACK (-(SF__ERRNO_IDX_ECLOCKBACK))
#define SF_ESTATE (-(SF__ERRNO_IDX_ESTATE))
#define SF_EPARSE (-(SF__ERRNO_IDX_EPARSE))
#define SF_ERANGE (-(SF__ERRNO_IDX_ERANGE))
#define SF_ENOSPC (-(SF__ERRNO_IDX_ENOSPC))
#define SF_ENOMEM (-(SF__ERRNO_IDX_ENOMEM))
#define SF_EUUIDVERSION (-(SF__ERRNO_IDX_EUUIDVERSION))
#define SF_EUUIDBITS (-(SF__ERRNO_IDX_EUUIDBITS))

/* sf_strerror returns a static message for err ("unknown error" otherwise). */
const char *sf_strerror(int err);
/* sf_err_name returns the static name of err, e.g. "SF_ECLOCKBACK". */
const char *sf_err_name(int err);

/* ---------------------------------------------------------------- layout */

/* A bit layout. The timestamp takes the 63 - machine_bits - sequence_bits
 * bits left; it must keep at least 32 of them. */
typedef struct sf_layout {
  int64_t epoch_ms;       /* unix ms of timestamp 0 */
  unsigned machine_bits;  /* 0..20 */
  unsigned sequence_bits; /* 1..22 */
} sf_layout;

/* sf_layout_default fills *l with the seed's layout. */
void sf_layout_default(sf_layout *l);
/* sf_layout_check returns 0, SF_EBITS for widths that don't fit, or SF_EEPOCH
 * for an epoch after now_ms or before 1970 (now_ms < 0: skip that check). */
int sf_layout_check(const sf_layout *l, int64_t now_ms);
/* The largest machine id, sequence and timestamp (ms since epoch) of *l. */
uint64_t sf_layout_max_machine(const sf_layout *l);
uint64_t sf_layout_max_sequence(const sf_layout *l);
int64_t sf_layout_max_timestamp(const sf_layout *l);
/* sf_layout_end_ms returns the first unix ms the layout cannot stamp (the
 * timestamp runs out there: 2093-09-06T15:47:35.552Z by default). */
int64_t sf_layout_end_ms(const sf_layout *l);
/* sf_layout_max_rate returns the IDs per second one node can issue at most
 * (4,096,000 for the default layout). */
uint64_t sf_layout_max_rate(const sf_layout *l);

/* sf_compose builds the ID for (ms since epoch, machine, sequence): 0,
 * SF_EOVERFLOW for a timestamp out of range, SF_EMACHINE, or SF_ERANGE for a
 * sequence out of range. */
int sf_compose(const sf_layout *l, int64_t timestamp, uint64_t machine,
               uint64_t sequence, uint64_t *id);

/* An ID taken apart. */
typedef struct sf_parts {
  int64_t timestamp;   /* ms since the layout's epoch */
  int64_t unix_ms;     /* timestamp + epoch */
  uint64_t machine_id; /* machine field */
  uint64_t sequence;   /* sequence field */
} sf_parts;

/* sf_decode takes id apart: 0, or SF_ERANGE when the sign bit is set. */
int sf_decode(const sf_layout *l, uint64_t id, sf_parts *out);

/* sf_bounds gives the smallest and largest ID any machine can issue in the
 * millisecond unix_ms (for range queries on ID-keyed tables): 0, or
 * SF_ERANGE when unix_ms is before the epoch or past the last timestamp. */
int sf_bounds(const sf_layout *l, int64_t unix_ms, uint64_t *min_id,
              uint64_t *max_id);

/* sf_format_time writes unix_ms as "2026-01-02T03:04:05.678Z" into buf
 * (SF_TIME_BUFSIZE bytes); returns its length or SF_ERANGE outside years
 * 1970..9999. */
int sf_format_time(int64_t unix_ms, char *buf, size_t len);
/* sf_parse_time reads an epoch: "YYYY-MM-DDTHH:MM:SS[.mmm]Z" or a decimal
 * count of unix ms. Returns 0 or SF_EPARSE. The whole of s is consumed. */
int sf_parse_time(const char *s, int64_t *unix_ms);

/* ------------------------------------------------------------- encodings */

/* The text views of an ID. Every one but decimal has a fixed width (zero
 * padded), so comparing two such strings byte by byte orders them as the
 * IDs; parsing takes them with or without the padding. */
typedef enum sf_format {
  SF_FORMAT_DEC = 0, /* "275238510129057792": no padding, so no text order */
  SF_FORMAT_HEX,     /* 16 lower-case digits, no prefix: "03d1d7f778c01000";
                        parsing also takes upper case */
  SF_FORMAT_BASE62,  /* 11 digits of 0-9A-Za-z (ASCII order) */
  SF_FORMAT_BASE32,  /* 13 Crockford digits 0-9A-Z less I L O U; parsing
                        folds case and reads I/L as 1 and O as 0 */
  SF_FORMAT_UUID     /* RFC 9562 UUIDv7 (sf_uuid_from_id); needs the layout:
                        only sf_view_encode / sf_view_parse take it */
} sf_format;

/* sf_format_from_name maps "dec" "hex" "base62" "base32" "uuid": 0 or
 * SF_EPARSE. */
int sf_format_from_name(const char *name, sf_format *out);
/* sf_format_name returns the static name of f. */
const char *sf_format_name(sf_format f);
/* sf_encode writes id in format f (not SF_FORMAT_UUID) with a NUL into buf;
 * returns the length (without the NUL), SF_ENOSPC, or SF_EINVAL for an
 * unknown format or SF_FORMAT_UUID. */
int sf_encode(uint64_t id, sf_format f, char *buf, size_t len);
/* sf_parse reads exactly len bytes of s as an ID in format f (not
 * SF_FORMAT_UUID: SF_EINVAL): 0, SF_EPARSE (empty, bad digit, sign, space),
 * or SF_ERANGE (above INT64_MAX). Leading zeros are allowed. */
int sf_parse(const char *s, size_t len, sf_format f, uint64_t *id);

/* sf_view_encode is sf_encode for every format, SF_FORMAT_UUID included (its
 * time is the ID's unix ms under layout l): the length, SF_ENOSPC, SF_EINVAL,
 * or SF_ERANGE for an id with the sign bit set, in the UUID view. */
int sf_view_encode(const sf_layout *l, uint64_t id, sf_format f, char *buf,
                   size_t len);
/* sf_view_parse is sf_parse for every format; a UUID gives the ID back as
 * sf_uuid_to_id does and fails as sf_uuid_parse and sf_uuid_to_id do. */
int sf_view_parse(const sf_layout *l, const char *s, size_t len, sf_format f,
                  uint64_t *id);
/* sf_format_guess returns SF_FORMAT_UUID when the len bytes of s have a
 * UUID's shape (36 bytes, hyphens at 8, 13, 18 and 23), else
 * SF_FORMAT_DEC. */
sf_format sf_format_guess(const char *s, size_t len);

/* ------------------------------------------------------------------ UUID */

/*
 * The UUIDv7 view (RFC 9562 section 5.7) of an ID, 128 bits, most
 * significant first:
 *
 *   unix_ts_ms (48) = the ID's unix ms | ver (4) = 7 |
 *   rand_a (12) = the sequence (section 6.2, method 1: a dedicated counter) |
 *   var (2) = 0b10 | rand_b (62) = machine id (10) | 52 zero bits
 *
 * For other widths the sequence then the machine id fill rand_a and rand_b
 * from the top. The zero bits make the view a function of the ID alone and
 * reversible: decoding a UUID gives its ID back, and a UUID whose low bits
 * are not zero is known not to be one of ours. Random bits would add no
 * secrecy: the ID, which the UUID already holds, is guessable by design.
 * UUIDs of one node sort in issue order (time, then sequence); those of
 * two machines differ in the machine bits, so they never collide.
 */

/* sf_uuid_from_id writes id's UUIDv7 view under layout l into uuid: 0, or
 * SF_ERANGE when id has the sign bit set. */
int sf_uuid_from_id(const sf_layout *l, uint64_t id, uint8_t uuid[16]);
/* sf_uuid_to_id gives the ID whose view uuid is: 0, SF_EUUIDVERSION (not
 * version 7 and variant 0b10), SF_EUUIDBITS (bits past the machine id set),
 * or SF_ERANGE (its time is outside the layout's epoch and range). */
int sf_uuid_to_id(const sf_layout *l, const uint8_t uuid[16], uint64_t *id);
/* sf_uuid_format writes uuid as 36 lower-case characters with hyphens and a
 * NUL into buf: returns 36, or SF_ENOSPC when len < SF_UUID_BUFSIZE. */
int sf_uuid_format(const uint8_t uuid[16], char *buf, size_t len);
/* sf_uuid_parse reads exactly len bytes "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
 * (hex digits of either case) into uuid: 0 or SF_EPARSE. Any version. */
int sf_uuid_parse(const char *s, size_t len, uint8_t uuid[16]);

/* sf_parse_uint reads the NUL-terminated s as a decimal integer in 0..max:
 * digits only (no sign, space or prefix). Returns 0, SF_EPARSE (empty or not
 * all digits) or SF_ERANGE (above max). For flags and environment values. */
int sf_parse_uint(const char *s, uint64_t max, uint64_t *out);

/* ------------------------------------------------------------- generator */

/* A clock: the current unix time in nanoseconds. */
typedef int64_t (*sf_clock_fn)(void *ctx);
/* The wall clock, CLOCK_REALTIME: steps with it. */
int64_t sf_clock_wall(void *ctx);
/* The default: the wall time read once per process, advanced by
 * CLOCK_BOOTTIME (monotonic, and counting time suspended). A running process
 * never sees the wall clock step back, and is not left behind by a suspend;
 * it drifts from the wall clock only by what NTP would have stepped. */
int64_t sf_clock_monotonic(void *ctx);

/* Makes the high-water mark durable: called with a unix ms at or above which
 * no ID has been issued yet. Returns 0, or a negative SF_E* code (the
 * generator then issues nothing beyond the old mark). */
typedef int (*sf_persist_fn)(void *ctx, int64_t mark_unix_ms);

typedef struct sf_config {
  sf_layout layout;
  uint64_t machine_id;
  int64_t tolerance_ms; /* a clock behind by more: SF_ECLOCKBACK */
  sf_clock_fn clock;    /* NULL: sf_clock_monotonic */
  void *clock_ctx;
  sf_persist_fn persist; /* NULL: no high-water mark */
  void *persist_ctx;
  int64_t floor_unix_ms;   /* issue no ID at or below this ms (0: none) */
  int64_t persist_lead_ms; /* how far ahead each persisted mark is */
} sf_config;

/* sf_config_init fills *c with the defaults: the seed's layout, machine 0,
 * SF_DEFAULT_TOLERANCE_MS, the monotonic clock, no persistence. */
void sf_config_init(sf_config *c);

typedef struct sf_gen sf_gen; /* opaque, so the .so keeps its ABI */

/* sf_gen_new validates *c and allocates a generator: 0, SF_EBITS, SF_EEPOCH,
 * SF_EMACHINE, SF_EINVAL or SF_ENOMEM. The generator does not keep c. */
int sf_gen_new(const sf_config *c, sf_gen **out);
/* sf_gen_free releases g; NULL is allowed. No call on g may be running. */
void sf_gen_free(sf_gen *g);

/* sf_gen_next issues one ID into *id. Safe from any number of threads at
 * once, lock-free. Each ID is larger than every ID this generator issued
 * before. Returns 0; SF_ECLOCKBACK with *wait_ms (if not NULL) set to how far
 * the clock is behind; SF_EOVERFLOW when the timestamp ran out of bits;
 * SF_ESTATE when the high-water mark could not be persisted. */
int sf_gen_next(sf_gen *g, uint64_t *id, int64_t *wait_ms);
/* sf_gen_next_n issues n increasing IDs into ids[0..n-1], reserving whole
 * runs of sequence numbers per atomic step. Returns as sf_gen_next; on error
 * no ID in ids is valid (the reserved ones are never issued again). */
int sf_gen_next_n(sf_gen *g, uint64_t *ids, size_t n, int64_t *wait_ms);

/* sf_gen_set_machine_id changes the machine id used by later IDs (for ids
 * leased at run time): 0 or SF_EMACHINE. */
int sf_gen_set_machine_id(sf_gen *g, uint64_t machine_id);
uint64_t sf_gen_machine_id(const sf_gen *g);
/* sf_gen_raise_floor makes g issue no ID at or below unix_ms from now on
 * (a floor that is already higher stays): for a machine id taken over from
 * another node that may have issued IDs up to unix_ms. 0 or SF_EINVAL. */
int sf_gen_raise_floor(sf_gen *g, int64_t unix_ms);
/* sf_gen_layout returns the generator's layout. */
const sf_layout *sf_gen_layout(const sf_gen *g);

/* Counters of rare events, for metrics. Read with relaxed atomics. */
typedef struct sf_gen_stats {
  uint64_t clock_back_waits;  /* clock behind within tolerance: waited */
  uint64_t clock_back_errors; /* clock behind beyond tolerance: refused */
  uint64_t sequence_waits;    /* a millisecond's sequence ran out: waited */
  uint64_t persists;          /* high-water marks written */
  uint64_t persist_errors;    /* high-water marks that failed */
  int64_t mark_unix_ms;       /* the persisted high-water mark, 0: none */
  int64_t last_unix_ms;       /* timestamp of the newest ID, as unix ms */
} sf_gen_stats;
void sf_gen_stats_get(const sf_gen *g, sf_gen_stats *out);

/* ------------------------------------------------------------ state file */

/* A high-water mark file: one line with a unix ms. Written as a temporary
 * file, fsync, rename, fsync of the directory. */
typedef struct sf_statefile sf_statefile;

/* sf_statefile_open opens path (created on first persist) and reads its mark
 * into *mark_unix_ms (0 when the file does not exist). Returns 0, SF_ESTATE
 * when it exists but cannot be read or parsed, or when the directory is not
 * writable, or SF_ENOMEM. */
int sf_statefile_open(const char *path, sf_statefile **out,
                      int64_t *mark_unix_ms);
/* sf_statefile_persist is an sf_persist_fn; ctx is the sf_statefile. */
int sf_statefile_persist(void *ctx, int64_t mark_unix_ms);
void sf_statefile_close(sf_statefile *f);

#ifdef __cplusplus
}
#endif
#endif /* SNOWFLAKE_H */
