#!/bin/sh
# The ABI bookkeeping agrees with itself: the functions declared REVTUN_API
# in the public headers, the version script, the dynamic symbols the shared
# object exports, and the man pages name exactly the same set.
# The SYMBOLS_* variables name another library to check the same way
# (tests/symbols_redis.sh).
set -eu
src=${top_srcdir:-.}
bld=${top_builddir:-.}
headers=${SYMBOLS_HEADERS:-include/revtun/revtun.h include/revtun/transport.h}
api=${SYMBOLS_API:-REVTUN_API}
symfile=${SYMBOLS_SYM:-lib/libupstream-revtun.sym}
lib=${SYMBOLS_LIB:-libupstream-revtun}
fn=${SYMBOLS_PREFIX:-revtun_}
# man3 pages that are not this library's functions
other_man=${SYMBOLS_OTHER_MAN:-'^revtun_libevent$|^revtun_redis_|^revtun_openssl_'}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# declarations may wrap: the first revtun_*( after each REVTUN_API is the name
# (every public header of the library, SYMBOLS_HEADERS)
for h in $headers; do cat "$src/$h"; done | tr '\n' ' ' | sed "s/$api/\\n&/g" | grep "^$api " |
  sed 's/(.*//' | grep -o "${fn}[a-z0-9_]*\$" | sort -u >"$tmp/header"
grep -o "${fn}[a-z0-9_]*;" "$src/$symfile" | tr -d ';' | sort -u >"$tmp/sym"
so=$(ls "$bld"/lib/.libs/$lib.so.[0-9]* | head -n 1)
nm -D --defined-only "$so" | awk '$2 == "T" { print $3 }' | sed 's/@.*//' | sort -u >"$tmp/exported"
nm -D --defined-only "$so" | awk '$2 != "A" { print $3 }' | sed 's/@.*//' |
  grep -v "^$fn" >"$tmp/foreign" || true
ls "$src"/man/${fn}*.3 | sed 's#.*/##; s#\.3$##' | grep -Ev "$other_man" | sort -u >"$tmp/man"

status=0
for f in sym exported man; do
  if ! diff -u "$tmp/header" "$tmp/$f" >"$tmp/diff"; then
    echo "header and $f disagree:"
    cat "$tmp/diff"
    status=1
  fi
done
if [ -s "$tmp/foreign" ]; then
  echo "symbols exported that are not ${fn}*:"
  cat "$tmp/foreign"
  status=1
fi
echo "$(wc -l <"$tmp/header") public functions: header, version script, exports and man pages agree"
exit $status
