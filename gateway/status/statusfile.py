"""The status file: the running gateway's live state in ``<state_dir>/status.json``.

``sip-failover status`` reads it; so can any script. A bus subscriber folds
events with `StatusState` (the same fold as the MQTT retained topics) and
rewrites the file atomically (a temporary file, then ``os.replace``), at most
``min_interval`` apart however many events come, within a second of a change
of the broker link, and every ``heartbeat`` seconds when nothing happens, so
a reader can tell a live gateway from a hung one or from a dead one whose pid
was reused. On a clean stop the file is
kept, marked ``stopped``; a killed gateway leaves ``running`` with a dead pid.

No fsync: the file is rewritten often and only describes a running process,
so losing it in a power cut costs nothing, while fsyncs wear an SD card.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gateway.json_types import JsonObject, JsonValue, as_object, loads
from gateway.status.state import (
    CALLS_ACTIVE,
    ENGINE,
    LAST_FAILOVER,
    MODE,
    REFUSED_SOURCES,
    RULES,
    SLOTS,
    TRUNK_REGISTRATION,
    StatusState,
    health_topic,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from gateway.status.bus import EventBus

STATUS_FILE = "status.json"
MIN_INTERVAL = 0.25  # seconds between writes: at most four a second
HEARTBEAT = 5.0  # seconds between writes when nothing happens
POLL = 1.0  # seconds between looks at the broker link (it sends no event)
STALE_AFTER = 30.0  # a running gateway's file older than this: it is hung


class StatusFile:
    """Keeps ``status.json`` current while the gateway runs.

    Args:
        path: The file, normally ``<state_dir>/status.json``.
        bus: Where status events come from (subscribed at once).
        gateway_id: The gateway's name.
        targets: Returns the target names of the rules in force.
        mqtt: Returns the broker link (``connected``/``disconnected``), or
            None when no broker is configured.
        min_interval: Shortest time between two writes, seconds.
        heartbeat: Longest time between two writes, seconds.
    """

    def __init__(  # noqa: PLR0913 - keyword-only knobs with defaults
        self,
        path: Path,
        bus: EventBus,
        gateway_id: str,
        *,
        targets: Callable[[], Iterable[str]] = tuple,
        mqtt: Callable[[], str] | None = None,
        min_interval: float = MIN_INTERVAL,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self.path = path
        self.gateway_id = gateway_id
        self.state = StatusState()
        self._targets = targets
        self._mqtt = mqtt
        self._min_interval = min_interval
        self._heartbeat = heartbeat
        self._started = _now()
        self._subscription = bus.subscribe("statusfile", 1000)

    async def run(self) -> None:
        """Write the file until cancelled, then mark it stopped."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                # The document is read on the loop; the file is written and renamed
                # on a thread, so that the disk never holds up a SIP packet.
                await asyncio.to_thread(_replace, self.path, self.text())
                written, link = loop.time(), self._link()
                await asyncio.sleep(self._min_interval)
                while not await self._fold_next() and link == self._link():
                    if loop.time() - written >= self._heartbeat:
                        break
        finally:
            self._subscription.close()
            self._fold_buffered()
            self.write(stopped=True)

    async def _fold_next(self) -> bool:
        """Fold what came meanwhile, or wait up to `POLL` s for one event.

        Returns:
            Whether anything was folded.
        """
        if not len(self._subscription):
            try:
                async with asyncio.timeout(POLL):
                    self.state.apply(await self._subscription.get())
            except TimeoutError:
                return False
        self._fold_buffered()
        return True

    def _link(self) -> str:
        return self._mqtt() if self._mqtt is not None else "off"

    def _fold_buffered(self) -> None:
        while (event := self._subscription.get_nowait()) is not None:
            self.state.apply(event)

    def document(self, *, stopped: bool = False) -> JsonObject:
        """The file's content now (see docs/mqtt.md, "Status file")."""
        retained = self.state.retained()
        targets = dict.fromkeys(self._targets())
        targets.update(dict.fromkeys(self.state.targets))
        now = _now()
        return {
            "state": "stopped" if stopped else "running",
            "pid": os.getpid(),
            "gateway_id": self.gateway_id,
            "started_at": self._started,
            "updated_at": now,
            "stopped_at": now if stopped else None,
            "availability": "offline" if stopped else "online",
            "mqtt": self._link(),
            "trunk_registration": _parsed(retained.get(TRUNK_REGISTRATION)),
            "rules": _parsed(retained.get(RULES)),
            "mode": _parsed(retained.get(MODE)),
            "engine": _parsed(retained.get(ENGINE)),
            "calls_active": int(retained.get(CALLS_ACTIVE, "0")),
            "refused_sources_per_minute": int(retained.get(REFUSED_SOURCES, "0")),
            "slots": _parsed(retained.get(SLOTS)),
            "last_failover": _parsed(retained.get(LAST_FAILOVER)),
            "targets": {name: _parsed(retained.get(health_topic(name))) for name in targets},
        }

    def text(self, *, stopped: bool = False) -> str:
        """The file's text now."""
        return json.dumps(self.document(stopped=stopped), indent=2) + "\n"

    def write(self, *, stopped: bool = False) -> None:
        """Replace the file atomically with the current document."""
        _replace(self.path, self.text(stopped=stopped))


