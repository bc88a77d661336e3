# Shell helpers shared by tests/e2e.sh, scripts/quickstart and bench/e2e.sh
# (POSIX sh; source it). Every process started with `spawn` is stopped by
# `stop_all`, which the callers run from an EXIT trap.

E2E_PIDS=""
E2E_PORTS=""
fails=0

# e2e_require TOOLS -- FILES: exits 77 (skipped) unless every command in
# TOOLS is installed and every FILE is built (executable). Sets EX, the
# examples' build directory.
e2e_require() {
  EX=$top_builddir/examples
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    if ! command -v "$1" >/dev/null 2>&1; then
      # In CI a missing tool is a failure, never a skip.
      [ -n "${CI:-}" ] && { echo "FAIL: $1 not installed (CI)"; exit 1; }
      echo "SKIP: $1 not installed"
      exit 77
    fi
    shift
  done
  [ $# -gt 0 ] && shift
  for _f in "$EX/revtun-upstream-proxy" "$EX/revtun-downstream-agent" \
    "$EX/revtun-demo-backend" "$@"; do
    [ -x "$_f" ] || { echo "SKIP: $_f not built"; exit 77; }
  done
}

# e2e_begin NAME TAIL: a scratch directory in E2E_TMP (and T), removed at
# exit by e2e_finish TAIL (below).
e2e_begin() {
  # CI runs the end-to-end suites once, in the plain build (scripts/test);
  # its sanitizer and distcheck builds set REVTUN_E2E_DONE to leave them out.
  if [ -n "${REVTUN_E2E_DONE:-}" ]; then
    echo "SKIP: $1 ran in this CI run's plain build (REVTUN_E2E_DONE is set)"
    exit 77
  fi
  E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/revtun-$1.XXXXXX")
  T=$E2E_TMP
  trap "e2e_finish $2" EXIT
  trap 'exit 130' INT TERM
}
# ok/fail/check: one "ok - ..." or "FAIL - ..." line per assertion; fails
# counts the failures. check DESCRIPTION CMD... runs CMD and says which.
ok() { echo "ok - $*"; }
fail() {
  echo "FAIL - $*"
  fails=$((fails + 1))
}
check() {
  _d=$1
  shift
  if "$@"; then ok "$_d"; else fail "$_d"; fi
}

# pick_port VAR: a free TCP port below the ephemeral range, distinct from the
# ones picked before (and from what `ss`, if installed, shows in use),
# stored in VAR.
pick_port() {
  _used=$(ss -Htan 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }')
  while :; do
    _p=$(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 12000 + 20000 ))
    if ! printf '%s\n' $_used $E2E_PORTS | grep -qx "$_p"; then
      E2E_PORTS="$E2E_PORTS $_p"
      eval "$1=$_p"
      return 0
    fi
  done
}

# e2e_ports: free ports for the proxy's tunnel (TUN), client (CLI) and admin
# (ADM) listeners and the backend (BACK); ADMIN and URL on loopback.
e2e_ports() {
  pick_port TUN
  pick_port CLI
  pick_port ADM
  pick_port BACK
  ADMIN=127.0.0.1:$ADM
  URL=http://127.0.0.1:$CLI
}

# spawn NAME LOG CMD...: starts CMD in the background, output to LOG; its
# pid goes in PID_NAME.
spawn() {
  _name=$1 _log=$2
  shift 2
  "$@" >>"$_log" 2>&1 &
  eval "PID_$_name=$!"
  E2E_PIDS="$E2E_PIDS $!"
}

# running PID: the process exists and has not exited (a child that exited
# stays a zombie until it is waited for, and kill -0 still finds it).
running() {
  case $(ps -o stat= -p "$1" 2>/dev/null) in
    "" | Z*) return 1 ;;
  esac
  return 0
}

# stop NAME [SIGNAL]: signals the process and waits for it, at most
# E2E_STOP_WAIT seconds (default 30, then SIGKILL, so that a process stuck
# on its way out cannot hang a test); returns its exit status (128+n when
# a signal killed it).
stop() {
  eval "_pid=\${PID_$1:-}"
  [ -n "$_pid" ] || return 0
  kill -"${2:-TERM}" "$_pid" 2>/dev/null
  kill -CONT "$_pid" 2>/dev/null
  _n=0
  while running "$_pid" && [ $_n -lt $((${E2E_STOP_WAIT:-30} * 10)) ]; do
    sleep 0.1
    _n=$((_n + 1))
  done
  if running "$_pid"; then
    echo "# $1 (pid $_pid) still running ${E2E_STOP_WAIT:-30} s after SIG${2:-TERM}: SIGKILL" >&2
    kill -KILL "$_pid" 2>/dev/null
  fi
  _rc=0
  wait "$_pid" 2>/dev/null || _rc=$?
  eval "PID_$1="
  return $_rc
}

