#!/bin/sh
# Restarting revtun-upstream-proxy --workers 2 without dropping tunnels:
# the old instance's workers export their parked tunnels on their own
# threads, the new one receives both workers' listeners and parks the
# tunnels in its workers round robin. Under steady h2load traffic no
# request fails and the agent never re-dials; a new instance with another
# worker count is refused and one killed mid-takeover changes nothing: the
# old instance keeps every tunnel, each in exactly one pool. Run by
# `make check` (and under TSan by scripts/test --tsan); by hand:
#   top_builddir=build top_srcdir=. tests/e2e_restart_workers.sh
set -u

top_builddir=${top_builddir:-$(pwd)}
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
. "$top_srcdir/tests/e2e_lib.sh"

e2e_require curl h2load protoc

fails=0
e2e_begin e2e_restart_workers 40

curl() { command curl --max-time 30 "$@"; }
h2load() { timeout 120 h2load "$@"; }

e2e_ports
NODE="x-remote-node-id: edge-1"
COUNT=6
SOCK=$T/handover.sock

# RPING every 200 ms: a tunnel whose keepalive phase were lost in a move
# would show as a ping timeout within a second.
cat >"$T/acceptor.txtpb" <<EOF2
# proto-message: envoy.extensions.filters.network.reverse_tunnel.v3.ReverseTunnel
ping_interval { nanos: 200000000 }
EOF2
if ! encode "$T/acceptor.txtpb" "$T/acceptor.bin"; then
  echo "FAIL - cannot encode the acceptor config with protoc"
  exit 1
fi

n=0
# start_proxy WORKERS [ARGS...]: instance n+1, its pid in PID_p<n>, log p<n>.log
start_proxy() {
  n=$((n + 1))
  _w=$1
  shift
  spawn "p$n" "$T/p$n.log" ${PROXY_WRAP:-} "$EX/revtun-upstream-proxy" --workers "$_w" \
    --tunnel-listen 127.0.0.1:$TUN --listen 127.0.0.1:$CLI --admin-listen $ADMIN \
    --acceptor-config "$T/acceptor.bin" --handover-socket "$SOCK" --grace-period 20s \
    --verbose "$@"
}
pid_of() { eval "echo \${PID_p$1:-}"; }
exited() { ! running "$(pid_of "$1")"; }
reconnects() {
  kill -USR1 "$PID_agent"
  sleep 0.3
  sed -n 's/.*reconnects=\([0-9]*\).*/\1/p' "$T/agent.log" | tail -n 1
}
idle() { node_field $ADMIN edge-1 idle; }
idle_is() { [ "$(idle)" = "$1" ]; }
# worker_idle K: edge-1's parked tunnels in worker K
worker_idle() {
  curl -s --max-time 2 "http://$ADMIN/tunnels" | grep '{"node": "edge-1"' |
    grep "\"worker\": $1[,}]" | sed -n 's/.*"idle": \([0-9]*\).*/\1/p'
}
fd_count() { ls "/proc/$1/fd" | wc -l; }
h2load_clean() {
  grep -q "^requests: .* 0 failed, 0 errored" "$1" &&
    grep -q "^status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx" "$1"
}
imported() { grep -c 'record socket_imported' "$T/p$1.log"; }
abandoned() { grep -c "handover: takeover abandoned" "$T/p$1.log"; }
# abandoned_since N COUNT: instance N has logged more than COUNT abandons
abandoned_since() { test "$(abandoned "$1")" -gt "$2"; }
# restart: a new instance (2 workers) takes over; the old one exits 0
restart() {
  _old=$n
  start_proxy 2 --takeover "$SOCK"
  wait_until 40 exited $_old && stop "p$_old" && wait_until 10 test -S "$SOCK"
}

spawn backend "$T/backend.log" "$EX/revtun-demo-backend" --listen 127.0.0.1:$BACK
wait_until 10 curl -sf "http://127.0.0.1:$BACK/" || { echo "FAIL - backend did not start"; exit 1; }
start_proxy 2
wait_until 20 curl -sf "http://$ADMIN/tunnels" || { echo "FAIL - proxy did not start"; exit 1; }
spawn agent "$T/agent.log" "$EX/revtun-downstream-agent" --upstream 127.0.0.1:$TUN \
  --node edge-1 --cluster edge --tenant acme --count $COUNT --backend 127.0.0.1:$BACK \
  --max-backoff-ms 1000
check "agent parks $COUNT tunnels over the 2 workers" wait_until 20 idle_is $COUNT

echo "# restart without traffic"
restart
check "old instance exited 0 after handing over" test $? -eq 0
check "the new instance holds all $COUNT parked tunnels" idle_is $COUNT
check "... $((COUNT / 2)) in each worker (worker 0: $(worker_idle 0), worker 1: $(worker_idle 1))" \
  test "$(worker_idle 0)" = $((COUNT / 2)) -a "$(worker_idle 1)" = $((COUNT / 2))
check "old instance: $COUNT tunnels handed over, none closed" \
  sh -c "grep -q 'handover: $COUNT tunnel(s) handed over in all' '$T/p1.log' && ! grep -q 'record tunnel_closed' '$T/p1.log'"
