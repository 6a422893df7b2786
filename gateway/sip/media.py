"""Playing to and recording a caller: the voicemail's media, in pjsua's bridge.

Players and recorders are pjmedia ports in pjsua's conference bridge, held
here per call until ``stop_media``: dropping the last reference destroys a
port, which takes it out of the bridge and, for a recorder, completes its
WAV file's header (pjmedia does that on its media thread, a frame or two
later). pjsua2 names levels from the bridge port's side: on a call's audio,
``getTxLevel()`` is what the caller says and ``getRxLevel()`` what we play.

``CallMedia`` is the answering machine's ``VoicemailLine``
(gateway/voicemail/machine.py): with the engine's answer and hang-up passed
in, it is all of the caller's line the machine needs. The machine waits for
news of its call (``changed``): the switchboard hands the line every
``MediaChanged`` and ``CallerSignal`` the engine reports (``call_changed``).
"""

from __future__ import annotations

import asyncio
import wave
from typing import TYPE_CHECKING

import pjsua2 as pj
from loguru import logger

from gateway.sip.legs import LegRegistry, audio_of

if TYPE_CHECKING:
    from collections.abc import Callable


class CallMedia:
    """Players and recorders attached to inbound calls."""

    def __init__(
        self,
        registry: LegRegistry,
        answer: Callable[[str, int], None],
        hang_up: Callable[[str], None],
    ) -> None:
        self.registry = registry
        self._answer = answer
        self._hang_up = hang_up
        self._media: dict[str, list[pj.AudioMedia]] = {}  # players and recorders
        self._news: dict[str, asyncio.Event] = {}  # per call someone waits on

    def answer(self, call_id: str, code: int = 200) -> None:
        """Answer the caller (``SipEngine.answer``)."""
        self._answer(call_id, code)

    def hang_up_caller(self, call_id: str) -> None:
        """Hang up on the caller (``SipEngine.hang_up_caller``)."""
        self._hang_up(call_id)

    def caller_here(self, call_id: str) -> bool:
        """True until the caller's leg is gone (hung up, or hung up on)."""
        return call_id in self.registry.inbound

    def audio_ready(self, call_id: str) -> bool:
        """True once the caller's audio is in the conference bridge."""
        call = self.registry.inbound.get(call_id)
        return call is not None and audio_of(call) is not None

    def play(self, call_id: str, path: str) -> float | None:
        """Play a WAV file to the caller once.

        Returns:
            Its length in seconds (0.0 when the caller has no audio), or
            ``None`` when pjmedia cannot play the file (missing, not a WAV).
        """
        call = self.registry.inbound.get(call_id)
        audio = audio_of(call) if call is not None else None
        if audio is None:
            return 0.0
        player = pj.AudioMediaPlayer()
        try:
            player.createPlayer(path, pj.PJMEDIA_FILE_NO_LOOP)
        except pj.Error as err:
            logger.error("cannot play {}: {}", path, err.info())
            return None
        player.startTransmit(audio)
        self._media.setdefault(call_id, []).append(player)
        return _wav_seconds(path, player.getInfo())

    def record(self, call_id: str, path: str) -> bool:
        """Record what the caller says into a WAV file (8 kHz, 16-bit PCM).

        Returns:
            False when the caller has no audio (gone) or the file cannot be
            created (logged).
        """
        call = self.registry.inbound.get(call_id)
        audio = audio_of(call) if call is not None else None
        if audio is None:
            return False
        recorder = pj.AudioMediaRecorder()
        try:
            recorder.createRecorder(path)
        except pj.Error as err:
            logger.error("cannot record into {}: {}", path, err.info())
            return False
        audio.startTransmit(recorder)
        self._media.setdefault(call_id, []).append(recorder)
        return True

    def rx_level(self, call_id: str) -> int:
        """The level of the audio last received from the caller (0 when gone).

        pjsua2 names levels from the bridge's side: ``getTxLevel`` is what
        the call's port transmits *into* the bridge, i.e. the caller's voice
        (``getRxLevel`` is what we play to the caller). The value is the
        mean amplitude of the last frame, mu-law coded and scaled to 0..100:
        speech reads 5..35, a quiet line 0..2 (measured over SIPp's g711a.pcap).
        """
        call = self.registry.inbound.get(call_id)
        audio = audio_of(call) if call is not None else None
        return int(audio.getTxLevel()) if audio is not None else 0

    async def changed(self, call_id: str) -> None:
        """Return at the call's next news (``call_changed``); at once if the caller is gone."""
        if not self.caller_here(call_id):
            return
        news = self._news.setdefault(call_id, asyncio.Event())
        news.clear()
        await news.wait()

    def call_changed(self, call_id: str) -> None:
        """The engine reported news of the call: its audio changed, or the caller left."""
        news = self._news.get(call_id)
        if news is not None:
            news.set()
            if not self.caller_here(call_id):
                del self._news[call_id]  # the last news of this call

    def stop_media(self, call_id: str) -> None:
        """Stop the players and recorders of a call.

        A recorder's WAV header (its length) is written when its port is
        destroyed, and pjmedia 2.15 removes conference ports on the media
        clock thread, one or two frames later: the file is complete when
        its RIFF size is no longer 0, not when this returns.
        """
        self._media.pop(call_id, []).clear()

    def release_all(self) -> None:
        """Before pjsua is destroyed: no port may outlive the bridge (pjmedia asserts)."""
        for call_id in list(self._media):
            self.stop_media(call_id)


def _wav_seconds(path: str, info: pj.AudioMediaPlayerInfo) -> float:
    """A playing file's length: from its header, else pjmedia's samples at 8 kHz."""
    try:
        with wave.open(path, "rb") as wav:
            return wav.getnframes() / float(wav.getframerate())
    except (OSError, EOFError, wave.Error):  # e.g. an A-law WAV, which pjmedia plays
        return float(info.sizeSamples) / 8000.0
