"""One call's state machine: events and the time in, actions out.

Every move of a call between states is in this module. The two tables
at the bottom are the whole machine: ``TABLE`` says, for a call in a state
and an event, which states it may go to and which handler decides among
them; ``LEG_TABLE`` says where one outgoing leg goes on what it hears. "What
happens on a 404 from the main line?": the leg table closes the leg
(``FAILED``), and the row ``(RINGING, LegFailed)`` rings the next target in
turn, moves to the next step (ring or voicemail), or refuses the caller.
The handlers share the plan's walk (take the next step, ring its legs, after
a failed leg wait, ring on, move on or refuse, end the call) and the call's
record: ``CallProgress`` in gateway/core/session_progress.py, whose methods
return the state they lead to for the handler to return.
Invariants (re-checked after every event and timer by tests/unit/callcore.py):

- The session never sleeps and never reads a clock: every entry point takes
  ``now`` (monotonic seconds) and ``next_deadline()`` says when it next wants
  ``handle_timer``. The adapter arms one timer per session.
- Every trunk call starts ``OFFERED`` and its first event is the intake's
  verdict (gateway/core/intake.py); every call ends in exactly one
  ``call.ended`` whose ``result`` is the truth: ``answered``, ``voicemail``
  (only when a message was stored), ``abandoned``, ``failed`` or
  ``refused`` (with the ``reason``).
- A handler returns the state it leads to; ``handle`` checks it against its
  row, so a row lists every state its event can lead to.
- A leg is *open* from ``Ring`` until the session has decided its outcome.
  Closing a leg (CANCEL, loss of a race, timeout) is the session's decision;
  whatever the network says about a closed leg afterwards (the 487 that
  answers our CANCEL, a 200 that crossed it) is late news: a late 200 is
  hung up, anything else ignored.
- The caller is answered at most once: ``Bridge`` (200), ``StartVoicemail``
  (200 once the box can take a message) or ``Refuse`` (final error, also
  after a box that could not), and only while the caller is there.
- Audio of an unanswered leg is never connected to the caller: early media
  from a route that may fail over is never heard (DESIGN.md, outcomes).
- ``RINGING`` holds exactly while a leg is open, and only then is there a
  deadline. Once ``ENDED``, the session returns no more actions but
  ``HangUp`` for a late answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

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
)
from gateway.core.causes import Outcome, response_for
from gateway.core.events import (
    CallAdmitted,
    CallerHungUp,
    CallRefused,
    DeadlinePassed,
    Event,
    LegAnswered,
    LegEnded,
    LegFailed,
    LegProgress,
    VoicemailEnded,
)
from gateway.core.plan import RingPlan
from gateway.core.session_progress import (
    VOICEMAIL_UNAVAILABLE,
    CallInfo,
    CallProgress,
    CallState,
    Go,
)
from gateway.core.step import LegCue, LegRecord, LegState, provisional_cue

if TYPE_CHECKING:
    from collections.abc import Callable


class CallSession(CallProgress):
    """The failover logic of one call (sans-IO)."""

    # -- entry points --------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Begin an admitted call: ringback to the caller and the first step."""
        return self.handle(CallAdmitted(), now)

    def handle(self, event: Event, now: float) -> list[Action]:
        """Take one event (the intake's verdict, the network's news) and return what to do."""
        row = TABLE.get((self.state, type(event)))
        if row is None or self._is_late(event):
            return self._late(event)
        state, actions = row.handler(self, event, now)
        assert state in row.leads_to, f"{self.state} -{type(event).__name__}-> {state}"
        self.state = state
        if state is not CallState.RINGING:
            self.run = None
        return actions

    def handle_timer(self, now: float) -> list[Action]:
        """Act on every deadline that has passed."""
        return self.handle(DeadlinePassed(), now)

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must next be called, or None."""
        if self.state is not CallState.RINGING or self.run is None:
            return None
        return self.run.next_deadline()

    # -- the intake's verdict ----------------------------------------------------

    def _on_admitted(self, event: CallAdmitted, now: float) -> Go:
        """Ringback to the caller and the first step, whose INVITEs leave first.

        The caller's 180 waits for the first legs' INVITEs (a fraction of a
        millisecond): the route is what the caller waits on. It still comes
        before any answer, voicemail or refusal of the first step.
        """
        del event
        state, more = self._next_step(now, from_names=None)
        rings = 0
        while rings < len(more) and isinstance(more[rings], Ring | Notify):
            rings += 1
        return state, [self._incoming(), *more[:rings], SendRinging(), *more[rings:]]

    def _on_refused(self, event: CallRefused, now: float) -> Go:
        actions: list[Action] = [self._incoming()]
        if not event.answered:
            actions.append(Refuse(event.sip_code, event.q850, event.retry_after))
        return self._end("refused", now, actions, reason=event.reason.value,
                         sip_code=event.sip_code, q850=event.q850)  # fmt: skip

    # -- ringing -------------------------------------------------------------

    def _on_progress(self, event: LegProgress, now: float) -> Go:
        leg = self._legs[event.leg]
        leg.heard(event.status)
        _move(leg, provisional_cue(event.status, early_media=event.early_media), now)
        return CallState.RINGING, []

    def _on_answered(self, event: LegAnswered, now: float) -> Go:
        leg = self._legs[event.leg]
        _move(leg, LegCue.ANSWERED, now)
        leg.settle(Outcome.ANSWERED, 200, None)
        self.answered_leg = leg.leg
        self.result = "answered"
        actions: list[Action] = [Notify("call.leg", leg.as_event(self.info.call_id))]
        actions += self._close_others(leg.leg, now)
        answered = Notify("call.answered", self._ids(target=leg.target.name))
        return CallState.BRIDGED, [*actions, Bridge(leg.leg), answered]

    def _on_failed(self, event: LegFailed, now: float) -> Go:
        leg = self._legs[event.leg]
        actions = self._close_leg(leg, event, LegCue.FAILED, now)
        state, more = self._after_leg_closed(now)
        return state, actions + more

    def _on_deadline(self, event: DeadlinePassed, now: float) -> Go:
        del event
        assert self.run is not None
        actions: list[Action] = []
        for leg in self.run.expired_legs(now):
            timed_out = LegFailed(leg.leg, leg.timeout_outcome())
            actions += [Cancel(leg.leg), *self._close_leg(leg, timed_out, LegCue.TIMED_OUT, now)]
        state, more = self._after_leg_closed(now)
        return state, actions + more

    def _on_caller_gone_ringing(self, event: CallerHungUp, now: float) -> Go:
        del event
        return self._end("abandoned", now, self._close_others(None, now))

    # -- bridged and voicemail -------------------------------------------------

    def _on_caller_gone_bridged(self, event: CallerHungUp, now: float) -> Go:
        del event
        assert self.answered_leg is not None
        return self._end("answered", now, [HangUp(self.answered_leg)])

    def _on_leg_gone_bridged(self, event: LegEnded | LegFailed, now: float) -> Go:
        del event  # only the answered leg is not late news here
        return self._end("answered", now, [HangUpCaller()])

    def _on_voicemail_ended(self, event: VoicemailEnded, now: float) -> Go:
        if event.stored:
            return self._end("voicemail", now, [])
        if event.why == "unavailable":
            # The box took no message and the caller was never answered.
            code, cause = response_for(Outcome.NO_ANSWER)
            return self._end("failed", now, [Refuse(code, cause)], reason=VOICEMAIL_UNAVAILABLE,
                             sip_code=code, q850=cause)  # fmt: skip
        if event.why in {"no_audio", "error"}:
            return self._end("failed", now, [], reason=f"voicemail_{event.why}")
        return self._end("abandoned", now, [])  # hung up, or too short to be a message

    def _on_caller_gone_voicemail(self, event: CallerHungUp, now: float) -> Go:
        # The voicemail adapter finishes the recording on hang-up and then
        # reports VoicemailEnded; nothing to decide here.
        del event, now
        return CallState.VOICEMAIL, []

    # -- closing legs ---------------------------------------------------------

    def _close_leg(
        self, leg: LegRecord, failed: LegFailed, cue: LegCue, now: float
    ) -> list[Action]:
        _move(leg, cue, now)
        leg.settle(failed.outcome, failed.sip_code, failed.q850)
        self.last = (self.run.outcome_leg() if self.run is not None else None) or leg
        return [Notify("call.leg", leg.as_event(self.info.call_id))]

    def _close_others(self, keep: str | None, now: float) -> list[Action]:
        """CANCEL every open leg but ``keep``: someone answered, or the caller left."""
        actions: list[Action] = []
        for leg in self._legs.values():
            if leg.leg != keep and leg.state is not LegState.CLOSED:
                _move(leg, LegCue.CANCELLED, now)
                leg.settle(None, None, None, cancelled_by_us=True)
                actions += [Cancel(leg.leg), Notify("call.leg", leg.as_event(self.info.call_id))]
        return actions

    # -- late news -------------------------------------------------------------

    def _is_late(self, event: Event) -> bool:
        """News about a leg that is closed and not the answered one."""
        leg = getattr(event, "leg", None)
        return leg is not None and leg != self.answered_leg and self._open_leg(leg) is None

    def _late(self, event: Event) -> list[Action]:
        """Late news: hang up a late answer, ignore the rest."""
        if isinstance(event, LegAnswered) and event.leg != self.answered_leg:
            return [HangUp(event.leg)]
        return []


def _move(leg: LegRecord, cue: LegCue, now: float) -> None:
    """Move an open leg along LEG_TABLE."""
    leg.enter(LEG_TABLE[(leg.state, cue)], now)


@dataclass(frozen=True, slots=True)
class Row:
    """One row of the call table: the states an event may lead to, and who decides."""

    leads_to: frozenset[CallState]
    handler: Callable[[CallSession, Event, float], Go]


E = TypeVar("E", bound=Event)
Key = tuple[CallState, type[object]]  # a call's state and the class of an Event


def _row(
    state: CallState,
    event_type: type[E],
    handler: Callable[[CallSession, E, float], Go],
    *leads_to: CallState,
) -> tuple[Key, Row]:
    """A row of TABLE: ``handler`` decides on an ``event_type`` event in ``state``."""

    def decide(session: CallSession, event: Event, now: float) -> Go:
        assert isinstance(event, event_type)  # handle() found this row by type(event)
        return handler(session, event, now)

    return (state, event_type), Row(frozenset(leads_to), decide)


S = CallState
# fmt: off
TABLE: dict[Key, Row] = dict([
    #    state        event           handler                                 leads to
    _row(S.OFFERED,   CallAdmitted,   CallSession._on_admitted,             S.RINGING, S.VOICEMAIL, S.ENDED),  # noqa: E501
    _row(S.OFFERED,   CallRefused,    CallSession._on_refused,              S.ENDED),
    _row(S.RINGING,   LegProgress,    CallSession._on_progress,             S.RINGING),
    _row(S.RINGING,   LegAnswered,    CallSession._on_answered,             S.BRIDGED),
    _row(S.RINGING,   LegFailed,      CallSession._on_failed,               S.RINGING, S.VOICEMAIL, S.ENDED),  # noqa: E501
    _row(S.RINGING,   DeadlinePassed, CallSession._on_deadline,             S.RINGING, S.VOICEMAIL, S.ENDED),  # noqa: E501
    _row(S.RINGING,   CallerHungUp,   CallSession._on_caller_gone_ringing,  S.ENDED),
    _row(S.BRIDGED,   CallerHungUp,   CallSession._on_caller_gone_bridged,  S.ENDED),
    _row(S.BRIDGED,   LegEnded,       CallSession._on_leg_gone_bridged,     S.ENDED),
    _row(S.BRIDGED,   LegFailed,      CallSession._on_leg_gone_bridged,     S.ENDED),
    _row(S.VOICEMAIL, CallerHungUp,   CallSession._on_caller_gone_voicemail, S.VOICEMAIL),
    _row(S.VOICEMAIL, VoicemailEnded, CallSession._on_voicemail_ended,      S.ENDED),
])
"""A call's moves. An event with no row in the call's state is late news (``_late``)."""

L, C = LegState, LegCue
_OPEN = (L.CALLING, L.TRYING, L.RINGING, L.EARLY)
LEG_TABLE: dict[tuple[LegState, LegCue], LegState] = {
    # state      cue            next state
    (L.CALLING, C.TRYING):      L.TRYING,
    (L.CALLING, C.RINGING):     L.RINGING,
    (L.CALLING, C.EARLY_MEDIA): L.EARLY,    # arms early_media_timeout
    (L.TRYING,  C.TRYING):      L.TRYING,
    (L.TRYING,  C.RINGING):     L.RINGING,
    (L.TRYING,  C.EARLY_MEDIA): L.EARLY,    # arms early_media_timeout
    (L.RINGING, C.TRYING):      L.RINGING,
    (L.RINGING, C.RINGING):     L.RINGING,
    (L.RINGING, C.EARLY_MEDIA): L.RINGING,  # a phone rang: not an announcement
    (L.EARLY,   C.TRYING):      L.EARLY,
    (L.EARLY,   C.RINGING):     L.RINGING,  # a real phone rings: the early-media bound goes
    (L.EARLY,   C.EARLY_MEDIA): L.EARLY,
    # Every open leg closes on a 2xx, a final error, its timeout or our
    # CANCEL. A closed leg has no row: what it hears afterwards is late news.
    **{(state, cue): L.CLOSED for state in _OPEN
       for cue in (C.ANSWERED, C.FAILED, C.TIMED_OUT, C.CANCELLED)},
}
"""One outgoing leg's moves, for calls and for call probes (gateway/health/probes.py)."""
# fmt: on

__all__ = [
    "LEG_TABLE",
    "TABLE",
    "VOICEMAIL_UNAVAILABLE",
    "CallInfo",
    "CallSession",
    "CallState",
    "RingPlan",
]
