"""Only targets named in the rules are ever dialled.

A gateway built on a SIP user agent inherits its helpfulness: pjsua, left to
itself, accepts a REFER (202) and dials the Refer-To target on the same
account: a caller could have the gateway call a premium number through the
business's trunk. It also accepts an INVITE with Replaces for a call in
progress (skipping the account selection that keeps strangers out). The
gateway declines both (603), and nothing is dialled.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

import pytest
from gateway_process import GatewayProcess
from rulesets import one_phone
from sipp import LOOPBACK

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import SippFactory
    from sipp import SipMessage

pytestmark = pytest.mark.integration

PREMIUM = "+32900123456"
STRANGER = "127.0.0.2"


def test_a_caller_cannot_transfer_the_call_to_a_number_of_their_choice(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    phone = sipp("phone_answer", keys={"answer_ms": 100}).start()
    trunk = sipp("phone_answer", timeout_s=15, recv_timeout_ms=8000).start()  # legs to numbers
    with GatewayProcess(gateway_dir, one_phone(phone.address), proxy=trunk.address) as gateway:
        refer_to = f"sip:{PREMIUM}@{trunk.address}"
        caller = sipp("caller_refers", remote=gateway.address,
                      keys={"hold_ms": 500, "refer_to": refer_to})  # fmt: skip
        caller.start().wait().assert_success()  # the REFER got 603, the call went on
        phone.wait().assert_success()
        assert not trunk.collect().received(), "the gateway dialled the REFER's target"
        assert f"REFER to <sip:{PREMIUM}@" in gateway.log, "the refusal is not in the log"
    gateway.assert_clean_exit()


def _replaces_invite(gateway: GatewayProcess, dialog: SipMessage, port: int) -> bytes:
    """An INVITE from a stranger that claims to replace the caller's dialog (RFC 3891)."""
    call_id = dialog.header("Call-ID")
    caller_tag = (dialog.header("From") or "").split("tag=")[1]
    gateway_tag = (dialog.header("To") or "").split("tag=")[1]
    sdp = (f"v=0\r\no=- 1 1 IN IP4 {STRANGER}\r\ns=-\r\nc=IN IP4 {STRANGER}\r\nt=0 0\r\n"
           f"m=audio {port + 2} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")  # fmt: skip
    return (
        f"INVITE sip:+3225550100@{gateway.address} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {STRANGER}:{port};branch=z9hG4bK-replaces-1;rport\r\n"
        f"From: <sip:intruder@{STRANGER}>;tag=intruder1\r\n"
        f"To: <sip:+3225550100@{gateway.address}>\r\n"
        f"Call-ID: replaces-attempt@{STRANGER}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:intruder@{STRANGER}:{port}>\r\nMax-Forwards: 70\r\n"
        f"Replaces: {call_id};to-tag={gateway_tag};from-tag={caller_tag}\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def _final_status(sock: socket.socket) -> int:
    """The first final status the gateway answers (provisional ones skipped), bounded."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        status = int(sock.recv(65535).split(b" ", 2)[1])
        if status >= 200:
            return status
    raise AssertionError("no final answer to the INVITE with Replaces")


def test_a_stranger_cannot_take_over_a_call_with_replaces(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    phone = sipp("phone_answer", keys={"answer_ms": 100}).start()
    with GatewayProcess(gateway_dir, one_phone(phone.address)) as gateway:
        caller = sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 3000}).start()
        deadline = time.monotonic() + 5
        while not (answered := caller.collect().received(status=200)):
            assert time.monotonic() < deadline, "the call was not answered"
            time.sleep(0.1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((STRANGER, 0))
            sock.sendto(_replaces_invite(gateway, answered[0], sock.getsockname()[1]),
                        (LOOPBACK, gateway.port))  # fmt: skip
            assert _final_status(sock) == 603
        caller.wait().assert_success()  # the real call went on to its own BYE
        assert phone.wait().received("BYE"), "the phone's leg did not end with the call"
    gateway.assert_clean_exit()


def test_a_phone_that_asks_for_credentials_never_gets_the_trunks(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    # The gateway's trunk account has credentials (GatewayProcess sets them);
    # a leg to a SIP URI that is not the trunk's server must not offer them.
    pbx = sipp("phone_challenges", recv_timeout_ms=8000).start()
    with GatewayProcess(gateway_dir, one_phone(pbx.address)) as gateway:
        final = sipp("caller_refused", remote=gateway.address).start().wait().final_response()
        assert final.status >= 400  # the step failed (401 is not an answer)
    gateway.assert_clean_exit()
    invites = pbx.wait().received("INVITE")
    assert invites, "the phone was never rung"
    assert all(m.header("Authorization") is None for m in invites), "credentials were sent"
