"""Ending the gateway's services within a bound, even when one swallows its cancellation."""

from __future__ import annotations

import asyncio

from loguru import logger


async def cancel_within(tasks: list[asyncio.Task[None]], first: float, second: float) -> str:
    """Cancel ``tasks`` and wait ``first`` seconds for them; those still running, ``second`` more.

    A task still running after ``first`` let a cancellation pass (a library
    swallowed it, as aiomqtt's ``wait_for`` can on Python 3.11): it is
    cancelled once more.

    Returns:
        The names of the tasks that did not end even then ("" when all did).
    """
    if not tasks:
        return ""
    for task in tasks:
        task.cancel()
    _, pending = await asyncio.wait(tasks, timeout=first)
    if not pending:
        return ""
    names = ", ".join(sorted(task.get_name() for task in pending))
    logger.warning("stopping: {} still running; cancelling again", names)
    for task in pending:
        task.cancel()
    _, pending = await asyncio.wait(pending, timeout=second)
    return names if pending else ""
