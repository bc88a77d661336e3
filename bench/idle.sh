#!/bin/sh
# bench/idle.sh: what parked tunnels cost the real proxy, against the floor.
#
#   bench/idle.sh [--build DIR] [--tunnels N] [--duration S] [--interval-ms MS] [--tls]
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
# --tls: a second proxy with a TLS tunnel listener (mutual TLS, certificates
# made with the openssl command) gets another N tunnels from agents dialing
# with --tls, and its CPU is read in the same window: parked tunnels are raw
# TCP once the handshake-phase session is dropped, so the ratio TLS/plaintext
# should be about 1.
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
TLS=no
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift ;;
    --tunnels) N=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --interval-ms) IVL=$2; shift ;;
    --tls) TLS=yes ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
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
[ $TLS = no ] || command -v openssl >/dev/null || { echo "bench/idle.sh: --tls needs openssl; skipped"; exit 77; }
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

# agents PREFIX TUNNEL_PORT [AGENT FLAGS...]: N tunnels, PER_AGENT per process
agents() {
  _pre=$1 _port=$2 _left=$N _i=0
  shift 2
  while [ "$_left" -gt 0 ]; do
    _k=$PER_AGENT
    [ "$_left" -lt "$_k" ] && _k=$_left
    spawn "$_pre$_i" "$T/$_pre$_i.log" "$EX/revtun-downstream-agent" --upstream 127.0.0.1:$_port \
      --node idle --cluster idle --tenant idle --count "$_k" --backend 127.0.0.1:9 \
      --max-backoff-ms 2000 "$@"
    _left=$((_left - _k))
    _i=$((_i + 1))
  done
}
agents agent $TUN
parked() { [ "$(node_field 127.0.0.1:$1 idle idle)" = "$N" ]; }
wait_until 180 parked $ADM || die "only $(node_field 127.0.0.1:$ADM idle idle) of $N tunnels parked"

if [ $TLS = yes ]; then
  P=$T/pki
  mkdir "$P"
  EC="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
  # leaf NAME EXT: a certificate of the throwaway CA
  leaf() {
    printf '%s\n' "$2" >"$P/$1.ext"
    openssl req -new $EC -keyout "$P/$1.key" -out "$P/$1.csr" -subj "/CN=$1" 2>/dev/null &&
      openssl x509 -req -in "$P/$1.csr" -CA "$P/ca.pem" -CAkey "$P/ca.key" -CAcreateserial \
        -days 1 -out "$P/$1.pem" -extfile "$P/$1.ext" 2>/dev/null
  }
  openssl req -x509 $EC -keyout "$P/ca.key" -out "$P/ca.pem" -days 1 -subj "/CN=bench CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null &&
    leaf upstream "subjectAltName=DNS:localhost" && leaf idle "subjectAltName=DNS:idle" ||
    die "openssl could not make the certificates"
  pick_port TUN2
  pick_port CLI2
  pick_port ADM2
  spawn proxy_tls "$T/proxy_tls.log" "$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$TUN2 \
    --listen 127.0.0.1:$CLI2 --admin-listen 127.0.0.1:$ADM2 --acceptor-config "$T/acceptor.bin" \
    --tunnel-tls-cert "$P/upstream.pem" --tunnel-tls-key "$P/upstream.key" --tunnel-tls-ca "$P/ca.pem"
  wait_until 10 curl -sf -o /dev/null "http://127.0.0.1:$ADM2/tunnels" || die "TLS proxy did not start"
  agents tagent $TUN2 --tls --ca "$P/ca.pem" --sni localhost --cert "$P/idle.pem" --key "$P/idle.key"
  wait_until 180 parked $ADM2 || die "only $(node_field 127.0.0.1:$ADM2 idle idle) of $N TLS tunnels parked"
fi
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
[ $TLS = yes ] && t0=$(ticks "$PID_proxy_tls")
sleep "$DUR"
p1=$(ticks "$PID_proxy")
f1=$(ticks "$PID_floor")
[ $TLS = yes ] && t1=$(ticks "$PID_proxy_tls")
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
if [ $TLS = yes ]; then
  [ "$(node_field 127.0.0.1:$ADM2 idle idle)" = "$N" ] || die "TLS tunnels were lost during the measurement"
  awk -v p="$((p1 - p0))" -v t="$((t1 - t0))" -v hz="$HZ" -v d="$DUR" -v n="$N" -v ivl="$IVL" 'BEGIN {
    pings = n * d * 1000 / ivl
    printf "TLS proxy:  %6.2f s CPU in %d s = %5.1f %% of a core, %6.2f us per ping round trip (tunnels arrived over TLS)\n", t / hz, d, 100 * t / hz / d, t / hz * 1e6 / pings
    r = p > 0 ? t / p : 0
    printf "TLS/plaintext parked-tunnel CPU = %.2f   (expected about 1: parked tunnels are raw TCP)\n", r
    printf "RESULT|idle|TLS proxy us/ping round trip|%.2f|us|-|info\n", t / hz * 1e6 / pings
    printf "RESULT|idle|TLS/plaintext parked CPU @%d tunnels|%.2f|x|~1|info\n", n, r
  }'
fi
