"""Caller matching against a brute-force reference; modes and health in the planner."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime

import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.plan import RingPlan, VoicemailPlan, plan_steps
from gateway.core.rules import Rules, parse_rules
from gateway.core.rules_values import caller_matches, caller_pattern

SEPARATORS = [" ", ".", "-", "(", ")"]


def digits(text: str) -> str:
    """Separators dropped, 00 as +."""
    kept = "".join(c for c in text if c not in SEPARATORS)
    return "+" + kept[2:] if kept.startswith("00") else kept


def as_compared(text: str) -> str:
    """An international number as the numbering plan reads it (phonenumbers' E.164:
    "+32 (0)470…" is +32470…); anything that cannot be a number, digit by digit."""
    number = digits(text)
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return number
    if not phonenumbers.is_possible_number(parsed):
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def reference(pattern_text: str, caller: str | None) -> bool:
    """With no shared code: what an admin means by a pattern. Numbers compare as
    E.164; a prefix is the start of the caller's E.164 number, as written."""
    withheld = {"", "anonymous", "unknown", "unavailable", "restricted", "private", "withheld"}
    if caller is None or caller.strip().lower() in withheld:
        return pattern_text.strip().lower() == "anonymous"
    if pattern_text.strip().lower() == "anonymous":
        return False
    number = as_compared(caller)
    if not pattern_text.endswith("*"):
        return number == as_compared(pattern_text)
    wanted = digits(pattern_text.rstrip("*"))
    return len(number) >= len(wanted) and all(a == b for a, b in zip(wanted, number, strict=False))


def spelled(number: str) -> st.SearchStrategy[str]:
    """The same digits as people write them: separators, 00 for +."""
    plus = st.sampled_from(["+", "00"]) if number.startswith("+") else st.just("")
    body = number.lstrip("+")
    seps = st.lists(
        st.sampled_from(["", "", " ", ".", "-"]), min_size=len(body), max_size=len(body)
    )
    return st.tuples(plus, seps).map(
        lambda p: p[0] + "".join(d + s for d, s in zip(body, p[1], strict=True))
    )


numbers = st.tuples(st.sampled_from(["+", ""]), st.text("0123456789", min_size=3, max_size=12)).map(
    "".join
)
patterns = st.one_of(
    numbers.flatmap(spelled),
    numbers.flatmap(spelled).map(lambda p: p + "*"),
    st.just("anonymous"),
)
callers = st.one_of(
    st.none(),
    st.sampled_from(["", "anonymous", "Anonymous", "restricted", " unknown "]),
    numbers.flatmap(spelled),
)


@settings(max_examples=500, deadline=None)
@given(patterns, callers)
def test_caller_matching_agrees_with_the_reference(pattern: str, caller: str | None) -> None:
    assert caller_matches(caller_pattern(pattern), caller) == reference(pattern, caller)


@settings(max_examples=200, deadline=None)
@given(numbers, numbers.flatmap(spelled))
def test_a_number_matches_its_own_prefix_however_it_is_written(number: str, spelling: str) -> None:
    assert caller_matches(caller_pattern(number), number)
    prefix = as_compared(number)[:4] if number.startswith("+") else number[:3]
    assert caller_matches(caller_pattern(prefix + "*"), number)
    assert caller_matches(caller_pattern(spelling), spelling)


RULES = """\
version: 1
timezone: Europe/Brussels
mode: {mode}
targets:
  office-mobile: {{number: "+32470000001"{main}}}
  anna: {{number: "+32480000002"}}
  bert: {{number: "+32480000003"}}
voicemail:
  main: {{email: office@example.com}}
schedules:
  office-hours: {{mon-fri: "08:30-18:00"}}
routes:
  - name: blocked
    match: {{to: "+3225550100", from: ["+3290000000", "+3291*"]}}
    steps: [{{voicemail: main}}]
  - name: withheld
    match: {{to: "+3225550100", from: anonymous, when: office-hours}}
    steps: [{{ring: anna}}]
  - name: office
    match: {{to: "+3225550100", when: office-hours}}
    steps:
      - ring: office-mobile
      - ring_all: [anna, office-mobile, bert]
      - voicemail: main
  - name: after-hours
    match: {{to: "+3225550100", unless: office-hours}}
    steps: [{{ring: bert}}]
"""
MONDAY_10 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
MONDAY_20 = datetime(2026, 5, 4, 18, 0, tzinfo=UTC)


