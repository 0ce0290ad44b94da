#!/usr/bin/env bash
# Call benchmark: the reference SIPp CALL scenario (INVITE/100/180/200/ACK/BYE/200, callee
# "uas" registered) against sipmesh (nats-server + 1 edge + 1 registrar + 1 router) and
# against Kamailio 5.6 as a record-routing stateful proxy, in one session; and the same with
# media anchoring through one RTPEngine (sipmesh: router media=always + media service;
# Kamailio: the rtpengine module), both on the same RTPEngine process.
#
#   bench/call/run.sh                                  everything below, in order
#   bench/call/run.sh kamailio call|media "R1 R2 ..." [HOLD_MS]   ladder against Kamailio
#   bench/call/run.sh sipmesh  call|media "R1 R2 ..." [HOLD_MS]   ladder against sipmesh
#   bench/call/run.sh report                            markdown table of $RESULTS
#   bench/call/run.sh plot [PNG]                        setup latency vs offered rate
#
# A ladder climbs until a point fails (more than 0.1 % failed calls, or under 97 % of the
# target rate), then repeats the best passing rate REPEATS times (default 0). Points are
# DUR seconds of call creation (default 15; the reference used 30; HOLD_DUR, default 25,
# for a held call). Kamailio: a fresh process per point, as in the reference; sipmesh: one
# stack per ladder. RTPEngine (userspace, --delete-delay=0): one per media ladder, shared
# by the stack of that ladder only. Every port is a free loopback port picked at run time.
# The callee registers each point with SIPp reg.xml (no auth: the registrar runs without
# it, Kamailio's CALL mode has none); the caller is trusted by address (sipmesh: a peer
# for 127.0.0.1/32; Kamailio: no checks).
# Environment: OUT_DIR, RESULTS, DUR, HOLD_DUR, REPEATS, COOLDOWN_S, QUIET_WAIT_S (default
# 30), LABEL_TAG (appended to the sipmesh label), EDGES (sipmesh edges sharing the SIP port,
# default 1), ROUTER_DIALOGS (the router's dialogs mode, always|auto, default always;
# auto keeps no KV dialog record, like Kamailio's bench config without the dialog
# module), plus bench/lib/bench_point.sh's (UAC_TRANSPORT=un: a socket per call, many
# source ports; with EDGES > 1 the kernel spreads them over the edges).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
LIB="$ROOT/bench/lib"
PY="${PY:-$ROOT/.venv/bin/python}"
export OUT_DIR="${OUT_DIR:-${TMPDIR:-/tmp}/sipmesh-bench-call/$(date +%Y%m%d-%H%M%S)}"
export RESULTS="${RESULTS:-$OUT_DIR/results.jsonl}"
export QUIET_WAIT_S="${QUIET_WAIT_S:-30}"
export SIPP_DIR="$HERE/sipp"
export RTT_FREQ="${RTT_FREQ:-100}"   # percentiles over every 100 calls (low rates)
DUR="${DUR:-15}"
HOLD_DUR="${HOLD_DUR:-25}"
REPEATS="${REPEATS:-0}"
COOLDOWN_S="${COOLDOWN_S:-5}"
mkdir -p "$OUT_DIR"

# sipmesh runs from a snapshot of one commit (SIPMESH_REV, default HEAD), not from the
# work tree, which other people edit while this runs. SNAPSHOT=0: the work tree as it is.
if [[ "${SNAPSHOT:-1}" == 1 ]]; then
  REV="$(git -C "$ROOT" rev-parse --short "${SIPMESH_REV:-HEAD}")"
  SNAP="$OUT_DIR/src-$REV"
  if [[ ! -d "$SNAP" ]]; then
    mkdir -p "$SNAP"; git -C "$ROOT" archive "$REV" src libs services scripts pyproject.toml | tar -x -C "$SNAP"
    # The snapshot runs the build the platform ships: sipmsg compiled with mypyc where
    # the commit has scripts/compile.py (pure Python with SIPMESH_PURE=1).
    [[ -f "$SNAP/scripts/compile.py" ]] && "$PY" "$SNAP/scripts/compile.py" >&2
  fi
  PYTHONPATH="$SNAP/src$(for d in "$SNAP"/libs/*/src "$SNAP"/services/*/src; do printf ':%s' "$d"; done)"
  export PYTHONPATH
  BUILD="$(PYTHONPATH="$PYTHONPATH" "$PY" -c 'import sipmsg; print("mypyc" if getattr(sipmsg, "COMPILED", False) else "pure")')"
  echo "sipmesh $REV, sipmsg build: $BUILD" >&2
  LABEL_TAG="${LABEL_TAG:-$REV-$BUILD}"
