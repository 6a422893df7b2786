"""The answering machine against a fake caller's line: what a caller leaves, and what is kept.

The fake implements ``VoicemailLine`` (what the SIP adapter's ``CallMedia``
implements in the running gateway): the caller's speech is a script of
levels, the recorder writes a real WAV file of a chosen length, and the
caller hangs up when the script says so. What the engine reports of the call
(its audio up, the caller gone) wakes the machine through ``changed``, as the
switchboard's news does in the running gateway. The spool is a real one in a
temporary folder, so "stored" means committed and queued for mail.
"""

from __future__ import annotations

import asyncio
import wave
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from loguru import logger

from gateway.core.events import VoicemailEnded
from gateway.core.rules_mail import VoicemailBox
from gateway.voicemail import machine as machine_module
from gateway.voicemail.machine import BUILT_IN_GREETING, AnsweringMachine, VoicemailCall
from gateway.voicemail.spool import Spool

if TYPE_CHECKING:
    from pathlib import Path

SPEECH, QUIET = 20, 0  # rx levels: speech reads 5..35, a quiet line 0..2
OFFICE = "office@example.com"
CALL = VoicemailCall("c1", "+32470999999", "+3225550100", "main-line", "main", "unassigned")


@dataclass
class FakeLine:
    """A caller's line: scripted levels, a recorder that writes ``message_s`` of audio."""

    levels: list[int] = field(default_factory=lambda: [SPEECH] * 5)  # then hangs up
    message_s: float = 3.0
    media_up: bool = True
    greeting_plays: bool = True  # False: the box's own greeting cannot be played
    hang_up_after_greeting: bool = False
    leaves_after_s: float | None = None  # the caller hangs up this long into the recording
    media_up_after_s: float | None = None  # the caller's audio comes up this long after 200 OK
    here: bool = True
    answered: list[int] = field(default_factory=list)
    played: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    hung_up: int = 0
    greeting_s: float = 0.01  # how long each prompt plays
    levels_read_after_leaving: int = 0
    _news: asyncio.Event = field(default_factory=asyncio.Event)

    def answer(self, call_id: str, code: int = 200) -> None:
        self.answered.append(code)
        if self.media_up_after_s is not None:
            asyncio.get_running_loop().call_later(self.media_up_after_s, self.audio_comes_up)

    def hang_up_caller(self, call_id: str) -> None:
        self.hung_up += 1
        self.leave()

    def leave(self) -> None:
        """The caller's leg is gone, and the engine says so."""
        self.here = False
        self.call_changed("c1")

    def audio_comes_up(self) -> None:
        self.media_up = True
        self.call_changed("c1")

    def call_changed(self, call_id: str) -> None:
        self._news.set()

    async def changed(self, call_id: str) -> None:
        if self.here:
            self._news.clear()
            await self._news.wait()

    def caller_here(self, call_id: str) -> bool:
        return self.here

    def audio_ready(self, call_id: str) -> bool:
        return self.media_up

    def play(self, call_id: str, path: str) -> float | None:
        if not self.greeting_plays and path != str(BUILT_IN_GREETING) and "beep" not in path:
            return None
        self.played.append(path)
        if self.hang_up_after_greeting:
            self.leave()
        return self.greeting_s

    def record(self, call_id: str, path: str) -> bool:
        self.recorded.append(path)
        with wave.open(path, "wb") as wav:  # what pjmedia's recorder leaves once stopped
            wav.setparams((1, 2, 8000, 0, "NONE", "not compressed"))
            wav.writeframes(b"\0\0" * int(8000 * self.message_s))
        if self.leaves_after_s is not None:
            asyncio.get_running_loop().call_later(self.leaves_after_s, self.leave)
        return True

    def rx_level(self, call_id: str) -> int:
        if not self.here:
            self.levels_read_after_leaving += 1
        if not self.levels:
            self.leave()
            return 0
        return self.levels.pop(0)

    def stop_media(self, call_id: str) -> None:
        pass


@dataclass
class Taken:
    ended: VoicemailEnded
    line: FakeLine
    spool: Spool
    events: list[tuple[str, dict[str, object]]]
    committed: int

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


async def take(tmp_path: Path, line: FakeLine, **box: object) -> Taken:
    spool = Spool(tmp_path / "spool")
    events: list[tuple[str, dict[str, object]]] = []
    committed: list[int] = []
    machine = AnsweringMachine(line, spool, lambda k, d: events.append((k, dict(d))),
                               lambda: committed.append(1), tmp_path)  # fmt: skip
    ended = await machine.take(CALL, VoicemailBox.model_validate({"email": OFFICE, **box}))
    return Taken(ended, line, spool, events, len(committed))


async def test_a_caller_who_speaks_and_hangs_up_leaves_a_message_that_is_queued(
    tmp_path: Path,
) -> None:
    taken = await take(tmp_path, FakeLine(message_s=3.0))
    assert taken.ended == VoicemailEnded("hangup", stored=True)
    assert taken.line.answered == [200]
    assert [p.rsplit("/", 1)[-1] for p in taken.line.played] == ["greeting.wav", "beep.wav"]
    (message,) = taken.spool.pending()
    assert (message.meta.caller, message.meta.recipients) == ("+32470999999", (OFFICE,))
    assert message.meta.duration == pytest.approx(3.0)
    assert taken.kinds() == ["voicemail.recorded"]
    assert taken.committed == 1, "the mailer is woken once the message is durable"


async def test_a_message_shorter_than_min_seconds_is_a_hang_up_not_a_message(
    tmp_path: Path,
) -> None:
    taken = await take(tmp_path, FakeLine(message_s=0.5), min_seconds=2)
    assert taken.ended == VoicemailEnded("hangup", stored=False)
    assert taken.spool.pending() == []
    assert taken.kinds() == ["voicemail.dropped"]
    assert taken.committed == 0


