"""Bookkeeping of one running ring step and its legs (used by the session)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.core.causes import Outcome
from gateway.core.plan import Dial, RingMode, RingPlan

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
    """Where one outgoing leg is."""

    CALLING = "calling"  # INVITE sent, nothing heard
    TRYING = "trying"  # 100: the next hop has it
    RINGING = "ringing"  # 180: a phone rings
    EARLY = "early"  # 183 + SDP: the far end plays audio (ringback or announcement)
    CLOSED = "closed"


@dataclass
class LegRecord:
    """One outgoing leg as the session sees it."""

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

    def progress(self, status: int, *, early_media: bool, now: float) -> None:
        """Note a provisional response; arm the early-media bound on 183+SDP."""
        self.rang = self.rang or status in {180, 183}
        if status == 180:
            # A real ringing phone: any announcement timer no longer applies.
            self.state, self.early_deadline = LegState.RINGING, None
        elif early_media and self.state is not LegState.RINGING:
            self.state = LegState.EARLY
            if self.early_deadline is None:
                self.early_deadline = now + self.early_media_timeout
        elif self.state is LegState.CALLING:
            self.state = LegState.TRYING

    def close(
        self,
        outcome: Outcome | None,
        sip_code: int | None,
        q850: int | None,
        *,
        cancelled_by_us: bool = False,
    ) -> None:
        self.state = LegState.CLOSED
        self.outcome, self.sip_code, self.q850 = outcome, sip_code, q850
        self.cancelled = cancelled_by_us

    def due(self) -> float:
        if self.early_deadline is None:  # not "or": 0.0 is a deadline too
            return self.deadline
        return min(self.deadline, self.early_deadline)

    def timeout_outcome(self) -> Outcome:
        """How a leg that ran out of time ended.

        Nothing at all from the next hop is ``unreachable`` (as timer B would
        say, only sooner); anything heard, even an announcement that never
        ends, is ``no_answer``.
        """
        return Outcome.UNREACHABLE if self.state is LegState.CALLING else Outcome.NO_ANSWER

    def as_event(self, call_id: str) -> dict[str, object]:
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

    def progress(self, leg: LegRecord, *, early_media: bool, now: float, status: int) -> None:
        leg.progress(status, early_media=early_media, now=now)

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