fi

free_port() {   # $1 = tcp|udp
  "$PY" -c 'import socket,sys; k=socket.SOCK_DGRAM if sys.argv[1]=="udp" else socket.SOCK_STREAM
s=socket.socket(socket.AF_INET,k); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}

point() {   # HOLD_MS DUR LABEL SERVER_GROUPS TARGET_PORT: one bench_point.sh CALL point
  local rc=0
  HOLD_MS="$1" TARGET="127.0.0.1:$5" UAC_PORT="$(free_port udp)" UAS_PORT="${CALLEE_PORT:-$(free_port udp)}" \
    UAC_MEDIA_PORT="$(free_port udp)" UAS_MEDIA_PORT="$(free_port udp)" \
    SERVER_PIDS="" SERVER_GROUPS="$4" LABEL="$3" \
    "$LIB/bench_point.sh" CALL "$RATE" "$2" > /dev/null || rc=$?
  tail -1 "$RESULTS" | python3 "$LIB/report.py" --line || true
  sleep "$COOLDOWN_S"
  return "$rc"
}

# -- RTPEngine (media ladders) ---------------------------------------------------------
RTPE_PID="" RTPE_NG="" RTPE_CLI="" RTPE_DIR=""
start_rtpengine() {
  local dir="$OUT_DIR/rtpengine-$(date +%H%M%S)" range
  mkdir -p "$dir"; RTPE_DIR="$dir"
  RTPE_NG="$(free_port udp)"; RTPE_CLI="$(free_port tcp)"
  range="$("$PY" -c 'from sipmesh_media.local import free_port_range as f; print(*f(size=4000))')"
  rtpengine --config-file=none --table=-1 --interface=127.0.0.1 --listen-ng="127.0.0.1:$RTPE_NG" \
    --listen-cli="127.0.0.1:$RTPE_CLI" \
    --foreground --log-stderr --port-min="${range% *}" --port-max="${range#* }" --delete-delay=0 \
    --log-level=4 --pidfile="$dir/rtpengine.pid" > "$dir/rtpengine.log" 2>&1 &
  RTPE_PID=$!
  for _ in $(seq 1 50); do
    ss -Hlun "sport = :$RTPE_NG" | grep -q . && break
    kill -0 "$RTPE_PID" 2>/dev/null || { cat "$dir/rtpengine.log" >&2; exit 2; }
    sleep 0.1
  done
  echo "rtpengine pid $RTPE_PID ng 127.0.0.1:$RTPE_NG ports $range"
}
stop_rtpengine() {
  if [[ -n "$RTPE_PID" ]] && kill -0 "$RTPE_PID" 2>/dev/null; then
    # proof that the calls went through it: session totals since start
    rtpengine-ctl -ip 127.0.0.1 -port "$RTPE_CLI" list totals > "$RTPE_DIR/totals.txt" 2>&1 || true
    grep -iE "total managed sessions|total rejected" "$RTPE_DIR/totals.txt" || true
    kill "$RTPE_PID"; wait "$RTPE_PID" 2>/dev/null || true; fi
  RTPE_PID=""
}

