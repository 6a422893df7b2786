"""Which INVITEs may become calls: trunk sources only, a per-source rate, free legs.

Decided inside pjsua's account selection, before pjsua creates a dialog, a
call slot or a media socket, so a refused INVITE costs nothing but a
stateless 480. Pure: the caller passes the time and the legs in use.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class Admission:
    """Admission policy for calls coming in.

    Args:
        sources: the IP addresses of the trunk; every other source is refused.
        max_legs: call legs the SIP engine has in total (inbound + outbound).
        per_minute: INVITEs accepted from one source in any 60 s window; the
            trunk's own address passes the source check, so a flood from it
            (or through it) is bounded here.
    """

    sources: frozenset[str]
    max_legs: int = 4
    per_minute: int = 120
    accepting: bool = True
    _recent: dict[str, deque[float]] = field(default_factory=dict)

    def admit(self, source: str, legs_in_use: int, now: float) -> bool:
        """True when an INVITE from ``source`` may take a call slot.

        A full engine is refused here, so pjsua never reaches its own limit
        (where it would answer 486 by itself).
        """
        if not self.accepting or source not in self.sources:
            return False
        if legs_in_use >= self.max_legs:
            return False
        return self._within_rate(source, now)

    def _within_rate(self, source: str, now: float) -> bool:
        recent = self._recent.setdefault(source, deque())
        while recent and recent[0] <= now - 60.0:
            recent.popleft()
        if len(recent) >= self.per_minute:
            return False
        recent.append(now)
        return True
