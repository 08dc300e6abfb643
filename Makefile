# snowflake-id: libsnowflake, the snowflake CLI and the snowflaked server.
#
#   make              build everything into build/
#   make run          start one node on PORT (8000) with MACHINE_ID (1)
#   make test         unit tests (cmocka) and integration tests (pytest)
#   make SANITIZE=1 test    the same under ASan + UBSan, in build-san/
#   make test-ops     the systemd unit, man pages, alert rules and dashboard
#   make test-conformance   h2spec, grpcurl, grpc-health-probe, gomemcache (Go,
#                     pinned; skipped without Go or its module proxy unless
#                     CONFORMANCE_REQUIRE_GO=1), memcstat, spymemcached
#   make test-systemd-live   the unit under a real systemd (Docker; else SKIPPED)
#   make SANITIZE=thread test-tsan   threaded generator tests under TSan
#   make lint | format | install | uninstall | clean | bench | fuzz | e2e
#   make nemesis [SEED=n] [DURATION=s]   MACHINE_ID=auto under faults (nemesis-ci: short)
#   make deps         install every package the goals above need (as root)
#
# Packages: scripts/deps.sh is the one list of Debian packages, by group.
# `make run`, `make test` and the other goals in DEPS_INSTALL install their
# groups first (as root; otherwise they print the sudo line and stop), then
# run in a fresh make that reads this file with the packages in place. Every
# other goal (make, clean, lint, install, -n ...) installs nothing: it checks
# and stops with the exact apt-get line. To add a library: its -dev package
# to a group in scripts/deps.sh, its pkg-config flags under "Library flags"
# below (the one place pkg-config runs), and those to the link line using it.
# A new goal that needs packages: a DEPS_<goal> line (and DEPS_INSTALL if it
# runs something); never `sh scripts/deps.sh` in a recipe.

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR ?= $(PREFIX)/share/man
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR ?= $(PREFIX)/share/doc/snowflake-id

CC ?= cc
PYTHON ?= /usr/bin/python3
SANITIZE ?= 0
STATIC ?= 0
WITH_ETCD ?= auto
LLHTTP_SRCDIR ?= /usr/share/llhttp
LLHTTP_INCDIR ?= /usr/share/include/llhttp

ifeq ($(SANITIZE),1)
BUILD ?= build-san
SAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else ifeq ($(SANITIZE),thread)
BUILD ?= build-tsan
SAN_FLAGS = -fsanitize=thread -fno-omit-frame-pointer
else
BUILD ?= build
SAN_FLAGS =
endif

OPT ?= -O2
CFLAGS ?= $(OPT) -g
WARN = -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes \
       -Wmissing-prototypes -Wvla -Werror
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(SAN_FLAGS) $(CFLAGS) \
             -Iinclude -MMD -MP
ALL_LDFLAGS = $(SAN_FLAGS) $(LDFLAGS)

# ----------------------------------------------------------------- packages
# DEPS_<goal>: the scripts/deps.sh groups a goal needs. A goal not listed
# needs build (plus test for a file under tests/, fuzz under build-fuzz/);
# the goals in DEPS_NONE need nothing. The goals in DEPS_INSTALL install
# what is missing (the README's run and test, and the goals that run things);
# the rest only check. Never while make reads this file: the install is the
# first step of a make that does nothing else (DEPS_FRONT), and the build
# happens in the fresh make it starts (SF_DEPS_READY=1).
DEPS_INSTALL := run test test-unit test-integration test-ops test-conformance \
                test-tsan bench bench-gen bench-http bench-resp bench-resp-instr bench-h2 bench-h2-instr \
                bench-views bench-etcd-load soak fuzz fuzz-ci nemesis nemesis-ci \
                test-systemd-live
DEPS_NONE := clean uninstall deps e2e
DEPS_test := build test ops
DEPS_test-unit := build test
DEPS_test-integration := build test
DEPS_test-ops := build test ops
DEPS_test-conformance := build test conformance
DEPS_test-tsan := build test
DEPS_lint := build lint
DEPS_format := lint
DEPS_bench := build bench
DEPS_bench-http := build bench
DEPS_bench-resp := build bench
DEPS_bench-h2 := build bench
DEPS_bench-h2-instr := build bench
DEPS_bench-resp-instr := build bench
DEPS_bench-views := build bench
DEPS_bench-etcd-load := build etcd
DEPS_soak := build bench
DEPS_fuzz := build fuzz
DEPS_fuzz-ci := build fuzz
DEPS_fuzz-build := build fuzz
DEPS_nemesis := build test
DEPS_nemesis-ci := build test
DEPS_test-systemd-live := build docker
deps_of = $(if $(filter $(DEPS_NONE),$(1)),,$(or $(DEPS_$(1)),build \
            $(if $(findstring tests/,$(1)),test) $(if $(filter build-fuzz/%,$(1)),fuzz)))
