"""The pool on one machine: Kamailio as the edge, gateway workers behind it."""

from __future__ import annotations

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
