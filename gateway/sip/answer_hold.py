"""Answers held while a leg's audio is heard for Special Information Tones.

Some networks answer (200) and then play the tones and "the number is not
assigned". With the rules' ``sit.hold_answer``, the switchboard hands a leg's
answer to its call session only once that leg has been heard for so long
without tones (gateway/sip/tap.py listens 3 s after every answer): until
then the caller still hears ringback and nothing is bridged. Tones heard
meanwhile fail the leg (BYE) like tones in early media, and the call fails
over; the session never saw an answer. The price: whoever answers hears
nothing for ``hold_answer`` seconds (docs/health.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from gateway.core.events import LegAnswered


class AnswerHold:
    """Held answers by leg, each released by its own timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 release: Callable[[str, LegAnswered], None]) -> None:  # fmt: skip
        """Args: ``release(call_id, answer)`` feeds an answer to its session."""
        self.loop = loop
        self._release = release
        self._held: dict[str, asyncio.TimerHandle] = {}

    def hold(self, call_id: str, answer: LegAnswered, seconds: float | None) -> bool:
        """Hold ``answer`` for ``seconds``; False (not held) for none or an answer held before."""
        if not seconds or answer.leg in self._held:
            return False
        logger.info("leg {}: answered; held {:.1f} s while its audio is heard for SIT",
                    answer.leg, seconds)  # fmt: skip
        self._held[answer.leg] = self.loop.call_later(seconds, self._over, call_id, answer)
        return True

    def drop(self, leg: str) -> bool:
        """The leg ended or played tones: its answer never counts. Whether it was held."""
        timer = self._held.pop(leg, None)
        if timer is not None:
            timer.cancel()
        return timer is not None

    def _over(self, call_id: str, answer: LegAnswered) -> None:
        if self._held.pop(answer.leg, None) is not None:
            logger.info("leg {}: no tones heard; the answer counts", answer.leg)
            self._release(call_id, answer)
