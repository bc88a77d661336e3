#!/bin/sh
# README "Where it differs from Envoy" agrees with the code where a number or
# a name can be compared: the stat_prefix cap, the histogram names, the
# Prometheus flags, and the format operators it says are refused.
set -eu
src=${top_srcdir:-.}
readme=$src/README.md
section=$(sed -n '/^## Where it differs from Envoy/,/^## Building/p' "$readme")
status=0
fail() { echo "FAIL - $*"; status=1; }

cap=$(sed -n 's/^#define RT_MAX_STAT_PREFIX \([0-9]*\)u.*/\1/p' "$src/lib/core/config.c")
echo "$section" | grep -q "\`stat_prefix\` is at most $cap bytes" ||
  fail "README does not state the stat_prefix cap of lib/core/config.c ($cap)"
for h in $(sed -n 's/.*\[RT_H_[A-Z_]*\] = "\([a-z_]*\)".*/\1/p' "$src/lib/core/stats.c"); do
  echo "$section" | grep -q "<prefix>.$h" || fail "histogram $h missing from README"
done
for f in REVTUN_PROM_HIDDEN_INCLUDE REVTUN_PROM_LABELS; do
  grep -q "#define $f" "$src/include/revtun/revtun.h" || fail "$f in README but not in revtun.h"
  echo "$section" | grep -q "$f" || fail "$f missing from README"
done
# operators README lists as refused must be unknown to the format engine
for op in ACCESS_LOG_TYPE CONNECTION_ID; do
  if echo "$section" | grep -q "%$op%"; then
    ! grep -q "\"$op\"" "$src/lib/format/"*.c || fail "README says %$op% is refused, lib/format knows it"
  fi
done
[ $status -eq 0 ] && echo "README's differences agree with the code"
exit $status
