"""What ``sip-failover calls`` prints: the log as a table, or as JSON lines.

``--json`` prints one JSON object per line: a call with its steps and legs
(``docs/schemas/call.schema.json``), or with ``--missed`` a caller owed a call
back (``docs/schemas/missed-caller.schema.json``). Times are ISO 8601 with the
UTC offset of the zone they are shown in.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import tzinfo

    from _typeshed import DataclassInstance

    from gateway.core.callback import MissedCaller
    from gateway.status.calllog import CallRecord


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
