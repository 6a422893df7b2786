"""RTP is read while legs are up, and a little after the last one; the heap is given back
once the engine falls quiet (gateway/sip/idle.py)."""

from __future__ import annotations

from gateway.sip.idle import POLL_LINGER_S, MediaPoller, QuietHeap


def test_it_reads_from_the_first_leg_until_a_while_after_the_last() -> None:
    poller = MediaPoller()
    poller.follow(0, now=0.0)
    assert not poller.polling, "nothing to read before any leg"
    poller.follow(1, now=1.0)
    assert poller.polling
    poller.follow(0, now=1.0 + POLL_LINGER_S - 0.1)
    assert poller.polling, "a closed socket's slot is freed only by a poll, 500 ms later"
    poller.follow(0, now=1.0 + POLL_LINGER_S)
    assert not poller.polling


def test_a_leg_during_the_linger_keeps_it_reading() -> None:
    poller = MediaPoller()
    poller.follow(2, now=0.0)
    poller.follow(0, now=1.0)
    poller.follow(1, now=1.5)
    poller.follow(0, now=POLL_LINGER_S + 0.5)
    assert poller.polling, "the linger counts from the last leg seen"


def test_the_heap_is_trimmed_once_each_time_the_engine_falls_quiet() -> None:
    trims: list[int] = []
    heap = QuietHeap(lambda: trims.append(1))
    assert not heap.follow(busy=False), "nothing was freed before any work"
    heap.follow(busy=True)
    heap.follow(busy=True)
    assert not trims, "never while a call or a transaction is up"
    assert heap.follow(busy=False)
    heap.follow(busy=False)
    assert len(trims) == 1, "once per quiet spell, not on every idle tick"
    heap.follow(busy=True)
    heap.follow(busy=False)
    assert len(trims) == 2
