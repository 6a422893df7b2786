"""The far side of ``sip-failover demo``: the trunk, its operator, anna, a customer.

One pjsua2 endpoint in its own process (pjsua2 allows one per process, and a
pjlib assert aborts the whole process) listening on one loopback port, which
the demo gateway uses as its trunk. It plays three parts:

- the operator that lost the main mobile: every INVITE for ``MAIN_NUMBER``
  gets ``404 Not Found`` with ``Reason: Q.850;cause=1`` (unallocated number);
- anna's backup mobile: rings (180), answers after ``ANNA_ANSWERS_AFTER_S``,
  then plays a tone;
- a customer who dials the public number at the gateway, plays a tone of
  their own, checks that anna's audio reaches them and hangs up after
  ``TALK_S`` seconds.

It prints one JSON object per thing that happened on its stdout (``t`` is
``time.time()``); everything pjsua prints goes to stderr. pjsua2 traps kept
here (pjsua2 2.15 ``call.cpp``): nothing is answered inside
``onIncomingCall`` (a reject there can abort the process), every ``Call``
stays referenced until its DISCONNECTED callback, and no exception ever
leaves a callback (it would terminate the process).

Run as ``python -m gateway.demo_peers PORT GATEWAY_HOST:PORT``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import sys
import time
import traceback
from typing import IO, TYPE_CHECKING, Any

import pjsua2 as pj

from gateway.demo import ANNA_NUMBER, CALLER_NUMBER, MAIN_NUMBER, PUBLIC_NUMBER

if TYPE_CHECKING:
    from collections.abc import Callable

ANNA_ANSWERS_AFTER_S = 1.5
TALK_S = 3.0
LISTEN_AFTER_S = 0.8  # connected this long before the audio is judged
RUN_LIMIT_S = 20.0  # the whole far side gives up after this long
UNASSIGNED_REASON = 'Q.850;cause=1;text="Unallocated number"'
_CALLER_TONE_HZ, _ANNA_TONE_HZ = 440, 660
_WHOSE = {MAIN_NUMBER: "its operator", ANNA_NUMBER: "anna's mobile"}


def _guarded(func: Callable[..., None]) -> Callable[..., None]:
    def wrapper(*args: Any) -> None:
        try:
            func(*args)
        except Exception:  # noqa: BLE001 - anything escaping a callback kills the process
            traceback.print_exc()

    return wrapper


class Peers:
    """The endpoint, the calls and the few timers of the far side."""

    def __init__(self, out: IO[str], port: int, gateway: str) -> None:
        self.out = out
        self.port = port
        self.gateway = gateway
        self.ep = pj.Endpoint()
        self.account: _Account | None = None
        self.calls: dict[int, _PeerCall] = {}  # by id(call), held until DISCONNECTED
        self.pending: list[_PeerCall] = []  # incoming calls to answer after the poll
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.tones: list[pj.ToneGenerator] = []
        self.caller: _PeerCall | None = None
        self.finished = False

    def emit(self, event: str, text: str | None = None, **data: object) -> None:
        """One line of JSON: when, what, the timeline's words for it, details."""
        line = {"t": time.time(), "event": event, "text": text, **data}
        self.out.write(json.dumps(line) + "\n")

    def after(self, delay: float, action: Callable[[], None]) -> None:
        self.timers.append((time.monotonic() + delay, action))

    # -- life cycle --------------------------------------------------------------

    def start(self) -> None:
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 4
        cfg.uaConfig.userAgent = "sip-failover-demo-trunk"
        cfg.logConfig.level = 1
        cfg.logConfig.consoleLevel = 1
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
        self.ep.libCreate()
        self.ep.libInit(cfg)
        self.ep.audDevManager().setNullDev()
        transport = pj.TransportConfig()
        transport.port = self.port
        transport.boundAddress = "127.0.0.1"
        self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
        self.ep.libStart()
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{CALLER_NUMBER}@127.0.0.1:{self.port}"
        acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        self.account = _Account(self)
        self.account.create(acfg, True)
        self.emit("ready", port=self.port)

    def run(self) -> bool:
        """Place the customer's call and play every part until it has ended."""
        self.after(0.0, self.dial)
        limit = time.monotonic() + RUN_LIMIT_S
        while not (self.finished and not self.calls) and time.monotonic() < limit:
            self.ep.libHandleEvents(5)
            self._answer_pending()
            self._run_timers()
        if not self.calls:
            return self.finished
        text = f"far side: gave up after {RUN_LIMIT_S:.0f} s, {len(self.calls)} call(s) open"
        self.emit("timeout", text)
        self._hang_up_everything()
        return False

    def stop(self) -> None:
        # Every Call and conference port must be gone before the library is:
        # a pjsua2 object destroyed after libDestroy trips a pjsua assert.
        self.caller = None
        self.calls.clear()
        self.pending.clear()
        self.timers.clear()
        self.tones.clear()
        gc.collect()
        if self.account is not None:
            self.account.shutdown()
        with contextlib.suppress(pj.Error):
            self.ep.libDestroy()

    def _hang_up_everything(self) -> None:
        for call in list(self.calls.values()):
            with contextlib.suppress(pj.Error):
                call.hangup(pj.CallOpParam())
        limit = time.monotonic() + 2.0
        while self.calls and time.monotonic() < limit:
            self.ep.libHandleEvents(10)

    def _run_timers(self) -> None:
        now = time.monotonic()
        due = [action for at, action in self.timers if at <= now]
        self.timers = [(at, action) for at, action in self.timers if at > now]
        for action in due:
            action()

    # -- the customer ------------------------------------------------------------

    def dial(self) -> None:
        assert self.account is not None
        call = _PeerCall(self, "caller", self.account)
        self.caller = call
        text = f"caller {CALLER_NUMBER} dials {PUBLIC_NUMBER} (the number on every invoice)"
        self.emit("dial", text)
        call.makeCall(f"sip:{PUBLIC_NUMBER}@{self.gateway}", pj.CallOpParam(True))
        self.calls[id(call)] = call

    def on_connected(self) -> None:
        self.after(LISTEN_AFTER_S, self.judge_audio)
        self.after(TALK_S, self.hang_up)

    def judge_audio(self) -> None:
        """What each side hears: the level of what it receives, and packets."""
        heard = {
            call.role: {"level": call.heard_level(), "packets": call.rx_packets()}
            for call in self.calls.values()
            if call.role in {"caller", "anna"}
        }
        caller, anna = heard.get("caller", {}), heard.get("anna", {})
        text = (
            f"audio: the caller hears anna (level {caller.get('level')}, {caller.get('packets')}"
            f" packets), anna hears the caller (level {anna.get('level')})"
        )
        self.emit("audio", text, **heard)

    def hang_up(self) -> None:
        if self.caller is not None and id(self.caller) in self.calls:
            self.emit("hangup", "caller hangs up", role="caller")
            self.caller.hangup(pj.CallOpParam())

    # -- the operator and anna -------------------------------------------------------

    def _answer_pending(self) -> None:
        calls, self.pending = self.pending, []
        for call in calls:
            if id(call) not in self.calls:  # already gone (CANCEL crossed the poll)
                continue
            if call.role == "anna":
                self._reply(call, 180, "Ringing")
                # By key: a timer must not hold a Call past DISCONNECTED (module doc).
                self.after(ANNA_ANSWERS_AFTER_S, functools.partial(self._answer, id(call)))
            else:  # the lost number, or anything else: this operator knows nothing more
                self._reply(call, 404, "Not Found", ("Reason", UNASSIGNED_REASON))

    def _reply(self, call: _PeerCall, code: int, reason: str, *header: tuple[str, str]) -> None:
        prm = pj.CallOpParam()
        prm.statusCode, prm.reason = code, reason
        for name, value in header:
            hdr = pj.SipHeader()
            hdr.hName, hdr.hValue = name, value
            prm.txOption.headers.append(hdr)
        if code >= 300:
            call.hangup(prm)
        else:
            call.answer(prm)
        said = f"{code} {reason}" + "".join(f", {name}: {value}" for name, value in header)
        who = "operator" if call.role == "operator" else "anna's mobile"
        self.emit("reply", f"{who}: {said}", role=call.role, code=code)

    def _answer(self, key: int) -> None:
        call = self.calls.get(key)
        if call is not None:
            self._reply(call, 200, "OK")

    def play_tone(self, call: _PeerCall) -> None:
        """Send a tone into the call, and listen to what comes back."""
        tone = pj.ToneGenerator()
        tone.createToneGenerator(8000, 1)
        desc = pj.ToneDesc()
        desc.freq1 = _CALLER_TONE_HZ if call.role == "caller" else _ANNA_TONE_HZ
        desc.freq2, desc.on_msec, desc.off_msec, desc.volume = 0, 1000, 0, 0
        tones = pj.ToneDescVector()
        tones.append(desc)
        tone.play(tones, True)
        audio = call.getAudioMedia(-1)
        tone.startTransmit(audio)
        # The bridge reads (and measures) a call's audio only while it has a listener.
        audio.startTransmit(self.ep.audDevManager().getPlaybackDevMedia())
        self.tones.append(tone)


