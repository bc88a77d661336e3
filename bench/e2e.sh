#!/bin/sh
# bench/e2e.sh: HTTP requests through a reverse tunnel, against the same
# requests sent directly, through OpenSSH `ssh -R`, and through a plain
# two-hop TCP relay, in one run on loopback. See bench/README-e2e.md.
#
#   bench/e2e.sh [--build DIR] [--duration S] [--rounds N] [--connections C]
#                [--streams M] [--size BYTES] [--rate REQ_PER_S] [--backend nginx|demo]
#                [--h1] [--tls] [--pin] [--cpus N] [--client-threads T]
#                [--backend-workers W] [--workers N] [--dry-run]
#
# Every path gets the same h2load load: C connections (default 32), M
# concurrent streams each (10), S seconds (8) after 1 s of warm-up,
# responses of BYTES bytes (1024); first as fast as it goes (throughput, and
# the latency that comes with it), then at a fixed REQ_PER_S (3200, latency).
# --h1: every client speaks HTTP/1.1 (h2load --h1), one request at a time
# per connection (M = 1), and every path reaches the backend's HTTP/1.1
# listener. --tls: the tunnel is encrypted end to end as scripts/quickstart
# runs it: mutual TLS on the handshake, and after each handoff a new TLS
# session (proxy as client, ALPN h2) that carries the HTTP/2 (a throwaway
# CA and certificates made with the openssl command); with --h1 the
# tunnel/ssh -R target is then 2 (both paths encrypted). --pin (more than 4 CPUs): client, proxy, agent, backend, each
# relay, sshd and ssh on cores of their own (taskset); the client gets T
# threads and nginx W workers, by default as many as their cores. --dry-run
# prints that plan (for --cpus N, default this machine's) and exits.
# --workers N (N > 1): a second tunnel path through a proxy started with
# --workers N (its own agent, 4 tunnels per worker), measured in the same
# rounds as the one-worker tunnel; with --pin the proxy gets N cores, the
# agent the next one, client and backend the rest (needs N + 3 cores).
#   direct  h2load -> backend
#   tunnel  h2load -h2c-> revtun-upstream-proxy -tunnel-> revtun-downstream-agent -> backend (HTTP/1.1)
#   ssh -R  h2load -> sshd -ssh channel-> ssh -> backend
#   relay   h2load -> relay -> relay -> backend (bench/relay.c, the cost of any two-hop path)
# The backend is nginx (h2c and HTTP/1.1 listeners) when installed, else
# revtun-demo-backend (HTTP/1.1 only; then every path but the tunnel's
# client side is HTTP/1.1). ssh -R needs root (a throwaway sshd on a free
# port) and is skipped otherwise. Each path runs --rounds times, interleaved;
# the table shows the round with the median throughput.
set -u

top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
. "$top_srcdir/tests/e2e_lib.sh"

BUILD=$top_srcdir/build
DUR=8
ROUNDS=3
CONNS=32
STREAMS=10
SIZE=1024
RATE_TOTAL=3200
BACKEND=auto
H1=no
TLS=no
PIN=no
DRY=no
CPUS=$(nproc)
CLIENT_THREADS=
BACKEND_WORKERS=
WORKERS=1
STREAMS_SET=no
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --connections) CONNS=$2; shift ;;
    --streams) STREAMS=$2; STREAMS_SET=yes; shift ;;
    --h1) H1=yes ;;
    --tls) TLS=yes ;;
    --pin) PIN=yes ;;
    --cpus) CPUS=$2; shift ;;
    --client-threads) CLIENT_THREADS=$2; shift ;;
    --backend-workers) BACKEND_WORKERS=$2; shift ;;
    --dry-run) DRY=yes ;;
    --workers) WORKERS=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --backend) BACKEND=$2; shift ;;
    --rate) RATE_TOTAL=$2; shift ;;
    -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
    *) echo "bench/e2e.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case $BUILD in /*) ;; *) BUILD=$(pwd)/$BUILD ;; esac
[ $H1 = yes ] && [ $STREAMS_SET = no ] && STREAMS=1

