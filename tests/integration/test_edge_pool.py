"""The pool on one machine: Kamailio as the edge, gateway workers behind it."""

from __future__ import annotations

import math
import os
import re
import signal
import time
from typing import TYPE_CHECKING

import pytest
from edge_pool import (
    BACKUP,
    MAIN,
    TRUNK_KEYS,
    failover_rules,
    needs_kamailio,
    start_pool,
    start_trunk,
)
from sipp import RtpSink

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import SippFactory

pytestmark = pytest.mark.integration
VOICED_PACKETS = 3  # the first seconds of the recording are mostly pauses


def test_six_callers_at_once_each_reach_a_backup_through_the_edge(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    needs_kamailio()
    callers = 6
    trunk = start_trunk(sipp, legs=2 * callers)
    pool = start_pool(gateway_dir, trunk, failover_rules(), workers=6)
    try:
        caller = sipp("caller_answered", remote=pool.address, calls=callers,
                      keys={"hold_ms": 4000}, extra=["-r", "20", "-l", str(callers)])  # fmt: skip
        with RtpSink(caller.rx_port) as sink:
            called = caller.start().wait()
            sink.drain()
        called.assert_success(callers)
        legs = trunk.proxy.wait()
    finally:
        trunk.stop()
        code = pool.stop()
    assert code == 0, pool.describe()
    # Speech came back from six far ends: every
    # caller was bridged both ways, the backup echoing what the caller said.
    voiced = sink.voiced_by_sender()
    assert sum(1 for n in voiced.values() if n >= VOICED_PACKETS) == callers, (
        f"voiced packets by sender: {voiced}\n{pool.describe()}"
    )
    # The trunk saw every leg from the edge, with the trunk's credentials.
    invites = legs.received("INVITE")
    edge_via = f"SIP/2.0/UDP {pool.address}"
    assert all((m.header("Via") or "").startswith(edge_via) for m in invites), legs.describe()
    authorised = [m for m in invites if m.header("Authorization")]
    numbers = sorted(m.first_line.split()[1].split("@")[0] for m in authorised)
    assert numbers == sorted([f"sip:{MAIN}"] * callers + [f"sip:{BACKUP}"] * callers)
    registered = trunk.registrar.collect().sent(status=200)
    assert registered, f"the edge never registered\n{trunk.registrar.collect().describe()}"
    assert "trunk registration: registered" in pool.log
    assert TRUNK_KEYS["password"] not in pool.log, "the trunk password reached the log"


def _pid_of(log: str, worker: str) -> int:
    """The pid of ``worker``'s latest start, from the supervisor's log."""
    started = re.findall(rf"{worker} started: pid (\d+)", log)
    assert started, f"{worker} never started\n{log[-3000:]}"
    return int(started[-1])


def _wait_for(condition: Callable[[], bool], seconds: float) -> float:
    """Poll ``condition`` for at most ``seconds``; return how long it took (inf: never)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if condition():
            return time.monotonic() - start
        time.sleep(0.05)
    return math.inf


def test_a_killed_worker_is_restarted_and_callers_reach_the_others(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    needs_kamailio()
    trunk = start_trunk(sipp, legs=2 * 3)
    pool = start_pool(gateway_dir, trunk, failover_rules(), workers=4)
    try:
        talking = sipp("caller_answered", remote=pool.address, keys={"hold_ms": 6000}).start()
        busy = _wait_for(lambda: "event call.answered" in pool.log, 10)
        assert busy < math.inf, pool.describe()
        carrier = re.findall(r"(worker\d)\| [^\n]*event call.answered", pool.log)[0]
        victim = next(w for w in ("worker1", "worker2", "worker3", "worker4") if w != carrier)
        os.kill(_pid_of(pool.log, victim), signal.SIGKILL)
        killed_at = time.monotonic()
        # Placed while the victim is down: two workers are free, and both callers
        # reach a backup, whichever worker the edge tried first.
        gap = sipp("caller_answered", remote=pool.address, calls=2, keys={"hold_ms": 1000},
                   extra=["-r", "10", "-l", "2"]).start()  # fmt: skip
        restarted = _wait_for(lambda: len(re.findall(f"{victim} started", pool.log)) == 2, 5)
        gap.wait().assert_success(2)
        talking.wait().assert_success()
    finally:
        trunk.stop()
        code = pool.stop()
    assert restarted < math.inf, f"{victim} not restarted within 5 s\n{pool.describe()}"
    assert time.monotonic() - killed_at > restarted
    assert code == 0, pool.describe()
