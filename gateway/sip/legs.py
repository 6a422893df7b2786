"""Call legs: pjsua2 ``Call`` objects that turn callbacks into signals.

pjsua2 traps this module is built around (pjsua2 2.15 ``call.cpp``):

- A Python ``Call`` that is garbage-collected while its call lives hangs the
  call up, so every leg is held in the ``LegRegistry`` from creation.
- ``Call::~Call`` clears the user data of, and hangs up, whatever call holds
  its slot id *now*. A leg freed after its slot was reused would kill an
  unrelated call, so the registry drops a leg inside its own DISCONNECTED
  callback, the one place pjsua2 documents deleting a ``Call`` as safe.
- Callbacks run inside ``libHandleEvents``; they only record signals. An
  exception escaping a director callback would unwind into C++ and terminate
  the process, hence ``_guarded``.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ParamSpec

import pjsua2 as pj
from loguru import logger

from gateway.core.admission import HELD_AFTER_END_S, EngineLoad
from gateway.core.causes import classify, no_final_response
from gateway.core.events import CallerHungUp, Event, LegAnswered, LegEnded, LegFailed, LegProgress
from gateway.sip import message
from gateway.sip.signals import CallerSignal, LegSignal, MediaChanged, Signal

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.core.presentation import CallerId

P = ParamSpec("P")
DECLINE = 603


def guarded(func: Callable[P, None]) -> Callable[P, None]:
    """Never let an exception leave a pjsua2 callback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            func(*args, **kwargs)
        except Exception:  # noqa: BLE001 - anything escaping here aborts the process
            logger.opt(exception=True).error("error in pjsua2 callback {}", func.__name__)

    return wrapper


@dataclass
class LegRegistry:
    """Every live pjsua2 Call, by our id, until its DISCONNECTED callback.

    It also keeps when legs ended, on the loop's clock (CLOCK_MONOTONIC,
    like ``time.monotonic``): pjlib holds a closed socket for 500 ms before
    its handle can be reused, so an ended leg's RTP and RTCP sockets still
    count against the engine's I/O queue (gateway/core/admission.py).
    """

    inbound: dict[str, InboundLeg] = field(default_factory=dict)
    outbound: dict[str, OutboundLeg] = field(default_factory=dict)
    signals: list[Signal] = field(default_factory=list)
    ended: deque[float] = field(default_factory=deque)
    clock: Callable[[], float] = time.monotonic

    def in_use(self) -> int:
        return len(self.inbound) + len(self.outbound)

    def note_end(self) -> None:
        """A leg ended now: its media sockets are held a while yet."""
        self.ended.append(self.clock())

    def load(self, now: float, sip_handles: int) -> EngineLoad:
        """What the engine holds at ``now``: live legs, legs ended lately, SIP sockets."""
        while self.ended and now - self.ended[0] >= HELD_AFTER_END_S:
            self.ended.popleft()
        return EngineLoad(self.in_use(), tuple(self.ended), sip_handles)

    def emit(self, signal: Signal) -> None:
        self.signals.append(signal)

    def drain(self) -> list[Signal]:
        taken, self.signals = self.signals, []
        return taken


def _media_active(call: pj.Call) -> bool:
    try:
        info = call.getInfo()
    except pj.Error:
        return False
    return any(
        m.type == pj.PJMEDIA_TYPE_AUDIO and m.status == pj.PJSUA_CALL_MEDIA_ACTIVE
        for m in info.media
    )


def audio_of(call: pj.Call) -> pj.AudioMedia | None:
    """The call's audio port in the conference bridge, once media is active."""
    if not _media_active(call):
        return None
    return call.getAudioMedia(-1)


def _rx_message(prm: pj.OnCallTsxStateParam | pj.OnCallStateParam) -> str | None:
    """The whole text of the message that caused a call/tsx event, if received."""
    event = prm.e
    if event.type == pj.PJSIP_EVENT_TSX_STATE:
        state = event.body.tsxState
        if state.type == pj.PJSIP_EVENT_RX_MSG:
            return str(state.src.rdata.wholeMsg)
    elif event.type == pj.PJSIP_EVENT_RX_MSG:
        return str(event.body.rxMsg.rdata.wholeMsg)
    return None