GOALS := $(or $(MAKECMDGOALS),all)
DEPS_GROUPS := $(sort $(foreach g,$(GOALS),$(call deps_of,$(g))))

ifneq ($(filter $(DEPS_INSTALL),$(GOALS)),)
ifndef SF_DEPS_READY
DEPS_FRONT := 1
endif
endif

ifdef DEPS_FRONT
# This make only installs (or prints the sudo line), then starts the make
# that builds: it reads the Makefile again, so pkg-config sees the packages.
.PHONY: $(GOALS)
$(firstword $(GOALS)):
	@sh scripts/deps.sh $(DEPS_GROUPS) || { echo "make: \`make $(GOALS)' needs the" \
	  "packages above (scripts/deps.sh $(DEPS_GROUPS)); install them, then run it again" >&2; exit 1; }
	+@$(MAKE) --no-print-directory SF_DEPS_READY=1 $(MAKECMDGOALS)
$(wordlist 2,$(words $(GOALS)),$(GOALS)): $(firstword $(GOALS))
	@:
else # the make that builds: everything below, to the end of the file

ifneq ($(DEPS_GROUPS),)
DEPS_MISSING := $(shell sh scripts/deps.sh --check $(DEPS_GROUPS) >&2 || echo yes)
endif
ifeq ($(DEPS_MISSING),yes)
$(error `make $(GOALS)' needs the packages above (scripts/deps.sh $(DEPS_GROUPS)); \
  as root, `make deps' installs every group)
endif

# ------------------------------------------------------------ library flags
# The one place pkg-config runs (in the make that builds, after the check).
UV_CFLAGS := $(shell pkg-config --cflags libuv)
ifeq ($(STATIC),1)
# Debian ships the static libuv as libuv_a.a, described by libuv-static.pc.
UV_LIBS := $(shell pkg-config --static --libs libuv-static 2>/dev/null || \
             pkg-config --static --libs libuv)
ALL_LDFLAGS += -static
else
UV_LIBS := $(shell pkg-config --libs libuv)
endif
# HTTP/2 framing, flow control and HPACK (nghttp2); protobuf (protobuf-c).
H2_CFLAGS := $(shell pkg-config --cflags libnghttp2 libprotobuf-c)
H2_LIBS := $(shell pkg-config $(if $(filter 1,$(STATIC)),--static) --libs libnghttp2 libprotobuf-c)
CMOCKA_CFLAGS := $(shell pkg-config --cflags cmocka 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

# etcd support (MACHINE_ID=auto) needs jansson and OpenSSL: the etcd client
# speaks HTTP/1.1 on its own sockets, through OpenSSL for https:// endpoints,
# and parses with llhttp (src/server/fleet/etcd_http.c), so the static build has it
# too (Debian's libssl-dev ships libssl.a and libcrypto.a). WITH_ETCD=0
# builds lease_none.c instead of lease.c and the etcd client.
ifeq ($(WITH_ETCD),auto)
WITH_ETCD := $(shell pkg-config --exists jansson openssl && echo 1 || echo 0)
endif
ETCD_SRC := $(addprefix src/server/fleet/,lease.c lease_claim.c etcd.c \
              etcd_http.c etcd_tls.c etcd_auth.c)
ifeq ($(WITH_ETCD),1)
ETCD_CFLAGS := -DSF_WITH_ETCD=1 $(shell pkg-config --cflags jansson openssl)
ETCD_LIBS := $(shell pkg-config $(if $(filter 1,$(STATIC)),--static) --libs jansson openssl)
ETCD_OFF_SRC := src/server/fleet/lease_none.c
else
ETCD_CFLAGS := -DSF_WITH_ETCD=0
ETCD_LIBS :=
ETCD_OFF_SRC := $(ETCD_SRC)
endif

# ------------------------------------------------------------------ sources
LIB_SRC := $(wildcard src/lib/*.c)
CLI_SRC := $(wildcard src/cli/*.c)
# The server's layers, one folder each (docs/development.md): core (the
# node, the mint, configuration, metrics, main), net (listeners,
# connections, output), http (HTTP/1.x, routes, views), h2 (HTTP/2, gRPC),
# kv (Redis, memcached), fleet (the etcd lease). Headers are found by name
# in every folder, as nginx does it.
SERVER_DIRS := $(sort $(dir $(wildcard src/server/*/*.c src/server/*/*.h)))
ALL_SERVER_SRC := $(wildcard src/server/*/*.c)
SERVER_SRC := $(filter-out $(ETCD_OFF_SRC),$(ALL_SERVER_SRC))
SERVER_INC := $(patsubst %/,-I%,$(SERVER_DIRS))
LLHTTP_SRC := $(LLHTTP_SRCDIR)/llhttp.c $(LLHTTP_SRCDIR)/api.c $(LLHTTP_SRCDIR)/http.c
UNIT_SRC := $(wildcard tests/unit/test_*.c)
# The gRPC messages: C generated by protoc-c at build time into $(GEN).
# (reflection v1alpha is v1 on the wire: served with v1's code; the
# internal descriptor.proto is what reflection reads of a descriptor.)
PROTO_SRC := proto/snowflake/v1/snowflake.proto proto/grpc/health/v1/health.proto \
             proto/grpc/reflection/v1/reflection.proto \
             proto/snowflake/internal/descriptor.proto
# What server reflection serves: these files, compiled by protoc-c into one
# FileDescriptorSet (comments kept) and embedded as a byte array.
REFLECT_SRC := proto/snowflake/v1/snowflake.proto proto/grpc/health/v1/health.proto \
               proto/grpc/reflection/v1/reflection.proto \
               proto/grpc/reflection/v1alpha/reflection.proto
GEN := $(BUILD)/gen
PROTO_C := $(PROTO_SRC:proto/%.proto=$(GEN)/%.pb-c.c)
PROTO_H := $(PROTO_C:.c=.h)
PROTO_OBJ := $(PROTO_SRC:proto/%.proto=$(BUILD)/obj/gen/%.pb-c.o) \
             $(BUILD)/obj/gen/descriptors.o
# The etcd client's and the lease's tests exist only with etcd support.
ifneq ($(WITH_ETCD),1)
UNIT_SRC := $(filter-out tests/unit/test_srv_etcd.c tests/unit/test_srv_lease.c,$(UNIT_SRC))
endif

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/obj/%.o)
# Everything of the server but main(): linked into unit tests and fuzzers.
SERVER_CORE_OBJ := $(filter-out $(BUILD)/obj/src/server/core/main.o,$(SERVER_OBJ)) \
                   $(PROTO_OBJ)
LLHTTP_OBJ := $(BUILD)/obj/llhttp/llhttp.o $(BUILD)/obj/llhttp/api.o \
              $(BUILD)/obj/llhttp/http.o
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

LIB_A := $(BUILD)/libsnowflake.a
LIB_SO := $(BUILD)/libsnowflake.so
CLI := $(BUILD)/snowflake
SERVER := $(BUILD)/snowflaked

SERVER_CFLAGS = $(UV_CFLAGS) -I$(LLHTTP_INCDIR) $(ETCD_CFLAGS) $(H2_CFLAGS) \
                $(SERVER_INC) -I$(GEN)
SERVER_LIBS = $(UV_LIBS) $(H2_LIBS) $(ETCD_LIBS) -lpthread

.PHONY: bench-gen bench-http bench-views bench-resp bench-resp-instr bench-h2 bench-h2-instr bench-etcd-load all run test test-unit test-integration test-ops test-conformance test-tsan lint format \
        install uninstall clean bench fuzz fuzz-ci fuzz-build soak e2e deps nemesis nemesis-ci \
        test-systemd-live

all: $(LIB_A) $(LIB_SO) $(CLI) $(SERVER) $(BUILD)/snowflake.pc

$(BUILD)/obj/src/lib/%.o: src/lib/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -fvisibility=hidden -c $< -o $@

$(BUILD)/obj/src/cli/%.o: src/cli/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/obj/src/server/%.o: src/server/%.c | $(PROTO_H)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SERVER_CFLAGS) -c $< -o $@

