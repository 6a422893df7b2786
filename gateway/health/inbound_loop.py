"""The inbound loop test, run: call the public number, refuse it when it comes back.

The decisions are the core's (gateway/core/loop_test.py); this module keeps
the schedule (``every``, ``only``: the probes' scheduler), places the test's
call through the trunk, presenting ``loop_test.from``, and is asked by the
switchboard about every incoming call: the test's own call coming back is
refused with 603 (Q.850 21) at once, never answered and never routed. Each
verdict is logged, published (``inbound.health``, retained at
``inbound/health``) and, when its level changes, mailed to the admins.

The test runs only while no leg is in use: it needs two (its call and the
call coming back), and a customer's call always comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from loguru import logger

from gateway.core.causes import Outcome
from gateway.core.events import LegAnswered, LegEnded, LegFailed
from gateway.core.loop_test import LoopLevel, LoopResult, LoopTest
from gateway.core.plan import Dial
from gateway.core.probing import ProbeSchedule, ProbeScheduler
from gateway.sip.signals import SitSignal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from gateway.core.loop_test import LoopConfig
    from gateway.core.rules import Rules
    from gateway.json_types import JsonObject
    from gateway.sip.engine import SipEngine
    from gateway.sip.signals import LegSignal
    from gateway.status.bus import StatusSink

    Mail = Callable[[str, str], Awaitable[None]]  # (text, the number tested)

NAME = "inbound"  # the scheduler's key, and the topic's first level
BUSY_RETRY = 30.0  # seconds before a test postponed by calls in progress is tried again
IDLE_WAKE = 60.0
LOOPED_REFUSAL = (603, 21)  # Decline, Q.850 call rejected: the trunk ends it at once


class InboundLoop:
    """Schedules loop tests, places their calls and recognises them coming back."""

    def __init__(self, engine: SipEngine, notify: StatusSink, mail: Mail | None = None) -> None:
        self.engine = engine
        self.notify = notify
        self.mail = mail
        self.test: LoopTest | None = None
        self.rules: Rules | None = None
        self.scheduler = ProbeScheduler(rand=random.random)
        self.leg: str | None = None
        self._ids = itertools.count(1)
        self._level: LoopLevel | None = None  # of the last verdict: a change is mailed
        self._mails: list[tuple[str, str]] = []
        self._wake = asyncio.Event()

    def reload(self, rules: Rules, now: float) -> None:
        """New rules: test (or stop testing) as ``loop_test`` says."""
        self.rules = rules
        section = rules.loop_test
        if section is None:
            self.scheduler.reload({}, now)
            if self.test is not None and not self.test.outstanding:
                self.test = None
            return
        is_open = None
        if section.only:
            only = section.only
            is_open = lambda wall: rules.is_open(only, wall)  # noqa: E731
        self.scheduler.reload({NAME: ProbeSchedule(every=section.every, only=is_open)}, now)
        if self.test is None or not self.test.outstanding:
            self.test = LoopTest(section.config())
        self._wake.set()

    # -- asked by the switchboard -----------------------------------------------

    def intercept(self, call_id: str, caller: str, called: tuple[str, ...]) -> bool:
        """An incoming call (numbers already E.164): True when it is the test's, refused."""
        test = self.test
        if test is None or not test.outstanding:
            return False
        if not any(test.is_looped(number, caller) for number in called):
            for number in called:
                test.other_caller(number, caller)
            return False
        logger.info("call {}: the loop test's call came back; refused {}", call_id,
                    LOOPED_REFUSAL[0])  # fmt: skip
        self.engine.refuse(call_id, *LOOPED_REFUSAL)
        self._finish(test.arrived(self._now()))
        return True

    def owns(self, leg: str) -> bool:
        return leg == self.leg

    def on_leg(self, sig: LegSignal | SitSignal) -> None:
        """The test's own call progressed, was answered, failed or played SIT."""
        test, now = self.test, self._now()
        if isinstance(sig, SitSignal):
            logger.info("loop test leg {}: {}", sig.leg, sig.tone.describe())
            self.engine.stop_leg(sig.leg)
            # Whatever the code: tones instead of our own call coming back.
            result = test.leg_failed(Outcome.UNASSIGNED, None, now) if test else None
        elif isinstance(sig.event, LegAnswered):
            self.engine.stop_leg(sig.leg)  # never hold a call someone else answered
            result = test.leg_answered(now) if test else None
        elif isinstance(sig.event, LegFailed):
            self.leg = None
            event = sig.event
            result = test.leg_failed(event.outcome, event.sip_code, now) if test else None
        else:
            if isinstance(sig.event, LegEnded):  # the BYE after an answer
                self.leg = None
            return
        self._finish(result)

    # -- the schedule --------------------------------------------------------------

    async def run(self) -> None:
        """Test on schedule, time tests out, mail verdicts; until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if self.test is not None:
                self._finish(self.test.on_timer(now))
            for _ in self.scheduler.due(now, datetime.now(UTC)):
                self._start(now)
            while self._mails and self.mail is not None:
                await self.mail(*self._mails.pop(0))
            self._mails.clear()
            await self._sleep_until(self._next_deadline(loop.time()))

    def _start(self, now: float) -> None:
        test, rules = self.test, self.rules
        if test is None or test.outstanding or rules is None or rules.loop_test is None:
            return  # no test asked for: the scheduler has nothing due either
        if self.engine.legs_in_use() > 0:
            logger.info("loop test postponed: calls in progress")
            every = rules.loop_test.every
            self.scheduler.record_probe(NAME, now - every + min(BUSY_RETRY, every))
            return
        test.start(now)
        self.leg = f"loop-{next(self._ids)}"
        config = test.config
        logger.info("loop test {}: calling {} from {}, expected back within {:.0f} s",
                    self.leg, config.call, config.caller, config.within)  # fmt: skip
        dial = Dial(name="loop-test", number=config.call, country=rules.country)
        self.engine.ring(self.leg, dial, caller=config.caller)

    def _finish(self, result: LoopResult | None) -> None:
        test = self.test
        if result is None or test is None:
            return
        if self.leg is not None:
            self.engine.stop_leg(self.leg)  # CANCEL, or BYE; nothing if it is gone
        text = result.text(test.config)
        level = result.level
        log = logger.warning if level in {LoopLevel.ALARM, LoopLevel.WARNING} else logger.info
        log("loop test: {}: {}", result.verdict.value, text)
        self.notify("inbound.health", verdict_event(result, test.config, text))
        if level is not self._level and (self._level is not None or level is not LoopLevel.OK):
            self._mails.append((_subject(level, text), test.config.call))
        self._level = level
        if self.rules is not None and self.rules.loop_test is not None:
            self.test = LoopTest(self.rules.loop_test.config())  # a reload's new numbers
        self._wake.set()

    def _next_deadline(self, now: float) -> float:
        test_deadline = self.test.deadline() if self.test is not None else None
        deadlines = [self.scheduler.next_deadline(), test_deadline]
        found = [d for d in deadlines if d is not None]
        return min(found) if found else now + IDLE_WAKE

    async def _sleep_until(self, deadline: float) -> None:
        self._wake.clear()
        delay = max(0.0, deadline - asyncio.get_running_loop().time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()


def verdict_event(result: LoopResult, config: LoopConfig, text: str) -> JsonObject:
    """The ``inbound.health`` event (docs/schemas/inbound-health.schema.json)."""
    return {
        "verdict": result.verdict.value,
        "level": result.level.value,
        "at": datetime.now(UTC).isoformat(),
        "after_s": round(result.after, 3),
        "sip_code": result.sip_code,
        "call": config.call,
        "from": config.caller,
        "text": text,
    }


def _subject(level: LoopLevel, text: str) -> str:
    words = {LoopLevel.OK: "inbound calls work again", LoopLevel.WARNING: "inbound calls slow",
             LoopLevel.INCONCLUSIVE: "inbound loop test inconclusive",
             LoopLevel.ALARM: "INBOUND CALLS BROKEN"}  # fmt: skip
    return f"{words[level]}: {text}"
