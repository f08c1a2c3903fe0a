"""What callml shows of calls, read by the tools users point at it (tests/observe.rs sets up
the calls and the CALLML_* variables):

- `observe`: the Call Events of each call through the official `twilio` library, and
  `/metrics` through Prometheus' own text parser, its counters equal to the traffic sipp sent.
- `console`: the web console in headless Chromium (selenium + chromium-driver) while a sipp
  call is live, then that call's page (ladder, timeline of webhooks and verbs, media facts),
  then the rooms, queues and registrations (a phone sipp registered, the trunks) pages.
"""

import json
import os
import time

import pytest


def env(name):
    value = os.environ.get(name)
    if value is None:
        raise RuntimeError(f"{name} is not set: run through `cargo test --test observe`")
    return value


@pytest.mark.observe
def test_call_events_are_read_by_the_twilio_library(server):
    from twilio.rest import Client

    client = Client(server.account_sid, server.auth_token)
    client.api.base_url = server.url
    voice_url = env("CALLML_OBSERVE_VOICE_URL")
    status_url = env("CALLML_OBSERVE_STATUS_URL")
    for sid in env("CALLML_OBSERVE_CALLS").split(","):
        events = client.calls(sid).events.list()
        fetches = [e for e in events if e.request["url"] == voice_url]
        assert len(fetches) == 1, events
        fetch = fetches[0]
        assert fetch.request["method"] == "POST"
        assert fetch.request["parameters"]["call_sid"] == sid
        assert fetch.request["parameters"]["call_status"] == "ringing"
        assert fetch.request["parameters"]["direction"] == "inbound"
        assert fetch.response["response_code"] == 200
        assert fetch.response["content_type"] == "application/xml"
        assert '<Pause length="5"/>' in fetch.response["response_body"]
        assert isinstance(fetch.response["request_duration"], int)
        assert fetch.response["date_created"].endswith("+0000")
        callbacks = [e for e in events if e.request["url"] == status_url]
        statuses = [e.request["parameters"]["call_status"] for e in callbacks]
        assert statuses[-1] == "completed", statuses
        assert all(e.response["response_code"] == 200 for e in callbacks)
        # Twilio's order: oldest first, the document before the callbacks that follow it.
        assert events.index(fetch) < events.index(callbacks[-1])
    # Paging as the library does it: one event per page, followed through next_page_uri.
    first = env("CALLML_OBSERVE_CALLS").split(",")[0]
    assert len(client.calls(first).events.list(page_size=1)) == len(client.calls(first).events.list())


@pytest.mark.observe
def test_metrics_count_exactly_the_traffic_sent():
    from prometheus_client.parser import text_string_to_metric_families

    with open(env("CALLML_OBSERVE_METRICS")) as f:
        text = f.read()
    samples = {}
    types = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))), 0)

    calls = int(env("CALLML_OBSERVE_EXPECTED_CALLS"))
    sent = json.loads(env("CALLML_OBSERVE_SIPP"))
    assert sent["requests"]["INVITE"] >= calls
    for method, count in sent["requests"].items():
        assert value("callml_sip_requests_total", direction="in", method=method) == count, method
    for key, count in sent["responses"].items():
        method, status = key.split(" ")
        assert (
            value("callml_sip_responses_total", direction="out", method=method, status=status)
            == count
        ), key
    assert value("callml_calls_total", direction="inbound", status="completed") == calls
    assert value("callml_calls_active") == 0
    assert value("callml_call_setup_seconds_count") == calls
    assert value("callml_call_setup_seconds_bucket", le="+Inf") == calls
    assert value("callml_webhook_duration_seconds_count", kind="document") == calls
    assert value("callml_webhook_duration_seconds_count", kind="callback") == int(
        env("CALLML_OBSERVE_CALLBACKS")
    )
    assert not [k for k in samples if k[0] == "callml_webhook_errors_total"]
    assert value("callml_sip_transactions_total", role="server") == sum(
        count for method, count in sent["requests"].items() if method != "ACK"
    )
    assert value("callml_rtp_packets_total", direction="sent") > 0
    assert value("callml_store_write_duration_seconds_count") > 0
    assert value("callml_capture_dropped_total") == 0
    assert value("process_start_time_seconds") > 0
    assert types["callml_calls"] == "counter"
    assert types["callml_calls_active"] == "gauge"
    assert types["callml_call_setup_seconds"] == "histogram"


