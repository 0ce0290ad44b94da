#!/usr/bin/env bash
# Run ONE SIPp load point against any SIP server and append one JSON line of results.
#
#   lib/bench_point.sh SCENARIO RATE [DURATION_S]
#
#   SCENARIO   REG | REG-AUTH | CALL
#   RATE       calls per second SIPp creates (REG/REG-AUTH: registrations/s; CALL: calls/s)
#   DURATION_S seconds of call creation (default 30); SIPp sends RATE*DURATION_S calls
#
# Environment (all optional):
#   TARGET=127.0.0.1:5070   SIP server under test (UDP). Must be on loopback.
#   SERVER_PIDS="p1 p2"     PIDs whose CPU (with all descendants) is reported as "server"
#   SERVER_GROUPS="edge=p1 registrar=p2,p3 nats=p4"   instead of SERVER_PIDS: the server's
#                           processes in named groups, each reported as <name>_pct; "server"
#                           is then their sum (sipmesh: edge, registrars, nats-server)
#   HOLD_MS=0               CALL: hold time between ACK and BYE (sipp -set hold_ms)
#   UAC_PORT=5062           local port of the load-generating SIPp
#   UAC_TRANSPORT=u1        its sipp -t: u1 one socket; un one socket per call, so many
#                           source ports, as many phones would be (SO_REUSEPORT spreads
#                           those over edges; one source port always hashes to one edge)
#   UAS_PORT=5080           CALL: port of the answering SIPp
#   UAC_MEDIA_PORT=26100 UAS_MEDIA_PORT=26000   SIPp -mp (media ports SIPp binds)
#   RTT_FREQ=1000           sipp -rtt_freq: response times are dumped every N calls (a
#                           point with fewer calls than this has no percentiles)
#   UAS_USER=uas            CALL: callee user; registered at TARGET before the run
#   UAS_REG_AUTH=0          CALL: 1 = register the callee with digest auth (password pw-<user>)
#   SIPP_DIR=bench/register/sipp   where reg.xml, reg_auth.xml, call_uac.xml, call_uas.xml are
#   USERS_CSV=$SIPP_DIR/users.csv   REG/REG-AUTH injection file (user;password)
#   OUT_DIR=${TMPDIR:-/tmp}/anchor-bench/points   per-run files go to OUT_DIR/<run-id>/
#   RESULTS=$OUT_DIR/results.jsonl   where the JSON line is appended
#   LABEL=""                free text stored with the result (e.g. "kamailio-5.6")
#   MAX_FAIL_PCT=0.1 MIN_RATE_RATIO=0.97   pass criteria
#   QUIET_WAIT_S=900        wait up to this long for the box to be idle (other users' processes,
#                           SERVER_PIDS excluded, < QUIET_PCT=15 % of a core) before starting; 0 = don't wait
#   FOREIGN_MAX_PCT=10      mark the point "disturbed" if foreign processes used more than this
#                           (mean % of a core, steady window or whole run; or 5x this as a 1-s peak)
#
# Prints the JSON line on stdout. Exit status 0 = point passed, 1 = failed criteria, 2 = error.
set -euo pipefail

LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SIPP_DIR="${SIPP_DIR:-$LIB_DIR/../register/sipp}"   # the scenario XML files
SCEN="${1:?scenario REG|REG-AUTH|CALL}"
RATE="${2:?rate}"
DUR="${3:-30}"
TARGET="${TARGET:-127.0.0.1:5070}"
SERVER_PIDS="${SERVER_PIDS:-}"
SERVER_GROUPS="${SERVER_GROUPS:-}"
GROUP_PIDS="$(for g in $SERVER_GROUPS; do echo "${g#*=}"; done | tr ',\n' '  ')"
HOLD_MS="${HOLD_MS:-0}"
UAC_PORT="${UAC_PORT:-5062}"
UAS_PORT="${UAS_PORT:-5080}"
UAS_USER="${UAS_USER:-uas}"
RTT_FREQ="${RTT_FREQ:-1000}"
UAC_MEDIA_PORT="${UAC_MEDIA_PORT:-26100}"
UAS_MEDIA_PORT="${UAS_MEDIA_PORT:-26000}"
UAS_REG_AUTH="${UAS_REG_AUTH:-0}"
USERS_CSV="${USERS_CSV:-$SIPP_DIR/users.csv}"
OUT_DIR="${OUT_DIR:-${TMPDIR:-/tmp}/anchor-bench/points}"
RESULTS="${RESULTS:-$OUT_DIR/results.jsonl}"
LABEL="${LABEL:-}"
MAX_FAIL_PCT="${MAX_FAIL_PCT:-0.1}"
MIN_RATE_RATIO="${MIN_RATE_RATIO:-0.97}"
QUIET_WAIT_S="${QUIET_WAIT_S:-900}"
QUIET_PCT="${QUIET_PCT:-15}"
FOREIGN_MAX_PCT="${FOREIGN_MAX_PCT:-10}"

case "$TARGET" in
  127.*|localhost:*) ;;
  *) echo "TARGET must be a loopback address (got $TARGET)" >&2; exit 2 ;;