check "old instance sent both workers' listeners and the admin one" \
  grep -q "handover: sent 5 listener(s) and $COUNT parked tunnel(s)" "$T/p1.log"
check "new instance imported $COUNT" test "$(imported 2)" -eq $COUNT
sleep 1.5
check "RPING goes on in the new instance" grep -q "record idle_ping_ack" "$T/p2.log"
check "agent: reconnects=0" test "$(reconnects)" = 0
got=$(curl -sS -H "$NODE" "$URL/")
check "a request through the new instance" test "$got" = "hello from backend"

traffic_restart() {
  _tn=$1
  shift
  h2load "$@" -H "$NODE" "$URL/size/512" >"$T/h2load-$_tn.out" 2>&1 &
  _h=$!
  sleep 1
  restart
  _rc=$?
  wait $_h
  grep -E "^requests:|^status codes:" "$T/h2load-$_tn.out" | sed 's/^/     /'
  check "$_tn: the restart happened while h2load ran (old exited 0)" test $_rc -eq 0
  check "$_tn: h2load: 0 failed, 0 errored, all 2xx" h2load_clean "$T/h2load-$_tn.out"
  check "$_tn: agent: reconnects=0" test "$(reconnects)" = 0
  check "$_tn: no tunnel closed for a ping timeout" \
    sh -c "! grep -h 'record tunnel_closed' '$T'/p*.log | grep -q ping"
  check "$_tn: the new instance parks tunnels" wait_until 10 node_has_idle $ADMIN edge-1
}
echo "# restart under h2c traffic"
traffic_restart h2c -D 4 -c 4 -m 4
echo "# restart under HTTP/1.1 traffic"
traffic_restart h1 --h1 -n 40000 -c 8 -m 1
check "after the restarts: $COUNT parked tunnels again" wait_until 10 idle_is $COUNT

old=$n
P=$(pid_of $old)
sleep 0.5
fds0=$(fd_count "$P")
w0=$(worker_idle 0)
w1=$(worker_idle 1)

echo "# a new instance with another worker count: refused, the old one keeps serving"
for w in 1 3; do
  _a=$(abandoned $old)
  start_proxy $w --takeover "$SOCK"
  wait_until 20 exited $n
  stop "p$n"
  check "--workers $w: the new instance exits 1" test $? -eq 1
  check "--workers $w: ... saying why" \
    grep -q -- "--takeover $SOCK: the old instance has another number of workers: it runs 2 worker(s) and this one $w: start this one with --workers 2" "$T/p$n.log"
  check "--workers $w: the new instance parked nothing" test "$(imported $n)" -eq 0
  check "--workers $w: the old instance abandons the takeover" wait_until 10 abandoned_since $old "$_a"
  check "--workers $w: the old instance parks $COUNT tunnels again" wait_until 5 idle_is $COUNT
done

echo "# a new instance killed -9 at each step of its takeover: the old one keeps serving"
paused_proxy() {
  _step=$1
  shift
  export REVTUN_PROXY_TEST_TAKEOVER_PAUSE=$_step
  start_proxy 2 --takeover "$SOCK" "$@"
  unset REVTUN_PROXY_TEST_TAKEOVER_PAUSE
  wait_until 20 grep -q "test pause at $_step" "$T/p$n.log"
}
for step in listeners tunnels done; do
  _a=$(abandoned $old)
  paused_proxy $step
  check "crash at '$step': the new instance stopped there" test $? -eq 0
  kill -9 "$(pid_of $n)"
  check "crash at '$step': the old instance abandons the takeover" \
    wait_until 10 abandoned_since $old "$_a"
  check "crash at '$step': the old instance parks $COUNT tunnels" wait_until 5 idle_is $COUNT
  got=$(curl -sS -H "$NODE" "$URL/")
  check "crash at '$step': a request through the old instance" test "$got" = "hello from backend"
done
check "each tunnel went back to the worker it left (worker 0: $(worker_idle 0), worker 1: $(worker_idle 1); before: $w0, $w1)" \
  test "$(worker_idle 0)" = "$w0" -a "$(worker_idle 1)" = "$w1"
sleep 1
check "faults: no descriptor leaked in the old instance ($fds0 before)" \
  test "$(fd_count "$P")" -eq "$fds0"
check "faults: agent: reconnects=0" test "$(reconnects)" = 0
check "faults: no tunnel_closed record in the old instance" \
  sh -c "! grep -q 'record tunnel_closed' '$T/p$old.log'"
check "faults: every tunnel sent was parked again" \
  test "$(grep -c "$COUNT of $COUNT tunnel(s) parked here again" "$T/p$old.log")" -ge 5

echo "# the last instance stops"
stop "p$old"
check "last instance exited 0" test $? -eq 0
check "handover socket removed at exit" test ! -e "$SOCK"
stop agent
check "agent prints reconnects on exit" grep -q "reconnects=0" "$T/agent.log"
no_sanitizer_reports "$T"

[ $fails -eq 0 ] && echo "# all restart-with-workers checks passed"
exit $((fails != 0))
