"""``run --workers N`` and ``edge``: the supervisor in the composition root's shape."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import TYPE_CHECKING

from loguru import logger

from gateway.edge.supervisor import PoolEvents, Supervisor, local_layout, remote_layout

if TYPE_CHECKING:
    from collections.abc import Mapping

    from gateway.config import Settings


def _log_event(kind: str, data: Mapping[str, object]) -> None:
    logger.info("event {} {}", kind, json.dumps(dict(data), default=str))


def _pool_full(fields: dict[str, str]) -> None:
    logger.warning("pool full: caller {} refused 503 (call {})", fields.get("caller", "?"),
                   fields.get("call_id", "?"))  # fmt: skip


async def serve_pool(settings: Settings, workers: int | None) -> int:
    """Run the edge, and ``workers`` workers on this machine (None: the edge alone)."""
    layout = local_layout(settings, workers) if workers else remote_layout(settings)
    if not layout.workers:
        logger.error("no workers: give --workers N or SIP_FAILOVER_EDGE__WORKERS")
        return 2
    supervisor = Supervisor(settings, layout, bool(workers), PoolEvents(_log_event, _pool_full))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, supervisor.request_stop)
    return await supervisor.run()
