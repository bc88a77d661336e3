#!/bin/sh
# End to end: revtun-upstream-proxy picking tunnels by --host-id-format and
# --tenant-id-format (the library's host selector), with real agents and two
# demo backends told apart by their x-backend header:
#   - a custom format ("edge-%REQ(x-box)%") names the node;
#   - the key is tried as a cluster first, then as a node: key "edge" is
#     cluster edge (node edge-1) although a node named "edge" exists;
#   - a missing header renders "-" inside the key: 503 with the key;
#   - under tenant isolation the tenant format scopes the lookup: two agents
#     with the same node id in two tenants are told apart, a request without
#     a tenant is refused, an unknown tenant gets 503.
# Skips (77) without curl or protoc.
set -u

top_builddir=${top_builddir:-$(pwd)}
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
. "$top_srcdir/tests/e2e_lib.sh"

e2e_require curl protoc

fails=0
e2e_begin e2e-hostsel 30
curl() { command curl --max-time 30 "$@"; }

e2e_ports
pick_port BACK2
for iso in false true; do
  cat >"$T/upstream-$iso.txtpb" <<EOF
# proto-message: envoy.extensions.bootstrap.reverse_tunnel.upstream_socket_interface.v3.UpstreamReverseConnectionSocketInterface
enable_tenant_isolation { value: $iso }
EOF
  encode "$T/upstream-$iso.txtpb" "$T/upstream-$iso.bin" || {
    echo "FAIL - cannot encode the config with protoc"
    exit 1
  }
done

