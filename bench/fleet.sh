#!/bin/sh
# bench/fleet.sh: a request forwarded by another instance of a fleet against
# the same request served by the instance that holds the tunnel, in one run
# on loopback. See bench/README.md.
#
#   bench/fleet.sh [--build DIR] [--duration S] [--rounds N] [--connections C]
#                  [--streams M] [--size BYTES]
#
#   local      h2load -h2c-> proxy B -tunnel-> agent -> backend
#   forwarded  h2load -h2c-> proxy A -h2c-> proxy B -tunnel-> agent -> backend
#
# A private redis-server holds the directory; the agent parks 4 tunnels on B
# only. Two loads per path, interleaved over N rounds (default 3): as fast as
# it goes (h2load -c C -m M, default 16 x 10; throughput) and one request at
# a time (-c 1 -m 1; latency). S seconds each (default 3) after 1 s of
# warm-up; BYTES-byte responses (default 1024). The lines give each round's
# medians; the ratios (forwarded / local) are of the medians over the rounds.
set -u

top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
. "$top_srcdir/tests/e2e_lib.sh"

BUILD=$top_srcdir/build
DUR=3
ROUNDS=3
CONNS=16
STREAMS=10
SIZE=1024
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --connections) CONNS=$2; shift ;;
    --streams) STREAMS=$2; shift ;;
    --size) SIZE=$2; shift ;;
    *) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 2 ;;
  esac
  shift
done
for tool in h2load redis-server; do
  command -v $tool >/dev/null || { echo "bench/fleet.sh: $tool not installed" >&2; exit 1; }
done
EX=$BUILD/examples

T=$(mktemp -d "${TMPDIR:-/tmp}/revtun-bench-fleet.XXXXXX")
trap 'stop_all; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM

pick_port REDIS
pick_port BACK
for x in A B; do
  pick_port CLI_$x
  pick_port TUN_$x
done
pick_port ADM_B
spawn redis "$T/redis.log" redis-server --port "$REDIS" --bind 127.0.0.1 --save "" \
  --appendonly no --dir "$T" --loglevel warning
wait_until 10 sh -c "redis-cli -p $REDIS ping | grep -q PONG" || { echo "redis did not start" >&2; exit 1; }
spawn backend "$T/backend.log" "$EX/revtun-demo-backend" --listen 127.0.0.1:$BACK
for x in A B; do
  eval "_c=\$CLI_$x _t=\$TUN_$x"
  _adm=""
  [ $x = B ] && _adm="--admin-listen 127.0.0.1:$ADM_B"
  spawn "proxy_$x" "$T/proxy_$x.log" "$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$_t \
    --listen 127.0.0.1:$_c $_adm --fleet-redis 127.0.0.1:$REDIS --instance-id "$x"
done
wait_until 10 curl -sf "http://127.0.0.1:$ADM_B/tunnels" || { echo "proxy B did not start" >&2; exit 1; }
spawn agent "$T/agent.log" "$EX/revtun-downstream-agent" --upstream 127.0.0.1:$TUN_B --node bench \
  --cluster bench --tenant bench --count 4 --backend 127.0.0.1:$BACK
wait_until 10 node_has_idle 127.0.0.1:$ADM_B bench || { echo "the agent did not park" >&2; exit 1; }
URL_PATH=/size/$SIZE
curl -sf -o /dev/null -H "x-remote-node-id: bench" "http://127.0.0.1:$CLI_A$URL_PATH" ||
  { echo "a forwarded request failed" >&2; exit 1; }

# run KEY PORT [h2load args...]: appends "KEY rps p50_ms errors" to $T/results.
run() {
  _key=$1 _port=$2
  shift 2
  rm -f "$T/lat.log" # h2load appends to it
  h2load -D "$DUR" --warm-up-time=1 "$@" -H "x-remote-node-id: bench" --log-file="$T/lat.log" \
    "http://127.0.0.1:$_port$URL_PATH" >"$T/out" 2>&1
  _rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$T/out")
  _bad=$(sed -n 's/^requests: .* succeeded, \([0-9]*\) failed, \([0-9]*\) errored.*/\1+\2/p' "$T/out")
  _p50=$(awk '{ print $3 }' "$T/lat.log" | sort -n | awk '{ v[NR] = $1 }
    END { i = int(NR * 0.5); if (i < 1) i = 1; if (NR) printf "%.3f", v[i] / 1000; else print "-" }')
  echo "$_key ${_rps:-0} $_p50 $((${_bad:-0}))" >>"$T/results"
  printf '  %-16s %10s req/s  p50 %8s ms  errors %s\n' "$_key" "${_rps:-0}" "$_p50" "$((${_bad:-0}))"
}

echo "# bench/fleet.sh: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# load: h2load -c $CONNS -m $STREAMS (throughput) and -c 1 -m 1 (latency), $DUR s each, $SIZE-byte responses, $ROUNDS round(s)"
r=1
while [ $r -le "$ROUNDS" ]; do
  echo "# round $r"
  run local-load "$CLI_B" -c "$CONNS" -m "$STREAMS"
  run forwarded-load "$CLI_A" -c "$CONNS" -m "$STREAMS"
  run local-1 "$CLI_B" -c 1 -m 1
  run forwarded-1 "$CLI_A" -c 1 -m 1
  r=$((r + 1))
done

# median KEY COLUMN
median() {
  awk -v k="$1" -v c="$2" '$1 == k { print $c }' "$T/results" | sort -g |
    awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
echo
printf '%-10s %14s %14s %16s %16s\n' path "load req/s" "load p50 ms" "1-conn req/s" "1-conn p50 ms"
for p in local forwarded; do
  printf '%-10s %14s %14s %16s %16s\n' $p "$(median $p-load 2)" "$(median $p-load 3)" \
    "$(median $p-1 2)" "$(median $p-1 3)"
done
awk -v lt="$(median local-load 2)" -v ft="$(median forwarded-load 2)" \
  -v ll="$(median local-1 3)" -v fl="$(median forwarded-1 3)" \
  -v lp="$(median local-load 3)" -v fp="$(median forwarded-load 3)" 'BEGIN {
  printf "forwarded / local: throughput %.2fx, p50 under load %.2fx, p50 one at a time %.2fx\n",
    ft / lt, fp / lp, fl / ll }'
echo "errors (failed+errored, all runs): $(awk '{ s += $4 } END { print s + 0 }' "$T/results")"
