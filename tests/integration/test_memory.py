"""Calls leave no memory behind once pjsip is done with them.

Each call's SIP transactions and dialogs (their pools: the messages kept for
retransmission, the SDP) live on in pjsip until timer J or D ends them, 32 s
after the call over UDP (RFC 3261 17.1.1.2, 17.2.2): about 55 kB a call. Once
they are gone glibc kept the freed pages (about 20 MB after 300 calls), until
the gateway gives them back when pjsip has nothing left in progress
(``gateway/sip/idle.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from gateway_process import GatewayProcess, observed
from rulesets import CALLED, one_phone

if TYPE_CHECKING:
    from conftest import SippFactory

pytestmark = pytest.mark.integration
CALLS = 100
RATE = 10  # calls/s, one at a time
GREW_MB = 3.0  # what CALLS calls add to the heap while pjsip holds them (measured 5.5)
BACK_WITHIN_MB = 1.5  # the heap once pjsip is done with them, against fresh
TIMER_J_S = 32.0  # the last call's BYE transaction lives this long over UDP


def heap_mb(pid: int) -> float:
    """Resident size of the process's C heap (glibc's main arena), MB."""
    rss, heap = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if not line[0].isupper():  # a mapping's first line: "start-end perms … [name]"
            heap = line.endswith("[heap]")
        elif heap and line.startswith("Rss:"):
            rss += int(line.split()[1])
    return rss / 1024


def test_the_heap_goes_back_to_its_fresh_size_once_calls_are_over(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    phone = sipp("phone_answer", calls=CALLS, keys={"answer_ms": 0}).start()
    env = {"SIP_FAILOVER_SIP__MAX_CALLS_PER_SOURCE_PER_MINUTE": "100000"}
    with GatewayProcess(gateway_dir, one_phone(phone.address), env=env) as gateway:
        assert gateway.process is not None
        pid = gateway.process.pid
        fresh = heap_mb(pid)
        caller = sipp("caller_answered", remote=gateway.address, calls=CALLS,
                      keys={"hold_ms": 20, "dial": CALLED}, timeout_s=CALLS + 60,
                      extra=("-l", "1", "-r", str(RATE)))  # fmt: skip
        caller.start().wait().assert_success(calls=CALLS)
        peak = heap_mb(pid)
        back = observed(TIMER_J_S + 20, lambda: heap_mb(pid) <= fresh + BACK_WITHIN_MB)
        last = heap_mb(pid)
    gateway.assert_clean_exit()
    assert peak >= fresh + GREW_MB, f"the calls did not grow the heap: {fresh:.1f} -> {peak:.1f}"
    assert back, (
        f"heap {fresh:.1f} MB fresh, {peak:.1f} MB after {CALLS} calls, still {last:.1f} MB "
        f"{TIMER_J_S + 20:.0f} s later\n{gateway.describe()}"
    )
