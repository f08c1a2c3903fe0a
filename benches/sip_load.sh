#!/usr/bin/env bash
# SIP load benchmark, over UDP and over TCP:
#  1. the highest call rate with zero failed calls, for callml and for `sipp -sn uas` (the pure
#     responder) on the same machine;
#  2. INVITE→200 latency (p50, p99, max) at a fixed rate (200 calls/s by default), from sipp's
#     per-call response times (`-trace_rtt`).
#
# callml runs its real stack: every call fetches a document (`<Hangup/>`: answer, then BYE) from
# a local app, writes its record at each state change and posts four status callbacks to that
# app. sipp places INVITE→200→ACK→BYE calls for SECONDS at each rate. The per-source rate limit
# is raised (not disabled) so that one sipp may exceed the default 200 new requests/s while the
# limiter still runs on every request.
#
# Each step runs against callml with its call capture on (`--capture true`, the default: every
# SIP message and webhook kept in SQLite) and off (`--capture false`), in the same run, so the
# capture's cost reads off one table (issue 18: within 10%).
#
# With --postgres, a third callml (capture on) keeps its records in PostgreSQL instead of
# SQLite (`--store`, a throwaway cluster this script starts on a free loopback port with
# Debian's initdb and pg_ctl, as the postgres user when run as root), in the same run: the cost
# per call of the shared store of issue 20 reads off the same table.
#
# Usage: benches/sip_load.sh [--transports "u1 t1"] [--seconds 10] [--rates "100 200 ..."]
#                            [--latency-rate 200] [--captures "on off"] [--postgres]
# Needs: sipp (Debian package sip-tester), python3; postgresql for --postgres. Loopback only.
set -euo pipefail

