#!/bin/sh
# The ABI bookkeeping agrees with itself: the functions declared REVTUN_API
# in the public header, the version script, the dynamic symbols the shared
# object exports, and the man pages name exactly the same set.
set -eu
src=${top_srcdir:-.}
bld=${top_builddir:-.}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# declarations may wrap: the first revtun_*( after each REVTUN_API is the name
tr '\n' ' ' <"$src/include/revtun/revtun.h" | sed 's/REVTUN_API/\n&/g' | grep '^REVTUN_API ' |
  sed 's/(.*//' | grep -o 'revtun_[a-z0-9_]*$' | sort -u >"$tmp/header"
grep -o 'revtun_[a-z0-9_]*;' "$src/lib/libupstream-revtun.sym" | tr -d ';' | sort -u >"$tmp/sym"
so=$(ls "$bld"/lib/.libs/libupstream-revtun.so.[0-9]* | head -n 1)
nm -D --defined-only "$so" | awk '$2 == "T" { print $3 }' | sed 's/@.*//' | sort -u >"$tmp/exported"
nm -D --defined-only "$so" | awk '$2 != "A" { print $3 }' | sed 's/@.*//' |
  grep -v '^revtun_' >"$tmp/foreign" || true
ls "$src"/man/revtun_*.3 | sed 's#.*/##; s#\.3$##' | grep -v '^revtun_libevent$' | sort -u >"$tmp/man"

status=0
for f in sym exported man; do
  if ! diff -u "$tmp/header" "$tmp/$f" >"$tmp/diff"; then
    echo "header and $f disagree:"
    cat "$tmp/diff"
    status=1
  fi
done
if [ -s "$tmp/foreign" ]; then
  echo "symbols exported that are not revtun_*:"
  cat "$tmp/foreign"
  status=1
fi
echo "$(wc -l <"$tmp/header") public functions: header, version script, exports and man pages agree"
exit $status
