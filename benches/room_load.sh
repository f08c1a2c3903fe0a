#!/usr/bin/env bash
# Conference rooms under load (issue 13): N sipp callers `<Dial><Conference>` into rooms of
# --room-size participants (3 by default; one room of 100 with --room-size 100), every one of
# them sending PCMU at 20 ms for the whole call and hearing the mix of the others; and, in the
# same run, callml's same-codec relay (benches/bridge_load.sh, `callml` system) for the CPU per
# relayed call leg the rooms are judged against.
#
#   sipp caller (fixtures/sipp/room_caller.xml, To sip:+CALLNUMBER) --SIP--> callml
#     document from examples/bench_app.rs:
#       <Dial><Conference beep="false" waitUrl="">r{(CALLNUMBER - 1) / ROOM_SIZE}</Conference></Dial>
#   SDP: PCMU and telephone-event (RFC 4733), as phones offer; --no-telephone-event offers PCMU
#     alone, so that callml also listens for in-band DTMF tones in every frame it receives.
#   media: rtp_probe --stream, one port per call (-mp 25000: ports 25004, 25008, ...): from
#     callml's first packet it sends PCMU (a 1 kHz tone, 160 bytes every 20 ms on a fixed
#     timestamp schedule) and measures the mix it receives from the room.
#
# At each step N calls are placed at --rate calls/s and each lasts until all N have overlapped
# for --hold seconds (ramp + hold + 6 s). Over that steady window (every room started, no
# signalling) callml's CPU time (utime+stime from /proc/PID/stat, and the share of its
# `rtp-room-*` worker threads from /proc/PID/task/*/stat) gives the CPU per participant, and
# its resident memory (VmRSS) against the same process idle before the first call gives the
# memory per participant. rtp_probe gives, over the whole call: loss (RFC 3550 expected minus
# received, per stream), late packets (arrival minus RTP timestamp more than --late-ms beyond
# the stream's smallest: callml's mixer stamps each frame on its own 20 ms schedule, so this is
# how late the mixer's frames reach the phone) and voiced packets (audible PCMU: the mix really
# carries the others). A step passes when every call succeeded, loss < 0.5 % and no packet was
# late; the ramp stops at the first failure unless --all-steps.
#
# Usage: benches/room_load.sh [--participants "300 600 900 1002 1200"] [--room-size 3]
#          [--hold 30] [--rate 100] [--late-ms 40] [--relay-calls 500] [--all-steps]
#          [--no-telephone-event] [--perf] [--keep DIR]
# --participants is rounded up to whole rooms (at most 1,749). --relay-calls N (0: none) runs
# bridge_load.sh --systems "direct callml" --calls N --hold HOLD first and reports the relay's
# CPU per call leg (per call / 2: each leg receives and sends 50 packets/s, as a participant
# does), its lateness, and the lateness of its load generators alone (`direct`). --perf records callml with
# `perf record -g` over the steady window of each step and prints where its CPU went.
# Needs: sipp (sip-tester), python3; sox, rtpengine and kamailio are not needed (the relay
# step runs callml only). Loopback only; every process started here stops by itself.
# CALLML_BIN_DIR as in the other benches.
set -euo pipefail

steps="300 600 900 1002 1200"
room_size=3
hold=30
rate=100
late_ms=40
relay_calls=500
all_steps=0
perf=0
telephone_event=1
keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --participants) steps=$2; shift 2 ;;
    --room-size) room_size=$2; shift 2 ;;
    --hold) hold=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --late-ms) late_ms=$2; shift 2 ;;
    --relay-calls) relay_calls=$2; shift 2 ;;
    --all-steps) all_steps=1; shift ;;
    --perf) perf=1; shift ;;
    --no-telephone-event) telephone_event=0; shift ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in sipp python3; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install sip-tester python3)" >&2; exit 2; }
done
if [ "$perf" = 1 ]; then
  command -v perf >/dev/null || { echo "perf not found (apt-get install linux-perf)" >&2; exit 2; }
fi

# Port plan, below the ephemeral range and away from bridge_load.sh's fixed ports (5000-16999,
# which its relay step uses): callml's media ports in 17000-24999 (RTP + RTCP per participant),
# the callers' media (rtp_probe) from 25004 by 4 (sipp [auto_media_port+4] with -mp 25000).
caller_media=25000
probe_base=$((caller_media + 4))
rtp_ports=17000-24999
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

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
bench_binaries bench_app rtp_probe

