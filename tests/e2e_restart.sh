#!/bin/sh
# Restarting revtun-upstream-proxy without dropping tunnels: a new instance
# started with --takeover receives the listeners and parked tunnels of the
# running one (--handover-socket), which drains and exits. Under steady
# h2load traffic (h2c and HTTP/1.1) no request fails and the agent never
# re-dials; RPING goes on; a peer that speaks the handover protocol badly
# (tests/handover_peer.py) gets a clear error, leaks no descriptor, and the
# running instance keeps every tunnel. Run by `make check`; by hand:
#   top_builddir=build top_srcdir=. tests/e2e_restart.sh
set -u

top_builddir=${top_builddir:-$(pwd)}
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
. "$top_srcdir/tests/e2e_lib.sh"
. "$top_srcdir/tests/restart_lib.sh"

e2e_require curl h2load python3 protoc

fails=0
e2e_begin e2e_restart 40

PEER="python3 $top_srcdir/tests/handover_peer.py"

e2e_ports
NODE="x-remote-node-id: edge-1"
COUNT=4
SOCK=$T/handover.sock
WORKERS=1

restart_setup
first_restart

# h2c clients stay on the old instance until GOAWAY, which it sends halfway
# through the grace period (10 s here); h2load never opens a new connection
# after a GOAWAY and counts what it had left as failed, so this run is
# bounded in time (4 s, also under sanitizers) rather than in requests.
echo "# restart under h2c traffic"
traffic_restart h2c -D 4 -c 4 -m 4
echo "# restart under HTTP/1.1 traffic"
traffic_restart h1 --h1 -n 40000 -c 8 -m 1

echo "# a bad would-be new instance: refused, every tunnel stays, no descriptor leaks"
P=$(pid_of $n)
sleep 0.5
fds0=$(fd_count "$P")
for c in garbage truncated oversized lying version fds toomanyfds; do
  out=$($PEER new "$SOCK" $c 2>&1)
  check "new peer '$c': refused or closed ($out)" test $? -eq 0
done
grep "handover: takeover abandoned" "$T/p$n.log" | sed 's/.*handover: /     /' | sort | uniq -c | head -n 10
check "bad peers: the proxy still has $COUNT parked tunnels" wait_until 5 idle_is $COUNT
check "bad peers: no descriptor leaked ($fds0 before)" wait_until 5 fd_count_is "$P" "$fds0"

out=$($PEER new "$SOCK" crash 2>&1)
echo "     crash: $out"
check "a new instance that crashes mid-takeover: all $COUNT tunnels parked again" \
  sh -c "echo '$out' | grep -q 'got 3 listeners $COUNT tunnels' && $(command -v sh) -c true"
check "crash: the proxy has $COUNT parked tunnels again" wait_until 5 idle_is $COUNT
check "crash: parked again in the log" grep -q "$COUNT of $COUNT tunnel(s) parked here again" "$T/p$n.log"
out=$($PEER new "$SOCK" two 2>&1)
echo "     two: $(echo $out)"
check "two takeovers at once: the second is refused" \
  sh -c "echo '$out' | grep -q 'refused: another takeover is in progress'"
check "two: the proxy has $COUNT parked tunnels again" wait_until 5 idle_is $COUNT
sleep 1
check "faults: no descriptor leaked" wait_until 5 fd_count_is "$P" "$fds0"
check "faults: agent: reconnects=0" test "$(reconnects)" = 0
check "faults: no tunnel_closed record in the running instance" \
  sh -c "! grep -q 'record tunnel_closed' '$T/p$n.log'"
got=$(curl -sS -H "$NODE" "$URL/")
check "faults: the proxy still serves" test "$got" = "hello from backend"

echo "# a real new instance killed -9 at each step of its takeover: the old one keeps serving"
P=$(pid_of $n)
old=$n
fds0=$(fd_count "$P")
for step in connected hello listeners tunnels done; do
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
sleep 1
check "crashes: no descriptor leaked in the old instance ($fds0 before)" \
  wait_until 5 fd_count_is "$P" "$fds0"
check "crashes: agent: reconnects=0" test "$(reconnects)" = 0
check "crashes: no tunnel_closed record in the old instance" \
  sh -c "! grep -q 'record tunnel_closed' '$T/p$old.log'"
check "crashes: every tunnel sent was parked again" \
  test "$(grep -c "$COUNT of $COUNT tunnel(s) parked here again" "$T/p$old.log")" -ge 4

