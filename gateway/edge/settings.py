"""Settings of the edge and of a worker behind it (``SIP_FAILOVER_EDGE__*``).

Imported by ``gateway.config``: pydantic only, no pjsua2, no Kamailio.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

LAST_RESORT_HEADER = "X-Sip-Failover-Last-Resort"


class EdgeSettings(BaseModel):
    """The Kamailio edge in front of a pool of workers.

    On the edge's side: where the workers are, how much memory Kamailio gets,
    how floods are banned. On a worker's side: ``address``, the edge it sits
    behind (set by ``run --workers`` for its own workers, by ``run --edge``).
    """

    workers: list[str] = Field(
        default_factory=list, description="host:port of each worker (sip-failover edge)"
    )
    worker_port: int | None = Field(
        default=None, ge=1, le=65535, description="first worker's SIP port (run --workers)"
    )
    address: str | None = Field(
        default=None, description="host:port of the edge this worker sits behind"
    )
    control: str | None = Field(
        default=None, description="the control process: a Unix socket path or host:port"
    )
    worker_index: int = Field(default=0, ge=0, description="this worker's number in the pool")
    shm_mb: int = Field(default=16, ge=8, description="Kamailio's shared memory (-m), MB")
    pkg_mb: int = Field(default=4, ge=2, description="Kamailio's private memory per process (-M)")
    children: int = Field(default=2, ge=1, le=16, description="Kamailio's UDP worker processes")
    pike_per_2s: int = Field(
        default=60, ge=5, description="requests from one stranger's address per 2 s before a ban"
    )
    retry_after: int = Field(default=30, ge=1, description="Retry-After on the pool's 503")
    kamailio: Path = Field(default=Path("/usr/sbin/kamailio"), description="Kamailio binary")
