"""The far side's pjsua2 objects: its accounts and calls (gateway/demo/peers.py).

Their callbacks only tell ``Peers`` what happened (a JSON event, the next
part of the script): an INVITE becomes a pending call answered after the
poll, a connected or ended call moves the customer's script on, and a call
whose audio is up starts to play or listen. No exception leaves a callback:
pjsua2 would terminate the process.
"""

from __future__ import annotations

import functools
import traceback
from typing import TYPE_CHECKING, ParamSpec

import pjsua2 as pj

from gateway.demo.story import ANNA_NUMBER, MAIN_NUMBER, WORKSHOP_MOBILE

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.demo.peers import Peers

P = ParamSpec("P")
_WHOSE = {
    MAIN_NUMBER: "its operator",
    ANNA_NUMBER: "anna's mobile",
    WORKSHOP_MOBILE: "its operator",
}


def guarded(func: Callable[P, None]) -> Callable[P, None]:
    """A pjsua2 callback that prints what it raises instead of letting it out."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            func(*args, **kwargs)
        except Exception:  # noqa: BLE001 - anything escaping a callback kills the process
            traceback.print_exc()

    return wrapper


class PeerAccount(pj.Account):  # type: ignore[misc]
    """A customer's account; the first also takes every INVITE the gateway sends."""

    def __init__(self, peers: Peers) -> None:
        super().__init__()
        self.peers = peers

    @guarded
    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        request_line = str(prm.rdata.wholeMsg).split("\n", 1)[0]
        number = request_line.split("sip:", 1)[-1].split("@", 1)[0]
        role = {ANNA_NUMBER: "anna", WORKSHOP_MOBILE: "announcer"}.get(number, "operator")
        call = PeerCall(self.peers, role, self, prm.callId)
        self.peers.calls[id(call)] = call
        self.peers.pending.append(call)  # answered after the poll returns (module doc)
        whose = _WHOSE.get(number, "an operator that does not know it")
        self.peers.emit("invite", f"trunk: INVITE for {number} reaches {whose}", role=role)


class PeerCall(pj.Call):  # type: ignore[misc]
    """One call of the far side, in the ``role`` it plays (caller, anna, operator, announcer)."""

    def __init__(self, peers: Peers, role: str, account: PeerAccount, call_id: int = -1) -> None:
        super().__init__(account, call_id)
        self.peers = peers
        self.role = role
        self.act = peers.act
        self.rang = False
        self.early_media = False

    def _connected_text(self) -> str | None:
        if self.role != "caller":
            return None
        if self.act == 2:
            return "caller connected to the gateway's voicemail"
        heard = "audio before the answer!" if self.early_media else "ringback, never the operator"
        return f"caller connected to anna (until then: {heard})"

    def heard_level(self) -> int:
        """Level (0-255) of the audio that came in from the network.

        pjsua2 names a port's levels from the bridge's side: ``getRxLevel`` is
        what the bridge sends into the call (our own tone), ``getTxLevel`` what
        the call transmits into the bridge, i.e. what the far end sent us.
        """
        try:
            return int(self.getAudioMedia(-1).getTxLevel())
        except pj.Error:
            return 0

    def rx_packets(self) -> int:
        try:
            return int(self.getStreamStat(0).rtcp.rxStat.pkt)
        except pj.Error:
            return 0

    @guarded
    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        del prm
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_EARLY and self.role == "caller" and not self.rang:
            self.rang = True
            code = int(info.lastStatusCode)
            self.peers.emit(
                "ringback", f"caller hears ringback ({code} from the gateway)", role="caller"
            )
        elif info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.peers.emit("connected", self._connected_text(), role=self.role, act=self.act)
            if self.role == "caller":
                self.peers.on_connected()
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.peers.calls.pop(id(self), None)  # the last reference (module doc)
            talk = info.connectDuration.sec + info.connectDuration.msec / 1000
            answered = self.role == "anna" and talk > 0  # not the busy one
            text = f"anna's call ended ({talk:.1f} s of talk)" if answered else None
            if self.role == "announcer":
                text = f"workshop's operator: the gateway cancelled ({info.lastStatusCode})"
            if self.role == "caller" and info.lastStatusCode >= 300:
                text = f"caller gets {info.lastStatusCode} {info.lastReason} from the gateway"
            code = int(info.lastStatusCode)
            role = "operator" if self.role == "announcer" else self.role
            self.peers.emit("ended", text, role=role, code=code, act=self.act)
            if self.role == "caller":
                self.peers.on_caller_ended()

    @guarded
    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        del prm
        info = self.getInfo()
        active = any(
            m.type == pj.PJMEDIA_TYPE_AUDIO and m.status == pj.PJSUA_CALL_MEDIA_ACTIVE
            for m in info.media
        )
        if not active:
            return
        if info.state == pj.PJSIP_INV_STATE_EARLY and self.role == "caller":
            self.early_media = True
            # The gateway must never connect audio before an answer (DESIGN.md).
            self.peers.emit("early_media", "caller: audio before anyone answered!", role="caller")
        if self.role == "announcer":  # once its 183 is out (after this callback)
            self.peers.after(0.0, functools.partial(self.peers.announce, id(self)))
        elif self.act == 2:  # the second caller talks only after the beep
            self.peers.listen(self)
        else:
            self.peers.play_tone(self)
