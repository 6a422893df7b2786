"""Synthetic telephone audio at 8 kHz: SITs, call-progress tones, a voice, music.

The demo's operator plays these, and the tests build their audio (and SIPp's
pcaps) from them, so no recording is shipped. Levels are those of a real line:
tones about -20 dBov, the "voice" louder and never steady.
"""

from __future__ import annotations

import wave
from typing import TYPE_CHECKING

import numpy as np

from gateway.core.sit import ENCODINGS, LONG_MS, RATE, THIRD_HZ, SitCode

if TYPE_CHECKING:
    from pathlib import Path

    import numpy.typing as npt

TONE_AMPLITUDE = 3000.0  # about -21 dBov, near E.180's -24 dBm0
ITU_SIT: tuple[tuple[float, float], ...] = ((950.0, 330.0), (1400.0, 330.0), (1800.0, 330.0))


def _clip(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def silence(seconds: float) -> npt.NDArray[np.int16]:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def tone(freqs: tuple[float, ...], seconds: float, amplitude: float = TONE_AMPLITUDE,
         phase: float = 0.0) -> npt.NDArray[np.int16]:  # fmt: skip
    """Sum of sines (e.g. ``(440.0, 480.0)`` for US ringback) for ``seconds``."""
    t = np.arange(round(seconds * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * f * t + phase) for f in freqs)
    return _clip(amplitude * np.asarray(x, dtype=np.float64))


def sit(segments: tuple[tuple[float, float], ...], gap_ms: float = 0.0) -> npt.NDArray[np.int16]:
    """Three tone segments ``(Hz, ms)``, back to back or ``gap_ms`` apart."""
    parts: list[npt.NDArray[np.int16]] = []
    for freq, ms in segments:
        parts += [tone((freq,), ms / 1000.0), silence(gap_ms / 1000.0)]
    return np.concatenate(parts[:-1])


def telcordia(code: SitCode) -> npt.NDArray[np.int16]:
    """The GR-1162 SIT of ``code``, as an operator's announcer sends it."""
    (f1, d1, f2, d2) = next(key for key, value in ENCODINGS.items() if value is code)
    return sit(((f1, d1), (f2, d2), (THIRD_HZ, LONG_MS)))


def cadence(
    freqs: tuple[float, ...], on_s: float, off_s: float, seconds: float
) -> npt.NDArray[np.int16]:
    """A tone switched on and off (ringback, busy) for ``seconds`` in all."""
    period = np.concatenate((tone(freqs, on_s), silence(off_s)))
    return np.resize(period, round(seconds * RATE)).astype(np.int16)


def ringback_eu(seconds: float) -> npt.NDArray[np.int16]:
    """European ringback: 425 Hz, 1 s on, 4 s off."""
    return cadence((425.0,), 1.0, 4.0, seconds)


def busy_eu(seconds: float) -> npt.NDArray[np.int16]:
    """European busy tone: 425 Hz, 0.5 s on, 0.5 s off."""
    return cadence((425.0,), 0.5, 0.5, seconds)


def voice(seconds: float, seed: int = 1) -> npt.NDArray[np.int16]:
    """A voice-like signal: a gliding pitch with harmonics shaped by moving formants.

    Syllables of 120-300 ms with short pauses, a pitch of 90-220 Hz and three
    formants that move (speech has no steady pure tone: nor does this).
    """
    rng = np.random.default_rng(seed)
    out: list[npt.NDArray[np.float64]] = []
    total = round(seconds * RATE)
    while sum(len(p) for p in out) < total:
        n = round(rng.uniform(0.12, 0.3) * RATE)
        t = np.arange(n) / RATE
        pitch = rng.uniform(90, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
        phase = 2 * np.pi * np.cumsum(pitch) / RATE
        formants = rng.uniform((300, 900, 2000), (800, 1800, 3000))
        x = np.zeros(n)
        for k in range(1, 30):
            fk = k * pitch
            gain = sum(1 / (1 + ((fk - f) / 120.0) ** 2) for f in formants)
            x += np.where(fk < RATE / 2, gain / k, 0.0) * np.sin(k * phase)
        x += rng.normal(0, 0.05, n)  # breath
        envelope = np.sin(np.pi * np.arange(n) / n) ** 0.5
        out += [6000 * x / max(1e-9, np.max(np.abs(x))) * envelope,
                np.zeros(round(rng.uniform(0.03, 0.15) * RATE))]  # fmt: skip
    return _clip(np.concatenate(out)[:total])


def music(seconds: float, seed: int = 2) -> npt.NDArray[np.int16]:
    """Notes of an instrument (harmonics, decay), some chords, over a bass line."""
    rng = np.random.default_rng(seed)
    scale = 440.0 * 2 ** (np.arange(-12, 16) / 12)
    out: list[npt.NDArray[np.float64]] = []
    total = round(seconds * RATE)
    while sum(len(p) for p in out) < total:
        n = round(rng.choice((0.125, 0.25, 0.33, 0.5)) * RATE)
        t = np.arange(n) / RATE
        notes = rng.choice(scale, size=int(rng.integers(1, 4)), replace=False)
        x = np.zeros(n)
        for f in [*notes, notes[0] / 4]:
            harmonics = (k for k in range(1, 6) if k * f < RATE / 2)
            x += sum(np.sin(2 * np.pi * k * f * t) / k**1.5 for k in harmonics)
        out.append(4000 * x / max(1e-9, np.max(np.abs(x))) * np.exp(-3 * t))
    return _clip(np.concatenate(out)[:total])


def announcement(sit_audio: npt.NDArray[np.int16], seconds: float = 4.0) -> npt.NDArray[np.int16]:
    """A SIT, a pause, then a spoken message: what an operator plays."""
    return np.concatenate((sit_audio, silence(0.2), voice(seconds)))


def write_wav(path: Path, audio: npt.NDArray[np.int16]) -> None:
    """16-bit mono PCM at 8 kHz."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(audio.astype("<i2").tobytes())


def ulaw(audio: npt.NDArray[np.int16]) -> bytes:
    """G.711 mu-law (PCMU) encoding, as ITU-T G.711 specifies it."""
    x = audio.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return bytes((~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8))


def from_ulaw(data: bytes) -> npt.NDArray[np.int16]:
    """Decode G.711 mu-law back to 16-bit samples."""
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    return np.where(u & 0x80, -(magnitude - 0x84), magnitude - 0x84).astype(np.int16)
