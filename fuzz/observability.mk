# The substitution-format engine (parser and renderer). Its corpus is
# replayed by `make check` like the others; the harness links the
# convenience library because the engine's API is internal.
check_PROGRAMS += fuzz/replay_format
TESTS += fuzz/replay_format
VALGRIND_TESTS += fuzz/replay_format
fuzz_replay_format_SOURCES = fuzz/replay.c fuzz/fuzz_format.c
fuzz_replay_format_CPPFLAGS = $(FUZZ_CPPFLAGS) -I$(top_srcdir)/lib -Ilib/proto $(PROTOBUF_C_CFLAGS) \
	-DCORPUS_DIR='"$(abs_srcdir)/fuzz/corpus/format"'
fuzz_replay_format_CFLAGS = $(WARN_CFLAGS)
fuzz_replay_format_LDADD = $(LIB_CORE_LIBS)

if ENABLE_FUZZERS
noinst_PROGRAMS += fuzz/fuzz_format
fuzz_fuzz_format_SOURCES = fuzz/fuzz_format.c
fuzz_fuzz_format_CPPFLAGS = $(FUZZ_CPPFLAGS) -I$(top_srcdir)/lib -Ilib/proto $(PROTOBUF_C_CFLAGS)
fuzz_fuzz_format_CFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_format_LDFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_format_LDADD = $(LIB_CORE_LIBS)
endif
