#!/usr/bin/env bash
# Inbound mapping benchmark (issue 15): the highest inbound call rate with zero failed calls,
# in one run, for
#  1. the --voice-url baseline (a call for no number),
#  2. a call for one of 10,000 numbers in the static map (IncomingPhoneNumbers, made through
#     the REST API), which must stay within 10% of the baseline,
#  3. a call mapped by the mapping webhook (a second callml with --mapping-webhook, answered
#     by the local app) — reported, no target.
#
# Each call is INVITE→200→BYE from callml (`<Hangup/>`), its record written, its document
# fetched from a local app (examples/bench_app). sipp calls from 127.0.0.1, the trunk's host,
# so calls for numbers are accepted. The rates are tried in order until one fails.
#
# Usage: benches/mapping_load.sh [--numbers 10000] [--seconds 10] [--rates "100 200 ..."]
# Needs: sipp (Debian package sip-tester), python3, curl. Loopback only.
set -euo pipefail

numbers=10000
seconds=10
rates="100 200 300 400 500 600 800 1000 1200 1500"
while [ $# -gt 0 ]; do
  case "$1" in
    --numbers) numbers=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v sipp >/dev/null || { echo "sipp not found: apt-get install sip-tester" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
# The callml servers are not this shell's children (started in process substitutions), so
# `wait` does not wait for their graceful stop: poll until they are gone (30 s at most).
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for p in "${pids[@]}"; do
    for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  rm -rf "$work"
}
trap cleanup EXIT

source "$root/benches/lib.sh"
bench_binaries bench_app

"$bin/examples/bench_app" 127.0.0.1:0 > "$work/app.out" &
pids+=($!)
wait_line "$work/app.out" listening
app=$(awk '/listening/ {print $2}' "$work/app.out")
printf '[[trunks]]\nid = "bench"\nhost = "127.0.0.1"\n' > "$work/callml.toml"

# start_callml NAME ARGS...: prints "SIP_PORT HTTP_ADDR".
start_callml() {
  local name=$1; shift
  local port; port=$(free_port)
  RUST_LOG=warn "$bin/callml" serve --sip "127.0.0.1:$port" --http 127.0.0.1:0 \
    --data-dir "$work/$name" --rtp-ports 20000-40000 --config "$work/callml.toml" \
    --sip-rate-limit 1000000 --sip-rate-burst 1000000 --auth-token token "$@" \
    > "$work/$name.out" 2> "$work/$name.err" &
  pids+=($!)
  wait_line "$work/$name.out" "callml ready"
  echo "$port $(grep -o 'http=[^ ]*' "$work/$name.out" | cut -d= -f2) $(grep -o 'account_sid=[^ ]*' "$work/$name.out" | cut -d= -f2) $!"
}

# start_callml runs in a process substitution, so its `pids+=` is lost: add the pid it prints.
read -r static_port static_http account static_pid < <(start_callml static --voice-url "http://$app/voice")
pids+=("$static_pid")
echo "adding $numbers numbers through the REST API" >&2
python3 - "$static_http" "$account" "$numbers" "http://$app/voice" <<'PY'
import base64, sys, urllib.parse, urllib.request
from concurrent.futures import ThreadPoolExecutor
http, account, count, voice = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
auth = "Basic " + base64.b64encode(f"{account}:token".encode()).decode()
def add(i):
    body = urllib.parse.urlencode({"PhoneNumber": f"+1666{i:07d}", "VoiceUrl": voice}).encode()
    request = urllib.request.Request(f"http://{http}/2010-04-01/Accounts/{account}/IncomingPhoneNumbers.json", body)
    request.add_header("Authorization", auth)
    with urllib.request.urlopen(request) as response:
        assert response.status == 201
with ThreadPoolExecutor(16) as pool:
    list(pool.map(add, range(count)))
PY

read -r map_port map_http map_account map_pid < <(start_callml mapped --mapping-webhook "http://$app/map")
pids+=("$map_pid")
curl -sf -u "$map_account:token" -d FriendlyName=bench -d "VoiceUrl=http://$app/voice" \
  "http://$map_http/2010-04-01/Accounts/$map_account/Applications.json" > /dev/null

sipp_run() { # port service rate
  local dir; dir=$(mktemp -d -p "$work")
  (cd "$dir" && sipp "127.0.0.1:$1" -sf "$root/fixtures/sipp/callml_hangs_up.xml" -key rtp_port 9 -s "$2" \
     -i 127.0.0.1 -mi 127.0.0.1 -p "$(free_port)" -mp "$(( ($(free_port) / 2) * 2 ))" \
     -r "$3" -m $(( $3 * seconds )) -l $(( $3 * 4 + 100 )) -max_socket 1000 \
     -timeout $(( seconds + 30 ))s -timeout_error -nostdin -trace_stat -stf stats.csv >/dev/null 2>&1) || true
  python3 - "$dir/stats.csv" <<'PY'
import sys
rows=[l.rstrip("\n").split(";") for l in open(sys.argv[1]) if l.strip()]
h=rows[0]; last=rows[-1]
print(last[h.index("SuccessfulCall(C)")], last[h.index("FailedCall(C)")])
PY
}

best() { # label port service
  local best_rate=0
  for rate in $rates; do
    read -r ok failed < <(sipp_run "$2" "$3" "$rate")
    printf '  %-9s %5d calls/s: %6d ok %5d failed\n' "$1" "$rate" "$ok" "$failed" >&2
    if [ "$failed" -eq 0 ] && [ "$ok" -eq $(( rate * seconds )) ]; then best_rate=$rate; else break; fi
  done
  echo "$best_rate"
}

echo "calls of ${seconds} s at each rate, zero failures required" >&2
baseline=$(best baseline "$static_port" "+15559990001")
static=$(best static "$static_port" "+16660005000")
webhook=$(best webhook "$map_port" "+15559990001")
printf 'baseline (--voice-url, no number):          %s calls/s\n' "$baseline"
printf 'static map (one of %s numbers):          %s calls/s\n' "$numbers" "$static"
printf 'mapping webhook (local app):                %s calls/s\n' "$webhook"
python3 -c "b=$baseline; s=$static; print(f'static / baseline: {s/b*100:.0f}%' if b else 'no baseline')"
