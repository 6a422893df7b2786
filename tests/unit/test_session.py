"""Whole calls pushed through CallSession in memory: outcome by outcome, timer by timer."""

from __future__ import annotations

from typing import Any

import pytest
from callcore import CallDriver, plan, ring, voicemail
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.actions import (
    Bridge,
    Cancel,
    HangUp,
    HangUpCaller,
    Notify,
    Refuse,
    Ring,
    SendRinging,
    StartVoicemail,
)
from gateway.core.causes import FAILURES, Outcome, classify, over_capacity, response_for
from gateway.core.events import LegAnswered, LegEnded, LegFailed, LegProgress, VoicemailEnded
from gateway.core.plan import Dial, Plan, RingMode, RingPlan
from gateway.core.session import CallState
from gateway.core.step import StepRun

# One SIP answer per failure outcome, as a phone network would send it.
ANSWER_FOR = {
    Outcome.UNASSIGNED: (404, None),
    Outcome.BUSY: (486, None),
    Outcome.NO_ANSWER: (480, None),
    Outcome.REJECTED: (603, None),
    Outcome.UNREACHABLE: (503, None),
    Outcome.FAILED: (488, None),
}


def started(*steps: object) -> CallDriver:
    call = CallDriver(plan(*steps))  # type: ignore[arg-type]
    call.start()
    return call


# -- the start ---------------------------------------------------------------------


def test_start_sends_ringback_and_rings_the_first_step() -> None:
    call = CallDriver(plan(ring("office"), voicemail()))
    actions = call.start()
    kinds = [type(a) for a in actions if not isinstance(a, Notify)]
    assert kinds == [Ring, SendRinging]  # the INVITE leaves first: the caller waits on it
    assert call.ring_legs() == ["office"]
    assert call.events() == ["call.incoming", "call.step"]
    assert call.event("call.incoming") == {
        "call_id": "call-1",
        "caller": "+3225551234",
        "called": "+3225550100",
        "route": "main-line",
    }
    assert call.event("call.step") == {
        "call_id": "call-1",
        "step": 0,
        "kind": "ring",
        "targets": ["office"],
    }
    (ring_action,) = [a for a in actions if isinstance(a, Ring)]
    assert ring_action.target.number == "+32470000001"
    assert call.session.next_deadline() == call.now + 20.0


def test_empty_plan_is_refused_at_once() -> None:
    call = started()
    assert call.rung() == []
    assert call.refusal() == Refuse(*response_for(Outcome.UNREACHABLE))
    assert call.event("call.ended")["result"] == "failed"
    assert call.session.next_deadline() is None


# -- failover ----------------------------------------------------------------------


def test_unassigned_fails_over_in_the_same_handle_call() -> None:
    call = started(ring("office", failover_on=["unassigned"]), ring("anna"))
    actions = call.fail("office", 404, "Q.850;cause=1")
    # Zero added latency: the next INVITE leaves with the 404's own handling.
    assert call.ring_legs(actions) == ["anna"]
    assert call.events(actions) == ["call.leg", "call.failover", "call.step"]
    assert call.event("call.failover") == {
        "call_id": "call-1",
        "from": ["office"],
        "to": ["anna"],
        "outcome": "unassigned",
        "sip_code": 404,
        "q850": 1,
    }
    assert call.all_events("call.leg")[0] == {
        "call_id": "call-1",
        "leg": call.leg("office"),
        "target": "office",
        "outcome": "unassigned",
        "sip_code": 404,
        "q850": 1,
        "rang": False,
    }
    assert call.all_events("call.step")[-1]["step"] == 1
    assert call.cancelled(actions) == []  # the failed leg is over already


def test_480_with_cause_1_is_a_dead_number_not_no_answer() -> None:
    call = started(ring("office", failover_on=["unassigned"]), ring("anna"))
    call.fail("office", 480, "Q.850;cause=1")
    assert call.rung() == ["office", "anna"]


