# The library: lib/*.c, the public headers, and the protobuf-c code generated
# from lib/proto at build time.
lib_LTLIBRARIES = lib/libupstream-revtun.la

revtunincludedir = $(includedir)/revtun
revtuninclude_HEADERS = include/revtun/revtun.h
nodist_revtuninclude_HEADERS = include/revtun/version.h
revtunadaptersdir = $(includedir)/revtun/adapters
revtunadapters_HEADERS = include/revtun/adapters/libevent.h
revtuninclude_HEADERS += include/revtun/reporter_module.h include/revtun/transport.h

PROTO_FILES = \
	lib/proto/envoy/config/accesslog/v3/accesslog.proto \
	lib/proto/envoy/config/core/v3/base.proto \
	lib/proto/envoy/config/core/v3/extension.proto \
	lib/proto/envoy/config/core/v3/substitution_format_string.proto \
	lib/proto/envoy/extensions/access_loggers/file/v3/file.proto \
	lib/proto/envoy/extensions/access_loggers/stream/v3/stream.proto \
	lib/proto/envoy/extensions/bootstrap/reverse_tunnel/reporter/dynamic_modules/v3/dynamic_module_reporter.proto \
	lib/proto/envoy/extensions/bootstrap/reverse_tunnel/upstream_socket_interface/v3/upstream_reverse_connection_socket_interface.proto \
	lib/proto/envoy/extensions/dynamic_modules/v3/dynamic_modules.proto \
	lib/proto/envoy/extensions/filters/network/reverse_tunnel/v3/reverse_tunnel.proto
WKT_PROTOS = any duration struct wrappers

PROTO_GEN_C = \
	lib/proto/envoy/config/accesslog/v3/accesslog.pb-c.c \
	lib/proto/envoy/config/core/v3/base.pb-c.c \
	lib/proto/envoy/config/core/v3/extension.pb-c.c \
	lib/proto/envoy/config/core/v3/substitution_format_string.pb-c.c \
	lib/proto/envoy/extensions/access_loggers/file/v3/file.pb-c.c \
	lib/proto/envoy/extensions/access_loggers/stream/v3/stream.pb-c.c \
	lib/proto/envoy/extensions/bootstrap/reverse_tunnel/reporter/dynamic_modules/v3/dynamic_module_reporter.pb-c.c \
	lib/proto/envoy/extensions/bootstrap/reverse_tunnel/upstream_socket_interface/v3/upstream_reverse_connection_socket_interface.pb-c.c \
	lib/proto/envoy/extensions/dynamic_modules/v3/dynamic_modules.pb-c.c \
	lib/proto/envoy/extensions/filters/network/reverse_tunnel/v3/reverse_tunnel.pb-c.c \
	lib/proto/google/protobuf/any.pb-c.c \
	lib/proto/google/protobuf/duration.pb-c.c \
	lib/proto/google/protobuf/struct.pb-c.c \
	lib/proto/google/protobuf/wrappers.pb-c.c
PROTO_GEN_H = $(PROTO_GEN_C:.c=.h)

# One protoc run makes every file; the stamp keeps make from running it per file.
lib/proto/.stamp: $(PROTO_FILES)
	$(AM_V_GEN)$(MKDIR_P) lib/proto && \
	$(PROTOC) --plugin=protoc-gen-c=$(PROTOC_GEN_C) -I$(srcdir)/lib/proto -I$(PROTOBUF_INCLUDE) \
	  --c_out=lib/proto $(patsubst %,$(srcdir)/%,$(PROTO_FILES)) && \
	$(PROTOC) --plugin=protoc-gen-c=$(PROTOC_GEN_C) -I$(PROTOBUF_INCLUDE) --c_out=lib/proto \
	  $(patsubst %,google/protobuf/%.proto,$(WKT_PROTOS)) && \
	touch $@
$(PROTO_GEN_C) $(PROTO_GEN_H): lib/proto/.stamp

# Encodes protobuf text ($<) into its binary message ($@) with the reference
# `protoc --encode`; the text's first line names the message
# ("# proto-message: <full name>"). Used for the test and example configs.
PROTO_NAMES = $(patsubst lib/proto/%,%,$(PROTO_FILES))
ENCODE_TXTPB = $(MKDIR_P) $(@D) && msg=`sed -n '1s/^\# proto-message: *//p' $<` && \
	$(PROTOC) -I$(srcdir)/lib/proto -I$(PROTOBUF_INCLUDE) --encode=$$msg $(PROTO_NAMES) \
	  < $< > $@.tmp && mv $@.tmp $@

BUILT_SOURCES += lib/proto/.stamp
CLEANFILES += lib/proto/.stamp $(PROTO_GEN_C) $(PROTO_GEN_H)
EXTRA_DIST += $(PROTO_FILES) lib/proto/README lib/libupstream-revtun.sym

