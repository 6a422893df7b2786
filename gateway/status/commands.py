"""``sip-failover calls`` and ``sip-failover status``: read what the gateway keeps.

Both only read files in the state folder, so they work while the gateway
runs (and ``calls`` after it stopped): the call log through a read-only SQLite
connection, the live state from the status file the gateway rewrites.
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from gateway.status.calllog import CallLog
from gateway.status.calls_view import call_json, format_missed, format_table, missed_json
from gateway.status.statusfile import STATUS_FILE, NotRunningError, format_status, read_status

if TYPE_CHECKING:
    from pathlib import Path
    from typing import TextIO

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
