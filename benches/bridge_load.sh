#!/usr/bin/env bash
# Concurrent bridged G.711 calls with RTP on both legs: callml's <Dial><Sip> bridge against
# rtpengine's userspace relay (behind kamailio), on the same machine, in the same run; and
# callml's bridge with SRTP on one leg or both.
#
#   sipp caller --SIP--> callml (document: <Dial><Sip>sip:x@UAS</Sip></Dial>) --SIP--> sipp callee
#   sipp caller --SIP--> kamailio (rtpengine_manage) --SIP--> sipp callee
#   media: sipp rtp_stream (PCMU, 50 packets/s) -> relay -> rtp_probe (echo) -> relay -> sipp
#
#   callml-probe: as callml, but the caller's media is an rtp_probe in stream mode (50 packets/s
#     to each call's caller leg, bridge_caller_probe.xml): the plain-RTP baseline of the SRTP
#     modes, with the same generators.
#   callml-srtp-one: the same caller offering RTP/SAVP with an SDES key, its probe sending SRTP;
#     the callee leg is plain RTP as above. Every packet is unprotected or protected once.
#   callml-opus: as callml, but callml offers the callee Opus only (<Sip codecs="OPUS">) and
#     the callee answers it (bridge_callee_opus.xml), so every
#     call is transcoded PCMU<->Opus on its call task (rtp_probe echoes the Opus packets; its
#     lateness assumes an 8 kHz clock, so `late` means nothing in this mode).
#   callml-srtp-both: the same caller, and callml dials sip:x@KAMAILIO;transport=tls (so it
#     offers SDES keys): kamailio terminates TLS and passes the INVITE to the sipp callee over
#     UDP, which answers with a key of its own (bridge_callee_srtp.xml); the callee's rtp_probe
#     echoes re-protected with that key. Every packet is unprotected and protected again.
#
# At each step N calls are placed at --rate calls/s and each lasts until all N have overlapped
# for --hold seconds. Over that steady window (no signalling) the relay's CPU time
# (utime+stime from /proc/PID/stat) gives the CPU per call; rtp_probe counts the packets that
# reached the callee side (sequence gaps = lost; arriving more than --late-ms behind their
# timestamp schedule, against the stream's earliest packet = late); the relay's own log gives
# the packets it received on each leg (so that the figures are checked against 50/s/direction).
# Memory: the relay's VmRSS (/proc/PID/status) once it is ready (idle), its highest value
# sampled every 0.5 s while the calls run (peak), and 5 s after the last call ended (after);
# (peak - idle) / calls is the RSS per call.
# A step passes with loss < 0.5 % and no late packets; the ramp stops at the first failure.
#
# Usage: benches/bridge_load.sh [--calls "100 200 400 600 800 1000 1200"] [--hold 30]
#          [--rate 100] [--late-ms 40] [--keep DIR]
#          [--systems "direct callml rtpengine callml-opus callml-probe callml-srtp-one callml-srtp-both"]
#          [--all-steps]   (run every step even after a failure, for the CPU figures)
# `direct` runs the same calls with no relay (sipp calls the callee itself; media goes straight
# to rtp_probe): the loss and lateness of the load generators alone, on this machine, now.
# Needs: sipp (sip-tester), sox, rtpengine (userspace; no kernel module used), kamailio with
# its rtpengine module; for callml-srtp-both, kamailio-tls-modules and openssl. Loopback only;
# every process started here stops by itself.
set -euo pipefail

steps="100 200 400 600 800 1000 1200"
hold=30
rate=100
late_ms=40
systems="direct callml rtpengine"
keep=""
all_steps=0
while [ $# -gt 0 ]; do
  case "$1" in
    --calls) steps=$2; shift 2 ;;
    --hold) hold=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --late-ms) late_ms=$2; shift 2 ;;
    --systems) systems=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --all-steps) all_steps=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in sipp sox python3; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install sip-tester sox python3)" >&2; exit 2; }
done
case " $systems " in *" callml-srtp-both "*)
  command -v openssl >/dev/null || { echo "openssl not found: apt-get install openssl" >&2; exit 2; }
  command -v kamailio >/dev/null || { echo "kamailio not found: apt-get install kamailio" >&2; exit 2; }
  find /usr/lib -name tls.so -path '*kamailio*' | grep -q . \
    || { echo "kamailio's tls module not found: apt-get install kamailio-tls-modules" >&2; exit 2; }
  tls_modules=$(dirname "$(find /usr/lib -name tls.so -path '*kamailio*' | head -1)")
  ;;
