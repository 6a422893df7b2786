"""Call log: one SQLite row per call, child rows per step and per leg.

Folded from the status events (``call.*``, ``voicemail.recorded``), so it sees
what MQTT sees. SQLite in WAL mode: readers (``sip-failover calls``) never block
the writer. The writer runs through `asyncio.to_thread`, in batches, so a slow
disk never stalls the event loop.

The call-back list (`CallLog.missed`) answers "who should we call back?"; what
counts as missed, and who is settled, is ``gateway/core/callback.py``. The
plain-text and JSON views of the log are ``gateway/cli/state.py``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import quote

from loguru import logger

from gateway.core.callback import CallerCall, MissedCaller, callback_list
from gateway.json_types import as_array, loads

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from gateway.json_types import JsonValue
    from gateway.status.bus import EventBus, StatusEvent

BATCH = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY, started REAL NOT NULL, caller TEXT, called TEXT,
    route TEXT, result TEXT, outcome TEXT, sip_code INTEGER, q850 INTEGER,
    answered_by TEXT, voicemail_id TEXT, duration REAL, ended REAL, reason TEXT);
CREATE INDEX IF NOT EXISTS calls_started ON calls (started);
CREATE INDEX IF NOT EXISTS calls_caller ON calls (caller, started);
CREATE TABLE IF NOT EXISTS steps (
    call_id TEXT NOT NULL, step INTEGER NOT NULL, kind TEXT, targets TEXT, at REAL,
    outcome TEXT, sip_code INTEGER, q850 INTEGER, PRIMARY KEY (call_id, step));
CREATE TABLE IF NOT EXISTS legs (
    call_id TEXT NOT NULL, leg TEXT, target TEXT, outcome TEXT, sip_code INTEGER,
    q850 INTEGER, at REAL);
CREATE INDEX IF NOT EXISTS legs_call ON legs (call_id);
"""


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step of a call's plan and how it ended (None while it ran)."""

    step: int
    kind: str
    targets: tuple[str, ...]
    outcome: str | None
    sip_code: int | None
    q850: int | None


