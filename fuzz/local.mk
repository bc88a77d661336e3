# libFuzzer harnesses. Every harness also builds a replay program that runs
# its saved corpus under `make check` (no clang needed); --enable-fuzzers
# (clang) builds the real fuzzers: fuzz/fuzz_<name> <corpus dir>. The replays
# compile the harnesses with the project's warnings.
FUZZ_CPPFLAGS = -I$(top_srcdir)/include -Iinclude
FUZZ_CFLAGS = $(STRICT_WARN_CFLAGS)
EXTRA_DIST += fuzz/corpus fuzz/README.md

check_PROGRAMS += fuzz/replay_config fuzz/replay_rping fuzz/replay_handshake fuzz/replay_api
TESTS += fuzz/replay_config fuzz/replay_rping fuzz/replay_handshake fuzz/replay_api
VALGRIND_TESTS += fuzz/replay_config fuzz/replay_rping fuzz/replay_handshake fuzz/replay_api
fuzz_replay_config_SOURCES = fuzz/replay.c fuzz/fuzz_config.c
fuzz_replay_config_CPPFLAGS = $(FUZZ_CPPFLAGS) -DCORPUS_DIR='"$(abs_srcdir)/fuzz/corpus/config"'
fuzz_replay_config_CFLAGS = $(FUZZ_CFLAGS)
fuzz_replay_config_LDADD = lib/libupstream-revtun.la
fuzz_replay_rping_SOURCES = fuzz/replay.c fuzz/fuzz_rping.c
fuzz_replay_rping_CPPFLAGS = $(FUZZ_CPPFLAGS) -DCORPUS_DIR='"$(abs_srcdir)/fuzz/corpus/rping"'
fuzz_replay_rping_CFLAGS = $(FUZZ_CFLAGS)
fuzz_replay_rping_LDADD = lib/libupstream-revtun.la
# the public lookup, handoff and introspection API with hostile ids
fuzz_replay_api_SOURCES = fuzz/replay.c fuzz/fuzz_api.c
fuzz_replay_api_CPPFLAGS = $(FUZZ_CPPFLAGS) -DCORPUS_DIR='"$(abs_srcdir)/fuzz/corpus/api"'
fuzz_replay_api_CFLAGS = $(FUZZ_CFLAGS)
fuzz_replay_api_LDADD = lib/libupstream-revtun.la
# host selection: hostile formats and headers through the public API
check_PROGRAMS += fuzz/replay_hostsel
TESTS += fuzz/replay_hostsel
VALGRIND_TESTS += fuzz/replay_hostsel
fuzz_replay_hostsel_SOURCES = fuzz/replay.c fuzz/fuzz_hostsel.c
fuzz_replay_hostsel_CPPFLAGS = $(FUZZ_CPPFLAGS) -DCORPUS_DIR='"$(abs_srcdir)/fuzz/corpus/hostsel"'
fuzz_replay_hostsel_CFLAGS = $(FUZZ_CFLAGS)
fuzz_replay_hostsel_LDADD = lib/libupstream-revtun.la
if ENABLE_FUZZERS
noinst_PROGRAMS += fuzz/fuzz_hostsel
fuzz_fuzz_hostsel_SOURCES = fuzz/fuzz_hostsel.c
fuzz_fuzz_hostsel_CPPFLAGS = $(FUZZ_CPPFLAGS)
fuzz_fuzz_hostsel_CFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_hostsel_LDFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_hostsel_LDADD = lib/libupstream-revtun.la
endif
# the Prometheus exporter with hostile ids, its output through the strict
# parser of the tests
check_PROGRAMS += fuzz/replay_prometheus
TESTS += fuzz/replay_prometheus
VALGRIND_TESTS += fuzz/replay_prometheus
fuzz_replay_prometheus_SOURCES = fuzz/replay.c fuzz/fuzz_prometheus.c tests/prom_parse.h
fuzz_replay_prometheus_CPPFLAGS = $(FUZZ_CPPFLAGS) -I$(top_srcdir)/tests \
	-DCORPUS_DIR='"$(abs_srcdir)/fuzz/corpus/prometheus"'
fuzz_replay_prometheus_CFLAGS = $(FUZZ_CFLAGS)
fuzz_replay_prometheus_LDADD = lib/libupstream-revtun.la
# the handshake parser is internal: its harness links the convenience library
fuzz_replay_handshake_SOURCES = fuzz/replay.c fuzz/fuzz_handshake.c
fuzz_replay_handshake_CPPFLAGS = $(FUZZ_CPPFLAGS) -I$(top_srcdir)/lib \
	-DCORPUS_DIR='"$(abs_srcdir)/fuzz/corpus/handshake"'
fuzz_replay_handshake_CFLAGS = $(FUZZ_CFLAGS)
fuzz_replay_handshake_LDADD = $(LIB_CORE_LIBS)

# the substitution-format engine (parser and renderer); its API is internal,
# so the harness links the convenience library
FUZZ_FORMAT_CPPFLAGS = $(FUZZ_CPPFLAGS) -I$(top_srcdir)/lib -Ilib/proto $(PROTOBUF_C_CFLAGS)
check_PROGRAMS += fuzz/replay_format
TESTS += fuzz/replay_format
VALGRIND_TESTS += fuzz/replay_format
fuzz_replay_format_SOURCES = fuzz/replay.c fuzz/fuzz_format.c
fuzz_replay_format_CPPFLAGS = $(FUZZ_FORMAT_CPPFLAGS) -DCORPUS_DIR='"$(abs_srcdir)/fuzz/corpus/format"'
fuzz_replay_format_CFLAGS = $(FUZZ_CFLAGS)
fuzz_replay_format_LDADD = $(LIB_CORE_LIBS)
if ENABLE_FUZZERS
noinst_PROGRAMS += fuzz/fuzz_format
fuzz_fuzz_format_SOURCES = fuzz/fuzz_format.c
fuzz_fuzz_format_CPPFLAGS = $(FUZZ_FORMAT_CPPFLAGS)
fuzz_fuzz_format_CFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_format_LDFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_format_LDADD = $(LIB_CORE_LIBS)
endif

