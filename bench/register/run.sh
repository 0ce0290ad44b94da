#!/usr/bin/env bash
# Registration benchmark: the same SIPp REG-AUTH (and REG) scenario against sipmesh
# (1 edge + N registrars + nats-server) and against Kamailio 5.6, in one session.
#
#   bench/register/run.sh                      everything below, in order (~25-30 min)
#   bench/register/run.sh kamailio SCEN "R1 R2 ..."        ladder against Kamailio
#   bench/register/run.sh sipmesh N SCEN "R1 R2 ..."       ladder against 1 edge + N registrars
#   bench/register/run.sh report                           markdown table of $RESULTS
#
# SCEN: REG-AUTH (REGISTER -> 401 -> REGISTER with digest -> 200; the issue's figure) or
# REG (no auth; sipmesh registrars then run with auth off). 10,000 users user00001..user10000,
# password pw-<user>, domain 127.0.0.1 (the scenario's To is sip:<user>@[remote_ip]).
#
# A ladder climbs until a point fails (more than 0.1 % failed calls, or under 97 % of the
# target rate), then repeats the best passing rate REPEATS times. Points are DUR seconds
# (default 15; the Kamailio reference used 30). sipmesh: one stack per ladder (users
# imported once); Kamailio: a fresh process per point, as in the reference.
# Ports: all free loopback ports picked at run time (Kamailio too), nothing fixed.
# Environment: OUT_DIR, RESULTS, DUR, REPEATS, COOLDOWN_S, LABEL_TAG (appended to the sipmesh
# label, e.g. a commit), QUIET_WAIT_S (how long to wait
# for other tenants to go quiet before a point; default 30), EDGES (sipmesh edges sharing the
# SIP port, default 1), REGISTRAR_CHALLENGES=1 (the registrars answer the 401s, not the
# edge), plus bench/lib/bench_point.sh's.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
export OUT_DIR="${OUT_DIR:-${TMPDIR:-/tmp}/sipmesh-bench-register/$(date +%Y%m%d-%H%M%S)}"
export RESULTS="${RESULTS:-$OUT_DIR/results.jsonl}"
export QUIET_WAIT_S="${QUIET_WAIT_S:-30}"
DUR="${DUR:-15}"
REPEATS="${REPEATS:-1}"
COOLDOWN_S="${COOLDOWN_S:-5}"
mkdir -p "$OUT_DIR"
export SIPP_DIR="$HERE/sipp"
export USERS_CSV="$OUT_DIR/users.csv"
[[ -s "$USERS_CSV" ]] || "$HERE/sipp/gen_users.sh" 10000 "$USERS_CSV"

free_port() {   # $1 = tcp|udp
  "$PY" -c 'import socket,sys; k=socket.SOCK_DGRAM if sys.argv[1]=="udp" else socket.SOCK_STREAM
s=socket.socket(socket.AF_INET,k); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}

point_ok() {   # prints the result line; status of the point
  local rc=$1
  tail -1 "$RESULTS" | python3 "$ROOT/bench/lib/report.py" --line || true
  sleep "$COOLDOWN_S"
  return "$rc"
}

# -- Kamailio --------------------------------------------------------------------------
KPID=""
start_kamailio() {   # SCEN PORT
  local defs=(-A "LISTEN=udp:127.0.0.1:$2")
  [[ "$1" == REG-AUTH ]] && defs+=(-A WITH_AUTH)
  local kdir="$OUT_DIR/kamailio"; mkdir -p "$kdir"; rm -f "$kdir/kamailio.pid"
  kamailio -f "$HERE/kamailio.cfg" "${defs[@]}" -P "$kdir/kamailio.pid" \
           -m "${SHM_MB:-1024}" -M 16 -DD -E >> "$kdir/kamailio.log" 2>&1 &
  KPID=$!
  for _ in $(seq 1 50); do
    if [[ -s "$kdir/kamailio.pid" ]] && ss -Hlun "sport = :$2" | grep -q .; then break; fi
    sleep 0.1
  done
  kill -0 "$KPID" 2>/dev/null || { echo "kamailio failed to start, see $kdir/kamailio.log" >&2; exit 2; }
  sleep 0.5
}
stop_kamailio() {
  if [[ -n "$KPID" ]] && kill -0 "$KPID" 2>/dev/null; then kill "$KPID"; wait "$KPID" 2>/dev/null || true; fi
  KPID=""
}

