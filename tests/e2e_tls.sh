#!/bin/sh
# The programs over real TLS on loopback, with a PKI made by the test
# (tests/tls_pki: a CA, another CA, expired and revoked certificates, a CRL):
#   agent --tls (client certificate) -> proxy --tunnel-tls-* (mutual TLS,
#   node id bound to the certificate's DNS SAN) -> parked raw -> HTTP/2
# Refused: a certificate of another CA, an expired one, a revoked one, one
# naming another node, a plaintext agent. SIGHUP serves a new certificate
# and keeps the parked tunnels. Skips (77) without curl, protoc or openssl.
# Run by `make check`; by hand: top_builddir=build top_srcdir=. tests/e2e_tls.sh
set -u

top_builddir=${top_builddir:-$(pwd)}
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
. "$top_srcdir/tests/e2e_lib.sh"

e2e_require curl protoc openssl -- "$top_builddir/tests/tls_pki"

fails=0
e2e_begin e2e-tls 30
P=$T/pki
curl() { command curl --max-time 60 "$@"; }

mkdir "$P" && "$top_builddir/tests/tls_pki" "$P" || { echo "FAIL - cannot make the PKI"; exit 1; }
# The proxy's certificate files, swapped for the SIGHUP reload.
cp "$P/upstream.pem" "$T/server.pem" && cp "$P/upstream.key" "$T/server.key"

e2e_ports

cat >"$T/acceptor.txtpb" <<EOF
# proto-message: envoy.extensions.filters.network.reverse_tunnel.v3.ReverseTunnel
ping_interval { nanos: 200000000 }
validation { node_id_format: "%DOWNSTREAM_PEER_DNS_SAN%" }
EOF
encode "$T/acceptor.txtpb" "$T/acceptor.bin" || { echo "FAIL - cannot encode the config"; exit 1; }

spawn backend "$T/backend.log" "$EX/revtun-demo-backend" --listen 127.0.0.1:$BACK
wait_until 10 curl -sf "http://127.0.0.1:$BACK/" || { echo "FAIL - backend did not start"; exit 1; }
echo "# proxy: TLS tunnel listener :$TUN, client CA, CRL, node id = certificate DNS SAN"
spawn proxy "$T/proxy.log" "$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$TUN \
  --listen 127.0.0.1:$CLI --admin-listen $ADMIN --acceptor-config "$T/acceptor.bin" \
  --tunnel-tls-cert "$T/server.pem" --tunnel-tls-key "$T/server.key" \
  --tunnel-tls-ca "$P/ca.pem" --tunnel-tls-crl "$P/crl.pem" --handoff-tls-ca "$P/ca.pem" --verbose
wait_until 30 curl -sf "http://$ADMIN/tunnels" || { echo "FAIL - proxy did not start"; exit 1; }
check "no identity-binding warning (the config binds the node id)" \
  sh -c "! grep -q 'without identity binding' '$T/proxy.log'"

# agent NAME NODE [FLAGS...]: an agent claiming NODE, log $T/agent-NAME.log.
agent() {
  _n=$1 _node=$2
  shift 2
  spawn "agent_$(echo "$_n" | tr -c 'a-z0-9\n' _)" "$T/agent-$_n.log" "$EX/revtun-downstream-agent" \
    --upstream 127.0.0.1:$TUN --node "$_node" --cluster edge --tenant acme \
    --backend 127.0.0.1:$BACK --max-backoff-ms 300 "$@"
}
tls_flags() { echo "--tls --ca $P/ca.pem --sni localhost --cert $P/$1.pem --key $P/$1.key"; }
retried() { grep -q "retrying" "$T/agent-$1.log"; }
TP=envoy_reverse_tunnel_acceptor_transport

