#!/usr/bin/env python3
"""The heap of one call by owner, from two heaptrack profiles of callml (issue 21).

Usage: heap_owners.py PEAK.txt IDLE.txt CALLS

PEAK.txt and IDLE.txt are `heaptrack_print -m 0 -p 1 -a 0 -T 0 -n 3000` of a callml that held
CALLS bridged calls at its peak and of one that held none. Each backtrace is given to the
owner its innermost callml source line names (the call task's future where `call/mod.rs`
spawns it, the legs' table where the driver grows it, SIP, the store, media by file...); the
table is (peak - idle) / CALLS per owner: the bytes live at the peak, and the allocations
made from those backtraces over the whole run.
"""

import collections
import re
import sys

OURS = re.compile(
    r"at (src/(?:api|call|capture|interp|markup|media|sip|store|transport|trunk|webhook)/[^ :]+"
    r"|src/(?:config|directory|ids|limits|main|memory|metrics|programs|server)\.rs):(\d+)"
)
ENTRY = re.compile(r"^([\d.]+)([KMG]?) peak memory consumed over (\d+) calls from")
UNITS = {"": 1, "K": 1000, "M": 1e6, "G": 1e9}


def entries(path):
    """(bytes, allocations, callml frames innermost first, function names) per backtrace."""
    found = []
    current = None
    for line in open(path):
        match = ENTRY.match(line)
        if match:
            current = [float(match.group(1)) * UNITS[match.group(2)], int(match.group(3)), [], []]
            found.append(current)
            continue
        if current is None:
            continue
        ours = OURS.search(line)
        if ours:
            current[2].append((ours.group(1), int(ours.group(2))))
        text = line.strip()
        if text and not text.startswith(("at ", "in ")):
            current[3].append(text)
    return found


def owner(frames, functions):
    names = " ".join(functions)
    if not frames:
        return "store: SQLite" if "sqlite" in names else "runtime and std (no callml frame)"
    path, _ = frames[0]
    if path == "src/call/mod.rs":
        return "call task: its future (tokio task cell)"
    if path == "src/call/driver/mod.rs" and "MediaLeg" in names:
        return "call task: its legs' table (Vec<MediaLeg>)"
    if "sqlite" in names or path.startswith("src/store"):
        return "store: SQLite statements and page cache"
    if path.startswith("src/capture"):
        return "capture"
    if path.startswith("src/media"):
        return "media: " + path.split("/")[-1]
    if path.startswith(("src/sip", "src/transport")):
        return "SIP: messages, transactions, dialogs, transport"
    if path.startswith(("src/markup", "src/interp")) or path == "src/call/document.rs":
        return "document: markup AST, interpreter"
    if path.startswith("src/webhook"):
        return "webhooks: client, callbacks"
    if path.startswith("src/call/core"):
        return "call core"
    if path.startswith("src/call"):
        return "call: " + path.split("/")[-1]
    return "other: " + path


def table(path):
    total = collections.Counter()
    count = collections.Counter()
    for size, allocations, frames, functions in entries(path):
        key = owner(frames, functions)
        total[key] += size
        count[key] += allocations
    return total, count


def main():
    peak, peak_count = table(sys.argv[1])
    idle, idle_count = table(sys.argv[2])
    calls = int(sys.argv[3])
    print("| owner | bytes live per call at the peak | allocations per call (whole run) |")
    print("|---|---|---|")
    rows = sorted(set(peak) | set(idle), key=lambda key: -(peak[key] - idle[key]))
    total = 0.0
    for key in rows:
        per_call = (peak[key] - idle[key]) / calls
        total += per_call
        if abs(per_call) >= 100:
            allocations = (peak_count[key] - idle_count[key]) / calls
            print(f"| {key} | {per_call:,.0f} | {allocations:.1f} |")
    print(f"| total | {total:,.0f} | |")


if __name__ == "__main__":
    main()