esac
case " $systems " in *" rtpengine "*)
  command -v rtpengine >/dev/null || { echo "rtpengine not found: apt-get install rtpengine-daemon" >&2; exit 2; }
  command -v kamailio >/dev/null || { echo "kamailio not found: apt-get install kamailio" >&2; exit 2; }
  kamailio_modules=$(dirname "$(find /usr/lib -name rtpengine.so -path '*kamailio*' | head -1)")
  [ -f "$kamailio_modules/tm.so" ] || { echo "kamailio's rtpengine module not found" >&2; exit 2; }
  ;;
esac

# Fixed port plan, below the ephemeral range (32768+) so that nothing else takes them:
# the caller's media at 10000 (sipp's rtp_stream sockets share it, each connected to its
# relay port), the callee's rtp_probe ports from 12004 by 4 (sipp [auto_media_port+4]), the
# relays' media ports in 17000-31999 (callml needs 4 per call: RTP+RTCP per leg; rtpengine too).
# A streaming caller's rtp_probe (callml-probe, callml-srtp-*) takes ports from 5004 by 4 (sipp
# -mp 5000).
caller_media=10000
stream_caller_media=5000
callee_media=12000
probe_base=$((callee_media + 4))
relay_ports_low=17000
relay_ports_high=31999
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
user_ticks() { if [ -n "$1" ]; then awk '{print $14}' "/proc/$1/stat" 2>/dev/null || echo 0; else echo 0; fi; }
# Total, idle and steal ticks of the machine (steal: time the hypervisor gave to someone else).
machine_ticks() { awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6, $9}' /proc/stat; }
clock_ticks=$(getconf CLK_TCK)
# Resident memory of a process, kB.
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# A PCMU WAV that sipp's rtp_stream loops for the whole call (its header is sent as audio too).
sox -n -r 8000 -c 1 -e mu-law "$work/bridge_load.wav" synth 10 sine 440 vol 0.5
# SDES master keys (key || salt, base64) of the SRTP callers and callees, fresh for the run.
new_key() { python3 -c 'import base64, os; print(base64.b64encode(os.urandom(30)).decode())'; }
caller_key=$(new_key)
callee_key=$(new_key)

# kamailio terminating TLS for callml-srtp-both: every request to the sipp callee over UDP.
kamailio_tls_config() { # tls_port udp_port callee_port tls_cfg
  cat <<EOF
#!KAMAILIO
debug=0
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
enable_tls=yes
listen=tls:127.0.0.1:$1
listen=udp:127.0.0.1:$2
mpath="$tls_modules/"
loadmodule "tls.so"
modparam("tls", "config", "$4")
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    \$du = "sip:127.0.0.1:$3;transport=udp";
    if (!t_relay()) { sl_reply_error(); }
    exit;
}
EOF
}

kamailio_config() { # sip_port callee_port ng_port
  cat <<EOF
#!KAMAILIO
debug=0
log_stderror=yes
children=2
auto_aliases=no
listen=udp:127.0.0.1:$1
mpath="$kamailio_modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "rtpengine.so"
modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:$3")

# A stateful proxy that sends every request to the callee and every SDP through rtpengine
# (offer on INVITE, answer on its 200, delete on BYE).
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (is_method("INVITE|BYE|CANCEL") || has_body("application/sdp")) {
        rtpengine_manage("replace-origin replace-session-connection");
    }
    if (is_method("INVITE")) { t_on_reply("MEDIA"); }
    \$du = "sip:127.0.0.1:$2";
    if (!t_relay()) { sl_reply_error(); }
    exit;
}

onreply_route[MEDIA] {
    if (has_body("application/sdp")) { rtpengine_manage("replace-origin replace-session-connection"); }
}
EOF
}