# protoc-c writes both files of a .proto in one run.
$(GEN)/%.pb-c.c $(GEN)/%.pb-c.h: proto/%.proto
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) -Iproto $<

# descriptors_c writes $(1), a C array of the FileDescriptorSet of
# $(REFLECT_SRC) (od from coreutils: no xxd needed).
define descriptors_c
	@mkdir -p $(dir $(1))
	protoc-c --descriptor_set_out=$(1:.c=.pb) --include_source_info -Iproto \
	  $(REFLECT_SRC:proto/%=%)
	{ echo '/* $(notdir $(1)): generated by the Makefile from protoc-c'"'"'s'; \
	  echo ' * FileDescriptorSet of $(REFLECT_SRC:proto/%=%). */'; \
	  echo '#include <stddef.h>'; \
	  echo 'const unsigned char sf__grpc_descriptors[] = {'; \
	  od -An -v -tx1 $(1:.c=.pb) | sed 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; \
	  echo 'const size_t sf__grpc_descriptors_len = sizeof sf__grpc_descriptors;'; \
	} > $(1)
endef

$(GEN)/descriptors.c: $(REFLECT_SRC)
	$(call descriptors_c,$@)

# Generated code: not ours to warn about.
$(BUILD)/obj/gen/%.o: $(GEN)/%.c
	@mkdir -p $(@D)
	$(CC) -std=c11 -fPIC $(SAN_FLAGS) $(CFLAGS) -w $(H2_CFLAGS) -I$(GEN) -c $< -o $@