kamailio_point() {   # SCEN RATE
  local port rc=0
  port="$(free_port udp)"
  start_kamailio "$1" "$port"
  TARGET="127.0.0.1:$port" UAC_PORT="$(free_port udp)" SERVER_PIDS="$KPID" \
    LABEL="kamailio-$(kamailio -v 2>/dev/null | awk '/^version:/{print $3; exit}')" \
    "$ROOT/bench/lib/bench_point.sh" "$1" "$2" "$DUR" > /dev/null || rc=$?
  stop_kamailio
  point_ok "$rc"
}

# -- sipmesh ---------------------------------------------------------------------------
STACK_PID=""
start_stack() {   # N SCEN
  local work="$OUT_DIR/stack-$1r-$2-$(date +%H%M%S)" extra=()
  [[ "$2" == REG ]] && extra=(--no-auth)
  [[ "${REGISTRAR_CHALLENGES:-0}" == 1 ]] && extra+=(--registrar-challenges)
  mkdir -p "$work"
  "$PY" "$ROOT/bench/lib/stack.py" --workdir "$work" --registrars "$1" --edges "${EDGES:-1}" \
    --users "$USERS_CSV" "${extra[@]}" \
    > "$work/stack.log" 2>&1 &
  STACK_PID=$!
  for _ in $(seq 1 900); do
    [[ -s "$work/stack.env" ]] && break
    kill -0 "$STACK_PID" 2>/dev/null || { cat "$work/stack.log" >&2; exit 2; }
    sleep 0.2
  done
  # shellcheck disable=SC1091
  source "$work/stack.env"
  STACK_WORK="$work"
}
stop_stack() {
  if [[ -n "$STACK_PID" ]] && kill -0 "$STACK_PID" 2>/dev/null; then kill "$STACK_PID"; wait "$STACK_PID" 2>/dev/null || true; fi
  STACK_PID=""
}
trap 'stop_kamailio; stop_stack' EXIT

sipmesh_point() {   # N SCEN RATE
  local rc=0
  TARGET="127.0.0.1:$SIP_PORT" UAC_PORT="$(free_port udp)" SERVER_PIDS="" \
    SERVER_GROUPS="edge=$EDGE_PID registrar=$REGISTRAR_PIDS nats=$NATS_PID" \
    LABEL="sipmesh-${EDGES:-1}e${1}r${REGISTRAR_CHALLENGES:+-regchallenge}${LABEL_TAG:+-$LABEL_TAG}" "$ROOT/bench/lib/bench_point.sh" "$2" "$3" "$DUR" > /dev/null || rc=$?
  kill -0 "$STACK_PID" 2>/dev/null || { echo "the stack died; see $STACK_WORK" >&2; exit 2; }
  point_ok "$rc"
}

ladder() {   # POINT_FN ARGS... -- RATES
  local fn=$1; shift; local args=()
  while [[ "$1" != -- ]]; do args+=("$1"); shift; done; shift
  local best="" r
  for r in $1; do
    if "$fn" "${args[@]}" "$r"; then best="$r"; else break; fi
  done
  if [[ -n "$best" ]]; then
    for _ in $(seq 1 "$REPEATS"); do "$fn" "${args[@]}" "$best" || true; done
  fi
  echo "== $fn ${args[*]}: highest passing rate ${best:-none}"
}

cmd="${1:-all}"; shift || true
case "$cmd" in
  kamailio) ladder kamailio_point "$1" -- "$2" ;;
  sipmesh)  start_stack "$1" "$2"; ladder sipmesh_point "$1" "$2" -- "$3"; stop_stack ;;
  report)   python3 "$ROOT/bench/lib/report.py" "$RESULTS" ;;
  all)
    echo "results -> $RESULTS"
    ladder kamailio_point REG-AUTH -- "${KAM_RATES:-10000 15000 17500 20000 22500}"
    for n in 1 2; do
      start_stack "$n" REG-AUTH
      ladder sipmesh_point "$n" REG-AUTH -- "${SIPMESH_RATES:-1000 2000 3000 4000 5000 6000 7000 8000}"
      stop_stack
    done
    python3 "$ROOT/bench/lib/report.py" "$RESULTS"
    ;;
  *) echo "usage: $0 [all|kamailio SCEN RATES|sipmesh N SCEN RATES|report]" >&2; exit 2 ;;
esac
