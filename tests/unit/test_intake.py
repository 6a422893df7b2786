"""Admission at the gate, the intake's verdict, and the truthful end of a voicemail."""

from __future__ import annotations

import pytest
from callcore import CallDriver, plan, ring, voicemail

from gateway.core import intake
from gateway.core.admission import Admission, Capacity, Screening
from gateway.core.events import CallAdmitted, CallRefused
from gateway.core.plan import Plan

TRUNK = "192.0.2.1"


def admission(per_minute: int = 120) -> Admission:
    return Admission(frozenset({TRUNK}), Capacity(3), per_minute)


def test_capacity_leaves_room_for_a_probe_only_when_idle() -> None:
    capacity = Capacity(3)
    assert [capacity.room_for_caller(n) for n in (2, 3)] == [True, False]
    assert [capacity.room_for_probe(n) for n in (0, 1)] == [True, False]


def test_the_gate_sorts_strangers_floods_full_and_stopping() -> None:
    gate = admission(per_minute=2)
    assert gate.screen("203.0.113.9", "x", 0, 0.0) is Screening.STRANGER
    assert gate.screen(TRUNK, "a", 0, 0.0) is Screening.ADMIT
    assert gate.screen(TRUNK, "b", 3, 0.0) is Screening.FULL
    assert gate.screen(TRUNK, "c", 0, 0.0) is Screening.FLOOD
    assert gate.refused.per_minute(0.5) == 2  # the stranger and the flood: counted only
    assert gate.screen(TRUNK, "d", 0, 61.0) is Screening.ADMIT
    assert gate.refused.per_minute(61.0) == 0  # a minute later
    gate.accepting = False
    assert gate.screen(TRUNK, "e", 0, 61.0) is Screening.STOPPING


def test_a_retransmitted_invite_turned_away_is_one_caller() -> None:
    gate = admission()
    assert gate.screen(TRUNK, "a", 3, 0.0) is Screening.FULL
    assert gate.screen(TRUNK, "a", 3, 0.5) is Screening.REPEAT
    assert gate.screen(TRUNK, "a", 3, 40.0) is Screening.FULL  # long after: a new attempt


@pytest.mark.parametrize(
    ("the_plan", "legs", "verdict"),
    [
        (None, 1, CallRefused(intake.Refusal.NO_ROUTE, 404, 1)),
        (Plan("r", (), mode="closed"), 1, CallRefused(intake.Refusal.CLOSED, 480, 31)),
        (plan(ring("office")), 3, CallRefused(intake.Refusal.OVER_CAPACITY, 503, 42, 30)),
        (plan(ring("office"), voicemail()), 3, CallAdmitted()),
        (plan(ring("office")), 2, CallAdmitted()),
    ],
)
def test_the_intake_verdict(
    the_plan: Plan | None, legs: int, verdict: CallAdmitted | CallRefused
) -> None:
    assert intake.verdict(the_plan, legs, Capacity(3)) == verdict


def test_a_refused_call_is_logged_like_any_other() -> None:
    call = CallDriver(plan(ring("office")))
    call.arrive(legs_in_use=3)
    assert call.events() == ["call.incoming", "call.ended"]
    assert call.event("call.ended")["result"] == "refused"
    assert call.event("call.ended")["reason"] == "over_capacity"
    assert call.refusal().retry_after == 30


def test_a_caller_turned_away_at_the_gate_gets_nothing_more() -> None:
    call = CallDriver(plan(ring("office")))
    call.send(intake.turned_away(Screening.FULL))
    assert call.caller_got() == []
    assert call.event("call.ended")["sip_code"] == 480


@pytest.mark.parametrize(
    ("why", "stored", "result", "reason"),
    [
        ("hangup", True, "voicemail", None),
        ("silence", True, "voicemail", None),
        ("hangup", False, "abandoned", None),  # hung up in the greeting, or too short
        ("no_audio", False, "failed", "voicemail_no_audio"),
        ("error", False, "failed", "voicemail_error"),
        ("unavailable", False, "failed", "voicemail_unavailable"),
    ],
)
def test_voicemail_is_the_result_only_when_a_message_was_stored(
    why: str, stored: bool, result: str, reason: str | None
) -> None:
    call = CallDriver(plan(voicemail()))
    call.arrive()
    call.voicemail_ends(why, stored=stored)  # type: ignore[arg-type]
    ended = call.event("call.ended")
    assert (ended["result"], ended["reason"]) == (result, reason)
    refused = [a for a in call.caller_got() if a.__class__.__name__ == "Refuse"]
    assert bool(refused) == (why == "unavailable"), "only an unanswered caller is refused"
