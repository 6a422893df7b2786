"""The pool's control process and its workers over the control channel (a real Unix socket)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from gateway.config import Settings
from gateway.core.causes import Outcome
from gateway.core.health import Evidence, ProbeResult, Source
from gateway.core.plan import Dial
from gateway.core.rules import parse_rules
from gateway.edge.channel import decode, encode, evidence_from_wire, evidence_to_wire, listen
from gateway.edge.control import PoolControl
from gateway.edge.link import ControlLink, WorkerOrders

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from gateway.status.bus import StatusEvent, Subscription

RULES = """version: 1
country: BE
targets:
  main: {number: "+32470000001"}
  backup: {number: "+32470000002"}
routes:
  - name: main-line
    match: {to: "+3225550100"}
    steps: [{ring: main}, {ring: backup}]
health:
  main: {probe: call, every: 1m, down_after: 1}
"""
WAIT = 5.0


class Worker:
    """A worker's end as a worker runs it, with what it was told."""

    def __init__(self, address: str, name: str, evidence: Evidence | None = None) -> None:
        self.health: list[dict[str, str]] = []
        self.modes: list[str | None] = []
        self.probes: list[tuple[str, str]] = []
        self.told = asyncio.Event()
        self._evidence = evidence
        self.link = ControlLink(address, name, WorkerOrders(self._health, self._mode,
                                                            lambda: None, self._probe))  # fmt: skip

    def _health(self, states: dict[str, str]) -> None:
        self.health.append(states)
        self.told.set()

    def _mode(self, mode: str | None) -> None:
        self.modes.append(mode)

    async def _probe(self, kind: str, target: str, _wait: float) -> Evidence | None:
        self.probes.append((kind, target))
        return self._evidence


@pytest.fixture
async def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[PoolControl]:
    for name in [n for n in os.environ if n.startswith("SIP_FAILOVER_")]:
        monkeypatch.delenv(name)
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(RULES)
    settings = Settings(trunk={"registrar": "sip:trunk.example.net"}, rules=rules_path,
                        state_dir=tmp_path / "state")  # fmt: skip
    control = PoolControl(settings, parse_rules(RULES, "rules.yaml"), str(tmp_path / "c.sock"), 3)
    control.control.monitor.reload(control.keeper.rules, asyncio.get_running_loop().time())
    server = await listen(control.address, control._serve_worker)
    yield control
    server.close()
    control.control.close()


async def connected(pool: PoolControl, *workers: Worker) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(w.link.run()) for w in workers]
    async with asyncio.timeout(WAIT):
        # Told the health on hello: the control process has it as a peer.
        await asyncio.gather(*(w.told.wait() for w in workers))
    return tasks


async def next_of(events: Subscription, kind: str) -> StatusEvent:
    async with asyncio.timeout(WAIT):
        while True:
            event = await events.get()
            if event.kind == kind:
                return event


async def test_workers_events_are_published_once_with_the_pools_calls_and_slots(
    pool: PoolControl,
) -> None:
    events = pool.control.bus.subscribe("test", 100)
    slot_events = pool.control.bus.subscribe("slots", 100)
    one, two = Worker(pool.address, "worker1"), Worker(pool.address, "worker2")
    tasks = await connected(pool, one, two)
    one.link.forward("call.incoming", {"call_id": "a1", "caller": "+3211", "called": "+3222"})
    one.link.forward("calls.active", {"count": 1})
    two.link.forward("calls.active", {"count": 1})
    one.link.note_slots(2, 3)
    incoming = await next_of(events, "call.incoming")
    assert incoming.data["call_id"] == "a1"
    assert incoming.data["worker"] == "worker1"
    seen = [await next_of(events, kind) for kind in ("calls.active", "calls.active")]
    assert [event.data["count"] for event in seen] == [1, 2]  # the pool's sum
    slots = (await next_of(slot_events, "pool.slots")).data
    assert slots["workers"] == {"worker1": {"in_use": 2, "free": 1},
                                "worker2": {"in_use": 0, "free": 0}}  # fmt: skip
    assert (slots["in_use"], slots["free"]) == (2, 1)
    for task in tasks:
        task.cancel()


