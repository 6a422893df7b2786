"""What a person is told about health changes, and when.

MQTT gets every change at once; a person gets one alert per target for the net
change, once the target has been quiet a while (``AlertCoalescer``). A
recovery says who called during the outage and reached nobody: the adapter
reads those callers from the call log and passes them in (``outage``,
``recovery_details``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from gateway.core.callback import callback_lines, local_clock
from gateway.core.health import DEAD, HealthChange, HealthState

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import tzinfo

    from gateway.core.callback import MissedCaller


@dataclass(slots=True)
class _Pending:
    first: HealthChange
    latest: HealthChange
    first_at: float
    last_at: float


def _is_news(change: HealthChange) -> bool:
    # A fresh start finding a target up, or a reset to unknown, tells a person
    # nothing; a flap that ended where it began is no change at all.
    if change.state is change.previous or change.state is HealthState.UNKNOWN:
        return False
    return not (change.previous is HealthState.UNKNOWN and change.state is HealthState.UP)


class AlertCoalescer:
    """Turns bursts of health changes into one alert per target.

    An alert for a target is due ``window`` seconds after its last change, or
    ``max_delay`` seconds after its first pending change if it keeps changing.
    The alert is the net change (state before the first, state after the last):
    up, down, up inside one window sends nothing. Times are monotonic seconds.
    """

    def __init__(self, window: float = 120.0, max_delay: float | None = None) -> None:
        """Seconds of quiet and longest delay (default 5 windows); ValueError if <0 or <window."""
        self.window = window
        self.max_delay = 5 * window if max_delay is None else max_delay
        if window < 0 or self.max_delay < window:
            raise ValueError("need 0 <= window <= max_delay")
        self._pending: dict[str, _Pending] = {}

    def push(self, change: HealthChange, now: float) -> None:
        """Queue a change seen at monotonic time ``now``."""
        pending = self._pending.get(change.target)
        if pending is None:
            self._pending[change.target] = _Pending(change, change, now, now)
        else:
            pending.latest, pending.last_at = change, now

    def forget(self, target: str) -> None:
        """Drop what is pending for a target removed from the rules."""
        self._pending.pop(target, None)

    def next_deadline(self) -> float | None:
        """When the next alert is due (monotonic), or None when nothing is pending."""
        return min((self._deadline(p) for p in self._pending.values()), default=None)

    def due(self, now: float) -> list[HealthChange]:
        """Take the alerts due at ``now``: net changes, in target-name order."""
        ready = sorted(t for t, p in self._pending.items() if self._deadline(p) <= now)
        alerts = [self._net(self._pending.pop(t)) for t in ready]
        return [a for a in alerts if _is_news(a)]

    def _deadline(self, pending: _Pending) -> float:
        return min(pending.last_at + self.window, pending.first_at + self.max_delay)

    @staticmethod
    def _net(pending: _Pending) -> HealthChange:
        net = replace(pending.latest, previous=pending.first.previous, outage_since=None)
        if net.state is not HealthState.UP or net.previous not in DEAD:
            return net
        # Up, down, up in one window: the outage began with the first one.
        outage = pending.first.outage_since or pending.latest.outage_since
        return replace(net, outage_since=outage)


_VERBS = {HealthState.UNASSIGNED: "answers UNASSIGNED"}  # else "is <STATE>"


def alert_text(
    change: HealthChange,
    *,
    label: str = "",
    calls_go_to: str | None = None,
    tz: tzinfo | None = None,
) -> str:
    """One line for a person about a (net) change.

    E.g. "Main line office-mobile (+32470000001) answers UNASSIGNED since 10:42
    — calls go to anna": ``label`` first if given, ``calls_go_to`` as the caller
    words it, the time in ``tz`` (the rules' timezone; as stamped if None).
    """
    who = f"{label} {change.target}" if label else change.target
    verb = _VERBS.get(change.state, f"is {change.state.value.upper()}")
    if change.state is HealthState.UP and change.previous in DEAD:
        verb += " again"
    since = change.since if tz is None else change.since.astimezone(tz)
    text = f"{who} ({change.address}) {verb} since {since:%H:%M}"
    return f"{text} \N{EM DASH} calls go to {calls_go_to}" if calls_go_to else text


# --- the call-back list in alert mails ---------------------------------------------


def outage_of(change: HealthChange) -> tuple[datetime, datetime] | None:
    """The outage a recovery ends, ``(went dead, came back)``; None for other changes."""
    if change.state is HealthState.UP and change.previous in DEAD and change.outage_since:
        return change.outage_since, change.since
    return None


def recovery_details(change: HealthChange, missed: Sequence[MissedCaller], tz: tzinfo) -> str:
    """What a recovery mail adds: who called during the outage and reached nobody.

    Args:
        change: A recovery (``outage_of(change)`` is not None).
        missed: The call-back list of the outage, as the call log gives it.
        tz: The rules' time zone.

    Raises:
        ValueError: ``change`` is not a recovery.
    """
    outage = outage_of(change)
    if outage is None:
        raise ValueError(f"{change.target} {change.previous} -> {change.state} is no recovery")
    start, end = outage
    today = end.astimezone(tz).date()
    span = f"{local_clock(start, tz, today)} to {local_clock(end, tz, today)}"
    while_down = f"while {change.target} was {change.previous.value.upper()} ({span})"
    if not missed:
        return f"No caller was left without an answer {while_down}."
    head = f"{len(missed)} caller{'s' if len(missed) > 1 else ''} reached nobody {while_down}:"
    lines = callback_lines(missed, tz, end)
    return "\n".join([head, *(f"  {line}" for line in lines), "", _CALL_BACK_HINT])


_CALL_BACK_HINT = "Call them back; sip-failover calls --missed lists every caller still owed one."


# --- the daily digest ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    """When the daily call-back list is mailed (rules: ``alerts.digest``).

    Wall time in the rules' time zone, correct across DST: on a day when the
    time does not exist (clocks go forward) the digest goes out at the same
    UTC offset as before the change, an hour later on the clock; when it
    happens twice (clocks go back), at the first. A digest not sent at its
    time (the gateway was stopped) goes out as soon as it runs that day. The
    digest of day D covers the calls since the digest time of the day before.
    """

    at: time
    zone: tzinfo

    def moment(self, day: date) -> datetime:
        """The digest time on local ``day``, in UTC.

        In UTC because Python compares and subtracts two datetimes of the same
        tzinfo by their wall clocks, which is wrong across a DST change.
        """
        return datetime.combine(day, self.at, tzinfo=self.zone).astimezone(UTC)

    def due(self, now: datetime, last_sent: date | None) -> date | None:
        """The local day whose digest is due at ``now``, or None."""
        today = now.astimezone(self.zone).date()
        if (last_sent is not None and last_sent >= today) or now < self.moment(today):
            return None
        return today

    def next_deadline(self, now: datetime, last_sent: date | None) -> datetime:
        """When ``due`` next returns a day (``now`` if it does already)."""
        if self.due(now, last_sent) is not None:
            return now
        today = now.astimezone(self.zone).date()
        sent_today = last_sent is not None and last_sent >= today
        return self.moment(today + timedelta(days=1) if sent_today else today)

    def window(self, day: date) -> tuple[datetime, datetime]:
        """The calls ``day``'s digest covers: ``[previous digest time, digest time)``."""
        return self.moment(day - timedelta(days=1)), self.moment(day)


def digest_subject(day: date, missed: Sequence[MissedCaller]) -> str:
    """The digest mail's subject line, e.g. "3 callers to call back (Mon 30 Nov)"."""
    count = f"{len(missed)} caller{'s' if len(missed) > 1 else ''}"
    return f"{count} to call back ({day:%a %d %b})"


def digest_details(day: date, missed: Sequence[MissedCaller], schedule: DigestSchedule) -> str:
    """The digest mail's body: the call-back list of ``day``, times in its zone."""
    start, end = (t.astimezone(schedule.zone) for t in schedule.window(day))
    head = (f"Callers who reached nobody from {start:%a %d %b %H:%M} to {end:%a %d %b %H:%M}"
            " and have not got through since:")  # fmt: skip
    lines = callback_lines(missed, schedule.zone, end)
    return "\n".join([head, *(f"  {line}" for line in lines), "", _CALL_BACK_HINT])
