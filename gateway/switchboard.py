"""The switchboard: runs call sessions against the SIP engine.

It owns the sessions, feeds them the engine's signals with the loop's
monotonic time, carries out their actions and arms one timer per session
at ``next_deadline()``. It decides no caller's fate itself: the gate asks
the admission policy (gateway/core/admission.py), every trunk call becomes a
session whose first event is the intake's verdict (gateway/core/intake.py),
and the session decides the rest (gateway/core/session.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from loguru import logger

from gateway.backlog import Backlog
from gateway.core import actions as act
from gateway.core import intake
from gateway.core.admission import Screening
from gateway.core.causes import Outcome, over_capacity
from gateway.core.events import (
    CallerHungUp,
    Event,
    LegAnswered,
    LegEnded,
    LegFailed,
    VoicemailEnded,
)
from gateway.core.plan import Plan, plan_call
from gateway.core.session import CallInfo, CallSession, CallState
from gateway.sip.answer_hold import AnswerHold
from gateway.sip.signals import (
    CallerSignal,
    IncomingSignal,
    InviteOffer,
    LegSignal,
    MediaChanged,
    OptionsSignal,
    RegistrationSignal,
    Signal,
    SitSignal,
)
from gateway.voicemail.machine import AnsweringMachine, VoicemailCall
from gateway.voicemail.runs import VoicemailRuns

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from gateway.call_engine import CallEngine
    from gateway.core.admission import Admission
    from gateway.core.health import HealthState
    from gateway.core.plan import Dial
    from gateway.core.rules import Rules
    from gateway.health.inbound_loop import InboundLoop
    from gateway.health.probes import Prober
    from gateway.status.bus import StatusSink

NO_PLAN = Plan(route="", steps=())  # a call no route took
RATE_EVERY_S = 1.0  # the refused-sources rate is published at most this often


@dataclass
class _Call:
    session: CallSession
    rules: Rules  # the rules the call started on: a reload never changes a call
    timer: asyncio.TimerHandle | None = None
    legs: set[str] = field(default_factory=set)
    bridge_leg: str | None = None


def _log_ringing(call_id: str, target: Dial, sent: float) -> None:
    stamped = logger.patch(lambda record: record.update(  # type: ignore[call-arg]
        time=record["time"].fromtimestamp(sent, record["time"].tzinfo)))  # loguru's type
    stamped.info("call {}: ringing {} ({})", call_id, target.name, target.label)


class Switchboard:
    """Calls in progress, and the glue between sessions and pjsua."""

    def __init__(  # noqa: PLR0913 - the collaborators, passed in at construction
        self,
        engine: CallEngine,
        rules: Rules,
        admission: Admission,
        notify: StatusSink,
        loop: asyncio.AbstractEventLoop,
        *,
        machine: AnsweringMachine | None = None,
        prober: Prober | None = None,
        loop_test: InboundLoop | None = None,
        on_registration: Callable[[RegistrationSignal], None] | None = None,
    ) -> None:
        """Args after ``loop`` are optional parts: without a machine no box answers
        (the caller is refused), without a prober every signal is a call's, without
        a loop test no incoming call is taken for one."""
        self.engine = engine
        self.rules = rules
        self.admission = admission
        self.notify = notify
        self.loop = loop
        self.health: dict[str, HealthState] = {}  # the health monitor keeps it current
        self.on_registration = on_registration or (lambda _sig: None)
        self._calls: dict[str, _Call] = {}
        self._leg_owner: dict[str, str] = {}
        self._turned_away: list[tuple[InviteOffer, Screening]] = []
        self._active_published = 0  # calls.active is published when it changes
        self._rate_published: tuple[float, int] = (float("-inf"), 0)
        self.voicemail = VoicemailRuns(loop, machine, self._voicemail_done,
                                       engine.hang_up_caller)  # fmt: skip
        self.prober = prober
        self.loop_test = loop_test
        self._held = AnswerHold(loop, self._answer_counts)
        self.later = Backlog(loop)  # status events and log lines: after the INVITEs

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    def gate(self, offer: InviteOffer) -> bool:
        """pjsua's account selection asks this for every new INVITE (inside pjsua: no I/O).

        A trunk caller turned away here is a call like any other: it is
        logged on the next ``pump``. Strangers and floods are only counted.
        """
        now = self.loop.time()
        screening = self.admission.screen(offer.source, offer.sip_call_id,
                                          self.engine.load(now), now)  # fmt: skip
        if screening.turned_away:
            self._turned_away.append((offer, screening))
        return screening is Screening.ADMIT

    # -- signals from the engine ---------------------------------------------------

    def pump(self) -> int:
        """Poll pjsua and act on everything it reported; returns how many signals."""
        signals = self.engine.poll()
        for signal in signals:
            try:
                self._dispatch(signal)
            except Exception:  # noqa: BLE001 - one bad signal must not stop every call
                logger.opt(exception=True).error("error handling {}", signal)
        turned_away, self._turned_away = self._turned_away, []
        for offer, screening in turned_away:
            self._turn_away(offer, screening)
        self._publish_refused_rate()
        return len(signals) + len(turned_away)

    def _dispatch(self, signal: Signal) -> None:
        if self._to_prober(signal):
            return
        if isinstance(signal, SitSignal):
            self._on_sit(signal)
        elif isinstance(signal, LegSignal):
            self._on_leg(signal)
        elif isinstance(signal, CallerSignal):
            self._on_caller(signal)
        elif isinstance(signal, MediaChanged):
            self._on_media(signal.key)
        elif isinstance(signal, IncomingSignal):
            self._on_incoming(signal)
        elif isinstance(signal, RegistrationSignal):
            self.on_registration(signal)

    def _to_prober(self, signal: Signal) -> bool:
        """Hand a probe's or the loop test's signal to its owner; whether it was one."""
        if self.prober is not None and isinstance(signal, OptionsSignal):
            self.prober.on_options(signal)
            return True
        if not isinstance(signal, LegSignal | SitSignal):
            return False
        for owner in (self.prober, self.loop_test):
            if owner is not None and owner.owns(signal.leg):
                owner.on_leg(signal)
                return True
        return False

    def _on_incoming(self, sig: IncomingSignal) -> None:
        caller, candidates = self._e164(sig.caller, sig.called)
        if self.loop_test is not None and self.loop_test.intercept(sig.call_id, caller, candidates):
            return  # the inbound loop test's own call, back from the trunk: refused 603
        called, plan = self._plan_for(sig.call_id, candidates, caller)
        now = self.loop.time()
        verdict = intake.verdict(plan, self.engine.load(now), now, self.admission.capacity)
        self._open(CallInfo(sig.call_id, caller, called), plan, verdict)

    def _e164(self, caller: str, called: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
        """Trunks send national forms, tel: and user=phone URIs: from here on,
        routes, the call log and the feed see E.164 (the rules' country)."""
        numbers = tuple(dict.fromkeys(map(self.rules.number, called)))
        return self.rules.number(caller), numbers

    def _turn_away(self, offer: InviteOffer, screening: Screening) -> None:
        """A trunk caller the gate refused (pjsua answered 480): into the log as refused."""
        call_id = self.engine.new_call_id()
        caller, candidates = self._e164(offer.caller, offer.called)
        called, plan = self._plan_for(call_id, candidates, caller)
        self._open(CallInfo(call_id, caller, called), plan, intake.turned_away(screening))

    def _open(self, info: CallInfo, plan: Plan | None, verdict: Event) -> None:
        """A session for every trunk call; its first event is the intake's verdict."""
        now = self.loop.time()
        session = CallSession(info, plan or NO_PLAN, now)
        self._calls[info.call_id] = _Call(session, rules=self.rules)
        self._apply(info.call_id, session.handle(verdict, now))
        self._notify_active()  # a call refused at once was never active

    def _plan_for(
        self, call_id: str, candidates: tuple[str, ...], caller: str
    ) -> tuple[str, Plan | None]:
        """The called number a route takes and the call's plan; (first candidate, None): none."""
        # Schedules are wall-clock time in the rules' zone: the route is chosen
        # with the real time now (the loop's clock is monotonic, not a date).
        rules = self.rules
        now = datetime.now(UTC)
        for called in candidates:
            plan = plan_call(rules, called, caller, now, self.health)
            if plan is not None:
                mode, source = rules.active_mode
                if mode != "normal":
                    logger.info("call {}: mode {} (set by {})", call_id, mode, source)
                return called, plan
        return (candidates[0] if candidates else ""), None

    def _on_leg(self, sig: LegSignal) -> None:
        call_id = self._leg_owner.get(sig.leg)
        if isinstance(sig.event, LegFailed | LegEnded):
            self._leg_owner.pop(sig.leg, None)
            if call_id in self._calls:
                self._calls[call_id].legs.discard(sig.leg)
            if self._held.drop(sig.leg) and isinstance(sig.event, LegEnded):
                # Its session never saw the answer: to it, the leg simply failed.
                note = "hung up while its answer was held"
                sig = LegSignal(sig.leg, LegFailed(sig.leg, Outcome.FAILED, note=note))
        if call_id is None or call_id not in self._calls:
            return
        event, rules = sig.event, self._calls[call_id].rules
        hold_s = rules.sit.hold_answer if rules is not None else None
        if isinstance(event, LegAnswered) and self._held.hold(call_id, event, hold_s):
            return
        self._feed(call_id, event)

    def _answer_counts(self, call_id: str, answer: LegAnswered) -> None:
        if call_id in self._calls:
            self._feed(call_id, answer)

    def _on_sit(self, sig: SitSignal) -> None:
        """Tones said how the leg ends: an ordinary leg failure, and CANCEL (or BYE)."""
        # Not imported at start: the SIT detector loads with the first tap.
        from gateway.core.sit import outcome_of  # noqa: PLC0415

        call = self._calls.get(self._leg_owner.get(sig.leg, ""))
        itu = call.rules.sit.itu if call is not None else None
        outcome = outcome_of(sig.tone.code, itu) if itu else outcome_of(sig.tone.code)
        note = sig.tone.describe()
        logger.info("leg {}: {}: {}", sig.leg, note, outcome)
        self.engine.stop_leg(sig.leg)
        self._on_leg(LegSignal(sig.leg, LegFailed(sig.leg, outcome, None, None, note)))

    def _on_caller(self, sig: CallerSignal) -> None:
        if self.voicemail.machine is not None:  # the answering machine waits on this news
            self.voicemail.machine.line.call_changed(sig.call_id)
        call = self._calls.get(sig.call_id)
        if call is None:
            return
        self._feed(sig.call_id, sig.event)

    def _on_media(self, key: str) -> None:
        if self.voicemail.machine is not None:  # the answering machine waits on this news
            self.voicemail.machine.line.call_changed(key)
        call_id = self._leg_owner.get(key, key)
        call = self._calls.get(call_id)
        if call is not None and call.bridge_leg is not None:
            self._try_bridge(call_id, call)

    def _feed(self, call_id: str, event: Event) -> None:
        call = self._calls[call_id]
        self._apply(call_id, call.session.handle(event, self.loop.time()))

    # -- actions to the engine -----------------------------------------------------

    def _apply(self, call_id: str, actions: list[act.Action]) -> None:
        call = self._calls[call_id]
        # What the caller waits for goes first: the next INVITE leaves before
        # any status event is logged, published or written. The events follow
        # on the loop's next turns, one a turn, in their order, and the lines
        # the actions log after them (the demo's timeline reads the log).
        for action in actions:
            if isinstance(action, act.Notify):
                self.later.add(self.notify, action.kind, action.data)
        for action in actions:
            if not isinstance(action, act.Notify):
                self._carry_out(call_id, call, action)
        self._rearm(call_id, call)
        self._maybe_forget(call_id, call)

    def _carry_out(self, call_id: str, call: _Call, action: act.Action) -> None:
        match action:
            case act.SendRinging():
                self.engine.answer(call_id, 180)
            case act.Ring(leg, target):
                self._ring(call_id, call, leg, target)
            case act.Cancel(leg) | act.HangUp(leg):
                self.engine.stop_leg(leg)
            case act.Bridge(leg):
                call.bridge_leg = leg
                self.engine.answer(call_id, 200)
                self._try_bridge(call_id, call)
            case act.HangUpCaller():
                self.engine.hang_up_caller(call_id)
            case act.Refuse(code, q850, retry_after):
                self.engine.refuse(call_id, code, q850, retry_after)
            case act.StartVoicemail(box, why):
                self._start_voicemail(call_id, box, why)

    def _ring(self, call_id: str, call: _Call, leg: str, target: Dial) -> None:
        self._leg_owner[leg] = call_id
        call.legs.add(leg)
        now = self.loop.time()
        if not self.admission.capacity.room_for_leg(self.engine.load(now), now):
            # Never let pjsua hit its own limits (call slots, socket handles):
            # this leg fails here, at once.
            logger.warning("leg {} to {} not rung: no call leg or socket free", leg, target.name)
            self.loop.call_soon(self._leg_over_capacity, leg)
            return
        # Stamped as the INVITE leaves: before makeCall, which sends it and may
        # return after the far end's answer was already logged elsewhere.
        sent = time.time()
        self.engine.ring(leg, target, call.session.info)
        # Logged after the call's events; the line is built then too, not
        # while a second ring of the step waits.
        self.later.add(_log_ringing, call_id, target, sent)

    def _leg_over_capacity(self, leg: str) -> None:
        failed = over_capacity()
        self._on_leg(LegSignal(leg, LegFailed(leg, failed.outcome, failed.sip_code, failed.q850)))

    def _try_bridge(self, call_id: str, call: _Call) -> None:
        if call.bridge_leg and self.engine.connect(call_id, call.bridge_leg):
            caller, callee = self.engine.codecs(call_id, call.bridge_leg)
            logger.info("call {}: audio bridged with {} ({} / {}{})", call_id, call.bridge_leg,
                        caller, callee, "" if caller == callee else ", transcoded")  # fmt: skip
            call.bridge_leg = None

    def _start_voicemail(self, call_id: str, box: str, why: str) -> None:
        call = self._calls[call_id]
        info = call.session.info
        taking = VoicemailCall(call_id, info.caller, info.called, call.session.plan.route, box, why)
        self.voicemail.start(taking, call.rules.voicemail.get(box))

    def _voicemail_done(self, call_id: str, ended: VoicemailEnded) -> None:
        if call_id in self._calls:
            self._feed(call_id, ended)

    # -- timers and bookkeeping -------------------------------------------------------

    def _rearm(self, call_id: str, call: _Call) -> None:
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        deadline = call.session.next_deadline()
        if deadline is not None:
            call.timer = self.loop.call_at(deadline, self._on_timer, call_id)

    def _on_timer(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            call.timer = None
            self._apply(call_id, call.session.handle_timer(self.loop.time()))

    def _maybe_forget(self, call_id: str, call: _Call) -> None:
        if call.session.state is CallState.ENDED and not call.legs and call_id in self._calls:
            del self._calls[call_id]
            self._notify_active()

    def _notify_active(self) -> None:
        if self._active_published != len(self._calls):
            self._active_published = len(self._calls)
            # After the call's own events (deferred the same way), never before them.
            self.later.add(self.notify, "calls.active", {"count": len(self._calls)})

    def _publish_refused_rate(self) -> None:
        """INVITEs refused before any dialog (strangers, floods) in the last minute: a rate."""
        now = self.loop.time()
        at, published = self._rate_published
        if now - at < RATE_EVERY_S:
            return
        count = self.admission.refused.per_minute(now)
        if count != published:
            self._rate_published = (now, count)
            self.notify("calls.refused_sources", {"per_minute": count})

    def hang_up_everything(self) -> None:
        """Shutdown: end every call now (BYE, CANCEL or 503 to the caller)."""
        for call_id, call in list(self._calls.items()):
            if call.session.state is not CallState.ENDED:
                self._feed(call_id, CallerHungUp())
        self.engine.hang_up_all()
