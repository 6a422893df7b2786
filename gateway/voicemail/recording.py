"""A recording's WAV file: when the recorder has completed it, and how long it is.

pjmedia's WAV writer leaves the header's sizes at 0 while it records and
writes them when its port is destroyed, then closes the file. pjmedia 2.15
destroys a conference port on its media clock thread, a frame or two after
``stop_media`` (gateway/sip/media.py), and tells nobody: the header's write
is the only news. So the answering machine watches the file (watchfiles, as
the rules are watched: gateway/rules/watch.py) and looks at the header after
each change, and at least every ``LOOK_MS`` (a write just before the watch
began); if the file is not completed within ``CLOSE_WAIT``, its length is
taken from its size and the message is kept anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from typing import TYPE_CHECKING

from loguru import logger
from watchfiles import awatch

if TYPE_CHECKING:
    from pathlib import Path

CLOSE_WAIT = 2.0  # how long the recorder may take to complete its WAV file
_WAV_HEADER = 44  # pjmedia's WAV writer: a plain 44-byte header
_PCM_BYTES_PER_SECOND = 16000  # 8 kHz, 16-bit mono
LOOK_MS = 100  # the header is looked at after each change, and at least this often
STEP_MS = 5  # a change is reported once the file was quiet this long


async def closed_wav_seconds(path: Path) -> float:
    """The recording's length once the recorder has completed the file (0 with no file)."""
    if not _riff_complete(path):
        watch = awatch(path, debounce=LOOK_MS, step=STEP_MS, rust_timeout=LOOK_MS,
                       yield_on_timeout=True, watch_filter=None)  # fmt: skip
        with contextlib.suppress(TimeoutError, FileNotFoundError):
            async with asyncio.timeout(CLOSE_WAIT), contextlib.aclosing(watch):
                async for _changes in watch:
                    if _riff_complete(path):
                        break
    if not _riff_complete(path):
        logger.warning("recording {} was not completed by the recorder; kept as is", path)
        return _size_seconds(path)
    return _header_seconds(path)


def _size_seconds(path: Path) -> float:
    try:
        size = path.stat().st_size
    except OSError:
        return 0.0
    return max(size - _WAV_HEADER, 0) / _PCM_BYTES_PER_SECOND


def _header_seconds(path: Path) -> float:
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() / float(wav.getframerate())
    except (OSError, wave.Error, EOFError):
        return 0.0


def _riff_complete(path: Path) -> bool:
    try:
        with path.open("rb") as wav:
            head = wav.read(8)
    except OSError:
        return True  # nothing to wait for: no file
    return len(head) < 8 or int.from_bytes(head[4:8], "little") != 0
