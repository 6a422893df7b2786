"""The pjsua2 endpoint: one per process, polled from the asyncio loop.

The endpoint runs with ``threadCnt=0`` and ``mainThreadOnly``: pjsua's SIP
work happens inside ``poll()`` (``libHandleEvents``) on the loop's thread,
so every callback runs there too and no pjsua2 call ever comes from an
unregistered thread (which aborts the process). RTP has pjmedia's own
worker thread and the null audio device's clock drives the conference
bridge, so audio flows whatever the loop is doing.

Limits of the pjsua2 wheel (pjproject defaults), planned for here: 4 call
slots (``PJSUA_MAX_CALLS``), a select() I/O queue of 64 handles, asserts
compiled in. See docs/limits.md.

The pjsua2 subclasses (endpoint, accounts, log writer) are in endpoint.py,
the translation of settings into pjsua's configuration in engine_config.py;
here is what the gateway does with calls.
"""

from __future__ import annotations

import itertools
import secrets
from typing import TYPE_CHECKING, Literal

import pjsua2 as pj
from loguru import logger

from gateway.config import Settings, sip_uri_hostport
from gateway.core.causes import failed_locally, reason_header
from gateway.core.events import LegFailed
from gateway.core.numbers import dial_form
from gateway.edge.settings import LAST_RESORT_HEADER
from gateway.sip import message
from gateway.sip.endpoint import DirectAccount, GatedEndpoint, LogWriter, TrunkAccount
from gateway.sip.engine_config import (
    CODECS,
    codec_order,
    direct_config,
    endpoint_config,
    trunk_config,
)
from gateway.sip.engine_limits import running_limits
from gateway.sip.forwarding import Forwarding, add_headers
from gateway.sip.legs import LegRegistry, OutboundLeg, audio_of
from gateway.sip.media import CallMedia
from gateway.sip.signals import InviteOffer, LegSignal, Signal, offer_of
from gateway.sip.tap import LegTaps
from gateway.sip.transports import create_transports

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from gateway.core.admission import EngineLoad
    from gateway.core.plan import Dial
    from gateway.core.session import CallInfo
    from gateway.sip.limits import EngineLimits

__all__ = ["SipEngine"]
_BUSY = {171001, 70011}  # PJSIP_EBUSY, PJ_EBUSY: "Object is busy"
RegisterSend = Literal["sent", "busy", "failed"]