@pytest.mark.parametrize("outcome", sorted(FAILURES))
def test_every_listed_outcome_fails_over(outcome: Outcome) -> None:
    call = started(ring("office", failover_on=[outcome]), ring("anna"))
    status, reason = ANSWER_FOR[outcome]
    actions = call.fail("office", status, reason)
    assert call.ring_legs(actions) == ["anna"]
    assert call.event("call.failover")["outcome"] == outcome.value
    assert call.state is CallState.RINGING


@pytest.mark.parametrize("outcome", sorted(FAILURES))
def test_an_outcome_not_listed_refuses_the_caller(outcome: Outcome) -> None:
    others = FAILURES - {outcome}
    call = started(ring("office", failover_on=others), ring("anna"))
    status, reason = ANSWER_FOR[outcome]
    actions = call.fail("office", status, reason)
    code, cause = response_for(outcome)
    assert call.rung() == ["office"]
    assert [a for a in actions if isinstance(a, Refuse)] == [Refuse(code, cause)]
    assert call.events(actions) == ["call.leg", "call.ended"]
    ended = call.event("call.ended")
    assert ended["result"] == "failed"
    assert (ended["outcome"], ended["sip_code"], ended["q850"]) == (outcome.value, code, cause)


def test_the_caller_hears_the_legs_own_q850_cause() -> None:
    call = started(ring("office", failover_on=["unassigned"]))
    call.fail("office", 503, "Q.850;cause=17")
    # busy (from the cause) is not listed: refused as busy, with the network's cause
    assert call.refusal() == Refuse(486, 17)


def test_a_cause_the_table_does_not_know_is_passed_on() -> None:
    call = started(ring("office", failover_on=["unassigned"]))
    call.fail("office", 500, "Q.850;cause=50")
    assert call.refusal() == Refuse(500, 50)
    assert call.event("call.ended")["outcome"] == "failed"


def test_a_decline_with_normal_clearing_is_refused_as_a_decline() -> None:
    # Some gateways put cause 16 on a 603: the status says how the leg ended.
    call = started(ring("office", failover_on=["unassigned"]), ring("anna"))
    call.fail("office", 603, "Q.850;cause=16")
    assert call.rung() == ["office"]
    assert call.refusal() == Refuse(603, 16)
    assert call.event("call.ended")["outcome"] == "rejected"


def test_all_steps_fail_refuses_exactly_once_with_the_last_outcome() -> None:
    call = started(ring("office"), ring("anna", "desk"), ring("ben"))
    call.fail("office", 404)
    call.fail("anna", 486)
    call.fail("desk", 404)
    assert call.rung() == ["office", "anna", "desk", "ben"]
    call.fail("ben", 480)
    assert call.refusal() == Refuse(480, 19)
    assert call.event("call.ended")["outcome"] == "no_answer"
    failovers = call.all_events("call.failover")
    assert [(f["from"], f["to"], f["outcome"]) for f in failovers] == [
        (["office"], ["anna", "desk"], "unassigned"),
        (["anna", "desk"], ["ben"], "busy"),
        (["ben"], None, "no_answer"),
    ]
    assert call.caller_got() == [SendRinging(), Refuse(480, 19)]


def test_failover_to_nowhere_is_reported_before_the_refusal() -> None:
    call = started(ring("office"))
    actions = call.fail("office", 404, "Q.850;cause=1")
    assert call.events(actions) == ["call.leg", "call.failover", "call.ended"]
    assert call.event("call.failover")["to"] is None
    assert call.refusal() == Refuse(404, 1)


def test_a_last_leg_not_rung_for_want_of_capacity_tells_the_caller_to_retry() -> None:
    call = started(ring("office", failover_on=["unassigned"]), ring("anna"))
    call.fail("office", 404)
    over = over_capacity()
    call.send(LegFailed(call.leg("anna"), over.outcome, over.sip_code, over.q850))
    assert call.refusal() == Refuse(503, 42, 30)


def test_a_far_end_congested_is_no_reason_to_say_retry_after() -> None:
    call = started(ring("office"))
    call.fail("office", 503, "Q.850;cause=42")
    assert call.refusal() == Refuse(503, 42)


