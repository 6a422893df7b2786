"""Past its call legs, the gateway refuses by its own decision; pjsua never does.

The PyPI wheel's SIP engine has 4 call slots (these tests are sized for it
and skipped with a wider build: tests/integration/test_wide_engine.py covers
that), and pjsua looks for a free one *before* it asks the gateway's gate:
with every slot taken it would answer 486 Busy Here by itself. The gateway
keeps one slot free, so every INVITE reaches its gate.
A caller it cannot ring for gets 503 with Retry-After (or, at the gate,
pjsua's stateless 480 that the gate chose), and the call in progress goes on.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import pytest
from gateway_process import GatewayProcess
from rulesets import one_phone

from gateway.sip.engine_limits import planned_limits
from gateway.sip.limits import WHEEL

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import SippFactory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(planned_limits().call_slots != WHEEL.call_slots,
                       reason="sized for the wheel's 4 call slots"),
]  # fmt: skip

BURST = 20


def test_a_burst_past_capacity_is_refused_by_the_gateway_not_by_pjsua(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    phone = sipp("phone_answer", keys={"answer_ms": 100}, timeout_s=30).start()
    with GatewayProcess(gateway_dir, one_phone(phone.address)) as gateway:
        talking = sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 4000}).start()
        while not talking.collect().received(status=200):
            assert talking.process is not None
            assert talking.process.poll() is None, talking.collect().describe()
        burst = sipp("caller_refused", remote=gateway.address, calls=BURST,
                     extra=("-r", "20", "-l", "10")).start().wait()  # fmt: skip
        finals = Counter(
            m.status for m in burst.received() if m.status and m.status >= 200
            and m.cseq_method == "INVITE"
        )  # fmt: skip
        assert sum(finals.values()) == BURST, burst.describe()
        assert 486 not in finals, f"pjsua refused on its own: {finals}"
        assert set(finals) <= {480, 503}, finals
        refused = burst.received(status=503)
        assert all(m.header("Retry-After") for m in refused)
        talking.wait().assert_success()  # the call in progress was never touched
        assert gateway.is_alive()
    gateway.assert_clean_exit()


def test_a_caller_with_no_leg_to_ring_leaves_a_voicemail(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    phone = sipp("phone_answer", keys={"answer_ms": 100}, timeout_s=30).start()
    with_voicemail = (
        one_phone(phone.address).replace(
            "version: 1\n", "version: 1\nvoicemail:\n  main: {email: office@example.com}\n"
        )
        + "      - voicemail: main\n"
    )
    with GatewayProcess(gateway_dir, with_voicemail) as gateway:
        talking = sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 4000}).start()
        while not talking.collect().received(status=200):
            assert talking.process is not None
            assert talking.process.poll() is None, talking.collect().describe()
        second = sipp("caller_answered", remote=gateway.address,
                      keys={"hold_ms": 1000, "cli": "+32470555555"})  # fmt: skip
        second.start().wait().assert_success()  # answered: by the voicemail
        talking.wait().assert_success()
    gateway.assert_clean_exit()
    assert '"kind": "voicemail"' in gateway.log
    assert len(phone.collect().received("INVITE")) == 1, "the phone was rung for the second caller"
