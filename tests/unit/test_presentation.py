"""Who a leg presents as the caller (core/presentation.py, sip/message.caller_id)."""

from __future__ import annotations

import pytest

from gateway.core.presentation import (
    CallerId,
    Policy,
    Present,
    Presentation,
    Redirection,
    present,
)
from gateway.sip.message import caller_id

PUBLIC = "+3225550100"
TARGET = "sip:+32470000002@trunk.example:5060"
ALICE = CallerId("+32470999999", "Alice", (), "+32470999999")


def shown(caller: CallerId, **policy: object) -> Presentation:
    return present(caller, PUBLIC, TARGET, "trunk.example", Policy(**policy))  # type: ignore[arg-type]


def test_the_callers_number_and_name_are_presented() -> None:
    got = shown(ALICE, assert_identity=True)
    assert got.from_uri == '"Alice" <sip:+32470999999@trunk.example>'
    assert dict(got.headers) == {
        "P-Asserted-Identity": "<sip:+32470999999@trunk.example>",
        "Diversion": "<sip:+3225550100@trunk.example>;reason=unconditional;counter=1",
    }


def test_without_a_name_the_number_is_the_display_name() -> None:
    got = shown(CallerId("+32470999999", None, (), "+32470999999"))
    assert got.from_uri == '"+32470999999" <sip:+32470999999@trunk.example>'
    assert "P-Asserted-Identity" not in dict(got.headers)  # only when the trunk wants it


def test_public_presents_the_public_number_only() -> None:
    got = shown(ALICE, present=Present.PUBLIC, assert_identity=True)
    assert got.from_uri == '"+3225550100" <sip:+3225550100@trunk.example>'
    assert dict(got.headers)["P-Asserted-Identity"] == "<sip:+3225550100@trunk.example>"
    assert "Alice" not in str(got)
    assert "+32470999999" not in str(got)


def test_history_info_names_the_public_number_then_the_target() -> None:
    got = dict(shown(ALICE, redirection=Redirection.HISTORY_INFO).headers)
    assert got["History-Info"] == (
        "<sip:+3225550100@trunk.example>;index=1, "
        "<sip:+32470000002@trunk.example:5060;cause=302>;index=1.1;mp=1"
    )


@pytest.mark.parametrize(
    "caller",
    [
        CallerId("+32470999999", "Alice", ("id",), "anonymous"),
        CallerId("+32470999999", None, ("id",), "+32470999999"),  # Privacy: id alone
        CallerId("+32470999999", None, (), "anonymous"),  # anonymous From alone
        CallerId(None, None, (), None),  # no number at all
    ],
)
def test_a_withheld_number_stays_withheld(caller: CallerId) -> None:
    got = shown(caller, assert_identity=True)
    assert got.from_uri == '"Anonymous" <sip:anonymous@anonymous.invalid>'
    assert dict(got.headers)["Privacy"] == "id"
    assert "P-Asserted-Identity" not in dict(got.headers)
    assert "+32470999999" not in str(got)
    assert "Alice" not in str(got)


def test_a_withheld_number_through_a_public_only_trunk_asserts_the_public_number() -> None:
    hidden = CallerId("+32470999999", None, ("id", "critical"), "anonymous")
    got = dict(shown(hidden, present=Present.PUBLIC, assert_identity=True).headers)
    assert got["P-Asserted-Identity"] == "<sip:+3225550100@trunk.example>"
    assert got["Privacy"] == "id; critical"


def test_what_the_caller_controls_is_escaped() -> None:
    sly = CallerId("12 3>@evil", 'Eve" <sip:x@y>\r\nX-Evil: 1\\', (), "123")
    got = shown(sly)
    assert got.from_uri == r'"Eve\" <sip:x@y>X-Evil: 1\\" <sip:12%203%3E%40evil@trunk.example>'


RAW = (
    "INVITE sip:+3225550100@gw SIP/2.0\r\n"
    'From: "Alice \\"A\\"" <sip:%2B32470999999@trunk>;tag=1\r\n'
    "To: <sip:+3225550100@gw>\r\n"
    "{extra}"
    "Content-Length: 0\r\n\r\n"
)


def test_the_incoming_invite_gives_the_caller_id() -> None:
    got = caller_id(RAW.format(extra=""))
    assert got == CallerId("+32470999999", 'Alice "A"', (), "+32470999999")
    assert not got.hidden


def test_the_asserted_identity_and_privacy_of_the_incoming_invite() -> None:
    extra = "P-Asserted-Identity: <sip:+32470111111@trunk>\r\nPrivacy: id;Critical\r\n"
    got = caller_id(RAW.format(extra=extra))
    assert (got.number, got.privacy, got.hidden) == ("+32470111111", ("id", "critical"), True)
