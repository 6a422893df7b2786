"""A pjsua2 built with more call slots (deploy/build-pjsua2.sh) is used fully.

Run with such an engine installed (docs/install.md: the suite run against
/tmp/venv-pj32); skipped with the PyPI wheel's 4 slots, where
tests/integration/test_capacity.py covers the limit instead.
"""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING

import pytest
from gateway_process import GatewayProcess

from gateway.sip.engine_limits import planned_limits

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import SippFactory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(planned_limits().call_legs < 6,
                       reason="needs a pjsua2 with 7 call slots or more (deploy/build-pjsua2.sh)"),
]  # fmt: skip
CALLED = "+3225550100"


def test_a_ring_all_of_five_rings_every_phone(sipp: SippFactory, gateway_dir: Path) -> None:
    winner = sipp("phone_answer", keys={"answer_ms": 500}).start()
    losers = [sipp("phone_ring_forever").start() for _ in range(4)]
    phones = [*losers, winner]
    targets = "".join(f'  p{i}: {{uri: "sip:p{i}@{p.address}"}}\n' for i, p in enumerate(phones))
    names = ", ".join(f"p{i}" for i in range(len(phones)))
    step = f"[{{ring_all: [{names}], timeout: 10s}}]"
    rules = (f"version: 1\ntargets:\n{targets}routes:\n  - name: main\n"
             f'    match: {{to: "{CALLED}"}}\n    steps: {step}\n')  # fmt: skip
    with GatewayProcess(gateway_dir, rules) as gateway:
        caller = sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 300})
        caller.start().wait().assert_success()
        winner.wait().assert_success()
        for loser in losers:
            assert loser.wait().received("INVITE"), "every phone of the step rang"
            assert loser.wait().received("CANCEL")
    gateway.assert_clean_exit()


def test_three_callers_are_bridged_at_once(sipp: SippFactory, gateway_dir: Path) -> None:
    phones = [sipp("phone_answer", keys={"answer_ms": 200}).start() for _ in range(3)]
    targets = "".join(f'  p{i}: {{uri: "sip:p{i}@{p.address}"}}\n' for i, p in enumerate(phones))
    # Each caller is rung to whichever phone is free: every phone takes one call.
    rules = (f"version: 1\ntargets:\n{targets}routes:\n  - name: main\n"
             f'    match: {{to: "{CALLED}"}}\n    steps:\n'
             "      - {ring_each: [p0, p1, p2], timeout: 5s,\n"
             "         failover_on: [busy, unreachable]}\n")  # fmt: skip
    with GatewayProcess(gateway_dir, rules) as gateway:
        keys = [{"hold_ms": 4000, "cli": f"+3247011111{i}"} for i in range(3)]
        callers = [sipp("caller_answered", remote=gateway.address, keys=k) for k in keys]
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda c: c.start().wait(), callers))
        for result in results:
            result.assert_success()
        answered = sum(bool(p.wait().sent(status=200)) for p in phones)
    assert answered == 3, "three calls were bridged at the same time"
    gateway.assert_clean_exit()
