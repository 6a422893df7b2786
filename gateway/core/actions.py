"""What a call session asks the SIP adapter (and the status feed) to do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.core.plan import Dial
    from gateway.json_types import JsonObject


@dataclass(frozen=True, slots=True)
class SendRinging:
    """Send 180 Ringing (no SDP) to the caller: ringback while we work."""


@dataclass(frozen=True, slots=True)
class Ring:
    """Open an outgoing leg: INVITE the target."""

    leg: str
    target: Dial


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop an unanswered leg (CANCEL; BYE if a 200 crossed it)."""

    leg: str


@dataclass(frozen=True, slots=True)
class Bridge:
    """Answer the caller (200) and connect audio both ways with this leg."""

    leg: str


@dataclass(frozen=True, slots=True)
class HangUp:
    """BYE an answered outgoing leg."""

    leg: str


@dataclass(frozen=True, slots=True)
class HangUpCaller:
    """BYE the caller."""


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer the caller with a final error and a ``Reason: Q.850`` header."""

    sip_code: int
    q850: int | None
    retry_after: int | None = None  # seconds: "try again later" (RFC 3261 20.33)


@dataclass(frozen=True, slots=True)
class StartVoicemail:
    """Answer the caller, play the box's greeting and record a message."""

    box: str
    why: str


@dataclass(frozen=True, slots=True)
class Notify:
    """A status event for the bus (MQTT, call log, health)."""

    kind: str
    data: JsonObject = field(default_factory=dict)


Action = (
    SendRinging | Ring | Cancel | Bridge | HangUp | HangUpCaller | Refuse | StartVoicemail | Notify
)
