# Programs a user runs, and what they share. examples/common.c (logging,
# addresses, flag values, JSON strings, the HTTP/1 parser) needs only libc
# and is linked into every program; minimal-poll needs only the library;
# the tunnel programs need libevent and nghttp2 (HAVE_EXAMPLES) and are
# installed.
noinst_LTLIBRARIES += examples/libexcommon.la
examples_libexcommon_la_SOURCES = examples/common.c examples/common.h
examples_libexcommon_la_CFLAGS = $(WARN_CFLAGS)

noinst_PROGRAMS += examples/minimal-poll
examples_minimal_poll_SOURCES = examples/minimal-poll.c
examples_minimal_poll_CPPFLAGS = -I$(top_srcdir)/include -Iinclude
examples_minimal_poll_CFLAGS = $(WARN_CFLAGS)
examples_minimal_poll_LDADD = lib/libupstream-revtun.la examples/libexcommon.la

# The HTTP/1 parser's verdicts on known-bad messages (needs only libc).
check_PROGRAMS += tests/adversarial/http1_cases
TESTS += tests/adversarial/http1_cases
VALGRIND_TESTS += tests/adversarial/http1_cases
tests_adversarial_http1_cases_SOURCES = tests/adversarial/http1_cases.c
tests_adversarial_http1_cases_CPPFLAGS = -I$(top_srcdir)/examples
tests_adversarial_http1_cases_CFLAGS = $(WARN_CFLAGS)
tests_adversarial_http1_cases_LDADD = examples/libexcommon.la

# The example configs (encoded from examples/configs/*.txtpb, see
# examples/configs/README), the end-to-end tests run by
# `make check`, the e2e benchmark and its relay.
EXAMPLE_CONFIGS_TXT = examples/configs/upstream.txtpb examples/configs/acceptor.txtpb
EXTRA_DIST += $(EXAMPLE_CONFIGS_TXT) examples/configs/README tests/e2e_lib.sh tests/fleet_lib.sh \
	bench/e2e.sh bench/README-e2e.md

if HAVE_EXAMPLES
# TLS in the tunnel programs when OpenSSL is there (the agent: examples/tls.c
# over libssl; the proxy: libupstream-revtun-openssl); without it their TLS
# flags are refused.
if HAVE_OPENSSL
EXAMPLES_TLS_CPPFLAGS = -DEXAMPLES_TLS=1 $(OPENSSL_CFLAGS)
EXAMPLES_TLS_LIBS = $(OPENSSL_LIBS)
EXAMPLES_TLS_LIBADD = lib/libupstream-revtun-openssl.la $(OPENSSL_LIBS)
endif
bin_PROGRAMS += examples/revtun-downstream-agent examples/revtun-demo-backend \
	examples/revtun-upstream-proxy
dist_man_MANS += man/revtun-upstream-proxy.1

examples_revtun_downstream_agent_SOURCES = examples/agent/agent.h examples/agent/main.c \
	examples/agent/slot.c examples/agent/tunnel.c examples/agent/backend.c \
	examples/agent/tls.c examples/sock.c examples/sock.h examples/recycle.c examples/recycle.h \
	examples/tls.c examples/tls.h
examples_revtun_downstream_agent_CPPFLAGS = $(EXAMPLES_TLS_CPPFLAGS)
examples_revtun_downstream_agent_CFLAGS = $(WARN_CFLAGS) $(LIBEVENT_CFLAGS) $(NGHTTP2_CFLAGS) \
	$(PTHREAD_CFLAGS)
examples_revtun_downstream_agent_LDADD = examples/libexcommon.la $(LIBEVENT_LIBS) $(NGHTTP2_LIBS) \
	$(EXAMPLES_TLS_LIBS) $(PTHREAD_LIBS)

examples_revtun_demo_backend_SOURCES = examples/demo-backend.c
examples_revtun_demo_backend_CFLAGS = $(WARN_CFLAGS) $(LIBEVENT_CFLAGS)
examples_revtun_demo_backend_LDADD = examples/libexcommon.la $(LIBEVENT_LIBS)

examples_revtun_upstream_proxy_SOURCES = examples/upstream-proxy.c \
	examples/proxy/proxy.h examples/proxy/util.c examples/proxy/exchange.c \
	examples/proxy/client.c examples/proxy/client_h2.c examples/proxy/upstream.c \
	examples/proxy/select.c \
	examples/proxy/handover.c examples/proxy/handover_wire.c examples/proxy/handover_wire.h \
	examples/proxy/admin.c examples/proxy/access.c examples/proxy/listeners.c \
	examples/proxy/tls.c examples/proxy/workers.c examples/sock.c examples/sock.h \
	examples/recycle.c examples/recycle.h examples/tls.c examples/tls.h
examples_revtun_upstream_proxy_CPPFLAGS = -I$(top_srcdir)/include -Iinclude $(EXAMPLES_TLS_CPPFLAGS)
examples_revtun_upstream_proxy_CFLAGS = $(WARN_CFLAGS) $(LIBEVENT_CFLAGS) $(NGHTTP2_CFLAGS) \
	$(PTHREAD_CFLAGS)
