#!/usr/bin/env python3
"""Calls created per second through the REST API, each one answered.

At each rate, POST /2010-04-01/Accounts/{sid}/Calls.json (To=sip:x@127.0.0.1:PORT;transport=udp,
From, Twiml=<Response><Hangup/></Response>) is sent at that rate for --seconds, open loop (request
i is due at start + i/rate), from a pool of threads with one keep-alive connection each. Every
call rings a `sipp -sn uas` that answers; the document then hangs up (callml sends BYE). A rate
passes when every POST got 201, the client kept to the schedule (the last request left less
than 1 s late), sipp counted every call as completed (answered, then BYE) and callml's
Calls.json lists every call as completed. The ramp stops at the first failure.

Prints per rate: created/s achieved, POST latency p50/p99/max (from the moment the request was
sent) and p99 from the moment it was due (so client lag is not hidden), and the checks.

Also prints callml's CPU time (utime+stime) per created call, over the load and the 6 s after.

Usage: benches/api_calls.py [--rates 100,200,...] [--seconds 10] [--threads 32] [--keep DIR]
Needs: sipp (sip-tester). Loopback only; callml and sipp are started here and stopped at the
end of each rate (and run under `timeout` in any case).
"""

import argparse
import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-token"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build():
    subprocess.run(["cargo", "build", "--quiet", "--release", "--manifest-path",
                    os.path.join(ROOT, "Cargo.toml"), "--bin", "callml"], check=True)
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps", "--manifest-path",
                           os.path.join(ROOT, "Cargo.toml")], check=True, capture_output=True, text=True)
    return os.path.join(json.loads(meta.stdout)["target_directory"], "release", "callml")


