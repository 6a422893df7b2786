"""The pool's control process: one gateway to its admins, however many workers.

Runs in the supervisor, without a SIP engine: the ``Control`` services of a
single gateway (gateway/control.py: the bus, MQTT, the call log, the status
file, the mailer over the one spool, the health monitor and its alerts), fed
by the workers over the control channel (gateway/edge/channel.py). Workers
forward their status events; the control process publishes them once, keeps
one ``calls/active`` and the pool's slots, and tells every worker the
targets' health (within the same loop turn as the change), the mode and
rules reloads. Its health monitor's probes run on one worker with free legs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from loguru import logger

from gateway.control import Control
from gateway.core.admission import PROBE_LEGS
from gateway.edge.channel import as_int, decode, encode, evidence_from_wire, listen
from gateway.json_types import JsonObject, as_object
from gateway.rules.keeper import RulesKeeper

if TYPE_CHECKING:
    from collections.abc import Mapping

    from gateway.config import Settings
    from gateway.core.health import Evidence, HealthState
    from gateway.core.plan import Dial
    from gateway.core.rules import Rules

FIRST_WORKER_S = 15.0  # a probe due at start waits this long for a worker to report
PROBE_WAIT_S = 40.0  # a worker's probe answers within its own bounds (20 s + early media)
OVER_CAPACITY = "over_capacity"  # call.ended's reason for a caller the whole pool refused


@dataclass
class WorkerPeer:
    """One connected worker as the control process sees it."""

    name: str
    writer: asyncio.StreamWriter
    in_use: int = 0
    total: int = 0
    calls: int = 0
    probes: dict[int, asyncio.Future[Evidence | None]] = field(default_factory=dict)

    def send(self, message: Mapping[str, object]) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(message))


class PoolProber:
    """The health monitor's probes, run by a worker with free legs."""

    def __init__(self, pool: PoolControl) -> None:
        self.pool = pool
        self._ids = itertools.count(1)

    async def probe(self, kind: str, dial: Dial, early_media_timeout: float) -> Evidence | None:
        """Ask the workers, freest first, until one runs it; None when none could."""
        need = 0 if kind == "options" else PROBE_LEGS
        if not self.pool.reported.is_set():
            # At start a probe may fall due before any worker said what it
            # has: wait for the first rather than put the probe off.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.pool.reported.wait(), FIRST_WORKER_S)
        for peer in sorted(self.pool.peers.values(), key=lambda p: p.in_use - p.total):
            if peer.total - peer.in_use < need:
                continue
            evidence = await self._ask(peer, kind, dial.name, early_media_timeout)
            if evidence is not None:
                return evidence
        return None

    async def _ask(self, peer: WorkerPeer, kind: str, target: str,
                   early_media_timeout: float) -> Evidence | None:  # fmt: skip
        probe_id = next(self._ids)
        answer: asyncio.Future[Evidence | None] = asyncio.get_running_loop().create_future()
        peer.probes[probe_id] = answer
        logger.info("probe of {} ({}) runs on {}", target, kind, peer.name)
        peer.send({"op": "probe", "id": probe_id, "kind": kind, "target": target,
                   "early_media_timeout": early_media_timeout})  # fmt: skip
        try:
            return await asyncio.wait_for(answer, PROBE_WAIT_S)
        except TimeoutError:
            logger.warning("probe of {} on {}: no answer", target, peer.name)
            return None
        finally:
            peer.probes.pop(probe_id, None)


