"""Listening to outgoing legs for Special Information Tones (gateway/core/sit.py).

When a leg's audio becomes active (183 with SDP: early media; or the answer),
a ``LegTap`` joins pjsua's conference bridge as a sink of that leg's audio and
runs the SIT detector on every frame. A verdict becomes a ``SitSignal``; the
switchboard turns it into the leg's failure and a CANCEL.

pjsua2 traps this module is built around (pjsua2 2.15, ``AudioMediaPort``):

- ``onFrameReceived`` runs on pjmedia's clock thread, 160 samples every 20 ms.
  It must never call pjsua2 (an unregistered thread aborts the process) and no
  exception may leave it (it would unwind into C++). It only runs the detector
  and hands a verdict to the loop with ``call_soon_threadsafe``.
- A port destroyed after ``libDestroy`` aborts the process: ``release_all``
  runs first in the engine's ``destroy``.
- A tap is never destroyed while the bridge's clock runs. The bridge keeps
  calling a port, with empty frames, until its removal (queued by the port's
  destructor) is carried out, and SWIG releases the GIL inside the destructor:
  the clock thread then ran ``onFrameReceived`` on a half-freed Python object
  (AttributeError, then SIGSEGV; seen in about one call in three). So taps are
  pooled: a stopped tap is disconnected and kept for the next leg (at most one
  per call leg), and ``release_all`` stops the clock (``setNoDev``) first.
- Copying a frame out of SWIG's ``ByteVector`` with ``bytes()`` iterates it
  byte by byte (0.15 to 0.25 ms, holding the GIL the loop's SIP work waits
  on). ``frame_bytes`` reads the vector's memory in one copy instead (3 us),
  checked once against ``bytes()``; the detector itself takes 0.02 to 0.25 ms
  (pure Python: ``benchmarks/sit_cpu.py``; docs/health.md).
"""

from __future__ import annotations

import asyncio
import ctypes
import sys
import time
from array import array
from typing import TYPE_CHECKING

import pjsua2 as pj
from loguru import logger

from gateway.core.events import LegAnswered, LegEnded, LegFailed
from gateway.core.rules_values import AFTER_ANSWER_S
from gateway.sip.legs import audio_of
from gateway.sip.signals import LegSignal, MediaChanged, SitSignal

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.core.sit import SitDetector, SitTone
    from gateway.sip.legs import LegRegistry
    from gateway.sip.signals import Signal

FRAME_S = 0.02  # pjmedia's conference bridge: 20 ms frames
RATE = 8000  # the bridge's clock rate (engine.py ``clockRate``), the detector's too


_POINTER = ctypes.sizeof(ctypes.c_void_p)
_direct_read: bool | None = None  # reading the vector's memory gave what bytes() gives


def frame_bytes(buf: pj.ByteVector) -> bytes:
    """A frame's bytes in one copy of the ``std::vector`` SWIG wraps.

    The vector is read as libstdc++ lays it out (begin and end pointers
    first), the layout of the x86-64 wheel: only when its length agrees with
    the vector's, and the first frame with audio is checked against SWIG's
    own iteration. If they ever differ, that iteration is used from then on.
    """
    global _direct_read  # noqa: PLW0603 - one check per process
    if _direct_read is False:
        return bytes(buf)
    vector = int(buf.this)
    begin = ctypes.c_void_p.from_address(vector).value or 0
    end = ctypes.c_void_p.from_address(vector + _POINTER).value or 0
    if not begin or end - begin != len(buf):
        return bytes(buf)
    data = ctypes.string_at(begin, end - begin)
    if _direct_read is None and data:
        _direct_read = data == bytes(buf)
        if not _direct_read:
            logger.warning("SIT tap: frames are copied byte by byte (another pjsua2 build)")
            return bytes(buf)
    return data


def _detector() -> SitDetector:
    """A new SIT detector (imported when the first leg is tapped, not at start)."""
    from gateway.core.sit import SitDetector  # noqa: PLC0415 - see above

    return SitDetector()


class LegTap(pj.AudioMediaPort):  # type: ignore[misc]
    """A conference-bridge sink that runs the SIT detector on one leg's audio."""

    def __init__(self, heard: Callable[[str, SitTone], None]) -> None:
        super().__init__()
        self.closed = True  # first: the clock thread reads it before anything else
        self.leg = ""
        self.loop = asyncio.get_running_loop()
        self._heard = heard
        self._detector = _detector()
        self._frames = 0
        self.cpu_s = 0.0  # CPU time spent in this tap's callbacks (the media thread's)

    def listen(self, leg: str) -> None:
        """Start afresh on ``leg`` (a pooled tap serves one leg after another)."""
        self.leg = leg
        self._detector = _detector()
        self._frames = 0
        self.cpu_s = 0.0
        self.closed = False  # last: the clock thread sees a whole new state

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        """On pjmedia's clock thread: detect, and hand a verdict to the loop."""
        try:
            if not self.closed:
                self._frame(frame)
        except Exception:  # noqa: BLE001 - anything escaping here unwinds into C++
            self.closed = True
            logger.opt(exception=True).error("SIT tap failed; it stops")

    def _frame(self, frame: pj.MediaFrame) -> None:
        started = time.thread_time()
        at = self._frames * FRAME_S
        self._frames += 1
        size = int(frame.size)
        if frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO or size < 2:
            return
        samples = array("h", frame_bytes(frame.buf)[: size - size % 2])  # 16-bit little-endian
        if sys.byteorder == "big":
            samples.byteswap()
        tone = self._detector.feed(samples, at)
        self.cpu_s += time.thread_time() - started
        if tone is not None:
            self.closed = True
            self.loop.call_soon_threadsafe(self._heard, self.leg, tone)

    @property
    def trail(self) -> str:
        """The segments in SIT bands the detector heard last (the clue to a missed SIT)."""
        return "; ".join(str(segment) for segment in self._detector.trail) or "none"

    @property
    def heard_s(self) -> float:
        """Seconds of the leg's audio this tap has taken."""
        return self._frames * FRAME_S