transports="u1 t1"
seconds=10
rates="100 200 300 400 500 600 800 1000 1200 1500"
latency_rate=200
captures="on off"
postgres=false
while [ $# -gt 0 ]; do
  case "$1" in
    --transports) transports=$2; shift 2 ;;
    --transport) transports=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --latency-rate) latency_rate=$2; shift 2 ;;
    --captures) captures=$2; shift 2 ;;
    --postgres) postgres=true; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v sipp >/dev/null || { echo "sipp not found: apt-get install sip-tester" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

source "$root/benches/lib.sh"
bench_binaries bench_app

"$bin/examples/bench_app" 127.0.0.1:0 > "$work/app.out" &
pids+=($!)
wait_line "$work/app.out" listening
app=$(awk '/listening/ {print $2}' "$work/app.out")

# A throwaway PostgreSQL cluster for --postgres, stopped on exit.
store_args=()
if $postgres; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$pg_bin/initdb" ] || { echo "initdb not found: apt-get install postgresql" >&2; exit 2; }
  as_owner=()
  if [ "$(id -u)" = 0 ]; then as_owner=(runuser -u postgres --); chown postgres "$work"; fi
  pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "${as_owner[@]}" "$pg_bin/initdb" -D "$work/pg" -U postgres -A trust >/dev/null
  "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
    -o "-h 127.0.0.1 -p $pg_port -k $work -c fsync=on" start >/dev/null
  stop_postgres() { "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; }
  trap 'stop_postgres; cleanup' EXIT
  store_args=(--store "postgres://postgres@127.0.0.1:$pg_port/postgres")
  captures="$captures postgres"
fi

# One callml per capture setting ("postgres": capture on, records in PostgreSQL), each with its
# own data directory.
declare -A callml_pids callml_ports
for capture in $captures; do
  port=$(free_port)
  flag=$([ "$capture" = off ] && echo false || echo true)
  extra=()
  [ "$capture" = postgres ] && extra=("${store_args[@]}" --node-id bench)
  RUST_LOG=warn "$bin/callml" serve --sip "127.0.0.1:$port" --http 127.0.0.1:0 \
    --data-dir "$work/data-$capture" --rtp-ports 20000-40000 --capture "$flag" \
    --sip-rate-limit 1000000 --sip-rate-burst 1000000 "${extra[@]}" \
    --voice-url "http://$app/voice" --status-callback "http://$app/status" \
    > "$work/callml-$capture.out" 2> "$work/callml-$capture.err" &
  callml_pids[$capture]=$!
  callml_ports[$capture]=$port
  pids+=($!)
  wait_line "$work/callml-$capture.out" "callml ready"
done

# One sipp run at `rate` calls/s for `seconds` over `transport`; extra arguments follow.
# Leaves its files in the directory it prints.
sipp_run() { # transport target rate args...
  local transport=$1 target=$2 rate=$3; shift 3
  local dir; dir=$(mktemp -d -p "$work")
  (cd "$dir" && sipp "$target" "$@" -i 127.0.0.1 -mi 127.0.0.1 -p "$(free_port)" -mp "$(( ($(free_port) / 2) * 2 ))" \
     -t "$transport" -r "$rate" -m $(( rate * seconds )) -l $(( rate * 4 + 100 )) -max_socket 1000 \
     -timeout $(( seconds + 30 ))s -timeout_error -nostdin -trace_stat -stf stats.csv >/dev/null 2>&1) || true
  echo "$dir"
}

# "successful failed" from a run's statistics.
counts() {
  python3 - "$1/stats.csv" <<'PY'
import sys
rows=[l.rstrip("\n").split(";") for l in open(sys.argv[1]) if l.strip()]
h=rows[0]; last=rows[-1]
print(last[h.index("SuccessfulCall(C)")], last[h.index("FailedCall(C)")])
PY
}

# CPU time (user + system clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

best() { # label pid transport target scenario-args...
  local label=$1 callml_pid=$2 transport=$3 target=$4; shift 4
  local best_rate=0 before after per_call
  for rate in $rates; do
    before=$(cpu_ticks "$callml_pid")
    read -r ok failed < <(counts "$(sipp_run "$transport" "$target" "$rate" "$@")")
    after=$(cpu_ticks "$callml_pid")
    per_call=""
    if [ "$callml_pid" != - ] && [ "$ok" -gt 0 ]; then
      per_call=$(python3 -c "import os; print(f', callml CPU {($after-$before)/os.sysconf(\"SC_CLK_TCK\")*1000/$ok:.3f} ms/call')")
    fi
    printf '  %-14s %s %5d calls/s: %6d ok %5d failed%s\n' "$label" "$transport" "$rate" "$ok" "$failed" "$per_call" >&2
    if [ "$failed" -eq 0 ] && [ "$ok" -eq $(( rate * seconds )) ]; then best_rate=$rate; else break; fi
  done
  echo "$best_rate"
}

# p50 p99 max of INVITE→200 (ms) at `latency_rate` calls/s, and the failed calls.
latency() { # transport port
  local dir
  dir=$(sipp_run "$1" "127.0.0.1:$2" "$latency_rate" \
    -sf "$root/fixtures/sipp/callml_hangs_up.xml" -key rtp_port 9 -trace_rtt -rtt_freq 1)
  read -r _ failed < <(counts "$dir")
  python3 - "$failed" "$dir"/*_rtt.csv <<'PY'
import sys
failed=sys.argv[1]
values=[]
for path in sys.argv[2:]:
    for line in open(path):
        fields=line.strip().split(";")
        if len(fields) >= 3 and fields[2] == "1":
            try:
                values.append(float(fields[1]))
            except ValueError:
                pass
values.sort()
if not values:
    print("no response times recorded"); sys.exit(0)
pick=lambda q: values[min(len(values)-1, int(q*len(values)))]
print(f"p50 {pick(0.50):.2f} ms, p99 {pick(0.99):.2f} ms, max {values[-1]:.2f} ms over {len(values)} calls, {failed} failed")
PY
}

uas_pid=""
for transport in $transports; do
  name=$([ "$transport" = t1 ] && echo TCP || echo UDP)
  uas_port=$(free_port)
  sipp -sn uas -i 127.0.0.1 -p "$uas_port" -t "$transport" -bg > "$work/uas-$transport.out" 2>&1 || true
  uas_pid=$(grep -o 'PID=\[[0-9]*\]' "$work/uas-$transport.out" | tr -dc 0-9)
  pids+=("$uas_pid")
  echo "$name: calls of ${seconds} s at each rate, zero failures required" >&2
  declare -A callml_best lat
  for capture in $captures; do
    callml_best[$capture]=$(best "callml-capture-$capture" "${callml_pids[$capture]}" "$transport" \
      "127.0.0.1:${callml_ports[$capture]}" -sf "$root/fixtures/sipp/callml_hangs_up.xml" -key rtp_port 9)
  done
  uas_best=$(best uas - "$transport" "127.0.0.1:$uas_port" -sn uac -d 0)
  kill "$uas_pid" 2>/dev/null || true
  for capture in $captures; do
    echo "$name: INVITE→200 at $latency_rate calls/s for ${seconds} s, capture $capture" >&2
    lat[$capture]=$(latency "$transport" "${callml_ports[$capture]}")
  done
  for capture in $captures; do
    printf '%s callml, capture %-3s (fetch + record + 4 callbacks per call): %s calls/s\n' "$name" "$capture" "${callml_best[$capture]}"
  done
  printf '%s sipp -sn uas (pure responder):                              %s calls/s\n' "$name" "$uas_best"
  for capture in $captures; do
    printf '%s callml, capture %-3s INVITE→200 at %s calls/s: %s\n' "$name" "$capture" "$latency_rate" "${lat[$capture]}"
  done
  unset callml_best lat
done