# refused NAME STAT REASON [AGENT FLAGS...]: an agent NAME claiming edge-1
# fails and retries, gets no tunnel and no HTTP answer; stat STAT goes up and
# the proxy's handshake_failed record says REASON.
refused() {
  _before=$(stat $ADMIN "$2")
  _rn=$1 _rs=$2 _rr=$3
  shift 3
  agent "$_rn" edge-1 "$@"
  set -- "$_rn" "$_rs"
  check "$1: refused, the agent retries" wait_until 20 retried "$1"
  check "$1: never parked, no HTTP answer" \
    sh -c "! grep -q -E 'tunnel parked|handshake rejected|malformed' '$T/agent-$1.log'"
  check "$1: no tunnel for edge-1" node_gone $ADMIN edge-1
  _after=$(stat $ADMIN "$2")
  check "$1: counted in $2 (${_before:-0} -> ${_after:-0})" test "${_after:-0}" -gt "${_before:-0}"
  check "$1: the proxy's handshake_failed record says '$_rr'" \
    grep -q "record handshake_failed.*failure_reason=.*$_rr" "$T/proxy.log"
  stop "agent_$(echo "$1" | tr -c 'a-z0-9\n' _)" KILL
}

echo "# certificates the proxy must refuse (each claims edge-1, as its SAN says)"
refused stranger ${TP}_fail_verify_error "unable to get local issuer certificate" $(tls_flags stranger)
refused expired ${TP}_fail_verify_error "certificate has expired" $(tls_flags expired)
refused revoked ${TP}_fail_verify_error "certificate revoked" $(tls_flags revoked)
refused nocert ${TP}_fail_verify_no_cert "presented no certificate" --tls --ca "$P/ca.pem" --sni localhost
for a in stranger expired revoked nocert; do
  check "$a: the agent's log says the session ended inside TLS" grep -q "inside TLS" "$T/agent-$a.log"
done
echo "# a plaintext agent on the TLS listener"
refused plain ${TP}_connection_error "SSL routines::http request"
check "proxy still serving after the refusals" curl -sf "http://$ADMIN/tunnels"

echo "# the agent verifies the upstream: a CA that did not sign it, a name it does not carry"
agent wrongca edge-1 --tls --ca "$P/other-ca.pem" --sni localhost --cert "$P/edge-1.pem" --key "$P/edge-1.key"
check "agent with the wrong --ca refuses the upstream" wait_until 20 retried wrongca
check "... its log says why" grep -q "certificate verify failed" "$T/agent-wrongca.log"
stop agent_wrongca KILL
agent wrongname edge-1 --tls --ca "$P/ca.pem" --sni elsewhere --cert "$P/edge-1.pem" --key "$P/edge-1.key"
check "agent with --sni elsewhere refuses the upstream (hostname mismatch)" wait_until 20 retried wrongname
check "... its log says why" grep -q "hostname mismatch" "$T/agent-wrongname.log"
stop agent_wrongname KILL

echo "# a certificate naming another node: 403 validation_failed"
before=$(stat $ADMIN envoy_reverse_tunnel_handshake_validation_failed)
agent liar edge-1 $(tls_flags edge-2)
check "edge-2's certificate claiming edge-1: rejected 403" wait_until 20 grep -q '403 Forbidden "validation_failed"' "$T/agent-liar.log"
check "no tunnel for edge-1" node_gone $ADMIN edge-1
after=$(stat $ADMIN envoy_reverse_tunnel_handshake_validation_failed)
check "counted in handshake_validation_failed (${before:-0} -> ${after:-0})" test "${after:-0}" -gt "${before:-0}"
stop agent_liar KILL

echo "# good certificates: end to end"
agent good edge-1 $(tls_flags edge-1) --count 2
agent edge2 edge-2 $(tls_flags edge-2)
check "edge-1 parks tunnels over TLS" wait_until 20 node_has_idle $ADMIN edge-1
check "edge-2 parks with its own certificate" wait_until 20 node_has_idle $ADMIN edge-2
pattern 1000 >"$T/1k"
curl -sS -H "x-remote-node-id: edge-1" $URL/bytes/1000 >"$T/out"
check "GET /bytes/1000 through edge-1: exact bytes" cmp -s "$T/out" "$T/1k"
want=$(pattern 3000000 | sha)
got=$(curl -sS -H "x-remote-node-id: edge-2" $URL/bytes/3000000 | sha)
check "GET /bytes/3000000 through edge-2: sha256 of the pattern" test "$got" = "$want"
check "the three tunnels came through TLS handshakes (stat ${TP}_handshake >= 3)" \
  test "$(stat $ADMIN ${TP}_handshake)" -ge 3

