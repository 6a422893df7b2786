"""Hostile and odd input never crashes the gateway, and never rings anyone.

The RFC 4475 torture messages are replayed over UDP from the trunk's own
address (the worst case: it passes the source check), then sipvicious scans
and floods the gateway, as a stranger and as the trunk. After each, the
gateway must still answer an OPTIONS within 1 s, must have created no call
and rung no phone, must still serve a real call, and must exit 0.

Everything runs in a network namespace of its own (netns.py): whatever the
gateway answers to the hosts named in those messages cannot leave loopback.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import netns
import pytest
from gateway_process import GatewayProcess, observed
from rulesets import one_phone
from sipp import LOOPBACK

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import SippFactory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.alone,  # scanners and floods: as fast as the machine lets them
    pytest.mark.skipif(not netns.available(), reason="needs root and iproute2 (ip netns)"),
]

CORPUS = Path(__file__).resolve().parents[1] / "data" / "rfc4475"  # RFC 4475, see its README
# sipvicious always sends from 127.0.0.1:5060 (it ignores -b), so where it
# must be a stranger, the trunk is this address instead.
TRUNK_ELSEWHERE = "127.0.0.3"
TORTURE_WINDOW_S = 1.0  # how long a call from a torture message is watched for


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    with netns.isolated_network():
        yield


def calls_created(log: str) -> int:
    """Calls that reached a route's steps (a refused trunk caller is logged, but rings nothing)."""
    return log.count("event call.step")


def refused_before_any_dialog(log: str) -> bool:
    """The gate's refusals were counted and published as a rate."""
    return re.search(r'event calls\.refused_sources \{"per_minute": [1-9]', log) is not None


def test_rfc4475_torture_messages(sipp: SippFactory, gateway_dir: Path) -> None:
    messages = sorted(CORPUS.glob("*.dat"))
    assert len(messages) == 49
    phone = sipp("phone_answer", keys={"answer_ms": 100}, timeout_s=60).start()
    with GatewayProcess(gateway_dir, one_phone(phone.address)) as gateway:
        for message in messages:
            gateway.send_udp(message.read_bytes())
            time.sleep(0.02)
        rang = observed(
            TORTURE_WINDOW_S, lambda: calls_created(gateway.log) or phone.collect().received()
        )
        assert rang is None, f"a torture message made a call in {TORTURE_WINDOW_S} s: {rang}"
        assert gateway.is_alive(), "the gateway stopped answering after the torture messages"
        sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 200}).start().wait(
        ).assert_success()  # fmt: skip
    gateway.assert_clean_exit()


def sipvicious(tool: str, *args: str, seconds: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a sipvicious tool, bounded in time, never reporting anywhere."""
    return subprocess.run(
        [shutil.which(tool) or f"/usr/bin/{tool}", *args],
        capture_output=True, text=True, timeout=seconds, check=False,
    )  # fmt: skip


@pytest.mark.skipif(not shutil.which("svmap"), reason="sipvicious is not installed")
def test_scans_and_a_stranger_flood(sipp: SippFactory, gateway_dir: Path) -> None:
    phone = sipp("phone_answer", keys={"answer_ms": 100}, timeout_s=90).start()
    rules_text = one_phone(phone.address)
    with GatewayProcess(gateway_dir, rules_text, sources=(TRUNK_ELSEWHERE,)) as gateway:
        port = str(gateway.port)
        # A scan with OPTIONS, then with INVITE, then 300 INVITEs to guessed
        # extensions as fast as the tool goes: all from a stranger's address.
        sipvicious("svmap", "-p", port, LOOPBACK)
        sipvicious("svmap", "-p", port, "-m", "INVITE", LOOPBACK)
        sipvicious("svwar", "-p", port, "-m", "INVITE", "-e", "100-399", LOOPBACK)
        assert gateway.is_alive()
        assert calls_created(gateway.log) == 0
        assert not phone.collect().received(), "a scan rang the phone"
        assert refused_before_any_dialog(gateway.log)
        assert "event call.incoming" not in gateway.log, "a stranger was taken for a caller"
        caller = sipp("caller_answered", ip=TRUNK_ELSEWHERE, remote=gateway.address,
                      keys={"hold_ms": 200})  # fmt: skip
        caller.start().wait().assert_success()
    gateway.assert_clean_exit()


@pytest.mark.skipif(not shutil.which("svwar"), reason="sipvicious is not installed")
def test_a_flood_from_the_trunk_address_is_bounded(sipp: SippFactory, gateway_dir: Path) -> None:
    # The trunk's own address passes the source check; the per-source rate
    # limit is what bounds it (before any dialog or socket is spent).
    phone = sipp("phone_answer", keys={"answer_ms": 100}, timeout_s=90).start()
    env = {"SIP_FAILOVER_SIP__MAX_CALLS_PER_SOURCE_PER_MINUTE": "30"}
    with GatewayProcess(gateway_dir, one_phone(phone.address), env=env) as gateway:
        sipvicious("svwar", "-p", str(gateway.port), "-m", "INVITE", "-e", "100-499", LOOPBACK)
        assert gateway.is_alive()
        assert calls_created(gateway.log) == 0, "a guessed extension became a call"
        assert not phone.collect().received()
        assert refused_before_any_dialog(gateway.log), "the rate limit never applied"
        # Within the rate, each guessed extension is a caller refused (no route,
        # or no call slot left in the burst), each logged once.
        ended = gateway.log.count("event call.ended")
        assert 0 < ended <= 30
        assert gateway.log.count('"result": "refused"') == ended
    gateway.assert_clean_exit()
