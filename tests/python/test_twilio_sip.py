"""The official `twilio` library (9.x) drives callml's SIP resources: domains, credential lists
and credentials, IP access control lists and addresses, and the domain's mappings.

Run through `cargo test --test registrar`, which starts callml, sets CALLML_URL,
CALLML_ACCOUNT_SID and CALLML_AUTH_TOKEN, and afterwards registers a phone with the credential
made here (domain `py.sip.callml.test`, user `alice`, password `IWasAtSignal2018`).
"""

import base64
import json
import os
import urllib.request

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client


@pytest.fixture
def sip():
    client = Client(os.environ["CALLML_ACCOUNT_SID"], os.environ["CALLML_AUTH_TOKEN"])
    client.api.base_url = os.environ["CALLML_URL"]
    return client.api.account.sip


def fetch_raw(uri):
    """The JSON callml serves at `uri`, as it is on the wire."""
    request = urllib.request.Request(os.environ["CALLML_URL"] + uri)
    token = f'{os.environ["CALLML_ACCOUNT_SID"]}:{os.environ["CALLML_AUTH_TOKEN"]}'
    request.add_header("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def test_a_domain_with_credentials_and_mappings(sip):
    domain = sip.domains.create(
        domain_name="py.sip.callml.test",
        friendly_name="Python",
        voice_url="http://127.0.0.1:9/voice",
        voice_method="GET",
        sip_registration=True,
    )
    assert domain.sid.startswith("SD")
    assert domain.domain_name == "py.sip.callml.test"
    assert domain.sip_registration is True
    assert domain.voice_method == "GET"

    phones = sip.credential_lists.create(friendly_name="Phones")
    credential = phones.credentials.create(username="alice", password="IWasAtSignal2018")
    assert credential.username == "alice"
    assert credential.credential_list_sid == phones.sid
    raw = fetch_raw(credential.uri)
    assert raw["username"] == "alice"
    assert not any("password" in key for key in raw), raw

    with pytest.raises(TwilioRestException) as weak:
        phones.credentials.create(username="bob", password="abc123")
    assert (weak.value.status, weak.value.code) == (400, 20001)
    assert "12 characters" in weak.value.msg

    auth = sip.domains(domain.sid).auth
    registrations = auth.registrations.credential_list_mappings.create(
        credential_list_sid=phones.sid
    )
    assert registrations.sid == phones.sid
    auth.calls.credential_list_mappings.create(credential_list_sid=phones.sid)

    office = sip.ip_access_control_lists.create(friendly_name="Office")
    lan = office.ip_addresses.create(
        friendly_name="LAN", ip_address="10.0.0.0", cidr_prefix_length=8
    )
    assert (lan.ip_address, lan.cidr_prefix_length) == ("10.0.0.0", 8)
    auth.calls.ip_access_control_list_mappings.create(ip_access_control_list_sid=office.sid)

    assert [m.sid for m in auth.registrations.credential_list_mappings.list()] == [phones.sid]
    assert [m.sid for m in auth.calls.ip_access_control_list_mappings.list()] == [office.sid]
    # The older paths name the call mappings too.
    assert [m.sid for m in sip.domains(domain.sid).credential_list_mappings.list()] == [phones.sid]
    assert [c.username for c in phones.credentials.list()] == ["alice"]
    assert domain.sid in [d.sid for d in sip.domains.list()]
    assert set(sip.domains(domain.sid).fetch().auth_type.split(",")) == {
        "IP_ACL",
        "CREDENTIAL_LIST",
    }

    updated = sip.domains(domain.sid).update(voice_url="http://127.0.0.1:9/other")
    assert updated.voice_url == "http://127.0.0.1:9/other"
    assert updated.voice_method == "GET"

    with pytest.raises(TwilioRestException) as in_use:
        sip.credential_lists(phones.sid).delete()
    assert in_use.value.status == 400

    # Calls from the domain need no source check: the IP ACL mapping goes, the list stays.
    assert auth.calls.ip_access_control_list_mappings(office.sid).delete()
    assert auth.calls.ip_access_control_list_mappings.list() == []


def test_errors_and_deletion(sip):
    with pytest.raises(TwilioRestException) as taken:
        sip.domains.create(domain_name="py.sip.callml.test")
    assert taken.value.status == 400
    with pytest.raises(TwilioRestException) as bad:
        sip.domains.create(domain_name="not a host")
    assert (bad.value.status, bad.value.code) == (400, 20001)
    spare = sip.domains.create(domain_name="spare.sip.callml.test")
    assert sip.domains(spare.sid).delete()
    with pytest.raises(TwilioRestException) as gone:
        sip.domains(spare.sid).fetch()
    assert (gone.value.status, gone.value.code) == (404, 20404)
    with pytest.raises(TwilioRestException) as missing:
        sip.credential_lists("CL" + "0" * 32).credentials.create(
            username="x", password="IWasAtSignal2018"
        )
    assert missing.value.status == 404
