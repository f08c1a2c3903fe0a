"""Shared fixtures for the helper-library tests.

These tests run against a callml that tests/api.rs started and populated (inbound calls made
with sipp, one recording, the document fetches callml signed). Run them through
`cargo test --test api`; the environment below is how the Rust side hands the data over.
The `conference` tests run against a live conference of sipp callers that
tests/rooms_peers.rs sets up instead (`cargo test --test rooms_peers`).
"""

import json
import os
from types import SimpleNamespace

import pytest


def _require(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: run these tests through `cargo test --test api`, "
            "which starts callml and sets the CALLML_* variables"
        )
    return value


@pytest.fixture(scope="session")
def server():
    """Where callml is and its credentials: all that every test needs."""
    return SimpleNamespace(
        url=_require("CALLML_URL"),
        account_sid=_require("CALLML_ACCOUNT_SID"),
        auth_token=_require("CALLML_AUTH_TOKEN"),
    )


@pytest.fixture(scope="session")
def conference():
    """A conference under way (tests/rooms_peers.rs): its name, the call SIDs of the sipp
    phones in it (each sending a tone of its own), and a sipp UAS that answers to add one."""
    return SimpleNamespace(
        name=_require("CALLML_CONFERENCE_NAME"),
        call_sids=_require("CALLML_CONFERENCE_CALLS").split(","),
        sipp_uas=_require("CALLML_SIPP_UAS"),
    )


@pytest.fixture(scope="session")
def callml():
    return SimpleNamespace(
        url=_require("CALLML_URL"),
        account_sid=_require("CALLML_ACCOUNT_SID"),
        auth_token=_require("CALLML_AUTH_TOKEN"),
        # Oldest first.
        call_sids=_require("CALLML_CALL_SIDS").split(","),
        recording_sid=_require("CALLML_RECORDING_SID"),
        fetches=json.loads(_require("CALLML_FETCHES")),
        sipp_uas=os.environ.get("CALLML_SIPP_UAS"),
        app_url=os.environ.get("CALLML_APP_URL"),
    )
