"""pjsua2's endpoint and accounts: their callbacks turn into signals.

Each class here is a pjsua2 director: pjsua calls its methods from inside
``libHandleEvents`` (the log writer from any pjsua thread). They record
signals in the ``LegRegistry`` and decide nothing, except the endpoint's
gate, which must answer before pjsua creates any dialog (DESIGN.md, engine
limits). An exception escaping a callback would unwind into C++ and end
the process, hence ``guarded``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pjsua2 as pj
from loguru import logger

from gateway.sip import message
from gateway.sip.legs import InboundLeg, LegRegistry, guarded
from gateway.sip.signals import IncomingSignal, OptionsSignal, RegistrationSignal

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.sip.signals import InviteOffer

__all__ = ["DirectAccount", "GatedEndpoint", "LogWriter", "TrunkAccount"]


class LogWriter(pj.LogWriter):  # type: ignore[misc]
    """pjsua's own log lines into loguru (called from any pjsua thread)."""

    def write(self, entry: pj.LogEntry) -> None:
        # A log line must never raise into pjsua (that would abort the process).
        with contextlib.suppress(Exception):
            level = "WARNING" if entry.level <= 2 else "DEBUG"
            logger.log(level, "pjsua: {}", str(entry.msg).rstrip())


class GatedEndpoint(pj.Endpoint):  # type: ignore[misc]
    """The endpoint whose account selection asks ``gate`` about every INVITE."""

    def __init__(
        self, gate: Callable[[pj.SipRxData], bool], trunk_index: Callable[[], int]
    ) -> None:
        super().__init__()
        self._gate = gate
        self._trunk_index = trunk_index

    def onSelectAccount(self, prm: pj.OnSelectAccountParam) -> None:
        # Fail closed first: if anything below raised, pjsua2 would keep the
        # account pjsua matched and let the call in. -1 with no valid default
        # account makes pjsua answer a stateless 480 before any dialog, call
        # slot or media socket exists (DESIGN.md, engine limits).
        prm.accountIndex = -1
        try:
            if self._gate(prm.rdata):
                prm.accountIndex = self._trunk_index()
        except Exception:  # noqa: BLE001
            logger.opt(exception=True).error("admission check failed; call refused")

    @guarded
    def onTransportState(self, prm: pj.OnTransportStateParam) -> None:
        # pjsua logs a refused TLS peer only at levels kept off in production.
        tls = prm.tlsInfo
        if str(prm.type).upper().startswith("TLS") and tls is not None and tls.verifyStatus:
            logger.warning("TLS peer {} refused: its certificate failed verification ({})",
                           tls.remoteAddr, "; ".join(str(m) for m in tls.verifyMsgs))  # fmt: skip


class TrunkAccount(pj.Account):  # type: ignore[misc]
    """The provider account: registration, and every call in or out."""

    def __init__(
        self,
        registry: LegRegistry,
        new_call_id: Callable[[], str],
        offer_of: Callable[[str, str], InviteOffer],
    ) -> None:
        super().__init__()
        self.registry = registry
        self._new_call_id = new_call_id
        self._offer_of = offer_of  # the gate has read the same INVITE: read once

    @guarded
    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call_id = self._new_call_id()
        leg = InboundLeg(self.registry, self, prm.callId, call_id)  # held by the registry
        raw = str(prm.rdata.wholeMsg)
        leg.caller_id = message.caller_id(raw)
        leg.offered = message.offered_codecs(raw)
        offer = self._offer_of(raw, str(prm.rdata.srcAddress))
        self.registry.emit(IncomingSignal(call_id, offer.caller, offer.called, offer.source))

    @guarded
    def onSendRequest(self, prm: pj.OnSendRequestParam) -> None:
        tsx = prm.e.body.tsxState.tsx
        self.registry.emit(OptionsSignal(int(tsx.statusCode), str(tsx.statusText)))

    @guarded
    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        info = self.getInfo()
        self.registry.emit(
            RegistrationSignal(
                int(prm.code), str(prm.reason), int(prm.expiration), bool(info.regIsActive)
            )
        )


class DirectAccount(pj.Account):  # type: ignore[misc]
    """Legs and probes to SIP URIs that are not the trunk's: never any credentials."""

    def __init__(self, registry: LegRegistry) -> None:
        super().__init__()
        self.registry = registry

    @guarded
    def onSendRequest(self, prm: pj.OnSendRequestParam) -> None:
        tsx = prm.e.body.tsxState.tsx
        self.registry.emit(OptionsSignal(int(tsx.statusCode), str(tsx.statusText)))