esac

CALLS=$(( RATE * DUR ))
HOLD_S=$(( (HOLD_MS + 999) / 1000 ))
LIMIT=$(( RATE * (HOLD_S + 40) + 100 ))       # never throttle on open calls
SIPP_TIMEOUT=$(( DUR + HOLD_S + 75 ))          # sipp -timeout: graceful stop, calls still open count as failed
SAFETY_TIMEOUT=$(( SIPP_TIMEOUT + 30 ))         # hard stop for a wedged sipp
RUN_ID="$(date +%Y%m%d-%H%M%S)-${SCEN}-r${RATE}-h${HOLD_MS}"
RUN_DIR="$OUT_DIR/$RUN_ID"
mkdir -p "$RUN_DIR"
SIPP_COMMON=(-i 127.0.0.1 -bind_local -nostdin -buff_size 4194304 -trace_err -max_log_size 20000000)

UAS_PID=""
cleanup() {
  if [[ -n "$UAS_PID" ]] && kill -0 "$UAS_PID" 2>/dev/null; then
    kill "$UAS_PID" 2>/dev/null || true
    wait "$UAS_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

case "$SCEN" in
  REG)      XML="$SIPP_DIR/reg.xml";      EXTRA=(-inf "$USERS_CSV") ;;
  REG-AUTH) XML="$SIPP_DIR/reg_auth.xml"; EXTRA=(-inf "$USERS_CSV") ;;
  CALL)     XML="$SIPP_DIR/call_uac.xml"; EXTRA=(-s "$UAS_USER" -set hold_ms "$HOLD_MS" -mp "$UAC_MEDIA_PORT") ;;
  *) echo "unknown scenario $SCEN" >&2; exit 2 ;;
esac

cd "$RUN_DIR"

# 0) wait until nobody else is loading the 2 cores (shared machine)
WAITED=0
if (( QUIET_WAIT_S > 0 )); then
  while ! python3 "$LIB_DIR/cpu_sampler.py" --quiet-check 3 --quiet-threshold "$QUIET_PCT" \
          --exclude "$(echo $SERVER_PIDS $GROUP_PIDS | tr ' ' ',')" > quiet.txt; do
    WAITED=$(( WAITED + 3 ))
    if (( WAITED >= QUIET_WAIT_S )); then echo "box still busy ($(cat quiet.txt)%), running anyway" >&2; break; fi
  done
fi

if [[ "$SCEN" == CALL ]]; then
  # 1) register the callee: a REGISTER sent from the UAS port, so Contact = UAS address
  printf 'SEQUENTIAL\n%s;pw-%s\n' "$UAS_USER" "$UAS_USER" > uas_user.csv
  REGXML="$SIPP_DIR/reg.xml"; [[ "$UAS_REG_AUTH" == 1 ]] && REGXML="$SIPP_DIR/reg_auth.xml"
  if ! timeout 15 sipp -sf "$REGXML" -inf uas_user.csv -m 1 -p "$UAS_PORT" "${SIPP_COMMON[@]}" \
        -error_file uas_reg_err.log "$TARGET" > uas_reg.log 2>&1; then
    echo "callee registration failed (see $RUN_DIR/uas_reg.log)" >&2; exit 2
  fi
  # 2) start the answering SIPp
  sipp -sf "$SIPP_DIR/call_uas.xml" -p "$UAS_PORT" -mp "$UAS_MEDIA_PORT" "${SIPP_COMMON[@]}" \
       -trace_stat -stf uas_stat.csv -fd 1 -error_file uas_err.log > uas_screen.log 2>&1 &
  UAS_PID=$!
  sleep 1
  kill -0 "$UAS_PID" 2>/dev/null || { echo "UAS sipp died (see $RUN_DIR/uas_screen.log)" >&2; exit 2; }
fi