class _Leg(pj.Call):  # type: ignore[misc]
    """What every leg refuses, whichever side it faces.

    Left to itself, pjsua answers a REFER with 202 and dials the Refer-To
    target on the same account, and lets an INVITE with Replaces take over a
    call (skipping the account selection that keeps strangers out). Either
    would let someone on a call have the gateway dial a number the rules do
    not name, through the business's trunk: toll fraud. Both get 603.
    """

    @guarded
    def onCallTransferRequest(self, prm: pj.OnCallTransferRequestParam) -> None:
        logger.warning("REFER to {} declined: the gateway only dials its rules' targets",
                       prm.dstUri)  # fmt: skip
        prm.statusCode = DECLINE

    @guarded
    def onCallReplaceRequest(self, prm: pj.OnCallReplaceRequestParam) -> None:
        logger.warning("INVITE with Replaces declined")
        prm.statusCode = DECLINE


class InboundLeg(_Leg):
    """The call the trunk sent us."""

    def __init__(
        self, registry: LegRegistry, account: pj.Account, pj_call_id: int, call_id: str
    ) -> None:
        super().__init__(account, pj_call_id)
        self.registry = registry
        self.call_id = call_id
        self.answered = False
        self.caller_id: CallerId | None = None  # who the trunk says is calling
        self.offered: tuple[str, ...] = ()  # the caller's audio codecs, preferred first
        # Each leg's INVITE options by (via the trunk, target URI
        # or "" when the options do not name it): the engine builds them once per call.
        self.forwarding: dict[tuple[bool, str], pj.CallOpParam] = {}
        registry.inbound[call_id] = self

    @guarded
    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        del prm
        if self.getInfo().state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.registry.inbound.pop(self.call_id, None)  # last reference: see module doc
            self.registry.note_end()
            self.registry.emit(CallerSignal(self.call_id, CallerHungUp()))

    @guarded
    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        del prm
        self.registry.emit(MediaChanged(self.call_id))


class OutboundLeg(_Leg):
    """One INVITE to one target."""

    def __init__(self, registry: LegRegistry, account: pj.Account, leg: str) -> None:
        super().__init__(account)
        self.registry = registry
        self.leg = leg
        self.answered = False
        self.final: tuple[int, str | None] | None = None
        registry.outbound[leg] = self

    @guarded
    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        raw = _rx_message(prm)
        if raw is None or "INVITE" not in (message.header(raw, "CSeq") or ""):
            return
        status = message.status_of(raw)
        if status is None:
            return
        if status < 200:
            self.registry.emit(
                LegSignal(self.leg, LegProgress(self.leg, status, message.has_sdp(raw)))
            )
        elif status >= 300:
            self.final = (status, message.header(raw, "Reason"))

    @guarded
    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and not self.answered:
            self.answered = True
            self.registry.emit(LegSignal(self.leg, LegAnswered(self.leg)))
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.registry.outbound.pop(self.leg, None)  # last reference: see module doc
            self.registry.note_end()
            self.registry.emit(LegSignal(self.leg, self._ending(info, prm)))

    @guarded
    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        del prm
        self.registry.emit(MediaChanged(self.leg))

    def _ending(self, info: pj.CallInfo, prm: pj.OnCallStateParam) -> Event:
        if self.answered:
            return LegEnded(self.leg)
        if self.final is None:
            raw = _rx_message(prm)
            status = message.status_of(raw) if raw else None
            if status is not None and status >= 300:
                self.final = (status, message.header(raw or "", "Reason"))
        if self.final is not None:
            c = classify(*self.final)
            return LegFailed(self.leg, c.outcome, c.sip_code, c.q850)
        c = no_final_response(int(info.lastStatusCode))
        return LegFailed(self.leg, c.outcome, c.sip_code, c.q850)
