"""Composition root: settings, rules, the SIP engine, the switchboard, signals.

One process, one asyncio loop (uvloop), one TaskGroup. A signal only sets a
flag; shutdown then goes in order (uvicorn's ``Server.shutdown``): stop
taking calls, let calls finish within the grace period, hang up the rest,
pump pjsua until every leg is gone, unregister, destroy the endpoint.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import TYPE_CHECKING, Any

from loguru import logger

from gateway.core.admission import Admission
from gateway.core.rules import Rules, RulesError
from gateway.registration import Registration
from gateway.rules_file import load_rules
from gateway.sip.engine import MAX_LEGS, SipEngine
from gateway.switchboard import Switchboard

if TYPE_CHECKING:
    from gateway.config import Settings

POLL_BUSY = 0.002  # seconds between pjsua polls while calls are up
POLL_IDLE = 0.02  # and while idle: an INVITE waits at most this long
DRAIN_LEGS_S = 3.0  # after hang-up, how long to wait for legs to end


def setup_logging(level: str) -> None:
    """One log format to stderr (journald adds the time)."""
    logger.remove()
    logger.add(
        sys.stderr,
        level=level.upper(),
        format="{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} {message}",
    )


class Gateway:
    """The running gateway: owns the engine and the switchboard."""

    def __init__(self, settings: Settings, rules: Rules) -> None:
        self.settings = settings
        self.rules = rules
        self.loop = asyncio.get_running_loop()
        self.stop_requested = asyncio.Event()
        self.admission = Admission(
            settings.trunk.allowed_sources(), MAX_LEGS, settings.sip.max_calls_per_source_per_minute
        )
        self.engine = SipEngine(settings, self._gate)
        self.switchboard = Switchboard(self.engine, rules, self.admission, self.notify, self.loop)
        self.registration = Registration(self.engine, self.loop, self.notify, settings.trunk)
        self.switchboard.on_registration = self.registration.on_signal

    def _gate(self, source: str) -> bool:
        return self.switchboard.gate(source)

    def notify(self, kind: str, data: dict[str, Any]) -> None:
        """A status event: logged now; the status feed subscribes to the same."""
        logger.info("event {} {}", kind, json.dumps(data, default=str))

    async def run(self) -> None:
        """Serve calls until a stop is requested, then shut down in order."""
        self.engine.start()
        self.registration.start()
        logger.info(
            "ready listen={} sources={} legs={}",
            self.engine.listen,
            ",".join(sorted(self.admission.sources)),
            MAX_LEGS,
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._pump_until_stopped(), name="sip.pump")
        finally:
            self.engine.destroy()
            logger.info("stopped")

    async def _pump_until_stopped(self) -> None:
        while not self.stop_requested.is_set():
            self.switchboard.pump()
            busy = self.switchboard.active_calls or self.engine.legs_in_use()
            await asyncio.sleep(POLL_BUSY if busy else POLL_IDLE)
        await self._shutdown()

    async def _shutdown(self) -> None:
        logger.info("stopping: no new calls; {} in progress", self.switchboard.active_calls)
        self.admission.accepting = False
        await self._pump_while(
            lambda: self.switchboard.active_calls > 0, self.settings.shutdown_grace
        )
        self.switchboard.hang_up_everything()
        await self._pump_while(lambda: self.engine.legs_in_use() > 0, DRAIN_LEGS_S)
        self.registration.stop()
        await self._pump_while(lambda: self.registration.state == "registered", 2.0)

    async def _pump_while(self, condition: Any, limit: float) -> None:
        deadline = self.loop.time() + limit
        while condition() and self.loop.time() < deadline:
            self.switchboard.pump()
            await asyncio.sleep(POLL_BUSY)

    def request_stop(self) -> None:
        self.stop_requested.set()

    def reload_rules(self) -> None:
        """SIGHUP: load the rules again; a broken file changes nothing."""
        try:
            rules = load_rules(self.settings.rules)
        except RulesError as error:
            for problem in error.problems:
                logger.error("rules not reloaded: {}", problem)
            return
        self.rules = rules
        self.switchboard.rules = rules
        logger.info("rules reloaded from {}", self.settings.rules)


async def serve(settings: Settings) -> int:
    """Run the gateway until SIGTERM/SIGINT. Returns the process exit code."""
    try:
        rules = load_rules(settings.rules)
    except RulesError as error:
        for problem in error.problems:
            logger.error("{}", problem)
        return 2
    gateway = Gateway(settings, rules)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gateway.request_stop)
    loop.add_signal_handler(signal.SIGHUP, gateway.reload_rules)
    await gateway.run()
    return 0