# One step: N calls through SYSTEM. Prints one JSON line of figures.
step() { # system calls
  local system=$1 calls=$2
  local dir="$work/$system-$calls"
  mkdir -p "$dir"
  cp "$work/bridge_load.wav" "$dir/"
  local ramp=$(( (calls + rate - 1) / rate ))
  local length=$(( ramp + hold + 6 ))          # each call's length, seconds
  local lifetime=$(( length + ramp + 30 ))     # upper bound for every helper process
  local uas_port relay_pid sip_target step_pids=()

  # The caller's media from rtp_probe (callml-probe, callml-srtp-*); SRTP on the caller's leg
  # (callml-srtp-*), on the callee's (callml-srtp-both).
  local caller_probe_media=0 caller_srtp=0 callee_srtp=0
  case $system in
    callml-probe) caller_probe_media=1 ;;
    callml-srtp-one) caller_probe_media=1; caller_srtp=1 ;;
    callml-srtp-both) caller_probe_media=1; caller_srtp=1; callee_srtp=1 ;;
  esac
  local callee_probe_args=() callee_scenario=bridge_callee.xml callee_keys=()
  [ "$system" != callml-opus ] || callee_scenario=bridge_callee_opus.xml
  if [ "$callee_srtp" = 1 ]; then
    callee_probe_args=(--srtp-key "$callee_key")
    callee_scenario=bridge_callee_srtp.xml
    callee_keys=(-key key "$callee_key")
  fi
  "$bin/examples/rtp_probe" --base "$probe_base" --count "$calls" --seconds $(( ramp + length + 4 )) \
    --late-ms "$late_ms" "${callee_probe_args[@]}" > "$dir/probe.out" &
  step_pids+=($!)
  wait_line "$dir/probe.out" listening

  uas_port=$(free_port)
  (cd "$dir" && exec timeout "$lifetime" sipp -sf "$root/fixtures/sipp/$callee_scenario" -i 127.0.0.1 -mi 127.0.0.1 \
     -p "$uas_port" -mp "$callee_media" "${callee_keys[@]}" -nostdin -trace_err > uas.out 2>&1) &
  step_pids+=($!)

  # The streaming caller's media: rtp_probe sending (SRTP, or plain RTP) to each call's caller leg.
  local caller_probe="" caller_probe_args=()
  [ "$caller_srtp" = 0 ] || caller_probe_args=(--srtp-key "$caller_key")
  if [ "$caller_probe_media" = 1 ]; then
    "$bin/examples/rtp_probe" --base $(( stream_caller_media + 4 )) --count "$calls" --stream \
      --seconds $(( ramp + length + 4 )) "${caller_probe_args[@]}" > "$dir/caller_probe.out" &
    caller_probe=$!
    step_pids+=($!)
    wait_line "$dir/caller_probe.out" listening
  fi

  case $system in callml*)
    local dial_target="sip:x@127.0.0.1:$uas_port;transport=udp" tls_args=()
    if [ "$callee_srtp" = 1 ]; then
      openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/key.pem" -out "$dir/cert.pem" -days 2 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -addext basicConstraints=critical,CA:FALSE > /dev/null 2>&1
      printf '[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\nprivate_key = %s\ncertificate = %s\n[client:default]\nverify_certificate = no\nrequire_certificate = no\n' \
        "$dir/key.pem" "$dir/cert.pem" > "$dir/tls.cfg"
      local tls_port; tls_port=$(free_port)
      kamailio_tls_config "$tls_port" "$(free_port)" "$uas_port" "$dir/tls.cfg" > "$dir/kamailio.cfg"
      # -DD: in the foreground but with its worker processes (a single -D would not serve TLS).
      timeout "$lifetime" kamailio -f "$dir/kamailio.cfg" -DD -E -m 256 -M 16 > "$dir/kamailio.out" 2>&1 &
      step_pids+=($!)
      for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$tls_port") 2>/dev/null && break; sleep 0.1; done
      dial_target="sip:x@127.0.0.1:$tls_port;transport=tls"
      tls_args=(--tls-ca "$dir/cert.pem")
    fi
    local app_out="$dir/app.out"
    local sip_attributes=""
    [ "$system" != callml-opus ] || sip_attributes=' codecs="OPUS"'
    CALLML_BENCH_DOCUMENT="<Response><Dial><Sip$sip_attributes>$dial_target</Sip></Dial></Response>" \
      timeout "$lifetime" "$bin/examples/bench_app" 127.0.0.1:0 > "$app_out" &
    step_pids+=($!)
    wait_line "$app_out" listening
    local app; app=$(awk '/listening/ {print $2}' "$app_out")
    local sip_port; sip_port=$(free_port)
    RUST_LOG=info timeout "$lifetime" "$bin/callml" serve --sip "127.0.0.1:$sip_port" --http 127.0.0.1:0 \
      --data-dir "$dir/data" --rtp-ports "$relay_ports_low-$relay_ports_high" \
      --voice-url "http://$app/voice" "${tls_args[@]}" > "$dir/relay.out" 2> "$dir/relay.err" &
    step_pids+=($!)
    wait_line "$dir/relay.out" "callml ready"
    relay_pid=$(pgrep -P "${step_pids[-1]}")
    sip_target="127.0.0.1:$sip_port"
    ;;
  *)
  if [ "$system" = direct ]; then
    # No relay: the caller streams straight to rtp_probe, the floor the relays are judged on.
    relay_pid=""
    sip_target="127.0.0.1:$uas_port"
  else
    local ng_port; ng_port=$(free_port)
    local proxy_port; proxy_port=$(free_port)
    timeout "$lifetime" rtpengine --config-file=none --table=-1 --interface=127.0.0.1 \
      --listen-ng="127.0.0.1:$ng_port" --foreground --log-stderr -L 6 --delete-delay=0 \
      --port-min "$relay_ports_low" --port-max "$relay_ports_high" > "$dir/relay.err" 2>&1 &
    step_pids+=($!)
    wait_line "$dir/relay.err" "Startup complete"
    relay_pid=$(pgrep -P "${step_pids[-1]}")
    kamailio_config "$proxy_port" "$uas_port" "$ng_port" > "$dir/kamailio.cfg"
    timeout "$lifetime" kamailio -f "$dir/kamailio.cfg" -D -E -m 256 -M 16 > "$dir/kamailio.out" 2>&1 &
    step_pids+=($!)
    sleep 1
    sip_target="127.0.0.1:$proxy_port"
  fi
  ;;
  esac
  pids+=("${step_pids[@]}")

  # The relay's memory: idle now, the peak sampled in the background while the calls run.
  local rss_idle=0 rss_sampler=""
  echo 0 > "$dir/rss_peak"
  if [ -n "$relay_pid" ]; then
    rss_idle=$(rss_kb "$relay_pid")
    (peak=0; while [ -e "/proc/$relay_pid" ]; do
       rss=$(rss_kb "$relay_pid"); [ "${rss:-0}" -le "$peak" ] || { peak=$rss; echo "$peak" > "$dir/rss_peak"; }
       sleep 0.5
     done) &
    rss_sampler=$!
  fi

  # The caller; meanwhile, CPU samples at the start and end of the steady window.
  local caller_scenario=bridge_caller.xml caller_media_port=$caller_media caller_keys=()
  if [ "$caller_probe_media" = 1 ]; then
    caller_scenario=bridge_caller_probe.xml
    caller_media_port=$stream_caller_media
    caller_keys=(-key profile RTP/AVP -key media_attribute a=sendrecv)
  fi
  if [ "$caller_srtp" = 1 ]; then
    caller_keys=(-key profile RTP/SAVP -key media_attribute "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:$caller_key")
  fi
  (cd "$dir" && exec timeout "$lifetime" sipp "$sip_target" -sf "$root/fixtures/sipp/$caller_scenario" "${caller_keys[@]}" \
     -i 127.0.0.1 -mi 127.0.0.1 -p "$(free_port)" -mp "$caller_media_port" -r "$rate" -m "$calls" -l "$calls" \
     -d $(( length * 1000 )) -timeout "$lifetime"s -timeout_error -nostdin -trace_err \
     -trace_stat -stf stats.csv > uac.out 2>&1) &
  local uac=$!
  sleep $(( ramp + 3 ))
  # The load generators' processes: rtp_probe and both sipps (children of their `timeout`).
  local generators; generators="${step_pids[0]} $caller_probe $(pgrep -P "${step_pids[1]}") $(pgrep -P "$uac")"
  local cpu0 machine0 cpu1 machine1 gen0 gen1
  # shellcheck disable=SC2086
  cpu0=$(cpu_ticks $relay_pid); gen0=$(cpu_ticks $generators); machine0=$(machine_ticks)
  local user0 user1; user0=$(user_ticks "$relay_pid")
  sleep "$hold"
  # shellcheck disable=SC2086
  cpu1=$(cpu_ticks $relay_pid); gen1=$(cpu_ticks $generators); machine1=$(machine_ticks)
  user1=$(user_ticks "$relay_pid")
  wait "$uac" || true
  sleep 2
  wait "${step_pids[0]}" || true   # rtp_probe prints its totals and exits
  [ -z "$caller_probe" ] || wait "$caller_probe" || true
  local rss_after=0
  if [ -n "$relay_pid" ]; then
    sleep 5
    rss_after=$(rss_kb "$relay_pid")
    kill "$rss_sampler" 2>/dev/null || true
    wait "$rss_sampler" 2>/dev/null || true
  fi
  for p in "${step_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${step_pids[@]}"; do wait "$p" 2>/dev/null || true; done

  if [ "$system" = direct ]; then
    echo '{"calls": 0, "caller_rx": 0, "callee_rx": 0, "min_call_rx": null}' > "$dir/relay.json"
  else
    python3 "$root/benches/bridge_stats.py" "${system%%-*}" "$dir/relay.err" "$probe_base" > "$dir/relay.json"
  fi
 RSS_KB="$rss_idle $(cat "$dir/rss_peak") $rss_after" \
  python3 - "$system" "$calls" "$hold" "$length" "$clock_ticks" "$cpu0" "$cpu1" "$machine0 $machine1" "$gen0" "$gen1" "$user0" "$user1" \
    "$dir/probe.out" "$dir/relay.json" "$dir/stats.csv" <<'PY'