def wait_for(path, text, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                for line in f:
                    if text in line:
                        return line
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timeout waiting for {text!r} in {path}")


def percentile(sorted_values, fraction):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


class Load:
    """Open-loop POSTs from a thread pool, one keep-alive connection per thread."""

    def __init__(self, http_addr, sid, body, rate, total, threads):
        self.host, port = http_addr.rsplit(":", 1)
        self.port = int(port)
        self.path = f"/2010-04-01/Accounts/{sid}/Calls.json"
        auth = base64.b64encode(f"{sid}:{TOKEN}".encode()).decode()
        self.headers = {"Authorization": f"Basic {auth}",
                        "Content-Type": "application/x-www-form-urlencoded"}
        self.body = body
        self.rate, self.total, self.threads = rate, total, threads
        self.next = 0
        self.lock = threading.Lock()
        self.results = []  # (sent - due, latency, status)
        self.sids = []

    def claim(self):
        with self.lock:
            if self.next >= self.total:
                return None
            self.next += 1
            return self.next - 1

    def worker(self):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        results, sids = [], []
        while (index := self.claim()) is not None:
            due = self.start + index / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent = time.monotonic()
            try:
                connection.request("POST", self.path, body=self.body, headers=self.headers)
                response = connection.getresponse()
                payload = response.read()
                status = response.status
                if status == 201:
                    sids.append(json.loads(payload)["sid"])
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            done = time.monotonic()
            results.append((sent - due, done - sent, done - due, status))
        connection.close()
        with self.lock:
            self.results.extend(results)
            self.sids.extend(sids)

    def run(self):
        self.start = time.monotonic() + 0.2
        pool = [threading.Thread(target=self.worker) for _ in range(self.threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        return time.monotonic() - self.start


def completed_calls(http_addr, sid):
    """Counts the calls callml lists as completed (all pages)."""
    host, port = http_addr.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    auth = base64.b64encode(f"{sid}:{TOKEN}".encode()).decode()
    path = f"/2010-04-01/Accounts/{sid}/Calls.json?Status=completed&PageSize=1000"
    count = 0
    while path:
        connection.request("GET", path, headers={"Authorization": f"Basic {auth}"})
        page = json.loads(connection.getresponse().read())
        count += len(page.get("calls", []))
        path = page.get("next_page_uri")
    connection.close()
    return count


def child_of(pid):
    """The process that `timeout` (pid) runs."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                return int(entry)
    return None


def cpu_seconds(pid):
    """utime + stime of a process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sipp_completed(stats_path):
    with open(stats_path) as f:
        rows = [line.rstrip("\n").split(";") for line in f if line.strip()]
    head, last = rows[0], rows[-1]
    return int(last[head.index("SuccessfulCall(C)")]), int(last[head.index("FailedCall(C)")])


def one_rate(callml, work, rate, seconds, threads):
    total = rate * seconds
    lifetime = str(seconds + 60)
    directory = os.path.join(work, f"rate-{rate}")
    os.makedirs(directory)
    uas_port = free_port()
    processes = []
    try:
        processes.append(subprocess.Popen(
            ["timeout", lifetime, "sipp", "-sn", "uas", "-i", "127.0.0.1", "-mi", "127.0.0.1",
             "-p", str(uas_port), "-mp", "10000", "-nostdin", "-trace_stat", "-stf", "stats.csv", "-fd", "1"],
            cwd=directory, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        out = open(os.path.join(directory, "callml.out"), "w")
        err = open(os.path.join(directory, "callml.err"), "w")
        processes.append(subprocess.Popen(
            ["timeout", lifetime, callml, "serve", "--sip", "127.0.0.1:0", "--http", "127.0.0.1:0",
             "--data-dir", os.path.join(directory, "data"), "--rtp-ports", "17000-31999",
             "--auth-token", TOKEN],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, env={**os.environ, "RUST_LOG": "warn"}))
        ready = wait_for(os.path.join(directory, "callml.out"), "callml ready")
        fields = dict(part.split("=", 1) for part in ready.split()[2:])
        body = urllib.parse.urlencode({
            "To": f"sip:x@127.0.0.1:{uas_port};transport=udp",
            "From": "+15550001111",
            "Twiml": "<Response><Hangup/></Response>",
        })
        load = Load(fields["http"], fields["account_sid"], body, rate, total, threads)
        callml_pid = child_of(processes[-1].pid)
        cpu_before = cpu_seconds(callml_pid)
        elapsed = load.run()
        # The last calls ring, answer and hang up; `sipp -sn uas` keeps a call 4 s after its
        # final 200 (for retransmissions) before counting it, and writes its stats each second.
        time.sleep(6)
        cpu = cpu_seconds(callml_pid) - cpu_before
        ok_sipp, failed_sipp = sipp_completed(os.path.join(directory, "stats.csv"))
        listed = completed_calls(fields["http"], fields["account_sid"])
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()
    created = sum(1 for r in load.results if r[3] == 201)
    errors = len(load.results) - created
    latencies = sorted(r[1] for r in load.results)
    from_due = sorted(r[2] for r in load.results)
    worst_lag = max(r[0] for r in load.results)
    return dict(
        rate=rate, requests=len(load.results), created=created, errors=errors,
        achieved=round(created / elapsed, 1), worst_lag_s=round(worst_lag, 3),
        p50_ms=round(1000 * percentile(latencies, 0.50), 2), p99_ms=round(1000 * percentile(latencies, 0.99), 2),
        max_ms=round(1000 * latencies[-1], 2), p99_from_due_ms=round(1000 * percentile(from_due, 0.99), 2),
        callml_cpu_ms_per_call=round(1000 * cpu / max(1, created), 3),
        sipp_completed=ok_sipp, sipp_failed=failed_sipp, listed_completed=listed,
        passed=(errors == 0 and created == total and worst_lag < 1.0 and ok_sipp == total
                and failed_sipp == 0 and listed == total))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="100,200,400,600,800,1000,1200,1500,2000")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--keep", help="copy the work directory (logs, sipp stats) here")
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        sys.exit("sipp not found: apt-get install sip-tester")
    callml = build()
    work = tempfile.mkdtemp()
    rows = []
    try:
        print(f"POST Calls.json for {args.seconds} s at each rate, {args.threads} keep-alive connections",
              file=sys.stderr)
        for rate in (int(r) for r in args.rates.split(",")):
            row = one_rate(callml, work, rate, args.seconds, args.threads)
            rows.append(row)
            print(f"  {rate:5}/s: {row['created']}/{row['requests']} created ({row['achieved']}/s), "
                  f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, max {row['max_ms']} ms, "
                  f"p99 from due {row['p99_from_due_ms']} ms, sipp {row['sipp_completed']} ok "
                  f"{row['sipp_failed']} failed, listed completed {row['listed_completed']}, "
                  f"callml CPU {row['callml_cpu_ms_per_call']} ms/call"
                  + ("" if row["passed"] else "  <- FAILED"), file=sys.stderr)
            if not row["passed"]:
                break
    finally:
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    print("| rate asked | created/s | POST p50 | POST p99 | p99 from due | answered and completed | callml CPU/call |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rate']} | {r['achieved']} | {r['p50_ms']} ms | {r['p99_ms']} ms | {r['p99_from_due_ms']} ms "
              f"| {r['sipp_completed']}/{r['requests']}{'' if r['passed'] else ' FAILED'} | {r['callml_cpu_ms_per_call']} ms |")
    best = max([r["rate"] for r in rows if r["passed"]], default=0)
    print(f"highest rate with zero failures: {best} calls/s")


if __name__ == "__main__":
    main()
