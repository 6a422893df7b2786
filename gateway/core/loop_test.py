"""The inbound loop test: does a call to the public number still reach us?

The gateway calls its own public number through the trunk and expects the
trunk to send that very call back within ``within`` seconds. The call that
comes back is recognised by its called number and its caller number (both
E.164) while a test is outstanding, and is always refused (603), never
answered. Pure: times are passed in (monotonic seconds), like
``gateway/core/probing.py``; the adapter (gateway/health/inbound_loop.py) places the
leg, refuses the looped call and arms the timer.

One test at a time, a small state machine:

    IDLE --start--> WAITING --looped INVITE--> (verdict) --> IDLE
                       |--the leg ends / answered / deadline--> (verdict) --> IDLE

Invariants:
- at most one test is outstanding; ``start`` refuses a second one;
- every verdict ends the test: the adapter stops the leg if it is still up;
- ``deadline()`` is None exactly when no test is outstanding.

Verdicts (docs/health.md "Inbound loop test"):

| verdict | when | level |
| --- | --- | --- |
| arrived | the looped INVITE came within ``within`` | ok |
| late | it came after ``within``, before ``2 * within`` | warning |
| nothing | nothing came by ``2 * within`` | alarm: inbound is broken |
| blocked | the trunk answered 403, 482 or 503 first (a loop block) | inconclusive |
| not_routed | a 404-family answer, or SIT, first | alarm: the number is not routed |
| answered | the call was answered elsewhere (200; hung up at once) | alarm |
| other_caller | a call for the number came from another caller, never ours | inconclusive |
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.core.causes import Outcome

LOOP_BLOCK_CODES = frozenset({403, 482, 503})
LATE_FACTOR = 2.0  # a late arrival still counts up to this many ``within``


class LoopVerdict(StrEnum):
    ARRIVED = "arrived"
    LATE = "late"
    NOTHING = "nothing"
    BLOCKED = "blocked"
    NOT_ROUTED = "not_routed"
    ANSWERED = "answered"
    OTHER_CALLER = "other_caller"


class LoopLevel(StrEnum):
    OK = "ok"
    WARNING = "warning"
    INCONCLUSIVE = "inconclusive"
    ALARM = "alarm"


LEVELS = {
    LoopVerdict.ARRIVED: LoopLevel.OK,
    LoopVerdict.LATE: LoopLevel.WARNING,
    LoopVerdict.NOTHING: LoopLevel.ALARM,
    LoopVerdict.BLOCKED: LoopLevel.INCONCLUSIVE,
    LoopVerdict.NOT_ROUTED: LoopLevel.ALARM,
    LoopVerdict.ANSWERED: LoopLevel.ALARM,
    LoopVerdict.OTHER_CALLER: LoopLevel.INCONCLUSIVE,
}


@dataclass(frozen=True, slots=True)
class LoopConfig:
    """What to call, from which number, and how long to wait (all E.164, seconds)."""

    call: str
    caller: str
    within: float = 10.0


@dataclass(frozen=True, slots=True)
class LoopResult:
    """A finished test: its verdict, after how long, and what the trunk said."""

    verdict: LoopVerdict
    after: float
    sip_code: int | None = None
    seen_caller: str | None = None  # the caller of a call for the number that was not ours

    @property
    def level(self) -> LoopLevel:
        return LEVELS[self.verdict]

    def text(self, config: LoopConfig) -> str:
        """In an admin's words, with what to do."""
        code = f" ({self.sip_code})" if self.sip_code else ""
        return _TEXTS[self.verdict].format(
            call=config.call, after=self.after, code=code, within=config.within,
            caller=self.seen_caller or "?",
        )  # fmt: skip


_TEXTS = {
    LoopVerdict.ARRIVED: "a call to {call} came back from the trunk after {after:.1f} s",
    LoopVerdict.LATE: "a call to {call} came back only after {after:.1f} s "
    "(expected within {within:.0f} s)",
    LoopVerdict.NOTHING: "a call to {call} never came back within {after:.0f} s{code}: "
    "calls to the number do not reach this gateway",
    LoopVerdict.BLOCKED: "the trunk refused the call to {call}{code}, as loop protection may: "
    "inconclusive; call from a second trunk or set loop_test.from to a test number",
    LoopVerdict.NOT_ROUTED: "a call to {call} was answered as not assigned{code}: "
    "the number is not routed",
    LoopVerdict.ANSWERED: "a call to {call} was answered elsewhere after {after:.1f} s "
    "(hung up at once): the number does not lead to this gateway",
    LoopVerdict.OTHER_CALLER: "a call to {call} came from {caller}, not from the test's number: "
    "the trunk may replace caller numbers; inconclusive (that call was put through)",
}


class LoopTest:
    """One inbound loop test at a time."""

    def __init__(self, config: LoopConfig) -> None:
        self.config = config
        self.started: float | None = None
        self._leg_code: int | None = None  # a final answer the leg got without a verdict
        self._other: str | None = None

    @property
    def outstanding(self) -> bool:
        return self.started is not None

    def start(self, now: float) -> bool:
        """Begin a test (the adapter places the call); False while one is outstanding."""
        if self.started is not None:
            return False
        self.started, self._leg_code, self._other = now, None, None
        return True

    def deadline(self) -> float | None:
        """When ``on_timer`` gives the verdict "nothing"; None when idle."""
        if self.started is None:
            return None
        return self.started + LATE_FACTOR * self.config.within

    def is_looped(self, called: str, caller: str | None) -> bool:
        """Whether an incoming call (numbers in E.164) is this test's call coming back."""
        return self.started is not None and called == self.config.call and (
            caller == self.config.caller
        )

    def arrived(self, now: float) -> LoopResult | None:
        """The looped INVITE came (the adapter refuses it with 603)."""
        if self.started is None:
            return None
        after = now - self.started
        late = after > self.config.within
        return self._end(LoopVerdict.LATE if late else LoopVerdict.ARRIVED, after)

    def other_caller(self, called: str, caller: str | None) -> None:
        """A call for the tested number from someone else came meanwhile (put through)."""
        if self.started is not None and called == self.config.call:
            self._other = caller or "anonymous"

    def leg_answered(self, now: float) -> LoopResult | None:
        """Someone answered the test's call: the adapter hangs up at once."""
        if self.started is None:
            return None
        return self._end(LoopVerdict.ANSWERED, now - self.started, 200)

    def leg_failed(self, outcome: Outcome, sip_code: int | None, now: float) -> LoopResult | None:
        """The test's own call ended before its INVITE came back."""
        if self.started is None:
            return None
        after = now - self.started
        if outcome is Outcome.UNASSIGNED:  # 404 family, or SIT heard
            return self._end(LoopVerdict.NOT_ROUTED, after, sip_code)
        if sip_code in LOOP_BLOCK_CODES:
            return self._end(LoopVerdict.BLOCKED, after, sip_code)
        # Another code (480, 486 ...): the INVITE may still be on its way
        # (our 603 and the trunk's answer cross); the deadline decides.
        self._leg_code = sip_code
        return None

    def on_timer(self, now: float) -> LoopResult | None:
        """The deadline passed: nothing came back (or only another caller's call)."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        after = now - (self.started or now)
        if self._other is not None:
            return self._end(LoopVerdict.OTHER_CALLER, after, self._leg_code)
        return self._end(LoopVerdict.NOTHING, after, self._leg_code)

    def _end(self, verdict: LoopVerdict, after: float, code: int | None = None) -> LoopResult:
        result = LoopResult(verdict, after, code, self._other)
        self.started, self._leg_code, self._other = None, None, None
        return result