class _Account(pj.Account):  # type: ignore[misc]
    def __init__(self, peers: Peers) -> None:
        super().__init__()
        self.peers = peers

    @_guarded
    def onIncomingCall(self, prm: Any) -> None:
        request_line = str(prm.rdata.wholeMsg).split("\n", 1)[0]
        number = request_line.split("sip:", 1)[-1].split("@", 1)[0]
        role = "anna" if number == ANNA_NUMBER else "operator"
        call = _PeerCall(self.peers, role, self, prm.callId)
        self.peers.calls[id(call)] = call
        self.peers.pending.append(call)  # answered after the poll returns (module doc)
        whose = _WHOSE.get(number, "an operator that does not know it")
        self.peers.emit("invite", f"trunk: INVITE for {number} reaches {whose}", role=role)


class _PeerCall(pj.Call):  # type: ignore[misc]
    def __init__(self, peers: Peers, role: str, account: _Account, call_id: int = -1) -> None:
        super().__init__(account, call_id)
        self.peers = peers
        self.role = role
        self.rang = False
        self.early_media = False

    def _connected_text(self) -> str | None:
        if self.role != "caller":
            return None
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

    @_guarded
    def onCallState(self, prm: Any) -> None:
        del prm
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_EARLY and self.role == "caller" and not self.rang:
            self.rang = True
            code = int(info.lastStatusCode)
            self.peers.emit(
                "ringback", f"caller hears ringback ({code} from the gateway)", role="caller"
            )
        elif info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.peers.emit("connected", self._connected_text(), role=self.role)
            if self.role == "caller":
                self.peers.on_connected()
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.peers.calls.pop(id(self), None)  # the last reference (module doc)
            talk = info.connectDuration.sec + info.connectDuration.msec / 1000
            text = f"anna's call ended ({talk:.1f} s of talk)" if self.role == "anna" else None
            if self.role == "caller" and info.lastStatusCode >= 300:
                text = f"caller gets {info.lastStatusCode} {info.lastReason} from the gateway"
            self.peers.emit("ended", text, role=self.role, code=int(info.lastStatusCode))
            if self.role == "caller":
                self.peers.caller = None
                self.peers.finished = True

    @_guarded
    def onCallMediaState(self, prm: Any) -> None:
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
        self.peers.play_tone(self)


def main(argv: list[str]) -> int:
    """Play the far side; exit 0 once the customer's call has ended."""
    # pjlib prints on the C stdout: keep that for the JSON lines only.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    peers = Peers(out, int(argv[0]), argv[1])
    try:
        peers.start()
        ok = peers.run()
    except Exception as error:  # noqa: BLE001 - reported to the demo, which explains it
        peers.emit("error", f"far side: {type(error).__name__}: {error}")
        ok = False
    finally:
        peers.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
