"""The official `twilio` helper library (9.x) against callml, changing only the base URL."""

import base64
import datetime
import time
import urllib.request

import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client


@pytest.fixture
def client(server):
    client = Client(server.account_sid, server.auth_token)
    client.api.base_url = server.url
    return client


def newest_first(callml):
    return list(reversed(callml.call_sids))


def test_fetch_a_call(client, callml):
    call = client.calls(callml.call_sids[0]).fetch()
    assert call.sid == callml.call_sids[0]
    assert call.account_sid == callml.account_sid
    assert call.status == "completed"
    assert call.direction == "inbound"
    assert call.to == "+15550002222"
    assert call._from == "+15550001111"
    assert call.api_version == "2010-04-01"
    assert call.duration == "0"
    assert isinstance(call.date_created, datetime.datetime)
    assert call.date_created.tzinfo is not None
    assert call.start_time <= call.end_time
    assert call.uri.endswith(f"/Calls/{call.sid}.json")


def test_list_every_call_through_pages(client, callml):
    assert [c.sid for c in client.calls.list(page_size=2)] == newest_first(callml)
    assert [c.sid for c in client.calls.stream(page_size=1, limit=3)] == newest_first(callml)[:3]

    # A page is an iterator over its records: read each once.
    first = client.calls.page(page_size=2)
    second = first.next_page()
    third = second.next_page()
    assert third.next_page() is None
    back = second.previous_page()
    pages = [[c.sid for c in page] for page in (first, second, third, back)]
    assert pages[0] + pages[1] + pages[2] == newest_first(callml)
    assert pages[3] == pages[0]


def test_list_filters(client, callml):
    busy = client.calls.list(status="busy")
    assert len(busy) == 1 and busy[0].status == "busy"
    assert len(client.calls.list(status="completed")) == 4
    assert len(client.calls.list(to="+15550002222")) == 5
    assert client.calls.list(to="+19990000000") == []
    assert len(client.calls.list(from_="+15550001111", page_size=3)) == 5
    now = datetime.datetime.now(datetime.timezone.utc)
    hour = datetime.timedelta(hours=1)
    assert len(client.calls.list(start_time_after=now - hour)) == 5
    assert len(client.calls.list(start_time_before=now + hour)) == 5
    assert client.calls.list(start_time_before=now - hour) == []
    assert client.calls.list(start_time_after=now + hour) == []
    # The library sends a date as midnight; StartTime= means that whole day.
    assert len(client.calls.list(start_time=now.date())) == 5
    assert len(client.calls.list(start_time=now)) == 5
    assert client.calls.list(parent_call_sid=callml.call_sids[0]) == []


def test_errors_raise_twilio_rest_exception_with_the_code(client, callml):
    with pytest.raises(TwilioRestException) as missing:
        client.calls("CA" + "0" * 32).fetch()
    assert (missing.value.status, missing.value.code) == (404, 20404)

    intruder = Client(callml.account_sid, "not-the-token")
    intruder.api.base_url = callml.url
    with pytest.raises(TwilioRestException) as denied:
        intruder.calls(callml.call_sids[0]).fetch()
    assert (denied.value.status, denied.value.code) == (401, 20003)

    with pytest.raises(TwilioRestException) as bad_url:
        client.calls.create(to="sip:bob@127.0.0.1", from_="+15550001111", url="not a url")
    assert (bad_url.value.status, bad_url.value.code) == (400, 21205)

    with pytest.raises(TwilioRestException) as bad_to:
        client.calls.create(to="client:no body", from_="+15550001111", url="http://127.0.0.1:9/x")
    assert bad_to.value.code == 21211

    with pytest.raises(TwilioRestException) as long_twiml:
        client.calls.create(to="+15550002222", from_="+15550001111", twiml="x" * 4001)
    assert long_twiml.value.code == 32018

    with pytest.raises(TwilioRestException) as ended:
        client.calls(callml.call_sids[0]).update(twiml="<Response><Hangup/></Response>")
    assert (ended.value.status, ended.value.code) == (400, 21220)


def test_fetch_the_account(client, callml):
    account = client.api.accounts(callml.account_sid).fetch()
    assert account.sid == callml.account_sid
    assert account.status == "active"
    assert isinstance(account.date_created, datetime.datetime)


