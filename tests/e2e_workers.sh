#!/bin/sh
# revtun-upstream-proxy --workers 4 end to end on loopback: the kernel
# spreads agents' tunnels and clients' connections over four workers, so
# most requests land on a worker that holds none of the node's tunnels and
# must get one from another worker (the directory) or be queued on the
# worker whose sessions use them. Checks: every answer 200 with the exact
# bytes, with 1 and 2 tunnels per node; /stats sums equal the per-worker
# values; /tunnels lists every tunnel once; no descriptor leak; bad flags;
# the config's access-log file open once for all workers, reopened once on
# SIGUSR1 after a rename, no line torn; a clean stop in which every tunnel
# ends in exactly one tunnel_closed record. Run by `make check`; by hand:
#   top_builddir=build top_srcdir=. tests/e2e_workers.sh
set -u

top_builddir=${top_builddir:-$(pwd)}
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
. "$top_srcdir/tests/e2e_lib.sh"

e2e_require curl h2load protoc

fails=0
e2e_begin e2e_workers 40

curl() { command curl --max-time 60 "$@"; }
h2load() { timeout 120 h2load "$@"; }

e2e_ports
W=4
cat >"$T/acceptor.txtpb" <<EOF
# proto-message: envoy.extensions.filters.network.reverse_tunnel.v3.ReverseTunnel
ping_interval { nanos: 200000000 }
EOF
# the example config plus a built-in file access log
cat "$top_srcdir/examples/configs/upstream.txtpb" - >"$T/upstream.txtpb" <<EOF
access_log {
  name: "envoy.access_loggers.file"
  typed_config {
    [type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog] {
      path: "$T/access.log"
      log_format { text_format_source { inline_string: "%DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:event)% %DYNAMIC_METADATA(envoy.reverse_tunnel.lifecycle:node_id)%\\n" } }
    }
  }
}
EOF
if ! encode "$T/upstream.txtpb" "$T/upstream.bin" ||
   ! encode "$T/acceptor.txtpb" "$T/acceptor.bin"; then
  echo "FAIL - cannot encode the configs with protoc"
  exit 1
fi

echo "# flags"
"$EX/revtun-upstream-proxy" --workers 65 >"$T/bad.out" 2>&1
check "--workers 65 is refused (exit 2)" test $? -eq 2
"$EX/revtun-upstream-proxy" --workers 0 >"$T/bad.out" 2>&1
check "--workers 0 is refused (exit 2)" test $? -eq 2
"$EX/revtun-upstream-proxy" --workers 2 --fleet-redis 127.0.0.1:1 --instance-id a >"$T/bad.out" 2>&1
check "--workers 2 with --fleet-redis is refused (exit 2)" test $? -eq 2
"$EX/revtun-upstream-proxy" --help | grep -q -- "--workers N"
check "--help names --workers" test $? -eq 0

# sum FIELD NODE: FIELD summed over the node's /tunnels entries (one per worker)
sum() {
  curl -s "http://$ADMIN/tunnels" | grep "{\"node\": \"$2\"" |
    sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p" | awk '{ s += $1 } END { print s + 0 }'
}
idle_is() { test "$(sum idle "$1")" -eq "$2"; }
fds() { ls "/proc/$PID_proxy/fd" | wc -l; }
codes() { grep -h -E "status codes|requests:" "$1" | tr '\n' ' '; }

echo "# backend :$BACK, proxy --workers $W (tunnels :$TUN, clients :$CLI, admin :$ADM), agents edge-1 (1 tunnel), edge-2 (2)"
spawn backend "$T/backend.log" "$EX/revtun-demo-backend" --listen 127.0.0.1:$BACK
wait_until 10 curl -sf "http://127.0.0.1:$BACK/" || { echo "FAIL - backend did not start"; exit 1; }
spawn proxy "$T/proxy.log" ${PROXY_WRAP:-} "$EX/revtun-upstream-proxy" --workers $W \
  --tunnel-listen 127.0.0.1:$TUN --listen 127.0.0.1:$CLI --admin-listen $ADMIN \
  --config "$T/upstream.bin" --acceptor-config "$T/acceptor.bin" --session-idle-timeout 1s \
  --grace-period 5s --verbose
wait_until 30 curl -sf "http://$ADMIN/tunnels" || { echo "FAIL - proxy did not start"; fails=1; exit 1; }
spawn agent1 "$T/agent1.log" "$EX/revtun-downstream-agent" --upstream 127.0.0.1:$TUN \
  --node edge-1 --cluster edge --tenant acme --count 1 --backend 127.0.0.1:$BACK --max-backoff-ms 500
