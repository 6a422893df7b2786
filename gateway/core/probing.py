"""When to probe each target: a pure scheduler with jitter and opening hours.

The adapter asks ``next_deadline()``, arms a timer, and at that time calls
``due(now, wall)`` and sends a probe to each target it returns. Times are
monotonic seconds; ``wall`` (aware) only feeds the ``only`` predicate, which the
caller builds from the rules' schedules.

The interval never depends on health: after a target goes bad its probes keep
their normal pace, because they are how the gateway learns it came back.

Invariants:
- every scheduled target has exactly one next time;
- ``due`` moves every target it looks at into the future, so a caller that
  follows ``next_deadline`` never spins.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime


@dataclass(frozen=True, slots=True)
class ProbeSchedule:
    """How often to probe one target.

    Attributes:
        every: seconds between probes (rules: ``every: 15m``).
        jitter: each interval is ``every`` times a factor drawn in
            ``[1 - jitter, 1 + jitter)``, so probes of many targets, or of many
            gateways behind one trunk, do not fall in step.
        only: ``is_open(wall) -> bool``: probe only while it holds (rules:
            ``only: office-hours``); None probes at all hours.
    """

    every: float
    jitter: float = 0.1
    only: Callable[[datetime], bool] | None = None

    def __post_init__(self) -> None:
        """Raises ValueError unless ``every > 0`` and ``0 <= jitter < 1``."""
        if self.every <= 0 or not 0 <= self.jitter < 1:
            raise ValueError("need every > 0 and 0 <= jitter < 1")


class ProbeScheduler:
    """The next probe time of every probed target."""

    def __init__(
        self, rand: Callable[[], float] = random.random, closed_recheck: float = 60.0
    ) -> None:
        """Create an empty scheduler; ``reload`` gives it the targets.

        Args:
            rand: a source of floats in ``[0, 1)`` (injected so tests choose).
            closed_recheck: seconds between looks at a target that is due while
                its ``only`` is closed: a probe goes out at most this long after
                the schedule opens.
        """
        self._rand = rand
        self._closed_recheck = closed_recheck
        self._schedules: dict[str, ProbeSchedule] = {}
        self._next: dict[str, float] = {}

    def reload(self, schedules: Mapping[str, ProbeSchedule], now: float) -> None:
        """Follow a rules reload.

        A new target's first probe is spread over ``[0, every * jitter)`` from
        ``now``, so a fresh start learns quickly without probing all at once. A
        remaining target keeps its next time, brought forward if the new
        ``every`` is shorter than the time left.

        Args:
            schedules: every probed target of the new rules.
            now: monotonic seconds.
        """
        self._next = {
            name: self._keep(name, schedule, now)
            if name in self._next
            else now + schedule.every * schedule.jitter * self._rand()
            for name, schedule in schedules.items()
        }
        self._schedules = dict(schedules)

    def due(self, now: float, wall: datetime) -> list[str]:
        """Take the targets to probe now, in name order, and schedule their next probe.

        A target that is due while its ``only`` is closed is looked at again
        after ``closed_recheck`` seconds, without a probe.

        Args:
            now: monotonic seconds.
            wall: aware wall time, for the ``only`` predicates.

        Returns:
            The names of the targets to probe.
        """
        ready = sorted(name for name, at in self._next.items() if at <= now)
        probe = [name for name in ready if self._is_open(name, wall)]
        for name in ready:
            self._next[name] = now + (
                self._interval(name) if name in probe else self._recheck(name)
            )
        return probe

    def record_probe(self, target: str, now: float) -> None:
        """Restart a target's interval after a probe sent outside the schedule.

        For example a test asked for over MQTT. Unknown names are ignored.
        """
        if target in self._schedules:
            self._next[target] = now + self._interval(target)

    def next_deadline(self) -> float | None:
        """When ``due`` should next be called (monotonic), or None with no targets."""
        return min(self._next.values(), default=None)

    def _keep(self, name: str, schedule: ProbeSchedule, now: float) -> float:
        return min(self._next[name], now + schedule.every * (1 + schedule.jitter))

    def _is_open(self, name: str, wall: datetime) -> bool:
        only = self._schedules[name].only
        return only is None or only(wall)

    def _interval(self, name: str) -> float:
        schedule = self._schedules[name]
        return schedule.every * (1 + schedule.jitter * (2 * self._rand() - 1))

    def _recheck(self, name: str) -> float:
        return min(self._closed_recheck, self._schedules[name].every)