# stop_all: TERM everything still running, KILL what is left after 5 s.
stop_all() {
  for _pid in $E2E_PIDS; do
    kill -TERM "$_pid" 2>/dev/null && kill -CONT "$_pid" 2>/dev/null
  done
  _n=0
  while [ $_n -lt 50 ]; do
    _alive=""
    for _pid in $E2E_PIDS; do
      kill -0 "$_pid" 2>/dev/null && _alive="$_alive $_pid"
    done
    [ -z "$_alive" ] && break
    sleep 0.1
    _n=$((_n + 1))
  done
  for _pid in $E2E_PIDS; do
    kill -KILL "$_pid" 2>/dev/null
    wait "$_pid" 2>/dev/null
  done
  E2E_PIDS=""
}

# wait_until SECONDS CMD...: runs CMD every 0.1 s until it succeeds; fails
# after SECONDS.
wait_until() {
  _limit=$(( $1 * 10 ))
  shift
  _n=0
  while ! "$@" >/dev/null 2>&1; do
    _n=$((_n + 1))
    [ $_n -ge $_limit ] && return 1
    sleep 0.1
  done
  return 0
}

# node_field ADMIN NODE FIELD: a number from the node's /tunnels entry,
# summed over its entries (one per worker with --workers; empty when the
# node is not listed).
node_field() {
  curl -s --max-time 2 "http://$1/tunnels" | grep "{\"node\": \"$2\"" |
    sed -n "s/.*\"$3\": \([0-9]*\).*/\1/p" | awk '{ s += $1 } END { if (NR) print s }'
}

# node_has_idle ADMIN NODE: the node has at least one parked tunnel.
node_has_idle() {
  _idle=$(node_field "$1" "$2" idle)
  [ -n "$_idle" ] && [ "$_idle" -gt 0 ]
}

# node_gone ADMIN NODE: the node has no tunnel at all.
node_gone() {
  curl -s --max-time 2 "http://$1/tunnels" >"${E2E_TMP:-/tmp}/.tunnels" || return 1
  ! grep -q "{\"node\": \"$2\"" "${E2E_TMP:-/tmp}/.tunnels"
}

# stat ADMIN NAME: one value from /stats (Prometheus text or name value).
stat() {
  curl -s --max-time 2 "http://$1/stats" | awk -v n="$2" '$1 == n || $1 == n "{}" { print $2; exit }'
}

# pattern N: the demo backend's /bytes/N body (byte i = 'a' + i % 26).
pattern() {
  yes abcdefghijklmnopqrstuvwxyz | tr -d '\n' | head -c "$1"
}

sha() { sha256sum | cut -c1-64; }

# encode TXTPB OUT: protoc --encode with the message named on the first line
# ("# proto-message: <full name>").
encode() {
  _msg=$(sed -n '1s/^# proto-message: *//p' "$1")
  # every .proto of lib/proto, so that typed_config may name any of them
  _protos=$(cd "$top_srcdir/lib/proto" && find . -name '*.proto' | sed 's#^\./##' | sort)
  # shellcheck disable=SC2086 # one word per file name
  ${PROTOC:-protoc} -I "$top_srcdir/lib/proto" -I "${PROTOBUF_INCLUDE:-/usr/include}" \
    --encode="$_msg" $_protos <"$1" >"$2"
}

# no_sanitizer_reports DIR: one ok/FAIL line: no AddressSanitizer,
# LeakSanitizer or UBSan report in DIR/*.log (stop the programs first: what
# they say at exit is part of it).
no_sanitizer_reports() {
  if grep -l -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$1"/*.log >"$1/sanitized.list" 2>/dev/null; then
    fail "sanitizer reports in $(tr '\n' ' ' <"$1/sanitized.list")"
    grep -h -A 12 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' $(cat "$1/sanitized.list") | head -n 40
  else
    ok "no sanitizer report in any program's log"
  fi
}

# e2e_finish [LINES]: a test's EXIT trap: stops every program, prints the
# last LINES (default 30) lines of each log in $E2E_TMP when a check failed,
# and removes $E2E_TMP (copied to $E2E_KEEP first when that is set: the logs
# of a run to read afterwards).
e2e_finish() {
  stop_all
  if [ $fails -ne 0 ]; then
    for _log in "$E2E_TMP"/*.log; do
      echo "---- $_log (last ${1:-30} lines)"
      tail -n "${1:-30}" "$_log"
    done
  fi
  [ -n "${E2E_KEEP:-}" ] && cp -r "$E2E_TMP" "$E2E_KEEP"; rm -rf "$E2E_TMP"
}
