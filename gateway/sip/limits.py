"""The SIP engine's limits, importable without pjsua2.

The engine's call slots are read from the installed pjsua2 when the gateway
starts (`gateway.sip.engine_limits`), not assumed: a pjsua2 built with a larger
``PJSUA_MAX_CALLS`` (deploy/build-pjsua2.sh) is used fully. Everything that
plans with legs (admission, the switchboard, probes, the rules check, a pool
worker) takes them from the one `EngineLimits` read at start.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# pjsua looks for a free call slot *before* it asks onSelectAccount: with every
# slot taken it answers 486 by itself and the gateway never hears of the
# INVITE. One slot is kept free so that every INVITE reaches the gate.
SPARE_LEGS = 1


@dataclass(frozen=True)
class EngineLimits:
    """What the installed SIP engine can carry.

    Attributes:
        call_slots: ``PJSUA_MAX_CALLS`` as pjsua keeps it (inbound and
            outbound legs together).
        io_queue: pjlib's I/O queue, ``select`` or ``epoll`` (``unknown``
            before the engine has started).
        io_handles: socket handles the I/O queue holds, when known: 64 in the
            PyPI wheel's select() queue; pjlib does not report the number of
            its own, so a build of ours says what it was built with.
        tls: the TLS library the engine is linked with (``OpenSSL 3.0.19 …``),
            or None when it has none or cannot be read.
        tls_ciphers: how many TLS ciphers the engine offers (0: no TLS).
    """

    call_slots: int
    io_queue: str = "unknown"
    io_handles: int | None = None
    tls: str | None = None
    tls_ciphers: int | None = None

    @property
    def call_legs(self) -> int:
        """Legs calls may use: every slot but the one kept free for the gate."""
        return self.call_slots - SPARE_LEGS

    def as_dict(self) -> dict[str, int | str | None]:
        """The limits as published (status file, MQTT ``engine`` topic)."""
        return {**asdict(self), "call_legs": self.call_legs}


# The pjsua2-python wheel (2.15.1, pjproject defaults): the fallback of
# `check` and `explain` where pjsua2 is not installed.
WHEEL = EngineLimits(call_slots=4, io_queue="select", io_handles=64)
