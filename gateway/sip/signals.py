"""What the SIP adapter reports to the switchboard: plain values, no pjsua2.

pjsua2's callbacks (gateway/sip/endpoint.py, legs.py, tap.py) turn what
happened into these signals; ``SipEngine.poll()`` hands them over in order.
Everything here imports without pjsua2, so the switchboard and its tests do too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from gateway.sip import message

if TYPE_CHECKING:
    from gateway.core.events import Event
    from gateway.core.sit import SitTone


@dataclass(frozen=True, slots=True)
class InviteOffer:
    """A new INVITE as pjsua's account selection sees it, before any dialog."""

    source: str
    sip_call_id: str
    caller: str
    called: tuple[str, ...]  # candidates, most likely first: To user, then R-URI user


def offer_of(raw: str, src_address: str) -> InviteOffer:
    """What an INVITE's text says about its call (pjsip has already parsed it)."""
    caller = (
        message.uri_user(message.header(raw, "P-Asserted-Identity"))
        or message.uri_user(message.header(raw, "From"))
        or "anonymous"
    )
    candidates = (message.uri_user(message.header(raw, "To")),
                  message.uri_user(raw.split("\n", 1)[0]))  # fmt: skip
    called = tuple(dict.fromkeys(u for u in candidates if u))
    call_id = message.header(raw, "Call-ID") or ""
    return InviteOffer(message.source_ip(src_address), call_id, caller, called)


@dataclass(frozen=True, slots=True)
class IncomingSignal:
    """The trunk sent a call; its inbound leg exists (not yet answered)."""

    call_id: str
    caller: str
    called: tuple[str, ...]  # candidates, most likely first: To user, then R-URI user
    source: str


@dataclass(frozen=True, slots=True)
class RegistrationSignal:
    """The trunk registration changed (pjsua's onRegState)."""

    code: int
    reason: str
    expires: int
    active: bool


@dataclass(frozen=True, slots=True)
class OptionsSignal:
    """The final answer to an OPTIONS probe (408 when nothing answered: timer F)."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class LegSignal:
    """A core event for the session owning ``leg``."""

    leg: str
    event: Event


@dataclass(frozen=True, slots=True)
class CallerSignal:
    """The caller's side of a call changed (for now: the caller hung up)."""

    call_id: str
    event: Event


@dataclass(frozen=True, slots=True)
class MediaChanged:
    """A leg's media changed: a pending bridge may now connect its audio."""

    key: str  # a call id (inbound leg) or a leg id (outbound leg)


@dataclass(frozen=True, slots=True)
class SitSignal:
    """A leg played Special Information Tones (time counted from its tap's start)."""

    leg: str
    tone: SitTone


Signal: TypeAlias = (
    IncomingSignal | RegistrationSignal | OptionsSignal
    | LegSignal | CallerSignal | MediaChanged | SitSignal
)  # fmt: skip
"""Everything ``SipEngine.poll()`` may return."""
