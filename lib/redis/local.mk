# The fleet directory on Redis: lib/redis, include/revtun/redis.h, its own
# library libupstream-revtun-redis (pkg-config upstream-revtun-redis), built
# when hiredis and libevent are found. It uses only the core's public API.
# Like the core, its sources are compiled once into a convenience library
# that the shared library, the tests, the benchmark and the fuzzer link.
REDIS_LIB_SOURCES = \
	lib/redis/rr_int.h \
	lib/redis/conn.c \
	lib/redis/decode.c \
	lib/redis/directory.c \
	lib/redis/guard.c \
	lib/redis/ids.c \
	lib/redis/lookup.c \
	lib/redis/options.c \
	lib/redis/publish.c \
	lib/redis/scripts.c \
	lib/redis/stats.c \
	lib/redis/table.c lib/redis/table.h
EXTRA_DIST += lib/redis/libupstream-revtun-redis.sym
DISTCLEANFILES += pkgconfig/upstream-revtun-redis.pc

if HAVE_REDIS
revtuninclude_HEADERS += include/revtun/redis.h
redispkgconfigdir = $(pkgconfigdir)
redispkgconfig_DATA = pkgconfig/upstream-revtun-redis.pc

noinst_LTLIBRARIES += lib/libupstream-revtun-redis-core.la
lib_libupstream_revtun_redis_core_la_SOURCES = $(REDIS_LIB_SOURCES)
REDIS_CPPFLAGS = -I$(top_srcdir)/include -Iinclude $(HIREDIS_CFLAGS) $(LIBEVENT_CFLAGS)
lib_libupstream_revtun_redis_core_la_CPPFLAGS = -DBUILDING_REVTUN_REDIS $(REDIS_CPPFLAGS)
lib_libupstream_revtun_redis_core_la_CFLAGS = $(REVTUN_VISIBILITY_CFLAGS) $(STRICT_WARN_CFLAGS)
# what a program linking the convenience library needs besides it and the core
REDIS_CORE_LIBS = lib/libupstream-revtun-redis-core.la $(HIREDIS_LIBS) $(LIBEVENT_LIBS)

lib_LTLIBRARIES += lib/libupstream-revtun-redis.la
lib_libupstream_revtun_redis_la_SOURCES =
lib_libupstream_revtun_redis_la_LIBADD = lib/libupstream-revtun-redis-core.la \
	lib/libupstream-revtun.la $(HIREDIS_LIBS) $(LIBEVENT_LIBS)
lib_libupstream_revtun_redis_la_LDFLAGS = -no-undefined -version-info 0:0:0 \
	-Wl,--version-script=$(srcdir)/lib/redis/libupstream-revtun-redis.sym
EXTRA_lib_libupstream_revtun_redis_la_DEPENDENCIES = $(srcdir)/lib/redis/libupstream-revtun-redis.sym
else
EXTRA_DIST += include/revtun/redis.h $(REDIS_LIB_SOURCES)
endif

# The libFuzzer harness of what Redis returns (fuzz/fuzz_redis.c): make
# check replays fuzz/corpus/redis through it, as fuzz/local.mk does for the
# core's harnesses; --enable-fuzzers builds the fuzzer itself.
if HAVE_REDIS
REDIS_FUZZ_CPPFLAGS = $(FUZZ_CPPFLAGS) -I$(top_srcdir)/lib/redis $(HIREDIS_CFLAGS) $(LIBEVENT_CFLAGS)
check_PROGRAMS += fuzz/replay_redis
TESTS += fuzz/replay_redis
VALGRIND_TESTS += fuzz/replay_redis
fuzz_replay_redis_SOURCES = fuzz/replay.c fuzz/fuzz_redis.c
fuzz_replay_redis_CPPFLAGS = $(REDIS_FUZZ_CPPFLAGS) -DCORPUS_DIR='"$(abs_srcdir)/fuzz/corpus/redis"'
fuzz_replay_redis_LDADD = $(REDIS_CORE_LIBS) lib/libupstream-revtun.la
if ENABLE_FUZZERS
noinst_PROGRAMS += fuzz/fuzz_redis
fuzz_fuzz_redis_SOURCES = fuzz/fuzz_redis.c
fuzz_fuzz_redis_CPPFLAGS = $(REDIS_FUZZ_CPPFLAGS)
fuzz_fuzz_redis_CFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_redis_LDFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_redis_LDADD = $(REDIS_CORE_LIBS) lib/libupstream-revtun.la
endif
else
EXTRA_DIST += fuzz/fuzz_redis.c
endif

# The benchmark (bench/bench_redis.c, bench/README.md): round trips of 100,000
# registrations and the cost of one against a bare pipelined SET. Like the
# other benchmarks it links the convenience libraries with the fake-fd
# wrappers; scripts/bench runs it.
if HAVE_REDIS
noinst_PROGRAMS += bench/bench_redis
bench_bench_redis_SOURCES = bench/bench_redis.c $(BENCH_COMMON) \
	tests/redis_server.c tests/redis_server.h
bench_bench_redis_CPPFLAGS = $(BENCH_CPPFLAGS) -I$(top_srcdir)/tests $(HIREDIS_CFLAGS) \
	$(LIBEVENT_CFLAGS)
bench_bench_redis_CFLAGS = $(BENCH_CFLAGS)
bench_bench_redis_LDFLAGS = $(BENCH_WRAP)
bench_bench_redis_LDADD = $(REDIS_CORE_LIBS) $(BENCH_LDADD)
else
EXTRA_DIST += bench/bench_redis.c
endif