@dataclass(frozen=True, slots=True)
class LegRecord:
    """One outgoing INVITE and how it ended."""

    leg: str
    target: str
    outcome: str | None
    sip_code: int | None
    q850: int | None
    at: datetime


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One inbound call, from INVITE to hang-up."""

    call_id: str
    started: datetime
    caller: str | None
    called: str | None
    route: str | None
    result: str | None
    outcome: str | None
    sip_code: int | None
    q850: int | None
    answered_by: str | None
    voicemail_id: str | None
    duration: float | None
    steps: tuple[StepRecord, ...] = ()
    legs: tuple[LegRecord, ...] = ()
    reason: str | None = None  # why a call was refused or failed without a leg to blame


SqlValue: TypeAlias = str | int | float | bytes | None
"""What sqlite3 gives back for one column: TEXT, INTEGER, REAL, BLOB or NULL."""
Row: TypeAlias = tuple[SqlValue, ...]


def _ts(at: datetime) -> float:
    return at.timestamp()


def _dt(value: SqlValue) -> datetime:
    assert isinstance(value, int | float), "started and at are REAL, written by _ts"
    return datetime.fromtimestamp(value, UTC)


def _text(value: SqlValue) -> str | None:
    return None if value is None else str(value)


def _int(value: SqlValue) -> int | None:
    # INTEGER affinity stores what the events carry (ints) as integers.
    return value if isinstance(value, int) else None


def _real(value: SqlValue) -> float | None:
    return float(value) if isinstance(value, int | float) else None


class CallLog:
    """The call log database; safe to share between the loop and one writer thread."""

    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        """Open (and create) the log.

        Args:
            path: SQLite file, or ``":memory:"``.
            read_only: Only read an existing log (``sip-failover calls``, also
                while the gateway writes to it: WAL readers never block it).

        Raises:
            sqlite3.OperationalError: ``read_only`` and there is no such log.
        """
        self._lock = threading.Lock()
        if read_only:
            uri = f"file:{quote(str(path))}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            return
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: an application crash loses nothing; a power cut at
            # most the last transaction, which is fine for a log.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            _add_reason_column(self._db)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def record(self, event: StatusEvent) -> None:
        """Fold one event in (other kinds are ignored)."""
        self.record_many([event])

    def record_many(self, events: Iterable[StatusEvent]) -> None:
        """Fold events in, in one transaction."""
        with self._lock, self._db:
            for event in events:
                fold = _FOLDS.get(event.kind)
                if fold is not None and "call_id" in event.data:
                    fold(self._db, event)

    async def run(self, bus: EventBus, maxsize: int = 1000) -> None:
        """Record everything the bus carries until cancelled, then flush.

        A batch handed to the writer thread is written even when the task is
        cancelled meanwhile (asyncio.to_thread would drop a batch whose thread
        had not started: the call it held would lose its caller and route).
        """
        with (bus.subscribe("calllog", maxsize) as subscription,
              ThreadPoolExecutor(1, thread_name_prefix="calllog") as writer):  # fmt: skip
            written: Future[None] | None = None
            try:
                while True:
                    batch = [await subscription.get()]
                    while len(batch) < BATCH and (more := subscription.get_nowait()):
                        batch.append(more)
                    written = writer.submit(self.record_many, batch)
                    await asyncio.shield(asyncio.wrap_future(written))
                    if dropped := subscription.take_dropped():
                        logger.warning("call log: {} events dropped (disk too slow)", dropped)
            except asyncio.CancelledError:
                if written is not None and (error := written.exception()) is not None:
                    logger.opt(exception=error).error("call log: a batch was not written")
                self.record_many(iter(subscription.get_nowait, None))
                raise

    def calls(self, since: datetime | None = None) -> list[CallRecord]:
        """Calls started at or after ``since`` (all if None), newest first."""
        start = _ts(since) if since else float("-inf")
        with self._lock:
            rows: list[Row] = self._db.execute(
                "SELECT * FROM calls WHERE started >= ? ORDER BY started DESC", (start,)
            ).fetchall()
            return [self._call(row) for row in rows]

    def missed(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[MissedCaller]:
        """The call-back list for calls started in ``[since, until)``, newest first.

        Calls after ``until`` are read too: a caller who got through later is settled.
        """
        start = _ts(since) if since else float("-inf")
        with self._lock:
            rows: list[Row] = self._db.execute(
                "SELECT caller, started, result, voicemail_id FROM calls"
                " WHERE started >= ? AND result IS NOT NULL",
                (start,),
            ).fetchall()
        calls = [CallerCall(_text(row[0]) or "", _dt(row[1]), _text(row[2]), _text(row[3]))
                 for row in rows]  # fmt: skip
        return callback_list(calls, since, until)

    def _call(self, row: Row) -> CallRecord:
        call_id = str(row[0])
        reason = _text(row[13]) if len(row) > 13 else None
        steps: list[Row] = self._db.execute(
            "SELECT step, kind, targets, outcome, sip_code, q850 FROM steps"
            " WHERE call_id = ? ORDER BY step",
            (call_id,),
        ).fetchall()
        legs: list[Row] = self._db.execute(
            "SELECT leg, target, outcome, sip_code, q850, at FROM legs"
            " WHERE call_id = ? ORDER BY at, rowid",
            (call_id,),
        ).fetchall()
        caller, called, route, result, outcome = (_text(value) for value in row[2:7])
        sip_code, q850, who, box, secs = _int(row[7]), _int(row[8]), *row[9:12]
        return CallRecord(
            call_id, _dt(row[1]), caller, called, route, result, outcome, sip_code, q850,
            _text(who), _text(box), _real(secs),
            steps=tuple(_step_record(s) for s in steps),
            legs=tuple(_leg_record(g) for g in legs),
            reason=reason,
        )  # fmt: skip


def _add_reason_column(db: sqlite3.Connection) -> None:
    """A log written before calls had a ``reason`` gets the column (SQLite appends it)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(calls)")}
    if "reason" not in columns:
        db.execute("ALTER TABLE calls ADD COLUMN reason TEXT")


