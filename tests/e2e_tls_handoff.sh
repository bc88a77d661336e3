#!/bin/sh
# TLS after the handoff, end to end on loopback, with a PKI made by the test
# (tests/tls_pki):
#   curl -> proxy --handoff-tls-ca (TLS client on the handed-off tunnel,
#   ALPN h2, the agent's certificate must name the node) -> agent --tls
#   (TLS server with its certificate) -> demo backend
# Bad inputs, each with its outcome and counter: an agent whose certificate
# names another node (502 handoff-tls-failed, or another tunnel), an agent
# serving cleartext where TLS is expected, a stalled handshake (timeout), a
# proxy speaking cleartext to an agent that expects TLS, RPINGs injected at
# the handoff in both directions (tests/rping_relay). No fd leak in the
# proxy. SIGHUP reloads the handoff files (proxy) and the certificates
# (agent) with the tunnels kept. Skips (77) without curl, protoc or openssl.
# By hand: top_builddir=build top_srcdir=. tests/e2e_tls_handoff.sh
set -u

top_builddir=${top_builddir:-$(pwd)}
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
. "$top_srcdir/tests/e2e_lib.sh"

e2e_require curl protoc openssl -- "$top_builddir/tests/tls_pki" "$top_builddir/tests/rping_relay"

fails=0
e2e_begin e2e-tls-handoff 40
P=$T/pki
curl() { command curl --max-time 30 "$@"; }

mkdir "$P" && "$top_builddir/tests/tls_pki" "$P" || { echo "FAIL - cannot make the PKI"; exit 1; }

e2e_ports
pick_port RELAY
pick_port TUN2
pick_port CLI2
pick_port ADMIN2P
ADMIN2=127.0.0.1:$ADMIN2P

# No node-id binding here on purpose: the handoff check is what stops an
# agent registered under a node its certificate does not name.
cat >"$T/acceptor.txtpb" <<EOF
# proto-message: envoy.extensions.filters.network.reverse_tunnel.v3.ReverseTunnel
ping_interval { nanos: 200000000 }
EOF
cat >"$T/slow.txtpb" <<EOF
# proto-message: envoy.extensions.filters.network.reverse_tunnel.v3.ReverseTunnel
ping_interval { seconds: 30 }
EOF
encode "$T/acceptor.txtpb" "$T/acceptor.bin" && encode "$T/slow.txtpb" "$T/slow.bin" ||
  { echo "FAIL - cannot encode the configs"; exit 1; }

spawn backend "$T/backend.log" "$EX/revtun-demo-backend" --listen 127.0.0.1:$BACK
wait_until 10 curl -sf "http://127.0.0.1:$BACK/" || { echo "FAIL - backend did not start"; exit 1; }
echo "# proxy: TLS tunnel listener :$TUN, TLS after the handoff (timeout 1s)"
spawn proxy "$T/proxy.log" "$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$TUN \
  --listen 127.0.0.1:$CLI --admin-listen $ADMIN --acceptor-config "$T/acceptor.bin" \
  --tunnel-tls-cert "$P/upstream.pem" --tunnel-tls-key "$P/upstream.key" \
  --tunnel-tls-ca "$P/ca.pem" --handoff-tls-ca "$P/ca.pem" --handoff-tls-timeout 1s \
  --session-idle-timeout 300ms --verbose
wait_until 30 curl -sf "http://$ADMIN/tunnels" || { echo "FAIL - proxy did not start"; exit 1; }
PROXY_PID=$PID_proxy
check "startup warning: a tunnel CA without node-id binding" \
  grep -q "without identity binding" "$T/proxy.log"
check "startup: sessions after the handoff speak TLS" \
  grep -q "sessions after the handoff speak TLS (agent certificate naming the node)" "$T/proxy.log"

# agent NAME NODE UPSTREAM_PORT [FLAGS...]
agent() {
  _n=$1 _node=$2 _port=$3
  shift 3
  spawn "agent_$_n" "$T/agent-$_n.log" "$EX/revtun-downstream-agent" \
    --upstream 127.0.0.1:$_port --node "$_node" --cluster edge --tenant acme \
    --backend 127.0.0.1:$BACK --max-backoff-ms 300 "$@"
}
tls_flags() { echo "--tls --ca $P/ca.pem --sni localhost --cert $P/$1.pem --key $P/$1.key"; }
fds() { ls /proc/$1/fd | wc -l; }
quiet() { [ "$(stat $ADMIN revtun_proxy_sessions)" = 0 ] && [ "$(stat $ADMIN revtun_proxy_client_connections)" = 0 ]; }