class LegTaps:
    """Every tap, by leg; driven from the engine's poll on the loop's thread."""

    def __init__(self, registry: LegRegistry) -> None:
        self.registry = registry
        self._taps: dict[str, LegTap] = {}
        self._idle: list[LegTap] = []  # disconnected, kept for the next leg (see above)
        self._decided: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.format = pj.MediaFormatAudio()
        self.format.type = pj.PJMEDIA_TYPE_AUDIO
        self.format.init(pj.PJMEDIA_FORMAT_PCM, RATE, 1, int(FRAME_S * 1_000_000), 16)

    def follow(self, signals: list[Signal]) -> None:
        """Tap legs whose audio is up, stop listening to legs that ended or answered."""
        for signal in signals:
            if isinstance(signal, MediaChanged) and signal.key in self.registry.outbound:
                self._attach(signal.key)
            elif isinstance(signal, LegSignal) and isinstance(signal.event, LegAnswered):
                self._listen_a_little_longer(signal.leg)
            elif isinstance(signal, LegSignal) and isinstance(signal.event, LegFailed | LegEnded):
                # After the switchboard has acted on this poll's signals: taking
                # a tap out of the bridge (and its log line) must not delay the
                # next INVITE of a failover.
                asyncio.get_running_loop().call_soon(self._forget, signal.leg)

    def _forget(self, leg: str) -> None:
        self.stop(leg)
        self._decided.discard(leg)

    def _attach(self, leg: str) -> None:
        call = self.registry.outbound.get(leg)
        audio = audio_of(call) if call is not None else None
        if audio is None or leg in self._taps or leg in self._decided:
            return
        if self._idle:
            tap = self._idle.pop()
        else:
            tap = LegTap(self._heard)
            tap.createPort(f"sit-{len(self._taps) + len(self._idle)}", self.format)
        tap.listen(leg)
        audio.startTransmit(tap)
        self._taps[leg] = tap
        logger.debug("leg {}: listening for SIT", leg)
        if call is not None and call.answered:
            self._listen_a_little_longer(leg)

    def _listen_a_little_longer(self, leg: str) -> None:
        if leg in self._taps and leg not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[leg] = loop.call_later(AFTER_ANSWER_S, self._enough, leg)

    def _enough(self, leg: str) -> None:
        self._timers.pop(leg, None)
        self._decided.add(leg)  # a re-INVITE's new media is not listened to again
        self.stop(leg)

    def _heard(self, leg: str, tone: SitTone) -> None:
        """On the loop: one verdict per leg, then the tap goes."""
        if leg not in self._taps:
            return  # the leg ended meanwhile (its tap may already serve another)
        self._decided.add(leg)
        self.stop(leg)
        self.registry.emit(SitSignal(leg, tone))

    def stop(self, leg: str) -> None:
        """Take a leg's tap out of the bridge and destroy it (on the loop's thread)."""
        timer = self._timers.pop(leg, None)
        if timer is not None:
            timer.cancel()
        tap = self._taps.pop(leg, None)
        if tap is None:
            return
        tap.closed = True
        call = self.registry.outbound.get(leg)
        audio = audio_of(call) if call is not None else None
        if audio is not None:  # a leg that ended has left the bridge already
            audio.stopTransmit(tap)
        self._idle.append(tap)
        logger.info("leg {}: SIT tap off after {:.2f} s of audio, {:.1f} ms CPU",
                     leg, tap.heard_s, tap.cpu_s * 1000)  # fmt: skip
        logger.debug("leg {}: SIT bands heard: {}", leg, tap.trail)

    def release_all(self) -> None:
        """Before pjsua is destroyed: a port alive at ``libDestroy`` aborts the process.

        The bridge's clock is stopped first, so that no frame reaches a tap
        while it is destroyed.
        """
        for leg in list(self._taps):
            self.stop(leg)
        self._decided.clear()
        if self._idle:
            pj.Endpoint.instance().audDevManager().setNoDev()
            self._idle.clear()

    def __len__(self) -> int:
        return len(self._taps)
