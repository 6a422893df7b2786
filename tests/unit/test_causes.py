"""SIP final responses and Reason headers to outcomes (DESIGN.md "Outcomes")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.causes import (
    FAILURES,
    Classified,
    Outcome,
    classify,
    q850_cause,
    reason_header,
    response_for,
)

# Every row of DESIGN.md's outcome table, by status code.
STATUS_ROWS = [
    *[(code, Outcome.ANSWERED) for code in (200, 202, 299)],
    *[(code, Outcome.UNASSIGNED) for code in (404, 604, 485, 410, 484)],
    *[(code, Outcome.BUSY) for code in (486, 600)],
    *[(code, Outcome.NO_ANSWER) for code in (480, 408)],
    *[(code, Outcome.REJECTED) for code in (403, 603)],
    *[(code, Outcome.UNREACHABLE) for code in (500, 502, 503, 504, 501, 580, 599)],
    *[(code, Outcome.FAILED) for code in (400, 401, 415, 487, 488, 606, 699, 302)],
]

# ... and by Q.850 cause, carried on a status that would say something else.
CAUSE_ROWS = [
    *[(cause, Outcome.UNASSIGNED) for cause in (1, 2, 3, 22, 28)],
    (17, Outcome.BUSY),
    *[(cause, Outcome.NO_ANSWER) for cause in (18, 19, 20, 31)],
    (21, Outcome.REJECTED),
    *[(cause, Outcome.UNREACHABLE) for cause in (27, 34, 38, 41, 42, 47, 102)],
    *[(cause, Outcome.FAILED) for cause in (50, 57, 88, 111, 127)],
]


@pytest.mark.parametrize(("status", "outcome"), STATUS_ROWS)
def test_status_without_reason(status: int, outcome: Outcome) -> None:
    assert classify(status) == Classified(outcome, status, None)


@pytest.mark.parametrize(("cause", "outcome"), CAUSE_ROWS)
def test_q850_cause_wins_over_the_status(cause: int, outcome: Outcome) -> None:
    # 400 alone would be "failed": every cause row must override it.
    assert classify(400, f"Q.850;cause={cause}") == Classified(outcome, 400, cause)


@pytest.mark.parametrize(
    ("status", "reason", "outcome"),
    [
        # The operator pitfall: a dead number wrapped in "temporarily unavailable".
        (480, "Q.850;cause=1", Outcome.UNASSIGNED),
        (503, "Q.850;cause=17", Outcome.BUSY),
        (404, 'Q.850;cause=17;text="User busy"', Outcome.BUSY),
        (500, 'Q.850 ; cause = 1 ; text="Unallocated number"', Outcome.UNASSIGNED),
        (500, "q.850;CAUSE=1", Outcome.UNASSIGNED),
        (500, 'Q.850;text="Unallocated";cause=1', Outcome.UNASSIGNED),
        # Several reason values (RFC 3326): the Q.850 one speaks.
        (500, 'SIP;cause=404;text="Not Found", Q.850;cause=17', Outcome.BUSY),
        (500, "Q.850;cause=17, SIP;cause=480", Outcome.BUSY),
    ],
)
def test_reason_header_forms(status: int, reason: str, outcome: Outcome) -> None:
    assert classify(status, reason).outcome is outcome


@pytest.mark.parametrize(
    "reason",
    [
        "",
        "Q.850",
        'Q.850;text="no cause"',
        "Q.850;cause=",
        "Q.850;cause=abc",
        "Q.850;cause=999",
        "Q.850;cause=1000",
        "Q.850;cause=128",
        "Q.850;cause=0",
        "Q.850;cause=-1",
        "Q.850;cause=1x",
        "SIP;cause=404",
        'SIP;cause=486;text="Busy Here"',
        "Q.8501;cause=1",
        "X-Q.850;cause=1",
        'SIP;cause=480;text="see Q.850;cause=1"',
        "garbage ;;; ,,, =",
    ],
)
def test_malformed_reason_falls_back_to_the_status(reason: str) -> None:
    assert q850_cause(reason) is None
    assert classify(480, reason) == Classified(Outcome.NO_ANSWER, 480, None)
    assert classify(503, reason).outcome is Outcome.UNREACHABLE


@pytest.mark.parametrize(
    ("reason", "cause"),
    [
        # Commas and semicolons inside quoted text are text (RFC 3261 25.1).
        ('Q.850;text="Unallocated, unassigned";cause=1', 1),
        ('Q.850;text="a \\" , b";cause=2', 2),
        ('SIP;cause=480;text="see, Q.850;cause=1"', None),
        ('SIP;cause=480;text="x;cause=1"', None),
        ('Q.850;text="never closed, ;cause=3', None),
    ],
)
def test_quoted_text_is_not_parsed_as_parameters(reason: str, cause: int | None) -> None:
    assert q850_cause(reason) == cause


def test_missing_reason_has_no_cause() -> None:
    assert q850_cause(None) is None


@pytest.mark.parametrize("cause", [1, 17, 127])
def test_cause_bounds(cause: int) -> None:
    assert q850_cause(f"Q.850;cause={cause}") == cause


@pytest.mark.parametrize("reason", ["Q.850;cause=17", "Q.850;cause=1", "Q.850;cause=16"])
def test_2xx_is_answered_even_with_a_reason(reason: str) -> None:
    classified = classify(200, reason)
    assert classified.outcome is Outcome.ANSWERED
    assert classified.q850 == q850_cause(reason)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(487, Outcome.FAILED), (603, Outcome.REJECTED), (486, Outcome.BUSY), (480, Outcome.NO_ANSWER)],
)
def test_cause_16_on_an_error_is_not_an_answer(status: int, outcome: Outcome) -> None:
    # Normal clearing before answer: the status says how the leg ended.
    assert classify(status, "Q.850;cause=16") == Classified(outcome, status, 16)


def test_provisional_status_is_not_an_outcome_the_table_knows() -> None:
    assert classify(183, "Q.850;cause=1").outcome is Outcome.FAILED


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (Outcome.UNASSIGNED, (404, 1)),
        (Outcome.BUSY, (486, 17)),
        (Outcome.NO_ANSWER, (480, 19)),
        (Outcome.REJECTED, (603, 21)),
        (Outcome.UNREACHABLE, (503, 41)),
        (Outcome.FAILED, (500, 31)),
    ],
)
def test_response_for_every_failure(outcome: Outcome, expected: tuple[int, int]) -> None:
    assert response_for(outcome) == expected


def test_response_for_covers_every_failure_and_reads_back_the_same() -> None:
    # What we send the caller, classified by the next hop, says the same thing
    # (except "failed", which has no cause of its own in the table).
    for outcome in FAILURES - {Outcome.FAILED}:
        code, cause = response_for(outcome)
        assert classify(code).outcome is outcome
        assert classify(code, reason_header(cause)).outcome is outcome


def test_response_for_answered_raises() -> None:
    with pytest.raises(ValueError, match="not refused"):
        response_for(Outcome.ANSWERED)


def test_reason_header_reads_back() -> None:
    assert reason_header(17) == "Q.850;cause=17"
    assert q850_cause(reason_header(17)) == 17


@given(status=st.integers(300, 699), text=st.text())
def test_classify_never_raises_and_never_answers_an_error(status: int, text: str) -> None:
    classified = classify(status, text)
    assert classified.outcome in FAILURES
    assert classified.sip_code == status
    assert classified.q850 is None or 0 < classified.q850 < 128


@given(
    status=st.integers(300, 699),
    # No comma, dot or quote: "before" is one value, never a Q.850 one, and
    # opens no quoted string that would swallow the rest.
    before=st.text(alphabet=st.characters(blacklist_characters=',."')),
    cause=st.integers(1, 127),
)
def test_a_valid_q850_value_is_found_after_any_other_value(
    status: int, before: str, cause: int
) -> None:
    assert classify(status, f"{before}, Q.850;cause={cause}").q850 == cause
