#!/bin/sh
# tests/symbols.sh for libupstream-revtun-redis: include/revtun/redis.h, its
# version script, its exports and its man pages name the same functions.
bld=${top_builddir:-.}
if ! ls "$bld"/lib/.libs/libupstream-revtun-redis.so.[0-9]* >/dev/null 2>&1; then
  echo "libupstream-revtun-redis is not built (hiredis or libevent missing)"
  [ -n "${CI:-}" ] && exit 1
  exit 77
fi
SYMBOLS_HEADERS=include/revtun/redis.h SYMBOLS_API=REVTUN_REDIS_API \
  SYMBOLS_SYM=lib/redis/libupstream-revtun-redis.sym SYMBOLS_LIB=libupstream-revtun-redis \
  SYMBOLS_PREFIX=revtun_redis_ SYMBOLS_OTHER_MAN='^$' \
  exec sh "${top_srcdir:-.}/tests/symbols.sh"
