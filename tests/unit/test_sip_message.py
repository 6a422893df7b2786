"""Reading raw SIP text (sip/message.py) and an INVITE's offer (sip/signals.offer_of).

The messages are what pjsip hands a callback: already parsed and valid, but
in any of the forms RFC 3261 allows (compact names, folded lines, any case,
LF or CRLF). Caller, called number and Call-ID decide a trunk call's fate
at the gate, so a field misread here turns a caller away.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sip import message
from gateway.sip.signals import offer_of

INVITE = (
    "INVITE sip:+3225550100@gw.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
    'From: "Alice \\"A\\" B" <sip:+32470999999@trunk.example.com>;tag=1\r\n'
    "To: <sip:+3225550100@gw.example.com>\r\n"
    "Call-ID: abc@192.0.2.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Content-Type: application/sdp\r\n"
    "\r\n"
    "v=0\r\nm=audio 4000 RTP/AVP 8\r\n"
)


def test_a_response_has_its_status_and_a_request_none() -> None:
    assert message.status_of("SIP/2.0 404 Not Found\r\n\r\n") == 404
    assert message.status_of("SIP/2.0 183 Session Progress\r\n") == 183
    assert message.status_of(INVITE) is None


def test_a_header_is_found_by_long_or_compact_name_in_any_case() -> None:
    compact = "SIP/2.0 200 OK\r\nI: xyz@host\r\nt: <sip:bob@example.com>;tag=2\r\n\r\n"
    assert message.header(compact, "Call-ID") == "xyz@host"
    assert message.header(compact, "to") == "<sip:bob@example.com>;tag=2"
    assert message.header(INVITE, "CALL-ID") == "abc@192.0.2.1"


def test_a_folded_header_is_read_as_one_line() -> None:
    raw = "SIP/2.0 486 Busy Here\r\nReason: Q.850\r\n ;cause=17\r\n\r\n"
    assert message.header(raw, "Reason") == "Q.850 ;cause=17"


def test_a_header_in_the_body_is_not_a_header() -> None:
    raw = "SIP/2.0 200 OK\r\nContent-Type: text/plain\r\n\r\nReason: not a header\r\n"
    assert message.header(raw, "Reason") is None
    assert message.header(raw, "Missing") is None


def test_the_start_line_is_not_a_header() -> None:
    assert message.header("Reason: x\r\n\r\n", "Reason") is None


def test_lf_only_messages_are_read_too() -> None:
    raw = INVITE.replace("\r\n", "\n")
    assert message.header(raw, "Call-ID") == "abc@192.0.2.1"
    assert message.has_sdp(raw)


def test_sdp_needs_both_its_content_type_and_a_media_line() -> None:
    assert message.has_sdp(INVITE)
    assert not message.has_sdp(INVITE.replace("application/sdp", "text/plain"))
    no_body = "SIP/2.0 183 Session Progress\r\nContent-Type: application/sdp\r\n\r\n"
    assert not message.has_sdp(no_body)


@pytest.mark.parametrize(
    ("value", "user"),
    [
        ("<sip:+32470999999@trunk.example.com>;tag=1", "+32470999999"),
        ("sips:alice@example.com", "alice"),
        ("<tel:+3225550100;phone-context=+32>", "+3225550100"),
        ('"Bob" <SIP:bob@example.com?subject=x>', "bob"),
        ("<http://example.com>", None),
        (None, None),
        ("", None),
    ],
)
def test_the_user_part_of_the_first_uri(value: str | None, user: str | None) -> None:
    assert message.uri_user(value) == user


@pytest.mark.parametrize(
    ("address", "ip"),
    [("192.0.2.7:5060", "192.0.2.7"), ("[::1]:5060", "::1"), ("[2001:db8::1]:5061", "2001:db8::1"),
     ("192.0.2.7", "192.0.2.7"), ("2001:db8::1", "2001:db8::1")],
)  # fmt: skip
def test_the_source_ip_of_pjsuas_source_address(address: str, ip: str) -> None:
    assert message.source_ip(address) == ip


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ('"Alice \\"A\\" B" <sip:a@example.com>', 'Alice "A" B'),
        ("Alice <sip:a@example.com>", "Alice"),
        ("<sip:a@example.com>", None),
        ('"  " <sip:a@example.com>', None),
        ("sip:a@example.com", None),
        (None, None),
    ],
)
def test_the_display_name_of_a_name_addr(value: str | None, name: str | None) -> None:
    assert message.display_name(value) == name


def test_an_invites_offer_names_source_caller_called_and_call_id() -> None:
    offer = offer_of(INVITE, "192.0.2.1:5060")
    assert offer.source == "192.0.2.1"
    assert offer.caller == "+32470999999"
    assert offer.called == ("+3225550100",)
    assert offer.sip_call_id == "abc@192.0.2.1"


def test_the_asserted_identity_wins_over_from_and_the_request_uri_is_a_second_candidate() -> None:
    raw = INVITE.replace(
        "To: <sip:+3225550100@gw.example.com>",
        "P-Asserted-Identity: <tel:+32471000000>\r\nTo: <sip:main@gw.example.com>",
    )
    offer = offer_of(raw, "[2001:db8::1]:5060")
    assert offer.source == "2001:db8::1"
    assert offer.caller == "+32471000000"
    assert offer.called == ("main", "+3225550100")


def test_an_invite_with_no_caller_is_anonymous() -> None:
    raw = INVITE.replace('From: "Alice \\"A\\" B" <sip:+32470999999@trunk.example.com>;tag=1\r\n',
                         "")  # fmt: skip
    assert offer_of(raw, "192.0.2.1:5060").caller == "anonymous"


def _header_line_by_line(raw: str, name: str) -> str | None:
    """The plain reading of RFC 3261 7.3: unfold, then look at each header line."""
    names = {name.lower(), {"content-type": "c", "from": "f", "to": "t",
                            "call-id": "i"}.get(name.lower(), name.lower())}  # fmt: skip
    head = re.split(r"\r?\n\r?\n", raw, maxsplit=1)[0]
    for line in re.sub(r"\r?\n[ \t]+", " ", head).splitlines()[1:]:
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in names:
            return value.strip()
    return None


_NAMES = st.sampled_from(["Reason", "REASON", "reason", "To", "t", "Call-ID", "i", "CSeq", "X"])
_VALUES = st.text(alphabet='abc ;=:\t"Q.850', max_size=12)
_LINES = st.lists(st.tuples(_NAMES, st.sampled_from([":", " :", "\t: ", ": "]), _VALUES,
                            st.booleans()), max_size=6)  # fmt: skip


@given(lines=_LINES, name=_NAMES, eol=st.sampled_from(["\r\n", "\n"]), body=st.booleans())
def test_a_header_reads_as_the_plain_reading_does(
    lines: list[tuple[str, str, str, bool]], name: str, eol: str, body: bool
) -> None:
    """The one-search reading gives what reading line by line gives, on any layout."""
    text = ["SIP/2.0 404 Not Found"]
    for key, colon, value, folded in lines:
        text.append(f"{key}{colon}{value}" + (f"{eol} ;cause=1" if folded else ""))
    raw = eol.join(text) + eol + eol + ("Reason: in the body" + eol if body else "")
    assert message.header(raw, name) == _header_line_by_line(raw, name)
