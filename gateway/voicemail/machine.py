"""The answering machine: greeting, beep, recording, into the durable spool.

Runs as one asyncio task per voicemail call on the loop that also pumps the
SIP engine, and uses only what ``VoicemailLine`` names of the caller's line
(answer, play, record, level, stop, hang up, and news of the call): the SIP
adapter implements it (gateway/sip/media.py), the unit tests a fake
(tests/unit/test_voicemail_machine.py). It waits on that news, not on a
clock: the caller's audio coming up and the caller hanging up wake it at
once (the switchboard passes the engine's signals to the line); a prompt's
end is a timer of the prompt's length. Only the caller's level, for silence,
is a measurement read every ``TICK``.
The rules are the box's; the order of what it does is the promise of
docs/voicemail.md: the message is committed (fsync'd) to the
spool before ``voicemail.recorded`` is announced and the mailer is woken.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from loguru import logger

from gateway.core.events import VoicemailEnd, VoicemailEnded
from gateway.voicemail.record import VoicemailMeta
from gateway.voicemail.recording import closed_wav_seconds
from gateway.voicemail.silence import SilenceDetector
from gateway.voicemail.spool import Reservation, Spool, SpoolError

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.core.rules import VoicemailBox
    from gateway.status.bus import StatusSink

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TICK = 0.1  # seconds between level readings while recording (a hang-up does not wait for it)
MEDIA_WAIT = 5.0  # how long the caller's audio may take to come up after 200 OK
BUILT_IN_GREETING = ASSETS / "greeting.wav"


class VoicemailLine(Protocol):
    """What the answering machine needs of the caller's line (gateway/sip/media.py).

    ``changed`` returns at the call's next news; ``call_changed`` brings it:
    the switchboard calls it on every ``MediaChanged`` and ``CallerSignal``
    the engine reports.
    """

    def answer(self, call_id: str, code: int = 200) -> None: ...
    def hang_up_caller(self, call_id: str) -> None: ...
    def caller_here(self, call_id: str) -> bool: ...
    def audio_ready(self, call_id: str) -> bool: ...
    def play(self, call_id: str, path: str) -> float | None: ...  # seconds; None: cannot
    def record(self, call_id: str, path: str) -> bool: ...
    def rx_level(self, call_id: str) -> int: ...  # the caller's level now, 0..100
    def stop_media(self, call_id: str) -> None: ...
    async def changed(self, call_id: str) -> None: ...  # until the call's next news (or gone)
    def call_changed(self, call_id: str) -> None: ...  # news: audio up/down, caller gone


@dataclass(frozen=True, slots=True)
class VoicemailCall:
    """The call being taken into a box."""

    call_id: str
    caller: str
    called: str
    route: str
    box: str
    why: str


class AnsweringMachine:
    """Takes messages for every voicemail box of the rules."""

    def __init__(
        self,
        line: VoicemailLine,
        spool: Spool,
        notify: StatusSink,
        on_committed: Callable[[], None],
        rules_dir: Path,
    ) -> None:
        self.line = line
        self.spool = spool
        self.notify = notify
        self.on_committed = on_committed
        self.rules_dir = rules_dir

    async def take(self, call: VoicemailCall, box: VoicemailBox) -> VoicemailEnded:
        """Answer, greet, record until hang-up, silence or the length limit.

        Every call that reaches a box ends in one event: ``voicemail.recorded``
        (committed), ``voicemail.dropped`` (no message: hung up during the
        greeting, too short, no audio) or ``voicemail.failed`` (the spool or
        the recorder failed). A box whose spool can take no message does not
        answer at all (``unavailable``): the call session refuses the caller.

        Returns:
            Why the recording ended (``hangup``, ``silence``, ``max_length``,
            ``no_audio`` when the caller's media never came up, ``error``,
            ``unavailable``) and whether a message was stored.
        """
        if not self.spool.ready():
            logger.error("call {}: the voicemail spool {} can take no message", call.call_id,
                         self.spool.root)  # fmt: skip
            return VoicemailEnded("unavailable", stored=False)
        no_audio = await self._answer(call)
        if no_audio is not None:
            return no_audio
        if not await self._prompts(call.call_id, box):
            self._dropped(call, 0.0, "hung up during the greeting")
            return VoicemailEnded("hangup", stored=False)
        ended = await self._take_message(call, box)
        if self._caller_here(call.call_id):
            self.line.hang_up_caller(call.call_id)
        return ended

    async def _answer(self, call: VoicemailCall) -> VoicemailEnded | None:
        """Answer and wait for the caller's audio; None once it is up, else how it ended."""
        self.line.answer(call.call_id, 200)
        if await self._until(call.call_id, lambda: self.line.audio_ready(call.call_id), MEDIA_WAIT):
            return None
        if not self._caller_here(call.call_id):
            self._dropped(call, 0.0, "hung up before the audio came up")
            return VoicemailEnded("hangup", stored=False)
        self.line.hang_up_caller(call.call_id)
        self._dropped(call, 0.0, f"no audio from the caller within {MEDIA_WAIT:g} s")
        return VoicemailEnded("no_audio", stored=False)

    async def _take_message(self, call: VoicemailCall, box: VoicemailBox) -> VoicemailEnded:
        reservation = self.spool.reserve(call.call_id)
        started = datetime.now(UTC)
        if not self.line.record(call.call_id, str(reservation.path)):
            self.spool.discard(reservation)
            if not self._caller_here(call.call_id):
                self._dropped(call, 0.0, "hung up during the greeting")
                return VoicemailEnded("hangup", stored=False)
            self._failed(reservation.id, f"cannot record into {reservation.path}")
            return VoicemailEnded("error", stored=False)
        ended = await self._record(call.call_id, box)
        self.line.stop_media(call.call_id)
        duration = await closed_wav_seconds(reservation.path)
        if duration < box.min_seconds:
            self.spool.discard(reservation)
            self._dropped(call, duration, f"shorter than {box.min_seconds:g} s: taken as a hang-up")
            return VoicemailEnded(ended, stored=False)
        try:
            meta = VoicemailMeta(reservation.id, call.call_id, call.caller, call.called,
                                 started, round(duration, 1), call.route, call.box, call.why,
                                 box.email)  # fmt: skip
        except ValueError as error:  # e.g. no recipients: the rules refuse that box
            await self._keep(reservation, str(error))
            return VoicemailEnded("error", stored=False)
        stored = await self._commit(reservation, meta, ended)
        return VoicemailEnded(ended if stored else "error", stored=stored)

    async def _prompts(self, call_id: str, box: VoicemailBox) -> bool:
        """Greeting then beep; False when the caller hung up meanwhile."""
        greeting = self._greeting(box)
        for prompt in [greeting, ASSETS / "beep.wav"] if box.beep else [greeting]:
            seconds = self.line.play(call_id, str(prompt))
            if seconds is None and prompt == greeting != BUILT_IN_GREETING:
                # A broken greeting file must not cost the caller the message.
                seconds = self.line.play(call_id, str(BUILT_IN_GREETING))
            if await self._until_gone(call_id, seconds or 0.0):  # the prompt's end is its length
                self.line.stop_media(call_id)
                return False
        self.line.stop_media(call_id)
        return True

    async def _record(self, call_id: str, box: VoicemailBox) -> VoicemailEnd:
        """Until the caller hangs up (at once), the length limit, or silence (read every TICK)."""
        silence = SilenceDetector(box.silence_seconds)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + box.max_seconds
        while True:
            if await self._until_gone(call_id, min(TICK, deadline - loop.time())):
                return "hangup"
            now = loop.time()
            if now >= deadline:
                return "max_length"
            if silence.feed(self.line.rx_level(call_id), now):
                return "silence"

    async def _commit(self, reservation: Reservation, meta: VoicemailMeta, ended: str) -> bool:
        """Commit the message; True once it is durable and announced."""
        try:
            # fsync can take long on an SD card: keep the loop (and calls) moving.
            await asyncio.to_thread(self.spool.commit, reservation, meta)
        except SpoolError as error:
            logger.critical("voicemail {} from {} could NOT be saved: {}", meta.id,
                            meta.caller or "anonymous", error)  # fmt: skip
            self._failed(meta.id, str(error))
            return False
        logger.info("voicemail {} from {} saved ({:.1f} s, ended by {})", meta.id, meta.caller,
                    meta.duration, ended)  # fmt: skip
        self.notify("voicemail.recorded", {"id": meta.id, "call_id": meta.call_id,
                                           "caller": meta.caller, "called": meta.called,
                                           "duration": meta.duration, "why": meta.why})  # fmt: skip
        self.on_committed()
        return True

    async def _keep(self, reservation: Reservation, error: str) -> None:
        """Keep a recording that cannot be queued for mail where the admin finds it."""
        try:
            kept = await asyncio.to_thread(self.spool.keep, reservation)
        except SpoolError as failure:  # then it stays in tmp/, reported as a leftover
            kept, error = reservation.path, f"{error}; {failure}"
        logger.error("voicemail {} NOT mailed, its recording is kept in {}: {}", reservation.id,
                     kept, error)  # fmt: skip
        self._failed(reservation.id, f"{error}; recording kept in {kept}")

    def _dropped(self, call: VoicemailCall, duration: float, why: str) -> None:
        logger.info("call {}: no voicemail from {}: {}", call.call_id, call.caller, why)
        self.notify("voicemail.dropped", {"call_id": call.call_id, "caller": call.caller,
                                          "duration": round(duration, 1), "why": why})  # fmt: skip

    def _failed(self, spool_id: str, error: str) -> None:
        self.notify("voicemail.failed", {"id": spool_id, "error": error, "permanent": True})

    def _greeting(self, box: VoicemailBox) -> Path:
        if box.greeting is None:
            return BUILT_IN_GREETING
        path = Path(box.greeting)
        return path if path.is_absolute() else self.rules_dir / path

    def _caller_here(self, call_id: str) -> bool:
        return self.line.caller_here(call_id)

    async def _until_gone(self, call_id: str, limit: float) -> bool:
        """True as soon as the caller is gone; False when ``limit`` seconds pass first."""
        return await self._until(call_id, lambda: not self._caller_here(call_id), limit)

    async def _until(self, call_id: str, condition: Callable[[], bool], limit: float) -> bool:
        """Wait until ``condition`` holds (True) or ``limit`` seconds pass (False).

        The condition is read again on each news of the call from the line,
        never on a clock; nothing can happen between reading it and waiting,
        since the news comes on this same loop. A caller who is gone ends the
        wait (False, unless that is what the condition waits for).
        """
        try:
            async with asyncio.timeout(max(limit, 0.0)):
                while not condition():
                    if not self._caller_here(call_id):
                        return False  # no news will come of a call that is gone
                    await self.line.changed(call_id)
        except TimeoutError:
            return False
        return True
