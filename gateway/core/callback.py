"""The call-back list: callers who spoke to nobody, and who is still owed a call.

The one definition of "missed" (``is_missed``) used by ``sip-failover calls
--missed``, the recovery alert mail and the daily digest. Pure: the call log
reads its rows and passes them in; times are aware datetimes.

- A call is *missed* when it ended and nobody spoke to the caller live: any
  result but ``answered`` (voicemail left, refused, no answer, failed, the
  caller hung up). A message is not a conversation: the voicemail id is kept
  so the message can be heard first. A call still in progress is not missed yet.
- A caller who got through live *later* is no longer owed a call back: their
  earlier misses are settled; a miss after their last answered call counts.
- One line per caller: every attempt's time, the last result, the voicemail
  ids; newest last attempt first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import date, datetime, tzinfo

ANSWERED = "answered"
WITHHELD_LABEL = "(withheld)"


def is_missed(result: str | None) -> bool:
    """Whether a call with this result left its caller owed a call back.

    ``None`` is a call still in progress: not missed yet.
    """
    return result is not None and result != ANSWERED


@dataclass(frozen=True, slots=True)
class CallerCall:
    """What the call-back list needs of one logged call."""

    caller: str  # "" when withheld
    started: datetime
    result: str | None
    voicemail_id: str | None = None


@dataclass(frozen=True, slots=True)
class MissedCaller:
    """A caller owed a call back: their missed calls, oldest first."""

    caller: str
    times: tuple[datetime, ...]
    last_result: str
    voicemail_ids: tuple[str, ...]

    @property
    def attempts(self) -> int:
        """How many times they tried."""
        return len(self.times)

    @property
    def first_attempt(self) -> datetime:
        """Their first missed call."""
        return self.times[0]

    @property
    def last_attempt(self) -> datetime:
        """Their last missed call."""
        return self.times[-1]


def callback_list(
    calls: Iterable[CallerCall],
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[MissedCaller]:
    """Callers owed a call back for misses in ``[since, until)`` (open ends: None).

    Args:
        calls: Logged calls, in any order. Answered calls after ``until``
            still settle earlier misses, so pass those too.
        since: First start time that counts.
        until: Start times from here on do not count as misses.

    Returns:
        One ``MissedCaller`` per caller, newest last attempt first.
    """
    owed: dict[str, list[CallerCall]] = {}
    for call in sorted(calls, key=lambda c: c.started):
        if call.result == ANSWERED and call.caller:  # withheld callers are not one person
            owed.pop(call.caller, None)
        elif is_missed(call.result) and _within(call.started, since, until):
            owed.setdefault(call.caller, []).append(call)
    missed = [_missed_caller(caller, misses) for caller, misses in owed.items()]
    return sorted(missed, key=lambda m: m.last_attempt, reverse=True)


def _within(at: datetime, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or at >= since) and (until is None or at < until)


def _missed_caller(caller: str, misses: list[CallerCall]) -> MissedCaller:
    return MissedCaller(
        caller=caller,
        times=tuple(m.started for m in misses),
        last_result=str(misses[-1].result),
        voicemail_ids=tuple(m.voicemail_id for m in misses if m.voicemail_id),
    )


def callback_lines(missed: Iterable[MissedCaller], tz: tzinfo, day: datetime) -> list[str]:
    """The call-back list for people: one line per caller.

    E.g. ``+32470000011  3 attempts  10:45, 10:50, 11:02  voicemail left``.

    Args:
        missed: Callers owed a call back, in the order to show them.
        tz: The rules' time zone, for every time shown.
        day: Times on this local day show as ``HH:MM``; others with their date.
    """
    today = day.astimezone(tz).date()
    rows = [(m.caller or WITHHELD_LABEL,
             f"{m.attempts} attempt{'s' if m.attempts > 1 else ''}",
             ", ".join(local_clock(t, tz, today) for t in m.times),
             "voicemail left" if m.voicemail_ids else f"no voicemail ({m.last_result})")
            for m in missed]  # fmt: skip
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(3)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3]])
        for row in rows
    ]


def local_clock(at: datetime, tz: tzinfo, today: date) -> str:
    """``at`` in ``tz`` as ``HH:MM`` on ``today``, else ``Mon 30 Nov 10:45``."""
    local = at.astimezone(tz)
    return f"{local:%H:%M}" if local.date() == today else f"{local:%a %d %b %H:%M}"
