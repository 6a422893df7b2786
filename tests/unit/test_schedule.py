"""Opening hours: wall-clock ranges across DST changes and midnight, closed dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.schedule import (
    DAYS,
    Schedule,
    ScheduleError,
    TimeRange,
    day_numbers,
    describe_schedule,
    is_open,
    parse_schedule,
)

BRUSSELS = ZoneInfo("Europe/Brussels")
ZONES = [BRUSSELS, ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe"), ZoneInfo("UTC")]
# The instants around which these zones change their clocks in 2026.
DST_CHANGES = [
    datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # Brussels 02:00 -> 03:00
    datetime(2026, 10, 25, 1, 0, tzinfo=UTC),  # Brussels 03:00 -> 02:00
    datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # New York 02:00 -> 03:00
    datetime(2026, 11, 1, 6, 0, tzinfo=UTC),  # New York 02:00 -> 01:00
    datetime(2026, 4, 4, 15, 0, tzinfo=UTC),  # Lord Howe: half an hour back
]


def week(text: str, **more: object) -> Schedule:
    return parse_schedule({"mon-sun": text, **more})


def minutes_open(schedule: Schedule, day: date, zone: ZoneInfo) -> int:
    """Real minutes the schedule is open during ``day`` (local), stepping in real time."""
    start = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
    end = (datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(days=1)).astimezone(UTC)
    count, at = 0, start
    while at < end:
        count += is_open(schedule, at, zone)
        at += timedelta(minutes=1)
    return count


# --- reading what the admin wrote -------------------------------------------------------


def test_day_keys_single_ranges_lists_and_wrapping() -> None:
    assert day_numbers("sun") == [6]
    assert day_numbers("mon-fri") == [0, 1, 2, 3, 4]
    assert day_numbers("fri-mon") == [4, 5, 6, 0]
    assert day_numbers("mon, wed") == [0, 2]


def test_hours_split_by_a_lunch_break() -> None:
    schedule = parse_schedule({"mon-fri": "08:30-12:00, 13:30-18:00", "sat": "closed"})
    assert schedule.days[0] == (TimeRange(30600, 43200), TimeRange(48600, 64800))
    assert schedule.days[5] == schedule.days[6] == ()
    assert describe_schedule(schedule) == "mon-fri 08:30-12:00, 13:30-18:00"


@pytest.mark.parametrize(
    ("value", "key", "words"),
    [
        ({"mon-fry": "08:00-12:00"}, ("mon-fry",), "unknown day 'mon-fry'"),
        ({"mon": "8h-12h"}, ("mon",), "invalid hours '8h-12h'"),
        ({"mon": "24:00-02:00"}, ("mon",), "24:00 only ends a range"),
        ({"mon": "09:00-09:00"}, ("mon",), "is empty"),
        ({"mon-fri": "09:00-12:00", "fri": "closed"}, ("fri",), "fri is already given"),
        ({"closed": ["2026-02-30"]}, ("closed", 0), "invalid date"),
        ({"closed": ["2026-12-26..2026-12-24"]}, ("closed", 0), "ends before it starts"),
        ({"mon": 9}, ("mon",), "expected hours"),
    ],
)
def test_mistakes_name_the_key(value: dict[str, object], key: tuple[object], words: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(value)
    assert caught.value.key == key
    assert words in str(caught.value)


# --- when it is open -----------------------------------------------------------------------


def test_lunch_break_and_closed_dates_in_brussels() -> None:
    schedule = parse_schedule(
        {
            "mon-fri": "08:30-12:00, 13:30-18:00",
            "closed": [date(2026, 12, 25), "2026-12-28..2026-12-31"],
        }
    )
    local = lambda *a: datetime(*a, tzinfo=BRUSSELS)  # noqa: E731
    assert is_open(schedule, local(2026, 5, 4, 8, 30), BRUSSELS)
    assert not is_open(schedule, local(2026, 5, 4, 8, 29, 59), BRUSSELS)
    assert not is_open(schedule, local(2026, 5, 4, 12, 0), BRUSSELS)
    assert is_open(schedule, local(2026, 5, 4, 13, 30), BRUSSELS)
    assert not is_open(schedule, local(2026, 5, 9, 10, 0), BRUSSELS)  # Saturday
    assert not is_open(schedule, local(2026, 12, 25, 10, 0), BRUSSELS)  # Friday, closed
    assert not is_open(schedule, local(2026, 12, 30, 10, 0), BRUSSELS)
    assert is_open(schedule, local(2027, 1, 4, 10, 0), BRUSSELS)
    # The same instant written in UTC: 07:00 UTC is 09:00 in Brussels in summer.
    assert is_open(schedule, datetime(2026, 5, 4, 7, 0, tzinfo=UTC), BRUSSELS)


def test_a_night_range_runs_past_midnight_into_an_unlisted_day() -> None:
    schedule = parse_schedule({"fri": "22:00-06:00", "closed": "2026-05-10"})
    assert is_open(schedule, datetime(2026, 5, 8, 23, 0, tzinfo=BRUSSELS), BRUSSELS)
    assert is_open(schedule, datetime(2026, 5, 9, 5, 59, tzinfo=BRUSSELS), BRUSSELS)
    assert not is_open(schedule, datetime(2026, 5, 9, 6, 0, tzinfo=BRUSSELS), BRUSSELS)
    assert not is_open(schedule, datetime(2026, 5, 8, 21, 59, tzinfo=BRUSSELS), BRUSSELS)


def test_dst_days_are_shorter_or_longer_in_real_time() -> None:
    night = week("01:00-04:00")
    assert minutes_open(night, date(2026, 3, 29), BRUSSELS) == 120  # 02:00-03:00 never happens
    assert minutes_open(night, date(2026, 10, 25), BRUSSELS) == 240  # 02:00-03:00 happens twice
    assert minutes_open(night, date(2026, 5, 3), BRUSSELS) == 180
    office = week("08:30-18:00")
    assert minutes_open(office, date(2026, 3, 29), BRUSSELS) == 570  # far from the change


def test_a_boundary_in_the_skipped_hour_takes_effect_when_clocks_jump() -> None:
    schedule = week("02:30-04:00")
    jump = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 02:00 CET becomes 03:00 CEST
    assert not is_open(schedule, jump - timedelta(seconds=1), BRUSSELS)
    assert is_open(schedule, jump, BRUSSELS)


def test_in_the_repeated_hour_a_range_is_open_both_times() -> None:
    schedule = week("01:00-02:30")
    first_0215 = datetime(2026, 10, 25, 0, 15, tzinfo=UTC)  # 02:15 CEST
    second_0215 = datetime(2026, 10, 25, 1, 15, tzinfo=UTC)  # 02:15 CET
    first_0245 = datetime(2026, 10, 25, 0, 45, tzinfo=UTC)
    assert is_open(schedule, first_0215, BRUSSELS)
    assert not is_open(schedule, first_0245, BRUSSELS)
    assert is_open(schedule, second_0215, BRUSSELS)


# --- properties against a brute-force reference ---------------------------------------------

time_of_day = st.integers(0, 24 * 60 - 1).map(lambda m: m * 60)
ranges = st.tuples(time_of_day, time_of_day).filter(lambda r: r[0] != r[1])
day_hours = st.lists(ranges, max_size=3)
instants = st.one_of(
    st.sampled_from(DST_CHANGES).flatmap(
        lambda c: st.integers(-36 * 3600, 36 * 3600).map(lambda s: c + timedelta(seconds=s))
    ),
    # hypothesis takes naive bounds and adds the zone itself
    st.datetimes(datetime(2025, 1, 1), datetime(2028, 12, 31), timezones=st.just(UTC)),  # noqa: DTZ001
)


def reference_open(days: list[list[tuple[int, int]]], at: datetime, zone: ZoneInfo) -> bool:
    """Minute-set reference: which (weekday, second) pairs each written range covers."""
    local = at.astimezone(zone)
    second = local.hour * 3600 + local.minute * 60 + local.second
    weekday = local.weekday()
    for day, hours in enumerate(days):
        for start, end in hours:
            covered = (
                [(day, start, end)]
                if start < end
                else [(day, start, 86400), ((day + 1) % 7, 0, end)]
            )
            if any(d == weekday and a <= second < b for d, a, b in covered):
                return True
    return False


def text(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


@settings(max_examples=300, deadline=None)
@given(st.lists(day_hours, min_size=7, max_size=7), instants, st.sampled_from(ZONES))
def test_open_matches_the_reference_around_dst_and_midnight(
    days: list[list[tuple[int, int]]], at: datetime, zone: ZoneInfo
) -> None:
    written = {
        DAYS[d]: ", ".join(f"{text(a)}-{text(b)}" for a, b in hours) or "closed"
        for d, hours in enumerate(days)
    }
    assert is_open(parse_schedule(written), at, zone) == reference_open(days, at, zone)


@settings(max_examples=200, deadline=None)
@given(day_hours, instants, st.sampled_from(ZONES), st.integers(-3, 3))
def test_a_closed_day_is_closed_whatever_the_hours(
    hours: list[tuple[int, int]], at: datetime, zone: ZoneInfo, shift: int
) -> None:
    local_day = at.astimezone(zone).date()
    around = local_day + timedelta(days=shift)
    written = ", ".join(f"{text(a)}-{text(b)}" for a, b in hours) or "closed"
    schedule = week(written, closed=[f"{min(local_day, around)}..{max(local_day, around)}"])
    assert not is_open(schedule, at, zone)


@settings(max_examples=200, deadline=None)
@given(ranges, instants, st.sampled_from(ZONES))
def test_open_depends_only_on_the_local_wall_clock(
    hours: tuple[int, int], at: datetime, zone: ZoneInfo
) -> None:
    schedule = week(f"{text(hours[0])}-{text(hours[1])}")
    local = at.astimezone(zone)
    # Another instant a whole number of weeks away with the same wall-clock reading.
    later = (local.replace(tzinfo=None) + timedelta(weeks=5)).replace(tzinfo=zone, fold=local.fold)
    if later.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == later.replace(tzinfo=None):
        assert is_open(schedule, later, zone) == is_open(schedule, at, zone)
