"""A gateway worker behind the edge: its settings, and when it takes a caller.

A worker trusts only the edge as its source, sends every leg through it, and
holds no trunk credentials and no registration: the edge does all of that.
Behind the edge a worker takes a caller only when it can ring for it
(``Capacity.room_in_pool`` in gateway/core/admission.py); a full worker
refuses before any dialog, so the edge tries the next one. Only an INVITE
that the edge marked as the last resort may take a worker's last leg, for a
voicemail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import SecretStr

from gateway.config import sip_uri_hostport

if TYPE_CHECKING:
    from gateway.config import Settings

# Every call comes from the edge's one address, the trunk's calls among them:
# a per-source limit here would refuse a busy trunk. A worker's capacity bounds
# what it takes; the edge answers 503 past the pool's.
EDGE_RATE_PER_MINUTE = 100_000


def behind_edge(settings: Settings, edge: str) -> Settings:
    """The settings of a worker whose edge is at ``edge`` (``host:port``)."""
    host, port = sip_uri_hostport(f"sip:{edge}")
    bracketed = f"[{host}]" if ":" in host else host
    trunk = settings.trunk.model_copy(
        update={
            "registrar": f"sip:{bracketed}:{port}",
            "proxy": f"sip:{bracketed}:{port}",
            "register_enabled": False,
            "username": "",
            "password": SecretStr(""),
            "sources": [host],
        }
    )
    sip = settings.sip.model_copy(
        update={"max_calls_per_source_per_minute": EDGE_RATE_PER_MINUTE}
    )
    edge_settings = settings.edge.model_copy(update={"address": edge})
    return settings.model_copy(update={"trunk": trunk, "sip": sip, "edge": edge_settings})
