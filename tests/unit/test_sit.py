"""The SIT detector, in memory, on generated audio through G.711 (as a leg hears it)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from gateway.core.causes import Outcome
from gateway.core.sit import ENCODINGS, SitCode, SitDetector, SitTone, outcome_of
from gateway.demo import tones

LEAD_S = 0.3  # ringback-like silence before the operator's tones
TELCORDIA = [code for code in SitCode if code is not SitCode.ITU]


def listen(audio: np.ndarray, frame: int = 160, lead: float = LEAD_S) -> SitTone | None:
    """Feed audio as a leg would: mu-law coded, in frames with their time."""
    line = np.concatenate((tones.silence(lead), audio, tones.silence(0.5)))
    line = tones.from_ulaw(tones.ulaw(line))
    detector = SitDetector()
    for start in range(0, len(line) - frame + 1, frame):
        heard = detector.feed(line[start : start + frame], start / tones.RATE)
        if heard is not None:
            return heard
    return None


@pytest.mark.parametrize("code", TELCORDIA)
def test_each_telcordia_code_is_heard_within_a_second(code: SitCode) -> None:
    heard = listen(tones.announcement(tones.telcordia(code)))
    assert heard is not None
    assert heard.code is code
    assert heard.started == pytest.approx(LEAD_S, abs=0.011)
    assert heard.decided - LEAD_S <= 1.0


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (SitCode.INTERCEPT, Outcome.UNASSIGNED),
        (SitCode.VACANT_CODE, Outcome.UNASSIGNED),
        (SitCode.NO_CIRCUIT, Outcome.UNREACHABLE),
        (SitCode.NO_CIRCUIT_LOCAL, Outcome.UNREACHABLE),
        (SitCode.REORDER, Outcome.UNREACHABLE),
        (SitCode.REORDER_LOCAL, Outcome.UNREACHABLE),
        (SitCode.INEFFECTIVE_OTHER, Outcome.FAILED),
    ],
)
def test_telcordia_codes_carry_their_cause(code: SitCode, outcome: Outcome) -> None:
    assert outcome_of(code) is outcome
    assert outcome_of(code, itu=Outcome.NO_ANSWER) is outcome  # the ITU setting is not theirs


def test_itu_sit_means_what_the_rules_say() -> None:
    heard = listen(tones.announcement(tones.sit(tones.ITU_SIT)))
    assert heard is not None
    assert heard.code is SitCode.ITU
    assert heard.decided - LEAD_S <= 1.0
    assert outcome_of(heard.code) is Outcome.UNASSIGNED
    assert outcome_of(heard.code, itu=Outcome.UNREACHABLE) is Outcome.UNREACHABLE


@pytest.mark.parametrize(
    "segments",
    [
        ((905.0, 270.0), (1355.0, 270.0), (1755.0, 270.0)),  # low edges
        ((990.0, 390.0), (1440.0, 390.0), (1840.0, 390.0)),  # high edges
        ((950.0, 300.0), (1400.0, 360.0), (1800.0, 330.0)),
    ],
)
def test_itu_tolerances_with_gaps(segments: tuple[tuple[float, float], ...]) -> None:
    heard = listen(tones.sit(segments, gap_ms=30.0))
    assert heard is not None
    assert heard.code is SitCode.ITU


def test_pattern_is_described_with_its_time() -> None:
    heard = listen(tones.telcordia(SitCode.VACANT_CODE))
    assert heard is not None
    text = heard.describe(since=LEAD_S)
    assert text.startswith("SIT vacant-code 985.2/1370.6/1776.7 Hz 380/274/380 ms at +0.")


@pytest.mark.parametrize("frame", [80, 160, 161, 240, 320])
def test_any_frame_length(frame: int) -> None:
    heard = listen(tones.telcordia(SitCode.INTERCEPT), frame=frame)
    assert heard is not None
    assert heard.code is SitCode.INTERCEPT


def test_heard_after_an_announcement_already_began_and_through_noise() -> None:
    rng = np.random.default_rng(5)
    before = np.concatenate((tones.ringback_eu(3.0), tones.voice(2.0, seed=9)))
    audio = np.concatenate((before, tones.telcordia(SitCode.NO_CIRCUIT), tones.voice(2.0)))
    noisy = np.clip(audio + rng.normal(0, 150, len(audio)), -32768, 32767).astype(np.int16)
    heard = listen(noisy)
    assert heard is not None
    assert heard.code is SitCode.NO_CIRCUIT
    assert heard.started == pytest.approx(LEAD_S + 5.0, abs=0.011)


def test_only_once() -> None:
    detector = SitDetector()
    audio = np.concatenate([tones.telcordia(SitCode.INTERCEPT), tones.silence(0.5)] * 2)
    verdicts = [detector.feed(audio[i : i + 160], i / 8000) for i in range(0, len(audio), 160)]
    assert len([v for v in verdicts if v is not None]) == 1


@pytest.mark.parametrize(
    ("name", "audio"),
    [
        ("reversed order", tones.sit(((1800.0, 330.0), (1400.0, 330.0), (950.0, 330.0)))),
        ("two tones only", tones.sit(((950.0, 330.0), (1400.0, 330.0)))),
        ("too short", tones.sit(((950.0, 150.0), (1400.0, 150.0), (1800.0, 150.0)))),
        ("too long", tones.sit(((950.0, 600.0), (1400.0, 600.0), (1800.0, 600.0)))),
        ("too far apart", tones.sit(tones.ITU_SIT, gap_ms=200.0)),
        ("out of band", tones.sit(((850.0, 330.0), (1300.0, 330.0), (1700.0, 330.0)))),
        ("under a chord", tones.sit(tones.ITU_SIT) + tones.tone((600.0,), 0.99)),
    ],
)
def test_near_misses_are_not_sit(name: str, audio: np.ndarray) -> None:
    assert listen(audio) is None, name


def test_ten_minutes_of_other_audio_never_match() -> None:
    """Speech, music and the call-progress tones a leg plays: 10.5 minutes."""
    samples = [
        tones.voice(180.0, seed=11),
        tones.music(150.0, seed=12),
        tones.ringback_eu(90.0),
        tones.busy_eu(60.0),
        tones.cadence((440.0, 480.0), 2.0, 4.0, 60.0),  # North-American ringback
        tones.cadence((480.0, 620.0), 0.25, 0.25, 30.0),  # North-American reorder
        tones.tone((950.0,), 30.0),  # one long tone in a SIT band
        tones.cadence((1400.0,), 0.33, 0.33, 30.0),  # a SIT frequency, alone, repeated
    ]
    for audio in samples:
        assert listen(audio, lead=0.0) is None
    assert sum(len(a) for a in samples) / tones.RATE >= 600


# What a leg hears through pjmedia's jitter buffer on a loaded machine: RTP that
# arrives late is concealed (PLC: the last frame stretched and fading, one 20 ms
# frame at a time), and a buffer that has grown drops frames to catch up. So a
# tone reaches the detector up to two frames longer or shorter than it was sent.
FRAME = 160
CAPTURED = Path(__file__).parent / "audio" / "reorder-local-through-jitter-buffer.wav"


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def test_reorder_local_as_a_gateway_heard_it_through_a_late_packet() -> None:
    """Captured at the tap: two concealed frames made its short first tone 310 ms."""
    heard = listen(read_wav(CAPTURED), lead=0.0)
    assert heard is not None
    assert heard.code is SitCode.REORDER_LOCAL
    assert heard.durations_ms[0] > 300  # the concealment is in it


def lengths(code: SitCode) -> tuple[float, float]:
    (_f1, d1, _f2, d2) = next(key for key, value in ENCODINGS.items() if value is code)
    return d1, d2


def through_jitter_buffer(code: SitCode, at_ms: float, frames: int, offset: int) -> np.ndarray:
    """The code's SIT with ``frames`` 20 ms frames concealed (>0) or dropped (<0).

    Args:
        at_ms: where in the SIT the late (or dropped) packets begin.
        offset: samples of silence before the SIT (where frame edges fall in it).
    """
    sit = tones.telcordia(code)
    line = np.concatenate((tones.silence(LEAD_S), np.zeros(offset, np.int16), sit))
    line = tones.from_ulaw(tones.ulaw(line))
    cut = (len(line) - len(sit) + round(at_ms * tones.RATE / 1000)) // FRAME * FRAME
    head, tail = line[:cut], line[cut:]
    if frames < 0:
        return np.concatenate((head[: frames * FRAME], tail))
    fade = np.linspace(0.9, 0.4, frames * FRAME)
    concealed = np.tile(head[-FRAME:], frames) * fade
    return np.concatenate((head, concealed.astype(np.int16), tail))


def assert_heard(code: SitCode, at_ms: float, frames: int) -> None:
    for offset in (0, 40, 80, 120):  # frame edges anywhere in the 10 ms blocks
        audio = through_jitter_buffer(code, at_ms, frames, offset)
        heard = listen(tones.announcement(audio), lead=0.0)
        assert heard is not None, (offset, frames)
        assert heard.code is code, (offset, heard.durations_ms)
        late = max(0, frames) * FRAME + offset
        assert heard.decided - LEAD_S <= 1.0 + late / tones.RATE + 0.2


@pytest.mark.parametrize("code", TELCORDIA)
@pytest.mark.parametrize("tone", [0, 1])
@pytest.mark.parametrize("frames", [-2, -1, 1, 2])
def test_each_code_survives_two_frames_concealed_or_dropped_in_a_tone(
    code: SitCode, tone: int, frames: int
) -> None:
    assert_heard(code, sum(lengths(code)[: tone + 1]), frames)


@pytest.mark.parametrize("code", [SitCode.REORDER, SitCode.NO_CIRCUIT])
@pytest.mark.parametrize("into_ms", [20, 60, 100, 140])
@pytest.mark.parametrize("frames", [1, 2, 3])
def test_concealment_early_in_the_third_tone_only_delays_the_verdict(
    code: SitCode, into_ms: int, frames: int
) -> None:
    """The third tone is taken after 160 ms: concealment there blurs its frequency."""
    assert_heard(code, sum(lengths(code)) + into_ms, frames)


def test_a_silent_frame_inside_a_tone_does_not_split_it() -> None:
    """A late packet not concealed (PLC off, or past its limit) leaves 20 ms of zeros."""
    audio = tones.telcordia(SitCode.REORDER).copy()
    audio[1200:1360] = 0
    heard = listen(audio)
    assert heard is not None
    assert heard.code is SitCode.REORDER


def test_the_bands_heard_are_kept_for_the_log_when_no_sit_is() -> None:
    """What a missed SIT is diagnosed by: each tone's frequency, length and time."""
    detector = SitDetector()
    audio = np.concatenate((tones.sit(tones.ITU_SIT, gap_ms=200.0), tones.silence(0.2)))
    for start in range(0, len(audio), 160):
        assert detector.feed(audio[start : start + 160], start / tones.RATE) is None
    assert [str(segment) for segment in detector.trail] == [
        "950 Hz 330 ms at 0.00 s (purity 1.00)",
        "1400 Hz 330 ms at 0.53 s (purity 1.00)",
        "1800 Hz 330 ms at 1.06 s (purity 1.00)",
    ]
