# Shell helpers shared by tests/e2e_restart.sh and
# tests/e2e_restart_workers.sh (POSIX sh; source it after e2e_lib.sh).
# The caller sets WORKERS (the proxy's --workers), COUNT (edge-1's
# tunnels), NODE (edge-1's header) and SOCK (the handover socket) after
# e2e_ports, then runs restart_setup.

n=0
curl() { command curl --max-time 30 "$@"; }
h2load() { timeout 120 h2load "$@"; }

# restart_acceptor_config: $T/acceptor.bin, RPING every 200 ms: a tunnel
# whose keepalive phase were lost in a move would show as a ping timeout
# within a second.
restart_acceptor_config() {
  cat >"$T/acceptor.txtpb" <<EOF2
# proto-message: envoy.extensions.filters.network.reverse_tunnel.v3.ReverseTunnel
ping_interval { nanos: 200000000 }
EOF2
  if ! encode "$T/acceptor.txtpb" "$T/acceptor.bin"; then
    echo "FAIL - cannot encode the acceptor config with protoc"
    exit 1
  fi
}

# start_proxy WORKERS [ARGS...]: instance n+1, its pid in PID_p<n>, its
# log $T/p<n>.log
start_proxy() {
  n=$((n + 1))
  _w=$1
  shift
  spawn "p$n" "$T/p$n.log" ${PROXY_WRAP:-} "$EX/revtun-upstream-proxy" --workers "$_w" \
    --tunnel-listen 127.0.0.1:$TUN --listen 127.0.0.1:$CLI --admin-listen $ADMIN \
    --acceptor-config "$T/acceptor.bin" --handover-socket "$SOCK" --grace-period 20s \
    --verbose "$@"
}
# new_instance: one that takes over from the running one
new_instance() { start_proxy "$WORKERS" --takeover "$SOCK"; }

# restart_setup: the acceptor config, the backend, the first instance and
# edge-1's agent ("agent", $T/agent.log) with COUNT parked tunnels
restart_setup() {
  restart_acceptor_config
  spawn backend "$T/backend.log" "$EX/revtun-demo-backend" --listen 127.0.0.1:$BACK
  wait_until 10 curl -sf "http://127.0.0.1:$BACK/" || { echo "FAIL - backend did not start"; exit 1; }
  start_proxy "$WORKERS"
  wait_until 20 curl -sf "http://$ADMIN/tunnels" || { echo "FAIL - proxy did not start"; exit 1; }
  spawn agent "$T/agent.log" "$EX/revtun-downstream-agent" --upstream 127.0.0.1:$TUN \
    --node edge-1 --cluster edge --tenant acme --count $COUNT --backend 127.0.0.1:$BACK \
    --max-backoff-ms 1000
  check "agent parks $COUNT tunnels ($WORKERS worker(s))" wait_until 20 idle_is $COUNT
}

# first_restart: instance 2 takes over from instance 1 with no traffic; the
# tunnels move with their keepalive, none closes, the agent stays
first_restart() {
  echo "# restart without traffic"
  restart
  check "old instance exited 0 after handing over" test $? -eq 0
  check "the new instance holds all $COUNT parked tunnels" idle_is $COUNT
  check "old instance: $COUNT tunnels handed over, none closed" \
    sh -c "grep -q 'handover: $COUNT tunnel(s) handed over in all' '$T/p1.log' && ! grep -q 'record tunnel_closed' '$T/p1.log'"
  check "new instance imported $COUNT" test "$(imported 2)" -eq $COUNT
  sleep 1.5
  check "RPING goes on in the new instance" grep -q "record idle_ping_ack" "$T/p2.log"
  check "agent: reconnects=0" test "$(reconnects)" = 0
  got=$(curl -sS -H "$NODE" "$URL/")
  check "a request through the new instance" test "$got" = "hello from backend"
}