# -- timers ------------------------------------------------------------------------


def test_ring_timeout_cancels_and_is_no_answer() -> None:
    call = started(ring("office", timeout=20, failover_on=["unassigned"]))
    call.progress("office", 180)
    assert call.advance(19.9) == []
    actions = call.advance(0.1)
    assert call.cancelled(actions) == ["office"]
    assert call.leg_outcomes() == [("office", "no_answer")]
    assert call.refusal() == Refuse(480, 19)
    assert call.event("call.ended")["duration"] == 20.0


def test_a_timeout_fails_over_like_a_480() -> None:
    call = started(ring("office", timeout=20), ring("anna", timeout=10))
    call.progress("office", 180)
    actions = call.timer()
    assert call.cancelled(actions) == ["office"]
    assert call.ring_legs(actions) == ["anna"]
    assert call.event("call.failover")["outcome"] == "no_answer"
    assert call.session.next_deadline() == call.now + 10


def test_nothing_heard_at_all_is_unreachable() -> None:
    call = started(ring("office", timeout=20, failover_on=[]))
    call.advance(20)
    assert call.leg_outcomes() == [("office", "unreachable")]
    assert call.refusal() == Refuse(503, 41)


def test_100_trying_then_timeout_is_no_answer() -> None:
    call = started(ring("office", timeout=20, failover_on=[]))
    call.progress("office", 100)
    call.advance(20)
    assert call.leg_outcomes() == [("office", "no_answer")]


def test_an_announcement_in_early_media_is_cut_short() -> None:
    call = started(ring("office", timeout=20, early_media_timeout=5), ring("anna"))
    call.advance(2)
    call.progress("office", 183, early_media=True)
    assert call.session.next_deadline() == call.now + 5
    call.advance(3)
    call.progress("office", 183, early_media=True)  # a second 183 does not extend it
    actions = call.advance(2)
    assert call.now == 1007
    assert call.cancelled(actions) == ["office"]
    assert call.ring_legs(actions) == ["anna"]
    assert call.leg_outcomes() == [("office", "no_answer")]
    assert all(not isinstance(a, Bridge) for a in call.actions)  # never heard


def test_early_media_timeout_never_outlasts_the_ring_timeout() -> None:
    call = started(ring("office", timeout=10, early_media_timeout=8), ring("anna"))
    call.advance(5)
    call.progress("office", 183, early_media=True)
    assert call.session.next_deadline() == 1010


def test_ringing_after_early_media_lifts_the_early_media_bound() -> None:
    call = started(ring("office", timeout=20, early_media_timeout=5), ring("anna"))
    call.progress("office", 183, early_media=True)
    call.advance(1)
    call.progress("office", 180)
    assert call.advance(5) == []
    call.progress("office", 183, early_media=True)  # media after ringing: still a phone
    assert call.session.next_deadline() == 1020


def test_183_without_sdp_arms_no_early_media_bound() -> None:
    call = started(ring("office", timeout=20, early_media_timeout=5))
    call.progress("office", 183)
    assert call.session.next_deadline() == 1020


def test_early_media_timeout_of_zero_gives_up_at_once() -> None:
    call = CallDriver(plan(ring("office", early_media_timeout=0), ring("anna")), now=0.0)
    call.start()
    call.progress("office", 183, early_media=True)
    assert call.session.next_deadline() == 0.0
    assert call.ring_legs(call.timer()) == ["anna"]


def test_a_timer_before_its_deadline_does_nothing() -> None:
    call = started(ring("office", timeout=20))
    assert call.session.handle_timer(call.now + 1) == []
    assert call.session.open_legs == (call.leg("office"),)


# -- answers -----------------------------------------------------------------------


def test_answer_bridges_the_caller() -> None:
    call = started(ring("office"), voicemail())
    call.progress("office", 180)
    actions = call.answer("office")
    assert actions[-2:] == [
        Bridge(call.leg("office")),
        Notify("call.answered", {"call_id": "call-1", "target": "office"}),
    ]
    assert call.leg_outcomes() == [("office", "answered")]
    assert call.state is CallState.BRIDGED
    assert call.session.next_deadline() is None


