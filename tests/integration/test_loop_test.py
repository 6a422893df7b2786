"""The inbound loop test against carriers: the call comes back, is blocked, never
comes, or is answered elsewhere; each gives its documented verdict and event.

The trunk is SIPp behind the gateway's proxy setting. A carrier that loops the
call back is a second SIPp, started once the gateway has placed its test call,
sending the INVITE for the public number to the gateway: it accepts only a 603
(``carrier_loops_back``), so a looped call that were answered fails the test.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from gateway_process import GatewayProcess
from test_health_probes import events, wait_for

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import SippFactory
    from mailserver import MailServer
    from sipp import Sipp

pytestmark = pytest.mark.integration
PUBLIC = "+3225550100"
TEST_LINE = "+32470000009"
ADMIN = "admin@example.com"
WITHIN_S = 2.0  # the rules' loop_test.within: late after it, nothing after twice it
MAILED = {"inconclusive": "inbound loop test inconclusive", "alarm": "INBOUND CALLS BROKEN"}


def rules(desk: Sipp) -> str:
    """A public number that rings a desk phone; a loop test soon after start, then every 30 s."""
    return (
        "version: 1\ncountry: BE\n"
        f'targets: {{desk: {{uri: "sip:desk@{desk.address}"}}}}\n'
        f'routes: [{{name: main-line, match: {{to: "{PUBLIC}"}}, '
        "steps: [{ring: desk, timeout: 5s}]}]\n"
        f"alerts: {{email: [{ADMIN}], coalesce: 1s}}\n"
        f'loop_test: {{call: "{PUBLIC}", from: "{TEST_LINE}", every: 30s, within: {WITHIN_S}s}}\n'
    )


def verdict(gateway: GatewayProcess, timeout: float = 15.0) -> dict[str, Any]:
    return wait_for(gateway, "inbound.health", lambda _e: True, timeout)


def call_placed(gateway: GatewayProcess, timeout: float = 10.0) -> None:
    """Wait until the gateway has sent its test call to the trunk."""
    deadline = time.monotonic() + timeout
    while "loop test loop-1: calling" not in gateway.log:
        assert time.monotonic() < deadline, "no loop test placed\n" + gateway.describe()
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("dial", "cli"),
    [(PUBLIC, TEST_LINE), ("025550100", "0470000009"), ("3225550100", "0032470000009")],
    ids=["e164", "national", "international"],
)
def test_the_call_back_from_the_trunk_is_refused_603_and_the_test_passes(
    dial: str, cli: str, sipp: SippFactory, gateway_dir: Path
) -> None:
    trunk = sipp("phone_ring_forever", calls=None, timeout_s=40).start()
    desk = sipp("phone_reject", calls=None, timeout_s=40, keys={"code": 486}).start()
    with GatewayProcess(gateway_dir, rules(desk), proxy=trunk.address) as gateway:
        call_placed(gateway)
        looped = sipp("carrier_loops_back", remote=gateway.address, keys={"dial": dial, "cli": cli})
        looped.start().wait().assert_success()  # it got 603, nothing else
        result = verdict(gateway)
        assert (result["verdict"], result["level"]) == ("arrived", "ok"), result
        assert result["after_s"] < WITHIN_S
        assert (result["call"], result["from"]) == (PUBLIC, TEST_LINE)
        cancelled = trunk.collect()
    gateway.assert_clean_exit()
    invite = cancelled.received("INVITE")[0]
    assert f"<sip:{TEST_LINE}@" in (invite.header("From") or ""), invite.text
    assert cancelled.received("CANCEL"), "the test's own call was not ended"
    assert not desk.collect().received("INVITE"), "the looped call was routed"
    assert not events(gateway, "call.incoming"), "the looped call became a call"


def test_a_call_from_a_replaced_caller_is_put_through_and_the_test_is_inconclusive(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    trunk = sipp("phone_ring_forever", calls=None, timeout_s=40).start()
    desk = sipp("phone_reject", calls=None, timeout_s=40, keys={"code": 486}).start()
    with GatewayProcess(gateway_dir, rules(desk), proxy=trunk.address) as gateway:
        call_placed(gateway)
        # The carrier put its own number in From: this may be a customer.
        other = sipp("caller_refused", remote=gateway.address, keys={"cli": "+3222222222"})
        other.start().wait().assert_success()
        result = verdict(gateway)
    gateway.assert_clean_exit()
    assert (result["verdict"], result["level"]) == ("other_caller", "inconclusive"), result
    assert "+3222222222" in result["text"]
    assert desk.collect().received("INVITE"), "a caller who may be a customer was refused"


@pytest.mark.parametrize(
    ("scenario", "keys", "expected", "words"),
    [
        ("phone_reject", {"code": 403}, ("blocked", "inconclusive", 403), "second trunk"),
        ("phone_reject", {"code": 404}, ("not_routed", "alarm", 404), "not routed"),
        ("phone_ring_forever", {}, ("nothing", "alarm", None), "do not reach this gateway"),
        ("phone_answer", {"answer_ms": 100}, ("answered", "alarm", 200), "answered elsewhere"),
    ],
    ids=["loop-blocked", "not-routed", "never-delivered", "answered"],
)
def test_each_carrier_gives_its_verdict_and_an_alarm_is_mailed(
    scenario: str,
    keys: dict[str, int],
    expected: tuple[str, str, int | None],
    words: str,
    sipp: SippFactory,
    gateway_dir: Path,
    mail: MailServer,
) -> None:
    trunk = sipp(scenario, calls=None, timeout_s=40, keys=keys).start()
    desk = sipp("phone_reject", calls=None, timeout_s=40, keys={"code": 486}).start()
    mail.start()
    with GatewayProcess(gateway_dir, rules(desk), proxy=trunk.address, env=mail.env()) as gateway:
        result = verdict(gateway)
        deadline = time.monotonic() + 10
        while not mail.inbox.accepted and time.monotonic() < deadline:
            time.sleep(0.1)
        seen = trunk.collect()
    gateway.assert_clean_exit()
    assert (result["verdict"], result["level"], result["sip_code"]) == expected, result
    assert words in result["text"]
    if expected[0] == "nothing":
        assert result["after_s"] >= 2 * WITHIN_S
    if expected[0] == "answered":
        assert seen.received("BYE"), "the call answered elsewhere was not hung up"
    (alert,) = [m for m in mail.inbox.accepted if m["To"] == ADMIN]
    assert alert["Subject"].split()[:3] == ["sip-failover:", *MAILED[expected[1]].split()[:2]]
    assert words in alert.get_content()
