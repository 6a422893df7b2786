"""CPU cost of listening to one leg for SIT: the detector, and the frame copy.

Run: ``python benchmarks/sit_cpu.py [seconds]``. Feeds generated audio (speech,
then an announcement with SIT) to the detector in 20 ms frames and reports
the process CPU time per frame; then copies as many frames out of a pjsua2
``ByteVector`` the way the tap does (pjmedia hands each frame as one), and the
way it did before, with SWIG's byte-by-byte iteration.
"""

from __future__ import annotations

import sys
import time
from array import array

import numpy as np
import pjsua2 as pj

from gateway.core.sit import SitCode, SitDetector
from gateway.demo import tones
from gateway.sip.tap import frame_bytes

FRAME = 160


def detector_ms_per_frame(seconds: float) -> tuple[float, int]:
    audio = np.concatenate((tones.voice(seconds, seed=3), tones.announcement(
        tones.telcordia(SitCode.NO_CIRCUIT))))  # fmt: skip
    samples = np.clip(np.round(audio), -32768, 32767).astype("<i2").tobytes()
    frames = [array("h", samples[i : i + 2 * FRAME]) for i in range(0, len(samples) - 2 * FRAME + 1, 2 * FRAME)]
    detector = SitDetector()
    started = time.process_time()
    for n, frame in enumerate(frames):
        detector.feed(frame, n * 0.02)
    return (time.process_time() - started) * 1000 / len(frames), len(frames)


def copy_ms_per_frame(count: int, *, iterated: bool = False) -> float:
    frame = pj.MediaFrame()  # frame.buf points into it
    frame.buf = pj.ByteVector(bytes(range(256)) + bytes(2 * FRAME - 256))
    started = time.process_time()
    for _ in range(count):
        data = bytes(frame.buf) if iterated else frame_bytes(frame.buf)
        array("h", data[: 2 * FRAME])
    return (time.process_time() - started) * 1000 / count


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    detect, frames = detector_ms_per_frame(seconds)
    copy = copy_ms_per_frame(frames)
    iterated = copy_ms_per_frame(frames, iterated=True)
    total = detect + copy
    print(f"{frames} frames of 20 ms")
    print(f"detector   {detect:.3f} ms/frame")
    print(f"frame copy {copy:.3f} ms/frame (iterated by SWIG: {iterated:.3f})")
    print(f"per tapped leg: {total:.3f} ms CPU per 20 ms = {total / 20 * 100:.1f} % of one core")


if __name__ == "__main__":
    main()
