"""A recording's WAV file as pjmedia's recorder leaves it: complete only once it is closed.

pjmedia writes the WAV header's sizes when the recorder's port is destroyed,
on its media thread, a frame or two after the answering machine stopped it:
until then the RIFF size reads 0. Here a writer on another thread plays the
recorder, so the test sees what the machine sees.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from typing import TYPE_CHECKING, BinaryIO

import pytest

from gateway.voicemail import recording
from gateway.voicemail.recording import closed_wav_seconds

if TYPE_CHECKING:
    from pathlib import Path

RATE = 8000


def _header(data_bytes: int, *, complete: bool) -> bytes:
    """pjmedia's 44-byte header: sizes 0 while recording, the real ones once closed."""
    riff, data = (36 + data_bytes, data_bytes) if complete else (0, 0)
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16)
            + b"data" + struct.pack("<I", data))  # fmt: skip


def _recorder(
    path: Path, seconds: float, close_after_s: float | None
) -> tuple[threading.Thread, BinaryIO]:
    """Write ``seconds`` of audio now; complete the header and close after ``close_after_s``."""
    samples = b"\0\0" * int(RATE * seconds)
    out = path.open("wb")
    out.write(_header(0, complete=False) + samples)
    out.flush()

    def finish() -> None:
        if close_after_s is None:
            return  # the recorder never completes it (left open)
        time.sleep(close_after_s)
        out.seek(0)
        out.write(_header(len(samples), complete=True))
        out.close()

    thread = threading.Thread(target=finish, daemon=True)
    thread.start()
    return thread, out


async def test_a_recording_completed_after_the_stop_is_measured_from_its_header(
    tmp_path: Path,
) -> None:
    wav = tmp_path / "m.wav"
    thread, _ = _recorder(wav, 2.5, close_after_s=0.06)
    started = time.monotonic()
    seconds = await closed_wav_seconds(wav)
    waited = time.monotonic() - started
    thread.join()
    assert seconds == pytest.approx(2.5)
    assert waited < 1.0, f"waited {waited:.2f} s for a file closed after 0.06 s"


async def test_a_recording_never_completed_is_kept_with_the_length_of_its_audio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recording, "CLOSE_WAIT", 0.2)
    wav = tmp_path / "m.wav"
    _, out = _recorder(wav, 1.5, close_after_s=None)
    try:
        async with asyncio.timeout(5.0):
            seconds = await closed_wav_seconds(wav)
    finally:
        out.close()
    assert seconds == pytest.approx(1.5)


async def test_no_recording_at_all_lasts_nothing(tmp_path: Path) -> None:
    assert await closed_wav_seconds(tmp_path / "none.wav") == 0.0