def test_recordings(client, callml):
    recordings = client.recordings.list()
    assert [r.sid for r in recordings] == [callml.recording_sid]
    recording = client.recordings(callml.recording_sid).fetch()
    assert recording.call_sid == callml.call_sids[0]
    assert recording.status == "completed"
    assert recording.channels == 1
    assert recording.duration == "1"
    assert [r.sid for r in client.calls(callml.call_sids[0]).recordings.list()] == [
        callml.recording_sid
    ]
    assert client.calls(callml.call_sids[1]).recordings.list() == []
    assert download(recording.media_url + ".wav", callml)[:4] == b"RIFF"


def test_call_notifications(client, callml):
    # Each answered call played a missing file: one 11200 error on each; the busy one met none.
    first, rejected = callml.call_sids[0], callml.call_sids[4]
    notifications = client.calls(first).notifications.list()
    assert len(notifications) == 1
    notification = notifications[0]
    assert notification.sid.startswith("NO") and len(notification.sid) == 34
    assert notification.call_sid == first
    assert notification.account_sid == callml.account_sid
    assert (notification.error_code, notification.log) == ("11200", "0")
    assert notification.request_method == "POST"
    assert notification.request_url.endswith("/voice")
    assert "/missing.wav" in notification.message_text
    assert isinstance(notification.message_date, datetime.datetime)
    fetched = client.calls(first).notifications(notification.sid).fetch()
    assert (fetched.sid, fetched.message_text) == (notification.sid, notification.message_text)
    assert client.calls(first).notifications.list(log=1) == []
    today = datetime.datetime.now(datetime.timezone.utc).date()
    assert len(client.calls(first).notifications.list(log=0, message_date=today)) == 1
    assert client.calls(rejected).notifications.list() == []
    assert {n.call_sid for n in client.notifications.list(page_size=3)} == set(callml.call_sids[:4])


def download(url, callml):
    request = urllib.request.Request(url)
    credentials = f"{callml.account_sid}:{callml.auth_token}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"] == "audio/x-wav"
        return response.read()


def test_request_validator_accepts_callml_signatures(callml):
    validator = RequestValidator(callml.auth_token)
    assert len(callml.fetches) == 5
    for fetch in callml.fetches:
        params = dict(fetch["params"])
        assert params["AccountSid"] == callml.account_sid
        assert validator.validate(fetch["url"], params, fetch["signature"])
        assert fetch["signalwire_signature"] == fetch["signature"]
        assert not RequestValidator("another-token").validate(
            fetch["url"], params, fetch["signature"]
        )
        tampered = dict(params, CallStatus="completed-by-someone-else")
        assert not validator.validate(fetch["url"], tampered, fetch["signature"])