# llhttp is Debian's, compiled from /usr/share/llhttp; its warnings are not
# ours to fix.
$(BUILD)/obj/llhttp/%.o: $(LLHTTP_SRCDIR)/%.c
	@mkdir -p $(@D)
	$(CC) -std=c11 -fPIC $(SAN_FLAGS) $(CFLAGS) -w -I$(LLHTTP_INCDIR) -c $< -o $@

$(LIB_A): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(LIB_SO): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libsnowflake.so.$(firstword $(subst ., ,$(VERSION))) \
	  $(ALL_LDFLAGS) -o $@ $^ -lpthread

$(CLI): $(CLI_OBJ) $(LIB_A)
	$(CC) $(ALL_LDFLAGS) -o $@ $(CLI_OBJ) $(LIB_A) -lpthread

$(SERVER): $(SERVER_OBJ) $(PROTO_OBJ) $(LLHTTP_OBJ) $(LIB_A)
	$(CC) $(ALL_LDFLAGS) -o $@ $(SERVER_OBJ) $(PROTO_OBJ) $(LLHTTP_OBJ) $(LIB_A) $(SERVER_LIBS)

VERSION := $(shell sed -n 's/^\#define SF_VERSION_STRING "\(.*\)"/\1/p' include/snowflake.h)

PC_SED = sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|'

$(BUILD)/snowflake.pc: snowflake.pc.in include/snowflake.h
	@mkdir -p $(@D)
	$(PC_SED) $< > $@

# ------------------------------------------------------------------- tests
# tests/unit/test_srv_*.c test pure server pieces and link the server core;
# the other unit tests need only the library.
$(BUILD)/tests/test_srv_%: tests/unit/test_srv_%.c $(LIB_A) $(SERVER_CORE_OBJ) $(LLHTTP_OBJ)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SERVER_CFLAGS) $(CMOCKA_CFLAGS) -Itests/unit $(ALL_LDFLAGS) \
	  -o $@ $< $(SERVER_CORE_OBJ) $(LLHTTP_OBJ) $(LIB_A) $(CMOCKA_LIBS) $(SERVER_LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(CMOCKA_CFLAGS) -Itests/unit $(ALL_LDFLAGS) \
	  -o $@ $< $(LIB_A) $(CMOCKA_LIBS) -lpthread

# ----------------------------------------------------------------- fuzzing
# libFuzzer targets tests/fuzz/fuzz_<name>.c, built with clang into
# build-fuzz/ from the library, server core and llhttp sources (no gcc
# objects). Corpora: tests/fuzz/corpus/<name>/ (seeds and every crash found,
# so each run replays them first); new inputs go to build-fuzz/work/<name>/.
FUZZ_CC ?= clang
FUZZ_BUILD := build-fuzz
FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=all \
           -fno-omit-frame-pointer
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -g -O1 $(WARN) $(FUZZ_SAN) -Iinclude \
              $(UV_CFLAGS) -I$(LLHTTP_INCDIR) $(ETCD_CFLAGS) $(H2_CFLAGS) \
              $(SERVER_INC) -I$(FUZZ_BUILD)/gen
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_BIN := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_CORE_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o) \
  $(filter-out $(FUZZ_BUILD)/obj/src/server/core/main.o,$(SERVER_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)) \
  $(PROTO_SRC:proto/%.proto=$(FUZZ_BUILD)/obj/gen/%.pb-c.o) \
  $(FUZZ_BUILD)/obj/gen/descriptors.o
FUZZ_LLHTTP_OBJ := $(FUZZ_BUILD)/obj/llhttp/llhttp.o \
  $(FUZZ_BUILD)/obj/llhttp/api.o $(FUZZ_BUILD)/obj/llhttp/http.o