# ------------------------------------------------------------- core plan
# span FIRST N: the taskset list of N cores from FIRST.
span() { if [ "$2" -le 1 ]; then echo "$1"; else echo "$1-$(($1 + $2 - 1))"; fi; }
case $WORKERS in
  '' | *[!0-9]*) echo "bench/e2e.sh: --workers takes 1..64" >&2; exit 2 ;;
esac
[ "$WORKERS" -ge 1 ] && [ "$WORKERS" -le 64 ] || { echo "bench/e2e.sh: --workers takes 1..64" >&2; exit 2; }
# the first core left for client and backend: after the middle's two, or
# after the N cores of a --workers N proxy and its agent's one
FREE=2
[ "$WORKERS" -gt 1 ] && FREE=$((WORKERS + 1))
PINNED=no
if [ $PIN = yes ] && [ "$CPUS" -gt 4 ] && [ "$CPUS" -ge $((FREE + 2)) ]; then
  PINNED=yes
  # Paths are measured one at a time, so the two processes between client
  # and backend of each path (proxy and agent, relay and relay, sshd and
  # ssh) get cores 0 and 1 (a --workers N proxy 0..N-1, its agent N); the
  # client gets half of the rest (rounded up), the backend the other half.
  _client=$(((CPUS - FREE + 1) / 2))
  _backend=$((CPUS - FREE - _client))
  CORES_PROXY=0 CORES_RELAY1=0 CORES_SSHD=0
  CORES_AGENT=1 CORES_RELAY2=1 CORES_SSH=1
  CORES_PROXYW=$(span 0 "$WORKERS") CORES_AGENTW=$WORKERS
  CORES_CLIENT=$(span $FREE $_client)
  CORES_BACKEND=$(span $((FREE + _client)) $_backend)
  : "${CLIENT_THREADS:=$_client}"
  : "${BACKEND_WORKERS:=$_backend}"
elif [ $PIN = yes ]; then
  echo "# --pin: only $CPUS CPUs, so nothing is pinned (it needs more than 4, and $((FREE + 2)) with --workers $WORKERS)"
fi
: "${CLIENT_THREADS:=1}"
: "${BACKEND_WORKERS:=1}"
[ "$CLIENT_THREADS" -le "$CONNS" ] || CLIENT_THREADS=$CONNS
# on NAME: the taskset prefix that pins NAME's process, or nothing.
on() {
  [ $PINNED = yes ] || return 0
  eval "echo taskset -c \$CORES_$1"
}
if [ $DRY = yes ]; then
  echo "# bench/e2e.sh --dry-run: $CPUS CPUs, pinned: $PINNED, client: h2load -t $CLIENT_THREADS, backend: $BACKEND_WORKERS worker(s)"
  _whos="CLIENT PROXY AGENT BACKEND RELAY1 RELAY2 SSHD SSH"
  [ "$WORKERS" -gt 1 ] && _whos="$_whos PROXYW AGENTW"
  for _who in $_whos; do
    printf '  %-8s %s\n' "$_who" "$(on $_who | sed 's/^taskset -c //;s/^$/(not pinned)/')"
  done
  echo "  mode: $([ $H1 = yes ] && echo "HTTP/1.1 clients, -c $CONNS -m $STREAMS" || echo "h2c clients, -c $CONNS -m $STREAMS")"
  exit 0
fi
EX=$BUILD/examples
for prog in "$EX/revtun-upstream-proxy" "$EX/revtun-downstream-agent" "$EX/revtun-demo-backend" \
            "$BUILD/bench/relay"; do
  [ -x "$prog" ] || { echo "bench/e2e.sh: $prog not built (make in $BUILD)" >&2; exit 1; }
done
command -v h2load >/dev/null || { echo "bench/e2e.sh: h2load not installed (nghttp2-client)" >&2; exit 1; }
if [ "$BACKEND" = auto ]; then
  if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then BACKEND=nginx; else BACKEND=demo; fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
WITH_SSH=yes
if [ "$(id -u)" -ne 0 ] || [ ! -x "$SSHD" ] || ! command -v ssh >/dev/null; then
  WITH_SSH=no
fi

E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/revtun-bench.XXXXXX")
T=$E2E_TMP
trap 'stop_all; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*"; }
die() { say "bench/e2e.sh: $*" >&2; exit 1; }

