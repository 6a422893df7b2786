"""The engine's SIP transports: UDP always, TCP or TLS when the trunk needs it.

UDP stays on ``SIP_FAILOVER_SIP__LISTEN`` whatever the trunk uses: legs and
probes to SIP URIs (desk phones, a PBX) go over it. A trunk over TCP adds a
TCP listener on the same address and port (RFC 3261 18: a server listens on
both); a trunk over TLS adds a TLS listener on its own port (5061 by
default). Either one carries the registration, every leg to the trunk and
the calls the trunk sends in; the account selection gate admits them by
their source address as it does UDP datagrams.

Each TCP or TLS connection holds one of the 64 handles of pjsua's select()
I/O queue for as long as it lives, and pjsip keeps an idle incoming
connection for 600 s (``PJSIP_TRANSPORT_SERVER_IDLE_TIME``): see
docs/limits.md. The wheel's TLS is OpenSSL 1.0.2k, TLS 1.2 at most, and the
gateway asks for exactly that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pjsua2 as pj

if TYPE_CHECKING:
    from gateway.config import Settings, SipSettings, TrunkTlsSettings

ANY_HOST = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - listen on every address


def create_transports(ep: pj.Endpoint, settings: Settings) -> str:
    """Create the UDP transport and the trunk's TCP or TLS one.

    Returns:
        The UDP transport's ``host:port`` (the gateway's listen address).

    Raises:
        pj.Error: a port is taken, or a TLS file cannot be read.
    """
    sip, trunk = settings.sip, settings.trunk
    udp = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, _config(sip, sip.port))
    if trunk.transport == "tcp":
        ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, _config(sip, sip.port))
    elif trunk.transport == "tls":
        cfg = _config(sip, trunk.tls.port)
        _tls(cfg.tlsConfig, trunk.tls)
        ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, cfg)
    return str(ep.transportGetInfo(udp).localName)


def _config(sip: SipSettings, port: int) -> pj.TransportConfig:
    tc = pj.TransportConfig()
    tc.port = port
    if sip.host not in ANY_HOST:
        tc.boundAddress = sip.host
    if sip.public_address:
        tc.publicAddress = sip.public_address
    return tc


def _tls(tls: pj.TlsConfig, settings: TrunkTlsSettings) -> None:
    # pjsip's OpenSSL backend loads no default CA paths: with verifyServer and
    # no CA list, no trunk could ever be verified.
    tls.method = pj.PJSIP_TLSV1_2_METHOD
    tls.CaListFile = str(settings.ca_file)
    tls.verifyServer = settings.verify_server
    if settings.cert_file is not None and settings.key_file is not None:
        tls.certFile = str(settings.cert_file)
        tls.privKeyFile = str(settings.key_file)
        tls.password = settings.key_password.get_secret_value()