echo "# a good agent: exact bytes over TLS after the handoff"
agent good edge-1 $TUN $(tls_flags edge-1) --count 2
check "edge-1 parks over TLS" wait_until 20 node_has_idle $ADMIN edge-1
want=$(pattern 3000000 | sha)
got=$(curl -sS -H "x-remote-node-id: edge-1" $URL/bytes/3000000 | sha)
check "GET /bytes/3000000: sha256 of the pattern" test "$got" = "$want"
head -c 200000 /dev/urandom >"$T/body"
curl -sS -H "x-remote-node-id: edge-1" --data-binary "@$T/body" $URL/echo >"$T/echoed"
check "POST /echo of 200000 random bytes: the same bytes back" cmp -s "$T/body" "$T/echoed"
check "counted in handoff_tls_handshakes" test "$(stat $ADMIN revtun_proxy_handoff_tls_handshakes)" -ge 1
check "the proxy logs TLS with ALPN h2" grep -q "with the agent of node edge-1 (ALPN h2)" "$T/proxy.log"
check "the agent logs its server side (ALPN h2)" \
  grep -q "after the handoff (ALPN h2), serving HTTP/2" "$T/agent-good.log"
check "h2load: 200 requests over 4 TLS sessions, all 2xx" \
  sh -c "h2load -n 200 -c 4 -H 'x-remote-node-id: edge-1' $URL/bytes/1000 2>&1 | grep -q '200 succeeded'"
wait_until 10 quiet
wait_until 20 node_has_idle $ADMIN edge-1
sleep 0.5
fd_before=$(fds $PROXY_PID)
echo "# proxy fds at rest: $fd_before"

echo "# an agent whose certificate names edge-2, registered as edge-3"
f0=$(stat $ADMIN revtun_proxy_handoff_tls_failures)
agent liar edge-3 $TUN $(tls_flags edge-2)
check "the liar parks (no binding at the handshake)" wait_until 20 node_has_idle $ADMIN edge-3
code=$(curl -s -o /dev/null -D "$T/liar.h" -w '%{http_code}' -H "x-remote-node-id: edge-3" $URL/bytes/10)
check "edge-3: 502 ($code)" test "$code" = 502
check "... with x-revtun-error: handoff-tls-failed" grep -qi '^x-revtun-error: handoff-tls-failed' "$T/liar.h"
f1=$(stat $ADMIN revtun_proxy_handoff_tls_failures)
check "counted in handoff_tls_failures (${f0:-0} -> ${f1:-0})" test "${f1:-0}" -gt "${f0:-0}"
check "the proxy logs why (hostname mismatch)" \
  grep -q "TLS after the handoff failed: .*hostname mismatch" "$T/proxy.log"
stop agent_liar KILL

echo "# the same liar registered as edge-1 next to the good agent: re-routed"
agent liar1 edge-1 $TUN $(tls_flags edge-2)
wait_until 20 grep -q "tunnel parked" "$T/agent-liar1.log"
pattern 1000 >"$T/out1k"
ok200=0
for i in 1 2 3 4 5 6; do
  c=$(curl -s -o "$T/r$i" -w '%{http_code}' -H "x-remote-node-id: edge-1" $URL/bytes/1000)
  [ "$c" = 200 ] && cmp -s "$T/r$i" "$T/out1k" && ok200=$((ok200 + 1))
done
check "6 of 6 requests to edge-1 answered 200 with the exact bytes ($ok200)" test $ok200 -eq 6
stop agent_liar1 KILL

echo "# the agent refuses a proxy that speaks cleartext HTTP/2 after the handoff"
spawn proxy3 "$T/proxy3.log" "$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$TUN2 \
  --listen 127.0.0.1:$CLI2 --admin-listen $ADMIN2 --acceptor-config "$T/slow.bin" \
  --tunnel-tls-cert "$P/upstream.pem" --tunnel-tls-key "$P/upstream.key"
