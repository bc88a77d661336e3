#!/bin/sh
# Restarting revtun-upstream-proxy --workers 2 without dropping tunnels:
# the old instance's workers export their parked tunnels on their own
# threads, the new one receives both workers' listeners and parks the
# tunnels in its workers round robin. Under steady h2load traffic no
# request fails and the agent never re-dials; a new instance with another
# worker count is refused and one killed mid-takeover changes nothing: the
# old instance keeps every tunnel, each in exactly one pool; a handshake
# still going on when the takeover happens finishes in the old instance
# and its tunnel is handed over. Run by
# `make check` (and under TSan by scripts/test --tsan); by hand:
#   top_builddir=build top_srcdir=. tests/e2e_restart_workers.sh
set -u

top_builddir=${top_builddir:-$(pwd)}
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
. "$top_srcdir/tests/e2e_lib.sh"
. "$top_srcdir/tests/restart_lib.sh"

e2e_require curl h2load python3 protoc

fails=0
e2e_begin e2e_restart_workers 40

e2e_ports
NODE="x-remote-node-id: edge-1"
COUNT=6
SOCK=$T/handover.sock
WORKERS=2

# worker_idle K: edge-1's parked tunnels in worker K
worker_idle() {
  curl -s --max-time 2 "http://$ADMIN/tunnels" | grep '{"node": "edge-1"' |
    grep "\"worker\": $1[,}]" | sed -n 's/.*"idle": \([0-9]*\).*/\1/p'
}

restart_setup
first_restart
check "... $((COUNT / 2)) in each worker (worker 0: $(worker_idle 0), worker 1: $(worker_idle 1))" \
  test "$(worker_idle 0)" = $((COUNT / 2)) -a "$(worker_idle 1)" = $((COUNT / 2))
check "old instance sent both workers' listeners and the admin one" \
  grep -q "handover: sent 5 listener(s) and $COUNT parked tunnel(s)" "$T/p1.log"

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
  wait_until 5 fd_count_is "$P" "$fds0"
check "faults: agent: reconnects=0" test "$(reconnects)" = 0
check "faults: no tunnel_closed record in the old instance" \
  sh -c "! grep -q 'record tunnel_closed' '$T/p$old.log'"
check "faults: every tunnel sent was parked again" \
  test "$(grep -c "$COUNT of $COUNT tunnel(s) parked here again" "$T/p$old.log")" -ge 5

pending_handshake_restart $old
old=$n

echo "# the last instance stops"
stop "p$old"
check "last instance exited 0" test $? -eq 0
check "handover socket removed at exit" test ! -e "$SOCK"
stop agent2
stop relay
stop agent
check "agent prints reconnects on exit" grep -q "reconnects=0" "$T/agent.log"
no_sanitizer_reports "$T"

[ $fails -eq 0 ] && echo "# all restart-with-workers checks passed"
exit $((fails != 0))