def test_ring_all_first_answer_wins_the_others_are_cancelled() -> None:
    call = started(ring("office", "anna", "desk"))
    assert call.rung() == ["office", "anna", "desk"]
    call.progress("anna", 180)
    call.progress("desk", 183, early_media=True)
    actions = call.answer("anna")
    assert call.cancelled(actions) == ["office", "desk"]
    assert [a for a in actions if isinstance(a, Bridge)] == [Bridge(call.leg("anna"))]
    assert call.leg_outcomes() == [
        ("anna", "answered"),
        ("office", "cancelled"),
        ("desk", "cancelled"),
    ]
    # The 487s that answer our CANCELs change nothing.
    assert call.fail("office", 487) == []
    assert call.fail("desk", 487, "Q.850;cause=16") == []


def test_a_200_crossing_our_cancel_is_hung_up() -> None:
    call = started(ring("office", "anna"))
    call.answer("office")
    assert call.hung_up(call.answer("anna")) == ["anna"]
    assert call.state is CallState.BRIDGED
    assert call.caller_got()[-1] == Bridge(call.leg("office"))


def test_a_200_crossing_a_timeout_cancel_is_hung_up_while_the_next_step_rings() -> None:
    call = started(ring("office", timeout=20), ring("anna"))
    call.progress("office", 180)
    call.timer()
    assert call.hung_up(call.answer("office")) == ["office"]
    assert call.state is CallState.RINGING
    call.answer("anna")
    assert call.caller_got()[-1] == Bridge(call.leg("anna"))


def test_ring_all_every_leg_fails_the_most_telling_outcome_speaks() -> None:
    call = started(ring("office", "anna", "desk", failover_on=["unreachable"]), ring("ben"))
    assert call.events(call.fail("office", 404)) == ["call.leg"]  # the others still ring
    call.fail("anna", 486)
    actions = call.fail("desk", 503)
    # busy beats unassigned and unreachable: a person was there.
    assert call.ring_legs(actions) == []
    assert call.refusal() == Refuse(486, 17)


def test_ring_all_most_telling_outcome_decides_the_failover() -> None:
    call = started(ring("office", "anna", failover_on=["no_answer"]), ring("ben"))
    call.progress("anna", 180)
    call.fail("office", 404)
    actions = call.timer()
    assert call.ring_legs(actions) == ["ben"]
    failover = call.event("call.failover")
    assert (failover["from"], failover["outcome"]) == (["office", "anna"], "no_answer")


def test_ring_all_timeout_cancels_every_open_leg_together() -> None:
    call = started(ring("office", "anna", timeout=15), ring("ben"))
    call.progress("office", 100)
    actions = call.timer()
    assert call.cancelled(actions) == ["office", "anna"]
    assert call.ring_legs(actions) == ["ben"]
    # office was heard from (no_answer), anna never was (unreachable)
    assert call.leg_outcomes() == [("office", "no_answer"), ("anna", "unreachable")]
    assert call.event("call.failover")["outcome"] == "no_answer"


# -- ring_each ---------------------------------------------------------------------


def test_ring_each_rings_in_turn_each_with_its_own_timeout() -> None:
    call = started(
        ring("office", "anna", "desk", mode=RingMode.EACH, timeout=10), ring("ben", timeout=5)
    )
    assert call.rung() == ["office"]
    call.progress("office", 180)
    call.advance(4)
    assert call.ring_legs(call.fail("office", 486)) == ["anna"]
    assert call.session.next_deadline() == 1014  # anna's own 10 s
    assert call.events(call.last) == ["call.leg"]  # same step: no failover yet
    call.progress("anna", 180)
    assert call.ring_legs(call.advance(10)) == ["desk"]
    assert call.ring_legs(call.fail("desk", 404)) == ["ben"]
    failover = call.event("call.failover")
    assert failover["from"] == ["office", "anna", "desk"]
    assert (failover["outcome"], failover["sip_code"]) == ("unassigned", 404)
    call.answer("ben")
    assert call.rung() == ["office", "anna", "desk", "ben"]
    assert call.caller_got()[-1] == Bridge(call.leg("ben"))


