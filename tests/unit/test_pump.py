"""The engine pump: woken by SIP sockets, ticking for pjsip's timers, polling without sockets.

A fake engine stands in for pjsua: its ``work`` reads the SIP socket the way
pjsip does inside ``libHandleEvents`` and records what it got.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gateway.sip import pump as pump_module
from gateway.sip.pump import EnginePump, SipSockets, find_sip_sockets

if TYPE_CHECKING:
    from collections.abc import Iterator

WAIT_S = 5.0  # bound for a loaded machine; an event ends each wait long before


@pytest.fixture
def sip_udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


class FakeEngine:
    """Reads its socket when asked to work, like ``libHandleEvents(0)``."""

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self.received: list[bytes] = []
        self.calls = 0
        self.got = asyncio.Event()
        self.received_at = 0  # which call of work() read the last datagram

    def work(self) -> int:
        self.calls += 1
        if self.sock is None:
            return 0
        try:
            self.received.append(self.sock.recv(2048))
        except BlockingIOError:
            return 0
        self.received_at = self.calls
        self.got.set()
        return 1


def _send(port: int, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.sendto(data, ("127.0.0.1", port))


def test_finds_the_udp_socket_on_the_sip_port_and_nothing_else(sip_udp: socket.socket) -> None:
    port = sip_udp.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp:
        rtp.bind(("127.0.0.1", 0))
        found = find_sip_sockets({port})
    assert found.readable == {sip_udp.fileno()}
    assert found.connecting == frozenset()


def test_finds_tcp_listener_its_connections_and_the_trunk_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener, \
         socket.create_server(("127.0.0.1", 0)) as trunk:  # fmt: skip
        port, trunk_port = listener.getsockname()[1], trunk.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as inbound_peer, \
             socket.create_connection(("127.0.0.1", trunk_port)) as outgoing:  # fmt: skip
            accepted, _ = listener.accept()
            with accepted:
                found = find_sip_sockets({port}, {trunk_port})
                assert found.readable >= {listener.fileno(), accepted.fileno(), outgoing.fileno()}
                assert inbound_peer.fileno() not in found.readable  # its local port is not ours
                assert find_sip_sockets({port}).readable.isdisjoint({outgoing.fileno()})


async def test_a_datagram_wakes_the_engine_without_any_tick(sip_udp: socket.socket) -> None:
    engine = FakeEngine(sip_udp)
    port = sip_udp.getsockname()[1]
    pump = EnginePump(asyncio.get_running_loop(), engine.work, lambda: find_sip_sockets({port}))
    assert pump.start()
    try:
        _send(port, b"INVITE sip:x SIP/2.0")
        # Nothing ticks here (run() is not running): only the socket can wake it.
        await asyncio.wait_for(engine.got.wait(), WAIT_S)
    finally:
        pump.close()
    assert engine.received == [b"INVITE sip:x SIP/2.0"]
    assert pump.woken >= 1


async def test_after_work_the_engine_gets_one_more_look(sip_udp: socket.socket) -> None:
    # pjsip may queue a zero-delay timer while it handles a message: the pump
    # looks once more right after, without waiting for its tick.
    engine = FakeEngine(sip_udp)
    port = sip_udp.getsockname()[1]
    pump = EnginePump(asyncio.get_running_loop(), engine.work, lambda: find_sip_sockets({port}))
    pump.start()
    try:
        _send(port, b"SIP/2.0 404 Not Found")
        await asyncio.wait_for(engine.got.wait(), WAIT_S)
        for _ in range(3):  # a few loop iterations: call_soon callbacks run
            await asyncio.sleep(0)
        # One more look, and only one: that look found nothing to do.
        assert engine.calls == engine.received_at + 1
    finally:
        pump.close()


async def test_closed_pump_no_longer_wakes(sip_udp: socket.socket) -> None:
    engine = FakeEngine(sip_udp)
    port = sip_udp.getsockname()[1]
    pump = EnginePump(asyncio.get_running_loop(), engine.work, lambda: find_sip_sockets({port}))
    pump.start()
    pump.close()
    _send(port, b"OPTIONS sip:x SIP/2.0")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(engine.got.wait(), 0.2)
    assert engine.calls == 0


async def test_ticks_feed_the_watchdog_only_while_the_pump_runs(sip_udp: socket.socket) -> None:
    engine = FakeEngine(sip_udp)
    port = sip_udp.getsockname()[1]
    pump = EnginePump(asyncio.get_running_loop(), engine.work, lambda: find_sip_sockets({port}))
    pump.start()
    stop, ticked = asyncio.Event(), asyncio.Event()
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(engine.calls)
        if len(ticks) == 2:
            stop.set()
            ticked.set()

    await asyncio.wait_for(pump.run(stop, tick, lambda: False), WAIT_S)
    pump.close()
    assert ticked.is_set()
    assert ticks[0] >= 1  # the engine ran its timers before the watchdog was fed
    assert ticks == sorted(ticks)


def test_without_sockets_it_polls_on_a_clock() -> None:
    loop = asyncio.new_event_loop()
    try:
        engine = FakeEngine(None)
        pump = EnginePump(loop, engine.work, lambda: SipSockets(frozenset()))
        assert not pump.start()
        assert not pump.driven_by_sockets
        assert pump._interval(lambda: True) == pump_module.POLL_BUSY_S
        assert pump._interval(lambda: False) == pump_module.POLL_IDLE_S
    finally:
        loop.close()


async def test_with_sockets_it_ticks_slowly_busy_and_slower_idle(sip_udp: socket.socket) -> None:
    port = sip_udp.getsockname()[1]
    pump = EnginePump(asyncio.get_running_loop(), FakeEngine(sip_udp).work,
                      lambda: find_sip_sockets({port}))  # fmt: skip
    pump.start()
    try:
        assert pump._interval(lambda: True) == pump_module.TICK_S
        assert pump._interval(lambda: False) == pump_module.TICK_IDLE_S
    finally:
        pump.close()


async def test_a_connection_in_progress_is_watched_until_connected() -> None:
    with socket.create_server(("127.0.0.1", 0)) as trunk:
        trunk_port = trunk.getsockname()[1]
        ours = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ours.bind(("127.0.0.1", 0))
        with ours:
            fd = ours.fileno()
            states = [SipSockets(frozenset(), frozenset({fd})), SipSockets(frozenset({fd}))]
            seen: list[SipSockets] = []
            rescanned = asyncio.Event()

            def sockets() -> SipSockets:
                seen.append(states[min(len(seen), 1)])
                if len(seen) > 1:
                    rescanned.set()
                return seen[-1]

            engine = FakeEngine(None)
            pump = EnginePump(asyncio.get_running_loop(), engine.work, sockets, streams=True)
            pump.start()
            ours.setblocking(False)
            ours.connect_ex(("127.0.0.1", trunk_port))
            try:
                # Writable once connected: the pump works, then looks again.
                await asyncio.wait_for(rescanned.wait(), WAIT_S)
                assert engine.calls >= 1
                assert pump.watched() == {fd: "read"}
            finally:
                pump.close()


def test_looking_for_sockets_leaves_no_descriptor_behind(tmp_path: Path) -> None:
    # The gateway looks again after every wake when its trunk is on TCP/TLS:
    # a descriptor left open per look ran it out of files within a call.
    def open_fds() -> int:
        return len(list(Path("/proc/self/fd").iterdir()))

    with (tmp_path / "not-a-socket").open("w"), socket.socket(socket.AF_INET6) as unbound:
        del unbound
        before = open_fds()
        for _ in range(20):
            find_sip_sockets({5060})
        assert open_fds() == before
