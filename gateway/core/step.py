"""Bookkeeping of one running ring step and its legs (used by the session and probes)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from gateway.core.causes import Outcome, ring_timed_out
from gateway.core.plan import Dial, RingMode, RingPlan

if TYPE_CHECKING:
    from gateway.json_types import JsonObject

# When several legs of one step fail, the caller (and failover_on) hears the
# most telling outcome: a person was there but busy beats a dead number
# (RFC 3261 16.7 picks the "best" response among forks the same way).
_TELLING = (
    Outcome.BUSY,
    Outcome.NO_ANSWER,
    Outcome.REJECTED,
    Outcome.UNASSIGNED,
    Outcome.UNREACHABLE,
    Outcome.FAILED,
)


class LegState(StrEnum):
    """Where one outgoing leg is (its moves: ``LEG_TABLE`` in session.py)."""

    CALLING = "calling"  # INVITE sent, nothing heard
    TRYING = "trying"  # 100 (or a 183 without SDP): the next hop has it
    RINGING = "ringing"  # 180: a phone rings
    EARLY = "early"  # 183 + SDP: the far end plays audio (ringback or announcement)
    CLOSED = "closed"


class LegCue(StrEnum):
    """What a leg hears or decides, in the words of the leg table."""

    TRYING = "trying"  # 100, or a provisional response without SDP that is not 180
    RINGING = "ringing"  # 180
    EARLY_MEDIA = "early_media"  # a provisional response with SDP
    ANSWERED = "answered"  # 2xx
    FAILED = "failed"  # a final error, or a local failure
    TIMED_OUT = "timed_out"  # its ring or early-media timeout ran out (we CANCEL)
    CANCELLED = "cancelled"  # another leg answered, or the caller left (we CANCEL)


def provisional_cue(status: int, *, early_media: bool) -> LegCue:
    """The cue of a provisional response (100..199)."""
    if status == 180:
        return LegCue.RINGING
    return LegCue.EARLY_MEDIA if early_media else LegCue.TRYING


@dataclass
class LegRecord:
    """One outgoing leg as the session (or a call probe) sees it."""

    leg: str
    target: Dial
    step: int
    started_at: float
    deadline: float
    early_media_timeout: float
    state: LegState = LegState.CALLING
    early_deadline: float | None = None
    outcome: Outcome | None = None
    sip_code: int | None = None
    q850: int | None = None
    cancelled: bool = False
    rang: bool = False  # a 180 or 183 came: the number reached a phone or an operator

    def enter(self, state: LegState, now: float) -> None:
        """Take the state the leg table gives; arm or drop the early-media bound."""
        if state is LegState.EARLY and self.early_deadline is None:
            self.early_deadline = now + self.early_media_timeout
        elif state is not LegState.EARLY:
            # A real ringing phone (or the end): the announcement timer no longer applies.
            self.early_deadline = None
        self.state = state

    def heard(self, status: int) -> None:
        self.rang = self.rang or status in {180, 183}

    def settle(
        self,
        outcome: Outcome | None,
        sip_code: int | None,
        q850: int | None,
        *,
        cancelled_by_us: bool = False,
    ) -> None:
        """Record how a closed leg ended."""
        self.outcome, self.sip_code, self.q850 = outcome, sip_code, q850
        self.cancelled = cancelled_by_us

    def due(self) -> float:
        if self.early_deadline is None:  # not "or": 0.0 is a deadline too
            return self.deadline
        return min(self.deadline, self.early_deadline)

    def timeout_outcome(self) -> Outcome:
        """How this leg ended if its time ran out (decided in causes.py)."""
        return ring_timed_out(heard_anything=self.state is not LegState.CALLING)

    def as_event(self, call_id: str) -> JsonObject:
        outcome = self.outcome.value if self.outcome else "cancelled"
        return {
            "call_id": call_id,
            "leg": self.leg,
            "target": self.target.name,
            "outcome": outcome,
            "sip_code": self.sip_code,
            "q850": self.q850,
            "rang": self.rang,
        }


class StepRun:
    """A ring step in progress: which targets are left, which legs are open."""

    def __init__(self, step: RingPlan, now: float) -> None:
        self.step = step
        self.started_at = now
        self._waiting = list(step.targets)
        self._legs: list[LegRecord] = []

    def take_targets(self) -> list[Dial]:
        """The targets to ring now: all of them, or the next one in turn."""
        count = 1 if self.step.mode is RingMode.EACH else len(self._waiting)
        taken, self._waiting = self._waiting[:count], self._waiting[count:]
        return taken

    def add(self, leg: LegRecord) -> None:
        self._legs.append(leg)

    def has_open_legs(self) -> bool:
        return any(leg.state is not LegState.CLOSED for leg in self._legs)

    def has_more_targets(self) -> bool:
        return bool(self._waiting)

    def expired_legs(self, now: float) -> list[LegRecord]:
        return [leg for leg in self._legs if leg.state is not LegState.CLOSED and leg.due() <= now]

    def next_deadline(self) -> float | None:
        dues = [leg.due() for leg in self._legs if leg.state is not LegState.CLOSED]
        return min(dues) if dues else None

    def outcome_leg(self) -> LegRecord | None:
        """The closed leg whose outcome speaks for the step."""
        failed = [leg for leg in self._legs if leg.outcome is not None]
        if not failed:
            return None
        if self.step.mode is RingMode.EACH:
            return failed[-1]
        return min(
            failed,
            key=lambda leg: (
                _TELLING.index(leg.outcome) if leg.outcome in _TELLING else len(_TELLING)
            ),
        )

    def outcome(self) -> Outcome | None:
        leg = self.outcome_leg()
        return leg.outcome if leg is not None else None
