"""What the network tells a call session (the SIP adapter produces these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from gateway.core.causes import Outcome
    from gateway.core.intake import Refusal


@dataclass(frozen=True, slots=True)
class CallAdmitted:
    """The intake let the trunk's call in: run its plan."""


@dataclass(frozen=True, slots=True)
class CallRefused:
    """The intake refused the trunk's call (gateway/core/intake.py)."""

    reason: Refusal
    sip_code: int
    q850: int | None = None
    retry_after: int | None = None  # seconds, for a Retry-After header (RFC 3261 20.33)
    # pjsua's account selection already answered it (a stateless 480, before
    # any dialog existed): the call is logged, nothing more is sent.
    answered: bool = False


@dataclass(frozen=True, slots=True)
class LegProgress:
    """A provisional response on an outgoing leg (100, 180, 183)."""

    leg: str
    status: int
    early_media: bool = False  # the response carried SDP: the far end plays audio


@dataclass(frozen=True, slots=True)
class LegAnswered:
    """An outgoing leg got a 2xx."""

    leg: str


@dataclass(frozen=True, slots=True)
class LegFailed:
    """An outgoing leg ended before it was answered, classified."""

    leg: str
    outcome: Outcome
    sip_code: int | None = None
    q850: int | None = None
    note: str | None = None  # how it was known without a final response, e.g. the SIT heard


@dataclass(frozen=True, slots=True)
class LegEnded:
    """An answered outgoing leg hung up (BYE from the far end)."""

    leg: str


@dataclass(frozen=True, slots=True)
class CallerHungUp:
    """The caller sent CANCEL (while ringing) or BYE (after answer)."""


VoicemailEnd = Literal["hangup", "silence", "max_length", "no_audio", "error", "unavailable"]


@dataclass(frozen=True, slots=True)
class VoicemailEnded:
    """The voicemail is over.

    ``why``: the caller hung up, silence, the length limit, no audio came,
    the recorder or spool failed, or ``unavailable``: the box could take no
    message, so the caller was not answered at all. ``stored``: a message
    was committed to the spool.
    """

    why: VoicemailEnd
    stored: bool


@dataclass(frozen=True, slots=True)
class DeadlinePassed:
    """The session's ``next_deadline()`` has come (``handle_timer``)."""


Event = (
    CallAdmitted
    | CallRefused
    | LegProgress
    | LegAnswered
    | LegFailed
    | LegEnded
    | CallerHungUp
    | VoicemailEnded
    | DeadlinePassed
)
