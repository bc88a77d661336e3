#!/bin/sh
# A fleet of three revtun-upstream-proxy instances sharing a private
# redis-server on loopback (started and stopped here), one agent parked on
# each:
#   curl -> proxy X -> (directory lookup, h2c forward) -> proxy Y -> tunnel -> agent -> backend
# Checks: every proxy reaches every node; a forwarded request carries
# x-revtun-forwarded and is never forwarded again; a second instance with a
# live id is refused; hostile directory entries are refused; a killed
# instance gives a clear error (no hang), its entries expire, and its node
# is reachable again through every other proxy once its agent (given all
# three proxies) fails over to another one by itself; an agent whose first
# proxy answers 503 parks at the next one, one whose first proxy answers 403
# keeps retrying it (a policy answer is the same everywhere); with Redis stopped local
# tunnels are still served and remote ones get 503, and after Redis is back
# forwarding resumes. No timing assertions: every wait is a bounded poll.
# Skips (77) without curl, redis-server or python3 (the refusing proxies),
# unless CI is set (then it fails).
# By hand: top_builddir=build top_srcdir=. tests/fleet.sh
set -u

top_builddir=${top_builddir:-$(pwd)}
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
. "$top_srcdir/tests/e2e_lib.sh"
. "$top_srcdir/tests/fleet_lib.sh"
fleet_require python3

e2e_begin fleet 30
fleet_ports

echo "# redis :$REDIS, backend :$BACK, proxies a b c, agents n-a n-b n-c"
start_redis || { echo "FAIL - redis-server did not start"; exit 1; }
spawn backend "$T/backend.log" "$EX/revtun-demo-backend" --listen 127.0.0.1:$BACK
for x in a b c; do start_proxy $x $x; done
for x in a b c; do
  wait_until 10 curl -sf "http://$(adm $x)/tunnels" || { echo "FAIL - proxy $x did not start"; exit 1; }
  case $x in
    c) start_agent c n-c c a b ;; # fails over to a, then b
    *) start_agent $x n-$x $x ;;
  esac
done
for x in a b c; do
  check "n-$x parked on proxy $x" wait_until 10 node_has_idle "$(adm $x)" n-$x
done
check "proxy a registered in Redis" wait_until 10 sh -c \
  "redis-cli -p $REDIS exists '${PREFIX}i:a' | grep -qx 1"

echo "# every proxy reaches every node"
for x in a b c; do
  for y in a b c; do
    check "proxy $x -> node n-$y: 200" wait_until 5 is $x n-$y
  done
done
check "the request for n-b through a was served by b's tunnel" \
  test "$(node_field "$(adm b)" n-b sessions)" -ge 1
check "a counted forwarded requests" test "$(stat "$(adm a)" revtun_proxy_fleet_forwarded)" -ge 2
check "the backend saw x-revtun-forwarded: a" sh -c \
  "curl -s --max-time 5 -H 'x-remote-node-id: n-b' http://127.0.0.1:$CLI_a/headers | grep -qi '^x-revtun-forwarded: a'"
check "h2c client through a to n-c: 200" \
  test "$(code a n-c --http2-prior-knowledge)" = 200
pattern 300000 >"$T/upload"
check "a 300 kB POST through a to n-b comes back intact" sh -c \
  "curl -s --max-time 10 -H 'x-remote-node-id: n-b' --data-binary @$T/upload http://127.0.0.1:$CLI_a/echo | cmp -s - $T/upload"

echo "# loop prevention, unknown nodes, hostile entries"
check "forwarded request for n-b at a: 503" test "$(code a n-b -H 'x-revtun-forwarded: z')" = 503
check "  reason forward-loop" test "$(reason)" = forward-loop
check "  a counted it" test "$(stat "$(adm a)" revtun_proxy_fleet_loops_refused)" = 1
check "a local node is still served with the header" test "$(code a n-a -H 'x-revtun-forwarded: z')" = 200
check "unknown node: 503" test "$(code b nowhere)" = 503
check "  reason unknown-node" test "$(reason)" = unknown-node
# an instance whose address is a host name, and one with a 100 kB address
rcli hset "${PREFIX}i:evil" token t gen 1 addr "localhost:1" >/dev/null
rcli hset "${PREFIX}in:evil" n-evil 99 >/dev/null
rcli sadd "${PREFIX}n:n-evil" evil >/dev/null
check "entry with a host name as address: 502" test "$(code a n-evil)" = 502
check "  reason directory-invalid" test "$(reason)" = directory-invalid
head -c 100000 /dev/zero | tr '\0' A >"$T/huge"
rcli -x hset "${PREFIX}i:evil2" addr <"$T/huge" >/dev/null
rcli hset "${PREFIX}i:evil2" token t gen 1 >/dev/null
rcli hset "${PREFIX}in:evil2" n-huge 99 >/dev/null
rcli sadd "${PREFIX}n:n-huge" evil2 >/dev/null
_c=$(code a n-huge)
check "entry with a 100 kB address: 50x ($_c), no crash" sh -c "[ $_c = 502 ] || [ $_c = 503 ]"
check "proxy a still serves after the hostile entries" is a n-b