import json, os, sys
gen0, gen1, user0, user1 = (int(x) for x in sys.argv[9:13])
rss_idle, rss_peak, rss_after = (int(x) for x in os.environ["RSS_KB"].split())
del sys.argv[9:13]
system, calls, hold, length, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cpu0, cpu1 = int(sys.argv[6]), int(sys.argv[7])
total0, idle0, steal0, total1, idle1, steal1 = (int(x) for x in sys.argv[8].split())
probe = json.loads([l for l in open(sys.argv[9]) if l.startswith("{")][-1])
relay = json.load(open(sys.argv[10]))
rows = [l.rstrip("\n").split(";") for l in open(sys.argv[11]) if l.strip()]
ok = int(rows[-1][rows[0].index("SuccessfulCall(C)")])
failed = int(rows[-1][rows[0].index("FailedCall(C)")])
cpu_pct = 100.0 * (cpu1 - cpu0) / hz / hold
machine = 100.0 * (1 - (idle1 - idle0) / max(1, total1 - total0))  # of both cores
generators_pct = 100.0 * (gen1 - gen0) / hz / hold
# Busy time of other processes on the machine (both cores = 200 %): the run is only as good as
# this is small.
steal = 200.0 * (steal1 - steal0) / max(1, total1 - total0)
others = max(0.0, 2 * machine - cpu_pct - generators_pct - steal)
loss = 100.0 * probe["lost"] / max(1, probe["expected"])
expected_per_call = 50 * length
print(json.dumps(dict(
    system=system, calls=calls, ok=ok, failed=failed,
    loss_pct=round(loss, 3), late=probe["late"], late_streams=probe["late_streams"], late_streams_worst_at_s=probe["late_streams_worst_at_s"], worst_delay_ms=probe["worst_delay_ms"],
    probe_streams=probe["streams"], probe_received=probe["received"],
    relay_calls=relay["calls"], caller_rx=relay["caller_rx"], callee_rx=relay["callee_rx"],
    min_call_rx=relay["min_call_rx"], expected_per_call=expected_per_call,
    relay_cpu_pct=round(cpu_pct, 1), relay_user_pct=round(100.0 * (user1 - user0) / hz / hold, 1), cpu_pct_per_call=round(cpu_pct / calls, 4),
    machine_busy_pct=round(machine, 1), generators_cpu_pct=round(generators_pct, 1),
    others_cpu_pct=round(others, 1),
    steal_pct=round(steal, 1),
    rss_idle_kb=rss_idle, rss_peak_kb=rss_peak, rss_after_kb=rss_after,
    rss_per_call_kb=round((rss_peak - rss_idle) / calls, 1),
    relay=relay)))
