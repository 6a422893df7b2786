"""Mails to the admins: health alerts, with the callers an outage left, and the daily digest.

Both travel the voicemail spool as audio-less notices, so the mailer retries
them like voicemail and they survive a restart. The words and the schedule
are the core's (``gateway/core/alerts.py``); this module reads the call log,
the rules in force and the clock, and remembers the last digest day in the
state folder (``digest.json``), so a restart never sends a day's digest twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from datetime import date
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from loguru import logger

from gateway.core.alerts import (
    DigestSchedule,
    digest_details,
    digest_subject,
    outage_of,
    recovery_details,
)
from gateway.voicemail.record import VoicemailMeta, now_utc
from gateway.voicemail.spool import SpoolError

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime
    from pathlib import Path

    from gateway.core.health import HealthChange
    from gateway.core.rules import Rules
    from gateway.status.calllog import CallLog
    from gateway.voicemail.spool import Spool

DIGEST_STATE = "digest.json"
RECHECK_S = 60.0  # the longest sleep: a rules reload or a clock jump is seen this soon


class AlertMail:
    """Queues alert and digest mails to ``alerts.email``."""

    def __init__(  # noqa: PLR0913 - the composition root passes each part
        self,
        spool: Spool,
        mailer_notify: Callable[[], None],
        calllog: CallLog,
        rules: Callable[[], Rules],
        state_dir: Path,
        *,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        """Set up; nothing is sent before ``alert()`` or ``run_digest()``.

        Args:
            spool: where notices are queued for the mailer.
            mailer_notify: wakes the mailer after a notice is queued.
            calllog: the call log the call-back lists are read from.
            rules: the rules in force now (they may be reloaded at any time).
            state_dir: where ``digest.json`` is kept.
            clock: the current time (aware); tests pass their own.
        """
        self._spool = spool
        self._mailer_notify = mailer_notify
        self._calllog = calllog
        self._rules = rules
        self._state = state_dir / DIGEST_STATE
        self._clock = clock

    async def alert(self, change: HealthChange, text: str) -> None:
        """Queue the mail of a (coalesced) health change; a recovery lists who was missed."""
        rules = self._rules()
        if not rules.alerts.email:
            return
        details = await self._outage_callers(change, ZoneInfo(rules.timezone))
        meta = VoicemailMeta(self._spool.reserve("alert").id, "", "", change.address,
                             change.since, 0.0, change.target, "alerts", text,
                             rules.alerts.email, kind="alert", details=details)  # fmt: skip
        await self._queue(meta)

    async def inbound(self, text: str, number: str) -> None:
        """Queue the mail of a loop test whose verdict changed (gateway/health/inbound_loop.py)."""
        rules = self._rules()
        if not rules.alerts.email:
            return
        meta = VoicemailMeta(self._spool.reserve("alert").id, "", "", number, self._clock(),
                             0.0, "inbound loop test", "alerts", text, rules.alerts.email,
                             kind="alert")  # fmt: skip
        await self._queue(meta)

    async def _outage_callers(self, change: HealthChange, zone: ZoneInfo) -> str:
        outage = outage_of(change)
        if outage is None:
            return ""
        try:
            missed = await asyncio.to_thread(self._calllog.missed, *outage)
        except sqlite3.Error as error:
            logger.error("call log not read for the recovery mail: {}", error)
            return f"The call log could not be read ({error}): see sip-failover calls --missed."
        return recovery_details(change, missed, zone)

    async def run_digest(self) -> None:
        """Mail the call-back list daily at ``alerts.digest``, until cancelled."""
        last = await asyncio.to_thread(self._last_digest)
        logger.info("call-back digest: last sent for {}", last or "no day yet")
        while True:
            schedule = self._schedule()
            now = self._clock()
            day = schedule.due(now, last) if schedule is not None else None
            if schedule is not None and day is not None and await self._digest(schedule, day):
                last = day
                continue
            wait = RECHECK_S
            if schedule is not None and day is None:
                wait = (schedule.next_deadline(now, last) - now).total_seconds()
            await asyncio.sleep(min(RECHECK_S, max(wait, 0.0)))

    def _schedule(self) -> DigestSchedule | None:
        rules = self._rules()
        if rules.alerts.digest is None:
            return None
        return DigestSchedule(rules.alerts.digest, ZoneInfo(rules.timezone))

    async def _digest(self, schedule: DigestSchedule, day: date) -> bool:
        """Queue ``day``'s digest (none if nobody was missed), then remember the day."""
        try:
            missed = await asyncio.to_thread(self._calllog.missed, *schedule.window(day))
        except sqlite3.Error as error:
            logger.error("call-back digest of {} not made: {}", day, error)
            return False
        recipients = self._rules().alerts.email
        if missed and recipients:
            meta = VoicemailMeta(self._spool.reserve("digest").id, "", "", "",
                                 schedule.moment(day), 0.0, "", "digest",
                                 digest_subject(day, missed), recipients, kind="digest",
                                 details=digest_details(day, missed, schedule))  # fmt: skip
            if not await self._queue(meta):
                return False
        logger.info("call-back digest of {}: {} callers to call back", day, len(missed))
        try:
            await asyncio.to_thread(self._remember, day)
        except OSError as error:  # the mail is queued: a restart may send it once more
            logger.error("call-back digest: cannot write {}: {}", self._state, error)
        return True

    async def _queue(self, meta: VoicemailMeta) -> bool:
        try:
            await asyncio.to_thread(self._spool.commit_notice, meta)
        except SpoolError as error:
            logger.error("{} mail not queued: {}", meta.kind, error)
            return False
        self._mailer_notify()
        return True

    def _last_digest(self) -> date | None:
        try:
            return date.fromisoformat(json.loads(self._state.read_text("utf-8"))["last_sent"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning("call-back digest: {} unreadable ({}); starting afresh", self._state,
                           error)  # fmt: skip
            return None

    def _remember(self, day: date) -> None:
        """Write ``digest.json`` atomically: a crash leaves the old day or the new one."""
        temporary = self._state.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as out:
            json.dump({"last_sent": day.isoformat()}, out)
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(self._state)