wait_until 30 curl -sf "http://$ADMIN2/tunnels" || fail "proxy3 did not start"
agent strict edge-1 $TUN2 $(tls_flags edge-1)
check "the agent parks at the proxy without handoff TLS" wait_until 20 node_has_idle $ADMIN2 edge-1
code=$(curl -s -o /dev/null -w '%{http_code}' -H "x-remote-node-id: edge-1" http://127.0.0.1:$CLI2/bytes/10)
check "the request fails (502: $code)" test "$code" = 502
check "the agent logs the refused cleartext preface" \
  wait_until 5 grep -q "cleartext after the handoff (an HTTP/2 preface), but --tls expects a TLS ClientHello: refused" "$T/agent-strict.log"
stop agent_strict KILL
stop proxy3 TERM

echo "# proxy2: plaintext tunnel listener, TLS after the handoff, 30s RPING"
spawn proxy2 "$T/proxy2.log" "$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$TUN2 \
  --listen 127.0.0.1:$CLI2 --admin-listen $ADMIN2 --acceptor-config "$T/slow.bin" \
  --handoff-tls-ca "$P/ca.pem" --handoff-tls-timeout 1s
wait_until 30 curl -sf "http://$ADMIN2/tunnels" || fail "proxy2 did not start"
agent clear edge-5 $TUN2
check "a cleartext agent parks" wait_until 20 node_has_idle $ADMIN2 edge-5
code=$(curl -s -o /dev/null -D "$T/clear.h" -w '%{http_code}' -H "x-remote-node-id: edge-5" http://127.0.0.1:$CLI2/bytes/10)
check "cleartext agent where TLS is expected: 502 ($code)" test "$code" = 502
check "... handoff-tls-failed" grep -qi '^x-revtun-error: handoff-tls-failed' "$T/clear.h"
check "... counted in handoff_tls_failures" test "$(stat $ADMIN2 revtun_proxy_handoff_tls_failures)" -ge 1
stop agent_clear KILL

agent stall edge-6 $TUN2
check "an agent that will stall parks" wait_until 20 node_has_idle $ADMIN2 edge-6
kill -STOP "$PID_agent_stall"
t0=$(date +%s)
code=$(curl -s -o /dev/null -D "$T/stall.h" -w '%{http_code}' -H "x-remote-node-id: edge-6" http://127.0.0.1:$CLI2/bytes/10)
t1=$(date +%s)
kill -CONT "$PID_agent_stall"
check "stalled handshake: 502 after the 1s deadline ($code, $((t1 - t0))s)" \
  sh -c "[ '$code' = 502 ] && [ $((t1 - t0)) -ge 1 ] && [ $((t1 - t0)) -le 5 ]"
check "... handoff-tls-failed" grep -qi '^x-revtun-error: handoff-tls-failed' "$T/stall.h"
check "... counted in handoff_tls_timeouts" test "$(stat $ADMIN2 revtun_proxy_handoff_tls_timeouts)" -ge 1
check "... the proxy logs the timeout" grep -q "TLS handshake timed out" "$T/proxy2.log"
stop agent_stall KILL
stop proxy2 TERM

echo "# RPINGs injected at the handoff, both ways (rping_relay)"
spawn relay "$T/relay.log" "$top_builddir/tests/rping_relay" $RELAY $TUN
sleep 0.3
agent relayed7 edge-1 $RELAY $(tls_flags edge-1) --verbose
stop agent_good TERM # edge-1's tunnels now only come through the relay
check "edge-1 parks through the relay" wait_until 20 grep -q "tunnel parked" "$T/agent-relayed7.log"
wait_until 20 node_has_idle $ADMIN edge-1
sleep 0.5 # a few RPING rounds through the relay
got=$(curl -sS -H "x-remote-node-id: edge-1" $URL/bytes/3000000 | sha)
check "GET /bytes/3000000 with RPINGs around the ClientHello: exact bytes" test "$got" = "$want"
check "the relay injected them" grep -q "injected RPING both ways at the handoff" "$T/relay.log"
check "the agent served TLS after the RPING injected right before the ClientHello" \
  grep -q "after the handoff (ALPN h2), serving HTTP/2" "$T/agent-relayed7.log"
stop agent_relayed7 KILL
stop relay TERM

echo "# SIGHUP: handoff files on the proxy, certificates on the agent; tunnels stay"
agent good2 edge-1 $TUN $(tls_flags edge-1) --count 2
check "edge-1 parks again" wait_until 20 node_has_idle $ADMIN edge-1
kill -HUP "$PROXY_PID"
check "proxy: handoff CA, certificate and key reloaded" \
  wait_until 10 grep -q "SIGHUP: handoff CA, certificate and key reloaded" "$T/proxy.log"
kill -HUP "$PID_agent_good2"
check "agent: CA, certificate and key reloaded" \
  wait_until 10 grep -q "SIGHUP: CA, certificate and key reloaded" "$T/agent-good2.log"
check "no tunnel closed by the reloads" sh -c "! grep -q 'closed by upstream' '$T/agent-good2.log'"
got=$(curl -sS -H "x-remote-node-id: edge-1" $URL/bytes/1000000 | sha)
check "requests still served after the reloads" test "$got" = "$(pattern 1000000 | sha)"

echo "# no fd leak in the proxy"
check "no session and no client connection left" wait_until 10 quiet
wait_until 20 node_has_idle $ADMIN edge-1
sleep 0.5
fd_after=$(fds $PROXY_PID)
check "proxy fds back at rest ($fd_before -> $fd_after)" test "$fd_after" -le "$fd_before"

echo "# flags the proxy refuses"
check "--handoff-tls-verify maybe: usage error (2)" \
  sh -c "'$EX/revtun-upstream-proxy' --handoff-tls-verify maybe 2>/dev/null; [ \$? -eq 2 ]"
check "--handoff-tls-timeout 0: usage error (2)" \
  sh -c "'$EX/revtun-upstream-proxy' --handoff-tls-timeout 0 2>/dev/null; [ \$? -eq 2 ]"
check "--handoff-tls-cert without --handoff-tls-ca: refused at start" \
  sh -c "'$EX/revtun-upstream-proxy' --handoff-tls-cert '$P/edge-1.pem' --handoff-tls-key '$P/edge-1.key' 2>&1 | grep -q 'need --handoff-tls-ca'"
check "a --handoff-tls-ca that is not a CA file: refused at start" \
  sh -c "'$EX/revtun-upstream-proxy' --handoff-tls-ca '$T/body' 2>&1 | grep -q 'handoff TLS:'"

stop proxy TERM
rc=$?
check "proxy exits 0 on SIGTERM" test $rc -eq 0
stop_all
no_sanitizer_reports "$T"
echo "# $fails failure(s)"
[ $fails -eq 0 ]