PY
}

results="$work/results.jsonl"
: > "$results"
echo "calls of ${hold}+ s with PCMU both ways, placed at $rate calls/s; late = > ${late_ms} ms behind schedule" >&2
# Steps in turn, every system at each step back to back (so that they see the same machine);
# a system that failed a step is not run at the next ones.
failed_systems=" "
for calls in $steps; do
  for system in $systems; do
    case "$failed_systems" in *" $system "*) continue ;; esac
    step "$system" "$calls" > "$work/step.json"
    line=$(cat "$work/step.json")
    echo "$line" >> "$results"
    python3 - "$line" <<'PY' >&2
import json, sys
r = json.loads(sys.argv[1])
print(f"  {r['system']:9} {r['calls']:5} calls: {r['ok']:5} ok {r['failed']:4} failed, loss {r['loss_pct']:.3f} %, "
      f"late {r['late']} in {r['late_streams']} streams (worst {r['worst_delay_ms']} ms), relay CPU {r['relay_cpu_pct']:.1f} % (user {r['relay_user_pct']:.1f}) "
      f"({r['cpu_pct_per_call']:.4f} %/call), sipps+probe {r['generators_cpu_pct']:.0f} %, "
      f"others {r['others_cpu_pct']:.0f} %, steal {r['steal_pct']:.0f} % (of 200), fewest packets in a call {r['min_call_rx']}/{r['expected_per_call']}, "
      f"RSS idle {r['rss_idle_kb']} kB, peak {r['rss_peak_kb']} kB ({r['rss_per_call_kb']} kB/call), after {r['rss_after_kb']} kB"
      + (f", SRTP dropped {r['relay']['srtp_auth_failures']} (auth) {r['relay']['srtp_replays']} (replay)" if 'srtp_auth_failures' in r['relay'] else ""))
