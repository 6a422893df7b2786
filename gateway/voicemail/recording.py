"""A recording's WAV file: when the recorder has completed it, and how long it is.

pjmedia's WAV writer leaves the header's sizes at 0 while it records and
writes them when its port is destroyed, then closes the file. pjmedia 2.15
destroys a conference port on its media clock thread, a frame or two after
``stop_media`` (gateway/sip/media.py), and tells nobody: the file's close is
the only news. So the answering machine waits for that close (inotify's
``IN_CLOSE_WRITE``, on the loop like any socket), never on a clock; if the
file is not completed within ``CLOSE_WAIT``, its length is taken from its
size and the message is kept anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import wave
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CLOSE_WAIT = 2.0  # how long the recorder may take to complete its WAV file
_WAV_HEADER = 44  # pjmedia's WAV writer: a plain 44-byte header
_PCM_BYTES_PER_SECOND = 16000  # 8 kHz, 16-bit mono
_IN_CLOSE_WRITE = 0x08  # <sys/inotify.h>: a file opened for writing was closed


async def closed_wav_seconds(path: Path) -> float:
    """The recording's length once the recorder has completed the file (0 with no file)."""
    with _closes(path) as closed, contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_WAIT):
            while not _riff_complete(path):
                closed.clear()
                await closed.wait()
    if not _riff_complete(path):
        logger.warning("recording {} was not completed by the recorder; kept as is", path)
        return _size_seconds(path)
    return _header_seconds(path)


@contextlib.contextmanager
def _closes(path: Path) -> Iterator[asyncio.Event]:
    """An event set each time a writer closes ``path``; never set without inotify."""
    closed = asyncio.Event()
    fd = _watch(path)
    if fd is None:
        yield closed
        return
    loop = asyncio.get_running_loop()

    def news() -> None:
        with contextlib.suppress(OSError):
            os.read(fd, 4096)  # drained, or the loop would call this again at once
        closed.set()

    loop.add_reader(fd, news)
    try:
        yield closed
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _watch(path: Path) -> int | None:
    """An inotify descriptor watching ``path`` for a writer's close, or None (no file)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
    except (OSError, AttributeError):  # not Linux
        return None
    if fd < 0:
        return None
    if libc.inotify_add_watch(fd, os.fsencode(path), _IN_CLOSE_WRITE) < 0:
        os.close(fd)
        return None
    return fd


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
