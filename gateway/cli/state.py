"""``sip-failover calls`` and ``sip-failover status``: read what the gateway keeps.

Both only read files in the state folder, so they work while the gateway
runs (and ``calls`` after it stopped): the call log through a read-only SQLite
connection, the live state from the status file the gateway rewrites.

``--json`` prints one JSON object per line: a call with its steps and legs
(``docs/schemas/call.schema.json``), or with ``--missed`` a caller owed a call
back (``docs/schemas/missed-caller.schema.json``). Times are ISO 8601 with the
UTC offset of the zone they are shown in.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from gateway.status.calllog import CallLog
from gateway.status.statusfile import STATUS_FILE, NotRunningError, format_status, read_status

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import tzinfo
    from pathlib import Path
    from typing import TextIO

    from _typeshed import DataclassInstance

    from gateway.core.callback import MissedCaller
    from gateway.status.calllog import CallRecord

CALL_LOG = "calls.sqlite3"
_AGO = re.compile(r"(\d+)\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime) -> datetime:
    """``24h``, ``7d``, ``30m``, ``2w`` before ``now``, or an ISO date/time.

    An ISO time without a zone is the machine's local time.

    Raises:
        ValueError: Neither form.
    """
    ago = _AGO.fullmatch(text.strip().lower())
    if ago:
        return now - timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: give 24h, 7d, 30m, 2w or an ISO time") from None
    return when if when.tzinfo else when.astimezone()


def calls(  # noqa: PLR0913 - the command's options, then where to write
    state_dir: Path,
    since: str | None,
    *,
    missed: bool,
    now: datetime,
    out: TextIO,
    err: TextIO,
    as_json: bool = False,
) -> int:
    """Print the call log, or with ``missed`` the call-back list; JSON lines with ``as_json``.

    Returns:
        The exit code: 0, 1 when there is no call log, 2 for a bad ``since``.
    """
    try:
        start = parse_since(since, now) if since else None
    except ValueError as error:
        print(f"sip-failover calls: {error}", file=err)
        return 2
    path = state_dir / CALL_LOG
    try:
        log = CallLog(path, read_only=True)
    except sqlite3.OperationalError as error:
        print(f"sip-failover calls: no call log at {path} ({error})", file=err)
        return 1
    try:
        if missed:
            _print_missed(log.missed(start), as_json=as_json, out=out)
        else:
            _print_calls(log.calls(start), as_json=as_json, out=out)
    finally:
        log.close()
    return 0


def _print_missed(callers: list[MissedCaller], *, as_json: bool, out: TextIO) -> None:
    if as_json:  # nothing at all when nobody is owed a call: zero lines of JSON
        out.writelines(f"{missed_json(m)}\n" for m in callers)
    else:
        print(format_missed(callers) if callers else "Nobody to call back.", file=out)


def _print_calls(records: list[CallRecord], *, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.writelines(f"{call_json(r)}\n" for r in records)
    else:
        print(format_table(records) if records else "No calls.", file=out)


def status(state_dir: Path, *, as_json: bool, now: datetime, out: TextIO, err: TextIO) -> int:
    """Print the running gateway's live state.

    Returns:
        The exit code: 0, or 1 when the gateway is not running (no status
        file, stopped, its pid gone, or the file not updated for too long).
    """
    try:
        document = read_status(state_dir / STATUS_FILE, now)
    except NotRunningError as error:
        print(f"sip-failover status: {error}", file=err)
        return 1
    print(json.dumps(document, indent=2) if as_json else format_status(document), file=out)
    return 0


def call_json(record: CallRecord, tz: tzinfo | None = None) -> str:
    """One call, its steps and legs, as one line of JSON.

    Args:
        record: The call.
        tz: Time zone of the times; the machine's local zone if None.
    """
    return json.dumps(_plain(record, tz), ensure_ascii=False)


def missed_json(missed: MissedCaller, tz: tzinfo | None = None) -> str:
    """One caller owed a call back as one line of JSON (``tz`` as for ``call_json``)."""
    data = {"caller": missed.caller, "attempts": missed.attempts, **_plain(missed, tz)}
    return json.dumps(data, ensure_ascii=False)


def _plain(value: DataclassInstance, tz: tzinfo | None) -> dict[str, object]:
    return {f.name: _value(getattr(value, f.name), tz) for f in dataclasses.fields(value)}


def _value(value: object, tz: tzinfo | None) -> object:
    if isinstance(value, datetime):
        return value.astimezone(tz).isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(value, tz)
    if isinstance(value, tuple | list):
        return [_value(item, tz) for item in value]
    return value


def format_table(records: Iterable[CallRecord], tz: tzinfo | None = None) -> str:
    """Calls as a plain-text table for ``sip-failover calls``.

    Args:
        records: Calls, in the order to show them.
        tz: Time zone for the time column; the machine's local zone if None.
    """
    header = ("time", "caller", "called", "route", "result", "who", "secs", "path")
    rows = [header, *(_row(r, tz) for r in records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _row(record: CallRecord, tz: tzinfo | None) -> tuple[str, ...]:
    who = record.answered_by or (f"vm:{record.voicemail_id}" if record.voicemail_id else "")
    secs = "" if record.duration is None else f"{record.duration:.0f}"
    return (
        record.started.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
        record.caller or "", record.called or "", record.route or "",
        record.result or "(live)", who, secs, _path(record),
    )  # fmt: skip


def _path(record: CallRecord) -> str:
    """Each leg in order: ``target outcome code``, joined by arrows."""
    parts = []
    for leg in record.legs:
        code = f" {leg.sip_code}" if leg.sip_code else ""
        parts.append(f"{leg.target} {leg.outcome or '?'}{code}")
    if record.voicemail_id:
        parts.append("voicemail")
    return " > ".join(parts)


def format_missed(missed: Iterable[MissedCaller], tz: tzinfo | None = None) -> str:
    """The call-back list as a plain-text table for ``sip-failover calls --missed``.

    Args:
        missed: Callers owed a call back, in the order to show them.
        tz: Time zone for the time columns; the machine's local zone if None.
    """
    header = ("caller", "attempts", "last attempt", "first attempt", "last result", "voicemail")
    rows = [header]
    for m in missed:
        first, last = (t.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
                       for t in (m.first_attempt, m.last_attempt))  # fmt: skip
        rows.append((m.caller or "(anonymous)", str(m.attempts), last, first, m.last_result,
                     " ".join(m.voicemail_ids)))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
