"""One call's state machine: events and the time in, actions out.

Everything that affects a call's state lives in this module; ``_TABLE`` at the
bottom is the whole transition table. Invariants:

- The session never sleeps and never reads a clock: every entry point takes
  ``now`` (monotonic seconds) and ``next_deadline()`` says when it next wants
  ``handle_timer``. The adapter arms one timer per session.
- A leg is *open* from ``Ring`` until the session has decided its outcome.
  Closing a leg (CANCEL, loss of a race, timeout) is the session's decision;
  whatever the network says about a closed leg afterwards (the 487 that
  answers our CANCEL, a 200 that crossed it) is late news: a late 200 is
  hung up, anything else ignored.
- The caller is answered at most once: ``Bridge`` (200), ``StartVoicemail``
  (200) or ``Refuse`` (final error), and only while the caller is there.
- Audio of an unanswered leg is never connected to the caller: early media
  from a route that may fail over is never heard (DESIGN.md, outcomes).
- Once ``ENDED``, the session returns no more actions but ``HangUp`` for a
  late answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.core.actions import (
    Action,
    Bridge,
    Cancel,
    HangUp,
    HangUpCaller,
    Notify,
    Refuse,
    Ring,
    SendRinging,
    StartVoicemail,
)
from gateway.core.causes import Outcome, response_for
from gateway.core.events import (
    CallerHungUp,
    Event,
    LegAnswered,
    LegEnded,
    LegFailed,
    LegProgress,
    VoicemailEnded,
)
from gateway.core.plan import Plan, RingMode, RingPlan, VoicemailPlan
from gateway.core.step import LegRecord, LegState, StepRun

CLOSED_Q850 = 31  # "normal, unspecified": the business is closed, nothing failed


class CallState(StrEnum):
    """Where a call is."""

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


@dataclass
class CallSession:
    """The failover logic of one call (sans-IO)."""

    info: CallInfo
    plan: Plan
    started_at: float
    state: CallState = CallState.RINGING
    step_index: int = -1
    run: StepRun | None = None
    answered_leg: str | None = None
    result: str | None = None
    last: LegRecord | None = None
    _legs: dict[str, LegRecord] = field(default_factory=dict)
    _counter: int = 0

    # -- entry points --------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Begin the call: ringback to the caller and the first step."""
        actions: list[Action] = [
            Notify(
                "call.incoming",
                self._ids(caller=self.info.caller, called=self.info.called, route=self.plan.route),
            ),
            SendRinging(),
        ]
        return actions + self._next_step(now, from_names=None)

    def handle(self, event: Event, now: float) -> list[Action]:
        """Take one event from the network and return what to do."""
        transition = _TABLE.get((self.state, type(event)))
        if transition is None:
            return self._late(event)
        return transition(self, event, now)

    def handle_timer(self, now: float) -> list[Action]:
        """Act on every deadline that has passed."""
        if self.state is not CallState.RINGING or self.run is None:
            return []
        actions: list[Action] = []
        for leg in self.run.expired_legs(now):
            actions += self._close_leg(leg, LegFailed(leg.leg, leg.timeout_outcome()), cancel=True)
        return actions + self._after_leg_closed(now)

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must next be called, or None."""
        if self.state is not CallState.RINGING or self.run is None:
            return None
        return self.run.next_deadline()

    @property
    def open_legs(self) -> tuple[str, ...]:
        return tuple(k for k, leg in self._legs.items() if leg.state is not LegState.CLOSED)

    @property
    def legs(self) -> tuple[LegRecord, ...]:
        return tuple(self._legs.values())

    # -- ringing -------------------------------------------------------------

    def _on_progress(self, event: Event, now: float) -> list[Action]:
        assert isinstance(event, LegProgress)
        leg = self._open_leg(event.leg)
        if leg is not None and self.run is not None:
            self.run.progress(leg, early_media=event.early_media, now=now, status=event.status)
        return []

    def _on_answered(self, event: Event, now: float) -> list[Action]:
        del now  # every transition takes the time; this one needs none
        assert isinstance(event, LegAnswered)
        leg = self._open_leg(event.leg)
        if leg is None:
            return self._late(event)
        leg.close(Outcome.ANSWERED, 200, None)
        self.answered_leg = leg.leg
        self.state = CallState.BRIDGED
        self.result = "answered"
        actions: list[Action] = [Notify("call.leg", leg.as_event(self.info.call_id))]
        actions += self._close_others(leg.leg)
        return [
            *actions,
            Bridge(leg.leg),
            Notify("call.answered", self._ids(target=leg.target.name)),
        ]

    def _on_failed(self, event: Event, now: float) -> list[Action]:
        assert isinstance(event, LegFailed)
        leg = self._open_leg(event.leg)
        if leg is None:
            return []
        actions = self._close_leg(leg, event, cancel=False)
        return actions + self._after_leg_closed(now)

    def _on_caller_gone_ringing(self, event: Event, now: float) -> list[Action]:
        del event
        return [*self._close_others(None), *self._end("abandoned", now)]

    # -- bridged and voicemail -------------------------------------------------

    def _on_caller_gone_bridged(self, event: Event, now: float) -> list[Action]:
        del event
        assert self.answered_leg is not None
        return [HangUp(self.answered_leg), *self._end("answered", now)]

    def _on_leg_gone_bridged(self, event: Event, now: float) -> list[Action]:
        leg = getattr(event, "leg", None)
        if leg != self.answered_leg:
            return self._late(event)
        return [HangUpCaller(), *self._end("answered", now)]

    def _on_voicemail_ended(self, event: Event, now: float) -> list[Action]:
        assert isinstance(event, VoicemailEnded)
        return self._end("voicemail", now)

    def _on_caller_gone_voicemail(self, event: Event, now: float) -> list[Action]:
        # The voicemail adapter finishes the recording on hang-up and then
        # reports VoicemailEnded; nothing to decide here.
        del event, now
        return []

    # -- steps ---------------------------------------------------------------

    def _next_step(self, now: float, from_names: tuple[str, ...] | None) -> list[Action]:
        self.step_index += 1
        step = self.plan.steps[self.step_index] if self.step_index < len(self.plan.steps) else None
        actions: list[Action] = []
        if from_names is not None and self.last is not None:
            # A failover with no step left is still reported (``to`` null).
            to = step.names if step is not None else None
            actions.append(Notify("call.failover", self._failover_data(from_names, to)))
        if step is None:
            return actions + self._refuse(now)
        actions.append(
            Notify(
                "call.step",
                self._ids(step=self.step_index, kind=step.kind, targets=list(step.names)),
            )
        )
        if isinstance(step, VoicemailPlan):
            self.state = CallState.VOICEMAIL
            self.run = None
            return [*actions, StartVoicemail(step.box, self._why())]
        self.run = StepRun(step, now)
        return actions + self._ring_next(now)

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

    def _after_leg_closed(self, now: float) -> list[Action]:
        """A leg just failed: ring the next in turn, move on, or give up."""
        assert self.run is not None
        if self.state is not CallState.RINGING or self.run.has_open_legs():
            return []
        step = self.run.step
        outcome = self.run.outcome()
        if outcome not in step.failover_on:
            return self._refuse(now)
        if step.mode is RingMode.EACH and self.run.has_more_targets():
            return self._ring_next(now)
        return self._next_step(now, from_names=step.names)

    def _close_leg(self, leg: LegRecord, failed: LegFailed, *, cancel: bool) -> list[Action]:
        leg.close(failed.outcome, failed.sip_code, failed.q850)
        self.last = (self.run.outcome_leg() if self.run is not None else None) or leg
        actions: list[Action] = [Cancel(leg.leg)] if cancel else []
        return [*actions, Notify("call.leg", leg.as_event(self.info.call_id))]

    def _close_others(self, keep: str | None) -> list[Action]:
        """CANCEL every open leg but ``keep``: someone answered, or the caller left."""
        actions: list[Action] = []
        for leg in self._legs.values():
            if leg.leg != keep and leg.state is not LegState.CLOSED:
                leg.close(None, None, None, cancelled_by_us=True)
                actions += [Cancel(leg.leg), Notify("call.leg", leg.as_event(self.info.call_id))]
        return actions

    # -- ends ----------------------------------------------------------------

    def _refuse(self, now: float) -> list[Action]:
        if not self.plan.steps and self.plan.mode == "closed":
            # Closed on purpose and no voicemail to take the call: "not now", not
            # the 503 of a gateway that failed to reach anyone.
            return [Refuse(480, CLOSED_Q850), *self._end("refused", now, sip_code=480,
                                                          q850=CLOSED_Q850)]  # fmt: skip
        last = self.run.outcome_leg() if self.run is not None else None
        outcome = last.outcome if last is not None and last.outcome else Outcome.UNREACHABLE
        code, cause = response_for(outcome)
        q850 = last.q850 if last is not None and last.q850 else cause
        return [
            Refuse(code, q850),
            *self._end("failed", now, outcome=outcome, sip_code=code, q850=q850),
        ]

    def _end(
        self,
        result: str,
        now: float,
        *,
        outcome: Outcome | None = None,
        sip_code: int | None = None,
        q850: int | None = None,
    ) -> list[Action]:
        self.state = CallState.ENDED
        self.result = result
        self.run = None
        data = self._ids(
            result=result,
            outcome=outcome.value if outcome else None,
            sip_code=sip_code,
            q850=q850,
            duration=round(now - self.started_at, 3),
        )
        return [Notify("call.ended", data)]

    def _late(self, event: Event) -> list[Action]:
        """News about a leg we have closed: hang up a late answer, ignore the rest."""
        if isinstance(event, LegAnswered) and event.leg != self.answered_leg:
            return [HangUp(event.leg)]
        return []

    # -- small readers ---------------------------------------------------------

    def _open_leg(self, leg_id: str) -> LegRecord | None:
        leg = self._legs.get(leg_id)
        return leg if leg is not None and leg.state is not LegState.CLOSED else None

    def _ids(self, **data: object) -> dict[str, object]:
        return {"call_id": self.info.call_id, **data}

    def _failover_data(
        self, from_names: tuple[str, ...], to: tuple[str, ...] | None
    ) -> dict[str, object]:
        last = self.last
        assert last is not None
        return self._ids(
            **{
                "from": list(from_names),
                "to": list(to) if to is not None else None,
                "outcome": last.outcome.value if last.outcome else None,
                "sip_code": last.sip_code,
                "q850": last.q850,
            }
        )

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


_Transition = Callable[[CallSession, Event, float], list[Action]]

_TABLE: dict[tuple[CallState, type[Event]], _Transition] = {
    (CallState.RINGING, LegProgress): CallSession._on_progress,
    (CallState.RINGING, LegAnswered): CallSession._on_answered,
    (CallState.RINGING, LegFailed): CallSession._on_failed,
    (CallState.RINGING, CallerHungUp): CallSession._on_caller_gone_ringing,
    (CallState.BRIDGED, CallerHungUp): CallSession._on_caller_gone_bridged,
    (CallState.BRIDGED, LegEnded): CallSession._on_leg_gone_bridged,
    (CallState.BRIDGED, LegFailed): CallSession._on_leg_gone_bridged,
    (CallState.VOICEMAIL, CallerHungUp): CallSession._on_caller_gone_voicemail,
    (CallState.VOICEMAIL, VoicemailEnded): CallSession._on_voicemail_ended,
}

__all__ = ["CallInfo", "CallSession", "CallState", "RingPlan"]