cpu_ticks() { local sum=0 t p; for p in "$@"; do t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0); sum=$((sum + t)); done; echo "$sum"; }
# CPU ticks of the process's room worker threads (named rtp-room-N).
room_ticks() { cat /proc/"$1"/task/*/stat 2>/dev/null | awk '/\(rtp-room-[0-9]+\)/ {s += $14 + $15} END {print s + 0}'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Total, idle and steal ticks of the machine.
machine_ticks() { awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6, $9}' /proc/stat; }
clock_ticks=$(getconf CLK_TCK)

# One step: N participants in rooms of room_size. Prints one JSON line of figures.
step() { # participants
  local calls=$1
  local dir="$work/rooms-$calls"
  mkdir -p "$dir"
  local ramp=$(( (calls + rate - 1) / rate ))
  local length=$(( ramp + hold + 6 ))          # each call's length, seconds
  local lifetime=$(( length + ramp + 30 ))     # upper bound for every helper process
  local step_pids=()

  [ "$calls" -le 1749 ] || { echo "at most 1749 participants (ports 25004-31999)" >&2; exit 2; }
  "$bin/examples/rtp_probe" --base "$probe_base" --count "$calls" --stream \
    --seconds $(( ramp + length + 4 )) --late-ms "$late_ms" > "$dir/probe.out" &
  local probe=$!
  step_pids+=($!)
  wait_line "$dir/probe.out" listening

  CALLML_BENCH_DOCUMENT='<Response><Dial><Conference beep="false" waitUrl="">{room}</Conference></Dial></Response>' \
  CALLML_BENCH_ROOM_SIZE=$room_size \
    timeout "$lifetime" "$bin/examples/bench_app" 127.0.0.1:0 > "$dir/app.out" &
  step_pids+=($!)
  wait_line "$dir/app.out" listening
  local app; app=$(awk '/listening/ {print $2}' "$dir/app.out")

  local sip_port; sip_port=$(free_port)
  RUST_LOG=info,callml::call::rooms=debug timeout "$lifetime" "$bin/callml" serve --sip "127.0.0.1:$sip_port" --http 127.0.0.1:0 \
    --data-dir "$dir/data" --rtp-ports "$rtp_ports" --voice-url "http://$app/voice" \
    > "$dir/callml.out" 2> "$dir/callml.err" &
  step_pids+=($!)
  wait_line "$dir/callml.out" "callml ready"
  local callml_pid; callml_pid=$(pgrep -P "${step_pids[-1]}")
  pids+=("${step_pids[@]}")
  local rss_idle; rss_idle=$(rss_kib "$callml_pid")

  local sdp_keys=(-key formats "0 101" -key event_line "a=rtpmap:101 telephone-event/8000")
  [ "$telephone_event" = 1 ] || sdp_keys=(-key formats 0 -key event_line a=sendrecv)
  (cd "$dir" && exec timeout "$lifetime" sipp "127.0.0.1:$sip_port" -sf "$root/fixtures/sipp/room_caller.xml" "${sdp_keys[@]}" \
     -i 127.0.0.1 -mi 127.0.0.1 -p "$(free_port)" -mp "$caller_media" -r "$rate" -m "$calls" -l "$calls" \
     -d $(( length * 1000 )) -timeout "$lifetime"s -timeout_error -nostdin -trace_err \
     -trace_stat -stf stats.csv > uac.out 2>&1) &
  local uac=$!
  pids+=($uac)
  sleep $(( ramp + 3 ))
  local generators; generators="$probe $(pgrep -P "$uac")"
  local cpu0 cpu1 room0 room1 machine0 machine1 gen0 gen1 rss
  # shellcheck disable=SC2086
  cpu0=$(cpu_ticks "$callml_pid"); room0=$(room_ticks "$callml_pid"); gen0=$(cpu_ticks $generators)
  machine0=$(machine_ticks)
  if [ "$perf" = 1 ]; then
    perf record -q -g -F 499 -p "$callml_pid" -o "$dir/perf.data" -- sleep "$hold" > /dev/null 2>&1
  else
    sleep "$hold"
  fi
  # shellcheck disable=SC2086
  cpu1=$(cpu_ticks "$callml_pid"); room1=$(room_ticks "$callml_pid"); gen1=$(cpu_ticks $generators)
  machine1=$(machine_ticks)
  rss=$(rss_kib "$callml_pid")
  # How many rooms were made and participants' media reached a mixer, by the window's end.
  local rooms_made in_mixer
  rooms_made=$(grep -c "conference created" "$dir/callml.err" || true)
  in_mixer=$(grep -c "participant's media in the mixer" "$dir/callml.err" || true)
  wait "$uac" || true
  wait "$probe" || true   # rtp_probe prints its totals and exits
  for p in "${step_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${step_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$perf" = 1 ]; then
    perf report -i "$dir/perf.data" --no-children --sort dso,symbol --percent-limit 1.5 --stdio 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | grep '%' | head -30 > "$dir/perf.txt" || true
  fi

  python3 - "$calls" "$room_size" "$hold" "$length" "$clock_ticks" "$cpu0" "$cpu1" "$room0" "$room1" \
    "$machine0 $machine1" "$gen0" "$gen1" "$rss_idle" "$rss" "$dir/probe.out" "$dir/stats.csv" \
    "$rooms_made" "$in_mixer" "$telephone_event" <<'PY'
import json, sys
a = sys.argv[1:]
calls, room_size, hold, length, hz, cpu0, cpu1, room0, room1 = (int(x) for x in a[:9])
total0, idle0, steal0, total1, idle1, steal1 = (int(x) for x in a[9].split())
gen0, gen1, rss_idle, rss = (int(x) for x in a[10:14])
probe = json.loads([l for l in open(a[14]) if l.startswith("{")][-1])
rows = [l.rstrip("\n").split(";") for l in open(a[15]) if l.strip()]
rooms_made, in_mixer = int(a[16]), int(a[17])
ok = int(rows[-1][rows[0].index("SuccessfulCall(C)")])
failed = int(rows[-1][rows[0].index("FailedCall(C)")])
cpu_pct = 100.0 * (cpu1 - cpu0) / hz / hold
room_pct = 100.0 * (room1 - room0) / hz / hold
machine = 100.0 * (1 - (idle1 - idle0) / max(1, total1 - total0))  # of both cores
generators_pct = 100.0 * (gen1 - gen0) / hz / hold
steal = 200.0 * (steal1 - steal0) / max(1, total1 - total0)
others = max(0.0, 2 * machine - cpu_pct - generators_pct - steal)
loss = 100.0 * probe["lost"] / max(1, probe["expected"])
print(json.dumps(dict(
    participants=calls, room_size=room_size, rooms=(calls + room_size - 1) // room_size,
    telephone_event=bool(int(a[18])),
    rooms_made=rooms_made, in_mixer=in_mixer,
    ok=ok, failed=failed, loss_pct=round(loss, 3), late=probe["late"],
    late_streams=probe["late_streams"], late_streams_worst_at_s=probe["late_streams_worst_at_s"],
    worst_delay_ms=probe["worst_delay_ms"], probe_streams=probe["streams"],
    received=probe["received"], voiced=probe["voiced"], expected_per_call=50 * length,
    callml_cpu_pct=round(cpu_pct, 1), room_workers_cpu_pct=round(room_pct, 1),
    cpu_pct_per_participant=round(cpu_pct / calls, 4),
    rss_idle_mib=round(rss_idle / 1024, 1), rss_mib=round(rss / 1024, 1),
    rss_kib_per_participant=round((rss - rss_idle) / calls, 1),
    machine_busy_pct=round(machine, 1), generators_cpu_pct=round(generators_pct, 1),
    others_cpu_pct=round(others, 1), steal_pct=round(steal, 1))))
PY
}

results="$work/results.jsonl"
: > "$results"

# The relay, for the comparison: callml's bridges (two legs each) on this machine, now.
relay_per_leg=""
if [ "$relay_calls" -gt 0 ]; then
  echo "relay: $relay_calls bridged calls through callml (benches/bridge_load.sh)" >&2
  CALLML_BIN_DIR=$bin "$root/benches/bridge_load.sh" --systems "direct callml" --calls "$relay_calls" \
    --hold "$hold" --rate "$rate" --late-ms "$late_ms" --all-steps --keep "$work/relay" > "$work/relay.out" 2>&1 \
    || { echo "bridge_load.sh failed:" >&2; cat "$work/relay.out" >&2; exit 1; }
  relay_per_leg=$(python3 -c '
import json, sys
rows = {r["system"]: r for r in (json.loads(l) for l in open(sys.argv[1]) if l.strip())}
r, direct = rows["callml"], rows["direct"]
print(json.dumps(dict(calls=r["calls"], loss_pct=r["loss_pct"], late=r["late"],
    late_streams=r["late_streams"], direct_late=direct["late"], direct_late_streams=direct["late_streams"],
    cpu_pct_per_call=r["cpu_pct_per_call"], cpu_pct_per_leg=round(r["cpu_pct_per_call"] / 2, 4),
    others_cpu_pct=r["others_cpu_pct"], generators_cpu_pct=r["generators_cpu_pct"])))' "$work/relay/results.jsonl")
  echo "  relay: $relay_per_leg" >&2
fi

offer="PCMU + telephone-event"
[ "$telephone_event" = 1 ] || offer="PCMU alone (in-band DTMF detection on)"
echo "rooms of $room_size, every participant sending PCMU at 20 ms for ${hold}+ s (offer: $offer), placed at $rate calls/s; late = > ${late_ms} ms behind schedule" >&2
for wanted in $steps; do
  calls=$(( (wanted + room_size - 1) / room_size * room_size ))
  step "$calls" > "$work/step.json"
  line=$(cat "$work/step.json")
  echo "$line" >> "$results"
  python3 - "$line" <<'PY' >&2
import json, sys
r = json.loads(sys.argv[1])
print(f"  {r['participants']:5} participants in {r['rooms']} rooms ({r['rooms_made']} made, {r['in_mixer']} participants mixed): {r['ok']} ok {r['failed']} failed, loss {r['loss_pct']:.3f} %, "
      f"late {r['late']} in {r['late_streams']} streams (worst {r['worst_delay_ms']} ms), voiced {r['voiced']}/{r['received']}, "
      f"callml CPU {r['callml_cpu_pct']:.1f} % (room workers {r['room_workers_cpu_pct']:.1f}) = {r['cpu_pct_per_participant']:.4f} %/participant, "
      f"RSS {r['rss_mib']} MiB ({r['rss_kib_per_participant']} KiB/participant), sipp+probe {r['generators_cpu_pct']:.0f} %, "
      f"others {r['others_cpu_pct']:.0f} %, steal {r['steal_pct']:.0f} % (of 200)")
PY
  if [ "$perf" = 1 ] && [ -s "$work/rooms-$calls/perf.txt" ]; then
    echo "  where callml's CPU went (perf, dso and symbol):" >&2
    sed 's/^/    /' "$work/rooms-$calls/perf.txt" >&2
  fi
  passed=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(int(r["failed"]==0 and r["ok"]==r["participants"] and r["in_mixer"]==r["participants"] and r["loss_pct"]<0.5 and r["late"]==0))' "$line")
  [ "$passed" = 1 ] || [ "$all_steps" = 1 ] || break
done

python3 - "$results" "$relay_per_leg" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
relay = json.loads(sys.argv[2]) if sys.argv[2] else None
print("| participants | rooms | loss % | late (streams) | voiced / received | callml CPU (room workers) | CPU %/participant |"
      + (" × relay leg |" if relay else "") + " RSS (per participant) | sipp+probe CPU | others |")
print("|---|---|---|---|---|---|---|" + ("---|" if relay else "") + "---|---|---|")
for r in rows:
    mark = "" if (r["failed"] == 0 and r["ok"] == r["participants"]) else f" ({r['failed']} calls failed)"
    ratio = f" {r['cpu_pct_per_participant'] / relay['cpu_pct_per_leg']:.2f} |" if relay and relay["cpu_pct_per_leg"] else (" – |" if relay else "")
    print(f"| {r['participants']}{mark} | {r['rooms']} × {r['room_size']} | {r['loss_pct']:.3f} | {r['late']} ({r['late_streams']}) | "
          f"{r['voiced']} / {r['received']} | {r['callml_cpu_pct']:.1f} % ({r['room_workers_cpu_pct']:.1f} %) | "
          f"{r['cpu_pct_per_participant']:.4f} |{ratio} {r['rss_mib']} MiB ({r['rss_kib_per_participant']:.0f} KiB) | "
          f"{r['generators_cpu_pct']:.0f} % | {r['others_cpu_pct']:.0f} % |")
if relay:
    print(f"relay (bridge_load.sh, {relay['calls']} calls = {2 * relay['calls']} legs): loss {relay['loss_pct']} %, "
          f"late {relay['late']} ({relay['late_streams']} streams; its generators alone, direct: {relay['direct_late']} "
          f"({relay['direct_late_streams']})), {relay['cpu_pct_per_call']} %/call = {relay['cpu_pct_per_leg']} %/leg, "
          f"others {relay['others_cpu_pct']} %")
good = [r["participants"] for r in rows if r["failed"] == 0 and r["ok"] == r["participants"]
        and r["in_mixer"] == r["participants"] and r["loss_pct"] < 0.5 and r["late"] == 0]
print(f"highest passing step: {max(good) if good else 0} participants in rooms of {rows[0]['room_size'] if rows else '?'}")
PY
