"""What the network tells a call session (the SIP adapter produces these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.core.causes import Outcome


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


@dataclass(frozen=True, slots=True)
class VoicemailEnded:
    """The voicemail recording is over (hang-up, silence, max length)."""

    why: str = "hangup"


Event = LegProgress | LegAnswered | LegFailed | LegEnded | CallerHungUp | VoicemailEnded
