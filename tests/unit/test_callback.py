"""The call-back list, the recovery mail's list of callers and the daily digest (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.core.alerts import (
    AlertCoalescer,
    DigestSchedule,
    digest_details,
    digest_subject,
    outage_of,
    recovery_details,
)
from gateway.core.callback import CallerCall, callback_list, is_missed
from gateway.core.health import HealthChange, HealthState

BRUSSELS = ZoneInfo("Europe/Brussels")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 10:00 in Brussels
UP, DOWN, UNASSIGNED = HealthState.UP, HealthState.DOWN, HealthState.UNASSIGNED


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def call(caller: str, minute: float, result: str | None, box: str | None = None) -> CallerCall:
    return CallerCall(caller, at(minute), result, box)


@pytest.mark.parametrize(
    ("result", "missed"),
    [("answered", False), (None, False), ("voicemail", True), ("refused", True),
     ("failed", True), ("abandoned", True), ("no_answer", True)],
)  # fmt: skip
def test_missed_is_every_ended_call_nobody_answered(result: str | None, missed: bool) -> None:
    assert is_missed(result) is missed


def test_one_line_per_caller_with_every_attempt_newest_first() -> None:
    listed = callback_list([
        call("+32470000011", 5, "failed"),
        call("+32470000022", 1, "voicemail", "vm-1"),
        call("+32470000011", 9, "abandoned"),
        call("+32470000033", 3, "answered"),
        call("+32470000044", 4, None),  # still ringing
    ])  # fmt: skip
    assert [(m.caller, m.attempts, m.last_result) for m in listed] == [
        ("+32470000011", 2, "abandoned"),
        ("+32470000022", 1, "voicemail"),
    ]
    assert listed[0].times == (at(5), at(9))
    assert listed[1].voicemail_ids == ("vm-1",)


def test_a_caller_who_got_through_later_is_settled_but_not_a_later_miss() -> None:
    calls = [call("+32470000011", 1, "failed"), call("+32470000011", 2, "answered"),
             call("+32470000022", 1, "failed"), call("+32470000022", 2, "answered"),
             call("+32470000022", 3, "refused")]  # fmt: skip
    assert [(m.caller, m.times) for m in callback_list(calls)] == [("+32470000022", (at(3),))]


def test_withheld_callers_are_not_settled_by_one_another() -> None:
    calls = [call("", 1, "failed"), call("", 2, "answered")]
    assert [m.attempts for m in callback_list(calls)] == [1]


def test_the_window_bounds_the_misses_and_a_later_answer_still_settles() -> None:
    calls = [call("+32470000011", 1, "failed"), call("+32470000022", 5, "failed"),
             call("+32470000033", 6, "failed"), call("+32470000033", 20, "answered"),
             call("+32470000044", 10, "failed")]  # fmt: skip
    listed = callback_list(calls, since=at(2), until=at(10))
    assert [m.caller for m in listed] == ["+32470000022"]


def recovery(outage_minute: float = 0, back_minute: float = 42) -> HealthChange:
    return HealthChange("office-mobile", "+32470000001", UNASSIGNED, UP, at(back_minute), None,
                        outage_since=at(outage_minute))  # fmt: skip


def test_the_recovery_mail_lists_callers_times_attempts_and_voicemail_in_the_rules_zone() -> None:
    missed = callback_list([call("+32470000011", 5, "failed"), call("+32470000011", 12, "refused"),
                            call("+32470000022", 20, "voicemail", "vm-1")])  # fmt: skip
    text = recovery_details(recovery(), missed, BRUSSELS)
    assert text.splitlines()[:3] == [
        "2 callers reached nobody while office-mobile was UNASSIGNED (10:00 to 10:42):",
        "  +32470000022  1 attempt   10:20         voicemail left",
        "  +32470000011  2 attempts  10:05, 10:12  no voicemail (refused)",
    ]


def test_a_recovery_with_nobody_missed_says_so_and_an_outage_across_midnight_has_dates() -> None:
    text = recovery_details(recovery(outage_minute=-660), [], BRUSSELS)
    assert text == (
        "No caller was left without an answer while office-mobile was UNASSIGNED"
        " (Sun 01 Mar 23:00 to 10:42)."
    )


def test_only_a_recovery_has_an_outage() -> None:
    lost = HealthChange("office-mobile", "+32470000001", UP, DOWN, at(0), None)
    assert outage_of(lost) is None
    assert outage_of(recovery()) == (at(0), at(42))
    with pytest.raises(ValueError, match="no recovery"):
        recovery_details(lost, [], BRUSSELS)


def test_a_coalesced_recovery_keeps_the_start_of_the_whole_outage() -> None:
    alerts = AlertCoalescer(window=60)
    first_back = HealthChange("m", "+1", DOWN, UP, at(10), None, outage_since=at(0))
    alerts.push(first_back, now=0)
    alerts.push(HealthChange("m", "+1", UP, DOWN, at(11), None), now=10)
    alerts.push(HealthChange("m", "+1", DOWN, UP, at(12), None, outage_since=at(11)), now=20)
    (net,) = alerts.due(100)
    assert (net.previous, net.state, net.outage_since) == (DOWN, UP, at(0))
    alerts.push(HealthChange("m", "+1", UP, DOWN, at(13), None), now=200)
    (lost,) = alerts.due(300)
    assert lost.outage_since is None


DIGEST = DigestSchedule(time(18, 0), BRUSSELS)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=BRUSSELS)


@pytest.mark.parametrize(
    ("day", "utc_hour"),
    [(date(2026, 3, 28), 17), (date(2026, 3, 29), 16),  # clocks go forward on the 29th
     (date(2026, 10, 24), 16), (date(2026, 10, 25), 17)],  # and back on 25 October
)  # fmt: skip
def test_the_digest_is_at_18_00_local_on_both_sides_of_a_dst_change(
    day: date, utc_hour: int
) -> None:
    moment = DIGEST.moment(day)
    assert moment.astimezone(UTC).hour == utc_hour
    assert DIGEST.due(moment - timedelta(seconds=1), None) is None
    assert DIGEST.due(moment, None) == day
    assert DIGEST.next_deadline(moment - timedelta(hours=3), None) == moment


def test_the_window_of_a_dst_day_is_23_hours_and_ends_at_the_digest() -> None:
    start, end = DIGEST.window(date(2026, 3, 29))
    assert end - start == timedelta(hours=23)
    assert start == local(date(2026, 3, 28), 18)


def test_one_digest_a_day_even_after_a_restart_and_a_late_start_catches_up() -> None:
    day = date(2026, 3, 2)
    assert DIGEST.due(local(day, 21), last_sent=None) == day  # started late: send now
    assert DIGEST.due(local(day, 21), last_sent=day) is None  # sent before the restart
    assert DIGEST.next_deadline(local(day, 21), last_sent=day) == local(day + timedelta(1), 18)
    assert DIGEST.next_deadline(local(day, 21), last_sent=None) == local(day, 21)
    assert DIGEST.due(local(day + timedelta(1), 0, 5), last_sent=day) is None


def test_a_digest_time_that_does_not_exist_that_day_is_an_hour_later() -> None:
    early = DigestSchedule(time(2, 30), BRUSSELS)
    assert early.moment(date(2026, 3, 29)).astimezone(BRUSSELS).time() == time(3, 30)


def test_the_digest_mail_lists_the_day() -> None:
    day = date(2026, 3, 2)
    missed = callback_list([CallerCall("+32470000011", local(day, 9, 5), "failed")])
    assert digest_subject(day, missed) == "1 caller to call back (Mon 02 Mar)"
    lines = digest_details(day, missed, DIGEST).splitlines()
    assert lines[0] == (
        "Callers who reached nobody from Sun 01 Mar 18:00 to Mon 02 Mar 18:00"
        " and have not got through since:"
    )
    assert lines[1] == "  +32470000011  1 attempt  09:05  no voicemail (failed)"
