#!/usr/bin/env bash
# Soak test (issue 19): many short calls in a row, watching callml's memory and descriptors.
#
# sipp places --calls calls (default 100,000) at a steady --rate (default 200 calls/s) with
# fixtures/sipp/callml_hangs_up.xml against callml, whose voice URL is examples/bench_app: every
# call fetches its document (`<Pause length="1"/><Hangup/>` by default: answered, one second
# of RTP, then callml's BYE), writes its record at each state change and posts its status
# callbacks (all events) to that app — what benches/sip_load.sh runs, for much longer.
#
# Every --every seconds (default 5) it samples callml's VmRSS (/proc/PID/status) and open
# descriptors (/proc/PID/fd, sockets among them) into a CSV, with sipp's successful and failed
# calls so far; --settle seconds after the load (default 20) it samples again. It prints the
# curve's summary (first sample under load, peak, last under load, after the load), RSS growth
# over the second half of the load and after the most concurrent calls (whether it levelled
# off: the allocator keeps what the busiest moment needed), and checks that no descriptor or
# port leaked: after the load callml holds no more descriptors than before it (plus
# --fd-slack, default 8, and the webhook client's idle keep-alive connections to the app, at
# most 64 by design) and no RTP socket is left bound. Exit status 1 when a leak is found or
# a call failed.
#
# Usage: benches/soak.sh [--calls 100000] [--rate 200] [--every 5] [--settle 20]
#                        [--document XML] [--csv FILE (default /tmp/callml-soak-PID.csv)] [--fd-slack 8]
# Needs: sipp (Debian package sip-tester), python3. Loopback only.
set -euo pipefail

