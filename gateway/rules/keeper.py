"""The rules in force: loaded, reloaded, the mode set over MQTT.

One keeper per process that plans calls or watches targets. A single gateway
has one; in a pool, the control process has one (for the health monitor, the
alerts and the status feed) and tells every worker to reload or to take a
mode, which each worker's own keeper then does.

A reload checks the new file whole before it replaces the running rules in
one assignment; calls in progress keep the rules they started on. A broken
file changes nothing: its problems are logged and published. A mode set over
MQTT stays in force across a reload.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from loguru import logger

from gateway.core.rules import MODES, Rules, RulesError
from gateway.rules.load import load_rules

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from gateway.status.bus import StatusSink



class RulesKeeper:
    """The rules in force, and who hears when they change.

    Args:
        path: the rules file.
        rules: the rules loaded at start.
        notify: the status event sink (``rules.loaded``, ``rules.mode``).
        call_legs: the legs the SIP engine gives calls (a file is checked against them).
    """

    def __init__(self, path: Path, rules: Rules, notify: StatusSink, call_legs: int) -> None:
        self.path = path
        self.call_legs = call_legs
        self.rules = rules
        self.notify = notify
        self._in_force = (_digest(path), _now_iso())  # sha256 and time of the rules used
        self.on_use: list[Callable[[Rules], None]] = []  # every swap (a reload, a mode)
        self.on_load: list[Callable[[Rules], None]] = []  # every file loaded

    def announce(self) -> None:
        """At start: publish the rules and the mode in force, as after a load."""
        self._loaded(self.rules, None)
        mode, source = self.rules.active_mode
        self.notify("rules.mode", {"mode": mode, "source": source})

    def reload(self) -> None:
        """Load the file again; a broken file changes nothing."""
        digest = _digest(self.path)
        try:
            rules = load_rules(self.path, call_legs=self.call_legs)
        except RulesError as error:
            for problem in error.problems:
                logger.error("rules not reloaded: {}", problem)
            self._loaded(None, "\n".join(str(p) for p in error.problems))
            return
        self._in_force = (digest, _now_iso())
        self.use(rules.with_mode_override(self.rules.mode_override))
        logger.info("rules reloaded from {}", self.path)
        self._loaded(rules, None)

    def set_mode(self, text: str | None) -> None:
        """The mode set over MQTT (None or "": the file's); anything else is ignored."""
        if text and text not in MODES:
            logger.warning("mode {!r} ignored (expected {} or empty)", text, ", ".join(MODES))
            return
        self.use(self.rules.with_mode_override(text or None))

    def use(self, rules: Rules) -> None:
        """Swap in ``rules`` for new calls; report a changed mode."""
        before = self.rules.active_mode
        self.rules = rules
        for listener in self.on_use:
            listener(rules)
        mode, source = rules.active_mode
        if (mode, source) != before:
            logger.info("mode {} (set by {})", mode, source)
            self.notify("rules.mode", {"mode": mode, "source": source})

    def _loaded(self, rules: Rules | None, error: str | None) -> None:
        """Publish which rules are in force (after a refused reload: still the old ones)."""
        self.notify("rules.loaded", {"file": str(self.path), "sha256": self._in_force[0],
                                     "loaded_at": self._in_force[1], "error": error})  # fmt: skip
        if rules is not None:
            for listener in self.on_load:
                listener(rules)


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
