"""Opening hours: named weekly schedules with closed dates, evaluated at a given time.

A schedule is written in the rules file as a mapping of day keys to time ranges::

    office-hours:
      mon-fri: "08:30-12:00, 13:30-18:00"
      sat: "09:00-12:00"
      closed: [2026-12-25, "2026-12-24..2026-12-26"]

Pure: ``is_open(schedule, at, zone)`` takes the time as an argument.

Time is wall-clock time in the rules' time zone: ``at`` (an aware datetime) is
converted to local time and compared with the ranges as written. Across a DST
change this means (deliberately, and documented in docs/rules.md):

- a range boundary in the skipped hour (spring forward, 02:00-03:00 in Europe)
  takes effect when the clocks jump: "02:30-04:00" opens at 03:00;
- in the repeated hour (fall back) every local time happens twice, and a time
  inside a range is inside it both times: "01:00-02:30" is open from 01:00 to
  the first 02:30, closed during the rest of the first pass through 02:xx, and
  open again from the second 02:00 to the second 02:30.

A range whose end is before its start ("22:00-06:00") runs past midnight into
the next day. A closed date closes the whole local calendar day, including the
tail of a range that started the evening before.

``holidays: BE`` (or ``DE-BY``: a country and one of its subdivisions) closes
that country's public holidays like closed dates, every year, Easter-based ones
included, from the ``holidays`` package (data only, no I/O of ours).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import ModuleType
    from zoneinfo import ZoneInfo

    import holidays

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SECONDS = 24 * 3600
_TIME = r"([01]?\d|2[0-4]):([0-5]\d)"
_RANGE = re.compile(rf"\s*{_TIME}\s*-\s*{_TIME}\s*")
_DATE_RANGE = re.compile(r"\s*(\d{4}-\d\d-\d\d)\s*(?:\.\.\s*(\d{4}-\d\d-\d\d)\s*)?")
_HOLIDAY_CODE = re.compile(r"\s*([A-Za-z]{2})(?:-([\w -]+?))?\s*")
_HOLIDAY_LANGUAGE = "en_US"  # holiday names in English where the data has them


class ScheduleError(ValueError):
    """A schedule is written wrong; ``key`` is the day key (or ``closed``) at fault."""

    def __init__(self, message: str, *key: str | int) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class TimeRange:
    """From ``start`` to ``end``, seconds after local midnight.

    ``end`` may be 86400 (24:00); ``end < start`` runs past midnight.
    """

    start: int
    end: int

    @property
    def wraps(self) -> bool:
        return self.end <= self.start

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """Weekly opening hours (``days[0]`` is Monday) and closed date ranges."""

    days: tuple[tuple[TimeRange, ...], ...]
    closed: tuple[tuple[date, date], ...] = ()
    holidays: str | None = None  # "BE", "DE-BY": closed on that region's public holidays

    def is_closed_on(self, day: date) -> bool:
        """Whether ``day`` is one of the closed dates or a public holiday."""
        return why_closed(self, day) is not None


def why_closed(schedule: Schedule, day: date) -> str | None:
    """Why ``schedule`` is closed all ``day``, in words; None: it is not.

    ``closed 2026-12-24..2026-12-26`` for a typed date, ``Easter Monday, BE
    public holiday`` for a holiday.
    """
    for first, last in schedule.closed:
        if first <= day <= last:
            return f"closed {first}" if first == last else f"closed {first}..{last}"
    if schedule.holidays is None:
        return None
    name = _calendar(schedule.holidays).get(day)
    return None if name is None else f"{name}, {schedule.holidays} public holiday"


def holiday_dates(schedule: Schedule, year: int) -> list[date]:
    """The public holidays ``schedule`` closes in ``year``."""
    if schedule.holidays is None:
        return []
    calendar = _calendar(schedule.holidays)
    calendar.get(date(year, 1, 1))  # fills in the year
    return sorted(day for day in calendar if day.year == year)


@functools.lru_cache(maxsize=64)
def _calendar(code: str) -> holidays.HolidayBase:
    package = _holidays()
    country, _, subdivision = code.partition("-")
    calendar: holidays.HolidayBase = package.country_holidays(country, subdiv=subdivision or None)
    if _HOLIDAY_LANGUAGE in calendar.supported_languages:
        calendar = package.country_holidays(
            country, subdiv=subdivision or None, language=_HOLIDAY_LANGUAGE
        )
    return calendar


def _holidays() -> ModuleType:
    """The ``holidays`` package, imported when a schedule names a region.

    Its calendars cost the process about 6 MB; most gateways' rules name none.
    """
    import holidays  # noqa: PLC0415 - see above

    return holidays


def is_open(schedule: Schedule, at: datetime, zone: ZoneInfo) -> bool:
    """Whether ``schedule`` is open at the instant ``at`` (aware) in ``zone``."""
    local = at.astimezone(zone)
    if schedule.is_closed_on(local.date()):
        return False
    second = local.hour * 3600 + local.minute * 60 + local.second
    today = schedule.days[local.weekday()]
    yesterday = schedule.days[(local.weekday() - 1) % 7]
    if any(r.start <= second < (DAY_SECONDS if r.wraps else r.end) for r in today):
        return True
    return any(r.wraps and second < r.end for r in yesterday)


# --- parsing ---------------------------------------------------------------------------


def parse_schedule(value: object) -> Schedule:
    """A schedule from its YAML mapping (day keys and ``closed``).

    Raises:
        ScheduleError: with the key at fault.
    """
    if not isinstance(value, dict):
        raise ScheduleError("expected a mapping of days (mon-fri, sat...) to hours")
    days: list[tuple[TimeRange, ...] | None] = [None] * 7
    closed: tuple[tuple[date, date], ...] = ()
    region = None
    for key, hours in value.items():
        if key == "closed":
            closed = _closed_dates(hours)
            continue
        if key == "holidays":
            region = holiday_region(hours)
            continue
        ranges = _time_ranges(hours, str(key))
        for day in day_numbers(key):
            if days[day] is not None:
                raise ScheduleError(f"{DAYS[day]} is already given by another key", key)
            days[day] = ranges
    return Schedule(tuple(d or () for d in days), closed, region)


def holiday_region(value: object) -> str:
    """``BE``, ``de-by`` -> the region whose holidays close a schedule (``DE-BY``).

    Raises:
        ScheduleError: not a code, or no holidays known for it.
    """
    match = _HOLIDAY_CODE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ScheduleError(f"expected a country code like BE or DE-BY, got {value!r}", "holidays")
    country, subdivision = match.group(1).upper(), match.group(2)
    known = _holidays().list_supported_countries(include_aliases=False)
    if country not in known:
        raise ScheduleError(
            f"unknown country '{country}' (holidays are known for ISO 3166 codes like BE, DE, FR)",
            "holidays",
        )
    if subdivision is None:
        return country
    found = [s for s in known[country] if s.lower() == subdivision.lower()]
    if not found:
        listed = ", ".join(known[country]) or "none"
        raise ScheduleError(
            f"unknown subdivision '{subdivision}' of {country} (known: {listed})", "holidays"
        )
    return f"{country}-{found[0]}"


def day_numbers(key: object) -> list[int]:
    """``mon-fri`` -> [0..4]; ``fri-mon`` wraps; ``mon,wed`` lists; ``sun`` -> [6].

    Raises:
        ScheduleError: not a day key.
    """
    text = str(key).strip().lower()
    numbers: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        if first not in DAYS or (last and last not in DAYS):
            expected = "mon, tue, wed, thu, fri, sat, sun, a range like mon-fri, or closed"
            raise ScheduleError(f"unknown day '{key}' (expected {expected})", str(key))
        start, end = DAYS.index(first), DAYS.index(last or first)
        numbers += [(start + i) % 7 for i in range((end - start) % 7 + 1)]
    return numbers


def _time_ranges(hours: object, key: str) -> tuple[TimeRange, ...]:
    if isinstance(hours, str) and hours.strip().lower() == "closed":
        return ()
    if not isinstance(hours, str):
        raise ScheduleError(
            f'expected hours like "08:30-12:00, 13:30-18:00" or closed, got {hours!r}', key
        )
    return tuple(_time_range(part, key) for part in hours.split(","))


def _time_range(text: str, key: str) -> TimeRange:
    match = _RANGE.fullmatch(text)
    if match is None:
        raise ScheduleError(f"invalid hours '{text.strip()}' (expected HH:MM-HH:MM)", key)
    start_h, start_m, end_h, end_m = map(int, match.groups())
    start, end = start_h * 3600 + start_m * 60, end_h * 3600 + end_m * 60
    if start >= DAY_SECONDS or end > DAY_SECONDS:
        raise ScheduleError(f"invalid hours '{text.strip()}' (24:00 only ends a range)", key)
    if start == end:
        raise ScheduleError(f"'{text.strip()}' is empty: use 00:00-24:00 for all day", key)
    return TimeRange(start, end)


def _closed_dates(value: object) -> tuple[tuple[date, date], ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(_date_range(item, index) for index, item in enumerate(items))


def _date_range(item: object, index: int) -> tuple[date, date]:
    if isinstance(item, date) and not isinstance(item, datetime):
        return item, item
    dates = _iso_dates(item)
    if dates is None:
        raise ScheduleError(
            f"invalid date {item!r} (expected 2026-12-25 or 2026-12-24..2026-12-26)",
            "closed",
            index,
        )
    if dates[1] < dates[0]:
        raise ScheduleError(f"'{item}' ends before it starts", "closed", index)
    return dates


def _iso_dates(item: object) -> tuple[date, date] | None:
    match = _DATE_RANGE.fullmatch(item) if isinstance(item, str) else None
    if match is None:
        return None
    first, last = match.group(1), match.group(2) or match.group(1)
    try:
        return date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        return None


def _hhmm(second: int) -> str:
    return f"{second // 3600:02d}:{second % 3600 // 60:02d}"


def describe_schedule(schedule: Schedule) -> str:
    """``mon-fri 08:30-12:00, 13:30-18:00; sat 09:00-12:00; closed 2026-12-25``."""
    parts: list[str] = []
    day = 0
    while day < len(DAYS):
        last = day
        while last + 1 < len(DAYS) and schedule.days[last + 1] == schedule.days[day]:
            last += 1
        if schedule.days[day]:
            days = DAYS[day] if last == day else f"{DAYS[day]}-{DAYS[last]}"
            parts.append(f"{days} {', '.join(map(str, schedule.days[day]))}")
        day = last + 1
    parts += [f"closed {a}" if a == b else f"closed {a}..{b}" for a, b in schedule.closed]
    if schedule.holidays is not None:
        parts.append(f"closed on {schedule.holidays} public holidays")
    return "; ".join(parts) or "never open"


def sample_times(start: datetime, schedules: Iterable[Schedule], step: timedelta) -> list[datetime]:
    """Times ``step`` apart through the week from ``start`` and through every closed day.

    Closed days are the typed ones and the public holidays of ``start``'s year.
    ``check`` asks every route at these times to find routes that never match.
    """
    days = [start + timedelta(days=d) for d in range(7)]
    for schedule in schedules:
        closed = [first for first, _ in schedule.closed] + holiday_dates(schedule, start.year)
        days += [start.replace(year=a.year, month=a.month, day=a.day) for a in closed]
    per_day = int(timedelta(days=1) / step)
    return [day + step * i for day in days for i in range(per_day)]
