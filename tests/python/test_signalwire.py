"""SignalWire's compatibility client (`signalwire`, which pins twilio 6.x) against callml's
`/api/laml` root."""

import datetime
import time

import pytest
from signalwire.request_validator import RequestValidator
from signalwire.rest import Client
from twilio.base.exceptions import TwilioRestException


@pytest.fixture
def client(callml):
    client = Client(callml.account_sid, callml.auth_token, signalwire_space_url="example.signalwire.com")
    # Its constructor forces https on the space URL; point it at callml's LaML root instead.
    client.api.base_url = callml.url + "/api/laml"
    return client


def test_fetch_a_call(client, callml):
    call = client.calls(callml.call_sids[0]).fetch()
    assert call.sid == callml.call_sids[0]
    assert call.status == "completed"
    assert call.direction == "inbound"
    assert call.to == "+15550002222"
    assert call.from_ == "+15550001111"
    assert isinstance(call.date_created, datetime.datetime)


def test_list_filters_and_pages(client, callml):
    newest_first = list(reversed(callml.call_sids))
    assert [c.sid for c in client.calls.list(page_size=2)] == newest_first
    assert len(client.calls.list(status="busy")) == 1
    assert len(client.calls.list(to="+15550002222", page_size=3)) == 5
    now = datetime.datetime.now(datetime.timezone.utc)
    assert len(client.calls.list(start_time_after=now - datetime.timedelta(hours=1))) == 5
    assert client.calls.list(start_time_before=now - datetime.timedelta(hours=1)) == []
    first = client.calls.page(page_size=3)
    second = first.next_page()
    assert [c.sid for page in (first, second) for c in page] == newest_first
    assert second.next_page() is None


def test_errors_raise_with_the_code(client, callml):
    with pytest.raises(TwilioRestException) as missing:
        client.calls("CA" + "0" * 32).fetch()
    assert (missing.value.status, missing.value.code) == (404, 20404)
    with pytest.raises(TwilioRestException) as no_to:
        client.calls.create(to="client:no body", from_="+15550001111", url="http://127.0.0.1:9/x")
    assert no_to.value.code == 21211


def test_recordings(client, callml):
    recording = client.recordings(callml.recording_sid).fetch()
    assert recording.call_sid == callml.call_sids[0]
    assert [r.sid for r in client.recordings.list()] == [callml.recording_sid]


def test_call_notifications(client, callml):
    notifications = client.calls(callml.call_sids[0]).notifications.list()
    assert [(n.error_code, n.log) for n in notifications] == [("11200", "0")]


def test_request_validator_accepts_the_signalwire_signature(callml):
    validator = RequestValidator(callml.auth_token)
    for fetch in callml.fetches:
        params = dict(fetch["params"])
        assert validator.validate(fetch["url"], params, fetch["signalwire_signature"])
        assert not RequestValidator("another-token").validate(
            fetch["url"], params, fetch["signalwire_signature"]
        )


@pytest.mark.outbound
def test_outbound_call_redirect_and_hangup(client, callml):
    target = f"sip:uas@{callml.sipp_uas};transport=udp"
    call = client.calls.create(
        to=target, from_="+15550001111", twiml="<Response><Pause length=\"30\"/></Response>"
    )
    assert call.status == "queued"
    assert call.direction == "outbound-api"
    deadline = time.monotonic() + 20
    while client.calls(call.sid).fetch().status != "in-progress":
        assert time.monotonic() < deadline, "never answered"
        time.sleep(0.2)
    client.calls(call.sid).update(twiml="<Response><Pause length=\"30\"/></Response>")
    client.calls(call.sid).update(status="completed")
    while client.calls(call.sid).fetch().status != "completed":
        assert time.monotonic() < deadline, "never completed"
        time.sleep(0.2)
