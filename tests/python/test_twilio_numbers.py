"""The official `twilio` library (9.x) drives callml's static map of inbound calls:
Applications and IncomingPhoneNumbers.

Run through `cargo test --test trunks`, which starts callml with a trunk, sets CALLML_URL,
CALLML_ACCOUNT_SID, CALLML_AUTH_TOKEN and CALLML_APP_URL (the customer app), and afterwards
calls the numbers made here from that trunk with sipp: +15551230001 runs `/sales`,
+15551230002 runs the application "support" (`/support`), +15551230003 is made and deleted.
"""

import os

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client


@pytest.fixture
def account():
    client = Client(os.environ["CALLML_ACCOUNT_SID"], os.environ["CALLML_AUTH_TOKEN"])
    client.api.base_url = os.environ["CALLML_URL"]
    return client.api.account


def test_numbers_and_applications(account):
    app_url = os.environ["CALLML_APP_URL"]
    support = account.applications.create(
        friendly_name="support",
        voice_url=app_url + "/support",
        voice_method="GET",
        status_callback=app_url + "/status",
    )
    assert support.sid.startswith("AP")
    assert (support.voice_url, support.voice_method) == (app_url + "/support", "GET")
    assert account.applications(support.sid).fetch().friendly_name == "support"

    sales = account.incoming_phone_numbers.create(
        phone_number="+1 (555) 123-0001", voice_url=app_url + "/sales", friendly_name="Sales"
    )
    assert sales.sid.startswith("PN")
    assert sales.phone_number == "+15551230001"
    assert sales.voice_method == "POST"
    routed = account.incoming_phone_numbers.create(
        phone_number="+15551230002", voice_application_sid=support.sid
    )
    assert routed.voice_application_sid == support.sid
    gone = account.incoming_phone_numbers.create(
        phone_number="+15551230003", voice_url=app_url + "/gone"
    )
    account.incoming_phone_numbers(gone.sid).delete()

    listed = account.incoming_phone_numbers.list()
    assert sorted(n.phone_number for n in listed) == ["+15551230001", "+15551230002"]
    only = account.incoming_phone_numbers.list(phone_number="+15551230002")
    assert [n.sid for n in only] == [routed.sid]
    updated = account.incoming_phone_numbers(sales.sid).update(voice_fallback_url=app_url + "/fb")
    assert updated.voice_fallback_url == app_url + "/fb"
    assert updated.voice_url == app_url + "/sales"


def test_bad_numbers_are_refused_with_twilios_codes(account):
    with pytest.raises(TwilioRestException) as invalid:
        account.incoming_phone_numbers.create(phone_number="5551234", voice_url="http://a.b/c")
    assert (invalid.value.status, invalid.value.code) == (400, 21212)
    with pytest.raises(TwilioRestException) as unknown:
        account.incoming_phone_numbers("PN" + "0" * 32).fetch()
    assert (unknown.value.status, unknown.value.code) == (404, 20404)
    with pytest.raises(TwilioRestException) as no_app:
        account.incoming_phone_numbers.create(
            phone_number="+15551239999", voice_application_sid="AP" + "0" * 32
        )
    assert (no_app.value.status, no_app.value.code) == (400, 20001)
    with pytest.raises(TwilioRestException) as nameless:
        account.applications.create(voice_url="http://a.b/c")
    assert nameless.value.status == 400
