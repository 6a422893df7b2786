"""Special Information Tones (SIT): hearing "this number is not assigned".

Operators often answer 183 and play, in early media, three rising tones and an
announcement, then send a final response late or never. This module hears the
tones in audio frames: samples and their time in, a ``SitTone`` out. It is
pure Python: the SIP adapter feeds it from a conference-bridge tap. (It used
numpy: 13 MB of a running gateway's memory, to save 0.01 to 0.2 ms per 20 ms
frame; ``benchmarks/sit_cpu.py``. Same verdicts on the same audio.)

Two families of SIT exist:

- ITU-T E.180 / Q.35: 950, 1400 and 1800 Hz (each +-50 Hz), 330 +-70 ms each,
  in that order, at most 30 ms apart. It carries no cause: its meaning is the
  rules' ``sit: {itu: ...}`` (default ``unassigned``).
- North-American (Telcordia GR-1162, ANSI T1.401): a low or high first tone
  (913.8 / 985.2 Hz), a low or high second tone (1370.6 / 1428.5 Hz), each short
  (274 ms) or long (380 ms), then 1776.7 Hz for 380 ms. The eight combinations
  name the cause (``ENCODINGS``).

How it listens: every 10 ms block is labelled with the SIT band (900-1000,
1350-1450, 1750-1850 Hz) holding most of its energy, or none. The ratio is a
Goertzel power against the block's *total* energy, so speech, music, ringback
(425 or 440+480 Hz) and busy tones never hold a band: a pure tone does. Runs of
one band make segments; a segment's exact frequency is measured over its whole
length (a few Hz of resolution, so 913.8 and 985.2 Hz are far apart), and its
purity must stay high. The third tone is taken once it has lasted
``THIRD_TONE_S``, so even the longest code is heard within 1 s of its start.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from enum import StrEnum
from operator import mul
from typing import TYPE_CHECKING

from gateway.core.causes import Outcome

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

RATE = 8000
BLOCK = 80  # 10 ms: the time resolution of segment edges
BANDS: tuple[tuple[float, float], ...] = ((900.0, 1000.0), (1350.0, 1450.0), (1750.0, 1850.0))
BLOCK_RATIO = 0.5  # share of a block's energy at one band frequency to label the block
SEGMENT_PURITY = 0.6  # share of a whole segment's energy at its measured frequency
SILENCE_RMS = 40.0  # below this a block is silence (about -58 dBov)
# E.180 allows 30 ms between tones; a jitter buffer can add two 20 ms frames that
# are neither tone (silence, or a concealed frame of both); and a block of slack.
MAX_GAP_S = 0.08
THIRD_TONE_S = 0.16  # the third tone is taken after this much of it
MEASURE_SAMPLES = 1280  # a segment's frequency is measured over 160 ms of it
# What a tone's length may gain or lose on its way to us, besides the sender's
# tolerance: pjmedia's jitter buffer conceals late packets (PLC, 20 ms frames)
# and drops frames to catch up; on a loaded machine a tone arrived 2 frames
# longer (a 274 ms tone heard as 310 ms). Plus one 10 ms block at the edges.
JITTER_MS = 40.0 + 1000.0 * BLOCK / RATE

SHORT_MS, LONG_MS = 274.0, 380.0
TELCORDIA_SOURCE = 0.05  # +-5 % at the source: 260-288 and 361-399 ms
TELCORDIA_FREQ_TOLERANCE = 0.006  # +-0.2 % at the source, plus our 2 Hz steps
ITU_MS = (260.0 - JITTER_MS, 400.0 + JITTER_MS)  # 330 +-70 ms at the source
MAX_SEGMENT_S = ITU_MS[1] / 1000  # longer than any SIT segment heard
BLIP_S = 0.03  # a run this short between two tones is their junction, not a tone
TRAIL, TRAIL_MIN_S = 8, 0.1  # segments kept for the log, and the shortest one kept
_FIRST = {913.8: "low", 985.2: "high"}
_SECOND = {1370.6: "low", 1428.5: "high"}
THIRD_HZ = 1776.7




class SitCode(StrEnum):
    """What a SIT says, in the names of GR-1162."""

    INTERCEPT = "intercept"  # IC: vacant number, changed number
    VACANT_CODE = "vacant-code"  # VC: unassigned prefix
    NO_CIRCUIT = "no-circuit"  # NC: no trunk (inter-LATA)
    NO_CIRCUIT_LOCAL = "no-circuit-local"  # NC': no trunk (intra-LATA)
    REORDER = "reorder"  # RO: equipment blockage (inter-LATA)
    REORDER_LOCAL = "reorder-local"  # RO': equipment blockage (intra-LATA)
    INEFFECTIVE_OTHER = "ineffective-other"  # IO: another failure
    RESERVED = "reserved"  # for future use
    ITU = "itu"  # E.180: no cause carried


# (first tone Hz, its length ms, second tone Hz, its length ms) -> code; the
# third tone is always 1776.7 Hz, 380 ms. GR-1162 / T1.401, as tabulated in
# the Telecom Digest (1990) and a 1983 central-office announcer manual.
ENCODINGS: dict[tuple[float, float, float, float], SitCode] = {
    (913.8, SHORT_MS, 1370.6, SHORT_MS): SitCode.INTERCEPT,
    (985.2, LONG_MS, 1370.6, SHORT_MS): SitCode.VACANT_CODE,
    (985.2, LONG_MS, 1428.5, LONG_MS): SitCode.NO_CIRCUIT,
    (913.8, LONG_MS, 1370.6, LONG_MS): SitCode.NO_CIRCUIT_LOCAL,
    (985.2, SHORT_MS, 1370.6, LONG_MS): SitCode.REORDER,
    (913.8, SHORT_MS, 1428.5, LONG_MS): SitCode.REORDER_LOCAL,
    (913.8, LONG_MS, 1428.5, SHORT_MS): SitCode.INEFFECTIVE_OTHER,
    (985.2, SHORT_MS, 1428.5, SHORT_MS): SitCode.RESERVED,
}

_OUTCOMES: dict[SitCode, Outcome] = {
    SitCode.INTERCEPT: Outcome.UNASSIGNED,
    SitCode.VACANT_CODE: Outcome.UNASSIGNED,
    SitCode.NO_CIRCUIT: Outcome.UNREACHABLE,
    SitCode.NO_CIRCUIT_LOCAL: Outcome.UNREACHABLE,
    SitCode.REORDER: Outcome.UNREACHABLE,
    SitCode.REORDER_LOCAL: Outcome.UNREACHABLE,
    SitCode.INEFFECTIVE_OTHER: Outcome.FAILED,
    SitCode.RESERVED: Outcome.FAILED,
}


def outcome_of(code: SitCode, itu: Outcome = Outcome.UNASSIGNED) -> Outcome:
    """The leg's outcome for a heard SIT; ``itu`` is what the rules make of E.180's."""
    return itu if code is SitCode.ITU else _OUTCOMES[code]


@dataclass(frozen=True, slots=True)
class SitTone:
    """A SIT heard: its code and what was measured.

    Times are those of the stream fed to the detector (seconds); the third
    tone's length is how much of it was heard when the decision was made.
    """

    code: SitCode
    frequencies: tuple[float, float, float]
    durations_ms: tuple[int, int, int]
    started: float  # the first tone's first block
    decided: float  # the end of the block that completed the pattern

    def pattern(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Frequencies (Hz) and lengths (ms): the code's nominal ones, else as heard."""
        for (f1, d1, f2, d2), code in ENCODINGS.items():
            if code is self.code:
                return (f1, f2, THIRD_HZ), (d1, d2, LONG_MS)
        return self.frequencies, (*self.durations_ms[:2], float(self.durations_ms[2]))

    def describe(self, since: float = 0.0) -> str:
        """E.g. ``SIT vacant-code 985.2/1370.6/1776.7 Hz 380/274/380 ms at +0.82 s``.

        Args:
            since: the stream time to count from (e.g. when the early media began).
        """
        freqs, lengths = self.pattern()
        hz = "/".join(f"{f:.1f}" for f in freqs)
        ms = "/".join(f"{d:.0f}" for d in lengths)
        return f"SIT {self.code} {hz} Hz {ms} ms at +{self.decided - since:.2f} s"


