#!/usr/bin/env bash
# Queue load (issue 16): CALLERS calls wait in QUEUES queues, each hearing the built-in hold
# music and sending PCMU (sipp rtp_stream), then agents take them at AGENT_RATE calls/s
# (`<Dial><Queue>`), each bridged for HOLD seconds.
#
# Reports callml's CPU per waiting caller over a steady WINDOW while all of them wait, and the
# time from an agent's `<Dial><Queue>` to its bridge (callml's `queue member joined` log line:
# from the dequeue to the member's media arriving in the agent's task), p50/p99/max.
#
# Usage: benches/queue_load.sh [--callers 1000] [--queues 10] [--agent-rate 50] [--window 10]
#                              [--hold 1] [--keep DIR]
# Needs: sipp (Debian sip-tester), sox, python3, curl. Loopback only. CALLML_BIN_DIR as in the
# other benches.
set -euo pipefail

callers=1000
queues=10
agent_rate=50
window=10
hold=1
keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --callers) callers=$2; shift 2 ;;
    --queues) queues=$2; shift 2 ;;
    --agent-rate) agent_rate=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --hold) hold=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for program in sipp sox curl python3; do
  command -v "$program" >/dev/null || { echo "$program not found (apt-get install sip-tester sox curl python3)" >&2; exit 2; }
done

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$keep" ]; then mkdir -p "$keep" && cp -r "$work"/. "$keep"/; fi
  rm -rf "$work"
}
trap cleanup EXIT

source "$root/benches/lib.sh"
bench_binaries bench_app

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
clock_ticks=$(getconf CLK_TCK)

sox -n -r 8000 -c 1 -e mu-law "$work/bridge_load.wav" synth 10 sine 440 vol 0.5

CALLML_BENCH_DOCUMENT='<Response><Enqueue>{queue}</Enqueue></Response>' \
CALLML_BENCH_AGENT_DOCUMENT='<Response><Dial timeout="60"><Queue>{queue}</Queue></Dial></Response>' \
CALLML_BENCH_QUEUES=$queues \
  "$bin/examples/bench_app" 127.0.0.1:0 > "$work/app.out" &
pids+=($!)
wait_line "$work/app.out" listening
app=$(awk '/listening/ {print $2}' "$work/app.out")

sip_port=$(free_port)
token=bench-token
RUST_LOG=info "$bin/callml" serve --sip "127.0.0.1:$sip_port" --http 127.0.0.1:0 \
  --data-dir "$work/data" --rtp-ports 20000-40000 --auth-token "$token" \
  --sip-rate-limit 1000000 --sip-rate-burst 1000000 \
  --voice-url "http://$app/voice" > "$work/callml.out" 2> "$work/callml.err" &
callml_pid=$!
pids+=($callml_pid)
wait_line "$work/callml.out" "callml ready"
http=$(sed -n '/^callml ready/ s/.*http=\([^ ]*\).*/\1/p' "$work/callml.out")
account=$(sed -n '/^callml ready/ s/.*account_sid=\([^ ]*\).*/\1/p' "$work/callml.out")
waiting() {
  curl -s -u "$account:$token" "http://$http/2010-04-01/Accounts/$account/Queues.json?PageSize=1000" \
    | python3 -c 'import json,sys; print(sum(q["current_size"] for q in json.load(sys.stdin)["queues"]))'
}

# The callers: all of them wait (they hang up when callml does, after their agent).
(cd "$work" && exec sipp "127.0.0.1:$sip_port" -sf "$root/fixtures/sipp/queue_member.xml" -s member \
   -i 127.0.0.1 -mi 127.0.0.1 -p "$(free_port)" -mp 40100 -r 100 -m "$callers" -l "$callers" \
   -timeout 600s -timeout_error -nostdin -trace_err -trace_stat -stf members.csv > members.out 2>&1) &
members=$!
pids+=($members)
for _ in $(seq 600); do
  [ "$(waiting)" -ge "$callers" ] && break
  sleep 0.5
done
now_waiting=$(waiting)
echo "callers waiting: $now_waiting of $callers in $queues queues"

cpu0=$(cpu_ticks "$callml_pid")
sleep "$window"
cpu1=$(cpu_ticks "$callml_pid")

# The agents, each bridged for `hold` seconds.
(cd "$work" && sipp "127.0.0.1:$sip_port" -sf "$root/fixtures/sipp/queue_agent.xml" -s agent \
   -i 127.0.0.1 -mi 127.0.0.1 -p "$(free_port)" -mp 50100 -r "$agent_rate" -m "$callers" -l "$callers" \
   -d $(( hold * 1000 )) -timeout 600s -timeout_error -nostdin -trace_err -trace_stat -stf agents.csv \
   > agents.out 2>&1) || true
wait "$members" || true

python3 - "$work" "$callers" "$queues" "$window" "$clock_ticks" "$cpu0" "$cpu1" "$now_waiting" <<'PY'
import re, sys
work, callers, queues, window, hz, cpu0, cpu1, now_waiting = sys.argv[1:9]
callers, window, hz, cpu0, cpu1, now_waiting = (int(x) for x in (callers, window, hz, cpu0, cpu1, now_waiting))
def counts(name):
    rows = [l.rstrip("\n").split(";") for l in open(f"{work}/{name}") if l.strip()]
    return int(rows[-1][rows[0].index("SuccessfulCall(C)")]), int(rows[-1][rows[0].index("FailedCall(C)")])
joined = []
for line in open(f"{work}/callml.err", errors="replace"):
    if "queue member joined" in line:
        match = re.search(r"after_us=(\d+)", line)
        if match:
            joined.append(int(match.group(1)) / 1000.0)
joined.sort()
pick = lambda q: joined[min(len(joined) - 1, int(q * len(joined)))] if joined else float("nan")
cpu_pct = 100.0 * (cpu1 - cpu0) / hz / window
members_ok, members_failed = counts("members.csv")
agents_ok, agents_failed = counts("agents.csv")
print(f"waiting callers: {now_waiting}, callml CPU {cpu_pct:.1f} % of a core over {window} s "
      f"({cpu_pct / max(1, now_waiting):.4f} % per waiting caller, hold music out, PCMU in)")
print(f"agents: {agents_ok} ok {agents_failed} failed; callers: {members_ok} ok {members_failed} failed")
print(f"<Dial><Queue> to bridge over {len(joined)} bridges: p50 {pick(0.5):.2f} ms, "
      f"p99 {pick(0.99):.2f} ms, max {joined[-1] if joined else float('nan'):.2f} ms")
PY
