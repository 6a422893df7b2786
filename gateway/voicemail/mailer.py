"""Mails spooled voicemails until the server accepts them (the SMTP adapter).

The decisions live elsewhere: what a server answer means and when to try
again is ``retry.py`` (pure), what the mail looks like is ``message.py``
(pure), where the files are is ``spool.py``. This module sends, and turns
the outcome into spool moves and status events:

- ``voicemail.delivered`` {id, recipients}: the server said 250; the spool
  forgets the message only now.
- ``voicemail.failed`` {id, error, permanent}: ``permanent`` true when the
  message was moved to failed/ (refused, or past its lifetime); false for a
  passing outage (told once per distinct error), for a wrong login (told at
  every attempt, the admin must act), and for a spool that cannot be read or
  written (``id`` is null then).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from loguru import logger

from gateway.voicemail.message import compose
from gateway.voicemail.record import SpooledMessage, now_utc
from gateway.voicemail.retry import RetryPolicy, Step, Verdict, classify_reply
from gateway.voicemail.spool import SpoolError

if TYPE_CHECKING:
    from collections.abc import Callable
    from email.message import EmailMessage
    from zoneinfo import ZoneInfo

    import aiosmtplib

    from gateway.config import SmtpSettings
    from gateway.voicemail.retry import Decision
    from gateway.voicemail.spool import Spool

# After the spool itself failed, look again this much later (or on notify()).
_SPOOL_PAUSE = timedelta(minutes=1)


@dataclass(frozen=True)
class Delivery:
    """The result of one attempt.

    Attributes:
        step: what became of the message (done, retry later, given up).
        message: the message with its new state (its files may be gone when done).
        error: the failure as told to the admin, or ``None``.
    """

    step: Step
    message: SpooledMessage
    error: str | None


@dataclass(frozen=True)
class _Outcome:
    verdict: Verdict
    error: str | None = None
    refused: tuple[str, ...] = ()  # recipients refused while others accepted


class Mailer:
    """Sends what is in the spool, retries on schedule, never drops a message."""

    def __init__(  # noqa: PLR0913, PLR0917 - the composition root passes each part
        self,
        settings: SmtpSettings,
        spool: Spool,
        emit: Callable[[str, dict[str, object]], None],
        timezone: ZoneInfo,
        clock: Callable[[], datetime] = now_utc,
        lifetime: timedelta = timedelta(days=5),
        *,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """Set up the mailer; nothing is sent before ``run()`` or ``deliver_once()``.

        Args:
            settings: the mail server (password is a SecretStr, never logged).
            spool: where the voicemails are.
            emit: the status event sink, ``emit(kind, data)``.
            timezone: the rules' time zone, for times in the mail.
            clock: the current time (aware); tests pass their own.
            lifetime: how long a message is retried before it is given up.
            jitter: draws in [0, 1) that spread retries.
        """
        self._settings = settings
        self._spool = spool
        self._emit = emit
        self._timezone = timezone
        self._clock = clock
        first = timedelta(seconds=settings.retry_first)
        self._policy = RetryPolicy(first=first, lifetime=lifetime)
        self._jitter = jitter
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Tell ``run()`` a new message was committed (call from the event loop)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver pending messages and wait for the next due one, until cancelled."""
        server = self._settings
        user = f" as {server.username}" if server.username else ""
        logger.info("voicemail mail goes to {}:{}{}", server.host, server.port, user)
        while True:
            self._wake.clear()
            try:
                due = await self.run_due()
            except SpoolError as exc:
                logger.error("voicemail spool: {}", exc)
                self._emit("voicemail.failed", {"id": None, "error": str(exc), "permanent": False})
                due = self._clock() + _SPOOL_PAUSE
            await self._sleep_until(due)

    async def run_due(self) -> datetime | None:
        """Attempt every message that is due now.

        Returns:
            When the next message falls due, or ``None`` if the queue is empty.

        Raises:
            SpoolError: the spool could not be read or written.
        """
        upcoming: list[datetime] = []
        for message in await asyncio.to_thread(self._spool.pending):
            current = message
            if message.retry.is_due(self._clock()):
                result = await self.deliver_once(message)
                if result.step is not Step.RETRY:
                    continue
                current = result.message
            upcoming.append(current.retry.next_attempt_at or self._clock())
        return min(upcoming, default=None)

    async def deliver_once(self, message: SpooledMessage) -> Delivery:
        """Make one delivery attempt and settle the message in the spool.

        Raises:
            SpoolError: the spool could not record the outcome.
        """
        mail = await asyncio.to_thread(self._compose, message)
        outcome = await self._send(mail, message.meta.recipients)
        now = self._clock()
        decision = self._policy.decide(
            message.retry, outcome.verdict, outcome.error, now, self._jitter()
        )
        return await self._settle(message, decision, outcome)

    def _compose(self, message: SpooledMessage) -> EmailMessage:
        try:
            audio: bytes | None = message.audio.read_bytes()
        except FileNotFoundError:
            audio = None
        except OSError as exc:
            raise SpoolError(f"cannot read voicemail audio {message.audio}: {exc}") from exc
        sender, date = self._settings.from_, message.retry.queued_at
        return compose(message.meta, audio, sender=sender, timezone=self._timezone, date=date)

    async def _send(self, mail: EmailMessage, recipients: tuple[str, ...]) -> _Outcome:
        # Loaded with the first mail, not at start: 1.1 MB of an idle gateway
        # that may never send one (benchmarks/README.md, "Memory").
        import aiosmtplib  # noqa: PLC0415

        server = self._settings
        login = server.username or None
        try:
            refused, _ = await aiosmtplib.send(
                mail,
                sender=server.from_,
                recipients=list(recipients),
                hostname=server.host,
                port=server.port,
                username=login,
                password=server.password.get_secret_value() if login else None,
                use_tls=server.tls,
                start_tls=server.starttls,
                timeout=server.timeout,
                local_hostname=server.ehlo_name,
            )
        except aiosmtplib.SMTPException as exc:
            return self._failure(exc)
        except (OSError, TimeoutError) as exc:
            return _Outcome(Verdict.TEMPORARY, f"cannot reach {server.host}:{server.port}: {exc}")
        if refused:
            said = "; ".join(
                f"{who}: {answer.code} {answer.message}" for who, answer in refused.items()
            )
            return _Outcome(Verdict.ACCEPTED, f"refused for {said}", tuple(refused))
        return _Outcome(Verdict.ACCEPTED)

    def _failure(self, exc: aiosmtplib.SMTPException) -> _Outcome:
        """What an aiosmtplib error means, in words an admin can act on."""
        import aiosmtplib  # noqa: PLC0415 - loaded by _send already

        server = self._settings
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = [refusal.code for refusal in exc.recipients]
            said = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            temporary = any(classify_reply(code) is Verdict.TEMPORARY for code in codes)
            verdict = Verdict.TEMPORARY if temporary else classify_reply(codes[0])
            return _Outcome(verdict, f"every recipient refused: {said}")
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            verdict = classify_reply(exc.code)
            said = f"{exc.code} {exc.message}"
            if verdict is Verdict.CREDENTIALS:
                who = f"user {server.username!r}" if server.username else "no login set"
                said = (
                    f"the mail server refused the login ({who}): {said}; fix the SMTP credentials"
                )
            return _Outcome(verdict, said)
        if isinstance(exc, aiosmtplib.SMTPNotSupported) or "not supported" in exc.message:
            # A login set but no AUTH offered, STARTTLS asked but not offered (aiosmtplib
            # raises a bare SMTPException for both): a settings problem only the admin
            # can fix, so alarm and keep trying.
            return _Outcome(Verdict.CREDENTIALS, f"{exc.message}; check the SMTP settings")
        return _Outcome(Verdict.TEMPORARY, f"cannot reach {server.host}:{server.port}: {exc}")

    async def _settle(
        self, message: SpooledMessage, decision: Decision, outcome: _Outcome
    ) -> Delivery:
        meta, state = message.meta, decision.state
        if decision.step is Step.DONE and not outcome.refused:
            await asyncio.to_thread(self._spool.delivered, message)
            logger.info("voicemail {} delivered to {}", meta.id, meta.recipients)
            self._emit("voicemail.delivered", {"id": meta.id, "recipients": list(meta.recipients)})
            return Delivery(Step.DONE, message, None)
        if decision.step is Step.DONE:
            # Accepted for some: they must not get it twice, so no retry; the file
            # is kept in failed/ for the others.
            accepted = [who for who in meta.recipients if who not in outcome.refused]
            failed_state = replace(state, last_error=outcome.error)
            kept = await asyncio.to_thread(self._spool.fail, message, failed_state)
            self._emit("voicemail.delivered", {"id": meta.id, "recipients": accepted})
            self._alarm(meta.id, outcome.error, permanent=True)
            return Delivery(Step.GIVE_UP, kept, outcome.error)
        if decision.step is Step.GIVE_UP:
            kept = await asyncio.to_thread(self._spool.fail, message, state)
            self._alarm(meta.id, state.last_error, permanent=True)
            return Delivery(Step.GIVE_UP, kept, state.last_error)
        later = await asyncio.to_thread(self._spool.update, message, state)
        logger.warning(
            "voicemail {}: attempt {} failed ({}), next at {}",
            meta.id,
            state.attempts,
            state.last_error,
            state.next_attempt_at,
        )
        if decision.alarm:
            self._alarm(meta.id, state.last_error, permanent=False)
        return Delivery(Step.RETRY, later, state.last_error)

    def _alarm(self, spool_id: str, error: str | None, *, permanent: bool) -> None:
        self._emit("voicemail.failed", {"id": spool_id, "error": error, "permanent": permanent})

    async def _sleep_until(self, due: datetime | None) -> None:
        """Wait until ``due`` (``None``: no deadline) or until ``notify()``."""
        delay = None if due is None else max((due - self._clock()).total_seconds(), 0.0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()
