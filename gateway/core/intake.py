"""The intake: the fate of a trunk's call before its plan runs.

Every INVITE from the trunk becomes a call session, and its first event is
the intake's verdict: ``CallAdmitted`` (run the plan) or ``CallRefused``
with the reason. A refused call ends like any other: ``Refuse`` to the
caller and ``call.ended`` (result ``refused``, with the reason), so the call
log and the call-back list see it. Pure: the adapter passes the plan (None
when no route takes the called number) and the legs in use.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from gateway.core.admission import Screening
from gateway.core.causes import CONGESTION_Q850, RETRY_AFTER_S
from gateway.core.events import CallAdmitted, CallRefused
from gateway.core.plan import Plan, VoicemailPlan

if TYPE_CHECKING:
    from gateway.core.admission import Capacity, EngineLoad

CLOSED_Q850 = 31  # "normal, unspecified": the business is closed, nothing failed
STATELESS_CODE = 480  # what pjsua's account selection answers when it finds no account


class Refusal(StrEnum):
    """Why the gateway refused a caller (``reason`` in ``call.ended``)."""

    NO_ROUTE = "no_route"  # no route serves the called number
    CLOSED = "closed"  # mode ``closed`` and no voicemail to take the call
    OVER_CAPACITY = "over_capacity"  # no call leg for the caller or for a ring
    STOPPING = "stopping"  # the gateway is shutting down


def verdict(
    plan: Plan | None, load: EngineLoad, now: float, capacity: Capacity
) -> CallAdmitted | CallRefused:
    """The fate of a call whose inbound leg exists (``load`` counts it).

    Args:
        plan: the plan of the route that takes the call, None for no route.
        load: what the engine holds now, this call's own leg included.
        now: the loop's clock (held sockets expire on it).
        capacity: how the engine's legs and sockets are shared.
    """
    if plan is None:
        return CallRefused(Refusal.NO_ROUTE, 404, 1)
    if not plan.steps and plan.mode == "closed":
        # Closed on purpose and no voicemail: "not now", not the 503 of a
        # gateway that failed to reach anyone.
        return CallRefused(Refusal.CLOSED, 480, CLOSED_Q850)
    if not capacity.room_for_leg(load, now) and not _has_voicemail(plan):
        # Nothing to ring with and no voicemail to fall back on. With a
        # voicemail step the rings fail at once and the caller leaves a
        # message: voicemail needs no leg of its own.
        return CallRefused(Refusal.OVER_CAPACITY, 503, CONGESTION_Q850, RETRY_AFTER_S)
    return CallAdmitted()


def turned_away(screening: Screening) -> CallRefused:
    """The verdict on a trunk caller the gate turned away (answered 480, statelessly)."""
    reason = Refusal.STOPPING if screening is Screening.STOPPING else Refusal.OVER_CAPACITY
    return CallRefused(reason, STATELESS_CODE, None, answered=True)


def _has_voicemail(plan: Plan) -> bool:
    return any(isinstance(step, VoicemailPlan) for step in plan.steps)
