#!/bin/sh
# tests/symbols.sh for libupstream-revtun-openssl: include/revtun/openssl.h,
# its version script, its exports and its man pages name the same functions.
bld=${top_builddir:-.}
if ! ls "$bld"/lib/.libs/libupstream-revtun-openssl.so.[0-9]* >/dev/null 2>&1; then
  echo "libupstream-revtun-openssl is not built (OpenSSL 3 missing)"
  [ -n "${CI:-}" ] && exit 1
  exit 77
fi
SYMBOLS_HEADERS=include/revtun/openssl.h SYMBOLS_API=REVTUN_API \
  SYMBOLS_SYM=lib/openssl/libupstream-revtun-openssl.sym SYMBOLS_LIB=libupstream-revtun-openssl \
  SYMBOLS_PREFIX=revtun_openssl_ SYMBOLS_OTHER_MAN='^$' \
  exec sh "${top_srcdir:-.}/tests/symbols.sh"
