"""The engine pump: pjsua works when SIP traffic arrives, not on a clock.

pjsua runs with ``threadCnt=0``: its SIP sockets are read, and its timers
fired, only inside ``libHandleEvents`` on the loop's thread. Polling that
every millisecond costs a core's percent when idle and still makes a caller
wait for the next look. pjsua2 does not hand out its SIP sockets, but they
can be found: every socket this process holds is in ``/proc/self/fd``, and
pjsip's are the ones bound to the SIP ports (UDP and the TCP/TLS listeners
with the connections they accepted) or connected to the trunk's server.
The pump watches them (through one epoll set the loop reads), so a datagram
or a segment wakes the loop at once and the engine's work runs there.

pjsip's timers (retransmissions, timer B, registration refresh) have no
public "next deadline" in pjsua2: a slow tick runs them, late by at most one
tick: ``TICK_S`` while a call or leg is up or pjsip has a transaction in
progress (T1 is 500 ms, RFC 3261 17.1.1.1; a transaction lasts until timer
B/F, 32 s, or its answer and timer D/K), ``TICK_IDLE_S`` otherwise: then only
the registration refresh, the NAT keep-alive and the probes' schedule (seconds
to hours apart) wait on it, and a REGISTER refresh is sent at most that late,
then retransmitted on the fast tick. A socket still
connecting (TCP to the trunk) is watched for writability until it is
connected. RTP does not ride on this: pjmedia has its own I/O queue, read on
a thread of its own while legs are up (``gateway/sip/idle.py``).

If no socket can be found (another pjsua2 build, no ``/proc``), the pump
falls back to polling on a clock, as before, and says so in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

TICK_S = 0.05  # pjsip's timers run at least this often while a call, leg or transaction is up
TICK_IDLE_S = 1.0  # and when idle (registration refresh, keep-alive, probes: seconds apart)
POLL_BUSY_S = 0.001  # fallback without sockets: a call or leg is up
POLL_IDLE_S = 0.02  # fallback without sockets: idle
_FDS = Path("/proc/self/fd")


@dataclass(frozen=True, slots=True)
class SipSockets:
    """pjsip's sockets by what the pump waits for on them."""

    readable: frozenset[int]
    connecting: frozenset[int] = frozenset()  # TCP connects in progress: wait to write


def find_sip_sockets(
    ports: Collection[int], peer_ports: Collection[int] = (), fds: Collection[int] | None = None
) -> SipSockets:
    """The sockets of this process that carry SIP.

    Args:
        ports: the SIP ports pjsip listens on (UDP, TCP, TLS).
        peer_ports: the trunk server's ports; a TCP/TLS connection to one
            of them is a connection pjsip opened to the trunk.
        fds: the descriptors to look at (default: every one this process holds).
    """
    readable: set[int] = set()
    connecting: set[int] = set()
    for fd in _open_fds() if fds is None else fds:
        kind = _sip_kind(fd, ports, peer_ports)
        if kind == "connecting":
            connecting.add(fd)
        elif kind is not None:
            readable.add(fd)
    return SipSockets(frozenset(readable), frozenset(connecting))


def _open_fds() -> list[int]:
    try:
        return [int(entry.name) for entry in _FDS.iterdir()]
    except OSError:
        return []


def _sip_kind(fd: int, ports: Collection[int], peer_ports: Collection[int]) -> str | None:
    """``"read"``, ``"connecting"`` or None (not a SIP socket, or gone)."""
    sock = _socket_copy(fd)
    if sock is None:
        return None
    with sock:
        try:
            local = sock.getsockname()
        except OSError:
            return None
        if sock.family not in {socket.AF_INET, socket.AF_INET6}:
            return None
        if local[1] in ports and sock.type in {socket.SOCK_DGRAM, socket.SOCK_STREAM}:
            return "read"  # UDP, a TCP/TLS listener, or a connection it accepted
        return _outgoing_kind(sock, peer_ports) if sock.type == socket.SOCK_STREAM else None


def _socket_copy(fd: int) -> socket.socket | None:
    """A socket object on a duplicate of ``fd`` (None: not a socket, or closed)."""
    try:
        if not (_FDS / str(fd)).readlink().name.startswith("socket:"):
            return None
        copy = os.dup(fd)
    except OSError:
        return None
    try:
        return socket.socket(fileno=copy)
    except OSError:
        os.close(copy)
        return None


def _outgoing_kind(sock: socket.socket, peer_ports: Collection[int]) -> str | None:
    try:
        peer = sock.getpeername()
    except OSError as error:
        # Not connected yet. connect() gave it a local port; a listener or a
        # socket never connected is not waited on (it would be writable, or
        # never, forever). Only a trunk over TCP/TLS has such sockets.
        connecting = (error.errno == errno.ENOTCONN and sock.getsockname()[1]
                      and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))  # fmt: skip
        return "connecting" if connecting and peer_ports else None
    return "read" if peer[1] in peer_ports else None


