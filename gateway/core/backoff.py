"""Capped, jittered exponential backoff (pure: the random source is passed in)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


def backoff_delay(
    attempt: int, first: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    The delay doubles from ``first`` up to ``cap`` and is spread over
    [50 %, 100 %] of that, so a fleet of gateways that lost the same server
    does not come back in step (the jitter aiomqtt and AWS recommend).
    """
    ceiling = min(cap, first * 2.0 ** min(attempt, 32))
    return ceiling * (0.5 + 0.5 * rand())
