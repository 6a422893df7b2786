"""What the INVITE of a leg that forwards a caller says: From, P-Asserted-Identity, Diversion.

The presentation itself is decided in the core (gateway/core/presentation.py);
this module turns it into pjsua2's call options, once per call: every leg of a
call presents the same caller, and with Diversion (not History-Info, which
names the target) its From and headers do not depend on the target. A failover
leg reuses the first leg's options (``Call.makeCall`` copies them), so its
INVITE waits on no Python building them again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pjsua2 as pj

from gateway.core.presentation import Policy, Present, Redirection, present

if TYPE_CHECKING:
    from collections.abc import Iterable

    from gateway.config import TrunkSettings
    from gateway.core.session import CallInfo
    from gateway.sip.legs import InboundLeg

__all__ = ["Forwarding", "add_headers"]


class Forwarding:
    """The call options of forwarding legs, by the trunk's presentation settings."""

    def __init__(self, trunk: TrunkSettings) -> None:
        self._policy = Policy(trunk.present, trunk.assert_identity, trunk.redirect_header)
        # ``public`` is for trunks that allow only their own numbers; a desk
        # phone or PBX reached directly always sees the caller.
        self._direct_policy = replace(self._policy, present=Present.CALLER)

    def options(self, inbound: InboundLeg | None, info: CallInfo, uri: str, domain: str, *,
                trunk: bool) -> pj.CallOpParam:  # fmt: skip
        """The options of a leg to ``uri`` forwarding ``info``'s caller.

        Args:
            inbound: the caller's leg (None: gone; nothing is presented).
            info: the call.
            uri: the leg's Request-URI.
            domain: the host part of the account's URIs.
            trunk: whether the leg leaves through the trunk's account.
        """
        per_target = self._policy.redirection is not Redirection.DIVERSION
        key = (trunk, uri if per_target else "")
        prm = inbound.forwarding.get(key) if inbound is not None else None
        if prm is None:
            prm = pj.CallOpParam(True)
            if inbound is not None and inbound.caller_id is not None:
                # pjsua 2.14+ takes a per-call From in ``localUri``.
                policy = self._policy if trunk else self._direct_policy
                shown = present(inbound.caller_id, info.called, uri, domain, policy)
                prm.txOption.localUri = shown.from_uri
                add_headers(prm, shown.headers)
            if inbound is not None:
                inbound.forwarding[key] = prm
        return prm


def add_headers(prm: pj.CallOpParam, headers: Iterable[tuple[str, str]]) -> None:
    """Add SIP headers to a request or response pjsua2 sends with ``prm``."""
    for name, value in headers:
        hdr = pj.SipHeader()
        hdr.hName, hdr.hValue = name, value
        prm.txOption.headers.append(hdr)
