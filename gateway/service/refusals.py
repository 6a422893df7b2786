"""One stable log line per refused source per minute, for people and for fail2ban.

A scanner sends thousands of INVITEs; the log must not grow by thousands of
lines, yet the admin (and fail2ban, deploy/fail2ban/) must see who knocks.
The first INVITE refused from a source is reported at once; the ones after
it are counted and reported together, at most once a minute:

    refused source 192.0.2.7: not the trunk (1 INVITEs)
    refused source 192.0.2.7: not the trunk (5120 INVITEs)

The wording is an interface: deploy/fail2ban/filter.d/sip-failover.conf
matches it. Only ``not the trunk`` lines may lead to a ban; the trunk's own
address is refused for other reasons (rate, no free leg), and banning it
would cut every call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NOT_THE_TRUNK = "not the trunk"
OVER_LIMIT = "over the call limit or no free leg"
STOPPING = "the gateway is stopping"
REPORT_EVERY_S = 60.0
MAX_SOURCES = 4096  # a spoofed flood from many addresses must not grow memory without end


@dataclass
class _Tally:
    reported_at: float
    unreported: int = 0


@dataclass
class RefusedSources:
    """Counts refusals per source; says when one deserves a log line. Pure: pass ``now``."""

    every: float = REPORT_EVERY_S
    max_sources: int = MAX_SOURCES
    _tally: dict[str, _Tally] = field(default_factory=dict)

    def refused(self, source: str, reason: str, now: float) -> str | None:
        """Count one refused INVITE; return the line to log, or None (already said)."""
        tally = self._tally.get(source)
        if tally is None:
            self._make_room(now)
            self._tally[source] = _Tally(reported_at=now)
            return line(source, reason, 1)
        tally.unreported += 1
        if now - tally.reported_at < self.every:
            return None
        count, tally.unreported, tally.reported_at = tally.unreported, 0, now
        return line(source, reason, count)

    def _make_room(self, now: float) -> None:
        if len(self._tally) < self.max_sources:
            return
        quiet = [s for s, t in self._tally.items() if now - t.reported_at >= self.every]
        for source in quiet or list(self._tally)[: self.max_sources // 4]:
            del self._tally[source]


def line(source: str, reason: str, count: int) -> str:
    """The log line for ``count`` INVITEs refused from ``source``."""
    return f"refused source {source}: {reason} ({count} INVITEs)"


def reason_for(source: str, trunk_sources: frozenset[str], accepting: bool) -> str:
    """Why an INVITE from ``source`` was refused, in the log's words."""
    if source not in trunk_sources:
        return NOT_THE_TRUNK
    return OVER_LIMIT if accepting else STOPPING
