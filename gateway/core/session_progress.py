"""A call's progress through its plan: the step it is on, its legs, how it ends.

``CallProgress`` is what a ``CallSession`` (gateway/core/session.py) holds and
the moves its handlers share: take the next step, ring the legs a step wants,
decide after a leg closed whether to wait, ring on, move on or refuse, end the
call, and the ``Notify`` data of each of those. The transition tables and the
handlers that choose among these moves live in session.py; the invariants are
stated in its header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from gateway.core.actions import Action, Notify, Refuse, Ring, StartVoicemail
from gateway.core.causes import CONGESTION_Q850, RETRY_AFTER_S, Outcome, response_for
from gateway.core.plan import Plan, RingMode, VoicemailPlan
from gateway.core.step import LegRecord, LegState, StepRun

if TYPE_CHECKING:
    from gateway.json_types import JsonObject, JsonValue

VOICEMAIL_UNAVAILABLE = "voicemail_unavailable"  # reason of a call whose box took no message


class CallState(StrEnum):
    """Where a call is."""

    OFFERED = "offered"  # the trunk's INVITE is in; the intake's verdict comes first
    RINGING = "ringing"  # a ring step is running; the caller hears ringback
    BRIDGED = "bridged"  # caller and one leg talk
    VOICEMAIL = "voicemail"  # the caller leaves a message
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What the trunk told us about the call."""

    call_id: str
    caller: str
    called: str


Go = tuple[CallState, list[Action]]  # where a handler leads, and what to do on the way


@dataclass
class CallProgress:
    """One call's plan, the step it is on, its legs and its result (sans-IO)."""

    info: CallInfo
    plan: Plan
    started_at: float
    state: CallState = CallState.OFFERED
    step_index: int = -1
    run: StepRun | None = None
    answered_leg: str | None = None
    result: str | None = None
    last: LegRecord | None = None
    _legs: dict[str, LegRecord] = field(default_factory=dict)
    _counter: int = 0

    @property
    def open_legs(self) -> tuple[str, ...]:
        return tuple(k for k, leg in self._legs.items() if leg.state is not LegState.CLOSED)

    @property
    def legs(self) -> tuple[LegRecord, ...]:
        return tuple(self._legs.values())

    # -- steps ---------------------------------------------------------------

    def _next_step(self, now: float, from_names: tuple[str, ...] | None) -> Go:
        self.step_index += 1
        step = self.plan.steps[self.step_index] if self.step_index < len(self.plan.steps) else None
        actions: list[Action] = []
        if from_names is not None and self.last is not None:
            # A failover with no step left is still reported (``to`` null).
            to = step.names if step is not None else None
            actions.append(Notify("call.failover", self._failover_data(from_names, to)))
        if step is None:
            state, more = self._refuse(now)
            return state, actions + more
        actions.append(
            Notify(
                "call.step",
                self._ids(step=self.step_index, kind=step.kind, targets=list(step.names)),
            )
        )
        if isinstance(step, VoicemailPlan):
            return CallState.VOICEMAIL, [*actions, StartVoicemail(step.box, self._why())]
        self.run = StepRun(step, now)
        return CallState.RINGING, actions + self._ring_next(now)

    def _ring_next(self, now: float) -> list[Action]:
        """Start the legs the running step wants now (all, or the next one)."""
        assert self.run is not None
        actions: list[Action] = []
        for target in self.run.take_targets():
            self._counter += 1
            leg_id = f"{self.info.call_id}/{self._counter}"
            leg = LegRecord(
                leg=leg_id,
                target=target,
                step=self.step_index,
                started_at=now,
                deadline=now + self.run.step.timeout,
                early_media_timeout=self.run.step.early_media_timeout,
            )
            self._legs[leg_id] = leg
            self.run.add(leg)
            actions.append(Ring(leg_id, target))
        return actions

    def _after_leg_closed(self, now: float) -> Go:
        """A leg just failed: wait for the others, ring the next in turn, move on, or give up."""
        assert self.run is not None
        if self.run.has_open_legs():
            return CallState.RINGING, []
        step = self.run.step
        if self.run.outcome() not in step.failover_on:
            return self._refuse(now)
        if step.mode is RingMode.EACH and self.run.has_more_targets():
            return CallState.RINGING, self._ring_next(now)
        return self._next_step(now, from_names=step.names)

    # -- ends ----------------------------------------------------------------

    def _refuse(self, now: float) -> Go:
        """Every step failed (or none was left): tell the caller the most telling outcome."""
        last = self.run.outcome_leg() if self.run is not None else None
        outcome = last.outcome if last is not None and last.outcome else Outcome.UNREACHABLE
        code, cause = response_for(outcome)
        q850 = last.q850 if last is not None and last.q850 else cause
        # A leg the gateway could not ring for want of capacity: the caller may retry soon.
        ours = last is not None and last.sip_code is None and q850 == CONGESTION_Q850
        refuse = Refuse(code, q850, RETRY_AFTER_S if ours else None)
        return self._end("failed", now, [refuse], outcome=outcome, sip_code=code,
                         q850=q850)  # fmt: skip

    def _end(  # noqa: PLR0913 - the call.ended fields, each optional
        self,
        result: str,
        now: float,
        actions: list[Action],
        *,
        outcome: Outcome | None = None,
        sip_code: int | None = None,
        q850: int | None = None,
        reason: str | None = None,
    ) -> Go:
        self.result = result
        data = self._ids(
            result=result,
            outcome=outcome.value if outcome else None,
            sip_code=sip_code,
            q850=q850,
            reason=reason,
            duration=round(now - self.started_at, 3),
        )
        return CallState.ENDED, [*actions, Notify("call.ended", data)]

    # -- small readers ---------------------------------------------------------

    def _open_leg(self, leg_id: str) -> LegRecord | None:
        leg = self._legs.get(leg_id)
        return leg if leg is not None and leg.state is not LegState.CLOSED else None

    def _ids(self, **data: JsonValue) -> JsonObject:
        return {"call_id": self.info.call_id, **data}

    def _incoming(self) -> Notify:
        info = self.info
        route = self.plan.route or None  # no route took the call
        return Notify("call.incoming", self._ids(caller=info.caller, called=info.called,
                                                 route=route))  # fmt: skip

    def _failover_data(
        self, from_names: tuple[str, ...], to: tuple[str, ...] | None
    ) -> JsonObject:
        last = self.last
        assert last is not None
        data: JsonObject = {
            "from": list(from_names),
            "to": list(to) if to is not None else None,
            "outcome": last.outcome.value if last.outcome else None,
            "sip_code": last.sip_code,
            "q850": last.q850,
        }
        return self._ids(**data)

    def _why(self) -> str:
        """Why the call came to voicemail, in words for the mail subject.

        E.g. "office-mobile known dead (skipped), anna busy".
        """
        skipped = [f"{name} known dead (skipped)" for name in self.plan.skipped]
        reasons = [
            f"{leg.target.name} {leg.outcome.value.replace('_', ' ')}"
            for leg in self._legs.values()
            if leg.outcome is not None
        ]
        return ", ".join(dict.fromkeys(skipped + reasons)) or "no one to ring"
