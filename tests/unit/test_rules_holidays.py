"""Public holidays by country: a schedule closes them without any date typed."""

from __future__ import annotations

import io
import json
import textwrap
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from gateway.cli.rules import check, explain
from gateway.core.plan import plan_call
from gateway.core.rules import Rules, RulesError, parse_rules
from gateway.core.schedule import describe_schedule, parse_schedule, why_closed

if TYPE_CHECKING:
    from pathlib import Path

OFFICE = """\
version: 1
timezone: Europe/Brussels
targets: {anna: {number: "+32480000002"}}
voicemail: {main: {email: office@example.com}}
schedules:
  office-hours:
    mon-fri: "08:30-18:00"
    holidays: {holidays}
routes:
  - name: office
    match: {to: "+3225550100", when: office-hours}
    steps: [{ring: anna}, {voicemail: main}]
  - name: closed
    match: {to: "+3225550100"}
    steps: [{voicemail: main}]
"""
EASTER_MONDAY_2028 = datetime(2028, 4, 17, 8, 0, tzinfo=UTC)  # 10:00 in Brussels
TUESDAY_AFTER = datetime(2028, 4, 18, 8, 0, tzinfo=UTC)


def office(holidays: str = "BE") -> str:
    return OFFICE.replace("{holidays}", holidays)


def rules(text: str) -> Rules:
    return parse_rules(textwrap.dedent(text), "rules.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        rules(text)
    return [str(problem) for problem in caught.value.problems]


def routed(parsed: Rules, at: datetime) -> str | None:
    """The route the gateway takes for a call to the public number at ``at``
    (``plan_call`` is the switchboard's own planning function)."""
    plan = plan_call(parsed, "+3225550100", "+32470999999", at, {})
    return None if plan is None else plan.route


def test_easter_monday_2028_is_closed_and_the_next_day_open() -> None:
    parsed = rules(office())
    assert routed(parsed, EASTER_MONDAY_2028) == "closed"
    assert routed(parsed, TUESDAY_AFTER) == "office"


def test_a_subdivision_closes_its_own_holidays_only() -> None:
    corpus_christi = datetime(2028, 6, 15, 8, 0, tzinfo=UTC)  # Bavaria, not Berlin
    assert routed(rules(office("DE-BY")), corpus_christi) == "closed"
    assert routed(rules(office("DE-BE")), corpus_christi) == "office"


def test_codes_are_read_in_any_case() -> None:
    assert routed(rules(office("be")), EASTER_MONDAY_2028) == "closed"
    assert routed(rules(office("de-by")), datetime(2028, 6, 15, 8, 0, tzinfo=UTC)) == "closed"


@pytest.mark.parametrize(
    ("written", "words"),
    [("XX", "unknown country 'XX'"), ("DE-XX", "unknown subdivision 'XX' of DE"),
     ("[BE]", "expected a country code like BE or DE-BY")],
)  # fmt: skip
def test_unknown_codes_are_refused_at_their_line(written: str, words: str) -> None:
    (problem,) = problems(office(written))
    assert problem.startswith("rules.yaml:8: schedules.office-hours.holidays: "), problem
    assert words in problem


def test_explain_names_the_holiday_instead_of_listing_dates() -> None:
    parsed = rules(office())
    schedule = parsed.schedules["office-hours"]
    assert why_closed(schedule, EASTER_MONDAY_2028.date()) == "Easter Monday, BE public holiday"
    assert why_closed(schedule, TUESDAY_AFTER.date()) is None
    assert describe_schedule(schedule) == "mon-fri 08:30-18:00; closed on BE public holidays"


def test_typed_closed_dates_are_named_too() -> None:
    schedule = parse_schedule({"mon-fri": "08:30-18:00", "closed": ["2026-12-24..2026-12-26"]})
    assert why_closed(schedule, datetime(2026, 12, 25, tzinfo=UTC).date()) == (
        "closed 2026-12-24..2026-12-26"
    )


def test_explain_says_which_holiday_closed_the_day(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(office(), encoding="utf-8")
    out = io.StringIO()
    assert explain(path, "+3225550100", None, EASTER_MONDAY_2028, False, out) == 0
    text = out.getvalue()
    assert "route closed" in text
    assert "office-hours is closed: Easter Monday, BE public holiday" in text, text
    out = io.StringIO()
    explain(path, "+3225550100", None, EASTER_MONDAY_2028, True, out)
    report = json.loads(out.getvalue())
    assert report["route"] == "closed"
    assert report["closed_because"] == {"office-hours": "Easter Monday, BE public holiday"}
    out = io.StringIO()
    explain(path, "+3225550100", None, TUESDAY_AFTER, False, out)
    assert "route office (when office-hours (mon-fri 08:30-18:00; closed on BE public " in (
        out.getvalue()
    )


def test_check_tries_routes_on_the_holidays(tmp_path: Path) -> None:
    # A route that only a holiday can reach is not reported as never matching.
    path = tmp_path / "rules.yaml"
    text = office().replace(
        "  - name: closed\n",
        "  - name: weekday-holiday\n"
        '    match: {to: "+3225550100", when: weekdays, unless: office-hours}\n'
        "    steps: [{voicemail: main}]\n  - name: closed\n",
    ).replace("schedules:\n", 'schedules:\n  weekdays: {mon-fri: "09:00-17:00"}\n')
    path.write_text(text, encoding="utf-8")
    out = io.StringIO()
    assert check([path], out, at=datetime(2028, 4, 12, tzinfo=UTC)) == 0
    assert "never matches" not in out.getvalue(), out.getvalue()