pick_port BACK_H1
pick_port BACK_H2
pick_port TUN
pick_port CLI
pick_port ADM
pick_port SSHP
pick_port SSH_R
pick_port RELAY1
pick_port RELAY2

# ------------------------------------------------------------ backend
if [ $BACKEND = nginx ]; then
  mkdir -p "$T/www/size" "$T/nginx"
  pattern "$SIZE" >"$T/www/size/$SIZE"
  cat >"$T/nginx.conf" <<EOF
worker_processes $BACKEND_WORKERS;
daemon off;
master_process $([ "$BACKEND_WORKERS" -gt 1 ] && echo on || echo off);
error_log $T/nginx/error.log warn;
pid $T/nginx/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  default_type application/octet-stream;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path $T/nginx/body;
  proxy_temp_path $T/nginx/proxy;
  fastcgi_temp_path $T/nginx/fastcgi;
  uwsgi_temp_path $T/nginx/uwsgi;
  scgi_temp_path $T/nginx/scgi;
  server { listen 127.0.0.1:$BACK_H1; root $T/www; }
  server { listen 127.0.0.1:$BACK_H2 http2; root $T/www; http2_max_concurrent_streams 1024; }
}
EOF
  spawn backend "$T/backend.log" $(on BACKEND) "$NGINX" -c "$T/nginx.conf" -p "$T/nginx"
  BACK_PROTO=h2c
  BACK_DIRECT=$BACK_H2
  BACKEND_NAME="nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), $BACKEND_WORKERS worker(s)"
else
  spawn backend "$T/backend.log" $(on BACKEND) "$EX/revtun-demo-backend" --listen 127.0.0.1:$BACK_H1
  BACK_PROTO=h1
  BACK_DIRECT=$BACK_H1
  BACKEND_NAME="revtun-demo-backend"
fi
wait_until 10 curl -sf -o /dev/null "http://127.0.0.1:$BACK_H1/size/$SIZE" || die "backend did not start"
# --h1: every path ends at the backend's HTTP/1.1 listener, as the agent does.
if [ $H1 = yes ]; then
  BACK_PROTO=h1
  BACK_DIRECT=$BACK_H1
fi

# ------------------------------------------------ --tls: a throwaway PKI
PROXY_TLS="" AGENT_TLS=""
if [ $TLS = yes ]; then
  command -v openssl >/dev/null 2>&1 || die "--tls needs the openssl command"
  P=$T/pki
  mkdir "$P"
  EC="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
  # cert NAME EXTENSIONS: NAME.pem/NAME.key signed by the CA
  cert() {
    printf '%s\n' "$2" >"$P/$1.ext"
    # shellcheck disable=SC2086 # EC is words
    openssl req -new $EC -keyout "$P/$1.key" -out "$P/$1.csr" -subj "/CN=$1" 2>>"$T/openssl.log" &&
      openssl x509 -req -in "$P/$1.csr" -CA "$P/ca.pem" -CAkey "$P/ca.key" -CAcreateserial \
        -days 1 -out "$P/$1.pem" -extfile "$P/$1.ext" 2>>"$T/openssl.log"
  }
  # shellcheck disable=SC2086
  openssl req -x509 $EC -keyout "$P/ca.key" -out "$P/ca.pem" -days 1 -subj "/CN=bench CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    2>>"$T/openssl.log" &&
    cert upstream "subjectAltName=DNS:localhost
extendedKeyUsage=serverAuth" &&
    cert bench "subjectAltName=DNS:bench
extendedKeyUsage=clientAuth,serverAuth" || die "openssl failed (see $T/openssl.log)"
  PROXY_TLS="--tunnel-tls-cert $P/upstream.pem --tunnel-tls-key $P/upstream.key --tunnel-tls-ca $P/ca.pem --handoff-tls-ca $P/ca.pem"
  AGENT_TLS="--tls --ca $P/ca.pem --sni localhost --cert $P/bench.pem --key $P/bench.key"
fi

# ----------------------------------------------------- tunnel: proxy + agent
# shellcheck disable=SC2086 # the TLS flags are words
spawn proxy "$T/proxy.log" $(on PROXY) "$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$TUN \
  --listen 127.0.0.1:$CLI --admin-listen 127.0.0.1:$ADM $PROXY_TLS
