"""The SIPp harness and scenario pairs, SIPp against SIPp, without the gateway.

These prove that a failing gateway test is the gateway's fault: each caller
scenario completes against the phone scenario it will meet behind the gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sipp import RtpSink, SipMessage, parse_trace

if TYPE_CHECKING:
    from conftest import SippFactory

pytestmark = pytest.mark.integration
SILENCE_RMS = 50  # A-law silence (0xD5) decodes to +-8; the pcap's speech is far louder


def test_answered_call_echoes_the_callers_audio(sipp: SippFactory) -> None:
    phone = sipp("phone_answer", rtp_echo=True, keys={"answer_ms": 200}).start()
    caller = sipp("caller_answered", remote=phone.address, keys={"hold_ms": 1500})
    with RtpSink(caller.rx_port) as sink:
        caller.start()
        called = caller.wait()
        sink.drain()
    answered = phone.wait()

    called.assert_success()
    answered.assert_success()
    assert called.final_response().status == 200
    assert answered.received("BYE"), answered.describe()
    assert len(sink.packets) > 20, called.describe()
    assert sink.rms() > SILENCE_RMS, "the echoed audio is silence"


@pytest.mark.parametrize(
    ("scenario", "code", "cause"),
    [("phone_reject_reason", 404, 1), ("phone_reject_reason", 480, 1), ("phone_reject", 486, None)],
)
def test_refused_call_reports_code_and_reason(
    sipp: SippFactory, scenario: str, code: int, cause: int | None
) -> None:
    phone = sipp(scenario, keys={"code": code, "cause": 1}).start()
    caller = sipp("caller_refused", remote=phone.address).start()

    final = caller.wait().final_response()
    phone.wait().assert_success()

    assert final.status == code
    assert final.q850_cause == cause
    assert caller.result is not None
    caller.result.assert_success()


def test_caller_cancel_reaches_the_ringing_phone(sipp: SippFactory) -> None:
    phone = sipp("phone_ring_forever").start()
    caller = sipp("caller_cancels", remote=phone.address, keys={"ring_ms": 300}).start()

    called = caller.wait()
    rung = phone.wait()

    called.assert_success()
    rung.assert_success()
    assert rung.received("CANCEL")
    assert called.final_response().status == 487
    assert rung.received("ACK")


def test_early_media_is_played_until_cancel(sipp: SippFactory) -> None:
    phone = sipp("phone_early_media").start()
    caller = sipp("caller_cancels", remote=phone.address, keys={"ring_ms": 800})
    with RtpSink(caller.rx_port) as sink:
        caller.start()
        caller.wait().assert_success()
        sink.drain()
    phone.wait().assert_success()

    assert phone.result is not None
    assert phone.result.sent(status=183)[0].body.startswith("v=0")
    assert sink.rms() > SILENCE_RMS, "the announcement did not reach the caller's socket"


def test_silent_phone_swallows_retransmissions_and_ends_alone(sipp: SippFactory) -> None:
    phone = sipp("phone_silent", recv_timeout_ms=1800).start()
    caller = sipp("caller_nosdp", remote=phone.address, recv_timeout_ms=1500).start()

    called = caller.wait()
    silent = phone.wait()

    called.assert_success()
    silent.assert_success()
    assert len(silent.received("INVITE")) >= 2, "no retransmission reached the phone"
    assert not silent.sent()
    assert not called.received()


def test_registrar_challenges_then_accepts_and_refreshes(sipp: SippFactory) -> None:
    keys = {"user": "gw", "password": "pw", "expires": 40}
    registrar = sipp("registrar", keys=keys, recv_timeout_ms=3000).start()
    client = sipp("register_client", remote=registrar.address, keys=keys)

    client.start().wait().assert_success()
    registrar.wait().assert_success()

    assert registrar.result is not None
    answers = [m.status for m in registrar.result.sent()]
    assert answers == [401, 200, 200, 200]
    accepted = registrar.result.sent(status=200)[0]
    assert accepted.header("Expires") == "40"
    assert (accepted.header("Contact") or "").endswith(";expires=40")


def test_registrar_checks_the_password(sipp: SippFactory) -> None:
    registrar = sipp("registrar", keys={"password": "right"}, recv_timeout_ms=1500).start()
    client = sipp("register_client", remote=registrar.address, keys={"password": "wrong"})

    called = client.start().wait()
    registrar.wait()

    assert called.exit_code != 0
    assert [m.status for m in called.received()] == [401, 401]


def test_registrar_503_is_down_first_then_accepts(sipp: SippFactory) -> None:
    registrar = sipp("registrar_503", keys={"fails": 1}, recv_timeout_ms=2000).start()
    client = sipp("register_client", remote=registrar.address, keys={"retry_ms": 200})

    client.start().wait().assert_success()
    registrar.wait().assert_success()

    assert registrar.result is not None
    first = registrar.result.sent()[0]
    assert (first.status, first.header("Retry-After")) == (503, "1")
    assert [m.status for m in registrar.result.sent()][1:] == [401, 200, 200, 200]


def test_trunk_operator_refuses_the_unassigned_number_only(sipp: SippFactory) -> None:
    operator = sipp("trunk_operator", calls=2, rtp_echo=True).start()
    refused = sipp("caller_refused", remote=operator.address, keys={"dial": "+32470000001"})
    answered = sipp(
        "caller_answered", remote=operator.address, keys={"dial": "+32480000002", "hold_ms": 300}
    )

    final = refused.start().wait().final_response()
    answered.start().wait().assert_success()
    operator.wait().assert_success(calls=2)

    assert (final.status, final.q850_cause) == (404, 1)


def test_trace_parser_reads_headers_and_reason() -> None:
    trace = (
        "----------------------------------------------- 2026-01-01 00:00:00.0\n"
        "UDP message received [99] bytes :\n\n"
        "SIP/2.0 404 Not Found\r\nCSeq: 1 INVITE\r\n"
        'Reason: SIP;cause=404, Q.850;cause=1;text="x"\r\nContent-Length: 0\r\n\r\n'
    )
    (message,) = parse_trace(trace)
    assert message == SipMessage("received", message.text)
    assert (message.status, message.cseq_method, message.q850_cause) == (404, "INVITE", 1)


def test_phone_checks_caller_fails_a_call_that_hides_the_caller(sipp: SippFactory) -> None:
    # caller_answered sends a bare From <sip:cli@…>: no display name, no
    # P-Asserted-Identity, no Diversion. The phone's checks must fail it.
    phone = sipp("phone_checks_caller", keys={"answer_ms": 100}).start()
    sipp("caller_answered", remote=phone.address, keys={"hold_ms": 300}).start().wait()
    checked = phone.wait()
    assert checked.failed == 1, checked.describe()
    assert checked.successful == 0, checked.describe()
