"""The rules model: what a valid file means, and the checks across the file."""

from __future__ import annotations

import textwrap

import pytest
from pydantic import ValidationError

from gateway.core.causes import FAILURES, Outcome
from gateway.core.rules import (
    NumberTarget,
    Problem,
    RingAllStep,
    RingEachStep,
    RingStep,
    Rules,
    RulesError,
    UriTarget,
    VoicemailBox,
    VoicemailStep,
    normalize_number,
    parse_rules,
    rules_json_schema,
)

FULL = """\
version: 1
timezone: Europe/Brussels
targets:
  office-mobile: {number: "+32 (0)470 00.00-01"}
  anna: {number: "+32480000002"}
  desk: {uri: "sip:desk@192.0.2.10"}
  lab: {uri: "sips:lab@example.com:5061;transport=tls"}
voicemail:
  main: {greeting: greetings/main.wav, email: office@example.com, max_seconds: 2m}
  spare: {email: [night@example.com]}
routes:
  - name: family
    match: {to: ["+3225550100", "+32 2 555 01 01"], from: ["+3247*", "+32480000002"]}
    steps:
      - ring_each: [anna, office-mobile]
        timeout: 1m30s
        early_media_timeout: 500ms
  - name: withheld
    match: {to: "+3225550100", from: anonymous}
    steps: [{voicemail: spare}]
  - name: main-line
    match: {to: ["+3225550100", "+3225550101"]}
    steps:
      - ring: office-mobile
        timeout: 20
        failover_on: [unassigned, busy]
      - ring_all: [anna, desk, lab]
      - voicemail: main
"""


def rules(text: str = FULL) -> Rules:
    return parse_rules(textwrap.dedent(text), "rules.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        rules(text)
    return [str(problem) for problem in caught.value.problems]


MINIMAL = """\
version: 1
routes:
  - name: main
    match: {to: "+3225550100"}
    steps: [{voicemail: main}]
voicemail:
  main: {email: office@example.com}
"""


def test_every_step_kind_is_read() -> None:
    main = rules().routes[2]
    ring, ring_all, voicemail = main.steps
    assert isinstance(ring, RingStep)
    assert ring.ring == "office-mobile"
    assert isinstance(ring_all, RingAllStep)
    assert ring_all.ring_all == ("anna", "desk", "lab")
    assert isinstance(voicemail, VoicemailStep)
    assert voicemail.voicemail == "main"
    each = rules().routes[0].steps[0]
    assert isinstance(each, RingEachStep)
    assert each.names == ("anna", "office-mobile")
    assert [s.kind for s in main.steps] == ["ring", "ring_all", "voicemail"]


def test_defaults() -> None:
    parsed = rules(MINIMAL)
    assert parsed.timezone == "UTC"
    assert parsed.targets == {}
    assert parsed.voicemail["main"] == VoicemailBox(
        greeting=None, email=("office@example.com",), max_seconds=180.0
    )
    assert parsed.routes[0].match.from_ == ()
    step = rules().routes[2].steps[1]
    assert isinstance(step, RingAllStep)
    assert step.timeout == 30.0
    assert step.early_media_timeout == 8.0
    assert step.failover_on == FAILURES
    assert Outcome.ANSWERED not in step.failover_on


def test_durations_in_every_form() -> None:
    family, _, main = rules().routes
    each = family.steps[0]
    assert isinstance(each, RingEachStep)
    assert each.timeout == 90.0
    assert each.early_media_timeout == 0.5
    first = main.steps[0]
    assert isinstance(first, RingStep)
    assert first.timeout == 20.0
    assert first.failover_on == {Outcome.UNASSIGNED, Outcome.BUSY}
    assert rules().voicemail["main"].max_seconds == 120.0


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("20s", 20.0), ("1m30s", 90.0), ("15m", 900.0), ("2h", 7200.0), ("500ms", 0.5),
     ("1h0m5s", 3605.0), ("2.5s", 2.5), ("45", None), ("12", None)],
)  # fmt: skip
def test_duration_forms(written: str, seconds: float | None) -> None:
    value = written if seconds is not None else int(written)
    text = MINIMAL.replace("main: {", f"main: {{max_seconds: {value}, ")
    assert rules(text).voicemail["main"].max_seconds == (seconds or float(written))


@pytest.mark.parametrize("written", ["20x", "0s", "-5", "s", "1 m", "true", "0"])
def test_bad_durations_are_refused(written: str) -> None:
    text = MINIMAL.replace("main: {", f"main: {{max_seconds: {written}, ")
    (problem,) = problems(text)
    assert problem.startswith("rules.yaml:7: voicemail.main.max_seconds: ")