echo "# SIGTERM to the old instance mid-takeover: it finishes the takeover, then drains"
_old=$old
paused_proxy done
kill -TERM "$(pid_of $_old)"
check "SIGTERM mid-takeover: the old instance finishes the takeover first" \
  wait_until 10 grep -q "handover: SIGTERM during a takeover: finishing it first" "$T/p$_old.log"
kill -CONT "$(pid_of $n)"
check "SIGTERM mid-takeover: the old instance exits" wait_until 40 exited $_old
stop "p$_old"
check "SIGTERM mid-takeover: ... with status 0" test $? -eq 0
wait_until 10 test -S "$SOCK"
check "SIGTERM mid-takeover: the new instance holds all $COUNT tunnels" wait_until 5 idle_is $COUNT
check "SIGTERM mid-takeover: the old instance closed no parked tunnel" parked_closed_none $_old
check "SIGTERM mid-takeover: the new one imported $COUNT" \
  test "$(grep -c 'record socket_imported' "$T/p$n.log")" -eq $COUNT
got=$(curl -sS -H "$NODE" "$URL/")
check "SIGTERM mid-takeover: a request through the new instance" test "$got" = "hello from backend"
check "SIGTERM mid-takeover: agent: reconnects=0" test "$(reconnects)" = 0

pending_handshake_restart $n

echo "# --fleet-redis with a handover is refused"
"$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$TUN --listen 127.0.0.1:$CLI \
  --fleet-redis 127.0.0.1:1 --handover-socket "$T/fleet.sock" >"$T/fleet.out" 2>&1
check "--fleet-redis --handover-socket: exit 2 ($(cat "$T/fleet.out"))" test $? -eq 2
check "--fleet-redis --handover-socket: the error says why" \
  grep -q "cannot be combined with --handover-socket or --takeover" "$T/fleet.out"

echo "# a bad old instance: the new one exits 1 with a clear error"
pick_port TUN2
pick_port CLI2
for c in nofds toomanyfds lying version refuse truncated hangup; do
  $PEER old "$T/bad.sock" $c >"$T/peer-old-$c.out" 2>&1 &
  _pp=$!
  wait_until 5 test -S "$T/bad.sock"
  "$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$TUN2 --listen 127.0.0.1:$CLI2 \
    --takeover "$T/bad.sock" >"$T/bad-$c.out" 2>&1
  _rc=$?
  wait $_pp
  rm -f "$T/bad.sock"
  check "bad old '$c': the new instance exits 1: $(grep -- '--takeover' "$T/bad-$c.out" | sed 's/.*--takeover [^ ]*: //')" \
    test $_rc -eq 1
done

$PEER old "$T/bad.sock" badstate >"$T/peer-old-badstate.out" 2>&1 &
_pp=$!
wait_until 5 test -S "$T/bad.sock"
spawn bad "$T/bad-badstate.log" "$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$TUN2 \
  --listen 127.0.0.1:$CLI2 --takeover "$T/bad.sock" --verbose
check "bad old 'badstate': the state is refused with a clear error" \
  wait_until 10 grep -q "a tunnel's state was refused" "$T/bad-badstate.log"
check "badstate: nothing parked, no record" sh -c "! grep -q 'record ' '$T/bad-badstate.log'"
wait $_pp
stop bad

echo "# SIGINT to the last instance while a takeover is starting: refused, it stops"
_old=$n
paused_proxy connected
kill -INT "$(pid_of $_old)"
check "SIGINT: the old instance refuses the takeover that was starting" \
  wait_until 10 grep -q "handover: SIGINT: refusing the takeover that was starting" "$T/p$_old.log"
kill -CONT "$(pid_of $n)"
stop "p$_old" INT
check "last instance exited 0" test $? -eq 0
check "handover socket removed at exit" test ! -e "$SOCK"
wait_until 20 exited $n
stop "p$n"
check "SIGINT: the new instance exits 1" test $? -eq 1
check "SIGINT: ... saying why" \
  grep -q -- "--takeover $SOCK: refused by the old instance: the old instance is shutting down" "$T/p$n.log"
check "SIGINT: the new instance parked nothing" sh -c "! grep -q 'record socket_imported' '$T/p$n.log'"
check "SIGINT: the $((COUNT + 1)) parked tunnels closed once each, in the old instance" \
  test "$(grep -c 'record tunnel_closed' "$T/p$_old.log")" -eq \
  $((COUNT + 1 + $(grep -c 'session .*: closed:' "$T/p$_old.log")))
stop agent2
stop relay
stop agent
check "agent prints reconnects on exit" grep -q "reconnects=" "$T/agent.log"
no_sanitizer_reports "$T"

[ $fails -eq 0 ] && echo "# all restart checks passed"
exit $((fails != 0))
