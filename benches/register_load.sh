#!/usr/bin/env bash
# REGISTER load with digest, over UDP: the highest rate of registrations (REGISTER, 401,
# REGISTER with credentials, 200) that sipp completes with zero failures, for callml's
# registrar and, in the same run, for kamailio's registrar + usrloc + auth_db on SQLite.
#
# callml: a domain made through the REST API with one credential mapped for registrations;
# every REGISTER refreshes that user's binding (its changes written to SQLite a few times a
# second); the per-source SIP rate limit is off (--sip-rate-limit 0) so that one sipp may load
# it. kamailio: subscriber table in SQLite (auth_db, calculate_ha1), usrloc in write-back mode
# (db_mode 2) to SQLite, qop=auth challenges, two UDP worker processes (one per core).
#
# Usage: benches/register_load.sh [--seconds 10] [--rates "1000 2000 ..."] [--systems "callml kamailio"]
# Needs: sipp (sip-tester), kamailio + kamailio-sqlite-modules, sqlite3, curl, python3.
set -euo pipefail

seconds=10
rates="2000 4000 6000 8000 10000 12000 15000"
systems="callml kamailio"
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --systems) systems=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in sipp kamailio sqlite3 curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool not found" >&2; exit 2; }
done

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

source "$root/benches/lib.sh"
bench_binaries

# An even free port whose next two are free too (sipp's media port, unused by REGISTER).
media_port() { python3 -c '
import socket
for _ in range(200):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p % 2 == 0:
        print(p); break
'; }
# CPU seconds (user + system) a process and its children used so far.
cpu_of() { python3 - "$@" <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
total = 0
for pid in sys.argv[1:]:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15])
    except FileNotFoundError:
        pass
print(total / tick)
PY
}

domain=bench.sip.callml.test
user=alice
password=Bench-Passw0rd-2024

start_callml() {
  local sip_port; sip_port=$(free_port)
  RUST_LOG=warn "$bin/callml" serve --sip "127.0.0.1:$sip_port" --http 127.0.0.1:0 \
    --data-dir "$work/callml-data" --auth-token token --sip-rate-limit 0 \
    --rtp-ports 40000-40100 > "$work/callml.out" 2> "$work/callml.err" &
  pids+=($!)
  server_pids="$!"
  wait_line "$work/callml.out" "callml ready"
  local http ac api list domain_sid
  http=$(grep -o 'http=[^ ]*' "$work/callml.out" | cut -d= -f2)
  ac=$(grep -o 'account_sid=AC[0-9a-f]*' "$work/callml.out" | cut -d= -f2)
  api="http://$http/2010-04-01/Accounts/$ac/SIP"
  sid() { python3 -c 'import json,sys; print(json.load(sys.stdin)["sid"])'; }
  domain_sid=$(curl -sf -u "$ac:token" "$api/Domains.json" -d DomainName=$domain -d SipRegistration=true | sid)
  list=$(curl -sf -u "$ac:token" "$api/CredentialLists.json" -d FriendlyName=bench | sid)
  curl -sf -u "$ac:token" "$api/CredentialLists/$list/Credentials.json" -d Username=$user -d Password=$password > /dev/null
  curl -sf -u "$ac:token" "$api/Domains/$domain_sid/Auth/Registrations/CredentialListMappings.json" -d CredentialListSid="$list" > /dev/null
  target="127.0.0.1:$sip_port"
}

start_kamailio() {
  local sip_port; sip_port=$(free_port)
  local db="$work/kamailio.sqlite"
  for schema in standard auth_db usrloc; do
    sqlite3 "$db" < "/usr/share/kamailio/db_sqlite/$schema-create.sql"
  done
  sqlite3 "$db" "INSERT INTO subscriber (username, domain, password) VALUES ('$user', '$domain', '$password');"
  local modules=/usr/lib/x86_64-linux-gnu/kamailio/modules
  cat > "$work/kamailio.cfg" <<CFG
#!KAMAILIO
debug=0
log_stderror=yes
memdbg=5
memlog=5
listen=udp:127.0.0.1:$sip_port
children=2
mpath="$modules"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "db_sqlite.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
modparam("usrloc", "db_url", "sqlite://$db")
modparam("usrloc", "db_mode", 2)
modparam("auth_db", "db_url", "sqlite://$db")
modparam("auth_db", "calculate_ha1", 1)
modparam("auth_db", "password_column", "password")
request_route {
  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
  if (is_method("REGISTER")) {
    if (!auth_check("\$fd", "subscriber", "1")) { auth_challenge("\$fd", "1"); exit; }
    if (!save("location")) { sl_reply_error(); }
    exit;
  }
  sl_send_reply("405", "Method Not Allowed");
}
CFG
  kamailio -f "$work/kamailio.cfg" -DD -E -m 256 > "$work/kamailio.log" 2>&1 &
  pids+=($!)
  server_pids="$!"
  for _ in $(seq 50); do
    if grep -q "127.0.0.1:$sip_port" /proc/net/udp 2>/dev/null || ss -lun 2>/dev/null | grep -q ":$sip_port"; then break; fi
    sleep 0.1
  done
  sleep 0.5
  target="127.0.0.1:$sip_port"
}

# Runs sipp at `rate` for `seconds`; prints "ok fail cpu".
run_rate() {
  local rate=$1 calls=$((rate * seconds)) before after
  before=$(cpu_of $(pgrep -d ' ' -P "$server_pids" 2>/dev/null || true) "$server_pids")
  rm -f "$work/stats.csv"
  timeout $((seconds * 3 + 30)) sipp "$target" -sf "$root/fixtures/sipp/register_digest.xml" \
    -t u1 -i 127.0.0.1 -p "$(free_port)" -mp "$(media_port)" -m "$calls" -r "$rate" -l $((rate * 2)) \
    -key user $user -key domain $domain -key expires 300 -au $user -ap $password \
    -nostdin -max_socket 100 -timeout $((seconds * 2 + 20))s -trace_stat -stf "$work/stats.csv" \
    > "$work/sipp.out" 2>&1 || true
  [ -s "$work/stats.csv" ] || { echo "sipp wrote no statistics:" >&2; tail -20 "$work/sipp.out" >&2; }
  after=$(cpu_of $(pgrep -d ' ' -P "$server_pids" 2>/dev/null || true) "$server_pids")
  python3 - "$work/stats.csv" "$before" "$after" <<'PY'
import sys
rows = [l.strip() for l in open(sys.argv[1]) if l.strip()]
names, last = rows[0].split(";"), rows[-1].split(";")
get = lambda n: int(last[names.index(n)])
print(get("SuccessfulCall(C)"), get("FailedCall(C)"), f"{float(sys.argv[3]) - float(sys.argv[2]):.2f}")
PY
}

printf "%-9s %7s %9s %7s %9s %12s\n" system rate ok failed "cpu s" "µs cpu/reg"
for system in $systems; do
  "start_$system"
  best=0
  for rate in $rates; do
    read -r ok failed cpu < <(run_rate "$rate")
    per=$(python3 -c "print(f'{$cpu / max($ok, 1) * 1e6:.0f}')")
    printf "%-9s %7s %9s %7s %9s %12s\n" "$system" "$rate" "$ok" "$failed" "$cpu" "$per"
    if [ "$failed" -ne 0 ] || [ "$ok" -lt $((rate * seconds)) ]; then break; fi
    best=$rate
  done
  echo "$system: highest rate with zero failures: $best REGISTER/s (each a 401 and an authenticated retry)"
  for p in $server_pids; do kill "$p" 2>/dev/null || true; done
  wait "$server_pids" 2>/dev/null || true
done
