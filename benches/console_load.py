#!/usr/bin/env python3
"""How long the console's page of a big call takes to load (issue 18: under 1 s for a call with
100 child legs and 5,000 SIP messages).

callml is started once on a fresh data directory and stopped; a call with --legs child legs and
--messages captured SIP messages (an INVITE/100/180/200/ACK/BYE/200 ladder per leg, repeated
to the count) is written straight into its SQLite store; callml is started again and headless
Chromium opens /console/calls/{CallSid}, --runs times (the call also has a document, a <Dial>
started and ended, and per leg four callbacks and its media facts in its timeline). Prints,
per run, the time from navigation to the ladder drawn with every message and the media table
with every leg (the page's own fetches of Calls.json,
Sip.json (5 pages of 1,000), Timeline.json, Notifications.json and Recordings.json included),
and the median.

Usage: benches/console_load.py [--legs 100] [--messages 5000] [--runs 5]
Needs: the callml release binary (built here with cargo), chromium and chromium-driver
(Debian), selenium (the test venv: .venv/bin/python benches/console_load.py).
"""

import argparse
import base64
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCOUNT = "AC" + "c" * 32
TOKEN = "console-bench-token"


def start(binary, data):
    process = subprocess.Popen(
        [binary, "serve", "--sip", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir", data,
         "--account-sid", ACCOUNT, "--auth-token", TOKEN, "--rtp-ports", "40000-40099"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        if line.startswith("callml ready "):
            http = [w for w in line.split() if w.startswith("http=")][0][5:]
            return process, http
    raise RuntimeError("callml did not start")


def populate(db_path, legs, messages):
    db = sqlite3.connect(db_path)
    now = time.time_ns()
    parent = "CA" + "0" * 31 + "1"
    columns = ("sid, account_sid, parent_call_sid, \"from\", \"to\", direction, status, start_time, "
               "answer_time, end_time, duration, sip_call_id, date_created, date_updated")
    rows = [(parent, ACCOUNT, None, "+15550001111", "+15550002222", "inbound", "completed",
             now, now, now, 60, "parent@bench", now, now)]
    for i in range(legs):
        rows.append(("CA%032x" % (i + 2), ACCOUNT, parent, "+15550002222", f"sip:leg{i}@127.0.0.1",
                     "outbound-dial", "completed", now + i, now + i, now + i, 1, f"leg{i}@bench",
                     now + i, now + i))
    db.executemany(f"INSERT INTO calls ({columns}) VALUES ({','.join('?' * 14)})", rows)
    ladder = [("in", "INVITE sip:x@127.0.0.1 SIP/2.0"), ("out", "SIP/2.0 100 Trying"),
              ("out", "SIP/2.0 180 Ringing"), ("out", "SIP/2.0 200 OK"),
              ("in", "ACK sip:x@127.0.0.1 SIP/2.0"), ("in", "BYE sip:x@127.0.0.1 SIP/2.0"),
              ("out", "SIP/2.0 200 OK")]
    call_ids = ["parent@bench"] + [f"leg{i}@bench" for i in range(legs)]
    captured = []
    for n in range(messages):
        direction, first = ladder[n % len(ladder)]
        call_id = call_ids[(n // len(ladder)) % len(call_ids)]
        text = (f"{first}\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK{n}\r\nCall-ID: {call_id}\r\n"
                f"CSeq: 1 INVITE\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\n"
                "Content-Length: 0\r\n\r\n")
        captured.append((call_id, now + n * 1000, direction, "UDP", "127.0.0.1:5060",
                         f"127.0.0.1:{6000 + (n // len(ladder)) % (legs + 1)}", first, len(text), text))
    db.executemany("INSERT INTO capture_sip (sip_call_id, at, direction, transport, local, remote, "
                   "first_line, size, text) VALUES (?,?,?,?,?,?,?,?,?)", captured)
    # The timeline: the parent's document and <Dial> (started, ended), and per leg its
    # initiated/ringing/answered/completed callbacks and its media facts.
    webhook = json.dumps({"request": {"method": "POST", "url": "http://127.0.0.1:9/status",
                                      "parameters": {"CallSid": parent, "CallStatus": "ringing"}},
                          "response": {"request_duration": 3, "response_code": 200,
                                       "content_type": "application/xml", "response_body": "<Response/>"}})
    media = json.dumps({"codec": "PCMU", "packets_sent": 3000, "packets_received": 2990, "packets_lost": 10,
                        "loss_permille": 3, "jitter_ms": 1.5, "round_trip_ms": None, "rtcp_received": 0,
                        "srtp_auth_failures": 0, "mos": 4.3})
    events = [(parent, now, "document", webhook),
              (parent, now + 1, "verb", json.dumps({"event": "started", "verb": "Dial", "line": 1,
                                                    "attributes": {"timeout": "30"}}))]
    for i in range(legs):
        leg = "CA%032x" % (i + 2)
        events += [(leg, now + 2 + i, "callback", webhook) for _ in range(4)]
        events.append((leg, now + 2 + i, "media", media))
    events.append((parent, now + legs + 3, "verb",
                   json.dumps({"event": "ended", "verb": "Dial", "line": 1, "outcome": "completed"})))
    db.executemany("INSERT INTO capture_events (call_sid, at, kind, size, data) VALUES (?,?,?,?,?)",
                   [(sid, at, kind, len(data), data) for sid, at, kind, data in events])
    db.commit()
    db.close()
    return parent


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--legs", type=int, default=100)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "callml"], cwd=ROOT, check=True)
    target = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT))["target_directory"]
    binary = os.path.join(target, "release", "callml")
    with tempfile.TemporaryDirectory() as data:
        process, _ = start(binary, data)
        process.terminate()
        process.wait()
        sid = populate(os.path.join(data, "callml.sqlite3"), args.legs, args.messages)
        process, http = start(binary, data)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1440,1000"]:
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            token = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                                   {"headers": {"Authorization": f"Basic {token}"}})
            times = []
            for run in range(args.runs):
                driver.get("about:blank")
                started = time.perf_counter()
                driver.get(f"http://{http}/console/calls/{sid}")
                WebDriverWait(driver, 30, poll_frequency=0.01).until(
                    lambda d: d.execute_script(
                        "return document.querySelectorAll('svg.ladder g.msg').length") == args.messages
                    and d.execute_script(
                        "return document.querySelectorAll('#media tr[data-call-sid]').length") == args.legs)
                elapsed = time.perf_counter() - started
                legs = driver.execute_script("return document.querySelectorAll('#legs tr[data-call-sid]').length")
                assert legs == args.legs, legs
                times.append(elapsed)
                print(f"run {run + 1}: {elapsed * 1000:.0f} ms ({args.messages} messages, {legs} legs)")
            times.sort()
            print(f"median {times[len(times) // 2] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms")
        finally:
            driver.quit()
            process.terminate()
            process.wait()


if __name__ == "__main__":
    sys.exit(main())
