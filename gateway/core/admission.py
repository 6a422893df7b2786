"""Which INVITEs may take a call slot, and how the engine's slots are shared.

``Admission.screen`` runs inside pjsua's account selection, before pjsua
creates a dialog, a call slot or a media socket, so an INVITE it turns away
costs nothing but a stateless 480. It sorts every INVITE into one of:

- a stranger (not a trunk address) or a flood (over the per-source rate):
  refused before any dialog, only *counted* (a flood must not cost a log
  line each); the count is published as ``refused_sources_per_minute``;
- a trunk caller with no call slot left, or while the gateway stops: a
  caller turned away, logged like every other call (gateway/core/intake.py);
- a retransmission of an INVITE already turned away: the same caller, once;
- admitted: the intake decides its fate once its inbound leg exists.

``Capacity`` is the one place that says whether a caller, a ring or a probe
fits in the engine: in its call legs, and in the socket handles of its I/O
queue (each leg's RTP and RTCP sockets, held a while after the leg ends, and
the SIP transports' own). Pure: the caller passes the time and an
``EngineLoad``, what the engine holds at that moment.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

REPEAT_WINDOW_S = 32.0  # 64*T1: how long a UAC may retransmit an INVITE (RFC 3261 17.1.1.2)
PROBE_LEGS = 3  # a call probe's leg, plus a customer's call and its first ring
LEGS_TO_RING = 2  # a caller's leg and one leg to ring
MEDIA_SOCKETS = 2  # each leg's RTP and RTCP sockets, in the engine's I/O queue
# pjlib keeps a closed socket's key 500 ms before another socket may take it
# (PJ_IOQUEUE_KEY_FREE_DELAY). pjsua closes a leg's sockets before it reports
# the leg's end, so a leg ended less than this long ago may still hold its two
# (50 ms of slack for pjlib's clock).
HELD_AFTER_END_S = 0.55
HANDLE_MARGIN = 3  # handles never planned for: a DNS query, a late TCP connection


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """What the SIP engine holds at one moment (the adapter's snapshot).

    Attributes:
        legs: live call legs, calls' and probes' together.
        ended: when legs ended lately (the loop's clock): their media sockets
            are still held (``HELD_AFTER_END_S``).
        sip_handles: the SIP transports' sockets and the TCP/TLS connections
            known to be open.
    """

    legs: int
    ended: tuple[float, ...] = ()
    sip_handles: int = 1

    def handles(self, now: float) -> int:
        """Socket handles taken in the engine's I/O queue at ``now``."""
        held = sum(1 for at in self.ended if now - at < HELD_AFTER_END_S)
        return self.sip_handles + MEDIA_SOCKETS * (self.legs + held)



@dataclass(frozen=True, slots=True)
class Capacity:
    """How the engine's call legs and socket handles are shared (docs/limits.md).

    Attributes:
        legs: the legs calls may use, inbound and outbound together
            (``EngineLimits.call_legs``, read from the engine at start: its
            slots but the one kept free so that every INVITE reaches the gate).
        handles: the socket handles of the engine's I/O queue
            (``EngineLimits.io_handles``: 64 in the wheel's select() queue);
            pjlib aborts the process when a socket finds none free. None: the
            engine does not say (an epoll build of ours has 1024), and only
            legs are counted.
    """

    legs: int
    handles: int | None = None

    def room_for_caller(self, load: EngineLoad, now: float) -> bool:
        """A new caller's inbound leg fits, with the sockets of its first ring.

        Short of handles, the gate's stateless 480 costs nothing; a caller
        let in would spend two sockets only to be answered 503.
        """
        return load.legs < self.legs and self._sockets_for(LEGS_TO_RING, load, now)

    def room_for_leg(self, load: EngineLoad, now: float) -> bool:
        """One more outgoing leg fits."""
        return load.legs < self.legs and self._sockets_for(1, load, now)

    def room_for_probe(self, load: EngineLoad, now: float) -> bool:
        """A call probe leaves room for a customer's call and its first ring."""
        return self.legs - load.legs >= PROBE_LEGS and self._sockets_for(PROBE_LEGS, load, now)

    def _sockets_for(self, legs: int, load: EngineLoad, now: float) -> bool:
        if self.handles is None:
            return True
        wanted = load.handles(now) + MEDIA_SOCKETS * legs + HANDLE_MARGIN
        return wanted <= self.handles

    def room_in_pool(self, inbound: int, outbound: int, *, last_resort: bool) -> bool:
        """Whether a worker behind the edge takes one more caller (docs/scaling.md).

        Each call in progress counts for at least the legs it needs to ring
        (its caller's and one more), even before its ring leg exists: INVITEs
        that arrive together must not all be taken by one worker. A worker
        that says no is not refusing the caller: the edge offers the call to
        the next worker.

        Args:
            inbound: callers' legs in progress.
            outbound: legs rung (and probes) in progress.
            last_resort: the edge found no worker that can ring: a voicemail
                needs only the caller's leg.
        """
        committed = inbound + max(outbound, inbound)
        needed = 1 if last_resort else LEGS_TO_RING
        return committed + needed <= self.legs


class Screening(StrEnum):
    """What the gate makes of one INVITE."""

    ADMIT = "admit"
    STRANGER = "stranger"  # not from the trunk: counted, not logged
    FLOOD = "flood"  # over the per-source rate: counted, not logged
    FULL = "full"  # a trunk caller with no slot left: turned away, logged
    STOPPING = "stopping"  # a trunk caller while the gateway stops: turned away, logged
    REPEAT = "repeat"  # a retransmission of an INVITE turned away already

    @property
    def turned_away(self) -> bool:
        """A trunk caller refused at the gate: a call for the log."""
        return self in {Screening.FULL, Screening.STOPPING}


@dataclass
class RefusalRate:
    """INVITEs refused as strangers or floods in the last minute, in 1 s buckets.

    Buckets, not timestamps: a flood of 20,000 INVITEs/s costs 60 counters.
    """

    _buckets: deque[list[int]] = field(default_factory=deque)  # [second, count]

    def note(self, now: float) -> None:
        second = int(now)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += 1
        else:
            self._buckets.append([second, 1])
        self._forget(now)

    def per_minute(self, now: float) -> int:
        self._forget(now)
        return sum(count for _, count in self._buckets)

    def _forget(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] <= int(now) - 60:
            self._buckets.popleft()


@dataclass
class Admission:
    """Admission policy for calls coming in.

    Args:
        sources: the IP addresses of the trunk; every other source is refused.
        capacity: how the engine's slots are shared.
        per_minute: INVITEs accepted from one source in any 60 s window; the
            trunk's own address passes the source check, so a flood from it
            (or through it) is bounded here.
    """

    sources: frozenset[str]
    capacity: Capacity
    per_minute: int = 120
    accepting: bool = True
    refused: RefusalRate = field(default_factory=RefusalRate)
    _recent: dict[str, deque[float]] = field(default_factory=dict)
    _turned_away: dict[str, float] = field(default_factory=dict)  # SIP Call-ID -> when

    def screen(self, source: str, sip_call_id: str, load: EngineLoad, now: float) -> Screening:
        """Sort one INVITE (see the module docstring); count the strangers and floods."""
        screening = self._screen(source, sip_call_id, load, now)
        if screening in {Screening.STRANGER, Screening.FLOOD}:
            self.refused.note(now)
        elif screening.turned_away:
            self._turned_away[sip_call_id] = now
        return screening

    def _screen(self, source: str, sip_call_id: str, load: EngineLoad, now: float) -> Screening:
        if source not in self.sources:
            return Screening.STRANGER
        if self._repeated(sip_call_id, now):
            return Screening.REPEAT
        if not self._within_rate(source, now):
            return Screening.FLOOD
        if not self.accepting:
            return Screening.STOPPING
        if not self.capacity.room_for_caller(load, now):
            return Screening.FULL
        return Screening.ADMIT

    def _repeated(self, sip_call_id: str, now: float) -> bool:
        for call_id, at in list(self._turned_away.items()):
            if at <= now - REPEAT_WINDOW_S:
                del self._turned_away[call_id]
        return bool(sip_call_id) and sip_call_id in self._turned_away

    def _within_rate(self, source: str, now: float) -> bool:
        recent = self._recent.setdefault(source, deque())
        while recent and recent[0] <= now - 60.0:
            recent.popleft()
        if len(recent) >= self.per_minute:
            return False
        recent.append(now)
        return True
