#!/bin/sh
# End to end with the real programs on loopback:
#   curl / nghttp / h2load -> revtun-upstream-proxy -> reverse tunnel ->
#   revtun-downstream-agent -> revtun-demo-backend
# Each step prints what it checks. Waits poll the proxy's /tunnels with a
# generous bound; nothing asserts on timing otherwise. Skips (77) without
# curl, nghttp or h2load. Run by `make check`; by hand:
#   top_builddir=build top_srcdir=. tests/e2e.sh
# With the proxy under valgrind (its exit status then also says "no leak"):
#   PROXY_WRAP="build/libtool --mode=execute valgrind --error-exitcode=9 \
#     --leak-check=full --errors-for-leak-kinds=definite,indirect" ...
set -u

top_builddir=${top_builddir:-$(pwd)}
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
. "$top_srcdir/tests/e2e_lib.sh"

e2e_require curl nghttp h2load protoc

fails=0
e2e_begin e2e 30

# Nothing may hang `make check`: every client has a deadline.
curl() { command curl --max-time 60 "$@"; }
nghttp() { command nghttp --timeout=60 "$@"; }
h2load() { timeout 120 h2load "$@"; }


e2e_ports
NODE="x-remote-node-id: edge-1"

# Configs: the example upstream config as shipped, and an acceptor with a
# 200 ms RPING interval so a silent agent is found within about a second.
cat >"$T/acceptor.txtpb" <<EOF
# proto-message: envoy.extensions.filters.network.reverse_tunnel.v3.ReverseTunnel
ping_interval { nanos: 200000000 }
EOF
if ! encode "$top_srcdir/examples/configs/upstream.txtpb" "$T/upstream.bin" ||
   ! encode "$T/acceptor.txtpb" "$T/acceptor.bin"; then
  echo "FAIL - cannot encode the configs with protoc"
  exit 1
fi
STATP=envoy_revtun_demo # stat_prefix revtun_demo, as Prometheus names it

start_proxy() {
  spawn proxy "$T/proxy.log" ${PROXY_WRAP:-} "$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$TUN \
    --listen 127.0.0.1:$CLI --admin-listen $ADMIN --config "$T/upstream.bin" \
    --acceptor-config "$T/acceptor.bin" --keepalive-interval 500ms --keepalive-timeout 500ms \
    --grace-period 10s --verbose
  wait_until 30 curl -sf "http://$ADMIN/tunnels"
}
start_agent() {
  spawn agent "$T/agent.log" "$EX/revtun-downstream-agent" --upstream 127.0.0.1:$TUN \
    --node edge-1 --cluster edge --tenant acme --count 2 --backend 127.0.0.1:$BACK \
    --max-backoff-ms 1000
}

echo "# starting demo backend :$BACK, proxy (tunnels :$TUN, clients :$CLI, admin :$ADM), agent edge-1"
spawn backend "$T/backend.log" "$EX/revtun-demo-backend" --listen 127.0.0.1:$BACK
wait_until 10 curl -sf "http://127.0.0.1:$BACK/" || { echo "FAIL - backend did not start"; exit 1; }
start_proxy || { echo "FAIL - proxy did not start"; fails=1; exit 1; }
start_agent
check "agent edge-1 parks tunnels (polling /tunnels)" wait_until 20 node_has_idle $ADMIN edge-1

echo "# bodies: the backend's exact bytes, both protocols"
pattern 10485760 >"$T/10m"
want10m=$(sha <"$T/10m")
head -c 1000 "$T/10m" >"$T/1k"
got=$(curl -sS -H "$NODE" $URL/)
check "HTTP/1.1 GET / through the tunnel: 'hello from backend'" test "$got" = "hello from backend"
nghttp -H "$NODE" $URL/bytes/1000 >"$T/out" 2>"$T/nghttp.err"
check "h2c (nghttp) GET /bytes/1000: exact bytes" cmp -s "$T/out" "$T/1k"
got=$(curl -sS -H "$NODE" $URL/bytes/10485760 | sha)
check "HTTP/1.1 GET /bytes/10485760: sha256 of the pattern" test "$got" = "$want10m"
got=$(nghttp -H "$NODE" $URL/bytes/10485760 2>>"$T/nghttp.err" | sha)
check "h2c (nghttp) GET /bytes/10485760: sha256 of the pattern" test "$got" = "$want10m"
got=$(curl -sS --http2-prior-knowledge -H "$NODE" $URL/bytes/10485760 | sha)
check "h2c (curl --http2-prior-knowledge) GET /bytes/10485760: sha256" test "$got" = "$want10m"
head -c 6000000 /dev/urandom >"$T/upload"
wantup=$(sha <"$T/upload")
got=$(curl -sS -H "$NODE" --data-binary @"$T/upload" $URL/echo | sha)
check "HTTP/1.1 POST 6 MB to /echo: echoed exactly (Content-Length)" test "$got" = "$wantup"
got=$(curl -sS -H "$NODE" -H "Transfer-Encoding: chunked" --data-binary @"$T/upload" $URL/echo | sha)
check "HTTP/1.1 POST 6 MB chunked to /echo: echoed exactly" test "$got" = "$wantup"
got=$(curl -sS --http2-prior-knowledge -H "$NODE" --data-binary @"$T/upload" $URL/echo | sha)
check "h2c POST 6 MB to /echo: echoed exactly" test "$got" = "$wantup"
got=$(curl -sS -H "x-remote-cluster-id: edge" $URL/)
check "routing by x-remote-cluster-id: edge" test "$got" = "hello from backend"