def _replace(path: Path, text: str) -> None:
    """Write ``text`` beside ``path``, then rename it over ``path`` (readers never see half)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _parsed(payload: str | None) -> JsonValue:
    return loads(payload) if payload is not None else None


class NotRunningError(Exception):
    """The gateway is not running (or not responding): no live status."""


def read_status(
    path: Path, now: datetime, pid_alive: Callable[[int], bool] | None = None
) -> JsonObject:
    """Read the status file and check that its gateway is alive.

    Args:
        path: ``<state_dir>/status.json``.
        now: The current time (aware).
        pid_alive: Whether a pid is a running process (default: ``kill(pid, 0)``).

    Returns:
        The document (`StatusFile.document`) of a live gateway.

    Raises:
        NotRunningError: No file, a stopped gateway, a dead pid, or a file
            not updated for `STALE_AFTER` seconds; the message says which.
    """
    try:
        document = as_object(loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise NotRunningError(f"the gateway is not running (no {path})") from None
    except (OSError, ValueError) as error:
        raise NotRunningError(f"cannot read {path}: {error}") from None
    if document is None:
        raise NotRunningError(f"cannot read {path}: not a JSON object")
    if document.get("state") == "stopped":
        raise NotRunningError(f"the gateway is not running (stopped at {document['stopped_at']})")
    pid = _count(document.get("pid"))
    if not (pid_alive or _pid_alive)(pid):
        raise NotRunningError(f"the gateway is not running (pid {pid} is gone: killed or crashed)")
    age = (now - datetime.fromisoformat(str(document["updated_at"]))).total_seconds()
    if age > STALE_AFTER:
        raise NotRunningError(f"the gateway (pid {pid}) has not updated {path} for {age:.0f} s")
    return document


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, run by another user
    return True


def format_status(document: JsonObject) -> str:
    """A live status document as ``sip-failover status`` prints it."""
    targets = as_object(document["targets"]) or {}
    lines = [
        (
            f"gateway        {document['gateway_id']} (pid {document['pid']}),"
            f" running since {document['started_at']}"
        ),
        f"availability   {document['availability']} (MQTT {_LINK.get(str(document['mqtt']), '?')})",
        f"trunk          {_registration(as_object(document['trunk_registration']))}",
        *_rules_lines(as_object(document["rules"])),
        f"mode           {_mode(as_object(document.get('mode')))}",
        f"active calls   {document['calls_active']}",
        f"refused/min    {document.get('refused_sources_per_minute', 0)} (strangers, floods)",
        f"SIP engine     {_engine(as_object(document.get('engine')))}",
        *_slots_lines(as_object(document.get("slots"))),
        f"last failover  {_failover(as_object(document['last_failover']))}",
        "targets" if targets else "targets        (none)",
    ]
    width = max((len(name) for name in targets), default=0)
    for name, health in targets.items():
        lines.append(f"  {name.ljust(width)}  {_health(as_object(health))}")
    return "\n".join(lines)


_LINK = {"connected": "connected", "disconnected": "broker unreachable", "off": "not configured"}


def _registration(reg: JsonObject | None) -> str:
    if reg is None:
        return "(not reported yet)"
    answer = " ".join(str(part) for part in (reg["code"], reg["reason"]) if part)
    expires = f", expires in {reg['expires']} s" if reg.get("expires") else ""
    return f"{reg['state']}{f' ({answer})' if answer else ''} since {reg['since']}{expires}"


def _rules_lines(rules: JsonObject | None) -> list[str]:
    if rules is None:
        return ["rules          (not reported yet)"]
    lines = [
        f"rules          {rules['file']}",
        f"  sha256       {rules['sha256']}",
        f"  loaded at    {rules['loaded_at']}",
    ]
    if rules["error"]:
        lines.append("  last reload REFUSED (the rules above stay in force):")
        lines += [f"    {line}" for line in str(rules["error"]).splitlines()]
    return lines


def _slots_lines(slots: JsonObject | None) -> list[str]:
    """A pool's call legs (a single gateway has no such line)."""
    if slots is None:
        return []
    pool = {name: as_object(w) or {} for name, w in (as_object(slots["workers"]) or {}).items()}
    workers = ", ".join(f"{name} {w['in_use']}/{_count(w['in_use']) + _count(w['free'])}"
                        for name, w in pool.items())  # fmt: skip
    return [f"call legs      {slots['in_use']} in use, {slots['free']} free ({workers})"]


_SET_BY = {"file": "from the rules file", "mqtt": "set over MQTT"}


def _mode(mode: JsonObject | None) -> str:
    if mode is None:
        return "(not reported yet)"
    source = str(mode["source"])
    return f"{mode['mode']} ({_SET_BY.get(source, source)} since {mode['since']})"


def _engine(engine: JsonObject | None) -> str:
    if engine is None:
        return "(not reported yet)"
    handles = f" of {engine['io_handles']} handles" if engine.get("io_handles") else ""
    return (
        f"{engine['call_slots']} call slots ({engine['call_legs']} for calls),"
        f" {engine['io_queue']} I/O queue{handles}, TLS {engine.get('tls') or 'unavailable'}"
    )


def _failover(last: JsonObject | None) -> str:
    if last is None:
        return "(none since start)"
    return (
        f"{last['at']} {_names(last['from'])} -> {_names(last['to'])}"
        f" ({last['outcome']}, SIP {last['sip_code']}, Q.850 {last['q850']})"
    )


def _names(value: object) -> str:
    if value is None:
        return "(nothing left)"
    return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def _health(health: JsonObject | None) -> str:
    if health is None:
        return "unknown (no evidence yet)"
    evidence = health.get("evidence")
    if isinstance(evidence, dict) and evidence.get("text"):
        evidence = evidence["text"]
    elif evidence and not isinstance(evidence, str):
        evidence = json.dumps(evidence, separators=(",", ":"))
    evidence = f"  {evidence}" if evidence else ""
    return f"{health['state']} since {health['since']}{evidence}"


def _count(value: JsonValue) -> int:
    """A count or pid from the file; 0 when absent."""
    return value if isinstance(value, int) else 0