spawn agent2 "$T/agent2.log" "$EX/revtun-downstream-agent" --upstream 127.0.0.1:$TUN \
  --node edge-2 --cluster edge --tenant acme --count 2 --backend 127.0.0.1:$BACK --max-backoff-ms 500
wait_until 20 idle_is edge-1 1 && wait_until 20 idle_is edge-2 2
check "/tunnels, summed over the workers' entries: edge-1 $(sum idle edge-1) idle, edge-2 $(sum idle edge-2) (1 and 2)" \
  test "$(sum idle edge-1)" -eq 1 -a "$(sum idle edge-2)" -eq 2
[ $fails -eq 0 ] || exit 1
check "each tunnel listed once: live edge-1 $(sum live edge-1), edge-2 $(sum live edge-2)" \
  test "$(sum live edge-1)" -eq 1 -a "$(sum live edge-2)" -eq 2
check "every /tunnels node entry names its worker" \
  sh -c "! curl -s http://$ADMIN/tunnels | grep '{\"node\": ' | grep -qv '\"worker\": [0-9]'"
fd0=$(fds)

echo "# many client connections, answers through every worker"
pattern 1000 >"$T/1k"
bad=0
pids=""
for i in $(seq 1 40); do
  node=edge-$((i % 2 + 1))
  curl -sS -o "$T/c$i.1" -o "$T/c$i.2" -o "$T/c$i.3" -H "x-remote-node-id: $node" \
    "$URL/bytes/1000" "$URL/bytes/1000" "$URL/bytes/1000" 2>>"$T/curl.err" &
  pids="$pids $!"
done
for pid in $pids; do wait "$pid"; done
for i in $(seq 1 40); do
  for k in 1 2 3; do cmp -s "$T/c$i.$k" "$T/1k" || bad=$((bad + 1)); done
done
check "120 HTTP/1.1 requests on 40 connections: exact bytes ($bad wrong)" test $bad -eq 0
for node in edge-1 edge-2; do
  h2load -n 400 -c 40 -m 4 -H "x-remote-node-id: $node" "$URL/bytes/1000" >"$T/h2load-$node.out" 2>&1
  check "h2c: 400 requests to $node on 40 connections, 4 streams each: all 2xx ($(codes "$T/h2load-$node.out"))" \
    grep -q "status codes: 400 2xx, 0 3xx, 0 4xx, 0 5xx" "$T/h2load-$node.out"
  h2load --h1 -n 200 -c 20 -H "x-remote-node-id: $node" "$URL/bytes/1000" >"$T/h1load-$node.out" 2>&1
  check "HTTP/1.1: 200 requests to $node on 20 connections: all 2xx ($(codes "$T/h1load-$node.out"))" \
    grep -q "status codes: 200 2xx, 0 3xx, 0 4xx, 0 5xx" "$T/h1load-$node.out"
done
h2load -n 200 -c 20 -m 2 -H "x-remote-cluster-id: edge" "$URL/bytes/1000" >"$T/h2load-cluster.out" 2>&1
check "h2c: 200 requests by cluster on 20 connections: all 2xx ($(codes "$T/h2load-cluster.out"))" \
  grep -q "status codes: 200 2xx, 0 3xx, 0 4xx, 0 5xx" "$T/h2load-cluster.out"
got=$(curl -s -o /dev/null -w '%{http_code}' -H "x-remote-node-id: nowhere" "$URL/")
check "a node parked nowhere: 503 (got $got)" test "$got" = 503

echo "# a cluster parked on one worker only, asked for by cluster from every worker"
spawn agent3 "$T/agent3.log" "$EX/revtun-downstream-agent" --upstream 127.0.0.1:$TUN \
  --node solo-1 --cluster solo --tenant acme --count 1 --backend 127.0.0.1:$BACK --max-backoff-ms 500
wait_until 20 idle_is solo-1 1
codes3=""
for i in $(seq 1 16); do # one connection each: the kernel spreads them over the workers
  codes3="$codes3 $(curl -s -o /dev/null -w '%{http_code}' -H "x-remote-cluster-id: solo" "$URL/")"
done
bad3=$(echo $codes3 | tr ' ' '\n' | grep -cv '^200$')
check "16 requests by cluster 'solo' on 16 connections, its one tunnel idle on one worker: all 200 ($codes3)" \
  test "$bad3" -eq 0
stop agent3 TERM

