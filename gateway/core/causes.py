"""How a leg ended: a SIP final response (and its Reason header) to an Outcome.

The table is DESIGN.md's "Outcomes". A ``Reason: Q.850;cause=N`` header
(RFC 3326) wins over the status code, because operators often wrap an ISUP
release cause in a generic SIP code: "480 + cause=1" is an unassigned number,
not a phone that did not answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache


class Outcome(StrEnum):
    """How one leg ended, in the words the rules use (``failover_on``)."""

    ANSWERED = "answered"
    UNASSIGNED = "unassigned"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"
    FAILED = "failed"


FAILURES: frozenset[Outcome] = frozenset(Outcome) - {Outcome.ANSWERED}
CONGESTION_Q850 = 42  # "switching equipment congestion": the gateway's own capacity
RETRY_AFTER_S = 30  # told to a caller the gateway turns away for capacity

_BY_STATUS: dict[int, Outcome] = {
    404: Outcome.UNASSIGNED,
    604: Outcome.UNASSIGNED,
    485: Outcome.UNASSIGNED,
    410: Outcome.UNASSIGNED,
    484: Outcome.UNASSIGNED,
    486: Outcome.BUSY,
    600: Outcome.BUSY,
    480: Outcome.NO_ANSWER,
    408: Outcome.NO_ANSWER,
    403: Outcome.REJECTED,
    603: Outcome.REJECTED,
}

_BY_Q850: dict[int, Outcome] = {
    16: Outcome.ANSWERED,
    **dict.fromkeys((1, 2, 3, 22, 28), Outcome.UNASSIGNED),
    17: Outcome.BUSY,
    **dict.fromkeys((18, 19, 20, 31), Outcome.NO_ANSWER),
    21: Outcome.REJECTED,
    **dict.fromkeys((27, 34, 38, 41, 42, 47, 102), Outcome.UNREACHABLE),
}

# What we send back to the caller when every step has failed, per outcome:
# (SIP status, Q.850 cause). RFC 3398 section 8.2.6.1 maps the other way; these
# are its usual inverse choices.
_TO_CALLER: dict[Outcome, tuple[int, int]] = {
    Outcome.UNASSIGNED: (404, 1),
    Outcome.BUSY: (486, 17),
    Outcome.NO_ANSWER: (480, 19),
    Outcome.REJECTED: (603, 21),
    Outcome.UNREACHABLE: (503, 41),
    Outcome.FAILED: (500, 31),
}

# RFC 3326: Reason = "Reason" HCOLON reason-value *(COMMA reason-value);
# reason-value = protocol *(SEMI reason-params). Several values may be present
# (one per protocol); we want the Q.850 one.
_Q850_VALUE = re.compile(r"(?:^|,)\s*Q\.850\s*((?:;[^,]*)*)", re.IGNORECASE)
_CAUSE_PARAM = re.compile(r";\s*cause\s*=\s*(\d{1,3})\b", re.IGNORECASE)
# A quoted-string (RFC 3261 25.1), e.g. text="Unallocated, unassigned": its commas
# and semicolons are text, not separators. An unclosed one runs to the end.
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)


@dataclass(frozen=True, slots=True)
class Classified:
    """An outcome with the evidence it came from."""

    outcome: Outcome
    sip_code: int | None
    q850: int | None


def q850_cause(reason_header: str | None) -> int | None:
    """Return the Q.850 cause of a Reason header value, or None.

    Args:
        reason_header: the header's value (without ``Reason:``), or None.

    Returns:
        The cause number (1..127), or None when there is no valid Q.850 value.
    """
    if not reason_header:
        return None
    for value in _Q850_VALUE.finditer(_QUOTED.sub('""', reason_header)):
        cause = _CAUSE_PARAM.search(value.group(1))
        if cause and 0 < int(cause.group(1)) < 128:
            return int(cause.group(1))
    return None


@lru_cache(maxsize=256)  # read between a leg's final response and the next INVITE
def classify(status: int, reason_header: str | None = None) -> Classified:
    """Classify a SIP final response.

    Args:
        status: the SIP status code of the final response (100..699).
        reason_header: the value of its Reason header, if any.

    Returns:
        The outcome, with the status and the Q.850 cause it was derived from.
    """
    cause = q850_cause(reason_header)
    by_cause = _BY_Q850.get(cause, Outcome.FAILED) if cause is not None else None
    # Only a 2xx answers: cause 16 (normal clearing) on an error response is a
    # release before answer, so the status code says how the leg ended.
    if by_cause is not None and by_cause is not Outcome.ANSWERED and status >= 300:
        return Classified(by_cause, status, cause)
    return Classified(_outcome_of_status(status), status, cause)


def _outcome_of_status(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.ANSWERED
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 500 <= status < 600:
        return Outcome.UNREACHABLE
    return Outcome.FAILED


def failed_locally() -> Classified:
    """A leg that never left: pjsua would not send its INVITE (a URI it cannot
    dial, no transport for it). The target was not reached, so failover
    treats it like any unreachable one."""
    return Classified(Outcome.UNREACHABLE, None, None)


def over_capacity() -> Classified:
    """A leg not rung because no call leg or socket was free: unreachable for
    failover, and the gateway's own congestion (a caller it ends for this is
    told to retry)."""
    return Classified(Outcome.UNREACHABLE, None, CONGESTION_Q850)


def no_final_response(code: int | None) -> Classified:
    """A leg that ended with no final response from the far end: a transport
    failure or timer B (RFC 3261 17.1.1.2); pjsua reports 408 or 503 for those."""
    return Classified(Outcome.UNREACHABLE, code or None, None)


def ring_timed_out(*, heard_anything: bool) -> Outcome:
    """How a leg that ran out of time ended.

    Nothing at all from the next hop is ``unreachable`` (as timer B would say,
    only sooner); anything heard, even an announcement that never ends, is
    ``no_answer``.
    """
    return Outcome.NO_ANSWER if heard_anything else Outcome.UNREACHABLE


def response_for(outcome: Outcome) -> tuple[int, int]:
    """The (SIP status, Q.850 cause) to send a caller whose call ended so.

    Raises:
        ValueError: for ``answered``, which is not a failure.
    """
    if outcome is Outcome.ANSWERED:
        raise ValueError("an answered call is not refused")
    return _TO_CALLER[outcome]


def reason_header(cause: int) -> str:
    """The value of a ``Reason`` header carrying a Q.850 cause (RFC 3326)."""
    return f"Q.850;cause={cause}"