echo "# SIGHUP: a new server certificate, parked tunnels stay"
served_cn() {
  openssl s_client -connect 127.0.0.1:$TUN -servername localhost -CAfile "$P/ca.pem" \
    -cert "$P/edge-1.pem" -key "$P/edge-1.key" </dev/null 2>/dev/null | grep -m1 "^subject="
}
s1=$(served_cn)
check "before: the proxy serves CN upstream ($s1)" sh -c "echo '$s1' | grep -q 'CN *= *upstream$'"
closed_before=$(grep -c "closed by upstream" "$T/agent-good.log")
wait_until 20 node_has_idle $ADMIN edge-1
idle_before=$(node_field $ADMIN edge-1 idle)
cp "$P/upstream2.pem" "$T/server.pem" && cp "$P/upstream2.key" "$T/server.key"
kill -HUP "$PID_proxy"
check "proxy logged the reload" wait_until 10 grep -q "SIGHUP: certificates, key and CRL reloaded" "$T/proxy.log"
s2=$(served_cn)
check "after: the proxy serves the new certificate ($s2)" sh -c "echo '$s2' | grep -q 'upstream reloaded'"
sleep 1 # five RPING rounds
closed_after=$(grep -c "closed by upstream" "$T/agent-good.log")
check "no parked tunnel of edge-1 was closed by the reload" test "$closed_after" -eq "$closed_before"
check "edge-1 still has its $idle_before parked tunnel(s)" test "$(node_field $ADMIN edge-1 idle)" -ge "$idle_before"
curl -sS -H "x-remote-node-id: edge-1" $URL/bytes/1000 >"$T/out"
check "requests still served after the reload" cmp -s "$T/out" "$T/1k"
printf 'garbage\n' >"$T/server.pem"
kill -HUP "$PID_proxy"
check "a broken file on SIGHUP keeps the previous certificate" \
  wait_until 10 grep -q "SIGHUP: reload failed, keeping the previous certificates" "$T/proxy.log"
s3=$(served_cn)
check "... still the reloaded certificate ($s3)" sh -c "echo '$s3' | grep -q 'upstream reloaded'"

echo "# a client CA without identity binding: warned at start"
pick_port TUN2
pick_port CLI2
spawn proxy2 "$T/proxy2.log" "$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$TUN2 \
  --listen 127.0.0.1:$CLI2 --tunnel-tls-cert "$P/upstream.pem" --tunnel-tls-key "$P/upstream.key" \
  --tunnel-tls-ca "$P/ca.pem"
check "warning logged" wait_until 10 grep -q "without identity binding" "$T/proxy2.log"
stop proxy2 TERM
check "--tunnel-tls-crl without --tunnel-tls-ca is refused" \
  sh -c "! '$EX/revtun-upstream-proxy' --tunnel-tls-cert '$P/upstream.pem' --tunnel-tls-key '$P/upstream.key' --tunnel-tls-crl '$P/crl.pem' 2>/dev/null"
check "agent --cert without --tls is refused" \
  sh -c "! '$EX/revtun-downstream-agent' --upstream 127.0.0.1:1 --node a --cluster b --tenant c --cert x 2>/dev/null"

stop proxy TERM
rc=$?
check "proxy exits 0 on SIGTERM" test $rc -eq 0
stop_all # every program exits now, so what sanitizers say at exit is in the logs
if grep -l -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T"/*.log >"$T/sanitized.list" 2>/dev/null; then
  fail "sanitizer reports in $(tr '\n' ' ' <"$T/sanitized.list")"
else
  ok "no sanitizer report in any program's log"
fi
echo "# $fails failure(s)"
[ $fails -eq 0 ]
