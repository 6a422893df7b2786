"""The switchboard: runs call sessions against the SIP engine.

It owns the sessions, feeds them the engine's signals with the loop's
monotonic time, carries out their actions and arms one timer per session
at ``next_deadline()``. It decides nothing about failover itself: that is
the sessions' (gateway/core/session.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from loguru import logger

from gateway.core import actions as act
from gateway.core.causes import Outcome
from gateway.core.events import CallerHungUp, Event, LegEnded, LegFailed, VoicemailEnded
from gateway.core.plan import Plan, VoicemailPlan, plan_call
from gateway.core.session import CallInfo, CallSession, CallState
from gateway.core.sit import outcome_of
from gateway.sip.engine import (
    CALL_LEGS,
    IncomingSignal,
    OptionsSignal,
    RegistrationSignal,
    SipEngine,
)
from gateway.sip.legs import CallerSignal, LegSignal, MediaChanged
from gateway.sip.tap import SitSignal
from gateway.voicemail.machine import AnsweringMachine, VoicemailCall

if TYPE_CHECKING:
    import asyncio

    from gateway.core.admission import Admission
    from gateway.probes import Prober

RETRY_AFTER_S = 30  # told to the trunk when every leg is busy


class RulesView(Protocol):
    """What the switchboard reads of the loaded rules."""

    @property
    def targets(self) -> Any: ...

    def route_for(self, to: str, from_: str | None) -> Any: ...

    def number(self, text: str) -> str: ...


StatusSink = Callable[[str, dict[str, Any]], None]  # the app's notify(kind, data)


@dataclass
class _Call:
    session: CallSession
    timer: asyncio.TimerHandle | None = None
    legs: set[str] = field(default_factory=set)
    bridge_leg: str | None = None
    rules: Any = None  # the rules the call started on: a reload never changes a call


class Switchboard:
    """Calls in progress, and the glue between sessions and pjsua."""

    def __init__(
        self,
        engine: SipEngine,
        rules: RulesView,
        admission: Admission,
        notify: StatusSink,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.engine = engine
        self.rules = rules
        self.admission = admission
        self.notify = notify
        self.loop = loop
        self.health: dict[str, str] = {}
        self.on_registration: Callable[[RegistrationSignal], None] = lambda _sig: None
        self._calls: dict[str, _Call] = {}
        self._leg_owner: dict[str, str] = {}
        self._tasks: set[asyncio.Task[str]] = set()
        self.machine: AnsweringMachine | None = None
        self.prober: Prober | None = None

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    def gate(self, source: str) -> bool:
        """pjsua's account selection asks this for every new INVITE."""
        ok = self.admission.admit(source, self.engine.legs_in_use(), self.loop.time())
        if not ok:
            logger.info("INVITE from {} refused before any dialog (source or capacity)", source)
        return ok

    # -- signals from the engine ---------------------------------------------------

    def pump(self) -> None:
        """Poll pjsua and act on everything it reported."""
        for signal in self.engine.poll():
            try:
                self._dispatch(signal)
            except Exception:  # noqa: BLE001 - one bad signal must not stop every call
                logger.opt(exception=True).error("error handling {}", signal)

    def _dispatch(self, signal: object) -> None:
        if self.prober is not None:
            if isinstance(signal, OptionsSignal):
                self.prober.on_options(signal)
                return
            if isinstance(signal, LegSignal | SitSignal) and self.prober.owns(signal.leg):
                self.prober.on_leg(signal)
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

    def _on_incoming(self, sig: IncomingSignal) -> None:
        # Trunks send national forms, tel: and user=phone URIs: from here on,
        # routes, the call log and the feed see E.164 (the rules' country).
        sig = replace(sig, caller=self.rules.number(sig.caller),
                      called=tuple(dict.fromkeys(map(self.rules.number, sig.called))))  # fmt: skip
        found = self._plan_for(sig)
        if found is None:
            logger.info(
                "call {} from {} to {}: no route, refused 404",
                sig.call_id,
                sig.caller,
                "/".join(sig.called) or "?",
            )
            self.engine.refuse(sig.call_id, 404, 1)
            return
        called, plan = found
        if self._no_leg_left(plan):
            logger.warning("call {} refused: every call leg is in use", sig.call_id)
            self.engine.refuse(sig.call_id, 503, 42, retry_after=RETRY_AFTER_S)
            return
        session = CallSession(CallInfo(sig.call_id, sig.caller, called), plan, self.loop.time())
        self._calls[sig.call_id] = _Call(session, rules=self.rules)
        self._notify_active()
        self._apply(sig.call_id, session.start(self.loop.time()))

    def _plan_for(self, sig: IncomingSignal) -> tuple[str, Plan] | None:
        """The called number a route takes, and the plan for the call."""
        # Schedules are wall-clock time in the rules' zone: the route is chosen
        # with the real time now (the loop's clock is monotonic, not a date).
        rules: Any = self.rules
        now = datetime.now(UTC)
        for called in sig.called:
            plan = plan_call(rules, called, sig.caller, now, self.health)
            if plan is not None:
                mode, source = rules.active_mode
                if mode != "normal":
                    logger.info("call {}: mode {} (set by {})", sig.call_id, mode, source)
                return called, plan
        return None

    def _no_leg_left(self, plan: Plan) -> bool:
        """Nothing to ring with and no voicemail to fall back on: refuse at once."""
        if self.engine.legs_in_use() < CALL_LEGS:
            return False
        # With a voicemail step, the rings fail at once (no leg) and the caller
        # leaves a message: voicemail needs no leg of its own.
        return not any(isinstance(step, VoicemailPlan) for step in plan.steps)

    def _on_leg(self, sig: LegSignal) -> None:
        call_id = self._leg_owner.get(sig.leg)
        if isinstance(sig.event, LegFailed | LegEnded):
            self._leg_owner.pop(sig.leg, None)
            if call_id in self._calls:
                self._calls[call_id].legs.discard(sig.leg)
        if call_id is None or call_id not in self._calls:
            return
        self._feed(call_id, sig.event)

    def _on_sit(self, sig: SitSignal) -> None:
        """Tones said how the leg ends: an ordinary leg failure, and CANCEL (or BYE)."""
        call = self._calls.get(self._leg_owner.get(sig.leg, ""))
        itu = call.rules.sit.itu if call is not None and call.rules is not None else None
        outcome = outcome_of(sig.tone.code, itu) if itu else outcome_of(sig.tone.code)
        note = sig.tone.describe()
        logger.info("leg {}: {}: {}", sig.leg, note, outcome)
        self.engine.stop_leg(sig.leg)
        self._on_leg(LegSignal(sig.leg, LegFailed(sig.leg, outcome, None, None, note)))

    def _on_caller(self, sig: CallerSignal) -> None:
        call = self._calls.get(sig.call_id)
        if call is None:
            return
        self._feed(sig.call_id, sig.event)

    def _on_media(self, key: str) -> None:
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
        for action in actions:
            self._carry_out(call_id, call, action)
        self._rearm(call_id, call)
        self._maybe_forget(call_id, call)

    def _carry_out(self, call_id: str, call: _Call, action: act.Action) -> None:
        match action:
            case act.Notify(kind, data):
                self.notify(kind, data)
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
            case act.Refuse(code, q850):
                self.engine.refuse(call_id, code, q850)
            case act.StartVoicemail(box, why):
                self._start_voicemail(call_id, box, why)

    def _ring(self, call_id: str, call: _Call, leg: str, target: Any) -> None:
        if self.engine.legs_in_use() >= CALL_LEGS:
            # Never let pjsua hit its own limit: this leg fails here, at once.
            logger.warning("leg {} to {} not rung: every call leg is in use", leg, target.name)
            self.loop.call_soon(self._leg_failed_locally, leg)
        self._leg_owner[leg] = call_id
        call.legs.add(leg)
        if self.engine.legs_in_use() < CALL_LEGS:
            logger.info("call {}: ringing {} ({})", call_id, target.name, target.label)
            self.engine.ring(leg, target, call.session.info)

    def _leg_failed_locally(self, leg: str) -> None:
        self._on_leg(LegSignal(leg, LegFailed(leg, Outcome.UNREACHABLE)))

    def _try_bridge(self, call_id: str, call: _Call) -> None:
        if call.bridge_leg and self.engine.connect(call_id, call.bridge_leg):
            logger.info("call {}: audio bridged with {}", call_id, call.bridge_leg)
            call.bridge_leg = None

    def _start_voicemail(self, call_id: str, box: str, why: str) -> None:
        call = self._calls[call_id]
        config = call.rules.voicemail.get(box) if call.rules is not None else None
        if self.machine is None or config is None:
            logger.error("call {}: voicemail box {} is not available", call_id, box)
            self.engine.refuse(call_id, 480, 19)
            self.loop.call_soon(self._voicemail_done, call_id, "unavailable")
            return
        info = call.session.info
        taking = VoicemailCall(call_id, info.caller, info.called, call.session.plan.route, box, why)
        task = self.loop.create_task(self.machine.take(taking, config), name=f"voicemail.{call_id}")
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._voicemail_task_done(call_id, t))

    def _voicemail_task_done(self, call_id: str, task: asyncio.Task[str]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.opt(exception=error).error("call {}: voicemail failed", call_id)
            self.engine.hang_up_caller(call_id)
        self._voicemail_done(call_id, "error" if error else task.result())

    def _voicemail_done(self, call_id: str, why: str) -> None:
        if call_id in self._calls:
            self._feed(call_id, VoicemailEnded(why=why))

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
        self.notify("calls.active", {"count": len(self._calls)})

    def hang_up_everything(self) -> None:
        """Shutdown: end every call now (BYE, CANCEL or 503 to the caller)."""
        for call_id, call in list(self._calls.items()):
            if call.session.state is not CallState.ENDED:
                self._feed(call_id, CallerHungUp())
        self.engine.hang_up_all()
