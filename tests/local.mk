# Check suites (one program per module), script tests, and the configs the
# tests use, encoded at build time by the reference `protoc --encode`.
TEST_CPPFLAGS = -I$(top_srcdir)/include -Iinclude -I$(top_srcdir)/tests \
	-DTEST_CONFIG_DIR='"$(abs_builddir)/tests/configs"' \
	-DTEST_BUILD_DIR='"$(abs_builddir)"' -DTEST_SRC_DIR='"$(abs_srcdir)"'
TEST_CFLAGS = $(STRICT_WARN_CFLAGS) $(CHECK_CFLAGS)
TEST_LDADD = tests/libtestutil.la lib/libupstream-revtun.la $(CHECK_LIBS)
# suites that test internal modules link the convenience library instead
TEST_INTERNAL_LDADD = tests/libtestutil.la $(LIB_CORE_LIBS) $(CHECK_LIBS)

check_LTLIBRARIES += tests/libtestutil.la
tests_libtestutil_la_SOURCES = tests/testutil.c tests/testutil.h
tests_libtestutil_la_CPPFLAGS = $(TEST_CPPFLAGS)
tests_libtestutil_la_CFLAGS = $(TEST_CFLAGS)

# Text configs: the first line names the message ("# proto-message: <full name>").
TEST_CONFIG_TXT = $(wildcard $(srcdir)/tests/configs/*.txtpb)
TEST_CONFIG_BIN = $(patsubst $(srcdir)/tests/configs/%.txtpb,tests/configs/%.bin,$(TEST_CONFIG_TXT))
tests/configs/%.bin: $(srcdir)/tests/configs/%.txtpb $(PROTO_FILES)
	$(AM_V_GEN)$(ENCODE_TXTPB)
check_DATA = $(TEST_CONFIG_BIN)
CLEANFILES += $(TEST_CONFIG_BIN)
# listed file by file: a tests/configs directory in the build tree (the .bin
# files) would otherwise be what `make dist` copies
EXTRA_DIST += $(patsubst $(srcdir)/%,%,$(TEST_CONFIG_TXT))

# The example reporter module, and a copy of it without a mandatory symbol:
# libtool modules that tests/check_reporter loads with dlopen.
check_LTLIBRARIES += examples/librevtun_example_reporter.la tests/librevtun_broken_reporter.la
TEST_MODULE_LDFLAGS = -module -avoid-version -shared -rpath /nowhere
examples_librevtun_example_reporter_la_SOURCES = examples/reporter-module.c
examples_librevtun_example_reporter_la_CPPFLAGS = -I$(top_srcdir)/include
examples_librevtun_example_reporter_la_CFLAGS = $(WARN_CFLAGS) -fvisibility=hidden
examples_librevtun_example_reporter_la_LDFLAGS = $(TEST_MODULE_LDFLAGS)
tests_librevtun_broken_reporter_la_SOURCES = examples/reporter-module.c
tests_librevtun_broken_reporter_la_CPPFLAGS = -I$(top_srcdir)/include -DREVTUN_EXAMPLE_OMIT_DESTROY
tests_librevtun_broken_reporter_la_CFLAGS = $(WARN_CFLAGS) -fvisibility=hidden
tests_librevtun_broken_reporter_la_LDFLAGS = $(TEST_MODULE_LDFLAGS)

if HAVE_CHECK
CHECK_SUITES = \
	tests/check_acceptor \
	tests/check_handshake \
	tests/check_config \
	tests/check_pool \
	tests/check_hostsel \
	tests/check_keepalive \
	tests/check_nomem \
	tests/check_adversarial \
	tests/check_hash \
	tests/check_accesslog \
	tests/check_format \
	tests/check_prometheus \
	tests/check_reporter \
	tests/check_move \
	tests/check_directory
check_PROGRAMS += $(CHECK_SUITES)
TESTS += $(CHECK_SUITES)
VALGRIND_TESTS += $(CHECK_SUITES)

# Suites of the public API link the shared library; suites of internal
# modules (the handshake parser, the hash table, the format engine, the hash
# chains under attack) link the convenience library and see lib/'s headers.
TEST_INTERNAL_CPPFLAGS = $(TEST_CPPFLAGS) -I$(top_srcdir)/lib -Ilib/proto $(PROTOBUF_C_CFLAGS)
# where check_reporter finds the two reporter modules above
TEST_MODULE_CPPFLAGS = -DTEST_MODULE_DIR='"$(abs_builddir)/examples/.libs"' \
	-DTEST_BROKEN_MODULE_DIR='"$(abs_builddir)/tests/.libs"'

tests_check_acceptor_SOURCES = tests/check_acceptor.c
tests_check_acceptor_CPPFLAGS = $(TEST_CPPFLAGS)
tests_check_acceptor_CFLAGS = $(TEST_CFLAGS)
tests_check_acceptor_LDADD = $(TEST_LDADD)
tests_check_handshake_SOURCES = tests/check_handshake.c
tests_check_handshake_CPPFLAGS = $(TEST_INTERNAL_CPPFLAGS)
tests_check_handshake_CFLAGS = $(TEST_CFLAGS)
tests_check_handshake_LDADD = $(TEST_INTERNAL_LDADD)
tests_check_config_SOURCES = tests/check_config.c
tests_check_config_CPPFLAGS = $(TEST_CPPFLAGS)
tests_check_config_CFLAGS = $(TEST_CFLAGS)
tests_check_config_LDADD = $(TEST_LDADD)
tests_check_move_SOURCES = tests/check_move.c
tests_check_move_CPPFLAGS = $(TEST_CPPFLAGS)
tests_check_move_CFLAGS = $(TEST_CFLAGS)
tests_check_move_LDADD = $(TEST_LDADD)
tests_check_directory_SOURCES = tests/check_directory.c
tests_check_directory_CPPFLAGS = $(TEST_CPPFLAGS)
tests_check_directory_CFLAGS = $(TEST_CFLAGS) $(PTHREAD_CFLAGS)
tests_check_directory_LDADD = $(TEST_LDADD) $(PTHREAD_LIBS)
tests_check_hostsel_SOURCES = tests/check_hostsel.c
tests_check_hostsel_CPPFLAGS = $(TEST_CPPFLAGS)
tests_check_hostsel_CFLAGS = $(TEST_CFLAGS)
tests_check_hostsel_LDADD = $(TEST_LDADD)
tests_check_pool_SOURCES = tests/check_pool.c
tests_check_pool_CPPFLAGS = $(TEST_CPPFLAGS)
tests_check_pool_CFLAGS = $(TEST_CFLAGS)
tests_check_pool_LDADD = $(TEST_LDADD)
tests_check_keepalive_SOURCES = tests/check_keepalive.c
tests_check_keepalive_CPPFLAGS = $(TEST_CPPFLAGS)
tests_check_keepalive_CFLAGS = $(TEST_CFLAGS)
tests_check_keepalive_LDADD = $(TEST_LDADD)
tests_check_nomem_SOURCES = tests/check_nomem.c
tests_check_nomem_CPPFLAGS = $(TEST_CPPFLAGS)
tests_check_nomem_CFLAGS = $(TEST_CFLAGS)
tests_check_nomem_LDADD = $(TEST_LDADD)
# hostile input against every defence
tests_check_adversarial_SOURCES = tests/check_adversarial.c
tests_check_adversarial_CPPFLAGS = $(TEST_INTERNAL_CPPFLAGS)
tests_check_adversarial_CFLAGS = $(TEST_CFLAGS)
tests_check_adversarial_LDADD = $(TEST_INTERNAL_LDADD)
tests_check_hash_SOURCES = tests/check_hash.c
tests_check_hash_CPPFLAGS = $(TEST_INTERNAL_CPPFLAGS)
tests_check_hash_CFLAGS = $(TEST_CFLAGS)
tests_check_hash_LDADD = $(TEST_INTERNAL_LDADD)
# access loggers, reporters and the Prometheus export through a real handle
# (configs tests/configs/al_*, rep_*), and the format engine on its own
tests_check_accesslog_SOURCES = tests/check_accesslog.c
tests_check_accesslog_CPPFLAGS = $(TEST_CPPFLAGS)
tests_check_accesslog_CFLAGS = $(TEST_CFLAGS) $(PTHREAD_CFLAGS)
tests_check_accesslog_LDADD = $(TEST_LDADD) $(PTHREAD_LIBS)
tests_check_format_SOURCES = tests/check_format.c
tests_check_format_CPPFLAGS = $(TEST_INTERNAL_CPPFLAGS)
tests_check_format_CFLAGS = $(TEST_CFLAGS)
tests_check_format_LDADD = $(TEST_INTERNAL_LDADD)
tests_check_prometheus_SOURCES = tests/check_prometheus.c tests/prom_parse.h
tests_check_prometheus_CPPFLAGS = $(TEST_CPPFLAGS)
tests_check_prometheus_CFLAGS = $(TEST_CFLAGS)
tests_check_prometheus_LDADD = $(TEST_LDADD)
tests_check_reporter_SOURCES = tests/check_reporter.c
tests_check_reporter_CPPFLAGS = $(TEST_CPPFLAGS) $(TEST_MODULE_CPPFLAGS)
tests_check_reporter_CFLAGS = $(TEST_CFLAGS)
tests_check_reporter_LDADD = $(TEST_LDADD)
if HAVE_LIBEVENT
check_PROGRAMS += tests/check_loop
TESTS += tests/check_loop
VALGRIND_TESTS += tests/check_loop
tests_check_loop_SOURCES = tests/check_loop.c
tests_check_loop_CPPFLAGS = $(TEST_CPPFLAGS)
tests_check_loop_CFLAGS = $(TEST_CFLAGS) $(LIBEVENT_CFLAGS)
tests_check_loop_LDADD = $(TEST_LDADD) $(LIBEVENT_LIBS)
endif
endif

# Script tests: ABI bookkeeping, the library's layers (the objects of the
# convenience library and lib/'s includes), and the README example against
# the installed library.
dist_check_SCRIPTS = tests/symbols.sh tests/layers.sh tests/installed.sh
TESTS += tests/symbols.sh tests/layers.sh tests/installed.sh

AM_TESTS_ENVIRONMENT = CK_VERBOSITY=normal; export CK_VERBOSITY; \
	top_builddir='$(abs_top_builddir)'; top_srcdir='$(abs_top_srcdir)'; \
	MAKE='$(MAKE)'; CC='$(CC)'; CFLAGS='$(CFLAGS)'; LDFLAGS='$(LDFLAGS)'; \
	export top_builddir top_srcdir MAKE CC CFLAGS LDFLAGS;

# ---- the Redis fleet directory (lib/redis/local.mk) -------------------------
# check_redis_unit: decoders, reader guard, options, event bookkeeping (no
# Redis; internal, so it links the convenience library). check_redis: the
# fleet against a private redis-server per test (skipped when redis-server is
# missing, failed when CI is set). symbols_redis.sh: tests/symbols.sh for
# this library; installed_redis.sh (run by installed.sh, from its
# installation): the README's directory example against the installed
# libraries.
dist_check_SCRIPTS += tests/symbols_redis.sh tests/installed_redis.sh
TESTS += tests/symbols_redis.sh
EXTRA_DIST += tests/redis_util.c tests/redis_util.h tests/redis_server.c tests/redis_server.h
if HAVE_REDIS
if HAVE_CHECK
REDIS_SUITES = tests/check_redis_unit tests/check_redis
check_PROGRAMS += $(REDIS_SUITES)
TESTS += $(REDIS_SUITES)
VALGRIND_TESTS += $(REDIS_SUITES)
tests_check_redis_unit_SOURCES = tests/check_redis_unit.c
tests_check_redis_unit_CPPFLAGS = $(TEST_CPPFLAGS) -I$(top_srcdir)/lib/redis \
	$(HIREDIS_CFLAGS) $(LIBEVENT_CFLAGS)
tests_check_redis_unit_CFLAGS = $(TEST_CFLAGS)
tests_check_redis_unit_LDADD = tests/libtestutil.la $(REDIS_CORE_LIBS) lib/libupstream-revtun.la \
	$(CHECK_LIBS)
tests_check_redis_SOURCES = tests/check_redis.c tests/redis_util.c tests/redis_util.h \
	tests/redis_server.c tests/redis_server.h
tests_check_redis_CPPFLAGS = $(TEST_CPPFLAGS) $(HIREDIS_CFLAGS) $(LIBEVENT_CFLAGS)
tests_check_redis_CFLAGS = $(TEST_CFLAGS)
tests_check_redis_LDADD = tests/libtestutil.la lib/libupstream-revtun-redis.la \
	lib/libupstream-revtun.la $(HIREDIS_LIBS) $(LIBEVENT_LIBS) $(CHECK_LIBS)
endif
endif

# ---- TLS with OpenSSL (lib/openssl/local.mk) --------------------------------
# check_tls: real TLS sessions over socket pairs through the acceptor's
# transport seam, with a PKI made at test time (tests/tls_certs.c: expired,
# not-yet-valid and revoked certificates included). symbols_openssl.sh:
# tests/symbols.sh for this library.
dist_check_SCRIPTS += tests/symbols_openssl.sh
TESTS += tests/symbols_openssl.sh
EXTRA_DIST += tests/tls_certs.c tests/tls_certs.h
if HAVE_OPENSSL
if HAVE_CHECK
check_PROGRAMS += tests/check_tls
TESTS += tests/check_tls
VALGRIND_TESTS += tests/check_tls
tests_check_tls_SOURCES = tests/check_tls.c tests/tls_certs.c tests/tls_certs.h
tests_check_tls_CPPFLAGS = $(TEST_CPPFLAGS) $(OPENSSL_CFLAGS)
tests_check_tls_CFLAGS = $(TEST_CFLAGS)
tests_check_tls_LDADD = lib/libupstream-revtun-openssl.la $(TEST_LDADD) $(OPENSSL_LIBS)
endif
endif

# prom_check: the strict Prometheus text parser of the tests as a program,
# which tests/e2e.sh runs on the proxy's /stats.
check_PROGRAMS += tests/prom_check
tests_prom_check_SOURCES = tests/prom_check.c tests/prom_parse.h
tests_prom_check_CPPFLAGS = -I$(top_srcdir)/tests
tests_prom_check_CFLAGS = $(STRICT_WARN_CFLAGS)

# README's list of differences from Envoy against the code.
dist_check_SCRIPTS += tests/readme_envoy.sh
TESTS += tests/readme_envoy.sh

# e2e_tls.sh: the programs over real TLS (scripts/quickstart's set-up with
# certificates), with tls_pki making the PKI (expired and revoked included).
# e2e_tls_handoff.sh: TLS after the handoff (proxy as TLS client, agent as
# server) with bad agents, a stalled handshake and RPINGs injected at the
# handoff by rping_relay.
EXTRA_DIST += tests/tls_pki.c tests/rping_relay.c
dist_check_SCRIPTS += tests/e2e_tls.sh tests/e2e_tls_handoff.sh
if HAVE_OPENSSL
if HAVE_EXAMPLES
check_PROGRAMS += tests/tls_pki tests/rping_relay
TESTS += tests/e2e_tls.sh tests/e2e_tls_handoff.sh
tests_rping_relay_SOURCES = tests/rping_relay.c
tests_rping_relay_CFLAGS = $(WARN_CFLAGS)
tests_tls_pki_SOURCES = tests/tls_pki.c tests/tls_certs.c tests/tls_certs.h
tests_tls_pki_CPPFLAGS = $(OPENSSL_CFLAGS)
tests_tls_pki_CFLAGS = $(WARN_CFLAGS)
tests_tls_pki_LDADD = $(OPENSSL_LIBS)
endif
endif
