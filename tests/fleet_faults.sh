#!/bin/sh
# Faults of a fleet of three revtun-upstream-proxy instances (a, b, c) on a
# private redis-server, each proxy with a 10-minute lookup cache:
#  1. Redis killed (SIGKILL) and restarted on the same port while two curl
#     loops send requests through a without pause: for a's own node every
#     answer is 200; for b's node every answer is 200 or 503
#     directory-unavailable while Redis is away (503 unknown-node only in the
#     moment after it is back, before b has republished into the empty
#     Redis), never a hang or another error, and 200 again after it is
#     back; the directories counted the reconnect and republished.
#  2. The lookup cache: a hot node costs no Redis round trip per request
#     (redis-cli MONITOR sees at most one lookup of it per fleet TTL during
#     200 requests, the same count as the cache misses, the rest are cache
#     hits); a node that moves from b to a is found at a by c long before the
#     10-minute cache lifetime ends (the pub/sub invalidation).
#  3. Two instances claiming one node: agents of node n-x parked at a and
#     at b at once. Redis holds both claims; the one made later wins (its
#     claim number is higher) and c forwards every request there; a and b
#     serve their own tunnels; killing the owner leaves the node served by
#     the other.
# Every wait is a bounded poll; no timing assertion. Skips (77) without
# curl, redis-server or redis-cli, unless CI is set (then it fails).
# By hand: top_builddir=build top_srcdir=. tests/fleet_faults.sh
set -u

top_builddir=${top_builddir:-$(pwd)}
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
. "$top_srcdir/tests/e2e_lib.sh"
. "$top_srcdir/tests/fleet_lib.sh"
fleet_require

e2e_begin fleet_faults 30
fleet_ports
pick_port BACK2
now_ms() { date +%s%3N; }

