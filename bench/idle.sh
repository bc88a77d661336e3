#!/bin/sh
# bench/idle.sh: what parked tunnels cost the real proxy, against the floor.
#
#   bench/idle.sh [--build DIR] [--tunnels N] [--duration S] [--interval-ms MS]
#
# N parked tunnels (default 10000) from revtun-downstream-agent processes
# (5000 each: the descriptor limit here is 20000 per process), RPING every
# MS (1000) ms. Over S seconds (30) it reads the CPU time (utime + stime,
# /proc/PID/stat) of revtun-upstream-proxy and, in the same window, of
# bench/idle_floor: a bare libevent loop that keeps N connections to an
# echo process and does one send(5), one readiness event and one recv per
# connection and interval. Also the proxy's resident memory per parked
# tunnel: its VmRSS with the tunnels parked, less its VmRSS before the
# first agent connected, divided by N.
#
# Prints RESULT rows for scripts/bench. Exits 77 (skipped) without protoc
# or the programs.
set -u

top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
. "$top_srcdir/tests/e2e_lib.sh"

BUILD=${BUILD_DIR:-$top_srcdir/build}
N=10000
DUR=30
IVL=1000
PER_AGENT=5000
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift ;;
    --tunnels) N=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --interval-ms) IVL=$2; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bench/idle.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case $BUILD in /*) ;; *) BUILD=$(pwd)/$BUILD ;; esac
EX=$BUILD/examples
for prog in "$EX/revtun-upstream-proxy" "$EX/revtun-downstream-agent" "$BUILD/bench/idle_floor"; do
  [ -x "$prog" ] || { echo "bench/idle.sh: $prog not built; skipped"; exit 77; }
done
command -v protoc >/dev/null || { echo "bench/idle.sh: protoc not installed; skipped"; exit 77; }
ulimit -n 20000 2>/dev/null
if [ "$(ulimit -n)" -lt $((N + 1000)) ] && [ "$N" -gt "$PER_AGENT" ]; then
  echo "bench/idle.sh: descriptor limit $(ulimit -n) is below $((N + 1000)); skipped"
  exit 77
fi

E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/revtun-idle.XXXXXX")
T=$E2E_TMP
trap 'stop_all; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
die() { echo "bench/idle.sh: $*" >&2; exit 1; }

cat >"$T/acceptor.txtpb" <<EOF
# proto-message: envoy.extensions.filters.network.reverse_tunnel.v3.ReverseTunnel
ping_interval { seconds: $((IVL / 1000)) nanos: $((IVL % 1000 * 1000000)) }
EOF
encode "$T/acceptor.txtpb" "$T/acceptor.bin" || die "cannot encode the acceptor config"

pick_port TUN
pick_port CLI
pick_port ADM
pick_port ECHO

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
HZ=$(getconf CLK_TCK)

spawn proxy "$T/proxy.log" "$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$TUN \
  --listen 127.0.0.1:$CLI --admin-listen 127.0.0.1:$ADM --acceptor-config "$T/acceptor.bin"
wait_until 10 curl -sf -o /dev/null "http://127.0.0.1:$ADM/tunnels" || die "proxy did not start"
sleep 1
RSS0=$(rss_kb "$PID_proxy")

left=$N
i=0
while [ "$left" -gt 0 ]; do
  k=$PER_AGENT
  [ "$left" -lt "$k" ] && k=$left
  spawn "agent$i" "$T/agent$i.log" "$EX/revtun-downstream-agent" --upstream 127.0.0.1:$TUN \
    --node idle --cluster idle --tenant idle --count "$k" --backend 127.0.0.1:9 --max-backoff-ms 2000
  left=$((left - k))
  i=$((i + 1))
done
parked() { [ "$(node_field 127.0.0.1:$ADM idle idle)" = "$N" ]; }
wait_until 180 parked || die "only $(node_field 127.0.0.1:$ADM idle idle) of $N tunnels parked"
sleep 8 # the first pings of every tunnel, and the proxy's trim after the burst (TRIM_QUIET_S)
RSS1=$(rss_kb "$PID_proxy")

spawn echo "$T/echo.log" "$BUILD/bench/idle_floor" echo --listen 127.0.0.1:$ECHO
wait_until 10 sh -c "ss -Htln | grep -q ':$ECHO '" || die "echo side did not start"
spawn floor "$T/floor.out" "$BUILD/bench/idle_floor" ping --connect 127.0.0.1:$ECHO --count "$N" \
  --interval-ms "$IVL"
wait_until 120 grep -q '^ready' "$T/floor.out" || die "floor did not connect $N sockets"
sleep 2

echo "# bench/idle.sh: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $N parked tunnels, RPING every $IVL ms, $DUR s"
p0=$(ticks "$PID_proxy")
f0=$(ticks "$PID_floor")
sleep "$DUR"
p1=$(ticks "$PID_proxy")
f1=$(ticks "$PID_floor")
running "$PID_floor" || die "the floor stopped (see $T/floor.out)"
[ "$(node_field 127.0.0.1:$ADM idle idle)" = "$N" ] || die "tunnels were lost during the measurement"

awk -v p="$((p1 - p0))" -v f="$((f1 - f0))" -v hz="$HZ" -v d="$DUR" -v n="$N" -v ivl="$IVL" \
  -v r0="$RSS0" -v r1="$RSS1" 'BEGIN {
  pings = n * d * 1000 / ivl
  pc = p / hz; fc = f / hz
  printf "proxy:      %6.2f s CPU in %d s = %5.1f %% of a core, %6.2f us per ping round trip\n", pc, d, 100 * pc / d, pc * 1e6 / pings
  printf "bare loop:  %6.2f s CPU in %d s = %5.1f %% of a core, %6.2f us per ping round trip\n", fc, d, 100 * fc / d, fc * 1e6 / pings
  ratio = fc > 0 ? pc / fc : 0
  printf "proxy/bare loop = %.2f   (target <= 1.3: %s)\n", ratio, ratio <= 1.3 ? "met" : "NOT met"
  per = (r1 - r0) * 1024 / n
  printf "proxy RSS: %d kB before the agents, %d kB with %d parked: %.0f B per tunnel   (target <= 1024: %s)\n", r0, r1, n, per, per <= 1024 ? "met" : "NOT met"
  printf "RESULT|idle|proxy us/ping round trip|%.2f|us|-|info\n", pc * 1e6 / pings
  printf "RESULT|idle|bare loop us/ping round trip|%.2f|us|-|info\n", fc * 1e6 / pings
  printf "RESULT|idle|proxy/bare loop CPU @%d tunnels|%.2f|x|<= 1.3|%s\n", n, ratio, ratio <= 1.3 ? "within" : "over"
  printf "RESULT|idle|proxy RSS per parked tunnel|%.0f|B|<= 1024|%s\n", per, per <= 1024 ? "within" : "over"
}'
