"""When has the caller stopped talking? (pure: levels and the time passed in)."""

from __future__ import annotations

from dataclasses import dataclass

# The engine's level (CallMedia.rx_level) is the mean amplitude of the last
# 20 ms frame the caller sent, mu-law coded and scaled to 0..100 by pjsua2.
# Measured over SIPp's g711a.pcap: speech reads 5..35 with brief dips to 3..8
# between words; its quiet lead-in, and no RTP at all (a phone with silence
# suppression), read 0. 8 is a mean amplitude near -44 dBFS: line noise
# stays under it, a voice does not for long.
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