class EnginePump:
    """Runs ``work`` when a SIP socket is readable, and on a slow tick.

    pjsip opens and closes its TCP/TLS connections on its own, so their
    descriptors are never handed to the loop itself: a descriptor the loop
    watches and pjsip closes (then reuses) can make libuv abort. They go into
    a private epoll set instead, which the kernel prunes as they close, and
    the loop watches that set's one descriptor.

    Args:
        loop: the running loop; every call to ``work`` happens on its thread.
        work: let the engine work and act on what it reported (no wait);
            returns how many things happened.
        sockets: finds the engine's SIP sockets now.
        streams: whether connections come and go (a trunk over TCP/TLS):
            then the sockets are looked for again after each wake and tick.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        work: Callable[[], int],
        sockets: Callable[[], SipSockets],
        *,
        streams: bool = False,
    ) -> None:
        self.loop = loop
        self._work = work
        self._sockets = sockets
        self._streams = streams
        self._epoll: select.epoll | None = None
        self._watched: dict[int, int] = {}  # fd -> epoll events
        self._follow_up: asyncio.Handle | None = None
        self.woken = 0  # wakes by a socket: tests and the benchmark read it

    @property
    def driven_by_sockets(self) -> bool:
        """False when no SIP socket was found: the pump polls on a clock."""
        return self._epoll is not None

    def start(self) -> bool:
        """Watch the engine's SIP sockets; False (logged) when none was found."""
        found = self._sockets()
        if (found.readable or found.connecting) and hasattr(select, "epoll"):
            self._epoll = select.epoll()
            self.loop.add_reader(self._epoll.fileno(), self._wake)
            self._watch(found)
            logger.debug("engine pump: woken by SIP sockets {}", sorted(self._watched))
            return True
        logger.warning("engine pump: no SIP socket found; polling pjsua every {} ms instead",
                       POLL_BUSY_S * 1000)  # fmt: skip
        return False

    def rescan(self) -> None:
        """Find the SIP sockets again: connections opened or closed since."""
        if self._epoll is not None:
            self._watch(self._sockets())

    def watched(self) -> dict[int, str]:
        """The sockets watched now, and for what (``read`` or ``connect``)."""
        return {fd: "read" if events & select.EPOLLIN else "connect"
                for fd, events in self._watched.items()}  # fmt: skip

    def _watch(self, found: SipSockets) -> None:
        assert self._epoll is not None
        wanted = dict.fromkeys(found.readable, select.EPOLLIN)
        wanted.update(dict.fromkeys(found.connecting, select.EPOLLOUT))
        for fd in self._watched.keys() - wanted.keys():
            with contextlib.suppress(OSError):  # closed: the kernel dropped it already
                self._epoll.unregister(fd)
        for fd, events in wanted.items():
            try:
                self._epoll.register(fd, events)
            except FileExistsError:
                self._epoll.modify(fd, events)
            except OSError:
                continue  # closed meanwhile
        self._watched = wanted

    def _wake(self) -> None:
        assert self._epoll is not None
        self.woken += 1
        self._run()
        if self._streams:
            self.rescan()
        # The set stays readable until looked into: this look re-arms it for
        # what is still unread (level-triggered), and clears it otherwise.
        self._epoll.poll(0)

    def _run(self) -> None:
        if self._work() and self._follow_up is None:
            # What was just done may have queued work pjsip runs on its next
            # look (a zero-delay timer, a pending job): give it that look now.
            self._follow_up = self.loop.call_soon(self._run_follow_up)

    def _run_follow_up(self) -> None:
        self._follow_up = None
        self._work()

    async def run(self, stop: asyncio.Event, on_tick: Callable[[], None],
                  busy: Callable[[], bool]) -> None:  # fmt: skip
        """Tick until ``stop`` is set: pjsip's timers, and ``on_tick`` (the watchdog).

        Ticks come every ``TICK_S`` while ``busy()``, else every ``TICK_IDLE_S``;
        without sockets each tick is a poll: ``POLL_BUSY_S`` or ``POLL_IDLE_S``.
        """
        while not stop.is_set():
            self._run()
            on_tick()
            if self._streams:
                self.rescan()
            await asyncio.sleep(self._interval(busy))

    def _interval(self, busy: Callable[[], bool]) -> float:
        if self._epoll is not None:
            return TICK_S if busy() else TICK_IDLE_S
        return POLL_BUSY_S if busy() else POLL_IDLE_S

    def close(self) -> None:
        """Stop watching (before pjsua closes its sockets)."""
        if self._follow_up is not None:
            self._follow_up.cancel()
            self._follow_up = None
        if self._epoll is not None:
            self.loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll = None
            self._watched = {}
