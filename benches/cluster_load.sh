#!/usr/bin/env bash
# Calls per second through Kamailio (contrib/kamailio/run.sh) to one callml node and to two,
# against the same nodes called directly, in one run (issue 20):
#   sqlite        one callml on SQLite, called directly (the one-machine baseline);
#   postgres      node A on the shared PostgreSQL store, called directly;
#   kamailio-1    Kamailio in front of node A alone;
#   kamailio-2    Kamailio in front of nodes A and B (round robin).
# Each step places short calls (INVITE→200→ACK, then the caller's BYE, all through the proxy
# when there is one: Record-Route) at a rate for SECONDS; the best rate is the highest one with
# zero failed calls. The CPU per call of the callml nodes and of Kamailio is read from /proc.
# callml runs its real stack: each call fetches a document (a long <Pause>, ended by the
# caller's BYE) from a local app, writes its record at each state change and posts its status
# callbacks.
#
# On one 2-core machine the nodes, Kamailio, PostgreSQL and sipp share the cores: two nodes
# cannot beat one here; the figures give the cost per call of the store and of the proxy hop.
# Through the proxy, a step may fail a call or two on a 180 Ringing that Kamailio relays after
# the 200 (its workers pass them on out of order), which the caller's scenario does not expect:
# the errors printed say so.
#
# Usage: benches/cluster_load.sh [--seconds 5] [--rates "100 200 400 ..."]
# Needs: sipp (sip-tester), kamailio, postgresql, python3. Loopback only.
set -euo pipefail

seconds=5
rates="100 200 300 400 600 800 1000 1200"
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v sipp >/dev/null || { echo "sipp not found: apt-get install sip-tester" >&2; exit 2; }
[ -x /usr/sbin/kamailio ] || { echo "kamailio not found: apt-get install kamailio" >&2; exit 2; }
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pg_bin/initdb" ] || { echo "initdb not found: apt-get install postgresql" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
groups=()
as_owner=()
stop_postgres() { :; }
cleanup() {
  for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  stop_postgres
  rm -rf "$work"
}
trap cleanup EXIT

source "$root/benches/lib.sh"
bench_binaries bench_app

CALLML_BENCH_DOCUMENT='<Response><Pause length="30"/></Response>' \
  "$bin/examples/bench_app" 127.0.0.1:0 > "$work/app.out" &
pids+=($!)
wait_line "$work/app.out" listening
app=$(awk '/listening/ {print $2}' "$work/app.out")

# A throwaway PostgreSQL cluster, stopped on exit.
if [ "$(id -u)" = 0 ]; then as_owner=(runuser -u postgres --); chown postgres "$work"; fi
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${as_owner[@]}" "$pg_bin/initdb" -D "$work/pg" -U postgres -A trust >/dev/null
"${as_owner[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
  -o "-h 127.0.0.1 -p $pg_port -k $work -c fsync=on" start >/dev/null