wait_until 10 curl -sf -o /dev/null "http://127.0.0.1:$ADM/tunnels" || die "proxy did not start"
# shellcheck disable=SC2086
spawn agent "$T/agent.log" $(on AGENT) "$EX/revtun-downstream-agent" --upstream 127.0.0.1:$TUN \
  --node bench --cluster bench --tenant bench --count 4 --backend 127.0.0.1:$BACK_H1 $AGENT_TLS
wait_until 10 node_has_idle 127.0.0.1:$ADM bench || die "agent did not park tunnels"
if [ "$WORKERS" -gt 1 ]; then
  pick_port TUNW
  pick_port CLIW
  pick_port ADMW
  spawn proxyw "$T/proxyw.log" $(on PROXYW) "$EX/revtun-upstream-proxy" --workers "$WORKERS" \
    --tunnel-listen 127.0.0.1:$TUNW --listen 127.0.0.1:$CLIW --admin-listen 127.0.0.1:$ADMW
  wait_until 10 curl -sf -o /dev/null "http://127.0.0.1:$ADMW/tunnels" || die "proxy --workers did not start"
  spawn agentw "$T/agentw.log" $(on AGENTW) "$EX/revtun-downstream-agent" --upstream 127.0.0.1:$TUNW \
    --node bench --cluster bench --tenant bench --count $((4 * WORKERS)) --backend 127.0.0.1:$BACK_H1
  wait_until 10 node_has_idle 127.0.0.1:$ADMW bench || die "agent of the --workers proxy did not park tunnels"
fi

# ------------------------------------------------------------- relays
spawn relay2 "$T/relay.log" $(on RELAY2) "$BUILD/bench/relay" --listen 127.0.0.1:$RELAY2 --to 127.0.0.1:$BACK_DIRECT
spawn relay1 "$T/relay.log" $(on RELAY1) "$BUILD/bench/relay" --listen 127.0.0.1:$RELAY1 --to 127.0.0.1:$RELAY2

# ------------------------------------------------------------- ssh -R
if [ $WITH_SSH = yes ]; then
  ssh-keygen -q -t ed25519 -N '' -f "$T/host_key" && ssh-keygen -q -t ed25519 -N '' -f "$T/user_key" &&
    cp "$T/user_key.pub" "$T/authorized_keys" || die "ssh-keygen failed"
  cat >"$T/sshd_config" <<EOF
Port $SSHP
ListenAddress 127.0.0.1
HostKey $T/host_key
PidFile $T/sshd.pid
AuthorizedKeysFile $T/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
LogLevel ERROR
EOF
  mkdir -p /run/sshd # privilege separation directory (Debian's sshd wants it)
  spawn sshd "$T/sshd.log" $(on SSHD) "$SSHD" -D -e -f "$T/sshd_config"
  wait_until 10 sh -c "ss -Htln | grep -q ':$SSHP '" || die "sshd did not start"
  spawn ssh "$T/ssh.log" $(on SSH) ssh -N -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o BatchMode=yes -o ExitOnForwardFailure=yes -o ServerAliveInterval=0 -i "$T/user_key" \
    -p $SSHP -R 127.0.0.1:$SSH_R:127.0.0.1:$BACK_DIRECT root@127.0.0.1
  if [ $BACK_PROTO = h2c ]; then
    wait_until 15 curl -sf -o /dev/null --http2-prior-knowledge "http://127.0.0.1:$SSH_R/size/$SIZE" ||
      die "ssh -R forwarding did not come up (see $T/ssh.log)"
  else
    wait_until 15 curl -sf -o /dev/null "http://127.0.0.1:$SSH_R/size/$SIZE" ||
      die "ssh -R forwarding did not come up (see $T/ssh.log)"
  fi
  SSH_CIPHER=$(ssh -G 127.0.0.1 2>/dev/null | sed -n 's/^ciphers //p' | cut -d, -f1)
fi