class PoolControl:
    """The control process of a pool: one feed, one log, one health for N workers."""

    def __init__(self, settings: Settings, rules: Rules, address: str, call_legs: int) -> None:
        self.address = address
        self.peers: dict[str, WorkerPeer] = {}
        self.keeper = RulesKeeper(settings.rules, rules, self._notify, call_legs)
        self.control = Control(settings, self.keeper, PoolProber(self), health={})
        self.control.listeners.append(self._after_event)
        self.keeper.on_use.append(lambda rules: self._broadcast(_mode(rules)))
        self.keeper.on_load.append(lambda _rules: self._broadcast({"op": "reload"}))
        self._server: asyncio.Server | None = None
        self.reported = asyncio.Event()  # a worker said how many legs it has free

    def _notify(self, kind: str, data: Mapping[str, object]) -> None:
        self.control.notify(kind, data)

    # -- running ------------------------------------------------------------------

    async def start(self, tasks: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """Listen for workers, start the services and the health monitor."""
        self.control.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._server = await listen(self.address, self._serve_worker)
        services = self.control.start_services(tasks)
        await asyncio.sleep(0)  # let the bus subscribers subscribe first
        self.keeper.announce()
        services.append(self.control.start_monitor(tasks))
        logger.info("control process listening at {}", self.address)
        return services

    async def stop(self, services: list[asyncio.Task[None]]) -> None:
        if self._server is not None:
            self._server.close()
        for peer in self.peers.values():
            peer.writer.close()
        for service in services:
            service.cancel()
        await asyncio.wait(services, timeout=3.0)
        self.control.close()

    # -- the workers ----------------------------------------------------------------

    async def _serve_worker(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:  # fmt: skip
        peer: WorkerPeer | None = None
        try:
            async for line in reader:
                message = decode(line)
                if message is None:
                    continue
                if message["op"] == "hello":
                    peer = self._hello(str(message.get("worker")), writer)
                elif peer is not None:
                    self._from_worker(peer, message)
        except (OSError, asyncio.IncompleteReadError) as error:
            logger.warning("control channel: {}", error)
        finally:
            writer.close()
            if peer is not None and self.peers.get(peer.name) is peer:
                self._gone(peer)

    def _hello(self, name: str, writer: asyncio.StreamWriter) -> WorkerPeer:
        peer = WorkerPeer(name, writer)
        self.peers[name] = peer
        logger.info("control channel: {} connected", name)
        peer.send({"op": "health", "states": _states(self.control.monitor.health)})
        peer.send(_mode(self.keeper.rules))
        return peer

    def _gone(self, peer: WorkerPeer) -> None:
        del self.peers[peer.name]
        logger.info("control channel: {} gone", peer.name)
        for answer in peer.probes.values():
            if not answer.done():
                answer.set_result(None)
        self._publish_calls()
        self._publish_slots()

    def _from_worker(self, peer: WorkerPeer, message: JsonObject) -> None:
        op = message["op"]
        if op == "event":
            self._worker_event(peer, str(message["kind"]), as_object(message.get("data")) or {},
                               datetime.fromisoformat(str(message["at"])))  # fmt: skip
        elif op == "slots":
            peer.in_use, peer.total = as_int(message["in_use"]), as_int(message["total"])
            self.reported.set()
            self._publish_slots()
        elif op == "probed":
            answer = peer.probes.get(as_int(message.get("id") or 0))
            if answer is not None and not answer.done():
                answer.set_result(evidence_from_wire(message.get("evidence")))

    def _worker_event(self, peer: WorkerPeer, kind: str, data: JsonObject,
                      at: datetime) -> None:  # fmt: skip
        if kind == "calls.active":
            peer.calls = as_int(data.get("count") or 0)
            self._publish_calls()
            return
        self.control.publish(kind, {**data, "worker": peer.name} if kind == "call.incoming"
                             else data, at)  # fmt: skip

    def _publish_calls(self) -> None:
        self.control.publish("calls.active", {"count": sum(p.calls for p in self.peers.values())})

    def _publish_slots(self) -> None:
        workers = {p.name: {"in_use": p.in_use, "free": max(0, p.total - p.in_use)}
                   for p in sorted(self.peers.values(), key=lambda p: p.name)}  # fmt: skip
        self.control.publish("pool.slots", {
            "in_use": sum(w["in_use"] for w in workers.values()),
            "free": sum(w["free"] for w in workers.values()),
            "workers": workers,
        })  # fmt: skip

    # -- the pool as one ------------------------------------------------------------

    def _after_event(self, kind: str, _data: Mapping[str, object]) -> None:
        if kind == "target.health":
            self._broadcast({"op": "health", "states": _states(self.control.monitor.health)})

    def _broadcast(self, message: Mapping[str, object]) -> None:
        for peer in self.peers.values():
            peer.send(message)

    def pool_full(self, fields: dict[str, str]) -> None:
        """A caller the edge refused (503): a call of the pool's log, on the call-back list."""
        call_id = f"edge-{fields.get('call_id', '?')}"
        rules = self.keeper.rules
        caller = rules.number(_number(fields.get("asserted")) or fields.get("caller") or "")
        called = rules.number(fields.get("called") or "")
        logger.warning("pool full: caller {} refused 503 (call {})", caller, call_id)
        self.control.notify("call.incoming", {"call_id": call_id, "caller": caller,
                                              "called": called, "route": None})  # fmt: skip
        ended = {"call_id": call_id, "result": "refused", "reason": OVER_CAPACITY,
                 "outcome": None, "sip_code": 503, "q850": 42, "duration": 0.0}  # fmt: skip
        self.control.notify("call.ended", ended)


def _states(health: Mapping[str, HealthState]) -> dict[str, str]:
    return {name: state.value for name, state in health.items()}


def _mode(rules: Rules) -> JsonObject:
    return {"op": "mode", "mode": rules.mode_override}


def _number(value: str | None) -> str | None:
    """The user part of a P-Asserted-Identity URI as the edge logs it (``$ai``)."""
    if not value or value == "<null>":
        return None
    user = value.split(":", 1)[-1].split("@", 1)[0].strip("<>")
    return user or None
