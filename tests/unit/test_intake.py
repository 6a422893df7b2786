"""Admission at the gate, the intake's verdict, and the truthful end of a voicemail."""

from __future__ import annotations

import pytest
from callcore import CallDriver, plan, ring, voicemail

from gateway.core import intake
from gateway.core.admission import (
    HANDLE_MARGIN,
    HELD_AFTER_END_S,
    Admission,
    Capacity,
    EngineLoad,
    Screening,
)
from gateway.core.events import CallAdmitted, CallRefused
from gateway.core.plan import Plan

TRUNK = "192.0.2.1"
WHEEL_HANDLES = 64  # the wheel's select() I/O queue


def admission(per_minute: int = 120) -> Admission:
    return Admission(frozenset({TRUNK}), Capacity(3, WHEEL_HANDLES), per_minute)


# Legs' worth of sockets free when idle: 64 handles, 1 SIP socket, the margin, 2 per leg.
ROOM = (64 - 1 - HANDLE_MARGIN) // 2


def legs(n: int) -> EngineLoad:
    return EngineLoad(n)


def test_capacity_leaves_room_for_a_probe_only_when_idle() -> None:
    capacity = Capacity(3)
    assert [capacity.room_for_caller(legs(n), 0.0) for n in (2, 3)] == [True, False]
    assert [capacity.room_for_probe(legs(n), 0.0) for n in (0, 1)] == [True, False]


def test_sockets_of_legs_ended_lately_are_still_counted() -> None:
    """pjlib holds a closed socket 500 ms: 64 handles, 1 SIP socket, 2 per leg."""
    capacity = Capacity(legs=30, handles=64)
    ended = EngineLoad(0, ended=(10.0,) * (ROOM - 1))
    assert capacity.room_for_leg(ended, 10.0)  # one more fits...
    assert not capacity.room_for_caller(ended, 10.0)  # ...not a caller and its ring
    full = EngineLoad(2, ended=(10.0,) * (ROOM - 2))
    assert not capacity.room_for_leg(full, 10.0 + HELD_AFTER_END_S - 0.01)
    assert capacity.room_for_leg(full, 10.01 + HELD_AFTER_END_S)  # their handles are free again
    assert capacity.room_for_caller(full, 10.01 + HELD_AFTER_END_S)


def test_sip_connections_take_handles_too() -> None:
    capacity = Capacity(legs=30, handles=64)
    assert capacity.room_for_leg(EngineLoad(20, sip_handles=1), 0.0)
    assert not capacity.room_for_leg(EngineLoad(20, sip_handles=20), 0.0)


def test_a_probe_needs_the_sockets_of_its_legs() -> None:
    capacity = Capacity(legs=3, handles=64)
    assert capacity.room_for_probe(EngineLoad(0), 0.0)
    assert capacity.room_for_probe(EngineLoad(0, ended=(0.0,) * (ROOM - 3)), 0.1)
    assert not capacity.room_for_probe(EngineLoad(0, ended=(0.0,) * (ROOM - 2)), 0.1)


def test_the_gate_turns_a_caller_away_while_sockets_are_held() -> None:
    gate = admission()
    busy = EngineLoad(0, ended=(5.0,) * (ROOM - 1))
    assert gate.screen(TRUNK, "a", busy, 5.1) is Screening.FULL
    assert gate.screen(TRUNK, "b", busy, 5.0 + HELD_AFTER_END_S + 0.01) is Screening.ADMIT


def test_the_gate_sorts_strangers_floods_full_and_stopping() -> None:
    gate = admission(per_minute=2)
    assert gate.screen("203.0.113.9", "x", legs(0), 0.0) is Screening.STRANGER
    assert gate.screen(TRUNK, "a", legs(0), 0.0) is Screening.ADMIT
    assert gate.screen(TRUNK, "b", legs(3), 0.0) is Screening.FULL
    assert gate.screen(TRUNK, "c", legs(0), 0.0) is Screening.FLOOD
    assert gate.refused.per_minute(0.5) == 2  # the stranger and the flood: counted only
    assert gate.screen(TRUNK, "d", legs(0), 61.0) is Screening.ADMIT
    assert gate.refused.per_minute(61.0) == 0  # a minute later
    gate.accepting = False
    assert gate.screen(TRUNK, "e", legs(0), 61.0) is Screening.STOPPING


def test_a_retransmitted_invite_turned_away_is_one_caller() -> None:
    gate = admission()
    assert gate.screen(TRUNK, "a", legs(3), 0.0) is Screening.FULL
    assert gate.screen(TRUNK, "a", legs(3), 0.5) is Screening.REPEAT
    assert gate.screen(TRUNK, "a", legs(3), 40.0) is Screening.FULL  # long after: a new attempt


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
    assert intake.verdict(the_plan, EngineLoad(legs), 0.0, Capacity(3)) == verdict


def test_a_caller_let_in_with_no_socket_to_ring_is_refused_for_capacity() -> None:
    held = EngineLoad(1, ended=(0.0,) * (ROOM - 1))  # its own leg, and legs ended just now
    refused = CallRefused(intake.Refusal.OVER_CAPACITY, 503, 42, 30)
    wheel = Capacity(3, WHEEL_HANDLES)
    assert intake.verdict(plan(ring("office")), held, 0.1, wheel) == refused
    assert intake.verdict(plan(ring("office")), held, 1.0, wheel) == CallAdmitted()


def test_an_engine_that_does_not_say_its_handles_counts_legs_only() -> None:
    held = EngineLoad(1, ended=(0.0,) * 100)
    assert intake.verdict(plan(ring("office")), held, 0.1, Capacity(3)) == CallAdmitted()


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
