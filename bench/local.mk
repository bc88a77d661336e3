# Benchmark programs. Built in every build (noinst) so they
# stay warning-free; run them all with scripts/bench (see bench/README.md).
#
# The programs link the library's convenience archive (its objects, so the
# internal API is reachable) with --wrap on the socket syscalls:
# bench/fakefd.c answers for fds >= 1<<20 so a pool can hold 1M sockets
# although RLIMIT_NOFILE is far lower. Real fds go to the real syscalls.
BENCH_WRAP = -Wl,--wrap=fcntl,--wrap=fcntl64,--wrap=getsockname,--wrap=getpeername \
	-Wl,--wrap=close,--wrap=shutdown,--wrap=recv,--wrap=__recv_chk,--wrap=send,--wrap=poll
BENCH_CPPFLAGS = $(LIB_CPPFLAGS) -I$(top_srcdir)/bench
BENCH_CFLAGS = $(STRICT_WARN_CFLAGS)
BENCH_LDADD = $(LIB_CORE_LIBS)
BENCH_COMMON = bench/bench_util.c bench/bench_util.h bench/fakefd.c

noinst_PROGRAMS += bench/bench_pool bench/bench_keepalive

bench_bench_pool_SOURCES = bench/bench_pool.c $(BENCH_COMMON)
bench_bench_pool_CPPFLAGS = $(BENCH_CPPFLAGS)
bench_bench_pool_CFLAGS = $(BENCH_CFLAGS)
bench_bench_pool_LDFLAGS = $(BENCH_WRAP)
bench_bench_pool_LDADD = $(BENCH_LDADD)

bench_bench_keepalive_SOURCES = bench/bench_keepalive.c $(BENCH_COMMON)
bench_bench_keepalive_CPPFLAGS = $(BENCH_CPPFLAGS)
bench_bench_keepalive_CFLAGS = $(BENCH_CFLAGS)
bench_bench_keepalive_LDFLAGS = $(BENCH_WRAP)
bench_bench_keepalive_LDADD = $(BENCH_LDADD)

EXTRA_DIST += bench/README.md

noinst_PROGRAMS += bench/bench_accesslog
bench_bench_accesslog_SOURCES = bench/bench_accesslog.c $(BENCH_COMMON)
bench_bench_accesslog_CPPFLAGS = $(BENCH_CPPFLAGS)
bench_bench_accesslog_CFLAGS = $(BENCH_CFLAGS)
bench_bench_accesslog_LDFLAGS = $(BENCH_WRAP)
bench_bench_accesslog_LDADD = $(BENCH_LDADD)

# handshakes/s through the acceptor vs accept()+write()+close(): real sockets,
# the shared library as a host links it.
noinst_PROGRAMS += bench/bench_handshake
bench_bench_handshake_SOURCES = bench/bench_handshake.c
bench_bench_handshake_CPPFLAGS = -I$(top_srcdir)/include -Iinclude
bench_bench_handshake_CFLAGS = $(STRICT_WARN_CFLAGS)
bench_bench_handshake_LDADD = lib/libupstream-revtun.la

# bench/idle.sh's floor: N connections kept alive with 5-byte pings by a
# bare libevent loop, and the echo side it talks to.
if HAVE_EXAMPLES
noinst_PROGRAMS += bench/idle_floor
bench_idle_floor_SOURCES = bench/idle_floor.c
bench_idle_floor_CPPFLAGS = -I$(top_srcdir)/examples
bench_idle_floor_CFLAGS = $(WARN_CFLAGS) $(LIBEVENT_CFLAGS)
bench_idle_floor_LDADD = examples/libexcommon.la $(LIBEVENT_LIBS)
else
EXTRA_DIST += bench/idle_floor.c
endif
EXTRA_DIST += bench/idle.sh bench/fleet.sh bench/fleet_scale.sh

# A cross-worker handoff through the process directory against a bare
# eventfd round trip between two threads and a handoff on one handle.
noinst_PROGRAMS += bench/bench_directory
bench_bench_directory_SOURCES = bench/bench_directory.c
bench_bench_directory_CPPFLAGS = -I$(top_srcdir)/include -Iinclude
bench_bench_directory_CFLAGS = $(STRICT_WARN_CFLAGS) $(PTHREAD_CFLAGS)
bench_bench_directory_LDADD = lib/libupstream-revtun.la $(PTHREAD_LIBS)