# -- Kamailio --------------------------------------------------------------------------
KPID="" KVER="$(kamailio -v 2>/dev/null | awk '/^version:/{print $3; exit}')"
start_kamailio() {   # MODE PORT
  local defs=(-A "LISTEN=udp:127.0.0.1:$2")
  [[ "$1" == media ]] && defs+=(-A WITH_RTPENGINE -A "RTPENGINE_SOCK=\"udp:127.0.0.1:$RTPE_NG\"")
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

kamailio_point() {   # MODE HOLD_MS RATE
  local port rc=0 groups label="kamailio-$KVER" dur=$DUR
  RATE=$3; (( $2 > 0 )) && dur=$HOLD_DUR
  port="$(free_port udp)"
  start_kamailio "$1" "$port"
  groups="kamailio=$KPID"
  [[ "$1" == media ]] && { groups+=" rtpengine=$RTPE_PID"; label+="+rtpengine"; }
  point "$2" "$dur" "$label" "$groups" "$port" || rc=$?
  stop_kamailio
  return "$rc"
}

# -- sipmesh ---------------------------------------------------------------------------
STACK_PID=""
start_stack() {   # MODE
  local work="$OUT_DIR/stack-$1-$(date +%H%M%S)" extra=(--router)
  # The callee (SIPp UAS) keeps one address for the stack's life, as a PBX would: each
  # point re-registers the same Contact, so the AoR keeps one binding. With a new port
  # per point the AoR gathered one dead contact per point and every INVITE of a later
  # point forked to all of them (ICMP, a failed branch each), while Kamailio starts
  # with an empty location table at every point.
  CALLEE_PORT="$(free_port udp)"
  [[ "$1" == media ]] && extra+=(--media-instance "127.0.0.1:$RTPE_NG")
  mkdir -p "$work"
  "$PY" "$LIB/stack.py" --workdir "$work" --no-auth --edges "${EDGES:-1}" \
    --dialogs "${ROUTER_DIALOGS:-always}" "${extra[@]}" \
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
  STACK_PID="" CALLEE_PORT=""
}

sipmesh_point() {   # MODE HOLD_MS RATE
  local rc=0 dur=$DUR label="sipmesh-${EDGES:-1}e1r1rt${LABEL_TAG:+-$LABEL_TAG}"
  local groups="edge=$EDGE_PID registrar=$REGISTRAR_PIDS router=$ROUTER_PID nats=$NATS_PID"
  RATE=$3; (( $2 > 0 )) && dur=$HOLD_DUR
  [[ "$1" == media ]] && { groups+=" media=$MEDIA_PID rtpengine=$RTPE_PID"; label+="+media"; }
  point "$2" "$dur" "$label" "$groups" "$SIP_PORT" || rc=$?
  kill -0 "$STACK_PID" 2>/dev/null || { echo "the stack died; see $STACK_WORK" >&2; exit 2; }
  return "$rc"
}

trap 'stop_kamailio; stop_stack; stop_rtpengine' EXIT

ladder() {   # POINT_FN MODE HOLD_MS RATES
  local best="" r
  for r in $4; do
    if "$1" "$2" "$3" "$r"; then best="$r"; else break; fi
  done
  if [[ -n "$best" ]]; then
    for _ in $(seq 1 "$REPEATS"); do "$1" "$2" "$3" "$best" || true; done
  fi
  echo "== $1 $2 hold $3 ms: highest passing rate ${best:-none}"
}

run() {   # kamailio|sipmesh MODE RATES [HOLD_MS]
  local who=$1 mode=$2 rates=$3 hold=${4:-0}
  [[ "$mode" == media ]] && start_rtpengine
  if [[ "$who" == sipmesh ]]; then
    start_stack "$mode"; ladder sipmesh_point "$mode" "$hold" "$rates"; stop_stack
  else
    ladder kamailio_point "$mode" "$hold" "$rates"
  fi
  stop_rtpengine
}

# sourced (bench/call/profile.sh): the functions above, no command
[[ "${BASH_SOURCE[0]}" != "$0" ]] && return 0

cmd="${1:-all}"; shift || true
case "$cmd" in
  kamailio|sipmesh) run "$cmd" "$@" ;;
  report) python3 "$LIB/report.py" "$RESULTS" ;;
  plot)   "$PY" "$HERE/plot.py" "${1:-$ROOT/docs/bench-calls.png}" "$RESULTS" ;;
  all)
    echo "results -> $RESULTS"
    run kamailio call  "${KAM_RATES:-1000 2000 2500 3000 3500 4000 4500}"
    run sipmesh  call  "${SIPMESH_RATES:-100 150 200 250 300 400 500}"
    run kamailio call  "${KAM_HOLD_RATES:-1000 2000}" 10000
    run sipmesh  call  "${SIPMESH_HOLD_RATES:-100}" 10000
    run kamailio media "${KAM_MEDIA_RATES:-500 1000 1500 2000 2500 3000}"
    run sipmesh  media "${SIPMESH_MEDIA_RATES:-50 100 150 200 250 300}"
    python3 "$LIB/report.py" "$RESULTS"
    ;;
  *) echo "usage: $0 [all|kamailio MODE RATES [HOLD_MS]|sipmesh MODE RATES [HOLD_MS]|report|plot]" >&2; exit 2 ;;
esac
