"""The demo's timeline: both sides' lines, printed in the order they happened."""

from __future__ import annotations

import time
from typing import IO, TYPE_CHECKING

from gateway.demo.story import number

if TYPE_CHECKING:
    from gateway.demo.story import Entry, Story

HOLD_S = 0.05  # timeline lines wait this long for lines from the other side


class Timeline:
    """Prints the calls' lines in the order they happened, times from the first INVITE.

    Both sides' lines are held until neither has said anything for
    ``HOLD_S``, then printed sorted by time. The gateway's log times are cut
    to the millisecond, so a gateway line answering the far side (the
    failover after the 404) may carry an earlier time than its cause: such a
    line is placed just after its cause, which is what its true time was.
    A text that starts a new paragraph is printed as it is, without a time.
    """

    def __init__(self, out: IO[str], story: Story) -> None:
        self.out = out
        self.story = story
        self.pending: list[Entry] = []
        self.quiet_since = 0.0

    def add(self, entry: Entry) -> None:
        self.pending.append(entry)
        self.quiet_since = time.monotonic()

    def flush(self, *, force: bool = False) -> None:
        waiting = self.story.t0 is None or time.monotonic() - self.quiet_since < HOLD_S
        if not self.pending or (waiting and not force):
            return
        entries = sorted((self._when(at, cause), text) for at, text, cause in self.pending)
        t0 = self.story.t0 if self.story.t0 is not None else entries[0][0]
        self.out.writelines(
            text + "\n" if text.startswith("\n") else f"  {at - t0:7.3f}  {text}\n"
            for at, text in entries
        )
        self.out.flush()
        self.pending.clear()

    def _when(self, at: float, cause: str | None) -> float:
        event = self.story.cause(cause) if cause else None
        return max(at, number(event["t"]) + 1e-6) if event else at
