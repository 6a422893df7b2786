"""The mail retry schedule and the SMTP verdicts, in memory, time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.voicemail.retry import RetryPolicy, RetryState, Step, Verdict, classify_reply

T0 = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (250, Verdict.ACCEPTED),
        (421, Verdict.TEMPORARY),
        (451, Verdict.TEMPORARY),
        (452, Verdict.TEMPORARY),
        (454, Verdict.TEMPORARY),  # temporary authentication failure
        (535, Verdict.CREDENTIALS),
        (530, Verdict.CREDENTIALS),
        (534, Verdict.CREDENTIALS),
        (550, Verdict.PERMANENT),
        (552, Verdict.PERMANENT),
        (554, Verdict.PERMANENT),
        (334, Verdict.TEMPORARY),  # nonsense at the end of a transaction: do not drop
    ],
)
def test_reply_codes_are_classified_like_an_mta(code: int, verdict: Verdict) -> None:
    assert classify_reply(code) is verdict


def test_first_retry_comes_within_a_minute_whatever_the_jitter() -> None:
    policy = RetryPolicy()
    for jitter in (0.0, 0.5, 0.999):
        assert timedelta(seconds=30) <= policy.delay(1, jitter) <= MINUTE


def test_delays_double_then_stop_at_the_cap() -> None:
    policy = RetryPolicy()
    nominal = [policy.delay(n, 1.0) for n in range(1, 10)]
    assert nominal[:5] == [MINUTE, 2 * MINUTE, 4 * MINUTE, 8 * MINUTE, 16 * MINUTE]
    assert nominal[-1] == timedelta(hours=1)
    assert policy.delay(10_000, 1.0) == timedelta(hours=1)


def test_jitter_spreads_a_burst_of_retries() -> None:
    policy = RetryPolicy()
    delays = {policy.delay(4, jitter) for jitter in (0.0, 0.25, 0.5, 0.75)}
    assert len(delays) == 4
    assert min(delays) == 4 * MINUTE


def test_temporary_failure_schedules_a_retry_and_counts_the_attempt() -> None:
    policy = RetryPolicy()
    state = RetryState(queued_at=T0)
    decision = policy.decide(state, Verdict.TEMPORARY, "451 try later", T0, jitter=1.0)
    assert decision.step is Step.RETRY
    assert decision.state.attempts == 1
    assert decision.state.next_attempt_at == T0 + MINUTE
    assert decision.state.last_error == "451 try later"
    assert not decision.state.is_due(T0 + 59 * timedelta(seconds=1))
    assert decision.state.is_due(T0 + MINUTE)


def test_an_outage_is_told_once_then_again_when_its_cause_changes() -> None:
    policy = RetryPolicy()
    first = policy.decide(RetryState(queued_at=T0), Verdict.TEMPORARY, "refused", T0, 0.5)
    again = policy.decide(first.state, Verdict.TEMPORARY, "refused", T0 + MINUTE, 0.5)
    other = policy.decide(again.state, Verdict.TEMPORARY, "451 greylisted", T0 + 3 * MINUTE, 0.5)
    assert (first.alarm, again.alarm, other.alarm) == (True, False, True)
    assert not any(d.permanent for d in (first, again, other))


def test_wrong_credentials_alarm_every_time_and_keep_retrying() -> None:
    policy = RetryPolicy()
    state = RetryState(queued_at=T0)
    for attempt in range(1, 4):
        decision = policy.decide(state, Verdict.CREDENTIALS, "535 bad login", T0, 0.5)
        assert decision.step is Step.RETRY
        assert decision.alarm
        assert not decision.permanent
        assert decision.state.attempts == attempt
        state = decision.state


def test_permanent_refusal_gives_up_at_once() -> None:
    decision = RetryPolicy().decide(RetryState(queued_at=T0), Verdict.PERMANENT, "550 no", T0, 0.5)
    assert decision.step is Step.GIVE_UP
    assert decision.alarm
    assert decision.permanent
    assert decision.state.last_error == "550 no"


def test_acceptance_clears_the_error() -> None:
    state = RetryState(queued_at=T0, attempts=3, next_attempt_at=T0, last_error="refused")
    decision = RetryPolicy().decide(state, Verdict.ACCEPTED, None, T0, 0.5)
    assert decision.step is Step.DONE
    assert decision.state.last_error is None
    assert not decision.alarm


def test_last_retry_is_at_the_expiry_and_failing_then_gives_up() -> None:
    policy = RetryPolicy(lifetime=timedelta(hours=2))
    late = T0 + timedelta(hours=1, minutes=50)
    state = RetryState(queued_at=T0, attempts=8)
    last = policy.decide(state, Verdict.TEMPORARY, "refused", late, jitter=1.0)
    assert last.state.next_attempt_at == T0 + timedelta(hours=2)
    final = policy.decide(last.state, Verdict.TEMPORARY, "refused", T0 + timedelta(hours=2), 1.0)
    assert final.step is Step.GIVE_UP
    assert final.permanent
    assert final.state.last_error == "gave up after 2 h: refused"


def test_a_message_found_after_its_lifetime_is_still_tried_once() -> None:
    policy = RetryPolicy()
    state = RetryState(queued_at=T0)  # the gateway was off for a week
    assert state.is_due(T0 + timedelta(days=7))
    accepted = policy.decide(state, Verdict.ACCEPTED, None, T0 + timedelta(days=7), 0.5)
    assert accepted.step is Step.DONE
    refused = policy.decide(state, Verdict.TEMPORARY, "refused", T0 + timedelta(days=7), 0.5)
    assert refused.step is Step.GIVE_UP
    assert refused.state.last_error == "gave up after 5 days: refused"


def test_a_full_outage_follows_the_documented_schedule() -> None:
    policy = RetryPolicy()
    state, now, delays = RetryState(queued_at=T0), T0, []
    while True:
        decision = policy.decide(state, Verdict.TEMPORARY, "refused", now, jitter=1.0)
        if decision.step is Step.GIVE_UP:
            break
        assert decision.state.next_attempt_at is not None
        delays.append(decision.state.next_attempt_at - now)
        state, now = decision.state, decision.state.next_attempt_at
    assert delays[:7] == [MINUTE * 2**n for n in range(6)] + [timedelta(hours=1)]
    assert now == T0 + timedelta(days=5)
    assert 120 < state.attempts + 1 < 130  # about one an hour for five days


@pytest.mark.parametrize(
    ("first", "cap", "lifetime"),
    [(timedelta(0), MINUTE, MINUTE), (2 * MINUTE, MINUTE, MINUTE), (MINUTE, MINUTE, timedelta(0))],
)
def test_nonsense_policies_are_refused(
    first: timedelta, cap: timedelta, lifetime: timedelta
) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(first=first, cap=cap, lifetime=lifetime)
