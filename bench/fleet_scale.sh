#!/bin/sh
# bench/fleet_scale.sh: many parked tunnels spread over a fleet of proxies
# sharing one redis-server, with agents spread over several processes and
# source addresses (agent --bind 127.0.0.x). See bench/README.md.
#
#   bench/fleet_scale.sh [--build DIR] [--proxies P] [--agents A] [--tunnels N]
#                        [--idle S] [--fleet-timeout DUR] [--ping-interval-ms MS]
#
# Defaults are small (3 proxies, 6 agents, 3,000 tunnels); the large run
# is --proxies 6 --agents 24 --tunnels 100000. Agent i is node n<i>, parks
# N/A tunnels on proxy i mod P, from 127.0.0.(2 + i mod 200). Every process
# stays under 20,000 open files (checked before starting). Once every
# tunnel is parked it reports: proxy RSS per tunnel (over each proxy's RSS
# before any agent came), agent RSS per tunnel, proxy and agent CPU while
# idle for S seconds (default 5), Redis memory of the fleet's keys per node
# and per tunnel (and used_memory's change, which is noisy), and then sends
# one request per node through a proxy that does not hold it (all must
# answer 200), each failure with its reason and time, the slowest answer,
# and each proxy's directory counters (timeouts, reconnects, ...).
# --fleet-timeout goes to every proxy (the Redis answer deadline, default
# the proxy's 1s); --ping-interval-ms is the RPING interval of the parked
# tunnels (default the library's 2000), the idle work that grows with the
# tunnels.
set -u

top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
. "$top_srcdir/tests/e2e_lib.sh"

BUILD=$top_srcdir/build
P=3
A=6
N=3000
IDLE=5
FLEET_TIMEOUT=1s
IVL=
FD_LIMIT=20000
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift ;;
    --proxies) P=$2; shift ;;
    --agents) A=$2; shift ;;
    --tunnels) N=$2; shift ;;
    --idle) IDLE=$2; shift ;;
    --fleet-timeout) FLEET_TIMEOUT=$2; shift ;;
    --ping-interval-ms) IVL=$2; shift ;;
    *) sed -n '2,25s/^# \{0,1\}//p' "$0"; exit 2 ;;
  esac
  shift
done
EX=$BUILD/examples
PER_AGENT=$(( (N + A - 1) / A ))
PER_PROXY=$(( (A + P - 1) / P * PER_AGENT ))
if [ $PER_AGENT -gt 10000 ] || [ $((PER_PROXY + 200)) -gt $FD_LIMIT ]; then
  echo "bench/fleet_scale.sh: $PER_AGENT tunnels per agent (at most 10000) and $PER_PROXY per proxy" \
    "(at most $((FD_LIMIT - 200))): use more agents or proxies" >&2
  exit 2