examples_revtun_upstream_proxy_LDADD = lib/libupstream-revtun.la examples/libexcommon.la \
	$(LIBEVENT_LIBS) $(NGHTTP2_LIBS) $(EXAMPLES_TLS_LIBADD) $(PTHREAD_LIBS)
# --fleet-redis: with hiredis, the proxy links the fleet directory.
examples_revtun_upstream_proxy_SOURCES += examples/proxy/fleet.c
if HAVE_REDIS
examples_revtun_upstream_proxy_CPPFLAGS += -DHAVE_FLEET=1 $(HIREDIS_CFLAGS)
examples_revtun_upstream_proxy_LDADD += lib/libupstream-revtun-redis.la $(HIREDIS_LIBS)
endif

# The example configs, encoded as the proxy's flags take them.
EXAMPLE_CONFIGS_BIN = $(patsubst %.txtpb,%.bin,$(EXAMPLE_CONFIGS_TXT))
examples/configs/%.bin: $(srcdir)/examples/configs/%.txtpb $(PROTO_FILES)
	$(AM_V_GEN)$(ENCODE_TXTPB)
check_DATA += $(EXAMPLE_CONFIGS_BIN)
CLEANFILES += $(EXAMPLE_CONFIGS_BIN)

# The plain two-hop TCP relay the e2e benchmark uses as its floor.
noinst_PROGRAMS += bench/relay
bench_relay_SOURCES = bench/relay.c
bench_relay_CFLAGS = $(WARN_CFLAGS) $(LIBEVENT_CFLAGS)
bench_relay_LDADD = $(LIBEVENT_LIBS)

# Real programs on loopback: curl, nghttp, h2load through proxy and agent.
TESTS += tests/e2e.sh tests/e2e_hostsel.sh
dist_check_SCRIPTS += tests/e2e.sh tests/e2e_hostsel.sh
# --workers 4: any worker serves any node, /stats and /tunnels add up.
TESTS += tests/e2e_workers.sh
dist_check_SCRIPTS += tests/e2e_workers.sh
# Three proxies sharing a private redis-server: forwarding across the fleet
# and agent failover (fleet.sh); Redis killed under traffic, the lookup
# cache and its invalidation, two instances claiming one node
# (fleet_faults.sh).
TESTS += tests/fleet.sh tests/fleet_faults.sh
dist_check_SCRIPTS += tests/fleet.sh tests/fleet_faults.sh
# Restarting the proxy with --takeover under h2load traffic (h2c and
# HTTP/1.1): no failed request, no agent reconnect; and peers that speak
# the handover protocol badly (tests/handover_peer.py).
TESTS += tests/e2e_restart.sh
dist_check_SCRIPTS += tests/e2e_restart.sh
# The same with --workers 2: each worker's tunnels and listeners move, a
# new instance with another worker count is refused.
TESTS += tests/e2e_restart_workers.sh
dist_check_SCRIPTS += tests/e2e_restart_workers.sh
EXTRA_DIST += tests/handover_peer.py tests/hold_relay.py tests/restart_lib.sh

# The attacks of a security review, replayed against the real programs:
# hostile peers written by hand (h2evil), HTTP/1.1 probes with deadlines
# (probe) and a strict JSON validator for /tunnels (jsoncheck).
ADVERSARIAL_CPPFLAGS = -I$(top_srcdir)/examples
check_PROGRAMS += tests/adversarial/h2evil tests/adversarial/probe tests/adversarial/jsoncheck
tests_adversarial_h2evil_SOURCES = tests/adversarial/h2evil.c
tests_adversarial_h2evil_CPPFLAGS = $(ADVERSARIAL_CPPFLAGS)
tests_adversarial_h2evil_CFLAGS = $(WARN_CFLAGS)
tests_adversarial_h2evil_LDADD = examples/libexcommon.la
tests_adversarial_probe_SOURCES = tests/adversarial/probe.c
tests_adversarial_probe_CPPFLAGS = $(ADVERSARIAL_CPPFLAGS)
tests_adversarial_probe_CFLAGS = $(WARN_CFLAGS)
tests_adversarial_probe_LDADD = examples/libexcommon.la
tests_adversarial_jsoncheck_SOURCES = tests/adversarial/jsoncheck.c
tests_adversarial_jsoncheck_CFLAGS = $(WARN_CFLAGS)
TESTS += tests/adversarial/proxy.sh
dist_check_SCRIPTS += tests/adversarial/proxy.sh
else
EXTRA_DIST += man/revtun-upstream-proxy.1 tests/e2e.sh tests/e2e_workers.sh tests/fleet.sh tests/fleet_faults.sh \
	examples/proxy/fleet.c examples/proxy/workers.c \
	bench/relay.c \
	examples/sock.c examples/sock.h examples/recycle.c examples/recycle.h \
	examples/tls.c examples/tls.h examples/agent/tls.c examples/proxy/tls.c \
	tests/adversarial/proxy.sh tests/adversarial/h2evil.c tests/adversarial/probe.c \
	tests/adversarial/jsoncheck.c
endif