echo "# agent failover on a refusing proxy"
# fake_upstream NAME STATUS: a listener that answers every handshake with
# STATUS (and retry-after: 1); its port in FAKE_NAME.
fake_upstream() {
  pick_port "FAKE_$1"
  eval "_p=\$FAKE_$1"
  spawn "fake_$1" "$T/fake_$1.log" python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    try:
        d = b""
        while b"\r\n\r\n" not in d:
            x = c.recv(4096)
            if not x:
                break
            d += x
        c.sendall(b"HTTP/1.1 " + sys.argv[2].encode() + b" No\r\ncontent-length: 2\r\nretry-after: 1\r\n\r\nno")
    except OSError:
        pass
    c.close()
' "$_p" "$2"
  wait_until 10 sh -c "curl -s -o /dev/null http://127.0.0.1:$_p/; [ \$? != 7 ]"
}
fake_upstream busy 503
fake_upstream deny 403
spawn agent_f "$T/agent_f.log" "$EX/revtun-downstream-agent" \
  --upstream "127.0.0.1:$FAKE_busy,127.0.0.1:$TUN_a" --node n-f --cluster edge --tenant acme \
  --backend 127.0.0.1:$BACK --max-backoff-ms 500
check "a proxy answering 503: the agent switches to the next one" wait_until 10 \
  node_has_idle "$(adm a)" n-f
check "  and logs why" grep -q "upstream 127.0.0.1:$FAKE_busy failed (handshake rejected: 503" \
  "$T/agent_f.log"
check "n-f through b: 200" wait_until 5 is b n-f
spawn agent_g "$T/agent_g.log" "$EX/revtun-downstream-agent" \
  --upstream "127.0.0.1:$FAKE_deny,127.0.0.1:$TUN_a" --node n-g --cluster edge --tenant acme \
  --backend 127.0.0.1:$BACK --max-backoff-ms 500
check "a proxy answering 403 (policy) is retried, three times" wait_until 15 sh -c \
  "[ \$(grep -c 'handshake rejected: 403' '$T/agent_g.log') -ge 3 ]"
check "  without switching to the next proxy" sh -c \
  "! grep -q switching '$T/agent_g.log' && node_gone() { ! curl -s http://$(adm a)/tunnels | grep -q '\"node\": \"n-g\"'; }; node_gone"
stop agent_f
stop agent_g

echo "# a second instance with a live id is refused"
start_proxy d b
_n=0
while running "$PID_proxy_d" && [ $_n -lt 100 ]; do sleep 0.1; _n=$((_n + 1)); done
stop proxy_d
check "proxy d (id b) exited with status 1" test $? -eq 1
check "  and said why" grep -q "held by another live instance" "$T/proxy_d.log"
check "proxy b still answers" is b n-b

echo "# an instance dies"
stop proxy_c KILL
_c=$(code a n-c)
check "n-c through a right after c died: $_c $(reason) (an answer, no hang; 200 once its agent failed over)" sh -c "[ $_c = 502 ] || [ $_c = 503 ] || [ $_c = 200 ]"
check "c's claim expires in Redis within the TTL" \
  wait_until 10 sh -c "[ \"\$(redis-cli -p $REDIS exists '${PREFIX}i:c')\" = 0 ]"
check "n-c's agent (not restarted) fails over: parked on a or b" wait_until 15 sh -c \
  "curl -s --max-time 2 http://$(adm a)/tunnels http://$(adm b)/tunnels | grep -q '\"node\": \"n-c\"'"
check "  and says so in its log" grep -q "upstream 127.0.0.1:$TUN_c failed (.*): switching to 127.0.0.1:$TUN_a" \
  "$T/agent_c.log"
check "  its process is the one started with the fleet" running "$PID_agent_c"
for x in a b; do
  check "n-c through $x: 200" wait_until 10 is $x n-c
done

echo "# redis stops"
stop redis
check "a still serves its own node n-a" is a n-a
check "b still serves n-b and n-c" sh -c "[ \"\$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -H 'x-remote-node-id: n-b' http://127.0.0.1:$CLI_b/)\" = 200 ]"
check "n-b through a: 503 directory-unavailable" wait_until 5 sh -c \
  "curl -s --max-time 5 -o /dev/null -D - -H 'x-remote-node-id: n-b' http://127.0.0.1:$CLI_a/ | grep -qi '^x-revtun-error: directory-unavailable'"
check "a counted it" test "$(stat "$(adm a)" revtun_proxy_fleet_directory_unavailable)" -ge 1
start_redis || fail "redis-server did not restart"
check "after redis is back, n-b through a: 200 (b republished)" wait_until 10 is a n-b
check "a's directory reconnected" test "$(stat "$(adm a)" revtun_proxy_fleet_redis_reconnects)" -ge 1

echo "# clean exits"
for x in a b; do
  stop proxy_$x
  check "proxy $x exits 0 on SIGTERM" test $? -eq 0
  check "proxy $x logged no internal error" sh -c "! grep -q 'internal error' '$T/proxy_$x.log'"
done
check "proxy a released its id in Redis" sh -c "[ \"\$(redis-cli -p $REDIS exists '${PREFIX}i:a')\" = 0 ]"
stop_all
no_sanitizer_reports "$T"

echo
if [ $fails -eq 0 ]; then
  echo "fleet: all checks passed"
else
  echo "fleet: $fails check(s) failed"
fi
[ $fails -eq 0 ]