# 3) the load generator
grep '^Udp:' /proc/net/snmp > udp_before.txt
timeout "$SAFETY_TIMEOUT" sipp -sf "$XML" "${EXTRA[@]}" -r "$RATE" -rp 1000 -m "$CALLS" -l "$LIMIT" -timeout "${SIPP_TIMEOUT}s" \
     -p "$UAC_PORT" -t "${UAC_TRANSPORT:-u1}" -max_socket 10000 "${SIPP_COMMON[@]}" -trace_stat -stf uac_stat.csv -fd 1 \
     -trace_rtt -rtt_freq "$RTT_FREQ" -error_file uac_err.log "$TARGET" > uac_screen.log 2>&1 &
UAC_PID=$!

# 4) CPU sampling until the load generator exits. Steady window = from HOLD+3 s to DUR-1 s:
#    calls are being created and (for CALL with hold) torn down at the same rate; the drain
#    after DUR (retransmissions of an overloaded run) is excluded.
SAMPLE_GROUPS=(--group "sipp_uac=$UAC_PID")
[[ -n "$UAS_PID" ]] && SAMPLE_GROUPS+=(--group "sipp_uas=$UAS_PID")
[[ -n "$SERVER_PIDS" ]] && SAMPLE_GROUPS+=(--group "server=$(echo $SERVER_PIDS | tr ' ' ',')")
for g in $SERVER_GROUPS; do SAMPLE_GROUPS+=(--group "$g"); done
python3 "$LIB_DIR/cpu_sampler.py" "${SAMPLE_GROUPS[@]}" --until-pid "$UAC_PID" \
   --window "$(( HOLD_S + 3 )),$(( DUR - 1 ))" \
   --csv cpu.csv --summary cpu.json &
SAMPLER_PID=$!

set +e
wait "$UAC_PID"; UAC_RC=$?
wait "$SAMPLER_PID"
set -e
grep '^Udp:' /proc/net/snmp > udp_after.txt

RTT_FILE="$(ls -1 ./*_rtt.csv 2>/dev/null | head -1 || true)"
SUMMARY="$(python3 "$LIB_DIR/sipp_summary.py" --stat uac_stat.csv ${RTT_FILE:+--rtt "$RTT_FILE"} \
            --target-calls "$CALLS" --target-rate "$RATE")"

UAS_FAILED=None
if [[ -n "$UAS_PID" ]]; then
  cleanup; UAS_PID=""
  UAS_FAILED="$(tail -1 uas_stat.csv 2>/dev/null | awk -F';' 'NR==1{print $18}' || true)"
  [[ "$UAS_FAILED" =~ ^[0-9]+$ ]] || UAS_FAILED=None
fi

LINE="$(python3 - "$SUMMARY" "$RUN_DIR/cpu.json" <<PY
import json, sys
s = json.loads(sys.argv[1]); cpu = json.load(open(sys.argv[2]))
ok = (s["fail_pct"] is not None and s["fail_pct"] <= $MAX_FAIL_PCT
      and s["achieved_rate"] is not None and s["achieved_rate"] >= $MIN_RATE_RATIO * $RATE)
out = {"label": "$LABEL" + ("" if "${UAC_TRANSPORT:-u1}" == "u1" else " (sipp -t ${UAC_TRANSPORT:-u1})"), "scenario": "$SCEN", "rate": $RATE, "duration_s": $DUR,
       "hold_ms": $HOLD_MS, "target": "$TARGET", "run_dir": "$RUN_ID",
       "sipp_rc": $UAC_RC, "uas_failed": $UAS_FAILED, "pass": ok, "quiet_wait_s": $WAITED,
       "uac_transport": "${UAC_TRANSPORT:-u1}"}
out.update(s); out["cpu"] = cpu
groups = [g.split("=", 1)[0] for g in "$SERVER_GROUPS".split()]
if groups and cpu.get("server_pct") is None:
    cpu["server_pct"] = round(sum(cpu.get(g + "_pct") or 0 for g in groups), 1)
out["disturbed"] = ((cpu.get("foreign_pct") or 0) > $FOREIGN_MAX_PCT
                    or (cpu.get("foreign_whole_run_pct") or 0) > $FOREIGN_MAX_PCT
                    or (cpu.get("foreign_whole_run_peak_pct") or 0) > 5 * $FOREIGN_MAX_PCT)
u0, u1 = [dict(zip(l.split()[1:], map(int, l2.split()[1:]))) for l, l2 in
          [open(f).read().splitlines()[:2] for f in ("udp_before.txt", "udp_after.txt")]]
out["udp_rcvbuf_errors"] = u1["RcvbufErrors"] - u0["RcvbufErrors"]   # host-wide, all sockets
print(json.dumps(out))
PY
)"
echo "$LINE" >> "$RESULTS"
echo "$LINE"
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["pass"] else 1)' "$LINE"
