#!/usr/bin/env bash
# Highest call rate with zero failed calls, for callml and for `sipp -sn uas` (the pure
# responder) on the same machine.
#
# callml runs its real stack: every call fetches a document (`<Hangup/>` after answer by
# default) from a local app, writes its record at each state change and posts four status
# callbacks to that app. sipp places calls for SECONDS at each rate (UDP by default).
#
# Usage: benches/sip_load.sh [--transport u1|t1] [--seconds 10] [--rates "100 200 300 ..."]
# Needs: sipp (Debian package sip-tester). Loopback only.
set -euo pipefail

transport=u1
seconds=10
rates="100 200 300 400 500 600 800 1000 1200 1500"
while [ $# -gt 0 ]; do
  case "$1" in
    --transport) transport=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v sipp >/dev/null || { echo "sipp not found: apt-get install sip-tester" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --quiet --release --manifest-path "$root/Cargo.toml" --bin callml --example bench_app
target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release"

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "timeout waiting for $2 in $1" >&2; cat "$1" >&2; exit 1; }

"$bin/examples/bench_app" 127.0.0.1:0 > "$work/app.out" &
pids+=($!)
wait_line "$work/app.out" listening
app=$(awk '/listening/ {print $2}' "$work/app.out")

sip_port=$(free_port)
RUST_LOG=warn "$bin/callml" serve --sip "127.0.0.1:$sip_port" --http 127.0.0.1:0 \
  --data-dir "$work/data" --rtp-ports 20000-40000 \
  --voice-url "http://$app/voice" --status-callback "http://$app/status" \
  > "$work/callml.out" 2> "$work/callml.err" &
pids+=($!)
wait_line "$work/callml.out" "callml ready"

uas_port=$(free_port)
sipp -sn uas -i 127.0.0.1 -p "$uas_port" -t "$transport" -bg > "$work/uas.out" 2>&1 || true
uas_pid=$(grep -o 'PID=\[[0-9]*\]' "$work/uas.out" | tr -dc 0-9)
pids+=("$uas_pid")

# One sipp run at `rate` calls/s for `seconds`: prints "successful failed".
run() { # target scenario-args... 
  local target=$1; shift
  local rate=$1; shift
  local dir; dir=$(mktemp -d -p "$work")
  (cd "$dir" && sipp "$target" "$@" -i 127.0.0.1 -mi 127.0.0.1 -p "$(free_port)" -mp "$(( ($(free_port) / 2) * 2 ))" \
     -t "$transport" -r "$rate" -m $(( rate * seconds )) -l $(( rate * 4 + 100 )) -max_socket 1000 \
     -timeout $(( seconds + 30 ))s -timeout_error -nostdin -trace_stat -stf stats.csv >/dev/null 2>&1) || true
  python3 - "$dir/stats.csv" <<'PY'
import sys
rows=[l.rstrip("\n").split(";") for l in open(sys.argv[1]) if l.strip()]
h=rows[0]; last=rows[-1]
print(last[h.index("SuccessfulCall(C)")], last[h.index("FailedCall(C)")])
PY
}

best() { # label target scenario-args...
  local label=$1; shift
  local target=$1; shift
  local best_rate=0
  for rate in $rates; do
    read -r ok failed < <(run "$target" "$rate" "$@")
    printf '  %-8s %5d calls/s: %6d ok %5d failed\n' "$label" "$rate" "$ok" "$failed" >&2
    if [ "$failed" -eq 0 ] && [ "$ok" -eq $(( rate * seconds )) ]; then best_rate=$rate; else break; fi
  done
  echo "$best_rate"
}

echo "calls of ${seconds} s at each rate over $transport, zero failures required" >&2
callml_best=$(best callml "127.0.0.1:$sip_port" -sf "$root/fixtures/sipp/callml_hangs_up.xml" -key rtp_port 9)
uas_best=$(best uas "127.0.0.1:$uas_port" -sn uac -d 0)
printf 'callml (fetch + record + 4 callbacks per call): %s calls/s\n' "$callml_best"
printf 'sipp -sn uas (pure responder):                  %s calls/s\n' "$uas_best"