# a process and all its descendants (sshd forks per connection, twice)
family() {
  for _f in "$@"; do
    echo "$_f"
    family $(pgrep -P "$_f" 2>/dev/null)
  done
}
# CPU ticks (utime + stime) used so far by processes and their descendants
ticks() {
  _t=0
  for _q in $(family "$@"); do
    [ -r /proc/$_q/stat ] && _t=$((_t + $(awk '{ print $14 + $15 }' /proc/$_q/stat)))
  done
  echo $_t
}
HZ=$(getconf CLK_TCK)

# run KEY PROTO PORT "MIDDLE PIDS" [h2load args...]: one h2load run; appends
# "KEY rps p50 p99 mid_us_per_req errors non2xx split" to $T/results, where
# split is the per-process share of the middle's CPU (us/req, "a/b").
run() {
  _key=$1 _proto=$2 _port=$3 _mid=$4
  shift 4
  _flags=""
  [ "$_proto" = h1 ] && _flags="--h1"
  _t0="" && for _m in $_mid; do _t0="$_t0 $(ticks $_m)"; done
  $(on CLIENT) h2load $_flags -t "$CLIENT_THREADS" -D "$DUR" --warm-up-time=1 -c "$CONNS" "$@" \
    --log-file="$T/$_key.log" "http://127.0.0.1:$_port/size/$SIZE" >"$T/$_key.out" 2>&1
  _t1="" && for _m in $_mid; do _t1="$_t1 $(ticks $_m)"; done
  _rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$T/$_key.out")
  _done=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$T/$_key.out")
  _bad=$(sed -n 's/^requests: .* succeeded, \([0-9]*\) failed, \([0-9]*\) errored.*/\1+\2/p' "$T/$_key.out")
  _non2xx=$(sed -n 's/^status codes: [0-9]* 2xx, \([0-9]*\) 3xx, \([0-9]*\) 4xx, \([0-9]*\) 5xx/\1+\2+\3/p' "$T/$_key.out")
  _lat=$(awk '{ print $3 }' "$T/$_key.log" | sort -n | awk '
    function pct(q,  i) { i = int(NR * q); if (i < NR * q) i++; if (i < 1) i = 1; return v[i] / 1000 }
    { v[NR] = $1 }
    END { if (NR) printf "%.2f %.2f", pct(0.50), pct(0.99); else print "- -" }')
  _cpu=- _split=-
  if [ -n "$_mid" ] && [ "${_done:-0}" -gt 0 ]; then
    _cpu=$(echo "$_t0" "$_t1" | awk -v hz="$HZ" -v n="$_done" '{
      k = NF / 2; s = 0; sp = ""
      for (i = 1; i <= k; i++) { d = ($(i + k) - $i) / hz * 1e6 / n; s += d; sp = sp (i > 1 ? "/" : "") sprintf("%.1f", d) }
      printf "%.1f %s", s, sp }')
    _split=${_cpu#* }
    _cpu=${_cpu% *}
  fi
  rm -f "$T/$_key.log"
  echo "$_key ${_rps:-0} $_lat $_cpu $((${_bad:-0})) $((${_non2xx:-0})) $_split" >>"$T/results"
  printf '  %-14s %10s req/s  p50 %7s ms  p99 %7s ms\n' "$_key" "${_rps:-0}" "${_lat% *}" "${_lat#* }"
}

# paths PHASE [h2load args...]: every path once
paths() {
  _ph=$1
  shift
  run "direct$_ph" $BACK_PROTO $BACK_DIRECT "" "$@"
  [ $BACKEND = nginx ] && [ $H1 = no ] && run "direct1$_ph" h1 $BACK_H1 "" "$@"
  run "tunnel$_ph" $TUN_PROTO $CLI "$PID_proxy $PID_agent" -H "x-remote-node-id: bench" "$@"
  [ "$WORKERS" -gt 1 ] &&
    run "tunnelw$_ph" $TUN_PROTO $CLIW "$PID_proxyw $PID_agentw" -H "x-remote-node-id: bench" "$@"
  [ $WITH_SSH = yes ] && run "ssh$_ph" $BACK_PROTO $SSH_R "$PID_sshd $PID_ssh" "$@"
  run "relay$_ph" $BACK_PROTO $RELAY1 "$PID_relay1 $PID_relay2" "$@"
}

TUN_PROTO=h2c
[ $H1 = yes ] && TUN_PROTO=h1
TUN_ENC=""
[ $TLS = yes ] && TUN_ENC=", TLS"
say "# bench/e2e.sh: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $([ $PINNED = yes ] && echo "pinned (client $CORES_CLIENT, backend $CORES_BACKEND, middle 0 and 1)" || echo "not pinned")"
say "# clients: $([ $H1 = yes ] && echo "HTTP/1.1 (h2load --h1)" || echo h2c), h2load -t $CLIENT_THREADS"
[ $TLS = yes ] && say "# tunnel over TLS: mutual TLS handshake, HTTP/2 in a new TLS session after each handoff"
say "# backend: $BACKEND_NAME; load: h2load -c $CONNS -m $STREAMS -D $DUR s (+1 s warm-up), $SIZE-byte responses, $ROUNDS round(s)"
[ $WITH_SSH = yes ] || say "# ssh -R skipped (needs root, sshd and ssh)"
: >"$T/results"
say "# throughput: as fast as possible (-m $STREAMS)"
round=1
while [ $round -le "$ROUNDS" ]; do
  paths "" -m "$STREAMS"
  round=$((round + 1))
done
RATE=$((RATE_TOTAL / CONNS))
say "# latency at a fixed $((RATE * CONNS)) req/s (--rps $RATE per connection)"
paths @rate -m "$STREAMS" --rps "$RATE"

# The round with the median throughput, per key: "rps p50 p99 cpu bad non2xx split"
median() {
  grep "^$1 " "$T/results" | sort -k2,2n | awk '{ l[NR] = $0 } END { if (NR) print l[int((NR + 1) / 2)] }' |
    cut -d' ' -f2-
}
val() { median "$1" | cut -d' ' -f"$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r != "n/a" && r + 0 >= t) ? "met" : "NOT met" }'; }
atmost() { awk -v r="$1" -v t="$2" 'BEGIN { print (r != "n/a" && r + 0 <= t) ? "met" : "NOT met" }'; }
below() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 < b + 0) ? "yes (met)" : "no (NOT met)" }'; }
# CPU µs/request of the Nth process between client and backend (1 or 2)
proc_cpu() { val "$1" 7 | cut -d/ -f"$2"; }
R_RPS=$(val relay 1)
S_RPS=$([ $WITH_SSH = yes ] && val ssh 1)
# one relay hop: the mean of the two relays' CPU per request
HOP=$(awk -v a="$(proc_cpu relay 1)" -v b="$(proc_cpu relay 2)" 'BEGIN { printf "%.2f", (a + b) / 2 }')

row() { # row LABEL KEY
  _m=$(median "$2")
  [ -n "$_m" ] || return 0
  set -- "$1" $_m
  _split=${8:--}
  printf '%-40s %8.0f %7s %7s %7s %7s %7s %-11s %6s %6s %5s\n' "$1" "$2" "$3" "$4" \
    "$(val "$KEYS@rate" 2)" "$(val "$KEYS@rate" 3)" "$5" "$(echo "$_split" | sed 's/^-$//')" \
    "$(ratio "$2" "$R_RPS")" "$([ $WITH_SSH = yes ] && ratio "$2" "$S_RPS" || echo -)" "$(($6 + $7))"
}
table_row() { KEYS=$2; row "$1" "$2"; }
say ""
printf '%-40s %8s %7s %7s %7s %7s %7s %-11s %6s %6s %5s\n' "" "max" "p50" "p99" "p50" "p99" "middle" "per proc" "/relay" "/ssh" ""
printf '%-40s %8s %7s %7s %7s %7s %7s %-11s %6s %6s %5s\n' "path" "req/s" "ms" "ms" "@rate" "@rate" "us/req" "us/req" "x2" "-R" "errs"
table_row "direct ($BACK_PROTO)" direct
[ $BACKEND = nginx ] && [ $H1 = no ] && table_row "direct (HTTP/1.1)" direct1
table_row "tunnel ($TUN_PROTO -> proxy -> agent -> h1$TUN_ENC)" tunnel
[ "$WORKERS" -gt 1 ] && table_row "tunnel, proxy --workers $WORKERS" tunnelw
[ $WITH_SSH = yes ] && table_row "ssh -R ($SSH_CIPHER)" ssh
table_row "relay x2 (bench/relay.c)" relay
say "(@rate: at a fixed $((RATE * CONNS)) req/s; middle: CPU time per request of the processes"
say " between client and backend; per proc: proxy/agent, sshd/ssh, relay/relay; /relay x2 and"
say " /ssh -R: max req/s against those paths)"

t_rps=$(val tunnel 1)
d_rps=$(val direct 1)
tr=$(ratio "$t_rps" "$R_RPS")
ag=$(ratio "$(proc_cpu tunnel 2)" "$HOP")
px=$(ratio "$(proc_cpu tunnel 1)" "$HOP")
say ""
say "one relay hop = $HOP us/req; proxy $(proc_cpu tunnel 1), agent $(proc_cpu tunnel 2) us/req"
if [ $H1 = no ]; then
  say "tunnel/relay x2        = $tr   (target >= 0.85: $(verdict "$tr" 0.85))"
  say "agent CPU/relay hop    = $ag   (target <= 1.5: $(atmost "$ag" 1.5))"
  say "proxy CPU/relay hop    = $px   (target <= 1.2: $(atmost "$px" 1.2))"
else
  say "tunnel/relay x2        = $tr"
  say "agent CPU/relay hop    = $ag"
  say "proxy CPU/relay hop    = $px"
fi
if [ $WITH_SSH = yes ]; then
  ts=$(ratio "$t_rps" "$S_RPS")
  if [ $H1 = yes ] && [ $TLS = yes ]; then
    say "tunnel/ssh -R          = $ts   (both encrypted; target >= 2: $(verdict "$ts" 2))"
  elif [ $H1 = yes ]; then
    say "tunnel/ssh -R          = $ts   (target >= 3: $(verdict "$ts" 3))"
  else
    say "tunnel/ssh -R          = $ts"
  fi
fi
say "tunnel/direct          = $(ratio "$t_rps" "$d_rps")   (proxy --workers 1)"
if [ "$WORKERS" -gt 1 ]; then
  w_rps=$(val tunnelw 1)
  say "tunnel/direct          = $(ratio "$w_rps" "$d_rps")   (proxy --workers $WORKERS)"
  say "workers $WORKERS/workers 1    = $(ratio "$w_rps" "$t_rps")"
fi
say "relay x2/direct        = $(ratio "$R_RPS" "$d_rps")"
if [ $WITH_SSH = yes ]; then
  say "tunnel p99 $(val tunnel 3) ms vs ssh -R p50 $(val ssh 2) ms at full load; at $((RATE * CONNS)) req/s: tunnel p99 $(val tunnel@rate 3) ms, ssh -R p50 $(val ssh@rate 2) ms"
fi

# RESULT rows for scripts/bench's summary
result() { # result METRIC VALUE TARGET(>=N, <=N or -)
  _v=$2 _t=$3 _note=info
  case $_t in
    ">="*) _note=$(awk -v r="$_v" -v t="${_t#>=}" 'BEGIN { print (r != "n/a" && r + 0 >= t) ? "within" : "over" }') ;;
    "<="*) _note=$(awk -v r="$_v" -v t="${_t#<=}" 'BEGIN { print (r != "n/a" && r + 0 <= t) ? "within" : "over" }') ;;
  esac
  echo "RESULT|e2e|$1 ($TUN_PROTO$TUN_ENC)|$_v|x|$_t|$_note"
}
if [ $H1 = no ]; then
  result "tunnel/relay x2 req/s" "$tr" ">=0.85"
  [ "$WORKERS" -gt 1 ] && result "tunnel --workers $WORKERS/direct req/s" "$(ratio "$w_rps" "$d_rps")" -
  result "agent CPU/relay hop" "$ag" "<=1.5"
  result "proxy CPU/relay hop" "$px" "<=1.2"
  [ $WITH_SSH = yes ] && result "tunnel/ssh -R req/s" "$ts" -
else
  result "tunnel/relay x2 req/s" "$tr" -
  result "agent CPU/relay hop" "$ag" -
  result "proxy CPU/relay hop" "$px" -
  [ $WITH_SSH = yes ] && result "tunnel/ssh -R req/s" "$ts" "$([ $TLS = yes ] && echo ">=2" || echo ">=3")"
fi
exit 0
