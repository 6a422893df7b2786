"""When has the caller stopped talking? (pure: levels and the time passed in)."""

from __future__ import annotations

from dataclasses import dataclass

# pjsua's conference bridge reports a port's level as 0..255 (linear, of the
# last frame). Line noise on a quiet G.711 call sits well under 10; speech
# peaks far above it.
QUIET_LEVEL = 8


@dataclass
class SilenceDetector:
    """Says when the caller's audio has stayed quiet for ``seconds``.

    Args:
        seconds: how long quiet must last to end a recording.
        threshold: levels at or below this count as quiet.
    """

    seconds: float
    threshold: int = QUIET_LEVEL
    _quiet_since: float | None = None

    def feed(self, level: int, now: float) -> bool:
        """Take one level reading; True once quiet has lasted ``seconds``."""
        if level > self.threshold:
            self._quiet_since = None
            return False
        if self._quiet_since is None:
            self._quiet_since = now
        return now - self._quiet_since >= self.seconds