echo "# multiplexing: h2load -n 200 -c 1 -m 100"
before=$(stat $ADMIN revtun_proxy_handoffs)
h2load -n 200 -c 1 -m 100 -H "$NODE" $URL/size/1024 >"$T/h2load.out" 2>&1
grep -E "^requests:|^status codes:" "$T/h2load.out" | sed 's/^/     /'
check "h2load: 200 requests, all 2xx" grep -q "^status codes: 200 2xx, 0 3xx, 0 4xx, 0 5xx" "$T/h2load.out"
after=$(stat $ADMIN revtun_proxy_handoffs)
sessions=$(node_field $ADMIN edge-1 sessions)
echo "     tunnels handed off during the run: $((after - before)); HTTP/2 sessions to edge-1: $sessions"
check "100 concurrent streams needed at most one new tunnel" test $((after - before)) -le 1
check "edge-1 is served by at most 2 sessions" test "${sessions:-99}" -le 2

echo "# /stats: strict Prometheus text (tests/prom_check) in Envoy's layout and labelled"
for q in "" "?hidden=include" "?hidden=include&labels=1"; do
  curl -s --max-time 2 "http://$ADMIN/stats$q" >"$T/stats.txt"
  check "/stats$q parses as Prometheus text" "$top_builddir/tests/prom_check" "$T/stats.txt"
done
check "labels: ${STATP}_nodes{node=\"edge-1\"} is a series" \
  grep -q "^${STATP}_nodes{node=\"edge-1\"} [1-9]" "$T/stats.txt"
check "histogram ${STATP}_cx_upgrade_time counted the handoffs" \
  test "$(stat $ADMIN ${STATP}_cx_upgrade_time_count)" -gt 0
resp=$(curl -s -o /dev/null -w '%{http_code}' "http://$ADMIN/stats?hidden=bogus")
check "/stats?hidden=bogus -> 400" test "$resp" = 400

echo "# no tunnel: 503 with the reason"
resp=$(curl -s -w ' %{http_code}' -H "x-remote-node-id: nope" $URL/)
check "unknown node -> 503 'no reverse tunnel for node nope'" test "$resp" = "no reverse tunnel for node nope
 503"
resp=$(curl -s -w ' %{http_code}' -H "x-remote-cluster-id: nowhere" $URL/)
check "unknown cluster -> 503 'no reverse tunnel for cluster nowhere'" \
  test "$resp" = "no reverse tunnel for cluster nowhere
 503"
resp=$(curl -s -w ' %{http_code}' --http2-prior-knowledge $URL/)
check "no routing header (h2c) -> 503 'missing x-remote-node-id header'" \
  test "$resp" = "missing x-remote-node-id header
 503"

echo "# a frozen agent (SIGSTOP: no FIN, no answers): keepalive drops its tunnels"
curl -s -o /dev/null -H "$NODE" $URL/ # make sure a session is in use
kill -STOP "$PID_agent"
check "pool and sessions of edge-1 empty (RPING + HTTP/2 PING timeouts)" wait_until 20 node_gone $ADMIN edge-1
check "stat ${STATP}_tunnel_closed_idle_ping_timeout > 0" \
  test "$(stat $ADMIN ${STATP}_tunnel_closed_idle_ping_timeout)" -gt 0
check "stat ${STATP}_tunnel_closed_http2_ping_timeout > 0 (noted by the proxy)" \
  test "$(stat $ADMIN ${STATP}_tunnel_closed_http2_ping_timeout)" -gt 0
resp=$(curl -s -o /dev/null -w '%{http_code}' -H "$NODE" $URL/)
check "request for edge-1 -> 503" test "$resp" = 503
stop agent KILL

echo "# agent killed (SIGKILL) while a session is in use"
start_agent
check "restarted agent parks tunnels" wait_until 20 node_has_idle $ADMIN edge-1
got=$(curl -sS -H "$NODE" $URL/)
check "service restored after the agent restart" test "$got" = "hello from backend"
stop agent KILL
check "pool of edge-1 empty after SIGKILL" wait_until 20 node_gone $ADMIN edge-1
resp=$(curl -s -w ' %{http_code}' -H "$NODE" $URL/)
check "request for edge-1 -> 503 'no reverse tunnel for node edge-1'" \
  test "$resp" = "no reverse tunnel for node edge-1
 503"
start_agent
check "agent started again parks tunnels" wait_until 20 node_has_idle $ADMIN edge-1
got=$(curl -sS -H "$NODE" $URL/)
check "service restored" test "$got" = "hello from backend"

echo "# proxy restart: the agent reconnects with backoff"
stop proxy TERM
rc=$?
check "proxy exits 0 on SIGTERM" test $rc -eq 0
start_proxy
check "agent reconnected to the new proxy" wait_until 30 node_has_idle $ADMIN edge-1
got=$(curl -sS -H "$NODE" $URL/)
check "service restored after the proxy restart" test "$got" = "hello from backend"

echo "# graceful shutdown: SIGTERM while a slow download is in flight"
pattern 20971520 | sha >"$T/want20m"
(curl -sS --limit-rate 10M -H "$NODE" $URL/bytes/20971520 | sha >"$T/got20m") &
dl=$!
streams_open() { test "$(node_field $ADMIN edge-1 streams)" -gt 0; }
wait_until 10 streams_open
stop proxy TERM
rc=$?
wait $dl
grep 'stopping;' "$T/proxy.log" | tail -n 1 | sed 's/^/     proxy: /'
check "the in-flight download completes intact" cmp -s "$T/got20m" "$T/want20m"
check "proxy exits 0 after draining" test $rc -eq 0
check "proxy logged no internal error" sh -c "! grep -q 'internal error' '$T/proxy.log'"

stop_all # every program exits now, so what sanitizers say at exit is in the logs
no_sanitizer_reports "$T"

echo
if [ $fails -eq 0 ]; then
  echo "e2e: all checks passed"
else
  echo "e2e: $fails check(s) failed"
fi
[ $fails -eq 0 ]