fi
ulimit -n $FD_LIMIT 2>/dev/null || ulimit -n "$(ulimit -Hn)"
command -v redis-server >/dev/null || { echo "bench/fleet_scale.sh: redis-server not installed" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/revtun-bench-scale.XXXXXX")
trap 'E2E_STOP_WAIT=60 stop_all; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
redis_mem() { redis-cli -p "$REDIS" info memory | tr -d '\r' | sed -n 's/^used_memory://p'; }
# the bytes Redis reports for the fleet's keys (MEMORY USAGE of each), and their count
redis_keys() {
  redis-cli -p "$REDIS" --scan --pattern 'revtun:*' | while read -r k; do
    redis-cli -p "$REDIS" memory usage "$k"
  done | awk '{ s += $1; n++ } END { printf "%d %d", s, n }'
}

ACC=
if [ -n "$IVL" ]; then
  cat >"$T/acceptor.txtpb" <<EOF
# proto-message: envoy.extensions.filters.network.reverse_tunnel.v3.ReverseTunnel
ping_interval { seconds: $((IVL / 1000)) nanos: $((IVL % 1000 * 1000000)) }
EOF
  encode "$T/acceptor.txtpb" "$T/acceptor.bin" || { echo "cannot encode the acceptor config" >&2; exit 1; }
  ACC="--acceptor-config $T/acceptor.bin"
fi

pick_port REDIS
pick_port BACK
spawn redis "$T/redis.log" redis-server --port "$REDIS" --bind 127.0.0.1 --save "" \
  --appendonly no --dir "$T" --loglevel warning
wait_until 10 sh -c "redis-cli -p $REDIS ping | grep -q PONG" || { echo "redis did not start" >&2; exit 1; }
spawn backend "$T/backend.log" "$EX/revtun-demo-backend" --listen 127.0.0.1:$BACK
i=0
while [ $i -lt "$P" ]; do
  pick_port CLI_$i
  pick_port TUN_$i
  pick_port ADM_$i
  eval "_c=\$CLI_$i _t=\$TUN_$i _a=\$ADM_$i"
  spawn "proxy_$i" "$T/proxy_$i.log" "$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$_t \
    --listen 127.0.0.1:$_c --admin-listen 127.0.0.1:$_a --fleet-redis 127.0.0.1:$REDIS \
    --instance-id "p$i" --max-clients 100 --fleet-timeout "$FLEET_TIMEOUT" $ACC
  i=$((i + 1))
done
i=0
while [ $i -lt "$P" ]; do
  eval "_a=\$ADM_$i"
  wait_until 10 curl -sf "http://127.0.0.1:$_a/tunnels" || { echo "proxy $i did not start" >&2; exit 1; }
  i=$((i + 1))
done
sleep 1
MEM0=$(redis_mem)
i=0
while [ $i -lt "$P" ]; do
  eval "RSS0_$i=\$(rss_kb \$PID_proxy_$i)"
  i=$((i + 1))
done

echo "# bench/fleet_scale.sh: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), --fleet-timeout $FLEET_TIMEOUT, RPING every ${IVL:-2000} ms; $P proxies, $A agents x $PER_AGENT tunnels = $((A * PER_AGENT)) tunnels"
START=$(date +%s)
i=0
while [ $i -lt "$A" ]; do
  eval "_t=\$TUN_$((i % P))"
  spawn "agent_$i" "$T/agent_$i.log" "$EX/revtun-downstream-agent" --upstream 127.0.0.1:$_t \
    --bind 127.0.0.$((2 + i % 200)) --node "n$i" --cluster scale --tenant bench \
    --count "$PER_AGENT" --backend 127.0.0.1:$BACK --max-backoff-ms 2000
  i=$((i + 1))
done

idle_total() {
  _s=0
  _i=0
  while [ $_i -lt "$P" ]; do
    eval "_a=\$ADM_$_i"
    _v=$(curl -s --max-time 10 "http://127.0.0.1:$_a/tunnels" |
      awk -F'"idle": ' '/"node":/ { split($2, x, ","); s += x[1] } END { print s + 0 }')
    _s=$((_s + ${_v:-0}))
    _i=$((_i + 1))
  done
  echo $_s
}
all_parked() { [ "$(idle_total)" -ge $((A * PER_AGENT)) ]; }
if ! wait_until 600 all_parked; then
  echo "only $(idle_total) of $((A * PER_AGENT)) tunnels parked after 600 s" >&2
  exit 1
fi
echo "# all $((A * PER_AGENT)) tunnels parked after $(( $(date +%s) - START )) s"
sleep 2 # the last publications

# CPU while idle: sum_ticks NAME COUNT sums the CPU ticks of PID_NAME_0..COUNT-1
sum_ticks() {
  _s=0
  _i=0
  while [ $_i -lt "$2" ]; do
    eval "_p=\$PID_$1_$_i"
    _s=$((_s + $(ticks "$_p")))
    _i=$((_i + 1))
  done
  echo $_s
}
t0p=$(sum_ticks proxy "$P")
t0a=$(sum_ticks agent "$A")
# meanwhile, how late each proxy's loop answers its admin listener (the
# slowest of a few /stats; a lagging loop answers Redis just as late)
lag_end=$(($(date +%s) + IDLE))
: >"$T/lag"
while [ "$(date +%s)" -lt $lag_end ]; do
  i=0
  while [ $i -lt "$P" ]; do
    eval "_a=\$ADM_$i"
    curl -s --max-time 10 -o /dev/null -w "$i %{time_total}\n" "http://127.0.0.1:$_a/stats" >>"$T/lag"
    i=$((i + 1))
  done
  sleep 0.5
done
t1p=$(sum_ticks proxy "$P")
t1a=$(sum_ticks agent "$A")
HZ=$(getconf CLK_TCK)

prss=0 prss0=0 arss=0
i=0
while [ $i -lt "$P" ]; do
  eval "_p=\$PID_proxy_$i _r0=\$RSS0_$i"
  prss=$((prss + $(rss_kb $_p)))
  prss0=$((prss0 + _r0))
  i=$((i + 1))
done
i=0
while [ $i -lt "$A" ]; do
  eval "_p=\$PID_agent_$i"
  arss=$((arss + $(rss_kb $_p)))
  i=$((i + 1))
done
MEM1=$(redis_mem)
KEYS=$(redis_keys)
TOTAL=$((A * PER_AGENT))
awk -v n="$TOTAL" -v p="$prss" -v p0="$prss0" -v a="$arss" -v m0="$MEM0" -v m1="$MEM1" \
  -v kb="${KEYS% *}" -v kn="${KEYS#* }" -v nodes="$A" -v cp=$((t1p - t0p)) -v ca=$((t1a - t0a)) -v hz="$HZ" -v s="$IDLE" -v lag="$(sort -k2 -n "$T/lag" | tail -1 | cut -d' ' -f2)" 'BEGIN {
  printf "proxies: RSS %.1f MiB in all, %.0f B per tunnel over their RSS before (%.1f MiB)\n", p / 1024, (p - p0) * 1024 / n, p0 / 1024
  printf "agents:  RSS %.1f MiB in all, %.0f B per tunnel\n", a / 1024, a * 1024 / n
  printf "idle CPU: proxies %.1f%% of one core in all, agents %.1f%% (over %d s)\n", cp / hz / s * 100, ca / hz / s * 100, s
  printf "admin answer time while idle (loop lag), slowest: %s s\n", lag
  printf "redis: %d keys of the fleet, %d B (MEMORY USAGE): %.0f B per node (%d nodes), %.3f B per tunnel; used_memory %+d B\n", kn, kb, kb / nodes, nodes, kb / n, m1 - m0
}'