def test_ring_each_stops_on_an_outcome_not_listed() -> None:
    call = started(
        ring("office", "anna", mode=RingMode.EACH, failover_on=["unassigned"]), ring("ben")
    )
    call.fail("office", 603)
    assert call.rung() == ["office"]
    assert call.refusal() == Refuse(603, 21)


def test_ring_each_answer_bridges() -> None:
    call = started(ring("office", "anna", mode=RingMode.EACH))
    call.fail("office", 404)
    call.answer("anna")
    assert call.state is CallState.BRIDGED
    assert call.cancelled(call.actions) == []


# -- the caller leaves -------------------------------------------------------------


def test_caller_hangs_up_while_ringing() -> None:
    call = started(ring("office", "anna", "desk"), voicemail())
    call.fail("desk", 486)
    call.advance(3.5)
    actions = call.caller_hangs_up()
    assert call.cancelled(actions) == ["office", "anna"]
    assert not any(isinstance(a, Refuse | StartVoicemail) for a in call.actions)
    ended = call.event("call.ended")
    assert (ended["result"], ended["outcome"], ended["duration"]) == ("abandoned", None, 3.5)
    assert call.session.next_deadline() is None
    # The 487s and a 200 that crossed the CANCEL:
    assert call.fail("office", 487) == []
    assert call.hung_up(call.answer("anna")) == ["anna"]
    assert call.session.handle_timer(call.now + 100) == []


def test_bridged_then_caller_hangs_up() -> None:
    call = started(ring("office"))
    call.answer("office")
    call.advance(60)
    actions = call.caller_hangs_up()
    assert call.hung_up(actions) == ["office"]
    ended = call.event("call.ended")
    assert (ended["result"], ended["duration"]) == ("answered", 60.0)


@pytest.mark.parametrize("how", ["bye", "failed"])
def test_bridged_then_the_leg_hangs_up(how: str) -> None:
    call = started(ring("office"))
    call.answer("office")
    leg = call.leg("office")
    event = LegEnded(leg) if how == "bye" else LegFailed(leg, Outcome.UNREACHABLE)
    actions = call.send(event)
    assert actions[0] == HangUpCaller()
    assert call.event("call.ended")["result"] == "answered"


def test_bridged_ignores_news_of_the_other_legs() -> None:
    call = started(ring("office", "anna"))
    call.answer("office")
    anna = call.leg("anna")
    assert call.send(LegEnded(anna)) == []
    assert call.send(LegFailed(anna, Outcome.FAILED, 487)) == []
    assert call.send(LegProgress(anna, 180)) == []
    assert call.send(VoicemailEnded("hangup", stored=True)) == []
    assert call.state is CallState.BRIDGED


# -- voicemail ---------------------------------------------------------------------


def test_voicemail_after_every_ring_failed() -> None:
    call = started(ring("office", "anna"), ring("desk"), voicemail("main"))
    call.fail("office", 404)
    call.fail("anna", 486)
    actions = call.fail("desk", 480)
    (start,) = [a for a in actions if isinstance(a, StartVoicemail)]
    assert start.box == "main"
    for words in ("office unassigned", "anna busy", "desk no answer"):
        assert words in start.why
    assert call.all_events("call.failover")[-1]["to"] == ["voicemail:main"]
    assert call.all_events("call.step")[-1] == {
        "call_id": "call-1",
        "step": 2,
        "kind": "voicemail",
        "targets": ["voicemail:main"],
    }
    assert call.state is CallState.VOICEMAIL
    assert call.session.next_deadline() is None
    assert call.caller_hangs_up() == []  # the recorder finishes and reports
    call.advance(30)
    ended = call.voicemail_ends("hangup")
    assert call.events(ended) == ["call.ended"]
    assert call.event("call.ended")["result"] == "voicemail"
    assert call.caller_got() == [SendRinging(), start]


