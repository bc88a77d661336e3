# Shell helpers of the fleet tests (tests/fleet.sh, tests/fleet_faults.sh):
# a private redis-server, proxies that join the fleet on it, agents, and
# requests through a given proxy. Source it after tests/e2e_lib.sh.

# fleet_require: exits 77 (skipped) without curl, redis-server, redis-cli,
# the programs or a proxy built with hiredis; when CI is set, fails instead.
fleet_require() {
  for tool in curl redis-server redis-cli "$@"; do
    if ! command -v $tool >/dev/null 2>&1; then
      [ -n "${CI:-}" ] && { echo "FAIL - $tool not installed (CI)"; exit 1; }
      echo "SKIP: $tool not installed"
      exit 77
    fi
  done
  EX=$top_builddir/examples
  for prog in revtun-upstream-proxy revtun-downstream-agent revtun-demo-backend; do
    [ -x "$EX/$prog" ] || { echo "SKIP: $EX/$prog not built"; exit 77; }
  done
  if ! "$EX/revtun-upstream-proxy" --help | grep -q -- --fleet-redis; then
    [ -n "${CI:-}" ] && { echo "FAIL - proxy built without hiredis (CI)"; exit 1; }
    echo "SKIP: proxy built without hiredis"
    exit 77
  fi
}

# fleet_ports: REDIS and BACK ports, the key PREFIX (call after e2e_begin).
fleet_ports() {
  pick_port REDIS
  pick_port BACK
  PREFIX="fleet$$:"
}
# rcli ARGS: redis-cli on the test's server.
rcli() { redis-cli -p "$REDIS" "$@"; }

# start_redis: redis-server on REDIS, nothing saved; waits for PONG.
start_redis() {
  spawn redis "$T/redis.log" redis-server --port "$REDIS" --bind 127.0.0.1 --save "" \
    --appendonly no --dir "$T" --loglevel warning
  wait_until 10 sh -c "redis-cli -p $REDIS ping | grep -q PONG"
}

# start_proxy NAME ID [EXTRA...]: ports in CLI_NAME, TUN_NAME, ADM_NAME.
start_proxy() {
  _n=$1 _id=$2
  shift 2
  eval "_c=\${CLI_$_n:-}"
  if [ -z "$_c" ]; then
    pick_port "CLI_$_n"
    pick_port "TUN_$_n"
    pick_port "ADM_$_n"
  fi
  eval "_c=\$CLI_$_n _t=\$TUN_$_n _a=\$ADM_$_n"
  spawn "proxy_$_n" "$T/proxy_$_n.log" "$EX/revtun-upstream-proxy" --tunnel-listen 127.0.0.1:$_t \
    --listen 127.0.0.1:$_c --admin-listen 127.0.0.1:$_a --fleet-redis 127.0.0.1:$REDIS \
    --fleet-key-prefix "$PREFIX" --instance-id "$_id" --fleet-ttl 1500ms --fleet-timeout 2s \
    --keepalive-interval 500ms --keepalive-timeout 500ms --grace-period 2s "$@"
}

# start_agent NAME NODE PROXY [MORE PROXIES...]: the first proxy as one
# --upstream, the others as a second --upstream with a comma list (both
# forms of the flag); the backend is AGENT_BACK (default BACK).
start_agent() {
  _an=$1 _node=$2
  eval "_t=\$TUN_$3"
  set -- --upstream 127.0.0.1:$_t $(shift 3; _l=; for _x in "$@"; do
    eval "_l=\${_l:+\$_l,}127.0.0.1:\$TUN_$_x"; done; [ -n "$_l" ] && echo "--upstream $_l")
  spawn "agent_$_an" "$T/agent_$_an.log" "$EX/revtun-downstream-agent" "$@" \
    --node "$_node" --cluster edge --tenant acme --backend 127.0.0.1:${AGENT_BACK:-$BACK} --max-backoff-ms 500
}

# code PROXY NODE [CURL ARGS...]: the status of GET / for NODE through PROXY
# (000: no answer within 5 s); the response head goes to $T/head.
code() {
  eval "_c=\$CLI_$1"
  _node=$2
  shift 2
  curl -s --max-time 5 -o "$T/body" -D "$T/head" -w '%{http_code}' \
    -H "x-remote-node-id: $_node" "$@" "http://127.0.0.1:$_c/"
}
is() { [ "$(code "$@")" = 200 ]; }
# reason: the x-revtun-error of the last answer
reason() { tr -d '\r' <"$T/head" | sed -n 's/^x-revtun-error: //Ip'; }
adm() { eval "echo 127.0.0.1:\$ADM_$1"; }