FUZZ_OPTS ?=

$(FUZZ_BUILD)/gen/%.pb-c.c $(FUZZ_BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(FUZZ_BUILD)/gen
	protoc-c --c_out=$(FUZZ_BUILD)/gen -Iproto $<

$(FUZZ_BUILD)/gen/descriptors.c: $(REFLECT_SRC)
	$(call descriptors_c,$@)

$(FUZZ_BUILD)/obj/gen/%.o: $(FUZZ_BUILD)/gen/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) -std=c11 -g -O1 $(FUZZ_SAN) -fsanitize=fuzzer-no-link -w \
	  $(H2_CFLAGS) -I$(FUZZ_BUILD)/gen -c $< -o $@

$(FUZZ_BUILD)/obj/src/%.o: src/%.c | $(PROTO_SRC:proto/%.proto=$(FUZZ_BUILD)/gen/%.pb-c.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/obj/llhttp/%.o: $(LLHTTP_SRCDIR)/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) -std=c11 -g -O1 $(FUZZ_SAN) -fsanitize=fuzzer-no-link -w \
	  -I$(LLHTTP_INCDIR) -c $< -o $@

# An archive, so each fuzzer pulls in only the objects it uses.
$(FUZZ_BUILD)/libfuzzcore.a: $(FUZZ_CORE_OBJ) $(FUZZ_LLHTTP_OBJ)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BUILD)/libfuzzcore.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< \
	  $(FUZZ_BUILD)/libfuzzcore.a $(SERVER_LIBS)

fuzz-build: $(FUZZ_BIN)

# fuzz-ci: each target for FUZZ_SECONDS (60); fuzz: each for 600 s.
fuzz-ci: FUZZ_SECONDS ?= 60
fuzz: FUZZ_SECONDS ?= 600
fuzz fuzz-ci: $(FUZZ_BIN)
	@set -e; for t in $(FUZZ_NAMES); do \
	  echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
	  mkdir -p $(FUZZ_BUILD)/work/$$t $(FUZZ_BUILD)/artifacts/$$t; \
	  ./$(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	    -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
	    -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t/ $(FUZZ_OPTS) \
	    $(FUZZ_BUILD)/work/$$t tests/fuzz/corpus/$$t; \
	done

# The generator benchmark: in-process IDs/s (1 and 2 threads) against the
# layout's limit, ns per ID on a wide-sequence layout, and the CLI's
# `gen -n 4096000` time. Prints numbers; never fails on them.
BENCH_GEN := $(BUILD)/bench/bench_gen
$(BENCH_GEN): bench/bench_gen.c $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LIB_A) -lpthread

BENCH_VIEWS := $(BUILD)/bench/bench_views
$(BENCH_VIEWS): bench/bench_views.c $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LIB_A) -lpthread

# The views: ns per ID of each text form in process (bench_views), then
# /ids?count=10000 through the server in each format against decimal.
bench-views: $(BENCH_VIEWS) $(SERVER)
	./$(BENCH_VIEWS)
	SNOWFLAKED=$(abspath $(SERVER)) sh bench/bench_views.sh

# Every benchmark, one after the other (about 15 minutes).
bench: bench-gen bench-http bench-views bench-resp bench-h2 bench-etcd-load

bench-gen: $(BENCH_GEN) $(CLI)
	./$(BENCH_GEN) --cli ./$(CLI)

# The HTTP benchmark: snowflaked GET /id (THREADS=1) against nginx's constant
# answer, side by side; /ids?count=1000 IDs/s; idle RSS; first /health.
bench-http: $(SERVER)
	SNOWFLAKED=$(abspath $(SERVER)) sh bench/bench_http.sh

# The Redis benchmark: redis-benchmark -c 64 GET id, with -P 16 and without,
# against snowflaked's REDIS_PORT and a real redis-server holding "id".
bench-resp: $(SERVER)
	SNOWFLAKED=$(abspath $(SERVER)) sh bench/bench_resp.sh
# RESP GET: user-space instructions per GET under valgrind's callgrind,
# snowflaked beside redis-server (BASELINE=path: an older build too).
bench-resp-instr: $(SERVER)
	SNOWFLAKED=$(abspath $(SERVER)) sh bench/bench_resp_instr.sh
