# issue 5 (observability): the substitution-format engine (parser and
# renderer). Its corpus is replayed by `make check` like the others; the
# engine's sources are compiled in because its API is internal.
check_PROGRAMS += fuzz/replay_format
TESTS += fuzz/replay_format
VALGRIND_TESTS += fuzz/replay_format
fuzz_replay_format_SOURCES = fuzz/replay.c fuzz/fuzz_format.c $(FORMAT_ENGINE_SRC)
fuzz_replay_format_CPPFLAGS = $(FORMAT_ENGINE_CPPFLAGS) \
	-DCORPUS_DIR='"$(abs_srcdir)/fuzz/corpus/format"'
fuzz_replay_format_CFLAGS = $(WARN_CFLAGS)
fuzz_replay_format_LDADD = lib/libupstream-revtun.la

if ENABLE_FUZZERS
noinst_PROGRAMS += fuzz/fuzz_format
fuzz_fuzz_format_SOURCES = fuzz/fuzz_format.c $(FORMAT_ENGINE_SRC)
fuzz_fuzz_format_CPPFLAGS = $(FORMAT_ENGINE_CPPFLAGS)
fuzz_fuzz_format_CFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_format_LDFLAGS = -fsanitize=fuzzer,address,undefined
fuzz_fuzz_format_LDADD = lib/libupstream-revtun.la
endif