def _step_record(row: Row) -> StepRecord:
    targets = tuple(str(name) for name in as_array(loads(_text(row[2]) or "[]")) or [])
    return StepRecord(_int(row[0]) or 0, _text(row[1]) or "", targets, _text(row[3]),
                      _int(row[4]), _int(row[5]))  # fmt: skip


def _leg_record(row: Row) -> LegRecord:
    leg, target, outcome = str(row[0]), _text(row[1]) or "", _text(row[2])
    return LegRecord(leg, target, outcome, _int(row[3]), _int(row[4]), _dt(row[5]))


# Folding: one function per event kind, each a few statements of SQL.


def _ensure(db: sqlite3.Connection, event: StatusEvent) -> str:
    call_id = str(event.data["call_id"])
    db.execute(
        "INSERT OR IGNORE INTO calls (call_id, started) VALUES (?, ?)", (call_id, _ts(event.at))
    )
    return call_id


def _incoming(db: sqlite3.Connection, event: StatusEvent) -> None:
    d = event.data
    call_id = _ensure(db, event)
    db.execute(
        "UPDATE calls SET started = ?, caller = ?, called = ?, route = ? WHERE call_id = ?",
        (_ts(event.at), d.get("caller"), d.get("called"), d.get("route"), call_id),
    )


def _step(db: sqlite3.Connection, event: StatusEvent) -> None:
    d = event.data
    db.execute(
        "INSERT OR REPLACE INTO steps (call_id, step, kind, targets, at) VALUES (?, ?, ?, ?, ?)",
        (_ensure(db, event), d.get("step"), d.get("kind"), json.dumps(d.get("targets") or []),
         _ts(event.at)),
    )  # fmt: skip


def _leg(db: sqlite3.Connection, event: StatusEvent) -> None:
    d = event.data
    db.execute(
        "INSERT INTO legs (call_id, leg, target, outcome, sip_code, q850, at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (_ensure(db, event), str(d.get("leg")), d.get("target"), d.get("outcome"),
         d.get("sip_code"), d.get("q850"), _ts(event.at)),
    )  # fmt: skip


def _close_step(db: sqlite3.Connection, call_id: str, values: tuple[JsonValue, ...]) -> None:
    """Set outcome, sip_code, q850 of the call's latest step."""
    db.execute(
        "UPDATE steps SET outcome = ?, sip_code = ?, q850 = ? WHERE call_id = ? AND step ="
        " (SELECT MAX(step) FROM steps WHERE call_id = ?)",
        (*values, call_id, call_id),
    )


def _failover(db: sqlite3.Connection, event: StatusEvent) -> None:
    d = event.data
    _close_step(db, _ensure(db, event), (d.get("outcome"), d.get("sip_code"), d.get("q850")))


def _answered(db: sqlite3.Connection, event: StatusEvent) -> None:
    call_id = _ensure(db, event)
    target = event.data.get("target")
    db.execute("UPDATE calls SET answered_by = ? WHERE call_id = ?", (target, call_id))
    _close_step(db, call_id, ("answered", 200, 16))


def _ended(db: sqlite3.Connection, event: StatusEvent) -> None:
    d = event.data
    db.execute(
        "UPDATE calls SET result = ?, outcome = ?, sip_code = ?, q850 = ?, duration = ?,"
        " ended = ?, reason = ? WHERE call_id = ?",
        (d.get("result"), d.get("outcome"), d.get("sip_code"), d.get("q850"),
         d.get("duration"), _ts(event.at), d.get("reason"), _ensure(db, event)),
    )  # fmt: skip


def _voicemail(db: sqlite3.Connection, event: StatusEvent) -> None:
    d = event.data
    call_id = _ensure(db, event)
    db.execute(
        "UPDATE calls SET voicemail_id = ?, caller = COALESCE(caller, ?),"
        " called = COALESCE(called, ?) WHERE call_id = ?",
        (d.get("id"), d.get("caller"), d.get("called"), call_id),
    )


_FOLDS = {
    "call.incoming": _incoming,
    "call.step": _step,
    "call.leg": _leg,
    "call.failover": _failover,
    "call.answered": _answered,
    "call.ended": _ended,
    "voicemail.recorded": _voicemail,
}
