"""RTP is read while legs are up, and a little after the last one (gateway/sip/idle.py)."""

from __future__ import annotations

from gateway.sip.idle import POLL_LINGER_S, MediaPoller


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