stop_postgres() { "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; }
store="postgres://postgres@127.0.0.1:$pg_port/postgres"

declare -A node_pids node_ports
start_node() { # name store-args...
  local name=$1; shift
  local port; port=$(free_port)
  RUST_LOG=warn "$bin/callml" serve --sip "127.0.0.1:$port" --http 127.0.0.1:0 \
    --data-dir "$work/data-$name" --rtp-ports 20000-40000 \
    --sip-rate-limit 1000000 --sip-rate-burst 1000000 "$@" \
    --voice-url "http://$app/voice" --status-callback "http://$app/status" \
    > "$work/callml-$name.out" 2> "$work/callml-$name.err" &
  node_pids[$name]=$!
  node_ports[$name]=$port
  pids+=($!)
  wait_line "$work/callml-$name.out" "callml ready"
}
start_node sqlite
start_node node-a --store "$store" --node-id node-a
start_node node-b --store "$store" --node-id node-b

declare -A proxy_ports proxy_groups
start_proxy() { # name node...
  local name=$1; shift
  local port; port=$(free_port)
  local nodes=()
  for node in "$@"; do nodes+=("127.0.0.1:${node_ports[$node]}"); done
  setsid "$root/contrib/kamailio/run.sh" "127.0.0.1:$port" "${nodes[@]}" \
    > "$work/kamailio-$name.log" 2>&1 &
  proxy_groups[$name]=$!
  groups+=($!)
  proxy_ports[$name]=$port
  for _ in $(seq 100); do
    if python3 -c "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', $port))" 2>/dev/null; then
      sleep 0.1
    else
      return 0
    fi
  done
  echo "kamailio did not listen on $port" >&2; cat "$work/kamailio-$name.log" >&2; exit 1
}
start_proxy one node-a
start_proxy two node-a node-b
# The dispatcher's first OPTIONS probes mark the nodes up.
sleep 6

# CPU time (user + system clock ticks) used so far by the processes given, and by every
# process of the process groups given as -PGID.
cpu_ticks() {
  local total=0 t
  for who in "$@"; do
    if [ "${who#-}" != "$who" ]; then
      for pid in $(pgrep -g "${who#-}" 2>/dev/null); do
        t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
        total=$((total + t))
      done
    else
      t=$(awk '{print $14 + $15}' "/proc/$who/stat" 2>/dev/null || echo 0)
      total=$((total + t))
    fi
  done
  echo "$total"
}

sipp_run() { # scenario target rate
  local dir; dir=$(mktemp -d -p "$work")
  local scenario=$1; shift
  (cd "$dir" && sipp "$1" -sf "$root/fixtures/sipp/$scenario" -d 0 -key rtp_port 9 -trace_err \
     -i 127.0.0.1 -mi 127.0.0.1 -p "$(free_port)" -mp "$(( ($(free_port) / 2) * 2 ))" \
     -t u1 -r "$2" -m $(( $2 * seconds )) -l $(( $2 * 4 + 100 )) \
     -timeout $(( seconds + 30 ))s -timeout_error -nostdin -trace_stat -stf stats.csv >/dev/null 2>&1) || true
  echo "$dir"
}

counts() {
  python3 - "$1/stats.csv" <<'PY'
import sys
rows=[l.rstrip("\n").split(";") for l in open(sys.argv[1]) if l.strip()]
h=rows[0]; last=rows[-1]
print(last[h.index("SuccessfulCall(C)")], last[h.index("FailedCall(C)")])
PY
}

ms_per_call() { # ticks calls
  python3 -c "import os; print(f'{$1/os.sysconf(\"SC_CLK_TCK\")*1000/max($2,1):.3f}')"
}

best() { # label target "callml pids" "proxy group or empty"
  local label=$1 target=$2 nodes=$3 proxy=$4
  # Through a proxy the caller follows the Record-Route set; directly, the node's Contact.
  local scenario=caller_hangs_up.xml
  [ -n "$proxy" ] && scenario=proxied_caller_hangs_up.xml
  local best_rate=0 best_cost=""
  for rate in $rates; do
    local callml_before proxy_before callml_after proxy_after ok failed
    callml_before=$(cpu_ticks $nodes)
    proxy_before=$([ -n "$proxy" ] && cpu_ticks "-$proxy" || echo 0)
    local dir; dir=$(sipp_run "$scenario" "$target" "$rate")
    read -r ok failed < <(counts "$dir")
    if [ "$failed" -gt 0 ]; then
      # Why the first calls failed (sipp writes its errors without line breaks).
      head -c 600 "$dir"/*_errors.log >&2 2>/dev/null || true
      echo >&2
    fi
    callml_after=$(cpu_ticks $nodes)
    proxy_after=$([ -n "$proxy" ] && cpu_ticks "-$proxy" || echo 0)
    local cost
    cost="callml $(ms_per_call $((callml_after - callml_before)) "$ok") ms/call"
    [ -n "$proxy" ] && cost="$cost, kamailio $(ms_per_call $((proxy_after - proxy_before)) "$ok") ms/call"
    printf '  %-11s %5d calls/s: %6d ok %5d failed (%s)\n' "$label" "$rate" "$ok" "$failed" "$cost" >&2
    if [ "$failed" -eq 0 ] && [ "$ok" -eq $(( rate * seconds )) ]; then
      best_rate=$rate
      best_cost=$cost
    else
      break
    fi
  done
  printf '%-11s %5s calls/s (%s)\n' "$label" "$best_rate" "$best_cost"
}

echo "UDP: calls of ${seconds} s at each rate, zero failures required" >&2
best sqlite "127.0.0.1:${node_ports[sqlite]}" "${node_pids[sqlite]}" ""
best postgres "127.0.0.1:${node_ports[node-a]}" "${node_pids[node-a]}" ""
best kamailio-1 "127.0.0.1:${proxy_ports[one]}" "${node_pids[node-a]}" "${proxy_groups[one]}"
best kamailio-2 "127.0.0.1:${proxy_ports[two]}" "${node_pids[node-a]} ${node_pids[node-b]}" "${proxy_groups[two]}"