def test_voicemail_first_says_no_one_was_rung() -> None:
    call = started(voicemail("after-hours"))
    assert call.rung() == []
    assert call.caller_got()[-1] == StartVoicemail("after-hours", "no one to ring")


def test_a_late_answer_during_voicemail_is_hung_up() -> None:
    call = started(ring("office", timeout=5), voicemail())
    call.timer()
    assert call.state is CallState.VOICEMAIL
    assert call.hung_up(call.answer("office")) == ["office"]
    assert call.fail("office", 487) == []


# -- after the end -----------------------------------------------------------------


def test_after_the_end_only_a_late_answer_gets_an_action() -> None:
    call = started(ring("office", "anna", failover_on=[]))
    call.fail("office", 603)
    call.progress("anna", 180)  # anna still rings: the step waits for her
    call.fail("anna", 404)
    assert call.state is CallState.ENDED
    office, anna = call.leg("office"), call.leg("anna")
    for event in (
        LegProgress(anna, 180),
        LegFailed(anna, Outcome.BUSY),
        LegEnded(anna),
        VoicemailEnded("hangup", stored=True),
    ):
        assert call.send(event) == []
    assert call.caller_hangs_up() == []
    assert call.send(LegAnswered(office)) == [HangUp(office)]
    assert call.session.handle_timer(call.now + 1000) == []
    assert call.session.next_deadline() is None


def test_news_of_a_leg_nobody_rang_is_ignored() -> None:
    call = started(ring("office"))
    assert call.send(LegFailed("call-1/99", Outcome.BUSY)) == []
    assert call.send(LegProgress("call-1/99", 180)) == []
    assert call.session.open_legs == (call.leg("office"),)


def test_legs_are_kept_for_the_call_log() -> None:
    call = started(ring("office"), ring("anna"))
    call.fail("office", 404)
    call.answer("anna")
    legs = call.session.legs
    assert [(leg.target.name, leg.step, leg.outcome) for leg in legs] == [
        ("office", 0, Outcome.UNASSIGNED),
        ("anna", 1, Outcome.ANSWERED),
    ]
    assert call.session.answered_leg == call.leg("anna")
    assert isinstance(call.last[-2], Bridge)
    assert not any(isinstance(a, Cancel) for a in call.actions)


def test_a_step_run_with_no_ended_leg_has_no_outcome() -> None:
    run = StepRun(ring("office", "anna"), now=0.0)
    assert (run.outcome(), run.outcome_leg(), run.next_deadline()) == (None, None, None)


# -- any call at all -----------------------------------------------------------------

STATUSES = [404, 480, 486, 487, 488, 503, 603, 408]
REASONS = [None, "Q.850;cause=1", "Q.850;cause=16", "Q.850;cause=17", "Q.850;cause=999"]

ring_steps = st.builds(
    lambda names, mode, timeout, early, failover_on: ring(
        *names, mode=mode, timeout=timeout, early_media_timeout=early, failover_on=failover_on
    ),
    st.lists(
        st.sampled_from(["office", "anna", "desk", "ben"]), min_size=1, max_size=3, unique=True
    ),
    st.sampled_from(list(RingMode)),
    st.floats(1, 30),
    st.floats(0, 10),
    st.frozensets(st.sampled_from(sorted(FAILURES))),
)
plans = st.builds(
    lambda steps, box: plan(*steps, *([voicemail()] if box else [])),
    st.lists(ring_steps, max_size=3),
    st.booleans(),
)
network = st.lists(
    st.one_of(
        st.tuples(
            st.just("progress"), st.integers(0, 9), st.sampled_from([100, 180, 183]), st.booleans()
        ),
        st.tuples(
            st.just("fail"), st.integers(0, 9), st.sampled_from(STATUSES), st.sampled_from(REASONS)
        ),
        st.tuples(st.just("answer"), st.integers(0, 9)),
        st.tuples(st.just("leg_bye"), st.integers(0, 9)),
        st.tuples(st.just("caller_bye")),
        st.tuples(st.just("vm_end")),
        st.tuples(st.just("advance"), st.floats(0, 15)),
    ),
    max_size=20,
)