def rules(mode: str = "normal", main: str = "") -> Rules:
    return parse_rules(textwrap.dedent(RULES.format(mode=mode, main=main)), "rules.yaml")


def test_first_matching_route_wins_with_callers_and_schedules() -> None:
    r = rules()
    route = lambda caller, at: r.route_for("+32 2 555 01 00", caller, at).name  # noqa: E731
    assert route("+32 91 23 45 67", MONDAY_10) == "blocked"
    assert route("0032 90 00 00 00", MONDAY_20) == "blocked"
    assert route(None, MONDAY_10) == "withheld"
    assert route("anonymous", MONDAY_10) == "withheld"
    assert route(None, MONDAY_20) == "after-hours"
    assert route("+32470999999", MONDAY_10) == "office"
    assert route("+32470999999", MONDAY_20) == "after-hours"


def plan_of(
    r: Rules, at: datetime = MONDAY_10, health: dict[str, str] | None = None
) -> list[object]:
    route = r.route_for("+3225550100", "+32470999999", at)
    assert route is not None
    mode, _ = r.active_mode
    plan = plan_steps(
        route.name, tuple(route.steps), r.targets, health, mode=mode, main=r.main_line(route)
    )
    return [
        (s.kind, s.names) if isinstance(s, RingPlan) else s.box
        for s in plan.steps
        if isinstance(s, RingPlan | VoicemailPlan)
    ]


def test_force_backup_skips_the_first_ring_step_when_no_target_is_marked_main() -> None:
    normal = [("ring", ("office-mobile",)), ("ring_all", ("anna", "office-mobile", "bert")), "main"]
    assert plan_of(rules()) == normal
    assert plan_of(rules("force-backup")) == [("ring_all", ("anna", "bert")), "main"]


def test_force_backup_leaves_out_targets_marked_main_everywhere() -> None:
    assert plan_of(rules("force-backup", main=", main: true")) == [
        ("ring_all", ("anna", "bert")),
        "main",
    ]
    assert plan_of(rules("normal", main=", main: true"))[0] == ("ring", ("office-mobile",))


def test_closed_keeps_only_voicemail_and_refuses_without_it() -> None:
    assert plan_of(rules("closed")) == ["main"]
    assert plan_of(rules("closed"), MONDAY_20) == []


def test_an_override_wins_over_the_file_until_cleared() -> None:
    file_rules = rules("closed")
    forced = file_rules.with_mode_override("force-backup")
    assert forced.active_mode == ("force-backup", "mqtt")
    assert plan_of(forced) == [("ring_all", ("anna", "bert")), "main"]
    assert file_rules.active_mode == ("closed", "file"), "the override changed the original"
    cleared = forced.with_mode_override(None)
    assert cleared.active_mode == ("closed", "file")
    assert plan_of(cleared.with_mode_override("normal"))[0] == ("ring", ("office-mobile",))


def test_health_leaves_dead_targets_out_unless_the_step_rings_them_anyway() -> None:
    dead = {"office-mobile": "unassigned", "anna": "down"}
    assert plan_of(rules(), health=dead) == [("ring_all", ("bert",)), "main"]
    text = RULES.replace(
        "      - ring: office-mobile\n", "      - ring: office-mobile\n        ring_if_down: true\n"
    )
    r = parse_rules(textwrap.dedent(text.format(mode="normal", main="")), "rules.yaml")
    assert plan_of(r, health=dead)[0] == ("ring", ("office-mobile",))


def test_health_section_is_checked_against_targets_and_schedules() -> None:
    r = parse_rules(RULES.format(mode="normal", main="") + textwrap.dedent("""\
        health:
          office-mobile: {probe: call, only: office-hours}
          anna: {probe: options, every: 30s, down_after: 3}
        """), "rules.yaml")  # fmt: skip
    assert r.health["office-mobile"].interval == 900.0
    assert r.health["anna"].interval == 30.0
    assert r.health["anna"].down_after == 3
