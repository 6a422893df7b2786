"""Which codec a leg offers first: the caller's, so a bridged call is not transcoded."""

from __future__ import annotations

from gateway.sip.message import offered_codecs

INVITE = (
    "INVITE sip:+3225550100@127.0.0.1 SIP/2.0\r\n"
    "Content-Type: application/sdp\r\n\r\n"
    "v=0\r\nm=audio 4000 RTP/AVP {formats}\r\n{maps}"
)


def test_the_callers_order_is_kept() -> None:
    raw = INVITE.format(formats="0 8 101", maps="a=rtpmap:101 telephone-event/8000\r\n")
    assert offered_codecs(raw) == ("PCMU", "PCMA", "telephone-event")


def test_a_dynamic_payload_type_is_named_by_its_rtpmap() -> None:
    raw = INVITE.format(formats="96 8", maps="a=rtpmap:96 opus/48000/2\r\n")
    assert offered_codecs(raw) == ("opus", "PCMA")


def test_no_sdp_no_codec() -> None:
    assert offered_codecs("INVITE sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n") == ()
