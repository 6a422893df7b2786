"""The far side of ``sip-failover demo``: the trunk, its operator, anna, two customers.

One pjsua2 endpoint in its own process (pjsua2 allows one per process, and a
pjlib assert aborts the whole process) listening on one loopback port, which
the demo gateway uses as its trunk. It plays these parts, in two calls:

- the operator that lost the main mobile: every INVITE for ``MAIN_NUMBER``
  gets ``404 Not Found`` with ``Reason: Q.850;cause=1`` (unallocated number);
- anna's backup mobile: on the first call it rings (180), answers after
  ``ANNA_ANSWERS_AFTER_S`` and plays a tone; on the second it is busy (486);
- a customer who dials the public number at the gateway, plays a tone of
  their own, checks that anna's audio reaches them and hangs up after
  ``TALK_S`` seconds;
- ``PAUSE_S`` later, a second customer, who gets the voicemail: hears the
  greeting and the beep (``greeting.wav`` in the demo's folder, to know when
  to talk), says ``caller.wav`` and hangs up;
- then a third customer, who calls the workshop: its mobile's operator
  answers ``183 Session Progress`` with SDP, plays ``announcement.wav`` (the
  ITU SIT and a few words, written by the demo with gateway/demo/tones.py) and
  never sends a final answer; anna, free again, answers.

It prints one JSON object per thing that happened on its stdout (``t`` is
``time.time()``); everything pjsua prints goes to stderr. pjsua2 traps kept
here (pjsua2 2.15 ``call.cpp``): nothing is answered inside
``onIncomingCall`` (a reject there can abort the process), every ``Call``
stays referenced until its DISCONNECTED callback, and no exception ever
leaves a callback (it would terminate the process). The pjsua2 account and
calls, whose callbacks drive this script, are in gateway/demo/peer_calls.py.

Run as ``python -m gateway.demo.peers PORT GATEWAY_HOST:PORT FOLDER``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import sys
import time
import wave
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pjsua2 as pj

from gateway.demo.peer_calls import PeerAccount, PeerCall
from gateway.demo.story import (
    CALLER_NUMBER,
    PUBLIC_NUMBER,
    SECOND_CALLER_NUMBER,
    THIRD_CALLER_NUMBER,
    WORKSHOP_NUMBER,
)

if TYPE_CHECKING:
    from collections.abc import Callable

ANNA_ANSWERS_AFTER_S = 1.5
TALK_S = 3.0
SHORT_TALK_S = 1.5  # the third call: long enough to hear anna
LISTEN_AFTER_S = 0.8  # connected this long before the audio is judged
PAUSE_S = 1.0  # between the first call's end and the second customer's INVITE
BEEP_S = 0.4  # gateway/assets/beep.wav, played right after the greeting
LEAD_S = 0.35  # the second caller starts talking this long after the beep
HANG_UP_AFTER_S = 0.2  # ... and hangs up this long after the last word
SAMPLE_S = 0.1  # how often the second caller reads the level of what it hears
RUN_LIMIT_S = 35.0  # the whole far side gives up after this long
UNASSIGNED_REASON = 'Q.850;cause=1;text="Unallocated number"'
_CALLER_TONE_HZ, _ANNA_TONE_HZ = 440, 660
_CUSTOMERS = (  # who calls, and which public number, act by act
    (CALLER_NUMBER, PUBLIC_NUMBER, "the number on every invoice"),
    (SECOND_CALLER_NUMBER, PUBLIC_NUMBER, "the number on every invoice"),
    (THIRD_CALLER_NUMBER, WORKSHOP_NUMBER, "the workshop's line"),
)


class Peers:
    """The endpoint, the calls and the few timers of the far side."""

    def __init__(self, out: IO[str], port: int, gateway: str, folder: Path) -> None:
        self.out = out
        self.port = port
        self.gateway = gateway
        self.folder = folder
        self.ep = pj.Endpoint()
        self.accounts: list[PeerAccount] = []  # one per customer; the first takes INVITEs
        self.calls: dict[int, PeerCall] = {}  # by id(call), held until DISCONNECTED
        self.pending: list[PeerCall] = []  # incoming calls to answer after the poll
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.media: list[pj.AudioMedia] = []  # tone generators and players, kept while they play
        self.caller: PeerCall | None = None
        self.act = 1  # which customer's call is on
        self.spoke_at: float | None = None  # when the second caller started talking
        self.finished = False

    def emit(self, event: str, text: str | None = None, **data: object) -> None:
        """One line of JSON: when, what, the timeline's words for it, which call, details."""
        line = {"t": time.time(), "event": event, "text": text, "act": self.act, **data}
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
        for number, _called, _what in _CUSTOMERS:
            acfg = pj.AccountConfig()
            acfg.idUri = f"sip:{number}@127.0.0.1:{self.port}"  # the caller's From
            acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
            account = PeerAccount(self)
            account.create(acfg, not self.accounts)
            self.accounts.append(account)
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
        self.media.clear()
        gc.collect()
        for account in self.accounts:
            account.shutdown()
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
        call = PeerCall(self, "caller", self.accounts[self.act - 1])
        self.caller = call
        self.spoke_at = None
        number, called, what = _CUSTOMERS[self.act - 1]
        self.emit("dial", f"caller {number} dials {called} ({what})")
        call.makeCall(f"sip:{called}@{self.gateway}", pj.CallOpParam(True))
        self.calls[id(call)] = call

    def on_connected(self) -> None:
        if self.act != 2:
            self.after(LISTEN_AFTER_S, self.judge_audio)
            self.after(TALK_S if self.act == 1 else SHORT_TALK_S, self.hang_up)
            return
        # The voicemail: the greeting starts as soon as the caller's audio is up.
        greeting, speech = (_wav_seconds(self.folder / name) for name in ("greeting", "caller"))
        self.listen_for("greeting", SAMPLE_S * 2, greeting - SAMPLE_S)
        self.listen_for("beep", greeting + SAMPLE_S, greeting + BEEP_S - SAMPLE_S)
        talk_at = greeting + BEEP_S + LEAD_S
        self.after(talk_at, self.speak)
        self.after(talk_at + speech + HANG_UP_AFTER_S, self.hang_up)

    def on_caller_ended(self) -> None:
        self.caller = None
        if self.act < len(_CUSTOMERS):
            self.act += 1
            self.after(PAUSE_S, self.dial)
        else:
            self.finished = True

    def listen_for(self, what: str, start: float, end: float) -> None:
        """Read what the caller hears from ``start`` to ``end`` s; say the loudest."""
        levels: list[int] = []

        def sample() -> None:
            levels.append(self.caller.heard_level() if self.caller is not None else 0)

        def tell() -> None:
            level = max(levels, default=0)
            text = f"caller hears the {what} (level {level})"
            self.emit("heard", text, role="caller", code=what, level=level)

        for k in range(int((end - start) / SAMPLE_S) + 1):
            self.after(start + k * SAMPLE_S, sample)
        self.after(end + SAMPLE_S / 2, tell)

    def speak(self) -> None:
        """The second caller says its message (a recorded voice) into the call."""
        if self.caller is None or id(self.caller) not in self.calls:
            return
        player = pj.AudioMediaPlayer()
        player.createPlayer(str(self.folder / "caller.wav"), pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(self.caller.getAudioMedia(-1))
        self.media.append(player)
        self.spoke_at = time.monotonic()
        seconds = _wav_seconds(self.folder / "caller")
        self.emit("speak", f"caller speaks: {seconds:.1f} s of recorded words", role="caller")

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
            spoke = None if self.spoke_at is None else time.monotonic() - self.spoke_at
            said = "" if spoke is None else f" after talking {spoke:.1f} s"
            self.emit("hangup", f"caller hangs up{said}", role="caller", spoke=spoke)
            self.caller.hangup(pj.CallOpParam())

    # -- the operator and anna -------------------------------------------------------

    def _answer_pending(self) -> None:
        calls, self.pending = self.pending, []
        for call in calls:
            if id(call) not in self.calls:  # already gone (CANCEL crossed the poll)
                continue
            if call.role == "anna" and call.act == 2:  # on another call by now
                self._reply(call, 486, "Busy Here")
            elif call.role == "announcer":
                self._reply(call, 183, "Session Progress")
            elif call.role == "anna":
                self._reply(call, 180, "Ringing")
                # By key: a timer must not hold a Call past DISCONNECTED (module doc).
                self.after(ANNA_ANSWERS_AFTER_S, functools.partial(self._answer, id(call)))
            else:  # the lost number, or anything else: this operator knows nothing more
                self._reply(call, 404, "Not Found", ("Reason", UNASSIGNED_REASON))

    def _reply(self, call: PeerCall, code: int, reason: str, *header: tuple[str, str]) -> None:
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
        who = _SPEAKER[call.role]
        role = "operator" if call.role == "announcer" else call.role
        self.emit("reply", f"{who}: {said}", role=role, code=code, act=call.act)

    def _answer(self, key: int) -> None:
        call = self.calls.get(key)
        if call is not None:
            self._reply(call, 200, "OK")

    def play_tone(self, call: PeerCall) -> None:
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
        self.media.append(tone)

    def announce(self, key: int) -> None:
        """The workshop's operator: tones and an announcement, in early media."""
        call = self.calls.get(key)
        if call is None:
            return
        player = pj.AudioMediaPlayer()
        player.createPlayer(str(self.folder / "announcement.wav"), pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(call.getAudioMedia(-1))
        self.media.append(player)
        seconds = _wav_seconds(self.folder / "announcement")
        text = f"workshop's operator plays SIT tones and {seconds:.1f} s of announcement"
        self.emit("early_media", text, role="operator")

    def listen(self, call: PeerCall) -> None:
        """Only listen: the bridge measures a call's audio only while it has a listener."""
        call.getAudioMedia(-1).startTransmit(self.ep.audDevManager().getPlaybackDevMedia())


_SPEAKER = {"operator": "operator", "announcer": "workshop's operator", "anna": "anna's mobile"}


def _wav_seconds(stem: Path) -> float:
    with wave.open(str(stem.with_suffix(".wav")), "rb") as audio:
        return audio.getnframes() / audio.getframerate()


def main(argv: list[str]) -> int:
    """Play the far side; exit 0 once the customer's call has ended."""
    # pjlib prints on the C stdout: keep that for the JSON lines only.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    peers = Peers(out, int(argv[0]), argv[1], Path(argv[2]))
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