PY
    passed=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(int(r["failed"]==0 and r["ok"]==r["calls"] and r["loss_pct"]<0.5 and r["late"]==0))' "$line")
    [ "$passed" = 1 ] || [ "$all_steps" = 1 ] || failed_systems="$failed_systems$system "
  done
  [ "$(echo $systems | wc -w)" -gt "$(echo $failed_systems | wc -w)" ] || break
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["calls"], {})[r["system"]] = r
order = {"direct": 0, "callml": 1, "callml-probe": 2, "callml-srtp-one": 3, "callml-srtp-both": 4,
         "rtpengine": 5}
systems = sorted({r["system"] for r in rows}, key=lambda s: order.get(s, 3))
head = "| calls |" + "".join(f" {s} loss % | {s} late |" + ("" if s == "direct" else f" {s} CPU %/call |") for s in systems)
print(head)
print("|---|" + "".join("---|---|" if s == "direct" else "---|---|---|" for s in systems))
for calls in sorted(by):
    cells = []
    for s in systems:
        r = by[calls].get(s)
        if r is None:
            cells += ["–", "–"] + ([] if s == "direct" else ["–"])
        else:
            mark = "" if (r["failed"] == 0 and r["ok"] == r["calls"]) else f" ({r['failed']} calls failed)"
            cells += [f"{r['loss_pct']:.3f}{mark}", str(r["late"])]
            if s != "direct":
                cells.append(f"{r['cpu_pct_per_call']:.4f}")
    print(f"| {calls} | " + " | ".join(cells) + " |")
print()
print("| system | calls | RSS idle kB | RSS peak kB | kB per call | RSS after kB |")
print("|---|---|---|---|---|---|")
for r in rows:
    if r["system"] != "direct":
        print(f"| {r['system']} | {r['calls']} | {r['rss_idle_kb']} | {r['rss_peak_kb']} | {r['rss_per_call_kb']} | {r['rss_after_kb']} |")
for s in systems:
    good = [r["calls"] for r in rows if r["system"] == s and r["failed"] == 0 and r["ok"] == r["calls"]
            and r["loss_pct"] < 0.5 and r["late"] == 0]
    print(f"{s}: highest passing step {max(good) if good else 0} concurrent calls")
PY