# load NAME PROXY NODE: requests through PROXY for NODE one after another,
# each bounded to 5 s, until $T/stop exists (or 60 s, or 30,000 requests);
# one line per answer in $T/load_NAME: "<ms> <status> <x-revtun-error>".
load() {
  _f=$T/load_$1 _url=http://127.0.0.1:$(eval "echo \$CLI_$2")/
  (
    _i=0 _end=$(($(now_ms) + 60000))
    while [ ! -e "$T/stop" ] && [ $_i -lt 30000 ] && [ "$(now_ms)" -lt $_end ]; do
      _out=$(curl -s --max-time 5 -o /dev/null -D - -w 'STATUS %{http_code}\n' \
        -H "x-remote-node-id: $3" "$_url" | tr -d '\r' |
        awk 'tolower($1) == "x-revtun-error:" { r = $2 } $1 == "STATUS" { s = $2 }
             END { print s, (r == "" ? "-" : r) }')
      echo "$(now_ms) $_out" >>"$_f"
      _i=$((_i + 1))
    done
  ) &
  E2E_PIDS="$E2E_PIDS $!"
  eval "PID_load_$1=$!"
}
# lines FILE: how many answers so far
lines() { wc -l <"$1" | tr -d ' '; }
# answers_after NAME MS: answers of load NAME logged after MS
answers_after() { awk -v t="$2" '$1 > t' "$T/load_$1" | wc -l | tr -d ' '; }

echo "# redis :$REDIS, backends :$BACK :$BACK2, proxies a b c"
start_redis || { echo "FAIL - redis-server did not start"; exit 1; }
spawn backend "$T/backend.log" "$EX/revtun-demo-backend" --listen 127.0.0.1:$BACK --name one
spawn backend2 "$T/backend2.log" "$EX/revtun-demo-backend" --listen 127.0.0.1:$BACK2 --name two
for x in a b c; do start_proxy $x $x --fleet-cache-ttl 10m; done
for x in a b c; do
  wait_until 10 curl -sf "http://$(adm $x)/tunnels" || { echo "FAIL - proxy $x did not start"; exit 1; }
done
start_agent a n-a a
start_agent b n-b b
check "n-a parked on a, n-b on b" wait_until 10 sh -c \
  "curl -s http://$(adm a)/tunnels | grep -q '\"node\": \"n-a\"' && curl -s http://$(adm b)/tunnels | grep -q '\"node\": \"n-b\"'"
check "a reaches n-b through the fleet" wait_until 10 is a n-b

echo "# 1. Redis killed and restarted under steady traffic"
re0_a=$(stat "$(adm a)" revtun_proxy_fleet_redis_reconnects)
re0_b=$(stat "$(adm b)" revtun_proxy_fleet_redis_reconnects)
rp0_b=$(stat "$(adm b)" revtun_proxy_fleet_redis_republishes)
load local a n-a
load remote a n-b
wait_until 20 sh -c "[ \$(wc -l <'$T/load_local') -ge 20 ] && [ \$(wc -l <'$T/load_remote') -ge 20 ]" ||
  fail "the load loops did not start"
t_kill=$(now_ms)
stop redis KILL
check "with Redis away, b's node through a: 503 directory-unavailable" wait_until 10 \
  grep -q ' 503 directory-unavailable$' "$T/load_remote"
wait_until 20 sh -c "[ \$(awk -v t=$t_kill '\$1 > t' '$T/load_remote' | wc -l) -ge 30 ] && \
  [ \$(awk -v t=$t_kill '\$1 > t' '$T/load_local' | wc -l) -ge 30 ]" ||
  fail "the loops did not go on while Redis was away"
t_back=$(now_ms)
start_redis || fail "redis-server did not restart on :$REDIS"
check "after Redis is back, b's node through a: 200 again" wait_until 15 sh -c \
  "awk -v t=$t_back '\$1 > t && \$2 == 200' '$T/load_remote' | grep -q ."
wait_until 20 sh -c "[ \$(awk -v t=$t_back '\$1 > t' '$T/load_local' | wc -l) -ge 20 ]" ||
  fail "the local loop stalled after the restart"
sleep 0.5 # a few more answers after the first 200, for the check below
touch "$T/stop"
stop load_local
stop load_remote
rm -f "$T/stop"
local_total=$(lines "$T/load_local")
local_bad=$(awk '$2 != 200' "$T/load_local" | wc -l | tr -d ' ')
remote_total=$(lines "$T/load_remote")
first_ok=$(awk -v t="$t_back" '$1 > t && $2 == 200 { print $1; exit }' "$T/load_remote")
summary=$(awk '{ print $2, $3 }' "$T/load_remote" | sort | uniq -c | awk '{ printf "%s%s x %s %s", s, $1, $2, $3; s = ", " }')
echo "# local n-a through a: $local_total answers, $local_bad not 200"
echo "# remote n-b through a: $remote_total answers: $summary"
check "every answer for a's own node was 200 ($local_total of them, Redis down for part)" \
  test "$local_bad" = 0 -a "$local_total" -ge 70
check "b's node through a: only 200 or 503 directory-unavailable while Redis was away" \
  test "$(awk -v k="$t_kill" -v b="$t_back" '$1 > k && $1 <= b && !($2 == 200 || ($2 == 503 && $3 == "directory-unavailable"))' "$T/load_remote" | wc -l)" = 0
check "  and 200, directory-unavailable or unknown-node (an empty Redis before b republished) until the first 200 after it" \
  test "$(awk -v b="$t_back" -v f="${first_ok:-0}" '$1 > b && $1 < f && !($2 == 200 || ($2 == 503 && ($3 == "directory-unavailable" || $3 == "unknown-node")))' "$T/load_remote" | wc -l)" = 0
check "  and only 200 from then on" \
  test "$(awk -v f="${first_ok:-0}" '$1 >= f && $2 != 200' "$T/load_remote" | wc -l)" = 0
check "  never 000 (a hang) or another status, before, during or after" \
  test "$(awk '$2 != 200 && $2 != 503' "$T/load_remote" | wc -l)" = 0
check "  and 200 before the kill" \
  test "$(awk -v k="$t_kill" '$1 < k - 100 && $2 != 200' "$T/load_remote" | wc -l)" = 0
re1_a=$(stat "$(adm a)" revtun_proxy_fleet_redis_reconnects)
re1_b=$(stat "$(adm b)" revtun_proxy_fleet_redis_reconnects)
rp1_b=$(stat "$(adm b)" revtun_proxy_fleet_redis_republishes)
echo "# reconnects a $re0_a -> $re1_a, b $re0_b -> $re1_b; republishes b $rp0_b -> $rp1_b"
check "a's and b's directories counted the reconnect" test "$re1_a" -gt "$re0_a" -a "$re1_b" -gt "$re0_b"
check "b republished into the new Redis" test "$rp1_b" -gt "$rp0_b"
check "  and Redis holds n-b at b again" sh -c "rcli() { redis-cli -p $REDIS \"\$@\"; }; \
  [ \"\$(rcli smembers '${PREFIX}n:n-b')\" = b ] && [ -n \"\$(rcli hget '${PREFIX}in:b' n-b)\" ]"
for x in a b; do check "proxy $x is alive" running "$(eval "echo \$PID_proxy_$x")"; done

echo "# 2. the lookup cache: a hot node, and a node that moves"
check "c reaches n-b (and caches the answer)" is c n-b
spawn monitor "$T/monitor.log" redis-cli -p "$REDIS" monitor
wait_until 10 grep -q OK "$T/monitor.log" || fail "redis-cli monitor did not start"
hits0=$(stat "$(adm c)" revtun_proxy_fleet_redis_cache_hits)
miss0=$(stat "$(adm c)" revtun_proxy_fleet_redis_cache_misses)
_ok=0 _t0=$(now_ms)
for _i in $(seq 200); do is c n-b && _ok=$((_ok + 1)); done
_ms=$(($(now_ms) - _t0))
hits1=$(stat "$(adm c)" revtun_proxy_fleet_redis_cache_hits)
miss1=$(stat "$(adm c)" revtun_proxy_fleet_redis_cache_misses)
looked=$(grep -c "\"n\" \"n-b\"" "$T/monitor.log")
# An answer naming an owner is kept at most one fleet TTL (1.5 s here), so
# a hot node costs at most one lookup per TTL, whatever the request rate.
per_ttl=$((1 + _ms / 1500))
echo "# 200 requests for n-b through c in $_ms ms: $_ok x 200; c's cache hits +$((hits1 - hits0)), misses +$((miss1 - miss0)); lookups of n-b Redis ran (MONITOR): $looked (at most $per_ttl: one per TTL)"
check "200 requests for the hot node through c: all 200" test $_ok = 200
check "  Redis ran at most one lookup of n-b per fleet TTL, not one per request" \
  test "$looked" -le "$per_ttl" -a "$looked" -lt 200
check "  the others were cache hits (hits + misses = 200)" \
  test $((hits1 - hits0 + miss1 - miss0)) = 200 -a $((hits1 - hits0)) -ge $((200 - per_ttl))
check "  every cache miss is a lookup MONITOR saw" test $((miss1 - miss0)) = "$looked"
check "  MONITOR was listening (it saw the heartbeats)" grep -q EVALSHA "$T/monitor.log"
inv0=$(stat "$(adm c)" revtun_proxy_fleet_redis_invalidations)
t_move=$(now_ms)
AGENT_BACK=$BACK2 start_agent b2 n-b a
check "n-b moves: a second agent parks at a" wait_until 10 node_has_idle "$(adm a)" n-b
stop agent_b
check "  and b's agent stops (b has no n-b tunnel)" wait_until 10 node_gone "$(adm b)" n-b
check "c finds n-b at a (backend two) within 10 s of a 10-minute cache" wait_until 10 sh -c \
  "curl -s --max-time 5 -D - -o /dev/null -H 'x-remote-node-id: n-b' http://127.0.0.1:$CLI_c/ | tr -d '\r' | grep -qix 'x-backend: two'"
t_found=$(now_ms)
inv1=$(stat "$(adm c)" revtun_proxy_fleet_redis_invalidations)
echo "# found at a $((t_found - t_move)) ms after the move began; c's invalidations $inv0 -> $inv1"
check "  through the invalidation messages (c counted them)" test "$inv1" -gt "$inv0"
check "  Redis holds n-b at a only" sh -c "[ \"\$(redis-cli -p $REDIS smembers '${PREFIX}n:n-b')\" = a ]"
stop monitor

echo "# 3. two instances claiming one node"
AGENT_BACK=$BACK start_agent x1 n-x a
check "n-x parks at a (backend one)" wait_until 10 node_has_idle "$(adm a)" n-x
AGENT_BACK=$BACK2 start_agent x2 n-x b a
check "n-x parks at b too (backend two)" wait_until 10 node_has_idle "$(adm b)" n-x
members=$(rcli smembers "${PREFIX}n:n-x" | sort | tr '\n' ' ')
claim_a=$(rcli hget "${PREFIX}in:a" n-x)
claim_b=$(rcli hget "${PREFIX}in:b" n-x)
echo "# Redis: n:n-x = { $members}, claim at a $claim_a, at b $claim_b"
check "Redis lists both instances for n-x" test "$members" = "a b "
check "  b's claim, made later, is the higher one" test "$claim_b" -gt "$claim_a"
_one=0 _two=0 _other=0
for _i in $(seq 50); do
  case $(curl -s --max-time 5 -D - -o /dev/null -H 'x-remote-node-id: n-x' "http://127.0.0.1:$CLI_c/" | tr -d '\r' | sed -n 's/^x-backend: //Ip') in
    one) _one=$((_one + 1)) ;;
    two) _two=$((_two + 1)) ;;
    *) _other=$((_other + 1)) ;;
  esac
