"""The backlog: a call's status work runs in order, one piece per turn, SIP read between."""

from __future__ import annotations

import asyncio
import socket

from gateway.backlog import Backlog


async def test_a_packet_arriving_during_the_backlog_is_read_before_the_rest() -> None:
    loop = asyncio.get_running_loop()
    backlog = Backlog(loop)
    done: list[str] = []
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    read = asyncio.Event()

    def on_packet() -> None:
        ours.recv(64)
        done.append("packet")
        read.set()

    loop.add_reader(ours.fileno(), on_packet)
    try:
        backlog.add(theirs.send, b"404")  # the final answer arrives as the first piece runs
        for n in range(5):
            backlog.add(done.append, f"event {n}")
        async with asyncio.timeout(5):
            await read.wait()
            await backlog.drained()
    finally:
        loop.remove_reader(ours.fileno())
        ours.close()
        theirs.close()
    assert done.index("packet") < done.index("event 4")  # not held for the whole backlog
    assert [d for d in done if d != "packet"] == [f"event {n}" for n in range(5)]  # in order


async def test_a_failing_piece_does_not_stop_the_others() -> None:
    backlog = Backlog(asyncio.get_running_loop())
    done: list[int] = []
    backlog.add(done.append, 1)
    backlog.add(int, "not a number")
    backlog.add(done.append, 2)
    async with asyncio.timeout(5):
        await backlog.drained()
    assert done == [1, 2]


async def test_flush_runs_what_is_left_at_once() -> None:
    backlog = Backlog(asyncio.get_running_loop())
    done: list[int] = []
    for n in range(3):
        backlog.add(done.append, n)
    backlog.flush()
    assert done == [0, 1, 2]
    assert len(backlog) == 0
    async with asyncio.timeout(5):
        await backlog.drained()  # nothing left: returns at once