def wait_for_status(client, sid, statuses, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        call = client.calls(sid).fetch()
        if call.status in statuses:
            return call
        assert time.monotonic() < deadline, f"call {sid} stayed {call.status}"
        time.sleep(0.2)


def place_call(client, callml, twiml="<Response><Pause length=\"30\"/></Response>", **options):
    """Creates a call to the sipp UAS; returns it and the `to` callml shows for it (a SIP
    party's URI without parameters, CONTRACT.md)."""
    target = f"sip:uas@{callml.sipp_uas};transport=udp"
    call = client.calls.create(
        to=target,
        from_="+15550001111",
        twiml=twiml,
        timeout=10,
        **options,
    )
    return call, f"sip:uas@{callml.sipp_uas}"


@pytest.mark.outbound
def test_outbound_call_redirect_and_hangup(client, callml):
    call, shown = place_call(client, callml)
    assert call.status == "queued"
    assert call.direction == "outbound-api"
    assert call.to == shown
    wait_for_status(client, call.sid, {"in-progress"})

    redirected = client.calls(call.sid).update(
        twiml="<Response><Say>Redirected.</Say><Pause length=\"30\"/></Response>"
    )
    assert redirected.sid == call.sid
    hung_up = client.calls(call.sid).update(status="completed")
    assert hung_up.status == "completed", "the update answers the state the call ends in"
    ended = wait_for_status(client, call.sid, {"completed"})
    assert ended.end_time is not None
    assert call.sid in [c.sid for c in client.calls.list(to=shown)]
    target = f"sip:uas@{callml.sipp_uas};transport=udp"
    assert call.sid in [c.sid for c in client.calls.list(to=target)], "the To given at create"

    with pytest.raises(TwilioRestException) as gone:
        client.calls(call.sid).update(status="completed")
    assert gone.value.code == 21220
    assert client.calls(call.sid).delete()


@pytest.mark.outbound
@pytest.mark.recording
def test_outbound_call_recording_downloads(client, callml):
    # The UAS echoes what it hears: the recording holds the greeting, the silence after it is
    # trimmed away (Twilio's default `trim-silence`).
    call, _ = place_call(
        client,
        callml,
        twiml="<Response><Say>This call is recorded.</Say><Pause length=\"2\"/></Response>",
        record=True,
    )
    wait_for_status(client, call.sid, {"completed"}, timeout=30)
    deadline = time.monotonic() + 20
    while True:
        recordings = client.calls(call.sid).recordings.list()
        if recordings and recordings[0].status == "completed":
            break
        assert time.monotonic() < deadline, "no completed recording"
        time.sleep(0.2)
    assert recordings[0].source == "OutboundAPI"
    assert recordings[0].channels == 1
    assert 1 <= int(recordings[0].duration) <= 4
    # The call-scoped resource has no `media_url` in the library; the account-scoped one does.
    recording = client.recordings(recordings[0].sid).fetch()
    assert recording.call_sid == call.sid
    assert download(recording.media_url + ".wav", callml)[:4] == b"RIFF"


def test_queues_are_made_listed_changed_and_deleted(client):
    name = f"support-{int(time.time() * 1000)}"
    queue = client.queues.create(friendly_name=name, max_size=7)
    assert queue.sid.startswith("QU") and len(queue.sid) == 34
    assert (queue.friendly_name, queue.max_size, queue.current_size) == (name, 7, 0)
    assert queue.average_wait_time == 0
    assert queue.sid in [q.sid for q in client.queues.list()]
    assert client.queues(queue.sid).fetch().friendly_name == name

    changed = client.queues(queue.sid).update(friendly_name=name + "-x", max_size=9)
    assert (changed.friendly_name, changed.max_size) == (name + "-x", 9)
    assert client.queues(queue.sid).members.list() == []
    with pytest.raises(TwilioRestException) as empty:
        client.queues(queue.sid).members("Front").fetch()
    assert (empty.value.status, empty.value.code) == (404, 20404)
    with pytest.raises(TwilioRestException) as too_big:
        client.queues.create(friendly_name=name + "-big", max_size=5001)
    assert too_big.value.status == 400

    assert client.queues(queue.sid).delete() is True
    with pytest.raises(TwilioRestException) as gone:
        client.queues(queue.sid).fetch()
    assert (gone.value.status, gone.value.code) == (404, 20404)


def wait_for_participant(client, conference_sid, call_sid, status, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            participant = client.conferences(conference_sid).participants(call_sid).fetch()
            if participant.status == status:
                return participant
        except TwilioRestException as error:
            assert error.status == 404, error
        assert time.monotonic() < deadline, f"participant {call_sid} never {status}"
        time.sleep(0.2)


@pytest.mark.conference
def test_a_live_conference_listed_muted_joined_and_ended(client, server, conference):
    # Two sipp phones are in the conference, each sending a tone of its own; what they heard
    # is checked by tests/rooms_peers.rs once this test has ended the conference.
    listed = client.conferences.list(friendly_name=conference.name, status="in-progress")
    assert len(listed) == 1
    room = listed[0]
    assert room.sid.startswith("CF") and len(room.sid) == 34
    assert (room.friendly_name, room.status) == (conference.name, "in-progress")
    assert room.account_sid == server.account_sid
    assert room.reason_conference_ended is None
    assert client.conferences.list(friendly_name=conference.name, status="completed") == []
    assert room.sid in [c.sid for c in client.conferences.list(date_created=datetime.date.today())]

    fetched = client.conferences(room.sid).fetch()
    assert (fetched.sid, fetched.status) == (room.sid, "in-progress")
    assert isinstance(fetched.date_created, datetime.datetime)
    assert fetched.uri.endswith(f"/Conferences/{room.sid}.json")

    participants = client.conferences(room.sid).participants.list()
    assert sorted(p.call_sid for p in participants) == sorted(conference.call_sids)
    for participant in participants:
        assert participant.conference_sid == room.sid
        assert (participant.status, participant.muted, participant.hold) == ("connected", False, False)
        assert participant.coaching is False

    # The phones hear each other for a while; then the first one is muted, and the library
    # gets the changed participant back.
    time.sleep(1.5)
    first = conference.call_sids[0]
    muted = client.conferences(room.sid).participants(first).update(muted=True)
    assert (muted.call_sid, muted.conference_sid, muted.muted) == (first, room.sid, True)
    assert client.conferences(room.sid).participants(first).fetch().muted is True
    assert [p.call_sid for p in client.conferences(room.sid).participants.list(muted=True)] == [first]
    assert [p.call_sid for p in client.conferences(room.sid).participants.list(muted=False)] == [
        conference.call_sids[1]
    ]
    # The phones hear the room with the first one muted for a while before the agent joins.
    time.sleep(1.5)

    # Add an agent: callml calls the sipp UAS, which answers and joins.
    added = client.conferences(room.sid).participants.create(
        from_="+15550001111",
        to=f"sip:agent@{conference.sipp_uas};transport=udp",
        label="agent",
        beep="false",
    )
    assert added.call_sid.startswith("CA") and len(added.call_sid) == 34
    assert (added.conference_sid, added.label, added.status) == (room.sid, "agent", "queued")
    agent = wait_for_participant(client, room.sid, added.call_sid, "connected")
    assert (agent.label, agent.muted) == ("agent", False)
    by_label = client.conferences(room.sid).participants("agent").fetch()
    assert by_label.call_sid == added.call_sid
    assert len(client.conferences(room.sid).participants.list()) == 3
    call = client.calls(added.call_sid).fetch()
    assert (call.direction, call.status) == ("outbound-api", "in-progress")
    # Everyone hears the agent (and the agent the unmuted phone) for a while.
    time.sleep(2)

    # End it for everyone: callml hangs up every participant.
    ended = client.conferences(room.sid).update(status="completed")
    assert (ended.sid, ended.status) == (room.sid, "completed")
    done = client.conferences(room.sid).fetch()
    assert done.status == "completed"
    assert done.reason_conference_ended == "conference-ended-via-api"
    assert client.conferences(room.sid).participants.list() == []
    # The list is read from the store, which the conference's task writes once everyone has
    # been hung up: a moment after the fetch (which asks the conference itself) says so.
    deadline = time.monotonic() + 10
    while not client.conferences.list(friendly_name=conference.name, status="completed"):
        assert time.monotonic() < deadline, "the completed conference was never listed"
        time.sleep(0.1)
    assert [c.sid for c in client.conferences.list(friendly_name=conference.name)] == [room.sid]
    assert client.conferences.list(friendly_name=conference.name, status="in-progress") == []
    for sid in conference.call_sids + [added.call_sid]:
        assert wait_for_status(client, sid, {"completed"}).status == "completed"


@pytest.mark.conference
def test_conference_errors_raise_twilio_rest_exception_with_the_code(client):
    with pytest.raises(TwilioRestException) as missing:
        client.conferences("CF" + "0" * 32).fetch()
    assert (missing.value.status, missing.value.code) == (404, 20404)
    with pytest.raises(TwilioRestException) as no_participant:
        client.conferences("CF" + "0" * 32).participants("CA" + "0" * 32).update(muted=True)
    assert (no_participant.value.status, no_participant.value.code) == (404, 20404)
    # A list page the library cannot read raises its base exception with the response.
    with pytest.raises(TwilioException) as no_participants:
        client.conferences("CF" + "0" * 32).participants.list()
    assert "HTTP 404" in str(no_participants.value) and '"code":20404' in str(no_participants.value)
    with pytest.raises(TwilioException) as bad_status:
        client.conferences.list(status="over")
    assert "HTTP 400" in str(bad_status.value)