if ENABLE_FUZZERS
noinst_PROGRAMS += fuzz/fuzz_config fuzz/fuzz_rping fuzz/fuzz_handshake fuzz/fuzz_api
fuzz_fuzz_api_SOURCES = fuzz/fuzz_api.c
fuzz_fuzz_api_CPPFLAGS = $(FUZZ_CPPFLAGS)
fuzz_fuzz_api_CFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_api_LDFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_api_LDADD = lib/libupstream-revtun.la
noinst_PROGRAMS += fuzz/fuzz_prometheus
fuzz_fuzz_prometheus_SOURCES = fuzz/fuzz_prometheus.c
fuzz_fuzz_prometheus_CPPFLAGS = $(FUZZ_CPPFLAGS) -I$(top_srcdir)/tests
fuzz_fuzz_prometheus_CFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_prometheus_LDFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_prometheus_LDADD = lib/libupstream-revtun.la
fuzz_fuzz_handshake_SOURCES = fuzz/fuzz_handshake.c
fuzz_fuzz_handshake_CPPFLAGS = $(FUZZ_CPPFLAGS) -I$(top_srcdir)/lib
fuzz_fuzz_handshake_CFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_handshake_LDFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_handshake_LDADD = $(LIB_CORE_LIBS)
fuzz_fuzz_config_SOURCES = fuzz/fuzz_config.c
fuzz_fuzz_config_CPPFLAGS = $(FUZZ_CPPFLAGS)
fuzz_fuzz_config_CFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_config_LDFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_config_LDADD = lib/libupstream-revtun.la
fuzz_fuzz_rping_SOURCES = fuzz/fuzz_rping.c
fuzz_fuzz_rping_CPPFLAGS = $(FUZZ_CPPFLAGS)
fuzz_fuzz_rping_CFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_rping_LDFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_rping_LDADD = lib/libupstream-revtun.la
endif

# ---- the example programs' HTTP/1 parser (examples/common.c): request and
# response heads, chunked bodies. Its replay needs only libc.
check_PROGRAMS += fuzz/replay_http1
TESTS += fuzz/replay_http1
VALGRIND_TESTS += fuzz/replay_http1
fuzz_replay_http1_SOURCES = fuzz/replay.c fuzz/fuzz_http1.c examples/common.c
fuzz_replay_http1_CPPFLAGS = -I$(top_srcdir)/examples -DCORPUS_DIR='"$(abs_srcdir)/fuzz/corpus/http1"'
fuzz_replay_http1_CFLAGS = $(WARN_CFLAGS)
if ENABLE_FUZZERS
noinst_PROGRAMS += fuzz/fuzz_http1
fuzz_fuzz_http1_SOURCES = fuzz/fuzz_http1.c examples/common.c
fuzz_fuzz_http1_CPPFLAGS = -I$(top_srcdir)/examples
fuzz_fuzz_http1_CFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_http1_LDFLAGS = -fsanitize=fuzzer,address,undefined
endif

# ---- the state of a moved socket (pool/sockstate.h): the decoder is
# internal, so the harness links the convenience library; it also imports
# through the public API over a socketpair.
check_PROGRAMS += fuzz/replay_sockstate
TESTS += fuzz/replay_sockstate
VALGRIND_TESTS += fuzz/replay_sockstate
fuzz_replay_sockstate_SOURCES = fuzz/replay.c fuzz/fuzz_sockstate.c
fuzz_replay_sockstate_CPPFLAGS = $(FUZZ_CPPFLAGS) -I$(top_srcdir)/lib \
	-DCORPUS_DIR='"$(abs_srcdir)/fuzz/corpus/sockstate"'
fuzz_replay_sockstate_CFLAGS = $(FUZZ_CFLAGS)
fuzz_replay_sockstate_LDADD = $(LIB_CORE_LIBS)
if ENABLE_FUZZERS
noinst_PROGRAMS += fuzz/fuzz_sockstate
fuzz_fuzz_sockstate_SOURCES = fuzz/fuzz_sockstate.c
fuzz_fuzz_sockstate_CPPFLAGS = $(FUZZ_CPPFLAGS) -I$(top_srcdir)/lib
fuzz_fuzz_sockstate_CFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_sockstate_LDFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_sockstate_LDADD = $(LIB_CORE_LIBS)
endif

# ---- the proxy's restart handover messages (examples/proxy/handover_wire.c):
# what another process sends over --handover-socket. Needs only libc.
check_PROGRAMS += fuzz/replay_handover
TESTS += fuzz/replay_handover
VALGRIND_TESTS += fuzz/replay_handover
fuzz_replay_handover_SOURCES = fuzz/replay.c fuzz/fuzz_handover.c examples/proxy/handover_wire.c
fuzz_replay_handover_CPPFLAGS = -I$(top_srcdir)/examples \
	-DCORPUS_DIR='"$(abs_srcdir)/fuzz/corpus/handover"'
fuzz_replay_handover_CFLAGS = $(FUZZ_CFLAGS)
if ENABLE_FUZZERS
noinst_PROGRAMS += fuzz/fuzz_handover
fuzz_fuzz_handover_SOURCES = fuzz/fuzz_handover.c examples/proxy/handover_wire.c
fuzz_fuzz_handover_CPPFLAGS = -I$(top_srcdir)/examples
fuzz_fuzz_handover_CFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_handover_LDFLAGS = -fsanitize=fuzzer,address,undefined
endif
