"""Keeps every target's health: probes on schedule, evidence from real calls.

The logic (hysteresis, scheduling, alert coalescing) is pure and lives in
gateway/core/health.py and probing.py; this module feeds it: it runs the
probes the scheduler says are due, turns each real call's ``call.leg`` event
into evidence (passive: the first failing call already counts), hands every
state and the probed targets to the switchboard's planner (which decides
what to skip: gateway/core/plan.py) and publishes
each change at once (``target.health``) and the coalesced alerts later.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

from loguru import logger

from gateway.core.alerts import AlertCoalescer, alert_text
from gateway.core.causes import Outcome
from gateway.core.health import (
    DEAD,
    Evidence,
    HealthBoard,
    HealthChange,
    HealthPolicy,
    HealthState,
    Source,
    WatchedTarget,
)
from gateway.core.plan import dial_of, rung_instead
from gateway.core.probing import ProbeSchedule, ProbeScheduler
from gateway.core.rules import VoicemailStep
from gateway.core.rules_values import CALL_PROBE_EVERY_S, EARLY_MEDIA_TIMEOUT_S

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from gateway.core.plan import Dial
    from gateway.core.rules import Rules
    from gateway.core.rules_values import HealthWatch
    from gateway.status.bus import StatusSink

IDLE_WAKE = 60.0  # seconds between looks when nothing is scheduled
BUSY_RETRY = 30.0  # a call probe that found no free leg is tried again this soon


class ProbeRunner(Protocol):
    """Runs one probe: the gateway's own engine (gateway/health/probes.py), or a pool's worker."""

    async def probe(self, kind: str, dial: Dial, early_media_timeout: float) -> Evidence | None:
        """Probe ``dial`` (``kind``: options or call); None when no leg is free now."""
        ...


class HealthMonitor:
    """Target health for the running gateway."""

    def __init__(
        self,
        prober: ProbeRunner,
        health: dict[str, HealthState],
        notify: StatusSink,
        mail: Callable[[HealthChange, str], Awaitable[None]] | None = None,
    ) -> None:
        self.prober = prober
        self.health = health  # shared with the switchboard: plans read it (core/plan.py)
        self.notify = notify
        self.mail = mail  # queues an alert mail (the voicemail mailer's queue)
        self.board = HealthBoard()
        self.scheduler = ProbeScheduler(rand=random.random)
        self.coalescer = AlertCoalescer()
        self.rules: Rules | None = None
        self._wake = asyncio.Event()  # the probe schedule changed
        self._alerts_due = asyncio.Event()  # a change was pushed to the coalescer

    def reload(self, rules: Rules, now: float) -> None:
        """New rules: which targets exist, which are probed and how."""
        self.rules = rules
        alerts = rules.alerts
        if alerts.coalesce != self.coalescer.window:
            # The window of pending changes is theirs; new ones use the new one.
            self.coalescer.window = alerts.coalesce
            self.coalescer.max_delay = 5 * alerts.coalesce
        config = rules.health
        watched = {
            name: WatchedTarget(
                address=dial_of(name, target).label, policy=_policy(config.get(name))
            )
            for name, target in rules.targets.items()
        }
        reloaded = self.board.reload(watched, datetime.now(UTC))
        for name in (*reloaded.removed, *reloaded.reset):
            self.coalescer.forget(name)
            self.health.pop(name, None)
        for name in (*reloaded.added, *reloaded.reset):
            self.notify("target.health", self.board.snapshot()[name].as_json(name))
        schedules = {name: _schedule(rules, item) for name, item in config.items()
                     if item.probe is not None}  # fmt: skip
        self.scheduler.reload(schedules, now)
        self._share_states()
        self._wake.set()
        self._alerts_due.set()  # the coalescing window may have changed

    def _share_states(self) -> None:
        # Every state: plan_call (core/plan.py) skips only probed targets, so a
        # target whose probe a reload removed is no longer skipped, and one
        # that gained a probe is skipped at once if already known dead.
        states = self.board.snapshot()
        self.health.clear()
        self.health.update({name: status.state for name, status in states.items()})

    def on_event(self, kind: str, data: Mapping[str, object]) -> None:
        """Every status event passes here; a real call's leg is evidence."""
        outcome, target = data.get("outcome"), data.get("target")
        if kind != "call.leg" or not isinstance(outcome, str) or outcome == "cancelled":
            return
        sip_code, q850 = data.get("sip_code"), data.get("q850")
        evidence = Evidence.of(Source.CALL, Outcome(outcome), datetime.now(UTC),
                               sip_code=sip_code if isinstance(sip_code, int) else None,
                               q850=q850 if isinstance(q850, int) else None,
                               rang=bool(data.get("rang")))  # fmt: skip
        self.observe(str(target), evidence)

    def observe(self, target: str, evidence: Evidence) -> HealthChange | None:
        change = self.board.observe(target, evidence)
        if change is None:
            return None
        self.health[target] = change.state
        logger.log(_level(change), "target {} is now {} ({})", target, change.state.value,
                   evidence.text)  # fmt: skip
        self.notify("target.health", change.as_json())
        self.coalescer.push(change, asyncio.get_running_loop().time())
        self._alerts_due.set()
        return change

    async def run(self) -> None:
        """Probe and alert until cancelled.

        Alerts have a loop of their own: a call probe takes up to its ring
        time, and an alert due meanwhile must leave on time, or a short
        outage that ends during the probe would be coalesced into nothing.
        """
        async with asyncio.TaskGroup() as loops:
            loops.create_task(self._alert_loop(), name="health.alerts")
            loops.create_task(self._probe_loop(), name="health.probes")

    async def _probe_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            for target in self.scheduler.due(loop.time(), datetime.now(UTC)):
                try:
                    await self._probe(target)
                except Exception:  # noqa: BLE001 - a failed probe must not stop the gateway
                    logger.opt(exception=True).error("probe of {} failed", target)
            await _sleep_until(self._wake, self.scheduler.next_deadline(), loop.time())

    async def _alert_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            for change in self.coalescer.due(loop.time()):
                await self._alert(change)
            await _sleep_until(self._alerts_due, self.coalescer.next_deadline(), loop.time())

    async def probe_once(self, target: str) -> Evidence | None:
        """Probe a target now (``cmd/probe/<target>``, the ``probe`` command)."""
        return await self._probe(target)

    async def _probe(self, target: str) -> Evidence | None:
        if self.rules is None:
            raise RuntimeError("probe before the rules were loaded")
        config = self.rules.health.get(target)
        kind = (config.probe if config else None) or "call"
        dial = dial_of(target, self.rules.targets[target])
        wait = _early_media_timeout(self.rules, target)
        evidence = await self.prober.probe(kind, dial, wait)
        loop = asyncio.get_running_loop()
        if evidence is None:
            logger.info("probe of {} postponed: no call leg free", target)
            # record_probe schedules one interval on: land BUSY_RETRY from now,
            # or sooner when the target is probed more often than that.
            every = _every(config)
            self.scheduler.record_probe(target, loop.time() - every + min(BUSY_RETRY, every))
            return None
        logger.info("probe of {}: {}", target, evidence.text)
        # The interval runs from the probe's end: one that waited (for a
        # pool's first worker) or listened to early media does not bring
        # the next closer, and one asked for over MQTT counts as the due one.
        self.scheduler.record_probe(target, loop.time())
        self.observe(target, evidence)
        return evidence

    async def _alert(self, change: HealthChange) -> None:
        states = self.board.snapshot()
        others = rung_instead(self.rules, change.target) if self.rules else ()
        go_to = ", ".join(name for name in others
                          if name in states and states[name].state not in DEAD)  # fmt: skip
        # People read the time on the office clock, as in the voicemail mail.
        tz = ZoneInfo(self.rules.timezone) if self.rules else None
        text = alert_text(change, calls_go_to=go_to or None, tz=tz)
        logger.log(_level(change), "alert: {}", text)
        self.notify("health.alert", {"target": change.target, "state": change.state.value,
                                     "previous": change.previous.value, "text": text})  # fmt: skip
        if self.mail is not None:
            await self.mail(change, text)



