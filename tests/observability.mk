# issue 5 (observability): access loggers, the format engine, reporters and
# the Prometheus export. Configs are tests/configs/al_*, rep_* (encoded by
# the rule in tests/local.mk).

# The example reporter module, and a copy of it without a mandatory symbol.
# They are libtool modules loaded with dlopen by tests/check_reporter.
check_LTLIBRARIES += examples/librevtun_example_reporter.la tests/librevtun_broken_reporter.la
OBS_MODULE_LDFLAGS = -module -avoid-version -shared -rpath /nowhere
examples_librevtun_example_reporter_la_SOURCES = examples/reporter-module.c
examples_librevtun_example_reporter_la_CPPFLAGS = -I$(top_srcdir)/include
examples_librevtun_example_reporter_la_CFLAGS = $(WARN_CFLAGS) -fvisibility=hidden
examples_librevtun_example_reporter_la_LDFLAGS = $(OBS_MODULE_LDFLAGS)
tests_librevtun_broken_reporter_la_SOURCES = examples/reporter-module.c
tests_librevtun_broken_reporter_la_CPPFLAGS = -I$(top_srcdir)/include -DREVTUN_EXAMPLE_OMIT_DESTROY
tests_librevtun_broken_reporter_la_CFLAGS = $(WARN_CFLAGS) -fvisibility=hidden
tests_librevtun_broken_reporter_la_LDFLAGS = $(OBS_MODULE_LDFLAGS)

if HAVE_CHECK
OBS_SUITES = \
	tests/check_accesslog \
	tests/check_format \
	tests/check_prometheus \
	tests/check_reporter
check_PROGRAMS += $(OBS_SUITES)
TESTS += $(OBS_SUITES)
VALGRIND_TESTS += $(OBS_SUITES)

OBS_TEST_CPPFLAGS = $(TEST_CPPFLAGS) -I$(top_srcdir)/lib -Ilib/proto $(PROTOBUF_C_CFLAGS) \
	-DTEST_MODULE_DIR='"$(abs_builddir)/examples/.libs"' \
	-DTEST_BROKEN_MODULE_DIR='"$(abs_builddir)/tests/.libs"'

tests_check_accesslog_SOURCES = tests/check_accesslog.c
tests_check_accesslog_CPPFLAGS = $(OBS_TEST_CPPFLAGS)
tests_check_accesslog_CFLAGS = $(TEST_CFLAGS)
tests_check_accesslog_LDADD = $(TEST_LDADD)

# The format engine's internal API is not exported: its test links the
# convenience library.
tests_check_format_SOURCES = tests/check_format.c
tests_check_format_CPPFLAGS = $(OBS_TEST_CPPFLAGS)
tests_check_format_CFLAGS = $(TEST_CFLAGS)
tests_check_format_LDADD = $(TEST_INTERNAL_LDADD)

tests_check_prometheus_SOURCES = tests/check_prometheus.c
tests_check_prometheus_CPPFLAGS = $(OBS_TEST_CPPFLAGS)
tests_check_prometheus_CFLAGS = $(TEST_CFLAGS)
tests_check_prometheus_LDADD = $(TEST_LDADD)

tests_check_reporter_SOURCES = tests/check_reporter.c
tests_check_reporter_CPPFLAGS = $(OBS_TEST_CPPFLAGS)
tests_check_reporter_CFLAGS = $(TEST_CFLAGS)
tests_check_reporter_LDADD = $(TEST_LDADD)
endif
