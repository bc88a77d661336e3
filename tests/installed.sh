#!/bin/sh
# Installs the library into a scratch DESTDIR, then compiles the README's
# embedding example with nothing but `pkg-config --cflags --libs
# upstream-revtun`, runs it, and checks what it prints.
set -eu
src=${top_srcdir:-.}
bld=${top_builddir:-.}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

${MAKE:-make} -C "$bld" install DESTDIR="$tmp/root" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; exit 1; }
# the installed .pc names the configured prefix; point it into the scratch root
pc=$(find "$tmp/root" -name upstream-revtun.pc | head -n 1)
prefix=$(sed -n 's/^prefix=//p' "$pc")
mkdir -p "$tmp/pc"
sed "s#^prefix=.*#prefix=$tmp/root$prefix#" "$pc" >"$tmp/pc/upstream-revtun.pc"
export PKG_CONFIG_PATH="$tmp/pc"

# the code block right after the marker in README.md
awk '/<!-- embed-example -->/ { on = 1; next } on && /^```c/ { inside = 1; next }
     inside && /^```/ { exit } inside { print }' "$src/README.md" >"$tmp/embed.c"
[ -s "$tmp/embed.c" ] || { echo "no example found in README.md"; exit 1; }

libdir=$(pkg-config --variable=libdir upstream-revtun)
# CFLAGS/LDFLAGS carry the sanitizer flags when the build uses them
${CC:-cc} ${CFLAGS:-} -Wall -Wextra -Werror -o "$tmp/embed" "$tmp/embed.c" ${LDFLAGS:-} \
  $(pkg-config --cflags --libs upstream-revtun) -Wl,-rpath,"$libdir"
"$tmp/embed" >"$tmp/out"
printf '%s\n' "tunnel_setup node-1" "idle_ping_sent node-1" "idle_ping_ack node-1" \
  "socket_handoff node-1" "tunnel_closed node-1" >"$tmp/want"
diff -u "$tmp/want" "$tmp/out"
# the installed headers are self-contained and the man pages are there
test -f "$(pkg-config --variable=includedir upstream-revtun)/revtun/adapters/libevent.h"
test -n "$(find "$tmp/root" -name revtun_new.3)"
echo "README example built against the installed library and printed the expected records"
# the optional directory library, from the same installation
rc=0
sh "$src/tests/installed_redis.sh" "$tmp/root" || rc=$?
[ $rc -eq 0 ] || [ $rc -eq 77 ] || exit $rc
