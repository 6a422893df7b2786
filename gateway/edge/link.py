"""A worker's end of the pool's control channel (gateway/edge/channel.py).

The worker forwards its status events and its call legs in use, and follows
what the control process says: targets' health, the mode, a rules reload,
"probe this target now". While the control process is away (restarting),
events wait in a bounded buffer and go out on reconnection; calls go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from loguru import logger

from gateway.edge.channel import as_float, connect, decode, encode, evidence_to_wire
from gateway.json_types import JsonObject, as_object

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from gateway.core.health import Evidence

BUFFER = 10_000  # events kept while the control process is away
NOT_FORWARDED = {"rules.loaded", "rules.mode"}  # the control process publishes its own


@dataclass
class WorkerOrders:
    """What a worker does when the control process says so."""

    health: Callable[[dict[str, str]], None]
    mode: Callable[[str | None], None]
    reload: Callable[[], None]
    probe: Callable[[str, str, float], Awaitable[Evidence | None]]


class ControlLink:
    """The connection of one worker to its control process.

    Args:
        address: the control process (Unix socket path or ``host:port``).
        worker: this worker's name in the pool (``worker2``).
        orders: what to do on the control's messages.
    """

    def __init__(self, address: str, worker: str, orders: WorkerOrders) -> None:
        self.address = address
        self.worker = worker
        self.orders = orders
        self.connected = asyncio.Event()
        self._out: deque[bytes] = deque(maxlen=BUFFER)
        self._ready = asyncio.Event()
        self._slots: tuple[int, int] | None = None
        self._probes: set[asyncio.Task[None]] = set()

    def forward(self, kind: str, data: Mapping[str, object]) -> None:
        """A status event of this worker, for the pool's one feed and call log."""
        if kind in NOT_FORWARDED:
            return
        at = datetime.now(UTC).isoformat()
        self._send({"op": "event", "kind": kind, "at": at, "data": dict(data)})

    def note_slots(self, in_use: int, total: int) -> None:
        """The legs in use now (sent only when they changed)."""
        if self._slots != (in_use, total):
            self._slots = (in_use, total)
            self._send({"op": "slots", "in_use": in_use, "total": total})

    def _send(self, message: Mapping[str, object]) -> None:
        self._out.append(encode(message))
        self._ready.set()

    async def run(self) -> None:
        """Stay connected until cancelled (reconnecting with jittered backoff)."""
        attempt = 0
        while True:
            try:
                reader, writer = await connect(self.address)
            except OSError as error:
                attempt += 1
                delay = random.uniform(0, min(2.0, 0.1 * 1.5**attempt))  # noqa: S311
                logger.debug("control process at {} not reachable ({}); retry", self.address,
                             error)  # fmt: skip
                await asyncio.sleep(delay)
                continue
            attempt = 0
            await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        logger.info("control process connected at {}", self.address)
        self._out.appendleft(encode({"op": "hello", "worker": self.worker}))
        if self._slots is not None:
            in_use, total = self._slots
            self._out.append(encode({"op": "slots", "in_use": in_use, "total": total}))
        self.connected.set()
        sending = asyncio.create_task(self._write(writer), name="control.send")
        try:
            async for line in reader:
                message = decode(line)
                if message is not None:
                    self._obey(message)
        except (OSError, asyncio.IncompleteReadError) as error:
            logger.warning("control channel lost: {}", error)
        finally:
            self.connected.clear()
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sending
            writer.close()
        logger.warning("control process gone; reconnecting")

    async def _write(self, writer: asyncio.StreamWriter) -> None:
        while True:
            self._ready.clear()
            while self._out:
                writer.write(self._out.popleft())
            await writer.drain()
            if not self._out:
                await self._ready.wait()

    def _obey(self, message: JsonObject) -> None:
        op = message["op"]
        if op == "health":
            states = as_object(message.get("states")) or {}
            self.orders.health({name: str(state) for name, state in states.items()})
        elif op == "mode":
            mode = message.get("mode")
            self.orders.mode(mode if isinstance(mode, str) else None)
        elif op == "reload":
            self.orders.reload()
        elif op == "probe":
            task = asyncio.create_task(self._probe(message), name="control.probe")
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)
        else:
            logger.warning("control channel: unknown op {!r}", op)

    async def _probe(self, message: JsonObject) -> None:
        evidence: Evidence | None = None
        try:
            wait = as_float(message["early_media_timeout"])
            evidence = await self.orders.probe(str(message["kind"]), str(message["target"]), wait)
        except Exception:  # noqa: BLE001 - a failed probe is reported as not run
            logger.opt(exception=True).error("probe of {} failed", message.get("target"))
        answer = evidence_to_wire(evidence)
        self._send({"op": "probed", "id": message.get("id"), "evidence": answer})
