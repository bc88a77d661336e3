#!/bin/sh
# The library's layers, checked on what was built and on what is included.
#
# Each folder of lib/ is a layer; a layer may use the layers below it and
# itself, never one above:
#
#   proto < base < core < format < pool < acceptor < observe < api
#
#   proto     the protobuf-c code generated from lib/proto (no library code)
#   base      knows nothing of a handle: allocator hooks, text, hashing, ids,
#             the deadline heap, the RPING scanner, protobuf-c glue, names
#   core      one handle's shared services: the handle, config, options, fd
#             table and deadlines, host hooks, re-entrancy, interned strings,
#             the event record, stats storage
#   format    the substitution-format engine
#   pool      the keepalive state machine, the pool, handoff, read-only views
#   acceptor  the handshake parser and the acceptor
#   observe   access loggers, reporters, the stats walk and Prometheus
#   api       handle creation and freeing, config getters, the loop
#
# Where a lower layer must start work of a higher one, it calls through the
# function pointers of struct rt_upcalls (lib/core/handle.h), which api wires.
#
# From the objects of lib/libupstream-revtun-core.la (nm of the convenience
# archive) it maps every undefined symbol to the object that defines it,
# prints each module's uses, and fails on an edge from a layer to a higher
# one and on any cycle between modules. From the sources it does the same for
# #include "folder/name.h" between lib/'s files: no upward include, no cycle.
set -eu
src=${top_srcdir:-.}
bld=${top_builddir:-.}
archive=$bld/lib/.libs/libupstream-revtun-core.a
LAYERS="proto base core format pool acceptor observe api"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -f "$archive" ]; then
  echo "layers: $archive not found (build the library first)"
  exit 1
fi

# Source modules by object basename: lib/<folder>/<name>.c -> <folder>/<name>.
# Basenames must be unique, since archive members carry no directory.
# Only the core library's layers: companion libraries (lib/redis, ...) sit
# outside them and use only the public API.
(cd "$src/lib" && for l in $LAYERS; do [ -d "$l" ] && find "$l" -name '*.c'; done |
  grep -v '^proto/' | sed 's#\.c$##') |
  sort >"$tmp/modules"
dups=$(sed 's#.*/##' "$tmp/modules" | sort | uniq -d)
if [ -n "$dups" ]; then
  echo "layers: source file names must be unique across lib/ (archive members have no path):"
  echo "$dups"
  exit 1
fi

# nm -A -P: "archive[member.o]: symbol type value size"
nm -A -P "$archive" | sed 's#^[^[]*\[\([^]]*\)\]: #\1 #' >"$tmp/nm"

awk -v layers="$LAYERS" -v modfile="$tmp/modules" -v edges="$tmp/edges" '
  BEGIN {
    n = split(layers, L, " ")
    for (i = 1; i <= n; i++) rank[L[i]] = i
    while ((getline m < modfile) > 0) { b = m; sub(/.*\//, "", b); mod[b] = m }
  }
  function module(member,   b) {
    b = member
    sub(/^.*_la-/, "", b)
    sub(/\.o$/, "", b)
    if (b ~ /\.pb-c$/) return "proto/" b
    if (!(b in mod)) { printf "layers: no source for archive member %s\n", member; bad = 1; return "?/" b }
    return mod[b]
  }
  {
    m = module($1)
    seen[m] = 1
    if ($3 == "U") { need[m, $2] = 1; needs[++nn] = m SUBSEP $2 }
    else if ($3 ~ /^[A-TV-Z]$/) def[$2] = m
  }
  END {
    for (k = 1; k <= nn; k++) {
      split(needs[k], p, SUBSEP)
      if (!(p[2] in def)) continue           # libc, protobuf-c, libdl
      to = def[p[2]]
      if (to == p[1]) continue
      print p[1], to > edges
    }
    exit bad
  }' "$tmp/nm"
sort -u "$tmp/edges" -o "$tmp/edges"

# #include "folder/name.h" in lib/'s own sources and headers.
(cd "$src/lib" && for l in $LAYERS; do [ -d "$l" ] && [ "$l" != proto ] && find "$l" \( -name '*.c' -o -name '*.h' \); done |
  while read -r f; do
    sed -n 's#^[[:space:]]*\#[[:space:]]*include[[:space:]]*"\([a-z_]*/[a-z_]*\.h\)".*#\1#p' "$f" |
      while read -r inc; do
        case $inc in revtun/* | envoy/* | google/*) continue ;; esac
        echo "$f $inc"
      done
  done) | sort -u >"$tmp/includes"

status=0
check_upward() { # $1: file of "from to" pairs, $2: what they are
  awk -v layers="$LAYERS" -v what="$2" '
    BEGIN { n = split(layers, L, " "); for (i = 1; i <= n; i++) rank[L[i]] = i }
    function layer(x) { sub(/\/.*/, "", x); return x }
    {
      a = layer($1); b = layer($2)
      if (!(a in rank) || !(b in rank)) { printf "  %s %s -> %s: unknown layer\n", what, $1, $2; bad = 1 }
      else if (rank[b] > rank[a]) { printf "  upward %s: %s (%s) -> %s (%s)\n", what, $1, a, $2, b; bad = 1 }
    }
    END { exit bad }' "$1"
}
check_cycles() { # $1: file of "from to" pairs, $2: what they are
  if ! tsort "$1" >/dev/null 2>"$tmp/loop"; then
    echo "  cycle among the $2:"
    sed -n "s/^tsort: //p" "$tmp/loop" | grep -v "input contains a loop" | sed "s/^/    /"
    return 1
  fi
}

echo "== objects of lib/libupstream-revtun-core.la: module -> modules it uses"
for layer in $LAYERS; do
  [ "$layer" = proto ] && continue
  grep "^$layer/" "$tmp/modules" | while read -r m; do
    uses=$(awk -v m="$m" '$1 == m { print $2 }' "$tmp/edges" | grep -v '^proto/' | tr '\n' ' ')
    gen=$(awk -v m="$m" '$1 == m && $2 ~ /^proto\// { n++ } END { if (n) printf "(%d generated protobuf-c)", n }' "$tmp/edges")
    printf '  %-27s %s%s\n' "$m" "$uses" "$gen"
  done
done
check_upward "$tmp/edges" "use" || status=1
check_cycles "$tmp/edges" "objects" || status=1

echo "== headers: no upward #include, no include cycle"
check_upward "$tmp/includes" "#include" || status=1
# cycles between headers only (a .c file is never included)
grep '\.h ' "$tmp/includes" >"$tmp/hincludes" || true
check_cycles "$tmp/hincludes" "headers" || status=1

nmod=$(wc -l <"$tmp/modules")
nedge=$(wc -l <"$tmp/edges")
ninc=$(wc -l <"$tmp/includes")
if [ $status = 0 ]; then
  echo "layers: OK: $nmod modules, $nedge uses between them, $ninc includes; every one downward or within a layer, no cycle"
else
  echo "layers: FAILED (order: $LAYERS)"
fi
exit $status