# Every library source is compiled once, into a convenience library that the
# shared library, the tests, the benchmarks and the fuzzers all link. The
# shared object exports only what the version script lists; programs that
# link the convenience library directly (internal tests, benchmarks,
# fuzzers) reach the internal API too.
noinst_LTLIBRARIES += lib/libupstream-revtun-core.la
lib_libupstream_revtun_core_la_SOURCES = \
	lib/base/conn_meta.c lib/base/conn_meta.h \
	lib/base/deadline_heap.c lib/base/deadline_heap.h \
	lib/base/hash.c lib/base/hash.h \
	lib/base/ids.c lib/base/ids.h \
	lib/base/macros.h \
	lib/base/mem.c lib/base/mem.h \
	lib/base/names.c \
	lib/base/proto.c lib/base/proto.h \
	lib/base/rping.c lib/base/rping.h \
	lib/base/sockaddr.c lib/base/sockaddr.h \
	lib/base/text.c lib/base/text.h \
	lib/core/config.c lib/core/config.h \
	lib/core/event.c lib/core/event.h \
	lib/core/fdtable.c lib/core/fdtable.h \
	lib/core/handle.c lib/core/handle.h \
	lib/core/host.c lib/core/host.h \
	lib/core/intern.c lib/core/intern.h \
	lib/core/options.c lib/core/options.h \
	lib/core/reentry.c lib/core/reentry.h \
	lib/core/stats.c lib/core/stats.h \
	lib/format/format.c lib/format/format.h lib/format/format_int.h \
	lib/format/format_json.c \
	lib/format/format_ops.c \
	lib/format/format_seq.c \
	lib/format/format_sfs.c \
	lib/format/format_sink.c \
	lib/format/format_time.c \
	lib/pool/directory.c lib/pool/directory.h \
	lib/pool/handoff.c \
	lib/pool/hostsel.c \
	lib/pool/keepalive.c lib/pool/keepalive.h \
	lib/pool/move.c lib/pool/move.h \
	lib/pool/pool.c lib/pool/pool.h lib/pool/pool_int.h \
	lib/pool/pool_record.c \
	lib/pool/pool_view.c \
	lib/pool/reg_builder.c \
	lib/pool/remote.c lib/pool/remote.h \
	lib/pool/sockstate.c lib/pool/sockstate.h \
	lib/acceptor/acceptor.c lib/acceptor/acceptor.h lib/acceptor/acceptor_int.h \
	lib/acceptor/acceptor_config.c \
	lib/acceptor/acceptor_validate.c \
	lib/acceptor/handshake.c lib/acceptor/handshake.h \
	lib/acceptor/transport.c lib/acceptor/transport.h \
	lib/observe/accesslog.c lib/observe/accesslog.h lib/observe/accesslog_int.h \
	lib/observe/accesslog_spec.c \
	lib/observe/dynamic_module.c lib/observe/dynamic_module.h \
	lib/observe/logfile.c lib/observe/logfile.h \
	lib/observe/prometheus.c \
	lib/observe/reporter.c lib/observe/reporter.h \
	lib/observe/stats_walk.c lib/observe/stats_walk.h \
	lib/api/lifecycle.c \
	lib/api/loop.c
nodist_lib_libupstream_revtun_core_la_SOURCES = $(PROTO_GEN_C)
nodist_noinst_HEADERS = $(PROTO_GEN_H)
LIB_CPPFLAGS = -DBUILDING_REVTUN -I$(top_srcdir)/include -Iinclude \
	-Ilib/proto -I$(top_srcdir)/lib $(PROTOBUF_C_CFLAGS)
lib_libupstream_revtun_core_la_CPPFLAGS = $(LIB_CPPFLAGS)
lib_libupstream_revtun_core_la_CFLAGS = $(REVTUN_VISIBILITY_CFLAGS) $(STRICT_WARN_CFLAGS)
# what a program linking the convenience library needs besides it
LIB_CORE_LIBS = lib/libupstream-revtun-core.la $(PROTOBUF_C_LIBS)

lib_libupstream_revtun_la_SOURCES =
lib_libupstream_revtun_la_LIBADD = lib/libupstream-revtun-core.la $(PROTOBUF_C_LIBS)
lib_libupstream_revtun_la_LDFLAGS = -no-undefined \
	-version-info $(REVTUN_LT_CURRENT):$(REVTUN_LT_REVISION):$(REVTUN_LT_AGE) \
	-Wl,--version-script=$(srcdir)/lib/libupstream-revtun.sym
EXTRA_lib_libupstream_revtun_la_DEPENDENCIES = $(srcdir)/lib/libupstream-revtun.sym