async def test_a_target_found_dead_is_told_to_every_worker_and_to_a_late_one_on_hello(
    pool: PoolControl,
) -> None:
    one = Worker(pool.address, "worker1")
    tasks = await connected(pool, one)
    one.told.clear()
    dead = Evidence.of(Source.CALL_PROBE, Outcome.UNASSIGNED, datetime.now(UTC), sip_code=404)
    pool.control.monitor.observe("main", dead)
    async with asyncio.timeout(WAIT):
        await one.told.wait()
    assert one.health[-1]["main"] == "unassigned"
    late = Worker(pool.address, "worker2")
    tasks += await connected(pool, late)
    assert late.health[0]["main"] == "unassigned"
    assert late.modes == [None]
    for task in tasks:
        task.cancel()


async def test_a_probe_runs_on_the_worker_with_free_legs(pool: PoolControl) -> None:
    rang = Evidence.of(Source.CALL_PROBE, ProbeResult.PROGRESS, datetime.now(UTC), sip_code=180,
                       rang=True)  # fmt: skip
    busy, free = Worker(pool.address, "worker1", rang), Worker(pool.address, "worker2", rang)
    tasks = await connected(pool, busy, free)
    slot_events = pool.control.bus.subscribe("slots", 100)
    busy.link.note_slots(2, 3)
    free.link.note_slots(0, 3)
    while (await next_of(slot_events, "pool.slots")).data["free"] != 1 + 3:
        pass
    prober = pool.control.monitor.prober
    evidence = await prober.probe("call", Dial("main", number="+32470000001"), 8.0)
    assert evidence == rang
    assert (busy.probes, free.probes) == ([], [("call", "main")])
    for task in tasks:
        task.cancel()


async def test_a_caller_the_edge_refused_is_a_refused_call_of_the_log(pool: PoolControl) -> None:
    events = pool.control.bus.subscribe("test", 100)
    pool.pool_full({"call_id": "1-2@192.0.2.1", "caller": "0470123456", "asserted": "<null>",
                    "called": "025550100"})  # fmt: skip
    incoming = await next_of(events, "call.incoming")
    ended = await next_of(events, "call.ended")
    assert (incoming.data["caller"], incoming.data["called"]) == ("+32470123456", "+3225550100")
    assert ended.data["call_id"] == incoming.data["call_id"] == "edge-1-2@192.0.2.1"
    assert (ended.data["result"], ended.data["reason"]) == ("refused", "over_capacity")
    assert (ended.data["sip_code"], ended.data["q850"]) == (503, 42)


def test_evidence_crosses_the_channel_unchanged() -> None:
    at = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    for evidence in (Evidence.of(Source.CALL_PROBE, Outcome.UNASSIGNED, at, sip_code=404, q850=1),
                     Evidence.of(Source.OPTIONS_PROBE, ProbeResult.TIMEOUT, at),
                     Evidence.of(Source.CALL_PROBE, ProbeResult.PROGRESS, at, sip_code=183,
                                 rang=True)):  # fmt: skip
        message: Any = decode(encode({"op": "probed", "evidence": evidence_to_wire(evidence)}))
        assert evidence_from_wire(message["evidence"]) == evidence
    assert evidence_from_wire(None) is None


def test_a_line_that_is_not_a_message_is_skipped() -> None:
    assert decode(b"not json\n") is None
    assert decode(b'["op"]\n') is None
    assert decode(b'{"op": "reload"}\n') == {"op": "reload"}


async def test_a_probe_due_before_any_worker_connected_waits_for_the_first(
    pool: PoolControl,
) -> None:
    # At start the first probe may fall due before the workers are up: it
    # must not be put off by a whole retry interval.
    answered = Evidence.of(Source.CALL_PROBE, Outcome.UNASSIGNED, datetime.now(UTC), sip_code=404)
    prober = pool.control.monitor.prober
    probing = asyncio.create_task(prober.probe("call", Dial("main", number="+32470000001"), 8.0))
    await asyncio.sleep(0)  # the probe is asked for first
    assert not probing.done()
    late = Worker(pool.address, "worker1", answered)
    task = asyncio.create_task(late.link.run())
    late.link.note_slots(0, 3)
    async with asyncio.timeout(WAIT):
        assert await probing == answered
    task.cancel()
