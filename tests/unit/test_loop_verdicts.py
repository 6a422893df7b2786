"""The inbound loop test's decisions, in memory, time passed in."""

from __future__ import annotations

import textwrap

import pytest

from gateway.core.causes import Outcome
from gateway.core.loop_test import LoopConfig, LoopLevel, LoopTest, LoopVerdict
from gateway.core.rules import RulesError, parse_rules

PUBLIC, TEST_LINE = "+3225550100", "+32470000009"


def started(within: float = 10.0) -> LoopTest:
    test = LoopTest(LoopConfig(PUBLIC, TEST_LINE, within))
    assert test.start(100.0)
    return test


def test_the_call_coming_back_in_time_passes_and_ends_the_test() -> None:
    test = started()
    assert test.is_looped(PUBLIC, TEST_LINE)
    result = test.arrived(107.5)
    assert result is not None
    assert (result.verdict, result.level, result.after) == (LoopVerdict.ARRIVED, LoopLevel.OK, 7.5)
    assert "came back from the trunk after 7.5 s" in result.text(test.config)
    # Over: the same numbers are an ordinary call again, and nothing is pending.
    assert not test.is_looped(PUBLIC, TEST_LINE)
    assert test.deadline() is None
    assert test.leg_failed(Outcome.REJECTED, 603, 108.0) is None


def test_only_the_tests_numbers_are_taken_for_it() -> None:
    test = LoopTest(LoopConfig(PUBLIC, TEST_LINE))
    assert not test.is_looped(PUBLIC, TEST_LINE)  # no test outstanding
    test.start(0.0)
    assert not test.is_looped(PUBLIC, "+32470999999")
    assert not test.is_looped("+3225550101", TEST_LINE)
    assert not test.is_looped(PUBLIC, None)


def test_one_test_at_a_time() -> None:
    test = started()
    assert not test.start(101.0)
    assert test.deadline() == 120.0  # still the first one's


def test_late_after_within_and_nothing_after_twice_within() -> None:
    late = started().arrived(112.0)
    assert late is not None
    assert (late.verdict, late.level) == (LoopVerdict.LATE, LoopLevel.WARNING)
    test = started()
    assert test.on_timer(119.9) is None
    nothing = test.on_timer(120.0)
    assert nothing is not None
    assert (nothing.verdict, nothing.level) == (LoopVerdict.NOTHING, LoopLevel.ALARM)
    assert "do not reach this gateway" in nothing.text(test.config)
    assert test.deadline() is None


@pytest.mark.parametrize("code", [403, 482, 503])
def test_a_loop_block_is_inconclusive_and_says_what_to_do(code: int) -> None:
    test = started()
    outcome = Outcome.REJECTED if code == 403 else Outcome.FAILED
    result = test.leg_failed(outcome, code, 100.2)
    assert result is not None
    assert (result.verdict, result.level, result.sip_code) == (
        LoopVerdict.BLOCKED, LoopLevel.INCONCLUSIVE, code)  # fmt: skip
    assert "second trunk" in result.text(test.config)


@pytest.mark.parametrize("code", [404, None])  # None: SIT heard, no SIP answer
def test_not_assigned_or_sit_is_an_alarm(code: int | None) -> None:
    result = started().leg_failed(Outcome.UNASSIGNED, code, 101.0)
    assert result is not None
    assert (result.verdict, result.level) == (LoopVerdict.NOT_ROUTED, LoopLevel.ALARM)


def test_answered_elsewhere_is_an_alarm() -> None:
    result = started().leg_answered(103.0)
    assert result is not None
    assert (result.verdict, result.level, result.sip_code) == (
        LoopVerdict.ANSWERED, LoopLevel.ALARM, 200)  # fmt: skip


def test_another_failure_waits_for_the_invite_that_may_still_come() -> None:
    test = started()
    assert test.leg_failed(Outcome.BUSY, 486, 101.0) is None
    result = test.on_timer(120.0)
    assert result is not None
    assert (result.verdict, result.sip_code) == (LoopVerdict.NOTHING, 486)


def test_a_call_from_another_caller_makes_it_inconclusive_not_an_alarm() -> None:
    test = started()
    test.other_caller(PUBLIC, "+3222222222")
    result = test.on_timer(120.0)
    assert result is not None
    assert (result.verdict, result.level) == (LoopVerdict.OTHER_CALLER, LoopLevel.INCONCLUSIVE)
    assert "+3222222222" in result.text(test.config)


RULES = """\
    version: 1
    country: BE
    targets: {a: {number: "+32470000001"}}
    schedules: {office-hours: {mon-fri: "08:30-18:00"}}
    routes: [{name: r, match: {to: "+3225550100"}, steps: [{ring: a}]}]
    """


def test_rules_numbers_are_read_as_e164_and_from_defaults_to_the_number() -> None:
    rules = parse_rules(textwrap.dedent(RULES) + (
        'loop_test: {call: "025550100", from: "0470000009", only: office-hours, within: 12s}\n'
    ), "rules.yaml")  # fmt: skip
    assert rules.loop_test is not None
    assert rules.loop_test.config() == LoopConfig(PUBLIC, TEST_LINE, 12.0)
    assert rules.loop_test.every == 6 * 3600
    bare = parse_rules(textwrap.dedent(RULES) + 'loop_test: {call: "+3225550100"}\n', "r.yaml")
    assert bare.loop_test is not None
    assert bare.loop_test.config().caller == PUBLIC


def test_rules_refuse_an_unknown_schedule_with_its_line() -> None:
    with pytest.raises(RulesError, match=r"rules.yaml:6: loop_test.only: unknown schedule"):
        parse_rules(textwrap.dedent(RULES) + 'loop_test: {call: "+3225550100", only: x}\n',
                    "rules.yaml")  # fmt: skip
