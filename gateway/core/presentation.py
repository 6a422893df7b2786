"""Who a leg says is calling: From, P-Asserted-Identity, Privacy, redirection.

Whoever answers a leg must see who is calling (DESIGN.md, promises): the
caller's number goes in the From header (display name and user part), in
``P-Asserted-Identity`` (RFC 3325) when the trunk wants it, and a
``Diversion`` (RFC 5806) or ``History-Info`` (RFC 7044) header names the
public number that was called, which is what lets a trunk accept a call
presenting a number that is not its own. A trunk that allows only its own
numbers gets the public number instead (``present: public``). A caller who
withheld the number stays anonymous (RFC 3323): From is anonymous, the
``Privacy`` header is passed on, and the withheld number is asserted to no one.

Everything here is text the caller controls (a display name, a From user
part): it is escaped, never pasted into a header as it came.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

ANONYMOUS_FROM = '"Anonymous" <sip:anonymous@anonymous.invalid>'  # RFC 3323 section 4.1.1.3
# RFC 3323 section 4.2: the privacy values that ask to hide the caller's identity.
_HIDING = frozenset({"id", "user", "header"})
_WITHHELD = frozenset({"anonymous", "restricted", "unavailable", "unknown", "private"})
# RFC 3261 25.1 unreserved and user-unreserved characters that stay as they are in a user part.
_USER_SAFE = "+-_.!~*'()&=$,"
_NAME_MAX = 64
# RFC 4458 section 3.4 / RFC 7044: the cause a History-Info entry gives for a forwarding.
_UNCONDITIONAL = 302


class Present(StrEnum):
    """Which number a leg presents as the caller's."""

    CALLER = "caller"  # the caller's own number (default)
    PUBLIC = "public"  # the public number that was called: for trunks allowing only theirs


class Redirection(StrEnum):
    """The header that names the public number a leg was forwarded from."""

    DIVERSION = "diversion"  # RFC 5806, what most trunks read
    HISTORY_INFO = "history-info"  # RFC 7044


@dataclass(frozen=True, slots=True)
class CallerId:
    """Who the trunk says is calling, as read from the incoming INVITE.

    Attributes:
        number: the asserted (P-Asserted-Identity) or From user part, if any.
        name: the From display name, if any.
        privacy: the ``Privacy`` header's values, lower case (RFC 3323).
        from_user: the From user part (``anonymous`` when the caller hid it).
    """

    number: str | None
    name: str | None = None
    privacy: tuple[str, ...] = ()
    from_user: str | None = None

    @property
    def hidden(self) -> bool:
        """The caller withheld the number: anonymous From, or ``Privacy: id|user|header``."""
        withheld = (self.from_user or "").lower() in _WITHHELD
        return withheld or not self.number or bool(_HIDING.intersection(self.privacy))


@dataclass(frozen=True, slots=True)
class Policy:
    """How the trunk wants a forwarded caller presented (trunk settings)."""

    present: Present = Present.CALLER
    assert_identity: bool = False
    redirection: Redirection = Redirection.DIVERSION


@dataclass(frozen=True, slots=True)
class Presentation:
    """What a leg's INVITE says about the caller.

    Attributes:
        from_uri: the From header's name-addr (without tag).
        headers: extra headers, name and value, in order.
    """

    from_uri: str
    headers: tuple[tuple[str, str], ...]


def present(
    caller: CallerId, public: str, target_uri: str, domain: str, policy: Policy
) -> Presentation:
    """The presentation of a leg forwarding ``caller``'s call to ``public``.

    Args:
        caller: who the trunk said is calling.
        public: the public number that was called (the route's ``to``).
        target_uri: the leg's Request-URI (History-Info names it).
        domain: ``host[:port]`` for the URIs built here (the account's domain).
        policy: the trunk's presentation settings.

    Returns:
        The From name-addr and the headers to add to the INVITE.
    """
    shown = public if policy.present is Present.PUBLIC else caller.number
    headers: list[tuple[str, str]] = []
    if caller.hidden:
        from_uri = ANONYMOUS_FROM
        # Only the business's own number may still be asserted; it hides nobody.
        asserted = public if policy.present is Present.PUBLIC else None
        headers.append(("Privacy", "; ".join(caller.privacy) or "id"))
    else:
        assert shown is not None  # a caller that is not hidden has a number
        name = caller.name if policy.present is Present.CALLER and caller.name else shown
        from_uri = f"{_quoted(name)} <{_uri(shown, domain)}>"
        asserted = shown
    if policy.assert_identity and asserted:
        headers.append(("P-Asserted-Identity", f"<{_uri(asserted, domain)}>"))
    headers.append(_redirection(policy.redirection, public, target_uri, domain))
    return Presentation(from_uri, tuple(headers))


def _redirection(
    kind: Redirection, public: str, target_uri: str, domain: str
) -> tuple[str, str]:
    original = f"<{_uri(public, domain)}>"
    if kind is Redirection.DIVERSION:
        # RFC 5806: every call to the public number is forwarded by the rules.
        return "Diversion", f"{original};reason=unconditional;counter=1"
    # RFC 7044 section 10: the called number (index 1), then the target it was
    # forwarded to, with the cause in its URI (RFC 4458) and mp naming its parent.
    target = f"<{target_uri};cause={_UNCONDITIONAL}>"
    return "History-Info", f"{original};index=1, {target};index=1.1;mp=1"


def _uri(user: str, domain: str) -> str:
    return f"sip:{quote(user, safe=_USER_SAFE)}@{domain}"


def _quoted(name: str) -> str:
    """A display name as an RFC 3261 quoted-string: no control characters, escaped."""
    clean = re.sub(r"[\x00-\x1f\x7f]", "", name)[:_NAME_MAX]
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'
