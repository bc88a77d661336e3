# Programs a user runs. minimal-poll needs only the library; the tunnel
# programs need libevent and nghttp2 (HAVE_EXAMPLES) and are installed.
noinst_PROGRAMS += examples/minimal-poll
examples_minimal_poll_SOURCES = examples/minimal-poll.c
examples_minimal_poll_CPPFLAGS = -I$(top_srcdir)/include -Iinclude
examples_minimal_poll_CFLAGS = $(WARN_CFLAGS)
examples_minimal_poll_LDADD = lib/libupstream-revtun.la

if HAVE_EXAMPLES
bin_PROGRAMS += examples/revtun-downstream-agent examples/revtun-demo-backend
examples_revtun_downstream_agent_SOURCES = examples/downstream-agent.c
examples_revtun_downstream_agent_CFLAGS = $(WARN_CFLAGS) $(LIBEVENT_CFLAGS) $(NGHTTP2_CFLAGS)
examples_revtun_downstream_agent_LDADD = $(LIBEVENT_LIBS) $(NGHTTP2_LIBS)
examples_revtun_demo_backend_SOURCES = examples/demo-backend.c
examples_revtun_demo_backend_CFLAGS = $(WARN_CFLAGS) $(LIBEVENT_CFLAGS)
examples_revtun_demo_backend_LDADD = $(LIBEVENT_LIBS)
endif
