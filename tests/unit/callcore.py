"""An in-memory driver for one CallSession: a fake clock, the network's events, the actions.

It plays the SIP adapter's part the way the adapter does it: final responses go
through ``classify()`` before they reach the session, and the timer is fired at
exactly ``next_deadline()``. Every call also checks the session's invariants, so
a test that pushes a whole call through gets them checked at every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.core import intake
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
from gateway.core.admission import Capacity, EngineLoad
from gateway.core.causes import FAILURES, Outcome, classify
from gateway.core.events import (
    CallerHungUp,
    Event,
    LegAnswered,
    LegEnded,
    LegFailed,
    LegProgress,
    VoicemailEnd,
    VoicemailEnded,
)
from gateway.core.plan import Dial, Plan, RingMode, RingPlan, VoicemailPlan
from gateway.core.session import CallInfo, CallSession, CallState

if TYPE_CHECKING:
    from collections.abc import Iterable

A = TypeVar("A", bound=Action)

RESULTS = frozenset({"answered", "voicemail", "abandoned", "failed", "refused"})

# What answers the caller (at most one of these per call).
CALLER_ANSWERS = (Bridge, Refuse, StartVoicemail)

DIALS = {
    "office": Dial("office", number="+32470000001"),
    "anna": Dial("anna", number="+32480000002"),
    "desk": Dial("desk", uri="sip:desk@192.0.2.10"),
    "ben": Dial("ben", number="+32490000003"),
}


def ring(
    *names: str,
    mode: RingMode | None = None,
    timeout: float = 20.0,
    early_media_timeout: float = 8.0,
    failover_on: Iterable[Outcome | str] = FAILURES,
) -> RingPlan:
    """A ring step over the named DIALS (one name: ``ring``; several: ``ring_all``)."""
    return RingPlan(
        mode=mode or (RingMode.ONE if len(names) == 1 else RingMode.ALL),
        targets=tuple(DIALS[name] for name in names),
        timeout=timeout,
        early_media_timeout=early_media_timeout,
        failover_on=frozenset(Outcome(o) for o in failover_on),
    )


def voicemail(box: str = "main") -> VoicemailPlan:
    return VoicemailPlan(box=box)


def plan(*steps: RingPlan | VoicemailPlan, route: str = "main-line") -> Plan:
    return Plan(route=route, steps=steps)


@dataclass
class CallDriver:
    """Pushes one call through a CallSession, timer by timer."""

    plan: Plan
    now: float = 1000.0
    call_id: str = "call-1"

    def __post_init__(self) -> None:
        info = CallInfo(self.call_id, caller="+3225551234", called="+3225550100")
        self.session = CallSession(info, self.plan, started_at=self.now)
        self.actions: list[Action] = []  # everything, in order
        self.last: list[Action] = []  # what the latest entry point returned
        self.targets: dict[str, str] = {}  # leg id -> target name

    # -- entry points ----------------------------------------------------------

    def start(self) -> list[Action]:
        """The call arrives and is admitted (the intake's verdict skipped)."""
        return self._took(self.session.start(self.now), ())

    def arrive(self, legs_in_use: int = 1, capacity: Capacity | None = None) -> list[Action]:
        """The call arrives; the intake decides with its plan and the legs in use."""
        verdict = intake.verdict(self.plan, EngineLoad(legs_in_use), self.now,
                                 capacity or Capacity(3))  # fmt: skip
        return self._took(self.session.handle(verdict, self.now), ())

    def send(self, event: Event) -> list[Action]:
        before = self.session.open_legs
        actions = self.session.handle(event, self.now)
        return self._took(actions, before, getattr(event, "leg", None))

    def timer(self) -> list[Action]:
        """Jump the clock to the session's deadline and fire it."""
        deadline = self.session.next_deadline()
        assert deadline is not None, "no deadline pending"
        assert deadline >= self.now, "a deadline in the past was never fired"
        self.now = deadline
        before = self.session.open_legs
        return self._took(self.session.handle_timer(self.now), before)

    def advance(self, seconds: float) -> list[Action]:
        """Let ``seconds`` pass, firing every deadline on the way at its time."""
        until, taken = self.now + seconds, []
        while (deadline := self.session.next_deadline()) is not None and deadline <= until:
            taken += self.timer()
        self.now = until
        self.last = taken
        return taken

    # -- the network, in the adapter's words -------------------------------------

    def leg(self, target: str) -> str:
        """The leg id of the latest Ring for ``target``."""
        legs = [leg for leg, name in self.targets.items() if name == target]
        assert legs, f"{target} was never rung"
        return legs[-1]

    def progress(self, target: str, status: int, *, early_media: bool = False) -> list[Action]:
        return self.send(LegProgress(self.leg(target), status, early_media=early_media))

    def fail(self, target: str, status: int, reason: str | None = None) -> list[Action]:
        """A final error on ``target``'s leg, classified as the adapter does."""
        classified = classify(status, reason)
        assert classified.outcome is not Outcome.ANSWERED
        event = LegFailed(self.leg(target), classified.outcome, status, classified.q850)
        return self.send(event)

    def answer(self, target: str) -> list[Action]:
        return self.send(LegAnswered(self.leg(target)))

    def leg_hangs_up(self, target: str) -> list[Action]:
        return self.send(LegEnded(self.leg(target)))

    def caller_hangs_up(self) -> list[Action]:
        return self.send(CallerHungUp())

    def voicemail_ends(self, why: VoicemailEnd = "hangup", *, stored: bool = True) -> list[Action]:
        return self.send(VoicemailEnded(why, stored=stored))

    # -- what the phones and the caller noticed ----------------------------------

    def ring_legs(self, actions: list[Action] | None = None) -> list[str]:
        """Targets rung by ``actions`` (default: the latest entry point)."""
        return [a.target.name for a in self._of(Ring, actions)]

    def cancelled(self, actions: list[Action] | None = None) -> list[str]:
        return [self.targets[a.leg] for a in self._of(Cancel, actions)]

    def hung_up(self, actions: list[Action] | None = None) -> list[str]:
        return [self.targets[a.leg] for a in self._of(HangUp, actions)]

    def rung(self) -> list[str]:
        """Every target rung during the call, in order."""
        return self.ring_legs(self.actions)

    def caller_got(self) -> list[Action]:
        """What the caller's side saw: ringback, answer, refusal, BYE."""
        kinds = (SendRinging, HangUpCaller, *CALLER_ANSWERS)
        return [a for a in self.actions if isinstance(a, kinds)]

    def refusal(self) -> Refuse:
        (refuse,) = self._of(Refuse, self.actions)
        return refuse

    def events(self, actions: list[Action] | None = None) -> list[str]:
        """Status event kinds, in order."""
        return [a.kind for a in self._of(Notify, actions)]

    def event(self, kind: str) -> dict[str, Any]:
        """The data of the one status event of ``kind``."""
        (data,) = self.all_events(kind)
        return data

    def all_events(self, kind: str) -> list[dict[str, Any]]:
        return [a.data for a in self._of(Notify, self.actions) if a.kind == kind]

    def leg_outcomes(self) -> list[tuple[str, str]]:
        """(target, outcome) of every call.leg event, in order."""
        return [(e["target"], e["outcome"]) for e in self.all_events("call.leg")]

    @property
    def state(self) -> CallState:
        return self.session.state

    # -- bookkeeping -------------------------------------------------------------

    def _of(self, kind: type[A], actions: list[Action] | None) -> list[A]:
        return [a for a in (self.last if actions is None else actions) if isinstance(a, kind)]

    def _took(
        self, actions: list[Action], open_before: tuple[str, ...], about: str | None = None
    ) -> list[Action]:
        self._check(actions)
        self._check_legs(actions, open_before, about)
        self.last = actions
        self.actions += actions
        for action in actions:
            if isinstance(action, Ring):
                self.targets[action.leg] = action.target.name
        return actions

    def _check_legs(
        self, actions: list[Action], open_before: tuple[str, ...], about: str | None
    ) -> None:
        """A leg the session gives up is CANCELled, once; only answered legs get a BYE."""
        given_up = set(open_before) - set(self.session.open_legs) - {about}
        assert {a.leg for a in actions if isinstance(a, Cancel)} == given_up, actions
        for action in actions:
            if isinstance(action, HangUp):
                assert action.leg in (about, self.session.answered_leg), actions
                assert action.leg not in self.session.open_legs

    def _check(self, actions: list[Action]) -> None:
        """Invariants of DESIGN.md and session.py, after every entry point."""
        so_far = self.actions + actions
        if self.all_events("call.ended"):  # ended before: only late answers are hung up
            assert all(isinstance(a, HangUp) for a in actions), actions
        # Answered at most once: a box that cannot take a message answers nothing,
        # so a Refuse may follow StartVoicemail, never a Bridge.
        assert len([a for a in so_far if isinstance(a, Bridge | Refuse)]) <= 1, so_far
        assert len([a for a in so_far if isinstance(a, Bridge | StartVoicemail)]) <= 1, so_far
        ringback = len([a for a in so_far if isinstance(a, SendRinging)])
        refused_at_once = self.session.step_index < 0 and self.session.state is CallState.ENDED
        assert ringback == (0 if refused_at_once else 1), so_far  # admitted: ringback, once
        ended = [a.data for a in so_far if isinstance(a, Notify) and a.kind == "call.ended"]
        assert len(ended) == (self.session.state is CallState.ENDED), so_far  # ends once
        incoming = [a for a in so_far if isinstance(a, Notify) and a.kind == "call.incoming"]
        assert len(incoming) == 1, so_far  # the verdict came first, and only once
        if ended:
            assert ended[0]["result"] in RESULTS, ended
            # "refused" always says why; voicemail means a message was stored.
            assert (ended[0]["result"] == "refused") <= (ended[0]["reason"] is not None)
        ringing = self.session.state is CallState.RINGING
        # Ringing means a leg is open and a timer bounds it; otherwise no timer.
        assert ringing == bool(self.session.open_legs)
        assert ringing == (self.session.next_deadline() is not None)
