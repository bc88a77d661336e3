# issue 5 (observability): built-in access loggers and their buffered writer,
# the substitution-format engine (shared with the handshake acceptor), the
# dynamic-module reporter and the Prometheus text export.
# lib/accesslog.c and lib/reporter.c are listed in lib/local.mk.
lib_libupstream_revtun_la_SOURCES += \
	lib/accesslog_config.c lib/accesslog_int.h \
	lib/dynmod.c lib/dynmod.h \
	lib/format.c lib/format.h lib/format_int.h \
	lib/format_json.c lib/format_ops.c lib/format_sfs.c lib/format_time.c \
	lib/logfile.c lib/logfile.h \
	lib/prometheus.c
revtuninclude_HEADERS += include/revtun/reporter_module.h

# The format engine on its own (no protobuf decoding, no handle), compiled
# into tests/check_format and fuzz/*_format so they can reach its internal
# API; the event getters it calls come from the shared library.
FORMAT_ENGINE_SRC = lib/format.c lib/format_json.c lib/format_ops.c lib/format_time.c lib/util.c \
	lib/mem.c
FORMAT_ENGINE_CPPFLAGS = -I$(top_srcdir)/include -Iinclude -I$(top_srcdir)/lib -Ilib/proto \
	$(PROTOBUF_C_CFLAGS)