# backend NAME (from x-backend) and status of one request: "NAME CODE"
ask() {
  curl -s -o "$T/body" -D "$T/head" "$@" $URL/ >/dev/null
  _b=$(sed -n 's/^x-backend: *\([^\r]*\).*/\1/ip' "$T/head")
  _c=$(sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' "$T/head")
  echo "${_b:-none} $_c"
}
body() { tr -d '\r' <"$T/body"; }

start_proxy() { # ISOLATION, then extra options
  _iso=$1
  shift
  spawn proxy "$T/proxy.log" "$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$TUN \
    --listen 127.0.0.1:$CLI --admin-listen $ADMIN --config "$T/upstream-$_iso.bin" "$@"
  wait_until 30 curl -sf "http://$ADMIN/tunnels"
}
agent() { # NAME NODE CLUSTER TENANT BACKEND_PORT
  spawn "$1" "$T/$1.log" "$EX/revtun-downstream-agent" --upstream 127.0.0.1:$TUN \
    --node "$2" --cluster "$3" --tenant "$4" --count 2 --backend 127.0.0.1:$5 \
    --max-backoff-ms 500
}

spawn backend1 "$T/backend1.log" "$EX/revtun-demo-backend" --listen 127.0.0.1:$BACK --name one
spawn backend2 "$T/backend2.log" "$EX/revtun-demo-backend" --listen 127.0.0.1:$BACK2 --name two
wait_until 10 curl -sf "http://127.0.0.1:$BACK/" && wait_until 10 curl -sf "http://127.0.0.1:$BACK2/" ||
  { echo "FAIL - backends did not start"; exit 1; }

echo "# custom host-id format, cluster before node (no tenant isolation)"
start_proxy false --host-id-format 'edge%REQ(x-box)%' ||
  { echo "FAIL - proxy did not start"; exit 1; }
agent a1 edge-1 edge acme $BACK   # node edge-1 of cluster edge -> backend one
agent a2 edge other acme $BACK2   # a node named like the cluster -> backend two
check "both agents park tunnels" wait_until 20 sh -c \
  "$(command -v curl) -s http://$ADMIN/tunnels | grep -q '\"node\": \"edge-1\"' &&
   $(command -v curl) -s http://$ADMIN/tunnels | grep -q '\"node\": \"edge\"'"
wait_until 20 node_has_idle $ADMIN edge && wait_until 20 node_has_idle $ADMIN edge-1
check "x-box: -1 renders edge-1: node edge-1 (backend one)" test "$(ask -H 'x-box: -1')" = "one 200"
check "h2c too" test "$(ask --http2-prior-knowledge -H 'x-box: -1')" = "one 200"
check "x-box empty renders edge: cluster edge first (backend one), not node edge" \
  test "$(ask -H 'x-box;')" = "one 200"
check "again: still the cluster" test "$(ask -H 'x-box;')" = "one 200"
check "x-box: -other-cluster names nothing: 503" \
  test "$(ask -H 'x-box: -other-cluster')" = "none 503"
check "  with the reason" test "$(body)" = "no reverse tunnel for node edge-other-cluster"
check "no x-box renders edge-: 503 for node edge-" test "$(ask)" = "none 503"
check "  with the reason" test "$(body)" = "no reverse tunnel for node edge-"
stop proxy
stop a1
stop a2

echo "# a key that is only a cluster: node edge's cluster 'other'"
start_proxy false --host-id-format '%REQ(x-target)%' || { echo "FAIL - proxy did not start"; exit 1; }
agent a2 edge other acme $BACK2
check "agent edge parks tunnels" wait_until 20 node_has_idle $ADMIN edge
check "x-target: other is cluster other (backend two)" test "$(ask -H 'x-target: other')" = "two 200"
check "x-target: edge is node edge (backend two)" test "$(ask -H 'x-target: edge')" = "two 200"
check "the shorthand headers no longer route" test "$(ask -H 'x-remote-node-id: edge')" = "none 503"
check "  reason" test "$(body)" = "--host-id-format renders no tunnel key for this request"
stop proxy
stop a2

echo "# tenant isolation: the tenant format scopes the lookup"
start_proxy true --tenant-id-format '%REQ(x-org)%' || { echo "FAIL - proxy did not start"; exit 1; }
agent a1 edge-1 edge acme $BACK
agent a2 edge-1 edge globex $BACK2
check "both tenants park tunnels for edge-1" wait_until 20 sh -c \
  "[ \$($(command -v curl) -s http://$ADMIN/tunnels | grep -c '\"node\": \"edge-1\"') -ge 2 ]"
check "acme's edge-1 (backend one)" \
  test "$(ask -H 'x-remote-node-id: edge-1' -H 'x-org: acme')" = "one 200"
check "globex's edge-1 (backend two)" \
  test "$(ask -H 'x-remote-node-id: edge-1' -H 'x-org: globex')" = "two 200"
check "globex's cluster edge (backend two)" \
  test "$(ask -H 'x-remote-cluster-id: edge' -H 'x-org: globex')" = "two 200"
check "the shorthand tenant header is not the tenant: 400" \
  test "$(ask -H 'x-remote-node-id: edge-1' -H 'x-remote-tenant-id: acme')" = "none 400"
check "  reason" test "$(body)" = "tenant isolation is on: --tenant-id-format renders no tenant"
check "an unknown tenant: 503" test "$(ask -H 'x-remote-node-id: edge-1' -H 'x-org: initech')" = "none 503"
check "a tenant that spells a scoped key: 400" \
  test "$(ask -H 'x-remote-node-id: edge-1' -H 'x-org: acme:x')" = "none 400"
stop proxy
stop a1
stop a2

echo "# a format the selector refuses stops the proxy at start"
"$EX/revtun-upstream-proxy" --host-id-format '%DOWNSTREAM_REMOTE_ADDRESS%' >"$T/bad.log" 2>&1
rc=$?
check "exit status 2" test $rc -eq 2
check "  naming the operator" grep -q "DOWNSTREAM_REMOTE_ADDRESS" "$T/bad.log"

stop_all
no_sanitizer_reports "$T"
echo
[ $fails -eq 0 ] && echo "e2e_hostsel: all checks passed" || echo "e2e_hostsel: $fails check(s) failed"
[ $fails -eq 0 ]
