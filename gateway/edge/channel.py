"""The pool's local channel: the control process and its workers, JSON lines.

The control process (the supervisor) listens on a Unix socket in the state
folder (``<state>/control.sock``), or on ``host:port`` when the workers run
on other machines; each worker connects to it and says hello. One JSON
object per line, both ways, over asyncio streams:

worker → control
    ``{"op": "hello", "worker": "worker1"}``
    ``{"op": "event", "kind": "call.ended", "at": "…", "data": {…}}``: its
    status events, as a single gateway publishes them
    ``{"op": "slots", "in_use": 1, "total": 3}``: its call legs, on each change
    ``{"op": "probed", "id": 7, "evidence": {…} | null}``: a probe's result
    (null: no leg was free)

control → worker
    ``{"op": "health", "states": {"main": "down"}}``: targets' health
    ``{"op": "mode", "mode": "force-backup" | null}``: the mode set over MQTT
    ``{"op": "reload"}``: load the rules file again
    ``{"op": "probe", "id": 7, "kind": "call", "target": "main",
    "early_media_timeout": 8.0}``

A message that is not JSON is logged and skipped; the line is the unit, so
one bad line never desynchronises the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from gateway.core.causes import Outcome
from gateway.core.health import Evidence, ProbeResult, Source
from gateway.json_types import JsonObject, JsonValue, as_object, loads

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

CONTROL_SOCKET = "control.sock"
LINE_LIMIT = 1 << 20  # bytes in one message: an event is far smaller


def encode(message: Mapping[str, object]) -> bytes:
    """One message as one line (a value JSON has no type for, a datetime say, as its text)."""
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


def decode(line: bytes) -> JsonObject | None:
    """One line as a message, or None (logged) when it is not one."""
    try:
        message = as_object(loads(line))
    except ValueError:
        logger.warning("control channel: not JSON: {!r}", line[:200])
        return None
    if message is None or not isinstance(message.get("op"), str):
        logger.warning("control channel: not a message: {!r}", line[:200])
        return None
    return message


def as_int(value: JsonValue) -> int:
    """A message's whole number (ValueError: no number, a peer's bug)."""
    return int(_number(value))


def as_float(value: JsonValue) -> float:
    """A message's number (ValueError: no number, a peer's bug)."""
    return float(_number(value))


def _number(value: JsonValue) -> int | float | str:
    if isinstance(value, int | float | str):
        return value
    raise ValueError(f"not a number: {value!r}")


def evidence_to_wire(evidence: Evidence | None) -> dict[str, object] | None:
    if evidence is None:
        return None
    return {**evidence.as_json(), "rang": evidence.rang}


def evidence_from_wire(wire: JsonValue) -> Evidence | None:
    """Evidence as a worker sent it (``evidence_to_wire``); None for null."""
    data = as_object(wire)
    if data is None:
        return None
    value = str(data["outcome"])
    outcome = ProbeResult(value) if value in ProbeResult._value2member_map_ else Outcome(value)
    sip_code, q850 = data.get("sip_code"), data.get("q850")
    return Evidence(Source(str(data["source"])), outcome,
                    None if sip_code is None else as_int(sip_code),
                    None if q850 is None else as_int(q850),
                    datetime.fromisoformat(str(data["at"])), str(data["text"]),
                    bool(data.get("rang")))  # fmt: skip


def split_address(address: str) -> tuple[str, int] | None:
    """``host:port`` as a pair, or None for a Unix socket path."""
    if "/" in address:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


async def listen(
    address: str | Path, on_peer: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                           Awaitable[None]]
) -> asyncio.Server:
    """Listen on a Unix socket path or ``host:port``."""
    pair = split_address(str(address))
    if pair is None:
        path = Path(address)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # noqa: ASYNC240 - at start, once: left by a killed supervisor
        server = await asyncio.start_unix_server(on_peer, str(path), limit=LINE_LIMIT)
        path.chmod(0o600)  # noqa: ASYNC240 - once, at start
        return server
    return await asyncio.start_server(on_peer, pair[0], pair[1], limit=LINE_LIMIT)


async def connect(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the control process at a Unix socket path or ``host:port``."""
    pair = split_address(address)
    if pair is None:
        return await asyncio.open_unix_connection(address, limit=LINE_LIMIT)
    return await asyncio.open_connection(pair[0], pair[1], limit=LINE_LIMIT)