# HTTP/2: gRPC Next (count 1) against a grpc-go service (bench/grpc-go, built
# with the Go toolchain from the module proxy), /id over h2c against nginx's
# http2 constant, idle RSS; h2load, alternating rounds. BASELINE=path/to/an
# older snowflaked: gRPC Next of this build against that one instead.
bench-h2: $(SERVER)
	SNOWFLAKED=$(abspath $(SERVER)) sh bench/bench_h2.sh

# gRPC Next: user-space instructions per call under valgrind's callgrind,
# the same however busy the machine (BASELINE=path: an older build beside).
bench-h2-instr: $(SERVER)
	SNOWFLAKED=$(abspath $(SERVER)) sh bench/bench_h2_instr.sh

# What one MACHINE_ID=auto node asks of etcd per second, by request kind,
# from etcd's counters (BASELINE=path: an earlier build the same way).
bench-etcd-load: $(SERVER)
	SNOWFLAKED=$(abspath $(SERVER)) sh bench/bench_etcd_load.sh

# The soak: wrk for 60 s at 256 connections on /id, errors and RSS every 5 s
# (not part of make test).
soak: $(SERVER)
	SNOWFLAKED=$(abspath $(SERVER)) sh bench/soak.sh

run: $(SERVER)
	MACHINE_ID=$${MACHINE_ID:-1} PORT=$${PORT:-8000} ./$(SERVER)

# One after the other, so the output ends with pytest's summary.
test:
	$(MAKE) test-unit
	$(MAKE) test-integration
	$(MAKE) test-ops

test-unit: all $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; ./$$t; done

test-integration: all
	SNOWFLAKED=$(abspath $(SERVER)) SNOWFLAKE=$(abspath $(CLI)) SF_SAN_FLAGS="$(SAN_FLAGS)" \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

# What operators use around the binary (deploy/, man/): systemd-analyze
# verify and security, mandoc -T lint, promtool check/test rules, the man
# pages against --help, and every metric the alerts and the dashboard query
# against a running node's /metrics.
test-ops: all
	SNOWFLAKED=$(abspath $(SERVER)) SNOWFLAKE=$(abspath $(CLI)) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/ops

# The nemesis (tests/nemesis/nemesis.py): a three-member etcd, MACHINE_ID=auto
# nodes with few free ids, HTTP/RESP/memcached load and a seeded schedule of
# faults (nodes killed, frozen, restarted with skewed or drifting clocks; the
# etcd leader killed, a member frozen; requests to etcd delayed, duplicated,
# reordered, held until their writer died), then one check over every ID and
# the whole etcd history. Exits 1 naming the folder of kept logs. By hand:
# make nemesis SEED=7 DURATION=600 (SEED unset: a random one, printed; SEEDS=
# 1,2,3 runs several). nemesis-ci, in .ci/run: seeds 1-3, 40 s of faults each
# (about 2.5 minutes).
DURATION ?= 300
NEMESIS = SNOWFLAKED=$(abspath $(SERVER)) $(PYTHON) tests/nemesis/nemesis.py
nemesis: all
	$(NEMESIS) $(if $(SEEDS),--seeds $(SEEDS),$(if $(SEED),--seed $(SEED))) --duration $(DURATION)

nemesis-ci: all
	$(NEMESIS) --seeds 1,2,3 --duration 40

# The tools people reach for first, against the real binary: h2spec (every
# case, and --strict), grpcurl (list, describe, calls, no .proto),
# grpc-health-probe (and a health Watch across a lease lost and back),
# memcstat and memcslap, and the memcached clients gomemcache (Go) and
# spymemcached (Java, compiled by the test). The Go tools are go-installed at
# pinned versions into GO_TOOLS (once per version), the gomemcache client
# (tests/conformance/gomemcache) built there once per version of its
# sources. With no Go toolchain (GO=) they are skipped with a message and
# the rest runs; so is each one whose go install or build fails (no module
# proxy), unless CONFORMANCE_REQUIRE_GO=1 (.ci/run), where either fails.
GO ?= $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go))
GO_TOOLS ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/snowflake-id/go-tools
GO_TOOL_PINS := github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible \
  github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3 \
  github.com/grpc-ecosystem/grpc-health-probe@v0.4.62
GO_CLIENT_DIR := tests/conformance/gomemcache
CONFORMANCE_REQUIRE_GO ?=
CONFORMANCE_TESTS := tests/integration/test_conformance.py \
  tests/integration/test_grpc_reflect.py tests/integration/test_grpc_health.py \
  tests/integration/test_resp_memcache.py tests/integration/test_memcache_clients.py
