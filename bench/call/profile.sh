#!/usr/bin/env bash
# Where sipmesh's CPU per call goes: one stack (as run.sh's), idle CPU first, then one
# CALL point at RATE with py-spy sampling the edge and the router (100 Hz, from 3 s in).
#
#   bench/call/profile.sh [RATE] [DUR] [call|media]     (default 100 20 call)
#
# Writes OUT_DIR/idle.json (CPU per process with no traffic, IDLE_S seconds, default 15),
# OUT_DIR/<proc>.collapsed (py-spy stacks) and prints the leaf-frame summary of each.
# Needs py-spy (.venv/bin/py-spy) and ptrace rights over our own children.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RATE="${1:-100}" DUR="${2:-20}" MODE="${3:-call}"
export OUT_DIR="${OUT_DIR:-${TMPDIR:-/tmp}/sipmesh-bench-call/profile-$(date +%H%M%S)}"
export QUIET_WAIT_S=0 COOLDOWN_S=0
SPY="${SPY:-$ROOT/.venv/bin/py-spy}"
# shellcheck source=run.sh
source "$HERE/run.sh"
trap 'stop_stack; stop_rtpengine' EXIT

[[ "$MODE" == media ]] && start_rtpengine
start_stack "$MODE"
python3 "$ROOT/bench/lib/cpu_sampler.py" --group "edge=$EDGE_PID" --group "router=$ROUTER_PID" \
  --group "nats=$NATS_PID" --group "registrar=$REGISTRAR_PIDS" ${MEDIA_PID:+--group "media=$MEDIA_PID"} \
  --max-seconds "${IDLE_S:-15}" --window "2,${IDLE_S:-15}" --csv "$OUT_DIR/idle.csv" --summary "$OUT_DIR/idle.json" > /dev/null
echo "idle: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print({k: v for k, v in d.items() if k.endswith("_pct") and "peak" not in k})' "$OUT_DIR/idle.json")"
( sleep 4
  "$SPY" record --nonblocking -r 100 -d $(( DUR - 6 )) -f raw -o "$OUT_DIR/edge.collapsed" -p "$EDGE_PID" > /dev/null 2>&1 &
  "$SPY" record --nonblocking -r 100 -d $(( DUR - 6 )) -f raw -o "$OUT_DIR/router.collapsed" -p "$ROUTER_PID" > /dev/null 2>&1 &
  wait ) &
SPY_JOB=$!
RATE=$RATE
sipmesh_point "$MODE" 0 "$RATE" || true
wait "$SPY_JOB"
for p in edge router; do
  echo "== $p: share of samples by leaf frame (top 15), and by module (top 12)"
  python3 - "$OUT_DIR/$p.collapsed" <<'PY'
import collections, re, sys
leaf, mod, total = collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" ")
    n = int(n); total += n
    frames = stack.split(";")
    leaf[re.sub(r" \(.*?:\d+\)", "", frames[-1])] += n
    m = re.search(r"\(([^()]*?):\d+\)$", frames[-1])
    path = m.group(1) if m else "?"
    key = next((k for k in ("sipmsg", "sipmesh_bus", "sipmesh_edge", "sipmesh_router", "nats",
                            "asyncio", "uvloop", "msgspec", "prometheus_client", "json")
                if f"/{k}/" in path or path.endswith(f"{k}.py")), path.rsplit("/", 1)[-1])
    mod[key] += n
for title, c in (("leaf", leaf), ("module", mod)):
    for k, n in c.most_common(15 if title == "leaf" else 12):
        print(f"  {100 * n / total:5.1f} %  {k}")
    print()
PY
done