@dataclass(frozen=True, slots=True)
class HeardSegment:
    """A run of one SIT band that ended, as heard: what a missed SIT is diagnosed by."""

    hz: float
    purity: float
    start: float
    ms: int

    def __str__(self) -> str:
        return f"{self.hz:.0f} Hz {self.ms} ms at {self.start:.2f} s (purity {self.purity:.2f})"


@dataclass
class _Segment:
    band: int
    start: float
    end: float
    samples: list[array[float]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.end - self.start


Row = tuple["array[float]", "array[float]"]  # cos and sin of one frequency, sample by sample


def _row(hz: float, n: int) -> Row:
    phase = [2.0 * math.pi * hz * i / RATE for i in range(n)]
    return array("d", map(math.cos, phase)), array("d", map(math.sin, phase))


def _bank(n: int) -> tuple[list[Row], list[int]]:
    """DFT rows at 25 Hz steps across each band (the Goertzel bins), and each one's band."""
    rows: list[Row] = []
    bands: list[int] = []
    for band, (lo, hi) in enumerate(BANDS):
        steps = math.ceil((hi + 1.0 - lo) / 25.0)  # as numpy.arange(lo, hi + 1, 25)
        for hz in (lo + 25.0 * i for i in range(steps)):
            rows.append(_row(hz, n))
            bands.append(band)
    return rows, bands


_ROWS, _ROW_BAND = _bank(BLOCK)


def _dot(x: array[float], y: array[float]) -> float:
    total: float = sum(map(mul, x, y))  # the C loop of sum() and map(): no numpy needed
    return total


def _energy(x: array[float]) -> float:
    return _dot(x, x)


def _power_ratio(x: array[float], rows: Iterable[Row]) -> list[float]:
    """Each row's tone power as a share of the total energy (1.0: a pure tone there)."""
    energy = _energy(x)
    if energy <= 0.0:
        return [0.0 for _row in rows]
    scale = 2.0 / (len(x) * energy)
    return [(_dot(x, cos) ** 2 + _dot(x, sin) ** 2) * scale for cos, sin in rows]


def _goertzel_ratio(x: array[float], hz: float, energy: float) -> float:
    """One frequency's power as a share of ``energy``: ``_power_ratio`` without a table."""
    coeff = 2.0 * math.cos(2.0 * math.pi * hz / RATE)
    s1 = s2 = 0.0
    for sample in x:
        s1, s2 = sample + coeff * s1 - s2, s1
    return 2.0 * (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (len(x) * energy)


def _measuring_freqs(band: int) -> list[float]:
    """2 Hz steps across a band and 20 Hz beyond."""
    lo, hi = BANDS[band]
    return [lo - 20.0 + 2.0 * i for i in range(math.ceil((hi - lo + 40.0) / 2.0))]


_MEASURING = [_measuring_freqs(band) for band in range(len(BANDS))]


def measure_tone(x: array[float], band: int) -> tuple[float, float]:
    """The strongest frequency of a segment within a band (2 Hz steps), and its purity."""
    if len(x) > MEASURE_SAMPLES:  # the middle is enough: 160 ms resolve 2 Hz steps' peak
        cut = (len(x) - MEASURE_SAMPLES) // 2
        x = x[cut : cut + MEASURE_SAMPLES]
    freqs = _MEASURING[band]
    energy = _energy(x)
    if energy <= 0.0:
        return freqs[0], 0.0
    ratios = [_goertzel_ratio(x, hz, energy) for hz in freqs]
    best = max(range(len(ratios)), key=ratios.__getitem__)  # the first of equals, as argmax
    return freqs[best], ratios[best]


class SitDetector:
    """Listens to one leg's audio until it hears a SIT (then stays quiet).

    Feed it frames in order with the time of their first sample; any frame
    length works (pjmedia gives 160 samples every 20 ms).
    """

    def __init__(self) -> None:
        self._pending: array[float] = array("d")
        self._pending_at = 0.0
        self._segments: list[_Segment] = []
        self._run: _Segment | None = None
        self.heard: SitTone | None = None
        self.trail: tuple[HeardSegment, ...] = ()  # the last TRAIL segments of 100 ms or more

    def feed(self, samples: Iterable[float], at: float) -> SitTone | None:
        """Take one frame of 16-bit samples at 8 kHz starting at ``at`` seconds.

        Returns:
            The SIT, the first time the whole pattern has been heard; else None.
        """
        if self.heard is not None:
            return None
        if len(self._pending) == 0:
            self._pending_at = at
        self._pending.extend(map(float, samples))  # an array extends only its own type
        while len(self._pending) >= BLOCK and self.heard is None:
            block, self._pending = self._pending[:BLOCK], self._pending[BLOCK:]
            start = self._pending_at
            self._pending_at += BLOCK / RATE
            self.heard = self._block(block, start)
        return self.heard

    def _block(self, block: array[float], start: float) -> SitTone | None:
        band = _label(block)
        end = start + BLOCK / RATE
        run = self._run
        if run is not None and band == run.band and end - run.start <= MAX_SEGMENT_S:
            run.end = end
            run.samples.append(block)
            return self._third_tone_heard()
        if run is not None and band is None and start - run.end < MAX_GAP_S:
            return None  # a short gap: the tone may go on, or the next one start
        self._close_run()
        if band is not None:
            self._run = _Segment(band, start, end, [block])
        return None

    def _close_run(self) -> None:
        run, self._run = self._run, None
        if run is None or run.seconds < BLIP_S:
            return  # a blip where tones meet (e.g. a concealed frame of both): not a tone
        self._remember(run)
        long_enough = ITU_MS[0] <= run.seconds * 1000 <= ITU_MS[1]
        in_turn = run.band == len(self._segments) and (
            not self._segments or run.start - self._segments[-1].end <= MAX_GAP_S
        )
        self._segments = [*self._segments, run] if long_enough and in_turn and run.band < 2 else []
        if long_enough and not in_turn and run.band == 0:
            self._segments = [run]  # a new first tone

    def _remember(self, run: _Segment) -> None:
        if run.seconds >= TRAIL_MIN_S:  # a new tuple: the adapter reads it from another thread
            hz, purity = measure_tone(_joined(run.samples), run.band)
            heard = HeardSegment(hz, purity, run.start, round(run.seconds * 1000))
            self.trail = (*self.trail[1 - TRAIL :], heard)

    def _third_tone_heard(self) -> SitTone | None:
        run = self._run
        if run is None or run.band != 2 or len(self._segments) != 2:
            return None
        if run.seconds < THIRD_TONE_S or run.start - self._segments[-1].end > MAX_GAP_S:
            return None
        # Not yet a SIT: asked again as the third tone goes on, since a concealed
        # frame early in it can blur its first 160 ms (the run's end forgets it).
        return _classify([*self._segments, run])


def _label(block: array[float]) -> int | None:
    """The SIT band holding at least BLOCK_RATIO of this block's energy, if any."""
    if math.sqrt(_energy(block) / len(block)) < SILENCE_RMS:
        return None
    ratios = _power_ratio(block, _ROWS)
    best = max(range(len(ratios)), key=ratios.__getitem__)
    return _ROW_BAND[best] if ratios[best] >= BLOCK_RATIO else None


def _joined(blocks: Iterable[array[float]]) -> array[float]:
    joined = array("d")
    for block in blocks:
        joined.extend(block)
    return joined


def _classify(segments: Sequence[_Segment]) -> SitTone | None:
    """The code of three in-order segments, or None when they are not a SIT."""
    # The third tone, still going on, by its latest 160 ms: past any concealed frame.
    audio = [_joined(s.samples) for s in segments]
    audio[2] = audio[2][-MEASURE_SAMPLES:]
    measured = [measure_tone(x, s.band) for x, s in zip(audio, segments, strict=True)]
    if any(purity < SEGMENT_PURITY for _f, purity in measured):
        return None
    freqs = (measured[0][0], measured[1][0], measured[2][0])
    durations = (round(segments[0].seconds * 1000), round(segments[1].seconds * 1000),
                 round(segments[2].seconds * 1000))  # fmt: skip
    code = _telcordia(freqs, durations) or _itu(freqs, durations)
    if code is None:
        return None
    return SitTone(code, freqs, durations, segments[0].start, segments[2].end)


def _nearest(value: float, table: dict[float, str], tolerance: float) -> float | None:
    for nominal in table:
        if abs(value - nominal) <= nominal * tolerance:
            return nominal
    return None


def _length(ms: int) -> float | None:
    """Short or long: the nearer one (274 and 380 ms are told apart up to +-53 ms)."""
    nominal = min((SHORT_MS, LONG_MS), key=lambda length: abs(ms - length))
    if abs(ms - nominal) <= nominal * TELCORDIA_SOURCE + JITTER_MS:
        return nominal
    return None


Hz3 = tuple[float, float, float]
Ms3 = tuple[int, int, int]


def _telcordia(freqs: Hz3, durations: Ms3) -> SitCode | None:
    first = _nearest(freqs[0], _FIRST, TELCORDIA_FREQ_TOLERANCE)
    second = _nearest(freqs[1], _SECOND, TELCORDIA_FREQ_TOLERANCE)
    third_ok = abs(freqs[2] - THIRD_HZ) <= THIRD_HZ * TELCORDIA_FREQ_TOLERANCE
    d1, d2 = _length(durations[0]), _length(durations[1])
    if first is None or second is None or d1 is None or d2 is None or not third_ok:
        return None
    return ENCODINGS.get((first, d1, second, d2))


def _itu(freqs: Hz3, durations: Ms3) -> SitCode | None:
    in_bands = all(lo <= f <= hi for f, (lo, hi) in zip(freqs, BANDS, strict=True))
    in_time = all(ITU_MS[0] <= d <= ITU_MS[1] for d in durations[:2])
    return SitCode.ITU if in_bands and in_time else None