def play(call: CallDriver, step: tuple[Any, ...]) -> None:
    """One thing the network or the caller does, mostly about an open leg."""
    kind, *args = step
    if kind == "advance":
        call.advance(args[0])
    elif kind == "caller_bye":
        call.caller_hangs_up()
    elif kind == "vm_end":
        call.voicemail_ends()
    elif leg := pick_leg(call, args[0]):
        if kind == "progress":
            call.send(LegProgress(leg, args[1], early_media=args[2]))
        elif kind == "fail":
            classified = classify(args[1], args[2])
            call.send(LegFailed(leg, classified.outcome, args[1], classified.q850))
        elif kind == "answer":
            call.send(LegAnswered(leg))
        else:
            call.send(LegEnded(leg))


def pick_leg(call: CallDriver, index: int) -> str | None:
    """An open leg (7 times in 10 when there is one), else late news about any leg."""
    open_legs, legs = call.session.open_legs, list(call.targets)
    if open_legs and index < 7:
        return open_legs[index % len(open_legs)]
    return legs[index % len(legs)] if legs else None


@settings(max_examples=200, deadline=None)
@given(call_plan=plans, steps=network)
def test_any_call_keeps_the_invariants_and_ends_by_its_timers(
    call_plan: Plan, steps: list[tuple[Any, ...]]
) -> None:
    # The driver checks, after every step: the caller answered at most once,
    # every leg given up is CANCELled exactly once, a timer whenever a leg rings,
    # nothing but BYEs for late answers after the end.
    call = CallDriver(call_plan)
    call.start()
    for step in steps:
        play(call, step)
    for _ in range(20):  # no one answers any more: the timers alone end the ringing
        if call.state is not CallState.RINGING:
            break
        call.timer()
    assert call.state is not CallState.RINGING
    ended = call.all_events("call.ended")
    if call.state is CallState.ENDED:
        (data,) = ended
        answers = [a for a in call.actions if isinstance(a, Refuse | Bridge | StartVoicemail)]
        assert data["result"] in {"answered", "voicemail", "failed", "abandoned"}
        assert (data["result"] == "abandoned") == (answers == [])
    else:
        assert ended == []
    assert len(call.all_events("call.leg")) == len(set(call.targets) - set(call.session.open_legs))


def test_a_leg_that_rang_says_so_for_health_evidence() -> None:
    # Health tells "a phone that did not answer" from "a number that reaches
    # nothing" by whether the leg ever rang.
    call = CallDriver(plan(ring("office", timeout=20), ring("anna")))
    call.start()
    call.progress("office", 180)
    call.fail("office", 486)
    assert call.all_events("call.leg")[0]["rang"] is True
    call.fail("anna", 404, "Q.850;cause=1")
    assert call.all_events("call.leg")[-1]["rang"] is False


def test_closed_with_no_voicemail_says_not_now_rather_than_failure() -> None:
    call = CallDriver(Plan(route="main-line", steps=(), mode="closed"))
    call.arrive()
    assert call.refusal() == Refuse(480, 31)
    assert call.event("call.ended")["result"] == "refused"
    assert call.event("call.ended")["reason"] == "closed"


def test_nothing_left_to_ring_in_normal_mode_is_unreachable() -> None:
    call = CallDriver(Plan(route="main-line", steps=()))
    call.start()
    assert call.refusal() == Refuse(503, 41)


def test_voicemail_says_which_dead_targets_were_skipped() -> None:
    anna = RingPlan(RingMode.ONE, (Dial("anna", number="+32480000002"),))
    call = CallDriver(Plan("main-line", (anna, voicemail("main")), skipped=("office",)))
    call.start()
    call.fail("anna", 486)
    (start,) = [a for a in call.actions if isinstance(a, StartVoicemail)]
    assert start.why == "office known dead (skipped), anna busy"
