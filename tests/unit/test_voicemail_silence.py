"""When the caller has stopped talking: levels and times passed in, no clock."""

from __future__ import annotations

from gateway.voicemail.silence import QUIET_LEVEL, SilenceDetector

SPEECH = 25
TICK = 0.25  # exact in binary: times compare without rounding


def feed(detector: SilenceDetector, levels: list[int], start: float = 0.0) -> list[float]:
    """Feed one level per tick; the times at which silence was reported."""
    times = [start + i * TICK for i in range(len(levels))]
    return [now for now, level in zip(times, levels, strict=True) if detector.feed(level, now)]


def test_quiet_for_the_whole_span_ends_the_message() -> None:
    said = feed(SilenceDetector(1.0), [SPEECH] * 4 + [0] * 5)
    assert said == [2.0]  # quiet from 1.0 s, for a whole second


def test_pauses_between_words_do_not_end_the_message() -> None:
    words = ([SPEECH] * 2 + [QUIET_LEVEL] * 3) * 6  # 0.75 s pauses, never a full second
    assert feed(SilenceDetector(1.0), words) == []


def test_speech_restarts_the_count() -> None:
    assert feed(SilenceDetector(0.5), [0, 0, SPEECH, 0, 0, 0]) == [1.25]


def test_line_noise_at_the_threshold_is_quiet_and_above_it_is_not() -> None:
    assert feed(SilenceDetector(0.5), [QUIET_LEVEL] * 3) == [0.5]
    assert feed(SilenceDetector(0.5), [QUIET_LEVEL + 1] * 10) == []


def test_a_caller_who_never_speaks_is_silent_from_the_start() -> None:
    assert feed(SilenceDetector(2.0), [0] * 9, start=100.0) == [102.0]
