"""Probe scheduling: intervals with jitter, opening hours, reloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import cycle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.probing import ProbeSchedule, ProbeScheduler

WALL = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
QUARTER = 900.0


def rand_of(*values: float):
    return cycle(values).__next__


def scheduler(schedules: dict[str, ProbeSchedule], *, rand=None, now: float = 0.0):
    s = ProbeScheduler(rand=rand or rand_of(0.5))
    s.reload(schedules, now)
    return s


def probe_times(s: ProbeScheduler, until: float, wall=lambda now: WALL) -> list[tuple[float, str]]:
    """Follow next_deadline like the adapter does; return (time, target) of each probe."""
    sent: list[tuple[float, str]] = []
    for _ in range(10_000):
        now = s.next_deadline()
        if now is None or now > until:
            return sent
        sent += [(now, name) for name in s.due(now, wall(now))]
    raise AssertionError("scheduler did not advance")


def test_no_targets_no_deadline():
    s = scheduler({})
    assert s.next_deadline() is None
    assert s.due(100.0, WALL) == []


def test_a_target_is_probed_every_interval_without_jitter():
    s = scheduler({"office-mobile": ProbeSchedule(every=QUARTER, jitter=0)}, now=50)
    times = [t for t, _ in probe_times(s, until=50 + 3 * QUARTER)]
    assert times == [50, 50 + QUARTER, 50 + 2 * QUARTER, 50 + 3 * QUARTER]


@given(st.floats(min_value=0, max_value=1, exclude_max=True), st.floats(0, 0.9))
def test_jittered_intervals_stay_within_bounds(draw, jitter):
    s = scheduler({"t": ProbeSchedule(every=QUARTER, jitter=jitter)}, rand=rand_of(draw))
    first = s.next_deadline()
    assert first is not None
    assert 0 <= first <= QUARTER * jitter
    s.due(first, WALL)
    interval = s.next_deadline() - first
    slack = 1e-9 * QUARTER  # next - first rounds: the bounds hold to the last bits
    assert QUARTER * (1 - jitter) - slack <= interval <= QUARTER * (1 + jitter) + slack


def test_jitter_spreads_targets_that_start_together():
    names = [f"t{i}" for i in range(4)]
    s = scheduler(
        {n: ProbeSchedule(every=QUARTER, jitter=0.2) for n in names},
        rand=rand_of(0.0, 0.3, 0.6, 0.9),
    )
    first = sorted(t for t, _ in probe_times(s, until=QUARTER * 0.2))
    assert first == pytest.approx([0.0, 54.0, 108.0, 162.0])


def test_due_hands_out_each_probe_once():
    s = scheduler({"a": ProbeSchedule(every=60, jitter=0), "b": ProbeSchedule(every=60, jitter=0)})
    assert s.due(0.0, WALL) == ["a", "b"]
    assert s.due(0.0, WALL) == []
    assert s.next_deadline() == 60


def test_only_holds_probes_until_the_schedule_opens():
    opens = WALL + timedelta(minutes=30)
    s = scheduler({"office-mobile": ProbeSchedule(QUARTER, jitter=0, only=lambda w: w >= opens)})
    sent = probe_times(s, until=3600, wall=lambda now: WALL + timedelta(seconds=now))
    assert sent[0] == (1800.0, "office-mobile")  # looked at each minute, probed on opening
    assert [t for t, _ in sent] == [1800.0, 2700.0, 3600.0]


def test_a_closed_target_is_rechecked_not_spun_on():
    s = scheduler({"t": ProbeSchedule(QUARTER, jitter=0, only=lambda _: False)})
    assert s.due(0.0, WALL) == []
    assert s.next_deadline() == 60


def test_a_probe_outside_the_schedule_restarts_the_interval():
    s = scheduler({"t": ProbeSchedule(every=QUARTER, jitter=0)})
    s.due(0.0, WALL)
    s.record_probe("t", 400.0)
    assert s.next_deadline() == 400 + QUARTER
    s.record_probe("gone", 500.0)
    assert s.next_deadline() == 400 + QUARTER


def test_reload_keeps_remaining_targets_and_spreads_new_ones():
    s = scheduler({"a": ProbeSchedule(QUARTER, jitter=0), "b": ProbeSchedule(QUARTER, jitter=0)})
    s.due(0.0, WALL)
    s.reload({"a": ProbeSchedule(QUARTER, jitter=0), "c": ProbeSchedule(600, jitter=0.5)}, 100.0)
    sent = probe_times(s, until=QUARTER)
    # c: first within 600 * 0.5 of the reload, then every 600 s; b: gone; a: unchanged
    assert sent == [(250.0, "c"), (850.0, "c"), (QUARTER, "a")]


def test_a_shorter_every_on_reload_takes_effect_at_once():
    s = scheduler({"a": ProbeSchedule(3600, jitter=0)})
    s.due(0.0, WALL)
    s.reload({"a": ProbeSchedule(60, jitter=0)}, 10.0)
    assert s.next_deadline() == 70


@pytest.mark.parametrize(("every", "jitter"), [(0, 0.1), (60, 1.0), (60, -0.1)])
def test_impossible_schedules_are_refused(every, jitter):
    with pytest.raises(ValueError, match="every"):
        ProbeSchedule(every=every, jitter=jitter)
