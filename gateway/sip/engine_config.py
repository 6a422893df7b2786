"""How the engine configures pjsua: the endpoint, the two accounts, codec order.

Pure translation of ``Settings`` into pjsua2's config objects; nothing here
talks to the network. See docs/limits.md for why the endpoint runs with no
worker thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pjsua2 as pj

from gateway.sip.transports import ANY_HOST

if TYPE_CHECKING:
    from gateway.config import Settings, SipSettings

__all__ = ["CODECS", "codec_order", "direct_config", "endpoint_config", "trunk_config"]

CODECS = {"PCMA": "PCMA/8000/1", "PCMU": "PCMU/8000/1"}  # what legs offer; PCMA first


def codec_order(first: str | None) -> dict[str, int]:
    """pjsua priorities: ``first`` (else PCMA) 255, the other G.711 254."""
    first = first or "PCMA"
    return {codec_id: 255 if name == first else 254 for name, codec_id in CODECS.items()}


def endpoint_config(settings: Settings, call_slots: int, writer: pj.LogWriter) -> pj.EpConfig:
    """One thread (the loop's), ``call_slots`` calls, pjsua's log into ``writer``."""
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.maxCalls = call_slots
    cfg.uaConfig.userAgent = "sip-failover"
    cfg.logConfig.level = settings.sip.log_level
    cfg.logConfig.consoleLevel = settings.sip.log_level
    cfg.logConfig.writer = writer
    cfg.medConfig.noVad = True
    cfg.medConfig.ecTailLen = 0  # no echo canceller: we relay, we do not play
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    cfg.medConfig.channelCount = 1
    return cfg


def direct_config(settings: Settings, domain: str) -> pj.AccountConfig:
    """The account for legs to SIP URIs: no registration, no credentials."""
    cfg = pj.AccountConfig()
    cfg.idUri = f"sip:sip-failover@{domain}"
    cfg.regConfig.registerOnAdd = False
    _media_config(cfg, settings.sip)
    return cfg


def trunk_config(settings: Settings, domain: str) -> pj.AccountConfig:
    """The trunk's account: registration (if on) and its digest credentials."""
    trunk = settings.trunk
    cfg = pj.AccountConfig()
    user = f"{trunk.username}@" if trunk.username else ""
    cfg.idUri = f"sip:{user}{domain}"
    cfg.regConfig.registrarUri = trunk.uri(trunk.registrar) if trunk.register_enabled else ""
    cfg.regConfig.registerOnAdd = trunk.register_enabled
    cfg.regConfig.timeoutSec = trunk.expires
    cfg.regConfig.retryIntervalSec = 0  # the gateway retries with its own backoff
    cfg.regConfig.dropCallsOnFail = False  # a lost registration must not drop calls
    if trunk.username:
        cred = pj.AuthCredInfo(
            "digest", trunk.realm, trunk.username, 0, trunk.password.get_secret_value()
        )
        cfg.sipConfig.authCreds.append(cred)
    _media_config(cfg, settings.sip)
    return cfg


def _media_config(cfg: pj.AccountConfig, sip: SipSettings) -> None:
    # An answer with several codecs would have pjsua re-INVITE to narrow it
    # to one: a needless round trip on every bridged leg (RFC 3264 allows
    # sending with any codec of the answer).
    cfg.mediaConfig.lockCodecEnabled = False
    media = cfg.mediaConfig.transportConfig
    media.port = sip.rtp_port
    media.portRange = sip.rtp_port_range
    if sip.host not in ANY_HOST:
        media.boundAddress = sip.host
    if sip.public_address:
        media.publicAddress = sip.public_address
