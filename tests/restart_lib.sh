# Shell helpers shared by tests/e2e_restart.sh and
# tests/e2e_restart_workers.sh (POSIX sh; source it after e2e_lib.sh).
# The caller defines start_proxy (instance n+1, its pid in PID_p<n>, its
# log in $T/p<n>.log) and new_instance (start_proxy with --takeover
# "$SOCK"), and spawns the agent as "agent" with its log in $T/agent.log.

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
