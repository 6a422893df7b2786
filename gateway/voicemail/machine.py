"""The answering machine: greeting, beep, recording, into the durable spool.

Runs as one asyncio task per voicemail call on the loop that also pumps the
SIP engine, and uses only the engine's media operations (answer, play,
record, level, stop). The rules are the box's; the order of what it does is
the promise of docs/voicemail.md: the message is committed (fsync'd) to the
spool before ``voicemail.recorded`` is announced and the mailer is woken.
"""

from __future__ import annotations

import asyncio
import wave
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from gateway.voicemail.silence import SilenceDetector
from gateway.voicemail.spool import Spool, SpoolError, VoicemailMeta

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.core.rules import VoicemailBox
    from gateway.sip.engine import SipEngine

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TICK = 0.1  # seconds between level readings while recording
MEDIA_WAIT = 5.0  # how long the caller's audio may take to come up after 200 OK


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
        engine: SipEngine,
        spool: Spool,
        notify: Callable[[str, dict[str, Any]], None],
        on_committed: Callable[[], None],
        rules_dir: Path,
    ) -> None:
        self.engine = engine
        self.spool = spool
        self.notify = notify
        self.on_committed = on_committed
        self.rules_dir = rules_dir

    async def take(self, call: VoicemailCall, box: VoicemailBox) -> str:
        """Answer, greet, record until hang-up, silence or the length limit.

        Returns:
            Why the recording ended: ``hangup``, ``silence``, ``max_length``,
            or ``no_audio`` when the caller's media never came up.
        """
        self.engine.answer(call.call_id, 200)
        if not await self._until(lambda: self.engine.audio_ready(call.call_id), MEDIA_WAIT):
            self.engine.hang_up_caller(call.call_id)
            return "no_audio"
        if not await self._prompts(call.call_id, box):
            return "hangup"
        reservation = self.spool.reserve(call.call_id)
        started = datetime.now(UTC)
        if not self.engine.record(call.call_id, str(reservation.path)):
            return "hangup"
        ended = await self._record(call.call_id, box)
        self.engine.stop_media(call.call_id)
        duration = _wav_seconds(reservation.path)
        if duration < box.min_seconds:
            self.spool.discard(reservation)
            self.notify("voicemail.dropped", {"call_id": call.call_id, "caller": call.caller,
                                              "duration": round(duration, 1),
                                              "why": f"shorter than {box.min_seconds:g} s: "
                                                     "taken as a hang-up"})  # fmt: skip
        else:
            meta = VoicemailMeta(
                reservation.id,
                call.call_id,
                call.caller,
                call.called,
                started,
                round(duration, 1),
                call.route,
                call.box,
                call.why,
                box.email,
            )
            await self._commit(reservation, meta)
        if self._caller_here(call.call_id):
            self.engine.hang_up_caller(call.call_id)
        return ended

    async def _prompts(self, call_id: str, box: VoicemailBox) -> bool:
        greeting = self._greeting(box)
        prompts = [greeting, ASSETS / "beep.wav"] if box.beep else [greeting]
        for prompt in prompts:
            seconds = self.engine.play(call_id, str(prompt))
            if await self._until(lambda: not self._caller_here(call_id), seconds):
                self.engine.stop_media(call_id)
                return False
        self.engine.stop_media(call_id)
        return True

    async def _record(self, call_id: str, box: VoicemailBox) -> str:
        silence = SilenceDetector(box.silence_seconds)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + box.max_seconds
        while True:
            await asyncio.sleep(TICK)
            now = loop.time()
            if not self._caller_here(call_id):
                return "hangup"
            if now >= deadline:
                return "max_length"
            if silence.feed(self.engine.rx_level(call_id), now):
                return "silence"

    async def _commit(self, reservation: Any, meta: VoicemailMeta) -> None:
        try:
            # fsync can take long on an SD card: keep the loop (and calls) moving.
            await asyncio.to_thread(self.spool.commit, reservation, meta)
        except SpoolError as error:
            logger.critical("voicemail {} from {} could NOT be saved: {}", meta.id,
                            meta.caller or "anonymous", error)  # fmt: skip
            self.notify("voicemail.failed", {"id": meta.id, "error": str(error),
                                             "permanent": True})  # fmt: skip
            return
        logger.info("voicemail {} from {} saved ({:.1f} s)", meta.id, meta.caller, meta.duration)
        self.notify("voicemail.recorded", {"id": meta.id, "call_id": meta.call_id,
                                           "caller": meta.caller, "called": meta.called,
                                           "duration": meta.duration, "why": meta.why})  # fmt: skip
        self.on_committed()

    def _greeting(self, box: VoicemailBox) -> Path:
        if box.greeting is None:
            return ASSETS / "greeting.wav"
        path = Path(box.greeting)
        return path if path.is_absolute() else self.rules_dir / path

    def _caller_here(self, call_id: str) -> bool:
        return call_id in self.engine.registry.inbound

    @staticmethod
    async def _until(condition: Callable[[], bool], limit: float) -> bool:
        """Wait until ``condition`` holds (True) or ``limit`` seconds pass (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not condition():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True


def _wav_seconds(path: Path) -> float:
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() / float(wav.getframerate())
    except (OSError, wave.Error, EOFError):
        return 0.0