async def test_silence_ends_the_recording_and_the_machine_hangs_up(tmp_path: Path) -> None:
    line = FakeLine(levels=[SPEECH] * 2 + [QUIET] * 100)
    taken = await take(tmp_path, line, silence_seconds=0.3)
    assert taken.ended == VoicemailEnded("silence", stored=True)
    assert line.hung_up == 1, "the caller who went quiet is hung up on"
    assert line.levels, "it stopped on the silence, not at the end of the script"


async def test_the_length_limit_ends_a_caller_who_never_stops(tmp_path: Path) -> None:
    line = FakeLine(levels=[SPEECH] * 1000)
    taken = await take(tmp_path, line, max_seconds=0.3)
    assert taken.ended == VoicemailEnded("max_length", stored=True)
    assert line.hung_up == 1


async def test_hanging_up_during_the_greeting_records_nothing(tmp_path: Path) -> None:
    line = FakeLine(hang_up_after_greeting=True)
    taken = await take(tmp_path, line)
    assert taken.ended == VoicemailEnded("hangup", stored=False)
    assert line.recorded == []
    assert taken.kinds() == ["voicemail.dropped"]
    assert line.hung_up == 0, "nobody to hang up on"


async def test_no_audio_from_the_caller_hangs_up_without_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(machine_module, "MEDIA_WAIT", 0.1)
    line = FakeLine(media_up=False)
    taken = await take(tmp_path, line)
    assert taken.ended == VoicemailEnded("no_audio", stored=False)
    assert (line.played, line.recorded, line.hung_up) == ([], [], 1)
    assert taken.kinds() == ["voicemail.dropped"]


async def test_a_caller_who_hangs_up_while_recording_is_noticed_before_the_next_level_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(machine_module, "TICK", 30.0)  # no level reading falls due meanwhile
    line = FakeLine(levels=[SPEECH] * 100, leaves_after_s=0.05)
    async with asyncio.timeout(5.0):
        taken = await take(tmp_path, line, max_seconds=120)
    assert taken.ended == VoicemailEnded("hangup", stored=True)
    assert line.levels_read_after_leaving == 0, "the hang-up ended it, not a tick"


async def test_the_caller_s_audio_coming_up_starts_the_greeting_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(machine_module, "MEDIA_WAIT", 30.0)
    line = FakeLine(media_up=False, media_up_after_s=0.05)
    async with asyncio.timeout(5.0):
        taken = await take(tmp_path, line)
    assert taken.ended == VoicemailEnded("hangup", stored=True)
    assert line.played, "the greeting played once the audio was up"


async def test_hanging_up_during_a_long_greeting_ends_it_at_once(tmp_path: Path) -> None:
    line = FakeLine(greeting_s=60.0)
    asyncio.get_running_loop().call_later(0.05, line.leave)
    async with asyncio.timeout(5.0):
        taken = await take(tmp_path, line)
    assert taken.ended == VoicemailEnded("hangup", stored=False)
    assert (line.recorded, line.hung_up) == ([], 0)


async def test_a_caller_who_hangs_up_before_the_audio_comes_up_is_not_kept_waiting_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(machine_module, "MEDIA_WAIT", 30.0)
    line = FakeLine(media_up=False)
    asyncio.get_running_loop().call_later(0.05, line.leave)
    async with asyncio.timeout(5.0):
        taken = await take(tmp_path, line)
    assert taken.ended == VoicemailEnded("hangup", stored=False), "they hung up: no audio failure"
    assert (line.played, line.recorded, line.hung_up) == ([], [], 0)
    assert taken.kinds() == ["voicemail.dropped"]


async def test_a_greeting_that_cannot_play_falls_back_to_the_built_in_one(
    tmp_path: Path,
) -> None:
    line = FakeLine(greeting_plays=False)
    taken = await take(tmp_path, line, greeting="broken.wav", beep=False)
    assert line.played == [str(BUILT_IN_GREETING)]
    assert taken.ended.stored


async def test_a_spool_that_can_take_nothing_never_answers(tmp_path: Path) -> None:
    spool_root = tmp_path / "spool"
    line = FakeLine()
    spool = Spool(spool_root)
    (spool_root / "tmp").rmdir()  # the recordings' folder is gone (disk unmounted, say)
    machine = AnsweringMachine(line, spool, lambda k, d: None, lambda: None, tmp_path)
    ended = await machine.take(CALL, VoicemailBox(email=(OFFICE,)))
    assert ended == VoicemailEnded("unavailable", stored=False)
    assert line.answered == [], "the session refuses the caller instead"


async def test_a_message_that_cannot_be_queued_for_mail_is_kept_and_reported(
    tmp_path: Path,
) -> None:
    # The rules refuse a box without an address; should one slip through, the
    # caller's message still must not vanish.
    spool = Spool(tmp_path / "spool")
    events: list[tuple[str, dict[str, object]]] = []
    machine = AnsweringMachine(FakeLine(), spool, lambda k, d: events.append((k, dict(d))),
                               lambda: None, tmp_path)  # fmt: skip
    logged: list[str] = []
    sink = logger.add(logged.append, level="ERROR", format="{message}")
    try:
        ended = await machine.take(CALL, VoicemailBox.model_construct(email=()))
    finally:
        logger.remove(sink)
    (kept,) = (tmp_path / "spool" / "failed").glob("*.wav")
    assert ended == VoicemailEnded("error", stored=False)
    assert _seconds(kept) == pytest.approx(3.0), "the recording itself is kept"
    assert spool.pending() == []
    assert [kind for kind, _ in events] == ["voicemail.failed"]
    (line,) = logged
    assert str(kept) in line
    assert "no recipients" in line


def _seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()