@pytest.mark.console
def test_the_console_shows_the_live_call_then_its_ladder(server):
    import base64
    import urllib.parse
    import urllib.request

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1440,1000"]:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    shots = env("CALLML_SCREENSHOTS")
    try:
        # Logging in: the account's Basic credentials on every request the page makes.
        token = base64.b64encode(f"{server.account_sid}:{server.auth_token}".encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
        )
        driver.get(f"{server.url}/console")
        wait = WebDriverWait(driver, 15)
        row = wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#live tr[data-call-sid]") or False
        )[0]
        sid = row.get_attribute("data-call-sid")
        assert sid.startswith("CA")
        assert "in-progress" in row.text or "ringing" in row.text
        driver.save_screenshot(os.path.join(shots, "console-live.png"))

        # Wait for the call to end (sipp hangs up), then open its page as a link would.
        request = urllib.request.Request(
            f"{server.url}/2010-04-01/Accounts/{server.account_sid}/Calls/{sid}.json",
            headers={"Authorization": f"Basic {token}"},
        )
        deadline = time.time() + 30
        while json.load(urllib.request.urlopen(request))["status"] != "completed":
            assert time.time() < deadline, "the call did not end"
            time.sleep(0.2)
        # The capture is written just after the record: wait until its ladder has the BYE.
        ladder = urllib.request.Request(
            f"{server.url}/2010-04-01/Accounts/{server.account_sid}/Calls/{sid}/Sip.json",
            headers={"Authorization": f"Basic {token}"},
        )
        while not any(
            m.get("first_line", "").startswith("BYE")
            for m in json.load(urllib.request.urlopen(ladder))["messages"]
        ):
            assert time.time() < deadline, "the call's capture was not written"
            time.sleep(0.2)
        # And its media facts, kept when its leg was released.
        timeline = urllib.request.Request(
            f"{server.url}/2010-04-01/Accounts/{server.account_sid}/Calls/{sid}/Timeline.json",
            headers={"Authorization": f"Basic {token}"},
        )
        while not any(
            e["kind"] == "media" for e in json.load(urllib.request.urlopen(timeline))["entries"]
        ):
            assert time.time() < deadline, "the call's media facts were not written"
            time.sleep(0.2)
        driver.get(f"{server.url}/console/calls/{sid}")
        lines = wait.until(
            lambda d: [
                g.get_attribute("data-first-line")
                for g in d.find_elements(By.CSS_SELECTOR, "svg.ladder g.msg")
            ]
            or False
        )
        assert lines[0].startswith("INVITE "), lines
        assert any(line.startswith("SIP/2.0 200") for line in lines), lines
        assert any(line.startswith("BYE ") for line in lines), lines

        summary = driver.find_element(By.ID, "summary").text
        assert sid in summary and "inbound" in summary and "[object" not in summary, summary
        assert "null" not in driver.find_element(By.ID, "main").text.split()
        timeline = driver.find_element(By.ID, "timeline").text
        assert env("CALLML_OBSERVE_VOICE_URL") in timeline
        assert "HTTP 200" in timeline
        # The document's one verb, with its attribute, ended by sipp's BYE.
        pause = driver.find_element(By.CSS_SELECTOR, "#timeline li.verb[data-verb=Pause]")
        assert pause.get_attribute("data-outcome") == "call-ended", pause.text
        assert 'length="30"' in pause.text, pause.text
        # The leg's media facts, kept when it ended: sipp offered PCMU and sent no RTP.
        media = wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, f"#media tr[data-call-sid='{sid}']") or False
        )[0]
        cells = [td.text for td in media.find_elements(By.TAG_NAME, "td")]
        assert cells[0] == sid and cells[1] == "PCMU", cells
        assert int(cells[2]) > 0 and cells[3] == "0", cells
        assert cells[7] == "no RTCP" and cells[8] == "–", cells

        # Open the INVITE: its markup header is shown as text and never runs.
        driver.find_elements(By.CSS_SELECTOR, "svg.ladder g.msg")[0].click()
        shown = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#message pre.message") or False)[0]
        assert "X-Evil: <script>window.pwned = 1;" in shown.text
        assert driver.execute_script("return window.pwned === undefined")
        assert "pwned" not in driver.title
        assert not driver.find_elements(By.CSS_SELECTOR, "#message script, #message img")
        driver.save_screenshot(os.path.join(shots, "console-call.png"))
        driver.execute_script("document.getElementById('timeline').scrollIntoView()")
        driver.save_screenshot(os.path.join(shots, "console-call-timeline.png"))

        # Keyboard: the ladder's messages take focus and open with Enter.
        driver.execute_script(
            "document.querySelectorAll('svg.ladder g.msg')[1].focus()"
        )
        driver.switch_to.active_element.send_keys("\n")
        header = driver.find_element(By.CSS_SELECTOR, "#message h2").text
        assert header == lines[1]

        # Rooms, queues and registrations, reached from the navigation with the keyboard.
        def post(path, form):
            made = urllib.request.Request(
                f"{server.url}/2010-04-01/Accounts/{server.account_sid}/{path}",
                data=urllib.parse.urlencode(form).encode(),
                headers={"Authorization": f"Basic {token}"},
                method="POST",
            )
            return json.load(urllib.request.urlopen(made))

        post("Queues.json", {"FriendlyName": "support-<b>queue</b>"})
        post("Trunks.json", {"Id": "console-carrier", "Host": "127.0.0.1", "Port": "5099"})
        for name, shown in [
            ("Rooms", ["No room is open."]),
            ("Queues", ["support-<b>queue</b>", "none"]),
            (
                "Registrations",
                ["sip:alice@phones.callml.test", "sipp", "UDP 127.0.0.1:", "console-carrier", "127.0.0.1:5099", "not-required", "api"],
            ),
        ]:
            driver.find_element(By.LINK_TEXT, name).send_keys(Keys.ENTER)
            text = wait.until(
                lambda d: (
                    d.find_elements(By.CSS_SELECTOR, f"section#{name.lower()} h2, section#{name.lower()} p.empty")
                    and all(s in d.find_element(By.ID, "main").text for s in shown)
                    and d.find_element(By.ID, "main").text
                )
                or False
            )
            assert "[object" not in text and "undefined" not in text, text
            assert driver.find_element(By.LINK_TEXT, name).get_attribute("aria-current") == "page"
            assert not driver.find_elements(By.CSS_SELECTOR, "main b")
            driver.save_screenshot(os.path.join(shots, f"console-{name.lower()}.png"))
    finally:
        driver.quit()