calls=100000
rate=200
every=5
settle=20
fd_slack=8
document='<Response><Pause length="1"/><Hangup/></Response>'
csv=""
while [ $# -gt 0 ]; do
  case "$1" in
    --calls) calls=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --every) every=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    --document) document=$2; shift 2 ;;
    --csv) csv=$2; shift 2 ;;
    --fd-slack) fd_slack=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v sipp >/dev/null || { echo "sipp not found: apt-get install sip-tester" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
csv=${csv:-${TMPDIR:-/tmp}/callml-soak-$$.csv}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

source "$root/benches/lib.sh"
bench_binaries bench_app

CALLML_BENCH_DOCUMENT=$document "$bin/examples/bench_app" 127.0.0.1:0 > "$work/app.out" &
pids+=($!)
wait_line "$work/app.out" listening
app=$(awk '/listening/ {print $2}' "$work/app.out")

sip_port=$(free_port)
rtp_low=30000
rtp_high=39999
RUST_LOG=warn "$bin/callml" serve --sip "127.0.0.1:$sip_port" --http 127.0.0.1:0 \
  --data-dir "$work/data" --rtp-ports "$rtp_low-$rtp_high" \
  --sip-rate-limit 1000000 --sip-rate-burst 1000000 \
  --voice-url "http://$app/voice" --status-callback "http://$app/status" \
  > "$work/callml.out" 2> "$work/callml.err" &
callml=$!
pids+=($callml)
wait_line "$work/callml.out" "callml ready"

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$callml/status"; }
fds() { find "/proc/$callml/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
sockets() { find "/proc/$callml/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' 2>/dev/null | wc -l; }
# "RTP APP": UDP sockets callml holds in its RTP range (a leaked port stays bound), and TCP
# connections it holds to the app (the webhook client's keep-alive pool, up to 64 idle ones
# by design, closed after 90 s idle).
socket_kinds() {
  python3 - "$callml" "$rtp_low" "$rtp_high" "${app##*:}" <<'PY'
import os, sys
pid, low, high, app_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
inodes = set()
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if target.startswith("socket:["):
        inodes.add(target[8:-1])
def rows(table):
    try:
        return [line.split() for line in open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]]
    except OSError:
        return []
port = lambda address: int(address.split(":")[1], 16)
bound = sum(1 for fields in rows("udp") + rows("udp6")
            if low <= port(fields[1]) <= high and fields[9] in inodes)
app = sum(1 for fields in rows("tcp") + rows("tcp6")
          if port(fields[2]) == app_port and fields[9] in inodes)
print(bound, app)
PY
}
sipp_counts() { # successful failed, from sipp's statistics file (0 0 before its first line)
  python3 - "$work/stats.csv" <<'PY'
import sys
try:
    rows = [l.rstrip("\n").split(";") for l in open(sys.argv[1]) if l.strip()]
    h, last = rows[0], rows[-1]
    print(last[h.index("SuccessfulCall(C)")], last[h.index("FailedCall(C)")])
except (OSError, IndexError, ValueError):
    print(0, 0)
PY
}

echo "phase,seconds,calls_ok,calls_failed,rss_kb,fds,sockets,rtp_ports_bound,app_connections,machine_load1" > "$csv"
started=$(date +%s)
sample() { # phase
  read -r ok failed < <(sipp_counts)
  read -r rtp app_connections < <(socket_kinds)
  echo "$1,$(( $(date +%s) - started )),$ok,$failed,$(rss_kb),$(fds),$(sockets),$rtp,$app_connections,$(cut -d' ' -f1 /proc/loadavg)" >> "$csv"
}

sample before
fds_before=$(fds)
echo "soak: $calls calls at $rate calls/s (about $(( calls / rate )) s) against callml (pid $callml), sampling every ${every} s into $csv" >&2
(cd "$work" && sipp "127.0.0.1:$sip_port" -sf "$root/fixtures/sipp/callml_hangs_up.xml" -key rtp_port 9 \
   -i 127.0.0.1 -p "$(free_port)" -t u1 -r "$rate" -m "$calls" -l $(( rate * 10 + 100 )) \
   -timeout $(( calls / rate + 120 ))s -timeout_error -nostdin -trace_stat -stf stats.csv -fd "$every" \
   >/dev/null 2>&1) &
sipp_pid=$!
pids+=($sipp_pid)
while kill -0 "$sipp_pid" 2>/dev/null; do
  sleep "$every"
  kill -0 "$sipp_pid" 2>/dev/null && sample load
done
wait "$sipp_pid" || true
sample load
sleep "$settle"
sample after

python3 - "$csv" "$fds_before" "$fd_slack" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
fds_before, slack = int(sys.argv[2]), int(sys.argv[3])
load = [r for r in rows if r["phase"] == "load"]
after = [r for r in rows if r["phase"] == "after"][-1]
before = rows[0]
mb = lambda r: int(r["rss_kb"]) / 1024
peak = max(load, key=lambda r: int(r["rss_kb"]))
half = load[len(load) // 2]
print(f"calls: {load[-1]['calls_ok']} ok, {load[-1]['calls_failed']} failed in {load[-1]['seconds']} s")
print(f"RSS: before {mb(before):.1f} MiB, first under load {mb(load[0]):.1f} MiB (at {load[0]['seconds']} s), "
      f"peak {mb(peak):.1f} MiB (at {peak['seconds']} s), last under load {mb(load[-1]):.1f} MiB, "
      f"after the load {mb(after):.1f} MiB")
print(f"RSS over the second half of the load: {mb(half):.1f} -> {mb(load[-1]):.1f} MiB "
      f"({mb(load[-1]) - mb(half):+.1f} MiB after {int(load[-1]['calls_ok']) - int(half['calls_ok'])} more calls)")
busiest = max(load, key=lambda r: int(r["rtp_ports_bound"]))
since = [r for r in load if int(r["seconds"]) >= int(busiest["seconds"])]
print(f"most calls with media at once: about {int(busiest['rtp_ports_bound']) // 2} (at {busiest['seconds']} s); "
      f"RSS from then to the end of the load: {mb(busiest):.1f} -> {mb(since[-1]):.1f} MiB "
      f"(peak {mb(max(since, key=lambda r: int(r['rss_kb']))):.1f})")
print(f"descriptors: before {fds_before}, peak {max(int(r['fds']) for r in load)}, after the load {after['fds']} "
      f"(sockets {after['sockets']}, of which {after['app_connections']} idle keep-alive connections to the app); "
      f"RTP ports bound after the load: {after['rtp_ports_bound']}")
print(f"machine load average (1 min) during the load: "
      f"{min(float(r['machine_load1']) for r in load):.2f}-{max(float(r['machine_load1']) for r in load):.2f}")
kept = int(after["app_connections"])
leak = (int(after["fds"]) - kept > fds_before + slack or kept > 64
        or int(after["rtp_ports_bound"]) > 0)
failed = int(load[-1]["calls_failed"]) > 0
print("leak check:", "LEAK" if leak else "ok (no descriptor or port left behind)")
sys.exit(1 if leak or failed else 0)
PY
