#!/bin/sh
# Run by tests/installed.sh with the scratch DESTDIR it installed into:
# compiles the README's directory example with nothing but `pkg-config
# --cflags --libs upstream-revtun-redis libevent`, runs it against a private
# redis-server on a unix socket, and checks what it prints. Exits 77 when the
# library or redis-server is missing (1 when CI is set).
set -eu
root=$1
src=${top_srcdir:-.}
bld=${top_builddir:-.}
skip() {
  echo "$1"
  [ -n "${CI:-}" ] && exit 1
  exit 77
}
ls "$bld"/lib/.libs/libupstream-revtun-redis.so.[0-9]* >/dev/null 2>&1 ||
  skip "libupstream-revtun-redis is not built (hiredis or libevent missing)"
command -v redis-server >/dev/null 2>&1 || skip "redis-server is not on PATH"
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

# the installed .pc files name the configured prefix; point them into the root
mkdir -p "$tmp/pc"
for name in upstream-revtun upstream-revtun-redis; do
  pc=$(find "$root" -name "$name.pc" | head -n 1)
  prefix=$(sed -n 's/^prefix=//p' "$pc")
  sed "s#^prefix=.*#prefix=$root$prefix#" "$pc" >"$tmp/pc/$name.pc"
done
export PKG_CONFIG_PATH="$tmp/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

awk '/<!-- embed-redis-example -->/ { on = 1; next } on && /^```c/ { inside = 1; next }
     inside && /^```/ { exit } inside { print }' "$src/README.md" >"$tmp/fleet.c"
[ -s "$tmp/fleet.c" ] || { echo "no directory example found in README.md"; exit 1; }
libdir=$(pkg-config --variable=libdir upstream-revtun-redis)
# CFLAGS/LDFLAGS carry the sanitizer flags when the build uses them
${CC:-cc} ${CFLAGS:-} -Wall -Wextra -Werror -o "$tmp/fleet" "$tmp/fleet.c" ${LDFLAGS:-} \
  $(pkg-config --cflags --libs upstream-revtun-redis libevent) -Wl,-rpath,"$libdir"

redis-server --port 0 --unixsocket "$tmp/redis.sock" --save '' --appendonly no \
  --daemonize no --logfile "" --loglevel warning >/dev/null 2>&1 &
pid=$!
i=0
while [ ! -S "$tmp/redis.sock" ]; do
  i=$((i + 1))
  [ $i -lt 500 ] || { echo "redis-server did not start"; exit 1; }
  sleep 0.01
done
"$tmp/fleet" "$tmp/redis.sock" >"$tmp/out"
printf '%s\n' "start: REVTUN_OK" "edge-1: REVTUN_OK 10.0.0.1:8080" >"$tmp/want"
diff -u "$tmp/want" "$tmp/out"
test -f "$(pkg-config --variable=includedir upstream-revtun-redis)/revtun/redis.h"
test -n "$(find "$root" -name revtun_redis_new.3)"
test -n "$(find "$root" -name revtun_redis.7)"
echo "README directory example built against the installed libraries and found its node"
