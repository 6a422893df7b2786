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
from gateway.status.calllog import CallLog

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import SippFactory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.alone,  # bursts at 20 calls/s: their own rate, nobody else's load
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


SERIAL_CALLS = 150
SERIAL_RATE = 25  # calls/s, one after another: past what the engine's sockets allow


def test_calls_one_after_another_past_the_socket_budget_are_refused_never_aborted(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    """Each leg's RTP and RTCP sockets are held 500 ms after it ends: at 25
    calls/s that fail over at once (404, then 486), the 64 handles of pjsua's
    I/O queue run out unless the gateway counts them. It refuses instead."""
    dead = sipp("phone_reject", keys={"code": 404}, calls=None, timeout_s=90).start()
    busy = sipp("phone_reject", keys={"code": 486}, calls=None, timeout_s=90).start()
    rules = f"""version: 1
targets:
  dead: {{uri: "sip:dead@{dead.address}"}}
  busy: {{uri: "sip:busy@{busy.address}"}}
routes:
  - name: main-line
    match: {{to: "+3225550100"}}
    steps:
      - {{ring: dead, timeout: 5s, failover_on: [unassigned]}}
      - {{ring: busy, timeout: 5s}}
"""
    # Past the per-source rate, INVITEs are counted as a flood, not logged: not this test's.
    rate = {"SIP_FAILOVER_SIP__MAX_CALLS_PER_SOURCE_PER_MINUTE": str(SERIAL_CALLS * 2)}
    with GatewayProcess(gateway_dir, rules, env=rate) as gateway:
        burst = sipp("caller_refused", remote=gateway.address, calls=SERIAL_CALLS,
                     timeout_s=60, extra=("-r", str(SERIAL_RATE))).start().wait()  # fmt: skip
        assert gateway.is_alive(timeout=5.0), f"the gateway died\n{gateway.describe()}"
        # It still serves calls: once the last legs' sockets are free (held 500 ms
        # by pjsip), a caller reaches the busy phone again. Bounded: 10 tries.
        after = [sipp("caller_refused", remote=gateway.address).start().wait()]
        while after[-1].final_response().status != 486 and len(after) < 10:
            after.append(sipp("caller_refused", remote=gateway.address).start().wait())
        tried = [a.final_response().status for a in after]
        assert tried[-1] == 486, f"after the burst, callers got {tried}"
    gateway.assert_clean_exit()
    finals = [m for m in burst.received() if m.status and m.status >= 300
              and m.cseq_method == "INVITE"]  # fmt: skip
    assert len({m.header("Call-ID") for m in finals}) == SERIAL_CALLS, burst.describe()
    codes = Counter(m.status for m in finals)
    assert set(codes) <= {486, 480, 503}, codes  # the busy phone's answer, or a refusal
    assert all(m.header("Retry-After") for m in finals if m.status == 503), burst.describe()
    assert all(m.q850_cause is None for m in finals if m.status == 480), "480 not the gate's"
    print(f"{SERIAL_CALLS} calls at {SERIAL_RATE}/s: {dict(codes)}")
    log = CallLog(gateway.workdir / "state" / "calls.sqlite3", read_only=True)
    try:
        records = log.calls()
    finally:
        log.close()
    assert len(records) == SERIAL_CALLS + len(after), Counter((r.result, r.reason) for r in records)
    # Turned away (480, or 503 before any ring), or a ring the gateway could not make (503).
    turned_away = Counter(r.result for r in records if r.reason == "over_capacity"
                          or (r.result, r.q850) == ("failed", 42))  # fmt: skip
    refused_after = sum(1 for status in tried if status in {480, 503})
    assert sum(turned_away.values()) == codes[480] + codes[503] + refused_after, (
        codes, tried, turned_away)  # fmt: skip