async def _sleep_until(wake: asyncio.Event, deadline: float | None, now: float) -> None:
    """Until ``deadline`` (or ``IDLE_WAKE`` when none), or until ``wake`` is set."""
    wake.clear()
    delay = IDLE_WAKE if deadline is None else max(0.0, deadline - now)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), delay)


def _level(change: HealthChange) -> str:
    """A target lost is a warning; one found again (or first seen up) is news."""
    return "WARNING" if change.state in DEAD else "INFO"


def _policy(config: HealthWatch | None) -> HealthPolicy:
    if config is None:
        return HealthPolicy()
    return HealthPolicy(down_after=config.down_after, up_after=config.up_after)


def _every(config: HealthWatch | None) -> float:
    interval = config.interval if config else None
    return interval or CALL_PROBE_EVERY_S


def _early_media_timeout(rules: Rules, target: str) -> float:
    """The longest early-media wait of the steps that ring ``target``.

    An operator that announces "not in service" in early media sends its 404
    only after the announcement: the probe listens as long as a call would.
    """
    waits = [step.early_media_timeout for route in rules.routes for step in route.steps
             if not isinstance(step, VoicemailStep) and target in step.names]  # fmt: skip
    return max(waits, default=EARLY_MEDIA_TIMEOUT_S)


def _schedule(rules: Rules, config: HealthWatch) -> ProbeSchedule:
    only = config.only
    is_open: Callable[[datetime], bool] | None = None
    if only:
        is_open = lambda wall: rules.is_open(only, wall)  # noqa: E731
    return ProbeSchedule(every=_every(config), only=is_open)
