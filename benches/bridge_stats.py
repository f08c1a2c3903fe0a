#!/usr/bin/env python3
"""Per-step figures for benches/bridge_load.sh, from the relay's own log.

  bridge_stats.py callml LOG PROBE_BASE       callml's `bridge ended` lines (RUST_LOG=info)
  bridge_stats.py rtpengine LOG PROBE_BASE    rtpengine's `Final packet stats` (-L 6)

Prints one JSON object: calls (bridges that ended), caller_rx (packets the relay received
from the calling sipp), callee_rx (packets it received back from rtp_probe's echo, i.e. after
one relay pass and the echo), callee_lost (callml only: RFC 3550 loss counted on the callee
leg, which covers relay -> probe -> relay), min_call_rx (fewest packets any call's caller leg
received: a check that media flowed for the whole call), send_errors, srtp_auth_failures and
srtp_replays (callml only: SRTP packets dropped, both legs).
A port whose far end is at or above PROBE_BASE is the callee side.
"""

import json
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def stream_field(text, name):
    match = re.search(r"\b" + name + r": (-?\d+)", text)
    return int(match.group(1)) if match else 0


def callml(log):
    totals = dict(calls=0, caller_rx=0, callee_rx=0, caller_lost=0, callee_lost=0,
                  caller_tx=0, callee_tx=0, send_errors=0, srtp_auth_failures=0, srtp_replays=0,
                  min_call_rx=None)
    for line in log:
        line = ANSI.sub("", line)
        if "bridge ended" not in line:
            continue
        caller_at = line.find("caller=StreamStats")
        callee_at = line.find("callee=StreamStats")
        if caller_at < 0 or callee_at < 0:
            continue
        caller, callee = line[caller_at:callee_at], line[callee_at:]
        totals["calls"] += 1
        rx = stream_field(caller, "packets_received")
        totals["caller_rx"] += rx
        totals["callee_rx"] += stream_field(callee, "packets_received")
        totals["caller_tx"] += stream_field(caller, "packets_sent")
        totals["callee_tx"] += stream_field(callee, "packets_sent")
        totals["caller_lost"] += stream_field(caller, "packets_lost")
        totals["callee_lost"] += stream_field(callee, "packets_lost")
        totals["send_errors"] += stream_field(caller, "send_errors") + stream_field(callee, "send_errors")
        for counter in ("srtp_auth_failures", "srtp_replays"):
            totals[counter] += stream_field(caller, counter) + stream_field(callee, counter)
        if totals["min_call_rx"] is None or rx < totals["min_call_rx"]:
            totals["min_call_rx"] = rx
    return totals


PORT = re.compile(r"Port\s+\S+:\d+ <>\s+\S+:(\d+)(?: \(RTCP\))?, SSRC \S+, (\d+) p, \d+ b, (\d+) e")
CALL = re.compile(r"\] \w+: \[([^\]\s]+)")


def rtpengine(log, probe_base):
    """Sums the final stats of every deleted call (lines keyed by their call id)."""
    totals = dict(calls=0, caller_rx=0, callee_rx=0, errors=0, min_call_rx=None)
    per_call = {}
    for line in log:
        call = CALL.search(line)
        if not call:
            continue
        if "Final packet stats" in line:
            per_call[call.group(1)] = 0
            continue
        match = PORT.search(line)
        if not match or "(RTCP)" in line or call.group(1) not in per_call:
            continue
        remote_port, packets, errors = (int(g) for g in match.groups())
        totals["errors"] += errors
        if remote_port >= probe_base:
            totals["callee_rx"] += packets
        else:
            totals["caller_rx"] += packets
            per_call[call.group(1)] += packets
    totals["calls"] = len(per_call)
    totals["min_call_rx"] = min(per_call.values()) if per_call else None
    return totals


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("callml", "rtpengine"):
        sys.exit(__doc__)
    with open(sys.argv[2], errors="replace") as log:
        if sys.argv[1] == "callml":
            totals = callml(log)
        else:
            totals = rtpengine(log, int(sys.argv[3]))
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
