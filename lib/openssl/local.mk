# TLS with OpenSSL: lib/openssl, include/revtun/openssl.h, its own library
# libupstream-revtun-openssl (pkg-config upstream-revtun-openssl), built when
# OpenSSL 3 is found. It implements the acceptor's transport seam
# (include/revtun/transport.h) and the post-handoff client helpers using only
# the core's public API; the core never links libssl.
OPENSSL_LIB_SOURCES = \
	lib/openssl/openssl_int.h \
	lib/openssl/ctx.c \
	lib/openssl/handoff.c \
	lib/openssl/peer.c \
	lib/openssl/transport.c
EXTRA_DIST += lib/openssl/libupstream-revtun-openssl.sym
DISTCLEANFILES += pkgconfig/upstream-revtun-openssl.pc

if HAVE_OPENSSL
revtuninclude_HEADERS += include/revtun/openssl.h
opensslpkgconfigdir = $(pkgconfigdir)
opensslpkgconfig_DATA = pkgconfig/upstream-revtun-openssl.pc

lib_LTLIBRARIES += lib/libupstream-revtun-openssl.la
lib_libupstream_revtun_openssl_la_SOURCES = $(OPENSSL_LIB_SOURCES)
lib_libupstream_revtun_openssl_la_CPPFLAGS = -DBUILDING_REVTUN -I$(top_srcdir)/include -Iinclude \
	$(OPENSSL_CFLAGS)
lib_libupstream_revtun_openssl_la_CFLAGS = $(REVTUN_VISIBILITY_CFLAGS) $(STRICT_WARN_CFLAGS) \
	$(PTHREAD_CFLAGS)
lib_libupstream_revtun_openssl_la_LIBADD = lib/libupstream-revtun.la $(OPENSSL_LIBS) $(PTHREAD_LIBS)
lib_libupstream_revtun_openssl_la_LDFLAGS = -no-undefined -version-info 0:0:0 \
	-Wl,--version-script=$(srcdir)/lib/openssl/libupstream-revtun-openssl.sym
EXTRA_lib_libupstream_revtun_openssl_la_DEPENDENCIES = \
	$(srcdir)/lib/openssl/libupstream-revtun-openssl.sym
else
EXTRA_DIST += include/revtun/openssl.h $(OPENSSL_LIB_SOURCES)
endif

# The handshake parser through the TLS transport (fuzz/fuzz_tls_handshake.c):
# make check replays fuzz/corpus/tls_handshake through it, as fuzz/local.mk
# does for the core's harnesses; --enable-fuzzers builds the fuzzer itself.
EXTRA_DIST += fuzz/fuzz_tls_handshake.c
if HAVE_OPENSSL
check_PROGRAMS += fuzz/replay_tls_handshake
TESTS += fuzz/replay_tls_handshake
VALGRIND_TESTS += fuzz/replay_tls_handshake
fuzz_replay_tls_handshake_SOURCES = fuzz/replay.c fuzz/fuzz_tls_handshake.c
fuzz_replay_tls_handshake_CPPFLAGS = $(FUZZ_CPPFLAGS) $(OPENSSL_CFLAGS) \
	-DCORPUS_DIR='"$(abs_srcdir)/fuzz/corpus/tls_handshake"'
fuzz_replay_tls_handshake_CFLAGS = $(STRICT_WARN_CFLAGS)
fuzz_replay_tls_handshake_LDADD = lib/libupstream-revtun-openssl.la lib/libupstream-revtun.la \
	$(OPENSSL_LIBS)
if ENABLE_FUZZERS
noinst_PROGRAMS += fuzz/fuzz_tls_handshake
fuzz_fuzz_tls_handshake_SOURCES = fuzz/fuzz_tls_handshake.c
fuzz_fuzz_tls_handshake_CPPFLAGS = $(FUZZ_CPPFLAGS) $(OPENSSL_CFLAGS)
fuzz_fuzz_tls_handshake_CFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_tls_handshake_LDFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_tls_handshake_LDADD = lib/libupstream-revtun-openssl.la lib/libupstream-revtun.la \
	$(OPENSSL_LIBS)
endif
endif

# TLS handshakes/s through the acceptor with this transport against a bare
# OpenSSL accept + handshake + write + close loop (bench/bench_tls_handshake.c).
EXTRA_DIST += bench/bench_tls_handshake.c
if HAVE_OPENSSL
noinst_PROGRAMS += bench/bench_tls_handshake
bench_bench_tls_handshake_SOURCES = bench/bench_tls_handshake.c
bench_bench_tls_handshake_CPPFLAGS = -I$(top_srcdir)/include -Iinclude $(OPENSSL_CFLAGS)
bench_bench_tls_handshake_CFLAGS = $(STRICT_WARN_CFLAGS)
bench_bench_tls_handshake_LDADD = lib/libupstream-revtun-openssl.la lib/libupstream-revtun.la \
	$(OPENSSL_LIBS)
endif