def test_numbers_are_stored_without_separators() -> None:
    parsed = rules()
    assert parsed.target("office-mobile") == NumberTarget(number="+320470000001")
    assert parsed.target("lab") == UriTarget(uri="sips:lab@example.com:5061;transport=tls")
    assert parsed.target("desk").address == "sip:desk@192.0.2.10"
    with pytest.raises(KeyError):
        parsed.target("bob")


def test_public_numbers_are_normalised() -> None:
    assert rules().public_numbers() == {"+3225550100", "+3225550101"}


@pytest.mark.parametrize(
    ("written", "normal"),
    [("+32 2 555 01 00", "+3225550100"), ("0032-2-555.01.00", "+3225550100"),
     ("(02) 555 0100", "025550100"), ("+3225550100", "+3225550100")],
)  # fmt: skip
def test_normalize_number(written: str, normal: str) -> None:
    assert normalize_number(written) == normal


@pytest.mark.parametrize(
    ("to", "caller", "route"),
    [
        ("+3225550100", "+32470123456", "family"),  # prefix +3247*
        ("0032 2 555 01 01", "0032480000002", "family"),  # exact caller, 00 prefix
        ("+3225550100", "+32480000003", "main-line"),  # not a listed caller
        ("+3225550100", None, "withheld"),
        ("+3225550100", "Anonymous", "withheld"),
        ("+3225550101", None, "main-line"),  # withheld, but not to the withheld route's number
        ("+3225550100", "+3247", "family"),  # the prefix itself
    ],
)
def test_route_for_first_match_wins(to: str, caller: str | None, route: str) -> None:
    found = rules().route_for(to, caller)
    assert found is not None
    assert found.name == route


def test_route_for_an_unknown_number_is_none() -> None:
    assert rules().route_for("+3225550199", "+32470123456") is None


def test_a_step_list_can_be_empty_only_nowhere() -> None:
    text = FULL.replace("[{voicemail: spare}]", "[]")
    assert problems(text) == ["rules.yaml:20: routes[1].steps: must not be empty"]


def test_ring_lists_must_not_repeat_a_target() -> None:
    text = FULL.replace("[anna, desk, lab]", "[anna, desk, anna]")
    assert problems(text) == [
        "rules.yaml:27: routes[2].steps[1].ring_all[2]: 'anna' is listed twice"
    ]


def test_unknown_targets_and_boxes_are_all_reported_with_their_lines() -> None:
    text = FULL.replace("[anna, office-mobile]", "[anna, office]").replace(
        "{voicemail: spare}", "{voicemail: spar}"
    )
    assert problems(text) == [
        (
            "rules.yaml:15: routes[0].steps[0].ring_each[1]: unknown target 'office' "
            "(defined: anna, desk, lab, office-mobile)"
        ),
        (
            "rules.yaml:20: routes[1].steps[0].voicemail: unknown voicemail box 'spar' "
            "(defined: main, spare)"
        ),
    ]


def test_a_step_without_kind_says_which_keys_it_has() -> None:
    text = FULL.replace("- ring: office-mobile", "- rings: office-mobile")
    (problem,) = problems(text)
    assert problem == (
        "rules.yaml:24: routes[2].steps[0]: a step needs exactly one of ring, ring_all, "
        "ring_each, voicemail (found: rings, timeout, failover_on)"
    )


def test_a_step_that_is_not_a_mapping() -> None:
    (problem,) = problems(FULL.replace("[{voicemail: spare}]", "[voicemail spare]"))
    assert problem.endswith("routes[1].steps[0]: a step needs exactly one of ring, ring_all, "
                            "ring_each, voicemail (got 'voicemail spare')")  # fmt: skip


def test_voicemail_steps_take_no_ring_options() -> None:
    (problem,) = problems(FULL.replace("{voicemail: spare}", "{voicemail: spare, timeout: 5s}"))
    assert problem == (
        "rules.yaml:20: routes[1].steps[0].timeout: unknown key (expected one of: voicemail)"
    )


def test_uri_and_email_are_checked() -> None:
    text = FULL.replace("sip:desk@192.0.2.10", "tel:+3225550100").replace(
        "email: office@example.com", "email: [office@example.com, office]"
    )
    assert problems(text) == [
        (
            "rules.yaml:6: targets.desk.uri: invalid SIP URI 'tel:+3225550100' "
            "(expected sip:user@host or sips:...)"
        ),
        "rules.yaml:9: voicemail.main.email[1]: invalid e-mail address 'office'",
    ]


@pytest.mark.parametrize(
    ("box", "line"), [("{}", 10), ("{max_seconds: 1m}", 10), ("\n    email: []", 11)]
)
def test_a_box_without_an_address_is_refused_at_its_line(box: str, line: int) -> None:
    # Its messages could be recorded but never mailed: the file is wrong, not the call.
    text = FULL.replace("spare: {email: [night@example.com]}", f"spare: {box}")
    assert problems(text) == [
        (
            f"rules.yaml:{line}: voicemail.spare.email: a voicemail box needs at least one "
            "address: its messages would reach nobody"
        )
    ]