done
echo "# 50 requests for n-x through c: $_two at b (two), $_one at a (one), $_other failed"
check "every request through c succeeds, all at the later claim (b)" test $_two = 50
check "a serves n-x from its own tunnel" sh -c \
  "curl -s --max-time 5 -D - -o /dev/null -H 'x-remote-node-id: n-x' http://127.0.0.1:$CLI_a/ | tr -d '\r' | grep -qix 'x-backend: one'"
check "b serves n-x from its own tunnel" sh -c \
  "curl -s --max-time 5 -D - -o /dev/null -H 'x-remote-node-id: n-x' http://127.0.0.1:$CLI_b/ | tr -d '\r' | grep -qix 'x-backend: two'"
stop agent_x2
check "the later owner's agent goes: c sends n-x to a" wait_until 10 sh -c \
  "curl -s --max-time 5 -D - -o /dev/null -H 'x-remote-node-id: n-x' http://127.0.0.1:$CLI_c/ | tr -d '\r' | grep -qix 'x-backend: one'"
check "  and Redis lists a alone" sh -c "[ \"\$(redis-cli -p $REDIS smembers '${PREFIX}n:n-x')\" = a ]"
AGENT_BACK=$BACK2 start_agent x2 n-x b
check "n-x at b again (the latest claim)" wait_until 10 sh -c \
  "curl -s --max-time 5 -D - -o /dev/null -H 'x-remote-node-id: n-x' http://127.0.0.1:$CLI_c/ | tr -d '\r' | grep -qix 'x-backend: two'"
stop proxy_b KILL
_c=$(code c n-x)
check "owner b killed: n-x through c right after: $_c $(reason) (an answer, no hang)" \
  sh -c "[ $_c = 502 ] || [ $_c = 503 ] || [ $_c = 200 ]"
check "  then served by the other owner, a, once b's claim expired" wait_until 10 sh -c \
  "curl -s --max-time 5 -D - -o /dev/null -H 'x-remote-node-id: n-x' http://127.0.0.1:$CLI_c/ | tr -d '\r' | grep -qix 'x-backend: one'"

echo "# clean exits"
for x in a c; do
  stop proxy_$x
  check "proxy $x exits 0 on SIGTERM" test $? -eq 0
  check "proxy $x logged no internal error" sh -c "! grep -q 'internal error' '$T/proxy_$x.log'"
done
stop_all
no_sanitizer_reports "$T"

echo
if [ $fails -eq 0 ]; then
  echo "fleet_faults: all checks passed"
else
  echo "fleet_faults: $fails check(s) failed"
fi
[ $fails -eq 0 ]