# one request per node, through a proxy that does not hold it: its status,
# reason (x-revtun-error) and time, and each failure shown
okn=0
i=0
while [ $i -lt "$A" ]; do
  eval "_c=\$CLI_$(((i + 1) % P))"
  _r=$(curl -s --max-time 10 -o /dev/null -D "$T/head" -w '%{http_code} %{time_total}' \
    -H "x-remote-node-id: n$i" "http://127.0.0.1:$_c/")
  if [ "${_r% *}" = 200 ]; then
    okn=$((okn + 1))
  else
    echo "  n$i through p$(((i + 1) % P)): $_r s $(tr -d '\r' <"$T/head" | sed -n 's/^x-revtun-error: //Ip')"
  fi
  echo "${_r#* }" >>"$T/times"
  i=$((i + 1))
done
echo "requests through another proxy: $okn of $A nodes answered 200 (slowest $(sort -n "$T/times" | tail -1) s)"
# what each proxy's directory went through since it started
i=0
while [ $i -lt "$P" ]; do
  eval "_a=\$ADM_$i"
  curl -s --max-time 10 "http://127.0.0.1:$_a/stats" | awk -v p="p$i" '
    $1 ~ /^revtun_proxy_fleet_(redis_(timeouts|reconnects|republishes|lookups_unavailable|connect_failures)|forward_failures|directory_unavailable)$/ {
      sub(/^revtun_proxy_fleet_/, "", $1); s = s " " $1 "=" $2 }
    END { print "  " p ":" s }'
  i=$((i + 1))
done
[ $okn -eq "$A" ]