def test_caller_patterns_are_checked() -> None:
    (problem,) = problems(FULL.replace('"+3247*"', '"friends"'))
    assert problem.startswith("rules.yaml:13: routes[0].match.from[0]: invalid number 'friends'")


def test_version_must_be_1() -> None:
    assert problems(MINIMAL.replace("version: 1", "version: 2")) == [
        "rules.yaml:1: version: expected 1, got the number 2"
    ]


def test_rules_built_in_code_are_cross_checked_too() -> None:
    route = {"name": "main", "match": {"to": "+3225550100"}, "steps": [{"ring": "bob"}]}
    with pytest.raises(ValidationError, match=r"unknown target 'bob' \(defined: none are defined"):
        Rules.model_validate({"version": 1, "routes": [route]})
    box = {"name": "main", "match": {"to": "+3225550100"}, "steps": [{"voicemail": "x"}]}
    with pytest.raises(ValidationError, match="unknown voicemail box 'x'"):
        Rules.model_validate({"version": 1, "routes": [box]})


def test_models_are_frozen() -> None:
    parsed = rules()
    with pytest.raises(ValidationError):
        setattr(parsed, "timezone", "UTC")  # noqa: B010 - frozen: must raise


def test_problem_prints_as_file_line_message() -> None:
    problem = Problem("rules.yaml", 12, "routes[0].steps[1].ring: unknown target 'bob'")
    assert str(problem) == "rules.yaml:12: routes[0].steps[1].ring: unknown target 'bob'"
    error = RulesError([problem, Problem("rules.yaml", 3, "version: required, but missing")])
    assert [p.line for p in error.problems] == [3, 12]
    assert str(error).splitlines()[0] == "rules.yaml:3: version: required, but missing"


def test_a_top_level_list_is_refused() -> None:
    assert problems("- version: 1\n") == [
        "rules.yaml:1: (top): expected a mapping with version, targets and routes, got a list"
    ]


def test_schema_describes_steps_and_durations() -> None:
    schema = rules_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    step = schema["$defs"]["RingStep"]["properties"]
    assert step["timeout"]["anyOf"][0]["type"] == "string"
    assert "answered" not in step["failover_on"]["items"]["enum"]
    assert set(schema["properties"]) == {
        "version", "timezone", "country", "mode", "targets", "voicemail", "alerts", "schedules",
        "routes", "health", "sit", "loop_test",
    }  # fmt: skip


@pytest.mark.parametrize(("written", "hour"), [('"18:00"', 18), ("7:05", 7), ("'00:00'", 0)])
def test_the_digest_time_is_a_quoted_time_of_day(written: str, hour: int) -> None:
    parsed = rules(FULL + f"alerts: {{email: [admin@example.com], digest: {written}}}\n")
    assert parsed.alerts.digest is not None
    assert parsed.alerts.digest.hour == hour
    assert rules().alerts.digest is None  # no digest unless asked for


@pytest.mark.parametrize(
    ("written", "said"),
    [("1080", "got the number 1080"), ('"24:00"', "got '24:00'"), ('"18h"', "HH:MM")],
)
def test_a_bad_digest_time_is_refused_with_its_line(written: str, said: str) -> None:
    (problem,) = problems(FULL + f"alerts:\n  digest: {written}\n")
    assert problem.startswith(f"rules.yaml:{FULL.count(chr(10)) + 2}: alerts.digest: ")
    assert said in problem


def test_sit_meaning_defaults_to_unassigned_and_can_be_set() -> None:
    assert rules(MINIMAL).sit.itu is Outcome.UNASSIGNED
    assert rules(MINIMAL + "sit: {itu: unreachable}\n").sit.itu is Outcome.UNREACHABLE


def test_sit_meaning_is_checked_with_its_line() -> None:
    (problem,) = problems(MINIMAL + "sit:\n  itu: answered\n")
    assert problem.startswith("rules.yaml:9: sit.itu:"), problem
    (problem,) = problems(MINIMAL + "sit: {north_american: busy}\n")
    assert problem.startswith("rules.yaml:8: sit"), problem


def test_an_answer_is_held_for_sit_at_most_as_long_as_the_gateway_listens() -> None:
    assert rules().sit.hold_answer is None  # bridged at once unless asked
    assert rules(FULL + "sit: {hold_answer: 2500ms}\n").sit.hold_answer == 2.5
    with pytest.raises(RulesError, match=r"sit.hold_answer: at most 3s"):
        rules(FULL + "sit: {hold_answer: 4s}\n")
