#!/usr/bin/env bash
# The heap of a bridged call by owner (issue 21): benches/bridge_load.sh's relayed PCMU calls
# (sipp caller -> callml <Dial><Sip> -> sipp callee, RTP both ways through the relay engine)
# with callml run under heaptrack, then callml once more with no call (its idle heap); the
# table printed is, per call, the heap live at the peak over the idle one, by owner
# (benches/heap_owners.py says how backtraces are given to owners). The calls hold together
# for --hold seconds, so the peak is N calls at once.
#
# Usage: benches/heap_profile.sh [--calls 50] [--hold 10] [--keep DIR]
# Needs: heaptrack (Debian package heaptrack) and what bridge_load.sh needs (sipp, sox).
# CALLML_BIN_DIR: as for bridge_load.sh (callml and the examples); otherwise built here.
set -euo pipefail

calls=50
hold=10
keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --calls) calls=$2; shift 2 ;;
    --hold) hold=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v heaptrack >/dev/null || { echo "heaptrack not found (apt-get install heaptrack)" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'if [ -n "$keep" ]; then mkdir -p "$keep" && cp -r "$work"/. "$keep"/; fi; rm -rf "$work"' EXIT
source "$root/benches/lib.sh"
bench_binaries bench_app rtp_probe

# bridge_load.sh runs "$CALLML_BIN_DIR/callml": here a wrapper that runs the real one under
# heaptrack in a session of its own (the bench's SIGTERM to its process group would stop the
# recorder too) and passes the SIGTERM to callml alone, which stops gracefully.
mkdir -p "$work/bin/examples"
ln -s "$bin/examples/bench_app" "$bin/examples/rtp_probe" "$work/bin/examples/"
cat > "$work/bin/callml" <<WRAPPER
#!/usr/bin/env bash
setsid heaptrack -o "$work/calls" "$bin/callml" "\$@" &
recorder=\$!
stop() { for p in \$(pgrep -P \$recorder -x callml); do kill -TERM \$p; done; }
trap stop TERM INT
wait \$recorder || wait \$recorder
WRAPPER
chmod +x "$work/bin/callml"
CALLML_BIN_DIR="$work/bin" "$root/benches/bridge_load.sh" --calls "$calls" --hold "$hold" \
  --systems callml --all-steps > "$work/bridge_load.out" 2> "$work/bridge_load.err"

# The idle heap: the same server with no call, stopped once ready.
setsid heaptrack -o "$work/idle" "$bin/callml" serve --sip 127.0.0.1:0 --http 127.0.0.1:0 \
  --data-dir "$work/idle-data" --rtp-ports 40000-40999 > "$work/idle.out" 2>&1 &
recorder=$!
for _ in $(seq 100); do grep -q "callml ready" "$work/idle.out" && break; sleep 0.1; done
sleep 2
for p in $(pgrep -P "$recorder" -x callml); do kill -TERM "$p"; done
wait "$recorder" || true
# heaptrack compresses its file after the program ends.
for _ in $(seq 100); do [ -s "$work/calls.zst" ] && [ -s "$work/idle.zst" ] && break; sleep 0.2; done
sleep 1

heaptrack_print -f "$work/calls.zst" -m 0 -p 1 -a 0 -T 0 -n 3000 > "$work/calls.txt" 2>&1
heaptrack_print -f "$work/idle.zst" -m 0 -p 1 -a 0 -T 0 -n 3000 > "$work/idle.txt" 2>&1
echo "bridge_load: $(tail -1 "$work/bridge_load.err" | sed 's/, RSS.*//')"
echo "peak heap with $calls calls: $(grep 'peak heap memory' "$work/calls.txt")"
echo "idle: $(grep 'peak heap memory' "$work/idle.txt")"
python3 "$root/benches/heap_owners.py" "$work/calls.txt" "$work/idle.txt" "$calls"
