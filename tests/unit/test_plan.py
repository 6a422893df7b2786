"""Route steps + target health -> the Plan a call runs on."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from gateway.core import rules
from gateway.core.causes import FAILURES, Outcome
from gateway.core.plan import (
    Dial,
    Plan,
    RingMode,
    RingPlan,
    VoicemailPlan,
    dial_of,
    plan_steps,
)

STEP = TypeAdapter(rules.Step)


def Step(  # the name reads as the rules' step
    **fields: object,
) -> rules.RingStep | rules.RingAllStep | rules.RingEachStep | rules.VoicemailStep:
    """A step as the rules file gives it."""
    return STEP.validate_python(fields)


TARGETS = {
    "office": rules.NumberTarget(number="+32470000001"),
    "anna": rules.NumberTarget(number="+32480000002"),
    "desk": rules.UriTarget(uri="sip:desk@192.0.2.10"),
}


def targets_of(plan: Plan) -> list[tuple[str, tuple[str, ...]]]:
    return [(step.kind, step.names) for step in plan.steps]


def test_each_kind_of_step_is_planned_in_order() -> None:
    plan = plan_steps(
        "main-line",
        (
            Step(ring="office", timeout=20, failover_on=frozenset({Outcome.UNASSIGNED})),
            Step(ring_all=("anna", "desk"), timeout=25, early_media_timeout=5),
            Step(ring_each=("desk", "office")),
            Step(voicemail="main"),
        ),
        TARGETS,
    )
    assert plan.route == "main-line"
    assert targets_of(plan) == [
        ("ring", ("office",)),
        ("ring_all", ("anna", "desk")),
        ("ring_each", ("desk", "office")),
        ("voicemail", ("voicemail:main",)),
    ]
    first, second, third, last = plan.steps
    assert isinstance(first, RingPlan)
    assert first.mode is RingMode.ONE
    assert first.targets == (Dial("office", number="+32470000001"),)
    assert first.timeout == 20.0
    assert first.failover_on == {Outcome.UNASSIGNED}
    assert isinstance(second, RingPlan)
    assert second.mode is RingMode.ALL
    assert (second.timeout, second.early_media_timeout) == (25.0, 5.0)
    assert second.targets[1] == Dial("desk", uri="sip:desk@192.0.2.10")
    assert isinstance(third, RingPlan)
    assert third.mode is RingMode.EACH
    assert last == VoicemailPlan(box="main")


def test_a_step_with_only_its_target_gets_the_defaults() -> None:
    plan = plan_steps("r", (Step(ring="office"),), TARGETS)
    (step,) = plan.steps
    assert isinstance(step, RingPlan)
    assert (step.timeout, step.early_media_timeout) == (30.0, 8.0)
    assert step.failover_on == FAILURES
    assert step.skipped == ()


def test_failover_on_may_be_written_as_words() -> None:
    plan = plan_steps("r", (Step(ring="office", failover_on=["busy"]),), TARGETS)
    (step,) = plan.steps
    assert isinstance(step, RingPlan)
    assert Outcome.BUSY in step.failover_on
    assert Outcome.UNASSIGNED not in step.failover_on


@pytest.mark.parametrize("state", ["unassigned", "down"])
def test_a_dead_target_is_skipped_and_listed(state: str) -> None:
    plan = plan_steps(
        "r", (Step(ring_all=("office", "anna", "desk")),), TARGETS, health={"anna": state}
    )
    (step,) = plan.steps
    assert isinstance(step, RingPlan)
    assert step.names == ("office", "desk")
    assert step.skipped == ("anna",)


@pytest.mark.parametrize("state", ["up", "unknown"])
def test_a_live_or_unknown_target_is_rung(state: str) -> None:
    plan = plan_steps("r", (Step(ring="office"),), TARGETS, health={"office": state})
    assert targets_of(plan) == [("ring", ("office",))]


def test_a_step_with_nobody_left_is_dropped_but_voicemail_stays() -> None:
    plan = plan_steps(
        "r",
        (Step(ring="office"), Step(ring_each=("anna", "desk")), Step(voicemail="main")),
        TARGETS,
        health={"office": "unassigned", "anna": "down", "desk": "unassigned"},
    )
    assert targets_of(plan) == [("voicemail", ("voicemail:main",))]
    # What was left out is still known, for the voicemail's "why".
    assert plan.skipped == ("office", "anna", "desk")


def test_everything_dead_without_voicemail_is_an_empty_plan() -> None:
    plan = plan_steps("r", (Step(ring="office"),), TARGETS, health={"office": "down"})
    assert plan.steps == ()


def test_ring_if_down_keeps_dead_targets() -> None:
    plan = plan_steps(
        "r",
        (Step(ring_all=("office", "anna"), ring_if_down=True), Step(ring="anna")),
        TARGETS,
        health={"office": "down", "anna": "unassigned"},
    )
    assert targets_of(plan) == [("ring_all", ("office", "anna"))]
    first = plan.steps[0]
    assert isinstance(first, RingPlan)
    assert first.skipped == ()


def test_dial_needs_exactly_one_address() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Dial("x")
    with pytest.raises(ValueError, match="exactly one"):
        Dial("x", uri="sip:x@192.0.2.1", number="+321")


def test_dial_label_is_what_is_dialled() -> None:
    assert dial_of("office", TARGETS["office"]).label == "+32470000001"
    assert dial_of("desk", TARGETS["desk"]).label == "sip:desk@192.0.2.10"