class SipEngine:
    """Owns every pjsua2 object; the composition root drives it."""

    def __init__(
        self, settings: Settings, gate: Callable[[InviteOffer, bool], bool], limits: EngineLimits
    ) -> None:
        self.settings = settings
        self.limits = limits  # planned before start; what pjsua kept after it
        # Unique in a pool's one call log too: every worker counts from 1, and
        # 32 random bits make two workers' ids for the same count differ.
        self._ids = (f"{n:04d}{secrets.token_hex(4)}" for n in itertools.count(1))
        self.registry = LegRegistry()
        self._gate = gate
        self._ep: GatedEndpoint | None = None
        self._trunk: TrunkAccount | None = None
        self._direct: DirectAccount | None = None
        self._log_writer = LogWriter()
        self.media = CallMedia(self.registry, self.answer, self.hang_up_caller)
        self.taps = LegTaps(self.registry)
        self.listen: str = ""
        # The SIP transports' sockets, and the TCP/TLS connections when the
        # pump has found them (it sets this): handles of the engine's I/O queue.
        self.sip_handles_min = 1 if settings.trunk.transport == "udp" else 2
        self.sip_handles = self.sip_handles_min
        self._codec_order: dict[str, int] = {}
        trunk = settings.trunk
        self._forwarding = Forwarding(trunk)
        # Read from the settings once, not on every leg: the next INVITE waits on these.
        self._trunk_servers = {sip_uri_hostport(trunk.uri(trunk.outbound_proxy)),
                               sip_uri_hostport(trunk.uri(trunk.registrar))}  # fmt: skip
        self._trunk_domain = _trunk_domain(settings)
        self._last_offer: tuple[str, InviteOffer] | None = None  # the last INVITE read

    # -- life cycle ----------------------------------------------------------

    def start(self) -> None:
        """Create the endpoint, the transports and the accounts."""
        self._ep = GatedEndpoint(self._admit, self._trunk_id)
        self._ep.libCreate()
        self._ep.libInit(endpoint_config(self.settings, self.limits.call_slots, self._log_writer))
        self._read_limits()
        self._ep.audDevManager().setNullDev()
        self._codec_order = codec_order(None)
        for codec in self._ep.codecEnum2():
            self._ep.codecSetPriority(codec.codecId, self._codec_order.get(codec.codecId, 0))
        self.listen = create_transports(self._ep, self.settings)
        self._ep.libStart()
        # No default account: a call the gate refuses must find no account at
        # all (pjsua falls back to the default one). An uncreated Account has
        # id -1, so this sets "no default".
        pj.Account().setDefault()
        self._trunk = TrunkAccount(self.registry, self.new_call_id, self._offer_of)
        self._trunk.create(trunk_config(self.settings, self._domain(trunk=True)), False)
        # Legs to SIP URIs (a desk phone, a PBX) leave through an account with
        # no credentials: with the trunk's, any server a leg reaches could
        # challenge it and collect a digest of the trunk password to crack.
        self._direct = DirectAccount(self.registry)
        self._direct.create(direct_config(self.settings, self._domain(trunk=False)), False)

    def sip_ports(self) -> set[int]:
        """The local ports pjsip takes SIP on: UDP (and TCP) on the listen port, TLS on its own."""
        ports = {int(self.listen.rsplit(":", 1)[1])} if self.listen else set()
        if self.settings.trunk.transport == "tls":
            ports.add(self.settings.trunk.tls.port)
        return ports

    def trunk_stream_ports(self) -> set[int]:
        """The trunk server's ports when pjsip connects to it over TCP/TLS (else none)."""
        trunk = self.settings.trunk
        if trunk.transport == "udp":
            return set()
        servers = (trunk.outbound_proxy, trunk.registrar)
        return {sip_uri_hostport(trunk.uri(uri))[1] for uri in servers}

    def _read_limits(self) -> None:
        """Replace the planned limits by what pjsua kept (and the rest it tells)."""
        kept = running_limits(self._ep)
        if kept.call_slots < self.limits.call_slots:
            # Rules and admission were planned with more: our bug, not the admin's.
            raise RuntimeError(f"pjsua kept {kept.call_slots} call slots, "
                               f"{self.limits.call_slots} were planned")  # fmt: skip
        self.limits = kept
        logger.info("SIP engine: {} call slots ({} for calls), {} I/O queue{}, TLS {}",
                    kept.call_slots, kept.call_legs, kept.io_queue,
                    f" of {kept.io_handles} handles" if kept.io_handles else "",
                    kept.tls or "unavailable")  # fmt: skip

    def poll(self) -> list[Signal]:
        """Let pjsua do its work (no wait) and return what happened."""
        assert self._ep is not None
        self._ep.libHandleEvents(0)
        signals = self.registry.drain()
        self.taps.follow(signals)
        return signals

    def destroy(self) -> None:
        """Tear down pjsua; every leg must be gone (see ``hang_up_all``)."""
        if self._ep is None:
            return
        # Players and recorders must leave the conference bridge before pjsua
        # goes: destroying it under a live recorder trips a pjmedia assert.
        self.media.release_all()
        self.taps.release_all()
        # The accounts stay until pjsua is gone. A request sent through one
        # (an OPTIONS probe) lives on in pjsip until answered or timer F (32 s);
        # its end is reported through the account that sent it, and pjsua2
        # looks that account up with an assert that it is valid
        # (pjsua_acc_get_user_data): deleting the account first aborts the
        # process. pjsua_destroy() ends the transactions while the accounts
        # are still valid, and only then deletes them (Account.shutdown() is
        # a no-op after that).
        self._ep.libDestroy()
        self._ep = None
        self._trunk = self._direct = None

    # -- admission -----------------------------------------------------------

    def _admit(self, rdata: pj.SipRxData) -> bool:
        raw = str(rdata.wholeMsg)
        # Behind the edge, its last-resort header lets a full worker take a voicemail.
        last_resort = False
        if self.settings.edge.address is not None:
            last_resort = message.header(raw, LAST_RESORT_HEADER) is not None
        return self._gate(self._offer_of(raw, str(rdata.srcAddress)), last_resort)

    def _offer_of(self, raw: str, src_address: str) -> InviteOffer:
        """What an INVITE says, read once: the gate's reading is the incoming call's too."""
        if self._last_offer is not None and self._last_offer[0] == raw:
            return self._last_offer[1]
        offer = offer_of(raw, src_address)
        self._last_offer = (raw, offer)
        return offer

    def new_call_id(self) -> str:
        """Our id for a call from the trunk (also for one turned away at the gate)."""
        return next(self._ids)

    def _trunk_id(self) -> int:
        return int(self._trunk.getId()) if self._trunk is not None else -1

    # -- registration ----------------------------------------------------------

    def set_registration(self, active: bool) -> RegisterSend:
        """(Re)send REGISTER, or unREGISTER (Expires: 0).

        Returns:
            ``"sent"``; ``"busy"`` when pjsua refused because a REGISTER is
            still unanswered (``PJSIP_EBUSY``: the caller tries again once
            that one has been answered); ``"failed"`` for anything else, e.g.
            registration turned off.
        """
        if self._trunk is None or not self.settings.trunk.register_enabled:
            return "failed"
        try:
            self._trunk.setRegistration(active)
        except pj.Error as err:
            logger.info("REGISTER not sent now: {}", err.info())
            return "busy" if err.status in _BUSY else "failed"
        return "sent"

    def send_options(self, uri: str) -> bool:
        """Send an out-of-dialog OPTIONS (a probe); the answer comes as OptionsSignal."""
        if self._trunk is None:
            return False
        prm = pj.SendRequestParam()
        prm.method = "OPTIONS"
        prm.txOption.targetUri = uri
        try:
            self._account_for(uri).sendRequest(prm)
        except pj.Error as err:
            logger.warning("OPTIONS to {} not sent: {}", uri, err.info())
            return False
        return True

    # -- legs ------------------------------------------------------------------

    def legs_in_use(self) -> int:
        return self.registry.in_use()

    def load(self, now: float) -> EngineLoad:
        """What the engine holds at ``now`` (the loop's clock), for the core's ``Capacity``."""
        return self.registry.load(now, self.sip_handles)

    def ring(self, leg: str, target: Dial, call_info: CallInfo | None = None,
             caller: str | None = None) -> None:  # fmt: skip
        """INVITE a target; a local failure comes back as an unreachable leg.

        Args:
            leg: our id for the leg.
            target: what to dial.
            call_info: the call the leg forwards: the INVITE presents its
                caller (None: a probe, presenting the gateway's own account).
            caller: a number to present when no call is forwarded (the
                inbound loop test's ``from``).
        """
        uri = self.dial_uri(target)
        account = self._account_for(uri)
        uri = self.settings.trunk.uri(uri) if account is self._trunk else uri
        call = OutboundLeg(self.registry, account, leg)
        if call_info is not None:
            trunk = account is self._trunk
            inbound = self.registry.inbound.get(call_info.call_id)
            prm = self._forwarding.options(inbound, call_info, uri, self._domain(trunk=trunk),
                                           trunk=trunk)  # fmt: skip
            self._offer_callers_codec(call_info.call_id)
        else:
            prm = pj.CallOpParam(True)
            if caller is not None:
                domain = self._domain(trunk=account is self._trunk)
                prm.txOption.localUri = f"<sip:{caller}@{domain}>"
        try:
            call.makeCall(uri, prm)
        except pj.Error as err:
            self.registry.outbound.pop(leg, None)
            self.registry.note_end()  # its media sockets, if made, are held too
            logger.warning("leg {} to {} failed locally: {}", leg, target.label, err.info())
            failed = failed_locally()
            event = LegFailed(leg, failed.outcome, failed.sip_code, failed.q850)
            self.registry.emit(LegSignal(leg, event))

    def _offer_callers_codec(self, call_id: str) -> None:
        """Offer the leg the caller's preferred codec first: bridged, nothing is transcoded.

        pjsua2 sets codec priorities for the whole endpoint, not per call; every
        call is made on the loop's thread, so setting them right before
        ``makeCall`` shapes this leg's offer alone.
        """
        inbound = self.registry.inbound.get(call_id)
        wanted = next((c for c in (inbound.offered if inbound else ()) if c in CODECS), None)
        order = codec_order(wanted)
        if self._ep is None or order == self._codec_order:
            return
        for codec_id, priority in order.items():
            self._ep.codecSetPriority(codec_id, priority)
        self._codec_order = order

    def _domain(self, *, trunk: bool) -> str:
        """The host part of an account's URIs: the trunk's domain, or our own address."""
        if not trunk:
            return self.listen.rsplit(":", 1)[0] if self.listen else "127.0.0.1"
        return self._trunk_domain

    def _account_for(self, uri: str) -> pj.Account:
        """The trunk account for the trunk's own server; else the one with no credentials."""
        assert self._trunk is not None
        assert self._direct is not None
        at = sip_uri_hostport(self.settings.trunk.uri(uri))
        return self._trunk if at in self._trunk_servers else self._direct

    def dial_uri(self, target: Dial) -> str:
        """The Request-URI for a target: a number goes through the trunk's proxy."""
        if target.uri is not None:
            return target.uri
        trunk = self.settings.trunk
        host, port = sip_uri_hostport(trunk.uri(trunk.outbound_proxy))
        host = f"[{host}]" if ":" in host else host
        number = dial_form(target.number or "", trunk.dial_format, target.country)
        return f"sip:{number}@{host}:{port}"

    def stop_leg(self, leg: str, code: int = 0) -> None:
        """CANCEL (unanswered) or BYE (answered) an outgoing leg."""
        call = self.registry.outbound.get(leg)
        if call is not None:
            self._hangup(call, code)

    def answer(self, call_id: str, code: int = 200) -> None:
        """Answer the caller: 180 (ringback, no SDP) or 200."""
        call = self.registry.inbound.get(call_id)
        if call is None:
            return
        prm = pj.CallOpParam()
        prm.statusCode = code
        call.answer(prm)
        call.answered = call.answered or code == 200

    def refuse(
        self, call_id: str, code: int, q850: int | None, retry_after: int | None = None
    ) -> None:
        """Final error to the caller, with ``Reason: Q.850`` (RFC 3326)."""
        call = self.registry.inbound.get(call_id)
        if call is None:
            return
        headers = [("Reason", reason_header(q850))] if q850 else []
        if retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        self._hangup(call, code, headers)

    def hang_up_caller(self, call_id: str) -> None:
        call = self.registry.inbound.get(call_id)
        if call is not None:
            self._hangup(call, 0)

    def connect(self, call_id: str, leg: str) -> bool:
        """Connect caller and leg audio both ways; False until both have media."""
        caller, callee = self.registry.inbound.get(call_id), self.registry.outbound.get(leg)
        if caller is None or callee is None:
            return False
        a, b = audio_of(caller), audio_of(callee)
        if a is None or b is None:
            return False
        a.startTransmit(b)
        b.startTransmit(a)
        return True

    def codecs(self, call_id: str, leg: str) -> tuple[str, str]:
        """The audio codec of the caller's leg and of an outgoing leg (``?`` unknown).

        The same on both sides: the bridge relays frames without transcoding.
        """
        calls = (self.registry.inbound.get(call_id), self.registry.outbound.get(leg))
        return _codec_of(calls[0]), _codec_of(calls[1])

    def hang_up_all(self) -> None:
        for call in [*self.registry.outbound.values(), *self.registry.inbound.values()]:
            self._hangup(call, 0)

    def _hangup(self, call: pj.Call, code: int, headers: Iterable[tuple[str, str]] = ()) -> None:
        prm = pj.CallOpParam()
        prm.statusCode = code
        add_headers(prm, headers)
        try:
            call.hangup(prm)
        except pj.Error as err:
            # Already ending (e.g. the far end's BYE crossed ours): harmless.
            logger.debug("hangup: {}", err.info())


def _trunk_domain(settings: Settings) -> str:
    """The host part of the trunk account's URIs: the registrar's ``host[:port]``."""
    host, port = sip_uri_hostport(settings.trunk.registrar)
    host = f"[{host}]" if ":" in host else host
    return host if port == 5060 else f"{host}:{port}"


def _codec_of(call: pj.Call | None) -> str:
    if call is None:
        return "?"
    try:
        for index, media in enumerate(call.getInfo().media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO:
                return str(call.getStreamInfo(index).codecName)
    except pj.Error:
        pass
    return "?"
