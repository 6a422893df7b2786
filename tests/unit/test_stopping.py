"""Stopping the services: bounded, even when one swallows its cancellation."""

from __future__ import annotations

import asyncio
import contextlib

from gateway.service.stopping import cancel_within


async def _polite() -> None:
    await asyncio.Event().wait()


async def _swallows_once() -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()
    await asyncio.Event().wait()  # the second cancellation ends it


async def _ends_only_when_released(released: asyncio.Event) -> None:
    while not released.is_set():  # every cancellation swallowed
        with contextlib.suppress(asyncio.CancelledError):
            await released.wait()


async def test_every_service_that_ends_on_a_first_or_second_cancellation_is_gone() -> None:
    tasks = [asyncio.create_task(_polite(), name="mqtt"),
             asyncio.create_task(_swallows_once(), name="mailer")]  # fmt: skip
    await asyncio.sleep(0)  # let them reach their waits
    assert await cancel_within(tasks, first=0.2, second=5.0) == ""
    assert all(task.done() for task in tasks)


async def test_a_service_that_never_ends_is_named_and_the_wait_is_bounded() -> None:
    released = asyncio.Event()
    stuck = asyncio.create_task(_ends_only_when_released(released), name="calllog")
    polite = asyncio.create_task(_polite(), name="mqtt")
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await cancel_within([stuck, polite], first=0.1, second=0.1) == "calllog"
    assert loop.time() - started < 5.0
    assert polite.done()
    assert not stuck.done()
    released.set()  # the test's own cleanup
    await stuck