# go_failed NAME VERB: a go install or build of NAME failed: stop under
# CONFORMANCE_REQUIRE_GO=1, else say SKIPPED and add NAME to the skipped
# list the tests read (SF_GO_SKIPPED: conftest.go_tool).
GO_FAILED = go_failed() { \
  if [ "$(CONFORMANCE_REQUIRE_GO)" = 1 ]; then \
    echo "test-conformance: $$1: go $$2 failed (CONFORMANCE_REQUIRE_GO=1)" >&2; exit 1; \
  fi; \
  echo "SKIPPED: $$1: go $$2 failed (is the Go module proxy reachable?" \
    "GOPROXY=$$("$(GO)" env GOPROXY))"; \
  skipped="$$skipped $$1"; }
test-conformance: all
	@set -e; skipped=""; $(GO_FAILED); \
	if [ -z "$(GO)" ] && [ "$(CONFORMANCE_REQUIRE_GO)" = 1 ]; then \
	  echo "test-conformance: no Go toolchain (CONFORMANCE_REQUIRE_GO=1)" >&2; exit 1; \
	elif [ -z "$(GO)" ]; then \
	  echo "test-conformance: no Go toolchain (GO=): h2spec, grpcurl," \
	    "grpc-health-probe and the gomemcache client are SKIPPED; memcstat," \
	    "spymemcached and the rest run"; \
	else \
	  mkdir -p "$(GO_TOOLS)"; \
	  for pin in $(GO_TOOL_PINS); do \
	    name=$${pin%@*}; name=$${name##*/}; \
	    if [ "$$(cat "$(GO_TOOLS)/$$name.pin" 2>/dev/null)" != "$$pin" ] || \
	       [ ! -x "$(GO_TOOLS)/$$name" ]; then \
	      echo "go install $$pin"; \
	      if GOBIN="$(abspath $(GO_TOOLS))" "$(GO)" install "$$pin"; then \
	        echo "$$pin" > "$(GO_TOOLS)/$$name.pin"; \
	      else go_failed $$name install; fi; \
	    fi; \
	  done; \
	  pin="gomemcache@$$(sed -n 's|^require github.com/bradfitz/gomemcache ||p' \
	    $(GO_CLIENT_DIR)/go.mod) $$(cat $(GO_CLIENT_DIR)/go.mod $(GO_CLIENT_DIR)/go.sum \
	    $(GO_CLIENT_DIR)/*.go | cksum | cut -d' ' -f1)"; \
	  if [ "$$(cat "$(GO_TOOLS)/gomemcache-client.pin" 2>/dev/null)" != "$$pin" ] || \
	     [ ! -x "$(GO_TOOLS)/gomemcache-client" ]; then \
	    echo "go build $(GO_CLIENT_DIR) ($$pin)"; \
	    if (cd $(GO_CLIENT_DIR) && \
	        "$(GO)" build -buildvcs=false -o "$(abspath $(GO_TOOLS))/gomemcache-client" .); then \
	      echo "$$pin" > "$(GO_TOOLS)/gomemcache-client.pin"; \
	    else go_failed gomemcache-client build; fi; \
	  fi; \
	fi; \
	SNOWFLAKED=$(abspath $(SERVER)) SNOWFLAKE=$(abspath $(CLI)) \
	  $(if $(GO),SF_GO_TOOLS="$(abspath $(GO_TOOLS))" SF_GO_SKIPPED="$$skipped") \
	  $(PYTHON) -m pytest -q -p no:cacheprovider -rs $(CONFORMANCE_TESTS)

# The threaded generator tests under ThreadSanitizer. gcc 12's TSan cannot
# map its shadow when the kernel randomizes mmap with more than 28 bits
# (vm.mmap_rnd_bits, "unexpected memory mapping"); then the test runs again
# with ASLR off for that process (setarch -R).
TSAN_RUN = TSAN_OPTIONS="halt_on_error=1 $(TSAN_OPTIONS)"
test-tsan:
	$(MAKE) SANITIZE=thread build-tsan/tests/test_threads
	@set +e; out=$$($(TSAN_RUN) ./build-tsan/tests/test_threads 2>&1); rc=$$?; \
	printf '%s\n' "$$out"; \
	if [ $$rc -ne 0 ] && printf '%s' "$$out" | grep -q 'unexpected memory mapping'; then \
	  echo "test-tsan: retrying with ASLR off (setarch -R; vm.mmap_rnd_bits=$$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null))"; \
	  $(TSAN_RUN) setarch "$$(uname -m)" -R ./build-tsan/tests/test_threads; rc=$$?; \
	fi; exit $$rc

lint: $(SERVER)
	clang-format --dry-run -Werror $(LIB_SRC) $(CLI_SRC) $(ALL_SERVER_SRC) \
	  $(wildcard tests/unit/test_*.c) $(wildcard tests/fuzz/*.c bench/*.c) include/snowflake.h \
	  $(wildcard src/*/*.h src/server/*/*.h tests/unit/*.h tests/fuzz/*.h)
	cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,performance,portability \
	  --inline-suppr --suppress=missingIncludeSystem -Iinclude $(SERVER_INC) \
	  -D__GNUC__ -DSF_WITH_ETCD=1 src tests/unit
	sh scripts/sizes.sh $(wildcard src/*/*.c src/server/*/*.c)
	sh scripts/layers.sh $(SERVER_OBJ)

format:
	clang-format -i $(LIB_SRC) $(CLI_SRC) $(ALL_SERVER_SRC) $(wildcard tests/unit/test_*.c) \
	  $(wildcard tests/fuzz/*.c bench/*.c) include/snowflake.h \
	  $(wildcard src/*/*.h src/server/*/*.h tests/unit/*.h tests/fuzz/*.h)

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
	  $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 include/snowflake.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(LIB_A) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(LIB_SO) $(DESTDIR)$(LIBDIR)/libsnowflake.so.$(VERSION)
	ln -sf libsnowflake.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libsnowflake.so.$(firstword $(subst ., ,$(VERSION)))
	ln -sf libsnowflake.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libsnowflake.so
	$(PC_SED) snowflake.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/snowflake.pc  # this PREFIX, not the build's
	install -m 755 $(CLI) $(SERVER) $(DESTDIR)$(BINDIR)/
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 \
	  $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(DOCDIR)
	install -m 644 man/snowflake.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/snowflaked.8 $(DESTDIR)$(MANDIR)/man8/
	sed 's|^ExecStart=/usr/local/bin/|ExecStart=$(BINDIR)/|' deploy/systemd/snowflaked.service \
	  > $(DESTDIR)$(SYSTEMDUNITDIR)/snowflaked.service  # this BINDIR
	install -m 644 deploy/systemd/snowflaked.env $(DESTDIR)$(DOCDIR)/snowflaked.env.example
	install -d $(DESTDIR)$(DATADIR)/snowflake/proto/snowflake/v1
	install -m 644 proto/snowflake/v1/snowflake.proto \
	  $(DESTDIR)$(DATADIR)/snowflake/proto/snowflake/v1/

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/snowflake.h $(DESTDIR)$(LIBDIR)/libsnowflake.* \
	  $(DESTDIR)$(PKGCONFIGDIR)/snowflake.pc $(DESTDIR)$(BINDIR)/snowflake \
	  $(DESTDIR)$(BINDIR)/snowflaked $(DESTDIR)$(MANDIR)/man1/snowflake.1 \
	  $(DESTDIR)$(MANDIR)/man8/snowflaked.8 $(DESTDIR)$(SYSTEMDUNITDIR)/snowflaked.service \
	  $(DESTDIR)$(DOCDIR)/snowflaked.env.example
	rm -rf $(DESTDIR)$(DATADIR)/snowflake/proto

clean:
	rm -rf build build-san build-tsan build-fuzz build-static

deps:
	sh scripts/deps.sh all

# Docker images and the three-node compose cluster; says SKIPPED (and exits 0)
# when no Docker engine answers.
e2e:
	bash tests/e2e/run.sh

# The unit under a real systemd (PID 1 of a Docker container of
# tests/e2e/systemd.Dockerfile): this build, installed with DESTDIR, copied in
# and run with systemctl (readiness, a bad setting, restarts, stop, etcd
# with TLS and auth through LoadCredential=). SKIPPED without a Docker engine.
SYSTEMD_ROOT = $(abspath $(BUILD))/systemd-root
test-systemd-live: all
	rm -rf $(SYSTEMD_ROOT)
	$(MAKE) --no-print-directory install DESTDIR=$(SYSTEMD_ROOT) PREFIX=/usr/local >/dev/null
	$(PYTHON) tests/e2e/systemd.py $(SYSTEMD_ROOT)

-include $(wildcard $(BUILD)/obj/*/*/*/*.d $(BUILD)/obj/*/*/*.d $(BUILD)/obj/*/*.d)
.SECONDARY: $(PROTO_C) $(PROTO_H) $(GEN)/descriptors.c
-include $(wildcard $(FUZZ_BUILD)/obj/*/*/*/*.d $(FUZZ_BUILD)/obj/*/*/*.d)

endif # DEPS_FRONT