echo "# /stats: the sum of the workers"
curl -s "http://$ADMIN/stats" >"$T/stats.all"
for k in $(seq 0 $((W - 1))); do curl -s "http://$ADMIN/stats?worker=$k" >"$T/stats.$k"; done
total=$(awk '$1 == "revtun_proxy_requests" { print $2 }' "$T/stats.all")
parts=$(cat "$T"/stats.[0-9] | awk '$1 == "revtun_proxy_requests" { s += $2 } END { print s + 0 }')
check "revtun_proxy_requests $total = the workers' sum $parts" test "${total:-x}" = "$parts"
served=$(cat "$T"/stats.[0-9] | awk '$1 == "revtun_proxy_requests" && $2 > 0 { n++ } END { print n + 0 }')
check "requests reached $served of $W workers (at least 2)" test "$served" -ge 2
check "/stats has one TYPE line per family" \
  sh -c "grep '^# TYPE' '$T/stats.all' | sort | uniq -d | wc -l | grep -qx 0"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$ADMIN/stats?worker=$W")
check "/stats?worker=$W: 400 (got $code)" test "$code" = 400
bk=$(grep -c '_bucket{' "$T/stats.all")
check "histograms are in the sum ($bk buckets)" test "$bk" -gt 0

echo "# no descriptor leak: sessions close after 1 s idle, the agents park again"
wait_until 20 sh -c "test \$(ls /proc/$PID_proxy/fd | wc -l) -le $fd0"
fd1=$(fds)
check "proxy descriptors back to $fd0 (now $fd1)" test "$fd1" -le "$fd0"

echo "# the access log: one file for $W workers, reopened once after logrotate"
# fds_on FILE: the proxy's descriptors open on FILE
fds_on() { ls -l "/proc/$PID_proxy/fd" 2>/dev/null | grep -c " $1\$"; }
check "access.log is open once, not once per worker ($(fds_on "$T/access.log"))" \
  test "$(fds_on "$T/access.log")" -eq 1
mv "$T/access.log" "$T/access.log.1"
kill -USR1 "$PID_proxy"
wait_until 10 test -f "$T/access.log"
check "SIGUSR1 after a rename: access.log created again" test -f "$T/access.log"
check "and open once ($(fds_on "$T/access.log")), the renamed file no longer ($(fds_on "$T/access.log.1"))" \
  test "$(fds_on "$T/access.log")" -eq 1 -a "$(fds_on "$T/access.log.1")" -eq 0
check "the proxy logs the reopen" grep -q "SIGUSR1: reopening the access logs" "$T/proxy.log"
check "and no failure" sh -c "! grep -q 'reopening the access logs failed' '$T/proxy.log'"

echo "# fault: an agent killed while its node is in use; the other node keeps answering"
stop agent1 KILL
h2load -n 200 -c 20 -m 2 -H "x-remote-node-id: edge-2" "$URL/bytes/1000" >"$T/h2load-after.out" 2>&1
check "edge-2 after edge-1's agent died: 200 requests all 2xx" \
  grep -q "status codes: 200 2xx, 0 3xx, 0 4xx, 0 5xx" "$T/h2load-after.out"
wait_until 10 sh -c "test \"\$($(command -v curl) -s -o /dev/null -w '%{http_code}' -H 'x-remote-node-id: edge-1' $URL/)\" = 503"
check "edge-1 without an agent: 503" test $? -eq 0

echo "# clean stop"
stop proxy TERM
rc=$?
check "SIGTERM: exit status 0 (got $rc)" test $rc -eq 0
check "the proxy logs 'exited cleanly'" grep -q "exited cleanly" "$T/proxy.log"
setup=$(grep -c "record tunnel_setup " "$T/proxy.log")
closed=$(grep -c "record tunnel_closed " "$T/proxy.log")
check "every tunnel ends in exactly one tunnel_closed record ($setup set up, $closed closed)" \
  test "$setup" -eq "$closed" -a "$setup" -gt 0
moved=$(grep -c "record socket_exported " "$T/proxy.log")
arrived=$(grep -c "record socket_imported " "$T/proxy.log")
check "sockets moved between workers: $moved exported, $arrived imported, equal" \
  test "$moved" -eq "$arrived"
check "no 'leaked' in the log" sh -c "! grep -q leaked '$T/proxy.log'"
cat "$T/access.log.1" "$T/access.log" >"$T/access.all"
check "both access-log files have records ($(wc -l <"$T/access.log.1") before the rename, $(wc -l <"$T/access.log") after)" \
  test -s "$T/access.log.1" -a -s "$T/access.log"
check "every access-log line whole" sh -c "! grep -qvE '^[a-z_]+ [a-z0-9-]*\$' '$T/access.all'"
asetup=$(grep -c "^tunnel_setup " "$T/access.all")
aclosed=$(grep -c "^tunnel_closed " "$T/access.all")
check "the access log has the same $setup tunnel_setup and $closed tunnel_closed records ($asetup, $aclosed)" \
  test "$asetup" -eq "$setup" -a "$aclosed" -eq "$closed"

[ $fails -eq 0 ]
