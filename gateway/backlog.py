"""Work that must not hold up SIP: run in order, one piece per turn of the loop.

A call's status events (each logged, then published to MQTT and the call
log) and its log lines are carried out after its INVITEs, on the loop's
next turns. Scheduled one ``call_soon`` each, they would all run in one
turn: the loop runs every callback made ready in a turn before it looks at
its sockets again, so a SIP packet arriving meanwhile (a leg's final answer)
would wait for all of them, about a millisecond per call. Taken one per
turn, the loop reads its sockets between two pieces: the engine pump wakes
on a SIP packet within one piece's time.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, TypeVarTuple

from loguru import logger

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

__all__ = ["Backlog"]

Ts = TypeVarTuple("Ts")


class Backlog:
    """A FIFO of callbacks the loop runs one per turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._work: deque[Callable[[], object]] = deque()
        self._next: asyncio.Handle | None = None
        self._drained: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self._work)

    def add(self, func: Callable[[*Ts], object], *args: *Ts) -> None:
        """Run ``func(*args)`` after everything added before it, on a later turn."""
        self._work.append(lambda: func(*args))
        if self._next is None:
            self._next = self._loop.call_soon(self._run_one)

    async def drained(self) -> None:
        """Return once everything added so far has run."""
        if self._work:
            waiter = self._loop.create_future()
            self._drained.append(waiter)
            await waiter

    def flush(self) -> None:
        """Run everything left now (stopping: nothing is lost)."""
        if self._next is not None:
            self._next.cancel()
            self._next = None
        while self._work:
            self._run(self._work.popleft())
        self._wake_drained()

    def _run_one(self) -> None:
        self._next = None
        if self._work:
            self._run(self._work.popleft())
        if self._work:
            self._next = self._loop.call_soon(self._run_one)
        else:
            self._wake_drained()

    def _wake_drained(self) -> None:
        waiters, self._drained = self._drained, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    @staticmethod
    def _run(work: Callable[[], object]) -> None:
        try:
            work()
        except Exception:  # noqa: BLE001 - one piece must not stop the rest
            logger.opt(exception=True).error("error in deferred work")
