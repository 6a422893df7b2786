"""``run --workers N`` and ``edge``: the supervisor and the control process, one loop."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

from loguru import logger

from gateway.core.rules import RulesError
from gateway.edge.channel import CONTROL_SOCKET
from gateway.edge.control import PoolControl
from gateway.edge.supervisor import PoolEvents, Supervisor, local_layout, remote_layout
from gateway.rules.load import load_rules

if TYPE_CHECKING:
    from gateway.config import Settings

# The control process loads the rules for its monitor, alerts and feed, without
# the SIP engine (the supervisor never loads it): every worker checks them
# against its own engine's legs, so here no step is refused for its width.
RULES_LEGS = 1_000


async def serve_pool(settings: Settings, workers: int | None) -> int:
    """Run the edge, and ``workers`` workers on this machine (None: the edge alone)."""
    layout = local_layout(settings, workers) if workers else remote_layout(settings)
    if not layout.workers:
        logger.error("no workers: give --workers N or SIP_FAILOVER_EDGE__WORKERS")
        return 2
    try:
        rules = load_rules(settings.rules, call_legs=RULES_LEGS)
    except RulesError as error:
        for problem in error.problems:
            logger.error("{}", problem)
        return 2
    address = settings.edge.control or str(settings.state_dir / CONTROL_SOCKET)
    control = PoolControl(settings, rules, address, RULES_LEGS)
    supervisor = Supervisor(settings, layout, bool(workers),
                            PoolEvents(control.control.notify, control.pool_full),
                            worker_env={"SIP_FAILOVER_EDGE__CONTROL": address})  # fmt: skip
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, supervisor.request_stop)
    loop.add_signal_handler(signal.SIGHUP, control.keeper.reload)
    async with asyncio.TaskGroup() as tasks:
        services = await control.start(tasks)
        code = await supervisor.run()
        await control.stop(services)
    return code