# pid_of N
pid_of() { eval "echo \${PID_p$1:-}"; }
# exited N: instance N has exited (its status is checked by stop)
exited() { ! running "$(pid_of "$1")"; }
# reconnects: the agent's count, asked for with SIGUSR1; waits for the
# agent's answer (a new reconnects= line), so a slow machine reads that
# answer rather than nothing or an older one
reconnects_lines() { grep -c "reconnects=" "$T/agent.log"; }
reconnects_answered() { test "$(reconnects_lines)" -gt "$1"; }
reconnects() {
  _lines=$(reconnects_lines)
  kill -USR1 "$PID_agent"
  wait_until 10 reconnects_answered "$_lines" || return 0
  sed -n 's/.*reconnects=\([0-9]*\).*/\1/p' "$T/agent.log" | tail -n 1
}
idle() { node_field $ADMIN edge-1 idle; }
idle_is() { [ "$(idle)" = "$1" ]; }
fd_count() { ls "/proc/$1/fd" | wc -l; }
# fd_count_is PID COUNT (a function, so that wait_until counts again at
# every try: a connection the instance just served may still be closing)
fd_count_is() { test "$(fd_count "$1")" -eq "$2"; }
# h2load_clean OUT: h2load's own counts say nothing failed or errored
h2load_clean() {
  grep -q "^requests: .* 0 failed, 0 errored" "$1" &&
    grep -q "^status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx" "$1"
}
imported() { grep -c 'record socket_imported' "$T/p$1.log"; }
abandoned() { grep -c "handover: takeover abandoned" "$T/p$1.log"; }
# abandoned_since N COUNT: instance N has logged more than COUNT abandons
abandoned_since() { test "$(abandoned "$1")" -gt "$2"; }
# restart: a new instance takes over; the old one exits 0
restart() {
  _old=$n
  new_instance
  wait_until 40 exited $_old && stop "p$_old" && wait_until 10 test -S "$SOCK"
}
# traffic_restart NAME H2LOAD-ARGS...: h2load runs against edge-1 ($NODE,
# $URL); a restart happens in its middle; nothing fails
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
  check "$_tn: the new instance took over" grep -q "handover: taking over" "$T/p$n.log"
  check "$_tn: h2load: 0 failed, 0 errored, all 2xx" h2load_clean "$T/h2load-$_tn.out"
  check "$_tn: agent: reconnects=0" test "$(reconnects)" = 0
  check "$_tn: no tunnel closed for a ping timeout" \
    sh -c "! grep -h 'record tunnel_closed' '$T'/p*.log | grep -q ping"
  check "$_tn: the new instance parks tunnels" wait_until 10 node_has_idle $ADMIN edge-1
}
# paused_proxy STEP: a new instance that logs "test pause at STEP" and
# stops itself (SIGSTOP) there (REVTUN_PROXY_TEST_TAKEOVER_PAUSE)
paused_proxy() {
  export REVTUN_PROXY_TEST_TAKEOVER_PAUSE=$1
  new_instance
  unset REVTUN_PROXY_TEST_TAKEOVER_PAUSE
  wait_until 20 grep -q "test pause at $1" "$T/p$n.log"
}
# parked_closed_none N: instance N closed no parked tunnel (every
# tunnel_closed record is that of an HTTP/2 session it ran, which ends when
# it exits)
parked_closed_none() {
  test "$(grep -c 'record tunnel_closed' "$T/p$1.log")" -eq "$(grep -c 'session .*: closed:' "$T/p$1.log")"
}

# pending_handshake_restart N: a handshake that finishes in the old instance
# after the takeover is handed over. edge-2's agent (agent2, one tunnel)
# dials through a relay that holds its bytes: the old instance accepts the
# connection before the takeover and reads the handshake only after it. No
# client keeps the old instance draining: it waits for the handshake alone,
# then hands the tunnel over and exits. N is the running instance (the new
# one is n afterwards). Needs $BACK (the backend's port);
# the caller stops agent2 and relay.
pending_handshake_restart() {
  echo "# a handshake that finishes in the old instance after the takeover is handed over"
  pick_port RELAY
  spawn relay "$T/relay.log" python3 "$top_srcdir/tests/hold_relay.py" $RELAY $TUN "$T/release"
  wait_until 10 sh -c "ss -ltn | grep -q ':$RELAY '"
  spawn agent2 "$T/agent2.log" "$EX/revtun-downstream-agent" --upstream 127.0.0.1:$RELAY \
    --node edge-2 --cluster edge2 --tenant acme --count 1 --backend 127.0.0.1:$BACK \
    --max-backoff-ms 1000
  check "pending handshake: the relay dialed the old instance" \
    wait_until 10 grep -q "connected 1" "$T/relay.log"
  _old=$1
  # the connection is accepted (a handshake in progress), not only queued
  check "pending handshake: the old instance accepted it" \
    wait_until 10 grep -q "tunnel connection from .*: handshake" "$T/p$_old.log"
  new_instance
  check "pending handshake: the old instance handed over and drains" \
    wait_until 10 grep -q "the new instance serves: not accepting any more, draining" "$T/p$_old.log"
  sleep 1
  check "pending handshake: the old instance waits for it (no client left)" running "$(pid_of $_old)"
  check "pending handshake: edge-2 has no tunnel yet" test -z "$(node_field $ADMIN edge-2 idle)"
  touch "$T/release"
  check "pending handshake: edge-2's tunnel parks in the new instance" \
    wait_until 10 grep -q "record socket_imported node=edge-2" "$T/p$n.log"
  check "pending handshake: the old instance handed it over" \
    grep -q "handover: 1 more tunnel(s) handed over" "$T/p$_old.log"
  check "pending handshake: the old instance then exits" wait_until 20 exited $_old
  stop "p$_old"
  check "pending handshake: ... with status 0" test $? -eq 0
  check "pending handshake: edge-2's agent dialed only once" \
    test "$(grep -c connected "$T/relay.log")" -eq 1
  got=$(curl -sS -H "x-remote-node-id: edge-2" "$URL/")
  check "pending handshake: a request to edge-2 through the new instance" \
    test "$got" = "hello from backend"
  check "pending handshake: the old instance closed no parked tunnel" parked_closed_none $_old
  check "pending handshake: agent: reconnects=0" test "$(reconnects)" = 0
  wait_until 10 test -S "$SOCK"
}
