#!/bin/sh
# README "Where it differs from Envoy" agrees with the code where a number or
# a name can be compared: the stat_prefix cap, the histogram names, the
# Prometheus flags, the operators it says are refused or not yet supported,
# the connection metadata's bounds, and the host selector's operators and
# limits.
set -eu
src=${top_srcdir:-.}
readme=$src/README.md
section=$(sed -n '/^## Where it differs from Envoy/,/^## Building/p' "$readme")
todo=$(echo "$section" | sed -n '/^### Not yet the same/,$p')
hdr=$src/include/revtun/revtun.h
status=0
fail() { echo "FAIL - $*"; status=1; }
define() { sed -n "s/^#define $1 \([0-9]*\).*/\1/p" "$hdr"; }

cap=$(sed -n 's/^#define RT_MAX_STAT_PREFIX \([0-9]*\)u.*/\1/p' "$src/lib/core/config.c")
echo "$section" | grep -q "\`stat_prefix\` is at most $cap bytes" ||
  fail "README does not state the stat_prefix cap of lib/core/config.c ($cap)"
for h in $(sed -n 's/.*\[RT_H_[A-Z_]*\] = "\([a-z_]*\)".*/\1/p' "$src/lib/core/stats.c"); do
  echo "$section" | grep -q "<prefix>.$h" || fail "histogram $h missing from README"
done
for f in REVTUN_PROM_HIDDEN_INCLUDE REVTUN_PROM_LABELS; do
  grep -q "#define $f" "$hdr" || fail "$f in README but not in revtun.h"
  echo "$section" | grep -q "$f" || fail "$f missing from README"
done
# access-log operators: the ones the format engine knows are not listed as
# missing, and the two it added are described
for op in ACCESS_LOG_TYPE CONNECTION_ID; do
  if grep -q "\"$op\"" "$src/lib/format/"*.c; then
    echo "$todo" | grep -q "%$op%" && fail "README lists %$op% as not done; lib/format knows it"
    echo "$section" | grep -q "%$op%" || fail "README does not say how %$op% renders"
  else
    echo "$todo" | grep -q "%$op%" || fail "lib/format lacks %$op% and README does not say so"
  fi
done
# validation formats: what the acceptor's mask lacks is listed as not done
ops=$(sed -n '/#define RT_FMT_OPS_HANDSHAKE/,/)$/p' "$src/lib/format/format.h")
for pair in DYNAMIC_METADATA:RT_FMT_OP_DYNAMIC_METADATA FILTER_STATE:RT_FMT_OP_FILTER_STATE; do
  op=${pair%%:*} bit=${pair#*:}
  if echo "$ops" | grep -q "$bit"; then
    echo "$todo" | grep -q "%$op(" && fail "README lists %$op(...)% in validation as not done"
  else
    echo "$todo" | grep -q "%$op(" || fail "validation formats lack %$op(...)% and README does not say so"
  fi
done
# the connection metadata validation formats read: its bounds are revtun.h's,
# and FIELD, which lib/format refuses, is listed as refused
flat=$(echo "$section" | tr '\n' ' ' | tr -s ' ')
e=$(define REVTUN_CONN_META_MAX_ENTRIES) nm=$(define REVTUN_CONN_META_MAX_NAME)
v=$(define REVTUN_CONN_META_MAX_VALUE)
echo "$flat" | grep -q "read what the host attached with \`revtun_acceptor_accept_with_meta()\`" ||
  fail "README does not say where validation's %DYNAMIC_METADATA/%FILTER_STATE values come from"
echo "$flat" | grep -q "at most $e entries, names of at most $nm bytes without \`:\`, values of at most $v bytes" ||
  fail "README's connection metadata bounds differ from revtun.h ($e, $nm, $v)"
grep -q "only the PLAIN and TYPED serializations are supported" "$src/lib/format/format_ops.c" &&
  { echo "$flat" | grep -q "%FILTER_STATE(key:FIELD:f)%\` is a config error" ||
    fail "lib/format refuses FILTER_STATE's FIELD and README does not say so"; }
# host selection: only %REQ(...)%, and the header limits of revtun.h
grep -q "rt_fmt_compile(.*RT_FMT_OP_REQ, " "$src/lib/pool/hostsel.c" ||
  fail "lib/pool/hostsel.c compiles with more than %REQ(...)%; README says only that"
echo "$section" | grep -q "renders only \`%REQ(...)%\`" || fail "README does not name the selector's operators"
n=$(define REVTUN_HEADER_MAX_COUNT) b=$(define REVTUN_HEADER_MAX_BYTES) k=$(define REVTUN_HOSTSEL_KEY_MAX)
echo "$section" | grep -q "At most $n headers and $b" || fail "README's header limits differ from revtun.h ($n, $b)"
echo "$section" | grep -q "longer than $k bytes" || fail "README's key limit differs from revtun.h ($k)"
echo "$todo" | grep -q "host_id_format" && fail "README lists host selection as not done"
[ $status -eq 0 ] && echo "README's differences agree with the code"
exit $status
