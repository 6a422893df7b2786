"""The retained part of the status feed, folded from events, kept in memory.

The MQTT publisher republishes all of it after every reconnect, so a broker
restart (which may forget retained messages) leaves subscribers with current
values. ``availability`` is not here: it is the publisher's connection state
(``online`` on connect, the Last Will ``offline``), not something an event says.

Pure: no I/O, no clock; tested in memory.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from gateway.json_types import JsonValue
    from gateway.status.bus import StatusEvent

TRUNK_REGISTRATION = "trunk/registration"
CALLS_ACTIVE = "calls/active"
REFUSED_SOURCES = "calls/refused_sources_per_minute"  # INVITEs refused before any dialog
RULES = "rules"
LAST_FAILOVER = "last_failover"
MODE = "mode"
ENGINE = "engine"
SLOTS = "slots"  # a pool's call legs in use and free, in all and per worker
INBOUND_HEALTH = "inbound/health"  # the last inbound loop test's verdict

_FIELDS: dict[str, tuple[str, ...]] = {
    TRUNK_REGISTRATION: ("state", "code", "reason", "since", "expires"),
    RULES: ("file", "sha256", "loaded_at", "error"),
    ENGINE: ("call_slots", "call_legs", "io_queue", "io_handles", "tls", "tls_ciphers"),
    SLOTS: ("in_use", "free", "workers"),
    INBOUND_HEALTH: ("verdict", "level", "at", "after_s", "sip_code", "call", "from", "text"),
}
_TOPIC_OF = {"trunk.registration": TRUNK_REGISTRATION, "rules.loaded": RULES,
             "engine.limits": ENGINE, "pool.slots": SLOTS,
             "inbound.health": INBOUND_HEALTH}  # fmt: skip
_HEALTH_FIELDS = ("state", "since", "evidence")
_FAILOVER_FIELDS = ("call_id", "from", "to", "outcome", "sip_code", "q850")
_NOT_IN_TOPIC = re.compile(r"[/+#\s\x00]")


def topic_name(target: str) -> str:
    """A target name made safe as one MQTT topic level (no ``/ + #``)."""
    return _NOT_IN_TOPIC.sub("_", target) or "_"


def health_topic(target: str) -> str:
    """Topic suffix of a target's health, e.g. ``target/anna/health``."""
    return f"target/{topic_name(target)}/health"


def _json(data: Mapping[str, JsonValue], fields: Iterable[str]) -> str:
    return json.dumps({key: data.get(key) for key in fields}, separators=(",", ":"))


class StatusState:
    """Current retained values by topic suffix (under the gateway's prefix)."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._targets: dict[str, None] = {}

    @property
    def targets(self) -> tuple[str, ...]:
        """Targets known from the rules (`set_targets`) or from health events."""
        return tuple(self._targets)

    def retained(self) -> dict[str, str]:
        """Every retained topic suffix with its current payload."""
        return dict(self._values)

    def set_targets(self, names: Iterable[str]) -> list[str]:
        """Declare the rules' targets (after each successful rules load).

        Returns:
            Targets that were known and are gone: their topics should be cleared.
        """
        wanted = dict.fromkeys(names)
        removed = [name for name in self._targets if name not in wanted]
        for name in removed:
            self._values.pop(health_topic(name), None)
        self._targets = wanted
        return removed

    def apply(self, event: StatusEvent) -> set[str]:
        """Fold one event in.

        Returns:
            Topic suffixes whose payload changed (empty for most call events).
        """
        update = self._payload(event)
        if update is None:
            return set()
        topic, payload = update
        if self._values.get(topic) == payload:
            return set()
        self._values[topic] = payload
        return {topic}

    def _payload(self, event: StatusEvent) -> tuple[str, str] | None:  # noqa: PLR0911 - one per kind
        data = event.data
        if event.kind in _TOPIC_OF:
            topic = _TOPIC_OF[event.kind]
            return topic, _json(data, _FIELDS[topic])
        if event.kind == "calls.active":
            return CALLS_ACTIVE, str(_count(data.get("count")))
        if event.kind == "calls.refused_sources":
            return REFUSED_SOURCES, str(_count(data.get("per_minute")))
        if event.kind == "target.health" and isinstance(data.get("target"), str):
            target = str(data["target"])
            self._targets.setdefault(target)
            return health_topic(target), _json(data, _HEALTH_FIELDS)
        if event.kind == "rules.mode":
            # The event says which mode and who set it; when is the event's own time.
            since = event.at.isoformat(timespec="seconds")
            fields = {"mode": data.get("mode"), "source": data.get("source"), "since": since}
            return MODE, json.dumps(fields, separators=(",", ":"))
        if event.kind == "call.failover":
            fields = {"at": event.at.isoformat(), **{k: data.get(k) for k in _FAILOVER_FIELDS}}
            return LAST_FAILOVER, json.dumps(fields, separators=(",", ":"))
        return None


def _count(value: JsonValue) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, int(value))
